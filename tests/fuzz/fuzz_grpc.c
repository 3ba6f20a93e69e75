/* fuzz_grpc.c — libFuzzer target for the gRPC framing core: grpc_conn_recv
 * fed arbitrary bytes after the HTTP/2 client preface, with a stub method
 * table whose handlers do what the real ones do with a message (wire check,
 * unpack, validation, a reply, streams that answer each message and finish
 * on half-close). Input: byte 0 is the chunk size the bytes are fed in
 * (0 = all at once), the rest is what a client sends after the preface.
 * Afterwards every deadline is expired and the connection freed, so calls
 * left open go through on_close. Seeds: real nghttp2 client conversations
 * (tests/fuzz/gen_seeds.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/grpc_int.h"
#include "engine/engine.h"
#include "tests/fuzz/fuzz_types.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static int send_cb(void *ud, const uint8_t *p, size_t len)
{
	/* touch the first and last byte so ASan sees the range */
	if (len)
		sink += p[0] + p[len - 1];
	return 0;
}

/* The request's type for a path: the same lookup api.c does. */
static const ProtobufCMessageDescriptor *req_type(const grpc_call *call)
{
	const char *path = grpc_call_path(call);
	if (!strcmp(path, "/etcdserverpb.KV/Range"))
		return &etcdserverpb__range_request__descriptor;
	if (!strcmp(path, "/etcdserverpb.KV/Txn"))
		return &etcdserverpb__txn_request__descriptor;
	if (!strcmp(path, "/etcdserverpb.Watch/Watch"))
		return &etcdserverpb__watch_request__descriptor;
	if (!strcmp(path, "/etcdserverpb.Lease/LeaseKeepAlive"))
		return &etcdserverpb__lease_keep_alive_request__descriptor;
	return &v3electionpb__leader_request__descriptor;
}

static void on_message(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	const ProtobufCMessageDescriptor *d = req_type(call);
	ProtobufCMessage *m;
	ms_err err = {0};
	int rc = ms_pb_unpack(d, msg, len, MS_PB_MAX_DEPTH, &m, &err);
	if (rc) {
		grpc_call_finish(call, rc == MS_PB_ETOO_DEEP ? GRPC_INVALID_ARGUMENT : GRPC_INTERNAL, err.msg);
		return;
	}
	if (d == &etcdserverpb__range_request__descriptor)
		rc = engine_check_range((Etcdserverpb__RangeRequest *)m, &err);
	else if (d == &etcdserverpb__txn_request__descriptor)
		rc = engine_check_txn((Etcdserverpb__TxnRequest *)m, 128, &err);
	protobuf_c_message_free_unpacked(m, &ms_pb_allocator);
	if (rc) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, err.msg);
		return;
	}
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h.revision = 7;
	h.member_id = 0x1234;
	Etcdserverpb__WatchResponse w = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	w.header = &h;
	w.created = true;
	grpc_call_send_pb(call, &w.base);
	/* metadata and deadline are read by real handlers */
	sink += grpc_call_metadata(call, "hasleader") != NULL;
	sink += (size_t)grpc_call_deadline(call);
	sink += grpc_call_pending_bytes(call);
	if (ud == NULL) /* unary: answer and finish */
		grpc_call_finish(call, GRPC_OK, NULL);
	else if (ud == (void *)2) /* server stream: one more, then finish */
		if (grpc_call_send_pb(call, &w.base) == 0)
			grpc_call_finish(call, GRPC_OK, NULL);
}

static void on_half_close(grpc_call *call, void *ud)
{
	grpc_call_finish(call, GRPC_OK, NULL);
}

static void on_close(grpc_call *call, void *ud)
{
	sink += grpc_call_closed(call);
}

static const grpc_method methods[] = {
    {"/etcdserverpb.KV/Range", GRPC_UNARY, on_message, NULL, on_close, NULL},
    {"/etcdserverpb.KV/Txn", GRPC_UNARY, on_message, NULL, on_close, NULL},
    {"/etcdserverpb.Watch/Watch", GRPC_BIDI_STREAM, on_message, on_half_close, on_close, (void *)1},
    {"/etcdserverpb.Lease/LeaseKeepAlive", GRPC_BIDI_STREAM, on_message, on_half_close, on_close, (void *)1},
    {"/v3electionpb.Election/Observe", GRPC_SERVER_STREAM, on_message, NULL, on_close, (void *)2},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	if (size < 1)
		return 0;
	size_t chunk = data[0] ? data[0] : size;
	data++;
	size--;
	grpc_server_opts o = {0};
	o.max_recv_msg = 64 * 1024; /* small, so the over-limit path is reachable */
	grpc_conn *c;
	if (grpc_conn_new(&o, methods, sizeof methods / sizeof *methods, send_cb, NULL, &c))
		return 0;
	int rc = grpc_conn_recv(c, (const uint8_t *)preface, sizeof preface - 1);
	for (size_t off = 0; rc == 0 && off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		/* an exact-size copy per chunk, so reads past it are caught */
		uint8_t *p = malloc(n);
		memcpy(p, data + off, n);
		rc = grpc_conn_recv(c, p, n);
		free(p);
		if (rc == 0)
			grpc_conn_flush(c);
	}
	grpc_conn_flush(c);
	sink += grpc_conn_want_close(c);
	grpc_conn_expire(c, INT64_MAX / 2);
	grpc_conn_flush(c);
	grpc_conn_free(c);
	return 0;
}
