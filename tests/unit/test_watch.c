/* test_watch.c — watch hub core: matching (exact, prefix, ranges, from-key),
 * ids, filters, per-revision grouping, synced/unsynced, progress, and a
 * 100k-watcher comparison against a brute-force scan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/ms.h"
#include "kv.pb-c.h"
#include "watch/watch.h"

#define S 1000000000LL

static int64_t clk;
static int64_t fake_now(void *ud)
{
	return clk;
}

static watch_hub *mk(int64_t rev)
{
	watch_cfg c = {.now = fake_now, .progress_interval_ns = 10 * S, .rev = rev};
	watch_hub *h;
	assert_int_equal(watch_hub_new(&c, &h, NULL), 0);
	return h;
}

static int64_t add(watch_hub *h, watch_stream *ws, const char *key, const char *end, int64_t start)
{
	watch_spec sp = {.key = (const uint8_t *)key, .key_len = strlen(key), .start_rev = start};
	if (end) {
		sp.range_end = (const uint8_t *)end;
		sp.range_end_len = *end ? strlen(end) : 1; /* "" stands for "\0" here */
	}
	int64_t id = -1;
	assert_int_equal(watch_hub_add(h, ws, &sp, &id, NULL, NULL), 0);
	return id;
}

typedef struct hits {
	int64_t ids[64];
	size_t n;
} hits;

static void on_match(void *arg, const watch_info *w)
{
	hits *hs = arg;
	assert_true(hs->n < 64);
	hs->ids[hs->n++] = w->id;
}

static bool hit(const hits *hs, int64_t id)
{
	for (size_t i = 0; i < hs->n; i++)
		if (hs->ids[i] == id)
			return true;
	return false;
}

static hits match(watch_hub *h, const char *key)
{
	hits hs = {.n = 0};
	watch_hub_match(h, (const uint8_t *)key, strlen(key), on_match, &hs);
	return hs;
}

static void test_match_kinds(void **st)
{
	watch_hub *h = mk(1);
	watch_stream *ws;
	assert_int_equal(watch_stream_open(h, NULL, &ws, NULL), 0);
	int64_t ex = add(h, ws, "foo", NULL, 0);
	int64_t pre = add(h, ws, "foo", "fop", 0); /* prefix foo */
	int64_t rng = add(h, ws, "b", "d", 0);     /* [b, d) */
	int64_t from = add(h, ws, "m", "", 0);     /* >= m */
	int64_t all = add(h, ws, "", "", 0);       /* key "\0", end "\0": everything */
	int64_t z = add(h, ws, "", NULL, 0);       /* empty key = key "\0" only */
	assert_int_equal(watch_hub_count(h), 6);
	hits hs = match(h, "foo");
	assert_int_equal(hs.n, 3);
	assert_true(hit(&hs, ex) && hit(&hs, pre) && hit(&hs, all));
	hs = match(h, "foobar");
	assert_int_equal(hs.n, 2);
	assert_true(hit(&hs, pre) && hit(&hs, all));
	hs = match(h, "fo");
	assert_int_equal(hs.n, 1);
	hs = match(h, "b");
	assert_true(hs.n == 2 && hit(&hs, rng));
	hs = match(h, "czzzz");
	assert_true(hs.n == 2 && hit(&hs, rng));
	hs = match(h, "d"); /* end is exclusive */
	assert_true(hs.n == 1 && hit(&hs, all));
	hs = match(h, "m");
	assert_true(hs.n == 2 && hit(&hs, from));
	hs = match(h, "\xff\xff");
	assert_true(hs.n == 2 && hit(&hs, from));
	uint8_t zero = 0;
	hs = (hits){.n = 0};
	watch_hub_match(h, &zero, 1, on_match, &hs);
	assert_true(hs.n == 2 && hit(&hs, z) && hit(&hs, all));
	assert_int_equal(watch_hub_check(h), 0);
	watch_stream_close(ws);
	assert_int_equal(watch_hub_count(h), 0);
	watch_hub_del(h);
}

static void test_empty_range_refused(void **st)
{
	watch_hub *h = mk(1);
	watch_stream *ws;
	assert_int_equal(watch_stream_open(h, NULL, &ws, NULL), 0);
	ms_err err = {0};
	int64_t id;
	watch_spec sp = {
	    .key = (const uint8_t *)"b", .key_len = 1, .range_end = (const uint8_t *)"a", .range_end_len = 1};
	assert_int_equal(watch_hub_add(h, ws, &sp, &id, NULL, &err), MS_EINVAL);
	assert_string_equal(err.msg, "mvcc: watcher range is empty");
	sp.range_end = (const uint8_t *)"b"; /* key == end is empty too */
	assert_int_equal(watch_hub_add(h, ws, &sp, &id, NULL, NULL), MS_EINVAL);
	sp.range_end = (const uint8_t *)"ba";
	sp.range_end_len = 2;
	assert_int_equal(watch_hub_add(h, ws, &sp, &id, NULL, NULL), 0);
	assert_int_equal(id, 0);
	assert_int_equal(watch_stream_count(ws), 1);
	watch_stream_close(ws);
	watch_hub_del(h);
}

static void test_ids(void **st)
{
	watch_hub *h = mk(1);
	watch_stream *a, *b;
	assert_int_equal(watch_stream_open(h, NULL, &a, NULL), 0);
	assert_int_equal(watch_stream_open(h, NULL, &b, NULL), 0);
	watch_spec sp = {.key = (const uint8_t *)"k", .key_len = 1, .id = 1};
	int64_t id;
	ms_err err = {0};
	assert_int_equal(watch_hub_add(h, a, &sp, &id, NULL, NULL), 0);
	assert_int_equal(id, 1);
	assert_int_equal(watch_hub_add(h, a, &sp, &id, NULL, &err), MS_EEXIST);
	assert_string_equal(err.msg, "mvcc: duplicate watch ID provided on the WatchStream");
	assert_int_equal(watch_hub_add(h, b, &sp, &id, NULL, NULL), 0); /* ids are per stream */
	assert_int_equal(add(h, a, "k", NULL, 0), 0);
	assert_int_equal(add(h, a, "k", NULL, 0), 2); /* skips 1, in use */
	assert_int_equal(add(h, b, "k", NULL, 0), 0);
	assert_int_equal(watch_hub_remove(h, a, 0), 0);
	assert_int_equal(watch_hub_remove(h, a, 0), MS_ENOTFOUND);
	assert_int_equal(watch_hub_remove(h, a, 77), MS_ENOTFOUND);
	assert_int_equal(add(h, a, "k", NULL, 0), 3); /* auto ids keep counting */
	hits hs = match(h, "k");
	assert_int_equal(hs.n, 5);
	assert_int_equal(watch_hub_check(h), 0);
	watch_stream_close(a);
	hs = match(h, "k");
	assert_int_equal(hs.n, 2);
	watch_stream_close(b);
	watch_hub_del(h);
}

static void test_removal_keeps_others(void **st)
{
	watch_hub *h = mk(1);
	watch_stream *ws;
	assert_int_equal(watch_stream_open(h, NULL, &ws, NULL), 0);
	int64_t e1 = add(h, ws, "x", NULL, 0), e2 = add(h, ws, "x", NULL, 0), e3 = add(h, ws, "x", NULL, 0);
	int64_t r1 = add(h, ws, "a", "z", 0), r2 = add(h, ws, "a", "z", 0), r3 = add(h, ws, "w", "y", 0);
	assert_int_equal(watch_hub_remove(h, ws, e1), 0); /* the table's group head */
	hits hs = match(h, "x");
	assert_int_equal(hs.n, 5);
	assert_false(hit(&hs, e1));
	assert_int_equal(watch_hub_remove(h, ws, e3), 0);
	assert_int_equal(watch_hub_remove(h, ws, r1), 0);
	hs = match(h, "x");
	assert_int_equal(hs.n, 3);
	assert_true(hit(&hs, e2) && hit(&hs, r2) && hit(&hs, r3));
	assert_int_equal(watch_hub_check(h), 0);
	assert_int_equal(watch_hub_remove(h, ws, e2), 0);
	assert_int_equal(watch_hub_remove(h, ws, r2), 0);
	assert_int_equal(watch_hub_remove(h, ws, r3), 0);
	assert_int_equal(match(h, "x").n, 0);
	watch_stream_close(ws);
	watch_hub_del(h);
}

/* ---- feeding events ---- */

typedef struct evbuf {
	Mvccpb__Event e[16];
	Mvccpb__KeyValue kv[16];
	Mvccpb__Event *p[16];
	size_t n;
} evbuf;

static void put(evbuf *b, int type, const char *key)
{
	size_t i = b->n++;
	mvccpb__event__init(&b->e[i]);
	mvccpb__key_value__init(&b->kv[i]);
	b->e[i].type = type;
	b->e[i].kv = &b->kv[i];
	b->kv[i].key.data = (uint8_t *)key;
	b->kv[i].key.len = strlen(key);
	b->p[i] = &b->e[i];
}
#define PUT MVCCPB__EVENT__EVENT_TYPE__PUT
#define DEL MVCCPB__EVENT__EVENT_TYPE__DELETE

static const watch_out *find_out(const watch_batch *b, watch_stream *ws, int64_t id)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->out[i].stream == ws && b->out[i].id == id)
			return &b->out[i];
	return NULL;
}

static const char *evkey(const watch_out *o, size_t i)
{
	return (const char *)o->evs[i]->kv->key.data;
}

static void test_feed_groups_txn(void **st)
{
	watch_hub *h = mk(10);
	watch_stream *ws;
	int owner;
	assert_int_equal(watch_stream_open(h, &owner, &ws, NULL), 0);
	int64_t pa = add(h, ws, "a", "b", 0);
	int64_t kb = add(h, ws, "b", NULL, 0);
	int64_t none = add(h, ws, "q", NULL, 0);
	evbuf eb = {.n = 0};
	put(&eb, PUT, "b");
	put(&eb, PUT, "a1");
	put(&eb, DEL, "c");
	put(&eb, DEL, "a2");
	watch_batch b;
	watch_batch_init(&b);
	assert_int_equal(watch_hub_feed(h, 11, eb.p, eb.n, &b, NULL), 0);
	assert_int_equal(b.n, 2);
	/* outputs in order of each watcher's first event; events in txn order */
	assert_int_equal(b.out[0].id, kb);
	assert_int_equal(b.out[1].id, pa);
	assert_ptr_equal(b.out[1].owner, &owner);
	assert_int_equal(b.out[1].rev, 11);
	assert_int_equal(b.out[1].nevs, 2);
	assert_string_equal(evkey(&b.out[1], 0), "a1");
	assert_string_equal(evkey(&b.out[1], 1), "a2");
	assert_int_equal(b.out[0].nevs, 1);
	assert_null(find_out(&b, ws, none));
	assert_int_equal(watch_hub_rev(h), 11);
	/* revisions only go forward */
	assert_int_equal(watch_hub_feed(h, 11, eb.p, eb.n, &b, NULL), MS_EINVAL);
	assert_int_equal(watch_hub_feed(h, 12, eb.p, 0, &b, NULL), 0);
	assert_int_equal(b.n, 0);
	watch_batch_free(&b);
	watch_stream_close(ws);
	watch_hub_del(h);
}

static void test_filters(void **st)
{
	watch_hub *h = mk(1);
	watch_stream *ws;
	assert_int_equal(watch_stream_open(h, NULL, &ws, NULL), 0);
	int64_t ids[3];
	unsigned f[3] = {WATCH_NOPUT, WATCH_NODELETE, 0};
	for (int i = 0; i < 3; i++) {
		watch_spec sp = {.key = (const uint8_t *)"k", .key_len = 1, .filters = f[i], .prev_kv = i == 2};
		assert_int_equal(watch_hub_add(h, ws, &sp, &ids[i], NULL, NULL), 0);
	}
	evbuf eb = {.n = 0};
	put(&eb, PUT, "k");
	put(&eb, DEL, "k");
	watch_batch b;
	watch_batch_init(&b);
	assert_int_equal(watch_hub_feed(h, 2, eb.p, eb.n, &b, NULL), 0);
	assert_int_equal(b.n, 3);
	const watch_out *o = find_out(&b, ws, ids[0]);
	assert_true(o && o->nevs == 1 && o->evs[0]->type == DEL && !o->prev_kv);
	o = find_out(&b, ws, ids[1]);
	assert_true(o && o->nevs == 1 && o->evs[0]->type == PUT);
	o = find_out(&b, ws, ids[2]);
	assert_true(o && o->nevs == 2 && o->evs[0]->type == PUT && o->evs[1]->type == DEL && o->prev_kv);
	/* a txn with only filtered events gives that watcher nothing */
	eb.n = 0;
	put(&eb, PUT, "k");
	assert_int_equal(watch_hub_feed(h, 3, eb.p, eb.n, &b, NULL), 0);
	assert_int_equal(b.n, 2);
	assert_null(find_out(&b, ws, ids[0]));
	watch_batch_free(&b);
	watch_stream_close(ws);
	watch_hub_del(h);
}

static void test_sync_and_catch_up(void **st)
{
	watch_hub *h = mk(20);
	watch_stream *ws;
	assert_int_equal(watch_stream_open(h, NULL, &ws, NULL), 0);
	watch_spec sp = {.key = (const uint8_t *)"k", .key_len = 1, .start_rev = 5};
	int64_t old, fut, now;
	bool synced = true;
	assert_int_equal(watch_hub_add(h, ws, &sp, &old, &synced, NULL), 0);
	assert_false(synced);
	sp.start_rev = 23;
	assert_int_equal(watch_hub_add(h, ws, &sp, &fut, &synced, NULL), 0);
	assert_true(synced);
	sp.start_rev = 21; /* exactly the next revision: live */
	assert_int_equal(watch_hub_add(h, ws, &sp, &now, &synced, NULL), 0);
	assert_true(synced);
	watch_info wi[4];
	assert_int_equal(watch_stream_unsynced(ws, wi, 4), 1);
	assert_int_equal(wi[0].id, old);
	assert_int_equal(wi[0].next_rev, 5);
	assert_true(wi[0].key_len == 1 && wi[0].key[0] == 'k');

	evbuf eb = {.n = 0};
	put(&eb, PUT, "k");
	watch_batch b;
	watch_batch_init(&b);
	assert_int_equal(watch_hub_feed(h, 21, eb.p, 1, &b, NULL), 0);
	assert_int_equal(b.n, 1); /* the unsynced and the future watchers get nothing */
	assert_int_equal(b.out[0].id, now);
	/* history read up to 20 while 21 was fed: still behind */
	assert_int_equal(watch_hub_caught_up(h, ws, old, 21), 0);
	assert_int_equal(watch_hub_feed(h, 22, eb.p, 1, &b, NULL), 0);
	assert_int_equal(b.n, 1);
	/* history read through 22: synced, no gap, no duplicate */
	assert_int_equal(watch_hub_caught_up(h, ws, old, 23), 1);
	assert_int_equal(watch_stream_unsynced(ws, wi, 4), 0);
	assert_int_equal(watch_hub_feed(h, 23, eb.p, 1, &b, NULL), 0);
	assert_int_equal(b.n, 3);
	/* history may run ahead of the feed: revisions it covered are skipped */
	assert_int_equal(watch_hub_unsync(h, ws, old, 24), 0);
	assert_int_equal(watch_hub_caught_up(h, ws, old, 26), 1);
	assert_int_equal(watch_hub_feed(h, 24, eb.p, 1, &b, NULL), 0);
	assert_int_equal(b.n, 2);
	assert_null(find_out(&b, ws, old));
	assert_int_equal(watch_hub_feed(h, 25, eb.p, 1, &b, NULL), 0);
	assert_null(find_out(&b, ws, old));
	assert_int_equal(watch_hub_feed(h, 26, eb.p, 1, &b, NULL), 0);
	assert_non_null(find_out(&b, ws, old));
	/* a slow stream drops revision 26's reply: caught up from there */
	assert_int_equal(watch_hub_unsync(h, ws, now, 26), 0);
	assert_int_equal(watch_stream_unsynced(ws, wi, 4), 1);
	assert_int_equal(wi[0].next_rev, 26);
	assert_false(wi[0].synced);
	assert_int_equal(watch_hub_feed(h, 27, eb.p, 1, &b, NULL), 0);
	assert_null(find_out(&b, ws, now));
	assert_int_equal(watch_hub_caught_up(h, ws, 99, 30), MS_ENOTFOUND);
	assert_int_equal(watch_hub_unsync(h, ws, 99, 30), MS_ENOTFOUND);
	assert_int_equal(watch_hub_remove(h, ws, now), 0); /* removing an unsynced watcher */
	assert_int_equal(watch_stream_unsynced(ws, wi, 4), 0);
	watch_batch_free(&b);
	watch_stream_close(ws);
	watch_hub_del(h);
}

static void test_progress(void **st)
{
	clk = 1000 * S;
	watch_hub *h = mk(5);
	watch_stream *ws;
	assert_int_equal(watch_stream_open(h, NULL, &ws, NULL), 0);
	watch_spec sp = {.key = (const uint8_t *)"a", .key_len = 1, .progress_notify = true};
	int64_t pa, pb, plain, old;
	assert_int_equal(watch_hub_add(h, ws, &sp, &pa, NULL, NULL), 0);
	sp.key = (const uint8_t *)"b";
	assert_int_equal(watch_hub_add(h, ws, &sp, &pb, NULL, NULL), 0);
	sp.start_rev = 2; /* unsynced: no progress until caught up */
	assert_int_equal(watch_hub_add(h, ws, &sp, &old, NULL, NULL), 0);
	plain = add(h, ws, "a", NULL, 0);
	watch_batch b;
	watch_batch_init(&b);
	int64_t due;
	assert_int_equal(watch_hub_progress(h, &b, &due, NULL), 0);
	assert_int_equal(b.n, 0);
	assert_int_equal(due, clk + 10 * S);
	clk += 6 * S;
	evbuf eb = {.n = 0};
	put(&eb, PUT, "a");
	assert_int_equal(watch_hub_feed(h, 6, eb.p, 1, &b, NULL), 0);
	assert_int_equal(b.n, 2);
	clk += 4 * S; /* b idle for 10 s, a got an event 4 s ago */
	assert_int_equal(watch_hub_progress(h, &b, &due, NULL), 0);
	assert_int_equal(b.n, 1);
	assert_int_equal(b.out[0].id, pb);
	assert_int_equal(b.out[0].nevs, 0);
	assert_int_equal(b.out[0].rev, 6);
	assert_int_equal(due, clk + 6 * S);
	assert_int_equal(watch_hub_progress(h, &b, NULL, NULL), 0);
	assert_int_equal(b.n, 0); /* interval restarted */
	clk += 6 * S;
	assert_int_equal(watch_hub_progress(h, &b, NULL, NULL), 0);
	assert_int_equal(b.n, 1);
	assert_int_equal(b.out[0].id, pa);
	(void)plain;
	(void)old;
	watch_batch_free(&b);
	watch_stream_close(ws);
	watch_hub_del(h);
}

static void test_fragment_count(void **st)
{
	evbuf eb = {.n = 0};
	static uint8_t val[1000];
	for (int i = 0; i < 5; i++) {
		put(&eb, PUT, "key");
		eb.kv[i].value.data = val;
		eb.kv[i].value.len = sizeof val;
	}
	size_t one = mvccpb__event__get_packed_size(eb.p[0]);
	assert_int_equal(watch_fragment_count(eb.p, 5, 1 << 20), 5);
	assert_int_equal(watch_fragment_count(eb.p, 5, 10), 1); /* at least one */
	assert_int_equal(watch_fragment_count(eb.p, 5, 3 * one), 2);
	assert_int_equal(watch_fragment_count(eb.p, 5, 3 * one + 20), 3);
}

/* ---- many watchers vs brute force ---- */

typedef struct bw {
	char key[8], end[8];
	size_t klen, elen; /* elen 0 = single key; end "\0" = from key */
	int64_t id;
	bool live;
} bw;

static int bcmp8(const char *a, size_t al, const char *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = memcmp(a, b, n);
	return c ? c : (al > bl) - (al < bl);
}

static bool bw_match(const bw *w, const char *k, size_t kl)
{
	if (w->elen == 0)
		return w->klen == kl && !memcmp(w->key, k, kl);
	if (bcmp8(k, kl, w->key, w->klen) < 0)
		return false;
	if (w->elen == 1 && w->end[0] == 0)
		return true;
	return bcmp8(k, kl, w->end, w->elen) < 0;
}

static uint64_t xs_next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void rnd_key(uint64_t *x, char *k, size_t *len)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	*len = 1 + *x % 4;
	for (size_t i = 0; i < *len; i++)
		k[i] = (char)('a' + (*x >> (8 + 4 * i)) % 6);
}

typedef struct cnt {
	uint8_t *seen;
	size_t n;
} cnt;

static void on_count(void *arg, const watch_info *w)
{
	cnt *c = arg;
	assert_int_equal(c->seen[w->id], 0); /* reported once */
	c->seen[w->id] = 1;
	c->n++;
}

static void test_many_vs_brute_force(void **st)
{
	const char *e = getenv("WATCH_TEST_N");
	size_t n = e && atol(e) > 0 ? (size_t)atol(e) : 100000;
	watch_hub *h = mk(1);
	watch_stream *ws;
	assert_int_equal(watch_stream_open(h, NULL, &ws, NULL), 0);
	bw *w = calloc(n, sizeof *w);
	uint8_t *seen = calloc(n, 1);
	uint64_t x = 0x2545F4914F6CDD1DULL;
	for (size_t i = 0; i < n; i++) {
		rnd_key(&x, w[i].key, &w[i].klen);
		switch (x % 8) {
		case 0:
		case 1:
		case 2:
		case 3:
			break; /* exact */
		case 4:
		case 5: /* prefix */
			memcpy(w[i].end, w[i].key, w[i].klen);
			w[i].elen = w[i].klen;
			w[i].end[w[i].elen - 1]++;
			break;
		case 6: /* range: a random end above the key */
			do
				rnd_key(&x, w[i].end, &w[i].elen);
			while (bcmp8(w[i].key, w[i].klen, w[i].end, w[i].elen) >= 0);
			break;
		default: /* from key */
			w[i].end[0] = 0;
			w[i].elen = 1;
		}
		watch_spec sp = {.key = (const uint8_t *)w[i].key,
		                 .key_len = w[i].klen,
		                 .range_end = (const uint8_t *)w[i].end,
		                 .range_end_len = w[i].elen};
		assert_int_equal(watch_hub_add(h, ws, &sp, &w[i].id, NULL, NULL), 0);
		assert_int_equal(w[i].id, (int64_t)i);
		w[i].live = true;
	}
	/* remove a quarter at random */
	for (size_t i = 0; i < n / 4; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t j = x % n;
		if (w[j].live) {
			assert_int_equal(watch_hub_remove(h, ws, w[j].id), 0);
			w[j].live = false;
		}
	}
	assert_int_equal(watch_hub_check(h), 0);
	for (int q = 0; q < 300; q++) {
		char k[8];
		size_t kl;
		rnd_key(&x, k, &kl);
		size_t expect = 0;
		for (size_t i = 0; i < n; i++)
			if (w[i].live && bw_match(&w[i], k, kl))
				expect++;
		memset(seen, 0, n);
		cnt c = {seen, 0};
		watch_hub_match(h, (const uint8_t *)k, kl, on_count, &c);
		assert_int_equal(c.n, expect);
		for (size_t i = 0; i < n; i++)
			if (seen[i])
				assert_true(w[i].live && bw_match(&w[i], k, kl));
	}
	watch_stream_close(ws);
	watch_hub_del(h);
	free(w);
	free(seen);
}

/* Random txns fed to random watchers (several streams, filters, adds and
 * removes in between) against a brute-force model of what each should get. */
static void test_feed_random_vs_model(void **st)
{
	enum { NW = 3000, NS = 4 };
	watch_hub *h = mk(1);
	watch_stream *ws[NS];
	for (int s = 0; s < NS; s++)
		assert_int_equal(watch_stream_open(h, NULL, &ws[s], NULL), 0);
	static bw w[NW];
	static unsigned filt[NW];
	static int strm[NW];
	memset(w, 0, sizeof w);
	uint64_t x = 0xDEADBEEFCAFEULL;
	watch_batch b;
	watch_batch_init(&b);
	int64_t rev = 1;
	for (int round = 0; round < 400; round++) {
		/* churn: (re)create some watchers */
		for (int c = 0; c < 40; c++) {
			size_t i = xs_next(&x) % NW;
			if (w[i].live) {
				assert_int_equal(watch_hub_remove(h, ws[strm[i]], w[i].id), 0);
				w[i].live = false;
				continue;
			}
			rnd_key(&x, w[i].key, &w[i].klen);
			w[i].elen = 0;
			uint64_t r = xs_next(&x);
			if (r % 3 == 1) {
				memcpy(w[i].end, w[i].key, w[i].klen);
				w[i].elen = w[i].klen;
				w[i].end[w[i].elen - 1]++;
			} else if (r % 7 == 2) {
				w[i].end[0] = 0;
				w[i].elen = 1;
			}
			filt[i] = (unsigned)(r >> 10) % 4;
			strm[i] = (int)((r >> 20) % NS);
			watch_spec sp = {.key = (const uint8_t *)w[i].key,
			                 .key_len = w[i].klen,
			                 .range_end = (const uint8_t *)w[i].end,
			                 .range_end_len = w[i].elen,
			                 .filters = filt[i]};
			assert_int_equal(watch_hub_add(h, ws[strm[i]], &sp, &w[i].id, NULL, NULL), 0);
			w[i].live = true;
		}
		evbuf eb = {.n = 0};
		static char keys[16][8];
		size_t ne = 1 + xs_next(&x) % 6;
		for (size_t j = 0; j < ne; j++) {
			size_t kl;
			rnd_key(&x, keys[j], &kl);
			keys[j][kl] = 0;
			put(&eb, (xs_next(&x) & 1) ? PUT : DEL, keys[j]);
		}
		assert_int_equal(watch_hub_feed(h, ++rev, eb.p, eb.n, &b, NULL), 0);
		size_t expect_outs = 0;
		for (size_t i = 0; i < NW; i++) {
			if (!w[i].live)
				continue;
			size_t want[16], nwant = 0;
			for (size_t j = 0; j < ne; j++) {
				bool is_put = eb.e[j].type == PUT;
				if ((is_put && (filt[i] & WATCH_NOPUT)) || (!is_put && (filt[i] & WATCH_NODELETE)))
					continue;
				if (bw_match(&w[i], keys[j], eb.kv[j].key.len))
					want[nwant++] = j;
			}
			const watch_out *o = find_out(&b, ws[strm[i]], w[i].id);
			if (!nwant) {
				assert_null(o);
				continue;
			}
			expect_outs++;
			assert_non_null(o);
			assert_int_equal(o->rev, rev);
			assert_int_equal(o->nevs, nwant);
			for (size_t j = 0; j < nwant; j++)
				assert_ptr_equal(o->evs[j], eb.p[want[j]]);
		}
		assert_int_equal(b.n, expect_outs);
		if (round % 50 == 0)
			assert_int_equal(watch_hub_check(h), 0);
	}
	assert_int_equal(watch_hub_check(h), 0);
	watch_batch_free(&b);
	for (int s = 0; s < NS; s++)
		watch_stream_close(ws[s]);
	watch_hub_del(h);
}

/* Every allocation failure leaves a consistent hub and no leak. */
static void test_alloc_failures(void **st)
{
	for (long fail = 1; fail < 120; fail++) {
		watch_hub *h = mk(1);
		watch_stream *ws = NULL;
		ms_alloc_fail_after(fail);
		if (watch_stream_open(h, NULL, &ws, NULL) == 0) {
			for (int i = 0; i < 30; i++) {
				char k[8];
				snprintf(k, sizeof k, "k%d", i % 7);
				watch_spec sp = {.key = (const uint8_t *)k, .key_len = strlen(k)};
				if (i % 3 == 0) {
					sp.range_end = (const uint8_t *)"z";
					sp.range_end_len = 1;
				}
				int64_t id;
				watch_hub_add(h, ws, &sp, &id, NULL, NULL);
			}
			evbuf eb = {.n = 0};
			put(&eb, PUT, "k1");
			put(&eb, PUT, "k2");
			watch_batch b;
			watch_batch_init(&b);
			watch_hub_feed(h, 2, eb.p, eb.n, &b, NULL);
			watch_batch_free(&b);
		}
		ms_alloc_fail_after(0);
		assert_int_equal(watch_hub_check(h), 0);
		watch_stream_close(ws);
		watch_hub_del(h);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_match_kinds),
	    cmocka_unit_test(test_empty_range_refused),
	    cmocka_unit_test(test_ids),
	    cmocka_unit_test(test_removal_keeps_others),
	    cmocka_unit_test(test_feed_groups_txn),
	    cmocka_unit_test(test_filters),
	    cmocka_unit_test(test_sync_and_catch_up),
	    cmocka_unit_test(test_progress),
	    cmocka_unit_test(test_fragment_count),
	    cmocka_unit_test(test_many_vs_brute_force),
	    cmocka_unit_test(test_feed_random_vs_model),
	    cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
