/* test_lease.c — lease manager core: heap order, renew, expiry, promote, TTL
 * bounds, key attachments, recovery; driven by a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/ms.h"
#include "kv.pb-c.h"
#include "lease/lease.h"

#define S 1000000000LL

typedef struct fake {
	int64_t now;
	uint64_t rnd[8];
	size_t nrnd, irnd;
	uint64_t x; /* xorshift state when rnd runs out */
} fake;

static int64_t fake_now(void *ud)
{
	return ((fake *)ud)->now;
}
static uint64_t fake_rand(void *ud)
{
	fake *f = ud;
	if (f->irnd < f->nrnd)
		return f->rnd[f->irnd++];
	f->x ^= f->x << 13;
	f->x ^= f->x >> 7;
	f->x ^= f->x << 17;
	return f->x;
}

static lease_mgr *mk(fake *f)
{
	lease_cfg c = {.now = fake_now, .now_ud = f, .rand = fake_rand, .rand_ud = f};
	lease_mgr *m;
	assert_int_equal(lease_mgr_new(&c, &m, NULL), 0);
	return m;
}

static long env_scale(long dflt)
{
	const char *s = getenv("LEASE_TEST_N");
	return s && atol(s) > 0 ? atol(s) : dflt;
}

static uint64_t xs(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void test_min_ttl_formula(void **st)
{
	assert_int_equal(lease_min_ttl(100, 1000), 2);
	assert_int_equal(lease_min_ttl(100, 2000), 3);
	assert_int_equal(lease_min_ttl(50, 500), 1);
	assert_int_equal(lease_min_ttl(0, 1000), 2);
}

static void test_grant_bounds(void **st)
{
	fake f = {.now = 100 * S};
	lease_mgr *m = mk(&f);
	ms_err err = {0};
	int64_t g = 0;
	assert_int_equal(lease_grant(m, 1, 1, &g, NULL), 0);
	assert_int_equal(g, 2); /* raised to min TTL */
	assert_int_equal(lease_grant(m, 2, -7, &g, NULL), 0);
	assert_int_equal(g, 2);
	assert_int_equal(lease_grant(m, 3, LEASE_MAX_TTL, &g, NULL), 0);
	assert_int_equal(g, LEASE_MAX_TTL);
	assert_int_equal(lease_grant(m, 4, LEASE_MAX_TTL + 1, &g, &err), MS_ELEASE_TTL_LARGE);
	assert_string_equal(err.msg, "etcdserver: too large lease TTL");
	assert_int_equal(lease_check_ttl(LEASE_MAX_TTL + 1, NULL), MS_ELEASE_TTL_LARGE);
	assert_int_equal(lease_check_ttl(-1, NULL), 0);
	assert_int_equal(lease_grant(m, 1, 10, &g, NULL), MS_ELEASE_EXISTS);
	assert_int_equal(lease_grant(m, 0, 10, &g, NULL), MS_EINVAL);
	assert_int_equal(lease_count(m), 3);
	assert_true(lease_exists(m, 3));
	assert_false(lease_exists(m, 4));
	/* a huge TTL does not overflow the clock once promoted */
	lease_mgr_promote(m, 2 * S);
	lease_ttl_info ti;
	assert_int_equal(lease_time_to_live(m, 3, &ti, NULL), 0);
	assert_true(ti.remaining_ns > 0);
	assert_int_equal(lease_mgr_check(m), 0);
	lease_mgr_del(m);
}

static void test_follower_has_no_clock(void **st)
{
	fake f = {.now = 5 * S};
	lease_mgr *m = mk(&f);
	int64_t ttl = 0, ids[4];
	assert_false(lease_mgr_is_primary(m));
	assert_int_equal(lease_grant(m, 7, 5, NULL, NULL), 0);
	assert_int_equal(lease_renew(m, 7, &ttl, NULL), MS_ENOT_LEADER);
	f.now += 1000 * S;
	assert_int_equal(lease_expired_pop(m, ids, 4), 0);
	assert_int_equal(lease_next_due(m), INT64_MAX);
	lease_ttl_info ti;
	assert_int_equal(lease_time_to_live(m, 7, &ti, NULL), 0);
	assert_false(ti.primary);
	assert_int_equal(ti.remaining_ttl, 5);
	assert_int_equal(ti.granted_ttl, 5);
	assert_int_equal(lease_mgr_check(m), 0);
	lease_mgr_del(m);
}

static void test_expiry_order(void **st)
{
	fake f = {.now = 1000 * S};
	lease_mgr *m = mk(&f);
	lease_mgr_promote(m, 0);
	int64_t ttls[] = {50, 10, 30, 20, 40};
	for (int i = 0; i < 5; i++)
		assert_int_equal(lease_grant(m, 100 + i, ttls[i], NULL, NULL), 0);
	assert_int_equal(lease_next_due(m), f.now + 10 * S);
	int64_t ids[8];
	f.now += 10 * S - 1;
	assert_int_equal(lease_expired_pop(m, ids, 8), 0);
	f.now += 1;
	assert_int_equal(lease_expired_pop(m, ids, 8), 1);
	assert_int_equal(ids[0], 101);
	assert_int_equal(lease_revoke(m, 101, NULL), 0); /* else it is returned again 3 s later */
	f.now += 100 * S;                                /* everything expired: earliest first, bounded by max */
	assert_int_equal(lease_expired_pop(m, ids, 2), 2);
	assert_int_equal(ids[0], 103);
	assert_int_equal(ids[1], 102);
	assert_int_equal(lease_expired_pop(m, ids, 8), 2);
	assert_int_equal(ids[0], 104);
	assert_int_equal(ids[1], 100);
	assert_int_equal(lease_mgr_check(m), 0);
	lease_mgr_del(m);
}

static void test_renew_resorts(void **st)
{
	fake f = {.now = 0};
	lease_mgr *m = mk(&f);
	lease_mgr_promote(m, 0);
	assert_int_equal(lease_grant(m, 1, 10, NULL, NULL), 0);
	assert_int_equal(lease_grant(m, 2, 20, NULL, NULL), 0);
	f.now = 8 * S;
	int64_t ttl = 0, ids[4];
	assert_int_equal(lease_renew(m, 1, &ttl, NULL), 0);
	assert_int_equal(ttl, 10);
	assert_int_equal(lease_next_due(m), 18 * S);
	f.now = 15 * S; /* 1 would have expired at 10 without the renew */
	assert_int_equal(lease_expired_pop(m, ids, 4), 0);
	assert_int_equal(lease_renew(m, 2, &ttl, NULL), 0); /* 2 now at 35 */
	assert_int_equal(ttl, 20);
	f.now = 19 * S;
	assert_int_equal(lease_expired_pop(m, ids, 4), 1);
	assert_int_equal(ids[0], 1);
	assert_int_equal(lease_revoke(m, 1, NULL), 0);
	f.now = 34 * S;
	assert_int_equal(lease_expired_pop(m, ids, 4), 0);
	f.now = 35 * S;
	assert_int_equal(lease_expired_pop(m, ids, 4), 1);
	assert_int_equal(ids[0], 2);
	assert_int_equal(lease_renew(m, 99, &ttl, NULL), MS_ELEASE_NOT_FOUND);
	assert_int_equal(lease_mgr_check(m), 0);
	lease_mgr_del(m);
}

static void test_expired_retry_until_revoked(void **st)
{
	fake f = {.now = 0};
	lease_cfg c = {.now = fake_now, .now_ud = &f, .retry_ns = 3 * S};
	lease_mgr *m;
	assert_int_equal(lease_mgr_new(&c, &m, NULL), 0);
	lease_mgr_promote(m, 0);
	assert_int_equal(lease_grant(m, 5, 4, NULL, NULL), 0);
	int64_t ids[4], ttl;
	f.now = 4 * S;
	/* expired but not yet revoked: it cannot be kept alive */
	assert_int_equal(lease_renew(m, 5, &ttl, NULL), MS_ELEASE_NOT_FOUND);
	assert_int_equal(lease_expired_pop(m, ids, 4), 1);
	assert_int_equal(lease_expired_pop(m, ids, 4), 0); /* proposal in flight */
	assert_int_equal(lease_next_due(m), 7 * S);
	f.now = 7 * S; /* the revoke got lost: returned again */
	assert_int_equal(lease_expired_pop(m, ids, 4), 1);
	assert_int_equal(ids[0], 5);
	lease_ttl_info ti;
	f.now = 7 * S + S / 2;
	assert_int_equal(lease_time_to_live(m, 5, &ti, NULL), 0);
	assert_int_equal(ti.remaining_ttl, -3); /* -3.5 s truncates to -3 */
	assert_int_equal(lease_revoke(m, 5, NULL), 0);
	assert_int_equal(lease_revoke(m, 5, NULL), MS_ELEASE_NOT_FOUND);
	assert_int_equal(lease_time_to_live(m, 5, &ti, NULL), MS_ELEASE_NOT_FOUND);
	f.now = 100 * S;
	assert_int_equal(lease_expired_pop(m, ids, 4), 0);
	assert_int_equal(lease_next_due(m), INT64_MAX);
	assert_int_equal(lease_mgr_check(m), 0);
	lease_mgr_del(m);
}

static void test_ttl_remaining_truncates(void **st)
{
	fake f = {.now = 0};
	lease_mgr *m = mk(&f);
	lease_mgr_promote(m, 0);
	assert_int_equal(lease_grant(m, 1, 10, NULL, NULL), 0);
	lease_ttl_info ti;
	f.now = S / 2;
	assert_int_equal(lease_time_to_live(m, 1, &ti, NULL), 0);
	assert_true(ti.primary);
	assert_int_equal(ti.remaining_ttl, 9);
	assert_int_equal(ti.remaining_ns, 9 * S + S / 2);
	assert_int_equal(ti.granted_ttl, 10);
	f.now = 10 * S + S / 2;
	assert_int_equal(lease_time_to_live(m, 1, &ti, NULL), 0);
	assert_int_equal(ti.remaining_ttl, 0);
	lease_mgr_del(m);
}

static void test_promote_extends_and_demote(void **st)
{
	fake f = {.now = 0};
	lease_mgr *m = mk(&f);
	assert_int_equal(lease_grant(m, 1, 10, NULL, NULL), 0);
	assert_int_equal(lease_grant(m, 2, 5, NULL, NULL), 0);
	f.now = 1000 * S; /* a follower for a long time: nothing expires */
	lease_mgr_promote(m, 1 * S);
	assert_true(lease_mgr_is_primary(m));
	assert_int_equal(lease_next_due(m), f.now + 6 * S);
	int64_t ids[4];
	f.now += 6 * S - 1;
	assert_int_equal(lease_expired_pop(m, ids, 4), 0);
	f.now += 1;
	assert_int_equal(lease_expired_pop(m, ids, 4), 1);
	assert_int_equal(ids[0], 2);
	lease_mgr_demote(m);
	assert_int_equal(lease_mgr_check(m), 0);
	f.now += 1000 * S;
	assert_int_equal(lease_expired_pop(m, ids, 4), 0);
	/* granted while follower, then promoted again */
	assert_int_equal(lease_grant(m, 3, 3, NULL, NULL), 0);
	lease_mgr_promote(m, 2 * S);
	assert_int_equal(lease_mgr_check(m), 0);
	f.now += 5 * S;
	assert_int_equal(lease_expired_pop(m, ids, 4), 1); /* ttl 3 + extend 2 */
	assert_int_equal(ids[0], 3);
	f.now += 2 * S; /* 2 was popped before the demote but never revoked: back again */
	assert_int_equal(lease_expired_pop(m, ids, 4), 1);
	assert_int_equal(ids[0], 2);
	lease_mgr_del(m);
}

static void test_promote_spreads_pileup(void **st)
{
	fake f = {.now = 0};
	lease_mgr *m = mk(&f);
	for (int i = 1; i <= 2000; i++)
		assert_int_equal(lease_grant(m, i, 10, NULL, NULL), 0);
	lease_mgr_promote(m, 1 * S);
	assert_int_equal(lease_mgr_check(m), 0);
	static int64_t ids[4000];
	size_t total = 0;
	f.now = 11 * S;
	size_t n = lease_expired_pop(m, ids, 4000);
	assert_int_equal(n, 750); /* 3/4 of the revoke rate per second */
	for (;;) {
		for (size_t i = 0; i < n; i++)
			assert_int_equal(lease_revoke(m, ids[i], NULL), 0);
		total += n;
		if (total == 2000 || f.now > 20 * S)
			break;
		f.now += S;
		n = lease_expired_pop(m, ids, 4000);
		assert_true(n <= 751);
	}
	assert_int_equal(total, 2000);
	lease_mgr_del(m);
}

/* ---- key attachments ---- */

typedef struct keyset {
	char k[16][32];
	size_t n;
} keyset;

static int collect(void *arg, const uint8_t *key, size_t len)
{
	keyset *ks = arg;
	assert_true(len < 32 && ks->n < 16);
	memcpy(ks->k[ks->n], key, len);
	ks->k[ks->n++][len] = 0;
	return 0;
}

static bool has(const keyset *ks, const char *k)
{
	for (size_t i = 0; i < ks->n; i++)
		if (!strcmp(ks->k[i], k))
			return true;
	return false;
}

static void ev(Mvccpb__Event *e, Mvccpb__KeyValue *kv, int type, const char *key, int64_t lease)
{
	mvccpb__event__init(e);
	mvccpb__key_value__init(kv);
	e->type = type;
	e->kv = kv;
	kv->key.data = (uint8_t *)key;
	kv->key.len = strlen(key);
	kv->lease = lease;
}

static void test_keys_follow_events(void **st)
{
	fake f = {0};
	lease_mgr *m = mk(&f);
	assert_int_equal(lease_grant(m, 1, 10, NULL, NULL), 0);
	assert_int_equal(lease_grant(m, 2, 10, NULL, NULL), 0);
	Mvccpb__Event e[5];
	Mvccpb__KeyValue kv[5];
	Mvccpb__Event *pe[5] = {&e[0], &e[1], &e[2], &e[3], &e[4]};
	ev(&e[0], &kv[0], MVCCPB__EVENT__EVENT_TYPE__PUT, "a", 1);
	ev(&e[1], &kv[1], MVCCPB__EVENT__EVENT_TYPE__PUT, "b", 1);
	ev(&e[2], &kv[2], MVCCPB__EVENT__EVENT_TYPE__PUT, "c", 2);
	ev(&e[3], &kv[3], MVCCPB__EVENT__EVENT_TYPE__PUT, "b", 2);  /* moves b to 2 */
	ev(&e[4], &kv[4], MVCCPB__EVENT__EVENT_TYPE__PUT, "d", 99); /* unknown lease: ignored */
	assert_int_equal(lease_mgr_on_events(m, pe, 5, NULL), 0);
	keyset ks = {0};
	assert_int_equal(lease_keys(m, 1, collect, &ks, NULL), 0);
	assert_int_equal(ks.n, 1);
	assert_true(has(&ks, "a"));
	memset(&ks, 0, sizeof ks);
	assert_int_equal(lease_keys(m, 2, collect, &ks, NULL), 0);
	assert_int_equal(ks.n, 2);
	assert_true(has(&ks, "b") && has(&ks, "c"));
	assert_int_equal(lease_of_key(m, (const uint8_t *)"b", 1), 2);
	assert_int_equal(lease_of_key(m, (const uint8_t *)"d", 1), 0);
	lease_ttl_info ti;
	assert_int_equal(lease_time_to_live(m, 2, &ti, NULL), 0);
	assert_int_equal(ti.nkeys, 2);
	/* put without lease and delete both detach */
	ev(&e[0], &kv[0], MVCCPB__EVENT__EVENT_TYPE__PUT, "b", 0);
	ev(&e[1], &kv[1], MVCCPB__EVENT__EVENT_TYPE__DELETE, "a", 0);
	assert_int_equal(lease_mgr_on_events(m, pe, 2, NULL), 0);
	assert_int_equal(lease_of_key(m, (const uint8_t *)"b", 1), 0);
	assert_int_equal(lease_of_key(m, (const uint8_t *)"a", 1), 0);
	memset(&ks, 0, sizeof ks);
	assert_int_equal(lease_keys(m, 1, collect, &ks, NULL), 0);
	assert_int_equal(ks.n, 0);
	/* revoke forgets the attachments; the engine's DELETE events that follow are no-ops */
	assert_int_equal(lease_revoke(m, 2, NULL), 0);
	assert_int_equal(lease_of_key(m, (const uint8_t *)"c", 1), 0);
	ev(&e[0], &kv[0], MVCCPB__EVENT__EVENT_TYPE__DELETE, "c", 0);
	assert_int_equal(lease_mgr_on_events(m, pe, 1, NULL), 0);
	assert_int_equal(lease_keys(m, 2, collect, &ks, NULL), MS_ELEASE_NOT_FOUND);
	assert_int_equal(lease_attach(m, (const uint8_t *)"x", 1, 42, NULL), MS_ELEASE_NOT_FOUND);
	/* binary keys with NULs */
	const uint8_t bk[3] = {0, 0xff, 0};
	assert_int_equal(lease_attach(m, bk, 3, 1, NULL), 0);
	assert_int_equal(lease_of_key(m, bk, 3), 1);
	assert_int_equal(lease_of_key(m, bk, 2), 0);
	assert_int_equal(lease_mgr_check(m), 0);
	lease_mgr_del(m);
}

static void test_load_and_list(void **st)
{
	fake f = {0};
	lease_mgr *m = mk(&f);
	const uint8_t *keys[2] = {(const uint8_t *)"k1", (const uint8_t *)"k2"};
	size_t lens[2] = {2, 2};
	assert_int_equal(lease_mgr_load(m, 10, 1, keys, lens, 2), 0);
	assert_int_equal(lease_mgr_load(m, 11, 60, NULL, NULL, 0), 0);
	assert_int_equal(lease_mgr_load(m, 11, 60, NULL, NULL, 0), MS_ELEASE_EXISTS);
	lease_ttl_info ti;
	assert_int_equal(lease_time_to_live(m, 10, &ti, NULL), 0);
	assert_int_equal(ti.granted_ttl, 2);
	assert_int_equal(ti.nkeys, 2);
	int64_t *ids;
	size_t n;
	assert_int_equal(lease_list(m, &ids, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_true((ids[0] == 10 && ids[1] == 11) || (ids[0] == 11 && ids[1] == 10));
	ms_free(ids);
	lease_mgr *e = mk(&f);
	assert_int_equal(lease_list(e, &ids, &n, NULL), 0);
	assert_int_equal(n, 0);
	assert_null(ids);
	lease_mgr_del(e);
	lease_mgr_del(m);
}

static void test_next_id(void **st)
{
	fake f = {.rnd = {0, 5, (uint64_t)-5, 77}, .nrnd = 4, .x = 1};
	lease_mgr *m = mk(&f);
	int64_t id;
	assert_int_equal(lease_mgr_next_id(m, &id, NULL), 0); /* skips 0 */
	assert_int_equal(id, 5);
	assert_int_equal(lease_grant(m, id, 10, NULL, NULL), 0);
	assert_int_equal(lease_mgr_next_id(m, &id, NULL), 0); /* sign bit cleared */
	assert_true(id > 0);
	assert_int_equal(id, (int64_t)((uint64_t)-5 & (uint64_t)INT64_MAX));
	f.irnd = 1; /* 5 again: in use, skipped */
	assert_int_equal(lease_mgr_next_id(m, &id, NULL), 0);
	assert_int_equal(id, (int64_t)((uint64_t)-5 & (uint64_t)INT64_MAX));
	lease_mgr_del(m);
	lease_cfg c = {.now = fake_now, .now_ud = &f};
	assert_int_equal(lease_mgr_new(&c, &m, NULL), 0);
	assert_int_equal(lease_mgr_next_id(m, &id, NULL), MS_EINVAL);
	lease_mgr_del(m);
	assert_int_equal(lease_mgr_new(&(lease_cfg){0}, &m, NULL), MS_EINVAL);
}

/* Random grant/renew/revoke/pop/promote/demote against the invariants. */
static void test_random_ops_invariant(void **st)
{
	fake f = {.now = 0};
	lease_mgr *m = mk(&f);
	lease_mgr_promote(m, 0);
	uint64_t x = 88172645463325252ULL;
	long nops = env_scale(200000);
	int64_t ids[64];
	for (long i = 0; i < nops; i++) {
		int64_t id = (int64_t)(xs(&x) % 5000) + 1;
		switch (xs(&x) % 10) {
		case 0:
		case 1:
		case 2:
			lease_grant(m, id, (int64_t)(xs(&x) % 100), NULL, NULL);
			break;
		case 3:
		case 4:
		case 5: {
			int64_t ttl;
			lease_renew(m, id, &ttl, NULL);
			break;
		}
		case 6:
			lease_revoke(m, id, NULL);
			break;
		case 7: {
			size_t n = lease_expired_pop(m, ids, 64);
			for (size_t k = 0; k < n; k++) /* expired really means expiry <= now */
				assert_int_equal(lease_renew(m, ids[k], NULL, NULL), MS_ELEASE_NOT_FOUND);
			if (n)
				lease_revoke(m, ids[xs(&x) % n], NULL);
			break;
		}
		case 8:
			f.now += (int64_t)(xs(&x) % (3 * S));
			break;
		case 9:
			if (xs(&x) % 500 == 0)
				lease_mgr_demote(m);
			else if (!lease_mgr_is_primary(m))
				lease_mgr_promote(m, S);
			break;
		}
		if (i % 20000 == 0)
			assert_int_equal(lease_mgr_check(m), 0);
	}
	assert_int_equal(lease_mgr_check(m), 0);
	lease_mgr_del(m);
}

/* A million leases: expiry pops come out in non-decreasing expiry order. */
static void test_million_leases(void **st)
{
	fake f = {.now = 0};
	lease_mgr *m = mk(&f);
	lease_mgr_promote(m, 0);
	long n = env_scale(1000000);
	uint64_t x = 2463534242ULL;
	for (long i = 1; i <= n; i++)
		assert_int_equal(lease_grant(m, i, (int64_t)(xs(&x) % 3600) + 2, NULL, NULL), 0);
	/* renew a third of them a bit later */
	f.now = 100 * S;
	for (long i = 0; i < n / 3; i++) {
		int64_t id = (int64_t)(xs(&x) % (uint64_t)n) + 1;
		int64_t ttl;
		int rc = lease_renew(m, id, &ttl, NULL);
		assert_true(rc == 0 || rc == MS_ELEASE_NOT_FOUND);
	}
	assert_int_equal(lease_mgr_check(m), 0);
	for (long i = 1; i <= n; i += 7)
		assert_int_equal(lease_revoke(m, i, NULL), 0);
	long left = n - (n + 6) / 7;
	assert_int_equal(lease_count(m), (size_t)left);
	assert_int_equal(lease_mgr_check(m), 0);
	/* pop everything: each batch's expiries are <= the clock and ordered */
	f.now = 4000 * S;
	static int64_t ids[4096];
	int64_t last = INT64_MIN;
	long popped = 0;
	size_t k;
	while ((k = lease_expired_pop(m, ids, 4096)) > 0) {
		for (size_t j = 0; j < k; j++) {
			lease_ttl_info ti;
			assert_int_equal(lease_time_to_live(m, ids[j], &ti, NULL), 0);
			int64_t exp = f.now + ti.remaining_ns;
			assert_true(exp >= last);
			last = exp;
			assert_int_equal(lease_revoke(m, ids[j], NULL), 0);
		}
		popped += (long)k;
	}
	assert_int_equal(popped, left);
	assert_int_equal(lease_count(m), 0);
	lease_mgr_del(m);
}

/* Every allocation failure in a scenario leaves a consistent manager. */
static void test_alloc_failures(void **st)
{
	for (long fail = 1; fail < 200; fail++) {
		fake f = {0};
		lease_mgr *m = NULL;
		lease_cfg c = {.now = fake_now, .now_ud = &f};
		ms_alloc_fail_after(fail);
		if (lease_mgr_new(&c, &m, NULL) != 0) {
			ms_alloc_fail_after(0);
			continue;
		}
		lease_mgr_promote(m, 0);
		for (int i = 1; i <= 40; i++) {
			lease_grant(m, i, 10, NULL, NULL);
			char k[8];
			snprintf(k, sizeof k, "k%d", i);
			lease_attach(m, (const uint8_t *)k, strlen(k), i, NULL);
		}
		int64_t *ids;
		size_t n;
		lease_list(m, &ids, &n, NULL);
		ms_alloc_fail_after(0);
		ms_free(ids);
		lease_mgr_demote(m);
		lease_mgr_promote(m, 0);
		assert_int_equal(lease_mgr_check(m), 0);
		lease_mgr_del(m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_min_ttl_formula),         cmocka_unit_test(test_grant_bounds),
	    cmocka_unit_test(test_follower_has_no_clock),   cmocka_unit_test(test_expiry_order),
	    cmocka_unit_test(test_renew_resorts),           cmocka_unit_test(test_expired_retry_until_revoked),
	    cmocka_unit_test(test_ttl_remaining_truncates), cmocka_unit_test(test_promote_extends_and_demote),
	    cmocka_unit_test(test_promote_spreads_pileup),  cmocka_unit_test(test_keys_follow_events),
	    cmocka_unit_test(test_load_and_list),           cmocka_unit_test(test_next_id),
	    cmocka_unit_test(test_random_ops_invariant),    cmocka_unit_test(test_million_leases),
	    cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
