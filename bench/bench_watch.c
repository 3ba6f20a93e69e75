/* bench_watch.c — watch hub with 100k watchers (exact and prefix, etcd
 * registry-like keys): match rate and feed (match + group) rate. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/ms.h"
#include "kv.pb-c.h"
#include "watch/watch.h"

#define S 1000000000LL

static int64_t fake_now(void *ud)
{
	return 0;
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

static uint64_t xs(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* /registry/<type 0..19>/<ns 0..99>/<name 0..4999> */
static size_t mkkey(char *buf, uint64_t r, int depth)
{
	unsigned t = r % 20, ns = (r >> 8) % 100, name = (r >> 20) % 5000;
	if (depth == 1)
		return (size_t)sprintf(buf, "/registry/t%u/", t);
	if (depth == 2)
		return (size_t)sprintf(buf, "/registry/t%u/ns%u/", t, ns);
	return (size_t)sprintf(buf, "/registry/t%u/ns%u/obj%u", t, ns, name);
}

static void count_fn(void *arg, const watch_info *w)
{
	(*(size_t *)arg)++;
}

typedef struct result {
	const char *name;
	long ops;
	double secs, p50, p95, p99;
	double avg_matches;
} result;

static void summarise(result *r, int64_t *lat, long n, int64_t total)
{
	qsort(lat, (size_t)n, sizeof *lat, cmp64);
	r->secs = (double)total / 1e9;
	r->p50 = (double)lat[n / 2];
	r->p95 = (double)lat[(long)((double)n * 0.95)];
	r->p99 = (double)lat[(long)((double)n * 0.99)];
}

int main(int argc, char **argv)
{
	long nw = argc > 1 ? atol(argv[1]) : 100000, nq = 1000000;
	watch_cfg cfg = {.now = fake_now, .rev = 1};
	watch_hub *h;
	watch_stream *ws;
	if (watch_hub_new(&cfg, &h, NULL) || watch_stream_open(h, NULL, &ws, NULL))
		return 1;
	uint64_t x = 0x9E3779B97F4A7C15ULL;
	char k[128], e[128];
	long nprefix = 0;
	for (long i = 0; i < nw; i++) {
		uint64_t r = xs(&x);
		watch_spec sp = {0};
		/* 80 % exact keys, 20 % prefixes: per namespace, and 0.2 % per type
		 * (cluster-wide watches, which every event of their type hits) */
		int kind = (int)(xs(&x) % 1000);
		size_t kl = mkkey(k, r, kind < 800 ? 3 : kind < 998 ? 2 : 1);
		sp.key = (const uint8_t *)k;
		sp.key_len = kl;
		if (kind >= 800) {
			memcpy(e, k, kl);
			e[kl - 1]++;
			sp.range_end = (const uint8_t *)e;
			sp.range_end_len = kl;
			nprefix++;
		}
		int64_t id;
		if (watch_hub_add(h, ws, &sp, &id, NULL, NULL))
			return 1;
	}
	int64_t *lat = malloc((size_t)nq * sizeof *lat);
	result res[2];
	size_t matches = 0;
	int64_t t0 = mono();
	for (long i = 0; i < nq; i++) {
		size_t kl = mkkey(k, xs(&x), 3);
		int64_t a = mono();
		watch_hub_match(h, (const uint8_t *)k, kl, count_fn, &matches);
		lat[i] = mono() - a;
	}
	res[0] = (result){.name = "match", .ops = nq, .avg_matches = (double)matches / (double)nq};
	summarise(&res[0], lat, nq, mono() - t0);

	/* feed: txns of 4 events each, grouped per watcher */
	long nt = nq / 4;
	Mvccpb__Event ev[4];
	Mvccpb__KeyValue kv[4];
	Mvccpb__Event *pev[4];
	char keys[4][128];
	watch_batch b;
	watch_batch_init(&b);
	size_t outs = 0;
	t0 = mono();
	for (long i = 0; i < nt; i++) {
		for (int j = 0; j < 4; j++) {
			mvccpb__event__init(&ev[j]);
			mvccpb__key_value__init(&kv[j]);
			kv[j].key.len = mkkey(keys[j], xs(&x), 3);
			kv[j].key.data = (uint8_t *)keys[j];
			ev[j].kv = &kv[j];
			pev[j] = &ev[j];
		}
		int64_t a = mono();
		if (watch_hub_feed(h, 2 + i, pev, 4, &b, NULL))
			return 1;
		lat[i] = mono() - a;
		outs += b.n;
	}
	res[1] = (result){.name = "feed_txn4", .ops = nt, .avg_matches = (double)outs / (double)nt};
	summarise(&res[1], lat, nt, mono() - t0);

	printf("watch hub, %ld watchers (%ld prefix)\n%-12s %14s %10s %10s %10s %12s\n", nw, nprefix, "op", "ops/s",
	       "p50 ns", "p95 ns", "p99 ns", "avg hits");
	for (int i = 0; i < 2; i++)
		printf("%-12s %14.0f %10.0f %10.0f %10.0f %12.2f\n", res[i].name, (double)res[i].ops / res[i].secs,
		       res[i].p50, res[i].p95, res[i].p99, res[i].avg_matches);
	if (mkdir("bench/results", 0755) && errno != EEXIST)
		perror("mkdir bench/results");
	FILE *f = fopen("bench/results/bench_watch.json", "w");
	if (f) {
		fprintf(f, "{\"bench\":\"watch\",\"watchers\":%ld,\"prefix_watchers\":%ld,\"results\":[", nw, nprefix);
		for (int i = 0; i < 2; i++)
			fprintf(f,
			        "%s{\"op\":\"%s\",\"ops\":%ld,\"ops_per_sec\":%.0f,\"p50_ns\":%.0f,\"p95_ns\":%.0f,"
			        "\"p99_ns\":%.0f,"
			        "\"avg_hits\":%.2f}",
			        i ? "," : "", res[i].name, res[i].ops, (double)res[i].ops / res[i].secs, res[i].p50,
			        res[i].p95, res[i].p99, res[i].avg_matches);
		fprintf(f, "]}\n");
		fclose(f);
	}
	watch_batch_free(&b);
	free(lat);
	watch_stream_close(ws);
	watch_hub_del(h);
	return 0;
}
