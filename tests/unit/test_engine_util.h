/* test_engine_util.h — shared fixtures and helpers of the engine tests. */
#ifndef TEST_ENGINE_UTIL_H
#define TEST_ENGINE_UTIL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ftw.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/engine_int.h"

/* ---- helpers ---- */
static inline int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}
static inline void rm_rf(const char *d)
{
	nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct fx {
	char dir[64];
	char path[96];
	engine *e;
} fx;

static inline int fx_setup(void **state)
{
	fx *f = calloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/test_engine.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/db", f->dir);
	engine_opts o = {.create_if_missing = true};
	ms_err err = {0};
	assert_int_equal(engine_open(f->path, &o, &f->e, &err), 0);
	*state = f;
	return 0;
}

static inline int fx_teardown(void **state)
{
	fx *f = *state;
	engine_close(f->e);
	rm_rf(f->dir);
	free(f);
	return 0;
}

static inline void pbfree(void *m)
{
	if (m)
		protobuf_c_message_free_unpacked(m, &ms_pb_allocator);
}

#define B(s) ((ProtobufCBinaryData){strlen(s), (uint8_t *)(s)})

static inline int64_t put_l(engine *e, const char *k, const char *v, int64_t lease)
{
	engine_apply *a;
	ms_err err = {0};
	assert_int_equal(engine_apply_begin(e, NULL, NULL, &a, &err), 0);
	Etcdserverpb__PutRequest r = ETCDSERVERPB__PUT_REQUEST__INIT;
	r.key = B(k);
	r.value = B(v);
	r.lease = lease;
	Etcdserverpb__PutResponse *resp;
	assert_int_equal(engine_apply_put(a, &r, &resp, &err), 0);
	int64_t rev = resp->header->revision;
	pbfree(resp);
	assert_int_equal(engine_apply_commit(a, 1, &err), 0);
	return rev;
}
static inline int64_t put(engine *e, const char *k, const char *v)
{
	return put_l(e, k, v, 0);
}

static inline int64_t del(engine *e, const char *k, const char *end, int64_t *deleted)
{
	engine_apply *a;
	ms_err err = {0};
	assert_int_equal(engine_apply_begin(e, NULL, NULL, &a, &err), 0);
	Etcdserverpb__DeleteRangeRequest r = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	r.key = B(k);
	if (end)
		r.range_end = (ProtobufCBinaryData){end[0] ? strlen(end) : 1, (uint8_t *)end};
	Etcdserverpb__DeleteRangeResponse *resp;
	assert_int_equal(engine_apply_delete(a, &r, &resp, &err), 0);
	int64_t rev = resp->header->revision;
	if (deleted)
		*deleted = resp->deleted;
	pbfree(resp);
	assert_int_equal(engine_apply_commit(a, 1, &err), 0);
	return rev;
}

static inline Etcdserverpb__RangeResponse *rng(engine *e, Etcdserverpb__RangeRequest *r, int want_rc)
{
	Etcdserverpb__RangeResponse *resp = NULL;
	ms_err err = {0};
	assert_int_equal(engine_range(e, r, &resp, &err), want_rc);
	return resp;
}

static inline Etcdserverpb__RangeResponse *get(engine *e, const char *k)
{
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	r.key = B(k);
	return rng(e, &r, 0);
}

static inline bool kv_is(const Mvccpb__KeyValue *kv, const char *k, const char *v)
{
	return kv->key.len == strlen(k) && !memcmp(kv->key.data, k, kv->key.len) &&
	       (!v || (kv->value.len == strlen(v) && !memcmp(kv->value.data, v, kv->value.len)));
}

static inline int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = n ? memcmp(a, b, n) : 0;
	return c ? (c < 0 ? -1 : 1) : (al < bl ? -1 : al > bl);
}

static inline engine_apply *begin(engine *e)
{
	engine_apply *a;
	ms_err err = {0};
	assert_int_equal(engine_apply_begin(e, NULL, NULL, &a, &err), 0);
	return a;
}

static inline void commit(engine_apply *a)
{
	ms_err err = {0};
	assert_int_equal(engine_apply_commit(a, 1, &err), 0);
}

#endif
