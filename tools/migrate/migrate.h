/* migrate.h — moves a legacy Go MetaStore RocksDB directory into a new
 * MetaStore data directory, offline, checking everything on the way.
 *
 * Result layout (NEW_DIR): metastore/kv is the engine store, with every key
 * at its create/mod revision, version and lease, every lease with its ID and
 * granted TTL, current revision = legacy meta:revision and compacted
 * revision = the same (no history older than the migration exists);
 * metastore/migrated holds the cluster bootstrap flags as key=value lines
 * (name, initial-cluster, initial-advertise-peer-urls, initial-cluster-token)
 * for the server's first start.
 *
 * Safety: the source is opened read-only and never written. The result is
 * built in NEW_DIR.tmp-XXXXXX beside NEW_DIR, checked (re-opened: revision,
 * compacted revision, key count, every lease and its keys; with verify,
 * every record compared with the source), fsynced, and only then renamed
 * into place. Any failure removes the temporary directory, so no partial
 * data directory is ever left. */
#ifndef MS_MIGRATE_H
#define MS_MIGRATE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/ms.h"

typedef struct migrate_opts {
	const char *from;     /* legacy RocksDB directory */
	const char *data_dir; /* new data directory; may be NULL with dry_run */
	const char *name;
	const char *initial_cluster;
	const char *initial_advertise_peer_urls;
	const char *initial_cluster_token; /* NULL: "etcd-cluster", etcd's default */
	bool dry_run;                      /* decode and check everything, write nothing */
	bool verify;                       /* compare every record of the result with the source */
	bool progress;                     /* redraw a progress line on `log` (a terminal) */
	FILE *log;                         /* warnings and progress; NULL = stderr */
	const volatile sig_atomic_t *stop; /* set by a signal handler: stop and clean up */
} migrate_opts;

typedef struct migrate_stats {
	uint64_t kvs, kvs_gob, kvs_binary; /* keys, by legacy value format */
	uint64_t leases, leased_keys;
	uint64_t disagreements;   /* Lease.Keys vs KeyValue.Lease */
	uint64_t bytes;           /* legacy row bytes read (keys + values) */
	int64_t revision;         /* meta:revision */
	int64_t legacy_compacted; /* meta:compacted_revision (0 if absent) */
	uint64_t verified;        /* records compared with the source */
	double seconds;
} migrate_stats;

/* Checks the cluster flags: name non-empty and in initial_cluster, which
 * names only this member (the result is a one-member cluster), with exactly
 * the URLs of initial_advertise_peer_urls; no newlines anywhere. */
int migrate_check_cluster(const migrate_opts *o, ms_err *err);

/* Runs the migration (or the dry run). On error nothing is left at
 * data_dir (beyond what was there: an empty directory stays empty) and
 * err names the legacy key (C-escaped) and byte offset at fault. */
int migrate_run(const migrate_opts *o, migrate_stats *st, ms_err *err);

#endif
