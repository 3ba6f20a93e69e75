/* engine_range.c — reads: the MVCC scan (newest version <= R of each key,
 * one seek per key), etcd's Range options, HashKV and the history walk. */
#include "engine/engine_int.h"

#include <protobuf-c/protobuf-c.h>
#include <stdlib.h>
#include <string.h>

int eng_bounds_init(eng_bounds *b, const uint8_t *key, size_t klen, const uint8_t *end, size_t elen)
{
	memset(b, 0, sizeof *b);
	b->start = ms_malloc(2 * klen + 2 + ENG_REVLEN);
	if (!b->start)
		return MS_ENOMEM;
	b->start_len = eng_key_enc(key, klen, b->start);
	if (elen == 0) {
		b->single = true;
		return 0;
	}
	if (elen == 1 && end[0] == 0)
		return 0; /* "\0": every key >= key */
	if (eng_bytes_cmp(end, elen, key, klen) <= 0) {
		b->empty = true;
		return 0;
	}
	b->end = ms_malloc(2 * elen + 2);
	if (!b->end) {
		ms_free(b->start);
		b->start = NULL;
		return MS_ENOMEM;
	}
	b->end_len = eng_key_enc(end, elen, b->end);
	return 0;
}

void eng_bounds_free(eng_bounds *b)
{
	ms_free(b->start);
	ms_free(b->end);
	b->start = b->end = NULL;
}

/* Seek to the newest version <= rev of the key whose encoded prefix is p. */
static void seek_at(rocksdb_iterator_t *it, uint8_t *buf, const uint8_t *p, size_t plen, int64_t rev)
{
	if (buf != p)
		memmove(buf, p, plen);
	ms_put_u64be(buf + plen, ~(uint64_t)rev);
	memset(buf + plen + 8, 0, 8);
	rocksdb_iter_seek(it, (const char *)buf, plen + ENG_REVLEN);
}

static int iter_status(rocksdb_iterator_t *it, ms_err *err)
{
	char *rerr = NULL;
	rocksdb_iter_get_error(it, &rerr);
	if (rerr)
		return eng_rdb_err(err, MS_EIO, "kv iterator", rerr);
	return 0;
}

static int row_check(const uint8_t *rk, size_t rlen, ms_err *err)
{
	if (rlen < ENG_REVLEN + 2 || rk[rlen - ENG_REVLEN - 2] != 0 || rk[rlen - ENG_REVLEN - 1] != 1)
		return ms_err_set(err, MS_ECORRUPT, "engine: malformed kv row key (%zu bytes)", rlen);
	return 0;
}

int eng_scan(rocksdb_iterator_t *it, const eng_bounds *b, int64_t rev, eng_scan_fn fn, void *arg, ms_err *err)
{
	if (b->empty)
		return 0;
	int rc = 0;
	size_t cap = b->start_len + ENG_REVLEN;
	uint8_t *buf = ms_malloc(cap);
	if (!buf)
		return MS_ENOMEM;
	seek_at(it, buf, b->start, b->start_len, rev);
	while (rocksdb_iter_valid(it)) {
		size_t rlen, vlen;
		const uint8_t *rk = (const uint8_t *)rocksdb_iter_key(it, &rlen);
		if ((rc = row_check(rk, rlen, err)))
			goto out;
		size_t plen = rlen - ENG_REVLEN;
		if (b->single) {
			if (plen != b->start_len || memcmp(rk, b->start, plen))
				break;
		} else if (b->end && eng_bytes_cmp(rk, plen, b->end, b->end_len) >= 0) {
			break;
		}
		int64_t main;
		eng_rev_get(rk + plen, &main, NULL);
		if (main > rev) {
			/* newer than the view: jump to this key's version <= rev */
			if (cap < rlen) {
				uint8_t *nb = ms_realloc(buf, rlen);
				if (!nb) {
					rc = MS_ENOMEM;
					goto out;
				}
				buf = nb;
				cap = rlen;
			}
			seek_at(it, buf, rk, plen, rev);
			continue;
		}
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
		if (!eng_is_tombstone(v, vlen)) {
			engine_kv kv;
			if (engine_kv_decode(v, vlen, &kv)) {
				rc = ms_err_set(err, MS_ECORRUPT, "engine: undecodable KeyValue at revision %lld",
				                (long long)main);
				goto out;
			}
			rc = fn(arg, &kv);
			if (rc) {
				if (rc > 0)
					rc = 0;
				goto out;
			}
		}
		if (b->single)
			break;
		/* next user key: a few Next() calls (cheap) then one seek */
		if (cap < plen) {
			uint8_t *nb = ms_realloc(buf, plen + ENG_REVLEN);
			if (!nb) {
				rc = MS_ENOMEM;
				goto out;
			}
			buf = nb;
			cap = plen + ENG_REVLEN;
		}
		memcpy(buf, rk, plen);
		bool moved = false;
		for (int i = 0; i < 3; i++) {
			rocksdb_iter_next(it);
			if (!rocksdb_iter_valid(it)) {
				moved = true;
				break;
			}
			size_t nl;
			const uint8_t *nk = (const uint8_t *)rocksdb_iter_key(it, &nl);
			if (nl != plen + ENG_REVLEN || memcmp(nk, buf, plen)) {
				moved = true;
				break;
			}
		}
		if (!moved) {
			buf[plen - 1] = 0x02;
			rocksdb_iter_seek(it, (const char *)buf, plen);
		}
	}
	rc = iter_status(it, err);
out:
	ms_free(buf);
	return rc;
}

Etcdserverpb__ResponseHeader *eng_header(int64_t rev)
{
	Etcdserverpb__ResponseHeader *h = ms_malloc(sizeof *h);
	if (h) {
		etcdserverpb__response_header__init(h);
		h->revision = rev;
	}
	return h;
}

/* ---- Range ---- */
typedef struct range_acc {
	const Etcdserverpb__RangeRequest *r;
	int64_t fetch_limit; /* 0 = all */
	bool filter;
	int64_t count; /* every live key in range */
	Mvccpb__KeyValue **kvs;
	size_t n, cap;
} range_acc;

static bool range_pass(const Etcdserverpb__RangeRequest *r, const engine_kv *kv)
{
	if (r->max_mod_revision && kv->mod_rev > r->max_mod_revision)
		return false;
	if (r->min_mod_revision && kv->mod_rev < r->min_mod_revision)
		return false;
	if (r->max_create_revision && kv->create_rev > r->max_create_revision)
		return false;
	if (r->min_create_revision && kv->create_rev < r->min_create_revision)
		return false;
	return true;
}

static int range_cb(void *arg, const engine_kv *kv)
{
	range_acc *a = arg;
	a->count++;
	if (a->r->count_only)
		return 0;
	/* etcd fetches up to the limit first, counting every key, then filters */
	if (a->fetch_limit && a->count > a->fetch_limit)
		return 0;
	if (a->filter && !range_pass(a->r, kv))
		return 0;
	if (a->n == a->cap) {
		size_t nc = a->cap ? a->cap * 2 : 16;
		Mvccpb__KeyValue **nk = ms_realloc(a->kvs, nc * sizeof *nk);
		if (!nk)
			return MS_ENOMEM;
		a->kvs = nk;
		a->cap = nc;
	}
	/* keys_only drops values after sorting in etcd; a VALUE sort needs them */
	bool drop = a->r->keys_only && a->r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;
	Mvccpb__KeyValue *m = eng_pb_kv(kv, drop);
	if (!m)
		return MS_ENOMEM;
	a->kvs[a->n++] = m;
	return 0;
}

static int cmp_i64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

/* Compares by the sort target only; equal elements keep their scan order. */
static int kv_cmp(const Mvccpb__KeyValue *a, const Mvccpb__KeyValue *b, int target)
{
	switch (target) {
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION:
		return cmp_i64(a->version, b->version);
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE:
		return cmp_i64(a->create_revision, b->create_revision);
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD:
		return cmp_i64(a->mod_revision, b->mod_revision);
	case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE:
		return eng_bytes_cmp(a->value.data, a->value.len, b->value.data, b->value.len);
	default:
		return eng_bytes_cmp(a->key.data, a->key.len, b->key.data, b->key.len);
	}
}

/* Stable merge sort (no global state, so concurrent readers never wait on
 * each other). The scan yields keys in ascending order, so ties stay in key
 * order for ASCEND and DESCEND alike: what etcd 3.4 prints for results of up
 * to 12 keys (Go's sort.Sort is an insertion sort there; above that its tie
 * order is an artefact of pdqsort that no client can rely on). */
static void kv_sort(Mvccpb__KeyValue **a, Mvccpb__KeyValue **tmp, size_t n, int target, int sign)
{
	if (n < 2)
		return;
	if (n <= 12) {
		for (size_t i = 1; i < n; i++) {
			Mvccpb__KeyValue *x = a[i];
			size_t j = i;
			while (j > 0 && sign * kv_cmp(a[j - 1], x, target) > 0) {
				a[j] = a[j - 1];
				j--;
			}
			a[j] = x;
		}
		return;
	}
	size_t h = n / 2;
	kv_sort(a, tmp, h, target, sign);
	kv_sort(a + h, tmp, n - h, target, sign);
	size_t i = 0, j = h, k = 0;
	while (i < h && j < n)
		tmp[k++] = sign * kv_cmp(a[j], a[i], target) < 0 ? a[j++] : a[i++];
	while (i < h)
		tmp[k++] = a[i++];
	while (j < n)
		tmp[k++] = a[j++];
	memcpy(a, tmp, n * sizeof *a);
}

int eng_range_on(rocksdb_iterator_t *it, const Etcdserverpb__RangeRequest *r, int64_t cur, int64_t compact,
                 Etcdserverpb__RangeResponse **out, ms_err *err)
{
	*out = NULL;
	if (r->key.len == 0)
		return ms_err_set(err, MS_EKEY_EMPTY, "etcdserver: key is not provided");
	int64_t rev = r->revision;
	if (rev > cur)
		return ms_err_set(err, MS_EFUTURE_REV, "mvcc: required revision is a future revision");
	if (rev <= 0)
		rev = cur;
	if (rev < compact)
		return ms_err_set(err, MS_ECOMPACTED, "mvcc: required revision has been compacted");

	range_acc acc = {.r = r};
	acc.filter = r->min_mod_revision || r->max_mod_revision || r->min_create_revision || r->max_create_revision;
	if (r->limit > 0 && r->sort_order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE && !acc.filter)
		acc.fetch_limit = r->limit + 1;
	eng_bounds b;
	int rc = eng_bounds_init(&b, r->key.data, r->key.len, r->range_end.data, r->range_end.len);
	if (rc)
		return ms_err_set(err, rc, "engine: out of memory");
	rc = eng_scan(it, &b, rev, range_cb, &acc, err);
	eng_bounds_free(&b);
	if (rc)
		goto fail;

	int order = r->sort_order;
	if (r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
	    order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE)
		order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	if (order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE && acc.n > 1) {
		Mvccpb__KeyValue **tmp = ms_malloc(acc.n * sizeof *tmp);
		if (!tmp) {
			rc = MS_ENOMEM;
			goto fail;
		}
		kv_sort(acc.kvs, tmp, acc.n, r->sort_target,
		        order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND ? -1 : 1);
		ms_free(tmp);
	}
	Etcdserverpb__RangeResponse *resp = ms_malloc(sizeof *resp);
	if (!resp) {
		rc = MS_ENOMEM;
		goto fail;
	}
	etcdserverpb__range_response__init(resp);
	if (r->limit > 0 && acc.n > (size_t)r->limit) {
		for (size_t i = (size_t)r->limit; i < acc.n; i++)
			protobuf_c_message_free_unpacked(&acc.kvs[i]->base, &ms_pb_allocator);
		acc.n = (size_t)r->limit;
		resp->more = true;
	}
	if (r->keys_only) {
		for (size_t i = 0; i < acc.n; i++) {
			ms_free(acc.kvs[i]->value.data);
			acc.kvs[i]->value.data = NULL;
			acc.kvs[i]->value.len = 0;
		}
	}
	resp->kvs = acc.kvs;
	resp->n_kvs = acc.n;
	if (!acc.n) {
		ms_free(acc.kvs);
		resp->kvs = NULL;
	}
	resp->count = acc.count;
	resp->header = eng_header(cur);
	if (!resp->header) {
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
	}
	*out = resp;
	return 0;
fail:
	for (size_t i = 0; i < acc.n; i++)
		protobuf_c_message_free_unpacked(&acc.kvs[i]->base, &ms_pb_allocator);
	ms_free(acc.kvs);
	if (rc == MS_ENOMEM)
		ms_err_set(err, rc, "engine: out of memory");
	return rc;
}

/* A snapshot read view: current revision first, then the snapshot, then the
 * compaction revision, so data the view needs cannot have been removed —
 * provided the compaction is not past the view's revision: when batches
 * committed between the two loads compacted beyond it (a compaction at the
 * head revision), rows the view needs may already be gone, so take the view
 * again. */
typedef struct eng_view {
	const rocksdb_snapshot_t *snap;
	rocksdb_readoptions_t *ro;
	int64_t cur, compact;
} eng_view;

static void view_open(engine *e, eng_view *v)
{
	for (;;) {
		v->cur = atomic_load(&e->rev);
		v->snap = rocksdb_create_snapshot(e->db);
		v->compact = atomic_load(&e->compact);
		if (v->compact <= v->cur)
			break;
		rocksdb_release_snapshot(e->db, v->snap);
	}
	v->ro = rocksdb_readoptions_create();
	rocksdb_readoptions_set_snapshot(v->ro, v->snap);
}

static void view_close(engine *e, eng_view *v)
{
	rocksdb_readoptions_destroy(v->ro);
	rocksdb_release_snapshot(e->db, v->snap);
}

static int engine_range_unlocked(engine *e, const Etcdserverpb__RangeRequest *r, Etcdserverpb__RangeResponse **out,
                                 ms_err *err)
{
	eng_view v;
	view_open(e, &v);
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(e->db, v.ro, e->cf_kv);
	int rc = eng_range_on(it, r, v.cur, v.compact, out, err);
	rocksdb_iter_destroy(it);
	view_close(e, &v);
	return rc;
}

/* HashKV: crc32c over "kv" then, in row order, each (row key, row value) of
 * the versions a compaction at the compact revision keeps and that are at
 * or below rev. It hashes the logical history, not the physical rows, so it
 * does not depend on how far background compaction has got, and members
 * with the same history agree. The numbers differ from etcd's (different
 * row format). */
static int engine_hash_kv_unlocked(engine *e, int64_t rev, uint32_t *hash, int64_t *hash_rev, int64_t *compact_rev,
                                   ms_err *err)
{
	eng_view v;
	view_open(e, &v);
	int rc = 0;
	*hash = 0;
	*hash_rev = v.cur;
	*compact_rev = v.compact;
	if (rev > 0 && rev <= v.compact) {
		view_close(e, &v);
		return ms_err_set(err, MS_ECOMPACTED, "mvcc: required revision has been compacted");
	}
	if (rev > v.cur) {
		view_close(e, &v);
		return ms_err_set(err, MS_EFUTURE_REV, "mvcc: required revision is a future revision");
	}
	if (rev <= 0)
		rev = v.cur;
	uint32_t h = eng_crc32c(0, "kv", 2);
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(e->db, v.ro, e->cf_kv);
	uint8_t *prev = NULL;
	size_t prev_len = 0, prev_cap = 0;
	bool kept_below = false; /* the current key's newest version <= compact was seen */
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t rlen, vlen;
		const uint8_t *rk = (const uint8_t *)rocksdb_iter_key(it, &rlen);
		if ((rc = row_check(rk, rlen, err)))
			break;
		size_t plen = rlen - ENG_REVLEN;
		if (plen != prev_len || memcmp(rk, prev, plen)) {
			if (prev_cap < plen) {
				uint8_t *np = ms_realloc(prev, plen);
				if (!np) {
					rc = ms_err_set(err, MS_ENOMEM, "engine: out of memory");
					break;
				}
				prev = np;
				prev_cap = plen;
			}
			memcpy(prev, rk, plen);
			prev_len = plen;
			kept_below = false;
		}
		int64_t main;
		eng_rev_get(rk + plen, &main, NULL);
		if (main > rev)
			continue;
		const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &vlen);
		if (main <= v.compact) {
			if (kept_below)
				continue;
			kept_below = true;
			if (eng_is_tombstone(val, vlen))
				continue;
		}
		h = eng_crc32c(h, rk, rlen);
		h = eng_crc32c(h, val, vlen);
	}
	if (!rc)
		rc = iter_status(it, err);
	ms_free(prev);
	rocksdb_iter_destroy(it);
	view_close(e, &v);
	if (!rc)
		*hash = h;
	return rc;
}

/* ---- history ---- */
static bool in_range(const uint8_t *k, size_t kl, const uint8_t *key, size_t key_len, const uint8_t *end,
                     size_t end_len)
{
	if (end_len == 0)
		return eng_bytes_cmp(k, kl, key, key_len) == 0;
	if (eng_bytes_cmp(k, kl, key, key_len) < 0)
		return false;
	if (end_len == 1 && end[0] == 0)
		return true;
	return eng_bytes_cmp(k, kl, end, end_len) < 0;
}

/* Looks up the kv row (key, main, sub) and, with want_prev, the version just
 * before it. */
static int history_event(rocksdb_iterator_t *kit, const uint8_t *key, size_t klen, int type, int64_t main, int64_t sub,
                         bool want_prev, Mvccpb__Event *ev, Mvccpb__KeyValue *kv, Mvccpb__KeyValue *pkv, uint8_t *buf,
                         ms_err *err)
{
	size_t plen = eng_key_enc(key, klen, buf);
	eng_rev_put(buf + plen, main, sub);
	rocksdb_iter_seek(kit, (const char *)buf, plen + ENG_REVLEN);
	ev->type = type ? MVCCPB__EVENT__EVENT_TYPE__DELETE : MVCCPB__EVENT__EVENT_TYPE__PUT;
	ev->kv = kv;
	kv->key.data = (uint8_t *)key;
	kv->key.len = klen;
	kv->mod_revision = main;
	size_t rlen, vlen;
	const uint8_t *rk;
	if (!rocksdb_iter_valid(kit))
		return iter_status(kit, err);
	rk = (const uint8_t *)rocksdb_iter_key(kit, &rlen);
	if (rlen != plen + ENG_REVLEN || memcmp(rk, buf, rlen))
		return 0; /* row removed by compaction (tombstone at the compact revision) */
	if (!type) {
		engine_kv d;
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(kit, &vlen);
		if (engine_kv_decode(v, vlen, &d))
			return ms_err_set(err, MS_ECORRUPT, "engine: undecodable KeyValue at revision %lld",
			                  (long long)main);
		kv->value.data = (uint8_t *)d.value;
		kv->value.len = d.value_len;
		kv->create_revision = d.create_rev;
		kv->version = d.version;
		kv->lease = d.lease;
	}
	if (!want_prev)
		return 0;
	rocksdb_iter_next(kit);
	if (!rocksdb_iter_valid(kit))
		return iter_status(kit, err);
	rk = (const uint8_t *)rocksdb_iter_key(kit, &rlen);
	if (rlen != plen + ENG_REVLEN || memcmp(rk, buf, plen))
		return 0;
	const uint8_t *v = (const uint8_t *)rocksdb_iter_value(kit, &vlen);
	if (eng_is_tombstone(v, vlen))
		return 0;
	engine_kv d;
	if (engine_kv_decode(v, vlen, &d))
		return ms_err_set(err, MS_ECORRUPT, "engine: undecodable KeyValue");
	pkv->key.data = (uint8_t *)d.key;
	pkv->key.len = d.key_len;
	pkv->value.data = (uint8_t *)d.value;
	pkv->value.len = d.value_len;
	pkv->create_revision = d.create_rev;
	pkv->mod_revision = d.mod_rev;
	pkv->version = d.version;
	pkv->lease = d.lease;
	ev->prev_kv = pkv;
	return 0;
}

static int engine_history_unlocked(engine *e, const uint8_t *key, size_t key_len, const uint8_t *range_end,
                                   size_t range_end_len, int64_t start_rev, int64_t end_rev, bool want_prev,
                                   size_t max_events, engine_event_fn fn, void *arg, int64_t *next_rev, ms_err *err)
{
	eng_view v;
	view_open(e, &v);
	*next_rev = start_rev;
	if (start_rev < v.compact) {
		view_close(e, &v);
		return ms_err_set(err, MS_ECOMPACTED, "mvcc: required revision has been compacted");
	}
	if (start_rev < 1)
		start_rev = 1;
	if (end_rev <= 0 || end_rev > v.cur)
		end_rev = v.cur;
	int rc = 0;
	rocksdb_iterator_t *rit = rocksdb_create_iterator_cf(e->db, v.ro, e->cf_rev);
	rocksdb_iterator_t *kit = rocksdb_create_iterator_cf(e->db, v.ro, e->cf_kv);
	uint8_t *buf = NULL;
	size_t bcap = 0;
	uint8_t seek[ENG_REVLEN];
	ms_put_u64be(seek, (uint64_t)start_rev);
	memset(seek + 8, 0, 8);
	size_t n = 0;
	int64_t last = start_rev - 1;
	bool stopped = false;
	for (rocksdb_iter_seek(rit, (const char *)seek, sizeof seek); rocksdb_iter_valid(rit); rocksdb_iter_next(rit)) {
		size_t rlen, vlen;
		const uint8_t *rk = (const uint8_t *)rocksdb_iter_key(rit, &rlen);
		const uint8_t *rv = (const uint8_t *)rocksdb_iter_value(rit, &vlen);
		if (rlen != ENG_REVLEN || vlen < 1) {
			rc = ms_err_set(err, MS_ECORRUPT, "engine: malformed history row");
			break;
		}
		int64_t main = (int64_t)ms_get_u64be(rk), sub = (int64_t)ms_get_u64be(rk + 8);
		if (main > end_rev)
			break;
		if (max_events && n >= max_events && main != last) {
			stopped = true; /* stop on a revision boundary: one txn's events stay together */
			break;
		}
		const uint8_t *k = rv + 1;
		size_t kl = vlen - 1;
		if (!in_range(k, kl, key, key_len, range_end, range_end_len))
			continue;
		if (bcap < 2 * kl + 2 + ENG_REVLEN) {
			ms_free(buf);
			bcap = 2 * kl + 2 + ENG_REVLEN;
			buf = ms_malloc(bcap);
			if (!buf) {
				rc = ms_err_set(err, MS_ENOMEM, "engine: out of memory");
				break;
			}
		}
		Mvccpb__Event ev = MVCCPB__EVENT__INIT;
		Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT, pkv = MVCCPB__KEY_VALUE__INIT;
		if ((rc = history_event(kit, k, kl, rv[0], main, sub, want_prev, &ev, &kv, &pkv, buf, err)))
			break;
		n++;
		last = main;
		if ((rc = fn(arg, &ev)))
			break;
	}
	if (!rc)
		rc = iter_status(rit, err);
	if (!rc) {
		/* a full walk covers end_rev; a stopped one resumes after the last revision delivered */
		*next_rev = stopped ? last + 1 : end_rev + 1;
	}
	ms_free(buf);
	rocksdb_iter_destroy(kit);
	rocksdb_iter_destroy(rit);
	view_close(e, &v);
	return rc;
}

/* ---- public reads: each holds the swap lock (see engine_install) ---- */
int engine_range(engine *e, const Etcdserverpb__RangeRequest *r, Etcdserverpb__RangeResponse **out, ms_err *err)
{
	eng_rlock(e);
	int rc = engine_range_unlocked(e, r, out, err);
	eng_runlock(e);
	return rc;
}

int engine_hash_kv(engine *e, int64_t rev, uint32_t *hash, int64_t *hash_rev, int64_t *compact_rev, ms_err *err)
{
	eng_rlock(e);
	int rc = engine_hash_kv_unlocked(e, rev, hash, hash_rev, compact_rev, err);
	eng_runlock(e);
	return rc;
}

int engine_history(engine *e, const uint8_t *key, size_t key_len, const uint8_t *range_end, size_t range_end_len,
                   int64_t start_rev, int64_t end_rev, bool want_prev, size_t max_events, engine_event_fn fn, void *arg,
                   int64_t *next_rev, ms_err *err)
{
	eng_rlock(e);
	int rc = engine_history_unlocked(e, key, key_len, range_end, range_end_len, start_rev, end_rev, want_prev,
	                                 max_events, fn, arg, next_rev, err);
	eng_runlock(e);
	return rc;
}
