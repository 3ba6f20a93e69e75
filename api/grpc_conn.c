/* grpc_conn.c — the gRPC framing core: one nghttp2 server session per
 * connection, fed bytes by the caller and handing bytes back through a send
 * callback (no sockets, no loop), so tests drive it byte by byte. */
#include "api/grpc_int.h"

#include <stdio.h>
#include <string.h>

void grpc_opts_defaults(grpc_server_opts *o)
{
	if (!o->max_recv_msg)
		o->max_recv_msg = GRPC_DEFAULT_MAX_RECV_MSG;
	if (!o->max_concurrent_streams)
		o->max_concurrent_streams = GRPC_DEFAULT_MAX_STREAMS;
	if (!o->initial_window)
		o->initial_window = GRPC_DEFAULT_INITIAL_WINDOW;
	if (!o->conn_window)
		o->conn_window = GRPC_DEFAULT_CONN_WINDOW;
	if (!o->max_pending_out)
		o->max_pending_out = GRPC_DEFAULT_MAX_PENDING_OUT;
	if (!o->max_inflight)
		o->max_inflight = GRPC_DEFAULT_MAX_INFLIGHT;
	if (!o->max_conn_out)
		o->max_conn_out = GRPC_DEFAULT_MAX_CONN_OUT;
	if (!o->max_total_out)
		o->max_total_out = GRPC_DEFAULT_MAX_TOTAL_OUT;
	if (!o->max_total_partial)
		o->max_total_partial = GRPC_DEFAULT_MAX_TOTAL_PARTIAL;
	if (!o->max_total_calls)
		o->max_total_calls = GRPC_DEFAULT_MAX_TOTAL_CALLS;
	if (!o->handshake_ms)
		o->handshake_ms = GRPC_DEFAULT_HANDSHAKE_MS;
	if (!o->http1_idle_ms)
		o->http1_idle_ms = GRPC_DEFAULT_HTTP1_IDLE_MS;
	/* HTTP/2 caps windows at 2^31-1 */
	if (o->initial_window > NGHTTP2_MAX_WINDOW_SIZE)
		o->initial_window = NGHTTP2_MAX_WINDOW_SIZE;
	if (o->conn_window > NGHTTP2_MAX_WINDOW_SIZE)
		o->conn_window = NGHTTP2_MAX_WINDOW_SIZE;
}

static bool name_is(const uint8_t *n, size_t len, const char *lit)
{
	return len == strlen(lit) && memcmp(n, lit, len) == 0;
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	grpc_conn *c = ud;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (c->budget && c->budget->calls_total >= c->opts.max_total_calls) {
		/* no call is created: the rest of the header block is ignored;
		 * grpc-go retries a refused stream transparently */
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	grpc_call *call;
	if (grpc_call_new_internal(c, f->hd.stream_id, &call))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream */
	nghttp2_session_set_stream_user_data(s, f->hd.stream_id, call);
	return 0;
}

/* ---- request header checks ----
 * nghttp2's HTTP messaging checks are off (nghttp2_option_set_no_http_messaging)
 * because they reject an :authority that is not host[:port], and grpc-go (so
 * etcd) accepts any header value there: clientv3.Status(ctx,
 * "http://127.0.0.1:2379") sends that URL as :authority (issue 11). The
 * checks a gRPC server needs are made here instead, with grpc-go's outcome
 * (the stream is reset with PROTOCOL_ERROR): header names are lower-case
 * tokens; values carry no NUL, CR, LF or other control byte but HTAB; only
 * the four request pseudo-headers, each once, all before the regular
 * headers, and :method, :scheme and :path present; no connection-specific
 * header; no pseudo-header in trailers. te is not looked at, as grpc-go
 * (a "Trailers" or "trailers, deflate" from a hand-made client is served). content-length is
 * not checked: gRPC framing carries its own lengths. */
enum { CALL_PS_METHOD = 1, CALL_PS_SCHEME = 2, CALL_PS_PATH = 4, CALL_PS_AUTHORITY = 8 };

static bool header_name_ok(const uint8_t *n, size_t len)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		uint8_t ch = n[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || (ch && strchr(extra, ch))))
			return false;
	}
	return true;
}

static bool header_value_ok(const uint8_t *v, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
			return false;
	return true;
}

static bool header_conn_specific(const uint8_t *n, size_t len)
{
	return name_is(n, len, "connection") || name_is(n, len, "keep-alive") || name_is(n, len, "proxy-connection") ||
	       name_is(n, len, "transfer-encoding") || name_is(n, len, "upgrade");
}

/* Checks one request header; false: the stream gets PROTOCOL_ERROR. */
static bool request_header_ok(grpc_call *call, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen)
{
	if (!header_value_ok(value, vlen))
		return false;
	if (nlen > 0 && name[0] == ':') {
		uint8_t bit = name_is(name, nlen, ":method")      ? CALL_PS_METHOD
		              : name_is(name, nlen, ":scheme")    ? CALL_PS_SCHEME
		              : name_is(name, nlen, ":path")      ? CALL_PS_PATH
		              : name_is(name, nlen, ":authority") ? CALL_PS_AUTHORITY
		                                                  : 0;
		if (!bit || (call->pseudo & bit) || call->saw_regular)
			return false;
		call->pseudo |= bit;
		return true;
	}
	call->saw_regular = true;
	return header_name_ok(name, nlen) && !header_conn_specific(name, nlen);
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen, uint8_t flags, void *ud)
{
	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	grpc_call *call = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (!call)
		return 0;
	if (f->headers.cat != NGHTTP2_HCAT_REQUEST) {
		/* client trailers carry nothing gRPC needs, but must be well-formed */
		if ((nlen > 0 && name[0] == ':') || !header_name_ok(name, nlen) || !header_value_ok(value, vlen))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		return 0;
	}
	if (call->bad_headers)
		return 0; /* the stream is reset once the block is complete */
	if (!request_header_ok(call, name, nlen, value, vlen)) {
		call->bad_headers = true;
		return 0;
	}
	char **dst = NULL;
	if (nlen > 0 && name[0] == ':') {
		if (name_is(name, nlen, ":path"))
			dst = &call->path;
		else if (name_is(name, nlen, ":method"))
			call->is_post = name_is(value, vlen, "POST");
	} else if (name_is(name, nlen, "grpc-timeout")) {
		char buf[16];
		int64_t ns;
		if (vlen >= sizeof buf) {
			call->bad_headers = true;
			return 0;
		}
		memcpy(buf, value, vlen);
		buf[vlen] = 0;
		if (grpc_timeout_parse(buf, &ns)) {
			call->bad_headers = true;
			return 0;
		}
		int64_t now = ms_now_mono_ns();
		call->deadline = ns > INT64_MAX - now ? INT64_MAX : now + ns;
	} else if (name_is(name, nlen, "grpc-encoding")) {
		dst = &call->encoding;
	} else {
		if (name_is(name, nlen, "content-type") && !call->content_type) {
			call->content_type = grpc_call_strndup(call, value, vlen);
			if (!call->content_type)
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
		if (grpc_call_add_header(call, name, nlen, value, vlen))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	if (dst) {
		if (*dst) /* repeated: nghttp2's messaging checks reject most of these already */
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		*dst = grpc_call_strndup(call, value, vlen);
		if (!*dst)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

static bool content_type_ok(const char *ct)
{
	/* grpc-go: "application/grpc", "application/grpc+proto", "application/grpc;..." */
	if (!ct || strncmp(ct, "application/grpc", 16) != 0)
		return false;
	return ct[16] == 0 || ct[16] == '+' || ct[16] == ';';
}

/* Request headers complete: find the method or answer. */
static void dispatch(grpc_conn *c, grpc_call *call)
{
	uint8_t need = CALL_PS_METHOD | CALL_PS_SCHEME | CALL_PS_PATH;
	if (call->bad_headers || (call->pseudo & need) != need || !call->is_post || !call->path ||
	    !content_type_ok(call->content_type)) {
		/* grpc-go resets such streams (malformed grpc-timeout, not gRPC) */
		call->finished = true;
		nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_PROTOCOL_ERROR);
		return;
	}
	for (size_t i = 0; i < c->nmethods; i++) {
		if (strcmp(c->methods[i].path, call->path) == 0) {
			call->method = &c->methods[i];
			if (!grpc_call_check_encoding(call))
				return;
			if (call->deadline && (!c->new_deadline || call->deadline < c->new_deadline))
				c->new_deadline = call->deadline;
			return;
		}
	}
	/* the words of grpc-go's server.handleStream */
	const char *sm = call->path[0] == '/' ? call->path + 1 : call->path;
	const char *slash = strrchr(sm, '/');
	char msg[512];
	if (!slash) {
		snprintf(msg, sizeof msg, "malformed method name: \"%.400s\"", call->path);
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, msg);
		return;
	}
	int slen = (int)(slash - sm);
	bool known = false;
	for (size_t i = 0; i < c->nmethods && !known; i++) {
		const char *p = c->methods[i].path;
		p += p[0] == '/';
		known = strncmp(p, sm, (size_t)slen) == 0 && p[slen] == '/';
	}
	if (known)
		snprintf(msg, sizeof msg, "unknown method %.200s for service %.*s", slash + 1, MS_MIN(slen, 200), sm);
	else
		snprintf(msg, sizeof msg, "unknown service %.*s", MS_MIN(slen, 400), sm);
	grpc_call_finish(call, GRPC_UNIMPLEMENTED, msg);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	grpc_conn *c = ud;
	if (f->hd.type == NGHTTP2_GOAWAY) {
		c->peer_goaway = true;
		return 0;
	}
	if (f->hd.type == NGHTTP2_SETTINGS)
		c->got_settings = true;
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	grpc_call *call = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (!call)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
		dispatch(c, call);
	if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
		grpc_call_on_half_close(call);
	return 0;
}

/* Over a budget that frees by itself: stop processing input. */
static bool conn_over(const grpc_conn *c)
{
	return c->inflight >= c->opts.max_inflight || c->blocked;
}

bool grpc_conn_out_over(const grpc_conn *c)
{
	if (c->out_bytes >= c->opts.max_conn_out)
		return true;
	return c->budget && c->budget->out_total >= c->opts.max_total_out && c->out_bytes > GRPC_FAIR_OUT;
}

void grpc_conn_hold(grpc_conn *c, grpc_call *call)
{
	call->held = true;
	call->held_next = NULL;
	if (c->held_tail)
		c->held_tail->held_next = call;
	else
		c->held_head = call;
	c->held_tail = call;
	c->nheld++;
}

void grpc_conn_unhold(grpc_conn *c, grpc_call *call)
{
	grpc_call *prev = NULL;
	for (grpc_call *x = c->held_head; x; prev = x, x = x->held_next) {
		if (x != call)
			continue;
		if (prev)
			prev->held_next = x->held_next;
		else
			c->held_head = x->held_next;
		if (c->held_tail == x)
			c->held_tail = prev;
		c->nheld--;
		break;
	}
	call->held = false;
	call->held_next = NULL;
}

/* Dispatches held calls while the budgets allow (from flush: busy is held,
 * so handlers' sends are flushed by the caller's loop). */
static void conn_run_held(grpc_conn *c)
{
	while (c->held_head && !grpc_conn_out_over(c) && c->inflight < c->opts.max_inflight) {
		grpc_call *call = c->held_head;
		grpc_conn_unhold(c, call);
		grpc_call_release_held(call);
	}
}

static int on_data_chunk_recv(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                              void *ud)
{
	grpc_conn *c = ud;
	grpc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);
	if (call)
		grpc_call_on_data(call, data, len);
	/* Requests are dispatched here (a message completes in a DATA chunk),
	 * so this is where processing stops: nghttp2_session_mem_recv returns
	 * after this chunk and the rest of the input waits for the budget. */
	if (!c->no_pause && conn_over(c)) {
		c->paused = true;
		return NGHTTP2_ERR_PAUSE;
	}
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud)
{
	grpc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);
	if (call) {
		nghttp2_session_set_stream_user_data(s, stream_id, NULL);
		grpc_call_on_stream_close(call);
	}
	return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	/* Like grpc-go: once the status is out and the client is still sending,
	 * RST_STREAM(NO_ERROR) tells it to stop (RFC 7540 8.1). */
	if (f->hd.type == NGHTTP2_HEADERS && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    nghttp2_session_get_stream_remote_close(s, f->hd.stream_id) == 0)
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
	return 0;
}

/* ---- the connection ---- */

int grpc_conn_new(const grpc_server_opts *opts, const grpc_method *methods, size_t nmethods, grpc_conn_send_fn send,
                  void *send_ud, grpc_conn **out)
{
	grpc_conn *c = ms_calloc(1, sizeof *c);
	if (!c)
		return MS_ENOMEM;
	if (opts)
		c->opts = *opts;
	grpc_opts_defaults(&c->opts);
	c->methods = methods;
	c->nmethods = nmethods;
	c->send = send;
	c->send_ud = send_ud;

	int rc = MS_ENOMEM;
	nghttp2_session_callbacks *cb;
	if (nghttp2_session_callbacks_new(&cb))
		goto fail_conn;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
	nghttp2_option *opt;
	if (nghttp2_option_new(&opt))
		goto fail_cb;
	/* gRPC clients send many small messages; nghttp2's default of 1000
	 * queued outbound control frames is fine, but its closed-stream memory
	 * is not needed */
	nghttp2_option_set_no_closed_streams(opt, 1);
	/* the request header checks are ours (request_header_ok) */
	nghttp2_option_set_no_http_messaging(opt, 1);
	int rv = nghttp2_session_server_new2(&c->session, cb, c, opt);
	nghttp2_option_del(opt);
	if (rv)
		goto fail_cb;
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->opts.max_concurrent_streams},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->opts.initial_window},
	};
	if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, MS_ARRAY_LEN(iv)))
		goto fail_session;
	/* the connection window only grows by WINDOW_UPDATE; a large one lets
	 * many streams upload at once */
	if (c->opts.conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE &&
	    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, (int32_t)c->opts.conn_window))
		goto fail_session;
	nghttp2_session_callbacks_del(cb);
	*out = c;
	return 0;

fail_session:
	nghttp2_session_del(c->session);
fail_cb:
	nghttp2_session_callbacks_del(cb);
fail_conn:
	ms_free(c);
	return rc;
}

void grpc_conn_set_flush_hook(grpc_conn *c, void (*fn)(void *ud), void *ud)
{
	c->flush_hook = fn;
	c->flush_ud = ud;
}

void grpc_conn_kick(grpc_conn *c)
{
	if (c->busy)
		c->want_flush = true;
	else if (c->flush_hook)
		c->flush_hook(c->flush_ud);
	else
		grpc_conn_flush(c);
}

void grpc_conn_set_budget(grpc_conn *c, grpc_budget *b)
{
	MS_ASSERT(!c->calls && !c->out_bytes && !c->partial_bytes);
	c->budget = b;
}

void grpc_conn_out_add(grpc_conn *c, size_t n)
{
	c->out_bytes += n;
	if (c->budget)
		c->budget->out_total += n;
}

void grpc_conn_out_sub(grpc_conn *c, size_t n)
{
	MS_ASSERT(c->out_bytes >= n);
	c->out_bytes -= n;
	if (c->budget)
		c->budget->out_total -= n;
}

bool grpc_conn_partial_add(grpc_conn *c, size_t n, const char **why)
{
	if (c->partial_bytes + n > GRPC_MAX_CONN_PARTIAL) {
		*why = "grpc: too much partial request data on the connection";
		return false;
	}
	if (c->budget && c->budget->partial_total + n > c->opts.max_total_partial) {
		*why = "grpc: too much partial request data on the server";
		return false;
	}
	c->partial_bytes += n;
	if (c->budget)
		c->budget->partial_total += n;
	return true;
}

void grpc_conn_partial_sub(grpc_conn *c, size_t n)
{
	MS_ASSERT(c->partial_bytes >= n);
	c->partial_bytes -= n;
	if (c->budget)
		c->budget->partial_total -= n;
}

void grpc_conn_inflight_inc(grpc_conn *c)
{
	c->inflight++;
}

void grpc_conn_inflight_dec(grpc_conn *c)
{
	MS_ASSERT(c->inflight > 0);
	c->inflight--;
	if ((c->paused || c->held_head) && !c->busy)
		grpc_conn_kick(c); /* held calls run in the flush; the owner looks at grpc_conn_paused() after it */
}

bool grpc_conn_paused(grpc_conn *c)
{
	/* hysteresis: resume once a quarter of the in-flight calls finished,
	 * so a busy connection reads requests in batches rather than one loop
	 * iteration per finished call */
	if (c->paused && !c->blocked && c->inflight <= c->opts.max_inflight - (c->opts.max_inflight + 3) / 4)
		c->paused = false;
	return c->paused;
}

bool grpc_conn_handshake_done(const grpc_conn *c)
{
	return c->got_settings;
}

uint32_t grpc_conn_open_calls(const grpc_conn *c)
{
	return c->ncalls;
}

int grpc_conn_recv(grpc_conn *c, const uint8_t *data, size_t len)
{
	size_t used;
	c->no_pause++;
	int rc = grpc_conn_feed(c, data, len, &used);
	c->no_pause--;
	MS_ASSERT(rc || used == len);
	return rc;
}

int grpc_conn_feed(grpc_conn *c, const uint8_t *data, size_t len, size_t *used)
{
	static const uint8_t none[1];
	*used = 0;
	if (c->broken)
		return MS_EINVAL;
	c->paused = false;
	c->busy++;
	/* len 0 still runs nghttp2: a frame whose last chunk paused it is
	 * completed (END_STREAM seen) on the next call */
	ssize_t rv = nghttp2_session_mem_recv(c->session, len ? data : none, len);
	c->busy--;
	if (rv >= 0)
		*used = (size_t)rv;
	if (rv < 0) {
		/* bad preface or a frame nghttp2 cannot continue after: GOAWAY */
		nghttp2_session_terminate_session(c->session, NGHTTP2_PROTOCOL_ERROR);
		c->broken = true;
	}
	grpc_conn_flush(c);
	/* nghttp2 hit a connection error by itself: it queued GOAWAY and stops
	 * reading once that is sent */
	if (!c->broken && !c->peer_goaway && !nghttp2_session_want_read(c->session))
		c->broken = true;
	if (c->broken)
		*used = len; /* nothing more is read from a broken connection */
	return c->broken ? MS_EINVAL : 0;
}

int grpc_conn_flush(grpc_conn *c)
{
	if (c->busy) {
		c->want_flush = true;
		return 0;
	}
	c->busy++;
	c->blocked = false;
	int rc = 0;
	do {
		c->want_flush = false;
		while (!c->blocked) {
			const uint8_t *p;
			ssize_t n = nghttp2_session_mem_send(c->session, &p);
			if (n < 0) {
				c->broken = true;
				rc = MS_EIO;
				break;
			}
			if (n == 0)
				break;
			int r = c->send(c->send_ud, p, (size_t)n);
			if (r == MS_EAGAIN) {
				c->blocked = true; /* the caller flushes again once its buffer drained */
			} else if (r) {
				c->broken = true;
				rc = MS_EIO;
				break;
			}
		}
		if (c->held_head && rc == 0)
			conn_run_held(c);
		if (c->drains_due && rc == 0) {
			c->drains_due = 0;
			grpc_call *next;
			for (grpc_call *call = c->calls; call; call = next) {
				next = call->next; /* closes happen only in mem_send, not here */
				grpc_call_run_drain(call);
			}
		}
	} while (c->want_flush && !c->blocked && rc == 0);
	c->busy--;
	return rc;
}

bool grpc_conn_want_close(grpc_conn *c)
{
	if (c->broken)
		return true;
	return !nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session);
}

int64_t grpc_conn_pop_new_deadline(grpc_conn *c)
{
	int64_t d = c->new_deadline;
	c->new_deadline = 0;
	return d;
}

int64_t grpc_conn_expire(grpc_conn *c, int64_t now_ns)
{
	int64_t next = 0;
	c->busy++;
	for (grpc_call *call = c->calls; call; call = call->next) {
		if (call->deadline && !call->finished && call->method) {
			if (call->deadline <= now_ns)
				grpc_call_finish(call, GRPC_DEADLINE_EXCEEDED, "context deadline exceeded");
			else if (!next || call->deadline < next)
				next = call->deadline;
		}
		if (call->inflight) { /* still in flight after a second: stops counting */
			if (call->inflight_until <= now_ns) {
				call->inflight = false;
				grpc_conn_inflight_dec(c);
			} else if (!next || call->inflight_until < next) {
				next = call->inflight_until;
			}
		}
	}
	c->busy--;
	grpc_conn_flush(c);
	return next;
}

void grpc_conn_free(grpc_conn *c)
{
	if (!c)
		return;
	MS_ASSERT(c->busy == 0);
	c->busy++; /* handlers' on_close must not flush into a dying session */
	while (c->calls) {
		grpc_call *call = c->calls;
		nghttp2_session_set_stream_user_data(c->session, call->stream_id, NULL);
		grpc_call_on_stream_close(call);
	}
	nghttp2_session_del(c->session);
	ms_free(c->peer_cn);
	ms_free(c);
}

int grpc_conn_set_peer_cn(grpc_conn *c, const char *cn)
{
	char *d = ms_strdup(cn);
	if (!d)
		return MS_ENOMEM;
	ms_free(c->peer_cn);
	c->peer_cn = d;
	return 0;
}
