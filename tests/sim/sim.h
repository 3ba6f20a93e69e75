/* sim.h — a deterministic cluster simulator around the Raft core: N cores in
 * one process, a fake network (drop, delay, duplicate, reorder, partition), a
 * fake disk per node (a crash loses what was not fsynced), a replicated KV
 * state machine, and the safety checkers (election safety, log matching,
 * leader completeness, state machine safety, linearizability of the client
 * history). Header-only so each test binary includes it; everything static. */
#ifndef MS_TESTS_SIM_H
#define MS_TESTS_SIM_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/raft_core.h"

#define SIM_FN static __attribute__((unused))
#define SIM_MAX_NODES 7
#define SIM_KEYS 4

/* ---- deterministic randomness (splitmix64) ---- */
static inline uint64_t sim_rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}
static inline uint64_t sim_rand(uint64_t *s, uint64_t n)
{
	return n ? sim_rng_next(s) % n : 0;
}
/* true with probability permille/1000 */
static inline bool sim_chance(uint64_t *s, unsigned permille)
{
	return sim_rand(s, 1000) < permille;
}

static uint64_t sim_core_rand(void *ud, uint64_t n)
{
	return sim_rand((uint64_t *)ud, n);
}

static uint64_t sim_hash(raft_entry_type t, const uint8_t *d, size_t n)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)t;
	for (size_t i = 0; i < n; i++)
		h = (h ^ d[i]) * 1099511628211ull;
	return h ^ n;
}

/* ---- owned copies of core structures ---- */
static void sim_entry_copy(raft_entry *dst, const raft_entry *src)
{
	*dst = *src;
	dst->data = src->len ? ms_memdup(src->data, src->len) : NULL;
	if (src->len)
		MS_ASSERT(dst->data);
}

static void sim_msg_copy(raft_msg *dst, const raft_msg *src)
{
	*dst = *src;
	dst->entries = NULL;
	if (src->n_entries) {
		dst->entries = ms_calloc(src->n_entries, sizeof *dst->entries);
		MS_ASSERT(dst->entries);
		for (size_t i = 0; i < src->n_entries; i++)
			sim_entry_copy(&dst->entries[i], &src->entries[i]);
	}
	dst->context = src->context_len ? ms_memdup(src->context, src->context_len) : NULL;
	MS_ASSERT(raft_conf_state_copy(&dst->snapshot.conf_state, &src->snapshot.conf_state) == 0);
}

static void sim_msg_free(raft_msg *m)
{
	for (size_t i = 0; i < m->n_entries; i++)
		ms_free((void *)m->entries[i].data);
	ms_free(m->entries);
	ms_free((void *)m->context);
	raft_conf_state_free(&m->snapshot.conf_state);
}

typedef struct sim_msg {
	raft_msg m;
	uint64_t at; /* deliverable from this step */
	bool has_kv; /* SNAP: the state machine image the node attached */
	bool lost;   /* SNAP dropped by the network: tell the sender it failed */
	uint64_t kv[SIM_KEYS];
} sim_msg;

/* One write queued for the node's log writer (fsync). */
typedef struct sim_write {
	struct sim_write *next;
	bool has_hs;
	raft_hard_state hs;
	bool has_snap;
	raft_snapshot_meta snap;
	uint64_t snap_kv[SIM_KEYS];
	uint64_t truncate_from;
	raft_entry *ents;
	size_t n_ents;
	raft_msg *after;
	size_t n_after;
} sim_write;

typedef struct sim_pread {
	uint64_t op;
	uint64_t index; /* 0 = waiting for the read state */
	bool have_index;
} sim_pread;

typedef struct sim_node {
	uint64_t id;
	bool up;
	raft_core *core;
	uint64_t rng; /* the core's injected randomness */
	/* durable */
	raft_hard_state d_hs;
	raft_snapshot_meta d_snap;
	uint64_t d_snap_kv[SIM_KEYS];
	raft_entry *d_ents;
	size_t d_n, d_cap;
	/* volatile */
	sim_write *wq_head, *wq_tail;
	size_t wq_n;
	raft_entry *aq;
	size_t aq_n, aq_cap;
	uint64_t kv[SIM_KEYS];
	uint64_t sm_applied;
	uint64_t img_index, img_kv[SIM_KEYS]; /* latest snapshot image for SNAP */
	bool stash;
	uint64_t stash_index, stash_kv[SIM_KEYS];
	uint64_t *pw; /* pending client writes (op ids) */
	size_t pw_n, pw_cap;
	sim_pread *pr;
	size_t pr_n, pr_cap;
	raft_role role;
	uint64_t leader;
} sim_node;

enum { SIM_OP_WRITE = 1, SIM_OP_READ = 2 };
typedef struct sim_op {
	int type;
	int key;
	uint64_t value;     /* write: the value (= op id); read: the result */
	uint64_t inv, resp; /* steps; resp 0 = no response */
	uint64_t index;     /* write: log index where it applied (0 = never seen) */
	bool failed;        /* refused at invocation: no effect */
} sim_op;

typedef struct sim_applied {
	uint64_t term, hash, cterm; /* entry term, data hash, max leader term when first applied */
	bool set;
} sim_applied;

typedef struct sim_it {
	uint64_t index, term, hash;
	bool used;
} sim_it;

typedef struct sim_opts {
	size_t n;
	bool pre_vote, check_quorum;
	unsigned drop, dup; /* permille per message */
	unsigned max_delay; /* steps */
	unsigned crash;     /* permille per step */
	unsigned partition; /* permille per step */
	unsigned compact;   /* permille per step per node */
	unsigned client;    /* permille per step */
	unsigned conf;      /* permille per step: membership churn (needs n > voters) */
	size_t voters;      /* initial voters (0 = all n) */
	size_t max_inflight;
	size_t max_entries;
	bool verbose;
} sim_opts;

typedef struct sim {
	uint64_t seed, rng, step;
	sim_opts o;
	sim_node nodes[SIM_MAX_NODES];
	sim_msg *net;
	size_t net_n, net_cap;
	int part[SIM_MAX_NODES];
	/* checkers */
	uint64_t *leaders; /* by term */
	size_t n_leaders;
	uint64_t max_leader_term;
	sim_applied *applied; /* by index */
	size_t n_applied;
	uint64_t max_applied;
	sim_it *it; /* (index, term) -> hash */
	size_t it_cap, it_n;
	sim_op *ops;
	size_t n_ops, cap_ops;
	uint64_t writes_done, reads_done, elections;
	bool failed;
	char why[512];
	/* message filter for scripted tests: return false to drop */
	bool (*filter)(void *ud, const raft_msg *m);
	void *filter_ud;
} sim;

SIM_FN void sim_fail(sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
SIM_FN void sim_fail(sim *s, const char *fmt, ...)
{
	if (s->failed)
		return;
	s->failed = true;
	int n = snprintf(s->why, sizeof s->why, "seed=%llu step=%llu: ", (unsigned long long)s->seed,
	                 (unsigned long long)s->step);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->why + n, sizeof s->why - (size_t)n, fmt, ap);
	va_end(ap);
}

#define SIM_LOG(s, ...)                                                                                                \
	do {                                                                                                           \
		if ((s)->o.verbose) {                                                                                  \
			printf("[%llu] ", (unsigned long long)(s)->step);                                              \
			printf(__VA_ARGS__);                                                                           \
			printf("\n");                                                                                  \
		}                                                                                                      \
	} while (0)

static sim_node *sim_node_get(sim *s, uint64_t id)
{
	return id >= 1 && id <= s->o.n ? &s->nodes[id - 1] : NULL;
}

/* ---- network ---- */
static void sim_net_reserve(sim *s)
{
	if (s->net_n == s->net_cap) {
		s->net_cap = s->net_cap ? s->net_cap * 2 : 64;
		s->net = ms_realloc(s->net, s->net_cap * sizeof *s->net);
		MS_ASSERT(s->net);
	}
}

static void sim_net_push(sim *s, const raft_msg *m, uint64_t delay, bool lost)
{
	sim_net_reserve(s);
	sim_msg *sm = &s->net[s->net_n++];
	memset(sm, 0, sizeof *sm);
	sim_msg_copy(&sm->m, m);
	sm->at = s->step + delay;
	sm->lost = lost;
	if (m->type == RAFT_MSG_SNAP) {
		sim_node *from = sim_node_get(s, m->from);
		if (from->img_index != m->snapshot.index)
			sim_fail(s, "node %llu sends SNAP %llu but its image is at %llu", (unsigned long long)m->from,
			         (unsigned long long)m->snapshot.index, (unsigned long long)from->img_index);
		sm->has_kv = true;
		memcpy(sm->kv, from->img_kv, sizeof sm->kv);
	}
}

SIM_FN void sim_send(sim *s, const raft_msg *m)
{
	if (s->filter && !s->filter(s->filter_ud, m))
		return;
	if (sim_chance(&s->rng, s->o.drop)) {
		/* the node's snapshot streamer notices a lost SNAP (a failed stream) */
		if (m->type == RAFT_MSG_SNAP)
			sim_net_push(s, m, 0, true);
		return;
	}
	sim_net_push(s, m, s->o.max_delay ? sim_rand(&s->rng, s->o.max_delay + 1) : 0, false);
	if (sim_chance(&s->rng, s->o.dup) && m->type != RAFT_MSG_SNAP)
		sim_net_push(s, m, s->o.max_delay ? sim_rand(&s->rng, 2 * s->o.max_delay + 1) : 0, false);
}

/* ---- checkers ---- */
static void sim_note_leader(sim *s, sim_node *n)
{
	uint64_t term = raft_core_term(n->core);
	if (term >= s->n_leaders) {
		size_t nn = (size_t)term * 2 + 16;
		s->leaders = ms_realloc(s->leaders, nn * sizeof *s->leaders);
		MS_ASSERT(s->leaders);
		memset(s->leaders + s->n_leaders, 0, (nn - s->n_leaders) * sizeof *s->leaders);
		s->n_leaders = nn;
	}
	if (s->leaders[term] && s->leaders[term] != n->id)
		sim_fail(s, "election safety: term %llu has leaders %llu and %llu", (unsigned long long)term,
		         (unsigned long long)s->leaders[term], (unsigned long long)n->id);
	if (!s->leaders[term]) {
		s->elections++;
		SIM_LOG(s, "node %llu leader term %llu", (unsigned long long)n->id, (unsigned long long)term);
	}
	s->leaders[term] = n->id;
	if (term > s->max_leader_term)
		s->max_leader_term = term;
}

/* Two entries with the same index and term carry the same data (Raft §5.3). */
static void sim_note_entry(sim *s, const raft_entry *e)
{
	if (s->it_n * 2 >= s->it_cap) {
		size_t oc = s->it_cap;
		sim_it *old = s->it;
		s->it_cap = oc ? oc * 2 : 1024;
		s->it = ms_calloc(s->it_cap, sizeof *s->it);
		MS_ASSERT(s->it);
		s->it_n = 0;
		for (size_t i = 0; i < oc; i++) {
			if (!old[i].used)
				continue;
			size_t h =
			    (size_t)((old[i].index * 31 + old[i].term) * 0x9E3779B97F4A7C15ull) & (s->it_cap - 1);
			while (s->it[h].used)
				h = (h + 1) & (s->it_cap - 1);
			s->it[h] = old[i];
			s->it_n++;
		}
		ms_free(old);
	}
	uint64_t hash = sim_hash(e->type, e->data, e->len);
	size_t h = (size_t)((e->index * 31 + e->term) * 0x9E3779B97F4A7C15ull) & (s->it_cap - 1);
	while (s->it[h].used) {
		if (s->it[h].index == e->index && s->it[h].term == e->term) {
			if (s->it[h].hash != hash)
				sim_fail(s, "two different entries at index %llu term %llu",
				         (unsigned long long)e->index, (unsigned long long)e->term);
			return;
		}
		h = (h + 1) & (s->it_cap - 1);
	}
	s->it[h] = (sim_it){e->index, e->term, hash, true};
	s->it_n++;
}

/* State machine safety: every node applies the same entry at an index. */
static void sim_note_applied(sim *s, const raft_entry *e)
{
	if (e->index >= s->n_applied) {
		size_t nn = (size_t)e->index * 2 + 64;
		s->applied = ms_realloc(s->applied, nn * sizeof *s->applied);
		MS_ASSERT(s->applied);
		memset(s->applied + s->n_applied, 0, (nn - s->n_applied) * sizeof *s->applied);
		s->n_applied = nn;
	}
	sim_applied *a = &s->applied[e->index];
	uint64_t hash = sim_hash(e->type, e->data, e->len);
	if (a->set) {
		if (a->term != e->term || a->hash != hash)
			sim_fail(s, "state machine safety: index %llu applied as term %llu and term %llu",
			         (unsigned long long)e->index, (unsigned long long)a->term,
			         (unsigned long long)e->term);
		return;
	}
	uint64_t ct = s->max_leader_term;
	for (size_t i = 0; i < s->o.n; i++)
		if (s->nodes[i].up && raft_core_role(s->nodes[i].core) == RAFT_LEADER &&
		    raft_core_term(s->nodes[i].core) > ct)
			ct = raft_core_term(s->nodes[i].core);
	*a = (sim_applied){e->term, hash, ct, true};
	if (e->index > s->max_applied)
		s->max_applied = e->index;
}

/* ---- client history ---- */
static uint64_t sim_op_new(sim *s, int type, int key)
{
	if (s->n_ops == s->cap_ops) {
		s->cap_ops = s->cap_ops ? s->cap_ops * 2 : 256;
		s->ops = ms_realloc(s->ops, s->cap_ops * sizeof *s->ops);
		MS_ASSERT(s->ops);
	}
	sim_op *o = &s->ops[s->n_ops++];
	memset(o, 0, sizeof *o);
	o->type = type;
	o->key = key;
	o->inv = s->step;
	return s->n_ops; /* op ids are 1-based */
}

static sim_op *sim_op_get(sim *s, uint64_t id)
{
	return id >= 1 && id <= s->n_ops ? &s->ops[id - 1] : NULL;
}

/* Linearizability of each key as a register. The write order is the log
 * order (state machine safety is checked separately), so the history is
 * linearizable iff real-time order never contradicts positions: writes at
 * their log index, each read right after the write it observed. */
SIM_FN void sim_check_linearizable(sim *s)
{
	for (size_t i = 0; i < s->n_ops; i++) {
		sim_op *a = &s->ops[i];
		if (a->failed)
			continue;
		if (a->type == SIM_OP_WRITE && a->resp && !a->index)
			sim_fail(s, "op %zu: write acknowledged but never applied", i + 1);
		if (a->type != SIM_OP_READ || !a->resp)
			continue;
		uint64_t ra = 0; /* position of the write a observed */
		if (a->value) {
			sim_op *w = sim_op_get(s, a->value);
			if (!w || w->type != SIM_OP_WRITE || w->key != a->key || !w->index) {
				sim_fail(s, "op %zu: read of key %d returned %llu, never written there", i + 1, a->key,
				         (unsigned long long)a->value);
				return;
			}
			if (w->inv > a->resp)
				sim_fail(s, "op %zu: read returned a value written later (op %llu)", i + 1,
				         (unsigned long long)a->value);
			ra = w->index;
		}
		for (size_t j = 0; j < s->n_ops; j++) {
			sim_op *b = &s->ops[j];
			if (b->failed || b->key != a->key || j == i)
				continue;
			if (b->type == SIM_OP_WRITE && b->index) {
				if (b->resp && b->resp < a->inv && b->index > ra)
					sim_fail(s,
					         "op %zu: stale read of key %d: write op %zu (index %llu) finished "
					         "before it, read saw index %llu",
					         i + 1, a->key, j + 1, (unsigned long long)b->index,
					         (unsigned long long)ra);
				if (b->inv > a->resp && b->index <= ra)
					sim_fail(s,
					         "op %zu: read saw index %llu, but write op %zu started after it and "
					         "sits at %llu",
					         i + 1, (unsigned long long)ra, j + 1, (unsigned long long)b->index);
			} else if (b->type == SIM_OP_READ && b->resp && b->resp < a->inv) {
				uint64_t rb = b->value ? sim_op_get(s, b->value)->index : 0;
				if (rb > ra)
					sim_fail(
					    s, "op %zu: read went back in time (op %zu saw index %llu, this saw %llu)",
					    i + 1, j + 1, (unsigned long long)rb, (unsigned long long)ra);
			}
		}
	}
	for (size_t i = 0; i < s->n_ops; i++) {
		sim_op *a = &s->ops[i];
		if (a->type != SIM_OP_WRITE || !a->index || !a->resp)
			continue;
		for (size_t j = 0; j < s->n_ops; j++) {
			sim_op *b = &s->ops[j];
			if (b->type == SIM_OP_WRITE && b->index && a->resp < b->inv && a->index >= b->index)
				sim_fail(s, "write op %zu finished before write op %zu began but is ordered after it",
				         i + 1, j + 1);
		}
	}
}

/* Log matching (§5.3) between every pair of live nodes, and leader
 * completeness (§5.4): a leader of a term later than an entry's commit holds
 * it. Election safety is checked as leaders appear. */
SIM_FN void sim_check_logs(sim *s)
{
	for (size_t a = 0; a < s->o.n; a++) {
		sim_node *x = &s->nodes[a];
		if (!x->up)
			continue;
		for (size_t b = a + 1; b < s->o.n; b++) {
			sim_node *y = &s->nodes[b];
			if (!y->up)
				continue;
			uint64_t lo = MS_MAX(raft_core_first_index(x->core), raft_core_first_index(y->core)) - 1;
			uint64_t hi = MS_MIN(raft_core_last_index(x->core), raft_core_last_index(y->core));
			bool matched = false;
			for (uint64_t i = hi; i > lo && i >= 1; i--) {
				uint64_t tx = raft_core_term_at(x->core, i), ty = raft_core_term_at(y->core, i);
				if (tx == ty)
					matched = true;
				else if (matched) {
					sim_fail(
					    s,
					    "log matching: nodes %llu and %llu agree above index %llu but differ there",
					    (unsigned long long)x->id, (unsigned long long)y->id,
					    (unsigned long long)i);
					return;
				}
			}
		}
		if (raft_core_role(x->core) == RAFT_LEADER) {
			uint64_t term = raft_core_term(x->core);
			uint64_t first = raft_core_first_index(x->core), last = raft_core_last_index(x->core);
			for (uint64_t i = first; i <= s->max_applied; i++) {
				sim_applied *ap = &s->applied[i];
				if (!ap->set || ap->cterm >= term)
					continue;
				if (i > last || raft_core_term_at(x->core, i) != ap->term) {
					sim_fail(
					    s,
					    "leader completeness: leader %llu of term %llu lacks committed index %llu",
					    (unsigned long long)x->id, (unsigned long long)term, (unsigned long long)i);
					return;
				}
			}
		}
	}
}

/* ---- node model ---- */
static void sim_node_ready(sim *s, sim_node *n);

static void sim_write_free(sim_write *w)
{
	for (size_t i = 0; i < w->n_ents; i++)
		ms_free((void *)w->ents[i].data);
	ms_free(w->ents);
	for (size_t i = 0; i < w->n_after; i++)
		sim_msg_free(&w->after[i]);
	ms_free(w->after);
	raft_conf_state_free(&w->snap.conf_state);
	ms_free(w);
}

static void sim_dents_truncate(sim_node *n, uint64_t from)
{
	while (n->d_n && n->d_ents[n->d_n - 1].index >= from) {
		n->d_n--;
		ms_free((void *)n->d_ents[n->d_n].data);
	}
}

static void sim_dents_drop_to(sim_node *n, uint64_t to)
{
	size_t k = 0;
	while (k < n->d_n && n->d_ents[k].index <= to)
		ms_free((void *)n->d_ents[k++].data);
	memmove(n->d_ents, n->d_ents + k, (n->d_n - k) * sizeof *n->d_ents);
	n->d_n -= k;
}

static void sim_deliver_to_core(sim *s, sim_node *n, const raft_msg *m)
{
	int rc = raft_core_step(n->core, m);
	if (rc)
		sim_fail(s, "node %llu: step %s returned %d", (unsigned long long)n->id, raft_msg_type_name(m->type),
		         rc);
	sim_node_ready(s, n);
}

/* The log writer finished the oldest queued write: it is durable now. */
SIM_FN bool sim_fsync(sim *s, sim_node *n)
{
	sim_write *w = n->wq_head;
	if (!n->up || !w)
		return false;
	n->wq_head = w->next;
	if (!n->wq_head)
		n->wq_tail = NULL;
	n->wq_n--;
	if (w->has_snap) {
		raft_conf_state_free(&n->d_snap.conf_state);
		n->d_snap.index = w->snap.index;
		n->d_snap.term = w->snap.term;
		MS_ASSERT(raft_conf_state_copy(&n->d_snap.conf_state, &w->snap.conf_state) == 0);
		memcpy(n->d_snap_kv, w->snap_kv, sizeof n->d_snap_kv);
		sim_dents_truncate(n, 0);
	}
	if (w->truncate_from)
		sim_dents_truncate(n, w->truncate_from);
	if (w->n_ents) {
		sim_dents_truncate(n, w->ents[0].index); /* the contract: entries replace any suffix */
		uint64_t expect = n->d_n ? n->d_ents[n->d_n - 1].index + 1 : n->d_snap.index + 1;
		if (w->ents[0].index != expect)
			sim_fail(s, "node %llu: write of entry %llu leaves a gap after %llu", (unsigned long long)n->id,
			         (unsigned long long)w->ents[0].index, (unsigned long long)expect - 1);
		for (size_t i = 0; i < w->n_ents; i++) {
			if (n->d_n == n->d_cap) {
				n->d_cap = n->d_cap ? n->d_cap * 2 : 64;
				n->d_ents = ms_realloc(n->d_ents, n->d_cap * sizeof *n->d_ents);
				MS_ASSERT(n->d_ents);
			}
			n->d_ents[n->d_n++] = w->ents[i];
			w->ents[i].data = NULL;
		}
	}
	if (w->has_hs)
		n->d_hs = w->hs;
	for (size_t i = 0; i < w->n_after; i++)
		sim_send(s, &w->after[i]);
	if (w->n_ents)
		raft_core_persisted(n->core, w->ents[w->n_ents - 1].index, w->ents[w->n_ents - 1].term);
	else if (w->has_snap)
		raft_core_persisted(n->core, w->snap.index, w->snap.term);
	sim_write_free(w);
	sim_node_ready(s, n);
	return true;
}

static void sim_serve_reads(sim *s, sim_node *n)
{
	size_t k = 0;
	for (size_t i = 0; i < n->pr_n; i++) {
		sim_pread *r = &n->pr[i];
		if (r->have_index && r->index <= n->sm_applied) {
			sim_op *o = sim_op_get(s, r->op);
			o->value = n->kv[o->key];
			o->resp = s->step;
			s->reads_done++;
			continue;
		}
		n->pr[k++] = *r;
	}
	n->pr_n = k;
}

/* The apply stage: executes queued committed entries in order. */
SIM_FN bool sim_apply(sim *s, sim_node *n, size_t max)
{
	if (!n->up || !n->aq_n)
		return false;
	size_t k = MS_MIN(max, n->aq_n);
	for (size_t i = 0; i < k; i++) {
		raft_entry *e = &n->aq[i];
		if (e->index <= n->sm_applied)
			goto next; /* already in the state machine (snapshot) */
		if (e->index != n->sm_applied + 1)
			sim_fail(s, "node %llu applies %llu after %llu", (unsigned long long)n->id,
			         (unsigned long long)e->index, (unsigned long long)n->sm_applied);
		sim_note_applied(s, e);
		if (e->type == RAFT_ENTRY_NORMAL && e->len == 17) {
			uint64_t op = ms_get_u64le(e->data);
			int key = e->data[8];
			uint64_t val = ms_get_u64le(e->data + 9);
			n->kv[key] = val;
			sim_op *o = sim_op_get(s, op);
			if (o && !o->index)
				o->index = e->index;
			for (size_t j = 0; j < n->pw_n; j++) {
				if (n->pw[j] == op) {
					o->resp = s->step;
					s->writes_done++;
					n->pw[j] = n->pw[--n->pw_n];
					break;
				}
			}
		}
		n->sm_applied = e->index;
	next:
		ms_free((void *)e->data);
	}
	memmove(n->aq, n->aq + k, (n->aq_n - k) * sizeof *n->aq);
	n->aq_n -= k;
	raft_core_applied(n->core, n->sm_applied);
	sim_serve_reads(s, n);
	sim_node_ready(s, n);
	return true;
}

/* Drains the core's batches: the node driver's loop body. */
static void sim_node_ready(sim *s, sim_node *n)
{
	while (n->up && raft_core_has_ready(n->core)) {
		raft_ready rd;
		if (raft_core_ready(n->core, &rd) != 0) {
			sim_fail(s, "node %llu: ready failed", (unsigned long long)n->id);
			return;
		}
		n->role = rd.role;
		n->leader = rd.leader;
		if (rd.role == RAFT_LEADER)
			sim_note_leader(s, n);
		sim_write *w = ms_calloc(1, sizeof *w);
		MS_ASSERT(w);
		if (rd.hs_changed) {
			w->has_hs = true;
			w->hs = rd.hs;
		}
		if (rd.snapshot) {
			if (!n->stash || n->stash_index != rd.snapshot->index)
				sim_fail(s, "node %llu: asked to install snapshot %llu it did not receive",
				         (unsigned long long)n->id, (unsigned long long)rd.snapshot->index);
			w->has_snap = true;
			w->snap.index = rd.snapshot->index;
			w->snap.term = rd.snapshot->term;
			MS_ASSERT(raft_conf_state_copy(&w->snap.conf_state, &rd.snapshot->conf_state) == 0);
			memcpy(w->snap_kv, n->stash_kv, sizeof w->snap_kv);
			/* the state machine becomes the image */
			memcpy(n->kv, n->stash_kv, sizeof n->kv);
			n->sm_applied = rd.snapshot->index;
			n->img_index = rd.snapshot->index;
			memcpy(n->img_kv, n->stash_kv, sizeof n->img_kv);
			n->stash = false;
			/* queued committed entries the image already covers go away */
			size_t keep = 0;
			for (size_t i = 0; i < n->aq_n; i++) {
				if (n->aq[i].index <= rd.snapshot->index)
					ms_free((void *)n->aq[i].data);
				else
					n->aq[keep++] = n->aq[i];
			}
			n->aq_n = keep;
			SIM_LOG(s, "node %llu installs snapshot %llu", (unsigned long long)n->id,
			        (unsigned long long)rd.snapshot->index);
		}
		w->truncate_from = rd.truncate_from;
		if (rd.n_entries) {
			w->ents = ms_calloc(rd.n_entries, sizeof *w->ents);
			MS_ASSERT(w->ents);
			for (size_t i = 0; i < rd.n_entries; i++) {
				sim_note_entry(s, &rd.entries[i]);
				sim_entry_copy(&w->ents[i], &rd.entries[i]);
			}
			w->n_ents = rd.n_entries;
		}
		if (rd.n_msgs_after_persist) {
			w->after = ms_calloc(rd.n_msgs_after_persist, sizeof *w->after);
			MS_ASSERT(w->after);
			for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
				sim_msg_copy(&w->after[i], &rd.msgs_after_persist[i]);
			w->n_after = rd.n_msgs_after_persist;
		}
		if (w->has_hs || w->has_snap || w->truncate_from || w->n_ents || w->n_after) {
			if (n->wq_tail)
				n->wq_tail->next = w;
			else
				n->wq_head = w;
			n->wq_tail = w;
			n->wq_n++;
		} else {
			sim_write_free(w);
		}
		for (size_t i = 0; i < rd.n_msgs; i++)
			sim_send(s, &rd.msgs[i]);
		for (size_t i = 0; i < rd.n_committed; i++) {
			const raft_entry *e = &rd.committed[i];
			uint64_t prev = n->aq_n ? n->aq[n->aq_n - 1].index : 0;
			if (prev && e->index != prev + 1)
				sim_fail(s, "node %llu: committed entries not consecutive (%llu after %llu)",
				         (unsigned long long)n->id, (unsigned long long)e->index,
				         (unsigned long long)prev);
			sim_note_entry(s, e);
			if (n->aq_n == n->aq_cap) {
				n->aq_cap = n->aq_cap ? n->aq_cap * 2 : 64;
				n->aq = ms_realloc(n->aq, n->aq_cap * sizeof *n->aq);
				MS_ASSERT(n->aq);
			}
			sim_entry_copy(&n->aq[n->aq_n++], e);
		}
		for (size_t i = 0; i < rd.n_reads; i++) {
			const raft_read_state *r = &rd.reads[i];
			if (r->context_len != 8)
				continue;
			uint64_t op = ms_get_u64le(r->context);
			for (size_t j = 0; j < n->pr_n; j++)
				if (n->pr[j].op == op && !n->pr[j].have_index) {
					n->pr[j].index = r->index;
					n->pr[j].have_index = true;
				}
		}
		raft_core_advance(n->core, &rd);
		sim_serve_reads(s, n);
	}
}

static raft_config sim_config(sim *s, sim_node *n)
{
	return (raft_config){
	    .id = n->id,
	    .election_tick = 10,
	    .heartbeat_tick = 1,
	    .pre_vote = s->o.pre_vote,
	    .check_quorum = s->o.check_quorum,
	    .max_inflight_msgs = s->o.max_inflight ? s->o.max_inflight : 8,
	    .max_entries_per_msg = s->o.max_entries ? s->o.max_entries : 16,
	    .rand = sim_core_rand,
	    .rand_ud = &n->rng,
	};
}

/* (Re)starts a node from its durable state: what survives a crash. */
SIM_FN void sim_node_start(sim *s, sim_node *n)
{
	raft_config cfg = sim_config(s, n);
	raft_restore rs = {
	    .hs = n->d_hs, .snap = n->d_snap, .entries = n->d_ents, .n_entries = n->d_n, .applied = n->d_snap.index};
	ms_err err = {0};
	int rc = raft_core_new(&cfg, &rs, &n->core, &err);
	if (rc) {
		sim_fail(s, "node %llu restart: %s", (unsigned long long)n->id, err.msg);
		return;
	}
	n->up = true;
	memcpy(n->kv, n->d_snap_kv, sizeof n->kv);
	n->sm_applied = n->d_snap.index;
	n->img_index = n->d_snap.index;
	memcpy(n->img_kv, n->d_snap_kv, sizeof n->img_kv);
	n->role = RAFT_FOLLOWER;
	n->leader = RAFT_NONE;
	sim_node_ready(s, n);
}

/* Crash: everything not fsynced is gone; clients waiting here get nothing. */
SIM_FN void sim_node_crash(sim *s, sim_node *n)
{
	if (!n->up)
		return;
	SIM_LOG(s, "node %llu crashes", (unsigned long long)n->id);
	raft_core_del(n->core);
	n->core = NULL;
	n->up = false;
	while (n->wq_head) {
		sim_write *w = n->wq_head;
		n->wq_head = w->next;
		sim_write_free(w);
	}
	n->wq_tail = NULL;
	n->wq_n = 0;
	for (size_t i = 0; i < n->aq_n; i++)
		ms_free((void *)n->aq[i].data);
	n->aq_n = 0;
	n->pw_n = 0;
	n->pr_n = 0;
	n->stash = false;
}

/* Log compaction after a state machine snapshot (the node's --snapshot-count). */
SIM_FN void sim_node_compact(sim *s, sim_node *n)
{
	if (!n->up || n->sm_applied <= raft_core_first_index(n->core))
		return;
	uint64_t idx = n->sm_applied;
	uint64_t term = raft_core_term_at(n->core, idx);
	const raft_conf_state *cs = raft_core_conf_state(n->core);
	raft_conf_state_free(&n->d_snap.conf_state);
	MS_ASSERT(raft_conf_state_copy(&n->d_snap.conf_state, cs) == 0);
	n->d_snap.index = idx;
	n->d_snap.term = term;
	memcpy(n->d_snap_kv, n->kv, sizeof n->kv);
	sim_dents_drop_to(n, idx);
	n->img_index = idx;
	memcpy(n->img_kv, n->kv, sizeof n->kv);
	int rc = raft_core_compact(n->core, idx, term, cs);
	if (rc)
		sim_fail(s, "node %llu: compact %llu failed %d", (unsigned long long)n->id, (unsigned long long)idx,
		         rc);
	SIM_LOG(s, "node %llu compacts to %llu", (unsigned long long)n->id, (unsigned long long)idx);
}

SIM_FN void sim_init(sim *s, uint64_t seed, const sim_opts *o)
{
	memset(s, 0, sizeof *s);
	s->seed = seed;
	s->rng = seed ^ 0x5DEECE66Dull;
	s->o = *o;
	MS_ASSERT(o->n >= 1 && o->n <= SIM_MAX_NODES);
	size_t voters = o->voters ? o->voters : o->n;
	uint64_t ids[SIM_MAX_NODES];
	for (size_t i = 0; i < voters; i++)
		ids[i] = i + 1;
	for (size_t i = 0; i < o->n; i++) {
		sim_node *n = &s->nodes[i];
		n->id = i + 1;
		n->rng = seed * 1000003 + i;
		/* bootstrap: snapshot meta at index 0 carrying the initial voters;
		 * a node outside them starts empty and learns from the leader */
		if (i < voters) {
			raft_conf_state cs = {.voters = ids, .n_voters = voters};
			MS_ASSERT(raft_conf_state_copy(&n->d_snap.conf_state, &cs) == 0);
		}
		sim_node_start(s, n);
	}
}

SIM_FN void sim_free(sim *s)
{
	for (size_t i = 0; i < s->o.n; i++) {
		sim_node *n = &s->nodes[i];
		sim_node_crash(s, n);
		for (size_t j = 0; j < n->d_n; j++)
			ms_free((void *)n->d_ents[j].data);
		ms_free(n->d_ents);
		ms_free(n->aq);
		ms_free(n->pw);
		ms_free(n->pr);
		raft_conf_state_free(&n->d_snap.conf_state);
	}
	for (size_t i = 0; i < s->net_n; i++)
		sim_msg_free(&s->net[i].m);
	ms_free(s->net);
	ms_free(s->leaders);
	ms_free(s->applied);
	ms_free(s->it);
	ms_free(s->ops);
}

/* Prints every node's state (on failure). */
SIM_FN void sim_dump(sim *s)
{
	for (size_t i = 0; i < s->o.n; i++) {
		sim_node *n = &s->nodes[i];
		if (!n->up) {
			fprintf(stderr, "  node %zu down\n", i + 1);
			continue;
		}
		const raft_conf_state *cs = raft_core_conf_state(n->core);
		fprintf(stderr,
		        "  node %llu %s term %llu leader %llu commit %llu applied %llu first %llu last %llu wq %zu aq "
		        "%zu voters",
		        (unsigned long long)n->id, raft_role_name(raft_core_role(n->core)),
		        (unsigned long long)raft_core_term(n->core), (unsigned long long)raft_core_leader(n->core),
		        (unsigned long long)raft_core_commit(n->core), (unsigned long long)n->sm_applied,
		        (unsigned long long)raft_core_first_index(n->core),
		        (unsigned long long)raft_core_last_index(n->core), n->wq_n, n->aq_n);
		for (size_t k = 0; k < cs->n_voters; k++)
			fprintf(stderr, " %llu", (unsigned long long)cs->voters[k]);
		fprintf(stderr, " learners");
		for (size_t k = 0; k < cs->n_learners; k++)
			fprintf(stderr, " %llu", (unsigned long long)cs->learners[k]);
		if (raft_core_role(n->core) == RAFT_LEADER) {
			fprintf(stderr, " match");
			for (size_t k = 0; k < s->o.n; k++) {
				uint64_t m = 0;
				if (raft_core_peer_match(n->core, k + 1, &m))
					fprintf(stderr, " %zu:%llu", k + 1, (unsigned long long)m);
			}
		}
		fprintf(stderr, "\n");
	}
}

/* Delivers message k of the network queue (removing it). */
SIM_FN void sim_deliver(sim *s, size_t k)
{
	sim_msg sm = s->net[k];
	s->net[k] = s->net[--s->net_n];
	sim_node *to = sim_node_get(s, sm.m.to);
	sim_node *from = sim_node_get(s, sm.m.from);
	bool cut = !from || !to || s->part[from - s->nodes] != s->part[to - s->nodes];
	bool ok = to && to->up && !cut && !sm.lost;
	if (sm.m.type == RAFT_MSG_SNAP && from && from->up) {
		/* the sender's transport reports how the stream went */
		raft_core_report_snapshot(from->core, sm.m.to, ok);
		sim_node_ready(s, from);
	}
	if (ok) {
		if (sm.m.type == RAFT_MSG_SNAP && sm.has_kv) {
			to->stash = true;
			to->stash_index = sm.m.snapshot.index;
			memcpy(to->stash_kv, sm.kv, sizeof to->stash_kv);
		}
		sim_deliver_to_core(s, to, &sm.m);
	}
	sim_msg_free(&sm.m);
}

/* Delivers everything deliverable now, in queue order (scripted tests). */
SIM_FN void sim_deliver_all(sim *s)
{
	while (s->net_n) {
		size_t k = 0;
		sim_deliver(s, k);
	}
}

SIM_FN void sim_tick(sim *s, sim_node *n)
{
	if (!n->up)
		return;
	raft_core_tick(n->core);
	sim_node_ready(s, n);
}

/* Client write: key/value through the node (it must think it leads). */
SIM_FN uint64_t sim_client_write(sim *s, sim_node *n, int key)
{
	if (!n->up)
		return 0;
	uint64_t op = sim_op_new(s, SIM_OP_WRITE, key);
	sim_op *o = sim_op_get(s, op);
	o->value = op;
	uint8_t buf[17];
	ms_put_u64le(buf, op);
	buf[8] = (uint8_t)key;
	ms_put_u64le(buf + 9, op);
	int rc = raft_core_propose(n->core, buf, sizeof buf, NULL, NULL);
	if (rc) {
		o->failed = true;
		return 0;
	}
	if (n->pw_n == n->pw_cap) {
		n->pw_cap = n->pw_cap ? n->pw_cap * 2 : 16;
		n->pw = ms_realloc(n->pw, n->pw_cap * sizeof *n->pw);
		MS_ASSERT(n->pw);
	}
	n->pw[n->pw_n++] = op;
	sim_node_ready(s, n);
	return op;
}

/* Client linearizable read through ReadIndex. */
SIM_FN uint64_t sim_client_read(sim *s, sim_node *n, int key)
{
	if (!n->up)
		return 0;
	uint64_t op = sim_op_new(s, SIM_OP_READ, key);
	uint8_t ctx[8];
	ms_put_u64le(ctx, op);
	if (n->pr_n == n->pr_cap) {
		n->pr_cap = n->pr_cap ? n->pr_cap * 2 : 16;
		n->pr = ms_realloc(n->pr, n->pr_cap * sizeof *n->pr);
		MS_ASSERT(n->pr);
	}
	n->pr[n->pr_n++] = (sim_pread){.op = op};
	int rc = raft_core_read_index(n->core, ctx, sizeof ctx);
	if (rc) {
		n->pr_n--;
		sim_op_get(s, op)->failed = true;
		return 0;
	}
	sim_node_ready(s, n);
	return op;
}

SIM_FN sim_node *sim_leader(sim *s)
{
	sim_node *best = NULL;
	for (size_t i = 0; i < s->o.n; i++) {
		sim_node *n = &s->nodes[i];
		if (n->up && raft_core_role(n->core) == RAFT_LEADER &&
		    (!best || raft_core_term(n->core) > raft_core_term(best->core)))
			best = n;
	}
	return best;
}

/* Runs fsync and apply on every node until nothing is left (scripted tests). */
SIM_FN void sim_settle_disks(sim *s)
{
	bool any = true;
	while (any) {
		any = false;
		for (size_t i = 0; i < s->o.n; i++) {
			while (sim_fsync(s, &s->nodes[i]))
				any = true;
			if (sim_apply(s, &s->nodes[i], (size_t)-1))
				any = true;
		}
	}
}

/* Scripted tests: deliver, fsync and apply until quiet. */
SIM_FN void sim_settle(sim *s)
{
	for (int r = 0; r < 1000 && (s->net_n || true); r++) {
		sim_settle_disks(s);
		if (!s->net_n)
			break;
		sim_deliver_all(s);
	}
	sim_settle_disks(s);
}

static void sim_membership_step(sim *s)
{
	sim_node *l = sim_leader(s);
	if (!l)
		return;
	const raft_conf_state *cs = raft_core_conf_state(l->core);
	uint64_t id = 1 + sim_rand(&s->rng, s->o.n);
	bool voter = false, learner = false;
	for (size_t i = 0; i < cs->n_voters; i++)
		voter |= cs->voters[i] == id;
	for (size_t i = 0; i < cs->n_learners; i++)
		learner |= cs->learners[i] == id;
	raft_conf_change cc = {.node_id = id};
	if (voter) {
		if (cs->n_voters <= 3)
			return; /* keep enough voters for the fault budget */
		cc.type = RAFT_CC_REMOVE;
	} else if (learner) {
		cc.type = sim_chance(&s->rng, 700) ? RAFT_CC_ADD_VOTER : RAFT_CC_REMOVE;
	} else {
		cc.type = RAFT_CC_ADD_LEARNER;
	}
	int rc = raft_core_propose_conf_change(l->core, &cc, NULL, NULL);
	if (rc == 0)
		SIM_LOG(s, "leader %llu proposes conf change %d node %llu", (unsigned long long)l->id, cc.type,
		        (unsigned long long)id);
	sim_node_ready(s, l);
}

/* One random step of the world. */
SIM_FN void sim_step(sim *s, bool faults)
{
	s->step++;
	uint64_t *r = &s->rng;
	/* time passes */
	if (sim_chance(r, 400))
		for (size_t i = 0; i < s->o.n; i++)
			sim_tick(s, &s->nodes[i]);
	/* the network delivers what is due, in random order; some of it later */
	sim_msg *due = NULL;
	size_t n_due = 0;
	for (size_t k = 0; k < s->net_n;) {
		if (s->net[k].at <= s->step && !sim_chance(r, 150)) {
			if (!due)
				due = ms_malloc(s->net_n * sizeof *due);
			MS_ASSERT(due);
			due[n_due++] = s->net[k];
			s->net[k] = s->net[--s->net_n];
		} else {
			k++;
		}
	}
	for (size_t k = n_due; k > 1; k--) {
		size_t j = (size_t)sim_rand(r, k);
		sim_msg t = due[k - 1];
		due[k - 1] = due[j];
		due[j] = t;
	}
	for (size_t k = 0; k < n_due; k++) {
		/* push it back so sim_deliver finds it at the end of the queue */
		sim_net_reserve(s);
		s->net[s->net_n++] = due[k];
		sim_deliver(s, s->net_n - 1);
	}
	ms_free(due);
	/* disks and apply stages make progress at their own pace */
	for (size_t i = 0; i < s->o.n; i++) {
		sim_node *n = &s->nodes[i];
		if (sim_chance(r, 500)) {
			/* group commit: one fsync covers some of the queued writes */
			size_t k = 1 + (size_t)sim_rand(r, n->wq_n + 1);
			while (k-- && sim_fsync(s, n)) {
			}
		}
		if (sim_chance(r, 400))
			sim_apply(s, n, 1 + (size_t)sim_rand(r, 8));
		if (faults && sim_chance(r, s->o.compact))
			sim_node_compact(s, n);
	}
	/* clients */
	if (sim_chance(r, s->o.client)) {
		sim_node *n = sim_leader(s);
		if (!n || sim_chance(r, 200))
			n = &s->nodes[sim_rand(r, s->o.n)];
		int key = (int)sim_rand(r, SIM_KEYS);
		if (sim_chance(r, 500))
			sim_client_write(s, n, key);
		else
			sim_client_read(s, n, key);
	}
	if (faults && sim_chance(r, s->o.conf))
		sim_membership_step(s);
	if (faults && sim_chance(r, s->o.crash)) {
		sim_node *n = &s->nodes[sim_rand(r, s->o.n)];
		if (n->up)
			sim_node_crash(s, n);
	}
	/* crashed nodes come back after a while */
	for (size_t i = 0; i < s->o.n; i++)
		if (!s->nodes[i].up && (!faults || sim_chance(r, 20)))
			sim_node_start(s, &s->nodes[i]);
	if (faults && sim_chance(r, s->o.partition)) {
		if (sim_chance(r, 500)) {
			memset(s->part, 0, sizeof s->part);
			SIM_LOG(s, "partition heals");
		} else {
			for (size_t i = 0; i < s->o.n; i++)
				s->part[i] = (int)sim_rand(r, 2);
			SIM_LOG(s, "partition");
		}
	}
	sim_check_logs(s);
}

#endif
