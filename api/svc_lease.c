/* svc_lease.c — the etcd Lease service: LeaseGrant and LeaseRevoke go
 * through raft; LeaseKeepAlive (bidi, one reply per request), TimeToLive and
 * Leases are answered by the server's lease manager. */
#include <string.h>

#include "api/api_int.h"

#define BAD_REQUEST "grpc: error unmarshalling request: unexpected EOF or bad wire data"

static void lease_grant(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	Etcdserverpb__LeaseGrantRequest *r = etcdserverpb__lease_grant_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	int64_t id = r->id, ttl = r->ttl;
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	if (!api_require_leader(a, call))
		return;
	grpc_call_ref(call);
	int rc = ms_server_lease_grant(a->srv, id, ttl, grpc_call_deadline(call), api_unary_done, call);
	if (rc) {
		api_finish_error(call, rc, NULL);
		grpc_call_unref(call);
	}
}

static void lease_revoke(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	Etcdserverpb__LeaseRevokeRequest *r = etcdserverpb__lease_revoke_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	int64_t id = r->id;
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	if (!api_require_leader(a, call))
		return;
	grpc_call_ref(call);
	int rc = ms_server_lease_revoke(a->srv, id, grpc_call_deadline(call), api_unary_done, call);
	if (rc) {
		api_finish_error(call, rc, NULL);
		grpc_call_unref(call);
	}
}

/* ---- LeaseKeepAlive ----
 * Life cycle, as etcd 3.4's LeaseServer.leaseKeepAlive (one reply per
 * request, in a loop that returns nil on io.EOF):
 *   - client half-close: the stream ends with status OK once every request
 *     received before it is answered (python-etcd3's Lease.refresh sends one
 *     request, half-closes and reads until the end);
 *   - a renewal that fails (no leader, timeout): the stream ends with that
 *     error's status in the trailers;
 *   - client cancel / RST_STREAM, deadline, connection loss: the stream is
 *     gone; renewals in flight finish and their replies are dropped.
 * Back-pressure: while the call's unsent output is over the gRPC layer's
 * per-call bound (grpc_call_over_bound, 4 MiB), replies are coalesced per
 * lease id (the newest TTL replaces an older one) in a table of at most
 * KA_MAX_OWED ids, sent when the output drains. Renewals still happen:
 * the client asked for them. A client that asks for more distinct ids than
 * that while never reading, or keeps more than KA_MAX_INFLIGHT forwarded
 * renewals in flight, gets ResourceExhausted "etcdserver: too many requests". */
#define KA_MAX_OWED 1024
#define KA_MAX_INFLIGHT 1024

typedef struct ka_stream {
	grpc_call *call;
	int inflight;            /* renewals not answered yet (each holds a call ref) */
	bool half_closed;        /* the client ended its side */
	bool closed;             /* on_close ran: freed when inflight drops to 0 */
	ProtobufCMessage **owed; /* replies waiting for the output to drain */
	size_t nowed, capowed;
} ka_stream;

static void ka_free_owed(ka_stream *ks)
{
	for (size_t i = 0; i < ks->nowed; i++)
		protobuf_c_message_free_unpacked(ks->owed[i], &ms_pb_allocator);
	ms_free(ks->owed);
	ks->owed = NULL;
	ks->nowed = ks->capowed = 0;
}

static void ka_maybe_end(ka_stream *ks)
{
	if (ks->half_closed && ks->inflight == 0 && ks->nowed == 0 && !grpc_call_closed(ks->call))
		grpc_call_finish(ks->call, GRPC_OK, NULL);
}

static void ka_drained(grpc_call *call, void *arg)
{
	ka_stream *ks = grpc_call_data(call);
	if (!ks || ks->closed)
		return;
	size_t i = 0;
	for (; i < ks->nowed && !grpc_call_over_bound(call); i++) {
		grpc_call_send_pb(call, ks->owed[i]);
		protobuf_c_message_free_unpacked(ks->owed[i], &ms_pb_allocator);
	}
	memmove(ks->owed, ks->owed + i, (ks->nowed - i) * sizeof *ks->owed);
	ks->nowed -= i;
	if (ks->nowed)
		grpc_call_on_drain(call, ka_drained, NULL);
	ka_maybe_end(ks);
}

/* Keeps resp until the output drains (ownership moves on 0). */
static int ka_owe(ka_stream *ks, ProtobufCMessage *resp)
{
	int64_t id = ((Etcdserverpb__LeaseKeepAliveResponse *)resp)->id;
	for (size_t i = 0; i < ks->nowed; i++) {
		if (((Etcdserverpb__LeaseKeepAliveResponse *)ks->owed[i])->id == id) {
			/* coalesced: the newest reply for a lease says all the older did */
			protobuf_c_message_free_unpacked(ks->owed[i], &ms_pb_allocator);
			memmove(ks->owed + i, ks->owed + i + 1, (ks->nowed - i - 1) * sizeof *ks->owed);
			ks->nowed--;
			break;
		}
	}
	if (ks->nowed == KA_MAX_OWED)
		return MS_ETOO_MANY_REQS;
	if (ks->nowed == ks->capowed) {
		size_t cap = ks->capowed ? ks->capowed * 2 : 8;
		ProtobufCMessage **v = ms_realloc(ks->owed, cap * sizeof *v);
		if (!v)
			return MS_ENOMEM;
		ks->owed = v;
		ks->capowed = cap;
	}
	ks->owed[ks->nowed++] = resp;
	if (ks->nowed == 1)
		grpc_call_on_drain(ks->call, ka_drained, NULL);
	return 0;
}

/* One keep-alive answered: the stream stays open unless the client has
 * half-closed and nothing else is owed. */
static void keepalive_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	grpc_call *call = arg;
	ka_stream *ks = grpc_call_data(call);
	ks->inflight--;
	if (!ks->closed && !grpc_call_closed(call)) {
		if (code) {
			api_finish_error(call, code, msg);
		} else if (ks->nowed || grpc_call_over_bound(call)) {
			int rc = ka_owe(ks, resp);
			if (rc == 0)
				resp = NULL;
			else
				api_finish_error(call, rc, NULL);
		} else {
			grpc_call_send_pb(call, resp);
		}
		ka_maybe_end(ks);
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
	if (ks->closed && ks->inflight == 0) {
		grpc_call_set_data(call, NULL);
		ms_free(ks);
	}
	grpc_call_unref(call);
}

static void lease_keepalive(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	ka_stream *ks = grpc_call_data(call);
	if (!ks) {
		if (!(ks = ms_calloc(1, sizeof *ks))) {
			api_finish_error(call, MS_ENOMEM, NULL);
			return;
		}
		ks->call = call;
		grpc_call_set_data(call, ks);
	}
	Etcdserverpb__LeaseKeepAliveRequest *r =
	    etcdserverpb__lease_keep_alive_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	int64_t id = r->id;
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	if (!api_require_leader(a, call))
		return;
	if (ks->inflight >= KA_MAX_INFLIGHT) {
		api_finish_error(call, MS_ETOO_MANY_REQS, NULL);
		return;
	}
	grpc_call_ref(call);
	ks->inflight++;
	int rc = ms_server_lease_renew(a->srv, id, keepalive_done, call);
	if (rc) {
		ks->inflight--;
		api_finish_error(call, rc, NULL);
		grpc_call_unref(call);
	}
}

static void keepalive_half_close(grpc_call *call, void *ud)
{
	ka_stream *ks = grpc_call_data(call);
	if (!ks) {
		/* no request at all: etcd's loop returns nil at once */
		grpc_call_finish(call, GRPC_OK, NULL);
		return;
	}
	ks->half_closed = true;
	ka_maybe_end(ks);
}

static void keepalive_close(grpc_call *call, void *ud)
{
	ka_stream *ks = grpc_call_data(call);
	if (!ks)
		return;
	ks->closed = true;
	ka_free_owed(ks);
	if (ks->inflight == 0) {
		grpc_call_set_data(call, NULL);
		ms_free(ks);
	}
}

static void lease_ttl(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	Etcdserverpb__LeaseTimeToLiveRequest *r =
	    etcdserverpb__lease_time_to_live_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	int64_t id = r->id;
	bool keys = r->keys;
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	if (!api_require_leader(a, call))
		return;
	Etcdserverpb__LeaseTimeToLiveResponse *resp = NULL;
	int rc = ms_server_lease_ttl(a->srv, id, keys, &resp);
	if (rc) {
		api_finish_error(call, rc, NULL);
		return;
	}
	api_reply(call, &resp->base);
	protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
}

static void lease_leases(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	Etcdserverpb__LeaseLeasesRequest *r = etcdserverpb__lease_leases_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	if (!api_require_leader(a, call))
		return;
	Etcdserverpb__LeaseLeasesResponse *resp = NULL;
	int rc = ms_server_lease_leases(a->srv, &resp);
	if (rc) {
		api_finish_error(call, rc, NULL);
		return;
	}
	api_reply(call, &resp->base);
	protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
}

const grpc_method api_lease_methods[] = {
    {"/etcdserverpb.Lease/LeaseGrant", GRPC_UNARY, lease_grant, NULL, NULL, NULL},
    {"/etcdserverpb.Lease/LeaseRevoke", GRPC_UNARY, lease_revoke, NULL, NULL, NULL},
    {"/etcdserverpb.Lease/LeaseKeepAlive", GRPC_BIDI_STREAM, lease_keepalive, keepalive_half_close, keepalive_close,
     NULL},
    {"/etcdserverpb.Lease/LeaseTimeToLive", GRPC_UNARY, lease_ttl, NULL, NULL, NULL},
    {"/etcdserverpb.Lease/LeaseLeases", GRPC_UNARY, lease_leases, NULL, NULL, NULL},
};
const size_t api_lease_nmethods = MS_ARRAY_LEN(api_lease_methods);
