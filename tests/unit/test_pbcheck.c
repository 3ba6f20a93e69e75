/* test_pbcheck.c — the wire-level protobuf checker: real messages pass and
 * unpack, malformed framing and over-deep nesting are refused before
 * protobuf-c sees them, and the deepest accepted txn unpacks, validates and
 * frees on a thread with a small stack. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/pbcheck.h"
#include "engine/engine.h"
#include "internal.pb-c.h"
#include "rpc.pb-c.h"

/* Writes tag+length (field, wire type 2, n) just before buf[*at]. */
static void prepend_hdr(uint8_t *buf, size_t *at, unsigned field, size_t n)
{
	uint8_t tmp[16];
	size_t k = 0;
	tmp[k++] = (uint8_t)(field << 3 | 2);
	do {
		tmp[k++] = (uint8_t)((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
		n >>= 7;
	} while (n);
	*at -= k;
	memcpy(buf + *at, tmp, k);
}

/* A TxnRequest nesting `levels` txns (the top one included), each with one
 * success op; the innermost op is a range of "k". Built from the inside out
 * without recursion. Returns the bytes (malloc'd) and their length. */
static uint8_t *nested_txn(unsigned levels, size_t *len)
{
	size_t cap = 16 + (size_t)levels * 24;
	uint8_t *buf = malloc(cap);
	assert_non_null(buf);
	size_t at = cap;
	buf[--at] = 'k';
	buf[--at] = 1;
	buf[--at] = 0x0a;                   /* RangeRequest{key: "k"} */
	prepend_hdr(buf, &at, 1, cap - at); /* RequestOp.request_range */
	prepend_hdr(buf, &at, 2, cap - at); /* TxnRequest.success */
	for (unsigned i = 1; i < levels; i++) {
		prepend_hdr(buf, &at, 4, cap - at); /* RequestOp.request_txn */
		prepend_hdr(buf, &at, 2, cap - at); /* TxnRequest.success */
	}
	*len = cap - at;
	memmove(buf, buf + at, *len);
	return buf;
}

static void test_real_messages_pass(void **state)
{
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	put.key = (ProtobufCBinaryData){3, (uint8_t *)"foo"};
	put.value = (ProtobufCBinaryData){3, (uint8_t *)"bar"};
	put.lease = 0x1234567890;
	put.prev_kv = true;
	Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
	op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	op.request_put = &put;
	Etcdserverpb__RequestOp *ops[] = {&op, &op};
	Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
	cmp.key = put.key;
	cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
	cmp.version = -7;
	Etcdserverpb__Compare *cmps[] = {&cmp};
	Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
	txn.compare = cmps;
	txn.n_compare = 1;
	txn.success = ops;
	txn.n_success = 2;
	Msinternal__InternalRequest ir = MSINTERNAL__INTERNAL_REQUEST__INIT;
	ir.id = 99;
	ir.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_TXN;
	ir.txn = &txn;
	uint8_t buf[512];
	size_t n = msinternal__internal_request__pack(&ir, buf);
	ms_err err = {0};
	assert_int_equal(ms_pb_check(&msinternal__internal_request__descriptor, buf, n, MS_PB_MAX_DEPTH_INTERNAL, &err),
	                 0);
	ProtobufCMessage *m;
	assert_int_equal(
	    ms_pb_unpack(&msinternal__internal_request__descriptor, buf, n, MS_PB_MAX_DEPTH_INTERNAL, &m, &err), 0);
	Msinternal__InternalRequest *got = (Msinternal__InternalRequest *)m;
	assert_int_equal(got->txn->n_success, 2);
	assert_int_equal(got->txn->compare[0]->version, -7);
	protobuf_c_message_free_unpacked(m, &ms_pb_allocator);
	/* framing-only mode (no descriptor) accepts it too */
	assert_int_equal(ms_pb_check(NULL, buf, n, 0, &err), 0);
	/* the empty message */
	assert_int_equal(ms_pb_check(&etcdserverpb__txn_request__descriptor, NULL, 0, MS_PB_MAX_DEPTH, &err), 0);

	/* a packed repeated scalar (WatchCreateRequest.filters) */
	Etcdserverpb__WatchCreateRequest__FilterType f[] = {1, 0, 1};
	Etcdserverpb__WatchCreateRequest wc = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	wc.key = put.key;
	wc.filters = f;
	wc.n_filters = 3;
	Etcdserverpb__WatchRequest wr = ETCDSERVERPB__WATCH_REQUEST__INIT;
	wr.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	wr.create_request = &wc;
	n = etcdserverpb__watch_request__pack(&wr, buf);
	assert_int_equal(ms_pb_unpack(&etcdserverpb__watch_request__descriptor, buf, n, MS_PB_MAX_DEPTH, &m, &err), 0);
	assert_int_equal(((Etcdserverpb__WatchRequest *)m)->create_request->n_filters, 3);
	protobuf_c_message_free_unpacked(m, &ms_pb_allocator);
}

static int check_txn(const uint8_t *b, size_t n)
{
	ms_err err = {0};
	return ms_pb_check(&etcdserverpb__txn_request__descriptor, b, n, MS_PB_MAX_DEPTH, &err);
}

static void test_malformed_refused(void **state)
{
	/* Put{key: "a"} in TxnRequest.success[0].request_put: 0x12 len 0x0a ... */
	static const uint8_t good[] = {0x12, 0x05, 0x12, 0x03, 0x0a, 0x01, 'a'};
	assert_int_equal(check_txn(good, sizeof good), 0);
	/* every strict prefix is truncated somewhere */
	for (size_t i = 1; i < sizeof good; i++)
		assert_int_equal(check_txn(good, i), MS_EINVAL);
	/* an inner length past its parent's end, though inside the buffer */
	static const uint8_t past_parent[] = {0x12, 0x03, 0x12, 0x03, 0x0a, 0x01, 'a'};
	assert_int_equal(check_txn(past_parent, sizeof past_parent), MS_EINVAL);
	/* truncated varint: TxnRequest has no varint field, so use an unknown one */
	static const uint8_t trunc_varint[] = {0x78, 0xff, 0xff};
	assert_int_equal(check_txn(trunc_varint, sizeof trunc_varint), MS_EINVAL);
	/* an 11-byte varint */
	static const uint8_t long_varint[] = {0x78, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	assert_int_equal(check_txn(long_varint, sizeof long_varint), MS_EINVAL);
	/* a 6-byte tag, a tag over 32 bits, field number 0 */
	static const uint8_t long_tag[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00};
	assert_int_equal(check_txn(long_tag, sizeof long_tag), MS_EINVAL);
	static const uint8_t big_tag[] = {0xf8, 0xff, 0xff, 0xff, 0x7f, 0x00};
	assert_int_equal(check_txn(big_tag, sizeof big_tag), MS_EINVAL);
	static const uint8_t field0[] = {0x00, 0x00};
	assert_int_equal(check_txn(field0, sizeof field0), MS_EINVAL);
	/* wrong wire type for a known field: success as a varint */
	static const uint8_t wrong_wt[] = {0x10, 0x01};
	assert_int_equal(check_txn(wrong_wt, sizeof wrong_wt), MS_EINVAL);
	/* groups and wire types 6, 7 (unknown field numbers) */
	static const uint8_t group[] = {0x7b, 0x7c};
	assert_int_equal(check_txn(group, sizeof group), MS_EINVAL);
	static const uint8_t wt6[] = {0x7e, 0x00};
	assert_int_equal(check_txn(wt6, sizeof wt6), MS_EINVAL);
	/* fixed64 past the end */
	static const uint8_t fixed[] = {0x79, 1, 2, 3};
	assert_int_equal(check_txn(fixed, sizeof fixed), MS_EINVAL);
	/* a length over 2^32 */
	static const uint8_t huge_len[] = {0x7a, 0xff, 0xff, 0xff, 0xff, 0x7f};
	assert_int_equal(check_txn(huge_len, sizeof huge_len), MS_EINVAL);
	/* packed filters whose last varint is cut */
	ms_err err = {0};
	static const uint8_t packed[] = {0x0a, 0x04, 0x2a, 0x02, 0x01, 0x80};
	assert_int_equal(
	    ms_pb_check(&etcdserverpb__watch_request__descriptor, packed, sizeof packed, MS_PB_MAX_DEPTH, &err),
	    MS_EINVAL);
	assert_string_equal(err.msg, "unexpected EOF");
	/* unknown fields with good framing pass, and protobuf-c takes them */
	static const uint8_t unknown[] = {0x78, 0x05, 0x7a, 0x02, 'h', 'i', 0x7d, 1, 2, 3, 4};
	assert_int_equal(check_txn(unknown, sizeof unknown), 0);
	ProtobufCMessage *m;
	assert_int_equal(
	    ms_pb_unpack(&etcdserverpb__txn_request__descriptor, unknown, sizeof unknown, MS_PB_MAX_DEPTH, &m, &err),
	    0);
	protobuf_c_message_free_unpacked(m, &ms_pb_allocator);
}

/* The deepest txn etcd accepts at --max-txn-ops 128 passes the check, the
 * engine's validation (which passes the op budget down) and unpacks; one
 * level more is refused by both. */
typedef struct deep_arg {
	unsigned levels;
	int check, valid;
} deep_arg;

static void *deep_main(void *p)
{
	deep_arg *a = p;
	size_t n;
	uint8_t *b = nested_txn(a->levels, &n);
	ms_err err = {0};
	ProtobufCMessage *m = NULL;
	a->check = ms_pb_unpack(&etcdserverpb__txn_request__descriptor, b, n, MS_PB_MAX_DEPTH, &m, &err);
	a->valid = 1;
	if (m) {
		a->valid = engine_check_txn((Etcdserverpb__TxnRequest *)m, 128, &err);
		/* pack it again: get_packed_size and pack recurse too */
		size_t pn = protobuf_c_message_get_packed_size(m);
		uint8_t *pb = malloc(pn);
		if (pb && protobuf_c_message_pack(m, pb) == pn && (pn != n || memcmp(pb, b, n)))
			a->valid = 99;
		free(pb);
		protobuf_c_message_free_unpacked(m, &ms_pb_allocator);
	}
	free(b);
	return NULL;
}

static void run_deep(deep_arg *a)
{
	/* A small stack on purpose: the whole decode/validate/pack/free of the
	 * deepest accepted txn must fit in 1 MiB. */
	pthread_attr_t at;
	pthread_t th;
	assert_int_equal(pthread_attr_init(&at), 0);
	assert_int_equal(pthread_attr_setstacksize(&at, 1 << 20), 0);
	assert_int_equal(pthread_create(&th, &at, deep_main, a), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	pthread_attr_destroy(&at);
}

static void test_depth_bound(void **state)
{
	deep_arg ok = {128, -1, -1};
	run_deep(&ok);
	assert_int_equal(ok.check, 0);
	assert_int_equal(ok.valid, 0);
	deep_arg over = {129, -1, -1};
	run_deep(&over);
	assert_int_equal(over.check, MS_PB_ETOO_DEEP);
	/* the attack from issue 10: 50,000 levels, refused by the walk alone */
	size_t n;
	uint8_t *b = nested_txn(50000, &n);
	assert_true(n > 300000);
	assert_int_equal(check_txn(b, n), MS_PB_ETOO_DEEP);
	/* and the same bytes cut anywhere are still refused, never crash */
	assert_int_not_equal(check_txn(b, n / 2), 0);
	free(b);
	/* wrapped in an InternalRequest (field 12): one more level allowed */
	b = nested_txn(128, &n);
	uint8_t *w = malloc(n + 8);
	size_t at = 8;
	memcpy(w + 8, b, n);
	prepend_hdr(w, &at, 12, n);
	ms_err err = {0};
	assert_int_equal(
	    ms_pb_check(&msinternal__internal_request__descriptor, w + at, n + 8 - at, MS_PB_MAX_DEPTH_INTERNAL, &err),
	    0);
	assert_int_equal(
	    ms_pb_check(&msinternal__internal_request__descriptor, w + at, n + 8 - at, MS_PB_MAX_DEPTH, &err),
	    MS_PB_ETOO_DEEP);
	free(w);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_real_messages_pass),
	    cmocka_unit_test(test_malformed_refused),
	    cmocka_unit_test(test_depth_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
