/* fuzz_request.c — libFuzzer target for every message a client or a peer
 * can make the server decode, as it enters: the wire check (common/pbcheck.h),
 * protobuf-c's unpack, the request validation the handlers run (KV checks),
 * then pack and free (which recurse on nesting like unpack). The first byte
 * picks the type (tests/fuzz/fuzz_types.h).
 *
 * Besides crashes, leaks and timeouts it fails on a disagreement: bytes the
 * check accepts must unpack (a handler would otherwise answer a well-framed
 * request with a decode error nobody checked), and what unpacks must pack
 * back to bytes that pass the check and unpack again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "tests/fuzz/fuzz_types.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fuzz_type types[FUZZ_MAX_TYPES];
static size_t ntypes;

static void fail(const char *what, const fuzz_type *t, const ms_err *err)
{
	fprintf(stderr, "fuzz_request: %s: %s (%s)\n", t->d->name, what, err ? err->msg : "");
	abort();
}

/* The validation a handler runs before proposing or reading. */
static void validate(const ProtobufCMessage *m)
{
	ms_err err = {0};
	const ProtobufCMessageDescriptor *d = m->descriptor;
	if (d == &etcdserverpb__range_request__descriptor)
		engine_check_range((const Etcdserverpb__RangeRequest *)m, &err);
	else if (d == &etcdserverpb__put_request__descriptor)
		engine_check_put((const Etcdserverpb__PutRequest *)m, &err);
	else if (d == &etcdserverpb__delete_range_request__descriptor)
		engine_check_delete((const Etcdserverpb__DeleteRangeRequest *)m, &err);
	else if (d == &etcdserverpb__txn_request__descriptor)
		engine_check_txn((const Etcdserverpb__TxnRequest *)m, 128, &err);
	else if (d == &msinternal__internal_request__descriptor) {
		const Msinternal__InternalRequest *r = (const Msinternal__InternalRequest *)m;
		if (r->request_case == MSINTERNAL__INTERNAL_REQUEST__REQUEST_TXN && r->txn)
			engine_check_txn(r->txn, 128, &err);
		else if (r->request_case == MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUT && r->put)
			engine_check_put(r->put, &err);
		else if (r->request_case == MSINTERNAL__INTERNAL_REQUEST__REQUEST_DELETE_RANGE && r->delete_range)
			engine_check_delete(r->delete_range, &err);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ntypes)
		ntypes = fuzz_types(types);
	if (size < 1)
		return 0;
	const fuzz_type *t = &types[data[0] % ntypes];
	size_t n = size - 1;
	/* an exact-size copy, so reads past the end are caught */
	uint8_t *buf = malloc(n ? n : 1);
	memcpy(buf, data + 1, n);
	ms_err err = {0};
	int rc = ms_pb_check(t->d, buf, n, t->depth, &err);
	if (rc == 0) {
		ProtobufCMessage *m = protobuf_c_message_unpack(t->d, &ms_pb_allocator, n, buf);
		if (!m)
			fail("the check accepted bytes protobuf-c refuses", t, &err);
		validate(m);
		size_t pn = protobuf_c_message_get_packed_size(m);
		uint8_t *pb = malloc(pn ? pn : 1);
		if (protobuf_c_message_pack(m, pb) != pn)
			fail("pack wrote a different size than get_packed_size", t, NULL);
		ProtobufCMessage *m2 = NULL;
		if (ms_pb_unpack(t->d, pb, pn, t->depth, &m2, &err))
			fail("a packed message does not pass again", t, &err);
		protobuf_c_message_free_unpacked(m2, &ms_pb_allocator);
		free(pb);
		protobuf_c_message_free_unpacked(m, &ms_pb_allocator);
	} else if (rc != MS_EINVAL && rc != MS_PB_ETOO_DEEP) {
		fail("unexpected result", t, &err);
	}
	free(buf);
	return 0;
}
