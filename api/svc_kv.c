/* svc_kv.c — the etcd KV service: Range, Put, DeleteRange, Txn, Compact.
 * Writes become internal requests through raft; ranges go through the
 * server's read path (ReadIndex unless serializable). */
#include <string.h>

#include "api/api_int.h"

/* Unpacks a request or answers the call with InvalidArgument. */
#define UNPACK_OR_FAIL(type, fn, call, msg, len)                                                                       \
	({                                                                                                             \
		type *_r = fn(&ms_pb_allocator, len, msg);                                                             \
		if (!_r)                                                                                               \
			grpc_call_finish(call, GRPC_INVALID_ARGUMENT,                                                  \
			                 "grpc: error unmarshalling request: unexpected EOF or bad wire data");        \
		_r;                                                                                                    \
	})

/* etcd: a request carrying `hasleader: true` fails at once without a leader
 * instead of waiting for an election. */
bool api_require_leader(api *a, grpc_call *call)
{
	const char *hl = grpc_call_metadata(call, "hasleader");
	if (hl && !strcmp(hl, "true") && !ms_server_leader(a->srv)) {
		api_finish_error(call, MS_ENO_LEADER, NULL);
		return false;
	}
	return true;
}

static void propose_or_fail(api *a, grpc_call *call, Msinternal__InternalRequest *req)
{
	if (!api_require_leader(a, call))
		return;
	grpc_call_ref(call);
	int rc = ms_server_propose(a->srv, req, grpc_call_deadline(call), api_unary_done, call);
	if (rc) {
		api_finish_error(call, rc, NULL);
		grpc_call_unref(call);
	}
}

static void kv_range(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Etcdserverpb__RangeRequest *r =
	    UNPACK_OR_FAIL(Etcdserverpb__RangeRequest, etcdserverpb__range_request__unpack, call, msg, len);
	if (!r)
		return;
	ms_err err = {0};
	int rc = engine_check_range(r, &err);
	if (rc == 0 && !r->serializable && !api_require_leader(ud, call)) {
		protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
		return;
	}
	if (rc == 0) {
		grpc_call_ref(call);
		rc = ms_server_range(((api *)ud)->srv, r, grpc_call_deadline(call), api_unary_done, call);
		if (rc)
			grpc_call_unref(call);
		else
			return; /* the server owns r now */
	}
	api_finish_error(call, rc, err.msg);
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

static void kv_put(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Etcdserverpb__PutRequest *r =
	    UNPACK_OR_FAIL(Etcdserverpb__PutRequest, etcdserverpb__put_request__unpack, call, msg, len);
	if (!r)
		return;
	ms_err err = {0};
	int rc = engine_check_put(r, &err);
	if (rc) {
		api_finish_error(call, rc, err.msg);
	} else {
		Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
		req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUT;
		req.put = r;
		propose_or_fail(ud, call, &req);
	}
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

static void kv_delete(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Etcdserverpb__DeleteRangeRequest *r = UNPACK_OR_FAIL(
	    Etcdserverpb__DeleteRangeRequest, etcdserverpb__delete_range_request__unpack, call, msg, len);
	if (!r)
		return;
	ms_err err = {0};
	int rc = engine_check_delete(r, &err);
	if (rc) {
		api_finish_error(call, rc, err.msg);
	} else {
		Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
		req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_DELETE_RANGE;
		req.delete_range = r;
		propose_or_fail(ud, call, &req);
	}
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

static void kv_txn(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Etcdserverpb__TxnRequest *r =
	    UNPACK_OR_FAIL(Etcdserverpb__TxnRequest, etcdserverpb__txn_request__unpack, call, msg, len);
	if (!r)
		return;
	ms_err err = {0};
	int rc = engine_check_txn(r, ((api *)ud)->max_txn_ops, &err);
	if (rc) {
		api_finish_error(call, rc, err.msg);
	} else {
		Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
		req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_TXN;
		req.txn = r;
		propose_or_fail(ud, call, &req);
	}
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

/* Compact with physical=true answers once the removal has finished. */
typedef struct compact_ctx {
	api *a;
	grpc_call *call;
	ProtobufCMessage *resp;
	int64_t rev;
	bool physical;
} compact_ctx;

static void compact_waited(void *arg, int code, ProtobufCMessage *unused, const char *msg)
{
	compact_ctx *c = arg;
	api_unary_done(c->call, code, code ? NULL : c->resp, msg);
	if (code && c->resp)
		protobuf_c_message_free_unpacked(c->resp, &ms_pb_allocator);
	ms_free(c);
}

static void compact_applied(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	compact_ctx *c = arg;
	if (code == 0 && c->physical && !grpc_call_closed(c->call)) {
		c->resp = resp;
		if (ms_server_compact_wait(c->a->srv, c->rev, compact_waited, c) == 0)
			return;
	}
	api_unary_done(c->call, code, resp, msg);
	ms_free(c);
}

static void kv_compact(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	Etcdserverpb__CompactionRequest *r =
	    UNPACK_OR_FAIL(Etcdserverpb__CompactionRequest, etcdserverpb__compaction_request__unpack, call, msg, len);
	if (!r)
		return;
	compact_ctx *c = ms_calloc(1, sizeof *c);
	if (!c) {
		api_finish_error(call, MS_ENOMEM, NULL);
	} else {
		c->a = ud;
		c->call = call;
		c->rev = r->revision;
		c->physical = r->physical;
		Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
		req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_COMPACTION;
		req.compaction = r;
		grpc_call_ref(call);
		int rc = ms_server_propose(((api *)ud)->srv, &req, grpc_call_deadline(call), compact_applied, c);
		if (rc) {
			api_finish_error(call, rc, NULL);
			grpc_call_unref(call);
			ms_free(c);
		}
	}
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

const grpc_method api_kv_methods[] = {
    {"/etcdserverpb.KV/Range", GRPC_UNARY, kv_range, NULL, NULL, NULL},
    {"/etcdserverpb.KV/Put", GRPC_UNARY, kv_put, NULL, NULL, NULL},
    {"/etcdserverpb.KV/DeleteRange", GRPC_UNARY, kv_delete, NULL, NULL, NULL},
    {"/etcdserverpb.KV/Txn", GRPC_UNARY, kv_txn, NULL, NULL, NULL},
    {"/etcdserverpb.KV/Compact", GRPC_UNARY, kv_compact, NULL, NULL, NULL},
};
const size_t api_kv_nmethods = MS_ARRAY_LEN(api_kv_methods);
