/* grpc.h — a small gRPC server on nghttp2 and libevent (private to api/).
 *
 * One nghttp2 server session per connection, on one libevent loop. The
 * framing core (grpc_conn) does no I/O: it takes received bytes and hands
 * bytes to send to a callback, so tests drive it byte by byte. The socket
 * glue (grpc_server) feeds it from bufferevents.
 *
 * What it does: HTTP/2 with prior knowledge, in cleartext or inside TLS
 * (grpc_server_listen_tls: an OpenSSL bufferevent, common/tls.h); gRPC message framing
 * (1-byte compressed flag + 4-byte big-endian length; compressed messages are
 * refused with Unimplemented); `content-type: application/grpc`; status and
 * percent-encoded message in trailers (Trailers-Only when no message was
 * sent); `grpc-timeout` parsed into a deadline; unary, server-streaming and
 * bidirectional calls; unknown method -> Unimplemented
 * ("unknown service X" / "unknown method Y for service X" as grpc-go says);
 * a received message larger than max_recv_msg -> ResourceExhausted
 * "grpc: received message larger than max (N vs. M)"; keep-alive PINGs are
 * answered (nghttp2 does that); flow-control windows sized for throughput;
 * back-pressure: a call whose unsent output exceeds a bound reports it
 * through grpc_call_pending_bytes so streaming producers can pause; a broken
 * HTTP/2 peer gets GOAWAY and its connection closes, others are unaffected.
 *
 * Budgets (issue 10; the table is README "Limits"): every byte a client can
 * make the server hold is bounded. Streams per connection
 * (max_concurrent_streams) and open calls in all (max_total_calls); unary
 * calls in flight per connection (max_inflight: over it nghttp2 is paused
 * and the socket is not read until one finishes); reply bytes queued per
 * connection and in all (max_conn_out, max_total_out: over them new unary
 * requests are held, read but not dispatched, so a client's WINDOW_UPDATE
 * behind them is still read); unfinished request bytes per connection and
 * in all; connections (max_conns, from RLIMIT_NOFILE); handshake and HTTP/1
 * idle timeouts; accept failures back off.
 *
 * HTTP/1.1 requests on the same port (told apart from the HTTP/2 preface)
 * are parsed with http-parser and handed to the http1 handler (for /health,
 * /version, /metrics and the JSON gateway).
 *
 * Threads: every function here runs on the loop thread only.
 *
 * Lifetime of a call: created when request headers arrive for a known
 * method; on_message runs per received message; on_half_close when the
 * client ends its side; on_close exactly once when the call is over (after
 * grpc_call_finish, a RST_STREAM, or the connection closing). Calls are
 * reference counted: a handler that completes asynchronously takes
 * grpc_call_ref() and drops it with grpc_call_unref(); sends on a call that
 * is already closed return MS_ECANCELED and do nothing. */
#ifndef MS_API_GRPC_H
#define MS_API_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ms.h"

struct event_base;
struct ProtobufCMessage;

/* gRPC status codes */
enum {
	GRPC_OK = 0,
	GRPC_CANCELED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_ABORTED = 10,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_DATA_LOSS = 15,
	GRPC_UNAUTHENTICATED = 16,
};

typedef struct grpc_server grpc_server;
typedef struct grpc_conn grpc_conn;
typedef struct grpc_call grpc_call;

typedef enum { GRPC_UNARY, GRPC_SERVER_STREAM, GRPC_BIDI_STREAM } grpc_kind;

typedef struct grpc_method {
	const char *path; /* "/etcdserverpb.KV/Range" */
	grpc_kind kind;
	/* One received message (unary and server-streaming: exactly once, before
	 * half-close). msg is valid only during the callback. */
	void (*on_message)(grpc_call *call, const uint8_t *msg, size_t len, void *ud);
	/* The client ended its side (may be NULL). */
	void (*on_half_close)(grpc_call *call, void *ud);
	/* The call is over; release per-call state (may be NULL). */
	void (*on_close)(grpc_call *call, void *ud);
	void *ud;
} grpc_method;

/* An HTTP/1.1 request and the handler's answer. */
typedef struct grpc_http1_request {
	const char *method; /* "GET", "POST", ... */
	const char *path;   /* path with query string */
	const char *host;   /* Host header or "" */
	const uint8_t *body;
	size_t body_len;
} grpc_http1_request;
typedef struct grpc_http1_response {
	int status;               /* 200, 405, 503 ... */
	const char *content_type; /* NULL = "application/json" */
	uint8_t *body;            /* ms_malloc'd; the server frees it */
	size_t body_len;
} grpc_http1_response;
typedef void (*grpc_http1_fn)(void *ud, const grpc_http1_request *req, grpc_http1_response *resp);

typedef struct grpc_server_opts {
	size_t max_recv_msg;             /* default: 1.5 MiB + 512 KiB = 2097152 */
	uint32_t max_concurrent_streams; /* --max-concurrent-streams; default 1000 (etcd: math.MaxUint32) */
	uint32_t initial_window;         /* per-stream window; default 1 MiB */
	uint32_t conn_window;            /* connection window; default 16 MiB */
	size_t max_pending_out;          /* per-call back-pressure bound; default 4 MiB */
	/* Resource budgets (issue 10; README "Limits"). 0 = the default. */
	uint32_t max_inflight;    /* unary calls dispatched and unfinished per connection; default 64 */
	size_t max_conn_out;      /* reply bytes queued per connection; default 16 MiB */
	size_t max_total_out;     /* reply bytes queued, all connections; default 256 MiB */
	size_t max_total_partial; /* bytes of unfinished request messages, all connections; default 128 MiB */
	uint32_t max_total_calls; /* open calls (streams), all connections; default 65536 */
	uint32_t max_conns;       /* client connections; default 75% of RLIMIT_NOFILE (at most 65536) */
	uint32_t handshake_ms;    /* HTTP/2 preface + SETTINGS, or an HTTP/1 head; default 5000 */
	uint32_t http1_idle_ms;   /* HTTP/1.1 keep-alive idle; default 60000 */
	grpc_http1_fn http1;      /* may be NULL: HTTP/1.1 requests get 404 */
	void *http1_ud;
} grpc_server_opts;

/* ---- framing core: no sockets ---- */
typedef int (*grpc_conn_send_fn)(void *ud, const uint8_t *data, size_t len); /* 0 or MS_EIO */
/* A connection's framing state. methods must outlive it. */
int grpc_conn_new(const grpc_server_opts *opts, const grpc_method *methods, size_t nmethods, grpc_conn_send_fn send,
                  void *send_ud, grpc_conn **out);
/* Feeds received bytes, all of them: the dispatch pause of the budgets is
 * not applied (grpc_conn_feed in grpc_int.h is the paused form the server
 * uses). Returns 0, or MS_EINVAL when the peer broke HTTP/2 (a GOAWAY has
 * been queued; the caller flushes and closes). */
int grpc_conn_recv(grpc_conn *c, const uint8_t *data, size_t len);
/* Pushes queued output through the send callback. */
int grpc_conn_flush(grpc_conn *c);
/* Records the verified client certificate's CN (copied) for grpc_call_peer_cn. */
int grpc_conn_set_peer_cn(grpc_conn *c, const char *cn);
/* True once both sides are done and the connection should be closed. */
bool grpc_conn_want_close(grpc_conn *c);
/* Closes all calls (on_close fires) and frees. */
void grpc_conn_free(grpc_conn *c);

/* ---- server: sockets on a libevent loop ---- */
int grpc_server_new(struct event_base *base, const grpc_server_opts *opts, const grpc_method *methods, size_t nmethods,
                    grpc_server **out, ms_err *err);
/* Listens on host:port (port 0 = any; the bound port is returned). */
int grpc_server_listen(grpc_server *s, const char *host, int port, int *bound_port, ms_err *err);
/* The same with TLS on every accepted connection (tls borrowed: it must
 * outlive the server; NULL = plain). */
struct ms_tls;
int grpc_server_listen_tls(grpc_server *s, const char *host, int port, struct ms_tls *tls, int *bound_port,
                           ms_err *err);
void grpc_server_free(grpc_server *s);
/* Streams a client may open per connection (SETTINGS_MAX_CONCURRENT_STREAMS)
 * for connections accepted from now on; 0 = the default. */
void grpc_server_set_max_concurrent_streams(grpc_server *s, uint32_t n);

/* ---- calls ---- */
void grpc_call_ref(grpc_call *call);
void grpc_call_unref(grpc_call *call);
bool grpc_call_closed(const grpc_call *call);
void grpc_call_set_data(grpc_call *call, void *data);
void *grpc_call_data(const grpc_call *call);
const char *grpc_call_path(const grpc_call *call);
/* Request metadata by lower-case name ("authorization", "token",
 * "hasleader"); NULL when absent. */
const char *grpc_call_metadata(const grpc_call *call, const char *name);
/* The CN of the client certificate verified in the TLS handshake of the
 * call's connection (--client-cert-auth); NULL on plain connections, without
 * a certificate, or once the connection is gone. Auth uses it as the user. */
const char *grpc_call_peer_cn(const grpc_call *call);
/* Absolute monotonic deadline (ns, ms_now_mono_ns clock) from grpc-timeout; 0 = none. */
int64_t grpc_call_deadline(const grpc_call *call);
/* Queues one message (copied). Sends response headers first if needed. */
int grpc_call_send(grpc_call *call, const uint8_t *msg, size_t len);
/* Packs and queues a protobuf message. */
int grpc_call_send_pb(grpc_call *call, const struct ProtobufCMessage *msg);
/* Bytes queued on this call and not yet handed to the peer. */
size_t grpc_call_pending_bytes(const grpc_call *call);
/* True while the call's unsent output is over the per-call bound
 * (max_pending_out) and has not yet drained below half of it. */
bool grpc_call_over_bound(const grpc_call *call);
/* Called (once) when pending bytes drop below half the bound after having
 * exceeded it; for producers that paused. */
void grpc_call_on_drain(grpc_call *call, void (*fn)(grpc_call *call, void *arg), void *arg);
/* Ends the call with a status and message (message may be NULL); trailers. */
int grpc_call_finish(grpc_call *call, int status, const char *message);

#endif
