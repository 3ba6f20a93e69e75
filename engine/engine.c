/* engine.c — opening and closing the store (format check, column families),
 * the cached revisions, meta records, lease listing, import and checkpoint.
 * Row layouts are documented in engine_int.h. */
#include "engine/engine_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const cf_names[] = {"default", "kv", "rev", "lease", "meta"};

/* Memory caps (issue #6: peak RSS; bench/RESULTS.md has the measurements).
 * Smaller memtables cost CPU: at 4 MiB the flushes and L0 compactions took
 * ~40 % more server CPU per put than 32 MiB for 7 MiB less peak RSS.
 * Overridable at build time (EXTRA_CFLAGS=-D...) for such experiments. */
#ifndef ENG_BLOCK_CACHE
#define ENG_BLOCK_CACHE ((size_t)8 << 20)
#endif
#ifndef ENG_WRITE_BUFFER
#define ENG_WRITE_BUFFER ((size_t)32 << 20)
#endif
#ifndef ENG_DB_WRITE_BUFFER
#define ENG_DB_WRITE_BUFFER ((size_t)48 << 20)
#endif

int eng_rdb_err(ms_err *err, int code, const char *what, char *rerr)
{
	ms_err_set(err, code, "engine: %s: %s", what, rerr ? rerr : "unknown error");
	rocksdb_free(rerr);
	return code;
}

int64_t engine_current_rev(const engine *e)
{
	return atomic_load(&((engine *)e)->rev);
}
int64_t engine_compact_rev(const engine *e)
{
	return atomic_load(&((engine *)e)->compact);
}
uint64_t engine_consistent_index(const engine *e)
{
	return atomic_load(&((engine *)e)->ci);
}

static int64_t prop_sum(engine *e, const char *name)
{
	rocksdb_column_family_handle_t *cfs[] = {e->cf_default, e->cf_kv, e->cf_rev, e->cf_lease, e->cf_meta};
	uint64_t total = 0;
	for (size_t i = 0; i < MS_ARRAY_LEN(cfs); i++) {
		uint64_t v = 0;
		if (rocksdb_property_int_cf(e->db, cfs[i], name, &v) == 0)
			total += v;
	}
	return (int64_t)total;
}

static int64_t engine_db_size_unlocked(engine *e)
{
	return prop_sum(e, "rocksdb.total-sst-files-size") + prop_sum(e, "rocksdb.cur-size-all-mem-tables");
}

static int64_t engine_db_size_in_use_unlocked(engine *e)
{
	return prop_sum(e, "rocksdb.estimate-live-data-size") + prop_sum(e, "rocksdb.cur-size-all-mem-tables");
}

static int meta_get_raw(engine *e, const char *name, size_t nlen, char **val, size_t *len, ms_err *err)
{
	char *rerr = NULL;
	*val = rocksdb_get_cf(e->db, e->ro, e->cf_meta, name, nlen, len, &rerr);
	if (rerr)
		return eng_rdb_err(err, MS_EIO, "meta read", rerr);
	return 0;
}

int eng_meta_get_i64(engine *e, const char *name, int64_t *v, bool *found, ms_err *err)
{
	char *val;
	size_t len;
	int rc = meta_get_raw(e, name, strlen(name), &val, &len, err);
	if (rc)
		return rc;
	*found = val != NULL;
	if (!val)
		return 0;
	if (len != 8) {
		rocksdb_free(val);
		return ms_err_set(err, MS_ECORRUPT, "engine: meta record %s has %zu bytes, want 8", name, len);
	}
	*v = (int64_t)ms_get_u64le((const uint8_t *)val);
	rocksdb_free(val);
	return 0;
}

static int engine_meta_get_unlocked(engine *e, const char *name, uint8_t **val, size_t *len, ms_err *err)
{
	size_t nlen = strlen(name);
	char *k = ms_malloc(nlen + 2);
	if (!k)
		return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
	memcpy(k, "x/", 2);
	memcpy(k + 2, name, nlen);
	char *v;
	int rc = meta_get_raw(e, k, nlen + 2, &v, len, err);
	ms_free(k);
	if (rc)
		return rc;
	if (!v)
		return ms_err_set(err, MS_ENOTFOUND, "engine: no meta record %s", name);
	*val = ms_memdup(v, *len);
	rocksdb_free(v);
	if (!*val && *len)
		return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
	return 0;
}

static bool engine_lease_exists_unlocked(engine *e, int64_t id)
{
	uint8_t k[9] = {'L'};
	ms_put_u64be(k + 1, (uint64_t)id);
	char *rerr = NULL;
	size_t len;
	char *v = rocksdb_get_cf(e->db, e->ro, e->cf_lease, (const char *)k, sizeof k, &len, &rerr);
	rocksdb_free(rerr);
	bool ok = v != NULL;
	rocksdb_free(v);
	return ok;
}

/* ---- open / close ---- */
/* 1 = empty, 0 = has entries, -1 = cannot read */
static int dir_empty(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	struct dirent *de;
	int empty = 1;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			empty = 0;
			break;
		}
	}
	closedir(d);
	return empty;
}

static int check_cfs(const char *dir, rocksdb_options_t *opts, ms_err *err)
{
	char *rerr = NULL;
	size_t n = 0;
	char **names = rocksdb_list_column_families(opts, dir, &n, &rerr);
	if (rerr)
		return eng_rdb_err(err, MS_ECORRUPT,
		                   "not a MetaStore engine store (cannot read RocksDB column families)", rerr);
	int rc = 0;
	bool seen[MS_ARRAY_LEN(cf_names)] = {0};
	for (size_t i = 0; i < n && !rc; i++) {
		size_t j;
		for (j = 0; j < MS_ARRAY_LEN(cf_names); j++)
			if (!strcmp(names[i], cf_names[j]))
				break;
		if (j == MS_ARRAY_LEN(cf_names))
			rc = ms_err_set(err, MS_ECORRUPT,
			                "engine: %s is not a MetaStore engine store: unexpected column family \"%s\"",
			                dir, names[i]);
		else
			seen[j] = true;
	}
	for (size_t j = 0; j < MS_ARRAY_LEN(cf_names) && !rc; j++)
		if (!seen[j])
			rc = ms_err_set(err, MS_ECORRUPT,
			                "engine: %s is not a MetaStore engine store: column family \"%s\" missing", dir,
			                cf_names[j]);
	rocksdb_list_column_families_destroy(names, n);
	return rc;
}

static void put_i64(rocksdb_writebatch_t *wb, rocksdb_column_family_handle_t *cf, const char *name, int64_t v)
{
	uint8_t b[8];
	ms_put_u64le(b, (uint64_t)v);
	rocksdb_writebatch_put_cf(wb, cf, name, strlen(name), (const char *)b, 8);
}

static int load_meta(engine *e, ms_err *err)
{
	char *fmt;
	size_t len;
	int rc = meta_get_raw(e, "format", 6, &fmt, &len, err);
	if (rc)
		return rc;
	if (!fmt || len != strlen(ENG_FORMAT) || memcmp(fmt, ENG_FORMAT, len)) {
		rocksdb_free(fmt);
		return ms_err_set(err, MS_ECORRUPT, "engine: %s is not a MetaStore engine store (format marker %s)",
		                  e->dir, fmt ? "differs" : "missing");
	}
	rocksdb_free(fmt);
	int64_t rev = 0, compact = 0, done = 0, ci = 0;
	bool f1, f2, f3, f4;
	if ((rc = eng_meta_get_i64(e, "rev", &rev, &f1, err)) ||
	    (rc = eng_meta_get_i64(e, "compact", &compact, &f2, err)) ||
	    (rc = eng_meta_get_i64(e, "compact_done", &done, &f3, err)) ||
	    (rc = eng_meta_get_i64(e, "ci", &ci, &f4, err)))
		return rc;
	if (!f1 || rev < 1 || compact < 0 || compact > rev || done > compact)
		return ms_err_set(err, MS_ECORRUPT,
		                  "engine: %s: damaged meta records (rev %lld, compact %lld, compact_done %lld)",
		                  e->dir, (long long)rev, (long long)compact, (long long)done);
	atomic_store(&e->rev, rev);
	atomic_store(&e->compact, compact);
	atomic_store(&e->ci, (uint64_t)ci);
	e->compact_done = done;
	e->compact_target = done;
	return 0;
}

int engine_open(const char *dir, const engine_opts *o, engine **out, ms_err *err)
{
	*out = NULL;
	engine_opts defaults = {0};
	if (!o)
		o = &defaults;
	bool fresh = false;
	struct stat st;
	if (stat(dir, &st)) {
		if (errno != ENOENT)
			return ms_err_set(err, MS_EIO, "engine: stat %s: %s", dir, strerror(errno));
		if (!o->create_if_missing)
			return ms_err_set(err, MS_ENOTFOUND, "engine: no store at %s", dir);
		if (ms_mkdir_p(dir, NULL))
			return ms_err_set(err, MS_EIO, "engine: mkdir %s: %s", dir, strerror(errno));
		fresh = true;
	} else if (!S_ISDIR(st.st_mode)) {
		return ms_err_set(err, MS_ECORRUPT, "engine: %s is not a directory", dir);
	} else {
		int em = dir_empty(dir);
		if (em < 0)
			return ms_err_set(err, MS_EIO, "engine: cannot read %s: %s", dir, strerror(errno));
		if (em) {
			if (!o->create_if_missing)
				return ms_err_set(err, MS_ENOTFOUND, "engine: no store at %s (empty directory)", dir);
			fresh = true;
		} else {
			char *cur = ms_malloc(strlen(dir) + 16);
			if (!cur)
				return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
			sprintf(cur, "%s/CURRENT", dir);
			int r = access(cur, F_OK);
			ms_free(cur);
			if (r)
				return ms_err_set(err, MS_ECORRUPT,
				                  "engine: %s is not a MetaStore engine store (not empty, no RocksDB "
				                  "CURRENT file); refusing to use it",
				                  dir);
		}
	}

	engine *e = ms_calloc(1, sizeof *e);
	if (!e)
		return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
	e->dir = ms_strdup(dir);
	e->max_txn_ops = o->max_txn_ops > 0 ? o->max_txn_ops : 128;
	e->quota_bytes = o->quota_bytes > 0 ? o->quota_bytes : (int64_t)2 << 30;
	pthread_mutex_init(&e->cmu, NULL);
	pthread_rwlockattr_t rwa;
	pthread_rwlockattr_init(&rwa);
	pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&e->swap, &rwa);
	pthread_rwlockattr_destroy(&rwa);
	pthread_cond_init(&e->ccond, NULL);
	pthread_cond_init(&e->cdone, NULL);
	e->opts = rocksdb_options_create();
	e->bbo = rocksdb_block_based_options_create();
	e->cache = rocksdb_cache_create_lru(o->block_cache_bytes ? o->block_cache_bytes : ENG_BLOCK_CACHE);
	rocksdb_block_based_options_set_block_cache(e->bbo, e->cache);
	/* index and filter blocks live in (and are bounded by) the block cache,
	 * not in per-file table readers; L0's stay pinned since every seek
	 * touches every L0 file */
	rocksdb_block_based_options_set_cache_index_and_filter_blocks(e->bbo, 1);
	rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(e->bbo, 1);
	rocksdb_options_set_block_based_table_factory(e->opts, e->bbo);
	rocksdb_options_set_max_background_jobs(e->opts, 2);
	rocksdb_options_set_create_if_missing(e->opts, fresh);
	rocksdb_options_set_create_missing_column_families(e->opts, fresh);
	rocksdb_options_set_info_log_level(e->opts, 2 /* WARN */);
	rocksdb_options_set_keep_log_file_num(e->opts, 2);
	rocksdb_options_set_max_open_files(e->opts, 256);
	/* Memtables are the engine's bulk of RSS: RocksDB's defaults (64 MiB
	 * per CF, two per CF) let five CFs grow to 640 MiB. The DB-wide cap
	 * flushes the largest memtable first. */
	rocksdb_options_set_write_buffer_size(e->opts, ENG_WRITE_BUFFER);
	rocksdb_options_set_max_write_buffer_number(e->opts, 2);
	rocksdb_options_set_db_write_buffer_size(e->opts, ENG_DB_WRITE_BUFFER);
	/* the meta CF is written by every batch: without a WAL cap it would pin
	 * every WAL file until it filled its own memtable */
	rocksdb_options_set_max_total_wal_size(e->opts, 2 * ENG_DB_WRITE_BUFFER);
	rocksdb_options_set_target_file_size_base(e->opts, 16 << 20);
	rocksdb_options_set_max_bytes_for_level_base(e->opts, 128 << 20);
	e->ro = rocksdb_readoptions_create();
	e->wo = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(e->wo, 0);
	int rc;
	if (!e->dir) {
		rc = ms_err_set(err, MS_ENOMEM, "engine: out of memory");
		goto fail;
	}
	if (!fresh && (rc = check_cfs(dir, e->opts, err)))
		goto fail;

	const rocksdb_options_t *cfo[MS_ARRAY_LEN(cf_names)];
	rocksdb_column_family_handle_t *h[MS_ARRAY_LEN(cf_names)] = {0};
	for (size_t i = 0; i < MS_ARRAY_LEN(cf_names); i++)
		cfo[i] = e->opts;
	char *rerr = NULL;
	e->db = rocksdb_open_column_families(e->opts, dir, (int)MS_ARRAY_LEN(cf_names), cf_names, cfo, h, &rerr);
	if (rerr) {
		rc = eng_rdb_err(err, fresh ? MS_EIO : MS_ECORRUPT, "open", rerr);
		goto fail;
	}
	e->cf_default = h[0];
	e->cf_kv = h[1];
	e->cf_rev = h[2];
	e->cf_lease = h[3];
	e->cf_meta = h[4];
	if (fresh) {
		rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
		rocksdb_writebatch_put_cf(wb, e->cf_meta, "format", 6, ENG_FORMAT, strlen(ENG_FORMAT));
		put_i64(wb, e->cf_meta, "rev", 1);
		put_i64(wb, e->cf_meta, "compact", 0);
		put_i64(wb, e->cf_meta, "compact_done", 0);
		put_i64(wb, e->cf_meta, "ci", 0);
		rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
		rocksdb_writeoptions_set_sync(wo, 1);
		rocksdb_write(e->db, wo, wb, &rerr);
		rocksdb_writeoptions_destroy(wo);
		rocksdb_writebatch_destroy(wb);
		if (rerr) {
			rc = eng_rdb_err(err, MS_EIO, "write format marker", rerr);
			goto fail;
		}
	}
	if ((rc = load_meta(e, err)))
		goto fail;
	if ((rc = eng_compact_start(e, err)))
		goto fail;
	if (atomic_load(&e->compact) > e->compact_done)
		eng_compact_schedule(e, atomic_load(&e->compact));
	*out = e;
	return 0;
fail:
	engine_close(e);
	return rc;
}

void engine_close(engine *e)
{
	if (!e)
		return;
	eng_compact_stop(e);
	rocksdb_column_family_handle_t *cfs[] = {e->cf_default, e->cf_kv, e->cf_rev, e->cf_lease, e->cf_meta};
	for (size_t i = 0; i < MS_ARRAY_LEN(cfs); i++)
		if (cfs[i])
			rocksdb_column_family_handle_destroy(cfs[i]);
	if (e->db)
		rocksdb_close(e->db);
	if (e->ro)
		rocksdb_readoptions_destroy(e->ro);
	if (e->wo)
		rocksdb_writeoptions_destroy(e->wo);
	if (e->opts)
		rocksdb_options_destroy(e->opts);
	if (e->bbo)
		rocksdb_block_based_options_destroy(e->bbo);
	if (e->cache)
		rocksdb_cache_destroy(e->cache);
	pthread_mutex_destroy(&e->cmu);
	pthread_rwlock_destroy(&e->swap);
	pthread_cond_destroy(&e->ccond);
	pthread_cond_destroy(&e->cdone);
	ms_free(e->dir);
	ms_free(e);
}

/* ---- leases ---- */
static int engine_leases_unlocked(engine *e, engine_lease_fn fn, void *arg, ms_err *err)
{
	const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(e->db);
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_readoptions_set_snapshot(ro, snap);
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(e->db, ro, e->cf_lease);
	rocksdb_iterator_t *ait = rocksdb_create_iterator_cf(e->db, ro, e->cf_lease);
	int rc = 0;
	uint8_t **keys = NULL;
	size_t *lens = NULL, cap = 0;
	for (rocksdb_iter_seek(it, "L", 1); rocksdb_iter_valid(it) && !rc; rocksdb_iter_next(it)) {
		size_t kl, vl;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
		if (kl < 1 || k[0] != 'L')
			break;
		if (kl != 9 || vl != 8) {
			rc = ms_err_set(err, MS_ECORRUPT, "engine: malformed lease record");
			break;
		}
		int64_t id = (int64_t)ms_get_u64be(k + 1), ttl = (int64_t)ms_get_u64le(v);
		uint8_t ak[9] = {'A'};
		ms_put_u64be(ak + 1, (uint64_t)id);
		size_t n = 0;
		for (rocksdb_iter_seek(ait, (const char *)ak, 9); rocksdb_iter_valid(ait); rocksdb_iter_next(ait)) {
			size_t al;
			const uint8_t *a = (const uint8_t *)rocksdb_iter_key(ait, &al);
			if (al < 9 || memcmp(a, ak, 9))
				break;
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 16;
				uint8_t **nk = ms_realloc(keys, nc * sizeof *nk);
				size_t *nl = nk ? ms_realloc(lens, nc * sizeof *nl) : NULL;
				if (nk)
					keys = nk;
				if (nl)
					lens = nl;
				if (!nk || !nl) {
					rc = ms_err_set(err, MS_ENOMEM, "engine: out of memory");
					break;
				}
				cap = nc;
			}
			keys[n] = ms_memdup(a + 9, al - 9);
			if (!keys[n] && al > 9) {
				rc = ms_err_set(err, MS_ENOMEM, "engine: out of memory");
				break;
			}
			lens[n++] = al - 9;
		}
		if (!rc)
			rc = fn(arg, id, ttl, (const uint8_t *const *)keys, lens, n);
		for (size_t i = 0; i < n; i++)
			ms_free(keys[i]);
	}
	ms_free(keys);
	ms_free(lens);
	rocksdb_iter_destroy(ait);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	rocksdb_release_snapshot(e->db, snap);
	return rc;
}

/* ---- import (migration tool) ---- */
static int import_allowed(engine *e, ms_err *err)
{
	if (e->batch_open)
		return ms_err_set(err, MS_EINVAL, "engine: import while an apply batch is open");
	if (atomic_load(&e->rev) != 1 || atomic_load(&e->ci) != 0)
		return ms_err_set(err, MS_EINVAL, "engine: import only into a freshly created store");
	return 0;
}

int engine_import_kv(engine *e, const engine_kv *kv, ms_err *err)
{
	int rc = import_allowed(e, err);
	if (rc)
		return rc;
	if (kv->key_len == 0 || kv->mod_rev < 2 || kv->create_rev < 1 || kv->create_rev > kv->mod_rev ||
	    kv->version < 1)
		return ms_err_set(err, MS_EINVAL, "engine: import: bad KeyValue (mod %lld create %lld version %lld)",
		                  (long long)kv->mod_rev, (long long)kv->create_rev, (long long)kv->version);
	/* the first free sub-revision of mod_rev keeps rows of one txn apart */
	uint8_t rk[ENG_REVLEN];
	int64_t sub = 0;
	char *rerr = NULL;
	for (;; sub++) {
		ms_put_u64be(rk, (uint64_t)kv->mod_rev);
		ms_put_u64be(rk + 8, (uint64_t)sub);
		size_t vl;
		char *v = rocksdb_get_cf(e->db, e->ro, e->cf_rev, (const char *)rk, sizeof rk, &vl, &rerr);
		if (rerr)
			return eng_rdb_err(err, MS_EIO, "import", rerr);
		if (!v)
			break;
		rocksdb_free(v);
	}
	size_t vlen = engine_kv_encode(kv, NULL, 0);
	uint8_t *row = ms_malloc(2 * kv->key_len + 2 + ENG_REVLEN);
	uint8_t *val = ms_malloc(vlen);
	uint8_t *hist = ms_malloc(kv->key_len + 1);
	if (!row || !val || !hist) {
		rc = ms_err_set(err, MS_ENOMEM, "engine: out of memory");
		goto out;
	}
	engine_kv_encode(kv, val, vlen);
	size_t plen = eng_key_enc(kv->key, kv->key_len, row);
	eng_rev_put(row + plen, kv->mod_rev, sub);
	hist[0] = 0;
	memcpy(hist + 1, kv->key, kv->key_len);
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	rocksdb_writebatch_put_cf(wb, e->cf_kv, (const char *)row, plen + ENG_REVLEN, (const char *)val, vlen);
	rocksdb_writebatch_put_cf(wb, e->cf_rev, (const char *)rk, sizeof rk, (const char *)hist, kv->key_len + 1);
	rocksdb_write(e->db, e->wo, wb, &rerr);
	rocksdb_writebatch_destroy(wb);
	if (rerr)
		rc = eng_rdb_err(err, MS_EIO, "import write", rerr);
out:
	ms_free(row);
	ms_free(val);
	ms_free(hist);
	return rc;
}

int engine_import_lease(engine *e, int64_t id, int64_t ttl, ms_err *err)
{
	int rc = import_allowed(e, err);
	if (rc)
		return rc;
	uint8_t k[9] = {'L'}, v[8];
	ms_put_u64be(k + 1, (uint64_t)id);
	ms_put_u64le(v, (uint64_t)ttl);
	char *rerr = NULL;
	rocksdb_put_cf(e->db, e->wo, e->cf_lease, (const char *)k, 9, (const char *)v, 8, &rerr);
	return rerr ? eng_rdb_err(err, MS_EIO, "import lease", rerr) : 0;
}

typedef struct attach_ctx {
	engine *e;
	rocksdb_writebatch_t *wb;
} attach_ctx;

static int attach_cb(void *arg, const engine_kv *kv)
{
	attach_ctx *c = arg;
	if (!kv->lease)
		return 0;
	uint8_t *k = ms_malloc(9 + kv->key_len);
	if (!k)
		return MS_ENOMEM;
	k[0] = 'A';
	ms_put_u64be(k + 1, (uint64_t)kv->lease);
	memcpy(k + 9, kv->key, kv->key_len);
	rocksdb_writebatch_put_cf(c->wb, c->e->cf_lease, (const char *)k, 9 + kv->key_len, "", 0);
	ms_free(k);
	return 0;
}

int engine_import_finish(engine *e, int64_t current_rev, int64_t compact_rev, ms_err *err)
{
	int rc = import_allowed(e, err);
	if (rc)
		return rc;
	/* the newest revision imported bounds current_rev from below */
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(e->db, e->ro, e->cf_rev);
	rocksdb_iter_seek_to_last(it);
	if (rocksdb_iter_valid(it)) {
		size_t kl;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
		if (kl == ENG_REVLEN && (int64_t)ms_get_u64be(k) > current_rev)
			current_rev = (int64_t)ms_get_u64be(k);
	}
	rocksdb_iter_destroy(it);
	if (current_rev < 1)
		current_rev = 1;
	if (compact_rev < 0 || compact_rev > current_rev)
		return ms_err_set(err, MS_EINVAL, "engine: import: compact revision %lld outside [0, %lld]",
		                  (long long)compact_rev, (long long)current_rev);
	/* attach each live key to its lease */
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	attach_ctx ac = {e, wb};
	eng_bounds b;
	static const uint8_t zero = 0;
	if ((rc = eng_bounds_init(&b, &zero, 1, &zero, 1))) {
		rocksdb_writebatch_destroy(wb);
		return ms_err_set(err, rc, "engine: out of memory");
	}
	/* the bounds start at "\0"; the empty key cannot exist */
	it = rocksdb_create_iterator_cf(e->db, e->ro, e->cf_kv);
	rc = eng_scan(it, &b, current_rev, attach_cb, &ac, err);
	rocksdb_iter_destroy(it);
	eng_bounds_free(&b);
	char *rerr = NULL;
	if (!rc) {
		put_i64(wb, e->cf_meta, "rev", current_rev);
		put_i64(wb, e->cf_meta, "compact", compact_rev);
		put_i64(wb, e->cf_meta, "compact_done", 0);
		rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
		rocksdb_writeoptions_set_sync(wo, 1);
		rocksdb_write(e->db, wo, wb, &rerr);
		rocksdb_writeoptions_destroy(wo);
		if (rerr)
			rc = eng_rdb_err(err, MS_EIO, "import finish", rerr);
	}
	rocksdb_writebatch_destroy(wb);
	if (rc)
		return rc;
	rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
	rocksdb_flushoptions_set_wait(fo, 1);
	rocksdb_column_family_handle_t *cfs[] = {e->cf_kv, e->cf_rev, e->cf_lease, e->cf_meta};
	for (size_t i = 0; i < MS_ARRAY_LEN(cfs) && !rerr; i++)
		rocksdb_flush_cf(e->db, fo, cfs[i], &rerr);
	rocksdb_flushoptions_destroy(fo);
	if (rerr)
		return eng_rdb_err(err, MS_EIO, "import flush", rerr);
	atomic_store(&e->rev, current_rev);
	atomic_store(&e->compact, compact_rev);
	if (compact_rev > 0)
		eng_compact_schedule(e, compact_rev);
	return 0;
}

static int engine_checkpoint_unlocked(engine *e, const char *dir, ms_err *err)
{
	char *rerr = NULL;
	rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(e->db, &rerr);
	if (rerr)
		return eng_rdb_err(err, MS_EIO, "checkpoint", rerr);
	rocksdb_checkpoint_create(cp, dir, 0, &rerr);
	rocksdb_checkpoint_object_destroy(cp);
	if (rerr)
		return eng_rdb_err(err, MS_EIO, "checkpoint", rerr);
	return 0;
}

static int engine_sync_unlocked(engine *e, ms_err *err)
{
	char *rerr = NULL;
	rocksdb_flush_wal(e->db, 1, &rerr);
	if (rerr)
		return eng_rdb_err(err, MS_EIO, "sync", rerr);
	return 0;
}

/* ---- public reads: each holds the swap lock (see engine_install) ---- */
int64_t engine_db_size(engine *e)
{
	eng_rlock(e);
	int64_t rc = engine_db_size_unlocked(e);
	eng_runlock(e);
	return rc;
}

int64_t engine_db_size_in_use(engine *e)
{
	eng_rlock(e);
	int64_t rc = engine_db_size_in_use_unlocked(e);
	eng_runlock(e);
	return rc;
}

int engine_meta_get(engine *e, const char *name, uint8_t **val, size_t *len, ms_err *err)
{
	eng_rlock(e);
	int rc = engine_meta_get_unlocked(e, name, val, len, err);
	eng_runlock(e);
	return rc;
}

bool engine_lease_exists(engine *e, int64_t id)
{
	eng_rlock(e);
	bool rc = engine_lease_exists_unlocked(e, id);
	eng_runlock(e);
	return rc;
}

int engine_leases(engine *e, engine_lease_fn fn, void *arg, ms_err *err)
{
	eng_rlock(e);
	int rc = engine_leases_unlocked(e, fn, arg, err);
	eng_runlock(e);
	return rc;
}

int engine_checkpoint(engine *e, const char *dir, ms_err *err)
{
	eng_rlock(e);
	int rc = engine_checkpoint_unlocked(e, dir, err);
	eng_runlock(e);
	return rc;
}

/* Defragment: RocksDB's analogue of rewriting etcd's bbolt file is a full
 * manual compaction of every column family: SST files are rewritten without
 * deleted rows and superseded versions RocksDB still keeps, and the space
 * goes back to the file system. Unlike etcd's defrag, writes and reads go on
 * meanwhile (RocksDB compacts behind a consistent view). */
int engine_defrag(engine *e, ms_err *err)
{
	eng_rlock(e);
	rocksdb_column_family_handle_t *cfs[] = {e->cf_kv, e->cf_rev, e->cf_lease, e->cf_meta};
	for (size_t i = 0; i < MS_ARRAY_LEN(cfs); i++)
		rocksdb_compact_range_cf(e->db, cfs[i], NULL, 0, NULL, 0);
	eng_runlock(e);
	return 0;
}

int engine_sync(engine *e, ms_err *err)
{
	eng_rlock(e);
	int rc = engine_sync_unlocked(e, err);
	eng_runlock(e);
	return rc;
}

/* ---- snapshot install ---- */

/* fsyncs every regular file in dir, then dir itself */
static int sync_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d)) && rc == 0) {
		if (de->d_name[0] == '.')
			continue;
		char p[4096];
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		int fd = open(p, O_RDONLY);
		if (fd < 0 || fsync(fd) != 0)
			rc = -1;
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0 || fsync(fd) != 0)
		rc = -1;
	if (fd >= 0)
		close(fd);
	return rc;
}

static void close_db(engine *e)
{
	rocksdb_column_family_handle_t **cfs[] = {&e->cf_default, &e->cf_kv, &e->cf_rev, &e->cf_lease, &e->cf_meta};
	for (size_t i = 0; i < MS_ARRAY_LEN(cfs); i++)
		if (*cfs[i]) {
			rocksdb_column_family_handle_destroy(*cfs[i]);
			*cfs[i] = NULL;
		}
	if (e->db)
		rocksdb_close(e->db);
	e->db = NULL;
}

static int open_db(engine *e, ms_err *err)
{
	int rc;
	rocksdb_options_set_create_if_missing(e->opts, 0);
	rocksdb_options_set_create_missing_column_families(e->opts, 0);
	if ((rc = check_cfs(e->dir, e->opts, err)))
		return rc;
	const rocksdb_options_t *cfo[MS_ARRAY_LEN(cf_names)];
	rocksdb_column_family_handle_t *h[MS_ARRAY_LEN(cf_names)] = {0};
	for (size_t i = 0; i < MS_ARRAY_LEN(cf_names); i++)
		cfo[i] = e->opts;
	char *rerr = NULL;
	e->db = rocksdb_open_column_families(e->opts, e->dir, (int)MS_ARRAY_LEN(cf_names), cf_names, cfo, h, &rerr);
	if (rerr)
		return eng_rdb_err(err, MS_ECORRUPT, "open", rerr);
	e->cf_default = h[0];
	e->cf_kv = h[1];
	e->cf_rev = h[2];
	e->cf_lease = h[3];
	e->cf_meta = h[4];
	return load_meta(e, err);
}

int engine_install(engine *e, const char *src, ms_err *err)
{
	int rc;
	size_t n = strlen(e->dir) + 16;
	char *old = ms_malloc(n);
	if (!old)
		return ms_err_set(err, MS_ENOMEM, "engine: out of memory");
	snprintf(old, n, "%s.old", e->dir);
	if (sync_tree(src) != 0) {
		ms_free(old);
		return ms_err_set(err, MS_EIO, "engine: cannot sync the snapshot in %s: %s", src, strerror(errno));
	}
	pthread_rwlock_wrlock(&e->swap);
	eng_compact_stop(e);
	close_db(e);
	ms_rmtree(old);
	if (rename(e->dir, old) != 0 || rename(src, e->dir) != 0) {
		rc = ms_err_set(err, MS_EIO, "engine: cannot move the snapshot into %s: %s", e->dir, strerror(errno));
		if (access(e->dir, F_OK) != 0)
			rename(old, e->dir);
		goto reopen;
	}
	char *parent = ms_strdup(e->dir);
	if (parent) {
		char *slash = strrchr(parent, '/');
		if (slash) {
			*slash = 0;
			int fd = open(parent, O_RDONLY | O_DIRECTORY);
			if (fd >= 0) {
				fsync(fd);
				close(fd);
			}
		}
		ms_free(parent);
	}
	if ((rc = open_db(e, err)) != 0) {
		/* the snapshot does not open: go back to the store we had */
		MS_ERROR("engine", "installed snapshot does not open (%s); keeping the previous store",
		         err ? err->msg : "");
		close_db(e);
		ms_rmtree(e->dir);
		rename(old, e->dir);
		goto reopen;
	}
	ms_rmtree(old);
	goto restart;
reopen:
	if (open_db(e, NULL) != 0) {
		pthread_rwlock_unlock(&e->swap);
		ms_free(old);
		return ms_err_set(err, MS_EIO, "engine: cannot reopen %s after a failed snapshot install", e->dir);
	}
restart:
	pthread_mutex_lock(&e->cmu);
	e->stopping = false;
	e->compact_target = e->compact_done;
	pthread_mutex_unlock(&e->cmu);
	if (eng_compact_start(e, NULL) == 0 && atomic_load(&e->compact) > e->compact_done)
		eng_compact_schedule(e, atomic_load(&e->compact));
	pthread_rwlock_unlock(&e->swap);
	ms_free(old);
	return rc;
}
