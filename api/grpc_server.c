/* grpc_server.c — the gRPC server's socket side: accepts on libevent, tells
 * HTTP/2 (prior knowledge) from HTTP/1.1 by the client preface, feeds each
 * connection's bytes to grpc_conn or grpc_http1, writes their output with
 * back-pressure, and runs call deadlines on a per-connection timer. */
#include "api/grpc_int.h"

#include "common/tls.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Output buffered per connection before we stop pulling frames from nghttp2
 * and stop reading new requests; writing resumes below the low mark. */
#define SRV_OUT_HIGH ((size_t)1 << 20)
#define SRV_OUT_LOW ((size_t)256 << 10)
#define SRV_MAX_LISTENERS 8
#define SRV_MAX_IO ((size_t)256 << 10)
/* A TLS client must finish its handshake by then (bounds what a silent
 * client holds; grpc-go gives 120 s, a loaded 2-CPU box needs far less). */
#define SRV_HANDSHAKE_MS 10000

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"; /* 24 bytes */

typedef enum { SC_SNIFF, SC_H2, SC_H1 } sc_mode;

typedef struct srv_conn {
	grpc_server *s;
	struct bufferevent *bev;
	sc_mode mode;
	grpc_conn *h2;
	grpc_http1 *h1;
	struct event *timer;
	int64_t timer_at; /* 0 = not armed */
	struct event *flush_ev;
	bool closing;     /* close once the output is written */
	bool read_paused; /* output above SRV_OUT_HIGH */
	struct srv_conn *prev, *next;
} srv_conn;

struct grpc_server {
	struct event_base *base;
	grpc_server_opts opts;
	const grpc_method *methods;
	size_t nmethods;
	struct evconnlistener *lis[SRV_MAX_LISTENERS];
	ms_tls *lis_tls[SRV_MAX_LISTENERS]; /* per listener: NULL = plain, borrowed */
	size_t nlis;
	srv_conn *conns;
};

static void sc_free(srv_conn *sc)
{
	grpc_server *s = sc->s;
	if (sc->prev)
		sc->prev->next = sc->next;
	else
		s->conns = sc->next;
	if (sc->next)
		sc->next->prev = sc->prev;
	grpc_conn_free(sc->h2); /* fires on_close for the open calls */
	grpc_http1_free(sc->h1);
	if (sc->timer)
		event_free(sc->timer);
	if (sc->flush_ev)
		event_free(sc->flush_ev);
	if (sc->bev)
		bufferevent_free(sc->bev);
	ms_free(sc);
}

static int sc_send(void *ud, const uint8_t *p, size_t n)
{
	srv_conn *sc = ud;
	struct evbuffer *out = bufferevent_get_output(sc->bev);
	if (evbuffer_add(out, p, n))
		return MS_EIO;
	return evbuffer_get_length(out) >= SRV_OUT_HIGH ? MS_EAGAIN : 0;
}

static void sc_arm(srv_conn *sc, int64_t deadline)
{
	int64_t d = deadline - ms_now_mono_ns();
	if (d < 0)
		d = 0;
	d = (d + 999) / 1000; /* microseconds, rounded up: never fire early */
	struct timeval tv = {.tv_sec = (time_t)(d / 1000000), .tv_usec = (suseconds_t)(d % 1000000)};
	evtimer_add(sc->timer, &tv);
	sc->timer_at = deadline;
}

/* After any work on the connection: timers, back-pressure, closing.
 * Returns true when sc was freed. */
static bool sc_after(srv_conn *sc, bool failed)
{
	bool want_close = failed;
	if (sc->mode == SC_H2) {
		int64_t d = grpc_conn_pop_new_deadline(sc->h2);
		if (d && (!sc->timer_at || d < sc->timer_at))
			sc_arm(sc, d);
		want_close |= grpc_conn_want_close(sc->h2);
	} else if (sc->mode == SC_H1) {
		want_close |= grpc_http1_want_close(sc->h1);
	}
	size_t out = evbuffer_get_length(bufferevent_get_output(sc->bev));
	if (want_close && !sc->closing) {
		sc->closing = true;
		bufferevent_disable(sc->bev, EV_READ);
		bufferevent_setwatermark(sc->bev, EV_WRITE, 0, 0); /* told when everything is written */
	}
	if (sc->closing) {
		if (out == 0) {
			sc_free(sc);
			return true;
		}
		return false;
	}
	if (out >= SRV_OUT_HIGH && !sc->read_paused) {
		sc->read_paused = true;
		bufferevent_disable(sc->bev, EV_READ);
	}
	return false;
}

static void sc_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	srv_conn *sc = arg;
	if (sc->closing || sc->mode != SC_H2)
		return;
	bool failed = false;
	if (evbuffer_get_length(bufferevent_get_output(sc->bev)) < SRV_OUT_HIGH)
		failed = grpc_conn_flush(sc->h2) != 0;
	sc_after(sc, failed);
}

static void sc_flush_hook(void *ud)
{
	srv_conn *sc = ud;
	/* coalesce: all sends queued in this loop iteration go out together */
	event_active(sc->flush_ev, EV_TIMEOUT, 0);
}

static void sc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	srv_conn *sc = arg;
	sc->timer_at = 0;
	if (sc->closing || sc->mode != SC_H2)
		return;
	int64_t next = grpc_conn_expire(sc->h2, ms_now_mono_ns());
	if (next)
		sc_arm(sc, next);
	sc_after(sc, false);
}

/* Decides the protocol from the first bytes. Returns 0, 1 = need more, or an error. */
static int sc_sniff(srv_conn *sc, struct evbuffer *in)
{
	uint8_t b[24];
	ev_ssize_t n = evbuffer_copyout(in, b, sizeof b);
	if (n < 0)
		return MS_EIO;
	int rc;
	if (memcmp(b, h2_preface, (size_t)n) != 0) {
		rc = grpc_http1_new(&sc->s->opts, sc_send, sc, &sc->h1);
		if (rc == 0)
			sc->mode = SC_H1;
		return rc;
	}
	if (n < 24)
		return 1;
	rc = grpc_conn_new(&sc->s->opts, sc->s->methods, sc->s->nmethods, sc_send, sc, &sc->h2);
	if (rc)
		return rc;
	char cn[256]; /* TLS: the handshake is done once bytes arrive */
	if (ms_tls_peer_cn(sc->bev, cn, sizeof cn) == 0 && (rc = grpc_conn_set_peer_cn(sc->h2, cn)))
		return rc;
	grpc_conn_set_flush_hook(sc->h2, sc_flush_hook, sc);
	sc->mode = SC_H2;
	return 0;
}

static void sc_read_cb(struct bufferevent *bev, void *arg)
{
	srv_conn *sc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (sc->closing) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	if (sc->mode == SC_SNIFF) {
		int rc = sc_sniff(sc, in);
		if (rc == 1)
			return;
		if (rc < 0) {
			sc_free(sc);
			return;
		}
	}
	int rc = 0;
	while (rc == 0 && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v[16];
		int nv = evbuffer_peek(in, -1, NULL, v, 16);
		size_t used = 0;
		for (int i = 0; i < MS_MIN(nv, 16) && rc == 0; i++) {
			if (sc->mode == SC_H2)
				rc = grpc_conn_recv(sc->h2, v[i].iov_base, v[i].iov_len);
			else
				rc = grpc_http1_recv(sc->h1, v[i].iov_base, v[i].iov_len);
			used += v[i].iov_len;
		}
		evbuffer_drain(in, used);
		if (sc->mode == SC_H1 && grpc_http1_want_close(sc->h1))
			break;
	}
	if (rc) /* the GOAWAY or error response is queued; close after writing it */
		evbuffer_drain(in, evbuffer_get_length(in));
	sc_after(sc, rc != 0);
}

static void sc_write_cb(struct bufferevent *bev, void *arg)
{
	srv_conn *sc = arg;
	bool failed = false;
	if (!sc->closing) {
		if (sc->mode == SC_H2)
			failed = grpc_conn_flush(sc->h2) != 0; /* pull what back-pressure held back */
		if (sc->read_paused && evbuffer_get_length(bufferevent_get_output(bev)) < SRV_OUT_HIGH) {
			sc->read_paused = false;
			bufferevent_enable(bev, EV_READ);
		}
	}
	sc_after(sc, failed);
}

static void sc_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		sc_free(arg);
}

/* The transport seam: a plain socket, or for a TLS listener an OpenSSL
 * bufferevent (ALPN h2 / http/1.1, the handshake deadline inside; a failed
 * handshake is an ordinary BEV_EVENT_ERROR). The rest of this file sees
 * decrypted bytes only. */
static struct bufferevent *srv_bev_new(grpc_server *s, struct evconnlistener *l, evutil_socket_t fd)
{
	for (size_t i = 0; i < s->nlis; i++)
		if (s->lis[i] == l && s->lis_tls[i])
			return ms_tls_bev_accept(s->lis_tls[i], s->base, fd, BEV_OPT_CLOSE_ON_FREE, SRV_HANDSHAKE_MS);
	return bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
}

static void srv_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int socklen, void *arg)
{
	grpc_server *s = arg;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	srv_conn *sc = ms_calloc(1, sizeof *sc);
	if (!sc) {
		evutil_closesocket(fd);
		return;
	}
	sc->s = s;
	sc->bev = srv_bev_new(s, l, fd);
	if (!sc->bev) {
		evutil_closesocket(fd);
		ms_free(sc);
		return;
	}
	sc->next = s->conns;
	if (s->conns)
		s->conns->prev = sc;
	s->conns = sc;
	sc->timer = evtimer_new(s->base, sc_timer_cb, sc);
	sc->flush_ev = event_new(s->base, -1, 0, sc_flush_cb, sc);
	if (!sc->timer || !sc->flush_ev) {
		sc_free(sc);
		return;
	}
	bufferevent_setcb(sc->bev, sc_read_cb, sc_write_cb, sc_event_cb, sc);
	bufferevent_setwatermark(sc->bev, EV_WRITE, SRV_OUT_LOW, 0);
	/* libevent's default of 16 KiB per read/write syscall costs a loop
	 * iteration per frame on big responses */
	bufferevent_set_max_single_read(sc->bev, SRV_MAX_IO);
	bufferevent_set_max_single_write(sc->bev, SRV_MAX_IO);
	bufferevent_enable(sc->bev, EV_READ | EV_WRITE);
}

static void srv_accept_err_cb(struct evconnlistener *l, void *arg)
{
	/* EMFILE and friends: the listener stays; log and carry on */
	MS_WARN("embed", "accept error: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

int grpc_server_new(struct event_base *base, const grpc_server_opts *opts, const grpc_method *methods, size_t nmethods,
                    grpc_server **out, ms_err *err)
{
	grpc_server *s = ms_calloc(1, sizeof *s);
	if (!s)
		return ms_err_set(err, MS_ENOMEM, "grpc server: out of memory");
	s->base = base;
	if (opts)
		s->opts = *opts;
	grpc_opts_defaults(&s->opts);
	s->methods = methods;
	s->nmethods = nmethods;
	*out = s;
	return 0;
}

int grpc_server_listen(grpc_server *s, const char *host, int port, int *bound_port, ms_err *err)
{
	return grpc_server_listen_tls(s, host, port, NULL, bound_port, err);
}

int grpc_server_listen_tls(grpc_server *s, const char *host, int port, ms_tls *tls, int *bound_port, ms_err *err)
{
	if (s->nlis == SRV_MAX_LISTENERS)
		return ms_err_set(err, MS_EINVAL, "grpc server: too many listeners");
	char ps[16];
	snprintf(ps, sizeof ps, "%d", port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *ai;
	int gai = getaddrinfo(host && *host ? host : NULL, ps, &hints, &ai);
	if (gai)
		return ms_err_set(err, MS_EINVAL, "listen %s:%d: %s", host ? host : "", port, gai_strerror(gai));
	struct evconnlistener *l = evconnlistener_new_bind(
	    s->base, srv_accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	if (!l)
		return ms_err_set(err, MS_EIO, "listen %s:%d: %s", host ? host : "", port,
		                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	evconnlistener_set_error_cb(l, srv_accept_err_cb);
	if (bound_port) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &sl)) {
			evconnlistener_free(l);
			return ms_err_set(err, MS_EIO, "listen %s:%d: getsockname failed", host ? host : "", port);
		}
		*bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
		                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	s->lis_tls[s->nlis] = tls;
	s->lis[s->nlis++] = l;
	return 0;
}

void grpc_server_free(grpc_server *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nlis; i++)
		evconnlistener_free(s->lis[i]);
	while (s->conns)
		sc_free(s->conns);
	ms_free(s);
}
