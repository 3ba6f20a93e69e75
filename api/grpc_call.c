/* grpc_call.c — one gRPC call on an HTTP/2 stream: message reassembly,
 * response framing and back-pressure, status trailers, and the wire helpers
 * (grpc-timeout, grpc-message percent-encoding). */
#include "api/grpc_int.h"

#include "api/grpc_compress.h"

#include <limits.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <string.h>

/* ---- wire helpers ---- */

int grpc_timeout_parse(const char *s, int64_t *ns)
{
	size_t n = strlen(s);
	if (n < 2 || n > 9) /* spec: 1..8 digits and a unit */
		return MS_EINVAL;
	int64_t unit;
	switch (s[n - 1]) {
	case 'H':
		unit = 3600LL * 1000000000LL;
		break;
	case 'M':
		unit = 60LL * 1000000000LL;
		break;
	case 'S':
		unit = 1000000000LL;
		break;
	case 'm':
		unit = 1000000LL;
		break;
	case 'u':
		unit = 1000LL;
		break;
	case 'n':
		unit = 1;
		break;
	default:
		return MS_EINVAL;
	}
	int64_t v = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return MS_EINVAL;
		v = v * 10 + (s[i] - '0'); /* <= 99999999: no overflow */
	}
	*ns = v > INT64_MAX / unit ? INT64_MAX : v * unit;
	return 0;
}

char *grpc_percent_encode(const char *msg)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
		n += (*p < 0x20 || *p > 0x7e || *p == '%') ? 3 : 1;
	char *out = ms_malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
		if (*p < 0x20 || *p > 0x7e || *p == '%') {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		} else {
			*o++ = (char)*p;
		}
	}
	*o = 0;
	return out;
}

/* ---- lifetime ---- */

/* Message bytes held for a call (the reassembly buffer's capacity) are
 * counted on the connection and the server: with many streams each sending
 * part of a big message, memory is bounded by GRPC_MAX_CONN_PARTIAL per
 * connection and max_total_partial in all, rather than by streams x
 * max_recv_msg. The buffer is freed as soon as its message is delivered. */
static void backlog_free(grpc_call *call)
{
	if (call->conn && call->backlog_counted)
		grpc_conn_partial_sub(call->conn, call->backlog_counted);
	ms_free(call->backlog.p);
	call->backlog = (grpc_buf){0};
	call->backlog_counted = 0;
}

static void partial_release(grpc_call *call)
{
	backlog_free(call);
	if (call->conn && call->msg_cap)
		grpc_conn_partial_sub(call->conn, call->msg_cap);
	ms_free(call->msg);
	call->msg = NULL;
	call->msg_cap = 0;
	call->in_msg = false;
}

/* A unary call stops counting as dispatched work once it is finished. */
static void inflight_release(grpc_call *call)
{
	if (call->inflight && call->conn) {
		call->inflight = false;
		grpc_conn_inflight_dec(call->conn);
	}
}

int grpc_call_new_internal(grpc_conn *c, int32_t stream_id, grpc_call **out)
{
	grpc_call *call = ms_calloc(1, sizeof *call);
	if (!call)
		return MS_ENOMEM;
	call->conn = c;
	call->stream_id = stream_id;
	call->refs = 1;
	call->md = call->md_inline;
	call->capmd = GRPC_CALL_INLINE_MD;
	call->next = c->calls;
	if (c->calls)
		c->calls->prev = call;
	c->calls = call;
	c->ncalls++;
	if (c->budget)
		c->budget->calls_total++;
	*out = call;
	return 0;
}

static bool in_arena(const grpc_call *call, const char *p)
{
	return p >= call->arena && p < call->arena + sizeof call->arena;
}

static void call_str_free(grpc_call *call, char *p)
{
	if (p && !in_arena(call, p))
		ms_free(p);
}

char *grpc_call_strndup(grpc_call *call, const uint8_t *s, size_t n)
{
	char *p;
	if (n < sizeof call->arena - call->arena_used) {
		p = call->arena + call->arena_used;
		call->arena_used += n + 1;
	} else if (!(p = ms_malloc(n + 1))) {
		return NULL;
	}
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

static void call_free(grpc_call *call)
{
	for (size_t i = 0; i < call->nmd; i++) {
		call_str_free(call, call->md[i].name);
		call_str_free(call, call->md[i].value);
	}
	if (call->md != call->md_inline)
		ms_free(call->md);
	call_str_free(call, call->path);
	call_str_free(call, call->encoding);
	call_str_free(call, call->content_type);
	ms_free(call->msg);
	ms_free(call->out.p);
	ms_free(call->backlog.p);
	ms_free(call->message);
	ms_free(call);
}

void grpc_call_ref(grpc_call *call)
{
	call->refs++;
}

void grpc_call_unref(grpc_call *call)
{
	MS_ASSERT(call->refs > 0);
	if (--call->refs == 0)
		call_free(call);
}

void grpc_call_on_stream_close(grpc_call *call)
{
	if (call->closed)
		return;
	call->closed = true;
	call->finished = true;
	grpc_conn *c = call->conn;
	if (c && call->held)
		grpc_conn_unhold(c, call);
	partial_release(call);
	inflight_release(call);
	if (c) {
		/* unsent output is dropped with the stream */
		grpc_conn_out_sub(c, call->out.len - call->out.off);
		ms_free(call->out.p);
		call->out = (grpc_buf){0};
		c->ncalls--;
		if (c->budget)
			c->budget->calls_total--;
		if (call->prev)
			call->prev->next = call->next;
		else if (c->calls == call)
			c->calls = call->next;
		if (call->next)
			call->next->prev = call->prev;
		call->prev = call->next = NULL;
		call->conn = NULL; /* a handler's ref may outlive the connection */
	}
	if (call->method && call->method->on_close)
		call->method->on_close(call, call->method->ud);
	grpc_call_unref(call);
}

bool grpc_call_closed(const grpc_call *call)
{
	return call->closed || call->finished;
}
void grpc_call_set_data(grpc_call *call, void *data)
{
	call->data = data;
}
void *grpc_call_data(const grpc_call *call)
{
	return call->data;
}
const char *grpc_call_path(const grpc_call *call)
{
	return call->path ? call->path : "";
}
const char *grpc_call_peer_cn(const grpc_call *call)
{
	return call->conn ? call->conn->peer_cn : NULL;
}
int64_t grpc_call_deadline(const grpc_call *call)
{
	return call->deadline;
}

const char *grpc_call_metadata(const grpc_call *call, const char *name)
{
	for (size_t i = 0; i < call->nmd; i++)
		if (strcmp(call->md[i].name, name) == 0)
			return call->md[i].value;
	return NULL;
}

int grpc_call_add_header(grpc_call *call, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen)
{
	static const struct {
		const char *s;
		size_t n;
	} skip[] = {
	    {"te", 2}, {"user-agent", 10}, {"content-type", 12}, {"grpc-accept-encoding", 20}, {"accept-encoding", 15}};
	call->md_bytes += nlen + vlen + 32;
	if (call->md_bytes > GRPC_MAX_METADATA_BYTES)
		return MS_EINVAL;
	for (size_t i = 0; i < MS_ARRAY_LEN(skip); i++)
		if (nlen == skip[i].n && memcmp(name, skip[i].s, nlen) == 0)
			return 0;
	if (call->nmd == call->capmd) {
		size_t cap = call->capmd * 2;
		grpc_md *md = ms_malloc(cap * sizeof *md);
		if (!md)
			return MS_ENOMEM;
		memcpy(md, call->md, call->nmd * sizeof *md);
		if (call->md != call->md_inline)
			ms_free(call->md);
		call->md = md;
		call->capmd = cap;
	}
	char *n = grpc_call_strndup(call, name, nlen), *v = grpc_call_strndup(call, value, vlen);
	if (!n || !v) {
		call_str_free(call, n);
		call_str_free(call, v);
		return MS_ENOMEM;
	}
	call->md[call->nmd].name = n;
	call->md[call->nmd].value = v;
	call->nmd++;
	return 0;
}

/* ---- receiving ---- */

/* A compressed message (flag 1, a known encoding; grpc_compress.h): the
 * handler gets it inflated. false when the call ended. */
static bool inflate_message(grpc_call *call, const uint8_t **msg, size_t *len, uint8_t **owned)
{
	size_t max = call->conn->opts.max_recv_msg, n;
	const char *why;
	char buf[200];
	switch (grpc_decompress(call->encoding, *msg, *len, max, owned, &n, &why)) {
	case GRPC_DECOMPRESS_OK:
		*msg = *owned ? *owned : (const uint8_t *)"";
		*len = n;
		return true;
	case GRPC_DECOMPRESS_TOO_LARGE:
		snprintf(buf, sizeof buf, "grpc: received message after decompression larger than max (%zu vs. %zu)", n,
		         max);
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, buf);
		return false;
	case GRPC_DECOMPRESS_CORRUPT:
		snprintf(buf, sizeof buf, "grpc: failed to decompress the received message %s", why);
		grpc_call_finish(call, GRPC_INTERNAL, buf);
		return false;
	default:
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "grpc: out of memory");
		return false;
	}
}

/* Runs the handler for one request message. */
static void dispatch_msg(grpc_call *call, const uint8_t *msg, size_t len)
{
	/* hdr still holds this message's header (a held unary message reads
	 * nothing after it): flag 1 passed start_message, so inflate here */
	uint8_t *owned = NULL;
	if (call->hdr[0] == 1 && !inflate_message(call, &msg, &len, &owned))
		return;
	if (call->method->kind == GRPC_UNARY && !call->inflight) {
		call->inflight = true;
		call->inflight_until = ms_now_mono_ns() + GRPC_INFLIGHT_NS;
		grpc_conn *c = call->conn;
		if (!c->new_deadline || call->inflight_until < c->new_deadline)
			c->new_deadline = call->inflight_until; /* grpc_conn_expire stops counting it */
		grpc_conn_inflight_inc(c);
	}
	grpc_call_ref(call); /* the handler may drop the last other ref */
	call->method->on_message(call, msg, len, call->method->ud);
	grpc_call_unref(call);
	ms_free(owned);
}

/* A new unary request while the reply budget is spent is held: the message
 * stays in call->msg (counted as partial bytes) until grpc_conn_flush runs
 * it. owned: msg is call->msg already. False when the call ended. */
static bool hold_msg(grpc_call *call, const uint8_t *msg, size_t len, bool owned)
{
	if (!owned) {
		const char *why;
		size_t cap = len ? len : 1;
		if (!grpc_conn_partial_add(call->conn, cap, &why)) {
			grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, why);
			return false;
		}
		call->msg = ms_malloc(cap);
		if (!call->msg) {
			grpc_conn_partial_sub(call->conn, cap);
			grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "grpc: out of memory");
			return false;
		}
		memcpy(call->msg, msg, len);
		call->msg_cap = cap;
		call->msg_len = len;
	}
	call->in_msg = false;
	call->got_message = true;
	grpc_conn_hold(call->conn, call);
	return true;
}

/* Bidi: bytes that arrive while the reply budget is spent wait, in order, in
 * the call's backlog (counted as partial bytes: over the partial budgets the
 * call ends with ResourceExhausted), so replies to a stream's requests
 * (keep-alive, watch create/cancel/progress) cannot pile up either. */
static void backlog_add(grpc_call *call, const uint8_t *data, size_t len)
{
	grpc_conn *c = call->conn;
	grpc_buf *b = &call->backlog;
	uint8_t *p = grpc_buf_reserve(b, len);
	const char *why = "grpc: out of memory";
	if (p && b->cap > call->backlog_counted) {
		if (grpc_conn_partial_add(c, b->cap - call->backlog_counted, &why))
			call->backlog_counted = b->cap;
		else
			p = NULL;
	}
	if (!p) {
		if (call->held)
			grpc_conn_unhold(c, call);
		backlog_free(call);
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, why);
		return;
	}
	memcpy(p, data, len);
	b->len += len;
	if (!call->held)
		grpc_conn_hold(c, call);
}

static void release_backlog(grpc_call *call)
{
	grpc_buf b = call->backlog;
	if (call->backlog_counted)
		grpc_conn_partial_sub(call->conn, call->backlog_counted);
	call->backlog = (grpc_buf){0};
	call->backlog_counted = 0;
	grpc_call_on_data(call, b.p + b.off, b.len - b.off); /* may hold the rest again */
	ms_free(b.p);
}

void grpc_call_release_held(grpc_call *call)
{
	if (call->method->kind == GRPC_BIDI_STREAM) {
		grpc_call_ref(call);
		release_backlog(call);
		if (call->half_close_due && !call->held && !grpc_call_closed(call)) {
			call->half_close_due = false;
			grpc_call_on_half_close(call);
		}
		grpc_call_unref(call);
		return;
	}
	uint8_t *msg = call->msg;
	size_t len = call->msg_len;
	grpc_conn_partial_sub(call->conn, call->msg_cap);
	call->msg = NULL;
	call->msg_cap = 0;
	grpc_call_ref(call);
	dispatch_msg(call, msg, len);
	ms_free(msg);
	if (call->half_close_due && !grpc_call_closed(call)) {
		call->half_close_due = false;
		grpc_call_on_half_close(call);
	}
	grpc_call_unref(call);
}

/* A new unary or server-streaming request is held while the connection's
 * reply budget is spent. */
static bool should_hold(const grpc_call *call)
{
	return !call->got_message && call->method->kind != GRPC_BIDI_STREAM && grpc_conn_out_over(call->conn);
}

static void deliver(grpc_call *call, const uint8_t *msg, size_t len)
{
	bool first = !call->got_message;
	call->got_message = true;
	/* unary and server-streaming: exactly one request message; grpc-go
	 * reads one and ignores what follows */
	if (!first && call->method->kind != GRPC_BIDI_STREAM)
		return;
	dispatch_msg(call, msg, len);
}

bool grpc_call_check_encoding(grpc_call *call)
{
	if (grpc_compress_known(call->encoding))
		return true;
	char buf[160];
	snprintf(buf, sizeof buf, "grpc: Decompressor is not installed for grpc-encoding \"%.60s\"", call->encoding);
	grpc_call_finish(call, GRPC_UNIMPLEMENTED, buf);
	return false;
}

/* A message header arrived: checks flag and size; false when the call ended. */
static bool start_message(grpc_call *call)
{
	uint8_t flag = call->hdr[0];
	uint32_t len =
	    (uint32_t)call->hdr[1] << 24 | (uint32_t)call->hdr[2] << 16 | (uint32_t)call->hdr[3] << 8 | call->hdr[4];
	char buf[160];
	if (flag == 1) {
		/* the words grpc-go's checkRecvPayload uses */
		if (grpc_compress_identity(call->encoding)) {
			grpc_call_finish(call, GRPC_INTERNAL,
			                 "grpc: compressed flag set with identity or empty encoding");
			return false;
		}
		if (!grpc_call_check_encoding(call))
			return false;
		/* gzip / deflate: inflated in deliver */
	}
	if (flag > 1) {
		snprintf(buf, sizeof buf, "grpc: received unexpected payload format %u", flag);
		grpc_call_finish(call, GRPC_INTERNAL, buf);
		return false;
	}
	size_t max = call->conn->opts.max_recv_msg;
	if (len > max) {
		snprintf(buf, sizeof buf, "grpc: received message larger than max (%u vs. %zu)", len, max);
		grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, buf);
		return false;
	}
	call->msg_len = len;
	call->msg_got = 0;
	call->in_msg = true;
	return true;
}

/* Copies k more bytes of the current message; false when the call ended. */
static bool partial_add(grpc_call *call, const uint8_t *data, size_t k)
{
	grpc_conn *c = call->conn;
	if (k == 0)
		return true;
	if (call->msg_cap < call->msg_got + k) {
		/* grows with what arrived, not with what the header claims */
		size_t cap = call->msg_cap ? call->msg_cap : 16384;
		while (cap < call->msg_got + k)
			cap *= 2;
		cap = MS_MIN(cap, call->msg_len);
		const char *why;
		if (!grpc_conn_partial_add(c, cap - call->msg_cap, &why)) {
			grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, why);
			return false;
		}
		uint8_t *p = ms_realloc(call->msg, cap);
		if (!p) {
			grpc_conn_partial_sub(c, cap - call->msg_cap);
			grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "grpc: out of memory");
			return false;
		}
		call->msg = p;
		call->msg_cap = cap;
	}
	memcpy(call->msg + call->msg_got, data, k);
	call->msg_got += k;
	return true;
}

void grpc_call_on_data(grpc_call *call, const uint8_t *data, size_t len)
{
	while (len > 0 && !call->finished) {
		/* unknown path; or unary / server-streaming after its one message:
		 * grpc-go reads no further, so neither do we */
		if (!call->method || (call->got_message && call->method->kind != GRPC_BIDI_STREAM))
			return;
		if (call->held || (call->method->kind == GRPC_BIDI_STREAM && !call->in_msg && call->hdr_got == 0 &&
		                   grpc_conn_out_over(call->conn))) {
			backlog_add(call, data, len);
			return;
		}
		if (!call->in_msg) {
			size_t k = MS_MIN(len, 5 - call->hdr_got);
			memcpy(call->hdr + call->hdr_got, data, k);
			call->hdr_got += k;
			data += k;
			len -= k;
			if (call->hdr_got < 5)
				return;
			call->hdr_got = 0;
			if (!start_message(call))
				return;
			if (len >= call->msg_len) { /* whole message in this chunk: no copy */
				size_t m = call->msg_len;
				call->in_msg = false;
				if (should_hold(call)) {
					hold_msg(call, data, m, false);
					return; /* a unary call reads nothing after its message */
				}
				deliver(call, m ? data : (const uint8_t *)"", m);
				data += m;
				len -= m;
				continue;
			}
		}
		size_t k = MS_MIN(len, call->msg_len - call->msg_got);
		if (!partial_add(call, data, k))
			return;
		data += k;
		len -= k;
		if (call->msg_got == call->msg_len) {
			if (should_hold(call)) {
				hold_msg(call, call->msg, call->msg_len, true);
				return;
			}
			/* the buffer leaves the call (and the budget) before the
			 * handler runs: nothing is kept for an idle stream */
			uint8_t *msg = call->msg;
			call->msg = NULL;
			if (call->msg_cap)
				grpc_conn_partial_sub(call->conn, call->msg_cap);
			call->msg_cap = 0;
			call->in_msg = false;
			deliver(call, msg, call->msg_len);
			ms_free(msg);
		}
	}
}

void grpc_call_on_half_close(grpc_call *call)
{
	if (call->finished || !call->method)
		return;
	if (call->held) {
		call->half_close_due = true; /* after the held message is dispatched */
		return;
	}
	/* grpc-go: a cut message is Internal "unexpected EOF"; a unary or
	 * server-streaming request without a message ends as io.EOF would */
	if (call->in_msg || call->hdr_got) {
		grpc_call_finish(call, GRPC_INTERNAL, "unexpected EOF");
		return;
	}
	if (call->method->kind != GRPC_BIDI_STREAM && !call->got_message) {
		grpc_call_finish(call, GRPC_UNKNOWN, "EOF");
		return;
	}
	if (call->method->on_half_close) {
		grpc_call_ref(call);
		call->method->on_half_close(call, call->method->ud);
		grpc_call_unref(call);
	}
}

/* ---- sending ---- */

size_t grpc_call_pending_bytes(const grpc_call *call)
{
	return call->out.len - call->out.off;
}

bool grpc_call_over_bound(const grpc_call *call)
{
	return call->over;
}

void grpc_call_on_drain(grpc_call *call, void (*fn)(grpc_call *call, void *arg), void *arg)
{
	call->drain_fn = fn;
	call->drain_arg = arg;
}

void grpc_call_run_drain(grpc_call *call)
{
	if (!call->drain_due)
		return;
	call->drain_due = false;
	void (*fn)(grpc_call *, void *) = call->drain_fn;
	call->drain_fn = NULL;
	if (fn && !grpc_call_closed(call))
		fn(call, call->drain_arg);
}

ssize_t grpc_call_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                          uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	grpc_call *call = source->ptr;
	size_t avail = call->out.len - call->out.off, n = 0;
	if (avail > 0) {
		n = MS_MIN(avail, length);
		memcpy(buf, call->out.p + call->out.off, n);
		call->out.off += n;
		grpc_conn_out_sub(call->conn, n);
		if (call->out.off == call->out.len)
			call->out.off = call->out.len = 0;
		size_t max = call->conn->opts.max_pending_out;
		if (call->over && call->out.len - call->out.off < max / 2) {
			call->over = false;
			if (call->drain_fn && !call->drain_due) {
				call->drain_due = true; /* run after mem_send returns, not inside it */
				call->conn->drains_due++;
			}
		}
		if (call->out.len != call->out.off || !call->finishing)
			return (ssize_t)n;
	} else if (!call->finishing) {
		call->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	/* gRPC ends the stream with trailers, so the DATA stream is left open */
	*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	char st[16];
	snprintf(st, sizeof st, "%d", call->status);
	nghttp2_nv nva[2] = {
	    {(uint8_t *)"grpc-status", (uint8_t *)st, 11, strlen(st), NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"grpc-message", (uint8_t *)call->message, 12, call->message ? strlen(call->message) : 0,
	     NGHTTP2_NV_FLAG_NONE},
	};
	if (nghttp2_submit_trailer(session, stream_id, nva, call->message ? 2 : 1) != 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
	return (ssize_t)n;
}

/* Sends response headers with the data provider on first output. */
static int start_response(grpc_call *call)
{
	if (call->headers_sent)
		return 0;
	nghttp2_nv nva[2] = {
	    {(uint8_t *)":status", (uint8_t *)"200", 7, 3,
	     NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE},
	    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
	     NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE},
	};
	nghttp2_data_provider prd = {.source.ptr = call, .read_callback = grpc_call_read_cb};
	int rv = nghttp2_submit_response(call->conn->session, call->stream_id, nva, 2, &prd);
	if (rv != 0)
		return rv == NGHTTP2_ERR_NOMEM ? MS_ENOMEM : MS_EIO;
	call->headers_sent = true;
	return 0;
}

static void wake_data(grpc_call *call)
{
	if (call->deferred) {
		call->deferred = false;
		nghttp2_session_resume_data(call->conn->session, call->stream_id);
	}
	grpc_conn_kick(call->conn);
}

uint8_t *grpc_buf_reserve(grpc_buf *b, size_t n)
{
	if (b->off > 0 && (b->off >= b->cap / 2 || b->cap - b->len < n)) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n)
			cap *= 2;
		uint8_t *p = ms_realloc(b->p, cap);
		if (!p)
			return NULL;
		b->p = p;
		b->cap = cap;
	}
	return b->p + b->len;
}

/* Reserves room for a framed message of len bytes; returns the payload spot. */
static int frame_begin(grpc_call *call, size_t len, uint8_t **payload)
{
	if (!call->conn || grpc_call_closed(call))
		return MS_ECANCELED;
	if (len > UINT32_MAX)
		return MS_EINVAL;
	uint8_t *p = grpc_buf_reserve(&call->out, 5 + len);
	if (!p)
		return MS_ENOMEM;
	p[0] = 0;
	p[1] = (uint8_t)(len >> 24);
	p[2] = (uint8_t)(len >> 16);
	p[3] = (uint8_t)(len >> 8);
	p[4] = (uint8_t)len;
	*payload = p + 5;
	return 0;
}

static int frame_commit(grpc_call *call, size_t len)
{
	int rc = start_response(call);
	if (rc)
		return rc;
	call->out.len += 5 + len;
	grpc_conn_out_add(call->conn, 5 + len);
	if (call->out.len - call->out.off > call->conn->opts.max_pending_out)
		call->over = true;
	wake_data(call);
	return 0;
}

int grpc_call_send(grpc_call *call, const uint8_t *msg, size_t len)
{
	uint8_t *p;
	int rc = frame_begin(call, len, &p);
	if (rc)
		return rc;
	if (len)
		memcpy(p, msg, len);
	return frame_commit(call, len);
}

int grpc_call_send_pb(grpc_call *call, const struct ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *p;
	int rc = frame_begin(call, len, &p);
	if (rc)
		return rc;
	protobuf_c_message_pack(msg, p);
	return frame_commit(call, len);
}

int grpc_call_finish(grpc_call *call, int status, const char *message)
{
	if (!call->conn || grpc_call_closed(call))
		return MS_ECANCELED;
	char *enc = NULL;
	if (message && *message) {
		enc = grpc_percent_encode(message);
		if (!enc)
			return MS_ENOMEM;
	}
	call->finished = true;
	call->status = status;
	call->message = enc;
	inflight_release(call);
	nghttp2_session *s = call->conn->session;
	if (!call->headers_sent) {
		/* Trailers-Only: one HEADERS frame with END_STREAM */
		char st[16];
		snprintf(st, sizeof st, "%d", status);
		nghttp2_nv nva[4] = {
		    {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"grpc-status", (uint8_t *)st, 11, strlen(st), NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"grpc-message", (uint8_t *)enc, 12, enc ? strlen(enc) : 0, NGHTTP2_NV_FLAG_NONE},
		};
		call->headers_sent = true;
		int rv = nghttp2_submit_response(s, call->stream_id, nva, enc ? 4 : 3, NULL);
		if (rv != 0)
			nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_INTERNAL_ERROR);
	} else {
		call->finishing = true;
	}
	wake_data(call);
	return 0;
}
