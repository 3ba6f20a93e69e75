/* watch.c — the watch hub: watcher lifecycle, matcher (hash table + interval
 * treap), per-revision grouping, synced/unsynced sets, progress bookkeeping. */
#include "watch/watch.h"

#include <pthread.h>
#include <string.h>

#include "kv.pb-c.h"

#define DEFAULT_PROGRESS_NS (600LL * 1000000000LL)

typedef struct watcher watcher;

enum { W_EXACT, W_RANGE, W_FROMKEY };

struct watcher {
	watch_stream *ws;
	int64_t id;
	uint64_t seq; /* hub-unique: tie-break in the treap */
	uint8_t *key; /* key then range_end, one allocation */
	size_t key_len;
	uint8_t *end;
	size_t end_len;
	int kind;
	int64_t next_rev;
	unsigned filters;
	bool prev_kv, progress_notify, fragment, synced;
	int64_t last_sent; /* clock ns of the last response (progress) */
	/* exact: watchers of the same key, head stored in the table */
	watcher *eq_prev, *eq_next;
	/* range / from-key: treap node */
	watcher *left, *right, *maxend;
	uint32_t prio;
	/* the stream's list of all its watchers, and of its unsynced ones */
	watcher *s_prev, *s_next;
	watcher *u_prev, *u_next;
	/* the hub's list of progress_notify watchers */
	watcher *p_prev, *p_next;
	/* feed grouping */
	uint64_t stamp;
	size_t slot;
};

struct watch_stream {
	watch_hub *hub;
	void *owner;
	ms_htab byid; /* watcher * by id */
	watcher *all, *unsynced;
	int64_t next_auto;
};

struct watch_hub {
	pthread_mutex_t mu;
	watch_cfg cfg;
	int64_t rev;
	ms_htab exact;   /* head watcher * by key */
	watcher *ranges; /* treap root */
	watcher *progress;
	size_t count, nstreams;
	uint64_t seq, stamp;
	uint32_t rng;
};

/* ---- byte keys ---- */

static int bcmp_keys(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = n ? memcmp(a, b, n) : 0;
	if (c)
		return c;
	return (al > bl) - (al < bl);
}

typedef struct keyref {
	const uint8_t *key;
	size_t len;
} keyref;

static bool exact_eq(const void *entry, const void *key)
{
	const watcher *w = entry;
	const keyref *k = key;
	return w->key_len == k->len && memcmp(w->key, k->key, k->len) == 0;
}

static bool id_eq(const void *entry, const void *key)
{
	return ((const watcher *)entry)->id == *(const int64_t *)key;
}

static uint64_t id_hash(int64_t id)
{
	return ms_hash_u64((uint64_t)id);
}

/* ---- the interval treap ---- */

/* Is w's end above e's? From-key ends are +infinity. */
static bool end_gt(const watcher *w, const watcher *e)
{
	if (w->kind == W_FROMKEY)
		return e->kind != W_FROMKEY;
	if (e->kind == W_FROMKEY)
		return false;
	return bcmp_keys(w->end, w->end_len, e->end, e->end_len) > 0;
}

/* Does w's range end after key (key < end)? */
static bool end_after(const watcher *w, const uint8_t *key, size_t len)
{
	return w->kind == W_FROMKEY || bcmp_keys(w->end, w->end_len, key, len) > 0;
}

static bool node_less(const watcher *a, const watcher *b)
{
	int c = bcmp_keys(a->key, a->key_len, b->key, b->key_len);
	return c < 0 || (c == 0 && a->seq < b->seq);
}

static void upd(watcher *t)
{
	watcher *m = t;
	if (t->left && end_gt(t->left->maxend, m))
		m = t->left->maxend;
	if (t->right && end_gt(t->right->maxend, m))
		m = t->right->maxend;
	t->maxend = m;
}

static watcher *rot_right(watcher *t)
{
	watcher *l = t->left;
	t->left = l->right;
	l->right = t;
	upd(t);
	upd(l);
	return l;
}

static watcher *rot_left(watcher *t)
{
	watcher *r = t->right;
	t->right = r->left;
	r->left = t;
	upd(t);
	upd(r);
	return r;
}

static watcher *treap_insert(watcher *t, watcher *w)
{
	if (!t) {
		w->left = w->right = NULL;
		w->maxend = w;
		return w;
	}
	if (node_less(w, t)) {
		t->left = treap_insert(t->left, w);
		if (t->left->prio > t->prio)
			return rot_right(t);
	} else {
		t->right = treap_insert(t->right, w);
		if (t->right->prio > t->prio)
			return rot_left(t);
	}
	upd(t);
	return t;
}

static watcher *treap_merge(watcher *a, watcher *b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	if (a->prio > b->prio) {
		a->right = treap_merge(a->right, b);
		upd(a);
		return a;
	}
	b->left = treap_merge(a, b->left);
	upd(b);
	return b;
}

static watcher *treap_remove(watcher *t, watcher *w)
{
	MS_ASSERT(t != NULL);
	if (t == w)
		return treap_merge(t->left, t->right);
	if (node_less(w, t))
		t->left = treap_remove(t->left, w);
	else
		t->right = treap_remove(t->right, w);
	upd(t);
	return t;
}

typedef void (*visit_fn)(void *arg, watcher *w);

/* Stabbing query: every interval with start <= key < end. Subtrees whose
 * largest end is <= key are skipped, right subtrees of nodes starting after
 * key too, so the cost is O(log n + matches) on a balanced tree. */
static void treap_stab(watcher *t, const uint8_t *key, size_t len, visit_fn fn, void *arg)
{
	while (t && end_after(t->maxend, key, len)) {
		treap_stab(t->left, key, len, fn, arg);
		if (bcmp_keys(t->key, t->key_len, key, len) > 0)
			return;
		if (end_after(t, key, len))
			fn(arg, t);
		t = t->right;
	}
}

static void match_locked(watch_hub *h, const uint8_t *key, size_t len, visit_fn fn, void *arg)
{
	keyref k = {key, len};
	for (watcher *w = ms_htab_find(&h->exact, ms_hash_bytes(key, len), exact_eq, &k); w; w = w->eq_next)
		fn(arg, w);
	treap_stab(h->ranges, key, len, fn, arg);
}

/* ---- lists ---- */

#define LIST_PUSH(head, w, P, N)                                                                                       \
	do {                                                                                                           \
		(w)->P = NULL;                                                                                         \
		(w)->N = (head);                                                                                       \
		if (head)                                                                                              \
			(head)->P = (w);                                                                               \
		(head) = (w);                                                                                          \
	} while (0)
#define LIST_DEL(head, w, P, N)                                                                                        \
	do {                                                                                                           \
		if ((w)->P)                                                                                            \
			(w)->P->N = (w)->N;                                                                            \
		else                                                                                                   \
			(head) = (w)->N;                                                                               \
		if ((w)->N)                                                                                            \
			(w)->N->P = (w)->P;                                                                            \
		(w)->P = (w)->N = NULL;                                                                                \
	} while (0)

static void set_unsynced(watcher *w, int64_t from)
{
	if (w->synced) {
		w->synced = false;
		LIST_PUSH(w->ws->unsynced, w, u_prev, u_next);
	}
	w->next_rev = from;
}

static void set_synced(watcher *w)
{
	if (!w->synced) {
		LIST_DEL(w->ws->unsynced, w, u_prev, u_next);
		w->synced = true;
	}
}

static void fill_info(const watcher *w, watch_info *i)
{
	i->stream = w->ws;
	i->owner = w->ws->owner;
	i->id = w->id;
	i->key = w->key;
	i->key_len = w->key_len;
	i->range_end = w->end;
	i->range_end_len = w->end_len;
	i->next_rev = w->next_rev;
	i->filters = w->filters;
	i->prev_kv = w->prev_kv;
	i->progress_notify = w->progress_notify;
	i->fragment = w->fragment;
	i->synced = w->synced;
}

/* ---- hub and streams ---- */

int watch_hub_new(const watch_cfg *cfg, watch_hub **out, ms_err *err)
{
	*out = NULL;
	if (!cfg || !cfg->now)
		return ms_err_set(err, MS_EINVAL, "watch: a clock is required");
	watch_hub *h = ms_calloc(1, sizeof *h);
	if (!h)
		return ms_err_set(err, MS_ENOMEM, "watch: out of memory");
	h->cfg = *cfg;
	if (h->cfg.progress_interval_ns <= 0)
		h->cfg.progress_interval_ns = DEFAULT_PROGRESS_NS;
	h->rev = cfg->rev;
	h->rng = 0x9e3779b9u; /* treap priorities: deterministic, only balance depends on them */
	pthread_mutex_init(&h->mu, NULL);
	*out = h;
	return 0;
}

void watch_hub_del(watch_hub *h)
{
	if (!h)
		return;
	MS_ASSERT(h->nstreams == 0 && h->count == 0);
	ms_htab_free(&h->exact);
	pthread_mutex_destroy(&h->mu);
	ms_free(h);
}

int64_t watch_hub_rev(watch_hub *h)
{
	pthread_mutex_lock(&h->mu);
	int64_t r = h->rev;
	pthread_mutex_unlock(&h->mu);
	return r;
}

size_t watch_hub_count(watch_hub *h)
{
	pthread_mutex_lock(&h->mu);
	size_t n = h->count;
	pthread_mutex_unlock(&h->mu);
	return n;
}

int watch_stream_open(watch_hub *h, void *owner, watch_stream **out, ms_err *err)
{
	watch_stream *ws = ms_calloc(1, sizeof *ws);
	if (!ws)
		return ms_err_set(err, MS_ENOMEM, "watch: out of memory");
	ws->hub = h;
	ws->owner = owner;
	pthread_mutex_lock(&h->mu);
	h->nstreams++;
	pthread_mutex_unlock(&h->mu);
	*out = ws;
	return 0;
}

static void unlink_watcher(watch_hub *h, watcher *w)
{
	watch_stream *ws = w->ws;
	if (w->kind == W_EXACT) {
		if (w->eq_prev) {
			w->eq_prev->eq_next = w->eq_next;
			if (w->eq_next)
				w->eq_next->eq_prev = w->eq_prev;
		} else {
			/* w heads its key's group in the table: hand the slot on */
			keyref k = {w->key, w->key_len};
			uint64_t hh = ms_hash_bytes(w->key, w->key_len);
			watcher *got = ms_htab_remove(&h->exact, hh, exact_eq, &k);
			MS_ASSERT(got == w);
			if (w->eq_next) {
				w->eq_next->eq_prev = NULL;
				/* cannot fail: a slot was just freed and the table never shrinks */
				int rc = ms_htab_insert(&h->exact, hh, w->eq_next);
				MS_ASSERT(rc == 0);
			}
		}
	} else {
		h->ranges = treap_remove(h->ranges, w);
	}
	int64_t id = w->id;
	watcher *got = ms_htab_remove(&ws->byid, id_hash(id), id_eq, &id);
	MS_ASSERT(got == w);
	LIST_DEL(ws->all, w, s_prev, s_next);
	if (!w->synced)
		LIST_DEL(ws->unsynced, w, u_prev, u_next);
	if (w->progress_notify)
		LIST_DEL(h->progress, w, p_prev, p_next);
	h->count--;
}

void watch_stream_close(watch_stream *ws)
{
	if (!ws)
		return;
	watch_hub *h = ws->hub;
	pthread_mutex_lock(&h->mu);
	while (ws->all) {
		watcher *w = ws->all;
		unlink_watcher(h, w);
		ms_free(w->key);
		ms_free(w);
	}
	h->nstreams--;
	pthread_mutex_unlock(&h->mu);
	ms_htab_free(&ws->byid);
	ms_free(ws);
}

size_t watch_stream_count(watch_stream *ws)
{
	pthread_mutex_lock(&ws->hub->mu);
	size_t n = ws->byid.n;
	pthread_mutex_unlock(&ws->hub->mu);
	return n;
}

static watcher *find_watcher(watch_stream *ws, int64_t id)
{
	return ms_htab_find(&ws->byid, id_hash(id), id_eq, &id);
}

int watch_hub_add(watch_hub *h, watch_stream *ws, const watch_spec *spec, int64_t *id, bool *synced, ms_err *err)
{
	MS_ASSERT(ws->hub == h);
	static const uint8_t zero = 0;
	const uint8_t *key = spec->key;
	size_t klen = spec->key_len;
	if (klen == 0) {
		key = &zero;
		klen = 1;
	}
	int kind = W_EXACT;
	if (spec->range_end_len == 1 && spec->range_end[0] == 0)
		kind = W_FROMKEY;
	else if (spec->range_end_len > 0)
		kind = W_RANGE;
	if (kind == W_RANGE && bcmp_keys(key, klen, spec->range_end, spec->range_end_len) >= 0)
		return ms_err_set(err, MS_EINVAL, "mvcc: watcher range is empty");

	watcher *w = ms_calloc(1, sizeof *w);
	uint8_t *kb = ms_malloc(klen + spec->range_end_len);
	if (!w || !kb) {
		ms_free(w);
		ms_free(kb);
		return ms_err_set(err, MS_ENOMEM, "watch: out of memory");
	}
	memcpy(kb, key, klen);
	if (spec->range_end_len)
		memcpy(kb + klen, spec->range_end, spec->range_end_len);
	w->key = kb;
	w->key_len = klen;
	w->end = kb + klen;
	w->end_len = spec->range_end_len;
	w->kind = kind;
	w->filters = spec->filters;
	w->prev_kv = spec->prev_kv;
	w->progress_notify = spec->progress_notify;
	w->fragment = spec->fragment;
	w->ws = ws;

	int rc = 0;
	pthread_mutex_lock(&h->mu);
	int64_t wid = spec->id;
	if (wid != 0) {
		if (find_watcher(ws, wid)) {
			rc = ms_err_set(err, MS_EEXIST, "mvcc: duplicate watch ID provided on the WatchStream");
			goto fail_locked;
		}
	} else {
		/* etcd: auto ids per stream count from 0, skipping ids in use */
		while (find_watcher(ws, ws->next_auto))
			ws->next_auto++;
		wid = ws->next_auto++;
	}
	w->id = wid;
	if (ms_htab_insert(&ws->byid, id_hash(wid), w)) {
		rc = ms_err_set(err, MS_ENOMEM, "watch: out of memory");
		goto fail_locked;
	}
	if (kind == W_EXACT) {
		keyref k = {w->key, w->key_len};
		uint64_t hh = ms_hash_bytes(w->key, w->key_len);
		watcher *head = ms_htab_find(&h->exact, hh, exact_eq, &k);
		if (head) {
			/* join the group behind its head: the table slot stays as is */
			w->eq_prev = head;
			w->eq_next = head->eq_next;
			if (head->eq_next)
				head->eq_next->eq_prev = w;
			head->eq_next = w;
		} else if (ms_htab_insert(&h->exact, hh, w)) {
			ms_htab_remove(&ws->byid, id_hash(wid), id_eq, &wid);
			rc = ms_err_set(err, MS_ENOMEM, "watch: out of memory");
			goto fail_locked;
		}
	} else {
		h->rng ^= h->rng << 13;
		h->rng ^= h->rng >> 17;
		h->rng ^= h->rng << 5;
		w->prio = h->rng;
		w->seq = ++h->seq;
		h->ranges = treap_insert(h->ranges, w);
	}
	LIST_PUSH(ws->all, w, s_prev, s_next);
	if (w->progress_notify)
		LIST_PUSH(h->progress, w, p_prev, p_next);
	w->last_sent = h->cfg.now(h->cfg.now_ud);
	w->synced = true;
	if (spec->start_rev == 0 || spec->start_rev > h->rev)
		w->next_rev = spec->start_rev ? spec->start_rev : h->rev + 1;
	else
		set_unsynced(w, spec->start_rev);
	h->count++;
	if (synced)
		*synced = w->synced;
	*id = wid;
	pthread_mutex_unlock(&h->mu);
	return 0;

fail_locked:
	pthread_mutex_unlock(&h->mu);
	ms_free(kb);
	ms_free(w);
	return rc;
}

int watch_hub_remove(watch_hub *h, watch_stream *ws, int64_t id)
{
	MS_ASSERT(ws->hub == h);
	pthread_mutex_lock(&h->mu);
	watcher *w = find_watcher(ws, id);
	if (w)
		unlink_watcher(h, w);
	pthread_mutex_unlock(&h->mu);
	if (!w)
		return MS_ENOTFOUND;
	ms_free(w->key);
	ms_free(w);
	return 0;
}

typedef struct match_ctx {
	watch_match_fn fn;
	void *arg;
} match_ctx;

static void visit_public(void *arg, watcher *w)
{
	match_ctx *c = arg;
	watch_info i;
	fill_info(w, &i);
	c->fn(c->arg, &i);
}

void watch_hub_match(watch_hub *h, const uint8_t *key, size_t key_len, watch_match_fn fn, void *arg)
{
	match_ctx c = {fn, arg};
	pthread_mutex_lock(&h->mu);
	match_locked(h, key, key_len, visit_public, &c);
	pthread_mutex_unlock(&h->mu);
}

/* ---- batches ---- */

void watch_batch_init(watch_batch *b)
{
	memset(b, 0, sizeof *b);
}

void watch_batch_free(watch_batch *b)
{
	ms_free(b->out);
	ms_free(b->evs);
	ms_free(b->tmp);
	memset(b, 0, sizeof *b);
}

static int grow_arr(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap : 16;
	while (nc < need)
		nc *= 2;
	void *np = ms_realloc(*p, nc * elem);
	if (!np)
		return MS_ENOMEM;
	*p = np;
	*cap = nc;
	return 0;
}

/* ---- feed ---- */

typedef struct feed_ctx {
	watch_hub *h;
	watch_batch *b;
	int64_t rev;
	size_t ev; /* index of the event being matched */
	int type;
	int rc;
} feed_ctx;

/* Records the pair (watcher, event) in b->tmp as two slots. */
static void visit_feed(void *arg, watcher *w)
{
	feed_ctx *c = arg;
	if (c->rc || !w->synced || c->rev < w->next_rev)
		return;
	if (c->type == MVCCPB__EVENT__EVENT_TYPE__PUT ? (w->filters & WATCH_NOPUT) : (w->filters & WATCH_NODELETE))
		return;
	watch_batch *b = c->b;
	if (grow_arr((void **)&b->tmp, &b->tmpcap, b->tmpn + 2, sizeof *b->tmp)) {
		c->rc = MS_ENOMEM;
		return;
	}
	b->tmp[b->tmpn++] = w;
	b->tmp[b->tmpn++] = (void *)(uintptr_t)c->ev;
}

int watch_hub_feed(watch_hub *h, int64_t rev, struct Mvccpb__Event *const *evs, size_t n, watch_batch *b, ms_err *err)
{
	b->n = 0;
	b->tmpn = 0;
	pthread_mutex_lock(&h->mu);
	if (rev <= h->rev) {
		pthread_mutex_unlock(&h->mu);
		return ms_err_set(err, MS_EINVAL, "watch: revision %lld fed after %lld", (long long)rev,
		                  (long long)h->rev);
	}
	feed_ctx c = {.h = h, .b = b, .rev = rev};
	for (size_t i = 0; i < n && !c.rc; i++) {
		const Mvccpb__Event *e = evs[i];
		if (!e || !e->kv)
			continue;
		c.ev = i;
		c.type = e->type;
		match_locked(h, e->kv->key.data, e->kv->key.len, visit_feed, &c);
	}
	if (c.rc)
		goto fail_locked;
	/* group: one output per watcher, in order of its first event */
	uint64_t stamp = ++h->stamp;
	size_t npairs = b->tmpn / 2, nout = 0;
	for (size_t p = 0; p < npairs; p++) {
		watcher *w = b->tmp[2 * p];
		if (w->stamp != stamp) {
			w->stamp = stamp;
			w->slot = nout++;
		}
	}
	if (grow_arr((void **)&b->out, &b->cap, nout, sizeof *b->out) ||
	    grow_arr((void **)&b->evs, &b->evcap, npairs, sizeof *b->evs)) {
		c.rc = MS_ENOMEM;
		h->stamp++; /* forget the slots */
		goto fail_locked;
	}
	for (size_t k = 0; k < nout; k++)
		b->out[k].nevs = 0;
	for (size_t p = 0; p < npairs; p++) {
		watcher *w = b->tmp[2 * p];
		watch_out *o = &b->out[w->slot];
		if (o->nevs++ == 0) {
			o->owner = w->ws->owner;
			o->stream = w->ws;
			o->id = w->id;
			o->rev = rev;
			o->prev_kv = w->prev_kv;
			o->fragment = w->fragment;
		}
	}
	/* offsets, then scatter in pair order: each watcher's events keep the txn order */
	size_t off = 0;
	for (size_t k = 0; k < nout; k++) {
		size_t cnt = b->out[k].nevs;
		b->out[k].evs = b->evs + off;
		b->out[k].nevs = 0;
		off += cnt;
	}
	int64_t now = nout ? h->cfg.now(h->cfg.now_ud) : 0;
	for (size_t p = 0; p < npairs; p++) {
		watcher *w = b->tmp[2 * p];
		watch_out *o = &b->out[w->slot];
		o->evs[o->nevs++] = evs[(uintptr_t)b->tmp[2 * p + 1]];
		w->next_rev = rev + 1;
		w->last_sent = now;
	}
	b->n = nout;
	h->rev = rev;
	pthread_mutex_unlock(&h->mu);
	return 0;

fail_locked:
	pthread_mutex_unlock(&h->mu);
	b->n = 0;
	return ms_err_set(err, MS_ENOMEM, "watch: out of memory matching revision %lld", (long long)rev);
}

/* ---- catch-up ---- */

size_t watch_stream_unsynced(watch_stream *ws, watch_info *out, size_t max)
{
	size_t k = 0;
	pthread_mutex_lock(&ws->hub->mu);
	for (watcher *w = ws->unsynced; w && k < max; w = w->u_next)
		fill_info(w, &out[k++]);
	pthread_mutex_unlock(&ws->hub->mu);
	return k;
}

int watch_hub_caught_up(watch_hub *h, watch_stream *ws, int64_t id, int64_t next_rev)
{
	MS_ASSERT(ws->hub == h);
	int rc;
	pthread_mutex_lock(&h->mu);
	watcher *w = find_watcher(ws, id);
	if (!w) {
		rc = MS_ENOTFOUND;
	} else if (w->synced) {
		rc = 1;
	} else {
		if (next_rev > w->next_rev)
			w->next_rev = next_rev;
		/* the live feed delivers every revision after h->rev; history
		 * delivered everything before next_rev: no gap once next_rev > h->rev */
		rc = w->next_rev > h->rev;
		if (rc) {
			set_synced(w);
			w->last_sent = h->cfg.now(h->cfg.now_ud);
		}
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

int watch_hub_unsync(watch_hub *h, watch_stream *ws, int64_t id, int64_t from_rev)
{
	MS_ASSERT(ws->hub == h);
	pthread_mutex_lock(&h->mu);
	watcher *w = find_watcher(ws, id);
	/* a synced watcher's next_rev may lag far behind (nothing matched for a
	 * while) and point below a compaction: from_rev is what was dropped */
	if (w && w->synced)
		set_unsynced(w, from_rev);
	else if (w && from_rev < w->next_rev)
		w->next_rev = from_rev;
	pthread_mutex_unlock(&h->mu);
	return w ? 0 : MS_ENOTFOUND;
}

int64_t watch_hub_jump(watch_hub *h, int64_t rev)
{
	pthread_mutex_lock(&h->mu);
	int64_t old = h->rev;
	if (rev > h->rev)
		h->rev = rev;
	pthread_mutex_unlock(&h->mu);
	return old;
}

void watch_stream_resync(watch_hub *h, watch_stream *ws, int64_t from_rev)
{
	MS_ASSERT(ws->hub == h);
	pthread_mutex_lock(&h->mu);
	for (watcher *w = ws->all; w; w = w->s_next)
		if (w->synced)
			set_unsynced(w, from_rev);
	pthread_mutex_unlock(&h->mu);
}

/* ---- progress ---- */

int watch_hub_progress(watch_hub *h, watch_batch *b, int64_t *next_due, ms_err *err)
{
	b->n = 0;
	int rc = 0;
	int64_t due = INT64_MAX;
	pthread_mutex_lock(&h->mu);
	int64_t now = h->cfg.now(h->cfg.now_ud), iv = h->cfg.progress_interval_ns;
	for (watcher *w = h->progress; w; w = w->p_next) {
		if (w->synced && now - w->last_sent >= iv) {
			if (grow_arr((void **)&b->out, &b->cap, b->n + 1, sizeof *b->out)) {
				rc = ms_err_set(err, MS_ENOMEM, "watch: out of memory");
				break;
			}
			b->out[b->n++] = (watch_out){.owner = w->ws->owner,
			                             .stream = w->ws,
			                             .id = w->id,
			                             .rev = h->rev,
			                             .prev_kv = w->prev_kv,
			                             .fragment = w->fragment};
			w->last_sent = now;
		}
		/* unsynced watchers are looked at again one interval from now */
		int64_t d = w->synced ? w->last_sent + iv : now + iv;
		if (d < due)
			due = d;
	}
	pthread_mutex_unlock(&h->mu);
	if (next_due)
		*next_due = due;
	return rc;
}

/* ---- fragments ---- */

static size_t varint_len(size_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

size_t watch_fragment_count(struct Mvccpb__Event *const *evs, size_t n, size_t limit)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		size_t s = mvccpb__event__get_packed_size(evs[i]);
		total += 1 + varint_len(s) + s; /* WatchResponse.events: tag, length, body */
		if (i > 0 && total >= limit)
			return i;
	}
	return n;
}

/* ---- checks ---- */

static int check_treap(const watcher *t, const watcher *lo, size_t *count)
{
	if (!t)
		return 0;
	if (lo && node_less(t, lo))
		return MS_ECORRUPT;
	if ((t->left && t->left->prio > t->prio) || (t->right && t->right->prio > t->prio))
		return MS_ECORRUPT;
	if (t->left && !node_less(t->left, t))
		return MS_ECORRUPT;
	if (t->right && node_less(t->right, t))
		return MS_ECORRUPT;
	const watcher *m = t;
	if (t->left && end_gt(t->left->maxend, m))
		m = t->left->maxend;
	if (t->right && end_gt(t->right->maxend, m))
		m = t->right->maxend;
	if (end_gt(m, t->maxend) || end_gt(t->maxend, m))
		return MS_ECORRUPT;
	(*count)++;
	int rc = check_treap(t->left, lo, count);
	return rc ? rc : check_treap(t->right, t, count);
}

int watch_hub_check(watch_hub *h)
{
	pthread_mutex_lock(&h->mu);
	size_t nr = 0, ne = 0;
	int rc = check_treap(h->ranges, NULL, &nr);
	for (size_t i = 0; i < h->exact.cap && !rc; i++) {
		if (!h->exact.h[i])
			continue;
		const watcher *head = h->exact.v[i];
		if (head->eq_prev)
			rc = MS_ECORRUPT;
		for (const watcher *w = head; w && !rc; w = w->eq_next) {
			if (w->kind != W_EXACT || w->key_len != head->key_len ||
			    memcmp(w->key, head->key, w->key_len) != 0 || (w->eq_next && w->eq_next->eq_prev != w))
				rc = MS_ECORRUPT;
			ne++;
		}
	}
	if (!rc && ne + nr != h->count)
		rc = MS_ECORRUPT;
	pthread_mutex_unlock(&h->mu);
	return rc;
}
