/* metastore_bench.c — metastore-bench, a gRPC load generator for any etcd
 * v3 endpoint (MetaStore or etcd), in the spirit of etcd's tools/benchmark:
 * put, range, txn, watch fan-out and lease loads over a few HTTP/2
 * connections with many calls in flight, then etcd's summary (totals,
 * requests/s, latency percentiles, histogram) and an optional JSON file.
 *
 * One libevent loop drives every connection: on the small machines this is
 * run on, a second client thread would only take CPU from the server under
 * test. Latency is measured from the moment a request is handed to the
 * client to the moment its response (or watch event) is parsed, with
 * CLOCK_MONOTONIC. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api/grpc.h"
#include "api/grpc_client.h"
#include "common/ms.h"
#include "common/tls.h"
#include "kv.pb-c.h"
#include "rpc.pb-c.h"

#define NS 1000000000LL
#define MAX_ENDPOINTS 16
#define MAX_ERRKINDS 32

typedef enum { OP_PUT, OP_RANGE, OP_TXN, OP_WATCH, OP_LEASE } op_kind;

typedef struct bopts {
	op_kind op;
	const char *op_name;
	char *endpoints[MAX_ENDPOINTS];
	int ports[MAX_ENDPOINTS];
	int nendpoints;
	int conns, clients;
	long total;
	int key_size, val_size;
	long key_space;
	bool sequential;
	double rate;
	const char *json;
	bool serializable; /* range --consistency s */
	int txn_ops;
	bool txn_cas; /* txn --txn-mode cas */
	int watchers, streams;
	bool lease_keepalive; /* lease --lease-op keepalive */
	int lease_ttl;
	double timeout_s;
	uint64_t seed;
	bool quiet;
	/* TLS (etcdctl's names): any of these or an https:// endpoint turns it on */
	const char *cacert, *cert, *key;
	bool tls, insecure_skip_verify;
} bopts;

typedef struct bench bench;

/* One in-flight request position: a "client" in etcd's tool. */
typedef struct slot {
	bench *b;
	int idx;
	grpc_client *cl;
	int64_t start;
	long key;                 /* the key index of the request in flight */
	grpc_client_call *stream; /* lease keep-alive: the slot's stream */
	int64_t lease_id;
	bool waiting; /* parked by the rate limiter */
	struct slot *next_wait;
} slot;

typedef struct errkind {
	int status;
	char msg[120];
	long count;
} errkind;

typedef struct lat_set {
	int64_t *v;
	long n, cap;
} lat_set;

struct bench {
	bopts o;
	struct event_base *base;
	grpc_client **cls;
	int ncls;
	ms_tls *tls; /* NULL: plaintext */
	slot *slots;
	long issued, completed;
	lat_set lat;
	errkind errs[MAX_ERRKINDS];
	int nerrs;
	long errs_other;
	int64_t t0, t1;
	uint64_t rng;
	long seq;
	uint8_t *val;
	/* rate limiter */
	int64_t next_at, interval;
	slot *wait_head;
	struct event *pacer;
	struct event *progress;
	bool tty;
	/* watch */
	grpc_client_call **wstreams;
	long wcreated, wexpected, wevents;
	lat_set wlat;
	bool puts_done;
	struct event *watch_grace;
	bool fatal;
	char fatal_msg[256];
};

static int64_t mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static uint64_t xs(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void lat_add(lat_set *s, int64_t v)
{
	if (s->n == s->cap) {
		long cap = s->cap ? s->cap * 2 : 1024;
		int64_t *p = ms_realloc(s->v, (size_t)cap * sizeof *p);
		if (!p) {
			fprintf(stderr, "metastore-bench: out of memory\n");
			exit(1);
		}
		s->v = p;
		s->cap = cap;
	}
	s->v[s->n++] = v;
}

static void record_error(bench *b, int status, const char *msg)
{
	for (int i = 0; i < b->nerrs; i++)
		if (b->errs[i].status == status && strncmp(b->errs[i].msg, msg, sizeof b->errs[i].msg - 1) == 0) {
			b->errs[i].count++;
			return;
		}
	if (b->nerrs == MAX_ERRKINDS) {
		b->errs_other++;
		return;
	}
	errkind *e = &b->errs[b->nerrs++];
	e->status = status;
	snprintf(e->msg, sizeof e->msg, "%s", msg);
	e->count = 1;
}

static void stop(bench *b, const char *why)
{
	if (why && !b->fatal) {
		b->fatal = true;
		snprintf(b->fatal_msg, sizeof b->fatal_msg, "%s", why);
	}
	event_base_loopbreak(b->base);
}

/* ---- keys and requests ---- */

/* A key of key_size bytes: the index in zero-padded decimal, so keys sort
 * like their indexes and every key has the same size. */
static void make_key(const bench *b, long idx, char *out)
{
	snprintf(out, (size_t)b->o.key_size + 1, "%0*ld", b->o.key_size, idx);
}

static long next_index(bench *b)
{
	if (b->o.sequential)
		return b->seq++ % b->o.key_space;
	return (long)(xs(&b->rng) % (uint64_t)b->o.key_space);
}

/* Packs the next request of the load into buf (grown as needed). */
static size_t build_request(bench *b, long *key, const char **path, uint8_t **buf, size_t *cap)
{
	char keys[64][32];
	ProtobufCMessage *m = NULL;
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__LeaseGrantRequest lg = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	Etcdserverpb__PutRequest puts[64];
	Etcdserverpb__RequestOp ops[64], *opp[64];
	Etcdserverpb__RangeRequest franges[64];
	Etcdserverpb__RequestOp fops[64], *fopp[64];
	Etcdserverpb__Compare cmps[64], *cmpp[64];
	long idx = next_index(b);
	*key = idx;
	switch (b->o.op) {
	case OP_PUT:
	case OP_WATCH:
		make_key(b, idx, keys[0]);
		put.key.data = (uint8_t *)keys[0];
		put.key.len = (size_t)b->o.key_size;
		if (b->o.op == OP_WATCH) /* the event carries its own send time */
			ms_put_u64le(b->val, (uint64_t)mono());
		put.value.data = b->val;
		put.value.len = (size_t)b->o.val_size;
		*path = "/etcdserverpb.KV/Put";
		m = &put.base;
		break;
	case OP_RANGE:
		make_key(b, idx, keys[0]);
		rr.key.data = (uint8_t *)keys[0];
		rr.key.len = (size_t)b->o.key_size;
		rr.serializable = b->o.serializable;
		*path = "/etcdserverpb.KV/Range";
		m = &rr.base;
		break;
	case OP_TXN:
		for (int i = 0; i < b->o.txn_ops; i++) {
			/* distinct keys: a txn may not put one key twice */
			make_key(b, (idx + i) % b->o.key_space, keys[i]);
			ProtobufCBinaryData k = {(size_t)b->o.key_size, (uint8_t *)keys[i]};
			puts[i] = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
			puts[i].key = k;
			puts[i].value.data = b->val;
			puts[i].value.len = (size_t)b->o.val_size;
			ops[i] = (Etcdserverpb__RequestOp)ETCDSERVERPB__REQUEST_OP__INIT;
			ops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
			ops[i].request_put = &puts[i];
			opp[i] = &ops[i];
			if (b->o.txn_cas) {
				/* compare-and-put: mod_revision(key) < huge holds for every
				 * key (0 for a missing one), so the put branch runs, but the
				 * server must read the key to decide */
				cmps[i] = (Etcdserverpb__Compare)ETCDSERVERPB__COMPARE__INIT;
				cmps[i].result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS;
				cmps[i].target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
				cmps[i].key = k;
				cmps[i].target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
				cmps[i].mod_revision = INT64_MAX;
				cmpp[i] = &cmps[i];
				franges[i] = (Etcdserverpb__RangeRequest)ETCDSERVERPB__RANGE_REQUEST__INIT;
				franges[i].key = k;
				fops[i] = (Etcdserverpb__RequestOp)ETCDSERVERPB__REQUEST_OP__INIT;
				fops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
				fops[i].request_range = &franges[i];
				fopp[i] = &fops[i];
			}
		}
		txn.n_success = (size_t)b->o.txn_ops;
		txn.success = opp;
		if (b->o.txn_cas) {
			txn.n_compare = txn.n_failure = (size_t)b->o.txn_ops;
			txn.compare = cmpp;
			txn.failure = fopp;
		}
		*path = "/etcdserverpb.KV/Txn";
		m = &txn.base;
		break;
	case OP_LEASE:
		lg.ttl = b->o.lease_ttl;
		*path = "/etcdserverpb.Lease/LeaseGrant";
		m = &lg.base;
		break;
	}
	size_t len = protobuf_c_message_get_packed_size(m);
	if (len > *cap) {
		uint8_t *p = ms_realloc(*buf, len);
		if (!p) {
			fprintf(stderr, "metastore-bench: out of memory\n");
			exit(1);
		}
		*buf = p;
		*cap = len;
	}
	protobuf_c_message_pack(m, *buf);
	return len;
}

/* ---- the driver: each slot keeps one request in flight ---- */

static void slot_issue(slot *s);

static void progress_cb(evutil_socket_t fd, short what, void *arg)
{
	bench *b = arg;
	long done = b->completed, total = b->o.total;
	int width = 40, fill = total ? (int)(done * width / total) : width;
	double el = (double)(mono() - b->t0) / NS;
	fprintf(stderr, "\r %3ld%% [%.*s%*s] %ld/%ld  %.0f req/s ", total ? done * 100 / total : 100, fill,
	        "========================================", width - fill, "", done, total, el > 0 ? done / el : 0.0);
	fflush(stderr);
}

static void finish_run(bench *b)
{
	b->t1 = mono();
	if (b->o.op == OP_WATCH) {
		b->puts_done = true;
		if (b->wevents >= b->wexpected) {
			event_base_loopbreak(b->base);
		} else {
			/* events still in flight: wait a bounded while, then report what is missing */
			struct timeval tv = {10, 0};
			evtimer_add(b->watch_grace, &tv);
		}
		return;
	}
	event_base_loopbreak(b->base);
}

static void slot_complete(slot *s, int status, const char *msg)
{
	bench *b = s->b;
	if (status == GRPC_OK) {
		lat_add(&b->lat, mono() - s->start);
		if (b->o.op == OP_WATCH) /* the watchers of key k: k, k + K, k + 2K, ... below W */
			b->wexpected += b->o.watchers / b->o.key_space + (s->key < b->o.watchers % b->o.key_space);
	} else
		record_error(b, status, msg);
	if (++b->completed == b->o.total) {
		finish_run(b);
		return;
	}
	slot_issue(s);
}

static void unary_done(grpc_client_call *call, int status, const char *message, void *ud)
{
	slot_complete(ud, status, message);
}

static void pacer_cb(evutil_socket_t fd, short what, void *arg)
{
	bench *b = arg;
	while (b->wait_head) {
		slot *s = b->wait_head;
		b->wait_head = s->next_wait;
		s->waiting = false;
		slot_issue(s);
		if (s->waiting)
			break; /* re-parked: the timer is armed again */
	}
}

/* Rate limit: true when s may send now; otherwise s is parked. */
static bool pace(slot *s)
{
	bench *b = s->b;
	if (b->interval == 0)
		return true;
	int64_t now = mono();
	/* timers fire late by up to a millisecond: catch up on what was missed
	 * within a short window, but no long bursts after an idle stretch */
	int64_t window = MS_MAX(b->interval, 10 * 1000000LL);
	if (b->next_at < now - window)
		b->next_at = now - window;
	if (b->next_at <= now) {
		b->next_at += b->interval;
		return true;
	}
	s->waiting = true;
	s->next_wait = NULL;
	slot **pp = &b->wait_head;
	while (*pp)
		pp = &(*pp)->next_wait;
	*pp = s;
	if (!evtimer_pending(b->pacer, NULL)) {
		int64_t d = (b->next_at - now + 999) / 1000;
		struct timeval tv = {(time_t)(d / 1000000), (suseconds_t)(d % 1000000)};
		evtimer_add(b->pacer, &tv);
	}
	return false;
}

static void slot_issue(slot *s)
{
	bench *b = s->b;
	static uint8_t *buf;
	static size_t cap;
	int64_t tmo = b->o.timeout_s > 0 ? (int64_t)(b->o.timeout_s * NS) : 0;
	/* a loop, not recursion: calls that fail to start complete at once */
	while (b->issued < b->o.total) {
		if (!pace(s))
			return;
		b->issued++;
		s->start = mono();
		int rc;
		if (s->stream) {
			Etcdserverpb__LeaseKeepAliveRequest ka = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
			ka.id = s->lease_id;
			rc = grpc_client_call_send_pb(s->stream, &ka.base);
		} else {
			const char *path;
			size_t len = build_request(b, &s->key, &path, &buf, &cap);
			rc = grpc_client_unary(s->cl, path, buf, len, tmo, NULL, unary_done, s, NULL);
		}
		if (rc == 0)
			return;
		record_error(b, GRPC_UNAVAILABLE, rc == MS_EIO ? "connection unusable" : ms_strerror(rc));
		if (++b->completed == b->o.total) {
			finish_run(b);
			return;
		}
	}
}

/* ---- lease keep-alive: one stream per slot ---- */

static void ka_msg(grpc_client_call *call, const uint8_t *msg, size_t len, void *ud)
{
	slot *s = ud;
	Etcdserverpb__LeaseKeepAliveResponse *r =
	    etcdserverpb__lease_keep_alive_response__unpack(&ms_pb_allocator, len, msg);
	int st = GRPC_OK;
	if (!r)
		st = GRPC_INTERNAL;
	else if (r->ttl <= 0)
		st = GRPC_NOT_FOUND; /* the lease expired */
	if (r)
		etcdserverpb__lease_keep_alive_response__free_unpacked(r, &ms_pb_allocator);
	slot_complete(s, st, st == GRPC_OK ? "" : "keep-alive: lease not found");
}

static void ka_done(grpc_client_call *call, int status, const char *message, void *ud)
{
	slot *s = ud;
	s->stream = NULL;
	if (s->b->completed < s->b->o.total)
		stop(s->b, message[0] ? message : "keep-alive stream ended");
}

static void grant_msg(grpc_client_call *call, const uint8_t *msg, size_t len, void *ud)
{
	slot *s = ud;
	Etcdserverpb__LeaseGrantResponse *r = etcdserverpb__lease_grant_response__unpack(&ms_pb_allocator, len, msg);
	if (r) {
		s->lease_id = r->id;
		etcdserverpb__lease_grant_response__free_unpacked(r, &ms_pb_allocator);
	}
}

static long setup_left;
static void setup_done(grpc_client_call *call, int status, const char *message, void *ud)
{
	slot *s = ud;
	if (status != GRPC_OK) {
		char m[200];
		snprintf(m, sizeof m, "setup failed: %s (code %d)", message, status);
		stop(s->b, m);
		return;
	}
	if (--setup_left == 0)
		event_base_loopbreak(s->b->base);
}

/* Runs the loop until setup_left reaches zero or something failed. */
static int run_setup(bench *b)
{
	if (setup_left > 0)
		event_base_dispatch(b->base);
	return b->fatal ? -1 : 0;
}

static int lease_setup(bench *b)
{
	setup_left = b->o.clients;
	Etcdserverpb__LeaseGrantRequest lg = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	lg.ttl = b->o.lease_ttl;
	uint8_t buf[32];
	size_t len = etcdserverpb__lease_grant_request__pack(&lg, buf);
	for (int i = 0; i < b->o.clients; i++)
		if (grpc_client_unary(b->slots[i].cl, "/etcdserverpb.Lease/LeaseGrant", buf, len, 0, grant_msg,
		                      setup_done, &b->slots[i], NULL))
			return -1;
	if (run_setup(b))
		return -1;
	for (int i = 0; i < b->o.clients; i++)
		if (grpc_client_call_start(b->slots[i].cl, "/etcdserverpb.Lease/LeaseKeepAlive", 0, NULL, ka_msg,
		                           ka_done, &b->slots[i], &b->slots[i].stream))
			return -1;
	return 0;
}

/* ---- watch fan-out ---- */

static void watch_msg(grpc_client_call *call, const uint8_t *msg, size_t len, void *ud)
{
	bench *b = ud;
	Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		stop(b, "watch: undecodable response");
		return;
	}
	int64_t now = mono();
	if (r->created && --setup_left == 0)
		event_base_loopbreak(b->base);
	if (r->canceled)
		stop(b, r->cancel_reason && r->cancel_reason[0] ? r->cancel_reason : "watch canceled");
	for (size_t i = 0; i < r->n_events; i++) {
		Mvccpb__KeyValue *kv = r->events[i]->kv;
		if (!kv || kv->value.len < 8)
			continue;
		lat_add(&b->wlat, now - (int64_t)ms_get_u64le(kv->value.data));
		b->wevents++;
	}
	etcdserverpb__watch_response__free_unpacked(r, &ms_pb_allocator);
	if (b->puts_done && b->wevents >= b->wexpected)
		event_base_loopbreak(b->base);
}

static void watch_done(grpc_client_call *call, int status, const char *message, void *ud)
{
	bench *b = ud;
	for (int i = 0; i < b->o.streams; i++)
		if (b->wstreams[i] == call)
			b->wstreams[i] = NULL;
	char m[200];
	snprintf(m, sizeof m, "watch stream ended: %s (code %d)", message, status);
	stop(b, m);
}

static void watch_grace_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static int watch_setup(bench *b)
{
	b->wstreams = ms_calloc((size_t)b->o.streams, sizeof *b->wstreams);
	for (int i = 0; i < b->o.streams; i++)
		if (grpc_client_call_start(b->cls[i % b->ncls], "/etcdserverpb.Watch/Watch", 0, NULL, watch_msg,
		                           watch_done, b, &b->wstreams[i]))
			return -1;
	setup_left = b->o.watchers;
	char key[32];
	for (int w = 0; w < b->o.watchers; w++) {
		/* watcher w watches key w mod key-space, so every key has
		 * watchers/key-space (rounded) of them */
		make_key(b, w % b->o.key_space, key);
		Etcdserverpb__WatchCreateRequest cr = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
		cr.key.data = (uint8_t *)key;
		cr.key.len = (size_t)b->o.key_size;
		Etcdserverpb__WatchRequest wr = ETCDSERVERPB__WATCH_REQUEST__INIT;
		wr.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
		wr.create_request = &cr;
		if (grpc_client_call_send_pb(b->wstreams[w % b->o.streams], &wr.base))
			return -1;
	}
	return run_setup(b);
}

/* ---- report ---- */

typedef struct stats {
	long n;
	double min, max, avg, stddev, p[8];
} stats;

static const double pctls[8] = {10, 25, 50, 75, 90, 95, 99, 99.9};

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static stats compute(lat_set *s)
{
	stats st = {.n = s->n};
	if (!s->n)
		return st;
	qsort(s->v, (size_t)s->n, sizeof *s->v, cmp64);
	double sum = 0;
	for (long i = 0; i < s->n; i++)
		sum += (double)s->v[i];
	st.avg = sum / (double)s->n / NS;
	double var = 0;
	for (long i = 0; i < s->n; i++) {
		double d = (double)s->v[i] / NS - st.avg;
		var += d * d;
	}
	st.stddev = sqrt(var / (double)s->n);
	st.min = (double)s->v[0] / NS;
	st.max = (double)s->v[s->n - 1] / NS;
	for (int j = 0; j < 8; j++) {
		long i = (long)ceil(pctls[j] / 100.0 * (double)s->n) - 1;
		st.p[j] = (double)s->v[i < 0 ? 0 : i] / NS;
	}
	return st;
}

static void print_histogram(const lat_set *s, const stats *st)
{
	enum { BC = 10 };
	double buckets[BC + 1];
	long counts[BC + 1] = {0}, max = 0;
	double bs = (st->max - st->min) / BC;
	for (int i = 0; i < BC; i++)
		buckets[i] = st->min + bs * i;
	buckets[BC] = st->max;
	int bi = 0;
	for (long i = 0; i < s->n;) {
		if ((double)s->v[i] / NS <= buckets[bi] || bi == BC) {
			counts[bi]++;
			i++;
		} else {
			bi++;
		}
	}
	for (int i = 0; i <= BC; i++)
		if (counts[i] > max)
			max = counts[i];
	printf("\nResponse time histogram:\n");
	for (int i = 0; i <= BC; i++) {
		int bar = max ? (int)(counts[i] * 40 / max) : 0;
		printf("  %.4f [%ld]\t|", buckets[i], counts[i]);
		for (int k = 0; k < bar; k++)
			fputs("\xe2\x88\x8e", stdout); /* etcd's bar character */
		putchar('\n');
	}
}

/* CPU seconds this process has used (user + system): with the server on
 * the same machine, the client's share bounds what any server can reach. */
static double client_cpu_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void print_summary(const char *title, lat_set *s, const stats *st, double secs, bool with_rate)
{
	printf("\n%s:\n", title);
	printf("  Total:\t%ld requests in %.4f secs.\n", st->n, secs);
	if (!st->n)
		return;
	printf("  Slowest:\t%.4f secs.\n", st->max);
	printf("  Fastest:\t%.4f secs.\n", st->min);
	printf("  Average:\t%.4f secs.\n", st->avg);
	printf("  Stddev:\t%.4f secs.\n", st->stddev);
	if (with_rate) {
		printf("  Requests/sec:\t%.4f\n", secs > 0 ? st->n / secs : 0.0);
		printf("  Client CPU:\t%.2f secs (%.1f us/request)\n", client_cpu_s(), client_cpu_s() / st->n * 1e6);
	}
	print_histogram(s, st);
	printf("\nLatency distribution:\n");
	for (int j = 0; j < 8; j++)
		printf("  %g%% in %.4f secs.\n", pctls[j], st->p[j]);
}

static void json_stats(FILE *f, const char *name, const stats *st)
{
	fprintf(f,
	        "  \"%s\": {\"count\": %ld, \"min_ms\": %.4f, \"avg_ms\": %.4f, \"stddev_ms\": %.4f, "
	        "\"p50_ms\": %.4f, \"p90_ms\": %.4f, \"p95_ms\": %.4f, \"p99_ms\": %.4f, \"p999_ms\": %.4f, "
	        "\"max_ms\": %.4f}",
	        name, st->n, st->min * 1e3, st->avg * 1e3, st->stddev * 1e3, st->p[2] * 1e3, st->p[4] * 1e3,
	        st->p[5] * 1e3, st->p[6] * 1e3, st->p[7] * 1e3, st->max * 1e3);
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static int write_json(bench *b, const stats *st, const stats *wst, double secs)
{
	FILE *f = fopen(b->o.json, "w");
	if (!f) {
		fprintf(stderr, "metastore-bench: %s: %s\n", b->o.json, strerror(errno));
		return -1;
	}
	const bopts *o = &b->o;
	fprintf(f, "{\n  \"op\": \"%s\",\n  \"endpoints\": [", o->op_name);
	for (int i = 0; i < o->nendpoints; i++)
		fprintf(f, "%s\"%s:%d\"", i ? ", " : "", o->endpoints[i], o->ports[i]);
	fprintf(f,
	        "],\n  \"conns\": %d, \"clients\": %d, \"total\": %ld, \"key_size\": %d, \"val_size\": %d, "
	        "\"key_space\": %ld, \"sequential\": %s, \"rate\": %g,\n",
	        o->conns, o->clients, o->total, o->key_size, o->val_size, o->key_space,
	        o->sequential ? "true" : "false", o->rate);
	if (o->op == OP_RANGE)
		fprintf(f, "  \"consistency\": \"%s\",\n", o->serializable ? "s" : "l");
	if (o->op == OP_TXN)
		fprintf(f, "  \"txn_ops\": %d, \"txn_mode\": \"%s\",\n", o->txn_ops, o->txn_cas ? "cas" : "put");
	if (o->op == OP_WATCH)
		fprintf(f, "  \"watchers\": %d, \"streams\": %d, \"events_expected\": %ld, \"events\": %ld,\n",
		        o->watchers, o->streams, b->wexpected, b->wevents);
	if (o->op == OP_LEASE)
		fprintf(f, "  \"lease_op\": \"%s\",\n", o->lease_keepalive ? "keepalive" : "grant");
	long nerr = b->errs_other;
	for (int i = 0; i < b->nerrs; i++)
		nerr += b->errs[i].count;
	fprintf(f, "  \"ok\": %ld, \"errors\": %ld, \"duration_s\": %.6f, \"requests_per_sec\": %.2f,\n", st->n, nerr,
	        secs, secs > 0 ? st->n / secs : 0.0);
	fprintf(f, "  \"client_cpu_s\": %.3f,\n", client_cpu_s());
	fprintf(f, "  \"error_kinds\": [");
	for (int i = 0; i < b->nerrs; i++) {
		fprintf(f, "%s{\"code\": %d, \"count\": %ld, \"message\": ", i ? ", " : "", b->errs[i].status,
		        b->errs[i].count);
		json_str(f, b->errs[i].msg);
		fputc('}', f);
	}
	fprintf(f, "],\n");
	json_stats(f, "latency", st);
	if (wst) {
		fprintf(f, ",\n");
		json_stats(f, "watch_delivery_latency", wst);
	}
	fprintf(f, "\n}\n");
	return fclose(f) ? -1 : 0;
}

/* ---- flags ---- */

static void usage(FILE *f)
{
	fprintf(f, "usage: metastore-bench <put|range|txn|watch|lease> [flags]\n"
	           "\n"
	           "  --endpoints LIST     comma-separated host:port or http://host:port (default 127.0.0.1:2379);\n"
	           "                       connections are spread round-robin over them\n"
	           "  --conns N            HTTP/2 connections (default 1)\n"
	           "  --clients N          concurrent requests in flight across the connections (default 1)\n"
	           "  --total N            requests (default 10000; watch: puts)\n"
	           "  --key-size N         bytes per key (default 8)\n"
	           "  --val-size N         bytes per value (default 8)\n"
	           "  --key-space N        keys are drawn from [0, N) (default 1; --key-space-size too)\n"
	           "  --sequential-keys    keys 0, 1, 2, ... (mod key space) instead of random\n"
	           "  --rate R             requests per second, 0 = unlimited (default 0)\n"
	           "  --timeout SECS       per-request deadline sent as grpc-timeout (default 30, 0 = none)\n"
	           "  --json FILE          also write the results as JSON\n"
	           "  --seed N             random seed for keys (default from the clock)\n"
	           "  --quiet              no progress bar\n"
	           "  --cacert FILE        TLS: verify the server with this CA (https:// endpoints or any TLS flag)\n"
	           "  --cert FILE          TLS: client certificate\n"
	           "  --key FILE           TLS: client key\n"
	           "  --insecure-skip-tls-verify  TLS: do not verify the server's certificate\n"
	           "range:  --consistency l|s   linearizable (default) or serializable\n"
	           "txn:    --txn-ops N         puts per txn (default 1, at most 64)\n"
	           "        --txn-mode put|cas  plain put txn, or each put guarded by a compare on the key\n"
	           "watch:  --watchers W        watchers (default 100), watcher w watches key w mod key-space\n"
	           "        --streams S         watch streams the watchers share (default 10)\n"
	           "        delivery latency = put sent -> event received (value carries the send time)\n"
	           "lease:  --lease-op grant|keepalive  (keepalive: one lease and stream per client)\n"
	           "        --ttl SECS          lease TTL (default 60)\n");
}

static int parse_endpoints(bopts *o, const char *list)
{
	char *dup = ms_strdup(list), *save = NULL;
	o->nendpoints = 0;
	for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (o->nendpoints == MAX_ENDPOINTS) {
			fprintf(stderr, "metastore-bench: at most %d endpoints\n", MAX_ENDPOINTS);
			return -1;
		}
		if (!strncmp(t, "http://", 7)) {
			t += 7;
		} else if (!strncmp(t, "https://", 8)) {
			t += 8;
			o->tls = true;
		} else if (strstr(t, "://")) {
			fprintf(stderr, "metastore-bench: endpoint %s: only http:// and https:// are supported\n", t);
			return -1;
		}
		char *colon = strrchr(t, ':');
		if (!colon) {
			fprintf(stderr, "metastore-bench: endpoint %s: missing port\n", t);
			return -1;
		}
		*colon = 0;
		char *host = t;
		size_t hl = strlen(host);
		if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
			host[hl - 1] = 0;
			host++;
		}
		char *end;
		long port = strtol(colon + 1, &end, 10);
		if ((*end && *end != '/') || port <= 0 || port > 65535) {
			fprintf(stderr, "metastore-bench: endpoint %s: bad port\n", list);
			return -1;
		}
		o->endpoints[o->nendpoints] = ms_strdup(host);
		o->ports[o->nendpoints++] = (int)port;
	}
	ms_free(dup);
	if (!o->nendpoints) {
		fprintf(stderr, "metastore-bench: no endpoints\n");
		return -1;
	}
	return 0;
}

static bool parse_long(const char *name, const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi) {
		fprintf(stderr, "metastore-bench: --%s: want an integer in [%ld, %ld], got \"%s\"\n", name, lo, hi, s);
		return false;
	}
	*out = v;
	return true;
}

static int parse_flags(bopts *o, int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? -1 : 1;
	}
	static const struct {
		const char *name;
		op_kind op;
	} cmds[] = {{"put", OP_PUT}, {"range", OP_RANGE}, {"txn", OP_TXN}, {"watch", OP_WATCH}, {"lease", OP_LEASE}};
	o->op_name = NULL;
	for (size_t i = 0; i < MS_ARRAY_LEN(cmds); i++)
		if (!strcmp(argv[1], cmds[i].name)) {
			o->op = cmds[i].op;
			o->op_name = cmds[i].name;
		}
	if (!o->op_name) {
		fprintf(stderr, "metastore-bench: unknown command \"%s\"\n", argv[1]);
		usage(stderr);
		return -1;
	}
	o->conns = 1;
	o->clients = 1;
	o->total = 10000;
	o->key_size = 8;
	o->val_size = 8;
	o->key_space = 1;
	o->txn_ops = 1;
	o->watchers = 100;
	o->streams = 10;
	o->lease_ttl = 60;
	o->timeout_s = 30;
	o->seed = (uint64_t)mono() | 1;
	if (parse_endpoints(o, "127.0.0.1:2379"))
		return -1;
	enum {
		F_ENDPOINTS = 256,
		F_CONNS,
		F_CLIENTS,
		F_TOTAL,
		F_KEYSIZE,
		F_VALSIZE,
		F_KEYSPACE,
		F_SEQ,
		F_RATE,
		F_JSON,
		F_CONSIST,
		F_TXNOPS,
		F_TXNMODE,
		F_WATCHERS,
		F_STREAMS,
		F_LEASEOP,
		F_TTL,
		F_TIMEOUT,
		F_SEED,
		F_QUIET,
		F_CACERT,
		F_CERT,
		F_KEY,
		F_INSECURE,
		F_HELP
	};
	static const struct option lo[] = {
	    {"endpoints", 1, 0, F_ENDPOINTS},
	    {"conns", 1, 0, F_CONNS},
	    {"clients", 1, 0, F_CLIENTS},
	    {"total", 1, 0, F_TOTAL},
	    {"key-size", 1, 0, F_KEYSIZE},
	    {"val-size", 1, 0, F_VALSIZE},
	    {"key-space", 1, 0, F_KEYSPACE},
	    {"key-space-size", 1, 0, F_KEYSPACE},
	    {"sequential-keys", 0, 0, F_SEQ},
	    {"rate", 1, 0, F_RATE},
	    {"json", 1, 0, F_JSON},
	    {"consistency", 1, 0, F_CONSIST},
	    {"txn-ops", 1, 0, F_TXNOPS},
	    {"txn-mode", 1, 0, F_TXNMODE},
	    {"watchers", 1, 0, F_WATCHERS},
	    {"streams", 1, 0, F_STREAMS},
	    {"lease-op", 1, 0, F_LEASEOP},
	    {"ttl", 1, 0, F_TTL},
	    {"timeout", 1, 0, F_TIMEOUT},
	    {"seed", 1, 0, F_SEED},
	    {"quiet", 0, 0, F_QUIET},
	    {"cacert", 1, 0, F_CACERT},
	    {"cert", 1, 0, F_CERT},
	    {"key", 1, 0, F_KEY},
	    {"insecure-skip-tls-verify", 0, 0, F_INSECURE},
	    {"help", 0, 0, F_HELP},
	    {0, 0, 0, 0},
	};
	optind = 2;
	int ch;
	long v;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case F_ENDPOINTS:
			for (int i = 0; i < o->nendpoints; i++)
				ms_free(o->endpoints[i]);
			if (parse_endpoints(o, optarg))
				return -1;
			break;
		case F_CACERT:
			o->cacert = optarg;
			o->tls = true;
			break;
		case F_CERT:
			o->cert = optarg;
			o->tls = true;
			break;
		case F_KEY:
			o->key = optarg;
			o->tls = true;
			break;
		case F_INSECURE:
			o->insecure_skip_verify = true;
			o->tls = true;
			break;
		case F_CONNS:
			if (!parse_long("conns", optarg, 1, 1000, &v))
				return -1;
			o->conns = (int)v;
			break;
		case F_CLIENTS:
			if (!parse_long("clients", optarg, 1, 100000, &v))
				return -1;
			o->clients = (int)v;
			break;
		case F_TOTAL:
			if (!parse_long("total", optarg, 1, 1000000000, &v))
				return -1;
			o->total = v;
			break;
		case F_KEYSIZE:
			if (!parse_long("key-size", optarg, 1, 30, &v))
				return -1;
			o->key_size = (int)v;
			break;
		case F_VALSIZE:
			if (!parse_long("val-size", optarg, 0, 1 << 24, &v))
				return -1;
			o->val_size = (int)v;
			break;
		case F_KEYSPACE:
			if (!parse_long("key-space", optarg, 1, 1000000000000L, &v))
				return -1;
			o->key_space = v;
			break;
		case F_SEQ:
			o->sequential = true;
			break;
		case F_RATE: {
			char *end;
			o->rate = strtod(optarg, &end);
			if (*end || o->rate < 0) {
				fprintf(stderr, "metastore-bench: --rate: bad number \"%s\"\n", optarg);
				return -1;
			}
			break;
		}
		case F_TIMEOUT: {
			char *end;
			o->timeout_s = strtod(optarg, &end);
			if (*end || o->timeout_s < 0) {
				fprintf(stderr, "metastore-bench: --timeout: bad number \"%s\"\n", optarg);
				return -1;
			}
			break;
		}
		case F_JSON:
			o->json = optarg;
			break;
		case F_CONSIST:
			if (strcmp(optarg, "l") && strcmp(optarg, "s")) {
				fprintf(stderr, "metastore-bench: --consistency: want l or s\n");
				return -1;
			}
			o->serializable = optarg[0] == 's';
			break;
		case F_TXNOPS:
			if (!parse_long("txn-ops", optarg, 1, 64, &v))
				return -1;
			o->txn_ops = (int)v;
			break;
		case F_TXNMODE:
			if (strcmp(optarg, "put") && strcmp(optarg, "cas")) {
				fprintf(stderr, "metastore-bench: --txn-mode: want put or cas\n");
				return -1;
			}
			o->txn_cas = optarg[0] == 'c';
			break;
		case F_WATCHERS:
			if (!parse_long("watchers", optarg, 1, 10000000, &v))
				return -1;
			o->watchers = (int)v;
			break;
		case F_STREAMS:
			if (!parse_long("streams", optarg, 1, 100000, &v))
				return -1;
			o->streams = (int)v;
			break;
		case F_LEASEOP:
			if (strcmp(optarg, "grant") && strcmp(optarg, "keepalive")) {
				fprintf(stderr, "metastore-bench: --lease-op: want grant or keepalive\n");
				return -1;
			}
			o->lease_keepalive = optarg[0] == 'k';
			break;
		case F_TTL:
			if (!parse_long("ttl", optarg, 1, 9000000000L, &v))
				return -1;
			o->lease_ttl = (int)v;
			break;
		case F_SEED:
			if (!parse_long("seed", optarg, 0, INT64_MAX, &v))
				return -1;
			o->seed = (uint64_t)v | 1;
			break;
		case F_QUIET:
			o->quiet = true;
			break;
		case F_HELP:
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "metastore-bench: unexpected argument \"%s\"\n", argv[optind]);
		return -1;
	}
	/* every key index must fit the key size */
	char digits[32];
	int need = snprintf(digits, sizeof digits, "%ld", o->key_space - 1);
	if (need > o->key_size) {
		fprintf(stderr, "metastore-bench: --key-size %d is too small for --key-space %ld (need %d)\n",
		        o->key_size, o->key_space, need);
		return -1;
	}
	if (o->op == OP_WATCH && o->val_size < 8) {
		fprintf(stderr, "metastore-bench: watch needs --val-size >= 8 (the value carries the send time)\n");
		return -1;
	}
	if (o->op == OP_TXN && o->txn_ops > o->key_space) {
		fprintf(stderr, "metastore-bench: --txn-ops %d needs --key-space >= %d (distinct keys per txn)\n",
		        o->txn_ops, o->txn_ops);
		return -1;
	}
	if (o->clients < o->conns)
		o->clients = o->conns;
	return 0;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	bench *b = ms_calloc(1, sizeof *b);
	int pf = parse_flags(&b->o, argc, argv);
	if (pf)
		return pf > 0 ? 0 : 2;
	const bopts *o = &b->o;
	b->rng = o->seed;
	/* timerfd-precise timers for --rate */
	struct event_config *cfg = event_config_new();
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	b->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (!b->base) {
		fprintf(stderr, "metastore-bench: cannot create an event loop\n");
		return 1;
	}
	b->val = ms_malloc((size_t)o->val_size + 8);
	for (int i = 0; i < o->val_size; i++)
		b->val[i] = (uint8_t)('a' + xs(&b->rng) % 26);
	grpc_client_opts copts = {0};
	if (o->tls) {
		ms_err err = {0};
		ms_tls_opts to = {.cert_file = o->cert,
		                  .key_file = o->key,
		                  .trusted_ca_file = o->cacert,
		                  .insecure_skip_verify = o->insecure_skip_verify};
		if (ms_tls_new(&to, &b->tls, &err)) {
			fprintf(stderr, "metastore-bench: %s\n", err.msg);
			return 1;
		}
		copts.tls = b->tls;
	}
	b->ncls = o->conns;
	b->cls = ms_calloc((size_t)b->ncls, sizeof *b->cls);
	for (int i = 0; i < b->ncls; i++) {
		ms_err err = {0};
		int e = i % o->nendpoints;
		if (grpc_client_new(b->base, o->endpoints[e], o->ports[e], &copts, &b->cls[i], &err)) {
			fprintf(stderr, "metastore-bench: %s\n", err.msg);
			return 1;
		}
	}
	b->slots = ms_calloc((size_t)o->clients, sizeof *b->slots);
	for (int i = 0; i < o->clients; i++) {
		b->slots[i].b = b;
		b->slots[i].idx = i;
		b->slots[i].cl = b->cls[i % b->ncls];
	}
	b->pacer = evtimer_new(b->base, pacer_cb, b);
	b->watch_grace = evtimer_new(b->base, watch_grace_cb, b->base);
	b->tty = !o->quiet && isatty(2);

	int rc = 0;
	if (o->op == OP_WATCH) {
		rc = watch_setup(b);
	} else if (o->op == OP_LEASE && o->lease_keepalive) {
		rc = lease_setup(b);
	}
	if (rc) {
		fprintf(stderr, "metastore-bench: %s\n", b->fatal ? b->fatal_msg : "setup failed");
		return 1;
	}

	if (b->tty) {
		b->progress = event_new(b->base, -1, EV_PERSIST, progress_cb, b);
		struct timeval tv = {0, 200000};
		evtimer_add(b->progress, &tv);
	}
	if (o->rate > 0)
		b->interval = (int64_t)((double)NS / o->rate);
	b->t0 = mono();
	b->next_at = b->t0;
	for (int i = 0; i < o->clients && b->issued < o->total; i++)
		slot_issue(&b->slots[i]);
	if (b->completed < o->total || (o->op == OP_WATCH && b->wevents < b->wexpected))
		event_base_dispatch(b->base);
	if (!b->t1)
		b->t1 = mono();
	if (b->tty) {
		progress_cb(-1, 0, b);
		fputc('\n', stderr);
	}
	if (b->fatal) {
		fprintf(stderr, "metastore-bench: %s\n", b->fatal_msg);
		rc = 1;
	}

	double secs = (double)(b->t1 - b->t0) / NS;
	stats st = compute(&b->lat);
	print_summary("Summary", &b->lat, &st, secs, true);
	stats wst;
	if (o->op == OP_WATCH) {
		wst = compute(&b->wlat);
		printf("\nWatch: %d watchers on %d streams, %ld of %ld events delivered\n", o->watchers, o->streams,
		       b->wevents, b->wexpected);
		print_summary("Watch delivery latency (put sent -> event received)", &b->wlat, &wst, secs, false);
		if (b->wevents < b->wexpected)
			rc = 1;
	}
	long nerr = b->errs_other;
	for (int i = 0; i < b->nerrs; i++)
		nerr += b->errs[i].count;
	if (nerr) {
		printf("\nError distribution:\n");
		for (int i = 0; i < b->nerrs; i++)
			printf("  [%ld]\tcode %d: %s\n", b->errs[i].count, b->errs[i].status, b->errs[i].msg);
		if (b->errs_other)
			printf("  [%ld]\tother\n", b->errs_other);
	}
	if (o->json && write_json(b, &st, o->op == OP_WATCH ? &wst : NULL, secs))
		rc = 1;

	for (int i = 0; i < b->ncls; i++)
		grpc_client_free(b->cls[i]);
	if (b->progress)
		event_free(b->progress);
	event_free(b->pacer);
	event_free(b->watch_grace);
	event_base_free(b->base);
	ms_tls_free(b->tls);
	for (int i = 0; i < o->nendpoints; i++)
		ms_free(o->endpoints[i]);
	ms_free(b->wstreams);
	ms_free(b->slots);
	ms_free(b->cls);
	ms_free(b->val);
	ms_free(b->lat.v);
	ms_free(b->wlat.v);
	ms_free(b);
	return rc;
}
