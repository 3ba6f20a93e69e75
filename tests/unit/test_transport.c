/* test_transport.c — the raft peer transport on 127.0.0.1: the message codec,
 * ordered delivery among three members, drops and reconnection when a peer
 * is down, the per-peer queue bound, FORWARD, snapshot streaming, and bad
 * input on the peer port. One event_base is driven by hand until a condition
 * holds (with a generous deadline that only turns a hang into a failure). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "raft/transport.h"
#include "raftpb.pb-c.h"

#define CLUSTER 0xc1u
#define MAXID 8

/* ---- the loop ---- */

static struct event_base *base;
static struct event *tick;

static void noop_cb(evutil_socket_t fd, short what, void *arg) {}

/* Runs the loop until cond holds; fails the test after 20 s (a hang). */
#define RUN_UNTIL(cond)                                                                                                \
	do {                                                                                                           \
		int64_t dl_ = ms_now_mono_ns() + 20 * (int64_t)1000000000;                                             \
		while (!(cond)) {                                                                                      \
			if (ms_now_mono_ns() > dl_)                                                                    \
				fail_msg("timed out waiting for %s", #cond);                                           \
			event_base_loop(base, EVLOOP_ONCE);                                                            \
		}                                                                                                      \
	} while (0)

/* Runs the loop for a few iterations (lets pending I/O settle). */
static void spin(int n)
{
	for (int i = 0; i < n; i++)
		event_base_loop(base, EVLOOP_ONCE);
}

/* ---- a member and what it saw ---- */

typedef struct got_msg {
	uint64_t from;
	raft_msg_type type;
	uint64_t index, term;
	size_t n_entries;
} got_msg;

typedef struct rec {
	uint64_t id;
	raft_transport *t;
	char snap_dir[256];
	got_msg *msgs;
	size_t n_msgs, cap;
	bool bad_content;
	size_t n_forward;
	uint64_t fwd_from;
	uint8_t *fwd;
	size_t fwd_len;
	size_t unreachable[MAXID];
	int snap_ok, snap_fail;
	char snap_got[512];
	raft_msg snap_msg; /* decoded copy */
	bool has_snap;
	bool refuse_snaps; /* snap_allowed answers false */
	size_t n_joins;
} rec;

static void fill_pattern(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 31 + i * 7);
}

static bool check_pattern(const uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (uint8_t)(seed * 31 + i * 7))
			return false;
	return true;
}

static void on_msg(void *ud, const raft_msg *m)
{
	rec *r = ud;
	if (r->n_msgs == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->msgs = realloc(r->msgs, r->cap * sizeof *r->msgs);
	}
	r->msgs[r->n_msgs++] = (got_msg){m->from, m->type, m->index, m->term, m->n_entries};
	for (size_t i = 0; i < m->n_entries; i++)
		if (!check_pattern(m->entries[i].data, m->entries[i].len, m->entries[i].index))
			r->bad_content = true;
	if (m->to != r->id)
		r->bad_content = true;
}

static void on_forward(void *ud, uint64_t from, const uint8_t *data, size_t len)
{
	rec *r = ud;
	r->n_forward++;
	r->fwd_from = from;
	free(r->fwd);
	r->fwd = malloc(len ? len : 1);
	if (len)
		memcpy(r->fwd, data, len);
	r->fwd_len = len;
}

static void on_snapshot(void *ud, const raft_msg *m, const char *dir)
{
	rec *r = ud;
	snprintf(r->snap_got, sizeof r->snap_got, "%s", dir);
	uint8_t *buf;
	size_t len;
	assert_int_equal(raft_transport_encode_msg(m, &buf, &len, NULL), 0);
	raft_transport_msg_free(&r->snap_msg);
	assert_int_equal(raft_transport_decode_msg(buf, len, &r->snap_msg, NULL), 0);
	ms_free(buf);
	r->has_snap = true;
}

static void on_unreachable(void *ud, uint64_t peer)
{
	rec *r = ud;
	assert_true(peer < MAXID);
	r->unreachable[peer]++;
}

static void on_snapshot_sent(void *ud, uint64_t peer, bool ok)
{
	rec *r = ud;
	if (ok)
		r->snap_ok++;
	else
		r->snap_fail++;
}

static int on_join(void *ud, const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len)
{
	rec *r = ud;
	r->n_joins++;
	*resp = ms_malloc(3);
	memcpy(*resp, "ok!", 3);
	*resp_len = 3;
	return 0;
}

static bool snap_allowed(void *ud, uint64_t from, uint64_t bytes)
{
	return !((rec *)ud)->refuse_snaps;
}

static const raft_transport_cb callbacks = {on_msg,           on_forward, on_snapshot, on_unreachable,
                                            on_snapshot_sent, on_join,    snap_allowed};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Starts member id listening on 127.0.0.1:port (0 = any). */
static void member_start(rec *r, uint64_t id, int port)
{
	r->id = id;
	if (!r->snap_dir[0]) {
		snprintf(r->snap_dir, sizeof r->snap_dir, "/tmp/ms-transport-XXXXXX");
		assert_non_null(mkdtemp(r->snap_dir));
	}
	ms_err err = {0};
	assert_int_equal(raft_transport_new(base, CLUSTER, id, r->snap_dir, &callbacks, r, &r->t, &err), 0);
	raft_transport_set_limits(r->t, 0, 10, 80); /* short backoff keeps the test quick */
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
	int rc = raft_transport_listen(r->t, url, &err);
	if (rc)
		fail_msg("listen %s: %s", url, err.msg);
	assert_true(raft_transport_port(r->t) > 0);
}

static void member_stop(rec *r)
{
	raft_transport_free(r->t);
	r->t = NULL;
}

static void member_free(rec *r)
{
	if (r->t)
		member_stop(r);
	if (r->snap_dir[0])
		rm_rf(r->snap_dir);
	free(r->msgs);
	free(r->fwd);
	raft_transport_msg_free(&r->snap_msg);
	memset(r, 0, sizeof *r);
}

static void add_peer(rec *r, uint64_t id, int port)
{
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
	char *urls[] = {url};
	assert_int_equal(raft_transport_set_peer(r->t, id, urls, 1), 0);
}

/* A message whose index is a sequence number and whose entries carry a
 * checkable pattern. */
static int send_seq(rec *from, uint64_t to, uint64_t seq, size_t n_entries)
{
	raft_entry ents[4];
	uint8_t data[4][300];
	assert_true(n_entries <= 4);
	for (size_t i = 0; i < n_entries; i++) {
		size_t len = (size_t)((seq + i) % 300);
		fill_pattern(data[i], len, seq * 10 + i);
		ents[i] = (raft_entry){1, seq * 10 + i, RAFT_ENTRY_NORMAL, data[i], len};
	}
	raft_msg m = {.type = n_entries ? RAFT_MSG_APP : RAFT_MSG_HEARTBEAT,
	              .from = from->id,
	              .to = to,
	              .term = 7,
	              .index = seq,
	              .entries = n_entries ? ents : NULL,
	              .n_entries = n_entries};
	return raft_transport_send(from->t, &m);
}

static size_t count_from(const rec *r, uint64_t from)
{
	size_t n = 0;
	for (size_t i = 0; i < r->n_msgs; i++)
		n += r->msgs[i].from == from;
	return n;
}

/* Sequence numbers from one sender arrive strictly increasing. */
static bool in_order(const rec *r, uint64_t from)
{
	bool first = true;
	uint64_t last = 0;
	for (size_t i = 0; i < r->n_msgs; i++) {
		if (r->msgs[i].from != from)
			continue;
		if (!first && r->msgs[i].index <= last)
			return false;
		first = false;
		last = r->msgs[i].index;
	}
	return true;
}

static int setup(void **state)
{
	base = event_base_new();
	assert_non_null(base);
	tick = event_new(base, -1, EV_PERSIST, noop_cb, NULL);
	struct timeval tv = {0, 5000};
	event_add(tick, &tv);
	/* the bad-input tests warn on purpose; TRANSPORT_TEST_LOG=1 shows it */
	ms_log_set_level(getenv("TRANSPORT_TEST_LOG") ? MS_LOG_DEBUG : MS_LOG_ERROR);
	return 0;
}

static int teardown(void **state)
{
	event_free(tick);
	event_base_free(base);
	return 0;
}

/* ---- codec ---- */

static void assert_msg_equal(const raft_msg *a, const raft_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->from, b->from);
	assert_int_equal(a->to, b->to);
	assert_int_equal(a->term, b->term);
	assert_int_equal(a->log_term, b->log_term);
	assert_int_equal(a->index, b->index);
	assert_int_equal(a->commit, b->commit);
	assert_int_equal(a->reject, b->reject);
	assert_int_equal(a->reject_hint, b->reject_hint);
	assert_int_equal(a->n_entries, b->n_entries);
	for (size_t i = 0; i < a->n_entries; i++) {
		assert_int_equal(a->entries[i].term, b->entries[i].term);
		assert_int_equal(a->entries[i].index, b->entries[i].index);
		assert_int_equal(a->entries[i].type, b->entries[i].type);
		assert_int_equal(a->entries[i].len, b->entries[i].len);
		if (a->entries[i].len)
			assert_memory_equal(a->entries[i].data, b->entries[i].data, a->entries[i].len);
	}
	assert_int_equal(a->context_len, b->context_len);
	if (a->context_len)
		assert_memory_equal(a->context, b->context, a->context_len);
	assert_int_equal(a->snapshot.index, b->snapshot.index);
	assert_int_equal(a->snapshot.term, b->snapshot.term);
	const raft_conf_state *ca = &a->snapshot.conf_state, *cb = &b->snapshot.conf_state;
	assert_int_equal(ca->n_voters, cb->n_voters);
	assert_int_equal(ca->n_learners, cb->n_learners);
	if (ca->n_voters)
		assert_memory_equal(ca->voters, cb->voters, ca->n_voters * sizeof(uint64_t));
	if (ca->n_learners)
		assert_memory_equal(ca->learners, cb->learners, ca->n_learners * sizeof(uint64_t));
}

static void roundtrip(const raft_msg *m)
{
	uint8_t *buf;
	size_t len;
	raft_msg d;
	assert_int_equal(raft_transport_encode_msg(m, &buf, &len, NULL), 0);
	assert_int_equal(raft_transport_decode_msg(buf, len, &d, NULL), 0);
	assert_msg_equal(m, &d);
	raft_transport_msg_free(&d);
	ms_free(buf);
}

static void test_codec_roundtrip(void **state)
{
	uint8_t big[5000];
	fill_pattern(big, sizeof big, 3);
	uint8_t cc[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
	raft_entry ents[] = {
	    {5, 11, RAFT_ENTRY_NORMAL, big, sizeof big},
	    {5, 12, RAFT_ENTRY_NORMAL, NULL, 0}, /* a leader's empty no-op */
	    {6, 13, RAFT_ENTRY_CONF_CHANGE, cc, sizeof cc},
	};
	uint8_t ctx[] = "read-id-12345678";
	uint64_t voters[] = {1, 2, 0xffffffffffffffffull}, learners[] = {9};
	for (int t = RAFT_MSG_APP; t <= RAFT_MSG_TYPE_MAX; t++) {
		raft_msg m = {.type = (raft_msg_type)t,
		              .from = 1,
		              .to = 0x8e9e05c52164694dull,
		              .term = 42,
		              .log_term = 41,
		              .index = 1ull << 40,
		              .commit = 99,
		              .reject = t % 2,
		              .reject_hint = 77};
		roundtrip(&m); /* every type bare */
		m.entries = ents;
		m.n_entries = MS_ARRAY_LEN(ents);
		m.context = ctx;
		m.context_len = sizeof ctx;
		m.snapshot = (raft_snapshot_meta){1000, 40, {voters, 3, learners, 1}};
		roundtrip(&m); /* and with every field set */
	}
	/* a SNAP with an empty conf state and a learners-only one */
	raft_msg s = {.type = RAFT_MSG_SNAP, .from = 2, .to = 3, .term = 1};
	roundtrip(&s);
	s.snapshot = (raft_snapshot_meta){5, 1, {NULL, 0, learners, 1}};
	roundtrip(&s);
}

static void test_codec_rejects(void **state)
{
	uint8_t *buf;
	size_t len;
	raft_msg m = {.type = 0, .from = 1, .to = 2}, d;
	assert_int_equal(raft_transport_encode_msg(&m, &buf, &len, NULL), MS_EINVAL);
	m.type = RAFT_MSG_TYPE_MAX + 1;
	assert_int_equal(raft_transport_encode_msg(&m, &buf, &len, NULL), MS_EINVAL);

	/* unknown type on the wire */
	Msraft__Message pb = MSRAFT__MESSAGE__INIT;
	uint8_t raw[256];
	pb.type = 99;
	len = msraft__message__pack(&pb, raw);
	assert_int_equal(raft_transport_decode_msg(raw, len, &d, NULL), MS_EINVAL);
	assert_null(d.entries);
	/* unknown entry type */
	Msraft__Entry e = MSRAFT__ENTRY__INIT, *ep = &e;
	e.type = 7;
	pb.type = RAFT_MSG_APP;
	pb.entries = &ep;
	pb.n_entries = 1;
	len = msraft__message__pack(&pb, raw);
	assert_int_equal(raft_transport_decode_msg(raw, len, &d, NULL), MS_EINVAL);
	/* garbage and truncation */
	uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	assert_int_equal(raft_transport_decode_msg(junk, sizeof junk, &d, NULL), MS_EINVAL);
	e.type = 0;
	uint8_t data[100] = {1};
	e.data.data = data;
	e.data.len = sizeof data;
	len = msraft__message__pack(&pb, raw);
	assert_int_equal(raft_transport_decode_msg(raw, len - 10, &d, NULL), MS_EINVAL);
	assert_int_equal(raft_transport_decode_msg(raw, len, &d, NULL), 0);
	assert_int_equal(d.n_entries, 1);
	raft_transport_msg_free(&d);
}

/* Every allocation of encode and decode failing in turn: a clean error, no
 * leak (the ASan build checks), then success once allocations work. */
static void test_codec_oom(void **state)
{
	uint8_t d1[] = "abc", ctx[] = "ctx";
	uint64_t voters[] = {1, 2}, learners[] = {3};
	raft_entry ents[] = {{1, 2, RAFT_ENTRY_NORMAL, d1, 3}, {1, 3, RAFT_ENTRY_NORMAL, NULL, 0}};
	raft_msg m = {.type = RAFT_MSG_APP,
	              .from = 1,
	              .to = 2,
	              .term = 1,
	              .entries = ents,
	              .n_entries = 2,
	              .context = ctx,
	              .context_len = 3,
	              .snapshot = {9, 1, {voters, 2, learners, 1}}};
	uint8_t *ref;
	size_t ref_len;
	assert_int_equal(raft_transport_encode_msg(&m, &ref, &ref_len, NULL), 0);
	int failures = 0;
	for (long n = 1;; n++) {
		uint8_t *buf;
		size_t len;
		ms_alloc_fail_after(n);
		int rc = raft_transport_encode_msg(&m, &buf, &len, NULL);
		ms_alloc_fail_after(0);
		if (rc == 0) {
			assert_int_equal(len, ref_len);
			assert_memory_equal(buf, ref, len);
			ms_free(buf);
			break;
		}
		assert_int_equal(rc, MS_ENOMEM);
		assert_null(buf);
		failures++;
	}
	assert_true(failures >= 1);
	failures = 0;
	for (long n = 1;; n++) {
		raft_msg d;
		ms_alloc_fail_after(n);
		int rc = raft_transport_decode_msg(ref, ref_len, &d, NULL);
		ms_alloc_fail_after(0);
		if (rc == 0) {
			assert_msg_equal(&m, &d);
			raft_transport_msg_free(&d);
			break;
		}
		assert_true(rc == MS_ENOMEM || rc == MS_EINVAL); /* protobuf-c reports OOM as undecodable */
		assert_null(d.entries);
		assert_null(d.context);
		failures++;
	}
	assert_true(failures >= 4); /* unpack, entries, context, voters, learners */
	ms_free(ref);
}

/* ---- delivery ---- */

static void test_three_members_in_order(void **state)
{
	rec r[3] = {0};
	for (int i = 0; i < 3; i++)
		member_start(&r[i], (uint64_t)i + 1, 0);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			if (i != j)
				add_peer(&r[i], (uint64_t)j + 1, raft_transport_port(r[j].t));
	const uint64_t N = 300;
	for (uint64_t s = 1; s <= N; s++) {
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 3; j++)
				if (i != j)
					assert_int_equal(send_seq(&r[i], (uint64_t)j + 1, s, (size_t)(s % 4)), 0);
		if (s % 50 == 0)
			spin(3); /* some sent while connecting, some on live connections */
	}
	RUN_UNTIL(r[0].n_msgs == 2 * N && r[1].n_msgs == 2 * N && r[2].n_msgs == 2 * N);
	for (int i = 0; i < 3; i++) {
		assert_false(r[i].bad_content);
		for (int j = 0; j < 3; j++) {
			if (i == j)
				continue;
			assert_int_equal(count_from(&r[i], (uint64_t)j + 1), N);
			assert_true(in_order(&r[i], (uint64_t)j + 1));
			assert_true(raft_transport_peer_active(r[i].t, (uint64_t)j + 1));
			assert_int_equal(r[i].unreachable[j + 1], 0);
		}
	}
	/* an unknown peer is refused without a callback; a SNAP needs its files */
	raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 5};
	assert_int_equal(raft_transport_send(r[0].t, &m), MS_ENOTFOUND);
	m.type = RAFT_MSG_SNAP;
	m.to = 2;
	assert_int_equal(raft_transport_send(r[0].t, &m), MS_EINVAL);
	for (int i = 0; i < 3; i++)
		member_free(&r[i]);
}

static void test_down_peer_then_reconnect(void **state)
{
	rec a = {0}, b = {0};
	member_start(&a, 1, 0);
	member_start(&b, 2, 0);
	int port = raft_transport_port(b.t);
	add_peer(&a, 2, port);
	add_peer(&b, 1, raft_transport_port(a.t));
	assert_int_equal(send_seq(&a, 2, 1, 1), 0);
	RUN_UNTIL(b.n_msgs == 1);
	assert_true(raft_transport_peer_active(a.t, 2));

	/* b goes down: a notices, and what it sends meanwhile is dropped */
	member_stop(&b);
	RUN_UNTIL(a.unreachable[2] >= 1);
	assert_false(raft_transport_peer_active(a.t, 2));
	size_t before = a.unreachable[2];
	uint64_t seq = 2;
	int rc;
	while ((rc = send_seq(&a, 2, seq++, 1)) == 0)
		spin(1); /* a dial may be under way; it fails and backs off */
	assert_int_equal(rc, MS_EAGAIN);
	RUN_UNTIL(a.unreachable[2] > before);
	/* a keeps redialing on its own (backoff); every failed dial reports */
	before = a.unreachable[2];
	RUN_UNTIL(a.unreachable[2] >= before + 3);
	assert_false(raft_transport_peer_active(a.t, 2));

	/* b comes back on the same port: a redials (backoff) and delivery resumes */
	size_t old = b.n_msgs;
	member_start(&b, 2, port);
	add_peer(&b, 1, raft_transport_port(a.t));
	RUN_UNTIL(b.n_msgs > old || (send_seq(&a, 2, seq++, 1), false));
	RUN_UNTIL(raft_transport_peer_active(a.t, 2));
	/* now every message gets through, in order */
	old = b.n_msgs;
	for (int i = 0; i < 100; i++)
		assert_int_equal(send_seq(&a, 2, seq++, 2), 0);
	RUN_UNTIL(b.n_msgs == old + 100);
	assert_true(in_order(&b, 1));
	assert_false(b.bad_content);
	member_free(&a);
	member_free(&b);
}

static void test_queue_bound(void **state)
{
	rec a = {0}, b = {0};
	member_start(&a, 1, 0);
	member_start(&b, 2, 0);
	raft_transport_set_limits(a.t, 8192, 0, 0);
	add_peer(&a, 2, raft_transport_port(b.t));
	add_peer(&b, 1, raft_transport_port(a.t));
	/* nothing runs the loop: the output buffer fills while connecting */
	uint64_t seq = 1;
	int rc;
	while ((rc = send_seq(&a, 2, seq, 3)) == 0)
		seq++;
	assert_int_equal(rc, MS_EAGAIN);
	assert_true(seq > 5);
	assert_int_equal(a.unreachable[2], 0); /* never from inside a call */
	RUN_UNTIL(a.unreachable[2] == 1 && b.n_msgs == seq - 1);
	assert_true(in_order(&b, 1));
	assert_false(b.bad_content);
	member_free(&a);
	member_free(&b);
}

static void test_forward(void **state)
{
	rec a = {0}, b = {0};
	member_start(&a, 1, 0);
	member_start(&b, 2, 0);
	add_peer(&a, 2, raft_transport_port(b.t));
	add_peer(&b, 1, raft_transport_port(a.t));
	uint8_t big[100000];
	fill_pattern(big, sizeof big, 5);
	assert_int_equal(raft_transport_forward(a.t, 2, big, sizeof big), 0);
	RUN_UNTIL(b.n_forward == 1);
	assert_int_equal(b.fwd_from, 1);
	assert_int_equal(b.fwd_len, sizeof big);
	assert_memory_equal(b.fwd, big, sizeof big);
	assert_int_equal(raft_transport_forward(a.t, 2, NULL, 0), 0);
	RUN_UNTIL(b.n_forward == 2);
	assert_int_equal(b.fwd_len, 0);
	assert_int_equal(raft_transport_forward(a.t, 3, big, 1), MS_ENOTFOUND);
	member_free(&a);
	member_free(&b);
}

/* ---- snapshots ---- */

static void write_file(const char *dir, const char *name, size_t len, uint64_t seed)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	uint8_t *p = malloc(len ? len : 1);
	fill_pattern(p, len, seed);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, len, f), len);
	fclose(f);
	free(p);
}

static void assert_same_file(const char *a, const char *b, const char *name)
{
	char pa[512], pb[512];
	snprintf(pa, sizeof pa, "%s/%s", a, name);
	snprintf(pb, sizeof pb, "%s/%s", b, name);
	FILE *fa = fopen(pa, "rb"), *fb = fopen(pb, "rb");
	assert_non_null(fa);
	assert_non_null(fb);
	static uint8_t ba[1 << 16], bb[1 << 16];
	for (;;) {
		size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
		assert_int_equal(na, nb);
		if (na == 0)
			break;
		assert_memory_equal(ba, bb, na);
	}
	fclose(fa);
	fclose(fb);
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

static void test_snapshot(void **state)
{
	rec a = {0}, b = {0};
	member_start(&a, 1, 0);
	member_start(&b, 2, 0);
	add_peer(&a, 2, raft_transport_port(b.t));
	add_peer(&b, 1, raft_transport_port(a.t));
	char src[] = "/tmp/ms-transport-src-XXXXXX";
	assert_non_null(mkdtemp(src));
	write_file(src, "000123.sst", 3 * 1024 * 1024 + 12345, 1); /* > 3 MiB: several chunks */
	write_file(src, "CURRENT", 16, 2);
	write_file(src, "empty.log", 0, 3);
	size_t still_ok;
	char sub[600];
	snprintf(sub, sizeof sub, "%s/subdir", src); /* not a regular file: skipped */
	assert_int_equal(mkdir(sub, 0700), 0);

	uint64_t voters[] = {1, 2, 3}, learners[] = {4};
	raft_msg snap = {
	    .type = RAFT_MSG_SNAP, .from = 1, .to = 2, .term = 3, .snapshot = {42, 3, {voters, 3, learners, 1}}};
	assert_int_equal(raft_transport_send_snapshot(a.t, &snap, src), 0);
	/* ordinary traffic keeps flowing on its own connection meanwhile */
	assert_int_equal(send_seq(&a, 2, 1, 1), 0);
	RUN_UNTIL(a.snap_ok + a.snap_fail == 1 && b.n_msgs == 1);
	assert_int_equal(a.snap_ok, 1);
	assert_true(b.has_snap);
	assert_msg_equal(&snap, &b.snap_msg);
	assert_non_null(strstr(b.snap_got, b.snap_dir));
	assert_non_null(strstr(b.snap_got, "/incoming-1-"));
	assert_int_equal(count_entries(b.snap_got), 3);
	assert_same_file(src, b.snap_got, "000123.sst");
	assert_same_file(src, b.snap_got, "CURRENT");
	assert_same_file(src, b.snap_got, "empty.log");

	/* the receiver cannot store it (its snapshot directory is gone): it
	 * closes the stream and the sender reports failure */
	rm_rf(b.snap_got);
	assert_int_equal(rmdir(b.snap_dir), 0);
	b.has_snap = false;
	assert_int_equal(raft_transport_send_snapshot(a.t, &snap, src), 0);
	RUN_UNTIL(a.snap_fail == 1);
	assert_int_equal(a.snap_ok, 1);
	assert_false(b.has_snap);
	assert_int_equal(mkdir(b.snap_dir, 0700), 0);
	still_ok = b.n_msgs;
	assert_int_equal(send_seq(&a, 2, 2, 1), 0); /* the peer connection is unaffected */
	RUN_UNTIL(b.n_msgs == still_ok + 1);

	/* to a peer that is down: reported as failed, from the loop */
	add_peer(&a, 3, 1); /* nothing listens on port 1 */
	snap.to = 3;
	assert_int_equal(raft_transport_send_snapshot(a.t, &snap, src), 0);
	assert_int_equal(a.snap_fail, 1);
	RUN_UNTIL(a.snap_fail == 2);
	/* bad arguments: no callback */
	assert_int_equal(raft_transport_send_snapshot(a.t, &snap, "/nonexistent/dir"), MS_EIO);
	snap.to = 6;
	assert_int_equal(raft_transport_send_snapshot(a.t, &snap, src), MS_ENOTFOUND);
	snap.type = RAFT_MSG_APP;
	assert_int_equal(raft_transport_send_snapshot(a.t, &snap, src), MS_EINVAL);
	spin(5);
	assert_int_equal(a.snap_ok, 1);
	assert_int_equal(a.snap_fail, 2);
	rm_rf(src);
	member_free(&a);
	member_free(&b);
}

/* ---- bad input on the peer port ---- */

static int raw_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void raw_frame(int fd, uint8_t kind, const void *payload, size_t n)
{
	uint8_t h[5];
	uint32_t l = (uint32_t)n + 1;
	h[0] = (uint8_t)(l >> 24);
	h[1] = (uint8_t)(l >> 16);
	h[2] = (uint8_t)(l >> 8);
	h[3] = (uint8_t)l;
	h[4] = kind;
	raw_send(fd, h, 5);
	if (n)
		raw_send(fd, payload, n);
}

static void raw_hello(int fd, uint64_t cluster, uint64_t from, uint64_t to)
{
	Msraft__Hello h = MSRAFT__HELLO__INIT;
	h.cluster_id = cluster;
	h.from_id = from;
	h.to_id = to;
	h.version = 1;
	uint8_t buf[64];
	size_t n = msraft__hello__pack(&h, buf);
	raw_frame(fd, RAFT_TR_HELLO, buf, n);
}

static void raw_snap_begin(int fd, uint64_t files, uint64_t bytes)
{
	Msraft__SnapBegin b = MSRAFT__SNAP_BEGIN__INIT;
	b.files = files;
	b.bytes = bytes;
	uint8_t buf[64];
	raw_frame(fd, RAFT_TR_SNAP_BEGIN, buf, msraft__snap_begin__pack(&b, buf));
}

static void raw_chunk(int fd, const char *name, uint64_t off, const uint8_t *data, size_t len)
{
	Msraft__SnapChunk ch = MSRAFT__SNAP_CHUNK__INIT;
	ch.name = (char *)name;
	ch.offset = off;
	ch.data.data = (uint8_t *)data;
	ch.data.len = len;
	size_t n = msraft__snap_chunk__get_packed_size(&ch);
	uint8_t *buf = malloc(n);
	msraft__snap_chunk__pack(&ch, buf);
	raw_frame(fd, RAFT_TR_SNAP_CHUNK, buf, n);
	free(buf);
}

static bool raw_closed(int fd)
{
	char c;
	ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
	return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void raw_msg(int fd, uint64_t from, uint64_t to, uint64_t index)
{
	raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = from, .to = to, .term = 1, .index = index};
	uint8_t *buf;
	size_t len;
	assert_int_equal(raft_transport_encode_msg(&m, &buf, &len, NULL), 0);
	raw_frame(fd, RAFT_TR_MSG, buf, len);
	ms_free(buf);
}

/* A good member keeps talking to b while a bad connection is refused. */
static void still_working(rec *a, rec *b, uint64_t *seq)
{
	size_t n = b->n_msgs;
	assert_int_equal(send_seq(a, 2, (*seq)++, 1), 0);
	RUN_UNTIL(b->n_msgs == n + 1);
}

static void test_bad_input(void **state)
{
	rec a = {0}, b = {0};
	member_start(&a, 1, 0);
	member_start(&b, 2, 0);
	int port = raft_transport_port(b.t);
	add_peer(&a, 2, port);
	add_peer(&b, 1, raft_transport_port(a.t));
	add_peer(&b, 5, 1); /* the raw connections speak for member 5 */
	uint64_t seq = 1;
	still_working(&a, &b, &seq);

	/* a well-formed raw connection is served (so the refusals below are
	 * about what each one gets wrong) */
	int good = raw_connect(port);
	raw_hello(good, CLUSTER, 5, 2);
	raw_msg(good, 5, 2, 1000);
	RUN_UNTIL(b.n_msgs == 2);
	assert_int_equal(b.msgs[1].from, 5);
	assert_int_equal(b.msgs[1].index, 1000);

	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	uint8_t oversized[] = {0x7f, 0xff, 0xff, 0xff, RAFT_TR_MSG, 0};
	uint8_t zero_len[] = {0, 0, 0, 0, RAFT_TR_MSG};
	uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	char evil_name[] = "../evil", good_name[] = "ok";
	for (int kase = 0; kase < 14; kase++) {
		int fd = raw_connect(port);
		switch (kase) {
		case 0: /* garbage */
			raw_send(fd, http, sizeof http - 1);
			break;
		case 1: /* length > max */
			raw_send(fd, oversized, sizeof oversized);
			break;
		case 2: /* length 0 */
			raw_send(fd, zero_len, sizeof zero_len);
			break;
		case 3: /* wrong cluster */
			raw_hello(fd, CLUSTER + 1, 5, 2);
			break;
		case 4: /* not for this member */
			raw_hello(fd, CLUSTER, 5, 3);
			break;
		case 5: /* no HELLO first */
			raw_msg(fd, 5, 2, 1);
			break;
		case 6: /* unknown kind */
			raw_hello(fd, CLUSTER, 5, 2);
			raw_frame(fd, 99, "x", 1);
			break;
		case 7: /* undecodable payload */
			raw_hello(fd, CLUSTER, 5, 2);
			raw_frame(fd, RAFT_TR_MSG, junk, sizeof junk);
			break;
		case 8: /* from != HELLO's */
			raw_hello(fd, CLUSTER, 5, 2);
			raw_msg(fd, 6, 2, 1);
			break;
		case 9: /* to another member */
			raw_hello(fd, CLUSTER, 5, 2);
			raw_msg(fd, 5, 4, 1);
			break;
		case 11: { /* a SNAP without its files */
			raw_hello(fd, CLUSTER, 5, 2);
			raft_msg m = {.type = RAFT_MSG_SNAP, .from = 5, .to = 2, .term = 1};
			uint8_t *buf;
			size_t len;
			assert_int_equal(raft_transport_encode_msg(&m, &buf, &len, NULL), 0);
			raw_frame(fd, RAFT_TR_MSG, buf, len);
			ms_free(buf);
			break;
		}
		case 12: /* a second HELLO */
			raw_hello(fd, CLUSTER, 5, 2);
			raw_hello(fd, CLUSTER, 5, 2);
			break;
		case 13: { /* a snapshot whose totals do not match what arrived */
			raw_hello(fd, CLUSTER, 5, 2);
			raft_msg m = {.type = RAFT_MSG_SNAP, .from = 5, .to = 2, .term = 1};
			uint8_t *buf, out[128];
			size_t len;
			assert_int_equal(raft_transport_encode_msg(&m, &buf, &len, NULL), 0);
			Msraft__SnapEnd e = MSRAFT__SNAP_END__INIT;
			e.msg.data = buf;
			e.msg.len = len;
			e.files = 1;
			raw_snap_begin(fd, 1, 0);
			raw_frame(fd, RAFT_TR_SNAP_END, out, msraft__snap_end__pack(&e, out));
			ms_free(buf);
			break;
		}
		case 10: { /* path escape */
			raw_hello(fd, CLUSTER, 5, 2);
			raw_snap_begin(fd, 2, 9);
			Msraft__SnapChunk ch = MSRAFT__SNAP_CHUNK__INIT;
			ch.name = good_name; /* starts a snapshot directory */
			ch.data.data = (uint8_t *)"fine";
			ch.data.len = 4;
			uint8_t buf[64];
			size_t n = msraft__snap_chunk__pack(&ch, buf);
			raw_frame(fd, RAFT_TR_SNAP_CHUNK, buf, n);
			ch.name = evil_name;
			ch.data.data = (uint8_t *)"pwned";
			ch.data.len = 5;
			n = msraft__snap_chunk__pack(&ch, buf);
			raw_frame(fd, RAFT_TR_SNAP_CHUNK, buf, n);
			break;
		}
		}
		RUN_UNTIL(raw_closed(fd));
		close(fd);
		still_working(&a, &b, &seq);
	}
	/* the escape created nothing, and the partial snapshot dir is gone */
	char evil[512];
	snprintf(evil, sizeof evil, "%s/evil", b.snap_dir);
	assert_int_equal(access(evil, F_OK), -1);
	assert_int_equal(count_entries(b.snap_dir), 0);
	/* the good raw connection survived all of it */
	size_t n = b.n_msgs;
	raw_msg(good, 5, 2, 1001);
	RUN_UNTIL(b.n_msgs == n + 1);
	assert_false(raw_closed(good));
	close(good);
	assert_int_equal(a.unreachable[2], 0);
	assert_true(in_order(&b, 1));
	member_free(&a);
	member_free(&b);
}

/* ---- who may talk, and how much an unfinished connection can hold ---- */

static void test_member_rules(void **state)
{
	rec a = {0}, b = {0};
	member_start(&a, 1, 0);
	member_start(&b, 2, 0);
	int port = raft_transport_port(b.t);
	add_peer(&a, 2, port);
	add_peer(&b, 1, raft_transport_port(a.t));
	uint64_t seq = 1;
	still_working(&a, &b, &seq);

	/* a made-up member id: refused at HELLO, its message never delivered */
	size_t n = b.n_msgs;
	int fd = raw_connect(port);
	raw_hello(fd, CLUSTER, 6, 2);
	raw_msg(fd, 6, 2, 77);
	RUN_UNTIL(raw_closed(fd));
	close(fd);
	still_working(&a, &b, &seq);
	assert_int_equal(b.n_msgs, n + 1);
	assert_int_equal(count_from(&b, 6), 0);

	/* a member that is removed: its open connection is closed and its
	 * frames are not delivered any more */
	add_peer(&b, 6, 1);
	fd = raw_connect(port);
	raw_hello(fd, CLUSTER, 6, 2);
	raw_msg(fd, 6, 2, 78);
	RUN_UNTIL(count_from(&b, 6) == 1);
	raft_transport_remove_peer(b.t, 6);
	RUN_UNTIL(raw_closed(fd));
	close(fd);
	fd = raw_connect(port);
	raw_hello(fd, CLUSTER, 6, 2);
	raw_msg(fd, 6, 2, 79);
	RUN_UNTIL(raw_closed(fd));
	close(fd);
	assert_int_equal(count_from(&b, 6), 1);

	/* a joiner gets one answer and nothing else: a second JOIN, or any
	 * other frame, closes; a JOIN over RAFT_TRANSPORT_MAX_JOIN closes */
	for (int kase = 0; kase < 3; kase++) {
		fd = raw_connect(port);
		raw_hello(fd, 0, 0, 0);
		if (kase == 2) {
			uint8_t h[5] = {0, 2, 0, 0, RAFT_TR_JOIN}; /* 128 KiB */
			raw_send(fd, h, sizeof h);
			RUN_UNTIL(raw_closed(fd));
			close(fd);
			continue;
		}
		size_t joins = b.n_joins;
		raw_frame(fd, RAFT_TR_JOIN, "me", 2);
		RUN_UNTIL(b.n_joins == joins + 1);
		raw_msg(fd, 1, 2, 80);
		if (kase == 1)
			raw_frame(fd, RAFT_TR_JOIN, "me", 2);
		RUN_UNTIL(raw_closed(fd));
		close(fd);
		assert_int_equal(b.n_joins, joins + 1);
	}

	/* before HELLO a frame may not announce more than a HELLO needs: the
	 * connection is closed on the header alone, nothing is buffered */
	fd = raw_connect(port);
	uint8_t big[5] = {0x03, 0xff, 0xff, 0xff, RAFT_TR_HELLO}; /* 64 MiB */
	raw_send(fd, big, sizeof big);
	RUN_UNTIL(raw_closed(fd));
	close(fd);
	fd = raw_connect(port);
	uint8_t just_over[5] = {0, 0, (RAFT_TRANSPORT_MAX_HELLO + 1) >> 8, (RAFT_TRANSPORT_MAX_HELLO + 1) & 0xff,
	                        RAFT_TR_HELLO};
	raw_send(fd, just_over, sizeof just_over);
	RUN_UNTIL(raw_closed(fd));
	close(fd);

	/* connections that never greet: at most RAFT_TRANSPORT_MAX_UNGREETED
	 * wait; the next is closed at accept, and members still get through */
	int idle[RAFT_TRANSPORT_MAX_UNGREETED];
	for (int i = 0; i < RAFT_TRANSPORT_MAX_UNGREETED; i++) {
		idle[i] = raw_connect(port);
		raw_send(idle[i], big, 2); /* half a header */
	}
	spin(50);
	for (int i = 0; i < RAFT_TRANSPORT_MAX_UNGREETED; i++)
		assert_false(raw_closed(idle[i]));
	fd = raw_connect(port);
	RUN_UNTIL(raw_closed(fd));
	close(fd);
	int member = raw_connect(port); /* greets at once: refused too while the slots are full */
	raw_hello(member, CLUSTER, 1, 2);
	RUN_UNTIL(raw_closed(member));
	close(member);
	still_working(&a, &b, &seq); /* a's established connection is unaffected */
	close(idle[0]);
	spin(20);
	member = raw_connect(port); /* a slot is free again */
	raw_hello(member, CLUSTER, 1, 2);
	raw_msg(member, 1, 2, 5000);
	n = b.n_msgs;
	RUN_UNTIL(b.n_msgs == n + 1);
	assert_false(raw_closed(member));
	close(member);
	for (int i = 1; i < RAFT_TRANSPORT_MAX_UNGREETED; i++)
		close(idle[i]);

	/* a member id holds at most RAFT_TRANSPORT_MAX_CONNS_PER_PEER inbound
	 * connections: the oldest goes when another one greets */
	add_peer(&b, 7, 1);
	int conns[RAFT_TRANSPORT_MAX_CONNS_PER_PEER + 1];
	for (int i = 0; i <= RAFT_TRANSPORT_MAX_CONNS_PER_PEER; i++) {
		conns[i] = raw_connect(port);
		raw_hello(conns[i], CLUSTER, 7, 2);
		raw_msg(conns[i], 7, 2, 100 + (uint64_t)i);
		RUN_UNTIL(count_from(&b, 7) == (size_t)i + 1);
	}
	RUN_UNTIL(raw_closed(conns[0]));
	for (int i = 1; i <= RAFT_TRANSPORT_MAX_CONNS_PER_PEER; i++)
		assert_false(raw_closed(conns[i]));
	for (int i = 0; i <= RAFT_TRANSPORT_MAX_CONNS_PER_PEER; i++)
		close(conns[i]);
	member_free(&a);
	member_free(&b);
}

/* Snapshot streams: announced first, refused when unexpected, over the cap,
 * over free disk, or longer than announced. */
static void test_snapshot_bounds(void **state)
{
	rec a = {0}, b = {0};
	member_start(&a, 1, 0);
	member_start(&b, 2, 0);
	int port = raft_transport_port(b.t);
	add_peer(&a, 2, port);
	add_peer(&b, 1, raft_transport_port(a.t));
	raft_transport_set_snap_limits(b.t, 1 << 20, 0);
	uint8_t data[4096];
	fill_pattern(data, sizeof data, 9);
	uint64_t seq = 1;
	for (int kase = 0; kase < 6; kase++) {
		int fd = raw_connect(port);
		raw_hello(fd, CLUSTER, 1, 2);
		switch (kase) {
		case 0: /* a chunk with no announcement */
			raw_chunk(fd, "f", 0, data, 10);
			break;
		case 1: /* more bytes than announced (the chunk is refused whole) */
			raw_snap_begin(fd, 1, 100);
			raw_chunk(fd, "f", 0, data, 100);
			raw_chunk(fd, "f", 100, data, 1);
			break;
		case 2: /* more files than announced */
			raw_snap_begin(fd, 1, 100);
			raw_chunk(fd, "f", 0, data, 10);
			raw_chunk(fd, "g", 0, data, 10);
			break;
		case 3: /* over the hard cap */
			raw_snap_begin(fd, 1, (1 << 20) + 1);
			break;
		case 4: /* the receiver does not expect a snapshot from it */
			b.refuse_snaps = true;
			raw_snap_begin(fd, 1, 10);
			break;
		case 5: /* would not fit on the disk (the reserve is the whole disk) */
			b.refuse_snaps = false;
			raft_transport_set_snap_limits(b.t, UINT64_C(1) << 60, UINT64_C(1) << 60);
			raw_snap_begin(fd, 1, 10);
			break;
		}
		RUN_UNTIL(raw_closed(fd));
		close(fd);
		still_working(&a, &b, &seq);
		assert_int_equal(count_entries(b.snap_dir), 0);
		assert_false(b.has_snap);
	}
	raft_transport_set_snap_limits(b.t, 1 << 20, 1);

	/* a stream that keeps to its announcement is delivered */
	int fd = raw_connect(port);
	raw_hello(fd, CLUSTER, 1, 2);
	raw_snap_begin(fd, 1, sizeof data);
	raw_chunk(fd, "f", 0, data, sizeof data);
	raft_msg m = {.type = RAFT_MSG_SNAP, .from = 1, .to = 2, .term = 1, .snapshot = {5, 1, {0}}};
	uint8_t *buf, out[256];
	size_t len;
	assert_int_equal(raft_transport_encode_msg(&m, &buf, &len, NULL), 0);
	Msraft__SnapEnd e = MSRAFT__SNAP_END__INIT;
	e.msg.data = buf;
	e.msg.len = len;
	e.files = 1;
	e.bytes = sizeof data;
	raw_frame(fd, RAFT_TR_SNAP_END, out, msraft__snap_end__pack(&e, out));
	ms_free(buf);
	RUN_UNTIL(b.has_snap);
	assert_int_equal(b.snap_msg.snapshot.index, 5);
	close(fd);

	/* and the real sender announces what it sends */
	b.has_snap = false;
	rm_rf(b.snap_got);
	char src[] = "/tmp/ms-transport-src-XXXXXX";
	assert_non_null(mkdtemp(src));
	write_file(src, "a.sst", 300000, 1);
	write_file(src, "b", 7, 2);
	m.snapshot.index = 6;
	assert_int_equal(raft_transport_send_snapshot(a.t, &m, src), 0);
	RUN_UNTIL(a.snap_ok + a.snap_fail == 1);
	assert_int_equal(a.snap_ok, 1);
	assert_true(b.has_snap);
	assert_same_file(src, b.snap_got, "a.sst");
	/* over the receiver's cap: refused, and the sender reports failure */
	raft_transport_set_snap_limits(b.t, 1000, 0);
	b.has_snap = false;
	assert_int_equal(raft_transport_send_snapshot(a.t, &m, src), 0);
	RUN_UNTIL(a.snap_fail == 1);
	assert_false(b.has_snap);
	rm_rf(src);
	member_free(&a);
	member_free(&b);
}

/* accept(2) failing with EMFILE pauses the listener instead of spinning on
 * the connection left in the backlog; it is served once fds are free. */
static void test_accept_backoff(void **state)
{
	rec a = {0}, b = {0};
	member_start(&a, 1, 0);
	member_start(&b, 2, 0);
	add_peer(&b, 1, raft_transport_port(a.t));
	int port = raft_transport_port(b.t);
	int client = socket(AF_INET, SOCK_STREAM, 0); /* its fd exists before the table is full */
	assert_true(client >= 0);
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = 256;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
	int fds[256], n = 0;
	for (int round = 0; round < 2; round++) {
		while (n < 256) {
			int fd = dup(client);
			if (fd < 0)
				break;
			fds[n++] = fd;
		}
		assert_int_equal(errno, EMFILE);
		spin(10); /* let closes still under way finish, then fill what they freed */
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(client, (struct sockaddr *)&sa, sizeof sa), 0); /* waits in the backlog */
	/* 300 ms of loop: the 5 ms tick makes ~60 iterations; a listener that
	 * retried accept at once would make thousands */
	int64_t end = ms_now_mono_ns() + 300 * 1000000LL;
	long iterations = 0;
	while (ms_now_mono_ns() < end) {
		event_base_loop(base, EVLOOP_ONCE);
		iterations++;
	}
	assert_true(iterations < 1000);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	/* with fds free again the listener resumes and the connection is served */
	raw_hello(client, CLUSTER, 1, 2);
	raw_msg(client, 1, 2, 9);
	RUN_UNTIL(b.n_msgs == 1);
	assert_int_equal(b.msgs[0].index, 9);
	close(client);
	member_free(&a);
	member_free(&b);
}

static void test_bad_args(void **state)
{
	rec a = {0};
	member_start(&a, 1, 0);
	ms_err err = {0};
	/* https without raft_transport_set_tls: no certificate to serve */
	assert_int_equal(raft_transport_listen(a.t, "https://127.0.0.1:0", &err), MS_EINVAL);
	assert_int_equal(raft_transport_listen(a.t, "ftp://127.0.0.1:0", &err), MS_EINVAL);
	assert_int_equal(raft_transport_listen(a.t, "127.0.0.1:0", &err), MS_EINVAL);
	assert_int_equal(raft_transport_listen(a.t, "http://127.0.0.1", &err), MS_EINVAL);
	assert_int_equal(raft_transport_listen(a.t, "http://127.0.0.1:99999", &err), MS_EINVAL);
	assert_int_equal(raft_transport_listen(a.t, "http://[::1:0", &err), MS_EINVAL);
	char *bad[] = {"ftp://10.0.0.1:2380"};
	assert_int_equal(raft_transport_set_peer(a.t, 2, bad, 1), MS_EINVAL);
	char *ok[] = {"http://[::1]:2380", "http://localhost:2380/"};
	assert_int_equal(raft_transport_set_peer(a.t, 2, ok, 2), 0);
	assert_int_equal(raft_transport_set_peer(a.t, 1, ok, 1), MS_EINVAL); /* self */
	assert_int_equal(raft_transport_set_peer(a.t, 0, ok, 1), MS_EINVAL);
	assert_false(raft_transport_peer_active(a.t, 2));
	raft_transport_remove_peer(a.t, 2);
	raft_transport_remove_peer(a.t, 2);
	raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2};
	assert_int_equal(raft_transport_send(a.t, &m), MS_ENOTFOUND);
	member_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codec_roundtrip),
	    cmocka_unit_test(test_codec_rejects),
	    cmocka_unit_test(test_codec_oom),
	    cmocka_unit_test(test_bad_args),
	    cmocka_unit_test(test_three_members_in_order),
	    cmocka_unit_test(test_down_peer_then_reconnect),
	    cmocka_unit_test(test_queue_bound),
	    cmocka_unit_test(test_forward),
	    cmocka_unit_test(test_snapshot),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_member_rules),
	    cmocka_unit_test(test_snapshot_bounds),
	    cmocka_unit_test(test_accept_backoff),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
