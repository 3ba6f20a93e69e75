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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
	bool use_feed;     /* grpc_conn_feed: input the budget pause left is kept in in[] */
	bool no_read;      /* the client does not read the server's output */
	uint8_t *in;
	size_t in_len, in_cap;
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
	free(h->in);
	free(h);
}

static const char *tc_authority = "localhost";

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
	TC_NV(":authority", tc_authority);
	TC_NV("content-type", "application/grpc");
	TC_NV("te", "trailers");
	for (size_t i = 0; hdrs && hdrs[i]; i += 2) {
		TC_NV(hdrs[i], hdrs[i + 1]);
		/* nghttp2 lower-cases the names it copies: a test of an
		 * upper-case name has it sent as is (literals outlive the send) */
		for (const char *c = hdrs[i]; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				nva[n - 1].flags = NGHTTP2_NV_FLAG_NO_COPY_NAME;
	}
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
		if (h->use_feed) {
			while ((n = nghttp2_session_mem_send(h->cli, &p)) > 0) {
				progress = true;
				tc_append(&h->in, &h->in_len, &h->in_cap, p, (size_t)n);
			}
			/* feeds what is held even when nothing new came: a budget may have freed */
			while (!grpc_conn_paused(h->conn)) {
				size_t chunk = h->feed_chunk ? MS_MIN(h->feed_chunk, h->in_len) : h->in_len, used;
				int rc = grpc_conn_feed(h->conn, h->in, chunk, &used);
				if (strict)
					assert_int_equal(rc, 0);
				else if (rc)
					return;
				memmove(h->in, h->in + used, h->in_len - used);
				h->in_len -= used;
				progress |= used > 0;
				if (used < chunk || !h->in_len)
					break;
			}
		}
		while (!h->use_feed && (n = nghttp2_session_mem_send(h->cli, &p)) > 0) {
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
		if (h->out_len && !h->no_read) {
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
	grpc_call *helds[64];
	int nhelds;
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

static void hold_many(grpc_call *call, const uint8_t *m, size_t len, void *ud)
{
	note_msg(m, len);
	assert_true(ts.nhelds < (int)MS_ARRAY_LEN(ts.helds));
	grpc_call_ref(call);
	ts.helds[ts.nhelds++] = call;
}

/* Replies with as many bytes as the request's first byte says, in KiB. */
static void big_reply(grpc_call *call, const uint8_t *m, size_t len, void *ud)
{
	note_msg(m, len);
	size_t n = (len ? m[0] : 1) * (size_t)1024;
	uint8_t *b = calloc(1, n);
	assert_non_null(b);
	assert_int_equal(grpc_call_send(call, b, n), 0);
	free(b);
	grpc_call_finish(call, GRPC_OK, NULL);
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
    {"/test.Echo/HoldMany", GRPC_UNARY, hold_many, NULL, on_close, NULL},
    {"/test.Echo/Big", GRPC_UNARY, big_reply, NULL, on_close, NULL},
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

/* ---- budgets (issue 10) ---- */

static tc_stream *req_byte(tc_harness *h, const char *path, uint8_t b)
{
	tc_stream *st = tc_request(h, path, NULL);
	tc_add_msg(st, &b, 1);
	tc_end(st);
	return st;
}

static void client_window(tc_harness *h, uint32_t w)
{
	nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, w};
	assert_int_equal(nghttp2_submit_settings(h->cli, NGHTTP2_FLAG_NONE, &iv, 1), 0);
}

/* max_inflight unary calls unfinished: the connection stops processing input
 * (the rest is left to the caller) and goes on, in order, as calls finish. */
static void inflight_pause_run(size_t feed_chunk)
{
	grpc_server_opts o = {.max_inflight = 2};
	tc_harness *h = new_harness(&o);
	h->use_feed = true;
	h->feed_chunk = feed_chunk;
	tc_stream *s[5];
	for (int i = 0; i < 5; i++)
		s[i] = req_byte(h, "/test.Echo/HoldMany", (uint8_t)i);
	tc_pump(h);
	assert_int_equal(ts.nhelds, 2);
	assert_int_equal(h->conn->inflight, 2);
	assert_true(grpc_conn_paused(h->conn));
	assert_true(h->in_len > 0); /* the rest of the input waits */
	for (int k = 0; k < 5; k++) {
		grpc_call *c = ts.helds[k];
		assert_int_equal(c->stream_id, s[k]->id); /* dispatched in order */
		assert_int_equal(grpc_call_send(c, (const uint8_t *)"ok", 2), 0);
		assert_int_equal(grpc_call_finish(c, GRPC_OK, NULL), 0);
		grpc_call_unref(c);
		tc_pump(h);
		assert_int_equal(ts.nhelds, MS_MIN(k + 3, 5));
		assert_true(s[k]->closed);
		assert_int_equal(s[k]->grpc_status, 0);
	}
	assert_false(grpc_conn_paused(h->conn));
	assert_int_equal(h->in_len, 0);
	assert_int_equal(h->conn->inflight, 0);
	const char *want[] = {"ok"};
	for (int i = 0; i < 5; i++)
		check_msgs(s[i], 1, want);
	tc_harness_free(h);
}

static void test_budget_inflight_pause(void **state)
{
	inflight_pause_run(0);
	inflight_pause_run(1); /* byte by byte */
}

/* A unary call that stays in flight (a Lock waiting) stops counting after
 * GRPC_INFLIGHT_NS, so its connection reads the request that unblocks it. */
static void test_budget_inflight_expires(void **state)
{
	grpc_server_opts o = {.max_inflight = 1};
	tc_harness *h = new_harness(&o);
	h->use_feed = true;
	req_byte(h, "/test.Echo/HoldMany", 0);
	tc_stream *second = req_byte(h, "/test.Echo/Unary", 1);
	tc_pump(h);
	assert_int_equal(ts.nhelds, 1);
	assert_true(grpc_conn_paused(h->conn));
	int64_t due = grpc_conn_pop_new_deadline(h->conn);
	assert_true(due > 0);
	assert_true(grpc_conn_expire(h->conn, due - 1) == due); /* not yet */
	assert_true(grpc_conn_paused(h->conn));
	assert_int_equal(grpc_conn_expire(h->conn, due), 0);
	assert_false(grpc_conn_paused(h->conn));
	tc_pump(h);
	assert_true(second->closed);
	assert_int_equal(second->grpc_status, 0);
	assert_int_equal(h->conn->inflight, 0);
	grpc_call_finish(ts.helds[0], GRPC_OK, NULL);
	grpc_call_unref(ts.helds[0]);
	tc_pump(h);
	tc_harness_free(h);
}

/* A client that grants no window: replies queue up to max_conn_out, then new
 * unary requests are held (read, not dispatched); its WINDOW_UPDATE (here
 * SETTINGS) is still read, the replies drain and the held calls run in order. */
static void test_budget_reply_holds(void **state)
{
	grpc_server_opts o = {.max_conn_out = 10000};
	tc_harness *h = new_harness(&o);
	client_window(h, 0);
	h->use_feed = true;
	tc_stream *s[5];
	for (int i = 0; i < 5; i++)
		s[i] = req_byte(h, "/test.Echo/Big", 6); /* 6 KiB replies */
	tc_pump(h);
	assert_int_equal(ts.messages, 2);
	assert_int_equal(h->conn->nheld, 3);
	assert_true(h->conn->out_bytes >= 10000);
	assert_false(grpc_conn_paused(h->conn)); /* reading goes on */
	assert_int_equal(h->in_len, 0);
	assert_true(h->conn->partial_bytes > 0); /* held messages count */
	for (int i = 0; i < 5; i++)
		assert_false(s[i]->closed);
	client_window(h, 1 << 20);
	tc_pump(h);
	for (int i = 0; i < 5; i++) {
		assert_true(s[i]->closed);
		assert_int_equal(s[i]->grpc_status, 0);
		assert_int_equal(s[i]->data_len, 6 * 1024 + 5);
	}
	assert_int_equal(ts.messages, 5);
	assert_int_equal(h->conn->nheld, 0);
	assert_int_equal(h->conn->out_bytes, 0);
	assert_int_equal(h->conn->partial_bytes, 0);
	tc_harness_free(h);
}

/* The server-wide reply budget: the connection that does not read is held,
 * the one that reads is served. Counters return to zero. */
static void test_budget_total_out_fair(void **state)
{
	grpc_budget b = {0};
	grpc_server_opts o = {.max_total_out = (size_t)1 << 20};
	tc_harness *bad = new_harness(&o);
	tc_harness *good = tc_harness_new(&o, methods, MS_ARRAY_LEN(methods));
	grpc_conn_set_budget(bad->conn, &b);
	grpc_conn_set_budget(good->conn, &b);
	client_window(bad, 0);
	bad->use_feed = good->use_feed = true;
	tc_stream *s[7];
	for (int i = 0; i < 7; i++)
		s[i] = req_byte(bad, "/test.Echo/Big", 255);
	tc_pump(bad);
	assert_int_equal(ts.messages, 5); /* 5 x 255 KiB passes 1 MiB */
	assert_int_equal(bad->conn->nheld, 2);
	assert_true(b.out_total >= ((size_t)1 << 20));
	tc_stream *g[3];
	for (int i = 0; i < 3; i++)
		g[i] = req_byte(good, "/test.Echo/Big", 1);
	tc_pump(good);
	for (int i = 0; i < 3; i++)
		assert_int_equal(g[i]->grpc_status, 0);
	assert_int_equal(bad->conn->nheld, 2);
	client_window(bad, 1 << 20);
	tc_pump(bad);
	for (int i = 0; i < 7; i++)
		assert_int_equal(s[i]->grpc_status, 0);
	assert_int_equal(b.out_total, 0);
	assert_int_equal(b.partial_total, 0);
	tc_harness_free(bad);
	tc_harness_free(good);
	assert_int_equal(b.calls_total, 0);
}

/* Bidi streams: messages that arrive while the reply budget is spent wait
 * in the call's backlog (in order, counted), then run as replies drain. */
static void test_budget_bidi_backlog(void **state)
{
	grpc_server_opts o = {.max_conn_out = 10000};
	tc_harness *h = new_harness(&o);
	client_window(h, 0);
	h->use_feed = true;
	h->feed_chunk = 700; /* messages cut across feeds and DATA frames */
	tc_stream *st = tc_request(h, "/test.Echo/Bidi", NULL);
	static uint8_t m[6000];
	for (int i = 0; i < 3; i++) {
		m[0] = (uint8_t)i;
		tc_add_msg(st, m, sizeof m);
	}
	tc_pump(h);
	assert_int_equal(ts.messages, 2); /* 2 x 6005 bytes queued: over 10000 */
	assert_int_equal(h->conn->nheld, 1);
	assert_true(h->conn->partial_bytes >= 6005);
	for (int i = 3; i < 5; i++) {
		m[0] = (uint8_t)i;
		tc_add_msg(st, m, sizeof m);
	}
	tc_end(st);
	tc_pump(h);
	assert_int_equal(ts.messages, 2);
	assert_int_equal(ts.half_closes, 0); /* the half-close waits behind the messages */
	client_window(h, 1 << 20);
	tc_pump(h);
	assert_int_equal(ts.messages, 5);
	assert_int_equal(ts.half_closes, 1);
	assert_true(st->closed);
	assert_int_equal(st->grpc_status, 0);
	assert_int_equal(st->data_len, 5 * 6005);
	for (int i = 0; i < 5; i++)
		assert_int_equal(st->data[i * 6005 + 5], i); /* in order */
	assert_int_equal(h->conn->nheld, 0);
	assert_int_equal(h->conn->partial_bytes, 0);
	assert_int_equal(h->conn->out_bytes, 0);
	tc_harness_free(h);
}

/* A backlog past the partial budget ends its call, not the connection. */
static void test_budget_bidi_backlog_bounded(void **state)
{
	grpc_budget b = {0};
	grpc_server_opts o = {.max_conn_out = 10000, .max_total_partial = 100000};
	tc_harness *h = new_harness(&o);
	grpc_conn_set_budget(h->conn, &b);
	client_window(h, 0);
	h->use_feed = true;
	tc_stream *st = tc_request(h, "/test.Echo/Bidi", NULL);
	static uint8_t m[6000];
	for (int i = 0; i < 40; i++)
		tc_add_msg(st, m, sizeof m);
	tc_pump(h);

	assert_true(b.partial_total <= 100000);
	assert_int_equal(h->conn->nheld, 0);
	tc_stream *st2 = req_byte(h, "/test.Echo/Unary", 'k'); /* the connection still works */
	client_window(h, 1 << 20);
	tc_pump(h);
	assert_int_equal(st2->grpc_status, 0);
	assert_true(st->closed);
	assert_int_equal(st->grpc_status, GRPC_RESOURCE_EXHAUSTED);
	assert_string_equal(st->grpc_message, "grpc: too much partial request data on the server");
	tc_harness_free(h);
	assert_int_equal(b.partial_total, 0);
}

/* Unfinished messages across connections are bounded server-wide, by the
 * buffers' capacity. */
static void test_budget_total_partial(void **state)
{
	grpc_budget b = {0};
	grpc_server_opts o = {.max_total_partial = 250000};
	tc_harness *ha = new_harness(&o);
	tc_harness *hb = tc_harness_new(&o, methods, MS_ARRAY_LEN(methods));
	grpc_conn_set_budget(ha->conn, &b);
	grpc_conn_set_budget(hb->conn, &b);
	static uint8_t part[120000];
	uint8_t hdr[5] = {0, 0, 0x03, 0x0d, 0x40}; /* 200000 */
	tc_stream *a = tc_request(ha, "/test.Echo/Bidi", NULL);
	tc_add_raw(a, hdr, 5);
	tc_add_raw(a, part, 80000);
	tc_pump(ha);
	assert_false(a->closed);
	assert_int_equal(b.partial_total, 131072); /* the buffer, not the bytes */
	tc_stream *bs = tc_request(hb, "/test.Echo/Bidi", NULL);
	tc_add_raw(bs, hdr, 5);
	tc_add_raw(bs, part, 80000);
	tc_pump(hb);
	assert_true(bs->closed);
	assert_int_equal(bs->grpc_status, GRPC_RESOURCE_EXHAUSTED);
	assert_string_equal(bs->grpc_message, "grpc: too much partial request data on the server");
	assert_int_equal(b.partial_total, 131072);
	tc_add_raw(a, part, 120000); /* a completes: its buffer is released */
	tc_pump(ha);
	assert_int_equal(ts.messages, 1);
	assert_int_equal(b.partial_total, 0);
	tc_stream *b2 = tc_request(hb, "/test.Echo/Bidi", NULL);
	tc_add_raw(b2, hdr, 5);
	tc_add_raw(b2, part, 80000);
	tc_pump(hb);
	assert_false(b2->closed);
	tc_end(a);
	tc_end(b2);
	tc_pump(ha);
	tc_pump_lenient(hb);
	tc_harness_free(ha);
	tc_harness_free(hb);
	assert_int_equal(b.partial_total, 0);
	assert_int_equal(b.calls_total, 0);
}

/* Header-only streams: the stream limit and the server-wide call limit hold
 * however many the client opens. */
static void test_budget_stream_flood(void **state)
{
	for (int pass = 0; pass < 2; pass++) {
		grpc_budget b = {0};
		grpc_server_opts o = {.max_concurrent_streams = 10, .max_total_calls = 5};
		tc_harness *h = new_harness(&o);
		if (pass == 1)
			grpc_conn_set_budget(h->conn, &b);
		h->use_feed = true;
		h->feed_chunk = pass ? 1 : 0;
		tc_stream *s[60];
		for (int i = 0; i < 60; i++)
			s[i] = tc_request(h, "/test.Echo/Unary", NULL); /* headers, no message, no end */
		tc_pump(h);
		uint32_t limit = pass ? 5 : 10;
		int refused = 0;
		for (int i = 0; i < 60; i++)
			refused += s[i]->rst && s[i]->rst_code == NGHTTP2_REFUSED_STREAM;
		assert_true(grpc_conn_open_calls(h->conn) <= limit);
		assert_true(grpc_conn_open_calls(h->conn) >= 1);
		assert_true(refused >= 60 - (int)limit);
		if (pass == 1)
			assert_int_equal(b.calls_total, grpc_conn_open_calls(h->conn));
		tc_harness_free(h);
		assert_int_equal(b.calls_total, 0);
	}
}

/* Request headers are checked as grpc-go checks them; any :authority value
 * is accepted (clientv3 sends "http://host:port" for such endpoints), and so
 * is any te (grpc-go does not look at it; test_wire_compat compares). */
static void test_request_header_checks(void **state)
{
	tc_harness *h = new_harness(NULL);
	tc_authority = "http://127.0.0.1:2379";
	tc_stream *ok = req_byte(h, "/test.Echo/Unary", 'a');
	tc_authority = "localhost";
	const char *bad[][3] = {
	    {"Upper", "x", NULL},     {"connection", "close", NULL},
	    {"x-bad", "a\nb", NULL},  {":path", "/test.Echo/Unary", NULL},
	    {"x-nul", "a\x01", NULL}, {"transfer-encoding", "chunked", NULL},
	};
	tc_stream *s[MS_ARRAY_LEN(bad)];
	for (size_t i = 0; i < MS_ARRAY_LEN(bad); i++) {
		s[i] = tc_request(h, "/test.Echo/Unary", bad[i]);
		tc_add_msg(s[i], (const uint8_t *)"x", 1);
		tc_end(s[i]);
	}
	tc_pump(h);
	assert_true(ok->closed);
	assert_int_equal(ok->grpc_status, 0);
	for (size_t i = 0; i < MS_ARRAY_LEN(bad); i++) {
		if (!s[i]->rst)
			fail_msg("header %s: not reset (status %d)", bad[i][0], s[i]->grpc_status);
		assert_int_equal(s[i]->rst_code, NGHTTP2_PROTOCOL_ERROR);
	}
	assert_int_equal(ts.messages, 1);
	tc_harness_free(h);
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

/* Reads until the server closes; returns the milliseconds it took. */
static int64_t tc_ms_until_closed(int fd)
{
	int64_t t0 = ms_now_mono_ns();
	uint8_t b[4096];
	while (tc_read_some(fd, b, sizeof b) > 0) {
	}
	return (ms_now_mono_ns() - t0) / 1000000;
}

/* A round trip on a socket client: its handshake is done on the server. */
static void tc_sock_unary(tc_harness *h)
{
	tc_stream *st = tc_request(h, "/test.Echo/Unary", NULL);
	tc_add_msg(st, (const uint8_t *)"rt", 2);
	tc_end(st);
	tc_sock_pump_until_closed(h, st);
	assert_int_equal(st->grpc_status, 0);
}

/* Handshake and HTTP/1 idle timeouts; a closing connection whose client
 * does not read is dropped too. */
static void test_server_socket_timeouts(void **state)
{
	memset(&hs, 0, sizeof hs);
	grpc_server_opts o = {.handshake_ms = 300, .http1_idle_ms = 400, .http1 = http1_handler};
	tc_server srv;
	tc_server_start(&srv, &o);
	/* nothing sent */
	int a = tc_connect(srv.port);
	int64_t ms = tc_ms_until_closed(a);
	assert_true(ms >= 250 && ms < 20000);
	close(a);
	/* half an HTTP/2 preface */
	a = tc_connect(srv.port);
	tc_write_all(a, "PRI * HTTP/2.0\r\n", 16);
	ms = tc_ms_until_closed(a);
	assert_true(ms >= 250 && ms < 20000);
	close(a);
	/* the preface but no SETTINGS */
	a = tc_connect(srv.port);
	tc_write_all(a, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	ms = tc_ms_until_closed(a);
	assert_true(ms >= 250 && ms < 20000);
	close(a);
	/* an HTTP/1 head that never ends */
	a = tc_connect(srv.port);
	tc_write_all(a, "GET /health HTTP/1.1\r\nHost: x\r\n", 31);
	ms = tc_ms_until_closed(a);
	assert_true(ms >= 250 && ms < 20000);
	close(a);
	/* HTTP/1 keep-alive: served, then closed when idle */
	a = tc_connect(srv.port);
	const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	char resp[4096];
	tc_write_all(a, req, strlen(req));
	tc_read_http1(a, resp, sizeof resp);
	assert_true(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
	ms = tc_ms_until_closed(a);
	assert_true(ms >= 300 && ms < 20000);
	close(a);
	/* an HTTP/2 client past its handshake is not timed out */
	tc_harness *h = tc_sock_client(srv.port);
	tc_sock_unary(h);
	struct pollfd pfd = {.fd = h->fd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 800), 0); /* nothing, no close, for twice the timeout */
	tc_sock_unary(h);
	tc_sock_client_free(h);
	tc_server_stop(&srv);
}

/* The connection limit: a connection still in its handshake makes room for
 * a new one; when every connection is past it, the new one is closed at once. */
static void test_server_socket_conn_limit(void **state)
{
	grpc_server_opts o = {.handshake_ms = 20000, .max_conns = 2};
	tc_server srv;
	tc_server_start(&srv, &o);
	int x = tc_connect(srv.port), y = tc_connect(srv.port);
	tc_harness *h = tc_sock_client(srv.port); /* the third: x, the oldest, goes */
	tc_sock_unary(h);
	assert_true(tc_ms_until_closed(x) < 10000);
	close(x);
	tc_harness *h2 = tc_sock_client(srv.port); /* y goes */
	tc_sock_unary(h2);
	assert_true(tc_ms_until_closed(y) < 10000);
	close(y);
	/* both connections are past their handshake: a third is refused */
	int z = tc_connect(srv.port);
	assert_true(tc_ms_until_closed(z) < 10000);
	close(z);
	tc_sock_unary(h);
	tc_sock_unary(h2);
	tc_sock_client_free(h);
	tc_sock_client_free(h2);
	tc_server_stop(&srv);
}

/* --max-concurrent-streams reaches the SETTINGS the server sends. */
static void test_server_socket_max_streams(void **state)
{
	tc_server srv;
	tc_server_start(&srv, NULL);
	uint32_t want[] = {1000, 7}; /* the default, then the setter's */
	for (int k = 0; k < 2; k++) {
		if (k == 1) {
			event_base_loopexit(srv.base, NULL); /* the setter runs on the loop's thread */
			pthread_join(srv.thread, NULL);
			grpc_server_set_max_concurrent_streams(srv.srv, 7);
			assert_int_equal(pthread_create(&srv.thread, NULL, tc_loop, srv.base), 0);
		}
		int fd = tc_connect(srv.port);
		tc_write_all(fd, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0", 33);
		uint8_t buf[256];
		size_t got = 0;
		while (got < 9 || got < 9 + ((size_t)buf[0] << 16 | (size_t)buf[1] << 8 | buf[2])) {
			ssize_t r = tc_read_some(fd, buf + got, sizeof buf - got);
			assert_true(r > 0);
			got += (size_t)r;
		}
		assert_int_equal(buf[3], NGHTTP2_SETTINGS);
		size_t len = (size_t)buf[0] << 16 | (size_t)buf[1] << 8 | buf[2];
		bool found = false;
		for (size_t off = 9; off + 6 <= 9 + len; off += 6) {
			uint16_t id = (uint16_t)(buf[off] << 8 | buf[off + 1]);
			uint32_t v = (uint32_t)buf[off + 2] << 24 | (uint32_t)buf[off + 3] << 16 |
			             (uint32_t)buf[off + 4] << 8 | buf[off + 5];
			if (id == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) {
				assert_int_equal(v, want[k]);
				found = true;
			}
		}
		assert_true(found);
		close(fd);
	}
	tc_server_stop(&srv);
}

/* Out of file descriptors: accept fails with EMFILE; the server backs off
 * (a handful of failures, not a spinning loop) and serves again once
 * descriptors free up. The server runs in a child process with a low
 * RLIMIT_NOFILE. */
static void emfile_stop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void emfile_child(int to_parent, int stop_fd)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		_exit(2);
	rl.rlim_cur = 64;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		_exit(3);
	struct event_base *base = event_base_new();
	grpc_server_opts o = {.max_conns = 10000, .handshake_ms = 300};
	grpc_server *s;
	ms_err err = {0};
	int port = 0;
	if (!base || grpc_server_new(base, &o, methods, MS_ARRAY_LEN(methods), &s, &err) ||
	    grpc_server_listen(s, "127.0.0.1", 0, &port, &err))
		_exit(4);
	struct event *ev = event_new(base, stop_fd, EV_READ, emfile_stop, base);
	if (!ev || event_add(ev, NULL) || write(to_parent, &port, sizeof port) != sizeof port)
		_exit(5);
	event_base_dispatch(base);
	uint64_t n = grpc_server_accept_errors(s);
	event_free(ev);
	grpc_server_free(s);
	event_base_free(base);
	if (write(to_parent, &n, sizeof n) != sizeof n)
		_exit(6);
	_exit(0);
}

static void test_server_socket_emfile_backoff(void **state)
{
	int up[2], stop[2];
	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(stop), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(up[0]);
		close(stop[1]);
		emfile_child(up[1], stop[0]);
	}
	close(up[1]);
	close(stop[0]);
	int port = 0;
	assert_int_equal(read(up[0], &port, sizeof port), (ssize_t)sizeof port);
	enum { N = 100 };
	int fds[N];
	for (int i = 0; i < N; i++)
		fds[i] = tc_connect(port); /* the backlog takes what the server cannot accept */
	/* the accepted ones are closed by the handshake timeout, which frees
	 * descriptors for the rest: every connection ends */
	for (int i = 0; i < N; i++) {
		assert_true(tc_ms_until_closed(fds[i]) < 30000);
		close(fds[i]);
	}
	/* and a new client is served */
	int fd = tc_connect(port);
	const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	tc_write_all(fd, req, strlen(req));
	char resp[1024];
	tc_read_http1(fd, resp, sizeof resp);
	assert_true(strncmp(resp, "HTTP/1.1 404 ", 13) == 0);
	close(fd);
	close(stop[1]);
	uint64_t errors = 0;
	assert_int_equal(read(up[0], &errors, sizeof errors), (ssize_t)sizeof errors);
	close(up[0]);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	print_message("accept errors while out of descriptors: %llu\n", (unsigned long long)errors);
	assert_true(errors >= 1);
	assert_true(errors <= 40); /* backing off: 50 ms doubling to 1 s */
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
	    cmocka_unit_test(test_budget_inflight_pause),
	    cmocka_unit_test(test_budget_inflight_expires),
	    cmocka_unit_test(test_budget_reply_holds),
	    cmocka_unit_test(test_budget_total_out_fair),
	    cmocka_unit_test(test_budget_total_partial),
	    cmocka_unit_test(test_budget_bidi_backlog),
	    cmocka_unit_test(test_budget_bidi_backlog_bounded),
	    cmocka_unit_test(test_budget_stream_flood),
	    cmocka_unit_test(test_request_header_checks),
	    cmocka_unit_test(test_http1),
	    cmocka_unit_test(test_server_socket_unary),
	    cmocka_unit_test(test_server_socket_deadline),
	    cmocka_unit_test(test_server_socket_broken_peer),
	    cmocka_unit_test(test_server_socket_http1),
	    cmocka_unit_test(test_server_socket_timeouts),
	    cmocka_unit_test(test_server_socket_conn_limit),
	    cmocka_unit_test(test_server_socket_max_streams),
	    cmocka_unit_test(test_server_socket_emfile_backoff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
