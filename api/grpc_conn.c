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
	grpc_call *call;
	if (grpc_call_new_internal(c, f->hd.stream_id, &call))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream */
	nghttp2_session_set_stream_user_data(s, f->hd.stream_id, call);
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen, uint8_t flags, void *ud)
{
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* client trailers carry nothing gRPC needs */
	grpc_call *call = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (!call)
		return 0;
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
	if (call->bad_headers || !call->is_post || !call->path || !content_type_ok(call->content_type)) {
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

static int on_data_chunk_recv(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                              void *ud)
{
	grpc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);
	if (call)
		grpc_call_on_data(call, data, len);
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

int grpc_conn_recv(grpc_conn *c, const uint8_t *data, size_t len)
{
	if (c->broken)
		return MS_EINVAL;
	c->busy++;
	ssize_t rv = nghttp2_session_mem_recv(c->session, data, len);
	c->busy--;
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
		if (!call->deadline || call->finished || !call->method)
			continue;
		if (call->deadline <= now_ns)
			grpc_call_finish(call, GRPC_DEADLINE_EXCEEDED, "context deadline exceeded");
		else if (!next || call->deadline < next)
			next = call->deadline;
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
	ms_free(c);
}
