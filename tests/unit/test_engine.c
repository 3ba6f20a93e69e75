/* test_engine.c — the MVCC engine: codec, key order, revisions, Range
 * options, Put/Delete options, Txn, compaction, reopen, leases, history. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/unit/test_engine_util.h"

/* ---- codec ---- */
static void test_codec_roundtrip(void **state)
{
	(void)state;
	engine_kv kv = {(const uint8_t *)"k\0y", 3, (const uint8_t *)"value", 5, 2, 7, 3, 99};
	uint8_t buf[128];
	size_t n = engine_kv_encode(&kv, buf, sizeof buf);
	assert_int_equal(n, 4 + 3 + 4 + 5 + 32);
	assert_int_equal(engine_kv_encode(&kv, NULL, 0), n);
	assert_int_equal(ms_get_u32le(buf), 3);
	engine_kv d;
	assert_int_equal(engine_kv_decode(buf, n, &d), 0);
	assert_int_equal(d.key_len, 3);
	assert_memory_equal(d.key, "k\0y", 3);
	assert_int_equal(d.value_len, 5);
	assert_memory_equal(d.value, "value", 5);
	assert_int_equal(d.create_rev, 2);
	assert_int_equal(d.mod_rev, 7);
	assert_int_equal(d.version, 3);
	assert_int_equal(d.lease, 99);
	/* every truncation and trailing garbage is refused */
	for (size_t l = 0; l < n; l++)
		assert_int_equal(engine_kv_decode(buf, l, &d), MS_ECORRUPT);
	buf[n] = 0;
	assert_int_equal(engine_kv_decode(buf, n + 1, &d), MS_ECORRUPT);
	/* lengths that point past the end */
	uint8_t bad[64];
	memcpy(bad, buf, n);
	ms_put_u32le(bad, 0xFFFFFFF0u);
	assert_int_equal(engine_kv_decode(bad, n, &d), MS_ECORRUPT);
	memcpy(bad, buf, n);
	ms_put_u32le(bad + 7, 6);
	assert_int_equal(engine_kv_decode(bad, n, &d), MS_ECORRUPT);
	/* random garbage never crashes and never decodes with bad lengths */
	srand(7);
	for (int i = 0; i < 2000; i++) {
		size_t l = (size_t)(rand() % 64);
		for (size_t j = 0; j < l; j++)
			bad[j] = (uint8_t)rand();
		if (engine_kv_decode(bad, l, &d) == 0)
			assert_int_equal(d.key_len + d.value_len + 40, l);
	}
	/* empty key and value */
	engine_kv z = {0};
	n = engine_kv_encode(&z, buf, sizeof buf);
	assert_int_equal(n, 40);
	assert_int_equal(engine_kv_decode(buf, n, &d), 0);
	assert_int_equal(d.key_len, 0);
}

static void test_key_order(void **state)
{
	(void)state;
	static const uint8_t alpha[] = {0x00, 0x01, 0x02, 0x7F, 0xFE, 0xFF};
	srand(11);
	uint8_t a[8], b[8], ea[32], eb[32];
	for (int i = 0; i < 20000; i++) {
		size_t al = (size_t)(rand() % 6), bl = (size_t)(rand() % 6);
		for (size_t j = 0; j < al; j++)
			a[j] = alpha[rand() % 6];
		if (rand() % 3 == 0) { /* prefixes of each other */
			bl = al + (size_t)(rand() % 3);
			memcpy(b, a, al);
			for (size_t j = al; j < bl; j++)
				b[j] = alpha[rand() % 6];
		} else {
			for (size_t j = 0; j < bl; j++)
				b[j] = alpha[rand() % 6];
		}
		size_t eal = eng_key_enc(a, al, ea), ebl = eng_key_enc(b, bl, eb);
		/* with a revision suffix appended the order must hold too */
		eng_rev_put(ea + eal, 5, 0);
		eng_rev_put(eb + ebl, 3, 1);
		int want = bytes_cmp(a, al, b, bl);
		if (want)
			assert_int_equal(bytes_cmp(ea, eal + 16, eb, ebl + 16), want);
		uint8_t dec[8];
		assert_int_equal(eng_key_dec(ea, eal, dec), (ssize_t)al);
		assert_memory_equal(dec, a, al);
	}
}

static void test_key_order_in_store(void **state)
{
	fx *f = *state;
	/* binary keys through the engine come back in memcmp order */
	static const char *keys[] = {"a", "a\x01", "\x01", "b", "a\xff", "ab", "\xff", "\xff\xff", "a\x7f", "aa"};
	for (size_t i = 0; i < MS_ARRAY_LEN(keys); i++)
		put(f->e, keys[i], "v");
	/* keys with NUL bytes */
	engine_apply *a;
	ms_err err = {0};
	assert_int_equal(engine_apply_begin(f->e, NULL, NULL, &a, &err), 0);
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = (ProtobufCBinaryData){2, (uint8_t *)"a\0"};
	assert_int_equal(engine_apply_put(a, &p, NULL, &err), 0);
	p.key = (ProtobufCBinaryData){3, (uint8_t *)"a\0\0"};
	assert_int_equal(engine_apply_put(a, &p, NULL, &err), 0);
	assert_int_equal(engine_apply_commit(a, 2, &err), 0);
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	r.key = (ProtobufCBinaryData){1, (uint8_t *)"\0"};
	r.range_end = (ProtobufCBinaryData){1, (uint8_t *)"\0"};
	Etcdserverpb__RangeResponse *resp = rng(f->e, &r, 0);
	assert_int_equal(resp->n_kvs, MS_ARRAY_LEN(keys) + 2);
	assert_int_equal(resp->count, MS_ARRAY_LEN(keys) + 2);
	for (size_t i = 1; i < resp->n_kvs; i++)
		assert_true(bytes_cmp(resp->kvs[i - 1]->key.data, resp->kvs[i - 1]->key.len, resp->kvs[i]->key.data,
		                      resp->kvs[i]->key.len) < 0);
	pbfree(resp);
}

/* ---- revisions ---- */
static void test_revisions(void **state)
{
	fx *f = *state;
	assert_int_equal(engine_current_rev(f->e), 1);
	assert_int_equal(engine_compact_rev(f->e), 0);
	assert_int_equal(put(f->e, "a", "1"), 2);
	assert_int_equal(put(f->e, "a", "2"), 3);
	int64_t deleted = -1;
	assert_int_equal(del(f->e, "zz", NULL, &deleted), 3); /* no-op delete: no bump */
	assert_int_equal(deleted, 0);
	assert_int_equal(engine_current_rev(f->e), 3);
	Etcdserverpb__RangeResponse *r = get(f->e, "a");
	assert_int_equal(r->n_kvs, 1);
	assert_int_equal(r->kvs[0]->create_revision, 2);
	assert_int_equal(r->kvs[0]->mod_revision, 3);
	assert_int_equal(r->kvs[0]->version, 2);
	assert_int_equal(r->header->revision, 3);
	pbfree(r);
	assert_int_equal(del(f->e, "a", NULL, &deleted), 4);
	assert_int_equal(deleted, 1);
	assert_int_equal(put(f->e, "a", "3"), 5);
	r = get(f->e, "a");
	assert_int_equal(r->kvs[0]->create_revision, 5); /* deletion resets the generation */
	assert_int_equal(r->kvs[0]->version, 1);
	pbfree(r);

	/* failed txn without writes: no bump */
	engine_apply *a;
	ms_err err = {0};
	assert_int_equal(engine_apply_begin(f->e, NULL, NULL, &a, &err), 0);
	Etcdserverpb__Compare c = ETCDSERVERPB__COMPARE__INIT;
	c.key = B("a");
	c.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
	c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
	c.version = 42;
	Etcdserverpb__Compare *cs[] = {&c};
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = B("b");
	Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
	op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	op.request_put = &p;
	Etcdserverpb__RequestOp *ops[] = {&op};
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.n_compare = 1;
	t.compare = cs;
	t.n_success = 1;
	t.success = ops;
	Etcdserverpb__TxnResponse *tr;
	assert_int_equal(engine_apply_txn(a, &t, &tr, &err), 0);
	assert_false(tr->succeeded);
	assert_int_equal(tr->header->revision, 5);
	assert_int_equal(tr->n_responses, 0);
	pbfree(tr);
	/* txn with two puts: one main revision */
	Etcdserverpb__PutRequest p2 = ETCDSERVERPB__PUT_REQUEST__INIT;
	p2.key = B("c");
	Etcdserverpb__RequestOp op2 = op;
	op2.request_put = &p2;
	Etcdserverpb__RequestOp *ops2[] = {&op, &op2};
	Etcdserverpb__TxnRequest t2 = ETCDSERVERPB__TXN_REQUEST__INIT;
	t2.n_success = 2;
	t2.success = ops2;
	assert_int_equal(engine_apply_txn(a, &t2, &tr, &err), 0);
	assert_true(tr->succeeded);
	assert_int_equal(tr->header->revision, 6);
	assert_int_equal(tr->responses[0]->response_put->header->revision, 6);
	pbfree(tr);
	assert_int_equal(engine_apply_commit(a, 9, &err), 0);
	assert_int_equal(engine_current_rev(f->e), 6);
	assert_int_equal(engine_consistent_index(f->e), 9);
	r = get(f->e, "c");
	assert_int_equal(r->kvs[0]->mod_revision, 6);
	pbfree(r);
}

static void test_batch_sees_itself(void **state)
{
	fx *f = *state;
	engine_apply *a;
	ms_err err = {0};
	assert_int_equal(engine_apply_begin(f->e, NULL, NULL, &a, &err), 0);
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = B("k");
	p.value = B("1");
	assert_int_equal(engine_apply_put(a, &p, NULL, &err), 0);
	p.value = B("2");
	p.prev_kv = true;
	Etcdserverpb__PutResponse *pr;
	assert_int_equal(engine_apply_put(a, &p, &pr, &err), 0);
	assert_non_null(pr->prev_kv);
	assert_true(kv_is(pr->prev_kv, "k", "1"));
	assert_int_equal(pr->header->revision, 3);
	pbfree(pr);
	/* not visible to readers before commit */
	Etcdserverpb__RangeResponse *r = get(f->e, "k");
	assert_int_equal(r->n_kvs, 0);
	assert_int_equal(r->header->revision, 1);
	pbfree(r);
	/* a second batch cannot open meanwhile */
	engine_apply *b;
	assert_int_equal(engine_apply_begin(f->e, NULL, NULL, &b, &err), MS_EINVAL);
	assert_int_equal(engine_apply_commit(a, 3, &err), 0);
	r = get(f->e, "k");
	assert_int_equal(r->kvs[0]->version, 2);
	assert_true(kv_is(r->kvs[0], "k", "2"));
	pbfree(r);
	/* an aborted batch changes nothing */
	assert_int_equal(engine_apply_begin(f->e, NULL, NULL, &a, &err), 0);
	assert_int_equal(engine_apply_put(a, &p, NULL, &err), 0);
	engine_apply_abort(a);
	assert_int_equal(engine_current_rev(f->e), 3);
	assert_int_equal(engine_consistent_index(f->e), 3);
}

/* ---- Put / DeleteRange options ---- */
static void test_put_options(void **state)
{
	fx *f = *state;
	ms_err err = {0};
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	/* stateless checks */
	assert_int_equal(engine_check_put(&p, &err), MS_EKEY_EMPTY);
	p.key = B("k");
	p.ignore_value = true;
	p.value = B("x");
	assert_int_equal(engine_check_put(&p, &err), MS_EVALUE_PROVIDED);
	p.value = B("");
	assert_int_equal(engine_check_put(&p, &err), 0);
	p.ignore_value = false;
	p.ignore_lease = true;
	p.lease = 5;
	assert_int_equal(engine_check_put(&p, &err), MS_ELEASE_PROVIDED);
	p.lease = 0;
	assert_int_equal(engine_check_put(&p, &err), 0);

	/* ignore_* on a missing key: key not found, batch still usable */
	engine_apply *a = begin(f->e);
	Etcdserverpb__PutResponse *pr = NULL;
	assert_int_equal(engine_apply_put(a, &p, &pr, &err), MS_EKEY_NOT_FOUND);
	assert_null(pr);
	p.ignore_lease = false;
	p.ignore_value = true;
	assert_int_equal(engine_apply_put(a, &p, &pr, &err), MS_EKEY_NOT_FOUND);
	/* unknown lease */
	Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
	q.key = B("k");
	q.value = B("v1");
	q.lease = 77;
	assert_int_equal(engine_apply_put(a, &q, &pr, &err), MS_ELEASE_NOT_FOUND);
	assert_int_equal(engine_apply_lease_grant(a, 77, 30, &err), 0);
	assert_int_equal(engine_apply_put(a, &q, &pr, &err), 0); /* sees the grant in the same batch */
	assert_null(pr->prev_kv);
	assert_int_equal(pr->header->revision, 2);
	pbfree(pr);
	commit(a);
	assert_true(engine_lease_exists(f->e, 77));

	/* ignore_value keeps the value, takes the new lease */
	a = begin(f->e);
	Etcdserverpb__PutRequest iv = ETCDSERVERPB__PUT_REQUEST__INIT;
	iv.key = B("k");
	iv.ignore_value = true;
	iv.prev_kv = true;
	assert_int_equal(engine_apply_put(a, &iv, &pr, &err), 0);
	assert_non_null(pr->prev_kv);
	assert_true(kv_is(pr->prev_kv, "k", "v1"));
	assert_int_equal(pr->prev_kv->lease, 77);
	pbfree(pr);
	commit(a);
	Etcdserverpb__RangeResponse *r = get(f->e, "k");
	assert_true(kv_is(r->kvs[0], "k", "v1"));
	assert_int_equal(r->kvs[0]->lease, 0); /* a put without ignore_lease detaches */
	assert_int_equal(r->kvs[0]->version, 2);
	pbfree(r);

	/* ignore_lease keeps the lease, takes the new value */
	a = begin(f->e);
	q.lease = 77;
	q.value = B("v2");
	assert_int_equal(engine_apply_put(a, &q, NULL, &err), 0);
	Etcdserverpb__PutRequest il = ETCDSERVERPB__PUT_REQUEST__INIT;
	il.key = B("k");
	il.value = B("v3");
	il.ignore_lease = true;
	assert_int_equal(engine_apply_put(a, &il, NULL, &err), 0);
	commit(a);
	r = get(f->e, "k");
	assert_true(kv_is(r->kvs[0], "k", "v3"));
	assert_int_equal(r->kvs[0]->lease, 77);
	assert_int_equal(r->kvs[0]->version, 4);
	assert_int_equal(r->kvs[0]->create_revision, 2);
	pbfree(r);
}

static void test_delete_options(void **state)
{
	fx *f = *state;
	put(f->e, "a", "1");
	put(f->e, "b", "2");
	put(f->e, "b", "22");
	put(f->e, "c", "3");
	put(f->e, "d", "4");
	int64_t rev = engine_current_rev(f->e);
	engine_apply *a = begin(f->e);
	ms_err err = {0};
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	assert_int_equal(engine_check_delete(&d, &err), MS_EKEY_EMPTY);
	assert_int_equal(engine_apply_delete(a, &d, NULL, &err), MS_EKEY_EMPTY);
	d.key = B("b");
	d.range_end = B("d");
	d.prev_kv = true;
	Etcdserverpb__DeleteRangeResponse *dr;
	assert_int_equal(engine_apply_delete(a, &d, &dr, &err), 0);
	assert_int_equal(dr->deleted, 2);
	assert_int_equal(dr->n_prev_kvs, 2);
	assert_true(kv_is(dr->prev_kvs[0], "b", "22"));
	assert_true(kv_is(dr->prev_kvs[1], "c", "3"));
	assert_int_equal(dr->header->revision, rev + 1);
	pbfree(dr);
	/* again: nothing left, no bump */
	assert_int_equal(engine_apply_delete(a, &d, &dr, &err), 0);
	assert_int_equal(dr->deleted, 0);
	assert_int_equal(dr->n_prev_kvs, 0);
	assert_int_equal(dr->header->revision, rev + 1);
	pbfree(dr);
	commit(a);
	assert_int_equal(engine_current_rev(f->e), rev + 1);
	/* "\0" end: from key */
	int64_t n;
	assert_int_equal(del(f->e, "a", "", &n), rev + 2);
	assert_int_equal(n, 2);
	Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
	q.key = (ProtobufCBinaryData){1, (uint8_t *)"\0"};
	q.range_end = (ProtobufCBinaryData){1, (uint8_t *)"\0"};
	Etcdserverpb__RangeResponse *r = rng(f->e, &q, 0);
	assert_int_equal(r->count, 0);
	pbfree(r);
	/* the old revision still has them */
	q.revision = rev;
	r = rng(f->e, &q, 0);
	assert_int_equal(r->count, 4);
	assert_int_equal(r->header->revision, rev + 2);
	pbfree(r);
}

/* ---- events ---- */
typedef struct evlog {
	int calls;
	int64_t revs[8];
	size_t counts[8];
	int types[16];
	bool has_prev[16];
	int64_t mods[16];
	size_t n;
	Mvccpb__Event *kept;
} evlog;

static void on_events(void *arg, int64_t rev, Mvccpb__Event **evs, size_t n)
{
	evlog *l = arg;
	l->revs[l->calls] = rev;
	l->counts[l->calls++] = n;
	for (size_t i = 0; i < n; i++) {
		l->types[l->n] = evs[i]->type;
		l->has_prev[l->n] = evs[i]->prev_kv != NULL;
		l->mods[l->n++] = evs[i]->kv->mod_revision;
	}
	if (!l->kept) { /* take ownership of the first event */
		l->kept = evs[0];
		evs[0] = NULL;
	}
}

static void test_events(void **state)
{
	fx *f = *state;
	put(f->e, "x", "0");
	evlog l = {0};
	engine_apply *a;
	ms_err err = {0};
	assert_int_equal(engine_apply_begin(f->e, on_events, &l, &a, &err), 0);
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = B("x");
	p.value = B("1");
	assert_int_equal(engine_apply_put(a, &p, NULL, &err), 0);
	p.key = B("y");
	assert_int_equal(engine_apply_put(a, &p, NULL, &err), 0);
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = B("x");
	d.range_end = B("z");
	assert_int_equal(engine_apply_delete(a, &d, NULL, &err), 0);
	assert_int_equal(l.calls, 0); /* nothing before commit */
	assert_int_equal(engine_apply_commit(a, 5, &err), 0);
	assert_int_equal(l.calls, 3);
	assert_int_equal(l.revs[0], 3);
	assert_int_equal(l.revs[1], 4);
	assert_int_equal(l.revs[2], 5);
	assert_int_equal(l.counts[2], 2);
	assert_int_equal(l.types[0], MVCCPB__EVENT__EVENT_TYPE__PUT);
	assert_true(l.has_prev[0]);  /* x existed */
	assert_false(l.has_prev[1]); /* y is new */
	assert_int_equal(l.types[2], MVCCPB__EVENT__EVENT_TYPE__DELETE);
	assert_true(l.has_prev[2]);
	assert_int_equal(l.mods[2], 5);
	assert_int_equal(l.mods[3], 5);
	assert_non_null(l.kept);
	assert_true(kv_is(l.kept->kv, "x", "1"));
	assert_true(kv_is(l.kept->prev_kv, "x", "0"));
	pbfree(l.kept);
}

/* ---- reopen, foreign directories, meta ---- */
static void test_reopen(void **state)
{
	fx *f = *state;
	put(f->e, "a", "1");
	put(f->e, "b", "2");
	engine_apply *a = begin(f->e);
	ms_err err = {0};
	assert_int_equal(engine_apply_meta_put(a, "members", (const uint8_t *)"abc", 3, &err), 0);
	assert_int_equal(engine_apply_lease_grant(a, 9, 60, &err), 0);
	assert_int_equal(engine_apply_compact(a, 2, NULL, &err), 0);
	assert_int_equal(engine_apply_commit(a, 42, &err), 0);
	assert_int_equal(engine_compact_wait(f->e, 2), 0);
	engine_close(f->e);
	f->e = NULL;
	engine_opts o = {0};
	assert_int_equal(engine_open(f->path, &o, &f->e, &err), 0);
	assert_int_equal(engine_current_rev(f->e), 3);
	assert_int_equal(engine_consistent_index(f->e), 42);
	assert_int_equal(engine_compact_rev(f->e), 2);
	assert_true(engine_lease_exists(f->e, 9));
	assert_false(engine_lease_exists(f->e, 10));
	uint8_t *v;
	size_t len;
	assert_int_equal(engine_meta_get(f->e, "members", &v, &len, &err), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(v, "abc", 3);
	ms_free(v);
	assert_int_equal(engine_meta_get(f->e, "nope", &v, &len, &err), MS_ENOTFOUND);
	Etcdserverpb__RangeResponse *r = get(f->e, "b");
	assert_true(kv_is(r->kvs[0], "b", "2"));
	pbfree(r);
	assert_true(engine_db_size(f->e) > 0);
	assert_true(engine_db_size_in_use(f->e) >= 0);
	/* writes continue from the restored revision */
	assert_int_equal(put(f->e, "c", "3"), 4);
}

static void test_foreign_dir(void **state)
{
	(void)state;
	char dir[] = "/tmp/test_engine_foreign.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char p[128];
	engine *e = NULL;
	ms_err err = {0};
	engine_opts o = {.create_if_missing = true};
	/* missing and not asked to create */
	snprintf(p, sizeof p, "%s/missing", dir);
	engine_opts no = {0};
	assert_int_equal(engine_open(p, &no, &e, &err), MS_ENOTFOUND);
	/* an etcd member dir with a bbolt file */
	snprintf(p, sizeof p, "%s/etcd", dir);
	mkdir(p, 0700);
	char fp[160];
	snprintf(fp, sizeof fp, "%s/db", p);
	FILE *fh = fopen(fp, "w");
	fputs("bbolt data", fh);
	fclose(fh);
	assert_int_equal(engine_open(p, &o, &e, &err), MS_ECORRUPT);
	assert_null(e);
	assert_non_null(strstr(err.msg, "not a MetaStore"));
	snprintf(fp, sizeof fp, "%s/CURRENT", p);
	assert_int_not_equal(access(fp, F_OK), 0); /* nothing created there */
	/* a plain RocksDB without our column families */
	snprintf(p, sizeof p, "%s/rocks", dir);
	rocksdb_options_t *ro = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(ro, 1);
	char *rerr = NULL;
	rocksdb_t *db = rocksdb_open(ro, p, &rerr);
	assert_null(rerr);
	rocksdb_close(db);
	rocksdb_options_destroy(ro);
	assert_int_equal(engine_open(p, &o, &e, &err), MS_ECORRUPT);
	assert_non_null(strstr(err.msg, "column family"));
	/* a file instead of a directory */
	snprintf(fp, sizeof fp, "%s/plainfile", dir);
	fh = fopen(fp, "w");
	fclose(fh);
	assert_int_equal(engine_open(fp, &o, &e, &err), MS_ECORRUPT);
	/* a store whose format marker is gone */
	snprintf(p, sizeof p, "%s/ours", dir);
	assert_int_equal(engine_open(p, &o, &e, &err), 0);
	rocksdb_delete_cf(e->db, e->wo, e->cf_meta, "format", 6, &rerr);
	assert_null(rerr);
	engine_close(e);
	e = NULL;
	assert_int_equal(engine_open(p, &o, &e, &err), MS_ECORRUPT);
	assert_non_null(strstr(err.msg, "format marker"));
	rm_rf(dir);
}

/* Fails the n-th allocation inside a batch for every n until a run needs no
 * failure: every error path runs, nothing leaks, and a failed batch either
 * commits whole or reports the failure. */
static void test_alloc_failures(void **state)
{
	fx *f = *state;
	put(f->e, "a", "0");
	put(f->e, "b", "0");
	for (long n = 1; n < 400; n++) {
		int64_t rev0 = engine_current_rev(f->e);
		engine_apply *a = begin(f->e);
		ms_err err = {0};
		ms_alloc_fail_after(n);
		Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
		p.key = B("a");
		p.value = B("1");
		p.prev_kv = true;
		Etcdserverpb__PutResponse *pr = NULL;
		int rc1 = engine_apply_put(a, &p, &pr, &err);
		Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
		d.key = B("b");
		d.prev_kv = true;
		Etcdserverpb__DeleteRangeResponse *dr = NULL;
		int rc2 = engine_apply_delete(a, &d, &dr, &err);
		Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
		rr.key = B("a");
		rr.range_end = B("z");
		Etcdserverpb__RangeResponse *rs = NULL;
		int rc3 = engine_range(f->e, &rr, &rs, &err);
		ms_alloc_fail_after(0);
		pbfree(pr);
		pbfree(dr);
		pbfree(rs);
		int rc = engine_apply_commit(a, 1, &err);
		if (rc1 == 0 && rc2 == 0 && rc3 == 0) {
			assert_int_equal(rc, 0);
			break;
		}
		/* a failure either changed nothing or poisoned the batch */
		assert_true(rc == 0 || rc == MS_EIO);
		if (rc == MS_EIO)
			assert_int_equal(engine_current_rev(f->e), rev0);
	}
	Etcdserverpb__RangeResponse *g = get(f->e, "a");
	assert_int_equal(g->n_kvs, 1);
	pbfree(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codec_roundtrip),
	    cmocka_unit_test(test_key_order),
	    cmocka_unit_test_setup_teardown(test_key_order_in_store, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_revisions, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_batch_sees_itself, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_put_options, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_delete_options, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_events, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reopen, fx_setup, fx_teardown),
	    cmocka_unit_test(test_foreign_dir),
	    cmocka_unit_test_setup_teardown(test_alloc_failures, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
