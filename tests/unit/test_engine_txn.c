/* test_engine_txn.c — Txn: compares of every target and result on present,
 * missing and ranged keys, nested txns and their headers, the request
 * checks (too many ops, duplicate keys) and failure without side effects. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/unit/test_engine_util.h"

enum { EQ = 0, GT = 1, LT = 2, NE = 3 };
enum { T_VERSION = 0, T_CREATE = 1, T_MOD = 2, T_VALUE = 3, T_LEASE = 4 };

static Etcdserverpb__Compare mkcmp(const char *k, int target, int result, int64_t n, const char *v)
{
	Etcdserverpb__Compare c = ETCDSERVERPB__COMPARE__INIT;
	c.key = B(k);
	c.target = target;
	c.result = result;
	switch (target) {
	case T_VERSION:
		c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
		c.version = n;
		break;
	case T_CREATE:
		c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
		c.create_revision = n;
		break;
	case T_MOD:
		c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
		c.mod_revision = n;
		break;
	case T_VALUE:
		c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
		c.value = B(v);
		break;
	case T_LEASE:
		c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
		c.lease = n;
		break;
	}
	return c;
}

/* Runs a txn with just one compare and no ops; returns succeeded. */
static bool cmp1(engine *e, Etcdserverpb__Compare c)
{
	Etcdserverpb__Compare *cs[] = {&c};
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.n_compare = 1;
	t.compare = cs;
	engine_apply *a = begin(e);
	ms_err err = {0};
	Etcdserverpb__TxnResponse *r;
	assert_int_equal(engine_apply_txn(a, &t, &r, &err), 0);
	bool ok = r->succeeded;
	pbfree(r);
	commit(a);
	return ok;
}

static void test_txn_compares(void **state)
{
	fx *f = *state;
	engine_apply *a = begin(f->e);
	ms_err err = {0};
	assert_int_equal(engine_apply_lease_grant(a, 5, 10, &err), 0);
	commit(a);
	put(f->e, "k", "m");      /* rev 2: create 2 */
	put_l(f->e, "k", "m", 5); /* rev 3: version 2, mod 3, lease 5 */
	put(f->e, "k2", "n");     /* rev 4 */
	/* version = 2 */
	assert_true(cmp1(f->e, mkcmp("k", T_VERSION, EQ, 2, NULL)));
	assert_false(cmp1(f->e, mkcmp("k", T_VERSION, EQ, 1, NULL)));
	assert_true(cmp1(f->e, mkcmp("k", T_VERSION, GT, 1, NULL)));
	assert_false(cmp1(f->e, mkcmp("k", T_VERSION, GT, 2, NULL)));
	assert_true(cmp1(f->e, mkcmp("k", T_VERSION, LT, 3, NULL)));
	assert_false(cmp1(f->e, mkcmp("k", T_VERSION, LT, 2, NULL)));
	assert_true(cmp1(f->e, mkcmp("k", T_VERSION, NE, 1, NULL)));
	assert_false(cmp1(f->e, mkcmp("k", T_VERSION, NE, 2, NULL)));
	/* create = 2, mod = 3 */
	assert_true(cmp1(f->e, mkcmp("k", T_CREATE, EQ, 2, NULL)));
	assert_true(cmp1(f->e, mkcmp("k", T_CREATE, LT, 3, NULL)));
	assert_false(cmp1(f->e, mkcmp("k", T_CREATE, GT, 2, NULL)));
	assert_true(cmp1(f->e, mkcmp("k", T_MOD, EQ, 3, NULL)));
	assert_true(cmp1(f->e, mkcmp("k", T_MOD, GT, 2, NULL)));
	assert_true(cmp1(f->e, mkcmp("k", T_MOD, NE, 2, NULL)));
	/* value "m" */
	assert_true(cmp1(f->e, mkcmp("k", T_VALUE, EQ, 0, "m")));
	assert_true(cmp1(f->e, mkcmp("k", T_VALUE, GT, 0, "l")));
	assert_true(cmp1(f->e, mkcmp("k", T_VALUE, LT, 0, "mm")));
	assert_true(cmp1(f->e, mkcmp("k", T_VALUE, NE, 0, "x")));
	assert_false(cmp1(f->e, mkcmp("k", T_VALUE, EQ, 0, "x")));
	/* lease 5 */
	assert_true(cmp1(f->e, mkcmp("k", T_LEASE, EQ, 5, NULL)));
	assert_true(cmp1(f->e, mkcmp("k", T_LEASE, GT, 0, NULL)));
	assert_false(cmp1(f->e, mkcmp("k2", T_LEASE, NE, 0, NULL)));
	/* missing key: compares against zero, VALUE always false */
	assert_true(cmp1(f->e, mkcmp("nope", T_CREATE, EQ, 0, NULL)));
	assert_true(cmp1(f->e, mkcmp("nope", T_VERSION, EQ, 0, NULL)));
	assert_true(cmp1(f->e, mkcmp("nope", T_MOD, LT, 1, NULL)));
	assert_true(cmp1(f->e, mkcmp("nope", T_LEASE, EQ, 0, NULL)));
	assert_false(cmp1(f->e, mkcmp("nope", T_VALUE, EQ, 0, "")));
	assert_false(cmp1(f->e, mkcmp("nope", T_VALUE, NE, 0, "x")));
	/* ranges: every key must satisfy */
	Etcdserverpb__Compare c = mkcmp("k", T_VERSION, GT, 0, NULL);
	c.range_end = B("l");
	assert_true(cmp1(f->e, c));
	c = mkcmp("k", T_VERSION, EQ, 2, NULL);
	c.range_end = B("l");
	assert_false(cmp1(f->e, c)); /* k2 has version 1 */
	c = mkcmp("a", T_CREATE, EQ, 0, NULL);
	c.range_end = B("b");
	assert_true(cmp1(f->e, c)); /* empty range compares against zero */
	c = mkcmp("k", T_MOD, GT, 1, NULL);
	c.range_end = (ProtobufCBinaryData){1, (uint8_t *)""};
	assert_true(cmp1(f->e, c));
	/* unset target_union compares against 0 / empty */
	Etcdserverpb__Compare u = ETCDSERVERPB__COMPARE__INIT;
	u.key = B("k");
	u.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
	u.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
	assert_true(cmp1(f->e, u));
	assert_int_equal(engine_current_rev(f->e), 4); /* compares alone never bump */
}

static Etcdserverpb__RequestOp op_put(Etcdserverpb__PutRequest *p)
{
	Etcdserverpb__RequestOp o = ETCDSERVERPB__REQUEST_OP__INIT;
	o.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	o.request_put = p;
	return o;
}
static Etcdserverpb__RequestOp op_range(Etcdserverpb__RangeRequest *r)
{
	Etcdserverpb__RequestOp o = ETCDSERVERPB__REQUEST_OP__INIT;
	o.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	o.request_range = r;
	return o;
}
static Etcdserverpb__RequestOp op_del(Etcdserverpb__DeleteRangeRequest *d)
{
	Etcdserverpb__RequestOp o = ETCDSERVERPB__REQUEST_OP__INIT;
	o.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	o.request_delete_range = d;
	return o;
}
static Etcdserverpb__RequestOp op_txn(Etcdserverpb__TxnRequest *t)
{
	Etcdserverpb__RequestOp o = ETCDSERVERPB__REQUEST_OP__INIT;
	o.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
	o.request_txn = t;
	return o;
}

static void test_txn_ops_and_headers(void **state)
{
	fx *f = *state;
	put(f->e, "a", "1"); /* rev 2 */
	/* success: range a, put b, range b, delete a, nested txn (compare b
	 * missing -> true on the pre-txn view) with a put c */
	Etcdserverpb__RangeRequest ra = ETCDSERVERPB__RANGE_REQUEST__INIT, rb = ETCDSERVERPB__RANGE_REQUEST__INIT;
	ra.key = B("a");
	rb.key = B("b");
	Etcdserverpb__PutRequest pb = ETCDSERVERPB__PUT_REQUEST__INIT, pc = ETCDSERVERPB__PUT_REQUEST__INIT;
	pb.key = B("b");
	pb.value = B("2");
	pc.key = B("c");
	pc.value = B("3");
	Etcdserverpb__DeleteRangeRequest da = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	da.key = B("a");
	da.prev_kv = true;
	Etcdserverpb__Compare nc = mkcmp("b", T_VERSION, EQ, 0, NULL);
	Etcdserverpb__Compare *ncs[] = {&nc};
	Etcdserverpb__RequestOp n1 = op_put(&pc);
	Etcdserverpb__RequestOp *nops[] = {&n1};
	Etcdserverpb__TxnRequest nested = ETCDSERVERPB__TXN_REQUEST__INIT;
	nested.n_compare = 1;
	nested.compare = ncs;
	nested.n_success = 1;
	nested.success = nops;
	Etcdserverpb__RequestOp o1 = op_range(&ra), o2 = op_put(&pb), o3 = op_range(&rb), o4 = op_del(&da),
	                        o5 = op_txn(&nested);
	Etcdserverpb__RequestOp *ops[] = {&o1, &o2, &o3, &o4, &o5};
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.n_success = 5;
	t.success = ops;
	ms_err err = {0};
	assert_int_equal(engine_check_txn(&t, 128, &err), 0);
	engine_apply *a = begin(f->e);
	Etcdserverpb__TxnResponse *r;
	assert_int_equal(engine_apply_txn(a, &t, &r, &err), 0);
	assert_true(r->succeeded);
	assert_int_equal(r->header->revision, 3);
	assert_int_equal(r->n_responses, 5);
	/* a range before the first write shows the old revision, after it the new */
	assert_int_equal(r->responses[0]->response_case, ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE);
	assert_int_equal(r->responses[0]->response_range->header->revision, 2);
	assert_int_equal(r->responses[0]->response_range->n_kvs, 1);
	assert_int_equal(r->responses[1]->response_put->header->revision, 3);
	assert_int_equal(r->responses[2]->response_range->header->revision, 3);
	assert_int_equal(r->responses[2]->response_range->n_kvs, 1); /* sees the put */
	assert_true(kv_is(r->responses[2]->response_range->kvs[0], "b", "2"));
	assert_int_equal(r->responses[3]->response_delete_range->deleted, 1);
	assert_int_equal(r->responses[3]->response_delete_range->header->revision, 3);
	assert_int_equal(r->responses[3]->response_delete_range->n_prev_kvs, 1);
	Etcdserverpb__TxnResponse *nr = r->responses[4]->response_txn;
	assert_non_null(nr);
	assert_true(nr->succeeded); /* evaluated on the pre-txn view: b missing */
	assert_non_null(nr->header);
	assert_int_equal(nr->header->revision, 0); /* nested: empty header */
	assert_int_equal(nr->n_responses, 1);
	assert_int_equal(nr->responses[0]->response_put->header->revision, 3);
	pbfree(r);
	commit(a);
	assert_int_equal(engine_current_rev(f->e), 3);
	/* all three writes share revision 3 with increasing sub-revisions */
	Etcdserverpb__RangeResponse *g = get(f->e, "c");
	assert_int_equal(g->kvs[0]->mod_revision, 3);
	pbfree(g);
	g = get(f->e, "a");
	assert_int_equal(g->n_kvs, 0);
	pbfree(g);
	/* failure branch runs when a compare fails */
	Etcdserverpb__Compare fc = mkcmp("c", T_VALUE, EQ, 0, "nope");
	Etcdserverpb__Compare *fcs[] = {&fc};
	Etcdserverpb__PutRequest pd = ETCDSERVERPB__PUT_REQUEST__INIT;
	pd.key = B("d");
	Etcdserverpb__RequestOp f1 = op_put(&pd);
	Etcdserverpb__RequestOp *fops[] = {&f1};
	Etcdserverpb__TxnRequest t2 = ETCDSERVERPB__TXN_REQUEST__INIT;
	t2.n_compare = 1;
	t2.compare = fcs;
	t2.n_failure = 1;
	t2.failure = fops;
	a = begin(f->e);
	assert_int_equal(engine_apply_txn(a, &t2, &r, &err), 0);
	assert_false(r->succeeded);
	assert_int_equal(r->n_responses, 1);
	assert_int_equal(r->header->revision, 4);
	pbfree(r);
	commit(a);
}

static void test_txn_errors_change_nothing(void **state)
{
	fx *f = *state;
	put(f->e, "a", "1");
	Etcdserverpb__PutRequest p1 = ETCDSERVERPB__PUT_REQUEST__INIT, p2 = ETCDSERVERPB__PUT_REQUEST__INIT;
	p1.key = B("x");
	p2.key = B("y");
	p2.lease = 1234; /* unknown lease */
	Etcdserverpb__RequestOp o1 = op_put(&p1), o2 = op_put(&p2);
	Etcdserverpb__RequestOp *ops[] = {&o1, &o2};
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.n_success = 2;
	t.success = ops;
	engine_apply *a = begin(f->e);
	ms_err err = {0};
	Etcdserverpb__TxnResponse *r = NULL;
	assert_int_equal(engine_apply_txn(a, &t, &r, &err), MS_ELEASE_NOT_FOUND);
	assert_null(r);
	/* ignore_value on a missing key */
	p2.lease = 0;
	p2.ignore_value = true;
	assert_int_equal(engine_apply_txn(a, &t, &r, &err), MS_EKEY_NOT_FOUND);
	/* a range at a future / compacted revision */
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	rr.key = B("a");
	rr.revision = 99;
	o2 = op_range(&rr);
	assert_int_equal(engine_apply_txn(a, &t, &r, &err), MS_EFUTURE_REV);
	commit(a);
	assert_int_equal(engine_current_rev(f->e), 2);
	Etcdserverpb__RangeResponse *g = get(f->e, "x");
	assert_int_equal(g->n_kvs, 0);
	pbfree(g);
}

static void test_check_txn(void **state)
{
	(void)state;
	ms_err err = {0};
	Etcdserverpb__PutRequest pa = ETCDSERVERPB__PUT_REQUEST__INIT, pa2 = ETCDSERVERPB__PUT_REQUEST__INIT,
	                         pb = ETCDSERVERPB__PUT_REQUEST__INIT;
	pa.key = B("a");
	pa2.key = B("a");
	pb.key = B("b");
	Etcdserverpb__RequestOp o1 = op_put(&pa), o2 = op_put(&pa2), o3 = op_put(&pb);
	/* put twice */
	Etcdserverpb__RequestOp *dup[] = {&o1, &o2};
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	t.n_success = 2;
	t.success = dup;
	assert_int_equal(engine_check_txn(&t, 128, &err), MS_EDUP_KEY);
	assert_string_equal(err.msg, "etcdserver: duplicate key given in txn request");
	/* same key in success and failure: fine */
	Etcdserverpb__RequestOp *s1[] = {&o1}, *f1[] = {&o2};
	Etcdserverpb__TxnRequest t2 = ETCDSERVERPB__TXN_REQUEST__INIT;
	t2.n_success = 1;
	t2.success = s1;
	t2.n_failure = 1;
	t2.failure = f1;
	assert_int_equal(engine_check_txn(&t2, 128, &err), 0);
	/* put inside a deleted range */
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = B("a");
	d.range_end = B("c");
	Etcdserverpb__RequestOp od = op_del(&d);
	Etcdserverpb__RequestOp *pd[] = {&od, &o3};
	t.success = pd;
	assert_int_equal(engine_check_txn(&t, 128, &err), MS_EDUP_KEY);
	/* put outside it is fine; a single-key delete only covers its key */
	d.range_end = B("b");
	assert_int_equal(engine_check_txn(&t, 128, &err), 0);
	d.range_end = (ProtobufCBinaryData){0, NULL};
	d.key = B("b");
	assert_int_equal(engine_check_txn(&t, 128, &err), MS_EDUP_KEY);
	d.key = B("bb");
	assert_int_equal(engine_check_txn(&t, 128, &err), 0);
	/* etcd 3.4 quirk: a from-key delete ("\0" end) never conflicts */
	d.key = B("a");
	d.range_end = (ProtobufCBinaryData){1, (uint8_t *)""};
	assert_int_equal(engine_check_txn(&t, 128, &err), 0);
	/* nested: a put in a nested txn against an outer put */
	Etcdserverpb__RequestOp *ns[] = {&o2};
	Etcdserverpb__TxnRequest nt = ETCDSERVERPB__TXN_REQUEST__INIT;
	nt.n_success = 1;
	nt.success = ns;
	Etcdserverpb__RequestOp on = op_txn(&nt);
	Etcdserverpb__RequestOp *outer[] = {&o1, &on};
	t.success = outer;
	assert_int_equal(engine_check_txn(&t, 128, &err), MS_EDUP_KEY);
	/* nested then and else may both put the same key */
	nt.n_failure = 1;
	nt.failure = ns;
	Etcdserverpb__RequestOp *outer2[] = {&o3, &on};
	t.success = outer2;
	assert_int_equal(engine_check_txn(&t, 128, &err), 0);
	/* too many ops */
	t.n_success = 2;
	t.success = outer2;
	assert_int_equal(engine_check_txn(&t, 1, &err), MS_ETOO_MANY_OPS);
	assert_int_equal(engine_check_txn(&t, 2, &err), MS_ETOO_MANY_OPS); /* the nested one gets 2-2 = 0 */
	assert_int_equal(engine_check_txn(&t, 3, &err), 0);
	/* empty key in a compare, empty op */
	Etcdserverpb__Compare c = ETCDSERVERPB__COMPARE__INIT;
	Etcdserverpb__Compare *cs[] = {&c};
	Etcdserverpb__TxnRequest tc = ETCDSERVERPB__TXN_REQUEST__INIT;
	tc.n_compare = 1;
	tc.compare = cs;
	assert_int_equal(engine_check_txn(&tc, 128, &err), MS_EKEY_EMPTY);
	Etcdserverpb__RequestOp empty = ETCDSERVERPB__REQUEST_OP__INIT;
	Etcdserverpb__RequestOp *eo[] = {&empty};
	Etcdserverpb__TxnRequest te = ETCDSERVERPB__TXN_REQUEST__INIT;
	te.n_success = 1;
	te.success = eo;
	assert_int_equal(engine_check_txn(&te, 128, &err), MS_EKEY_NOT_FOUND);
	/* bad put inside */
	pb.ignore_lease = true;
	pb.lease = 3;
	Etcdserverpb__RequestOp *bo[] = {&o3};
	te.success = bo;
	assert_int_equal(engine_check_txn(&te, 128, &err), MS_ELEASE_PROVIDED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_txn_compares, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_txn_ops_and_headers, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_txn_errors_change_nothing, fx_setup, fx_teardown),
	    cmocka_unit_test(test_check_txn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
