/* grpc_int.h — internals shared by the gRPC layer's own files (grpc_conn.c,
 * grpc_call.c, grpc_http1.c, grpc_server.c) and its unit tests. Nothing
 * outside api/grpc* includes this. */
#ifndef MS_API_GRPC_INT_H
#define MS_API_GRPC_INT_H

#include <nghttp2/nghttp2.h>

#include "api/grpc.h"

#define GRPC_DEFAULT_MAX_RECV_MSG (2u * 1024 * 1024)
#define GRPC_DEFAULT_MAX_STREAMS 1000u
#define GRPC_DEFAULT_INITIAL_WINDOW (1u << 20)
#define GRPC_DEFAULT_CONN_WINDOW (16u << 20)
#define GRPC_DEFAULT_MAX_PENDING_OUT ((size_t)4 << 20)
#define GRPC_DEFAULT_MAX_INFLIGHT 64u
#define GRPC_DEFAULT_MAX_CONN_OUT ((size_t)16 << 20)
#define GRPC_DEFAULT_MAX_TOTAL_OUT ((size_t)256 << 20)
#define GRPC_DEFAULT_MAX_TOTAL_PARTIAL ((size_t)128 << 20)
#define GRPC_DEFAULT_MAX_TOTAL_CALLS 65536u
#define GRPC_DEFAULT_MAX_CONNS_CAP 65536u
#define GRPC_DEFAULT_HANDSHAKE_MS 5000u
#define GRPC_DEFAULT_HTTP1_IDLE_MS 60000u
/* While the server-wide output budget is exhausted, a connection holding
 * more than this stops being dispatched: the ones that do not read are
 * stopped, clients that keep up are still served. */
#define GRPC_FAIR_OUT ((size_t)1 << 20)
/* Request metadata per call: names + values; more gets RST_STREAM. */
#define GRPC_MAX_METADATA_BYTES (64u * 1024)
/* Bytes of incomplete request messages held per connection (all streams). */
#define GRPC_MAX_CONN_PARTIAL ((size_t)64 << 20)

/* Server-wide counters shared by the connections of one grpc_server (the
 * per-connection ones live in grpc_conn). Loop thread only. */
typedef struct grpc_budget {
	size_t out_total;     /* bytes in calls' output queues */
	size_t partial_total; /* bytes held for unfinished request messages */
	uint32_t calls_total; /* calls whose stream is open */
} grpc_budget;

/* Fills the defaults for zero fields. */
void grpc_opts_defaults(grpc_server_opts *o);

/* Byte queue: live bytes are p[off, len). */
typedef struct grpc_buf {
	uint8_t *p;
	size_t off, len, cap;
} grpc_buf;

/* Room for n more bytes at the end of b (compacting or growing it); NULL
 * when out of memory. Shared by the server calls and the client. */
uint8_t *grpc_buf_reserve(grpc_buf *b, size_t n);

typedef struct grpc_md {
	char *name, *value;
} grpc_md;

/* Header strings of a typical call (path, content-type, a little metadata)
 * fit in the call itself: no allocation per header (issue #6 profile:
 * ms_strndup per request header was most of the loop thread's malloc). */
#define GRPC_CALL_ARENA 256
#define GRPC_CALL_INLINE_MD 4

struct grpc_call {
	grpc_conn *conn; /* NULL once the connection is gone */
	int32_t stream_id;
	int refs;                  /* the stream holds one while it is open */
	const grpc_method *method; /* NULL: unknown path (answered, never shown to a handler) */
	char *path;
	char *encoding; /* grpc-encoding, or NULL */
	char *content_type;
	grpc_md *md; /* md_inline until more are needed */
	size_t nmd, capmd, md_bytes;
	grpc_md md_inline[GRPC_CALL_INLINE_MD];
	char arena[GRPC_CALL_ARENA]; /* strings; larger ones are ms_malloc'd */
	size_t arena_used;
	int64_t deadline;
	void *data;
	bool bad_headers; /* malformed grpc-timeout etc.: the stream is reset */
	bool is_post;

	/* receiving: one message being reassembled */
	uint8_t hdr[5];
	size_t hdr_got;
	uint8_t *msg;
	size_t msg_len, msg_got, msg_cap;
	bool in_msg; /* header complete, body not yet */
	bool got_message;
	bool inflight;          /* a unary call counted in conn->inflight */
	int64_t inflight_until; /* after this (mono ns) it stops counting: a blocking call (Lock) */
	bool held;              /* request complete, dispatch held by the reply budget (msg kept) */
	bool half_close_due;    /* the client's END_STREAM came while held */
	grpc_call *held_next;   /* the connection's held calls, oldest first */
	grpc_buf backlog;       /* bidi: DATA received while held, not yet processed */
	size_t backlog_counted; /* its capacity, counted as partial bytes */
	uint8_t pseudo;         /* request pseudo-headers seen (CALL_PS_*) */
	bool saw_regular;       /* a regular header came: no pseudo-header may follow */

	/* sending */
	grpc_buf out; /* framed messages not yet taken by nghttp2 */
	bool headers_sent;
	bool deferred;  /* the data provider returned DEFERRED */
	bool finishing; /* trailers go after the queued data */
	bool finished;  /* grpc_call_finish ran (or the stream ended) */
	bool closed;    /* on_close has fired */
	int status;
	char *message; /* percent-encoded, or NULL */
	bool over;     /* pending exceeded max_pending_out */
	bool drain_due;
	void (*drain_fn)(grpc_call *call, void *arg);
	void *drain_arg;

	grpc_call *prev, *next; /* the connection's open calls */
};

struct grpc_conn {
	nghttp2_session *session;
	grpc_server_opts opts;
	const grpc_method *methods;
	size_t nmethods;
	grpc_conn_send_fn send;
	void *send_ud;
	void (*flush_hook)(void *ud);
	void *flush_ud;
	grpc_call *calls; /* open calls (stream still open) */
	int busy;         /* recv/flush on the stack: flushes are deferred */
	bool want_flush;
	bool blocked; /* the send callback said MS_EAGAIN */
	bool broken;  /* protocol error or send failure */
	bool peer_goaway;
	int drains_due;
	int64_t new_deadline; /* earliest deadline of calls created since the last pop */
	size_t partial_bytes; /* bytes held in incomplete request messages */
	char *peer_cn;        /* TLS client certificate CN, or NULL */
	/* budgets (see grpc_conn_feed) */
	grpc_budget *budget;              /* server-wide counters, or NULL */
	uint32_t inflight;                /* unary calls dispatched, not finished */
	uint32_t ncalls;                  /* open calls */
	size_t out_bytes;                 /* bytes in this connection's calls' output queues */
	int no_pause;                     /* grpc_conn_recv: take every byte */
	bool paused;                      /* processing stopped by the budget; resume with grpc_conn_feed */
	grpc_call *held_head, *held_tail; /* unary calls waiting for the reply budget */
	uint32_t nheld;
	bool got_settings; /* the client's first SETTINGS arrived: handshake done */
};

/* The send callback (grpc_conn_send_fn) may also return MS_EAGAIN: "taken,
 * but my buffer is full". grpc_conn_flush then stops pulling frames from
 * nghttp2 (they stay queued per call, seen by grpc_call_pending_bytes) until
 * the caller flushes again. */

/* ---- grpc_conn.c, used by grpc_call.c ---- */
/* Output was queued: flush now, after the current recv, or via the hook. */
void grpc_conn_kick(grpc_conn *c);
/* Budget accounting: output queue bytes (+/-), partial message bytes (+/-). */
void grpc_conn_out_add(grpc_conn *c, size_t n);
void grpc_conn_out_sub(grpc_conn *c, size_t n);
/* false (nothing counted) when the per-connection or server-wide bound would
 * be passed */
bool grpc_conn_partial_add(grpc_conn *c, size_t n, const char **why);
void grpc_conn_partial_sub(grpc_conn *c, size_t n);
/* A unary call got its request (dispatched) / finished. */
void grpc_conn_inflight_inc(grpc_conn *c);
void grpc_conn_inflight_dec(grpc_conn *c);
/* The reply budget is spent: new unary requests are held, not dispatched
 * (this connection's queued replies >= max_conn_out, or the server-wide
 * ones >= max_total_out while this connection holds > GRPC_FAIR_OUT). */
bool grpc_conn_out_over(const grpc_conn *c);
/* Queues / unqueues a held call. */
void grpc_conn_hold(grpc_conn *c, grpc_call *call);
void grpc_conn_unhold(grpc_conn *c, grpc_call *call);
/* A unary call stops counting as in flight this long after dispatch: a call
 * that blocks (Lock, Campaign, a read waiting for a leader) must not stop
 * its connection, where the request that unblocks it may be waiting. */
#define GRPC_INFLIGHT_NS 1000000000LL

/* ---- grpc_call.c, used by grpc_conn.c ---- */
int grpc_call_new_internal(grpc_conn *c, int32_t stream_id, grpc_call **out);
/* Request header (not a pseudo-header or one of the handled ones). 0 or MS_ENOMEM/MS_EINVAL.
 * Transport headers no handler reads (te, user-agent, content-type,
 * [grpc-]accept-encoding) count against the metadata limit but are not kept. */
int grpc_call_add_header(grpc_call *call, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen);
/* A NUL-terminated copy of s[0, n) owned by the call (freed with it); NULL on ENOMEM. */
char *grpc_call_strndup(grpc_call *call, const uint8_t *s, size_t n);
/* Received DATA bytes: reassembles and delivers messages. */
void grpc_call_on_data(grpc_call *call, const uint8_t *data, size_t len);
/* Request headers are complete: false (and the call answered Unimplemented,
 * as grpc-go) when grpc-encoding names no decompressor we have
 * (grpc_compress.h). */
bool grpc_call_check_encoding(grpc_call *call);
/* The client sent END_STREAM. */
void grpc_call_on_half_close(grpc_call *call);
/* The stream is gone: fires on_close (once) and drops the stream's ref. */
void grpc_call_on_stream_close(grpc_call *call);
/* nghttp2 data source read callback for response DATA. */
ssize_t grpc_call_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                          uint32_t *data_flags, nghttp2_data_source *source, void *user_data);
/* Calls a registered drain callback if it came due. */
void grpc_call_run_drain(grpc_call *call);
/* Dispatches a held request (the call was taken off the held list). */
void grpc_call_release_held(grpc_call *call);

/* ---- wire helpers (grpc_call.c) ---- */
/* grpc-timeout ("1S", "100m", "5000000u", "10n", "2M", "1H"; at most 8 digits)
 * to nanoseconds, clamped to INT64_MAX. 0 or MS_EINVAL. */
int grpc_timeout_parse(const char *s, int64_t *ns);
/* grpc-message percent-encoding (bytes outside 0x20..0x7e and '%'); ms_malloc'd, NULL on ENOMEM. */
char *grpc_percent_encode(const char *msg);

/* ---- grpc_conn.c, used by grpc_server.c and tests ---- */
/* Instead of flushing synchronously when a call queues output outside a
 * recv, call fn (the server defers to its loop so sends coalesce). */
void grpc_conn_set_flush_hook(grpc_conn *c, void (*fn)(void *ud), void *ud);
/* Accept failures seen by the server (tests: backing off, not spinning). */
uint64_t grpc_server_accept_errors(const grpc_server *s);
/* Counts this connection against server-wide budgets b (outlives c). */
void grpc_conn_set_budget(grpc_conn *c, grpc_budget *b);
/* Feeds received bytes like grpc_conn_recv, but stops early (after the DATA
 * chunk that completed a request) while the connection is over a budget
 * that frees by itself: unary calls in flight >= max_inflight (they finish,
 * or stop counting after GRPC_INFLIGHT_NS), or the transport blocked (the
 * client reads its socket). *used = bytes consumed; the caller keeps the
 * rest, stops reading the socket, and feeds it again (len may be 0) once
 * grpc_conn_paused() turns false. nghttp2 keeps no pointer into consumed
 * bytes (our callbacks copy). 0 or MS_EINVAL as grpc_conn_recv.
 *
 * The reply budget (grpc_conn_out_over) does not pause reading: replies
 * held back by HTTP/2 flow control drain only when the client's
 * WINDOW_UPDATE is read, and it may sit behind more requests. Those
 * requests are held instead (complete, not dispatched; their bytes count
 * in the partial-message budgets, their streams in max_concurrent_streams)
 * and dispatched in order as the replies drain. */
int grpc_conn_feed(grpc_conn *c, const uint8_t *data, size_t len, size_t *used);
/* True while a pause from grpc_conn_feed still holds (the budget is still
 * exceeded). */
bool grpc_conn_paused(grpc_conn *c);
/* The client's preface and first SETTINGS frame have arrived. */
bool grpc_conn_handshake_done(const grpc_conn *c);
/* Open streams with a call (no handshake/idle timeout applies while > 0). */
uint32_t grpc_conn_open_calls(const grpc_conn *c);
/* Earliest deadline among calls created since the last call (0 = none). */
int64_t grpc_conn_pop_new_deadline(grpc_conn *c);
/* Finishes open calls whose deadline is <= now with DEADLINE_EXCEEDED;
 * returns the earliest remaining deadline (0 = none). */
int64_t grpc_conn_expire(grpc_conn *c, int64_t now_ns);

/* ---- grpc_http1.c: HTTP/1.1 on the gRPC port, no I/O ---- */
typedef struct grpc_http1 grpc_http1;
/* Max request head (request line + headers) and body. */
#define GRPC_HTTP1_MAX_HEAD (64u * 1024)
int grpc_http1_new(const grpc_server_opts *opts, grpc_conn_send_fn send, void *send_ud, grpc_http1 **out);
/* Parses bytes, answers complete requests through the send callback.
 * MS_EINVAL: a malformed or oversize request (an error response was sent
 * when possible); the caller closes after flushing. */
int grpc_http1_recv(grpc_http1 *h, const uint8_t *data, size_t len);
/* The last response asked for the connection to close. */
bool grpc_http1_want_close(const grpc_http1 *h);
/* Where the parser is: between requests, in a request head, in a body
 * (the server's head and idle timeouts follow it). */
enum { GRPC_H1_IDLE, GRPC_H1_HEAD, GRPC_H1_BODY };
int grpc_http1_state(const grpc_http1 *h);
void grpc_http1_free(grpc_http1 *h);

#endif
