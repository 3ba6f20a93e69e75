/* api_int.h — shared by the service files of api/ (private). */
#ifndef MS_API_INT_H
#define MS_API_INT_H

#include "api/api.h"
#include "api/grpc.h"
#include "engine/engine.h"
#include "internal.pb-c.h"
#include "rpc.pb-c.h"

/* One served method: the service's handlers behind the dispatch guard. */
typedef struct api_slot {
	struct api *a;
	grpc_method m; /* the service's own entry */
	/* The request type, from the services' protobuf-c descriptors; NULL for
	 * grpc.health.v1 (no proto here: framing is checked only). Every message
	 * is checked against it (common/pbcheck.h) before a handler sees it. */
	const ProtobufCMessageDescriptor *req;
} api_slot;

struct api {
	struct event_base *base;
	ms_server *srv;
	grpc_server *grpc;
	grpc_method *methods; /* what the gRPC layer sees: guards, ud = a slot */
	api_slot *slots;
	size_t nmethods;
	int max_txn_ops;
	struct ms_tls *tls; /* client TLS for https:// listeners, borrowed */
};

/* Ends a call with etcd's status for an MS_E* code. */
void api_finish_error(grpc_call *call, int code, const char *detail);
/* ms_done_fn for unary calls whose arg is a referenced grpc_call: sends resp
 * (or the error), finishes, frees resp, drops the reference. */
void api_unary_done(void *arg, int code, ProtobufCMessage *resp, const char *msg);
/* False (and the call finished with "etcdserver: no leader") when the
 * request carries hasleader=true and no leader is known. */
bool api_require_leader(api *a, grpc_call *call);
/* Sends one response message and finishes the call with OK; frees nothing. */
void api_reply(grpc_call *call, const ProtobufCMessage *resp);

extern const grpc_method api_kv_methods[];
extern const size_t api_kv_nmethods;
extern const grpc_method api_maint_methods[];
extern const size_t api_maint_nmethods;
extern const grpc_method api_lease_methods[];
extern const size_t api_lease_nmethods;
extern const grpc_method api_watch_methods[];
extern const size_t api_watch_nmethods;
extern const grpc_method api_lock_methods[];
extern const size_t api_lock_nmethods;
extern const grpc_method api_election_methods[];
extern const size_t api_election_nmethods;

/* ---- server-side recipes for Lock and Election (svc_lock.c) ----
 * etcd 3.4 runs these services as clientv3 recipes inside the server, so an
 * error from an inner KV/Lease request reaches the caller as status Unknown
 * with the inner error's text; api_finish_unknown does that. */
void api_finish_unknown(grpc_call *call, int code, const char *detail);
/* A server-side watcher on [key, end) from start_rev (end empty = one key)
 * built on a server watch stream. fn gets each WatchResponse (borrowed) on
 * the loop thread from a deferred event, never from inside the server's
 * watch code, so fn may call api_kwatch_close (no later calls then). */
typedef struct api_kwatch api_kwatch;
typedef void (*api_kwatch_fn)(void *arg, const Etcdserverpb__WatchResponse *resp);
int api_kwatch_open(api *a, ProtobufCBinaryData key, ProtobufCBinaryData end, int64_t start_rev, api_kwatch_fn fn,
                    void *arg, api_kwatch **out);
/* Back-pressure: the watcher pauses (and later catches up from history)
 * while flow has more than MS_WATCH_SLOW_BYTES unsent. flow must outlive kw
 * (the caller holds a reference). */
void api_kwatch_set_flow(api_kwatch *kw, grpc_call *flow);
void api_kwatch_close(api_kwatch *kw);
/* etcd's waitDeletes: returns once no key under [pfx, end) with a create
 * revision <= max_create_rev is left. fn(arg, 0, hdr of the last Range) or
 * fn(arg, code, NULL, detail) runs exactly once, unless the wait is cancelled
 * first; after fn the wait is gone. */
typedef struct api_waitdel api_waitdel;
typedef void (*api_waitdel_fn)(void *arg, int code, const Etcdserverpb__ResponseHeader *hdr, const char *detail);
int api_wait_deletes(api *a, ProtobufCBinaryData pfx, ProtobufCBinaryData end, int64_t max_create_rev,
                     api_waitdel_fn fn, void *arg, api_waitdel **out);
void api_wait_deletes_cancel(api_waitdel *w);
/* A RangeRequest for ms_server_range (ms_malloc'd with its key copies):
 * [key, end), sorted by create revision (asc or desc), limit 1. */
Etcdserverpb__RangeRequest *api_range_by_create(ProtobufCBinaryData key, ProtobufCBinaryData end, bool desc);
/* "<name>/" and its prefix end, and "<name>/<lease as %x>" (ms_malloc'd;
 * free with ms_free on .data). */
int api_recipe_keys(ProtobufCBinaryData name, int64_t lease, ProtobufCBinaryData *pfx, ProtobufCBinaryData *end,
                    ProtobufCBinaryData *key);

/* HTTP/1.1 endpoints (/health, /version, /metrics). */
void api_http1(void *ud, const grpc_http1_request *req, grpc_http1_response *resp);

#endif
