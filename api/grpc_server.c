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
#include <sys/resource.h>
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
/* accept failures (EMFILE, ENFILE, ENOBUFS): listeners pause this long,
 * doubling up to the maximum while failures continue */
#define SRV_ACCEPT_BACKOFF_MIN_MS 50
#define SRV_ACCEPT_BACKOFF_MAX_MS 1000
/* file descriptors kept for the store and peers: max(25%, this) */
#define SRV_FD_RESERVE_MIN 256

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
	struct event *life_timer; /* handshake, HTTP/1 head and idle, closing */
	struct event *resume_ev;  /* feeds input held back by the budget pause */
	int h1_state;             /* grpc_http1_state() when the life timer was armed */
	bool closing;             /* close once the output is written */
	bool read_paused;         /* output above SRV_OUT_HIGH */
	bool h2_paused;           /* grpc_conn_feed stopped at a budget */
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
	srv_conn *conns;      /* newest first */
	srv_conn *conns_tail; /* oldest */
	uint32_t nconns;
	grpc_budget budget;
	struct event *accept_timer; /* re-enables the listeners after a failure */
	int accept_backoff_ms;      /* 0 = listeners enabled */
	int64_t last_refusal_log;   /* ns; refusals are logged once a second */
	uint64_t accept_errors;
	uint64_t refused;
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
	else
		s->conns_tail = sc->prev;
	s->nconns--;
	grpc_conn_free(sc->h2); /* fires on_close for the open calls */
	grpc_http1_free(sc->h1);
	if (sc->timer)
		event_free(sc->timer);
	if (sc->flush_ev)
		event_free(sc->flush_ev);
	if (sc->life_timer)
		event_free(sc->life_timer);
	if (sc->resume_ev)
		event_free(sc->resume_ev);
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

static void sc_life_arm(srv_conn *sc, uint32_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(sc->life_timer, &tv);
}

/* HTTP/1: the head of a request must arrive within handshake_ms of its
 * first byte; a started body, and the pause between requests, within
 * http1_idle_ms. The timer is re-armed only when the state changes, so a
 * client trickling bytes does not extend it. */
static void sc_h1_timer(srv_conn *sc)
{
	int st = grpc_http1_state(sc->h1);
	if (st == sc->h1_state)
		return;
	sc->h1_state = st;
	sc_life_arm(sc, st == GRPC_H1_HEAD ? sc->s->opts.handshake_ms : sc->s->opts.http1_idle_ms);
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
		if (sc->h2_paused && !grpc_conn_paused(sc->h2))
			event_active(sc->resume_ev, EV_TIMEOUT, 0); /* the budget freed: held input next */
	} else if (sc->mode == SC_H1) {
		want_close |= grpc_http1_want_close(sc->h1);
		sc_h1_timer(sc);
	}
	size_t out = evbuffer_get_length(bufferevent_get_output(sc->bev));
	if (want_close && !sc->closing) {
		sc->closing = true;
		bufferevent_disable(sc->bev, EV_READ);
		bufferevent_setwatermark(sc->bev, EV_WRITE, 0, 0); /* told when everything is written */
		/* a client that does not read its GOAWAY or last answer does not
		 * keep the connection */
		sc_life_arm(sc, sc->s->opts.handshake_ms);
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

static void sc_life_cb(evutil_socket_t fd, short what, void *arg)
{
	srv_conn *sc = arg;
	/* the HTTP/2 preface and SETTINGS, or an HTTP/1 head, did not come in
	 * time; an HTTP/1 connection stayed idle; a closing one's output was
	 * not read. An HTTP/2 connection past its handshake has no idle limit,
	 * as in grpc-go. */
	if (sc->mode == SC_H2 && !sc->closing && grpc_conn_handshake_done(sc->h2))
		return;
	sc_free(sc);
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
		if (rc == 0) {
			sc->mode = SC_H1;
			sc->h1_state = GRPC_H1_HEAD; /* the sniff's timer already counts the head */
		}
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
	grpc_conn_set_budget(sc->h2, &sc->s->budget);
	sc->mode = SC_H2;
	return 0;
}

/* Feeds buffered input to the protocol. HTTP/2 may stop at a budget: the
 * rest stays in the input buffer and reading stops until sc_after sees the
 * budget free and resume_ev feeds it. */
static void sc_process(srv_conn *sc)
{
	struct evbuffer *in = bufferevent_get_input(sc->bev);
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
	bool paused = false;
	if (sc->mode == SC_H2 && evbuffer_get_length(in) == 0)
		rc = grpc_conn_feed(sc->h2, NULL, 0, &(size_t){0}); /* finish a frame a pause cut */
	while (rc == 0 && !paused && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v[16];
		int nv = evbuffer_peek(in, -1, NULL, v, 16);
		size_t used = 0;
		for (int i = 0; i < MS_MIN(nv, 16) && rc == 0 && !paused; i++) {
			if (sc->mode == SC_H2) {
				size_t u;
				rc = grpc_conn_feed(sc->h2, v[i].iov_base, v[i].iov_len, &u);
				used += u;
				/* a pause on the last bytes of this piece still holds */
				paused = rc == 0 && (u < v[i].iov_len || grpc_conn_paused(sc->h2));
			} else {
				rc = grpc_http1_recv(sc->h1, v[i].iov_base, v[i].iov_len);
				used += v[i].iov_len;
			}
		}
		evbuffer_drain(in, used);
		if (sc->mode == SC_H1 && grpc_http1_want_close(sc->h1))
			break;
	}
	if (rc) /* the GOAWAY or error response is queued; close after writing it */
		evbuffer_drain(in, evbuffer_get_length(in));
	if (paused && !sc->h2_paused) {
		sc->h2_paused = true;
		bufferevent_disable(sc->bev, EV_READ);
	}
	if (!paused && sc->h2_paused) {
		sc->h2_paused = false;
		if (!sc->read_paused)
			bufferevent_enable(sc->bev, EV_READ);
	}
	sc_after(sc, rc != 0);
}

static void sc_read_cb(struct bufferevent *bev, void *arg)
{
	sc_process(arg);
}

static void sc_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	srv_conn *sc = arg;
	if (sc->h2_paused && !sc->closing)
		sc_process(sc); /* re-enables reading once it gets through the held input */
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
			if (!sc->h2_paused)
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

/* At the connection limit: the oldest connection that has not finished its
 * handshake (it holds a descriptor and has sent nothing useful) makes room;
 * a flood of idle connections then cannot lock out real clients. */
static bool srv_evict_one(grpc_server *s)
{
	for (srv_conn *sc = s->conns_tail; sc; sc = sc->prev) {
		if (sc->mode == SC_SNIFF || (sc->mode == SC_H2 && !grpc_conn_handshake_done(sc->h2))) {
			sc_free(sc);
			return true;
		}
	}
	return false;
}

static void srv_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr, int socklen, void *arg)
{
	grpc_server *s = arg;
	if (s->nconns >= s->opts.max_conns && !srv_evict_one(s)) {
		/* accepted and closed at once: the client sees a reset, not a hang */
		evutil_closesocket(fd);
		s->refused++;
		int64_t now = ms_now_mono_ns();
		if (now - s->last_refusal_log > 1000000000LL) {
			s->last_refusal_log = now;
			MS_WARN("embed",
			        "client connection refused: %u connections open (the limit); %llu refused so far",
			        s->nconns, (unsigned long long)s->refused);
		}
		return;
	}
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
	else
		s->conns_tail = sc;
	s->conns = sc;
	s->nconns++;
	sc->timer = evtimer_new(s->base, sc_timer_cb, sc);
	sc->flush_ev = event_new(s->base, -1, 0, sc_flush_cb, sc);
	sc->life_timer = evtimer_new(s->base, sc_life_cb, sc);
	sc->resume_ev = event_new(s->base, -1, 0, sc_resume_cb, sc);
	if (!sc->timer || !sc->flush_ev || !sc->life_timer || !sc->resume_ev) {
		sc_free(sc);
		return;
	}
	sc_life_arm(sc, s->opts.handshake_ms);
	s->accept_backoff_ms = 0;
	bufferevent_setcb(sc->bev, sc_read_cb, sc_write_cb, sc_event_cb, sc);
	bufferevent_setwatermark(sc->bev, EV_WRITE, SRV_OUT_LOW, 0);
	/* libevent's default of 16 KiB per read/write syscall costs a loop
	 * iteration per frame on big responses */
	bufferevent_set_max_single_read(sc->bev, SRV_MAX_IO);
	bufferevent_set_max_single_write(sc->bev, SRV_MAX_IO);
	bufferevent_enable(sc->bev, EV_READ | EV_WRITE);
}

static void srv_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	grpc_server *s = arg;
	for (size_t i = 0; i < s->nlis; i++)
		evconnlistener_enable(s->lis[i]);
}

static void srv_accept_err_cb(struct evconnlistener *l, void *arg)
{
	/* EMFILE, ENFILE, ENOBUFS: the pending connection stays in the backlog
	 * and the listener would report it again at once; the listeners pause
	 * instead of spinning, longer while failures continue */
	grpc_server *s = arg;
	int e = EVUTIL_SOCKET_ERROR();
	s->accept_errors++;
	s->accept_backoff_ms = s->accept_backoff_ms ? MS_MIN(s->accept_backoff_ms * 2, SRV_ACCEPT_BACKOFF_MAX_MS)
	                                            : SRV_ACCEPT_BACKOFF_MIN_MS;
	MS_WARN("embed", "accept error: %s; not accepting for %d ms", evutil_socket_error_to_string(e),
	        s->accept_backoff_ms);
	for (size_t i = 0; i < s->nlis; i++)
		evconnlistener_disable(s->lis[i]);
	struct timeval tv = {.tv_sec = 0, .tv_usec = (suseconds_t)s->accept_backoff_ms * 1000};
	evtimer_add(s->accept_timer, &tv);
}

/* Connections allowed by default: the descriptors left after keeping
 * max(25%, SRV_FD_RESERVE_MIN) for RocksDB, the raft log and the peers. */
static uint32_t srv_default_max_conns(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return GRPC_DEFAULT_MAX_CONNS_CAP;
	uint64_t n = rl.rlim_cur, reserve = MS_MAX(n / 4, (uint64_t)SRV_FD_RESERVE_MIN);
	uint64_t m = n > reserve + 16 ? n - reserve : 16;
	return (uint32_t)MS_MIN(m, (uint64_t)GRPC_DEFAULT_MAX_CONNS_CAP);
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
	if (!s->opts.max_conns)
		s->opts.max_conns = srv_default_max_conns();
	s->methods = methods;
	s->nmethods = nmethods;
	s->accept_timer = evtimer_new(base, srv_accept_resume_cb, s);
	if (!s->accept_timer) {
		ms_free(s);
		return ms_err_set(err, MS_ENOMEM, "grpc server: out of memory");
	}
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

uint64_t grpc_server_accept_errors(const grpc_server *s)
{
	return s->accept_errors;
}

void grpc_server_set_max_concurrent_streams(grpc_server *s, uint32_t n)
{
	s->opts.max_concurrent_streams = n ? n : GRPC_DEFAULT_MAX_STREAMS;
}

void grpc_server_free(grpc_server *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nlis; i++)
		evconnlistener_free(s->lis[i]);
	while (s->conns)
		sc_free(s->conns);
	if (s->accept_timer)
		event_free(s->accept_timer);
	ms_free(s);
}
