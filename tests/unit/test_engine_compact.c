/* test_engine_compact.c — compaction (logical and physical), HashKV, the
 * history walk, leases, import and checkpoint. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/unit/test_engine_util.h"

static size_t count_rows(engine *e, rocksdb_column_family_handle_t *cf)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(e->db, e->ro, cf);
	size_t n = 0;
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it))
		n++;
	rocksdb_iter_destroy(it);
	return n;
}

static void compact(engine *e, int64_t rev, int want)
{
	engine_apply *a = begin(e);
	ms_err err = {0};
	assert_int_equal(engine_apply_compact(a, rev, NULL, &err), want);
	commit(a);
}

static void test_compaction(void **state)
{
	fx *f = *state;
	put(f->e, "a", "1");        /* 2 */
	put(f->e, "a", "2");        /* 3 */
	put(f->e, "b", "1");        /* 4 */
	del(f->e, "b", NULL, NULL); /* 5 */
	put(f->e, "c", "1");        /* 6 */
	put(f->e, "a", "3");        /* 7 */
	assert_int_equal(count_rows(f->e, f->e->cf_kv), 6);
	assert_int_equal(count_rows(f->e, f->e->cf_rev), 6);
	uint32_t h1, h2;
	int64_t hr, cr;
	ms_err err = {0};
	assert_int_equal(engine_hash_kv(f->e, 0, &h1, &hr, &cr, &err), 0);
	assert_int_equal(hr, 7);
	assert_int_equal(cr, 0);
	compact(f->e, 8, MS_EFUTURE_REV);
	compact(f->e, 6, 0);
	assert_int_equal(engine_compact_rev(f->e), 6);
	assert_int_equal(engine_compact_wait(f->e, 6), 0);
	/* a: keep 3 (newest <= 6) and 7; b: tombstone at 5 goes with its put; c: keep 6 */
	assert_int_equal(count_rows(f->e, f->e->cf_kv), 3);
	assert_int_equal(count_rows(f->e, f->e->cf_rev), 2); /* revisions 6 and 7 */
	compact(f->e, 6, MS_ECOMPACTED);
	compact(f->e, 5, MS_ECOMPACTED);
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	r.key = B("a");
	r.range_end = (ProtobufCBinaryData){1, (uint8_t *)""};
	r.revision = 6;
	Etcdserverpb__RangeResponse *resp = rng(f->e, &r, 0);
	assert_int_equal(resp->n_kvs, 2);
	assert_true(kv_is(resp->kvs[0], "a", "2"));
	assert_true(kv_is(resp->kvs[1], "c", "1"));
	pbfree(resp);
	r.revision = 5;
	assert_null(rng(f->e, &r, MS_ECOMPACTED));
	/* HashKV */
	assert_int_equal(engine_hash_kv(f->e, 5, &h2, &hr, &cr, &err), MS_ECOMPACTED);
	assert_int_equal(engine_hash_kv(f->e, 6, &h2, &hr, &cr, &err), MS_ECOMPACTED);
	assert_int_equal(engine_hash_kv(f->e, 9, &h2, &hr, &cr, &err), MS_EFUTURE_REV);
	assert_int_equal(engine_hash_kv(f->e, 7, &h2, &hr, &cr, &err), 0);
	assert_int_equal(cr, 6);
	/* writes continue after compaction with correct versions */
	assert_int_equal(put(f->e, "a", "4"), 8);
	Etcdserverpb__RangeResponse *g = get(f->e, "a");
	assert_int_equal(g->kvs[0]->version, 4);
	assert_int_equal(g->kvs[0]->create_revision, 2);
	pbfree(g);
	g = get(f->e, "b");
	assert_int_equal(g->n_kvs, 0);
	pbfree(g);
	(void)h1;
}

/* Two stores with the same history hash the same, whether or not the
 * background removal has run. */
static void test_hash_deterministic(void **state)
{
	fx *f = *state;
	char dir[] = "/tmp/test_engine_h.XXXXXX";
	assert_non_null(mkdtemp(dir));
	char p[96];
	snprintf(p, sizeof p, "%s/db", dir);
	engine *e2;
	ms_err err = {0};
	engine_opts o = {.create_if_missing = true};
	assert_int_equal(engine_open(p, &o, &e2, &err), 0);
	engine *es[] = {f->e, e2};
	for (int i = 0; i < 2; i++) {
		put(es[i], "x", "1");
		put(es[i], "y", "1");
		put(es[i], "x", "2");
		del(es[i], "y", NULL, NULL);
		put(es[i], "z", "1");
	}
	uint32_t h[2];
	int64_t hr, cr;
	for (int i = 0; i < 2; i++)
		assert_int_equal(engine_hash_kv(es[i], 0, &h[i], &hr, &cr, &err), 0);
	assert_int_equal(h[0], h[1]);
	compact(f->e, 5, 0);
	compact(e2, 5, 0);
	assert_int_equal(engine_hash_kv(f->e, 0, &h[0], &hr, &cr, &err), 0); /* maybe before removal */
	assert_int_equal(engine_compact_wait(e2, 5), 0);
	assert_int_equal(engine_hash_kv(e2, 0, &h[1], &hr, &cr, &err), 0);
	assert_int_equal(h[0], h[1]);
	assert_int_equal(engine_compact_wait(f->e, 5), 0);
	assert_int_equal(engine_hash_kv(f->e, 0, &h[0], &hr, &cr, &err), 0);
	assert_int_equal(h[0], h[1]);
	/* a different history hashes differently */
	put(e2, "w", "1");
	put(f->e, "w", "2");
	assert_int_equal(engine_hash_kv(f->e, 0, &h[0], &hr, &cr, &err), 0);
	assert_int_equal(engine_hash_kv(e2, 0, &h[1], &hr, &cr, &err), 0);
	assert_int_not_equal(h[0], h[1]);
	engine_close(e2);
	rm_rf(dir);
}

typedef struct hlog {
	int n;
	int types[32];
	int64_t mods[32];
	char keys[32];
	bool prev[32];
	char prevval[32];
} hlog;

static int hist_cb(void *arg, const Mvccpb__Event *ev)
{
	hlog *l = arg;
	l->types[l->n] = ev->type;
	l->mods[l->n] = ev->kv->mod_revision;
	l->keys[l->n] = (char)ev->kv->key.data[0];
	l->prev[l->n] = ev->prev_kv != NULL;
	l->prevval[l->n] = ev->prev_kv ? (char)ev->prev_kv->value.data[0] : 0;
	l->n++;
	return 0;
}

static void test_history(void **state)
{
	fx *f = *state;
	put(f->e, "a", "1");       /* 2 */
	put(f->e, "b", "1");       /* 3 */
	put(f->e, "a", "2");       /* 4 */
	del(f->e, "a", "c", NULL); /* 5: a and b */
	put(f->e, "c", "1");       /* 6 */
	hlog l = {0};
	int64_t next;
	ms_err err = {0};
	static const uint8_t zero = 0;
	assert_int_equal(engine_history(f->e, &zero, 1, &zero, 1, 1, 0, true, 0, hist_cb, &l, &next, &err), 0);
	assert_int_equal(l.n, 6);
	assert_int_equal(next, 7);
	assert_int_equal(l.mods[0], 2);
	assert_int_equal(l.mods[3], 5);
	assert_int_equal(l.mods[4], 5);
	assert_int_equal(l.types[3], MVCCPB__EVENT__EVENT_TYPE__DELETE);
	assert_int_equal(l.keys[3], 'a');
	assert_int_equal(l.keys[4], 'b');
	assert_false(l.prev[0]);
	assert_true(l.prev[2]);
	assert_int_equal(l.prevval[2], '1');
	assert_true(l.prev[3]);
	assert_int_equal(l.prevval[3], '2');
	/* single key, from revision 3 */
	memset(&l, 0, sizeof l);
	assert_int_equal(
	    engine_history(f->e, (const uint8_t *)"a", 1, NULL, 0, 3, 0, false, 0, hist_cb, &l, &next, &err), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.mods[0], 4);
	assert_false(l.prev[0]);
	/* max_events stops on a revision boundary: revision 5 stays whole */
	memset(&l, 0, sizeof l);
	assert_int_equal(engine_history(f->e, &zero, 1, &zero, 1, 1, 0, false, 4, hist_cb, &l, &next, &err), 0);
	assert_int_equal(l.n, 5);
	assert_int_equal(next, 6);
	memset(&l, 0, sizeof l);
	assert_int_equal(engine_history(f->e, &zero, 1, &zero, 1, 1, 0, false, 2, hist_cb, &l, &next, &err), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(next, 4);
	/* end_rev bounds the walk */
	memset(&l, 0, sizeof l);
	assert_int_equal(engine_history(f->e, &zero, 1, &zero, 1, 1, 3, false, 0, hist_cb, &l, &next, &err), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(next, 4);
	/* compacted start */
	compact(f->e, 5, 0);
	assert_int_equal(engine_compact_wait(f->e, 5), 0);
	assert_int_equal(engine_history(f->e, &zero, 1, &zero, 1, 4, 0, false, 0, hist_cb, &l, &next, &err),
	                 MS_ECOMPACTED);
	memset(&l, 0, sizeof l);
	assert_int_equal(engine_history(f->e, &zero, 1, &zero, 1, 5, 0, false, 0, hist_cb, &l, &next, &err), 0);
	assert_int_equal(l.n, 3); /* the deletes at the compact revision and the put at 6 */
}

typedef struct lease_log {
	int n;
	int64_t ids[8], ttls[8];
	size_t nkeys[8];
	char first[8];
} lease_log;

static int lease_cb(void *arg, int64_t id, int64_t ttl, const uint8_t *const *keys, const size_t *lens, size_t n)
{
	lease_log *l = arg;
	l->ids[l->n] = id;
	l->ttls[l->n] = ttl;
	l->nkeys[l->n] = n;
	l->first[l->n] = n ? (char)keys[0][0] : 0;
	(void)lens;
	l->n++;
	return 0;
}

static void test_leases(void **state)
{
	fx *f = *state;
	engine_apply *a = begin(f->e);
	ms_err err = {0};
	assert_int_equal(engine_apply_lease_grant(a, 1, 10, &err), 0);
	assert_int_equal(engine_apply_lease_grant(a, 2, 20, &err), 0);
	assert_int_equal(engine_apply_lease_grant(a, 1, 10, &err), MS_ELEASE_EXISTS);
	commit(a);
	assert_int_equal(engine_current_rev(f->e), 1); /* grants do not bump */
	put_l(f->e, "k1", "v", 1);
	put_l(f->e, "k2", "v", 1);
	put_l(f->e, "k3", "v", 2);
	put_l(f->e, "k3", "v", 1); /* moves k3 from lease 2 to 1 */
	put_l(f->e, "k4", "v", 2);
	put(f->e, "k4", "v"); /* detaches */
	lease_log l = {0};
	assert_int_equal(engine_leases(f->e, lease_cb, &l, &err), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.ids[0], 1);
	assert_int_equal(l.ttls[0], 10);
	assert_int_equal(l.nkeys[0], 3);
	assert_int_equal(l.nkeys[1], 0);
	int64_t rev = engine_current_rev(f->e);
	a = begin(f->e);
	assert_int_equal(engine_apply_lease_revoke(a, 99, &err), MS_ELEASE_NOT_FOUND);
	assert_int_equal(engine_apply_lease_revoke(a, 1, &err), 0);
	assert_int_equal(engine_apply_lease_revoke(a, 2, &err), 0); /* no keys: no bump */
	commit(a);
	assert_int_equal(engine_current_rev(f->e), rev + 1);
	assert_false(engine_lease_exists(f->e, 1));
	assert_false(engine_lease_exists(f->e, 2));
	Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
	r.key = B("k");
	r.range_end = B("l");
	Etcdserverpb__RangeResponse *resp = rng(f->e, &r, 0);
	assert_int_equal(resp->n_kvs, 1);
	assert_true(kv_is(resp->kvs[0], "k4", "v"));
	pbfree(resp);
	/* all three deletions carry one revision */
	hlog hl = {0};
	int64_t next;
	assert_int_equal(engine_history(f->e, (const uint8_t *)"k", 1, (const uint8_t *)"l", 1, rev + 1, 0, false, 0,
	                                hist_cb, &hl, &next, &err),
	                 0);
	assert_int_equal(hl.n, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(hl.mods[i], rev + 1);
	memset(&l, 0, sizeof l);
	assert_int_equal(engine_leases(f->e, lease_cb, &l, &err), 0);
	assert_int_equal(l.n, 0);
}

static void test_import_and_checkpoint(void **state)
{
	fx *f = *state;
	ms_err err = {0};
	engine_kv kvs[] = {
	    {(const uint8_t *)"a", 1, (const uint8_t *)"1", 1, 2, 2, 1, 0},
	    {(const uint8_t *)"a", 1, (const uint8_t *)"2", 1, 2, 5, 2, 7},
	    {(const uint8_t *)"b", 1, (const uint8_t *)"x", 1, 5, 5, 1, 0},
	};
	for (size_t i = 0; i < MS_ARRAY_LEN(kvs); i++)
		assert_int_equal(engine_import_kv(f->e, &kvs[i], &err), 0);
	assert_int_equal(engine_import_lease(f->e, 7, 30, &err), 0);
	engine_kv bad = {(const uint8_t *)"", 0, NULL, 0, 2, 2, 1, 0};
	assert_int_equal(engine_import_kv(f->e, &bad, &err), MS_EINVAL);
	assert_int_equal(engine_import_finish(f->e, 6, 2, &err), 0);
	assert_int_equal(engine_current_rev(f->e), 6);
	assert_int_equal(engine_compact_rev(f->e), 2);
	assert_int_equal(engine_import_kv(f->e, &kvs[0], &err), MS_EINVAL); /* no longer fresh */
	Etcdserverpb__RangeResponse *g = get(f->e, "a");
	assert_true(kv_is(g->kvs[0], "a", "2"));
	assert_int_equal(g->kvs[0]->lease, 7);
	assert_int_equal(g->kvs[0]->version, 2);
	pbfree(g);
	lease_log l = {0};
	assert_int_equal(engine_leases(f->e, lease_cb, &l, &err), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.nkeys[0], 1);
	assert_int_equal(l.first[0], 'a');
	assert_int_equal(put(f->e, "c", "1"), 7);
	/* checkpoint: a consistent, openable copy */
	char cp[128];
	snprintf(cp, sizeof cp, "%s/cp", f->dir);
	assert_int_equal(engine_checkpoint(f->e, cp, &err), 0);
	engine *e2;
	engine_opts o = {0};
	assert_int_equal(engine_open(cp, &o, &e2, &err), 0);
	assert_int_equal(engine_current_rev(e2), 7);
	g = get(e2, "c");
	assert_int_equal(g->n_kvs, 1);
	pbfree(g);
	engine_close(e2);
}

/* Readers on other threads while the apply thread writes x and y together
 * in txns and compacts: every read sees x == y (one revision per read). */
typedef struct rdr {
	engine *e;
	_Atomic int stop;
	_Atomic int bad;
	_Atomic long reads;
} rdr;

static void *reader_main(void *arg)
{
	rdr *r = arg;
	while (!atomic_load(&r->stop)) {
		Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
		q.key = B("x");
		q.range_end = B("z");
		Etcdserverpb__RangeResponse *resp;
		ms_err err = {0};
		if (engine_range(r->e, &q, &resp, &err)) {
			atomic_store(&r->bad, 1);
			break;
		}
		if (resp->n_kvs == 2 &&
		    (resp->kvs[0]->value.len != resp->kvs[1]->value.len ||
		     memcmp(resp->kvs[0]->value.data, resp->kvs[1]->value.data, resp->kvs[0]->value.len) ||
		     resp->kvs[0]->mod_revision != resp->kvs[1]->mod_revision))
			atomic_store(&r->bad, 1);
		if (resp->n_kvs == 1)
			atomic_store(&r->bad, 1);
		pbfree(resp);
		atomic_fetch_add(&r->reads, 1);
	}
	return NULL;
}

static void test_concurrent_reads(void **state)
{
	fx *f = *state;
	rdr r = {.e = f->e};
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, reader_main, &r);
	for (int i = 0; i < 400; i++) {
		char v[16];
		snprintf(v, sizeof v, "%d", i);
		Etcdserverpb__PutRequest px = ETCDSERVERPB__PUT_REQUEST__INIT, py = ETCDSERVERPB__PUT_REQUEST__INIT;
		px.key = B("x");
		px.value = B(v);
		py.key = B("y");
		py.value = B(v);
		Etcdserverpb__RequestOp ox = ETCDSERVERPB__REQUEST_OP__INIT, oy = ETCDSERVERPB__REQUEST_OP__INIT;
		ox.request_case = oy.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
		ox.request_put = &px;
		oy.request_put = &py;
		Etcdserverpb__RequestOp *ops[] = {&ox, &oy};
		Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
		t.n_success = 2;
		t.success = ops;
		engine_apply *a = begin(f->e);
		ms_err err = {0};
		Etcdserverpb__TxnResponse *tr;
		assert_int_equal(engine_apply_txn(a, &t, &tr, &err), 0);
		pbfree(tr);
		if (i % 50 == 49)
			assert_int_equal(engine_apply_compact(a, engine_current_rev(f->e), NULL, &err), 0);
		commit(a);
	}
	atomic_store(&r.stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(atomic_load(&r.bad), 0);
	assert_true(atomic_load(&r.reads) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_compaction, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_hash_deterministic, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_history, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_leases, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_import_and_checkpoint, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_reads, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
