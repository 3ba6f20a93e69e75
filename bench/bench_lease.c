/* bench_lease.c — lease manager core with 1M leases: grant, renew and
 * expire-pop(+revoke) rates with per-operation p50/p95/p99 latency. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/ms.h"
#include "lease/lease.h"

#define S 1000000000LL

static int64_t fake_clock;
static int64_t fake_now(void *ud)
{
	return fake_clock;
}

static int64_t mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * S + ts.tv_nsec;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

typedef struct result {
	const char *name;
	long ops;
	double secs, p50, p95, p99;
} result;

static void summarise(result *r, int64_t *lat, long n, int64_t total_ns)
{
	qsort(lat, (size_t)n, sizeof *lat, cmp64);
	r->secs = (double)total_ns / 1e9;
	r->p50 = (double)lat[n / 2];
	r->p95 = (double)lat[(long)((double)n * 0.95)];
	r->p99 = (double)lat[(long)((double)n * 0.99)];
}

static uint64_t xs(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	lease_cfg cfg = {.now = fake_now};
	lease_mgr *m;
	if (lease_mgr_new(&cfg, &m, NULL))
		return 1;
	lease_mgr_promote(m, 0);
	int64_t *lat = malloc((size_t)n * sizeof *lat);
	result res[3];
	uint64_t x = 88172645463325252ULL;

	/* grant */
	int64_t t0 = mono();
	for (long i = 0; i < n; i++) {
		int64_t a = mono();
		if (lease_grant(m, i + 1, (int64_t)(xs(&x) % 3600) + 5, NULL, NULL))
			return 1;
		lat[i] = mono() - a;
	}
	res[0] = (result){.name = "grant", .ops = n};
	summarise(&res[0], lat, n, mono() - t0);

	/* renew (keep-alive) of random leases */
	fake_clock = 2 * S;
	t0 = mono();
	for (long i = 0; i < n; i++) {
		int64_t id = (int64_t)(xs(&x) % (uint64_t)n) + 1, ttl;
		int64_t a = mono();
		if (lease_renew(m, id, &ttl, NULL))
			return 1;
		lat[i] = mono() - a;
	}
	res[1] = (result){.name = "renew", .ops = n};
	summarise(&res[1], lat, n, mono() - t0);

	/* expire: pop batches of 500 (the leader's per-tick limit) and revoke
	 * each, as the apply of the proposed revokes would; latency per lease */
	fake_clock = 10000 * S;
	static int64_t ids[500];
	long done = 0, k = 0;
	t0 = mono();
	for (;;) {
		int64_t a = mono();
		size_t got = lease_expired_pop(m, ids, 500);
		for (size_t j = 0; j < got; j++)
			lease_revoke(m, ids[j], NULL);
		int64_t d = mono() - a;
		if (!got)
			break;
		for (size_t j = 0; j < got; j++)
			lat[k++] = d / (int64_t)got;
		done += (long)got;
	}
	res[2] = (result){.name = "expire_pop+revoke", .ops = done};
	summarise(&res[2], lat, done, mono() - t0);
	if (done != n || lease_count(m) != 0)
		return 1;

	printf("lease manager, %ld leases\n%-20s %14s %10s %10s %10s\n", n, "op", "ops/s", "p50 ns", "p95 ns",
	       "p99 ns");
	for (int i = 0; i < 3; i++)
		printf("%-20s %14.0f %10.0f %10.0f %10.0f\n", res[i].name, (double)res[i].ops / res[i].secs, res[i].p50,
		       res[i].p95, res[i].p99);
	if (mkdir("bench/results", 0755) && errno != EEXIST)
		perror("mkdir bench/results");
	FILE *f = fopen("bench/results/bench_lease.json", "w");
	if (f) {
		fprintf(f, "{\"bench\":\"lease\",\"leases\":%ld,\"results\":[", n);
		for (int i = 0; i < 3; i++)
			fprintf(f,
			        "%s{\"op\":\"%s\",\"ops\":%ld,\"ops_per_sec\":%.0f,\"p50_ns\":%.0f,\"p95_ns\":%.0f,"
			        "\"p99_ns\":%.0f}",
			        i ? "," : "", res[i].name, res[i].ops, (double)res[i].ops / res[i].secs, res[i].p50,
			        res[i].p95, res[i].p99);
		fprintf(f, "]}\n");
		fclose(f);
	}
	free(lat);
	lease_mgr_del(m);
	return 0;
}
