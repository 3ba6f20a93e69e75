/* test_raft_sim.c — seeded whole-cluster simulation of the Raft core (3 and 5
 * nodes) under drops, delays, duplicates, reordering, partitions, crashes
 * that lose unsynced writes, compaction with snapshots, and membership
 * churn; safety checked after every step, the client history checked for
 * linearizability, and liveness checked once the faults stop.
 *
 *   SIM_SEEDS=N     number of seeds (default 300)
 *   SIM_SEED=x      run only seed x (replay a failure; add SIM_VERBOSE=1 for a trace)
 *   SIM_STEPS=N     faulty steps per seed (default 1500)
 *   SIM_FIRST=x     first seed of the range (default 1) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "tests/sim/sim.h"

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	return v && *v ? strtoull(v, NULL, 0) : def;
}

/* The fault mix is drawn from the seed too, so the seed alone replays. */
static void opts_for_seed(uint64_t seed, sim_opts *o)
{
	uint64_t r = seed * 0x2545F4914F6CDD1Dull + 7;
	memset(o, 0, sizeof *o);
	o->n = sim_rand(&r, 2) ? 5 : 3;
	o->pre_vote = sim_rand(&r, 4) != 0;
	o->check_quorum = sim_rand(&r, 4) != 0;
	o->drop = (unsigned)sim_rand(&r, 120);
	o->dup = (unsigned)sim_rand(&r, 60);
	o->max_delay = (unsigned)sim_rand(&r, 6);
	o->crash = (unsigned)sim_rand(&r, 8);
	o->partition = (unsigned)sim_rand(&r, 10);
	o->compact = (unsigned)sim_rand(&r, 15);
	o->client = 300 + (unsigned)sim_rand(&r, 500);
	o->max_inflight = 1 + (size_t)sim_rand(&r, 8);
	o->max_entries = 1 + (size_t)sim_rand(&r, 16);
	if (o->n == 5 && sim_rand(&r, 2)) {
		o->voters = 3; /* two spare nodes: learners, promotions, removals */
		o->conf = 10 + (unsigned)sim_rand(&r, 30);
	}
}

/* Returns 0 or prints the failure with its seed and step. */
static int run_seed(uint64_t seed, uint64_t steps, bool verbose, uint64_t *writes, uint64_t *reads)
{
	sim_opts o;
	opts_for_seed(seed, &o);
	o.verbose = verbose;
	sim s;
	sim_init(&s, seed, &o);
	for (uint64_t i = 0; i < steps && !s.failed; i++)
		sim_step(&s, true);
	/* faults stop: the cluster must settle, agree and make progress */
	s.o.drop = s.o.dup = 0;
	memset(s.part, 0, sizeof s.part);
	for (int i = 0; i < 500 && !s.failed; i++)
		sim_step(&s, false);
	/* a fresh write must go through (leader elections may still be running) */
	uint64_t before = s.writes_done;
	for (int tries = 0; tries < 40 && !s.failed && s.writes_done == before; tries++) {
		sim_node *ld = sim_leader(&s);
		if (ld)
			sim_client_write(&s, ld, 0);
		for (int i = 0; i < 50 && !s.failed; i++)
			sim_step(&s, false);
	}
	if (!s.failed && s.writes_done == before)
		sim_fail(&s, "liveness: no write completed after the faults stopped");
	sim_node *l = sim_leader(&s);
	for (int i = 0; i < 500 && !s.failed && !l; i++) {
		sim_step(&s, false);
		l = sim_leader(&s);
	}
	if (!s.failed && !l)
		sim_fail(&s, "liveness: no leader after the faults stopped");
	if (!s.failed) {
		/* every member converges on the leader's state (a removed member
		 * that never learned of its removal may still disturb elections
		 * when neither pre-vote nor check-quorum is on, so a leader may
		 * come and go meanwhile) */
		bool same = false;
		s.o.client = 0; /* clients stop so the members can catch up */
		for (int i = 0; i < 3000 && !s.failed && !same; i++) {
			sim_settle_disks(&s);
			l = sim_leader(&s);
			if (l) {
				same = raft_core_commit(l->core) == l->sm_applied;
				const raft_conf_state *cs = raft_core_conf_state(l->core);
				for (size_t k = 0; k < cs->n_voters + cs->n_learners; k++) {
					uint64_t id = k < cs->n_voters ? cs->voters[k] : cs->learners[k - cs->n_voters];
					sim_node *n = sim_node_get(&s, id);
					if (n->sm_applied != l->sm_applied || memcmp(n->kv, l->kv, sizeof n->kv) != 0)
						same = false;
				}
			}
			if (!same)
				sim_step(&s, false);
		}
		if (!s.failed && !same)
			sim_fail(&s, "liveness: members did not converge");
	}
	if (!s.failed)
		sim_check_linearizable(&s);
	int rc = 0;
	if (s.failed) {
		fprintf(stderr, "raft sim FAILED: %s\n  replay: SIM_SEED=%llu SIM_VERBOSE=1 %s\n", s.why,
		        (unsigned long long)seed, "build/tests/test_raft_sim");
		sim_dump(&s);
		rc = -1;
	}
	*writes += s.writes_done;
	*reads += s.reads_done;
	sim_free(&s);
	return rc;
}

static void test_sim_seeds(void **state)
{
	(void)state;
	uint64_t steps = env_u64("SIM_STEPS", 1500);
	bool verbose = env_u64("SIM_VERBOSE", 0) != 0;
	uint64_t first = env_u64("SIM_FIRST", 1), count = env_u64("SIM_SEEDS", 300);
	if (getenv("SIM_SEED")) {
		first = env_u64("SIM_SEED", 1);
		count = 1;
	}
	uint64_t writes = 0, reads = 0, failures = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint64_t seed = first; seed < first + count; seed++)
		if (run_seed(seed, steps, verbose, &writes, &reads) != 0)
			failures++;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("raft sim: %llu seeds from %llu, %llu failed, %llu writes and %llu reads acknowledged, %.2fs\n",
	       (unsigned long long)count, (unsigned long long)first, (unsigned long long)failures,
	       (unsigned long long)writes, (unsigned long long)reads, secs);
	assert_int_equal(failures, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sim_seeds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
