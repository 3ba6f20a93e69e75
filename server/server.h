/* server.h — the etcd server core: membership and IDs, the one write path
 * (internal request -> raft log -> apply, results routed back to the waiting
 * call), linearizable and serializable reads, status.
 *
 * Threads: ms_server_new/start/stop and every request function run on the
 * event loop thread that owns the server; completion callbacks run on that
 * same thread. Internally: a log writer thread (raft/), the apply thread,
 * and a pool of reader threads so a large range never stalls the loop.
 *
 * Data directory layout: <data-dir>/metastore/{kv,raft} (engine store, raft
 * log). A data directory holding anything else (an etcd member/ directory,
 * stray files) is refused at start-up, never served or overwritten. */
#ifndef MS_SERVER_H
#define MS_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/ms.h"
#include "internal.pb-c.h"
#include "rpc.pb-c.h"

struct event_base;
struct ms_tls;

typedef struct ms_server ms_server;

typedef struct ms_peer {
	char *name;
	char **peer_urls;
	size_t npeer_urls;
} ms_peer;

typedef struct ms_server_config {
	const char *name;
	const char *data_dir;
	const char *wal_dir; /* NULL/"" = <data-dir>/metastore/raft */
	char **client_urls;  /* advertised */
	size_t nclient_urls;
	char **peer_urls; /* initial-advertise-peer-urls */
	size_t npeer_urls;
	char **listen_peer_urls; /* --listen-peer-urls */
	size_t nlisten_peer_urls;
	struct ms_tls *peer_tls; /* https peer URLs (common/tls.h; borrowed, outlives the server); NULL = none */
	ms_peer *initial_cluster;
	size_t ninitial_cluster;
	bool initial_cluster_new; /* --initial-cluster-state new */
	const char *initial_cluster_token;
	size_t max_request_bytes;
	int max_txn_ops;
	int64_t quota_backend_bytes;
	int heartbeat_ms, election_ms;
	uint64_t snapshot_count;
	int reader_threads;               /* 0 = 2 */
	bool strict_reconfig_check;       /* --strict-reconfig-check */
	int64_t watch_progress_notify_ns; /* --experimental-watch-progress-notify-interval; 0 = 10 min */
	/* --experimental-corrupt-check-time: the leader compares HashKV with
	 * its followers this often (0 = never); see server/corrupt.c */
	int64_t corrupt_check_ns;
	/* loop: this member has published itself through raft and may serve
	 * clients (etcd's ReadyNotify). */
	void (*on_ready)(void *ud);
	void *ready_ud;
} ms_server_config;

/* Opens (or creates) the data directory and recovers state. Refuses a
 * foreign or damaged directory with a message in err. */
int ms_server_new(struct event_base *base, const ms_server_config *cfg, ms_server **out, ms_err *err);
/* Starts raft and the threads; publishes this member once a leader exists. */
int ms_server_start(ms_server *s, ms_err *err);
/* Stops threads, fails pending requests with MS_ESTOPPED, frees. */
void ms_server_free(ms_server *s);

/* ---- identity and status (loop thread) ---- */
uint64_t ms_server_id(const ms_server *s);
uint64_t ms_server_cluster_id(const ms_server *s);
uint64_t ms_server_term(const ms_server *s);
uint64_t ms_server_leader(const ms_server *s); /* 0 = none known */
/* Fills cluster_id, member_id, raft_term (and revision when rev >= 0). */
void ms_server_fill_header(const ms_server *s, Etcdserverpb__ResponseHeader *h, int64_t rev);
size_t ms_server_max_request_bytes(const ms_server *s);
/* True while this member is a learner (any thread; an atomic). */
bool ms_server_is_learner(const ms_server *s);
/* Fills the `header` field of any etcd response message (allocating it when
 * absent): cluster_id, member_id, raft_term; the revision is left as set. */
int ms_server_fill_resp_header(const ms_server *s, ProtobufCMessage *resp);

typedef struct ms_server_status {
	uint64_t leader, raft_index, raft_term, raft_applied_index;
	int64_t db_size, db_size_in_use, revision;
	bool is_learner;
} ms_server_status;
void ms_server_get_status(const ms_server *s, ms_server_status *st);

/* The member list; caller frees with ms_server_members_free. */
int ms_server_members(ms_server *s, Etcdserverpb__Member ***out, size_t *n);
void ms_server_members_free(Etcdserverpb__Member **m, size_t n);

/* ---- requests ----
 * done(arg, code, resp, msg): code 0 and resp (ownership moves to the
 * callee; free with protobuf_c_message_free_unpacked(resp, &ms_pb_allocator)),
 * or a negative MS_E* code with resp NULL and msg a detail (may be NULL). */
typedef void (*ms_done_fn)(void *arg, int code, ProtobufCMessage *resp, const char *msg);

/* Proposes req through raft (req is packed here; the caller keeps
 * ownership). deadline: absolute ms_now_mono_ns, 0 = the default request
 * timeout. The response type follows the request: PutResponse,
 * DeleteRangeResponse, TxnResponse, CompactionResponse, LeaseGrantResponse,
 * LeaseRevokeResponse. */
int ms_server_propose(ms_server *s, Msinternal__InternalRequest *req, int64_t deadline, ms_done_fn done, void *arg);
/* Proposal bounds. ms_server_propose refuses with MS_ETOO_MANY_REQS
 * ("etcdserver: too many requests", etcd's rule) when more than 5000
 * committed entries wait to be applied, when MS_SERVER_MAX_WAITERS calls
 * wait for their apply, or when proposals held while no leader is reachable
 * would pass MS_SERVER_MAX_PENDING_BYTES. A request that fails the log's
 * validation (unknown kind, missing body, etcd's request checks) is refused
 * with its error. A leader holds forwarded proposals to the same rules. */
#define MS_SERVER_MAX_WAITERS 65536
#define MS_SERVER_MAX_PENDING_BYTES (64u << 20)
/* Range; ownership of r moves to the server (freed with ms_pb_allocator).
 * Linearizable unless r->serializable: waits for a ReadIndex and for apply to
 * reach it, then reads on a reader thread. */
int ms_server_range(ms_server *s, Etcdserverpb__RangeRequest *r, int64_t deadline, ms_done_fn done, void *arg);
/* HashKV at rev (0 = current), computed on a reader thread. */
int ms_server_hash_kv(ms_server *s, int64_t rev, ms_done_fn done, void *arg);
/* Waits (on a reader thread) until the physical removal for a compaction
 * at rev has finished, then done(arg, 0, NULL, NULL). */
int ms_server_compact_wait(ms_server *s, int64_t rev, ms_done_fn done, void *arg);
/* Defragment (engine_defrag) on a reader thread; done gets a
 * DefragmentResponse. */
int ms_server_defragment(ms_server *s, ms_done_fn done, void *arg);
/* MoveLeader: transfers leadership to target and answers once target leads
 * (done with code 0 and resp NULL) or at the deadline
 * (MS_ETIMEOUT_TRANSFER). MS_ENOT_LEADER on a follower, MS_EBAD_TRANSFEREE. */
int ms_server_move_leader(ms_server *s, uint64_t target, int64_t deadline, ms_done_fn done, void *arg);
/* Membership (Cluster service), with etcd's checks and errors. The answer
 * (MemberAdd/Remove/Promote/UpdateResponse) comes once the change is applied. */
int ms_server_member_add(ms_server *s, char **urls, size_t nurls, bool learner, int64_t deadline, ms_done_fn done,
                         void *arg);
int ms_server_member_remove(ms_server *s, uint64_t id, int64_t deadline, ms_done_fn done, void *arg);
int ms_server_member_promote(ms_server *s, uint64_t id, int64_t deadline, ms_done_fn done, void *arg);
int ms_server_member_update(ms_server *s, uint64_t id, char **urls, size_t nurls, int64_t deadline, ms_done_fn done,
                            void *arg);
/* A linearizable barrier (ReadIndex + wait for apply): for /health. */
int ms_server_read_barrier(ms_server *s, int64_t deadline, ms_done_fn done, void *arg);

/* ---- alarms and the corruption check (server/corrupt.c; loop thread) ----
 * --experimental-initial-corrupt-check: compares this member's HashKV at its
 * current revision with every peer's at the same revision (asked over the
 * peer transport). done(ud, 0, NULL) when no peer disagrees (peers that do
 * not answer, are behind, or compacted differently are skipped with a
 * warning, as etcd does); done(ud, MS_ECORRUPT, "<id> found data
 * inconsistency with peers") on a mismatch: the caller must not serve. */
typedef void (*ms_check_done_fn)(void *ud, int code, const char *msg);
int ms_server_initial_corrupt_check(ms_server *s, ms_check_done_fn done, void *ud);
/* Alarm GET: the raised alarms of type t (NONE = all) as an AlarmResponse
 * (no header, as etcd); *out is the caller's. */
int ms_server_alarm_list(ms_server *s, Etcdserverpb__AlarmType t, Etcdserverpb__AlarmResponse **out);
/* Alarm ACTIVATE through raft (applied on every member, kept in the store);
 * done gets an AlarmResponse listing the alarm if it was newly raised. Only
 * CORRUPT is enforced so far; other types and DEACTIVATE: MS_EUNSUPPORTED. */
int ms_server_alarm_activate(ms_server *s, uint64_t member, Etcdserverpb__AlarmType t, int64_t deadline,
                             ms_done_fn done, void *arg);

/* ---- leases (server/lease_srv.c; loop thread) ----
 * Grant: id 0 = the server picks one; TTL checked (MS_ELEASE_TTL_LARGE) and
 * raised to the minimum before proposing; done gets a LeaseGrantResponse.
 * Revoke: done gets a LeaseRevokeResponse or MS_ELEASE_NOT_FOUND. */
int ms_server_lease_grant(ms_server *s, int64_t id, int64_t ttl, int64_t deadline, ms_done_fn done, void *arg);
int ms_server_lease_revoke(ms_server *s, int64_t id, int64_t deadline, ms_done_fn done, void *arg);
/* Keep-alive: done gets a LeaseKeepAliveResponse (TTL 0 for an unknown or
 * expired lease). On the leader done runs before this returns. */
int ms_server_lease_renew(ms_server *s, int64_t id, ms_done_fn done, void *arg);
/* TimeToLive (TTL -1 for an unknown lease) and Leases; *out is the caller's. */
int ms_server_lease_ttl(ms_server *s, int64_t id, bool keys, Etcdserverpb__LeaseTimeToLiveResponse **out);
int ms_server_lease_leases(ms_server *s, Etcdserverpb__LeaseLeasesResponse **out);

/* ---- watch streams (server/watch_srv.c; loop thread) ----
 * One per client Watch stream. The server sends packed WatchResponses
 * through the sink, always on the loop thread, never after
 * ms_server_watch_close. pending() is the bytes queued and unsent; when it
 * passes the slow-stream bound the server stops sending, moves the affected
 * watchers back to catch-up from history, calls want_drain(), and resumes
 * once ms_server_watch_drained() is called (or a periodic check sees the
 * queue below half the bound). */
typedef struct ms_watch ms_watch;
typedef struct ms_watch_sink {
	int (*send)(void *ud, const uint8_t *msg, size_t len);
	size_t (*pending)(void *ud);
	void (*want_drain)(void *ud);
} ms_watch_sink;
/* Slow-stream bound (unsent bytes per stream). Below the gRPC layer's
 * per-call bound (4 MiB), so the watch server also polls waiting streams
 * (every 100 ms at most) instead of relying only on the drain callback.
 * A stream holds at most this + one catch-up read (512 KiB) + one revision;
 * see server/watch_srv.c. */
#define MS_WATCH_SLOW_BYTES (1u << 20)
int ms_server_watch_open(ms_server *s, const ms_watch_sink *sink, void *ud, ms_watch **out);
/* Create / cancel / progress, answered as etcd's watch server does. */
int ms_server_watch_request(ms_watch *w, const Etcdserverpb__WatchRequest *req);
void ms_server_watch_drained(ms_watch *w);
/* The stream is over: drops its watchers; outputs still in flight for it are
 * discarded when they arrive. */
void ms_server_watch_close(ms_watch *w);

#endif
