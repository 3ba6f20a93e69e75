/* test_grpc_client.c — the gRPC client (api/grpc_client.h) against the real
 * server-side gRPC layer (api/grpc.h's grpc_server) on a loopback port,
 * both on one libevent loop in this thread: unary, server streaming, bidi,
 * many concurrent calls on one connection, large messages, status and
 * percent-encoded messages, unknown methods, deadlines, cancellation,
 * receive limits, metadata, and connection failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>

#include "api/grpc.h"
#include "api/grpc_client.h"

/* ---- server handlers ---- */

static int srv_closes;

static void h_echo(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	grpc_call_send(call, msg, len);
	grpc_call_finish(call, GRPC_OK, NULL);
}

/* first byte = how many messages to stream back */
static void h_stream(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	int n = len ? msg[0] : 0;
	for (int i = 0; i < n; i++) {
		char m[16];
		int k = snprintf(m, sizeof m, "m%d", i);
		grpc_call_send(call, (const uint8_t *)m, (size_t)k);
	}
	grpc_call_finish(call, GRPC_OK, NULL);
}

/* bidi: echo each message, finish when the client half-closes */
static void h_bidi_msg(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	grpc_call_send(call, msg, len);
}
static void h_bidi_half(grpc_call *call, void *ud)
{
	grpc_call_finish(call, GRPC_OK, NULL);
}

/* fails with a status and a message that needs percent-encoding */
static void h_fail(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	grpc_call_finish(call, GRPC_FAILED_PRECONDITION, "etcdserver: 100% bad\nnews \xc3\xa9");
}

/* never answers: the deadline or a cancel ends it */
static bool hang_seen;
static void h_hang(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	hang_seen = true;
}

/* answers with the value of the "token" metadata */
static void h_md(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	const char *t = grpc_call_metadata(call, "token");
	grpc_call_send(call, (const uint8_t *)(t ? t : "-"), t ? strlen(t) : 1);
	grpc_call_finish(call, GRPC_OK, NULL);
}

static void h_close(grpc_call *call, void *ud)
{
	srv_closes++;
}

static const grpc_method methods[] = {
    {"/test.T/Echo", GRPC_UNARY, h_echo, NULL, h_close, NULL},
    {"/test.T/Stream", GRPC_SERVER_STREAM, h_stream, NULL, h_close, NULL},
    {"/test.T/Bidi", GRPC_BIDI_STREAM, h_bidi_msg, h_bidi_half, h_close, NULL},
    {"/test.T/Fail", GRPC_UNARY, h_fail, NULL, h_close, NULL},
    {"/test.T/Hang", GRPC_UNARY, h_hang, NULL, h_close, NULL},
    {"/test.T/Md", GRPC_UNARY, h_md, NULL, h_close, NULL},
};

/* ---- the harness: server and client on one loop ---- */

typedef struct rec {
	int nmsg;
	char msgs[8][64];
	size_t total_bytes;
	uint8_t *last; /* copy of the last message */
	size_t last_len;
	bool done;
	int status;
	char message[256];
	grpc_client_call *call;
} rec;

typedef struct env {
	struct event_base *base;
	grpc_server *srv;
	int port;
	grpc_client *cl;
	struct event *guard;
	bool hung;
} env;

static void guard_cb(evutil_socket_t fd, short what, void *arg)
{
	env *e = arg;
	e->hung = true;
	event_base_loopbreak(e->base);
}

static void env_start(env *e, const grpc_server_opts *so, const grpc_client_opts *co)
{
	memset(e, 0, sizeof *e);
	srv_closes = 0;
	hang_seen = false;
	e->base = event_base_new();
	assert_non_null(e->base);
	ms_err err = {0};
	assert_int_equal(grpc_server_new(e->base, so, methods, MS_ARRAY_LEN(methods), &e->srv, &err), 0);
	assert_int_equal(grpc_server_listen(e->srv, "127.0.0.1", 0, &e->port, &err), 0);
	assert_int_equal(grpc_client_new(e->base, "127.0.0.1", e->port, co, &e->cl, &err), 0);
	/* only keeps a broken build from hanging the run; no assertion is timed */
	e->guard = evtimer_new(e->base, guard_cb, e);
	struct timeval tv = {30, 0};
	evtimer_add(e->guard, &tv);
}

static void env_stop(env *e)
{
	grpc_client_free(e->cl);
	grpc_server_free(e->srv);
	event_free(e->guard);
	event_base_free(e->base);
}

/* Runs the loop until *flag (or the hang guard). */
static void run_until(env *e, const bool *flag)
{
	while (!*flag && !e->hung)
		event_base_loop(e->base, EVLOOP_ONCE);
	assert_false(e->hung);
}

static void rec_msg(grpc_client_call *call, const uint8_t *msg, size_t len, void *ud)
{
	rec *r = ud;
	if (r->nmsg < 8)
		snprintf(r->msgs[r->nmsg], sizeof r->msgs[0], "%.*s", (int)MS_MIN(len, 63), (const char *)msg);
	r->nmsg++;
	r->total_bytes += len;
	free(r->last);
	r->last = malloc(len + 1);
	memcpy(r->last, msg, len);
	r->last_len = len;
}

static void rec_done(grpc_client_call *call, int status, const char *message, void *ud)
{
	rec *r = ud;
	assert_false(r->done); /* exactly once */
	assert_non_null(message);
	r->done = true;
	r->status = status;
	snprintf(r->message, sizeof r->message, "%s", message);
	r->call = NULL;
}

static void rec_free(rec *r)
{
	free(r->last);
}

/* ---- tests ---- */

static void test_unary(void **state)
{
	env e;
	env_start(&e, NULL, NULL);
	rec r = {0};
	assert_int_equal(
	    grpc_client_unary(e.cl, "/test.T/Echo", (const uint8_t *)"hello", 5, 0, rec_msg, rec_done, &r, &r.call), 0);
	assert_int_equal(grpc_client_open_calls(e.cl), 1);
	run_until(&e, &r.done);
	assert_int_equal(r.status, GRPC_OK);
	assert_int_equal(r.nmsg, 1);
	assert_string_equal(r.msgs[0], "hello");
	assert_int_equal(grpc_client_open_calls(e.cl), 0);
	/* an empty message is a message */
	rec r2 = {0};
	assert_int_equal(grpc_client_unary(e.cl, "/test.T/Echo", NULL, 0, 0, rec_msg, rec_done, &r2, NULL), 0);
	run_until(&e, &r2.done);
	assert_int_equal(r2.status, GRPC_OK);
	assert_int_equal(r2.nmsg, 1);
	assert_int_equal(r2.last_len, 0);
	rec_free(&r);
	rec_free(&r2);
	env_stop(&e);
	assert_int_equal(srv_closes, 2);
}

static void test_server_stream(void **state)
{
	env e;
	env_start(&e, NULL, NULL);
	rec r = {0};
	uint8_t n = 5;
	assert_int_equal(grpc_client_unary(e.cl, "/test.T/Stream", &n, 1, 0, rec_msg, rec_done, &r, NULL), 0);
	run_until(&e, &r.done);
	assert_int_equal(r.status, GRPC_OK);
	assert_int_equal(r.nmsg, 5);
	assert_string_equal(r.msgs[0], "m0");
	assert_string_equal(r.msgs[4], "m4");
	rec_free(&r);
	env_stop(&e);
}

typedef struct bidi {
	rec r;
	int sent;
} bidi;

/* sends the next message after each echo: strictly interleaved */
static void bidi_msg(grpc_client_call *call, const uint8_t *msg, size_t len, void *ud)
{
	bidi *b = ud;
	rec_msg(call, msg, len, &b->r);
	char m[16];
	assert_int_equal((int)len, snprintf(m, sizeof m, "b%d", b->sent - 1));
	assert_memory_equal(msg, m, len);
	if (b->sent < 4) {
		int k = snprintf(m, sizeof m, "b%d", b->sent++);
		assert_int_equal(grpc_client_call_send(call, (const uint8_t *)m, (size_t)k), 0);
	} else {
		assert_int_equal(grpc_client_call_close_send(call), 0);
		assert_int_equal(grpc_client_call_send(call, (const uint8_t *)"x", 1), MS_EINVAL);
	}
}

static void bidi_done(grpc_client_call *call, int status, const char *message, void *ud)
{
	rec_done(call, status, message, &((bidi *)ud)->r);
}

static void test_bidi(void **state)
{
	env e;
	env_start(&e, NULL, NULL);
	bidi b = {0};
	grpc_client_call *call;
	assert_int_equal(grpc_client_call_start(e.cl, "/test.T/Bidi", 0, NULL, bidi_msg, bidi_done, &b, &call), 0);
	assert_int_equal(grpc_client_call_send(call, (const uint8_t *)"b0", 2), 0);
	b.sent = 1;
	run_until(&e, &b.r.done);
	assert_int_equal(b.r.status, GRPC_OK);
	assert_int_equal(b.r.nmsg, 4);
	assert_string_equal(b.r.msgs[3], "b3");
	rec_free(&b.r);
	env_stop(&e);
}

static void count_done(grpc_client_call *call, int status, const char *message, void *ud)
{
	int *n = ud;
	assert_int_equal(status, GRPC_OK);
	(*n)++;
}

typedef struct many {
	int done, want, msgs;
	bool all;
	int bad;
} many;

static void many_msg(grpc_client_call *call, const uint8_t *msg, size_t len, void *ud)
{
	many *m = ud;
	m->msgs++;
}

static void many_done(grpc_client_call *call, int status, const char *message, void *ud)
{
	many *m = ud;
	if (status != GRPC_OK)
		m->bad++;
	if (++m->done == m->want)
		m->all = true;
}

static void test_many_concurrent(void **state)
{
	env e;
	env_start(&e, NULL, NULL);
	many m = {.want = 2000};
	for (int i = 0; i < m.want; i++) {
		char b[32];
		int k = snprintf(b, sizeof b, "call-%d", i);
		assert_int_equal(grpc_client_unary(e.cl, "/test.T/Echo", (const uint8_t *)b, (size_t)k, 0, many_msg,
		                                   many_done, &m, NULL),
		                 0);
	}
	assert_int_equal(grpc_client_open_calls(e.cl), 2000);
	run_until(&e, &m.all);
	assert_int_equal(m.bad, 0);
	assert_int_equal(m.msgs, 2000);
	assert_int_equal(grpc_client_open_calls(e.cl), 0);
	/* calls started from inside on_done keep the connection busy */
	int n = 0;
	assert_int_equal(
	    grpc_client_unary(e.cl, "/test.T/Echo", (const uint8_t *)"a", 1, 0, NULL, count_done, &n, NULL), 0);
	while (n < 1)
		event_base_loop(e.base, EVLOOP_ONCE);
	assert_int_equal(n, 1);
	env_stop(&e);
	assert_int_equal(srv_closes, 2001);
}

static void test_large_messages(void **state)
{
	env e;
	env_start(&e, NULL, NULL);
	size_t len = 1500 * 1024; /* above both 1 MiB windows: flow control must move */
	uint8_t *big = malloc(len);
	for (size_t i = 0; i < len; i++)
		big[i] = (uint8_t)(i * 31 + 7);
	rec r[3] = {0};
	for (int i = 0; i < 3; i++)
		assert_int_equal(grpc_client_unary(e.cl, "/test.T/Echo", big, len, 0, rec_msg, rec_done, &r[i], NULL),
		                 0);
	for (int i = 0; i < 3; i++) {
		run_until(&e, &r[i].done);
		assert_int_equal(r[i].status, GRPC_OK);
		assert_int_equal(r[i].nmsg, 1);
		assert_int_equal(r[i].last_len, len);
		assert_memory_equal(r[i].last, big, len);
		rec_free(&r[i]);
	}
	free(big);
	env_stop(&e);
}

static void test_status_and_message(void **state)
{
	env e;
	env_start(&e, NULL, NULL);
	rec r = {0};
	assert_int_equal(grpc_client_unary(e.cl, "/test.T/Fail", NULL, 0, 0, rec_msg, rec_done, &r, NULL), 0);
	run_until(&e, &r.done);
	assert_int_equal(r.status, GRPC_FAILED_PRECONDITION);
	assert_string_equal(r.message, "etcdserver: 100% bad\nnews \xc3\xa9"); /* decoded */
	assert_int_equal(r.nmsg, 0);
	rec r2 = {0};
	assert_int_equal(grpc_client_unary(e.cl, "/nope.S/M", NULL, 0, 0, rec_msg, rec_done, &r2, NULL), 0);
	rec r3 = {0};
	assert_int_equal(grpc_client_unary(e.cl, "/test.T/Nope", NULL, 0, 0, rec_msg, rec_done, &r3, NULL), 0);
	run_until(&e, &r2.done);
	run_until(&e, &r3.done);
	assert_int_equal(r2.status, GRPC_UNIMPLEMENTED);
	assert_string_equal(r2.message, "unknown service nope.S");
	assert_int_equal(r3.status, GRPC_UNIMPLEMENTED);
	assert_string_equal(r3.message, "unknown method Nope for service test.T");
	rec_free(&r);
	rec_free(&r2);
	rec_free(&r3);
	env_stop(&e);
}

static void test_deadline_and_cancel(void **state)
{
	env e;
	env_start(&e, NULL, NULL);
	rec r = {0};
	/* the server enforces grpc-timeout */
	assert_int_equal(grpc_client_unary(e.cl, "/test.T/Hang", NULL, 0, 1000000, rec_msg, rec_done, &r, NULL), 0);
	run_until(&e, &r.done);
	assert_int_equal(r.status, GRPC_DEADLINE_EXCEEDED);
	/* a local cancel: on_done comes later from the loop, with CANCELED */
	rec r2 = {0};
	assert_int_equal(grpc_client_unary(e.cl, "/test.T/Hang", NULL, 0, 0, rec_msg, rec_done, &r2, &r2.call), 0);
	event_base_loop(e.base, EVLOOP_NONBLOCK);
	grpc_client_call_cancel(r2.call);
	assert_false(r2.done);
	run_until(&e, &r2.done);
	assert_int_equal(r2.status, GRPC_CANCELED);
	/* the connection still works, and the server saw both calls close */
	rec r3 = {0};
	assert_int_equal(
	    grpc_client_unary(e.cl, "/test.T/Echo", (const uint8_t *)"ok", 2, 0, rec_msg, rec_done, &r3, NULL), 0);
	run_until(&e, &r3.done);
	assert_int_equal(r3.status, GRPC_OK);
	assert_int_equal(srv_closes, 3);
	rec_free(&r);
	rec_free(&r2);
	rec_free(&r3);
	env_stop(&e);
}

static void test_metadata(void **state)
{
	env e;
	env_start(&e, NULL, NULL);
	rec r = {0};
	const char *md[] = {"token", "abc.def", NULL};
	grpc_client_call *call;
	assert_int_equal(grpc_client_call_start(e.cl, "/test.T/Md", 5000000000LL, md, rec_msg, rec_done, &r, &call), 0);
	assert_int_equal(grpc_client_call_send(call, NULL, 0), 0);
	assert_int_equal(grpc_client_call_close_send(call), 0);
	run_until(&e, &r.done);
	assert_int_equal(r.status, GRPC_OK);
	assert_string_equal(r.msgs[0], "abc.def");
	rec_free(&r);
	env_stop(&e);
}

static void test_recv_limit(void **state)
{
	env e;
	grpc_client_opts co = {.max_recv_msg = 100};
	env_start(&e, NULL, &co);
	uint8_t b[200] = {0};
	rec r = {0};
	assert_int_equal(grpc_client_unary(e.cl, "/test.T/Echo", b, sizeof b, 0, rec_msg, rec_done, &r, NULL), 0);
	run_until(&e, &r.done);
	assert_int_equal(r.status, GRPC_RESOURCE_EXHAUSTED);
	assert_string_equal(r.message, "grpc: received message larger than max (200 vs. 100)");
	assert_int_equal(r.nmsg, 0);
	rec r2 = {0};
	assert_int_equal(grpc_client_unary(e.cl, "/test.T/Echo", b, 100, 0, rec_msg, rec_done, &r2, NULL), 0);
	run_until(&e, &r2.done);
	assert_int_equal(r2.status, GRPC_OK);
	rec_free(&r);
	rec_free(&r2);
	env_stop(&e);
}

static void test_server_goes_away(void **state)
{
	env e;
	env_start(&e, NULL, NULL);
	rec r = {0};
	assert_int_equal(grpc_client_unary(e.cl, "/test.T/Hang", NULL, 0, 0, rec_msg, rec_done, &r, NULL), 0);
	run_until(&e, &hang_seen); /* the server has the call; now drop the server */
	grpc_server_free(e.srv);
	e.srv = NULL;
	run_until(&e, &r.done);
	assert_int_equal(r.status, GRPC_UNAVAILABLE);
	assert_false(grpc_client_usable(e.cl));
	rec r2 = {0};
	assert_int_equal(grpc_client_unary(e.cl, "/test.T/Echo", NULL, 0, 0, rec_msg, rec_done, &r2, NULL), MS_EIO);
	rec_free(&r);
	env_stop(&e);
}

static void test_connect_refused_and_free(void **state)
{
	env e;
	env_start(&e, NULL, NULL);
	int port = e.port;
	grpc_server_free(e.srv); /* nobody listens on port now */
	e.srv = NULL;
	grpc_client *c2;
	ms_err err = {0};
	assert_int_equal(grpc_client_new(e.base, "127.0.0.1", port, NULL, &c2, &err), 0);
	rec r = {0};
	assert_int_equal(grpc_client_unary(c2, "/test.T/Echo", NULL, 0, 0, rec_msg, rec_done, &r, NULL), 0);
	run_until(&e, &r.done);
	assert_int_equal(r.status, GRPC_UNAVAILABLE);
	assert_non_null(strstr(r.message, "connection"));
	grpc_client_free(c2);
	/* freeing a client with open calls tells them */
	rec r2 = {0};
	grpc_client *c3;
	assert_int_equal(grpc_client_new(e.base, "127.0.0.1", port, NULL, &c3, &err), 0);
	assert_int_equal(grpc_client_unary(c3, "/test.T/Echo", NULL, 0, 0, rec_msg, rec_done, &r2, NULL), 0);
	grpc_client_free(c3);
	assert_true(r2.done);
	assert_int_equal(r2.status, GRPC_CANCELED);
	assert_int_equal(grpc_client_new(e.base, "no.such.host.invalid", port, NULL, &c3, &err), MS_EINVAL);
	rec_free(&r);
	rec_free(&r2);
	env_stop(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unary),
	    cmocka_unit_test(test_server_stream),
	    cmocka_unit_test(test_bidi),
	    cmocka_unit_test(test_many_concurrent),
	    cmocka_unit_test(test_large_messages),
	    cmocka_unit_test(test_status_and_message),
	    cmocka_unit_test(test_deadline_and_cancel),
	    cmocka_unit_test(test_metadata),
	    cmocka_unit_test(test_recv_limit),
	    cmocka_unit_test(test_server_goes_away),
	    cmocka_unit_test(test_connect_refused_and_free),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
