/* raft.h — a raft member: the pure core (raft_core.h) driven on an event
 * loop, its durable log (log_store.h) written by a log writer thread with
 * group commit, an apply thread, and the peer transport.
 *
 * Threads:
 *   loop      : everything in this header except the apply callback. The
 *               core lives here; ticks come from a libevent timer.
 *   log writer: persists entries + hard state with one synchronous RocksDB
 *               write for everything queued, then tells the loop how far the
 *               log is durable. The leader sends entries to followers while
 *               its own write runs.
 *   apply     : calls cb.apply with committed entries in log order, in
 *               groups, then tells the loop how far it applied.
 *
 * A one-member cluster is the same code: proposals go through the log and
 * apply exactly like in a larger cluster. */
#ifndef MS_RAFT_H
#define MS_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ms.h"

struct event_base;
struct ms_tls;

typedef struct raft_node raft_node;

typedef enum { RAFT_NODE_ENTRY_NORMAL = 0, RAFT_NODE_ENTRY_CONF_CHANGE = 1 } raft_node_entry_type;

typedef struct raft_node_entry {
	uint64_t index, term;
	raft_node_entry_type type;
	const uint8_t *data;
	size_t len;
} raft_node_entry;

/* A membership change carried by a CONF_CHANGE entry. */
typedef enum { RAFT_NODE_ADD_VOTER = 0, RAFT_NODE_ADD_LEARNER = 1, RAFT_NODE_REMOVE = 2 } raft_node_cc_type;
typedef struct raft_node_conf_change {
	raft_node_cc_type type;
	uint64_t node_id;
	const uint8_t *context; /* the member record; borrowed from the entry */
	size_t context_len;
} raft_node_conf_change;
/* Decodes a CONF_CHANGE entry's data. MS_EINVAL when malformed. A new
 * cluster's log starts with one committed ADD_VOTER per initial member. */
int raft_node_conf_change_decode(const uint8_t *data, size_t len, raft_node_conf_change *cc);

typedef struct raft_node_callbacks {
	/* apply thread: apply entries (in order; index > the applied index the
	 * node was created with). Return 0, or a negative code: fatal (the
	 * process cannot continue without diverging from the log). */
	int (*apply)(void *ud, const raft_node_entry *ents, size_t n);
	/* apply thread: make everything applied so far durable (the state
	 * machine's own fsync); the log below it may then be dropped. */
	int (*sync)(void *ud);
	/* loop: write a consistent copy of the state machine to dir (a
	 * follower is behind the compacted log and gets it as a snapshot). */
	int (*make_snapshot)(void *ud, const char *dir);
	/* apply thread: replace the state machine with the copy in dir (the
	 * callee owns dir from now on); *applied = the copy's consistent index. */
	int (*install)(void *ud, const char *dir, uint64_t *applied);
	/* loop: apply reached index (after cb.apply returned for it). */
	void (*on_applied)(void *ud, uint64_t index);
	/* loop: a ReadIndex started with raft_node_read_index completed. */
	void (*on_read)(void *ud, uint64_t read_id, uint64_t index);
	/* loop: leader or term changed (leader 0 = none). */
	void (*on_leader)(void *ud, uint64_t leader, uint64_t term);
	/* loop: a joining member asks for the cluster (see raft_node_join);
	 * answer with an ms_malloc'd buffer. NULL refuses joins. */
	int (*on_join)(void *ud, const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len);
	/* loop, on the leader: a proposal member `from` forwarded (conf_change:
	 * data is the change's context). Return 0 to propose it; an error drops
	 * it (the callee tells the forwarder). NULL proposes everything. */
	int (*check_forward)(void *ud, uint64_t from, bool conf_change, const uint8_t *data, size_t len);
	/* loop: a message another member sent with raft_node_peer_send. */
	void (*on_peer)(void *ud, uint64_t from, bool response, const uint8_t *data, size_t len);
} raft_node_callbacks;

/* A peer of this member: its id and peer URLs. */
typedef struct raft_node_peer {
	uint64_t id;
	char *const *urls;
	size_t nurls;
} raft_node_peer;

typedef struct raft_node_config {
	uint64_t id;
	uint64_t cluster_id;
	char *const *listen_urls; /* --listen-peer-urls */
	size_t nlisten_urls;
	struct ms_tls *peer_tls;     /* for https peer URLs (borrowed); NULL = none */
	const raft_node_peer *peers; /* the other members */
	size_t npeers;
	const char *snap_dir; /* where received snapshots are written */
	const char *log_dir;
	bool create;            /* a new member: create the log */
	const uint64_t *voters; /* bootstrap of a new cluster: the initial voters */
	size_t nvoters;
	uint64_t applied;        /* the state machine's consistent index */
	uint64_t snapshot_count; /* --snapshot-count: at most this many applied entries between log
	                          * compactions (0 = never; see COMPACT_EVERY in node.c) */
	int tick_ms;             /* --heartbeat-interval */
	int election_ticks;      /* --election-timeout / --heartbeat-interval */
	struct event_base *base;
	/* Optional: the apply thread's notes to the loop wake through this
	 * queue's fd (ms_queue_new_sharing), so a caller whose apply callback
	 * fills that queue costs one wake-up per batch, not two. */
	ms_queue *applied_wake;
	raft_node_callbacks cb;
	void *ud;
} raft_node_config;

/* Opens (or creates) the log, loads it and builds the core. */
int raft_node_new(const raft_node_config *cfg, raft_node **out, ms_err *err);
/* Starts the log writer and apply threads and the tick timer. */
int raft_node_start(raft_node *n, ms_err *err);
/* Stops threads (pending work is dropped: it was never acknowledged) and frees. */
void raft_node_free(raft_node *n);

/* Start-up of a member joining a running cluster: asks the member at peer
 * URL url (blocking, before the loop runs) and returns its answer. */
int raft_node_join(const char *url, struct ms_tls *tls, const uint8_t *req, size_t len, uint8_t **resp,
                   size_t *resp_len, ms_err *err);

/* Proposes data as a log entry. On a follower the data is forwarded to the
 * leader, which proposes it (the entry is applied on every member, so the
 * proposer sees its own result at apply). MS_ENO_LEADER when no leader is
 * known; MS_EAGAIN when it could not be queued (leader unreachable, or a
 * leadership transfer is in progress). */
int raft_node_propose(raft_node *n, const uint8_t *data, size_t len);
/* Proposes a membership change (one at a time, thesis §4.1); forwarded to
 * the leader from a follower. ctx (the member record) travels in the entry.
 * MS_EAGAIN while an earlier change is not yet applied; MS_ENO_LEADER. */
int raft_node_propose_conf_change(raft_node *n, raft_node_cc_type type, uint64_t node_id, const uint8_t *ctx,
                                  size_t len);
/* Leader only: how far a member's log matches ours, and our last index
 * (etcd's "learner in sync" check). false when not leader or unknown. */
bool raft_node_peer_progress(const raft_node *n, uint64_t id, uint64_t *match, uint64_t *last);
/* Peers of the transport follow the member list (loop thread). */
int raft_node_set_peer(raft_node *n, uint64_t id, char *const *urls, size_t nurls);
void raft_node_remove_peer(raft_node *n, uint64_t id);
/* True while this member's connection to peer id is up. */
bool raft_node_peer_active(const raft_node *n, uint64_t id);

/* Sends a request (or a response) to member `to` outside the log, on the
 * same ordered connection as raft traffic. MS_EAGAIN when dropped. */
int raft_node_peer_send(raft_node *n, uint64_t to, bool response, const uint8_t *data, size_t len);

/* Starts a ReadIndex; cb.on_read(read_id, index) follows, or nothing if
 * leadership is lost (the caller times out). MS_ENO_LEADER. */
int raft_node_read_index(raft_node *n, uint64_t read_id);

/* Leadership transfer to target (leader only): MS_ENOT_LEADER,
 * MS_EBAD_TRANSFEREE (not a voter, or self). The outcome shows up as an
 * on_leader callback. */
int raft_node_transfer_leader(raft_node *n, uint64_t target);

uint64_t raft_node_id(const raft_node *n);
uint64_t raft_node_leader(const raft_node *n);
uint64_t raft_node_term(const raft_node *n);
uint64_t raft_node_commit(const raft_node *n);
uint64_t raft_node_applied(const raft_node *n);
uint64_t raft_node_last_index(const raft_node *n);
bool raft_node_is_leader(const raft_node *n);

#endif
