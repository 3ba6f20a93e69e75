/* core.c — the Raft core: elections, replication, commit, ReadIndex,
 * leadership transfer, membership and snapshots as a pure state machine.
 * See raft_core.h for the contract with the node driver. Section numbers are
 * from the Raft paper (§5.x, §7) and Ongaro's thesis ("thesis §x.y"). */
#include <stdlib.h>
#include <string.h>

#include "raft/raft_core.h"

#define TRANSFER_CTX "CampaignTransfer"
#define TRANSFER_CTX_LEN (sizeof(TRANSFER_CTX) - 1)

enum { PR_PROBE = 0, PR_REPLICATE, PR_SNAPSHOT };

/* Leader's view of one member (Raft Figure 2 nextIndex/matchIndex) plus
 * flow control (thesis §10.2.1 pipelining). */
typedef struct progress {
	uint64_t id;
	bool learner;
	uint64_t match, next;
	int state;
	bool probe_sent;       /* PROBE: one APP out, wait for its answer */
	uint64_t pending_snap; /* SNAPSHOT: index of the snapshot sent */
	bool recent_active;    /* heard from within this election timeout (check-quorum) */
	int vote;              /* 0 = none, 1 = granted, -1 = rejected */
	uint64_t read_ack;     /* highest ReadIndex round acknowledged */
	uint64_t *infl;        /* ring of last indexes of APPs in flight */
	size_t infl_start, infl_n;
} progress;

typedef struct msgvec {
	raft_msg *v;
	size_t n, cap;
} msgvec;

typedef struct pending_read {
	uint64_t seq;   /* ReadIndex round (0 = waiting for the first commit of the term) */
	uint64_t index; /* commit index recorded when the read arrived */
	uint64_t from;  /* RAFT_NONE = local */
	uint8_t *ctx;
	size_t len;
} pending_read;

struct raft_core {
	raft_config cfg;
	uint64_t id;
	/* persistent state (Figure 2) */
	uint64_t term, vote;
	/* soft state */
	raft_role role;
	uint64_t leader;

	/* the log since the snapshot, in memory (entries own their data) */
	uint64_t snap_index, snap_term;
	raft_conf_state snap_conf; /* conf state of the compacted snapshot */
	raft_entry *ents;          /* ents[i].index == snap_index + 1 + i */
	size_t n_ents, cap_ents;
	uint64_t commit;
	uint64_t persisted;     /* durable up to here (raft_core_persisted) */
	uint64_t stable_next;   /* first index not yet handed out for persisting */
	uint64_t truncate_from; /* pending truncation to hand out, 0 = none */
	uint64_t applied;       /* reported by the node */
	uint64_t apply_next;    /* first committed index not yet handed out */

	raft_conf_state conf; /* applied membership */
	progress *prs;
	size_t n_prs;

	int election_elapsed, heartbeat_elapsed, randomized_timeout;
	uint64_t transferee;
	uint64_t pending_conf_index;
	bool term_durable; /* the hard state of this term is known to be on disk */

	/* ReadIndex (thesis §6.4) */
	uint64_t read_seq;
	pending_read *reads_q;
	size_t n_reads_q, cap_reads_q;

	/* incoming snapshot to hand out */
	bool snap_pending;
	raft_snapshot_meta snap_in;

	/* outputs collected until raft_core_ready() */
	msgvec out_now, out_after;
	raft_read_state *rs;
	size_t n_rs, cap_rs;
	bool oom; /* an allocation failed while producing output: reported by ready() */

	/* what the last batch reported */
	raft_hard_state prev_hs;
	uint64_t prev_leader;
	raft_role prev_role;

	/* the batch handed out and not yet advanced */
	bool in_ready;
	msgvec rd_now, rd_after;
	raft_read_state *rd_rs;
	size_t rd_n_rs;
	uint64_t rd_stable_to, rd_apply_to;
	bool rd_snap;
	raft_snapshot_meta rd_snap_meta;
};

/* ------------------------------------------------------------------ log */

static uint64_t last_index(const raft_core *c)
{
	return c->snap_index + c->n_ents;
}

static const raft_entry *entry_at(const raft_core *c, uint64_t i)
{
	if (i <= c->snap_index || i > last_index(c))
		return NULL;
	return &c->ents[i - c->snap_index - 1];
}

static uint64_t term_at(const raft_core *c, uint64_t i)
{
	if (i == c->snap_index)
		return c->snap_term;
	const raft_entry *e = entry_at(c, i);
	return e ? e->term : 0;
}

static uint64_t last_term(const raft_core *c)
{
	return term_at(c, last_index(c));
}

static void entry_free(raft_entry *e)
{
	ms_free((void *)e->data);
	e->data = NULL;
}

/* Appends a copy of e (index must be last + 1). */
static int log_append(raft_core *c, const raft_entry *e)
{
	MS_ASSERT(e->index == last_index(c) + 1);
	if (c->n_ents == c->cap_ents) {
		size_t nc = c->cap_ents ? c->cap_ents * 2 : 64;
		raft_entry *ne = ms_realloc(c->ents, nc * sizeof *ne);
		if (!ne)
			return MS_ENOMEM;
		c->ents = ne;
		c->cap_ents = nc;
	}
	raft_entry copy = *e;
	copy.data = NULL;
	if (e->len) {
		if (!(copy.data = ms_memdup(e->data, e->len)))
			return MS_ENOMEM;
	} else {
		copy.len = 0;
	}
	c->ents[c->n_ents++] = copy;
	return 0;
}

/* Drops entries >= from (a follower's conflicting suffix, §5.3). */
static void log_truncate(raft_core *c, uint64_t from)
{
	MS_ASSERT(from > c->commit); /* committed entries are never removed (§5.4) */
	while (last_index(c) >= from) {
		entry_free(&c->ents[c->n_ents - 1]);
		c->n_ents--;
	}
	if (from < c->stable_next) {
		c->stable_next = from;
		if (c->truncate_from == 0 || from < c->truncate_from)
			c->truncate_from = from;
	}
	if (c->persisted >= from)
		c->persisted = from - 1;
}

/* Raft §5.3 log matching: does our log hold term at index? */
static bool match_term(const raft_core *c, uint64_t index, uint64_t term)
{
	if (index < c->snap_index || index > last_index(c))
		return false;
	return term_at(c, index) == term;
}

/* Largest i <= index with term_at(i) <= term, not below the snapshot: the
 * fast back-off search (thesis §5.3 optimisation, both sides use it). */
static uint64_t find_conflict_by_term(const raft_core *c, uint64_t index, uint64_t term)
{
	if (index > last_index(c))
		index = last_index(c);
	while (index > c->snap_index && term_at(c, index) > term)
		index--;
	return index;
}

/* ------------------------------------------------------------ messages */

static void msg_free(raft_msg *m)
{
	for (size_t i = 0; i < m->n_entries; i++)
		entry_free(&m->entries[i]);
	ms_free(m->entries);
	ms_free((void *)m->context);
	raft_conf_state_free(&m->snapshot.conf_state);
}

static void msgvec_clear(msgvec *v)
{
	for (size_t i = 0; i < v->n; i++)
		msg_free(&v->v[i]);
	v->n = 0;
}

static void msgvec_free(msgvec *v)
{
	msgvec_clear(v);
	ms_free(v->v);
	memset(v, 0, sizeof *v);
}

/* Must this message wait until the batch is durable? Votes, vote answers and
 * append answers promise something about our durable state (Figure 2). */
static bool needs_persist(const raft_core *c, raft_msg_type t)
{
	switch (t) {
	case RAFT_MSG_APP_RESP:
	case RAFT_MSG_VOTE:
	case RAFT_MSG_VOTE_RESP:
	case RAFT_MSG_PRE_VOTE:
	case RAFT_MSG_PRE_VOTE_RESP:
		return true;
	case RAFT_MSG_APP:
	case RAFT_MSG_SNAP:
	case RAFT_MSG_TIMEOUT_NOW:
	case RAFT_MSG_HEARTBEAT:
		/* a leader whose term is not yet on disk (a single voter wins
		 * at once) must not talk as leader of that term yet */
		return !c->term_durable;
	default:
		return false;
	}
}

/* Queues m (ownership of its buffers moves to the core on success; on
 * failure they are freed and the message is lost, like on a bad network). */
static void send(raft_core *c, raft_msg *m)
{
	m->from = c->id;
	if (m->term == 0)
		m->term = c->term;
	msgvec *v = needs_persist(c, m->type) ? &c->out_after : &c->out_now;
	if (v->n == v->cap) {
		size_t nc = v->cap ? v->cap * 2 : 16;
		raft_msg *nv = ms_realloc(v->v, nc * sizeof *nv);
		if (!nv) {
			msg_free(m);
			c->oom = true;
			return;
		}
		v->v = nv;
		v->cap = nc;
	}
	v->v[v->n++] = *m;
}

static void send_simple(raft_core *c, raft_msg_type t, uint64_t to, uint64_t term)
{
	raft_msg m = {.type = t, .to = to, .term = term};
	send(c, &m);
}

/* ------------------------------------------------------------ progress */

static progress *pr_get(raft_core *c, uint64_t id)
{
	for (size_t i = 0; i < c->n_prs; i++)
		if (c->prs[i].id == id)
			return &c->prs[i];
	return NULL;
}

static size_t max_inflight(const raft_core *c)
{
	return c->cfg.max_inflight_msgs ? c->cfg.max_inflight_msgs : 256;
}

static bool infl_full(const raft_core *c, const progress *p)
{
	return p->infl_n >= max_inflight(c);
}

static void infl_add(raft_core *c, progress *p, uint64_t last)
{
	size_t cap = max_inflight(c);
	if (!p->infl) {
		if (!(p->infl = ms_calloc(cap, sizeof(uint64_t)))) {
			c->oom = true;
			return;
		}
	}
	MS_ASSERT(p->infl_n < cap);
	p->infl[(p->infl_start + p->infl_n) % cap] = last;
	p->infl_n++;
}

/* Frees every in-flight APP whose last index is <= to. */
static void infl_free_to(const raft_core *c, progress *p, uint64_t to)
{
	size_t cap = max_inflight(c);
	while (p->infl_n && p->infl[p->infl_start] <= to) {
		p->infl_start = (p->infl_start + 1) % cap;
		p->infl_n--;
	}
}

static void infl_reset(progress *p)
{
	p->infl_start = p->infl_n = 0;
}

static void pr_become_probe(progress *p)
{
	/* after a snapshot, resume right after it (thesis §5.3 probing) */
	if (p->state == PR_SNAPSHOT) {
		uint64_t ps = p->pending_snap;
		p->next = MS_MAX(p->match + 1, ps + 1);
	} else {
		p->next = p->match + 1;
	}
	p->state = PR_PROBE;
	p->probe_sent = false;
	p->pending_snap = 0;
	infl_reset(p);
}

static void pr_become_replicate(progress *p)
{
	p->state = PR_REPLICATE;
	p->next = p->match + 1;
	p->probe_sent = false;
	p->pending_snap = 0;
	infl_reset(p);
}

static bool pr_paused(const raft_core *c, const progress *p)
{
	switch (p->state) {
	case PR_PROBE:
		return p->probe_sent;
	case PR_REPLICATE:
		return infl_full(c, p);
	default:
		return true;
	}
}

static bool conf_has(const uint64_t *ids, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static bool is_voter(const raft_core *c, uint64_t id)
{
	return conf_has(c->conf.voters, c->conf.n_voters, id);
}

static size_t quorum(const raft_core *c)
{
	return c->conf.n_voters / 2 + 1;
}

/* Rebuilds the progress table for c->conf, keeping what is known about
 * members that stay. */
static int prs_rebuild(raft_core *c)
{
	size_t n = c->conf.n_voters + c->conf.n_learners;
	progress *np = ms_calloc(n ? n : 1, sizeof *np);
	if (!np)
		return MS_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		uint64_t id = i < c->conf.n_voters ? c->conf.voters[i] : c->conf.learners[i - c->conf.n_voters];
		progress *old = pr_get(c, id);
		if (old) {
			np[i] = *old;
			old->infl = NULL;
		} else {
			np[i].id = id;
			np[i].next = last_index(c) + 1;
			np[i].match = id == c->id ? c->persisted : 0;
			np[i].recent_active = true; /* a new member gets one timeout of grace */
		}
		np[i].learner = i >= c->conf.n_voters;
	}
	for (size_t i = 0; i < c->n_prs; i++)
		ms_free(c->prs[i].infl);
	ms_free(c->prs);
	c->prs = np;
	c->n_prs = n;
	return 0;
}

/* ---------------------------------------------------------------- reads */

static void rs_add(raft_core *c, uint64_t index, const uint8_t *ctx, size_t len)
{
	if (c->n_rs == c->cap_rs) {
		size_t nc = c->cap_rs ? c->cap_rs * 2 : 8;
		raft_read_state *n = ms_realloc(c->rs, nc * sizeof *n);
		if (!n) {
			c->oom = true;
			return;
		}
		c->rs = n;
		c->cap_rs = nc;
	}
	uint8_t *copy = NULL;
	if (len && !(copy = ms_memdup(ctx, len))) {
		c->oom = true;
		return;
	}
	c->rs[c->n_rs++] = (raft_read_state){.index = index, .context = copy, .context_len = len};
}

static void reads_q_clear(raft_core *c)
{
	for (size_t i = 0; i < c->n_reads_q; i++)
		ms_free(c->reads_q[i].ctx);
	c->n_reads_q = 0;
}

/* Answers a confirmed read: locally or back to the follower that asked. */
static void read_respond(raft_core *c, uint64_t from, uint64_t index, const uint8_t *ctx, size_t len)
{
	if (from == RAFT_NONE || from == c->id) {
		rs_add(c, index, ctx, len);
		return;
	}
	raft_msg m = {.type = RAFT_MSG_READ_INDEX_RESP, .to = from, .index = index};
	if (len) {
		if (!(m.context = ms_memdup(ctx, len))) {
			c->oom = true;
			return;
		}
		m.context_len = len;
	}
	send(c, &m);
}

static bool committed_in_term(const raft_core *c)
{
	return term_at(c, c->commit) == c->term;
}

static void bcast_heartbeat(raft_core *c);

/* thesis §6.4 ReadIndex on the leader: record the commit index, then
 * confirm leadership with a heartbeat round before answering. */
static void leader_read(raft_core *c, uint64_t from, const uint8_t *ctx, size_t len)
{
	if (c->conf.n_voters == 1 && is_voter(c, c->id) && committed_in_term(c)) {
		read_respond(c, from, c->commit, ctx, len); /* a quorum of one: nothing to confirm */
		return;
	}
	if (c->n_reads_q == c->cap_reads_q) {
		size_t nc = c->cap_reads_q ? c->cap_reads_q * 2 : 8;
		pending_read *n = ms_realloc(c->reads_q, nc * sizeof *n);
		if (!n) {
			c->oom = true;
			return;
		}
		c->reads_q = n;
		c->cap_reads_q = nc;
	}
	uint8_t *copy = NULL;
	if (len && !(copy = ms_memdup(ctx, len))) {
		c->oom = true;
		return;
	}
	pending_read *r = &c->reads_q[c->n_reads_q++];
	*r = (pending_read){.from = from, .ctx = copy, .len = len};
	/* thesis §6.4 step 1: a new leader's commit index may be stale until it
	 * has committed an entry of its own term; park the read until then */
	if (committed_in_term(c)) {
		r->seq = ++c->read_seq;
		r->index = c->commit;
		bcast_heartbeat(c);
	}
}

/* After the first commit of the term: start rounds for parked reads. */
static void reads_start_parked(raft_core *c)
{
	bool any = false;
	for (size_t i = 0; i < c->n_reads_q; i++) {
		if (c->reads_q[i].seq == 0) {
			c->reads_q[i].seq = ++c->read_seq;
			c->reads_q[i].index = c->commit;
			any = true;
		}
	}
	if (any) {
		if (c->conf.n_voters == 1 && is_voter(c, c->id)) {
			for (size_t i = 0; i < c->n_reads_q; i++)
				read_respond(c, c->reads_q[i].from, c->reads_q[i].index, c->reads_q[i].ctx,
				             c->reads_q[i].len);
			reads_q_clear(c);
			return;
		}
		bcast_heartbeat(c);
	}
}

/* A quorum acknowledged rounds up to some seq: answer those reads. */
static void reads_check(raft_core *c)
{
	size_t done = 0;
	for (size_t i = 0; i < c->n_reads_q; i++) {
		pending_read *r = &c->reads_q[i];
		if (r->seq == 0)
			break;
		size_t acks = 0;
		for (size_t j = 0; j < c->n_prs; j++)
			if (!c->prs[j].learner && (c->prs[j].id == c->id || c->prs[j].read_ack >= r->seq))
				acks++;
		if (acks < quorum(c))
			break;
		read_respond(c, r->from, r->index, r->ctx, r->len);
		done = i + 1;
	}
	for (size_t i = 0; i < done; i++)
		ms_free(c->reads_q[i].ctx);
	memmove(c->reads_q, c->reads_q + done, (c->n_reads_q - done) * sizeof *c->reads_q);
	c->n_reads_q -= done;
}

/* ---------------------------------------------------------- replication */

static size_t max_ents(const raft_core *c)
{
	return c->cfg.max_entries_per_msg ? c->cfg.max_entries_per_msg : 1024;
}
static size_t max_bytes(const raft_core *c)
{
	return c->cfg.max_bytes_per_msg ? c->cfg.max_bytes_per_msg : (1u << 20);
}

static void send_snapshot(raft_core *c, progress *p)
{
	/* Raft §7 InstallSnapshot: the follower needs entries we compacted */
	raft_msg m = {.type = RAFT_MSG_SNAP, .to = p->id};
	m.snapshot.index = c->snap_index;
	m.snapshot.term = c->snap_term;
	if (raft_conf_state_copy(&m.snapshot.conf_state, &c->snap_conf) != 0) {
		c->oom = true;
		return;
	}
	p->state = PR_SNAPSHOT;
	p->pending_snap = c->snap_index;
	p->probe_sent = false;
	infl_reset(p);
	send(c, &m);
}

/* Sends the follower what it misses (Raft §5.3 AppendEntries), or a probe,
 * or a snapshot. Returns true if a message went out. */
static bool send_append(raft_core *c, progress *p, bool send_if_empty)
{
	if (p->id == c->id || pr_paused(c, p))
		return false;
	if (p->next <= c->snap_index) {
		send_snapshot(c, p);
		return true;
	}
	uint64_t prev = p->next - 1;
	uint64_t last = last_index(c);
	size_t n = 0, bytes = 0;
	while (p->next + n <= last && n < max_ents(c)) {
		size_t l = entry_at(c, p->next + n)->len;
		if (n > 0 && bytes + l > max_bytes(c))
			break;
		bytes += l;
		n++;
	}
	if (n == 0 && !send_if_empty)
		return false;
	raft_msg m = {
	    .type = RAFT_MSG_APP, .to = p->id, .index = prev, .log_term = term_at(c, prev), .commit = c->commit};
	if (n) {
		if (!(m.entries = ms_calloc(n, sizeof *m.entries))) {
			c->oom = true;
			return false;
		}
		for (size_t i = 0; i < n; i++) {
			const raft_entry *e = entry_at(c, p->next + i);
			m.entries[i] = *e;
			m.entries[i].data = NULL;
			if (e->len && !(m.entries[i].data = ms_memdup(e->data, e->len))) {
				m.n_entries = i;
				msg_free(&m);
				c->oom = true;
				return false;
			}
			m.n_entries = i + 1;
		}
	}
	if (p->state == PR_REPLICATE) {
		/* thesis §10.2.1 pipelining: optimistically advance next */
		if (n) {
			p->next += n;
			infl_add(c, p, p->next - 1);
		}
	} else {
		p->probe_sent = true;
	}
	send(c, &m);
	return true;
}

static void bcast_append(raft_core *c)
{
	for (size_t i = 0; i < c->n_prs; i++)
		send_append(c, &c->prs[i], true);
}

/* Raft §5.2 heartbeats; commit is min(match, commit) so a follower never
 * commits an entry it may not hold; context carries the ReadIndex round. */
static void bcast_heartbeat(raft_core *c)
{
	for (size_t i = 0; i < c->n_prs; i++) {
		progress *p = &c->prs[i];
		if (p->id == c->id)
			continue;
		raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .to = p->id, .commit = MS_MIN(p->match, c->commit)};
		if (c->read_seq) {
			uint8_t *b = ms_malloc(8);
			if (!b) {
				c->oom = true;
				return;
			}
			ms_put_u64le(b, c->read_seq);
			m.context = b;
			m.context_len = 8;
		}
		send(c, &m);
	}
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* Raft §5.3/§5.4.2: commit the largest index a quorum of voters holds, but
 * only by counting replicas of an entry of the current term (Figure 8). The
 * leader's own match is its durable index. */
static bool maybe_commit(raft_core *c)
{
	if (c->conf.n_voters == 0)
		return false;
	uint64_t m[64];
	uint64_t *mv = c->n_prs > 64 ? ms_malloc(c->n_prs * sizeof(uint64_t)) : m;
	if (!mv) {
		c->oom = true;
		return false;
	}
	size_t k = 0;
	for (size_t i = 0; i < c->n_prs; i++)
		if (!c->prs[i].learner)
			mv[k++] = c->prs[i].match;
	qsort(mv, k, sizeof *mv, cmp_desc);
	uint64_t q = k >= quorum(c) ? mv[quorum(c) - 1] : 0;
	if (mv != m)
		ms_free(mv);
	if (q > c->commit && term_at(c, q) == c->term) {
		bool first = !committed_in_term(c);
		c->commit = q;
		if (first)
			reads_start_parked(c);
		return true;
	}
	return false;
}

/* ------------------------------------------------------- role changes */

static void reset_randomized_timeout(raft_core *c)
{
	/* Raft §5.2: randomized election timeouts in [et, 2*et) */
	c->randomized_timeout = c->cfg.election_tick + (int)c->cfg.rand(c->cfg.rand_ud, (uint64_t)c->cfg.election_tick);
}

static void reset(raft_core *c, uint64_t term)
{
	if (c->term != term) {
		c->term = term;
		c->vote = RAFT_NONE;
		c->term_durable = false;
	}
	c->leader = RAFT_NONE;
	c->election_elapsed = 0;
	c->heartbeat_elapsed = 0;
	reset_randomized_timeout(c);
	c->transferee = RAFT_NONE;
	reads_q_clear(c);
	for (size_t i = 0; i < c->n_prs; i++) {
		progress *p = &c->prs[i];
		p->vote = 0;
		p->match = p->id == c->id ? c->persisted : 0;
		p->next = last_index(c) + 1;
		p->state = PR_PROBE;
		p->probe_sent = false;
		p->pending_snap = 0;
		p->recent_active = false;
		p->read_ack = 0;
		infl_reset(p);
	}
}

static void become_follower(raft_core *c, uint64_t term, uint64_t leader)
{
	reset(c, term);
	c->role = RAFT_FOLLOWER;
	c->leader = leader;
}

static void become_leader(raft_core *c)
{
	MS_ASSERT(c->role != RAFT_FOLLOWER);
	reset(c, c->term);
	c->role = RAFT_LEADER;
	c->leader = c->id;
	for (size_t i = 0; i < c->n_prs; i++)
		c->prs[i].recent_active = true;
	progress *self = pr_get(c, c->id);
	if (self)
		pr_become_replicate(self), self->match = c->persisted, self->next = last_index(c) + 1;
	/* thesis §4.1 fix: no membership change until the leader committed an
	 * entry of its term, and the old config may still be pending */
	c->pending_conf_index = last_index(c) + 1;
	/* Raft §8: a no-op entry so the leader commits in its own term */
	raft_entry noop = {.term = c->term, .index = last_index(c) + 1, .type = RAFT_ENTRY_NORMAL};
	if (log_append(c, &noop) != 0)
		c->oom = true;
	bcast_append(c);
}

static bool promotable(const raft_core *c)
{
	return is_voter(c, c->id);
}

static void count_self_vote_and_send(raft_core *c, bool pre, bool transfer)
{
	raft_msg_type t = pre ? RAFT_MSG_PRE_VOTE : RAFT_MSG_VOTE;
	uint64_t term = pre ? c->term + 1 : c->term;
	progress *self = pr_get(c, c->id);
	if (self)
		self->vote = 1;
	for (size_t i = 0; i < c->n_prs; i++) {
		progress *p = &c->prs[i];
		if (p->learner || p->id == c->id)
			continue;
		raft_msg m = {.type = t, .to = p->id, .term = term, .index = last_index(c), .log_term = last_term(c)};
		if (transfer) {
			m.context = ms_memdup(TRANSFER_CTX, TRANSFER_CTX_LEN);
			if (!m.context) {
				c->oom = true;
				continue;
			}
			m.context_len = TRANSFER_CTX_LEN;
		}
		send(c, &m);
	}
}

static void tally(raft_core *c, size_t *granted, size_t *rejected)
{
	*granted = *rejected = 0;
	for (size_t i = 0; i < c->n_prs; i++) {
		if (c->prs[i].learner)
			continue;
		if (c->prs[i].vote > 0)
			(*granted)++;
		else if (c->prs[i].vote < 0)
			(*rejected)++;
	}
}

/* A committed conf change we have not applied yet means our membership is
 * stale: campaigning with it could build a majority of the wrong set (etcd
 * refuses the same way). */
static bool conf_change_unapplied(const raft_core *c)
{
	for (uint64_t i = c->applied + 1; i <= c->commit; i++) {
		const raft_entry *e = entry_at(c, i);
		if (e && e->type == RAFT_ENTRY_CONF_CHANGE)
			return true;
	}
	return false;
}

static void campaign(raft_core *c, bool pre, bool transfer)
{
	if (!promotable(c) || conf_change_unapplied(c))
		return;
	if (pre) {
		/* thesis §9.6 pre-vote: ask first, without touching our term */
		uint64_t term = c->term;
		reset(c, term);
		c->role = RAFT_PRE_CANDIDATE;
	} else {
		reset(c, c->term + 1);
		c->role = RAFT_CANDIDATE;
		c->vote = c->id;
	}
	count_self_vote_and_send(c, pre, transfer);
	size_t g, r;
	tally(c, &g, &r);
	if (g >= quorum(c)) {
		if (pre)
			campaign(c, false, transfer);
		else
			become_leader(c);
	}
}

/* ---------------------------------------------------------- membership */

static void ids_remove(uint64_t *ids, size_t *n, uint64_t id)
{
	for (size_t i = 0; i < *n; i++) {
		if (ids[i] == id) {
			ids[i] = ids[--*n];
			return;
		}
	}
}

static int ids_add(uint64_t **ids, size_t *n, uint64_t id)
{
	if (conf_has(*ids, *n, id))
		return 0;
	uint64_t *ni = ms_realloc(*ids, (*n + 1) * sizeof *ni);
	if (!ni)
		return MS_ENOMEM;
	ni[(*n)++] = id;
	*ids = ni;
	return 0;
}

/* A conf change entry takes effect when applied (etcd semantics). */
static void apply_conf_change(raft_core *c, const raft_entry *e)
{
	raft_conf_change cc;
	if (raft_conf_change_decode(e->data, e->len, &cc) != 0)
		return; /* the leader validated it; a malformed one is a no-op everywhere */
	int rc = 0;
	switch (cc.type) {
	case RAFT_CC_ADD_VOTER:
		ids_remove(c->conf.learners, &c->conf.n_learners, cc.node_id);
		rc = ids_add(&c->conf.voters, &c->conf.n_voters, cc.node_id);
		break;
	case RAFT_CC_ADD_LEARNER:
		if (!is_voter(c, cc.node_id))
			rc = ids_add(&c->conf.learners, &c->conf.n_learners, cc.node_id);
		break;
	case RAFT_CC_REMOVE:
		ids_remove(c->conf.voters, &c->conf.n_voters, cc.node_id);
		ids_remove(c->conf.learners, &c->conf.n_learners, cc.node_id);
		break;
	}
	if (rc != 0 || prs_rebuild(c) != 0) {
		c->oom = true;
		return;
	}
	if (c->role == RAFT_LEADER) {
		if (!promotable(c)) {
			/* removed (or demoted): step down, the rest elect a leader */
			become_follower(c, c->term, RAFT_NONE);
			return;
		}
		if (c->transferee && !is_voter(c, c->transferee))
			c->transferee = RAFT_NONE;
		/* the quorum may have shrunk; new members learn about us now */
		maybe_commit(c);
		bcast_append(c);
	}
}

/* ---------------------------------------------------------------- step */

static bool up_to_date(const raft_core *c, uint64_t lterm, uint64_t lindex)
{
	/* Raft §5.4.1 election restriction */
	uint64_t lt = last_term(c);
	return lterm > lt || (lterm == lt && lindex >= last_index(c));
}

static void commit_to(raft_core *c, uint64_t to)
{
	if (to > last_index(c))
		to = last_index(c);
	if (to > c->commit)
		c->commit = to;
}

static bool entries_valid(const raft_msg *m)
{
	for (size_t i = 0; i < m->n_entries; i++) {
		const raft_entry *e = &m->entries[i];
		if (e->index != m->index + 1 + i || e->term > m->term || e->term == 0)
			return false;
		if (i > 0 && e->term < m->entries[i - 1].term)
			return false;
		if (i == 0 && e->term < m->log_term)
			return false;
		if (e->len && !e->data)
			return false;
		if (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_CONF_CHANGE)
			return false;
	}
	return true;
}

/* Follower side of AppendEntries (Raft §5.3, Figure 2 receiver rules). */
static void handle_append(raft_core *c, const raft_msg *m)
{
	raft_msg r = {.type = RAFT_MSG_APP_RESP, .to = m->from};
	if (!entries_valid(m))
		return;
	if (m->index < c->commit) {
		r.index = c->commit; /* already have (and committed) this much */
		send(c, &r);
		return;
	}
	if (match_term(c, m->index, m->log_term)) {
		uint64_t lastnew = m->index + m->n_entries;
		size_t i = 0;
		/* skip what we already hold; a term mismatch is a conflict */
		while (i < m->n_entries && match_term(c, m->entries[i].index, m->entries[i].term))
			i++;
		if (i < m->n_entries) {
			uint64_t ci = m->entries[i].index;
			if (ci <= last_index(c))
				log_truncate(c, ci);
			for (; i < m->n_entries; i++) {
				if (log_append(c, &m->entries[i]) != 0) {
					c->oom = true;
					return; /* the leader will resend */
				}
			}
		}
		/* Figure 2: commitIndex = min(leaderCommit, index of last new entry) */
		commit_to(c, MS_MIN(m->commit, lastnew));
		r.index = lastnew;
		send(c, &r);
		return;
	}
	/* reject, with a hint for fast back-off: the largest index we hold whose
	 * term is <= the leader's term at m->index */
	uint64_t hint = find_conflict_by_term(c, MS_MIN(m->index, last_index(c)), m->log_term);
	r.reject = true;
	r.index = m->index;
	r.reject_hint = hint;
	r.log_term = term_at(c, hint);
	send(c, &r);
}

/* Raft §7 InstallSnapshot receiver. */
static void handle_snapshot(raft_core *c, const raft_msg *m)
{
	const raft_snapshot_meta *s = &m->snapshot;
	raft_msg r = {.type = RAFT_MSG_APP_RESP, .to = m->from};
	if (s->index <= c->commit || s->term == 0 || s->term > m->term) {
		r.index = c->commit;
		send(c, &r);
		return;
	}
	if (match_term(c, s->index, s->term)) {
		/* we hold the snapshot's last entry: the log is fine, just commit */
		commit_to(c, s->index);
		r.index = c->commit;
		send(c, &r);
		return;
	}
	raft_conf_state cs;
	if (raft_conf_state_copy(&cs, &s->conf_state) != 0) {
		c->oom = true;
		return;
	}
	raft_snapshot_meta in = {.index = s->index, .term = s->term};
	if (raft_conf_state_copy(&in.conf_state, &s->conf_state) != 0) {
		raft_conf_state_free(&cs);
		c->oom = true;
		return;
	}
	/* discard the whole log (§7: "discard the entire log") */
	for (size_t i = 0; i < c->n_ents; i++)
		entry_free(&c->ents[i]);
	c->n_ents = 0;
	c->snap_index = s->index;
	c->snap_term = s->term;
	raft_conf_state_free(&c->snap_conf);
	c->snap_conf = cs;
	c->commit = s->index;
	c->persisted = 0; /* nothing durable until the node installed it */
	c->stable_next = s->index + 1;
	c->truncate_from = 0; /* the install drops the whole persisted log */
	c->applied = s->index;
	c->apply_next = s->index + 1;
	raft_conf_state_free(&c->conf);
	if (raft_conf_state_copy(&c->conf, &c->snap_conf) != 0 || prs_rebuild(c) != 0)
		c->oom = true;
	if (c->snap_pending)
		raft_conf_state_free(&c->snap_in.conf_state);
	c->snap_in = in;
	c->snap_pending = true;
	r.index = s->index;
	send(c, &r);
}

static void leader_handle_app_resp(raft_core *c, const raft_msg *m, progress *p)
{
	p->recent_active = true;
	if (m->reject) {
		/* stale rejections (for an APP we already moved past) are dropped */
		if (m->index < p->match || (p->state == PR_PROBE && m->index != p->next - 1) ||
		    (p->state == PR_REPLICATE && m->index <= p->match))
			return;
		if (p->state == PR_SNAPSHOT)
			return;
		/* fast back-off (thesis §5.3): jump past the follower's whole
		 * conflicting term instead of one index per round trip */
		uint64_t idx = m->reject_hint;
		if (m->log_term > 0)
			idx = find_conflict_by_term(c, idx, m->log_term);
		uint64_t next = MS_MIN(m->index, idx + 1);
		if (next < p->match + 1)
			next = p->match + 1;
		pr_become_probe(p);
		p->next = next;
		send_append(c, p, true);
		return;
	}
	if (m->index < p->match)
		return; /* a stale answer */
	bool updated = false;
	if (m->index > p->match) {
		p->match = m->index;
		updated = true;
	}
	if (p->next < p->match + 1)
		p->next = p->match + 1;
	switch (p->state) {
	case PR_PROBE:
		pr_become_replicate(p);
		break;
	case PR_SNAPSHOT:
		if (p->match >= p->pending_snap) {
			pr_become_probe(p);
			pr_become_replicate(p);
		}
		break;
	case PR_REPLICATE:
		infl_free_to(c, p, m->index);
		break;
	}
	if (updated && maybe_commit(c))
		bcast_append(c); /* tell everyone the new commit index */
	while (send_append(c, p, false)) {
	}
	/* thesis §3.10: the transferee caught up, tell it to campaign now */
	if (m->from == c->transferee && p->match == last_index(c))
		send_simple(c, RAFT_MSG_TIMEOUT_NOW, m->from, 0);
}

static void step_leader(raft_core *c, const raft_msg *m)
{
	progress *p = pr_get(c, m->from);
	switch (m->type) {
	case RAFT_MSG_APP_RESP:
		if (p)
			leader_handle_app_resp(c, m, p);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		if (!p)
			break;
		p->recent_active = true;
		p->probe_sent = false;
		if (p->state == PR_REPLICATE && infl_full(c, p))
			infl_free_to(c, p, p->infl[p->infl_start]); /* a lost APP_RESP must not stall the pipe */
		if (p->match < last_index(c))
			send_append(c, p, true);
		if (m->context_len == 8 && !p->learner) {
			uint64_t seq = ms_get_u64le(m->context);
			if (seq > p->read_ack && seq <= c->read_seq) {
				p->read_ack = seq;
				reads_check(c);
			}
		}
		break;
	case RAFT_MSG_READ_INDEX:
		if (p) /* learners read too */
			leader_read(c, m->from, m->context, m->context_len);
		break;
	default:
		break;
	}
}

static void step_follower(raft_core *c, const raft_msg *m);

static void step_candidate(raft_core *c, const raft_msg *m)
{
	raft_msg_type want = c->role == RAFT_PRE_CANDIDATE ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP;
	if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAP) {
		/* a leader of our term exists (§5.2): follow it */
		become_follower(c, m->term, m->from);
		step_follower(c, m);
		return;
	}
	if (m->type != want)
		return;
	if (c->role == RAFT_PRE_CANDIDATE && !m->reject && m->term != c->term + 1)
		return; /* an answer to an older pre-vote */
	progress *p = pr_get(c, m->from);
	if (!p || p->learner || p->vote != 0)
		return;
	p->vote = m->reject ? -1 : 1;
	size_t g, r;
	tally(c, &g, &r);
	if (g >= quorum(c)) {
		if (c->role == RAFT_PRE_CANDIDATE)
			campaign(c, false, false);
		else {
			c->term_durable = true; /* voters saw our term only after it was on disk */
			become_leader(c);
		}
	} else if (r >= quorum(c)) {
		become_follower(c, c->term, RAFT_NONE);
	}
}

static void step_follower(raft_core *c, const raft_msg *m)
{
	switch (m->type) {
	case RAFT_MSG_APP:
		c->election_elapsed = 0;
		c->leader = m->from;
		handle_append(c, m);
		break;
	case RAFT_MSG_HEARTBEAT: {
		c->election_elapsed = 0;
		c->leader = m->from;
		commit_to(c, m->commit);
		raft_msg r = {.type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from};
		if (m->context_len) {
			if (!(r.context = ms_memdup(m->context, m->context_len))) {
				c->oom = true;
				break;
			}
			r.context_len = m->context_len;
		}
		send(c, &r);
		break;
	}
	case RAFT_MSG_SNAP:
		c->election_elapsed = 0;
		c->leader = m->from;
		handle_snapshot(c, m);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		/* thesis §3.10: campaign at once, skipping pre-vote; voters must
		 * not ignore us for having heard from the leader */
		if (promotable(c))
			campaign(c, false, true);
		break;
	case RAFT_MSG_READ_INDEX_RESP:
		if (!m->reject)
			rs_add(c, m->index, m->context, m->context_len);
		break;
	default:
		break;
	}
}

static void handle_vote(raft_core *c, const raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PRE_VOTE;
	/* one vote per term (§5.2); a pre-vote for a later term promises nothing */
	bool can = c->vote == m->from || (c->vote == RAFT_NONE && c->leader == RAFT_NONE) || (pre && m->term > c->term);
	raft_msg r = {.type = pre ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP, .to = m->from};
	if (can && up_to_date(c, m->log_term, m->index)) {
		r.term = m->term;
		if (!pre) {
			c->election_elapsed = 0;
			c->vote = m->from;
		}
	} else {
		r.term = c->term;
		r.reject = true;
	}
	send(c, &r);
}

int raft_core_step(raft_core *c, const raft_msg *m)
{
	MS_ASSERT(!c->in_ready);
	if (m->to != c->id)
		return MS_EINVAL;
	if (m->from == RAFT_NONE || m->from == c->id || m->type < RAFT_MSG_APP || m->type > RAFT_MSG_TYPE_MAX)
		return 0;
	bool is_vote = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE;
	if (m->term > c->term) {
		if (is_vote) {
			bool force = m->context_len == TRANSFER_CTX_LEN &&
			             memcmp(m->context, TRANSFER_CTX, TRANSFER_CTX_LEN) == 0;
			bool in_lease =
			    c->cfg.check_quorum && c->leader != RAFT_NONE && c->election_elapsed < c->cfg.election_tick;
			/* thesis §4.2.3: with a live leader, disruptive candidates are ignored */
			if (!force && in_lease)
				return 0;
		}
		if (m->type == RAFT_MSG_PRE_VOTE) {
			/* never change our term for a pre-vote (thesis §9.6) */
		} else if (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject) {
			/* granted pre-votes carry the future term; we bump when we campaign */
		} else if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAP) {
			become_follower(c, m->term, m->from);
		} else {
			/* Figure 2: a higher term makes us a follower of that term */
			become_follower(c, m->term, RAFT_NONE);
		}
	} else if (m->term < c->term) {
		if ((c->cfg.check_quorum || c->cfg.pre_vote) &&
		    (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT)) {
			/* a stale leader cut off by pre-vote would never learn of our
			 * term otherwise; this answer makes it step down */
			send_simple(c, RAFT_MSG_APP_RESP, m->from, 0);
		} else if (m->type == RAFT_MSG_PRE_VOTE) {
			raft_msg r = {.type = RAFT_MSG_PRE_VOTE_RESP, .to = m->from, .reject = true};
			send(c, &r);
		}
		return 0;
	}

	if (is_vote) {
		handle_vote(c, m);
		return c->oom ? MS_ENOMEM : 0;
	}
	switch (c->role) {
	case RAFT_LEADER:
		step_leader(c, m);
		break;
	case RAFT_CANDIDATE:
	case RAFT_PRE_CANDIDATE:
		step_candidate(c, m);
		break;
	case RAFT_FOLLOWER:
		step_follower(c, m);
		break;
	}
	return c->oom ? MS_ENOMEM : 0;
}

/* ---------------------------------------------------------------- tick */

static bool quorum_active(raft_core *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n_prs; i++) {
		progress *p = &c->prs[i];
		if (!p->learner && (p->id == c->id || p->recent_active))
			n++;
		if (p->id != c->id)
			p->recent_active = false;
	}
	return n >= quorum(c);
}

void raft_core_tick(raft_core *c)
{
	MS_ASSERT(!c->in_ready);
	if (c->role != RAFT_LEADER) {
		c->election_elapsed++;
		if (c->election_elapsed >= c->randomized_timeout) {
			c->election_elapsed = 0;
			if (promotable(c))
				campaign(c, c->cfg.pre_vote, false);
		}
		return;
	}
	c->heartbeat_elapsed++;
	c->election_elapsed++;
	if (c->election_elapsed >= c->cfg.election_tick) {
		c->election_elapsed = 0;
		/* thesis §6.2 check-quorum: a leader cut off from a quorum steps
		 * down so clients can find the real one */
		if (c->cfg.check_quorum && !quorum_active(c)) {
			become_follower(c, c->term, RAFT_NONE);
			return;
		}
		c->transferee = RAFT_NONE; /* thesis §3.10: abort a transfer that took too long */
	}
	if (c->heartbeat_elapsed >= c->cfg.heartbeat_tick) {
		c->heartbeat_elapsed = 0;
		bcast_heartbeat(c);
	}
}

/* ------------------------------------------------------------ requests */

int raft_core_propose(raft_core *c, const uint8_t *data, size_t len, uint64_t *index, uint64_t *term)
{
	MS_ASSERT(!c->in_ready);
	if (c->role != RAFT_LEADER)
		return MS_ENOT_LEADER;
	if (c->transferee != RAFT_NONE)
		return MS_EAGAIN;
	raft_entry e = {
	    .term = c->term, .index = last_index(c) + 1, .type = RAFT_ENTRY_NORMAL, .data = data, .len = len};
	int rc = log_append(c, &e);
	if (rc)
		return rc;
	if (index)
		*index = e.index;
	if (term)
		*term = e.term;
	bcast_append(c);
	return 0;
}

int raft_core_propose_conf_change(raft_core *c, const raft_conf_change *cc, uint64_t *index, uint64_t *term)
{
	MS_ASSERT(!c->in_ready);
	if (c->role != RAFT_LEADER)
		return MS_ENOT_LEADER;
	if (c->transferee != RAFT_NONE)
		return MS_EAGAIN;
	if (cc->node_id == RAFT_NONE || cc->type > RAFT_CC_REMOVE)
		return MS_EINVAL;
	/* thesis §4.1: one change at a time, each applied before the next */
	if (c->pending_conf_index > c->applied || !committed_in_term(c))
		return MS_EAGAIN;
	bool voter = is_voter(c, cc->node_id);
	bool learner = conf_has(c->conf.learners, c->conf.n_learners, cc->node_id);
	switch (cc->type) {
	case RAFT_CC_ADD_VOTER:
		if (voter)
			return MS_EMEMBER_EXISTS;
		break;
	case RAFT_CC_ADD_LEARNER:
		if (voter || learner)
			return MS_EMEMBER_EXISTS;
		break;
	case RAFT_CC_REMOVE:
		if (!voter && !learner)
			return MS_EMEMBER_NOT_FOUND;
		if (voter && c->conf.n_voters == 1)
			return MS_EINVAL;
		break;
	}
	size_t len;
	uint8_t *buf = raft_conf_change_encode(cc, &len);
	if (!buf)
		return MS_ENOMEM;
	raft_entry e = {
	    .term = c->term, .index = last_index(c) + 1, .type = RAFT_ENTRY_CONF_CHANGE, .data = buf, .len = len};
	int rc = log_append(c, &e);
	ms_free(buf);
	if (rc)
		return rc;
	c->pending_conf_index = e.index;
	if (index)
		*index = e.index;
	if (term)
		*term = e.term;
	bcast_append(c);
	return 0;
}

int raft_core_read_index(raft_core *c, const uint8_t *ctx, size_t len)
{
	MS_ASSERT(!c->in_ready);
	if (c->role == RAFT_LEADER) {
		leader_read(c, RAFT_NONE, ctx, len);
		return c->oom ? MS_ENOMEM : 0;
	}
	if (c->leader == RAFT_NONE)
		return MS_ENO_LEADER;
	raft_msg m = {.type = RAFT_MSG_READ_INDEX, .to = c->leader};
	if (len) {
		if (!(m.context = ms_memdup(ctx, len)))
			return MS_ENOMEM;
		m.context_len = len;
	}
	send(c, &m);
	return c->oom ? MS_ENOMEM : 0;
}

int raft_core_transfer_leader(raft_core *c, uint64_t target)
{
	MS_ASSERT(!c->in_ready);
	if (c->role != RAFT_LEADER)
		return MS_ENOT_LEADER;
	if (target == c->id || !is_voter(c, target))
		return MS_EBAD_TRANSFEREE;
	progress *p = pr_get(c, target);
	if (!p)
		return MS_EBAD_TRANSFEREE;
	if (c->transferee == target)
		return 0;
	c->transferee = target;
	c->election_elapsed = 0; /* the transfer must finish within an election timeout */
	if (p->match == last_index(c))
		send_simple(c, RAFT_MSG_TIMEOUT_NOW, target, 0);
	else
		send_append(c, p, true);
	return c->oom ? MS_ENOMEM : 0;
}

void raft_core_applied(raft_core *c, uint64_t index)
{
	MS_ASSERT(!c->in_ready);
	if (index >= c->apply_next)
		index = c->apply_next - 1; /* cannot apply what was not handed out */
	for (uint64_t i = c->applied + 1; i <= index; i++) {
		const raft_entry *e = entry_at(c, i);
		c->applied = i;
		if (e && e->type == RAFT_ENTRY_CONF_CHANGE)
			apply_conf_change(c, e);
	}
}

void raft_core_persisted(raft_core *c, uint64_t index, uint64_t term)
{
	MS_ASSERT(!c->in_ready);
	if (index <= c->persisted || index >= c->stable_next || term == 0 || term_at(c, index) != term)
		return;
	if (index < c->snap_index)
		return;
	c->persisted = index;
	if (term == c->term)
		c->term_durable = true; /* hard state goes with or before the entries */
	if (c->role == RAFT_LEADER) {
		progress *self = pr_get(c, c->id);
		if (self && index > self->match) {
			self->match = index;
			if (maybe_commit(c))
				bcast_append(c);
		}
	}
}

int raft_core_compact(raft_core *c, uint64_t index, uint64_t term, const raft_conf_state *cs)
{
	MS_ASSERT(!c->in_ready);
	if (index <= c->snap_index)
		return 0;
	if (index > c->applied || term_at(c, index) != term)
		return MS_EINVAL;
	raft_conf_state copy;
	if (raft_conf_state_copy(&copy, cs) != 0)
		return MS_ENOMEM;
	size_t drop = (size_t)(index - c->snap_index);
	for (size_t i = 0; i < drop; i++)
		entry_free(&c->ents[i]);
	memmove(c->ents, c->ents + drop, (c->n_ents - drop) * sizeof *c->ents);
	c->n_ents -= drop;
	c->snap_index = index;
	c->snap_term = term;
	raft_conf_state_free(&c->snap_conf);
	c->snap_conf = copy;
	return 0;
}

void raft_core_report_snapshot(raft_core *c, uint64_t to, bool ok)
{
	MS_ASSERT(!c->in_ready);
	progress *p = pr_get(c, to);
	if (c->role != RAFT_LEADER || !p || p->state != PR_SNAPSHOT)
		return;
	if (!ok)
		p->pending_snap = 0;
	/* wait for the follower's answer (ok) or probe again (failure) */
	pr_become_probe(p);
	p->probe_sent = ok;
}

void raft_core_report_unreachable(raft_core *c, uint64_t to)
{
	MS_ASSERT(!c->in_ready);
	progress *p = pr_get(c, to);
	if (c->role == RAFT_LEADER && p && p->state == PR_REPLICATE)
		pr_become_probe(p);
}

/* ------------------------------------------------------------- ready */

static raft_hard_state hard_state(const raft_core *c)
{
	return (raft_hard_state){c->term, c->vote, c->commit};
}

static uint64_t apply_limit(const raft_core *c)
{
	if (c->persisted < c->snap_index)
		return 0;
	return MS_MIN(c->commit, c->persisted);
}

bool raft_core_has_ready(const raft_core *c)
{
	raft_hard_state hs = hard_state(c);
	return c->leader != c->prev_leader || c->role != c->prev_role || hs.term != c->prev_hs.term ||
	       hs.vote != c->prev_hs.vote || hs.commit != c->prev_hs.commit || c->snap_pending ||
	       c->stable_next <= last_index(c) || c->out_now.n || c->out_after.n || c->n_rs ||
	       apply_limit(c) >= c->apply_next || c->oom;
}

int raft_core_ready(raft_core *c, raft_ready *rd)
{
	MS_ASSERT(!c->in_ready);
	memset(rd, 0, sizeof *rd);
	if (c->oom) {
		c->oom = false;
		return MS_ENOMEM;
	}
	c->in_ready = true;
	rd->leader = c->leader;
	rd->role = c->role;
	rd->soft_changed = c->leader != c->prev_leader || c->role != c->prev_role;
	rd->hs = hard_state(c);
	rd->hs_changed = memcmp(&rd->hs, &c->prev_hs, sizeof rd->hs) != 0;
	if (c->snap_pending) {
		c->rd_snap = true;
		c->rd_snap_meta = c->snap_in;
		memset(&c->snap_in, 0, sizeof c->snap_in);
		c->snap_pending = false;
		rd->snapshot = &c->rd_snap_meta;
	}
	rd->truncate_from = c->truncate_from;
	if (c->stable_next <= last_index(c)) {
		rd->entries = entry_at(c, c->stable_next);
		rd->n_entries = (size_t)(last_index(c) - c->stable_next + 1);
	}
	c->rd_stable_to = last_index(c);
	c->rd_now = c->out_now;
	c->rd_after = c->out_after;
	memset(&c->out_now, 0, sizeof c->out_now);
	memset(&c->out_after, 0, sizeof c->out_after);
	rd->msgs = c->rd_now.v;
	rd->n_msgs = c->rd_now.n;
	rd->msgs_after_persist = c->rd_after.v;
	rd->n_msgs_after_persist = c->rd_after.n;
	uint64_t lim = apply_limit(c);
	c->rd_apply_to = c->apply_next - 1;
	if (lim >= c->apply_next) {
		rd->committed = entry_at(c, c->apply_next);
		rd->n_committed = (size_t)(lim - c->apply_next + 1);
		c->rd_apply_to = lim;
	}
	c->rd_rs = c->rs;
	c->rd_n_rs = c->n_rs;
	c->rs = NULL;
	c->n_rs = c->cap_rs = 0;
	rd->reads = c->rd_rs;
	rd->n_reads = c->rd_n_rs;
	return 0;
}

static void rd_release(raft_core *c)
{
	msgvec_free(&c->rd_now);
	msgvec_free(&c->rd_after);
	for (size_t i = 0; i < c->rd_n_rs; i++)
		ms_free((void *)c->rd_rs[i].context);
	ms_free(c->rd_rs);
	c->rd_rs = NULL;
	c->rd_n_rs = 0;
	if (c->rd_snap)
		raft_conf_state_free(&c->rd_snap_meta.conf_state);
	c->rd_snap = false;
}

void raft_core_advance(raft_core *c, raft_ready *rd)
{
	MS_ASSERT(c->in_ready);
	c->in_ready = false;
	c->prev_hs = rd->hs;
	c->prev_leader = rd->leader;
	c->prev_role = rd->role;
	c->stable_next = c->rd_stable_to + 1;
	c->truncate_from = 0;
	c->apply_next = c->rd_apply_to + 1;
	rd_release(c);
	memset(rd, 0, sizeof *rd);
}

/* --------------------------------------------------------- lifecycle */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* A new cluster: like etcd, the initial membership becomes committed
 * ADD_VOTER / ADD_LEARNER entries 1..n of term 1, identical on every initial
 * member (ids sorted), so members added later learn it from the log. The
 * configuration is in force at once; applying the entries again is a no-op. */
static int bootstrap(raft_core *c, const raft_conf_state *cs)
{
	size_t nv = cs->n_voters, nl = cs->n_learners;
	uint64_t *ids = ms_malloc((nv + nl) * sizeof *ids);
	if (!ids)
		return MS_ENOMEM;
	memcpy(ids, cs->voters, nv * sizeof *ids);
	if (nl)
		memcpy(ids + nv, cs->learners, nl * sizeof *ids);
	qsort(ids, nv, sizeof *ids, cmp_u64);
	qsort(ids + nv, nl, sizeof *ids, cmp_u64);
	int rc = 0;
	for (size_t i = 0; i < nv + nl && rc == 0; i++) {
		raft_conf_change cc = {.type = i < nv ? RAFT_CC_ADD_VOTER : RAFT_CC_ADD_LEARNER, .node_id = ids[i]};
		size_t len;
		uint8_t *buf = raft_conf_change_encode(&cc, &len);
		if (!buf) {
			rc = MS_ENOMEM;
			break;
		}
		raft_entry e = {
		    .term = 1, .index = last_index(c) + 1, .type = RAFT_ENTRY_CONF_CHANGE, .data = buf, .len = len};
		rc = log_append(c, &e);
		ms_free(buf);
	}
	ms_free(ids);
	if (rc)
		return rc;
	c->term = 1;
	c->commit = last_index(c);
	c->persisted = 0;
	c->stable_next = 1;
	return 0;
}

int raft_core_new(const raft_config *cfg, const raft_restore *rs, raft_core **out, ms_err *err)
{
	*out = NULL;
	if (cfg->id == RAFT_NONE || cfg->election_tick <= 0 || cfg->heartbeat_tick <= 0 ||
	    cfg->heartbeat_tick >= cfg->election_tick || !cfg->rand)
		return ms_err_set(err, MS_EINVAL, "raft: bad config (id, election_tick > heartbeat_tick > 0, rand)");
	for (size_t i = 0; i < rs->n_entries; i++)
		if (rs->entries[i].index != rs->snap.index + 1 + i ||
		    rs->entries[i].term < (i ? rs->entries[i - 1].term : rs->snap.term) ||
		    (rs->entries[i].len && !rs->entries[i].data))
			return ms_err_set(err, MS_EINVAL,
			                  "raft: restored log not consecutive after snapshot %llu at entry %zu",
			                  (unsigned long long)rs->snap.index, i);
	uint64_t last = rs->snap.index + rs->n_entries;
	uint64_t commit = MS_MAX(rs->hs.commit, MS_MAX(rs->applied, rs->snap.index));
	if (commit > last)
		return ms_err_set(err, MS_EINVAL, "raft: commit %llu beyond last log index %llu",
		                  (unsigned long long)commit, (unsigned long long)last);
	if (rs->hs.term < (last ? (rs->n_entries ? rs->entries[rs->n_entries - 1].term : rs->snap.term) : 0))
		return ms_err_set(err, MS_EINVAL, "raft: hard state term %llu below the log's last term",
		                  (unsigned long long)rs->hs.term);
	raft_core *c = ms_calloc(1, sizeof *c);
	if (!c)
		return ms_err_set(err, MS_ENOMEM, "raft: out of memory");
	c->cfg = *cfg;
	c->id = cfg->id;
	c->term = rs->hs.term;
	c->vote = rs->hs.vote;
	c->term_durable = true;
	c->snap_index = rs->snap.index;
	c->snap_term = rs->snap.term;
	if (raft_conf_state_copy(&c->snap_conf, &rs->snap.conf_state) != 0)
		goto nomem;
	for (size_t i = 0; i < rs->n_entries; i++)
		if (log_append(c, &rs->entries[i]) != 0)
			goto nomem;
	c->commit = commit;
	c->persisted = last;
	c->stable_next = last + 1;
	c->applied = MS_MAX(rs->applied, rs->snap.index);
	c->apply_next = c->applied + 1;
	if (raft_conf_state_copy(&c->conf, &rs->snap.conf_state) != 0 || prs_rebuild(c) != 0)
		goto nomem;
	/* replay the conf changes the state machine already applied */
	for (uint64_t i = c->snap_index + 1; i <= c->applied; i++) {
		const raft_entry *e = entry_at(c, i);
		if (e->type == RAFT_ENTRY_CONF_CHANGE)
			apply_conf_change(c, e);
	}
	if (c->oom)
		goto nomem;
	if (rs->hs.term == 0 && rs->snap.index == 0 && rs->n_entries == 0 && rs->snap.conf_state.n_voters > 0 &&
	    bootstrap(c, &rs->snap.conf_state) != 0)
		goto nomem;
	c->role = RAFT_FOLLOWER;
	reset_randomized_timeout(c);
	c->prev_hs = rs->hs; /* what is on disk; a bootstrap or a raised commit differs */
	c->prev_role = RAFT_FOLLOWER;
	*out = c;
	return 0;
nomem:
	raft_core_del(c);
	return ms_err_set(err, MS_ENOMEM, "raft: out of memory");
}

void raft_core_del(raft_core *c)
{
	if (!c)
		return;
	rd_release(c);
	for (size_t i = 0; i < c->n_ents; i++)
		entry_free(&c->ents[i]);
	ms_free(c->ents);
	raft_conf_state_free(&c->snap_conf);
	raft_conf_state_free(&c->conf);
	if (c->snap_pending)
		raft_conf_state_free(&c->snap_in.conf_state);
	for (size_t i = 0; i < c->n_prs; i++)
		ms_free(c->prs[i].infl);
	ms_free(c->prs);
	reads_q_clear(c);
	ms_free(c->reads_q);
	msgvec_free(&c->out_now);
	msgvec_free(&c->out_after);
	for (size_t i = 0; i < c->n_rs; i++)
		ms_free((void *)c->rs[i].context);
	ms_free(c->rs);
	ms_free(c);
}

/* ------------------------------------------------------------ getters */

uint64_t raft_core_id(const raft_core *c)
{
	return c->id;
}
uint64_t raft_core_leader(const raft_core *c)
{
	return c->leader;
}
raft_role raft_core_role(const raft_core *c)
{
	return c->role;
}
uint64_t raft_core_term(const raft_core *c)
{
	return c->term;
}
uint64_t raft_core_commit(const raft_core *c)
{
	return c->commit;
}
uint64_t raft_core_applied_index(const raft_core *c)
{
	return c->applied;
}
uint64_t raft_core_first_index(const raft_core *c)
{
	return c->snap_index + 1;
}
uint64_t raft_core_last_index(const raft_core *c)
{
	return last_index(c);
}
uint64_t raft_core_term_at(const raft_core *c, uint64_t index)
{
	return term_at(c, index);
}
const raft_conf_state *raft_core_conf_state(const raft_core *c)
{
	return &c->conf;
}

bool raft_core_peer_match(const raft_core *c, uint64_t peer, uint64_t *match)
{
	if (c->role != RAFT_LEADER)
		return false;
	for (size_t i = 0; i < c->n_prs; i++) {
		if (c->prs[i].id == peer) {
			*match = c->prs[i].match;
			return true;
		}
	}
	return false;
}
