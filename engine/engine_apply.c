/* engine_apply.c — the apply batch: Put, DeleteRange, leases, compaction
 * records and meta records written into one RocksDB WriteBatchWithIndex
 * (reads in the batch see earlier ops through an iterator over batch+DB),
 * committed with the consistent index in one write. */
#include "engine/engine_int.h"

#include <protobuf-c/protobuf-c.h>
#include <string.h>

int engine_apply_begin(engine *e, engine_events_fn on_events, void *arg, engine_apply **out, ms_err *err)
{
	*out = NULL;
	if (e->batch_open)
		return ms_err_set(err, MS_EINVAL, "engine: an apply batch is already open");
	engine_apply *a = ms_calloc(1, sizeof *a);
	if (!a)
		return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
	a->e = e;
	a->wb = rocksdb_writebatch_wi_create(0, 1);
	a->on_events = on_events;
	a->arg = arg;
	a->rev = atomic_load(&e->rev);
	a->compact = atomic_load(&e->compact);
	e->batch_open = true;
	*out = a;
	return 0;
}

rocksdb_iterator_t *eng_apply_iter(engine_apply *a, rocksdb_column_family_handle_t *cf)
{
	rocksdb_iterator_t *base = rocksdb_create_iterator_cf(a->e->db, a->e->ro, cf);
	return rocksdb_writebatch_wi_create_iterator_with_base_cf(a->wb, base, cf);
}

rocksdb_iterator_t *eng_apply_kv_iter(engine_apply *a)
{
	if (!a->kv_it)
		a->kv_it = eng_apply_iter(a, a->e->cf_kv);
	return a->kv_it;
}

static void free_groups(engine_apply *a)
{
	for (size_t g = 0; g < a->ngroups; g++) {
		for (size_t i = 0; i < a->groups[g].n; i++)
			if (a->groups[g].evs[i])
				protobuf_c_message_free_unpacked(&a->groups[g].evs[i]->base, &ms_pb_allocator);
		ms_free(a->groups[g].evs);
	}
	ms_free(a->groups);
	a->groups = NULL;
	a->ngroups = a->capgroups = 0;
}

static int ev_add(engine_apply *a, int64_t rev, Mvccpb__Event *ev)
{
	eng_evgroup *g = a->ngroups ? &a->groups[a->ngroups - 1] : NULL;
	if (!g || g->rev != rev) {
		if (a->ngroups == a->capgroups) {
			size_t nc = a->capgroups ? a->capgroups * 2 : 8;
			eng_evgroup *ng = ms_realloc(a->groups, nc * sizeof *ng);
			if (!ng)
				return MS_ENOMEM;
			a->groups = ng;
			a->capgroups = nc;
		}
		g = &a->groups[a->ngroups++];
		memset(g, 0, sizeof *g);
		g->rev = rev;
	}
	if (g->n == g->cap) {
		size_t nc = g->cap ? g->cap * 2 : 4;
		Mvccpb__Event **ne = ms_realloc(g->evs, nc * sizeof *ne);
		if (!ne)
			return MS_ENOMEM;
		g->evs = ne;
		g->cap = nc;
	}
	g->evs[g->n++] = ev;
	return 0;
}

static Mvccpb__KeyValue *pb_kv_dup(const Mvccpb__KeyValue *m)
{
	engine_kv kv = {m->key.data,        m->key.len,      m->value.data, m->value.len,
	                m->create_revision, m->mod_revision, m->version,    m->lease};
	return eng_pb_kv(&kv, false);
}

/* Newest live version of key at rev through it; value pointers alias the
 * iterator (valid until it moves or the batch is written). */
static int lookup(rocksdb_iterator_t *it, const uint8_t *key, size_t klen, int64_t rev, engine_kv *kv, bool *found,
                  ms_err *err)
{
	*found = false;
	uint8_t stack[256];
	uint8_t *buf = 2 * klen + 2 + ENG_REVLEN <= sizeof stack ? stack : ms_malloc(2 * klen + 2 + ENG_REVLEN);
	if (!buf)
		return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
	size_t plen = eng_key_enc(key, klen, buf);
	ms_put_u64be(buf + plen, ~(uint64_t)rev);
	memset(buf + plen + 8, 0, 8);
	rocksdb_iter_seek(it, (const char *)buf, plen + ENG_REVLEN);
	int rc = 0;
	if (rocksdb_iter_valid(it)) {
		size_t rlen, vlen;
		const uint8_t *rk = (const uint8_t *)rocksdb_iter_key(it, &rlen);
		if (rlen == plen + ENG_REVLEN && !memcmp(rk, buf, plen)) {
			const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
			if (!eng_is_tombstone(v, vlen)) {
				if (engine_kv_decode(v, vlen, kv))
					rc = ms_err_set(err, MS_ECORRUPT, "engine: undecodable KeyValue");
				else
					*found = true;
			}
		}
	} else {
		char *rerr = NULL;
		rocksdb_iter_get_error(it, &rerr);
		if (rerr)
			rc = eng_rdb_err(err, MS_EIO, "kv read", rerr);
	}
	if (buf != stack)
		ms_free(buf);
	return rc;
}

bool eng_apply_lease_exists(engine_apply *a, int64_t id)
{
	uint8_t k[9] = {'L'};
	ms_put_u64be(k + 1, (uint64_t)id);
	char *rerr = NULL;
	size_t len;
	char *v = rocksdb_writebatch_wi_get_from_batch_and_db_cf(a->wb, a->e->db, a->e->ro, a->e->cf_lease,
	                                                         (const char *)k, sizeof k, &len, &rerr);
	rocksdb_free(rerr);
	bool ok = v != NULL;
	rocksdb_free(v);
	return ok;
}

int eng_check_put_state(engine_apply *a, const Etcdserverpb__PutRequest *r, ms_err *err)
{
	if (r->key.len == 0)
		return ms_err_set(err, MS_EKEY_EMPTY, "etcdserver: key is not provided");
	if (r->ignore_value || r->ignore_lease) {
		engine_kv kv;
		bool found;
		int rc = lookup(eng_apply_kv_iter(a), r->key.data, r->key.len, a->rev, &kv, &found, err);
		if (rc)
			return rc;
		if (!found)
			return ms_err_set(err, MS_EKEY_NOT_FOUND, "etcdserver: key not found");
	}
	if (r->lease && !eng_apply_lease_exists(a, r->lease))
		return ms_err_set(err, MS_ELEASE_NOT_FOUND, "etcdserver: requested lease not found");
	return 0;
}

static void put_hist(engine_apply *a, const eng_wctx *w, int type, const uint8_t *key, size_t klen, uint8_t *scratch)
{
	uint8_t rk[ENG_REVLEN];
	ms_put_u64be(rk, (uint64_t)w->main);
	ms_put_u64be(rk + 8, (uint64_t)w->sub);
	scratch[0] = (uint8_t)type;
	memcpy(scratch + 1, key, klen);
	rocksdb_writebatch_wi_put_cf(a->wb, a->e->cf_rev, (const char *)rk, sizeof rk, (const char *)scratch, klen + 1);
}

static void lease_attach(engine_apply *a, int64_t lease, const uint8_t *key, size_t klen, bool attach, uint8_t *scratch)
{
	scratch[0] = 'A';
	ms_put_u64be(scratch + 1, (uint64_t)lease);
	memcpy(scratch + 9, key, klen);
	if (attach)
		rocksdb_writebatch_wi_put_cf(a->wb, a->e->cf_lease, (const char *)scratch, 9 + klen, "", 0);
	else
		rocksdb_writebatch_wi_delete_cf(a->wb, a->e->cf_lease, (const char *)scratch, 9 + klen);
}

int eng_do_put(engine_apply *a, eng_wctx *w, const Etcdserverpb__PutRequest *r, Etcdserverpb__PutResponse **out,
               ms_err *err)
{
	engine *e = a->e;
	const uint8_t *key = r->key.data;
	size_t klen = r->key.len;
	int rc = 0;
	rocksdb_iterator_t *it = eng_apply_kv_iter(a);
	engine_kv prev;
	bool found;
	uint8_t *val = NULL, *row = NULL, *scratch = NULL;
	Mvccpb__KeyValue *prev_pb = NULL;
	Etcdserverpb__PutResponse *resp = NULL;
	Mvccpb__Event *ev = NULL;
	if ((rc = lookup(it, key, klen, w->main, &prev, &found, err)))
		goto out;
	engine_kv kv = {
	    .key = key,
	    .key_len = klen,
	    .value = r->ignore_value && found ? prev.value : r->value.data,
	    .value_len = r->ignore_value && found ? prev.value_len : r->value.len,
	    .create_rev = found ? prev.create_rev : w->main,
	    .mod_rev = w->main,
	    .version = found ? prev.version + 1 : 1,
	    .lease = r->ignore_lease && found ? prev.lease : r->lease,
	};
	int64_t old_lease = found ? prev.lease : 0;
	size_t vlen = engine_kv_encode(&kv, NULL, 0);
	val = ms_malloc(vlen);
	row = ms_malloc(2 * klen + 2 + ENG_REVLEN);
	scratch = ms_malloc(klen + 9);
	if (!val || !row || !scratch)
		goto oom;
	engine_kv_encode(&kv, val, vlen);
	kv.value = val + 8 + klen; /* the iterator's copy goes away below */
	if (found && (r->prev_kv || a->on_events)) {
		if (!(prev_pb = eng_pb_kv(&prev, false)))
			goto oom;
	}

	if (out) {
		if (!(resp = ms_malloc(sizeof *resp)))
			goto oom;
		etcdserverpb__put_response__init(resp);
		if (!(resp->header = eng_header(w->main)))
			goto oom;
		if (r->prev_kv && prev_pb && !(resp->prev_kv = pb_kv_dup(prev_pb)))
			goto oom;
	}
	if (a->on_events) {
		if (!(ev = ms_malloc(sizeof *ev)))
			goto oom;
		mvccpb__event__init(ev);
		ev->type = MVCCPB__EVENT__EVENT_TYPE__PUT;
		ev->prev_kv = prev_pb;
		prev_pb = NULL;
		if (!(ev->kv = eng_pb_kv(&kv, false)))
			goto oom;
	}

	size_t plen = eng_key_enc(key, klen, row);
	eng_rev_put(row + plen, w->main, w->sub);
	rocksdb_writebatch_wi_put_cf(a->wb, e->cf_kv, (const char *)row, plen + ENG_REVLEN, (const char *)val, vlen);
	put_hist(a, w, 0, key, klen, scratch);
	if (old_lease != kv.lease) {
		if (old_lease)
			lease_attach(a, old_lease, key, klen, false, scratch);
		if (kv.lease)
			lease_attach(a, kv.lease, key, klen, true, scratch);
	}
	w->sub++;
	if (ev) {
		if (ev_add(a, w->main, ev)) {
			a->poisoned = true;
			goto oom;
		}
		ev = NULL;
	}
	if (out)
		*out = resp;
	resp = NULL;
	goto out;
oom:
	rc = ms_err_set(err, MS_ENOMEM, "engine: out of memory");
out:
	if (prev_pb)
		protobuf_c_message_free_unpacked(&prev_pb->base, &ms_pb_allocator);
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
	if (ev)
		protobuf_c_message_free_unpacked(&ev->base, &ms_pb_allocator);
	ms_free(val);
	ms_free(row);
	ms_free(scratch);
	return rc;
}

typedef struct del_item {
	uint8_t *key;
	size_t klen;
	int64_t lease;
	Mvccpb__KeyValue *prev; /* when prev_kv or events are wanted */
} del_item;

typedef struct del_acc {
	del_item *items;
	size_t n, cap;
	bool want_prev;
} del_acc;

static int del_cb(void *arg, const engine_kv *kv)
{
	del_acc *d = arg;
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 8;
		del_item *ni = ms_realloc(d->items, nc * sizeof *ni);
		if (!ni)
			return MS_ENOMEM;
		d->items = ni;
		d->cap = nc;
	}
	del_item *it = &d->items[d->n];
	memset(it, 0, sizeof *it);
	it->key = ms_memdup(kv->key, kv->key_len);
	if (!it->key)
		return MS_ENOMEM;
	it->klen = kv->key_len;
	it->lease = kv->lease;
	d->n++;
	if (d->want_prev && !(it->prev = eng_pb_kv(kv, false)))
		return MS_ENOMEM;
	return 0;
}

int eng_do_delete(engine_apply *a, eng_wctx *w, const Etcdserverpb__DeleteRangeRequest *r,
                  Etcdserverpb__DeleteRangeResponse **out, ms_err *err)
{
	engine *e = a->e;
	del_acc d = {.want_prev = r->prev_kv || a->on_events};
	Etcdserverpb__DeleteRangeResponse *resp = NULL;
	int64_t sub0 = w->sub;
	eng_bounds b;
	int rc = eng_bounds_init(&b, r->key.data, r->key.len, r->range_end.data, r->range_end.len);
	if (rc)
		return ms_err_set(err, rc, "engine: out of memory");
	/* del_cb copies what it keeps: the shared iterator may move on */
	rc = eng_scan(eng_apply_kv_iter(a), &b, w->main, del_cb, &d, err);
	eng_bounds_free(&b);
	if (rc)
		goto out;
	if (out) {
		if (!(resp = ms_malloc(sizeof *resp)))
			goto oom;
		etcdserverpb__delete_range_response__init(resp);
		resp->deleted = (int64_t)d.n;
		if (r->prev_kv && d.n) {
			if (!(resp->prev_kvs = ms_calloc(d.n, sizeof *resp->prev_kvs)))
				goto oom;
			for (size_t i = 0; i < d.n; i++) {
				if (!(resp->prev_kvs[i] = pb_kv_dup(d.items[i].prev)))
					goto oom;
				resp->n_prev_kvs++;
			}
		}
	}
	for (size_t i = 0; i < d.n; i++) {
		del_item *di = &d.items[i];
		uint8_t *row = ms_malloc(2 * di->klen + 2 + ENG_REVLEN + di->klen + 9);
		if (!row) {
			a->poisoned = i > 0;
			goto oom;
		}
		uint8_t *scratch = row + 2 * di->klen + 2 + ENG_REVLEN;
		size_t plen = eng_key_enc(di->key, di->klen, row);
		eng_rev_put(row + plen, w->main, w->sub);
		const char tomb = ENG_TOMBSTONE;
		rocksdb_writebatch_wi_put_cf(a->wb, e->cf_kv, (const char *)row, plen + ENG_REVLEN, &tomb, 1);
		put_hist(a, w, 1, di->key, di->klen, scratch);
		if (di->lease)
			lease_attach(a, di->lease, di->key, di->klen, false, scratch);
		ms_free(row);
		w->sub++;
		if (a->on_events) {
			Mvccpb__Event *ev = ms_malloc(sizeof *ev);
			Mvccpb__KeyValue *kv = ms_malloc(sizeof *kv);
			if (!ev || !kv) {
				ms_free(ev);
				ms_free(kv);
				a->poisoned = true;
				goto oom;
			}
			mvccpb__event__init(ev);
			mvccpb__key_value__init(kv);
			ev->type = MVCCPB__EVENT__EVENT_TYPE__DELETE;
			ev->kv = kv;
			kv->key.data = di->key;
			kv->key.len = di->klen;
			di->key = NULL;
			kv->mod_revision = w->main;
			ev->prev_kv = di->prev;
			di->prev = NULL;
			if (ev_add(a, w->main, ev)) {
				protobuf_c_message_free_unpacked(&ev->base, &ms_pb_allocator);
				a->poisoned = true;
				goto oom;
			}
		}
	}
	if (resp) {
		if (!(resp->header = eng_header(d.n || sub0 ? w->main : a->rev)))
			goto oom;
		*out = resp;
		resp = NULL;
	}
	goto out;
oom:
	rc = ms_err_set(err, MS_ENOMEM, "engine: out of memory");
out:
	for (size_t i = 0; i < d.n; i++) {
		ms_free(d.items[i].key);
		if (d.items[i].prev)
			protobuf_c_message_free_unpacked(&d.items[i].prev->base, &ms_pb_allocator);
	}
	ms_free(d.items);
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
	return rc;
}

int engine_apply_put(engine_apply *a, const Etcdserverpb__PutRequest *r, Etcdserverpb__PutResponse **out, ms_err *err)
{
	if (out)
		*out = NULL;
	int rc = eng_check_put_state(a, r, err);
	if (rc)
		return rc;
	eng_wctx w = {a->rev + 1, 0};
	rc = eng_do_put(a, &w, r, out, err);
	if (w.sub) {
		a->rev = w.main;
		if (rc)
			a->poisoned = true;
	}
	return rc;
}

int engine_apply_delete(engine_apply *a, const Etcdserverpb__DeleteRangeRequest *r,
                        Etcdserverpb__DeleteRangeResponse **out, ms_err *err)
{
	if (out)
		*out = NULL;
	if (r->key.len == 0)
		return ms_err_set(err, MS_EKEY_EMPTY, "etcdserver: key is not provided");
	eng_wctx w = {a->rev + 1, 0};
	int rc = eng_do_delete(a, &w, r, out, err);
	if (w.sub) {
		a->rev = w.main;
		if (rc)
			a->poisoned = true;
	}
	return rc;
}

int engine_apply_compact(engine_apply *a, int64_t rev, Etcdserverpb__CompactionResponse **out, ms_err *err)
{
	if (out)
		*out = NULL;
	if (rev <= a->compact)
		return ms_err_set(err, MS_ECOMPACTED, "mvcc: required revision has been compacted");
	if (rev > a->rev)
		return ms_err_set(err, MS_EFUTURE_REV, "mvcc: required revision is a future revision");
	Etcdserverpb__CompactionResponse *resp = NULL;
	if (out) {
		resp = ms_malloc(sizeof *resp);
		if (!resp)
			return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
		etcdserverpb__compaction_response__init(resp);
		if (!(resp->header = eng_header(a->rev))) {
			ms_free(resp);
			return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
		}
	}
	uint8_t b[8];
	ms_put_u64le(b, (uint64_t)rev);
	rocksdb_writebatch_wi_put_cf(a->wb, a->e->cf_meta, "compact", 7, (const char *)b, 8);
	a->compact = rev;
	a->compact_changed = true;
	if (out)
		*out = resp;
	return 0;
}

int engine_apply_lease_grant(engine_apply *a, int64_t id, int64_t ttl, ms_err *err)
{
	if (eng_apply_lease_exists(a, id))
		return ms_err_set(err, MS_ELEASE_EXISTS, "etcdserver: lease already exists");
	uint8_t k[9] = {'L'}, v[8];
	ms_put_u64be(k + 1, (uint64_t)id);
	ms_put_u64le(v, (uint64_t)ttl);
	rocksdb_writebatch_wi_put_cf(a->wb, a->e->cf_lease, (const char *)k, 9, (const char *)v, 8);
	return 0;
}

int engine_apply_lease_revoke(engine_apply *a, int64_t id, ms_err *err)
{
	if (!eng_apply_lease_exists(a, id))
		return ms_err_set(err, MS_ELEASE_NOT_FOUND, "etcdserver: requested lease not found");
	uint8_t k[9] = {'A'};
	ms_put_u64be(k + 1, (uint64_t)id);
	/* attached keys, in key order (etcd sorts them before deleting) */
	rocksdb_iterator_t *it = eng_apply_iter(a, a->e->cf_lease);
	uint8_t **rows = NULL;
	size_t *lens = NULL, n = 0, cap = 0;
	int rc = 0;
	for (rocksdb_iter_seek(it, (const char *)k, 9); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl;
		const uint8_t *rk = (const uint8_t *)rocksdb_iter_key(it, &kl);
		if (kl < 9 || memcmp(rk, k, 9))
			break;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 8;
			uint8_t **nr = ms_realloc(rows, nc * sizeof *nr);
			if (nr)
				rows = nr;
			size_t *nl = nr ? ms_realloc(lens, nc * sizeof *nl) : NULL;
			if (nl)
				lens = nl;
			if (!nr || !nl) {
				rc = MS_ENOMEM;
				break;
			}
			cap = nc;
		}
		if (!(rows[n] = ms_memdup(rk, kl))) {
			rc = MS_ENOMEM;
			break;
		}
		lens[n++] = kl;
	}
	rocksdb_iter_destroy(it);
	eng_wctx w = {a->rev + 1, 0};
	for (size_t i = 0; i < n && !rc; i++) {
		Etcdserverpb__DeleteRangeRequest dr = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
		dr.key.data = rows[i] + 9;
		dr.key.len = lens[i] - 9;
		if (dr.key.len)
			rc = eng_do_delete(a, &w, &dr, NULL, err);
		rocksdb_writebatch_wi_delete_cf(a->wb, a->e->cf_lease, (const char *)rows[i], lens[i]);
	}
	for (size_t i = 0; i < n; i++)
		ms_free(rows[i]);
	ms_free(rows);
	ms_free(lens);
	if (rc) {
		a->poisoned = true;
		return rc == MS_ENOMEM ? ms_err_set(err, rc, "engine: out of memory") : rc;
	}
	k[0] = 'L';
	rocksdb_writebatch_wi_delete_cf(a->wb, a->e->cf_lease, (const char *)k, 9);
	if (w.sub)
		a->rev = w.main;
	return 0;
}

int engine_apply_meta_put(engine_apply *a, const char *name, const uint8_t *val, size_t len, ms_err *err)
{
	size_t nlen = strlen(name);
	char *k = ms_malloc(nlen + 2);
	if (!k)
		return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
	memcpy(k, "x/", 2);
	memcpy(k + 2, name, nlen);
	rocksdb_writebatch_wi_put_cf(a->wb, a->e->cf_meta, k, nlen + 2, (const char *)val, len);
	ms_free(k);
	return 0;
}

static void apply_free(engine_apply *a)
{
	free_groups(a);
	if (a->kv_it)
		rocksdb_iter_destroy(a->kv_it); /* before wb: it reads wb's index */
	rocksdb_writebatch_wi_destroy(a->wb);
	a->e->batch_open = false;
	ms_free(a);
}

void engine_apply_abort(engine_apply *a)
{
	if (a)
		apply_free(a);
}

int engine_apply_commit(engine_apply *a, uint64_t consistent_index, ms_err *err)
{
	engine *e = a->e;
	if (a->poisoned) {
		apply_free(a);
		return ms_err_set(err, MS_EIO, "engine: apply batch failed half-way; not committed");
	}
	uint8_t b[8];
	ms_put_u64le(b, (uint64_t)a->rev);
	rocksdb_writebatch_wi_put_cf(a->wb, e->cf_meta, "rev", 3, (const char *)b, 8);
	ms_put_u64le(b, consistent_index);
	rocksdb_writebatch_wi_put_cf(a->wb, e->cf_meta, "ci", 2, (const char *)b, 8);
	char *rerr = NULL;
	rocksdb_write_writebatch_wi(e->db, e->wo, a->wb, &rerr);
	if (rerr) {
		apply_free(a);
		return eng_rdb_err(err, MS_EIO, "commit", rerr);
	}
	atomic_store(&e->ci, consistent_index);
	atomic_store(&e->rev, a->rev);
	if (a->compact_changed) {
		atomic_store(&e->compact, a->compact);
		eng_compact_schedule(e, a->compact);
	}
	if (a->on_events)
		for (size_t g = 0; g < a->ngroups; g++)
			a->on_events(a->arg, a->groups[g].rev, a->groups[g].evs, a->groups[g].n);
	apply_free(a);
	return 0;
}

int64_t engine_apply_rev(const engine_apply *a)
{
	return a->rev;
}
