/* transport.c — the raft peer transport: listeners, per-peer outbound
 * connections with reconnect backoff, inbound frame parsing and snapshot
 * streaming on the node's libevent loop (design at the top of transport.h). */
#include "raft/transport.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <protobuf-c/protobuf-c.h>

#include "common/tls.h"
#include "raftpb.pb-c.h"

#define LOG_PKG "rafthttp"
#define HDR 5 /* u32 length + u8 kind */
#define PROTO_VERSION 1
#define HELLO_TIMEOUT_S 10        /* an accepted connection must say HELLO by then */
#define PEER_WRITE_TIMEOUT_S 10   /* connect or write stalled this long: the peer is down */
#define SNAP_STALL_S 60           /* snapshot stream makes no progress this long: failed */
#define SNAP_FILL (4u << 20)      /* keep this much of a snapshot queued on the socket */
#define SNAP_LOW_WATER (1u << 20) /* refill below this */
#define MAX_NAME 255
#define ACCEPT_BACKOFF_MIN_MS 100 /* accept failed (EMFILE...): pause the listener this long */
#define ACCEPT_BACKOFF_MAX_MS 2000

typedef struct tr_listener {
	struct tr_listener *next;
	raft_transport *t;
	struct evconnlistener *lev;
	int port;
	struct event *resume_ev; /* re-enables accepting after a failure */
	int backoff_ms;          /* the next pause; reset by a successful accept */
	bool secure;             /* https: TLS on every accepted connection */
} tr_listener;

/* A peer we send to: one outbound connection. */
typedef struct tr_peer {
	struct tr_peer *next;
	raft_transport *t;
	uint64_t id;
	char **hosts, **ports; /* parsed URLs */
	bool *secure;          /* per URL: https */
	size_t n_urls, cur_url;
	struct bufferevent *bev; /* NULL when not connected nor connecting */
	bool connected;
	bool backing_off; /* retry_ev pending: sends are dropped */
	struct event *retry_ev;
	int backoff_ms; /* the next delay before jitter */
	bool unreachable_pending;
} tr_peer;

/* An accepted connection: frames from one peer (and maybe a snapshot). */
typedef struct tr_conn {
	struct tr_conn *next;
	raft_transport *t;
	struct bufferevent *bev;
	bool hello;
	bool join;     /* a joining member asking for the cluster */
	bool answered; /* the joiner got its answer: nothing more is accepted */
	bool doomed;   /* its member was removed: closed from notify_cb */
	uint64_t from;
	/* incoming snapshot: SNAP_BEGIN's totals, reserved against free disk */
	bool snap_begun;
	uint64_t ann_files, ann_bytes;
	char *snap_path; /* NULL = none in progress */
	int dirfd, fd;
	char *cur_name;
	uint64_t cur_off, files, bytes;
} tr_conn;

typedef enum { SO_STREAMING, SO_WAIT_ACK, SO_DONE } so_state;

/* An outgoing snapshot stream on its own connection. */
typedef struct tr_snap_out {
	struct tr_snap_out *next;
	raft_transport *t;
	uint64_t peer;
	struct bufferevent *bev;
	char *dir;
	char **names;
	size_t n_names, cur;
	int fd;
	uint64_t off, bytes;
	uint8_t *msg; /* the SNAP message, encoded when the stream started */
	size_t msg_len;
	uint64_t total; /* bytes announced in SNAP_BEGIN (the files' sizes when listed) */
	bool begun;     /* SNAP_BEGIN queued */
	uint8_t *chunk; /* read buffer, RAFT_TRANSPORT_CHUNK bytes */
	so_state state;
	bool ok;
} tr_snap_out;

struct raft_transport {
	struct event_base *base;
	uint64_t cluster_id, self_id;
	char *snap_dir;
	raft_transport_cb cb;
	void *ud;
	tr_listener *listeners;
	tr_peer *peers;
	tr_conn *conns;
	tr_snap_out *snaps;
	struct event *notify_ev; /* runs deferred callbacks */
	uint64_t rng, snap_seq;
	size_t max_queue;
	int backoff_min_ms, backoff_max_ms;
	/* inbound bounds (see transport.h) */
	int n_ungreeted; /* accepted connections without HELLO yet */
	int n_snaps_in;  /* snapshot streams being received */
	uint64_t snap_max, snap_reserve;
	uint64_t snap_reserved; /* announced bytes of the streams in progress */
	ms_tls *tls;            /* peer TLS for https URLs (borrowed), or NULL */
};

/* ---- small helpers ---- */

static void put_hdr(uint8_t *h, size_t payload_len, uint8_t kind)
{
	uint32_t l = (uint32_t)payload_len + 1;
	h[0] = (uint8_t)(l >> 24);
	h[1] = (uint8_t)(l >> 16);
	h[2] = (uint8_t)(l >> 8);
	h[3] = (uint8_t)l;
	h[4] = kind;
}

static uint64_t tr_rand(raft_transport *t)
{
	/* xorshift64: reconnect jitter only, deterministic per member id */
	uint64_t x = t->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	t->rng = x;
	return x;
}

/* Appends a frame holding a packed protobuf message. */
static int add_pb_frame(struct evbuffer *out, uint8_t kind, const ProtobufCMessage *pb)
{
	size_t n = protobuf_c_message_get_packed_size(pb);
	struct evbuffer_iovec vec;
	if (n + 1 > RAFT_TRANSPORT_MAX_FRAME)
		return MS_EINVAL;
	if (evbuffer_reserve_space(out, (ev_ssize_t)(n + HDR), &vec, 1) < 1)
		return MS_ENOMEM;
	uint8_t *p = vec.iov_base;
	put_hdr(p, n, kind);
	protobuf_c_message_pack(pb, p + HDR);
	vec.iov_len = n + HDR;
	return evbuffer_commit_space(out, &vec, 1) == 0 ? 0 : MS_ENOMEM;
}

static void free_ref(const void *data, size_t len, void *extra)
{
	ms_free((void *)data);
}

/* Appends a frame with raw payload; takes ownership of an ms_malloc'd buf
 * when own is set. */
static int add_raw_frame(struct evbuffer *out, uint8_t kind, const uint8_t *buf, size_t len, bool own)
{
	uint8_t h[HDR];
	put_hdr(h, len, kind);
	int rc = evbuffer_add(out, h, HDR) == 0 ? 0 : MS_ENOMEM;
	if (rc == 0 && len) {
		if (own && len >= 4096) {
			/* large: hand the buffer over instead of copying it */
			if (evbuffer_add_reference(out, buf, len, free_ref, NULL) == 0)
				return 0;
			rc = MS_ENOMEM;
		} else if (evbuffer_add(out, buf, len) != 0) {
			rc = MS_ENOMEM;
		}
	}
	if (own)
		ms_free((void *)buf);
	return rc;
}

/* Parses "http://host:port" or "https://host:port" (host may be [v6]);
 * *secure tells which. */
static int parse_url(const char *url, char **host, char **port, bool *secure, ms_err *err)
{
	const char *p;
	*secure = strncmp(url, "https://", 8) == 0;
	if (!*secure && strncmp(url, "http://", 7) != 0)
		return ms_err_set(err, MS_EINVAL, "peer URL %s: scheme must be http or https", url);
	p = url + (*secure ? 8 : 7);
	size_t n = strlen(p);
	while (n && p[n - 1] == '/')
		n--;
	const char *h = p, *colon;
	size_t hl;
	if (*p == '[') {
		const char *rb = memchr(p, ']', n);
		if (!rb)
			goto bad;
		h = p + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
		if (colon >= p + n || *colon != ':')
			goto bad;
	} else {
		colon = NULL;
		for (size_t i = 0; i < n; i++)
			if (p[i] == ':')
				colon = p + i;
		if (!colon)
			goto bad;
		hl = (size_t)(colon - h);
	}
	const char *pp = colon + 1;
	size_t pl = (size_t)(p + n - pp);
	if (hl == 0 || pl == 0 || pl > 5)
		goto bad;
	unsigned long pv = 0;
	for (size_t i = 0; i < pl; i++) {
		if (pp[i] < '0' || pp[i] > '9')
			goto bad;
		pv = pv * 10 + (unsigned long)(pp[i] - '0');
	}
	if (pv > 65535)
		goto bad;
	*host = ms_strndup(h, hl);
	*port = ms_strndup(pp, pl);
	if (!*host || !*port) {
		ms_free(*host);
		ms_free(*port);
		*host = *port = NULL;
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	}
	return 0;
bad:
	return ms_err_set(err, MS_EINVAL, "peer URL %s: want http(s)://host:port", url);
}

/* Resolves host:port (blocking getaddrinfo: numeric addresses are instant;
 * a host name in a peer URL stalls the loop for the lookup). */
static int resolve(const char *host, const char *port, bool passive, struct sockaddr_storage *ss, socklen_t *sl)
{
	struct addrinfo hints = {0}, *res = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	if (getaddrinfo(host, port, &hints, &res) != 0 || !res)
		return MS_EIO;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sl = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* The TLS seam: every connection's bufferevent is made here (fd -1 and
 * the host for a connection about to be dialed). https: an OpenSSL
 * bufferevent; the handshake (verifying the other side's certificate: the
 * server's against the host, a client's when --peer-client-cert-auth) comes
 * before any byte reaches the frame handling, and a failed one is an
 * ordinary BEV_EVENT_ERROR. */
static struct bufferevent *tr_bev_new(raft_transport *t, evutil_socket_t fd, const char *dial_host, bool secure)
{
	int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	if (!secure)
		return bufferevent_socket_new(t->base, fd, opts);
	if (!t->tls) {
		MS_WARN(LOG_PKG, "https peer URL without peer TLS configured (--peer-cert-file/--peer-key-file)");
		return NULL;
	}
	if (fd < 0)
		return ms_tls_bev_connect(t->tls, t->base, dial_host, false, opts);
	return ms_tls_bev_accept(t->tls, t->base, fd, opts, HELLO_TIMEOUT_S * 1000);
}

/* Raft traffic is latency-bound (no Nagle); keep-alive reaps connections
 * from peers that vanished without a FIN. */
static void tune_socket(struct bufferevent *bev)
{
	int one = 1;
	evutil_socket_t fd = bufferevent_getfd(bev);
	if (fd >= 0) {
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
	}
}

/* Starts a connection to host:port that begins with our HELLO to peer_id. */
static struct bufferevent *dial(raft_transport *t, const char *host, const char *port, bool secure, uint64_t peer_id,
                                bufferevent_data_cb rd, bufferevent_data_cb wr, bufferevent_event_cb ev, void *arg)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (resolve(host, port, false, &ss, &sl) != 0) {
		MS_WARN(LOG_PKG, "cannot resolve peer %llx address %s:%s", (unsigned long long)peer_id, host, port);
		return NULL;
	}
	struct bufferevent *bev = tr_bev_new(t, -1, host, secure);
	if (!bev)
		return NULL;
	bufferevent_setcb(bev, rd, wr, ev, arg);
	if (bufferevent_enable(bev, EV_READ | EV_WRITE) != 0 ||
	    bufferevent_socket_connect(bev, (struct sockaddr *)&ss, (int)sl) != 0) {
		bufferevent_free(bev);
		return NULL;
	}
	tune_socket(bev);
	Msraft__Hello h = MSRAFT__HELLO__INIT;
	h.cluster_id = t->cluster_id;
	h.from_id = t->self_id;
	h.to_id = peer_id;
	h.version = PROTO_VERSION;
	if (add_pb_frame(bufferevent_get_output(bev), RAFT_TR_HELLO, &h.base) != 0) {
		bufferevent_free(bev);
		return NULL;
	}
	return bev;
}

static void notify(raft_transport *t)
{
	event_active(t->notify_ev, EV_TIMEOUT, 0);
}

static tr_peer *peer_find(const raft_transport *t, uint64_t id)
{
	for (tr_peer *p = t->peers; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

/* ---- outbound peer connections ---- */

static void peer_read_cb(struct bufferevent *bev, void *arg)
{
	/* Receivers never write on our outbound connection; ignore it. */
	struct evbuffer *in = bufferevent_get_input(bev);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void peer_event_cb(struct bufferevent *bev, short what, void *arg);

static void peer_unreachable(tr_peer *p)
{
	p->unreachable_pending = true;
	notify(p->t);
}

static void peer_close(tr_peer *p)
{
	if (p->bev)
		bufferevent_free(p->bev);
	p->bev = NULL;
	p->connected = false;
}

/* The connection failed or could not start: report, then retry later. */
static void peer_fail(tr_peer *p)
{
	raft_transport *t = p->t;
	peer_close(p);
	if (p->n_urls)
		p->cur_url = (p->cur_url + 1) % p->n_urls; /* try the next URL next time */
	peer_unreachable(p);
	int b = p->backoff_ms;
	int delay = b / 2 + (int)(tr_rand(t) % (uint64_t)(b / 2 + 1));
	p->backoff_ms = MS_MIN(b * 2, t->backoff_max_ms);
	struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
	p->backing_off = true;
	evtimer_add(p->retry_ev, &tv);
}

static int peer_dial(tr_peer *p)
{
	raft_transport *t = p->t;
	p->bev = dial(t, p->hosts[p->cur_url], p->ports[p->cur_url], p->secure[p->cur_url], p->id, peer_read_cb, NULL,
	              peer_event_cb, p);
	if (!p->bev) {
		peer_fail(p);
		return MS_EAGAIN;
	}
	struct timeval wt = {PEER_WRITE_TIMEOUT_S, 0};
	bufferevent_set_timeouts(p->bev, NULL, &wt);
	return 0;
}

static void peer_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	tr_peer *p = arg;
	p->backing_off = false;
	if (!p->bev)
		(void)peer_dial(p); /* reconnect eagerly so the peer is active again soon */
}

static void peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
	tr_peer *p = arg;
	if (what & BEV_EVENT_CONNECTED) {
		p->connected = true;
		p->backoff_ms = p->t->backoff_min_ms;
		MS_INFO(LOG_PKG, "peer %llx became active (%s:%s)", (unsigned long long)p->id, p->hosts[p->cur_url],
		        p->ports[p->cur_url]);
		return;
	}
	char tls_why[160];
	bool tls_err = ms_tls_bev_error(bev, tls_why, sizeof tls_why) == 0;
	if (p->connected)
		MS_WARN(LOG_PKG, "lost the connection to peer %llx (%s)", (unsigned long long)p->id,
		        tls_err                      ? tls_why
		        : (what & BEV_EVENT_EOF)     ? "closed by peer"
		        : (what & BEV_EVENT_TIMEOUT) ? "write timeout"
		                                     : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	else if (tls_err) /* a refused certificate: the operator must see it */
		MS_WARN(LOG_PKG, "failed to dial peer %llx at %s:%s: %s", (unsigned long long)p->id,
		        p->hosts[p->cur_url], p->ports[p->cur_url], tls_why);
	else
		MS_DEBUG(LOG_PKG, "failed to dial peer %llx at %s:%s", (unsigned long long)p->id, p->hosts[p->cur_url],
		         p->ports[p->cur_url]);
	peer_fail(p);
}

/* The output buffer to p, dialing if needed; NULL (and on_unreachable
 * queued) when the frame of size bytes must be dropped. */
static struct evbuffer *peer_out(tr_peer *p, size_t size)
{
	if (p->backing_off || (!p->bev && peer_dial(p) != 0)) {
		if (!p->unreachable_pending)
			peer_unreachable(p);
		return NULL;
	}
	struct evbuffer *out = bufferevent_get_output(p->bev);
	size_t queued = evbuffer_get_length(out);
	if (queued && queued + size > p->t->max_queue) { /* one frame of any size always fits */
		MS_DEBUG(LOG_PKG, "dropped a frame to peer %llx: queue full", (unsigned long long)p->id);
		peer_unreachable(p);
		return NULL;
	}
	return out;
}

/* ---- accepted connections ---- */

static void remove_dir(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				(void)unlinkat(dirfd(d), de->d_name, 0);
		}
		closedir(d);
	}
	if (rmdir(path) != 0 && errno != ENOENT)
		MS_WARN(LOG_PKG, "cannot remove %s: %s", path, strerror(errno));
}

static void conn_snap_reset(tr_conn *c, bool remove)
{
	if (c->fd >= 0)
		close(c->fd);
	if (c->dirfd >= 0)
		close(c->dirfd);
	c->fd = c->dirfd = -1;
	if (c->snap_path && remove)
		remove_dir(c->snap_path);
	ms_free(c->snap_path);
	ms_free(c->cur_name);
	c->snap_path = c->cur_name = NULL;
	c->cur_off = c->files = c->bytes = 0;
	if (c->snap_begun) {
		c->t->n_snaps_in--;
		c->t->snap_reserved -= c->ann_bytes;
		c->snap_begun = false;
		c->ann_files = c->ann_bytes = 0;
	}
}

static void conn_close(tr_conn *c)
{
	raft_transport *t = c->t;
	for (tr_conn **pp = &t->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	if (c->snap_path)
		MS_WARN(LOG_PKG, "snapshot from peer %llx abandoned, removing %s", (unsigned long long)c->from,
		        c->snap_path);
	if (!c->hello)
		t->n_ungreeted--;
	conn_snap_reset(c, true);
	bufferevent_free(c->bev);
	ms_free(c);
}

static int snap_begin(tr_conn *c)
{
	raft_transport *t = c->t;
	if (c->snap_path)
		return 0;
	for (int tries = 0; tries < 1000; tries++) {
		char buf[4096];
		snprintf(buf, sizeof buf, "%s/incoming-%llx-%llu", t->snap_dir, (unsigned long long)c->from,
		         (unsigned long long)++t->snap_seq);
		if (mkdir(buf, 0700) == 0) {
			c->dirfd = open(buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			c->snap_path = ms_strdup(buf);
			if (c->dirfd < 0 || !c->snap_path) {
				MS_WARN(LOG_PKG, "cannot open %s: %s", buf, strerror(errno));
				if (!c->snap_path)
					remove_dir(buf);
				return MS_EIO;
			}
			return 0;
		}
		if (errno != EEXIST) {
			MS_WARN(LOG_PKG, "cannot create %s: %s", buf, strerror(errno));
			return MS_EIO;
		}
	}
	return MS_EIO;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= MAX_NAME && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

/* Known limitation: write(2) of up to 1 MiB on the loop (page cache). */
static int snap_chunk(tr_conn *c, const uint8_t *p, size_t len)
{
	Msraft__SnapChunk *ch = msraft__snap_chunk__unpack(&ms_pb_allocator, len, p);
	int rc = MS_EINVAL;
	if (!ch)
		return MS_EINVAL;
	if (!name_ok(ch->name)) {
		MS_WARN(LOG_PKG, "peer %llx sent a snapshot file with a bad name", (unsigned long long)c->from);
		goto out;
	}
	if (!c->snap_begun || c->bytes + ch->data.len > c->ann_bytes) {
		MS_WARN(LOG_PKG, "peer %llx: snapshot data %s its announcement (%llu bytes)",
		        (unsigned long long)c->from, c->snap_begun ? "exceeds" : "without",
		        (unsigned long long)c->ann_bytes);
		goto out;
	}
	if ((rc = snap_begin(c)) != 0)
		goto out;
	rc = MS_EINVAL;
	if (!c->cur_name || strcmp(c->cur_name, ch->name) != 0) {
		if (ch->offset != 0) {
			MS_WARN(LOG_PKG, "peer %llx: snapshot file %s starts at offset %llu",
			        (unsigned long long)c->from, ch->name, (unsigned long long)ch->offset);
			goto out;
		}
		if (c->files >= c->ann_files) {
			MS_WARN(LOG_PKG, "peer %llx: snapshot has more files than the %llu announced",
			        (unsigned long long)c->from, (unsigned long long)c->ann_files);
			goto out;
		}
		if (c->fd >= 0)
			close(c->fd);
		ms_free(c->cur_name);
		c->cur_name = ms_strdup(ch->name);
		c->fd = openat(c->dirfd, ch->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (c->fd < 0 || !c->cur_name) {
			MS_WARN(LOG_PKG, "peer %llx: cannot create snapshot file %s: %s", (unsigned long long)c->from,
			        ch->name, strerror(errno));
			goto out;
		}
		c->cur_off = 0;
		c->files++;
	} else if (ch->offset != c->cur_off) {
		MS_WARN(LOG_PKG, "peer %llx: snapshot file %s: chunk at %llu, expected %llu",
		        (unsigned long long)c->from, ch->name, (unsigned long long)ch->offset,
		        (unsigned long long)c->cur_off);
		goto out;
	}
	for (size_t done = 0; done < ch->data.len;) {
		ssize_t w = write(c->fd, ch->data.data + done, ch->data.len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			MS_WARN(LOG_PKG, "writing snapshot file %s/%s: %s", c->snap_path, ch->name, strerror(errno));
			rc = MS_EIO;
			goto out;
		}
		done += (size_t)w;
	}
	c->cur_off += ch->data.len;
	c->bytes += ch->data.len;
	rc = 0;
out:
	msraft__snap_chunk__free_unpacked(ch, &ms_pb_allocator);
	return rc;
}

/* SNAP_BEGIN: the stream's totals. Refused when this member does not
 * expect a snapshot from c->from, or cannot hold what is announced. */
static int snap_announce(tr_conn *c, const uint8_t *p, size_t len)
{
	raft_transport *t = c->t;
	Msraft__SnapBegin *b = msraft__snap_begin__unpack(&ms_pb_allocator, len, p);
	if (!b)
		return MS_EINVAL;
	uint64_t files = b->files, bytes = b->bytes;
	msraft__snap_begin__free_unpacked(b, &ms_pb_allocator);
	if (c->snap_begun || c->snap_path) {
		MS_WARN(LOG_PKG, "peer %llx announced a second snapshot on one stream", (unsigned long long)c->from);
		return MS_EINVAL;
	}
	if (t->cb.snap_allowed && !t->cb.snap_allowed(t->ud, c->from, bytes)) {
		MS_WARN(LOG_PKG, "refused a snapshot from peer %llx: not expected from it",
		        (unsigned long long)c->from);
		return MS_EINVAL;
	}
	if (t->n_snaps_in >= RAFT_TRANSPORT_MAX_SNAPS_IN) {
		MS_WARN(LOG_PKG, "refused a snapshot from peer %llx: %d streams already in progress",
		        (unsigned long long)c->from, t->n_snaps_in);
		return MS_EINVAL;
	}
	if (bytes > t->snap_max) {
		MS_WARN(LOG_PKG, "refused a snapshot from peer %llx: %llu bytes is over the cap of %llu",
		        (unsigned long long)c->from, (unsigned long long)bytes, (unsigned long long)t->snap_max);
		return MS_EINVAL;
	}
	struct statvfs vfs;
	if (statvfs(t->snap_dir, &vfs) != 0) {
		MS_WARN(LOG_PKG, "refused a snapshot from peer %llx: statvfs %s: %s", (unsigned long long)c->from,
		        t->snap_dir, strerror(errno));
		return MS_EIO;
	}
	uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
	uint64_t need = bytes + t->snap_reserve + t->snap_reserved; /* each term is capped well below 2^62 */
	if (need > avail) {
		MS_WARN(LOG_PKG,
		        "refused a snapshot from peer %llx: %llu bytes would not fit in %s "
		        "(%llu bytes free, %llu kept free, %llu promised to other streams)",
		        (unsigned long long)c->from, (unsigned long long)bytes, t->snap_dir, (unsigned long long)avail,
		        (unsigned long long)t->snap_reserve, (unsigned long long)t->snap_reserved);
		return MS_EIO;
	}
	c->snap_begun = true;
	c->ann_files = files;
	c->ann_bytes = bytes;
	t->n_snaps_in++;
	t->snap_reserved += bytes;
	/* a stream that stalls must not hold its reservation forever */
	struct timeval st = {SNAP_STALL_S, 0};
	bufferevent_set_timeouts(c->bev, &st, NULL);
	return 0;
}

static int snap_end(tr_conn *c, const uint8_t *p, size_t len)
{
	raft_transport *t = c->t;
	Msraft__SnapEnd *e = msraft__snap_end__unpack(&ms_pb_allocator, len, p);
	if (!e)
		return MS_EINVAL;
	raft_msg m;
	int rc = MS_EINVAL;
	if (!c->snap_begun) {
		MS_WARN(LOG_PKG, "peer %llx ended a snapshot it never announced", (unsigned long long)c->from);
		goto out;
	}
	if ((rc = snap_begin(c))) /* a snapshot may have no files */
		goto out;
	rc = MS_EINVAL;
	if (e->files != c->files || e->bytes != c->bytes || c->files != c->ann_files || c->bytes != c->ann_bytes) {
		MS_WARN(LOG_PKG, "snapshot from peer %llx incomplete: %llu files %llu bytes, expected %llu and %llu",
		        (unsigned long long)c->from, (unsigned long long)c->files, (unsigned long long)c->bytes,
		        (unsigned long long)e->files, (unsigned long long)e->bytes);
		goto out;
	}
	ms_err err = {0};
	if (raft_transport_decode_msg(e->msg.data, e->msg.len, &m, &err) != 0) {
		MS_WARN(LOG_PKG, "snapshot from peer %llx: %s", (unsigned long long)c->from, err.msg);
		goto out;
	}
	if (m.type != RAFT_MSG_SNAP || m.to != t->self_id || m.from != c->from) {
		MS_WARN(LOG_PKG, "snapshot from peer %llx carries %s from %llx to %llx", (unsigned long long)c->from,
		        raft_msg_type_name(m.type), (unsigned long long)m.from, (unsigned long long)m.to);
		raft_transport_msg_free(&m);
		goto out;
	}
	char *path = c->snap_path;
	c->snap_path = NULL; /* the node owns the directory now */
	conn_snap_reset(c, false);
	MS_INFO(LOG_PKG, "received snapshot [index %llu] from peer %llx in %s", (unsigned long long)m.snapshot.index,
	        (unsigned long long)c->from, path);
	if (t->cb.on_snapshot)
		t->cb.on_snapshot(t->ud, &m, path);
	else
		remove_dir(path);
	ms_free(path);
	raft_transport_msg_free(&m);
	Msraft__SnapAck ack = MSRAFT__SNAP_ACK__INIT;
	ack.ok = true;
	rc = add_pb_frame(bufferevent_get_output(c->bev), RAFT_TR_SNAP_ACK, &ack.base);
out:
	msraft__snap_end__free_unpacked(e, &ms_pb_allocator);
	return rc;
}

/* A member id may hold RAFT_TRANSPORT_MAX_CONNS_PER_PEER inbound
 * connections: beyond that the oldest (last in the list: new ones are
 * pushed at the head) is doomed. A real member's stale connections go
 * first, which is also what a reconnecting member wants. */
static void limit_peer_conns(tr_conn *c)
{
	raft_transport *t = c->t;
	int n = 0;
	tr_conn *oldest = NULL;
	for (tr_conn *o = t->conns; o; o = o->next) {
		if (!o->hello || o->join || o->doomed || o->from != c->from)
			continue;
		n++;
		if (o != c)
			oldest = o;
	}
	if (n > RAFT_TRANSPORT_MAX_CONNS_PER_PEER && oldest) {
		MS_WARN(LOG_PKG, "member %llx has more than %d connections: closing its oldest",
		        (unsigned long long)c->from, RAFT_TRANSPORT_MAX_CONNS_PER_PEER);
		oldest->doomed = true;
		notify(t);
	}
}

static int conn_hello(tr_conn *c, const uint8_t *p, size_t len)
{
	raft_transport *t = c->t;
	Msraft__Hello *h = msraft__hello__unpack(&ms_pb_allocator, len, p);
	if (!h) {
		MS_WARN(LOG_PKG, "undecodable HELLO from a peer connection");
		return MS_EINVAL;
	}
	int rc = MS_EINVAL;
	if (h->cluster_id == 0 && h->from_id == RAFT_NONE && h->to_id == RAFT_NONE && h->version == PROTO_VERSION &&
	    t->cb.on_join) {
		c->hello = true;
		c->join = true;
		t->n_ungreeted--;
		bufferevent_setwatermark(c->bev, EV_READ, 0, HDR + RAFT_TRANSPORT_MAX_JOIN);
		rc = 0;
	} else if (h->cluster_id != t->cluster_id)
		MS_WARN(LOG_PKG, "refused a connection from member %llx: cluster ID mismatch (remote %llx, local %llx)",
		        (unsigned long long)h->from_id, (unsigned long long)h->cluster_id,
		        (unsigned long long)t->cluster_id);
	else if (h->to_id != t->self_id)
		MS_WARN(LOG_PKG, "refused a connection from member %llx: it is for member %llx, this is %llx",
		        (unsigned long long)h->from_id, (unsigned long long)h->to_id, (unsigned long long)t->self_id);
	else if (h->from_id == RAFT_NONE || h->from_id == t->self_id)
		MS_WARN(LOG_PKG, "refused a connection claiming to be from member %llx",
		        (unsigned long long)h->from_id);
	else if (h->version != PROTO_VERSION)
		MS_WARN(LOG_PKG, "refused a connection from member %llx: protocol version %u",
		        (unsigned long long)h->from_id, h->version);
	else if (!peer_find(t, h->from_id))
		MS_WARN(LOG_PKG, "refused a connection from %llx: not a member of cluster %llx",
		        (unsigned long long)h->from_id, (unsigned long long)t->cluster_id);
	else {
		c->hello = true;
		c->from = h->from_id;
		t->n_ungreeted--;
		bufferevent_set_timeouts(c->bev, NULL, NULL);
		/* one frame at most waits in the input buffer */
		bufferevent_setwatermark(c->bev, EV_READ, 0, HDR + RAFT_TRANSPORT_MAX_FRAME);
		limit_peer_conns(c);
		rc = 0;
	}
	msraft__hello__free_unpacked(h, &ms_pb_allocator);
	return rc;
}

static int conn_msg(tr_conn *c, const uint8_t *p, size_t len)
{
	raft_transport *t = c->t;
	raft_msg m;
	ms_err err = {0};
	if (raft_transport_decode_msg(p, len, &m, &err) != 0) {
		MS_WARN(LOG_PKG, "message from peer %llx: %s", (unsigned long long)c->from, err.msg);
		return MS_EINVAL;
	}
	if (m.to != t->self_id || m.from != c->from || m.type == RAFT_MSG_SNAP) {
		MS_WARN(LOG_PKG, "connection from peer %llx carried %s from %llx to %llx", (unsigned long long)c->from,
		        raft_msg_type_name(m.type), (unsigned long long)m.from, (unsigned long long)m.to);
		raft_transport_msg_free(&m);
		return MS_EINVAL;
	}
	if (t->cb.on_msg)
		t->cb.on_msg(t->ud, &m);
	raft_transport_msg_free(&m);
	return 0;
}

static int conn_frame(tr_conn *c, uint8_t kind, const uint8_t *p, size_t len)
{
	raft_transport *t = c->t;
	if (!c->hello) {
		if (kind != RAFT_TR_HELLO) {
			MS_WARN(LOG_PKG, "refused a peer connection: frame kind %u before HELLO", kind);
			return MS_EINVAL;
		}
		return conn_hello(c, p, len);
	}
	if (c->join) {
		/* one question, one answer; the joiner closes */
		uint8_t *resp = NULL;
		size_t rlen = 0;
		if (kind != RAFT_TR_JOIN || c->answered || t->cb.on_join(t->ud, p, len, &resp, &rlen) != 0) {
			MS_WARN(LOG_PKG, "refused a join request (frame kind %u)", kind);
			return MS_EINVAL;
		}
		c->answered = true;
		return add_raw_frame(bufferevent_get_output(c->bev), RAFT_TR_JOIN_RESP, resp, rlen, true);
	}
	if (c->doomed || !peer_find(t, c->from)) {
		MS_WARN(LOG_PKG, "closing the connection from %llx: not a member any more",
		        (unsigned long long)c->from);
		return MS_EINVAL;
	}
	switch (kind) {
	case RAFT_TR_MSG:
		return conn_msg(c, p, len);
	case RAFT_TR_FORWARD:
		if (t->cb.on_forward)
			t->cb.on_forward(t->ud, c->from, p, len);
		return 0;
	case RAFT_TR_SNAP_BEGIN:
		return snap_announce(c, p, len);
	case RAFT_TR_SNAP_CHUNK:
		return snap_chunk(c, p, len);
	case RAFT_TR_SNAP_END:
		return snap_end(c, p, len);
	default:
		MS_WARN(LOG_PKG, "closing the connection from peer %llx: unexpected frame kind %u",
		        (unsigned long long)c->from, kind);
		return MS_EINVAL;
	}
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	tr_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	for (;;) {
		size_t avail = evbuffer_get_length(in);
		if (avail < HDR)
			return;
		uint8_t h[HDR];
		evbuffer_copyout(in, h, HDR);
		uint32_t l = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
		/* nothing before HELLO, and nothing a joiner sends, is large */
		uint32_t max = !c->hello ? RAFT_TRANSPORT_MAX_HELLO
		               : c->join ? RAFT_TRANSPORT_MAX_JOIN
		                         : RAFT_TRANSPORT_MAX_FRAME;
		if (l < 1 || l > max || h[4] < RAFT_TR_HELLO || h[4] > RAFT_TR_SNAP_BEGIN ||
		    h[4] == RAFT_TR_JOIN_RESP || h[4] == RAFT_TR_SNAP_ACK) {
			MS_WARN(LOG_PKG, "closing a connection from peer %llx: bad frame (length %u, kind %u)",
			        (unsigned long long)c->from, l, h[4]);
			conn_close(c);
			return;
		}
		if (avail < 4 + (size_t)l)
			return;
		const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)(4 + (size_t)l));
		int rc = p ? conn_frame(c, h[4], p + HDR, l - 1) : MS_ENOMEM;
		if (rc) {
			conn_close(c);
			return;
		}
		evbuffer_drain(in, 4 + (size_t)l);
	}
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	tr_conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) /* TLS: the handshake of an accepted connection is done */
		return;
	if ((what & BEV_EVENT_TIMEOUT) && !c->hello)
		MS_WARN(LOG_PKG, "closing a peer connection that sent no HELLO in %d s", HELLO_TIMEOUT_S);
	else if (what & BEV_EVENT_TIMEOUT)
		MS_WARN(LOG_PKG, "closing a snapshot stream from peer %llx: no progress in %d s",
		        (unsigned long long)c->from, SNAP_STALL_S);
	char tls_why[160]; /* a dialer that refused our certificate says so with an alert */
	if ((what & BEV_EVENT_ERROR) && ms_tls_bev_error(bev, tls_why, sizeof tls_why) == 0)
		MS_WARN(LOG_PKG, "closed an incoming peer connection: %s", tls_why);
	conn_close(c);
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int sl, void *arg)
{
	tr_listener *l = arg;
	raft_transport *t = l->t;
	bool secure = l->secure;
	l->backoff_ms = ACCEPT_BACKOFF_MIN_MS;
	if (t->n_ungreeted >= RAFT_TRANSPORT_MAX_UNGREETED) {
		/* a member always greets at once: these are strays or worse */
		MS_DEBUG(LOG_PKG, "closed an accepted peer connection: %d are waiting for their HELLO", t->n_ungreeted);
		evutil_closesocket(fd);
		return;
	}
	tr_conn *c = ms_calloc(1, sizeof *c);
	struct bufferevent *bev = c ? tr_bev_new(t, fd, NULL, secure) : NULL;
	if (!bev) {
		ms_free(c);
		evutil_closesocket(fd);
		return;
	}
	c->t = t;
	c->bev = bev;
	c->fd = c->dirfd = -1;
	tune_socket(bev);
	bufferevent_setcb(bev, conn_read_cb, NULL, conn_event_cb, c);
	struct timeval ht = {HELLO_TIMEOUT_S, 0};
	bufferevent_set_timeouts(bev, &ht, NULL);
	bufferevent_setwatermark(bev, EV_READ, 0, HDR + RAFT_TRANSPORT_MAX_HELLO);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	c->next = t->conns;
	t->conns = c;
	t->n_ungreeted++;
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	tr_listener *l = arg;
	evconnlistener_enable(l->lev);
}

/* accept(2) failed (EMFILE, ENFILE, ENOBUFS...): the connection stays in the
 * backlog and the listener stays readable, so retrying at once would spin.
 * Pause it, doubling the pause while failures continue. */
static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
	tr_listener *l = arg;
	int e = EVUTIL_SOCKET_ERROR();
	MS_WARN(LOG_PKG, "accepting a peer connection: %s; pausing the listener for %d ms",
	        evutil_socket_error_to_string(e), l->backoff_ms);
	evconnlistener_disable(lev);
	struct timeval tv = {l->backoff_ms / 1000, (l->backoff_ms % 1000) * 1000};
	evtimer_add(l->resume_ev, &tv);
	l->backoff_ms = MS_MIN(l->backoff_ms * 2, ACCEPT_BACKOFF_MAX_MS);
}

/* ---- outgoing snapshots ---- */

static void so_finish(tr_snap_out *so, bool ok)
{
	if (so->state == SO_DONE)
		return;
	so->state = SO_DONE;
	so->ok = ok;
	if (so->bev)
		bufferevent_free(so->bev);
	so->bev = NULL;
	if (so->fd >= 0)
		close(so->fd);
	so->fd = -1;
	if (ok)
		MS_INFO(LOG_PKG, "sent a snapshot (%llu bytes) to peer %llx", (unsigned long long)so->bytes,
		        (unsigned long long)so->peer);
	else
		MS_WARN(LOG_PKG, "failed to send a snapshot to peer %llx", (unsigned long long)so->peer);
	notify(so->t);
}

static void so_free(tr_snap_out *so)
{
	if (so->bev)
		bufferevent_free(so->bev);
	if (so->fd >= 0)
		close(so->fd);
	for (size_t i = 0; i < so->n_names; i++)
		ms_free(so->names[i]);
	ms_free(so->names);
	ms_free(so->dir);
	ms_free(so->msg);
	ms_free(so->chunk);
	ms_free(so);
}

/* Queues chunks until SNAP_FILL bytes wait on the socket. Known limitation:
 * reads the files on the loop. */
static int so_fill(tr_snap_out *so)
{
	struct evbuffer *out = bufferevent_get_output(so->bev);
	if (!so->begun) {
		Msraft__SnapBegin b = MSRAFT__SNAP_BEGIN__INIT;
		b.files = so->n_names;
		b.bytes = so->total;
		if (add_pb_frame(out, RAFT_TR_SNAP_BEGIN, &b.base) != 0)
			return MS_ENOMEM;
		so->begun = true;
	}
	while (so->state == SO_STREAMING && evbuffer_get_length(out) < SNAP_FILL) {
		if (so->cur == so->n_names) {
			Msraft__SnapEnd e = MSRAFT__SNAP_END__INIT;
			e.msg.data = so->msg;
			e.msg.len = so->msg_len;
			e.files = so->n_names;
			e.bytes = so->bytes;
			if (add_pb_frame(out, RAFT_TR_SNAP_END, &e.base) != 0)
				return MS_ENOMEM;
			so->state = SO_WAIT_ACK;
			struct timeval st = {SNAP_STALL_S, 0};
			bufferevent_set_timeouts(so->bev, &st, &st);
			return 0;
		}
		const char *name = so->names[so->cur];
		if (so->fd < 0) {
			char path[4096];
			snprintf(path, sizeof path, "%s/%s", so->dir, name);
			so->fd = open(path, O_RDONLY | O_CLOEXEC);
			if (so->fd < 0) {
				MS_WARN(LOG_PKG, "snapshot file %s: %s", path, strerror(errno));
				return MS_EIO;
			}
			so->off = 0;
		}
		ssize_t r = read(so->fd, so->chunk, RAFT_TRANSPORT_CHUNK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			MS_WARN(LOG_PKG, "reading snapshot file %s/%s: %s", so->dir, name, strerror(errno));
			return MS_EIO;
		}
		if (r > 0 || so->off == 0) { /* an empty file still gets one chunk */
			Msraft__SnapChunk ch = MSRAFT__SNAP_CHUNK__INIT;
			ch.name = (char *)name;
			ch.offset = so->off;
			ch.data.data = so->chunk;
			ch.data.len = (size_t)r;
			if (add_pb_frame(out, RAFT_TR_SNAP_CHUNK, &ch.base) != 0)
				return MS_ENOMEM;
			so->off += (uint64_t)r;
			so->bytes += (uint64_t)r;
		}
		if (r == 0 || (size_t)r < RAFT_TRANSPORT_CHUNK) {
			/* a short read is the end for an immutable checkpoint file */
			close(so->fd);
			so->fd = -1;
			so->cur++;
		}
	}
	return 0;
}

static void so_write_cb(struct bufferevent *bev, void *arg)
{
	tr_snap_out *so = arg;
	if (so->state == SO_STREAMING && so_fill(so) != 0)
		so_finish(so, false);
}

static void so_read_cb(struct bufferevent *bev, void *arg)
{
	tr_snap_out *so = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (evbuffer_get_length(in) < HDR)
		return;
	uint8_t h[HDR];
	evbuffer_copyout(in, h, HDR);
	uint32_t l = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
	if (h[4] != RAFT_TR_SNAP_ACK || l < 1 || l > 64) {
		so_finish(so, false);
		return;
	}
	if (evbuffer_get_length(in) < 4 + (size_t)l)
		return;
	const uint8_t *p = evbuffer_pullup(in, 4 + (ev_ssize_t)l);
	Msraft__SnapAck *ack = p ? msraft__snap_ack__unpack(&ms_pb_allocator, l - 1, p + HDR) : NULL;
	bool ok = ack && ack->ok && so->state == SO_WAIT_ACK;
	if (ack)
		msraft__snap_ack__free_unpacked(ack, &ms_pb_allocator);
	so_finish(so, ok);
}

static void so_event_cb(struct bufferevent *bev, short what, void *arg)
{
	tr_snap_out *so = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	MS_WARN(LOG_PKG, "snapshot connection to peer %llx: %s", (unsigned long long)so->peer,
	        (what & BEV_EVENT_EOF)       ? "closed by peer"
	        : (what & BEV_EVENT_TIMEOUT) ? "stalled"
	                                     : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	so_finish(so, false);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_files(tr_snap_out *so)
{
	DIR *d = opendir(so->dir);
	if (!d)
		return MS_EIO;
	size_t cap = 0;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode))
			continue; /* ".", "..", and anything that is not a plain file */
		if (strlen(de->d_name) > MAX_NAME) {
			rc = MS_EINVAL;
			break;
		}
		so->total += (uint64_t)st.st_size; /* announced up front: the files are immutable */
		if (so->n_names == cap) {
			size_t nc = cap ? cap * 2 : 16;
			char **nn = ms_realloc(so->names, nc * sizeof *nn);
			if (!nn) {
				rc = MS_ENOMEM;
				break;
			}
			so->names = nn;
			cap = nc;
		}
		if (!(so->names[so->n_names] = ms_strdup(de->d_name))) {
			rc = MS_ENOMEM;
			break;
		}
		so->n_names++;
	}
	closedir(d);
	if (so->n_names)
		qsort(so->names, so->n_names, sizeof *so->names, cmp_str);
	return rc;
}

int raft_transport_send_snapshot(raft_transport *t, const raft_msg *snap, const char *dir)
{
	if (snap->type != RAFT_MSG_SNAP)
		return MS_EINVAL;
	tr_peer *p = peer_find(t, snap->to);
	if (!p)
		return MS_ENOTFOUND;
	tr_snap_out *so = ms_calloc(1, sizeof *so);
	if (!so)
		return MS_ENOMEM;
	so->t = t;
	so->peer = snap->to;
	so->fd = -1;
	so->dir = ms_strdup(dir);
	so->chunk = ms_malloc(RAFT_TRANSPORT_CHUNK);
	int rc = MS_ENOMEM;
	if (!so->dir || !so->chunk)
		goto fail;
	if ((rc = list_files(so)) != 0) {
		MS_WARN(LOG_PKG, "snapshot directory %s: %s", dir, rc == MS_EIO ? strerror(errno) : ms_strerror(rc));
		if (rc == MS_EINVAL)
			rc = MS_EIO;
		goto fail;
	}
	if ((rc = raft_transport_encode_msg(snap, &so->msg, &so->msg_len, NULL)) != 0)
		goto fail;
	so->bev = dial(t, p->hosts[p->cur_url], p->ports[p->cur_url], p->secure[p->cur_url], p->id, so_read_cb,
	               so_write_cb, so_event_cb, so);
	so->next = t->snaps;
	t->snaps = so;
	if (!so->bev) {
		so_finish(so, false); /* reported from the loop, like any failure */
		return 0;
	}
	struct timeval st = {SNAP_STALL_S, 0};
	bufferevent_set_timeouts(so->bev, NULL, &st);
	bufferevent_setwatermark(so->bev, EV_WRITE, SNAP_LOW_WATER, 0);
	if (so_fill(so) != 0)
		so_finish(so, false);
	MS_INFO(LOG_PKG, "start to send a snapshot [index %llu, %zu files] to peer %llx",
	        (unsigned long long)snap->snapshot.index, so->n_names, (unsigned long long)so->peer);
	return 0;
fail:
	so_free(so);
	return rc;
}

/* ---- deferred callbacks ---- */

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
	raft_transport *t = arg;
	for (tr_conn **pp = &t->conns; *pp;) {
		tr_conn *c = *pp;
		if (!c->doomed) {
			pp = &c->next;
			continue;
		}
		conn_close(c); /* unlinks c: *pp is now its successor */
	}
	/* Rescan from the head after each callback: it may add or remove peers
	 * and snapshots. */
	for (;;) {
		tr_peer *p = t->peers;
		while (p && !p->unreachable_pending)
			p = p->next;
		if (!p)
			break;
		p->unreachable_pending = false;
		if (t->cb.on_unreachable)
			t->cb.on_unreachable(t->ud, p->id);
	}
	for (;;) {
		tr_snap_out **pp = &t->snaps;
		while (*pp && (*pp)->state != SO_DONE)
			pp = &(*pp)->next;
		tr_snap_out *so = *pp;
		if (!so)
			break;
		*pp = so->next;
		uint64_t peer = so->peer;
		bool ok = so->ok;
		so_free(so);
		if (t->cb.on_snapshot_sent)
			t->cb.on_snapshot_sent(t->ud, peer, ok);
	}
}

/* ---- public API ---- */

int raft_transport_new(struct event_base *base, uint64_t cluster_id, uint64_t self_id, const char *snap_dir,
                       const raft_transport_cb *cb, void *ud, raft_transport **out, ms_err *err)
{
	*out = NULL;
	if (!base || self_id == RAFT_NONE || !snap_dir || !*snap_dir)
		return ms_err_set(err, MS_EINVAL, "transport: base, member id and snapshot directory are required");
	raft_transport *t = ms_calloc(1, sizeof *t);
	if (!t)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	t->base = base;
	t->cluster_id = cluster_id;
	t->self_id = self_id;
	if (cb)
		t->cb = *cb;
	t->ud = ud;
	t->rng = self_id * 0x9e3779b97f4a7c15ull | 1;
	t->max_queue = 64u << 20;
	t->snap_max = RAFT_TRANSPORT_SNAP_CAP;
	t->snap_reserve = RAFT_TRANSPORT_SNAP_RESERVE;
	t->backoff_min_ms = 100;
	t->backoff_max_ms = 5000;
	t->snap_dir = ms_strdup(snap_dir);
	t->notify_ev = event_new(base, -1, 0, notify_cb, t);
	if (!t->snap_dir || !t->notify_ev) {
		raft_transport_free(t);
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	}
	*out = t;
	return 0;
}

static void peer_free(tr_peer *p)
{
	peer_close(p);
	if (p->retry_ev)
		event_free(p->retry_ev);
	for (size_t i = 0; i < p->n_urls; i++) {
		ms_free(p->hosts[i]);
		ms_free(p->ports[i]);
	}
	ms_free(p->hosts);
	ms_free(p->ports);
	ms_free(p->secure);
	ms_free(p);
}

void raft_transport_free(raft_transport *t)
{
	if (!t)
		return;
	while (t->listeners) {
		tr_listener *l = t->listeners;
		t->listeners = l->next;
		evconnlistener_free(l->lev);
		event_free(l->resume_ev);
		ms_free(l);
	}
	while (t->peers) {
		tr_peer *p = t->peers;
		t->peers = p->next;
		peer_free(p);
	}
	while (t->conns)
		conn_close(t->conns);
	while (t->snaps) {
		tr_snap_out *so = t->snaps;
		t->snaps = so->next;
		so_free(so);
	}
	if (t->notify_ev)
		event_free(t->notify_ev);
	ms_free(t->snap_dir);
	ms_free(t);
}

void raft_transport_set_limits(raft_transport *t, size_t max_queue_bytes, int backoff_min_ms, int backoff_max_ms)
{
	if (max_queue_bytes)
		t->max_queue = max_queue_bytes;
	if (backoff_min_ms > 0)
		t->backoff_min_ms = backoff_min_ms;
	if (backoff_max_ms > 0)
		t->backoff_max_ms = backoff_max_ms;
	if (t->backoff_max_ms < t->backoff_min_ms)
		t->backoff_max_ms = t->backoff_min_ms;
}

void raft_transport_set_snap_limits(raft_transport *t, uint64_t max_bytes, uint64_t reserve_bytes)
{
	if (max_bytes)
		t->snap_max = max_bytes;
	if (reserve_bytes)
		t->snap_reserve = reserve_bytes;
}

int raft_transport_listen(raft_transport *t, const char *url, ms_err *err)
{
	char *host = NULL, *port = NULL;
	bool secure;
	int rc = parse_url(url, &host, &port, &secure, err);
	if (rc)
		return rc;
	struct sockaddr_storage ss;
	socklen_t sl;
	tr_listener *l = NULL;
	if (secure && !t->tls) {
		rc = ms_err_set(err, MS_EINVAL,
		                "cannot listen on TLS for %s:%s: KeyFile and CertFile are not presented", host, port);
		goto out;
	}
	if (resolve(host, port, true, &ss, &sl) != 0) {
		rc = ms_err_set(err, MS_EINVAL, "listen-peer-urls %s: cannot resolve %s", url, host);
		goto out;
	}
	l = ms_calloc(1, sizeof *l);
	if (!l || !(l->resume_ev = evtimer_new(t->base, accept_resume_cb, l))) {
		ms_free(l);
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
		goto out;
	}
	l->t = t;
	l->backoff_ms = ACCEPT_BACKOFF_MIN_MS;
	l->lev = evconnlistener_new_bind(t->base, accept_cb, l,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, -1,
	                                 (struct sockaddr *)&ss, (int)sl);
	if (!l->lev) {
		rc = ms_err_set(err, MS_EIO, "listen-peer-urls %s: %s", url,
		                evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		event_free(l->resume_ev);
		ms_free(l);
		goto out;
	}
	evconnlistener_set_error_cb(l->lev, accept_error_cb);
	l->secure = secure;
	struct sockaddr_storage bound;
	socklen_t bl = sizeof bound;
	if (getsockname(evconnlistener_get_fd(l->lev), (struct sockaddr *)&bound, &bl) == 0)
		l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
		                                            : ((struct sockaddr_in *)&bound)->sin_port);
	/* keep the first listener first: raft_transport_port reports it */
	tr_listener **pp = &t->listeners;
	while (*pp)
		pp = &(*pp)->next;
	*pp = l;
	MS_INFO(LOG_PKG, "listening for peers on %s (port %d)", url, l->port);
out:
	ms_free(host);
	ms_free(port);
	return rc;
}

void raft_transport_set_tls(raft_transport *t, ms_tls *tls)
{
	t->tls = tls;
}

int raft_transport_port(const raft_transport *t)
{
	return t->listeners ? t->listeners->port : 0;
}

int raft_transport_set_peer(raft_transport *t, uint64_t id, char *const *urls, size_t n)
{
	if (id == RAFT_NONE || id == t->self_id || n == 0)
		return MS_EINVAL;
	char **hosts = ms_calloc(n, sizeof *hosts), **ports = ms_calloc(n, sizeof *ports);
	bool *secure = ms_calloc(n, sizeof *secure);
	int rc = hosts && ports && secure ? 0 : MS_ENOMEM;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		ms_err err;
		rc = parse_url(urls[i], &hosts[i], &ports[i], &secure[i], &err);
		if (rc)
			MS_WARN(LOG_PKG, "peer %llx: %s", (unsigned long long)id, err.msg);
	}
	tr_peer *p = peer_find(t, id);
	bool fresh = !p;
	if (rc == 0 && fresh) {
		p = ms_calloc(1, sizeof *p);
		if (p && !(p->retry_ev = evtimer_new(t->base, peer_retry_cb, p))) {
			ms_free(p);
			p = NULL;
		}
		if (!p)
			rc = MS_ENOMEM;
	}
	if (rc) {
		for (size_t i = 0; hosts && ports && i < n; i++) {
			ms_free(hosts[i]);
			ms_free(ports[i]);
		}
		ms_free(hosts);
		ms_free(ports);
		ms_free(secure);
		return rc;
	}
	if (!fresh) {
		bool same = p->n_urls == n;
		for (size_t i = 0; same && i < n; i++)
			same = !strcmp(p->hosts[i], hosts[i]) && !strcmp(p->ports[i], ports[i]) &&
			       p->secure[i] == secure[i];
		for (size_t i = 0; i < p->n_urls; i++) {
			ms_free(p->hosts[i]);
			ms_free(p->ports[i]);
		}
		ms_free(p->hosts);
		ms_free(p->ports);
		ms_free(p->secure);
		if (!same) {
			/* new addresses: redial them on the next send */
			if (p->bev && evbuffer_get_length(bufferevent_get_output(p->bev)))
				peer_unreachable(p);
			peer_close(p);
			evtimer_del(p->retry_ev);
			p->backing_off = false;
			p->backoff_ms = t->backoff_min_ms;
		}
	} else {
		p->t = t;
		p->id = id;
		p->backoff_ms = t->backoff_min_ms;
		p->next = t->peers;
		t->peers = p;
	}
	if (p->cur_url >= n || p->bev == NULL)
		p->cur_url = 0;
	p->hosts = hosts;
	p->ports = ports;
	p->secure = secure;
	p->n_urls = n;
	return 0;
}

void raft_transport_remove_peer(raft_transport *t, uint64_t id)
{
	for (tr_peer **pp = &t->peers; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			tr_peer *p = *pp;
			*pp = p->next;
			peer_free(p);
			/* its inbound connections go too (from the loop: a callback
			 * running on one of them may have called this) */
			for (tr_conn *c = t->conns; c; c = c->next)
				if (c->hello && !c->join && c->from == id)
					c->doomed = true;
			notify(t);
			return;
		}
	}
}

int raft_transport_send(raft_transport *t, const raft_msg *m)
{
	if (m->type == RAFT_MSG_SNAP)
		return MS_EINVAL; /* a SNAP without its files would install nothing: send_snapshot */
	tr_peer *p = peer_find(t, m->to);
	if (!p)
		return MS_ENOTFOUND;
	uint8_t *buf;
	size_t len;
	ms_err err;
	int rc = raft_transport_encode_msg(m, &buf, &len, &err);
	if (rc) {
		MS_WARN(LOG_PKG, "cannot encode %s to %llx: %s", raft_msg_type_name(m->type), (unsigned long long)m->to,
		        err.msg);
		return rc;
	}
	if (len + 1 > RAFT_TRANSPORT_MAX_FRAME) {
		MS_WARN(LOG_PKG, "%s to %llx is too large (%zu bytes)", raft_msg_type_name(m->type),
		        (unsigned long long)m->to, len);
		ms_free(buf);
		return MS_EINVAL;
	}
	struct evbuffer *out = peer_out(p, len + HDR);
	if (!out) {
		ms_free(buf);
		return MS_EAGAIN;
	}
	return add_raw_frame(out, RAFT_TR_MSG, buf, len, true);
}

int raft_transport_forward(raft_transport *t, uint64_t to, const uint8_t *data, size_t len)
{
	tr_peer *p = peer_find(t, to);
	if (!p)
		return MS_ENOTFOUND;
	if (len + 1 > RAFT_TRANSPORT_MAX_FRAME)
		return MS_EINVAL;
	struct evbuffer *out = peer_out(p, len + HDR);
	if (!out)
		return MS_EAGAIN;
	return add_raw_frame(out, RAFT_TR_FORWARD, data, len, false);
}

bool raft_transport_peer_active(const raft_transport *t, uint64_t id)
{
	const tr_peer *p = peer_find(t, id);
	return p && p->connected;
}

/* ---- joining (start-up, blocking) ---- */

/* Bounds every blocking step on fd (both ways: TLS reads may write). */
static bool io_deadline(int fd, int64_t deadline)
{
	int64_t left = (deadline - ms_now_mono_ns()) / 1000000;
	if (left <= 0)
		return false;
	struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return true;
}

/* tls: NULL for plain http */
static int io_all(int fd, ms_tls_sync *tls, uint8_t *buf, size_t len, bool wr, int64_t deadline)
{
	size_t done = 0;
	while (done < len) {
		if (!io_deadline(fd, deadline))
			return MS_ETIMEOUT;
		ssize_t n = tls  ? ms_tls_sync_io(tls, buf + done, len - done, wr)
		            : wr ? write(fd, buf + done, len - done)
		                 : read(fd, buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return MS_ETIMEOUT;
		if (n <= 0)
			return MS_EIO;
		done += (size_t)n;
	}
	return 0;
}

int raft_transport_join(const char *url, ms_tls *tls, const uint8_t *req, size_t len, int timeout_ms, uint8_t **resp,
                        size_t *resp_len, ms_err *err)
{
	char *host = NULL, *port = NULL;
	bool secure;
	int rc = parse_url(url, &host, &port, &secure, err);
	if (rc)
		return rc;
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd = -1;
	ms_tls_sync *ts = NULL;
	if (secure && !tls) {
		rc = ms_err_set(err, MS_EINVAL, "%s: an https peer URL needs peer TLS (--peer-cert-file etc.)", url);
		goto out;
	}
	if (resolve(host, port, false, &ss, &sl) != 0) {
		rc = ms_err_set(err, MS_EIO, "cannot resolve %s", url);
		goto out;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) != 0) {
		rc = ms_err_set(err, MS_EIO, "cannot connect to %s: %s", url, strerror(errno));
		goto out;
	}
	int64_t deadline = ms_now_mono_ns() + (int64_t)timeout_ms * 1000000;
	if (secure && (!io_deadline(fd, deadline) || (rc = ms_tls_sync_connect(tls, fd, host, &ts, err))))
		goto out;
	Msraft__Hello h = MSRAFT__HELLO__INIT;
	h.version = PROTO_VERSION;
	size_t hl = msraft__hello__get_packed_size(&h);
	uint8_t *out = ms_malloc(2 * HDR + hl + len);
	if (!out) {
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
		goto out;
	}
	put_hdr(out, hl, RAFT_TR_HELLO);
	msraft__hello__pack(&h, out + HDR);
	put_hdr(out + HDR + hl, len, RAFT_TR_JOIN);
	if (len)
		memcpy(out + 2 * HDR + hl, req, len);
	rc = io_all(fd, ts, out, 2 * HDR + hl + len, true, deadline);
	ms_free(out);
	uint8_t hdr[HDR];
	if (rc == 0)
		rc = io_all(fd, ts, hdr, HDR, false, deadline);
	if (rc) {
		ms_err_set(err, rc, "join request to %s failed (%s)", url, rc == MS_ETIMEOUT ? "timed out" : "closed");
		goto out;
	}
	uint32_t l = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (hdr[4] != RAFT_TR_JOIN_RESP || l < 1 || l > RAFT_TRANSPORT_MAX_FRAME) {
		rc = ms_err_set(err, MS_EIO, "%s answered the join request with a bad frame", url);
		goto out;
	}
	*resp_len = l - 1;
	*resp = ms_malloc(l);
	if (!*resp) {
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = io_all(fd, ts, *resp, l - 1, false, deadline))) {
		ms_free(*resp);
		*resp = NULL;
		ms_err_set(err, rc, "join answer from %s was cut short", url);
	}
out:
	ms_tls_sync_free(ts);
	if (fd >= 0)
		close(fd);
	ms_free(host);
	ms_free(port);
	return rc;
}
