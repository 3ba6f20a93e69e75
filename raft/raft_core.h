/* raft_core.h — the Raft core: a pure, deterministic state machine (no I/O,
 * no clock, no threads, randomness injected). The node driver feeds it ticks,
 * peer messages and requests, and drains batches of work (raft_ready).
 *
 * Contract with the node driver, in one place:
 *
 *  - Time: only raft_core_tick(). Randomness: only cfg.rand.
 *  - Memory: the core copies everything it is given (messages, proposal
 *    data); it never keeps a caller's pointer. Everything it hands out in a
 *    raft_ready stays valid until raft_core_advance() and is freed by it; the
 *    node copies (encodes) what it needs longer. Between raft_core_ready()
 *    and raft_core_advance() the node calls no other mutating raft_core_*
 *    function (getters are fine).
 *  - Persistence (Raft §5, Figure 2 "persistent state ... updated on stable
 *    storage before responding to RPCs"): for every batch, in batch order,
 *      1. if rd.snapshot: install it (state machine + snapshot meta; drop the
 *         whole persisted log),
 *      2. if rd.truncate_from: delete every persisted entry >= truncate_from,
 *      3. write rd.entries and rd.hs (if rd.hs_changed) in one durable write,
 *      4. then send rd.msgs_after_persist, then call
 *         raft_core_persisted(last entry index, its term) if there were
 *         entries (or raft_core_persisted(snap.index, snap.term) for a
 *         snapshot with no entries).
 *    rd.msgs may be sent at once, before or while the write runs (the
 *    leader's replication traffic: it sends entries to followers while its own
 *    fsync runs, thesis §10.2.1). msgs_after_persist of a batch must wait for
 *    the writes of that batch AND of all earlier batches. Several batches may
 *    be in flight (raft_core_advance() does not wait for the disk).
 *  - Apply: rd.committed entries are committed and locally durable; apply
 *    them in order, then call raft_core_applied(last applied index). A
 *    CONF_CHANGE entry takes effect in the core when it is reported applied
 *    (etcd semantics); the node decodes it with raft_conf_change_decode() to
 *    update its own member list. The node must skip entries whose index is
 *    <= the state machine's consistent index (a snapshot may be newer than
 *    its metadata says, see SNAP below).
 *  - Bootstrap of a new cluster: pass restored state with hs = {0,0,0}, no
 *    entries, snap = {index 0, term 0, conf_state = the initial voters from
 *    --initial-cluster}. Every member of a new cluster must be given the same
 *    initial conf state. Like etcd, the core then writes the membership as
 *    committed CONF_CHANGE entries 1..n of term 1 (ADD_VOTER per voter in id
 *    order): the first batch hands them out to persist and later to apply
 *    (the node treats ADD_VOTER of an already-known member as a no-op). The
 *    configuration is in force at once. A member joining an existing
 *    cluster passes an EMPTY conf state and no entries: it learns the
 *    membership from the leader's log (or snapshot).
 *  - Restart: pass the persisted hard state, snapshot meta, every persisted
 *    entry after the snapshot, and the state machine's applied index. The core
 *    replays the conf changes between the snapshot and applied.
 *  - Snapshots (Raft §7): the node compacts the log with raft_core_compact()
 *    after it took a snapshot of its state machine. When a follower needs
 *    entries below the first index, the leader core emits a SNAP message
 *    carrying only the metadata; the node attaches the state machine data
 *    (engine checkpoint; it may be at a later index than snap.index, which is
 *    fine since the receiver skips applied entries by consistent index) and
 *    streams it. The receiving node steps the SNAP message (with the data
 *    kept aside) into its core; if accepted, the next rd.snapshot asks it to
 *    install that data. If streaming fails, the sender calls
 *    raft_core_report_snapshot(to, false).
 */
#ifndef MS_RAFT_CORE_H
#define MS_RAFT_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ms.h"

#define RAFT_NONE 0 /* no node / no vote / no leader; node ids are non-zero */

typedef enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 0,      /* opaque application data (may be empty: a leader's no-op) */
	RAFT_ENTRY_CONF_CHANGE = 1, /* data = raft_conf_change_encode() output */
} raft_entry_type;

/* One log entry. In a raft_ready or raft_msg handed out by the core, data is
 * owned by the core. In what the node passes in (raft_core_step,
 * raft_core_new) data is borrowed for the call only. */
typedef struct raft_entry {
	uint64_t term;
	uint64_t index;
	raft_entry_type type;
	const uint8_t *data;
	size_t len;
} raft_entry;

/* Raft Figure 2 persistent state (plus commit, so restarts replay less). */
typedef struct raft_hard_state {
	uint64_t term;
	uint64_t vote;
	uint64_t commit;
} raft_hard_state;

/* Cluster membership. Arrays are owned by whoever owns the enclosing struct;
 * a node id appears in at most one of the two lists. */
typedef struct raft_conf_state {
	uint64_t *voters;
	size_t n_voters;
	uint64_t *learners; /* non-voting members: receive the log, never vote, never count for quorum */
	size_t n_learners;
} raft_conf_state;

/* Snapshot metadata: the log up to index (with term) is replaced by a state
 * machine image; conf_state is the membership as of index. */
typedef struct raft_snapshot_meta {
	uint64_t index;
	uint64_t term;
	raft_conf_state conf_state;
} raft_snapshot_meta;

typedef enum raft_msg_type {
	RAFT_MSG_APP = 1,   /* AppendEntries (§5.3): log_term/index = previous entry, entries, commit */
	RAFT_MSG_APP_RESP,  /* index = last matching index, or reject with reject_hint/log_term hint */
	RAFT_MSG_VOTE,      /* RequestVote (§5.2, §5.4.1): log_term/index = candidate's last entry */
	RAFT_MSG_VOTE_RESP, /* reject = vote not granted */
	RAFT_MSG_PRE_VOTE,  /* thesis §9.6: term = candidate's term + 1, nobody's term changes */
	RAFT_MSG_PRE_VOTE_RESP,
	RAFT_MSG_HEARTBEAT, /* empty AppendEntries: commit = min(follower match, leader commit); context = ReadIndex
	                       round */
	RAFT_MSG_HEARTBEAT_RESP,  /* echoes context */
	RAFT_MSG_SNAP,            /* InstallSnapshot (§7): snapshot meta only; the node attaches the data */
	RAFT_MSG_TIMEOUT_NOW,     /* thesis §3.10: leadership transfer, start an election at once */
	RAFT_MSG_READ_INDEX,      /* follower -> leader: ReadIndex request, context = the caller's read id */
	RAFT_MSG_READ_INDEX_RESP, /* leader -> follower: index = read index, context echoed; reject = failed */
} raft_msg_type;
#define RAFT_MSG_TYPE_MAX RAFT_MSG_READ_INDEX_RESP

/* A message between cores. Fields that a type does not use are zero.
 * Handed out by the core (in raft_ready): everything is owned by the core
 * until raft_core_advance(). Passed to raft_core_step(): borrowed for the
 * call only. */
typedef struct raft_msg {
	raft_msg_type type;
	uint64_t from, to;
	uint64_t term;     /* sender's term (PRE_VOTE: the term it would campaign in) */
	uint64_t log_term; /* APP: term of entry `index`; VOTE: last log term; APP_RESP reject: hint term */
	uint64_t index;    /* APP: previous index; VOTE: last index; APP_RESP: last index / rejected index */
	uint64_t commit;   /* APP, HEARTBEAT: leader commit */
	bool reject;
	uint64_t reject_hint; /* APP_RESP reject: follower's guess of the last index that may match */
	raft_entry *entries;  /* APP only */
	size_t n_entries;
	const uint8_t *context; /* HEARTBEAT(_RESP), READ_INDEX(_RESP), VOTE/PRE_VOTE (transfer marker) */
	size_t context_len;
	raft_snapshot_meta snapshot; /* SNAP only */
} raft_msg;

typedef enum raft_role {
	RAFT_FOLLOWER = 0,
	RAFT_PRE_CANDIDATE,
	RAFT_CANDIDATE,
	RAFT_LEADER,
} raft_role;

/* Randomness source: returns a uniformly random value in [0, n). */
typedef uint64_t (*raft_rand_fn)(void *ud, uint64_t n);

typedef struct raft_config {
	uint64_t id;        /* this node, non-zero */
	int election_tick;  /* election timeout, in ticks; randomized in [election_tick, 2*election_tick) (§5.2) */
	int heartbeat_tick; /* leader heartbeat interval, in ticks (< election_tick) */
	bool pre_vote;      /* thesis §9.6 */
	bool check_quorum; /* thesis §6.2: leader steps down without a quorum; followers with a live leader ignore votes
	                      (§4.2.3) */
	size_t max_inflight_msgs;   /* pipelined APPs in flight per follower (0 = 256) */
	size_t max_entries_per_msg; /* 0 = 1024 */
	size_t max_bytes_per_msg;   /* entry data bytes per APP (0 = 1 MiB); at least one entry always goes */
	raft_rand_fn rand;          /* required */
	void *rand_ud;
} raft_config;

/* What the node found on disk at start-up (or the bootstrap state, see top).
 * Borrowed for raft_core_new() only. */
typedef struct raft_restore {
	raft_hard_state hs;
	raft_snapshot_meta snap;
	const raft_entry *entries; /* consecutive, starting at snap.index + 1 */
	size_t n_entries;
	uint64_t applied; /* state machine consistent index (>= snap.index) */
} raft_restore;

/* A linearizable read that may now be served: once the state machine has
 * applied up to index (thesis §6.4). context is the caller's read id. */
typedef struct raft_read_state {
	uint64_t index;
	const uint8_t *context;
	size_t context_len;
} raft_read_state;

/* One batch of work. Filled by raft_core_ready(), owned by the core, valid
 * until raft_core_advance(). See the persistence contract at the top. */
typedef struct raft_ready {
	/* soft state: always filled; soft_changed says it differs from the last batch */
	bool soft_changed;
	uint64_t leader;
	raft_role role;
	/* hard state to persist with this batch's entries */
	bool hs_changed;
	raft_hard_state hs;
	/* incoming snapshot to install before anything else (NULL = none) */
	const raft_snapshot_meta *snapshot;
	/* entries to persist; if truncate_from != 0, first delete persisted
	 * entries >= truncate_from (a follower's conflicting suffix, §5.3) */
	uint64_t truncate_from;
	const raft_entry *entries;
	size_t n_entries;
	/* messages that may be sent immediately */
	const raft_msg *msgs;
	size_t n_msgs;
	/* messages to send only once this batch (and earlier ones) is durable:
	 * votes, vote responses, append responses, ... */
	const raft_msg *msgs_after_persist;
	size_t n_msgs_after_persist;
	/* committed, locally durable entries to apply, in order */
	const raft_entry *committed;
	size_t n_committed;
	/* reads that may be served once applied >= index */
	const raft_read_state *reads;
	size_t n_reads;
} raft_ready;

typedef struct raft_core raft_core;

/* Creates a core. cfg and rs are borrowed (copied). Fails with MS_EINVAL on a
 * bad config or inconsistent restored state (entries not consecutive after
 * the snapshot, commit beyond the log, ...), MS_ENOMEM. */
int raft_core_new(const raft_config *cfg, const raft_restore *rs, raft_core **out, ms_err *err);
/* Frees the core and everything it still owns (including an unadvanced ready). */
void raft_core_del(raft_core *c);

/* One logical clock tick: election timeout (followers, candidates), heartbeat
 * and check-quorum (leader). */
void raft_core_tick(raft_core *c);

/* Feeds a message from a peer. msg is borrowed for the call. Stale or
 * malformed messages are dropped (returns 0); MS_EINVAL only for a message
 * not addressed to this node; MS_ENOMEM. */
int raft_core_step(raft_core *c, const raft_msg *msg);

/* Appends data (copied) as a new NORMAL entry (leader only). On success sets
 * index and term (may be NULL) so the node can match the apply result.
 * MS_ENOT_LEADER: not the leader (raft_core_leader() names the known leader,
 * RAFT_NONE when unknown; the node forwards or fails the request).
 * MS_EAGAIN: leadership transfer in progress (thesis §3.10: proposals stop). */
int raft_core_propose(raft_core *c, const uint8_t *data, size_t len, uint64_t *index, uint64_t *term);

typedef enum raft_conf_change_type {
	RAFT_CC_ADD_VOTER = 0, /* also promotes a learner (that is etcd's MemberPromote) */
	RAFT_CC_ADD_LEARNER = 1,
	RAFT_CC_REMOVE = 2,
} raft_conf_change_type;

/* A membership change. context (the node's member record: name, URLs) is
 * carried opaquely in the log entry. */
typedef struct raft_conf_change {
	raft_conf_change_type type;
	uint64_t node_id;
	const uint8_t *context;
	size_t context_len;
} raft_conf_change;

/* Proposes one membership change (thesis §4.1: one server at a time). Leader
 * only; refused with MS_EAGAIN while an earlier change is not yet applied or
 * the leader has not yet committed an entry of its term (thesis §4.1 fix).
 * MS_ENOT_LEADER as for propose; MS_EMEMBER_EXISTS (adding a present voter or
 * a present learner as learner), MS_EMEMBER_NOT_FOUND (removing an absent
 * node), MS_EINVAL (removing the last voter). Promotion = ADD_VOTER of a
 * learner. cc is borrowed. */
int raft_core_propose_conf_change(raft_core *c, const raft_conf_change *cc, uint64_t *index, uint64_t *term);

/* Encoding of CONF_CHANGE entry data: [u8 type][u64 LE node_id][context].
 * encode returns an ms_malloc'd buffer (caller frees) or NULL. decode
 * borrows the context from buf; MS_EINVAL when malformed. */
uint8_t *raft_conf_change_encode(const raft_conf_change *cc, size_t *len);
int raft_conf_change_decode(const uint8_t *buf, size_t len, raft_conf_change *cc);

/* Encoding of a conf state for storage: [u32 LE nv][u32 LE nl][u64 LE ids...].
 * encode returns an ms_malloc'd buffer (caller frees) or NULL. decode fills
 * cs with ms_malloc'd arrays (free with raft_conf_state_free); MS_EINVAL. */
uint8_t *raft_conf_state_encode(const raft_conf_state *cs, size_t *len);
int raft_conf_state_decode(const uint8_t *buf, size_t len, raft_conf_state *cs);
/* Frees the arrays of a conf state whose arrays are ms_malloc'd (decoded or
 * copied with raft_conf_state_copy) and zeroes it. */
void raft_conf_state_free(raft_conf_state *cs);
/* Deep copy (ms_malloc'd arrays). MS_ENOMEM. */
int raft_conf_state_copy(raft_conf_state *dst, const raft_conf_state *src);

/* Starts a linearizable read (thesis §6.4 ReadIndex). ctx (copied) is the
 * caller's read id, echoed in the raft_read_state. On the leader: the
 * commit index is recorded and confirmed by a heartbeat round (reads wait
 * until the leader has committed an entry of its term). On a follower: the
 * request goes to the leader, and the read state comes back. MS_ENO_LEADER
 * when no leader is known. A read that can't complete (leader lost) is simply
 * never answered: the node times it out. */
int raft_core_read_index(raft_core *c, const uint8_t *ctx, size_t len);

/* Leadership transfer to target (thesis §3.10): the leader stops taking
 * proposals, brings target up to date, then sends TIMEOUT_NOW. Abandoned
 * after an election timeout. On a follower the request is ignored with
 * MS_ENOT_LEADER. MS_EBAD_TRANSFEREE: target is not a voter (or is self). */
int raft_core_transfer_leader(raft_core *c, uint64_t target);

/* The node applied committed entries up to index. Conf changes up to index
 * take effect now. */
void raft_core_applied(raft_core *c, uint64_t index);

/* The node's log is durable up to (index, term) (see contract). Ignored if
 * the log no longer holds term at index (a newer write superseded it). */
void raft_core_persisted(raft_core *c, uint64_t index, uint64_t term);

/* Log compaction (Raft §7): the node took a snapshot of its state machine at
 * index (term, conf_state as of index, borrowed); entries <= index are
 * dropped. index must be <= applied; MS_EINVAL otherwise; a no-op (0) if
 * index <= the current snapshot index. */
int raft_core_compact(raft_core *c, uint64_t index, uint64_t term, const raft_conf_state *cs);

/* The node failed (ok=false) or finished (ok=true) streaming a SNAP to peer
 * `to`. A failure puts the peer back to probing. */
void raft_core_report_snapshot(raft_core *c, uint64_t to, bool ok);
/* The transport could not reach peer `to`: stop pipelining to it. */
void raft_core_report_unreachable(raft_core *c, uint64_t to);

/* True when raft_core_ready() would return something. */
bool raft_core_has_ready(const raft_core *c);
/* Fills rd with the next batch (see raft_ready). Returns 0 (also when empty),
 * MS_ENOMEM. Call raft_core_advance() before calling it again. */
int raft_core_ready(raft_core *c, raft_ready *rd);
/* The node took the batch (it need not be persisted yet): frees it. */
void raft_core_advance(raft_core *c, raft_ready *rd);

/* ---- getters ---- */
uint64_t raft_core_id(const raft_core *c);
uint64_t raft_core_leader(const raft_core *c);
raft_role raft_core_role(const raft_core *c);
uint64_t raft_core_term(const raft_core *c);
uint64_t raft_core_commit(const raft_core *c);
uint64_t raft_core_applied_index(const raft_core *c);
uint64_t raft_core_first_index(const raft_core *c); /* first entry kept (snapshot index + 1) */
uint64_t raft_core_last_index(const raft_core *c);
/* Term of entry index (snapshot index included); 0 if not known. */
uint64_t raft_core_term_at(const raft_core *c, uint64_t index);
/* The applied membership; arrays owned by the core, valid until the next
 * mutating call. */
const raft_conf_state *raft_core_conf_state(const raft_core *c);
/* Leader only: a follower's replication progress (match index); false if
 * not leader or unknown peer. Used for etcd's "learner in sync" check. */
bool raft_core_peer_match(const raft_core *c, uint64_t peer, uint64_t *match);
/* Names for logs. */
const char *raft_msg_type_name(raft_msg_type t);
const char *raft_role_name(raft_role r);

#endif
