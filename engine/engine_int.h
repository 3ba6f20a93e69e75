/* engine_int.h — private to engine/: the engine and apply-batch structs, the
 * row layouts and the helpers the engine_*.c files share.
 *
 * Row layouts (all integers big-endian unless noted):
 *   kv CF    key   = esc(user key) 00 01 | ~main u64 | ~sub u64
 *                    esc() writes 0x00 as 00 FF and every other byte as is;
 *                    00 01 terminates. Encoded keys compare like memcmp on
 *                    the user keys (shorter first), and the complemented
 *                    revision makes the newest version of a key sort first:
 *                    seeking to esc(K) 00 01 | ~R | 00.. lands on K's newest
 *                    version <= R in one seek; esc(K) 00 02 is the first
 *                    possible row after every version of K.
 *            value = binary KeyValue (engine_kv_encode, >= 40 bytes) or the
 *                    one-byte tombstone ENG_TOMBSTONE.
 *   rev CF   key   = main u64 | sub u64;  value = type u8 (0 PUT, 1 DELETE) | user key
 *   lease CF 'L' id u64 -> granted TTL i64 LE;  'A' id u64 user key -> empty
 *   meta CF  "format", "ci", "rev", "compact", "compact_done" (i64/u64 LE),
 *            "x/<name>" opaque records of other modules.
 */
#ifndef MS_ENGINE_INT_H
#define MS_ENGINE_INT_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "engine/engine.h"

#define ENG_FORMAT "metastore-engine-v1"
#define ENG_TOMBSTONE 0x00
#define ENG_REVLEN 16

struct engine {
	rocksdb_t *db;
	rocksdb_options_t *opts;
	rocksdb_block_based_table_options_t *bbo;
	rocksdb_cache_t *cache;
	rocksdb_column_family_handle_t *cf_default, *cf_kv, *cf_rev, *cf_lease, *cf_meta;
	rocksdb_readoptions_t *ro;  /* plain reads (no snapshot) */
	rocksdb_writeoptions_t *wo; /* sync = false */
	char *dir;
	int max_txn_ops;
	int64_t quota_bytes;

	_Atomic int64_t rev;
	_Atomic int64_t compact; /* scheduled compaction revision */
	_Atomic uint64_t ci;
	bool batch_open;

	/* background compaction */
	pthread_t compact_thread;
	bool compact_thread_started;
	pthread_mutex_t cmu;
	pthread_cond_t ccond;   /* work to do or stop */
	pthread_cond_t cdone;   /* compact_done advanced */
	int64_t compact_target; /* guarded by cmu */
	int64_t compact_done;   /* guarded by cmu */
	bool stopping;          /* guarded by cmu */

	/* Readers hold it shared; engine_install holds it exclusively while it
	 * swaps the store underneath (writer-preferring, so an install is not
	 * starved by a stream of reads). */
	pthread_rwlock_t swap;
};

/* one revision's events, delivered at commit */
typedef struct eng_evgroup {
	int64_t rev;
	Mvccpb__Event **evs;
	size_t n, cap;
} eng_evgroup;

struct engine_apply {
	engine *e;
	rocksdb_writebatch_wi_t *wb;
	engine_events_fn on_events;
	void *arg;
	int64_t rev;     /* revision as of the ops applied so far */
	int64_t compact; /* compaction revision as of the ops so far */
	bool compact_changed;
	bool poisoned; /* an internal error left half an op in wb */
	/* kv CF view of batch+DB made on first use and kept for the batch:
	 * creating one per put cost ~20 % of the apply thread. It sees later
	 * writes to wb after a re-seek (RocksDB's BaseDeltaIterator reads the
	 * batch index live); its DB side is fixed at creation, which is exact
	 * because only this batch writes kv rows while it is open (the
	 * compactor deletes only versions no read at >= compact can see). */
	rocksdb_iterator_t *kv_it;
	eng_evgroup *groups;
	size_t ngroups, capgroups;
};

/* A write in progress: one main revision, sub-revisions in order. */
typedef struct eng_wctx {
	int64_t main;
	int64_t sub;
} eng_wctx;

/* ---- codec (engine_codec.c) ---- */
/* Encoded user-key prefix esc(key) 00 01: returns its length; buf needs
 * 2*len+2 bytes. */
size_t eng_key_enc(const uint8_t *key, size_t len, uint8_t *buf);
/* Decodes an encoded user-key prefix (with terminator) into buf (>= plen
 * bytes); returns the user key length or -1 when malformed. */
ssize_t eng_key_dec(const uint8_t *p, size_t plen, uint8_t *buf);
void eng_rev_put(uint8_t *p, int64_t main, int64_t sub); /* complemented, for kv rows */
void eng_rev_get(const uint8_t *p, int64_t *main, int64_t *sub);
bool eng_is_tombstone(const uint8_t *v, size_t len);
/* A protobuf KeyValue copied from kv (value omitted when keys_only). */
Mvccpb__KeyValue *eng_pb_kv(const engine_kv *kv, bool keys_only);
uint32_t eng_crc32c(uint32_t crc, const void *buf, size_t len);
/* Compares two byte strings as etcd does (memcmp, shorter first). */
int eng_bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl);

/* ---- range machinery (engine_range.c) ----
 * Bounds of an etcd range [key, end): single key when end is empty, no
 * upper bound when end is "\0". */
typedef struct eng_bounds {
	uint8_t *start; /* encoded key prefix */
	size_t start_len;
	uint8_t *end; /* encoded end prefix; NULL = unbounded */
	size_t end_len;
	bool single;
	bool empty; /* end <= key: nothing can match */
} eng_bounds;
int eng_bounds_init(eng_bounds *b, const uint8_t *key, size_t klen, const uint8_t *end, size_t elen);
void eng_bounds_free(eng_bounds *b);
/* Calls fn for every live key in b at revision rev, in key order; fn returns
 * 0 to go on, 1 to stop, < 0 to fail. */
typedef int (*eng_scan_fn)(void *arg, const engine_kv *kv);
int eng_scan(rocksdb_iterator_t *it, const eng_bounds *b, int64_t rev, eng_scan_fn fn, void *arg, ms_err *err);
/* etcd's Range on an iterator at view revision cur (compact = first valid
 * revision); header revision = cur. */
int eng_range_on(rocksdb_iterator_t *it, const Etcdserverpb__RangeRequest *r, int64_t cur, int64_t compact,
                 Etcdserverpb__RangeResponse **out, ms_err *err);
Etcdserverpb__ResponseHeader *eng_header(int64_t rev);

/* ---- apply helpers (engine_apply.c) ---- */
rocksdb_iterator_t *eng_apply_iter(engine_apply *a, rocksdb_column_family_handle_t *cf);
/* The batch's shared kv iterator (see engine_apply.kv_it); owned by the
 * batch, never destroyed by the caller. Its position and the key/value
 * pointers it hands out are lost on the next seek or write to the batch. */
rocksdb_iterator_t *eng_apply_kv_iter(engine_apply *a);
int eng_do_put(engine_apply *a, eng_wctx *w, const Etcdserverpb__PutRequest *r, Etcdserverpb__PutResponse **out,
               ms_err *err);
int eng_do_delete(engine_apply *a, eng_wctx *w, const Etcdserverpb__DeleteRangeRequest *r,
                  Etcdserverpb__DeleteRangeResponse **out, ms_err *err);
/* Checks a put against the batch view (key exists for ignore_*, lease exists). */
int eng_check_put_state(engine_apply *a, const Etcdserverpb__PutRequest *r, ms_err *err);
bool eng_apply_lease_exists(engine_apply *a, int64_t id);
int eng_rdb_err(ms_err *err, int code, const char *what, char *rerr);

/* ---- compaction (engine_compact.c) ---- */
int eng_compact_start(engine *e, ms_err *err);
void eng_compact_stop(engine *e);
void eng_compact_schedule(engine *e, int64_t rev);

/* ---- meta helpers (engine.c) ---- */
int eng_meta_get_i64(engine *e, const char *name, int64_t *v, bool *found, ms_err *err);

static inline void eng_rlock(engine *e)
{
	pthread_rwlock_rdlock(&e->swap);
}
static inline void eng_runlock(engine *e)
{
	pthread_rwlock_unlock(&e->swap);
}

#endif
