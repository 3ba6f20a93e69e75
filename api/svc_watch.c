/* svc_watch.c — the etcd Watch service: one bidi stream carries many
 * watchers; the server's watch wiring (server/watch_srv.c) does the work and
 * sends WatchResponses through this stream's sink. A client half-close keeps
 * the stream (and its watchers) open, as etcd does. */
#include <string.h>

#include "api/api_int.h"

static int sink_send(void *ud, const uint8_t *msg, size_t len)
{
	return grpc_call_send(ud, msg, len);
}
static size_t sink_pending(void *ud)
{
	return grpc_call_pending_bytes(ud);
}

static void on_drain(grpc_call *call, void *arg)
{
	ms_watch *w = grpc_call_data(call);
	if (w)
		ms_server_watch_drained(w);
}

static void sink_want_drain(void *ud)
{
	grpc_call_on_drain(ud, on_drain, NULL);
}

static const ms_watch_sink watch_sink = {sink_send, sink_pending, sink_want_drain};

static void watch_message(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	ms_watch *w = grpc_call_data(call);
	if (!w) {
		/* etcd checks hasleader when the stream opens */
		if (!api_require_leader(a, call))
			return;
		int rc = ms_server_watch_open(a->srv, &watch_sink, call, &w);
		if (rc) {
			api_finish_error(call, rc, NULL);
			return;
		}
		grpc_call_set_data(call, w);
	}
	Etcdserverpb__WatchRequest *r = etcdserverpb__watch_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT,
		                 "grpc: error unmarshalling request: unexpected EOF or bad wire data");
		return;
	}
	int rc = ms_server_watch_request(w, r);
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	if (rc && rc != MS_ECANCELED)
		api_finish_error(call, rc, NULL);
}

static void watch_close(grpc_call *call, void *ud)
{
	ms_watch *w = grpc_call_data(call);
	if (w) {
		grpc_call_set_data(call, NULL);
		ms_server_watch_close(w);
	}
}

const grpc_method api_watch_methods[] = {
    {"/etcdserverpb.Watch/Watch", GRPC_BIDI_STREAM, watch_message, NULL, watch_close, NULL},
};
const size_t api_watch_nmethods = MS_ARRAY_LEN(api_watch_methods);
