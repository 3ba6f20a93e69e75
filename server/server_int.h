/* server_int.h — the server's private state, shared by its .c files. */
#ifndef MS_SERVER_INT_H
#define MS_SERVER_INT_H

#include <pthread.h>
#include <event2/util.h>
#include <stdatomic.h>

#include "engine/engine.h"
#include "raft/raft.h"
#include "server/server.h"

/* A call waiting for its proposal to be applied. */
typedef struct waiter {
	uint64_t id;
	int64_t deadline;
	ms_done_fn done;
	void *arg;
	struct waiter *hnext;       /* hash chain */
	struct waiter *prev, *next; /* all waiters, for the deadline sweep */
} waiter;

typedef struct move_wait {
	uint64_t target;
	int64_t deadline;
	ms_done_fn done;
	void *arg;
	struct move_wait *next;
} move_wait;

/* A packed proposal waiting for a leader to be known. */
typedef struct pending_prop {
	uint64_t id;
	struct pending_prop *next;
	size_t len;
	uint8_t data[];
} pending_prop;

/* A read waiting for ReadIndex and apply, or queued for a reader thread. */
typedef enum { READ_RANGE, READ_HASHKV, READ_BARRIER, READ_COMPACT_WAIT, READ_DEFRAG } read_kind;
typedef struct read_req {
	read_kind kind;
	Etcdserverpb__RangeRequest *range; /* owned */
	int64_t rev;                       /* HASHKV */
	int64_t deadline;
	uint64_t index; /* read index, once known */
	ms_done_fn done;
	void *arg;
	/* filled by the reader thread */
	int code;
	ProtobufCMessage *resp;
	ms_err err;
	struct read_req *next;
} read_req;

/* What the apply thread hands back to the loop for one of our proposals. */
typedef struct apply_result {
	uint64_t id;
	int code;
	ProtobufCMessage *resp;
	char msg[];
} apply_result;

struct ms_server {
	struct event_base *base;
	ms_server_config cfg;
	char *kv_dir, *raft_dir;

	uint64_t id, cluster_id;
	engine *eng;
	raft_node *node;

	/* membership (loop thread; apply thread updates under members_mu) */
	pthread_mutex_t members_mu;
	Etcdserverpb__MemberListResponse *members;
	char cluster_version[16];
	_Atomic bool published;
	_Atomic bool is_learner;
	bool publish_inflight, version_inflight;

	/* proposals waiting for apply (loop thread) */
	waiter **wtab;
	size_t wtab_size, nwaiters;
	waiter whead; /* list sentinel */
	uint64_t next_req_id;
	struct event *sweep_ev;
	pending_prop *pending_head, **pending_tail; /* proposals waiting for a leader */
	size_t pending_bytes;                       /* their packed bytes (bounded) */
	/* MoveLeader calls waiting for the transferee to lead (loop thread) */
	struct move_wait *moves;
	void *peer_calls; /* peer.c's pending calls */
	/* transport peers: the other members; a removed one is dropped from
	 * the transport PEER_GRACE_S after its removal is applied here, so the
	 * leader's next messages can still tell it that it was removed */
	uint64_t *peer_ids, *gone_ids;
	size_t n_peer_ids, n_gone_ids;
	struct event *gone_ev;

	/* linearizable reads (loop thread) */
	read_req *reads_queued;   /* waiting for the next ReadIndex round */
	read_req *reads_inflight; /* the round in flight */
	uint64_t read_round_id;   /* id of the round in flight (0 = none) */
	uint64_t next_read_round;
	read_req *reads_wait_apply; /* read index known, waiting for apply */

	/* threads */
	ms_queue *results_q; /* apply -> loop */
	struct event *results_ev;
	ms_queue *read_q, *read_done_q; /* loop -> readers -> loop */
	struct event *read_done_ev;
	pthread_t *readers;
	int nreaders;

	uint64_t leader, term;
	_Atomic uint64_t applied_index;
	_Atomic uint64_t atomic_term, atomic_leader;

	struct ms_lease_srv *lease; /* lease_srv.c */
	struct ms_watch_srv *watch; /* watch_srv.c */
	struct ms_corrupt *corrupt; /* corrupt.c: alarms, corruption check */
};

/* lease_srv.c: the lease manager's wiring. init in ms_server_new (after the
 * engine opens: rebuilds from engine_leases), start in ms_server_start
 * (expiry timer), free after the apply thread stopped. on_leader from the
 * raft leader callback: only the leader runs expiry clocks. applied_* from
 * the apply thread after the engine op succeeded. */
int ms_lease_srv_init(ms_server *s, ms_err *err);
int ms_lease_srv_start(ms_server *s, ms_err *err);
void ms_lease_srv_free(ms_server *s);
void ms_lease_srv_on_leader(ms_server *s, uint64_t leader);
void ms_lease_srv_applied_grant(ms_server *s, int64_t id, int64_t ttl);
void ms_lease_srv_applied_revoke(ms_server *s, int64_t id);
void ms_lease_srv_on_events(ms_server *s, Mvccpb__Event *const *evs, size_t n);
/* watch_srv.c: the watch hub's wiring (same life cycle as above). */
int ms_watch_srv_init(ms_server *s, ms_err *err);
int ms_watch_srv_start(ms_server *s, ms_err *err);
void ms_watch_srv_free(ms_server *s);
/* The engine's events callback (apply thread, engine_events_fn): feeds the
 * lease manager's key mirror and hands the revision to the watch hub. */
void ms_server_on_events(void *arg, int64_t rev, Mvccpb__Event **evs, size_t n);

/* server.c: unlinks and returns the waiter for a proposal id, or NULL. */
waiter *ms_server_waiter_take(ms_server *s, uint64_t id);
/* apply.c: unpacks an InternalRequest another member produced (a log
 * entry, a forwarded proposal). MS_EINVAL. */
int ms_request_decode(const uint8_t *data, size_t len, Msinternal__InternalRequest **out, ms_err *err);
/* apply.c: what every request in the log must satisfy: a known kind with its
 * body, etcd's request checks (txn ops against max_txn_ops). Depends on
 * nothing but req and max_txn_ops, so every member decides the same. 0 or
 * the MS_E* code the proposer gets. */
int ms_request_check(const Msinternal__InternalRequest *req, int max_txn_ops, ms_err *err);
/* apply.c: the raft apply callback (apply thread). */
int ms_server_apply(void *ud, const raft_node_entry *ents, size_t n);
/* apply.c: completes results posted by the apply thread (loop). */
void ms_server_results_cb(evutil_socket_t fd, short what, void *arg);

/* members.c */
uint64_t ms_member_id(char **peer_urls, size_t n, const char *token);
uint64_t ms_cluster_id(const uint64_t *ids, size_t n);
int ms_members_load(ms_server *s, ms_err *err);
int ms_members_bootstrap(ms_server *s, ms_err *err);
/* Packs the member list for the meta record (apply thread or bootstrap). */
uint8_t *ms_members_pack(const Etcdserverpb__MemberListResponse *m, size_t *len);
/* apply thread: applies a membership change (conf change entry, or upd for
 * MemberUpdate); true when the list changed. *resp: the proposer's answer. */
bool ms_members_apply_change(ms_server *s, raft_node_cc_type type, uint64_t id, const Etcdserverpb__Member *rec,
                             const Etcdserverpb__MemberUpdateRequest *upd, ProtobufCMessage **resp);
/* peer.c: requests to another member outside the log (loop thread).
 * done(arg, code, packed response, len): code 0, MS_ETIMEOUT, or the
 * responder's MS_E* code. */
typedef void (*ms_peer_done_fn)(void *arg, int code, const uint8_t *resp, size_t len);
int ms_server_peer_call(ms_server *s, uint64_t to, Msinternal__PeerRequest *req, int64_t deadline, ms_peer_done_fn done,
                        void *arg);
void ms_server_peer_sweep(ms_server *s, int64_t now);
void ms_server_on_peer(void *ud, uint64_t from, bool response, const uint8_t *data, size_t len);
/* lease_srv.c: reload the lease manager from the store (after a snapshot). */
int ms_lease_srv_reload(ms_server *s, ms_err *err);
/* watch_srv.c: apply thread, after a snapshot replaced the store. */
void ms_watch_srv_on_install(ms_server *s, int64_t rev);
/* members.c: re-read this member's view of the cluster after a snapshot
 * replaced the store (whose meta came from the leader). */
int ms_members_after_install(ms_server *s, ms_err *err);
/* lease_srv.c: a keep-alive on this member's lease manager (the leader's). */
int ms_lease_srv_renew_local(ms_server *s, int64_t id, int64_t *ttl);
/* server.c: peers follow the member list (loop). */
void ms_server_members_changed(ms_server *s);
/* An apply_result with this id tells the loop the member list changed. */
#define APPLY_NOTE_MEMBERS 0
/* server.c: a waiter for a request id (membership changes register their own). */
int ms_server_add_waiter(ms_server *s, uint64_t id, int64_t deadline, ms_done_fn done, void *arg);
void ms_server_drop_waiter(ms_server *s, uint64_t id);
int ms_members_join(ms_server *s, ms_err *err);
int ms_members_on_join(void *ud, const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len);
/* True when id is a voting member. */
bool ms_members_has(ms_server *s, uint64_t id);
/* Applies a publish (apply thread): sets name + client URLs; returns true if changed. */
bool ms_members_apply_publish(ms_server *s, const Msinternal__PublishRequest *p);

/* corrupt.c: alarms and the corruption check. init in ms_server_new after
 * the engine opens (loads the raised alarms), start in ms_server_start (the
 * periodic check's timer), free after the threads stopped and every pending
 * read and peer call was failed; reload on the apply thread after a
 * snapshot replaced the store. */
int ms_corrupt_init(ms_server *s, ms_err *err);
int ms_corrupt_start(ms_server *s, ms_err *err);
void ms_corrupt_free(ms_server *s);
int ms_corrupt_reload(ms_server *s, ms_err *err);
/* apply thread: true when a raised alarm makes this request fail
 * (MS_ECORRUPT_CLUSTER while CORRUPT is raised, as etcd's corrupt applier). */
bool ms_alarm_refuses(ms_server *s, int request_case);
/* apply thread: an AlarmRequest from the log; *resp (when resp is not NULL)
 * gets the AlarmResponse for the proposer. */
int ms_alarm_apply(ms_server *s, engine_apply *a, const Etcdserverpb__AlarmRequest *r, ProtobufCMessage **resp,
                   ms_err *err);
/* loop: a peer asked for our HashKV at rev (PeerRequest.hash_kv). */
void ms_corrupt_on_peer_hash(ms_server *s, uint64_t from, uint64_t id, int64_t rev);
/* peer.c: answers member `to`'s request or proposal id with code and resp
 * (may be NULL): a PeerResponse; on an error code the member fails the
 * waiting call. */
void ms_server_peer_answer(ms_server *s, uint64_t to, uint64_t id, int code, const ProtobufCMessage *resp);

#endif
