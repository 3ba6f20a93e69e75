/* log_store.h — the durable raft log (private to raft/): entries, hard state
 * and snapshot metadata in their own RocksDB, written synchronously.
 *
 * Layout (default column family):
 *   "e" + index (u64 BE) -> [term u64 LE][type u8][data]
 *   "hs"                 -> [term u64 LE][vote u64 LE][commit u64 LE]
 *   "sn"                 -> [index u64 LE][term u64 LE][conf state bytes]
 *   "fmt"                -> "metastore-raftlog-1"
 * Only the log writer thread writes; start-up reads before that thread runs. */
#ifndef MS_RAFT_LOG_STORE_H
#define MS_RAFT_LOG_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/ms.h"

typedef struct raft_log_store raft_log_store;

typedef struct raft_log_rec {
	uint64_t index, term;
	uint8_t type;
	const uint8_t *data;
	size_t len;
} raft_log_rec;

typedef struct raft_log_hs {
	uint64_t term, vote, commit;
} raft_log_hs;

/* Opens dir; creates it when create is set and it does not exist. A
 * directory that is not a MetaStore raft log is refused (MS_ECORRUPT). */
int raft_log_store_open(const char *dir, bool create, raft_log_store **out, ms_err *err);
void raft_log_store_close(raft_log_store *s);

/* Start-up: hard state (zeros when none), snapshot meta (index/term 0 and no
 * conf bytes when none; *conf is ms_malloc'd, caller frees), then every
 * entry after the snapshot in index order through fn. A gap in the indexes
 * is corruption. */
typedef int (*raft_log_entry_fn)(void *arg, const raft_log_rec *rec);
int raft_log_store_load(raft_log_store *s, raft_log_hs *hs, uint64_t *snap_index, uint64_t *snap_term, uint8_t **conf,
                        size_t *conf_len, raft_log_entry_fn fn, void *arg, ms_err *err);

/* One write, synchronous unless all it changes is the commit index:
 * optionally the hard state; optionally delete every
 * entry with index >= truncate_from (a follower's conflicting suffix; 0 =
 * none); then append the entries. When this returns 0 it is on disk. */
typedef struct raft_log_write {
	const raft_log_hs *hs;  /* NULL = unchanged */
	uint64_t truncate_from; /* 0 = none */
	const raft_log_rec *ents;
	size_t nents;
} raft_log_write;
int raft_log_store_write(raft_log_store *s, const raft_log_write *w, size_t nw, ms_err *err);

/* Records snapshot metadata and drops entries <= index (log compaction). */
int raft_log_store_compact(raft_log_store *s, uint64_t index, uint64_t term, const uint8_t *conf, size_t conf_len,
                           ms_err *err);

#endif
