/* test_raft_core.c — scenario tests of the Raft core: elections, vote rules,
 * pre-vote, check-quorum, log repair, the current-term commit rule, ReadIndex,
 * leadership transfer, learners, membership changes and snapshots. Single
 * cores are driven by hand; clusters run in the simulator with a perfect
 * network unless a test cuts it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tests/sim/sim.h"

/* ---- driving one core by hand ---- */

static uint64_t fixed_rand_state;

typedef struct out {
	raft_msg msgs[64]; /* copies of everything sent (now and after persist) */
	size_t n;
	uint64_t committed_to;
	size_t n_reads;
	uint64_t read_index;
} out;

static void out_clear(out *o)
{
	for (size_t i = 0; i < o->n; i++)
		sim_msg_free(&o->msgs[i]);
	o->n = 0;
}

static const raft_msg *out_find(const out *o, raft_msg_type t, uint64_t to)
{
	for (size_t i = 0; i < o->n; i++)
		if (o->msgs[i].type == t && (to == 0 || o->msgs[i].to == to))
			return &o->msgs[i];
	return NULL;
}

/* Handles batches like a node whose disk is instant. */
static void drain(raft_core *c, out *o)
{
	while (raft_core_has_ready(c)) {
		raft_ready rd;
		assert_int_equal(raft_core_ready(c, &rd), 0);
		uint64_t li = 0, lt = 0;
		if (rd.n_entries) {
			li = rd.entries[rd.n_entries - 1].index;
			lt = rd.entries[rd.n_entries - 1].term;
		}
		for (size_t i = 0; i < rd.n_msgs && o; i++)
			sim_msg_copy(&o->msgs[o->n++], &rd.msgs[i]);
		for (size_t i = 0; i < rd.n_msgs_after_persist && o; i++)
			sim_msg_copy(&o->msgs[o->n++], &rd.msgs_after_persist[i]);
		if (rd.n_committed && o)
			o->committed_to = rd.committed[rd.n_committed - 1].index;
		if (rd.n_reads && o) {
			o->n_reads += rd.n_reads;
			o->read_index = rd.reads[rd.n_reads - 1].index;
		}
		uint64_t applied = rd.n_committed ? rd.committed[rd.n_committed - 1].index : 0;
		raft_core_advance(c, &rd);
		if (li)
			raft_core_persisted(c, li, lt);
		if (applied)
			raft_core_applied(c, applied);
	}
}

static raft_core *core_new(uint64_t id, const uint64_t *voters, size_t nv, bool pre_vote, const raft_restore *rs_in)
{
	raft_config cfg = {.id = id,
	                   .election_tick = 10,
	                   .heartbeat_tick = 1,
	                   .pre_vote = pre_vote,
	                   .rand = sim_core_rand,
	                   .rand_ud = &fixed_rand_state};
	raft_restore rs = {0};
	if (rs_in)
		rs = *rs_in;
	else
		rs.snap.conf_state = (raft_conf_state){.voters = (uint64_t *)voters, .n_voters = nv};
	raft_core *c = NULL;
	ms_err err = {0};
	assert_int_equal(raft_core_new(&cfg, &rs, &c, &err), 0);
	return c;
}

static void tick_n(raft_core *c, int n, out *o)
{
	for (int i = 0; i < n; i++) {
		raft_core_tick(c);
		drain(c, o);
	}
}

static void step(raft_core *c, raft_msg m, out *o)
{
	m.to = raft_core_id(c);
	assert_int_equal(raft_core_step(c, &m), 0);
	drain(c, o);
}

/* ---- cluster helpers ---- */

static void cluster_init(sim *s, size_t n, size_t voters, bool pre_vote, bool check_quorum)
{
	sim_opts o = {.n = n, .voters = voters, .pre_vote = pre_vote, .check_quorum = check_quorum};
	sim_init(s, 42, &o);
}

/* One tick everywhere, then the network and disks settle. */
static void cluster_ticks(sim *s, int n)
{
	for (int i = 0; i < n; i++) {
		s->step++;
		for (size_t k = 0; k < s->o.n; k++)
			sim_tick(s, &s->nodes[k]);
		sim_settle(s);
		assert_false(s->failed);
		sim_check_logs(s);
	}
}

static sim_node *cluster_elect(sim *s)
{
	for (int i = 0; i < 100 && !sim_leader(s); i++)
		cluster_ticks(s, 1);
	sim_node *l = sim_leader(s);
	assert_non_null(l);
	cluster_ticks(s, 2);
	return l;
}

static bool cut_filter(void *ud, const raft_msg *m)
{
	const int *part = ud;
	return part[m->from - 1] == part[m->to - 1];
}

static void cluster_done(sim *s)
{
	sim_check_linearizable(s);
	if (s->failed)
		fprintf(stderr, "%s\n", s->why);
	assert_false(s->failed);
	sim_free(s);
}

/* ---- tests ---- */

static void test_single_node_commits_after_persist(void **st)
{
	(void)st;
	uint64_t v[] = {1};
	raft_core *c = core_new(1, v, 1, false, NULL);
	out o = {0};
	drain(c, &o); /* bootstrap entry persisted */
	assert_int_equal(raft_core_role(c), RAFT_FOLLOWER);
	tick_n(c, 20, &o); /* randomized timeout is < 2 * election_tick */
	assert_int_equal(raft_core_role(c), RAFT_LEADER);
	assert_int_equal(raft_core_term(c), 2);
	/* a proposal is not committed until the leader's own disk has it */
	uint64_t idx, term;
	assert_int_equal(raft_core_propose(c, (const uint8_t *)"x", 1, &idx, &term), 0);
	assert_int_equal(idx, 3);
	raft_ready rd;
	assert_int_equal(raft_core_ready(c, &rd), 0);
	assert_int_equal(rd.n_entries, 1);
	assert_int_equal(rd.entries[0].index, 3);
	assert_int_equal(rd.n_committed, 0);
	raft_core_advance(c, &rd);
	assert_int_equal(raft_core_commit(c), 2);
	raft_core_persisted(c, 3, term);
	assert_int_equal(raft_core_commit(c), 3);
	assert_int_equal(raft_core_ready(c, &rd), 0);
	assert_int_equal(rd.n_committed, 1);
	assert_int_equal(rd.committed[0].index, 3);
	assert_memory_equal(rd.committed[0].data, "x", 1);
	raft_core_advance(c, &rd);
	out_clear(&o);
	raft_core_del(c);
}

static void test_three_node_election(void **st)
{
	(void)st;
	sim s;
	cluster_init(&s, 3, 0, false, false);
	sim_node *l = cluster_elect(&s);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(raft_core_leader(s.nodes[i].core), l->id);
		assert_int_equal(raft_core_term(s.nodes[i].core), raft_core_term(l->core));
	}
	sim_node *f = &s.nodes[l->id % 3];
	assert_int_equal(raft_core_propose(f->core, (const uint8_t *)"x", 1, NULL, NULL), MS_ENOT_LEADER);
	assert_int_equal(raft_core_leader(f->core), l->id);
	uint64_t op = sim_client_write(&s, l, 1);
	cluster_ticks(&s, 2);
	assert_int_not_equal(sim_op_get(&s, op)->resp, 0);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(s.nodes[i].kv[1], op);
	cluster_done(&s);
}

static void test_vote_rules(void **st)
{
	(void)st;
	uint64_t v[] = {1, 2, 3};
	raft_core *c = core_new(1, v, 3, false, NULL);
	out o = {0};
	drain(c, &o); /* log: 1..3 of term 1 */
	/* §5.4.1: a candidate whose log is behind ours is refused */
	step(c, (raft_msg){.type = RAFT_MSG_VOTE, .from = 2, .term = 2, .log_term = 1, .index = 2}, &o);
	const raft_msg *r = out_find(&o, RAFT_MSG_VOTE_RESP, 2);
	assert_non_null(r);
	assert_true(r->reject);
	assert_int_equal(raft_core_term(c), 2);
	out_clear(&o);
	/* an up-to-date candidate gets the vote, and it is persisted first */
	raft_msg vm = {.type = RAFT_MSG_VOTE, .from = 3, .to = 1, .term = 2, .log_term = 1, .index = 3};
	assert_int_equal(raft_core_step(c, &vm), 0);
	raft_ready rd;
	assert_int_equal(raft_core_ready(c, &rd), 0);
	assert_true(rd.hs_changed);
	assert_int_equal(rd.hs.vote, 3);
	assert_int_equal(rd.n_msgs, 0); /* the answer waits for the disk */
	assert_int_equal(rd.n_msgs_after_persist, 1);
	assert_false(rd.msgs_after_persist[0].reject);
	raft_core_advance(c, &rd);
	/* §5.2: one vote per term, even for a better log */
	step(c, (raft_msg){.type = RAFT_MSG_VOTE, .from = 2, .term = 2, .log_term = 1, .index = 9}, &o);
	r = out_find(&o, RAFT_MSG_VOTE_RESP, 2);
	assert_non_null(r);
	assert_true(r->reject);
	out_clear(&o);
	/* asking again is answered the same way (the vote is idempotent) */
	step(c, (raft_msg){.type = RAFT_MSG_VOTE, .from = 3, .term = 2, .log_term = 1, .index = 3}, &o);
	r = out_find(&o, RAFT_MSG_VOTE_RESP, 3);
	assert_non_null(r);
	assert_false(r->reject);
	out_clear(&o);
	/* a higher term with a higher last log term wins even if shorter */
	step(c, (raft_msg){.type = RAFT_MSG_VOTE, .from = 2, .term = 3, .log_term = 2, .index = 1}, &o);
	r = out_find(&o, RAFT_MSG_VOTE_RESP, 2);
	assert_non_null(r);
	assert_false(r->reject);
	out_clear(&o);
	/* stale terms are ignored */
	step(c, (raft_msg){.type = RAFT_MSG_VOTE, .from = 3, .term = 1, .log_term = 1, .index = 3}, &o);
	assert_int_equal(o.n, 0);
	raft_core_del(c);
}

static void test_pre_vote_keeps_terms(void **st)
{
	(void)st;
	sim s;
	cluster_init(&s, 3, 0, true, false);
	sim_node *l = cluster_elect(&s);
	uint64_t term = raft_core_term(l->core);
	sim_node *iso = &s.nodes[l->id % 3];
	int part[SIM_MAX_NODES] = {0};
	part[iso->id - 1] = 1;
	s.filter = cut_filter;
	s.filter_ud = part;
	cluster_ticks(&s, 100);
	/* thesis §9.6: the cut-off node campaigns without raising its term */
	assert_int_equal(raft_core_term(iso->core), term);
	assert_int_not_equal(raft_core_role(iso->core), RAFT_LEADER);
	s.filter = NULL;
	cluster_ticks(&s, 20);
	/* and it rejoins without disturbing the leader */
	assert_int_equal(raft_core_term(l->core), term);
	assert_int_equal(raft_core_role(l->core), RAFT_LEADER);
	assert_int_equal(raft_core_leader(iso->core), l->id);
	cluster_done(&s);

	/* without pre-vote the same partition inflates the term */
	cluster_init(&s, 3, 0, false, false);
	l = cluster_elect(&s);
	term = raft_core_term(l->core);
	iso = &s.nodes[l->id % 3];
	memset(part, 0, sizeof part);
	part[iso->id - 1] = 1;
	s.filter = cut_filter;
	s.filter_ud = part;
	cluster_ticks(&s, 100);
	assert_true(raft_core_term(iso->core) > term);
	cluster_done(&s);
}

static void test_check_quorum_step_down(void **st)
{
	(void)st;
	sim s;
	cluster_init(&s, 3, 0, true, true);
	sim_node *l = cluster_elect(&s);
	uint64_t term = raft_core_term(l->core);
	int part[SIM_MAX_NODES] = {0};
	part[l->id - 1] = 1;
	s.filter = cut_filter;
	s.filter_ud = part;
	cluster_ticks(&s, 21); /* two election timeouts: one to notice, one of grace */
	assert_int_equal(raft_core_role(l->core), RAFT_FOLLOWER);
	/* the others elected a new leader in a later term */
	sim_node *nl = sim_leader(&s);
	assert_non_null(nl);
	assert_int_not_equal(nl->id, l->id);
	assert_true(raft_core_term(nl->core) > term);
	s.filter = NULL;
	cluster_ticks(&s, 5);
	assert_int_equal(raft_core_leader(l->core), nl->id);
	cluster_done(&s);
}

static void test_check_quorum_ignores_disruptive_votes(void **st)
{
	(void)st;
	sim s;
	cluster_init(&s, 3, 0, false, true);
	sim_node *l = cluster_elect(&s);
	sim_node *f = &s.nodes[l->id % 3];
	uint64_t term = raft_core_term(f->core);
	/* thesis §4.2.3: a follower that hears from its leader ignores a
	 * RequestVote of a higher term */
	raft_msg m = {.type = RAFT_MSG_VOTE,
	              .from = 6 - f->id - l->id,
	              .to = f->id,
	              .term = term + 5,
	              .log_term = 99,
	              .index = 99};
	assert_int_equal(raft_core_step(f->core, &m), 0);
	assert_int_equal(raft_core_term(f->core), term);
	assert_int_equal(raft_core_leader(f->core), l->id);
	cluster_done(&s);
}

static void test_log_conflict_repair(void **st)
{
	(void)st;
	sim s;
	cluster_init(&s, 3, 0, false, false);
	sim_node *old = cluster_elect(&s);
	uint64_t committed = raft_core_commit(old->core);
	int part[SIM_MAX_NODES] = {0};
	part[old->id - 1] = 1;
	s.filter = cut_filter;
	s.filter_ud = part;
	/* the cut-off leader appends entries that never commit */
	for (int i = 0; i < 30; i++)
		assert_int_not_equal(sim_client_write(&s, old, 0), 0);
	sim_settle(&s);
	assert_int_equal(raft_core_commit(old->core), committed);
	/* the majority elects a new leader and commits other entries */
	sim_node *nl = NULL;
	for (int i = 0; i < 100 && (!nl || nl == old); i++) {
		cluster_ticks(&s, 1);
		for (size_t k = 0; k < 3; k++)
			if (&s.nodes[k] != old && raft_core_role(s.nodes[k].core) == RAFT_LEADER)
				nl = &s.nodes[k];
	}
	assert_non_null(nl);
	uint64_t ops[10];
	for (int i = 0; i < 10; i++)
		ops[i] = sim_client_write(&s, nl, 1);
	cluster_ticks(&s, 2);
	assert_true(raft_core_last_index(old->core) > raft_core_last_index(nl->core));
	/* heal: the old leader's conflicting suffix is replaced (§5.3) */
	s.filter = NULL;
	cluster_ticks(&s, 10);
	assert_int_equal(raft_core_role(old->core), RAFT_FOLLOWER);
	assert_int_equal(raft_core_last_index(old->core), raft_core_last_index(nl->core));
	for (uint64_t i = 1; i <= raft_core_last_index(nl->core); i++)
		assert_int_equal(raft_core_term_at(old->core, i), raft_core_term_at(nl->core, i));
	assert_int_equal(old->kv[1], ops[9]);
	assert_int_equal(old->kv[0], 0); /* none of the lost writes applied */
	cluster_done(&s);
}

static void test_fast_backoff(void **st)
{
	(void)st;
	uint64_t v[] = {1, 2, 3};
	/* follower 2: 1..3 of term 1, then 4..40 of term 2 (an old leader's tail) */
	raft_entry fe[40];
	for (int i = 0; i < 40; i++)
		fe[i] = (raft_entry){.term = i < 3 ? 1 : 2, .index = (uint64_t)i + 1};
	raft_restore frs = {.hs = {.term = 2, .commit = 3}, .entries = fe, .n_entries = 40};
	frs.snap.conf_state = (raft_conf_state){.voters = v, .n_voters = 3};
	raft_core *f = core_new(2, v, 3, false, &frs);
	/* leader 1: 1..3 of term 1, then 4..50 of term 3 */
	raft_entry le[50];
	for (int i = 0; i < 50; i++)
		le[i] = (raft_entry){.term = i < 3 ? 1 : 3, .index = (uint64_t)i + 1};
	raft_restore lrs = {.hs = {.term = 3, .commit = 3}, .entries = le, .n_entries = 50};
	lrs.snap.conf_state = (raft_conf_state){.voters = v, .n_voters = 3};
	raft_core *l = core_new(1, v, 3, false, &lrs);
	out o = {0};
	tick_n(l, 20, &o);
	uint64_t term = raft_core_term(l);
	step(l, (raft_msg){.type = RAFT_MSG_VOTE_RESP, .from = 3, .term = term}, &o);
	assert_int_equal(raft_core_role(l), RAFT_LEADER);
	const raft_msg *app = out_find(&o, RAFT_MSG_APP, 2);
	assert_non_null(app);
	assert_int_equal(app->index, 50);
	raft_msg probe;
	sim_msg_copy(&probe, app);
	out_clear(&o);
	/* the follower rejects with a hint: its last index whose term is <= 3 */
	step(f, probe, &o);
	sim_msg_free(&probe);
	const raft_msg *r = out_find(&o, RAFT_MSG_APP_RESP, 1);
	assert_non_null(r);
	assert_true(r->reject);
	assert_int_equal(r->reject_hint, 40);
	assert_int_equal(r->log_term, 2);
	raft_msg rej;
	sim_msg_copy(&rej, r);
	out_clear(&o);
	/* the leader skips the whole term-2 run in one step: next probe at 3 */
	step(l, rej, &o);
	sim_msg_free(&rej);
	app = out_find(&o, RAFT_MSG_APP, 2);
	assert_non_null(app);
	assert_int_equal(app->index, 3);
	assert_int_equal(app->log_term, 1);
	sim_msg_copy(&probe, app);
	out_clear(&o);
	step(f, probe, &o);
	sim_msg_free(&probe);
	r = out_find(&o, RAFT_MSG_APP_RESP, 1);
	assert_non_null(r);
	assert_false(r->reject);
	assert_true(raft_core_last_index(f) > 3);
	assert_int_equal(raft_core_term_at(f, 4), 3); /* the term-2 tail was replaced */
	out_clear(&o);
	raft_core_del(f);
	raft_core_del(l);
}

static void test_figure8_current_term_commit(void **st)
{
	(void)st;
	uint64_t v[] = {1, 2, 3};
	/* node 1 holds 1..3 (term 1) and 4 (term 2, from its earlier leadership) */
	raft_entry ents[4];
	for (int i = 0; i < 4; i++)
		ents[i] = (raft_entry){.term = i < 3 ? 1 : 2, .index = (uint64_t)i + 1};
	raft_restore rs = {.hs = {.term = 2, .vote = 1, .commit = 3}, .entries = ents, .n_entries = 4};
	rs.snap.conf_state = (raft_conf_state){.voters = v, .n_voters = 3};
	raft_core *c = core_new(1, v, 3, false, &rs);
	out o = {0};
	tick_n(c, 20, &o);
	assert_int_equal(raft_core_role(c), RAFT_CANDIDATE);
	uint64_t term = raft_core_term(c);
	step(c, (raft_msg){.type = RAFT_MSG_VOTE_RESP, .from = 2, .term = term}, &o);
	assert_int_equal(raft_core_role(c), RAFT_LEADER);
	assert_int_equal(raft_core_last_index(c), 5); /* the no-op of this term */
	/* a majority (1, 2) now holds index 4 of term 2: still not committed
	 * (Raft §5.4.2, Figure 8) */
	step(c, (raft_msg){.type = RAFT_MSG_APP_RESP, .from = 2, .term = term, .index = 4}, &o);
	assert_int_equal(raft_core_commit(c), 3);
	/* once an entry of the current term is on a majority, both commit */
	step(c, (raft_msg){.type = RAFT_MSG_APP_RESP, .from = 2, .term = term, .index = 5}, &o);
	assert_int_equal(raft_core_commit(c), 5);
	out_clear(&o);
	raft_core_del(c);
}

static void test_read_index(void **st)
{
	(void)st;
	sim s;
	cluster_init(&s, 3, 0, false, false);
	/* a brand-new leader must not serve a read before it commits in its term */
	sim_node *l = NULL;
	for (int i = 0; i < 100 && !l; i++) {
		s.step++;
		for (size_t k = 0; k < 3; k++)
			sim_tick(&s, &s.nodes[k]);
		for (int r = 0; r < 10; r++) {
			sim_settle_disks(&s);
			/* deliver only votes, so the leader's APPs stay in flight */
			for (size_t k = 0; k < s.net_n;) {
				if (s.net[k].m.type != RAFT_MSG_APP && s.net[k].m.type != RAFT_MSG_HEARTBEAT)
					sim_deliver(&s, k);
				else
					k++;
			}
		}
		l = sim_leader(&s);
	}
	assert_non_null(l);
	uint64_t noop = raft_core_last_index(l->core);
	assert_true(raft_core_commit(l->core) < noop);
	uint64_t op = sim_client_read(&s, l, 0);
	assert_int_not_equal(op, 0);
	sim_settle_disks(&s);
	assert_int_equal(sim_op_get(&s, op)->resp, 0);
	assert_int_equal(l->pr_n, 1);
	assert_false(l->pr[0].have_index);
	sim_settle(&s);
	assert_int_not_equal(sim_op_get(&s, op)->resp, 0);
	/* a write, then reads on the leader and through a follower see it */
	uint64_t w = sim_client_write(&s, l, 2);
	sim_settle(&s);
	uint64_t r1 = sim_client_read(&s, l, 2);
	sim_node *f = &s.nodes[l->id % 3];
	uint64_t r2 = sim_client_read(&s, f, 2);
	assert_int_not_equal(r2, 0);
	/* no answer before the heartbeat round */
	sim_settle_disks(&s);
	assert_int_equal(sim_op_get(&s, r1)->resp, 0);
	sim_settle(&s);
	assert_int_equal(sim_op_get(&s, r1)->value, w);
	assert_int_equal(sim_op_get(&s, r2)->value, w);
	/* with no leader known, a follower refuses */
	sim_node_crash(&s, l);
	for (size_t k = 0; k < 3; k++)
		if (s.nodes[k].up)
			for (int i = 0; i < 30; i++)
				raft_core_tick(s.nodes[k].core), sim_node_ready(&s, &s.nodes[k]);
	sim_node *x = &s.nodes[l->id % 3];
	if (raft_core_leader(x->core) == RAFT_NONE)
		assert_int_equal(raft_core_read_index(x->core, (const uint8_t *)"r", 1), MS_ENO_LEADER);
	cluster_done(&s);
}

static void test_transfer_leader(void **st)
{
	(void)st;
	sim s;
	cluster_init(&s, 3, 0, true, true);
	sim_node *l = cluster_elect(&s);
	uint64_t term = raft_core_term(l->core);
	sim_node *t = &s.nodes[l->id % 3];
	assert_int_equal(raft_core_transfer_leader(l->core, l->id), MS_EBAD_TRANSFEREE);
	assert_int_equal(raft_core_transfer_leader(l->core, 9), MS_EBAD_TRANSFEREE);
	assert_int_equal(raft_core_transfer_leader(t->core, l->id), MS_ENOT_LEADER);
	assert_int_equal(raft_core_transfer_leader(l->core, t->id), 0);
	sim_node_ready(&s, l);
	/* thesis §3.10: proposals stop during the transfer */
	assert_int_equal(raft_core_propose(l->core, NULL, 0, NULL, NULL), MS_EAGAIN);
	sim_settle(&s);
	assert_int_equal(raft_core_role(t->core), RAFT_LEADER);
	assert_int_equal(raft_core_term(t->core), term + 1);
	assert_int_equal(raft_core_role(l->core), RAFT_FOLLOWER);
	cluster_ticks(&s, 3);
	assert_int_equal(raft_core_leader(l->core), t->id);
	cluster_done(&s);
}

static void test_learner_does_not_vote(void **st)
{
	(void)st;
	sim s;
	cluster_init(&s, 4, 3, false, false);
	sim_node *l = cluster_elect(&s);
	sim_node *n4 = &s.nodes[3];
	raft_conf_change cc = {.type = RAFT_CC_ADD_LEARNER, .node_id = 4};
	assert_int_equal(raft_core_propose_conf_change(l->core, &cc, NULL, NULL), 0);
	sim_node_ready(&s, l);
	cluster_ticks(&s, 3);
	/* the learner got the log, including the bootstrap membership */
	const raft_conf_state *cs = raft_core_conf_state(n4->core);
	assert_int_equal(cs->n_voters, 3);
	assert_int_equal(cs->n_learners, 1);
	assert_int_equal(n4->sm_applied, l->sm_applied);
	/* it never campaigns, even cut off */
	int part[SIM_MAX_NODES] = {0};
	part[3] = 1;
	s.filter = cut_filter;
	s.filter_ud = part;
	uint64_t term = raft_core_term(n4->core);
	cluster_ticks(&s, 60);
	assert_int_equal(raft_core_term(n4->core), term);
	assert_int_equal(raft_core_role(n4->core), RAFT_FOLLOWER);
	/* and it does not count for the quorum: leader + learner can't commit */
	memset(part, 0, sizeof part);
	for (size_t k = 0; k < 3; k++)
		if (s.nodes[k].id != l->id)
			part[k] = 1;
	uint64_t c0 = raft_core_commit(l->core);
	uint64_t op = sim_client_write(&s, l, 0);
	assert_int_not_equal(op, 0);
	for (int i = 0; i < 5; i++) {
		s.step++;
		sim_tick(&s, l);
		sim_settle(&s);
	}
	assert_int_equal(raft_core_commit(l->core), c0);
	uint64_t m4 = 0;
	assert_true(raft_core_peer_match(l->core, 4, &m4));
	assert_int_equal(m4, raft_core_last_index(l->core));
	s.filter = NULL;
	cluster_ticks(&s, 30);
	cluster_done(&s);
}

static void test_conf_change_one_at_a_time(void **st)
{
	(void)st;
	sim s;
	cluster_init(&s, 4, 3, false, false);
	sim_node *l = cluster_elect(&s);
	raft_conf_change cc = {.type = RAFT_CC_ADD_LEARNER, .node_id = 4};
	assert_int_equal(raft_core_propose_conf_change(l->core, &cc, NULL, NULL), 0);
	/* thesis §4.1: the next change waits until this one is applied */
	raft_conf_change p = {.type = RAFT_CC_ADD_VOTER, .node_id = 4};
	assert_int_equal(raft_core_propose_conf_change(l->core, &p, NULL, NULL), MS_EAGAIN);
	sim_node_ready(&s, l);
	cluster_ticks(&s, 3);
	assert_int_equal(raft_core_propose_conf_change(l->core, &cc, NULL, NULL), MS_EMEMBER_EXISTS);
	/* promotion */
	assert_int_equal(raft_core_propose_conf_change(l->core, &p, NULL, NULL), 0);
	sim_node_ready(&s, l);
	cluster_ticks(&s, 3);
	const raft_conf_state *cs = raft_core_conf_state(s.nodes[3].core);
	assert_int_equal(cs->n_voters, 4);
	assert_int_equal(cs->n_learners, 0);
	/* removal of the leader itself: it steps down once applied */
	raft_conf_change rm = {.type = RAFT_CC_REMOVE, .node_id = l->id};
	assert_int_equal(raft_core_propose_conf_change(l->core, &rm, NULL, NULL), 0);
	sim_node_ready(&s, l);
	cluster_ticks(&s, 3);
	assert_int_not_equal(raft_core_role(l->core), RAFT_LEADER);
	cluster_ticks(&s, 40);
	sim_node *nl = sim_leader(&s);
	assert_non_null(nl);
	assert_int_not_equal(nl->id, l->id);
	assert_int_equal(raft_core_conf_state(nl->core)->n_voters, 3);
	uint64_t op = sim_client_write(&s, nl, 3);
	cluster_ticks(&s, 3);
	assert_int_not_equal(sim_op_get(&s, op)->resp, 0);
	raft_conf_change bad = {.type = RAFT_CC_REMOVE, .node_id = 9};
	assert_int_equal(raft_core_propose_conf_change(nl->core, &bad, NULL, NULL), MS_EMEMBER_NOT_FOUND);
	cluster_done(&s);
}

static void test_snapshot_to_lagging_follower(void **st)
{
	(void)st;
	sim s;
	cluster_init(&s, 3, 0, false, false);
	sim_node *l = cluster_elect(&s);
	sim_node *lag = &s.nodes[l->id % 3];
	sim_node_crash(&s, lag);
	uint64_t last_op = 0;
	for (int i = 0; i < 40; i++)
		last_op = sim_client_write(&s, l, i % SIM_KEYS);
	cluster_ticks(&s, 2);
	for (size_t k = 0; k < 3; k++)
		sim_node_compact(&s, &s.nodes[k]);
	assert_true(raft_core_first_index(l->core) > 40);
	sim_node_start(&s, lag);
	cluster_ticks(&s, 5);
	/* Raft §7: the follower got the snapshot, then the rest of the log */
	assert_int_equal(raft_core_first_index(lag->core), raft_core_first_index(l->core));
	assert_int_equal(lag->sm_applied, l->sm_applied);
	assert_memory_equal(lag->kv, l->kv, sizeof lag->kv);
	assert_int_equal(lag->kv[39 % SIM_KEYS], last_op);
	/* and it survives a restart from what it persisted */
	sim_node_crash(&s, lag);
	sim_node_start(&s, lag);
	cluster_ticks(&s, 3);
	assert_memory_equal(lag->kv, l->kv, sizeof lag->kv);
	cluster_done(&s);
}

static void test_codecs(void **st)
{
	(void)st;
	raft_conf_change cc = {
	    .type = RAFT_CC_ADD_LEARNER, .node_id = 77, .context = (const uint8_t *)"ctx", .context_len = 3};
	size_t len;
	uint8_t *b = raft_conf_change_encode(&cc, &len);
	raft_conf_change d;
	assert_int_equal(raft_conf_change_decode(b, len, &d), 0);
	assert_int_equal(d.type, RAFT_CC_ADD_LEARNER);
	assert_int_equal(d.node_id, 77);
	assert_int_equal(d.context_len, 3);
	assert_int_equal(raft_conf_change_decode(b, 5, &d), MS_EINVAL);
	ms_free(b);
	uint64_t v[] = {1, 2}, l[] = {3};
	raft_conf_state cs = {.voters = v, .n_voters = 2, .learners = l, .n_learners = 1}, dec;
	b = raft_conf_state_encode(&cs, &len);
	assert_int_equal(raft_conf_state_decode(b, len, &dec), 0);
	assert_int_equal(dec.n_voters, 2);
	assert_int_equal(dec.learners[0], 3);
	raft_conf_state_free(&dec);
	assert_int_equal(raft_conf_state_decode(b, len - 1, &dec), MS_EINVAL);
	ms_put_u64le(b + 16, 1); /* duplicate id */
	assert_int_equal(raft_conf_state_decode(b, len, &dec), MS_EINVAL);
	ms_free(b);
}

static void test_bad_restore_refused(void **st)
{
	(void)st;
	raft_config cfg = {
	    .id = 1, .election_tick = 10, .heartbeat_tick = 1, .rand = sim_core_rand, .rand_ud = &fixed_rand_state};
	raft_entry ents[2] = {{.term = 1, .index = 1}, {.term = 1, .index = 3}};
	raft_restore rs = {.hs = {.term = 1}, .entries = ents, .n_entries = 2};
	raft_core *c = NULL;
	ms_err err = {0};
	assert_int_equal(raft_core_new(&cfg, &rs, &c, &err), MS_EINVAL);
	ents[1].index = 2;
	rs.hs.commit = 5;
	assert_int_equal(raft_core_new(&cfg, &rs, &c, &err), MS_EINVAL);
	cfg.heartbeat_tick = 10;
	rs.hs.commit = 2;
	assert_int_equal(raft_core_new(&cfg, &rs, &c, &err), MS_EINVAL);
	assert_null(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_single_node_commits_after_persist),
	    cmocka_unit_test(test_three_node_election),
	    cmocka_unit_test(test_vote_rules),
	    cmocka_unit_test(test_pre_vote_keeps_terms),
	    cmocka_unit_test(test_check_quorum_step_down),
	    cmocka_unit_test(test_check_quorum_ignores_disruptive_votes),
	    cmocka_unit_test(test_log_conflict_repair),
	    cmocka_unit_test(test_fast_backoff),
	    cmocka_unit_test(test_figure8_current_term_commit),
	    cmocka_unit_test(test_read_index),
	    cmocka_unit_test(test_transfer_leader),
	    cmocka_unit_test(test_learner_does_not_vote),
	    cmocka_unit_test(test_conf_change_one_at_a_time),
	    cmocka_unit_test(test_snapshot_to_lagging_follower),
	    cmocka_unit_test(test_codecs),
	    cmocka_unit_test(test_bad_restore_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
