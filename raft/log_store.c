/* log_store.c — the durable raft log on RocksDB, synchronous group writes. */
#include "raft/log_store.h"

#include <errno.h>
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FMT_KEY "fmt"
#define FMT_VAL "metastore-raftlog-1"

struct raft_log_store {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_writeoptions_t *wsync, *wnosync;
	rocksdb_readoptions_t *ropts;
	rocksdb_block_based_table_options_t *bbo;
	rocksdb_cache_t *cache;
	raft_log_hs last_hs; /* the hard state last written (writer thread) */
};

static void entry_key(uint8_t k[9], uint64_t index)
{
	k[0] = 'e';
	ms_put_u64be(k + 1, index);
}

static int rocks_err(ms_err *err, char *rerr, const char *what)
{
	int rc = ms_err_set(err, MS_EIO, "raft log: %s: %s", what, rerr);
	free(rerr);
	return rc;
}

int raft_log_store_open(const char *dir, bool create, raft_log_store **out, ms_err *err)
{
	struct stat st;
	bool exists = stat(dir, &st) == 0;
	if (!exists && !create)
		return ms_err_set(err, MS_ENOTFOUND, "raft log %s does not exist", dir);
	if (exists && !S_ISDIR(st.st_mode))
		return ms_err_set(err, MS_ECORRUPT, "raft log %s is not a directory", dir);

	raft_log_store *s = ms_calloc(1, sizeof *s);
	if (!s)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	s->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(s->opts, !exists);
	rocksdb_options_set_error_if_exists(s->opts, 0);
	rocksdb_options_set_max_open_files(s->opts, 64);
	rocksdb_options_set_keep_log_file_num(s->opts, 2);
	rocksdb_options_set_recycle_log_file_num(s->opts, 4);
	/* the log is written once and read only at start-up: small buffers
	 * (RocksDB's defaults cost ~40 MiB of memtable here) */
	rocksdb_options_set_write_buffer_size(s->opts, 4 << 20);
	rocksdb_options_set_max_write_buffer_number(s->opts, 2);
	s->bbo = rocksdb_block_based_options_create();
	s->cache = rocksdb_cache_create_lru(1 << 20);
	rocksdb_block_based_options_set_block_cache(s->bbo, s->cache);
	rocksdb_options_set_block_based_table_factory(s->opts, s->bbo);
	s->wsync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(s->wsync, 1);
	s->wnosync = rocksdb_writeoptions_create();
	s->ropts = rocksdb_readoptions_create();

	char *rerr = NULL;
	s->db = rocksdb_open(s->opts, dir, &rerr);
	int rc;
	if (rerr) {
		rc = ms_err_set(err, MS_ECORRUPT, "raft log %s cannot be opened: %s", dir, rerr);
		free(rerr);
		goto fail;
	}
	size_t vlen = 0;
	char *v = rocksdb_get(s->db, s->ropts, FMT_KEY, strlen(FMT_KEY), &vlen, &rerr);
	if (rerr) {
		rc = rocks_err(err, rerr, "read format marker");
		goto fail;
	}
	if (!v && exists) {
		/* an existing directory without our marker: refuse unless empty */
		rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
		rocksdb_iter_seek_to_first(it);
		bool empty = !rocksdb_iter_valid(it);
		rocksdb_iter_destroy(it);
		if (!empty) {
			rc = ms_err_set(err, MS_ECORRUPT, "%s is not a MetaStore raft log (no format marker)", dir);
			goto fail;
		}
	}
	if (v && (vlen != strlen(FMT_VAL) || memcmp(v, FMT_VAL, vlen) != 0)) {
		free(v);
		rc = ms_err_set(err, MS_ECORRUPT, "%s: unknown raft log format", dir);
		goto fail;
	}
	if (!v) {
		rocksdb_put(s->db, s->wsync, FMT_KEY, strlen(FMT_KEY), FMT_VAL, strlen(FMT_VAL), &rerr);
		if (rerr) {
			rc = rocks_err(err, rerr, "write format marker");
			goto fail;
		}
	}
	free(v);
	*out = s;
	return 0;
fail:
	raft_log_store_close(s);
	return rc;
}

void raft_log_store_close(raft_log_store *s)
{
	if (!s)
		return;
	if (s->db)
		rocksdb_close(s->db);
	rocksdb_options_destroy(s->opts);
	rocksdb_writeoptions_destroy(s->wsync);
	rocksdb_writeoptions_destroy(s->wnosync);
	if (s->bbo)
		rocksdb_block_based_options_destroy(s->bbo);
	if (s->cache)
		rocksdb_cache_destroy(s->cache);
	rocksdb_readoptions_destroy(s->ropts);
	ms_free(s);
}

int raft_log_store_load(raft_log_store *s, raft_log_hs *hs, uint64_t *snap_index, uint64_t *snap_term, uint8_t **conf,
                        size_t *conf_len, raft_log_entry_fn fn, void *arg, ms_err *err)
{
	char *rerr = NULL;
	size_t vlen;
	memset(hs, 0, sizeof *hs);
	*snap_index = *snap_term = 0;
	*conf = NULL;
	*conf_len = 0;

	char *v = rocksdb_get(s->db, s->ropts, "hs", 2, &vlen, &rerr);
	if (rerr)
		return rocks_err(err, rerr, "read hard state");
	if (v) {
		if (vlen != 24) {
			free(v);
			return ms_err_set(err, MS_ECORRUPT, "raft log: hard state has %zu bytes, want 24", vlen);
		}
		hs->term = ms_get_u64le((uint8_t *)v);
		hs->vote = ms_get_u64le((uint8_t *)v + 8);
		hs->commit = ms_get_u64le((uint8_t *)v + 16);
		s->last_hs = *hs;
		free(v);
	}
	v = rocksdb_get(s->db, s->ropts, "sn", 2, &vlen, &rerr);
	if (rerr)
		return rocks_err(err, rerr, "read snapshot meta");
	if (v) {
		if (vlen < 16) {
			free(v);
			return ms_err_set(err, MS_ECORRUPT, "raft log: snapshot meta has %zu bytes", vlen);
		}
		*snap_index = ms_get_u64le((uint8_t *)v);
		*snap_term = ms_get_u64le((uint8_t *)v + 8);
		*conf_len = vlen - 16;
		*conf = ms_memdup(v + 16, *conf_len);
		free(v);
		if (!*conf)
			return ms_err_set(err, MS_ENOMEM, "out of memory");
	}

	rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
	uint8_t k[9];
	entry_key(k, *snap_index + 1);
	int rc = 0;
	uint64_t want = *snap_index + 1;
	for (rocksdb_iter_seek(it, (char *)k, 9); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, elen;
		const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
		if (klen != 9 || key[0] != 'e')
			break;
		uint64_t index = ms_get_u64be(key + 1);
		const uint8_t *e = (const uint8_t *)rocksdb_iter_value(it, &elen);
		if (index != want) {
			rc = ms_err_set(err, MS_ECORRUPT, "raft log: entry %llu found where %llu was expected",
			                (unsigned long long)index, (unsigned long long)want);
			break;
		}
		if (elen < 9) {
			rc = ms_err_set(err, MS_ECORRUPT, "raft log: entry %llu is truncated (%zu bytes)",
			                (unsigned long long)index, elen);
			break;
		}
		raft_log_rec rec = {index, ms_get_u64le(e), e[8], e + 9, elen - 9};
		if ((rc = fn(arg, &rec)) != 0)
			break;
		want++;
	}
	if (rc == 0) {
		rocksdb_iter_get_error(it, &rerr);
		if (rerr)
			rc = rocks_err(err, rerr, "scan entries");
	}
	rocksdb_iter_destroy(it);
	if (rc) {
		ms_free(*conf);
		*conf = NULL;
	}
	return rc;
}

int raft_log_store_write(raft_log_store *s, const raft_log_write *w, size_t nw, ms_err *err)
{
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	uint8_t *buf = NULL;
	size_t cap = 0;
	int rc = 0;
	/* Raft needs entries, truncations, term and vote durable before it
	 * answers; a write that only moves the commit index need not be synced
	 * (commit is re-learned from the leader, and the state machine's
	 * consistent index covers what was applied). */
	bool sync = false;
	raft_log_hs hs = s->last_hs;
	for (size_t i = 0; i < nw; i++) {
		if (w[i].nents || w[i].truncate_from)
			sync = true;
		if (w[i].hs) {
			if (w[i].hs->term != hs.term || w[i].hs->vote != hs.vote)
				sync = true;
			hs = *w[i].hs;
		}
	}
	for (size_t i = 0; i < nw; i++) {
		if (w[i].truncate_from) {
			uint8_t lo[9], hi[9];
			entry_key(lo, w[i].truncate_from);
			entry_key(hi, UINT64_MAX);
			rocksdb_writebatch_delete_range(wb, (char *)lo, 9, (char *)hi, 9);
		}
		for (size_t j = 0; j < w[i].nents; j++) {
			const raft_log_rec *r = &w[i].ents[j];
			if (9 + r->len > cap) {
				cap = 9 + r->len + 256;
				uint8_t *nb = ms_realloc(buf, cap);
				if (!nb) {
					rc = ms_err_set(err, MS_ENOMEM, "out of memory");
					goto out;
				}
				buf = nb;
			}
			ms_put_u64le(buf, r->term);
			buf[8] = r->type;
			if (r->len)
				memcpy(buf + 9, r->data, r->len);
			uint8_t k[9];
			entry_key(k, r->index);
			rocksdb_writebatch_put(wb, (char *)k, 9, (char *)buf, 9 + r->len);
		}
		if (w[i].hs) {
			uint8_t h[24];
			ms_put_u64le(h, w[i].hs->term);
			ms_put_u64le(h + 8, w[i].hs->vote);
			ms_put_u64le(h + 16, w[i].hs->commit);
			rocksdb_writebatch_put(wb, "hs", 2, (char *)h, 24);
		}
	}
	char *rerr = NULL;
	rocksdb_write(s->db, sync ? s->wsync : s->wnosync, wb, &rerr);
	if (rerr)
		rc = rocks_err(err, rerr, "write");
	else
		s->last_hs = hs;
out:
	ms_free(buf);
	rocksdb_writebatch_destroy(wb);
	return rc;
}

int raft_log_store_compact(raft_log_store *s, uint64_t index, uint64_t term, const uint8_t *conf, size_t conf_len,
                           ms_err *err)
{
	uint8_t *v = ms_malloc(16 + conf_len);
	if (!v)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	ms_put_u64le(v, index);
	ms_put_u64le(v + 8, term);
	if (conf_len)
		memcpy(v + 16, conf, conf_len);
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	rocksdb_writebatch_put(wb, "sn", 2, (char *)v, 16 + conf_len);
	uint8_t lo[9], hi[9];
	entry_key(lo, 0);
	entry_key(hi, index + 1);
	rocksdb_writebatch_delete_range(wb, (char *)lo, 9, (char *)hi, 9);
	char *rerr = NULL;
	rocksdb_write(s->db, s->wsync, wb, &rerr);
	rocksdb_writebatch_destroy(wb);
	ms_free(v);
	return rerr ? rocks_err(err, rerr, "compact") : 0;
}
