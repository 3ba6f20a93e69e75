/* watch_srv.c — wires the watch hub (watch/) into the server: the apply
 * stage's events reach the hub through a queue, client Watch streams create
 * and cancel watchers, catch-up from history runs on worker threads, and
 * WatchResponses are built as etcd 3.4's watch server builds them.
 *
 * Threads and order:
 *   - apply thread: ms_server_on_events takes the revision's events (the
 *     engine lets us keep them) and pushes them on feed_q; nothing else.
 *   - loop thread: everything that touches a stream: watch_hub_feed, sending,
 *     create/cancel, progress, and the results of catch-up reads. One thread
 *     per stream is how per-stream order is kept (the hub wants one thread at
 *     a time per stream for add/remove/caught_up).
 *   - catch-up threads (CU_THREADS): engine_history reads only; a stream has
 *     at most one read in flight, for one of its unsynced watchers.
 *
 * Memory per stream is bounded in bytes, not events (issue 10):
 *   - live events: when a stream's unsent output is over MS_WATCH_SLOW_BYTES
 *     they are not queued; the watchers go back to catch-up from the first
 *     revision not sent (watch_hub_unsync);
 *   - catch-up: one read in flight per stream, at most CU_MAX_BYTES of
 *     events (ending on a revision boundary, so one revision may add up to
 *     --max-request-bytes), and none starts while the stream is slow: it
 *     waits until the output drains below half the bound (the gRPC drain
 *     callback, or the periodic tick for bounds below the gRPC layer's);
 *   - progress requests on a slow stream are coalesced: at most one reply is
 *     owed, sent (with the revision current then) once the stream drains;
 *   - created / canceled replies cannot be coalesced (each answers its own
 *     request and the client waits for it); a slow stream may queue
 *     CTRL_MAX_SLOW of them (~50 KiB), and the next create or cancel ends
 *     the stream with ResourceExhausted "etcdserver: too many requests"
 *     instead of queueing. etcd stops reading such a stream (its control
 *     channel holds 16 replies); a client that reads its replies never gets
 *     there.
 * So a stream holds at most MS_WATCH_SLOW_BYTES + CU_MAX_BYTES + one
 * revision's events (+ one catch-up read's copy while it is in flight),
 * however large the history and however slowly the client reads.
 *
 * Progress notifications: every --experimental-watch-progress-notify-interval
 * (default 10 min, as etcd) for progress_notify watchers that got nothing in
 * the interval. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"
#include "watch/watch.h"

#define CU_THREADS 2
#define CU_MAX_EVENTS 1000         /* events per catch-up read (ends on a revision boundary) */
#define CU_MAX_BYTES (512u * 1024) /* and bytes per catch-up read (same boundary rule) */
#define CU_STOP 1                  /* cu_collect: the byte budget is spent (never an MS_E* code) */
/* created/canceled replies a slow stream may queue before it is ended */
#define CTRL_MAX_SLOW 1024
#define TICK_MAX_MS 100                  /* also how soon a drained slow stream resumes */
#define GRPC_OVERHEAD_BYTES (512 * 1024) /* etcd: fragment limit = max-request-bytes + this */

typedef struct feed_item {
	int64_t rev;
	bool jump; /* the store jumped to rev (snapshot install): no events */
	size_t n;
	Mvccpb__Event *evs[];
} feed_item;

typedef struct cu_job cu_job;

struct ms_watch {
	struct ms_watch_srv *ws;
	watch_stream *hs;
	ms_watch_sink sink;
	void *ud;
	int refs; /* the client stream + a catch-up job in flight */
	bool closed;
	bool wait_drain;
	bool progress_owed; /* a progress request came while the stream was slow */
	int ctrl_slow;      /* created/canceled replies queued since the stream became slow */
	cu_job *job;        /* in flight */
	struct ms_watch *prev, *next;
};

struct cu_job {
	ms_watch *w;
	bool stale; /* its watcher was canceled meanwhile */
	int64_t id;
	uint8_t *key, *end;
	size_t key_len, end_len;
	int64_t from;
	unsigned filters;
	bool prev_kv, fragment;
	/* results (catch-up thread) */
	int code;
	size_t bytes;     /* encoded size of the events collected */
	int64_t last_rev; /* revision of the last event collected */
	int64_t stop_rev; /* cu_collect stopped before this revision */
	int64_t next_rev, hdr_rev, compact_rev;
	Mvccpb__Event **evs;
	size_t n, cap;
};

struct ms_watch_srv {
	ms_server *s;
	watch_hub *hub;
	ms_queue *feed_q;
	struct event *feed_ev;
	ms_queue *cu_q, *cu_done_q;
	struct event *cu_done_ev;
	pthread_t thr[CU_THREADS];
	int nthr;
	struct event *tick_ev;
	int64_t progress_ns, progress_due;
	watch_batch batch;
	ms_watch streams; /* list sentinel */
	size_t frag_limit;
};

static int64_t watch_clock(void *ud)
{
	return ms_now_mono_ns();
}

static void ev_free(Mvccpb__Event *ev)
{
	protobuf_c_message_free_unpacked(&ev->base, &ms_pb_allocator);
}

static void watch_unref(ms_watch *w)
{
	if (--w->refs > 0)
		return;
	w->prev->next = w->next;
	w->next->prev = w->prev;
	ms_free(w);
}

static void job_free(cu_job *j)
{
	for (size_t i = 0; i < j->n; i++)
		ev_free(j->evs[i]);
	ms_free(j->evs);
	ms_free(j->key);
	ms_free(j->end);
	ms_free(j);
}

/* ---- building and sending responses (loop) ---- */

static bool stream_slow(const ms_watch *w)
{
	return w->sink.pending(w->ud) > MS_WATCH_SLOW_BYTES;
}

static int send_resp(ms_watch *w, Etcdserverpb__WatchResponse *r)
{
	size_t len = etcdserverpb__watch_response__get_packed_size(r);
	uint8_t stackbuf[1024];
	uint8_t *buf = len <= sizeof stackbuf ? stackbuf : ms_malloc(len);
	if (!buf)
		return MS_ENOMEM;
	etcdserverpb__watch_response__pack(r, buf);
	int rc = w->sink.send(w->ud, buf, len);
	if (buf != stackbuf)
		ms_free(buf);
	return rc;
}

/* A control reply (created / canceled / progress) with header revision rev
 * (rev < 0: header with revision 0, as etcd's compacted cancel). */
static int send_ctrl(ms_watch *w, int64_t id, int64_t rev, bool created, bool canceled, int64_t compact_rev,
                     const char *reason)
{
	Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	ms_server_fill_header(w->ws->s, &h, rev < 0 ? 0 : rev);
	r.header = &h;
	r.watch_id = id;
	r.created = created;
	r.canceled = canceled;
	r.compact_revision = compact_rev;
	r.cancel_reason = (char *)(reason ? reason : "");
	return send_resp(w, &r);
}

/* Sends events (one revision, or a catch-up batch) for watcher id, split in
 * fragments when the watcher asked for them and the reply is too large. */
static int send_events(ms_watch *w, int64_t id, int64_t rev, Mvccpb__Event *const *evs, size_t n, bool prev_kv,
                       bool fragment)
{
	/* without prev_kv the shared events are sent through shallow copies */
	Mvccpb__Event *copies = NULL, **ptrs = (Mvccpb__Event **)evs;
	if (!prev_kv) {
		copies = ms_malloc(n * sizeof *copies);
		ptrs = ms_malloc(n * sizeof *ptrs);
		if (!copies || !ptrs) {
			ms_free(copies);
			ms_free(ptrs);
			return MS_ENOMEM;
		}
		for (size_t i = 0; i < n; i++) {
			copies[i] = *evs[i];
			copies[i].prev_kv = NULL;
			ptrs[i] = &copies[i];
		}
	}
	Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	ms_server_fill_header(w->ws->s, &h, rev);
	r.header = &h;
	r.watch_id = id;
	int rc = 0;
	size_t off = 0;
	do {
		size_t k = n - off;
		if (fragment && k > 1)
			k = watch_fragment_count(ptrs + off, k, w->ws->frag_limit);
		r.events = ptrs + off;
		r.n_events = k;
		r.fragment = off + k < n;
		rc = send_resp(w, &r);
		off += k;
	} while (!rc && off < n);
	if (copies) {
		ms_free(copies);
		ms_free(ptrs);
	}
	return rc;
}

/* ---- catch-up ---- */

static void schedule_catchup(ms_watch *w);

static bool filtered(unsigned filters, const Mvccpb__Event *ev)
{
	if (ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT)
		return filters & WATCH_NOPUT;
	return filters & WATCH_NODELETE;
}

static Mvccpb__KeyValue *kv_dup(const Mvccpb__KeyValue *kv)
{
	if (!kv)
		return NULL;
	size_t len = mvccpb__key_value__get_packed_size(kv);
	uint8_t stackbuf[512];
	uint8_t *buf = len <= sizeof stackbuf ? stackbuf : ms_malloc(len);
	if (!buf)
		return NULL;
	mvccpb__key_value__pack(kv, buf);
	Mvccpb__KeyValue *c = mvccpb__key_value__unpack(&ms_pb_allocator, len, buf);
	if (buf != stackbuf)
		ms_free(buf);
	return c;
}

/* engine_history callback (catch-up thread): keeps a copy of the event, or
 * stops the read with CU_STOP at the first revision boundary past
 * CU_MAX_BYTES. */
static int cu_collect(void *arg, const Mvccpb__Event *ev)
{
	cu_job *j = arg;
	int64_t rev = ev->kv ? ev->kv->mod_revision : 0;
	if (j->bytes >= CU_MAX_BYTES && rev != j->last_rev) {
		j->stop_rev = rev;
		return CU_STOP;
	}
	if (filtered(j->filters, ev))
		return 0;
	if (j->n == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 16;
		Mvccpb__Event **v = ms_realloc(j->evs, cap * sizeof *v);
		if (!v)
			return MS_ENOMEM;
		j->evs = v;
		j->cap = cap;
	}
	Mvccpb__Event *c = ms_malloc(sizeof *c);
	if (!c)
		return MS_ENOMEM;
	mvccpb__event__init(c);
	c->type = ev->type;
	c->kv = kv_dup(ev->kv);
	c->prev_kv = j->prev_kv ? kv_dup(ev->prev_kv) : NULL;
	j->evs[j->n++] = c;
	if (!c->kv || (j->prev_kv && ev->prev_kv && !c->prev_kv))
		return MS_ENOMEM;
	j->last_rev = rev;
	j->bytes += mvccpb__event__get_packed_size(c);
	return 0;
}

static void *cu_main(void *arg)
{
	struct ms_watch_srv *ws = arg;
	engine *e = ws->s->eng;
	for (;;) {
		ms_queue_wait(ws->cu_q);
		cu_job *j;
		while ((j = ms_queue_pop(ws->cu_q))) {
			if (j == (cu_job *)ws) {
				ms_queue_kick(ws->cu_q); /* the other threads' sentinels */
				return NULL;
			}
			ms_queue_kick(ws->cu_q);
			ms_err err = {0};
			/* etcd: a catch-up reply's header carries the revision read up to */
			j->hdr_rev = engine_current_rev(e);
			j->code = engine_history(e, j->key, j->key_len, j->end, j->end_len, j->from, j->hdr_rev,
			                         j->prev_kv, CU_MAX_EVENTS, cu_collect, j, &j->next_rev, &err);
			if (j->code == CU_STOP) {
				/* everything before stop_rev was collected */
				j->code = 0;
				j->next_rev = j->stop_rev;
			}
			if (j->code == MS_ECOMPACTED)
				j->compact_rev = engine_compact_rev(e);
			else if (j->code)
				MS_WARN("mvcc", "watch catch-up read failed: %s", err.msg);
			ms_queue_push(ws->cu_done_q, j);
		}
	}
}

/* The stream is over its bound: wait for its output to drain. */
static void wait_for_drain(ms_watch *w)
{
	if (w->wait_drain)
		return;
	w->wait_drain = true;
	w->sink.want_drain(w->ud);
}

/* Starts a history read for one of w's unsynced watchers (loop). */
static void schedule_catchup(ms_watch *w)
{
	struct ms_watch_srv *ws = w->ws;
	if (w->closed || w->job || w->wait_drain)
		return;
	if (stream_slow(w)) {
		wait_for_drain(w);
		return;
	}
	watch_info wi;
	if (watch_stream_unsynced(w->hs, &wi, 1) == 0)
		return;
	cu_job *j = ms_calloc(1, sizeof *j);
	if (!j)
		goto nomem;
	j->w = w;
	j->id = wi.id;
	j->from = wi.next_rev;
	j->filters = wi.filters;
	j->prev_kv = wi.prev_kv;
	j->fragment = wi.fragment;
	j->key_len = wi.key_len;
	j->end_len = wi.range_end_len;
	/* copies: the worker reads them while the loop may remove the watcher */
	j->key = ms_malloc(wi.key_len + 1);
	j->end = ms_malloc(wi.range_end_len + 1);
	if (!j->key || !j->end) {
		job_free(j);
		goto nomem;
	}
	memcpy(j->key, wi.key, wi.key_len);
	if (wi.range_end_len)
		memcpy(j->end, wi.range_end, wi.range_end_len);
	w->job = j;
	w->refs++;
	ms_queue_push(ws->cu_q, j);
	return;
nomem:
	/* retried by the periodic tick */
	w->wait_drain = true;
}

static void on_cu_done(evutil_socket_t fd, short what, void *arg)
{
	struct ms_watch_srv *ws = arg;
	if (fd >= 0)
		ms_queue_ack(ws->cu_done_q);
	cu_job *j;
	while ((j = ms_queue_pop(ws->cu_done_q))) {
		ms_watch *w = j->w;
		w->job = NULL;
		if (!w->closed && !j->stale) {
			if (j->code == MS_ECOMPACTED) {
				/* etcd: a separate canceled reply with the compact revision,
				 * header revision 0; the watcher is gone */
				send_ctrl(w, j->id, -1, false, true, j->compact_rev, NULL);
				watch_hub_remove(ws->hub, w->hs, j->id);
			} else if (j->code) {
				/* a read error: the watcher cannot continue without a gap */
				send_ctrl(w, j->id, engine_current_rev(ws->s->eng), false, true, 0,
				          "etcdserver: mvcc: watch catch-up failed");
				watch_hub_remove(ws->hub, w->hs, j->id);
			} else {
				int rc =
				    j->n ? send_events(w, j->id, j->hdr_rev, j->evs, j->n, j->prev_kv, j->fragment) : 0;
				if (rc == 0)
					watch_hub_caught_up(ws->hub, w->hs, j->id, j->next_rev);
				else
					w->wait_drain = true; /* retried from the periodic tick */
			}
		}
		job_free(j);
		schedule_catchup(w);
		watch_unref(w);
	}
}

/* ---- live feed ---- */

void ms_server_on_events(void *arg, int64_t rev, Mvccpb__Event **evs, size_t n)
{
	ms_server *s = arg;
	ms_lease_srv_on_events(s, evs, n);
	feed_item *it = ms_malloc(sizeof *it + n * sizeof *it->evs);
	MS_ASSERT(it != NULL); /* a lost revision would be a silent gap for every watcher */
	it->rev = rev;
	it->jump = false;
	it->n = n;
	for (size_t i = 0; i < n; i++) {
		it->evs[i] = evs[i];
		evs[i] = NULL; /* ours now */
	}
	/* woken with the batch's results by ms_server_apply (shared fd) */
	ms_queue_push_quiet(s->watch->feed_q, it);
}

/* apply thread: a snapshot replaced the store. The marker travels the same
 * queue as events, so the watchers are re-synced before any later revision
 * is fed. */
void ms_watch_srv_on_install(ms_server *s, int64_t rev)
{
	feed_item *it = ms_malloc(sizeof *it);
	MS_ASSERT(it != NULL);
	it->rev = rev;
	it->jump = true;
	it->n = 0;
	ms_queue_push(s->watch->feed_q, it);
}

static void feed_one(struct ms_watch_srv *ws, feed_item *it)
{
	ms_err err = {0};
	if (it->jump) {
		int64_t from = watch_hub_jump(ws->hub, it->rev) + 1;
		for (ms_watch *w = ws->streams.next; w != &ws->streams; w = w->next) {
			if (w->closed)
				continue;
			watch_stream_resync(ws->hub, w->hs, from);
			schedule_catchup(w);
		}
		MS_INFO("mvcc", "watchers resume from revision %lld after a snapshot", (long long)from);
		return;
	}
	int rc = watch_hub_feed(ws->hub, it->rev, it->evs, it->n, &ws->batch, &err);
	if (rc) {
		MS_ERROR("mvcc", "watch feed of revision %lld failed: %s", (long long)it->rev, err.msg);
		return;
	}
	for (size_t i = 0; i < ws->batch.n; i++) {
		watch_out *o = &ws->batch.out[i];
		ms_watch *w = o->owner;
		if (w->closed)
			continue;
		if (w->wait_drain || stream_slow(w) ||
		    send_events(w, o->id, o->rev, o->evs, o->nevs, o->prev_kv, o->fragment) != 0) {
			/* not sent: this watcher resumes from history at this revision */
			MS_DEBUG("mvcc", "slow watch stream: watcher %lld resumes from history at %lld",
			         (long long)o->id, (long long)o->rev);
			watch_hub_unsync(ws->hub, w->hs, o->id, o->rev);
			if (!w->wait_drain && !stream_slow(w))
				w->wait_drain = true; /* the send failed: retried from the periodic tick */
			schedule_catchup(w);
		}
	}
}

static void on_feed(evutil_socket_t fd, short what, void *arg)
{
	struct ms_watch_srv *ws = arg;
	if (fd >= 0)
		ms_queue_ack(ws->feed_q);
	feed_item *it;
	while ((it = ms_queue_pop(ws->feed_q))) {
		feed_one(ws, it);
		for (size_t i = 0; i < it->n; i++)
			ev_free(it->evs[i]);
		ms_free(it);
	}
}

/* ---- progress and stalled streams ---- */

/* A waiting stream's output may have drained: send what is owed and go on
 * catching up, or keep waiting. */
static void stream_resume(ms_watch *w)
{
	if (w->closed)
		return;
	if (stream_slow(w)) {
		w->sink.want_drain(w->ud);
		return;
	}
	w->wait_drain = false;
	w->ctrl_slow = 0;
	if (w->progress_owed) {
		w->progress_owed = false;
		send_ctrl(w, -1, watch_hub_rev(w->ws->hub), false, false, 0, NULL);
	}
	schedule_catchup(w);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct ms_watch_srv *ws = arg;
	int64_t now = ms_now_mono_ns();
	if (now >= ws->progress_due) {
		ms_err err = {0};
		int64_t due = INT64_MAX;
		if (watch_hub_progress(ws->hub, &ws->batch, &due, &err) == 0) {
			for (size_t i = 0; i < ws->batch.n; i++) {
				watch_out *o = &ws->batch.out[i];
				ms_watch *w = o->owner;
				/* skipped on a slow stream: the next interval sends one */
				if (!w->closed && !w->wait_drain && !stream_slow(w))
					send_ctrl(w, o->id, o->rev, false, false, 0, NULL);
			}
		}
		/* watchers added later are due one interval after their creation */
		ws->progress_due = MS_MIN(due, now + ws->progress_ns);
	}
	/* a drain notification may not come (the gRPC layer only reports one
	 * after its own bound was exceeded): look at waiting streams here too */
	for (ms_watch *w = ws->streams.next; w != &ws->streams; w = w->next)
		if (w->wait_drain && !w->closed && w->sink.pending(w->ud) <= MS_WATCH_SLOW_BYTES / 2)
			stream_resume(w);
}

/* ---- life cycle ---- */

static int64_t progress_interval_ns(const ms_server *s)
{
	int64_t v = s->cfg.watch_progress_notify_ns;
	return v > 0 ? v : 600LL * 1000000000LL; /* etcd's default: 10 minutes */
}

int ms_watch_srv_init(ms_server *s, ms_err *err)
{
	struct ms_watch_srv *ws = ms_calloc(1, sizeof *ws);
	if (!ws)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	s->watch = ws;
	ws->s = s;
	ws->streams.next = ws->streams.prev = &ws->streams;
	ws->streams.refs = 1;
	ws->progress_ns = progress_interval_ns(s);
	ws->frag_limit = s->cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
	watch_batch_init(&ws->batch);
	watch_cfg cfg = {
	    .now = watch_clock, .progress_interval_ns = ws->progress_ns, .rev = engine_current_rev(s->eng)};
	int rc = watch_hub_new(&cfg, &ws->hub, err);
	if (rc)
		return rc;
	if ((rc = ms_queue_new_sharing(8192, s->results_q, &ws->feed_q)) || (rc = ms_queue_new(1024, &ws->cu_q)) ||
	    (rc = ms_queue_new(1024, &ws->cu_done_q)))
		return ms_err_set(err, rc, "cannot create watch queues");
	return 0;
}

int ms_watch_srv_start(ms_server *s, ms_err *err)
{
	struct ms_watch_srv *ws = s->watch;
	ws->feed_ev = event_new(s->base, ms_queue_fd(ws->feed_q), EV_READ | EV_PERSIST, on_feed, ws);
	ws->cu_done_ev = event_new(s->base, ms_queue_fd(ws->cu_done_q), EV_READ | EV_PERSIST, on_cu_done, ws);
	ws->tick_ev = event_new(s->base, -1, EV_PERSIST, on_tick, ws);
	if (!ws->feed_ev || !ws->cu_done_ev || !ws->tick_ev)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	int64_t tick_ms = MS_MAX(10, MS_MIN(TICK_MAX_MS, ws->progress_ns / 4000000));
	struct timeval tv = {tick_ms / 1000, (tick_ms % 1000) * 1000};
	event_add(ws->feed_ev, NULL);
	event_add(ws->cu_done_ev, NULL);
	event_add(ws->tick_ev, &tv);
	ws->progress_due = ms_now_mono_ns() + ws->progress_ns;
	for (int i = 0; i < CU_THREADS; i++) {
		if (pthread_create(&ws->thr[i], NULL, cu_main, ws) != 0)
			return ms_err_set(err, MS_EIO, "cannot start watch catch-up threads");
		ws->nthr++;
	}
	return 0;
}

void ms_watch_srv_free(ms_server *s)
{
	struct ms_watch_srv *ws = s->watch;
	if (!ws)
		return;
	for (int i = 0; i < ws->nthr; i++)
		ms_queue_push(ws->cu_q, ws);
	for (int i = 0; i < ws->nthr; i++)
		pthread_join(ws->thr[i], NULL);
	if (ws->cu_q) {
		cu_job *j;
		while ((j = ms_queue_pop(ws->cu_q)))
			if (j != (cu_job *)ws)
				ms_queue_push(ws->cu_done_q, j);
	}
	if (ws->feed_q) {
		feed_item *it;
		while ((it = ms_queue_pop(ws->feed_q))) {
			for (size_t i = 0; i < it->n; i++)
				ev_free(it->evs[i]);
			ms_free(it);
		}
	}
	/* streams still open (the API is torn down first, so normally none) */
	for (ms_watch *w = ws->streams.next; w != &ws->streams; w = w->next)
		w->closed = true;
	if (ws->cu_done_q) {
		cu_job *j;
		while ((j = ms_queue_pop(ws->cu_done_q))) {
			j->w->job = NULL;
			watch_unref(j->w);
			job_free(j);
		}
	}
	while (ws->streams.next != &ws->streams) {
		ms_watch *w = ws->streams.next;
		if (w->hs)
			watch_stream_close(w->hs);
		w->refs = 1;
		watch_unref(w);
	}
	if (ws->feed_ev)
		event_free(ws->feed_ev);
	if (ws->cu_done_ev)
		event_free(ws->cu_done_ev);
	if (ws->tick_ev)
		event_free(ws->tick_ev);
	ms_queue_del(ws->feed_q);
	ms_queue_del(ws->cu_q);
	ms_queue_del(ws->cu_done_q);
	watch_batch_free(&ws->batch);
	watch_hub_del(ws->hub);
	ms_free(ws);
	s->watch = NULL;
}

/* ---- client streams (loop) ---- */

int ms_server_watch_open(ms_server *s, const ms_watch_sink *sink, void *ud, ms_watch **out)
{
	struct ms_watch_srv *ws = s->watch;
	ms_watch *w = ms_calloc(1, sizeof *w);
	if (!w)
		return MS_ENOMEM;
	int rc = watch_stream_open(ws->hub, w, &w->hs, NULL);
	if (rc) {
		ms_free(w);
		return rc;
	}
	w->ws = ws;
	w->sink = *sink;
	w->ud = ud;
	w->refs = 1;
	w->next = &ws->streams;
	w->prev = ws->streams.prev;
	ws->streams.prev->next = w;
	ws->streams.prev = w;
	*out = w;
	return 0;
}

static int watch_create(ms_watch *w, const Etcdserverpb__WatchCreateRequest *c)
{
	struct ms_watch_srv *ws = w->ws;
	int64_t cur = engine_current_rev(ws->s->eng);
	watch_spec spec = {
	    .key = c->key.data,
	    .key_len = c->key.len,
	    .range_end = c->range_end.data,
	    .range_end_len = c->range_end.len,
	    .id = c->watch_id,
	    /* 0 = right after the created reply's header revision */
	    .start_rev = c->start_revision ? c->start_revision : cur + 1,
	    .prev_kv = c->prev_kv,
	    .progress_notify = c->progress_notify,
	    .fragment = c->fragment,
	};
	for (size_t i = 0; i < c->n_filters; i++) {
		if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT)
			spec.filters |= WATCH_NOPUT;
		else if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE)
			spec.filters |= WATCH_NODELETE;
	}
	int64_t id = -1;
	bool synced = true;
	ms_err err = {0};
	int rc = watch_hub_add(ws->hub, w->hs, &spec, &id, &synced, &err);
	if (rc == MS_EINVAL || rc == MS_EEXIST)
		/* etcd: created and canceled at once, id -1, the reason in the reply */
		return send_ctrl(w, -1, cur, true, true, 0, err.msg);
	if (rc)
		return rc;
	/* the created reply goes out before anything for this watcher */
	rc = send_ctrl(w, id, cur, true, false, 0, NULL);
	if (!synced)
		schedule_catchup(w);
	return rc;
}

/* A created/canceled reply is about to be queued: false when the stream is
 * slow and already holds CTRL_MAX_SLOW of them. */
static bool ctrl_room(ms_watch *w)
{
	if (!w->wait_drain && !stream_slow(w))
		return true;
	wait_for_drain(w); /* ctrl_slow is reset once the output drains */
	return ++w->ctrl_slow <= CTRL_MAX_SLOW;
}

int ms_server_watch_request(ms_watch *w, const Etcdserverpb__WatchRequest *req)
{
	struct ms_watch_srv *ws = w->ws;
	switch (req->request_union_case) {
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
		if (!ctrl_room(w))
			return MS_ETOO_MANY_REQS;
		return watch_create(w, req->create_request);
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST: {
		if (!ctrl_room(w))
			return MS_ETOO_MANY_REQS;
		int64_t id = req->cancel_request->watch_id;
		if (watch_hub_remove(ws->hub, w->hs, id) != 0)
			return 0; /* etcd: no reply for an unknown id */
		if (w->job && w->job->id == id)
			w->job->stale = true; /* the id may be reused by a new watcher */
		return send_ctrl(w, id, engine_current_rev(ws->s->eng), false, true, 0, NULL);
	}
	case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
		if (w->wait_drain || stream_slow(w)) {
			/* coalesced: one reply owed, sent once the stream drains */
			w->progress_owed = true;
			wait_for_drain(w);
			return 0;
		}
		/* the last revision handed to the watchers: everything up to it was sent */
		return send_ctrl(w, -1, watch_hub_rev(ws->hub), false, false, 0, NULL);
	default:
		return 0; /* etcd ignores requests it does not know */
	}
}

void ms_server_watch_drained(ms_watch *w)
{
	if (w->closed || !w->wait_drain)
		return;
	stream_resume(w);
}

void ms_server_watch_close(ms_watch *w)
{
	if (!w || w->closed)
		return;
	w->closed = true;
	watch_stream_close(w->hs);
	w->hs = NULL;
	watch_unref(w);
}
