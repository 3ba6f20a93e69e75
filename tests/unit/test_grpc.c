/* test_grpc.c — the gRPC framing core driven in memory by a real nghttp2
 * client session: unary, streaming, framing edge cases, errors, deadlines,
 * cancellation, back-pressure; plus the HTTP/1.1 parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "api/grpc_int.h"

/* ---- a real nghttp2 client, in memory or over a socket ---- */

#define TC_MAX_STREAMS 80

typedef struct tc_harness tc_harness;

typedef struct tc_stream {
	tc_harness *h;
	int32_t id;
	int http_status;
	char content_type[600];
	int grpc_status;        /* -1 until seen */
	char grpc_message[512]; /* as on the wire (percent-encoded) */
	bool has_message;
	bool trailers_only; /* grpc-status came in the response HEADERS */
	uint8_t *data;
	size_t data_len, data_cap;
	bool closed, rst;
	uint32_t rst_code;
	/* request body */
	uint8_t *req;
	size_t req_len, req_off, req_cap;
	bool eof, deferred;
	size_t chunk; /* max bytes per DATA frame; 0 = as much as fits */
	int data_frames_sent;
} tc_stream;

struct tc_harness {
	grpc_conn *conn; /* in-memory mode */
	int fd;          /* socket mode */
	nghttp2_session *cli;
	uint8_t *out, *seen; /* server output: not yet read by the client / all of it */
	size_t out_len, out_cap, seen_len, seen_cap;
	size_t feed_chunk; /* bytes per grpc_conn_recv; 0 = all */
	tc_stream st[TC_MAX_STREAMS];
	int nst;
};

static void tc_append(uint8_t **b, size_t *len, size_t *cap, const uint8_t *p, size_t n)
{
	if (*cap - *len < n) {
		size_t c = *cap ? *cap : 1024;
		while (c - *len < n)
			c *= 2;
		*b = realloc(*b, c);
		assert_non_null(*b);
		*cap = c;
	}
	if (n)
		memcpy(*b + *len, p, n);
	*len += n;
}

static int tc_srv_send(void *ud, const uint8_t *p, size_t n)
{
	tc_harness *h = ud;
	tc_append(&h->out, &h->out_len, &h->out_cap, p, n);
	tc_append(&h->seen, &h->seen_len, &h->seen_cap, p, n);
	return 0;
}

static int tc_on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	return 0;
}

static int tc_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                        const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	tc_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (!st || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	char v[512];
	snprintf(v, sizeof v, "%.*s", (int)vlen, (const char *)value);
	if (nlen == 7 && memcmp(name, ":status", 7) == 0)
		st->http_status = atoi(v);
	else if (nlen == 12 && memcmp(name, "content-type", 12) == 0)
		snprintf(st->content_type, sizeof st->content_type, "%s", v);
	else if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		st->grpc_status = atoi(v);
		st->trailers_only = f->headers.cat == NGHTTP2_HCAT_RESPONSE;
	} else if (nlen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		snprintf(st->grpc_message, sizeof st->grpc_message, "%s", v);
		st->has_message = true;
	}
	return 0;
}

static int tc_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t len, void *ud)
{
	tc_stream *st = nghttp2_session_get_stream_user_data(s, id);
	if (st)
		tc_append(&st->data, &st->data_len, &st->data_cap, d, len);
	return 0;
}

static int tc_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	tc_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (st && f->hd.type == NGHTTP2_RST_STREAM) {
		st->rst = true;
		st->rst_code = f->rst_stream.error_code;
	}
	return 0;
}

static int tc_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	tc_stream *st = nghttp2_session_get_stream_user_data(s, id);
	if (st)
		st->closed = true;
	return 0;
}

static ssize_t tc_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                       nghttp2_data_source *src, void *ud)
{
	tc_stream *st = src->ptr;
	size_t avail = st->req_len - st->req_off;
	if (avail == 0) {
		if (st->eof) {
			*flags |= NGHTTP2_DATA_FLAG_EOF;
			return 0;
		}
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	size_t n = MS_MIN(avail, length);
	if (st->chunk)
		n = MS_MIN(n, st->chunk);
	memcpy(buf, st->req + st->req_off, n);
	st->req_off += n;
	if (st->req_off == st->req_len && st->eof)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	st->data_frames_sent++;
	return (ssize_t)n;
}

static void tc_client_new(tc_harness *h)
{
	nghttp2_session_callbacks *cb;
	assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, tc_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, tc_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, tc_on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, tc_on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, tc_on_close);
	assert_int_equal(nghttp2_session_client_new(&h->cli, cb, h), 0);
	nghttp2_session_callbacks_del(cb);
	assert_int_equal(nghttp2_submit_settings(h->cli, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

static tc_harness *tc_harness_new(const grpc_server_opts *opts, const grpc_method *m, size_t n)
{
	tc_harness *h = calloc(1, sizeof *h);
	assert_non_null(h);
	h->fd = -1;
	if (grpc_conn_new(opts, m, n, tc_srv_send, h, &h->conn)) {
		free(h);
		return NULL;
	}
	tc_client_new(h);
	return h;
}

static void tc_harness_free(tc_harness *h)
{
	grpc_conn_free(h->conn);
	nghttp2_session_del(h->cli);
	for (int i = 0; i < h->nst; i++) {
		free(h->st[i].data);
		free(h->st[i].req);
	}
	free(h->out);
	free(h->seen);
	free(h);
}

static tc_stream *tc_request(tc_harness *h, const char *path, const char *const *hdrs)
{
	assert_true(h->nst < TC_MAX_STREAMS);
	tc_stream *st = &h->st[h->nst++];
	memset(st, 0, sizeof *st);
	st->h = h;
	st->grpc_status = -1;
	nghttp2_nv nva[16];
	size_t n = 0;
#define TC_NV(k, v) nva[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), 0}
	TC_NV(":method", "POST");
	TC_NV(":scheme", "http");
	TC_NV(":path", path);
	TC_NV(":authority", "localhost");
	TC_NV("content-type", "application/grpc");
	TC_NV("te", "trailers");
	for (size_t i = 0; hdrs && hdrs[i]; i += 2)
		TC_NV(hdrs[i], hdrs[i + 1]);
#undef TC_NV
	nghttp2_data_provider prd = {.source.ptr = st, .read_callback = tc_read};
	st->id = nghttp2_submit_request(h->cli, NULL, nva, n, &prd, st);
	assert_true(st->id > 0);
	return st;
}

static void tc_kick(tc_stream *st)
{
	if (st->deferred && !st->closed) {
		st->deferred = false;
		assert_int_equal(nghttp2_session_resume_data(st->h->cli, st->id), 0);
	}
}

static void tc_add_raw(tc_stream *st, const uint8_t *p, size_t n)
{
	tc_append(&st->req, &st->req_len, &st->req_cap, p, n);
	tc_kick(st);
}

static void tc_add_msg(tc_stream *st, const uint8_t *m, size_t len)
{
	uint8_t hdr[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
	tc_append(&st->req, &st->req_len, &st->req_cap, hdr, 5);
	tc_add_raw(st, m, len);
}

static void tc_end(tc_stream *st)
{
	st->eof = true;
	tc_kick(st);
}

/* Moves bytes both ways until neither side has anything to say. */
static void tc_pump_ex(tc_harness *h, bool strict)
{
	for (int iter = 0; iter < 100000; iter++) {
		bool progress = false;
		const uint8_t *p;
		ssize_t n;
		while ((n = nghttp2_session_mem_send(h->cli, &p)) > 0) {
			progress = true;
			size_t chunk = h->feed_chunk ? h->feed_chunk : (size_t)n;
			for (size_t off = 0; off < (size_t)n; off += chunk) {
				int rc = grpc_conn_recv(h->conn, p + off, MS_MIN(chunk, (size_t)n - off));
				if (strict)
					assert_int_equal(rc, 0);
				else if (rc)
					return;
			}
		}
		if (strict)
			assert_int_equal(n, 0);
		if (h->out_len) {
			progress = true;
			uint8_t *buf = h->out;
			size_t len = h->out_len;
			h->out = NULL;
			h->out_len = h->out_cap = 0;
			ssize_t r = nghttp2_session_mem_recv(h->cli, buf, len);
			free(buf);
			if (strict)
				assert_int_equal(r, (ssize_t)len);
			else if (r < 0)
				return;
		}
		if (!progress)
			return;
	}
	fail_msg("pump did not settle");
}

static void tc_pump(tc_harness *h)
{
	tc_pump_ex(h, true);
}
static void tc_pump_lenient(tc_harness *h)
{
	tc_pump_ex(h, false);
}

/* Did the server send a frame of this type? (walks its whole output) */
static bool tc_output_has_frame(tc_harness *h, uint8_t type)
{
	size_t off = 0;
	while (off + 9 <= h->seen_len) {
		const uint8_t *f = h->seen + off;
		size_t len = (size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2];
		if (f[3] == type)
			return true;
		off += 9 + len;
	}
	return false;
}

/* ---- handlers ---- */

static struct {
	int messages, half_closes, closes;
	uint8_t last[256];
	size_t last_len;
	grpc_call *held;
	char md_auth[64];
	int drains;
} ts;

static void reset_ts(void)
{
	memset(&ts, 0, sizeof ts);
}

static void note_msg(const uint8_t *m, size_t len)
{
	ts.messages++;
	ts.last_len = MS_MIN(len, sizeof ts.last);
	memcpy(ts.last, m, ts.last_len);
}

static void echo_unary(grpc_call *call, const uint8_t *m, size_t len, void *ud)
{
	note_msg(m, len);
	const char *a = grpc_call_metadata(call, "authorization");
	if (a)
		snprintf(ts.md_auth, sizeof ts.md_auth, "%s", a);
	/* may fail only in test_alloc_failures */
	if (grpc_call_send(call, m, len) == 0)
		grpc_call_finish(call, GRPC_OK, NULL);
	else
		grpc_call_finish(call, GRPC_INTERNAL, "send failed");
}

static void stream_n(grpc_call *call, const uint8_t *m, size_t len, void *ud)
{
	note_msg(m, len);
	int n = len ? m[0] : 0;
	for (int i = 0; i < n; i++) {
		char b[16];
		int k = snprintf(b, sizeof b, "m%d", i);
		assert_int_equal(grpc_call_send(call, (const uint8_t *)b, (size_t)k), 0);
	}
	grpc_call_finish(call, GRPC_OK, NULL);
}

static void bidi_echo(grpc_call *call, const uint8_t *m, size_t len, void *ud)
{
	note_msg(m, len);
	assert_int_equal(grpc_call_send(call, m, len), 0);
}

static void bidi_half(grpc_call *call, void *ud)
{
	ts.half_closes++;
	grpc_call_finish(call, GRPC_OK, NULL);
}

static void fail_with_msg(grpc_call *call, const uint8_t *m, size_t len, void *ud)
{
	note_msg(m, len);
	char buf[256];
	snprintf(buf, sizeof buf, "%.*s", (int)len, (const char *)m);
	grpc_call_finish(call, GRPC_INVALID_ARGUMENT, buf);
}

static void hold(grpc_call *call, const uint8_t *m, size_t len, void *ud)
{
	note_msg(m, len);
	grpc_call_ref(call);
	ts.held = call;
}

static void on_close(grpc_call *call, void *ud)
{
	ts.closes++;
}

static const grpc_method methods[] = {
    {"/test.Echo/Unary", GRPC_UNARY, echo_unary, NULL, on_close, NULL},
    {"/test.Echo/Stream", GRPC_SERVER_STREAM, stream_n, NULL, on_close, NULL},
    {"/test.Echo/Bidi", GRPC_BIDI_STREAM, bidi_echo, bidi_half, on_close, NULL},
    {"/test.Echo/Fail", GRPC_UNARY, fail_with_msg, NULL, on_close, NULL},
    {"/test.Echo/Hold", GRPC_UNARY, hold, NULL, on_close, NULL},
    {"/test.Echo/HoldStream", GRPC_BIDI_STREAM, hold, NULL, on_close, NULL},
};

/* ---- harness: server core + client session in memory ---- */

static tc_harness *new_harness(const grpc_server_opts *opts)
{
	reset_ts();
	tc_harness *h = tc_harness_new(opts, methods, MS_ARRAY_LEN(methods));
	assert_non_null(h);
	return h;
}

static void check_msgs(const tc_stream *st, int n, const char *const *want)
{
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		assert_true(off + 5 <= st->data_len);
		assert_int_equal(st->data[off], 0);
		uint32_t len = (uint32_t)st->data[off + 1] << 24 | (uint32_t)st->data[off + 2] << 16 |
		               (uint32_t)st->data[off + 3] << 8 | st->data[off + 4];
		assert_int_equal(len, strlen(want[i]));
		assert_true(off + 5 + len <= st->data_len);
		assert_memory_equal(st->data + off + 5, want[i], len);
		off += 5 + len;
	}
	assert_int_equal(off, st->data_len);
}

static void test_unary_echo(void **state)
{
	tc_harness *h = new_harness(NULL);
	const char *hdrs[] = {"authorization", "tok123", NULL};
	tc_stream *st = tc_request(h, "/test.Echo/Unary", hdrs);
	tc_add_msg(st, (const uint8_t *)"hello", 5);
	tc_end(st);
	tc_pump(h);
	assert_true(st->closed);
	assert_int_equal(st->http_status, 200);
	assert_string_equal(st->content_type, "application/grpc");
	assert_false(st->trailers_only);
	assert_int_equal(st->grpc_status, 0);
	assert_false(st->has_message);
	const char *want[] = {"hello"};
	check_msgs(st, 1, want);
	assert_int_equal(ts.messages, 1);
	assert_string_equal(ts.md_auth, "tok123");
	assert_int_equal(ts.closes, 1);
	assert_false(st->rst);
	tc_harness_free(h);
	assert_int_equal(ts.closes, 1);
}

static void test_server_stream(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_stream *st = tc_request(h, "/test.Echo/Stream", NULL);
	uint8_t n = 5;
	tc_add_msg(st, &n, 1);
	tc_end(st);
	tc_pump(h);
	assert_true(st->closed);
	assert_int_equal(st->grpc_status, 0);
	const char *want[] = {"m0", "m1", "m2", "m3", "m4"};
	check_msgs(st, 5, want);
	assert_int_equal(ts.closes, 1);
	tc_harness_free(h);
}

static void test_bidi_interleaved(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_stream *st = tc_request(h, "/test.Echo/Bidi", NULL);
	tc_add_msg(st, (const uint8_t *)"one", 3);
	tc_pump(h);
	const char *w1[] = {"one"};
	check_msgs(st, 1, w1);
	assert_false(st->closed);
	tc_add_msg(st, (const uint8_t *)"two", 3);
	tc_pump(h);
	const char *w2[] = {"one", "two"};
	check_msgs(st, 2, w2);
	assert_int_equal(ts.half_closes, 0);
	tc_end(st);
	tc_pump(h);
	assert_int_equal(ts.half_closes, 1);
	assert_true(st->closed);
	assert_int_equal(st->grpc_status, 0);
	assert_int_equal(ts.closes, 1);
	tc_harness_free(h);
}

static void test_split_byte_by_byte(void **state)
{
	tc_harness *h = new_harness(NULL);
	h->feed_chunk = 1;
	tc_stream *st = tc_request(h, "/test.Echo/Bidi", NULL);
	st->chunk = 1; /* every DATA frame carries one byte */
	tc_add_msg(st, (const uint8_t *)"abcdefgh", 8);
	tc_add_msg(st, (const uint8_t *)"", 0);
	tc_add_msg(st, (const uint8_t *)"xyz", 3);
	tc_end(st);
	tc_pump(h);
	assert_true(st->closed);
	assert_int_equal(st->grpc_status, 0);
	const char *want[] = {"abcdefgh", "", "xyz"};
	check_msgs(st, 3, want);
	assert_int_equal(ts.messages, 3);
	tc_harness_free(h);
}

static void test_large_message_many_frames(void **state)
{
	tc_harness *h = new_harness(NULL);
	h->feed_chunk = 1000;
	tc_stream *st = tc_request(h, "/test.Echo/Bidi", NULL);
	size_t len = 200000; /* > the 16 KiB frame size and the 64 KiB default stream window */
	uint8_t *big = malloc(len);
	for (size_t i = 0; i < len; i++)
		big[i] = (uint8_t)(i * 7);
	tc_add_msg(st, big, len);
	tc_end(st);
	tc_pump(h);
	assert_true(st->closed);
	assert_int_equal(st->grpc_status, 0);
	assert_int_equal(st->data_len, len + 5);
	assert_memory_equal(st->data + 5, big, len);
	assert_int_equal(ts.messages, 1);
	free(big);
	tc_harness_free(h);
}

static void test_several_messages_one_frame(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_stream *st = tc_request(h, "/test.Echo/Bidi", NULL);
	tc_add_msg(st, (const uint8_t *)"a", 1);
	tc_add_msg(st, (const uint8_t *)"bb", 2);
	tc_add_msg(st, (const uint8_t *)"ccc", 3);
	tc_end(st);
	tc_pump(h);
	assert_int_equal(st->data_frames_sent, 1);
	const char *want[] = {"a", "bb", "ccc"};
	check_msgs(st, 3, want);
	assert_int_equal(st->grpc_status, 0);
	tc_harness_free(h);
}

static void test_oversize_message(void **state)
{
	grpc_server_opts o = {.max_recv_msg = 100};
	tc_harness *h = new_harness(&o);
	tc_stream *st = tc_request(h, "/test.Echo/Unary", NULL);
	uint8_t buf[101] = {0};
	tc_add_msg(st, buf, sizeof buf);
	tc_end(st);
	tc_pump(h);
	assert_true(st->closed);
	assert_true(st->trailers_only);
	assert_int_equal(st->grpc_status, GRPC_RESOURCE_EXHAUSTED);
	assert_string_equal(st->grpc_message, "grpc: received message larger than max (101 vs. 100)");
	assert_int_equal(ts.messages, 0);
	assert_int_equal(ts.closes, 1);
	/* exactly the limit passes */
	tc_stream *st2 = tc_request(h, "/test.Echo/Unary", NULL);
	tc_add_msg(st2, buf, 100);
	tc_end(st2);
	tc_pump(h);
	assert_int_equal(st2->grpc_status, 0);
	assert_int_equal(ts.messages, 1);
	tc_harness_free(h);
}

static void test_default_limit_message(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_stream *st = tc_request(h, "/test.Echo/Unary", NULL);
	/* only the 5-byte header is sent: the size is refused before the body */
	uint8_t hdr[5] = {0, 0, 0x20, 0, 1}; /* 2097153 */
	tc_add_raw(st, hdr, 5);
	tc_end(st);
	tc_pump(h);
	assert_int_equal(st->grpc_status, GRPC_RESOURCE_EXHAUSTED);
	assert_string_equal(st->grpc_message, "grpc: received message larger than max (2097153 vs. 2097152)");
	tc_harness_free(h);
}

/* Many streams each holding part of a big message: the connection's total is capped. */
static void test_partial_messages_bounded(void **state)
{
	tc_harness *h = new_harness(NULL);
	enum { N = 70, PART = 1 << 20 };
	uint8_t *part = calloc(1, PART);
	uint8_t hdr[5] = {0, 0, 0x20, 0, 0}; /* claims 2 MiB, the default limit */
	tc_stream *s[N];
	for (int i = 0; i < N; i++) {
		s[i] = tc_request(h, "/test.Echo/Bidi", NULL);
		tc_add_raw(s[i], hdr, 5);
		tc_add_raw(s[i], part, PART);
	}
	tc_pump(h);
	int refused = 0, open = 0;
	for (int i = 0; i < N; i++) {
		if (s[i]->closed) {
			assert_int_equal(s[i]->grpc_status, GRPC_RESOURCE_EXHAUSTED);
			assert_string_equal(s[i]->grpc_message,
			                    "grpc: too much partial request data on the connection");
			refused++;
		} else {
			open++;
		}
	}
	assert_true(refused >= N - 64);
	assert_true(open >= 60);
	assert_true(h->conn->partial_bytes <= GRPC_MAX_CONN_PARTIAL);
	for (int i = 0; i < N; i++)
		tc_end(s[i]);
	tc_pump(h);
	for (int i = 0; i < N; i++)
		assert_true(s[i]->closed);
	assert_int_equal(h->conn->partial_bytes, 0);
	assert_int_equal(ts.messages, 0);
	free(part);
	tc_harness_free(h);
}

static void test_unknown_method(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_stream *a = tc_request(h, "/test.Echo/Nope", NULL);
	tc_add_msg(a, (const uint8_t *)"x", 1);
	tc_end(a);
	tc_stream *b = tc_request(h, "/etcdserverpb.Foo/Bar", NULL);
	tc_end(b);
	tc_stream *c = tc_request(h, "/nomethod", NULL);
	tc_end(c);
	tc_pump(h);
	assert_true(a->closed && a->trailers_only);
	assert_int_equal(a->grpc_status, GRPC_UNIMPLEMENTED);
	assert_string_equal(a->grpc_message, "unknown method Nope for service test.Echo");
	assert_int_equal(b->grpc_status, GRPC_UNIMPLEMENTED);
	assert_string_equal(b->grpc_message, "unknown service etcdserverpb.Foo");
	/* grpc-go's words; %q quoting is percent-encoded on the wire */
	assert_int_equal(c->grpc_status, GRPC_RESOURCE_EXHAUSTED);
	assert_string_equal(c->grpc_message, "malformed method name: \"/nomethod\"");
	assert_int_equal(ts.messages, 0);
	assert_int_equal(ts.closes, 0); /* never shown to a handler */
	tc_harness_free(h);
}

/* m compressed as gzip (gz) or zlib ("deflate"), framed with flag 1 */
static size_t tc_deflate(bool gz, const uint8_t *m, size_t len, uint8_t *out, size_t cap)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, gz ? 15 + 16 : 15, 9, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (Bytef *)m;
	z.avail_in = (uInt)len;
	z.next_out = out + 5;
	z.avail_out = (uInt)(cap - 5);
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	size_t n = z.total_out;
	deflateEnd(&z);
	out[0] = 1;
	out[1] = (uint8_t)(n >> 24);
	out[2] = (uint8_t)(n >> 16);
	out[3] = (uint8_t)(n >> 8);
	out[4] = (uint8_t)n;
	return n + 5;
}

static void test_compressed_flag(void **state)
{
	grpc_server_opts o = {.max_recv_msg = 65536};
	tc_harness *h = new_harness(&o);
	tc_stream *a = tc_request(h, "/test.Echo/Unary", NULL);
	uint8_t m[6] = {1, 0, 0, 0, 1, 'x'};
	tc_add_raw(a, m, 6);
	tc_end(a);
	/* an encoding we cannot inflate: refused before any message, as grpc-go */
	const char *br[] = {"grpc-encoding", "br", NULL};
	tc_stream *b = tc_request(h, "/test.Echo/Unary", br);
	m[0] = 0;
	tc_add_raw(b, m, 6);
	tc_end(b);
	tc_stream *c = tc_request(h, "/test.Echo/Unary", NULL);
	m[0] = 7;
	tc_add_raw(c, m, 6);
	tc_end(c);
	/* gzip that is not gzip, and gzip cut short (Go's texts) */
	const char *gz[] = {"grpc-encoding", "gzip", NULL};
	tc_stream *d = tc_request(h, "/test.Echo/Unary", gz);
	uint8_t junk[5 + 12] = {1, 0, 0, 0, 12, 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x'};
	tc_add_raw(d, junk, sizeof junk);
	tc_end(d);
	tc_stream *f = tc_request(h, "/test.Echo/Unary", gz);
	m[0] = 1;
	tc_add_raw(f, m, 6);
	tc_end(f);
	/* a bomb: 1 MiB of zeros in ~1 KiB, over the 64 KiB receive limit */
	static uint8_t zeros[1 << 20], bomb[8192];
	size_t nb = tc_deflate(true, zeros, sizeof zeros, bomb, sizeof bomb);
	tc_stream *e = tc_request(h, "/test.Echo/Unary", gz);
	tc_add_raw(e, bomb, nb);
	tc_end(e);
	tc_pump(h);
	assert_int_equal(a->grpc_status, GRPC_INTERNAL);
	assert_string_equal(a->grpc_message, "grpc: compressed flag set with identity or empty encoding");
	assert_int_equal(b->grpc_status, GRPC_UNIMPLEMENTED);
	assert_true(b->trailers_only);
	assert_string_equal(b->grpc_message, "grpc: Decompressor is not installed for grpc-encoding \"br\"");
	assert_int_equal(c->grpc_status, GRPC_INTERNAL);
	assert_string_equal(c->grpc_message, "grpc: received unexpected payload format 7");
	assert_int_equal(d->grpc_status, GRPC_INTERNAL);
	assert_string_equal(d->grpc_message, "grpc: failed to decompress the received message gzip: invalid header");
	assert_int_equal(f->grpc_status, GRPC_INTERNAL);
	assert_string_equal(f->grpc_message, "grpc: failed to decompress the received message unexpected EOF");
	assert_int_equal(e->grpc_status, GRPC_RESOURCE_EXHAUSTED);
	assert_string_equal(e->grpc_message,
	                    "grpc: received message after decompression larger than max (65537 vs. 65536)");
	assert_int_equal(ts.messages, 0);
	assert_int_equal(ts.closes, 6);
	tc_harness_free(h);
}

/* gzip and deflate messages reach the handler inflated; the reply is
 * identity; an uncompressed message on a gzip call is taken as it is */
static void test_compressed_messages(void **state)
{
	tc_harness *h = new_harness(NULL);
	const char *gz[] = {"grpc-encoding", "gzip", "grpc-accept-encoding", "gzip,deflate", NULL};
	const char *df[] = {"grpc-encoding", "deflate", NULL};
	const char *id[] = {"grpc-encoding", "identity", NULL};
	uint8_t buf[256];
	const uint8_t hello[] = "hello, compressed world";
	tc_stream *a = tc_request(h, "/test.Echo/Unary", gz);
	tc_add_raw(a, buf, tc_deflate(true, hello, sizeof hello - 1, buf, sizeof buf));
	tc_end(a);
	tc_stream *b = tc_request(h, "/test.Echo/Bidi", df);
	tc_add_raw(b, buf, tc_deflate(false, hello, 5, buf, sizeof buf));
	tc_add_msg(b, (const uint8_t *)"plain", 5);
	tc_add_raw(b, buf, tc_deflate(false, (const uint8_t *)"again", 5, buf, sizeof buf));
	tc_end(b);
	tc_stream *c = tc_request(h, "/test.Echo/Unary", id);
	tc_add_msg(c, (const uint8_t *)"id", 2);
	tc_end(c);
	tc_pump(h);
	assert_int_equal(a->grpc_status, GRPC_OK);
	const char *wa[] = {"hello, compressed world"};
	check_msgs(a, 1, wa);
	assert_int_equal(b->grpc_status, GRPC_OK);
	const char *wb[] = {"hello", "plain", "again"};
	check_msgs(b, 3, wb);
	assert_int_equal(c->grpc_status, GRPC_OK);
	const char *wc[] = {"id"};
	check_msgs(c, 1, wc);
	assert_int_equal(ts.messages, 5);
	tc_harness_free(h);
}

static void test_half_close_edge_cases(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_stream *a = tc_request(h, "/test.Echo/Unary", NULL);
	tc_end(a); /* no request message */
	tc_stream *b = tc_request(h, "/test.Echo/Unary", NULL);
	uint8_t cut[7] = {0, 0, 0, 0, 9, 'a', 'b'};
	tc_add_raw(b, cut, sizeof cut);
	tc_end(b);
	tc_pump(h);
	assert_int_equal(a->grpc_status, GRPC_UNKNOWN);
	assert_string_equal(a->grpc_message, "EOF");
	assert_int_equal(b->grpc_status, GRPC_INTERNAL);
	assert_string_equal(b->grpc_message, "unexpected EOF");
	tc_harness_free(h);
}

static void test_bad_preface(void **state)
{
	tc_harness *h = new_harness(NULL);
	const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_int_equal(grpc_conn_recv(h->conn, (const uint8_t *)junk, sizeof junk - 1), MS_EINVAL);
	assert_true(tc_output_has_frame(h, NGHTTP2_GOAWAY));
	assert_true(grpc_conn_want_close(h->conn));
	tc_harness_free(h);
}

static void test_bad_frame_after_preface(void **state)
{
	tc_harness *h = new_harness(NULL);
	const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	assert_int_equal(grpc_conn_recv(h->conn, (const uint8_t *)preface, 24), 0);
	uint8_t settings[9] = {0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
	assert_int_equal(grpc_conn_recv(h->conn, settings, 9), 0);
	/* DATA on stream 0 is a connection error (RFC 7540 6.1) */
	uint8_t bad[12] = {0, 0, 3, NGHTTP2_DATA, 0, 0, 0, 0, 0, 'a', 'b', 'c'};
	assert_int_equal(grpc_conn_recv(h->conn, bad, sizeof bad), MS_EINVAL);
	assert_true(tc_output_has_frame(h, NGHTTP2_GOAWAY));
	assert_true(grpc_conn_want_close(h->conn));
	/* and further input is refused */
	assert_int_equal(grpc_conn_recv(h->conn, settings, 9), MS_EINVAL);
	tc_harness_free(h);
}

static void test_timeout_parse(void **state)
{
	struct {
		const char *s;
		int rc;
		int64_t ns;
	} cases[] = {
	    {"1S", 0, 1000000000LL},
	    {"100m", 0, 100000000LL},
	    {"5000000u", 0, 5000000000LL},
	    {"10n", 0, 10},
	    {"2M", 0, 120000000000LL},
	    {"1H", 0, 3600000000000LL},
	    {"99999999H", 0, INT64_MAX},
	    {"0n", 0, 0},
	    {"S", MS_EINVAL, 0},
	    {"123456789S", MS_EINVAL, 0},
	    {"10x", MS_EINVAL, 0},
	    {"1.5S", MS_EINVAL, 0},
	    {"", MS_EINVAL, 0},
	    {"-1S", MS_EINVAL, 0},
	};
	for (size_t i = 0; i < MS_ARRAY_LEN(cases); i++) {
		int64_t ns = -1;
		assert_int_equal(grpc_timeout_parse(cases[i].s, &ns), cases[i].rc);
		if (cases[i].rc == 0)
			assert_true(ns == cases[i].ns);
	}
}

static void test_deadline(void **state)
{
	tc_harness *h = new_harness(NULL);
	const char *hdr[] = {"grpc-timeout", "1S", NULL};
	int64_t before = ms_now_mono_ns();
	tc_stream *st = tc_request(h, "/test.Echo/Hold", hdr);
	tc_add_msg(st, (const uint8_t *)"x", 1);
	tc_end(st);
	tc_pump(h);
	int64_t after = ms_now_mono_ns();
	assert_non_null(ts.held);
	int64_t d = grpc_call_deadline(ts.held);
	assert_true(d >= before + 1000000000LL && d <= after + 1000000000LL);
	assert_true(grpc_conn_pop_new_deadline(h->conn) == d);
	assert_true(grpc_conn_pop_new_deadline(h->conn) == 0);
	/* not yet */
	assert_true(grpc_conn_expire(h->conn, d - 1) == d);
	tc_pump(h);
	assert_false(st->closed);
	/* due: the server ends the call */
	assert_true(grpc_conn_expire(h->conn, d) == 0);
	tc_pump(h);
	assert_true(st->closed);
	assert_int_equal(st->grpc_status, GRPC_DEADLINE_EXCEEDED);
	assert_string_equal(st->grpc_message, "context deadline exceeded");
	assert_int_equal(ts.closes, 1);
	assert_true(grpc_call_closed(ts.held));
	assert_int_equal(grpc_call_finish(ts.held, GRPC_OK, NULL), MS_ECANCELED);
	grpc_call_unref(ts.held);
	/* malformed grpc-timeout: the stream is reset, as grpc-go does */
	const char *bad[] = {"grpc-timeout", "abc", NULL};
	tc_stream *st2 = tc_request(h, "/test.Echo/Hold", bad);
	tc_end(st2);
	tc_pump(h);
	assert_true(st2->rst);
	assert_int_equal(st2->rst_code, NGHTTP2_PROTOCOL_ERROR);
	tc_harness_free(h);
}

static void test_percent_encoding(void **state)
{
	struct {
		const char *in, *out;
	} cases[] = {
	    {"etcdserver: key is not provided", "etcdserver: key is not provided"},
	    {"100% done", "100%25 done"},
	    {"caf\xc3\xa9", "caf%C3%A9"},
	    {"a\nb\tc~", "a%0Ab%09c~"},
	    {"", ""},
	};
	for (size_t i = 0; i < MS_ARRAY_LEN(cases); i++) {
		char *e = grpc_percent_encode(cases[i].in);
		assert_string_equal(e, cases[i].out);
		ms_free(e);
	}
	/* end to end, Trailers-Only */
	tc_harness *h = new_harness(NULL);
	tc_stream *st = tc_request(h, "/test.Echo/Fail", NULL);
	const char *m = "etcdserver: 50% caf\xc3\xa9";
	tc_add_msg(st, (const uint8_t *)m, strlen(m));
	tc_end(st);
	tc_pump(h);
	assert_true(st->trailers_only);
	assert_int_equal(st->grpc_status, GRPC_INVALID_ARGUMENT);
	assert_string_equal(st->grpc_message, "etcdserver: 50%25 caf%C3%A9");
	tc_harness_free(h);
}

static void test_rst_from_client(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_stream *st = tc_request(h, "/test.Echo/HoldStream", NULL);
	tc_add_msg(st, (const uint8_t *)"x", 1);
	tc_pump(h);
	grpc_call *call = ts.held;
	assert_non_null(call);
	assert_false(grpc_call_closed(call));
	assert_int_equal(grpc_call_send(call, (const uint8_t *)"y", 1), 0);
	tc_pump(h);
	assert_int_equal(ts.closes, 0);
	assert_int_equal(nghttp2_submit_rst_stream(h->cli, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL), 0);
	tc_pump(h);
	assert_int_equal(ts.closes, 1);
	assert_true(grpc_call_closed(call));
	assert_int_equal(grpc_call_send(call, (const uint8_t *)"z", 1), MS_ECANCELED);
	assert_int_equal(grpc_call_finish(call, GRPC_OK, NULL), MS_ECANCELED);
	tc_pump(h);
	assert_int_equal(ts.closes, 1);
	grpc_call_unref(call);
	tc_harness_free(h);
	assert_int_equal(ts.closes, 1);
}

static void test_finish_before_client_ends(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_stream *st = tc_request(h, "/test.Echo/HoldStream", NULL);
	tc_add_msg(st, (const uint8_t *)"x", 1);
	tc_pump(h);
	grpc_call *call = ts.held;
	assert_int_equal(grpc_call_send(call, (const uint8_t *)"bye", 3), 0);
	assert_int_equal(grpc_call_finish(call, GRPC_ABORTED, "done early"), 0);
	tc_pump(h);
	/* status first, then RST_STREAM(NO_ERROR) so the client stops sending */
	assert_int_equal(st->grpc_status, GRPC_ABORTED);
	assert_string_equal(st->grpc_message, "done early");
	assert_true(st->rst);
	assert_int_equal(st->rst_code, NGHTTP2_NO_ERROR);
	assert_true(st->closed);
	const char *want[] = {"bye"};
	check_msgs(st, 1, want);
	assert_int_equal(ts.closes, 1);
	grpc_call_unref(call);
	tc_harness_free(h);
}

static void test_async_finish(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_stream *st = tc_request(h, "/test.Echo/Hold", NULL);
	tc_add_msg(st, (const uint8_t *)"req", 3);
	tc_end(st);
	tc_pump(h);
	grpc_call *call = ts.held;
	assert_non_null(call);
	assert_string_equal(grpc_call_path(call), "/test.Echo/Hold");
	assert_false(st->closed);
	assert_int_equal(st->data_len, 0);
	/* later, outside any recv: the core flushes by itself (no hook) */
	assert_int_equal(grpc_call_send(call, (const uint8_t *)"resp", 4), 0);
	assert_int_equal(grpc_call_finish(call, GRPC_OK, NULL), 0);
	assert_int_equal(grpc_call_send(call, (const uint8_t *)"late", 4), MS_ECANCELED);
	tc_pump(h);
	assert_true(st->closed);
	assert_int_equal(st->grpc_status, 0);
	const char *want[] = {"resp"};
	check_msgs(st, 1, want);
	assert_int_equal(ts.closes, 1);
	grpc_call_unref(call);
	tc_harness_free(h);
}

static void drain_cb(grpc_call *call, void *arg)
{
	ts.drains++;
	*(size_t *)arg = grpc_call_pending_bytes(call);
}

static void test_back_pressure(void **state)
{
	grpc_server_opts o = {.max_pending_out = 100000};
	tc_harness *h = new_harness(&o);
	tc_stream *st = tc_request(h, "/test.Echo/HoldStream", NULL);
	tc_add_msg(st, (const uint8_t *)"x", 1);
	tc_pump(h);
	grpc_call *call = ts.held;
	static uint8_t chunk[10000];
	assert_false(grpc_call_over_bound(call));
	/* 300 KB against the client's 64 KiB stream window: most stays queued */
	for (int i = 0; i < 30; i++)
		assert_int_equal(grpc_call_send(call, chunk, sizeof chunk), 0);
	size_t pending = grpc_call_pending_bytes(call);
	assert_true(pending > 100000);
	assert_true(grpc_call_over_bound(call));
	assert_true(pending <= 30 * 10005);
	size_t at_drain = 0;
	grpc_call_on_drain(call, drain_cb, &at_drain);
	tc_pump(h); /* the client reads and opens its window */
	assert_int_equal(ts.drains, 1);
	assert_true(at_drain < 50000);
	assert_false(grpc_call_over_bound(call)); /* below half the bound again */
	assert_int_equal(grpc_call_pending_bytes(call), 0);
	assert_int_equal(st->data_len, 30 * 10005);
	assert_int_equal(grpc_call_finish(call, GRPC_OK, NULL), 0);
	tc_end(st);
	tc_pump(h);
	assert_int_equal(st->grpc_status, 0);
	assert_int_equal(ts.drains, 1);
	grpc_call_unref(call);
	tc_harness_free(h);
}

static void test_conn_free_closes_calls(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_stream *st = tc_request(h, "/test.Echo/HoldStream", NULL);
	tc_add_msg(st, (const uint8_t *)"x", 1);
	tc_pump(h);
	grpc_call *call = ts.held;
	tc_harness_free(h);
	assert_int_equal(ts.closes, 1);
	assert_true(grpc_call_closed(call));
	assert_int_equal(grpc_call_send(call, (const uint8_t *)"z", 1), MS_ECANCELED);
	grpc_call_unref(call);
}

static void test_many_streams(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_stream *s[TC_MAX_STREAMS];
	for (int i = 0; i < TC_MAX_STREAMS; i++) {
		s[i] = tc_request(h, "/test.Echo/Unary", NULL);
		char b[16];
		int k = snprintf(b, sizeof b, "r%d", i);
		tc_add_msg(s[i], (const uint8_t *)b, (size_t)k);
		tc_end(s[i]);
	}
	tc_pump(h);
	for (int i = 0; i < TC_MAX_STREAMS; i++) {
		char b[16];
		snprintf(b, sizeof b, "r%d", i);
		const char *want[] = {b};
		assert_int_equal(s[i]->grpc_status, 0);
		check_msgs(s[i], 1, want);
	}
	assert_int_equal(ts.closes, TC_MAX_STREAMS);
	tc_harness_free(h);
}

/* Every allocation failing in turn during a unary call: no crash, no leak. */
static void test_alloc_failures(void **state)
{
	for (long n = 1; n < 200; n++) {
		reset_ts();
		tc_harness *h = tc_harness_new(NULL, methods, MS_ARRAY_LEN(methods));
		assert_non_null(h);
		ms_alloc_fail_after(n);
		grpc_conn *c = NULL;
		int rc = grpc_conn_new(NULL, methods, MS_ARRAY_LEN(methods), tc_srv_send, h, &c);
		if (rc == 0) {
			grpc_conn_free(h->conn);
			h->conn = c;
			tc_stream *st = tc_request(h, "/test.Echo/Unary", NULL);
			tc_add_msg(st, (const uint8_t *)"hello", 5);
			tc_end(st);
			tc_pump_lenient(h);
		}
		ms_alloc_fail_after(0);
		tc_harness_free(h);
		assert_true(ts.closes <= 1);
	}
}

/* ---- HTTP/1.1 ---- */

static struct {
	int calls;
	char method[16], path[64], host[64], body[64];
} hs;

static void http1_handler(void *ud, const grpc_http1_request *req, grpc_http1_response *resp)
{
	hs.calls++;
	snprintf(hs.method, sizeof hs.method, "%s", req->method);
	snprintf(hs.path, sizeof hs.path, "%s", req->path);
	snprintf(hs.host, sizeof hs.host, "%s", req->host);
	snprintf(hs.body, sizeof hs.body, "%.*s", (int)req->body_len, (const char *)req->body);
	if (strcmp(req->path, "/health") == 0) {
		resp->status = 200;
		resp->body = (uint8_t *)ms_strdup("{\"health\":\"true\"}");
		resp->body_len = strlen((char *)resp->body);
	} else {
		resp->status = 404;
	}
}

typedef struct {
	char buf[8192];
	size_t len;
} h1_out;

static int h1_send(void *ud, const uint8_t *p, size_t n)
{
	h1_out *o = ud;
	assert_true(o->len + n < sizeof o->buf);
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	o->buf[o->len] = 0;
	return 0;
}

static void test_http1(void **state)
{
	memset(&hs, 0, sizeof hs);
	grpc_server_opts o = {.http1 = http1_handler, .max_recv_msg = 1000};
	h1_out out = {0};
	grpc_http1 *h;
	assert_int_equal(grpc_http1_new(&o, h1_send, &out, &h), 0);
	/* two pipelined requests, fed byte by byte */
	const char *req = "GET /health HTTP/1.1\r\nHost: example:2379\r\n\r\n"
	                  "POST /v3/kv/range HTTP/1.1\r\nhOsT: h2\r\nContent-Length: 4\r\n\r\n{\"a\"";
	for (size_t i = 0; req[i]; i++)
		assert_int_equal(grpc_http1_recv(h, (const uint8_t *)req + i, 1), 0);
	assert_int_equal(hs.calls, 2);
	assert_string_equal(hs.method, "POST");
	assert_string_equal(hs.path, "/v3/kv/range");
	assert_string_equal(hs.host, "h2");
	assert_string_equal(hs.body, "{\"a\"");
	assert_non_null(strstr(out.buf, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(out.buf, "Content-Length: 17\r\n"));
	assert_non_null(strstr(out.buf, "\r\n\r\n{\"health\":\"true\"}HTTP/1.1 404 Not Found\r\n"));
	assert_non_null(strstr(out.buf, "Access-Control-Allow-Origin: *\r\n"));
	assert_non_null(strstr(out.buf, "Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\n"));
	assert_non_null(strstr(out.buf, "Access-Control-Allow-Headers: accept, content-type, authorization\r\n"));
	assert_false(grpc_http1_want_close(h));
	/* OPTIONS: 200, empty, handler not called */
	out.len = 0;
	const char *opt = "OPTIONS /v3/kv/put HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_int_equal(grpc_http1_recv(h, (const uint8_t *)opt, strlen(opt)), 0);
	assert_int_equal(hs.calls, 2);
	assert_true(strncmp(out.buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_non_null(strstr(out.buf, "Content-Length: 0\r\n"));
	/* Connection: close */
	out.len = 0;
	const char *cl = "GET /health HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n";
	assert_int_equal(grpc_http1_recv(h, (const uint8_t *)cl, strlen(cl)), 0);
	assert_int_equal(hs.calls, 3);
	assert_string_equal(hs.path, "/health");
	assert_true(grpc_http1_want_close(h));
	assert_non_null(strstr(out.buf, "Connection: close\r\n"));
	grpc_http1_free(h);

	/* body over the limit (2 * max_recv_msg): 413 and close */
	out.len = 0;
	assert_int_equal(grpc_http1_new(&o, h1_send, &out, &h), 0);
	const char *big = "POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5000\r\n\r\n";
	assert_int_equal(grpc_http1_recv(h, (const uint8_t *)big, strlen(big)), MS_EINVAL);
	assert_true(strncmp(out.buf, "HTTP/1.1 413 ", 13) == 0);
	assert_true(grpc_http1_want_close(h));
	grpc_http1_free(h);

	/* garbage: 400 */
	out.len = 0;
	assert_int_equal(grpc_http1_new(&o, h1_send, &out, &h), 0);
	assert_int_equal(grpc_http1_recv(h, (const uint8_t *)"\x01\x02\r\n\r\n", 6), MS_EINVAL);
	assert_true(strncmp(out.buf, "HTTP/1.1 400 ", 13) == 0);
	grpc_http1_free(h);

	/* no handler: 404 */
	out.len = 0;
	grpc_server_opts none = {0};
	assert_int_equal(grpc_http1_new(&none, h1_send, &out, &h), 0);
	const char *g = "GET /health HTTP/1.0\r\n\r\n";
	assert_int_equal(grpc_http1_recv(h, (const uint8_t *)g, strlen(g)), 0);
	assert_true(strncmp(out.buf, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
	assert_true(grpc_http1_want_close(h)); /* HTTP/1.0 without keep-alive */
	grpc_http1_free(h);
}

/* ---- the socket side: grpc_server on its own loop thread ---- */

typedef struct tc_server {
	struct event_base *base;
	grpc_server *srv;
	pthread_t thread;
	int port;
} tc_server;

static void *tc_loop(void *arg)
{
	event_base_dispatch(arg);
	return NULL;
}

static void tc_server_start(tc_server *ts_, const grpc_server_opts *opts)
{
	static bool threads_on;
	if (!threads_on) {
		assert_int_equal(evthread_use_pthreads(), 0); /* loopexit from the test thread */
		threads_on = true;
	}
	reset_ts();
	ts_->base = event_base_new();
	assert_non_null(ts_->base);
	ms_err err = {0};
	assert_int_equal(grpc_server_new(ts_->base, opts, methods, MS_ARRAY_LEN(methods), &ts_->srv, &err), 0);
	assert_int_equal(grpc_server_listen(ts_->srv, "127.0.0.1", 0, &ts_->port, &err), 0);
	assert_true(ts_->port > 0);
	assert_int_equal(pthread_create(&ts_->thread, NULL, tc_loop, ts_->base), 0);
}

static void tc_server_stop(tc_server *ts_)
{
	event_base_loopexit(ts_->base, NULL);
	pthread_join(ts_->thread, NULL);
	grpc_server_free(ts_->srv);
	event_base_free(ts_->base);
}

static int tc_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

static void tc_write_all(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		assert_true(w > 0);
		p = (const char *)p + w;
		n -= (size_t)w;
	}
}

/* Reads once; 0 at EOF. The poll bound only keeps a broken server from hanging the run. */
static ssize_t tc_read_some(int fd, uint8_t *buf, size_t cap)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 30000), 1);
	ssize_t r = read(fd, buf, cap);
	assert_true(r >= 0);
	return r;
}

static tc_harness *tc_sock_client(int port)
{
	tc_harness *h = calloc(1, sizeof *h);
	assert_non_null(h);
	h->fd = tc_connect(port);
	tc_client_new(h);
	return h;
}

static void tc_sock_pump_until_closed(tc_harness *h, tc_stream *st)
{
	while (!st->closed) {
		const uint8_t *p;
		ssize_t n;
		while ((n = nghttp2_session_mem_send(h->cli, &p)) > 0)
			tc_write_all(h->fd, p, (size_t)n);
		uint8_t buf[16384];
		ssize_t r = tc_read_some(h->fd, buf, sizeof buf);
		assert_true(r > 0);
		assert_int_equal(nghttp2_session_mem_recv(h->cli, buf, (size_t)r), r);
	}
}

static void tc_sock_client_free(tc_harness *h)
{
	close(h->fd);
	h->fd = -1;
	tc_harness_free(h);
}

static void test_server_socket_unary(void **state)
{
	tc_server srv;
	tc_server_start(&srv, NULL);
	tc_harness *h = tc_sock_client(srv.port);
	tc_stream *st = tc_request(h, "/test.Echo/Unary", NULL);
	tc_add_msg(st, (const uint8_t *)"over tcp", 8);
	tc_end(st);
	tc_sock_pump_until_closed(h, st);
	assert_int_equal(st->grpc_status, 0);
	const char *want[] = {"over tcp"};
	check_msgs(st, 1, want);
	/* a second call on the same connection, then a server stream */
	tc_stream *st2 = tc_request(h, "/test.Echo/Stream", NULL);
	uint8_t n = 3;
	tc_add_msg(st2, &n, 1);
	tc_end(st2);
	tc_sock_pump_until_closed(h, st2);
	const char *want2[] = {"m0", "m1", "m2"};
	check_msgs(st2, 3, want2);
	assert_int_equal(st2->grpc_status, 0);
	tc_sock_client_free(h);
	tc_server_stop(&srv);
	assert_int_equal(ts.closes, 2);
}

static void test_server_socket_deadline(void **state)
{
	tc_server srv;
	tc_server_start(&srv, NULL);
	tc_harness *h = tc_sock_client(srv.port);
	const char *hdr[] = {"grpc-timeout", "20m", NULL};
	tc_stream *st = tc_request(h, "/test.Echo/Hold", hdr);
	tc_add_msg(st, (const uint8_t *)"x", 1);
	tc_end(st);
	tc_sock_pump_until_closed(h, st); /* the server's timer ends the call */
	assert_int_equal(st->grpc_status, GRPC_DEADLINE_EXCEEDED);
	assert_string_equal(st->grpc_message, "context deadline exceeded");
	tc_sock_client_free(h);
	tc_server_stop(&srv);
	assert_int_equal(ts.closes, 1);
	/* on a loaded machine the deadline may pass before the message is read */
	if (ts.held)
		grpc_call_unref(ts.held);
}

static void test_server_socket_broken_peer(void **state)
{
	tc_server srv;
	tc_server_start(&srv, NULL);
	tc_harness *good = tc_sock_client(srv.port);
	/* a peer that sends the preface and then garbage */
	int bad = tc_connect(srv.port);
	const char junk[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x03\x00\x00\x00\x00\x00\x00xyz";
	tc_write_all(bad, junk, sizeof junk - 1);
	uint8_t buf[4096], all[8192];
	size_t got = 0;
	ssize_t r;
	while ((r = tc_read_some(bad, buf, sizeof buf)) > 0) { /* until the server closes */
		assert_true(got + (size_t)r <= sizeof all);
		memcpy(all + got, buf, (size_t)r);
		got += (size_t)r;
	}
	bool goaway = false;
	for (size_t off = 0; off + 9 <= got;) {
		goaway |= all[off + 3] == NGHTTP2_GOAWAY;
		off += 9 + ((size_t)all[off] << 16 | (size_t)all[off + 1] << 8 | all[off + 2]);
	}
	assert_true(goaway);
	close(bad);
	/* the other connection is unaffected */
	tc_stream *st = tc_request(good, "/test.Echo/Unary", NULL);
	tc_add_msg(st, (const uint8_t *)"still here", 10);
	tc_end(st);
	tc_sock_pump_until_closed(good, st);
	assert_int_equal(st->grpc_status, 0);
	tc_sock_client_free(good);
	tc_server_stop(&srv);
}

/* Reads one HTTP/1.1 response with Content-Length into out (NUL-terminated). */
static void tc_read_http1(int fd, char *out, size_t cap)
{
	size_t got = 0;
	for (;;) {
		out[got] = 0;
		char *end = strstr(out, "\r\n\r\n");
		if (end) {
			char *cl = strstr(out, "Content-Length: ");
			assert_non_null(cl);
			size_t want = (size_t)(end + 4 - out) + (size_t)atoi(cl + 16);
			if (got >= want) {
				assert_int_equal(got, want);
				return;
			}
		}
		assert_true(got + 1 < cap);
		ssize_t r = tc_read_some(fd, (uint8_t *)out + got, cap - 1 - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

static void test_server_socket_http1(void **state)
{
	memset(&hs, 0, sizeof hs);
	grpc_server_opts o = {.http1 = http1_handler};
	tc_server srv;
	tc_server_start(&srv, &o);
	int fd = tc_connect(srv.port);
	const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	char resp[4096];
	for (int i = 0; i < 2; i++) { /* keep-alive: two requests on one connection */
		tc_write_all(fd, req, strlen(req));
		tc_read_http1(fd, resp, sizeof resp);
		assert_true(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
		assert_non_null(strstr(resp, "\r\n\r\n{\"health\":\"true\"}"));
		assert_non_null(strstr(resp, "Access-Control-Allow-Origin: *\r\n"));
	}
	const char *bye = "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	tc_write_all(fd, bye, strlen(bye));
	tc_read_http1(fd, resp, sizeof resp);
	assert_true(strncmp(resp, "HTTP/1.1 404 ", 13) == 0);
	uint8_t b[16];
	assert_int_equal(tc_read_some(fd, b, sizeof b), 0); /* the server closed */
	close(fd);
	tc_server_stop(&srv);
	assert_int_equal(hs.calls, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unary_echo),
	    cmocka_unit_test(test_server_stream),
	    cmocka_unit_test(test_bidi_interleaved),
	    cmocka_unit_test(test_split_byte_by_byte),
	    cmocka_unit_test(test_large_message_many_frames),
	    cmocka_unit_test(test_several_messages_one_frame),
	    cmocka_unit_test(test_oversize_message),
	    cmocka_unit_test(test_default_limit_message),
	    cmocka_unit_test(test_partial_messages_bounded),
	    cmocka_unit_test(test_unknown_method),
	    cmocka_unit_test(test_compressed_flag),
	    cmocka_unit_test(test_compressed_messages),
	    cmocka_unit_test(test_half_close_edge_cases),
	    cmocka_unit_test(test_bad_preface),
	    cmocka_unit_test(test_bad_frame_after_preface),
	    cmocka_unit_test(test_timeout_parse),
	    cmocka_unit_test(test_deadline),
	    cmocka_unit_test(test_percent_encoding),
	    cmocka_unit_test(test_rst_from_client),
	    cmocka_unit_test(test_async_finish),
	    cmocka_unit_test(test_finish_before_client_ends),
	    cmocka_unit_test(test_back_pressure),
	    cmocka_unit_test(test_conn_free_closes_calls),
	    cmocka_unit_test(test_many_streams),
	    cmocka_unit_test(test_alloc_failures),
	    cmocka_unit_test(test_http1),
	    cmocka_unit_test(test_server_socket_unary),
	    cmocka_unit_test(test_server_socket_deadline),
	    cmocka_unit_test(test_server_socket_broken_peer),
	    cmocka_unit_test(test_server_socket_http1),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
