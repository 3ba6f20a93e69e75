/* grpc_client.h — a small asynchronous gRPC client on nghttp2 and libevent:
 * one HTTP/2 connection (cleartext, prior knowledge) carrying many
 * concurrent unary and streaming calls. Written for the load generator
 * (bench/metastore_bench.c) and for tests that talk to the real server
 * layer; it is not the server's peer transport.
 *
 * Threads: a client and its calls belong to the loop thread of the
 * event_base they were created on; every function and every callback runs
 * there.
 *
 * Lifetime of a call: grpc_client_call_start() opens a stream; the caller
 * queues request messages with grpc_client_call_send() and ends its side
 * with grpc_client_call_close_send(). on_msg runs once per response
 * message; on_done runs exactly once when the call is over (trailers, a
 * RST_STREAM, a local cancel, or the connection failing) and the call is
 * freed right after it returns: the handle must not be used afterwards.
 * Callbacks may start new calls; they must not free the client.
 *
 * TLS: opts.tls (ALPN h2; the server's certificate is verified against the
 * host given, unless the ms_tls skips verification). Not done: client-side
 * deadline enforcement (grpc-timeout is sent; the server enforces it),
 * compression (a compressed response fails the call with INTERNAL). */
#ifndef MS_API_GRPC_CLIENT_H
#define MS_API_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ms.h"

struct event_base;
struct ProtobufCMessage;
struct ms_tls;

typedef struct grpc_client grpc_client;
typedef struct grpc_client_call grpc_client_call;

/* One response message; msg is valid only during the callback. */
typedef void (*grpc_client_msg_fn)(grpc_client_call *call, const uint8_t *msg, size_t len, void *ud);
/* The call is over. status is a gRPC code (GRPC_OK ... from api/grpc.h);
 * message is the decoded grpc-message or a local explanation, never NULL,
 * valid only during the callback. */
typedef void (*grpc_client_done_fn)(grpc_client_call *call, int status, const char *message, void *ud);

typedef struct grpc_client_opts {
	size_t max_recv_msg;     /* largest response message; default 64 MiB */
	uint32_t initial_window; /* per-stream receive window; default 1 MiB */
	uint32_t conn_window;    /* connection receive window; default 16 MiB */
	struct ms_tls *tls;      /* non-NULL: TLS (common/tls.h; borrowed, outlives the client) */
} grpc_client_opts;

/* Starts connecting to host:port (numeric or resolvable; resolved
 * synchronously) on base. Calls may be started at once: their frames are
 * buffered until the connection is up. opts may be NULL. A connect failure
 * shows up later as UNAVAILABLE on every call. */
int grpc_client_new(struct event_base *base, const char *host, int port, const grpc_client_opts *opts,
                    grpc_client **out, ms_err *err);
/* Closes the connection; open calls get on_done(CANCELED, "client closed")
 * first. Not from inside a callback of this client. NULL is a no-op. */
void grpc_client_free(grpc_client *c);
/* False once the connection failed or the server sent GOAWAY; new calls
 * are then refused. */
bool grpc_client_usable(const grpc_client *c);
/* Calls started and not yet done. */
size_t grpc_client_open_calls(const grpc_client *c);

/* Opens a stream for path ("/etcdserverpb.KV/Put"). timeout_ns > 0 sends
 * grpc-timeout. md is NULL or a NULL-terminated list of lower-case
 * name, value pairs sent as metadata. On success *out is valid until on_done
 * has run; on failure (MS_EIO: connection unusable, MS_ENOMEM) no callback
 * will run. */
int grpc_client_call_start(grpc_client *c, const char *path, int64_t timeout_ns, const char *const *md,
                           grpc_client_msg_fn on_msg, grpc_client_done_fn on_done, void *ud, grpc_client_call **out);
/* Queues one request message (copied, framed). MS_EINVAL after close_send,
 * MS_ECANCELED once the call is over. */
int grpc_client_call_send(grpc_client_call *call, const uint8_t *msg, size_t len);
/* Packs and queues a protobuf message. */
int grpc_client_call_send_pb(grpc_client_call *call, const struct ProtobufCMessage *msg);
/* Ends the request side (END_STREAM after the queued messages). */
int grpc_client_call_close_send(grpc_client_call *call);
/* Resets the stream; on_done follows with CANCELED (not from inside this
 * function). */
void grpc_client_call_cancel(grpc_client_call *call);

/* start + send + close_send in one go: a unary call (also a
 * server-streaming one: on_msg runs per message). */
int grpc_client_unary(grpc_client *c, const char *path, const uint8_t *req, size_t len, int64_t timeout_ns,
                      grpc_client_msg_fn on_msg, grpc_client_done_fn on_done, void *ud, grpc_client_call **out);

#endif
