/* watch.h — the watch hub: a pure, I/O-free core that knows every watcher,
 * says which watchers an event concerns, groups one revision's events per
 * watcher, tracks which watchers are up to date ("synced") and which must be
 * caught up from history ("unsynced"), and which are due a progress
 * notification. It sends nothing: its outputs are lists the server turns
 * into WatchResponses.
 *
 * Matching: exact-key watchers (range_end empty) sit in a hash table keyed by
 * the key bytes; range and from-key watchers sit in an interval tree (a treap
 * ordered by start key, each node augmented with the largest end in its
 * subtree), so matching one key costs O(log n + matches), never a scan of
 * all watchers. Keys are bytes compared as etcd does (memcmp, shorter first).
 * Range conventions are etcd's: range_end empty = the single key; "\0" =
 * every key >= key; otherwise [key, range_end). An empty key is taken as
 * "\0" (etcd's watch server does the same).
 *
 * Revisions: the hub remembers the last revision it was fed (cfg.rev at
 * start). A watcher created with start_revision 0 or > that revision is
 * synced: it receives live events with revision >= its next revision. One
 * with an older start revision is unsynced: the live feed skips it, and the
 * stream's worker reads history (engine_history from next_rev) and reports
 * how far it got with watch_hub_caught_up; once that reaches past the last
 * fed revision the watcher is synced and the live feed takes over with no
 * gap and no duplicate (both happen under the hub lock). A stream whose
 * output is over its buffer limit calls watch_hub_unsync with the first
 * revision it dropped: the watcher is then caught up from history.
 *
 * Wiring (server):
 *   engine events callback (apply) -> hand (rev, evs) to the dispatcher,
 *     which calls watch_hub_feed and queues each watch_out to its stream
 *     (owner). The created reply for a watcher must be queued before
 *     watch_hub_add returns to anyone else, so it precedes its events.
 *   stream worker: create -> watch_hub_add (MS_EINVAL: cancel reason
 *     "mvcc: watcher range is empty"; MS_EEXIST: "mvcc: duplicate watch ID
 *     provided on the WatchStream"); cancel -> watch_hub_remove
 *     (MS_ENOTFOUND: no reply); catch-up loop -> watch_stream_unsynced,
 *     engine_history, watch_hub_caught_up (MS_ECOMPACTED from history: send
 *     the compacted cancel, then watch_hub_remove); stream end ->
 *     watch_stream_close.
 *   timer -> watch_hub_progress every so often (it returns when next due).
 *   Responses larger than the limit -> watch_fragment_count.
 *
 * Threads: one mutex per hub, taken by every public function and held only
 * while the hub's own memory is read or written (matching one revision's
 * events, adding/removing a watcher, a progress scan): never across I/O,
 * callbacks are only watch_hub_match's (documented there) and the clock.
 * Outputs are copied into the caller's watch_batch, so the caller builds and
 * sends responses with no lock held. A stream's watchers are added, removed
 * and caught up by one thread at a time (the stream's worker); the feed and
 * progress may run on any thread concurrently with that.
 */
#ifndef MS_WATCH_H
#define MS_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ms.h"

struct Mvccpb__Event; /* kv.pb-c.h */

typedef struct watch_hub watch_hub;
typedef struct watch_stream watch_stream;

typedef int64_t (*watch_now_fn)(void *ud); /* injected monotonic clock, ns */

typedef struct watch_cfg {
	watch_now_fn now; /* required */
	void *now_ud;
	int64_t progress_interval_ns; /* progress_notify period; 0 -> 10 min (etcd's default) */
	int64_t rev;                  /* the store's current revision when the hub starts */
} watch_cfg;

/* WatchCreateRequest.filters as bits: NOPUT = enum 0, NODELETE = enum 1. */
enum { WATCH_NOPUT = 1u << 0, WATCH_NODELETE = 1u << 1 };

typedef struct watch_spec {
	const uint8_t *key;
	size_t key_len;
	const uint8_t *range_end;
	size_t range_end_len;
	int64_t id;        /* watch_id: 0 = pick one (per stream from 0 up, skipping those in use) */
	int64_t start_rev; /* 0 = after the last revision fed to the hub. The server
	                      should pass engine_current_rev() + 1 for a client's 0, so
	                      the watcher starts right after its created reply's header
	                      revision even if committed revisions are still on their
	                      way to the hub. */
	unsigned filters;  /* WATCH_NOPUT | WATCH_NODELETE */
	bool prev_kv;
	bool progress_notify;
	bool fragment;
} watch_spec;

/* A watcher as the hub sees it. Pointers alias the hub's copy: valid until
 * the watcher is removed (which only its stream's worker does). */
typedef struct watch_info {
	watch_stream *stream;
	void *owner; /* what the stream was opened with */
	int64_t id;
	const uint8_t *key; /* normalised: never empty */
	size_t key_len;
	const uint8_t *range_end; /* empty = single key; "\0" = from key */
	size_t range_end_len;
	int64_t next_rev; /* first revision not yet delivered */
	unsigned filters;
	bool prev_kv, progress_notify, fragment;
	bool synced;
} watch_info;

/* One response to build: events of one revision for one watcher (nevs > 0),
 * or a progress notification (nevs == 0). evs point into the array given to
 * watch_hub_feed (the caller keeps those alive while it uses the batch).
 * Strip prev_kv from the events when prev_kv is false. */
typedef struct watch_out {
	void *owner;
	watch_stream *stream;
	int64_t id;
	int64_t rev; /* header revision */
	bool prev_kv;
	bool fragment;
	struct Mvccpb__Event **evs;
	size_t nevs;
} watch_out;

/* Reusable output buffer owned by the caller. */
typedef struct watch_batch {
	watch_out *out;
	size_t n;
	/* private */
	size_t cap;
	struct Mvccpb__Event **evs;
	size_t evcap;
	void **tmp;
	size_t tmpn, tmpcap;
} watch_batch;

void watch_batch_init(watch_batch *b);
void watch_batch_free(watch_batch *b);

/* Creates a hub. MS_EINVAL without cfg->now; MS_ENOMEM. */
int watch_hub_new(const watch_cfg *cfg, watch_hub **out, ms_err *err);
/* Frees the hub; every stream must have been closed (asserted). NULL ok. */
void watch_hub_del(watch_hub *h);
/* The last revision fed (or cfg.rev). */
int64_t watch_hub_rev(watch_hub *h);
size_t watch_hub_count(watch_hub *h);

/* A client's Watch stream; owner is the server's stream object, handed back
 * in every watch_out and watch_info. MS_ENOMEM. */
int watch_stream_open(watch_hub *h, void *owner, watch_stream **out, ms_err *err);
/* Removes all of the stream's watchers and frees it. Outputs already handed
 * out may still name it: the server keeps owner alive until they drain. */
void watch_stream_close(watch_stream *ws);
size_t watch_stream_count(watch_stream *ws);

/* Adds a watcher to stream ws. *id gets its watch id; *synced (may be NULL)
 * says whether it is live (else the stream must catch it up from history).
 * Copies the key and range_end. MS_EINVAL "mvcc: watcher range is empty"
 * when range_end (not empty, not "\0") <= key; MS_EEXIST "mvcc: duplicate
 * watch ID provided on the WatchStream" for an explicit id in use on ws;
 * MS_ENOMEM. */
int watch_hub_add(watch_hub *h, watch_stream *ws, const watch_spec *spec, int64_t *id, bool *synced, ms_err *err);
/* Removes watcher id of ws. MS_ENOTFOUND for an unknown id (etcd sends no
 * reply then). */
int watch_hub_remove(watch_hub *h, watch_stream *ws, int64_t id);

/* Calls fn for every watcher whose key or range covers key (synced or not,
 * no filters, no revisions): the bare matcher. Runs with the hub lock held:
 * fn must not call into the hub. */
typedef void (*watch_match_fn)(void *arg, const watch_info *w);
void watch_hub_match(watch_hub *h, const uint8_t *key, size_t key_len, watch_match_fn fn, void *arg);

/* Feeds the events of revision rev (all events of one txn, in order; rev
 * greater than the last fed, else MS_EINVAL). Fills b (reset first) with one
 * watch_out per synced watcher that wants at least one of them: its events in
 * the txn's order, filters applied; outputs in the order of each watcher's
 * first event. Delivered watchers advance to rev + 1. MS_ENOMEM leaves the
 * hub unchanged (the caller may retry or unsync the affected streams). */
int watch_hub_feed(watch_hub *h, int64_t rev, struct Mvccpb__Event *const *evs, size_t n, watch_batch *b, ms_err *err);

/* Up to max of ws's unsynced watchers into out; returns how many. */
size_t watch_stream_unsynced(watch_stream *ws, watch_info *out, size_t max);
/* The worker delivered history up to next_rev - 1 for watcher id. Returns 1
 * if the watcher is now synced (next_rev is past the last fed revision), 0
 * if it must read more history from next_rev, MS_ENOTFOUND if it is gone. */
int watch_hub_caught_up(watch_hub *h, watch_stream *ws, int64_t id, int64_t next_rev);
/* Puts watcher id back to catch-up from from_rev (its events from from_rev
 * on were not delivered: a slow stream dropped them). MS_ENOTFOUND. */
int watch_hub_unsync(watch_hub *h, watch_stream *ws, int64_t id, int64_t from_rev);

/* The store jumped to rev without its events being fed (a raft snapshot
 * replaced it): feeding resumes after rev. Returns the last revision fed
 * before the jump; the caller then puts every stream's synced watchers back
 * to catch-up from the revision after it (watch_stream_resync), so the
 * events the snapshot covers come from history. */
int64_t watch_hub_jump(watch_hub *h, int64_t rev);
void watch_stream_resync(watch_hub *h, watch_stream *ws, int64_t from_rev);

/* Progress notifications: fills b (reset first) with a watch_out (nevs 0,
 * rev = last fed revision) for every synced progress_notify watcher that got
 * nothing in the last interval, and restarts their interval. *next_due (may
 * be NULL) gets when to call again (clock ns; INT64_MAX if no such
 * watchers). O(progress_notify watchers). MS_ENOMEM. */
int watch_hub_progress(watch_hub *h, watch_batch *b, int64_t *next_due, ms_err *err);

/* Fragmenting (WatchCreateRequest.fragment): how many of evs[0..n) go into
 * the next reply so that the events' encoded size stays within limit (at
 * least one, as etcd's sendFragments). n when everything fits. */
size_t watch_fragment_count(struct Mvccpb__Event *const *evs, size_t n, size_t limit);

/* Test hook: checks the interval tree (order, heap priorities, max ends) and
 * the tables; 0 or MS_ECORRUPT. O(n). */
int watch_hub_check(watch_hub *h);

#endif
