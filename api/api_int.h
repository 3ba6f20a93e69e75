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
} api_slot;

struct api {
	struct event_base *base;
	ms_server *srv;
	grpc_server *grpc;
	grpc_method *methods; /* what the gRPC layer sees: guards, ud = a slot */
	api_slot *slots;
	size_t nmethods;
	int max_txn_ops;
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

/* HTTP/1.1 endpoints (/health, /version, /metrics). */
void api_http1(void *ud, const grpc_http1_request *req, grpc_http1_response *resp);

#endif
