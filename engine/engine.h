/* engine.h — MetaStore's MVCC key-value engine on RocksDB.
 *
 * Column families (one RocksDB database, <dir>):
 *   kv    every revision of every key: row key = order-preserving encoding of
 *         the user key, then the revision; row value = the binary KeyValue
 *         [keyLen u32][key][valueLen u32][value][createRev i64][modRev i64]
 *         [version i64][lease i64], little-endian, or a tombstone.
 *   rev   revision (main, sub) big-endian -> event type + user key: the
 *         history in revision order (watch catch-up, compaction).
 *   lease lease records (id -> granted TTL) and lease -> key attachments.
 *   meta  format marker, consistent index, current and compacted revision,
 *         and opaque records other modules store through engine_meta_*.
 *
 * Threads: reads (engine_range, engine_hash_kv, engine_history_*) may run on
 * any thread at once; each read uses one RocksDB snapshot, so it sees one
 * revision. Writes happen only through an engine_apply batch, and only one
 * batch is open at a time (the apply thread). The current revision, compacted
 * revision and consistent index are atomics readable without locks.
 *
 * Revisions follow etcd exactly: an empty store is at revision 1; every Put,
 * every DeleteRange that deletes something and every Txn that writes bumps
 * the main revision by one (writes inside one txn share the main revision
 * and take sub-revisions 0,1,2...); failed or read-only txns and no-op
 * deletes leave it unchanged.
 *
 * Responses are protobuf-c messages allocated with ms_pb_allocator; free them
 * with protobuf_c_message_free_unpacked(msg, &ms_pb_allocator). The engine
 * fills header->revision only (and for txn inner responses exactly what etcd
 * does: range/put/delete inner responses carry only revision, nested txn
 * responses an empty header); cluster_id, member_id and raft_term are filled
 * by the caller.
 */
#ifndef MS_ENGINE_H
#define MS_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/ms.h"
#include "rpc.pb-c.h"
#include "kv.pb-c.h"

typedef struct engine engine;
typedef struct engine_apply engine_apply;

typedef struct engine_opts {
	bool create_if_missing;   /* create a new store when <dir> does not exist */
	int max_txn_ops;          /* --max-txn-ops, default 128 */
	int64_t quota_bytes;      /* --quota-backend-bytes; 0 = 2 GiB */
	size_t block_cache_bytes; /* 0 = a small default (8 MiB) */
} engine_opts;

/* Opens (or, with create_if_missing, creates) the store in directory dir.
 * Refuses a directory that is not a MetaStore engine store (no format
 * marker, or a RocksDB without our column families) and a damaged one, with
 * MS_ECORRUPT and a message naming what is wrong. */
int engine_open(const char *dir, const engine_opts *opts, engine **out, ms_err *err);
/* Stops background work (compaction) and closes. NULL is a no-op. */
void engine_close(engine *e);

int64_t engine_current_rev(const engine *e);
int64_t engine_compact_rev(const engine *e);       /* 0 until the first compaction */
uint64_t engine_consistent_index(const engine *e); /* last applied raft index */
int64_t engine_db_size(engine *e);                 /* bytes on disk (approximate) */
int64_t engine_db_size_in_use(engine *e);

/* ---- validation that needs no state (done before proposing) ----
 * etcd's checks: empty key, ignore_value/ignore_lease combinations, too many
 * txn ops (> max_txn_ops), duplicate keys in a txn branch (nested included).
 * Returns 0 or the MS_E* code etcd would answer with. */
int engine_check_put(const Etcdserverpb__PutRequest *r, ms_err *err);
int engine_check_range(const Etcdserverpb__RangeRequest *r, ms_err *err);
int engine_check_delete(const Etcdserverpb__DeleteRangeRequest *r, ms_err *err);
int engine_check_txn(const Etcdserverpb__TxnRequest *r, int max_txn_ops, ms_err *err);

/* ---- reads (any thread) ----
 * Range at r->revision (0 = current) with all of etcd's options: range_end
 * conventions ("\0" = from key, empty = single key), limit/more/count, sort
 * order and target, keys_only, count_only, min/max mod and create revision.
 * Errors: MS_ECOMPACTED, MS_EFUTURE_REV, MS_EKEY_EMPTY. */
int engine_range(engine *e, const Etcdserverpb__RangeRequest *r, Etcdserverpb__RangeResponse **out, ms_err *err);

/* etcd's HashKV: crc32c (Castagnoli) over the MVCC history up to rev
 * (0 = current), the same on members with the same data. */
int engine_hash_kv(engine *e, int64_t rev, uint32_t *hash, int64_t *hash_rev, int64_t *compact_rev, ms_err *err);

/* History in revision order, for watch catch-up: calls fn for each event with
 * start_rev <= mod revision <= end_rev on keys in [key, range_end) (etcd range
 * conventions), in revision order, at most max_events events (0 = no limit);
 * *next_rev is where to continue. prev_kv is filled when want_prev is set.
 * MS_ECOMPACTED when start_rev < compacted revision (etcd's watch rule:
 * a watch from the compact revision itself still works). fn returning
 * non-zero stops the walk and is returned. Events are only valid during the
 * call. A walk cut by max_events ends on a revision boundary. */
typedef int (*engine_event_fn)(void *arg, const Mvccpb__Event *ev);
int engine_history(engine *e, const uint8_t *key, size_t key_len, const uint8_t *range_end, size_t range_end_len,
                   int64_t start_rev, int64_t end_rev, bool want_prev, size_t max_events, engine_event_fn fn, void *arg,
                   int64_t *next_rev, ms_err *err);

/* ---- writes: one apply batch per group of committed log entries ----
 * engine_apply_begin opens a batch (one at a time). Each op sees the effects
 * of the ops before it in the same batch. Errors that etcd reports to the
 * client (MS_EKEY_NOT_FOUND for ignore_value on a missing key,
 * MS_ELEASE_NOT_FOUND, MS_ECOMPACTED/MS_EFUTURE_REV for compaction) leave the
 * batch usable and change nothing. commit writes everything plus the
 * consistent index atomically (one WriteBatch; no fsync needed: the raft log
 * is the durable record and is replayed from the consistent index).
 * Events (for watchers) of committed ops are handed to the events callback
 * given at begin, in revision order, after the WriteBatch is written; the
 * engine frees evs and every event after fn returns, except events fn took
 * by setting evs[i] = NULL (it then frees them with ms_pb_allocator). */
typedef void (*engine_events_fn)(void *arg, int64_t rev, Mvccpb__Event **evs, size_t n);
int engine_apply_begin(engine *e, engine_events_fn on_events, void *arg, engine_apply **out, ms_err *err);
int engine_apply_put(engine_apply *a, const Etcdserverpb__PutRequest *r, Etcdserverpb__PutResponse **out, ms_err *err);
int engine_apply_delete(engine_apply *a, const Etcdserverpb__DeleteRangeRequest *r,
                        Etcdserverpb__DeleteRangeResponse **out, ms_err *err);
int engine_apply_txn(engine_apply *a, const Etcdserverpb__TxnRequest *r, Etcdserverpb__TxnResponse **out, ms_err *err);
/* Records the compaction at rev (MS_ECOMPACTED if rev <= compacted,
 * MS_EFUTURE_REV if rev > current); the removal of superseded revisions
 * below rev runs in the background in chunks after commit.
 * engine_compact_wait blocks until the removal for rev has finished
 * (CompactionRequest.physical). */
int engine_apply_compact(engine_apply *a, int64_t rev, Etcdserverpb__CompactionResponse **out, ms_err *err);
int engine_compact_wait(engine *e, int64_t rev);
/* Leases: the durable record. Grant fails with MS_ELEASE_EXISTS for an id in
 * use; revoke deletes every attached key at one revision (as a DeleteRange
 * would) and fails with MS_ELEASE_NOT_FOUND for an unknown id. */
int engine_apply_lease_grant(engine_apply *a, int64_t id, int64_t ttl, ms_err *err);
int engine_apply_lease_revoke(engine_apply *a, int64_t id, ms_err *err);
bool engine_lease_exists(engine *e, int64_t id);
/* Opaque records in the meta column family for other modules (cluster
 * membership, alarms, ...), written atomically with the batch. */
int engine_apply_meta_put(engine_apply *a, const char *name, const uint8_t *val, size_t len, ms_err *err);
int engine_meta_get(engine *e, const char *name, uint8_t **val, size_t *len, ms_err *err); /* MS_ENOTFOUND */
int engine_apply_commit(engine_apply *a, uint64_t consistent_index, ms_err *err);
/* The revision as of the ops applied so far in this batch (what a reply
 * for the last op reports). */
int64_t engine_apply_rev(const engine_apply *a);
void engine_apply_abort(engine_apply *a);

/* Lease records, for rebuilding the lease manager at start-up: calls fn for
 * each lease with its granted TTL and the keys attached to it. */
typedef int (*engine_lease_fn)(void *arg, int64_t id, int64_t ttl, const uint8_t *const *keys, const size_t *key_lens,
                               size_t nkeys);
int engine_leases(engine *e, engine_lease_fn fn, void *arg, ms_err *err);

/* ---- codec and key encoding (public so tests, the migration tool and
 * benchmarks use the one implementation) ---- */
typedef struct engine_kv {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *value;
	size_t value_len;
	int64_t create_rev, mod_rev, version, lease;
} engine_kv;
/* Binary KeyValue value format; returns bytes written or needed. */
size_t engine_kv_encode(const engine_kv *kv, uint8_t *buf, size_t cap);
/* Strict decode: every length checked; pointers alias buf. MS_ECORRUPT. */
int engine_kv_decode(const uint8_t *buf, size_t len, engine_kv *kv);

/* Bulk load for the migration tool: writes kv rows (at their mod revision,
 * create/version/lease as given), lease records, and sets current and
 * compacted revision, then flushes. Only on a freshly created store. */
int engine_import_kv(engine *e, const engine_kv *kv, ms_err *err);
int engine_import_lease(engine *e, int64_t id, int64_t ttl, ms_err *err);
int engine_import_finish(engine *e, int64_t current_rev, int64_t compact_rev, ms_err *err);

/* Replaces the whole store with the checkpoint in dir (a raft snapshot from
 * the leader; dir is moved into place, so it must be on the same file
 * system). Apply thread only, with no batch open. Reads on other threads
 * wait for the swap and then see the new store; revisions and the
 * consistent index are the snapshot's. On failure the previous store stays
 * (MS_ECORRUPT / MS_EIO). */
int engine_install(engine *e, const char *dir, ms_err *err);

/* Makes every committed apply batch durable (fsyncs RocksDB's WAL): needed
 * before the raft log below the consistent index may be dropped. */
int engine_sync(engine *e, ms_err *err);

/* Defragment (etcd's Maintenance.Defragment): compacts every column family
 * in full so deleted and superseded rows give their space back. Blocks the
 * calling thread (not the loop: a reader thread) for as long as it takes;
 * reads and writes continue meanwhile. */
int engine_defrag(engine *e, ms_err *err);

/* Writes a consistent copy of the store to dir (RocksDB checkpoint): raft
 * snapshots for followers behind the compacted log. */
int engine_checkpoint(engine *e, const char *dir, ms_err *err);

#endif
