/* grpc_client.c — an asynchronous gRPC client: one nghttp2 client session
 * per connection, fed from a libevent bufferevent, many streams at once
 * (see grpc_client.h). Output is coalesced: submissions schedule one flush
 * per loop iteration, as the server does. */
#include "api/grpc_client.h"
#include "api/grpc_int.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "api/grpc.h"
#include "common/tls.h"

#define CL_DEFAULT_MAX_RECV ((size_t)64 << 20)
#define CL_DEFAULT_WINDOW (1u << 20)
#define CL_DEFAULT_CONN_WINDOW (16u << 20)
/* Output buffered before we stop pulling frames from nghttp2; resumes
 * below the low mark (the server uses the same numbers). */
#define CL_OUT_HIGH ((size_t)1 << 20)
#define CL_OUT_LOW ((size_t)256 << 10)
#define CL_MAX_IO ((size_t)256 << 10)

struct grpc_client_call {
	grpc_client *cl;
	int32_t stream_id;
	grpc_client_msg_fn on_msg;
	grpc_client_done_fn on_done;
	void *ud;

	/* sending */
	grpc_buf out;
	bool close_send;
	bool deferred; /* the data provider said DEFERRED */
	bool done;

	/* receiving */
	uint8_t hdr[5];
	size_t hdr_got;
	uint8_t *msg;
	size_t msg_len, msg_got;
	bool in_msg;
	int http_status;    /* 0 = not seen */
	int grpc_status;    /* -1 = not seen */
	char *grpc_message; /* decoded */
	int local_status;   /* -1, or why we reset the stream ourselves */
	char local_msg[160];

	grpc_client_call *prev, *next;
};

struct grpc_client {
	struct event_base *base;
	struct bufferevent *bev;
	nghttp2_session *session;
	struct event *flush_ev;
	grpc_client_opts opts;
	char authority[300];
	grpc_client_call *calls;
	size_t ncalls;
	int busy;    /* inside nghttp2 recv/send: flushing is deferred */
	bool broken; /* the connection failed: every call has been told */
	bool goaway;
	bool blocked; /* output above CL_OUT_HIGH */
};

/* ---- helpers ---- */

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* grpc-message is percent-encoded; a malformed escape stays as it is (as
 * grpc-go does). */
static char *percent_decode(const uint8_t *v, size_t n)
{
	char *s = ms_malloc(n + 1);
	if (!s)
		return NULL;
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		int h, l;
		if (v[i] == '%' && i + 2 < n && (h = hexval(v[i + 1])) >= 0 && (l = hexval(v[i + 2])) >= 0) {
			s[j++] = (char)(h << 4 | l);
			i += 2;
		} else {
			s[j++] = (char)v[i];
		}
	}
	s[j] = 0;
	return s;
}

static void call_unlink(grpc_client_call *call)
{
	grpc_client *c = call->cl;
	if (call->prev)
		call->prev->next = call->next;
	else
		c->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	c->ncalls--;
}

static void call_free(grpc_client_call *call)
{
	ms_free(call->out.p);
	ms_free(call->msg);
	ms_free(call->grpc_message);
	ms_free(call);
}

/* Runs on_done once, then frees the call. */
static void call_done(grpc_client_call *call, int status, const char *message)
{
	MS_ASSERT(!call->done);
	call->done = true;
	call_unlink(call);
	if (call->stream_id > 0 && call->cl->session)
		nghttp2_session_set_stream_user_data(call->cl->session, call->stream_id, NULL);
	call->on_done(call, status, message ? message : "", call->ud);
	call_free(call);
}

/* Resets the stream for a reason of our own; on_done reports it. */
static void call_fail_local(grpc_client_call *call, int status, const char *msg)
{
	if (call->local_status < 0) {
		call->local_status = status;
		snprintf(call->local_msg, sizeof call->local_msg, "%s", msg);
	}
	nghttp2_submit_rst_stream(call->cl->session, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_CANCEL);
}

static void cl_schedule_flush(grpc_client *c)
{
	if (!c->broken)
		event_active(c->flush_ev, EV_TIMEOUT, 0);
}

/* The connection is gone: every open call learns it. */
static void cl_fail_all(grpc_client *c, int status, const char *msg)
{
	c->broken = true;
	while (c->calls)
		call_done(c->calls, status, msg);
}

/* ---- nghttp2 callbacks ---- */

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen, uint8_t flags, void *ud)
{
	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	grpc_client_call *call = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (!call)
		return 0;
	if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
		int st = 0;
		for (size_t i = 0; i < vlen && i < 4; i++)
			st = st * 10 + (value[i] - '0');
		call->http_status = st;
	} else if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		int st = 0;
		for (size_t i = 0; i < vlen && i < 4; i++) {
			if (value[i] < '0' || value[i] > '9') {
				st = GRPC_UNKNOWN;
				break;
			}
			st = st * 10 + (value[i] - '0');
		}
		call->grpc_status = st;
	} else if (nlen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		ms_free(call->grpc_message);
		call->grpc_message = percent_decode(value, vlen);
	} else if (nlen == 13 && memcmp(name, "grpc-encoding", 13) == 0) {
		if (!(vlen == 8 && memcmp(value, "identity", 8) == 0))
			call_fail_local(call, GRPC_INTERNAL, "grpc: compressed responses are not supported");
	}
	return 0;
}

static void call_on_data(grpc_client_call *call, const uint8_t *p, size_t n)
{
	while (n > 0 && call->local_status < 0) {
		if (!call->in_msg) {
			size_t k = MS_MIN(n, 5 - call->hdr_got);
			memcpy(call->hdr + call->hdr_got, p, k);
			call->hdr_got += k;
			p += k;
			n -= k;
			if (call->hdr_got < 5)
				return;
			call->hdr_got = 0;
			if (call->hdr[0] != 0) {
				call_fail_local(call, GRPC_INTERNAL, "grpc: compressed responses are not supported");
				return;
			}
			size_t len = (size_t)call->hdr[1] << 24 | (size_t)call->hdr[2] << 16 |
			             (size_t)call->hdr[3] << 8 | call->hdr[4];
			if (len > call->cl->opts.max_recv_msg) {
				char m[160];
				snprintf(m, sizeof m, "grpc: received message larger than max (%zu vs. %zu)", len,
				         call->cl->opts.max_recv_msg);
				call_fail_local(call, GRPC_RESOURCE_EXHAUSTED, m);
				return;
			}
			call->msg_len = len;
			call->msg_got = 0;
			call->in_msg = true;
			if (len > 0 && n >= len) {
				/* whole message in this chunk: no copy */
				call->in_msg = false;
				if (call->on_msg)
					call->on_msg(call, p, len, call->ud);
				p += len;
				n -= len;
				continue;
			}
			ms_free(call->msg);
			call->msg = len ? ms_malloc(len) : NULL;
			if (len && !call->msg) {
				call_fail_local(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
				return;
			}
		}
		size_t k = MS_MIN(n, call->msg_len - call->msg_got);
		if (k)
			memcpy(call->msg + call->msg_got, p, k);
		call->msg_got += k;
		p += k;
		n -= k;
		if (call->msg_got == call->msg_len) {
			call->in_msg = false;
			if (call->on_msg)
				call->on_msg(call, call->msg ? call->msg : (const uint8_t *)"", call->msg_len,
				             call->ud);
			ms_free(call->msg);
			call->msg = NULL;
		}
	}
}

static int on_data_chunk_recv(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                              void *ud)
{
	grpc_client_call *call = nghttp2_session_get_stream_user_data(s, stream_id);
	if (call)
		call_on_data(call, data, len);
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	grpc_client *c = ud;
	if (f->hd.type == NGHTTP2_GOAWAY)
		c->goaway = true;
	return 0;
}

/* grpc-go's mapping of HTTP status to gRPC code when no grpc-status came. */
static int http_to_grpc(int http)
{
	switch (http) {
	case 400:
		return GRPC_INTERNAL;
	case 401:
		return GRPC_UNAUTHENTICATED;
	case 403:
		return GRPC_PERMISSION_DENIED;
	case 404:
		return GRPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return GRPC_UNAVAILABLE;
	default:
		return GRPC_UNKNOWN;
	}
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud)
{
	grpc_client_call *call = nghttp2_session_get_stream_user_data(s, stream_id);
	if (!call)
		return 0;
	char m[160];
	if (call->local_status >= 0) {
		call_done(call, call->local_status, call->local_msg);
	} else if (call->grpc_status >= 0) {
		/* a status in trailers wins, even when a RST_STREAM(NO_ERROR) followed */
		call_done(call, call->grpc_status, call->grpc_message);
	} else if (error_code != NGHTTP2_NO_ERROR) {
		int st = error_code == NGHTTP2_REFUSED_STREAM ? GRPC_UNAVAILABLE
		         : error_code == NGHTTP2_CANCEL       ? GRPC_CANCELED
		                                              : GRPC_INTERNAL;
		snprintf(m, sizeof m, "stream terminated by RST_STREAM with error code: %u", error_code);
		call_done(call, st, m);
	} else if (call->http_status && call->http_status != 200) {
		snprintf(m, sizeof m, "unexpected HTTP status code received from server: %d", call->http_status);
		call_done(call, http_to_grpc(call->http_status), m);
	} else {
		call_done(call, GRPC_INTERNAL, "server closed the stream without sending trailers");
	}
	return 0;
}

static ssize_t req_read_cb(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *data_flags,
                           nghttp2_data_source *source, void *user_data)
{
	grpc_client_call *call = source->ptr;
	size_t avail = call->out.len - call->out.off;
	if (avail == 0 && !call->close_send) {
		call->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	size_t n = MS_MIN(avail, length);
	memcpy(buf, call->out.p + call->out.off, n);
	call->out.off += n;
	if (call->out.off == call->out.len) {
		call->out.off = call->out.len = 0;
		if (call->close_send)
			*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	}
	return (ssize_t)n;
}

/* ---- the socket side ---- */

/* Pulls frames from nghttp2 into the socket's output buffer. */
static void cl_flush(grpc_client *c)
{
	if (c->broken || c->busy)
		return;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	c->busy++;
	int rc = 0;
	while (evbuffer_get_length(out) < CL_OUT_HIGH) {
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(c->session, &p);
		if (n < 0) {
			rc = MS_EIO;
			break;
		}
		if (n == 0)
			break;
		if (evbuffer_add(out, p, (size_t)n)) {
			rc = MS_EIO;
			break;
		}
	}
	c->busy--;
	c->blocked = evbuffer_get_length(out) >= CL_OUT_HIGH;
	if (rc)
		cl_fail_all(c, GRPC_UNAVAILABLE, "transport: HTTP/2 send failed");
}

static void cl_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	cl_flush(arg);
}

static void cl_read_cb(struct bufferevent *bev, void *arg)
{
	grpc_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (c->broken) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	bool bad = false;
	while (!bad && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v[16];
		int nv = evbuffer_peek(in, -1, NULL, v, 16);
		size_t used = 0;
		c->busy++;
		for (int i = 0; i < MS_MIN(nv, 16) && !bad; i++) {
			ssize_t r = nghttp2_session_mem_recv(c->session, v[i].iov_base, v[i].iov_len);
			bad = r < 0;
			used += v[i].iov_len;
		}
		c->busy--;
		evbuffer_drain(in, used);
	}
	if (bad) {
		evbuffer_drain(in, evbuffer_get_length(in));
		cl_fail_all(c, GRPC_INTERNAL, "transport: the server broke HTTP/2");
		return;
	}
	cl_flush(c); /* WINDOW_UPDATEs, SETTINGS ACKs, requests queued by callbacks */
	if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session))
		cl_fail_all(c, GRPC_UNAVAILABLE, "transport: the connection is closing");
}

static void cl_write_cb(struct bufferevent *bev, void *arg)
{
	grpc_client *c = arg;
	if (c->blocked)
		cl_flush(c);
}

static void cl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	grpc_client *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		char m[200];
		snprintf(m, sizeof m, "connection error: %s",
		         (what & BEV_EVENT_EOF) ? "EOF" : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		cl_fail_all(c, GRPC_UNAVAILABLE, m);
		bufferevent_disable(bev, EV_READ | EV_WRITE);
	}
}

int grpc_client_new(struct event_base *base, const char *host, int port, const grpc_client_opts *opts,
                    grpc_client **out, ms_err *err)
{
	grpc_client *c = ms_calloc(1, sizeof *c);
	if (!c)
		return ms_err_set(err, MS_ENOMEM, "grpc client: out of memory");
	c->base = base;
	if (opts)
		c->opts = *opts;
	if (!c->opts.max_recv_msg)
		c->opts.max_recv_msg = CL_DEFAULT_MAX_RECV;
	if (!c->opts.initial_window)
		c->opts.initial_window = CL_DEFAULT_WINDOW;
	if (!c->opts.conn_window)
		c->opts.conn_window = CL_DEFAULT_CONN_WINDOW;
	if (c->opts.initial_window > NGHTTP2_MAX_WINDOW_SIZE)
		c->opts.initial_window = NGHTTP2_MAX_WINDOW_SIZE;
	if (c->opts.conn_window > NGHTTP2_MAX_WINDOW_SIZE)
		c->opts.conn_window = NGHTTP2_MAX_WINDOW_SIZE;
	snprintf(c->authority, sizeof c->authority, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);

	int rc = MS_ENOMEM;
	nghttp2_session_callbacks *cb = NULL;
	struct addrinfo *ai = NULL;
	if (nghttp2_session_callbacks_new(&cb)) {
		ms_err_set(err, rc, "grpc client: out of memory");
		goto fail_client;
	}
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_option *opt;
	if (nghttp2_option_new(&opt)) {
		ms_err_set(err, rc, "grpc client: out of memory");
		goto fail_cb;
	}
	nghttp2_option_set_no_closed_streams(opt, 1);
	int rv = nghttp2_session_client_new2(&c->session, cb, c, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	cb = NULL;
	if (rv) {
		ms_err_set(err, rc, "grpc client: nghttp2 session: %s", nghttp2_strerror(rv));
		goto fail_client;
	}
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->opts.initial_window},
	};
	if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, MS_ARRAY_LEN(iv)) ||
	    (c->opts.conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE &&
	     nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, (int32_t)c->opts.conn_window))) {
		ms_err_set(err, rc, "grpc client: out of memory");
		goto fail_session;
	}

	c->flush_ev = event_new(base, -1, 0, cl_flush_cb, c);
	/* the TLS seam: the server is verified as host (see common/tls.h) */
	c->bev = c->opts.tls ? ms_tls_bev_connect(c->opts.tls, base, host, true, BEV_OPT_CLOSE_ON_FREE)
	                     : bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->flush_ev || !c->bev) {
		ms_err_set(err, rc, "grpc client: out of memory");
		goto fail_events;
	}
	bufferevent_setcb(c->bev, cl_read_cb, cl_write_cb, cl_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, CL_OUT_LOW, 0);
	bufferevent_set_max_single_read(c->bev, CL_MAX_IO);
	bufferevent_set_max_single_write(c->bev, CL_MAX_IO);

	char ps[16];
	snprintf(ps, sizeof ps, "%d", port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	int gai = getaddrinfo(host, ps, &hints, &ai);
	if (gai) {
		rc = ms_err_set(err, MS_EINVAL, "grpc client: resolve %s: %s", host, gai_strerror(gai));
		goto fail_events;
	}
	if (bufferevent_socket_connect(c->bev, ai->ai_addr, (int)ai->ai_addrlen)) {
		rc = ms_err_set(err, MS_EIO, "grpc client: connect %s: %s", c->authority,
		                evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		goto fail_events;
	}
	freeaddrinfo(ai);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	cl_flush(c); /* preface and SETTINGS, buffered until connected */
	*out = c;
	return 0;

fail_events:
	if (ai)
		freeaddrinfo(ai);
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->flush_ev)
		event_free(c->flush_ev);
fail_session:
	nghttp2_session_del(c->session);
fail_cb:
	if (cb)
		nghttp2_session_callbacks_del(cb);
fail_client:
	ms_free(c);
	return rc;
}

void grpc_client_free(grpc_client *c)
{
	if (!c)
		return;
	MS_ASSERT(c->busy == 0);
	cl_fail_all(c, GRPC_CANCELED, "client closed");
	nghttp2_session_del(c->session);
	c->session = NULL;
	bufferevent_free(c->bev);
	event_free(c->flush_ev);
	ms_free(c);
}

bool grpc_client_usable(const grpc_client *c)
{
	return !c->broken && !c->goaway;
}

size_t grpc_client_open_calls(const grpc_client *c)
{
	return c->ncalls;
}

/* ---- calls ---- */

#define NV(n, v)                                                                                                       \
	{                                                                                                              \
		(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE                             \
	}

int grpc_client_call_start(grpc_client *c, const char *path, int64_t timeout_ns, const char *const *md,
                           grpc_client_msg_fn on_msg, grpc_client_done_fn on_done, void *ud, grpc_client_call **out)
{
	MS_ASSERT(on_done);
	if (!grpc_client_usable(c))
		return MS_EIO;
	size_t nmd = 0;
	while (md && md[2 * nmd])
		nmd++;
	if (nmd > 32)
		return MS_EINVAL;
	grpc_client_call *call = ms_calloc(1, sizeof *call);
	if (!call)
		return MS_ENOMEM;
	call->cl = c;
	call->on_msg = on_msg;
	call->on_done = on_done;
	call->ud = ud;
	call->grpc_status = -1;
	call->local_status = -1;

	char tmo[32];
	nghttp2_nv nva[7 + 32] = {
	    NV(":method", "POST"),          NV(":scheme", c->opts.tls ? "https" : "http"), NV(":path", path),
	    NV(":authority", c->authority), NV("content-type", "application/grpc"),        NV("te", "trailers"),
	};
	size_t n = 6;
	if (timeout_ns > 0) {
		/* at most 8 digits: microseconds while they fit, else milliseconds */
		int64_t us = (timeout_ns + 999) / 1000;
		if (us < 100000000)
			snprintf(tmo, sizeof tmo, "%lldu", (long long)us);
		else
			snprintf(tmo, sizeof tmo, "%lldm", (long long)MS_MIN((us + 999) / 1000, 99999999));
		nva[n++] = (nghttp2_nv)NV("grpc-timeout", tmo);
	}
	for (size_t i = 0; i < nmd; i++)
		nva[n++] = (nghttp2_nv)NV(md[2 * i], md[2 * i + 1]);
	nghttp2_data_provider prd = {.source.ptr = call, .read_callback = req_read_cb};
	int32_t id = nghttp2_submit_request(c->session, NULL, nva, n, &prd, call);
	if (id < 0) {
		ms_free(call);
		return id == NGHTTP2_ERR_NOMEM ? MS_ENOMEM : MS_EIO;
	}
	call->stream_id = id;
	call->next = c->calls;
	if (c->calls)
		c->calls->prev = call;
	c->calls = call;
	c->ncalls++;
	cl_schedule_flush(c);
	*out = call;
	return 0;
}

static void call_wake(grpc_client_call *call)
{
	if (call->deferred) {
		call->deferred = false;
		nghttp2_session_resume_data(call->cl->session, call->stream_id);
	}
	cl_schedule_flush(call->cl);
}

int grpc_client_call_send(grpc_client_call *call, const uint8_t *msg, size_t len)
{
	if (call->done)
		return MS_ECANCELED;
	if (call->close_send)
		return MS_EINVAL;
	if (len > UINT32_MAX)
		return MS_EINVAL;
	uint8_t *p = grpc_buf_reserve(&call->out, len + 5);
	if (!p)
		return MS_ENOMEM;
	p[0] = 0;
	p[1] = (uint8_t)(len >> 24);
	p[2] = (uint8_t)(len >> 16);
	p[3] = (uint8_t)(len >> 8);
	p[4] = (uint8_t)len;
	if (len)
		memcpy(p + 5, msg, len);
	call->out.len += len + 5;
	call_wake(call);
	return 0;
}

int grpc_client_call_send_pb(grpc_client_call *call, const ProtobufCMessage *msg)
{
	if (call->done)
		return MS_ECANCELED;
	if (call->close_send)
		return MS_EINVAL;
	size_t len = protobuf_c_message_get_packed_size(msg);
	if (len > UINT32_MAX)
		return MS_EINVAL;
	uint8_t *p = grpc_buf_reserve(&call->out, len + 5);
	if (!p)
		return MS_ENOMEM;
	p[0] = 0;
	p[1] = (uint8_t)(len >> 24);
	p[2] = (uint8_t)(len >> 16);
	p[3] = (uint8_t)(len >> 8);
	p[4] = (uint8_t)len;
	protobuf_c_message_pack(msg, p + 5);
	call->out.len += len + 5;
	call_wake(call);
	return 0;
}

int grpc_client_call_close_send(grpc_client_call *call)
{
	if (call->done)
		return MS_ECANCELED;
	if (!call->close_send) {
		call->close_send = true;
		call_wake(call);
	}
	return 0;
}

void grpc_client_call_cancel(grpc_client_call *call)
{
	if (call->done || call->cl->broken)
		return;
	call_fail_local(call, GRPC_CANCELED, "context canceled");
	cl_schedule_flush(call->cl);
}

static void silent_done(grpc_client_call *call, int status, const char *message, void *ud) {}

int grpc_client_unary(grpc_client *c, const char *path, const uint8_t *req, size_t len, int64_t timeout_ns,
                      grpc_client_msg_fn on_msg, grpc_client_done_fn on_done, void *ud, grpc_client_call **out)
{
	grpc_client_call *call;
	int rc = grpc_client_call_start(c, path, timeout_ns, NULL, on_msg, on_done, ud, &call);
	if (rc)
		return rc;
	rc = grpc_client_call_send(call, req, len);
	if (rc == 0)
		rc = grpc_client_call_close_send(call);
	if (rc) {
		/* the stream is submitted: reset it; the caller hears nothing */
		call->on_done = silent_done;
		call->on_msg = NULL;
		grpc_client_call_cancel(call);
		return rc;
	}
	if (out)
		*out = call;
	return 0;
}
