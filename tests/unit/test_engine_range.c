/* test_engine_range.c — every Range option: range_end conventions, limit,
 * more, count, sort order and target, keys_only, count_only, revision
 * filters, historical revisions and their errors. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/unit/test_engine_util.h"

/* a: v1 (rev 2) -> later "z" at rev 7 (version 2)
 * b: rev 3, c: rev 4 (value "a"), d: rev 5, e: rev 6 deleted at rev 8, f: rev 9 */
static void load(engine *e)
{
	put(e, "a", "v1");
	put(e, "b", "m");
	put(e, "c", "a");
	put(e, "d", "q");
	put(e, "e", "x");
	put(e, "a", "z");
	del(e, "e", NULL, NULL);
	put(e, "f", "b");
}

static Etcdserverpb__RangeResponse *q(engine *e, const char *k, const char *end, int64_t limit, int order, int target)
{
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	r.key = B(k);
	if (end)
		r.range_end = (ProtobufCBinaryData){end[0] ? strlen(end) : 1, (uint8_t *)end};
	r.limit = limit;
	r.sort_order = order;
	r.sort_target = target;
	return rng(e, &r, 0);
}

static void expect_keys(const Etcdserverpb__RangeResponse *r, const char *keys)
{
	assert_int_equal(r->n_kvs, strlen(keys));
	for (size_t i = 0; i < r->n_kvs; i++) {
		assert_int_equal(r->kvs[i]->key.len, 1);
		assert_int_equal(r->kvs[i]->key.data[0], keys[i]);
	}
}

static void test_range_ends(void **state)
{
	fx *f = *state;
	load(f->e);
	Etcdserverpb__RangeResponse *r = q(f->e, "b", NULL, 0, 0, 0);
	expect_keys(r, "b");
	assert_int_equal(r->count, 1);
	assert_int_equal(r->header->revision, 9);
	pbfree(r);
	r = q(f->e, "e", NULL, 0, 0, 0); /* deleted */
	expect_keys(r, "");
	assert_int_equal(r->count, 0);
	pbfree(r);
	r = q(f->e, "b", "e", 0, 0, 0);
	expect_keys(r, "bcd");
	pbfree(r);
	r = q(f->e, "c", "", 0, 0, 0); /* "\0": from key */
	expect_keys(r, "cdf");
	pbfree(r);
	r = q(f->e, "d", "b", 0, 0, 0); /* end <= key: empty, no error */
	expect_keys(r, "");
	pbfree(r);
	r = q(f->e, "a", "a", 0, 0, 0);
	expect_keys(r, "");
	pbfree(r);
	/* prefix: put a/1 a/2 ab; prefix "a/" -> end "a0" */
	put(f->e, "a/1", "p");
	put(f->e, "a/2", "p");
	put(f->e, "ab", "p");
	r = q(f->e, "a/", "a0", 0, 0, 0);
	assert_int_equal(r->n_kvs, 2);
	assert_true(kv_is(r->kvs[0], "a/1", "p"));
	assert_true(kv_is(r->kvs[1], "a/2", "p"));
	pbfree(r);
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	ms_err err = {0};
	Etcdserverpb__RangeResponse *out = NULL;
	assert_int_equal(engine_check_range(&rr, &err), MS_EKEY_EMPTY);
	assert_int_equal(engine_range(f->e, &rr, &out, &err), MS_EKEY_EMPTY);
	assert_null(out);
}

static void test_range_limit_count(void **state)
{
	fx *f = *state;
	load(f->e);
	Etcdserverpb__RangeResponse *r = q(f->e, "a", "", 2, 0, 0);
	expect_keys(r, "ab");
	assert_true(r->more);
	assert_int_equal(r->count, 5); /* count ignores limit */
	pbfree(r);
	r = q(f->e, "a", "", 5, 0, 0);
	expect_keys(r, "abcdf");
	assert_false(r->more);
	pbfree(r);
	r = q(f->e, "a", "", 4, 0, 0);
	assert_true(r->more);
	pbfree(r);
	/* count_only */
	Etcdserverpb__RangeRequest c = ETCDSERVERPB__RANGE_REQUEST__INIT;
	c.key = B("a");
	c.range_end = (ProtobufCBinaryData){1, (uint8_t *)""};
	c.count_only = true;
	r = rng(f->e, &c, 0);
	assert_int_equal(r->n_kvs, 0);
	assert_int_equal(r->count, 5);
	pbfree(r);
	/* keys_only */
	c.count_only = false;
	c.keys_only = true;
	r = rng(f->e, &c, 0);
	assert_int_equal(r->n_kvs, 5);
	for (size_t i = 0; i < r->n_kvs; i++) {
		assert_int_equal(r->kvs[i]->value.len, 0);
		assert_true(r->kvs[i]->mod_revision > 0);
	}
	pbfree(r);
}

static void test_range_sort(void **state)
{
	fx *f = *state;
	load(f->e);
	enum { NONE = 0, ASC = 1, DESC = 2 };
	enum { KEY = 0, VERSION = 1, CREATE = 2, MOD = 3, VALUE = 4 };
	Etcdserverpb__RangeResponse *r = q(f->e, "a", "", 0, DESC, KEY);
	expect_keys(r, "fdcba");
	pbfree(r);
	r = q(f->e, "a", "", 0, ASC, MOD); /* mods: b3 c4 d5 a7 f9 */
	expect_keys(r, "bcdaf");
	pbfree(r);
	r = q(f->e, "a", "", 0, DESC, MOD);
	expect_keys(r, "fadcb");
	pbfree(r);
	r = q(f->e, "a", "", 0, DESC, CREATE); /* creates: a2 b3 c4 d5 f9 */
	expect_keys(r, "fdcba");
	pbfree(r);
	r = q(f->e, "a", "", 0, ASC, VALUE); /* values: a=z b=m c=a d=q f=b */
	expect_keys(r, "cfbda");
	pbfree(r);
	r = q(f->e, "a", "", 0, DESC, VERSION); /* a has version 2, the rest 1 (ties in key order) */
	assert_true(kv_is(r->kvs[0], "a", "z"));
	pbfree(r);
	/* target without order sorts ascending */
	r = q(f->e, "a", "", 0, NONE, MOD);
	expect_keys(r, "bcdaf");
	pbfree(r);
	/* sort then limit */
	r = q(f->e, "a", "", 2, DESC, MOD);
	expect_keys(r, "fa");
	assert_true(r->more);
	assert_int_equal(r->count, 5);
	pbfree(r);
	/* etcd quirk: order NONE with a target fetches limit+1 keys in key order
	 * first, then sorts them: a,b,c by mod -> b,c,a -> limit 2 -> b,c */
	r = q(f->e, "a", "", 2, NONE, MOD);
	expect_keys(r, "bc");
	assert_true(r->more);
	pbfree(r);
	/* keys_only with a VALUE sort still sorts by value */
	Etcdserverpb__RangeRequest k = ETCDSERVERPB__RANGE_REQUEST__INIT;
	k.key = B("a");
	k.range_end = (ProtobufCBinaryData){1, (uint8_t *)""};
	k.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	k.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;
	k.keys_only = true;
	r = rng(f->e, &k, 0);
	expect_keys(r, "cfbda");
	assert_int_equal(r->kvs[0]->value.len, 0);
	pbfree(r);
}

static void test_range_filters(void **state)
{
	fx *f = *state;
	load(f->e);
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	r.key = B("a");
	r.range_end = (ProtobufCBinaryData){1, (uint8_t *)""};
	r.min_mod_revision = 4;
	r.max_mod_revision = 7;
	Etcdserverpb__RangeResponse *resp = rng(f->e, &r, 0);
	expect_keys(resp, "acd");
	assert_int_equal(resp->count, 5); /* count ignores the filters */
	pbfree(resp);
	r.limit = 2;
	resp = rng(f->e, &r, 0);
	expect_keys(resp, "ac");
	assert_true(resp->more); /* more is computed after filtering */
	pbfree(resp);
	r.limit = 3;
	resp = rng(f->e, &r, 0);
	expect_keys(resp, "acd");
	assert_false(resp->more);
	pbfree(resp);
	Etcdserverpb__RangeRequest c = ETCDSERVERPB__RANGE_REQUEST__INIT;
	c.key = B("a");
	c.range_end = (ProtobufCBinaryData){1, (uint8_t *)""};
	c.min_create_revision = 3;
	c.max_create_revision = 5;
	resp = rng(f->e, &c, 0);
	expect_keys(resp, "bcd");
	pbfree(resp);
}

static void test_range_revisions(void **state)
{
	fx *f = *state;
	load(f->e);
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	r.key = B("a");
	r.range_end = (ProtobufCBinaryData){1, (uint8_t *)""};
	r.revision = 6; /* before a's second put and e's deletion */
	Etcdserverpb__RangeResponse *resp = rng(f->e, &r, 0);
	expect_keys(resp, "abcde");
	assert_true(kv_is(resp->kvs[0], "a", "v1"));
	assert_int_equal(resp->header->revision, 9); /* header: current */
	pbfree(resp);
	r.revision = 1;
	resp = rng(f->e, &r, 0);
	expect_keys(resp, "");
	pbfree(resp);
	r.revision = 10;
	assert_null(rng(f->e, &r, MS_EFUTURE_REV));
	/* compaction at 5: rev 5 still readable, 4 is not */
	engine_apply *a = begin(f->e);
	ms_err err = {0};
	Etcdserverpb__CompactionResponse *cr;
	assert_int_equal(engine_apply_compact(a, 5, &cr, &err), 0);
	assert_int_equal(cr->header->revision, 9);
	pbfree(cr);
	commit(a);
	assert_int_equal(engine_compact_wait(f->e, 5), 0);
	r.revision = 4;
	assert_null(rng(f->e, &r, MS_ECOMPACTED));
	r.revision = 5;
	resp = rng(f->e, &r, 0);
	expect_keys(resp, "abcd");
	assert_true(kv_is(resp->kvs[0], "a", "v1"));
	pbfree(resp);
	r.revision = 7;
	resp = rng(f->e, &r, 0);
	expect_keys(resp, "abcde");
	assert_true(kv_is(resp->kvs[0], "a", "z"));
	pbfree(resp);
}

static void test_range_many_versions(void **state)
{
	fx *f = *state;
	/* many versions per key exercise the seek-to-next-key path */
	for (int i = 0; i < 20; i++) {
		char k[16], v[16];
		for (int j = 0; j < 5; j++) {
			snprintf(k, sizeof k, "k%d", j);
			snprintf(v, sizeof v, "%d", i);
			put(f->e, k, v);
		}
	}
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	r.key = B("k");
	r.range_end = B("l");
	Etcdserverpb__RangeResponse *resp = rng(f->e, &r, 0);
	assert_int_equal(resp->n_kvs, 5);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(resp->kvs[i]->version, 20);
		assert_true(kv_is(resp->kvs[i], (char[]){'k', (char)('0' + i), 0}, "19"));
	}
	pbfree(resp);
	r.revision = 2 + 5 * 10 + 2; /* round 10, key k2 just written */
	resp = rng(f->e, &r, 0);
	assert_int_equal(resp->n_kvs, 5);
	assert_true(kv_is(resp->kvs[2], "k2", "10"));
	assert_true(kv_is(resp->kvs[3], "k3", "9"));
	pbfree(resp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_range_ends, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_range_limit_count, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_range_sort, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_range_filters, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_range_revisions, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_range_many_versions, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
