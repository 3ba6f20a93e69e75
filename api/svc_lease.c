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

/* One keep-alive answered: the stream stays open. */
static void keepalive_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	grpc_call *call = arg;
	if (!grpc_call_closed(call)) {
		if (code)
			api_finish_error(call, code, msg);
		else
			grpc_call_send_pb(call, resp);
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
	grpc_call_unref(call);
}

static void lease_keepalive(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
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
	grpc_call_ref(call);
	int rc = ms_server_lease_renew(a->srv, id, keepalive_done, call);
	if (rc) {
		api_finish_error(call, rc, NULL);
		grpc_call_unref(call);
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
    {"/etcdserverpb.Lease/LeaseKeepAlive", GRPC_BIDI_STREAM, lease_keepalive, NULL, NULL, NULL},
    {"/etcdserverpb.Lease/LeaseTimeToLive", GRPC_UNARY, lease_ttl, NULL, NULL, NULL},
    {"/etcdserverpb.Lease/LeaseLeases", GRPC_UNARY, lease_leases, NULL, NULL, NULL},
};
const size_t api_lease_nmethods = MS_ARRAY_LEN(api_lease_methods);
