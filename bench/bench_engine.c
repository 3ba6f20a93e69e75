/* bench_engine.c — engine micro benchmark: Put (one op per apply batch,
 * as a lightly loaded apply thread commits) and point Range, with p50/p99
 * latency. Usage: bench_engine [--keys N] [--value-size N] [--batch N]
 * --batch N also measures puts applied N per batch (what the server's apply
 * thread does under many clients). Prints a table and writes
 * bench/results/engine.json. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/engine.h"

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

typedef struct result {
	const char *name;
	double ops;
	double p50_us, p99_us;
} result;

static result summarize(const char *name, int64_t *lat, size_t n, int64_t total_ns)
{
	qsort(lat, n, sizeof *lat, cmp_i64);
	result r = {name, (double)n / ((double)total_ns / 1e9), (double)lat[n / 2] / 1e3,
	            (double)lat[(size_t)((double)n * 0.99)] / 1e3};
	return r;
}

int main(int argc, char **argv)
{
	size_t keys = 50000, vsize = 256, batch = 64;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--keys") && i + 1 < argc)
			keys = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--value-size") && i + 1 < argc)
			vsize = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
			batch = strtoull(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: %s [--keys N] [--value-size N] [--batch N]\n", argv[0]);
			return 2;
		}
	}
	if (keys == 0)
		keys = 1;
	if (batch == 0)
		batch = 1;
	char dir[] = "/tmp/bench_engine.XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	char path[64];
	snprintf(path, sizeof path, "%s/db", dir);
	engine *e;
	ms_err err = {0};
	engine_opts o = {.create_if_missing = true};
	if (engine_open(path, &o, &e, &err)) {
		fprintf(stderr, "engine_open: %s\n", err.msg);
		return 1;
	}
	uint8_t *val = malloc(vsize ? vsize : 1);
	memset(val, 'v', vsize);
	int64_t *lat = malloc(keys * sizeof *lat);
	char key[32];
	srand(1);

	/* Put: one op per committed batch */
	int64_t t0 = ms_now_mono_ns();
	for (size_t i = 0; i < keys; i++) {
		int64_t s = ms_now_mono_ns();
		snprintf(key, sizeof key, "/bench/key/%012zu", (size_t)rand() % keys);
		Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
		p.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
		p.value = (ProtobufCBinaryData){vsize, val};
		engine_apply *a;
		Etcdserverpb__PutResponse *resp;
		if (engine_apply_begin(e, NULL, NULL, &a, &err) || engine_apply_put(a, &p, &resp, &err) ||
		    engine_apply_commit(a, i + 1, &err)) {
			fprintf(stderr, "put: %s\n", err.msg);
			return 1;
		}
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		lat[i] = ms_now_mono_ns() - s;
	}
	result put = summarize("put", lat, keys, ms_now_mono_ns() - t0);

	/* Put, batch ops per committed batch; latency is per op */
	t0 = ms_now_mono_ns();
	for (size_t i = 0; i < keys; i += batch) {
		int64_t s = ms_now_mono_ns();
		size_t n = keys - i < batch ? keys - i : batch;
		engine_apply *a;
		if (engine_apply_begin(e, NULL, NULL, &a, &err)) {
			fprintf(stderr, "begin: %s\n", err.msg);
			return 1;
		}
		for (size_t j = 0; j < n; j++) {
			snprintf(key, sizeof key, "/bench/key/%012zu", (size_t)rand() % keys);
			Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
			p.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
			p.value = (ProtobufCBinaryData){vsize, val};
			Etcdserverpb__PutResponse *resp;
			if (engine_apply_put(a, &p, &resp, &err)) {
				fprintf(stderr, "put: %s\n", err.msg);
				return 1;
			}
			protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		}
		if (engine_apply_commit(a, keys + i + n, &err)) {
			fprintf(stderr, "commit: %s\n", err.msg);
			return 1;
		}
		int64_t per = (ms_now_mono_ns() - s) / (int64_t)n;
		for (size_t j = 0; j < n; j++)
			lat[i + j] = per;
	}
	result putb = summarize("putb", lat, keys, ms_now_mono_ns() - t0);

	/* Get: point Range at the current revision */
	t0 = ms_now_mono_ns();
	for (size_t i = 0; i < keys; i++) {
		int64_t s = ms_now_mono_ns();
		snprintf(key, sizeof key, "/bench/key/%012zu", (size_t)rand() % keys);
		Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
		r.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
		Etcdserverpb__RangeResponse *resp;
		if (engine_range(e, &r, &resp, &err)) {
			fprintf(stderr, "range: %s\n", err.msg);
			return 1;
		}
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		lat[i] = ms_now_mono_ns() - s;
	}
	result get = summarize("get", lat, keys, ms_now_mono_ns() - t0);

	printf("engine benchmark: %zu ops each, value %zu bytes, putb = %zu puts per batch\n", keys, vsize, batch);
	printf("%-6s %12s %10s %10s\n", "op", "ops/s", "p50 us", "p99 us");
	result rs[] = {put, putb, get};
	size_t nrs = sizeof rs / sizeof rs[0];
	for (size_t i = 0; i < nrs; i++)
		printf("%-6s %12.0f %10.2f %10.2f\n", rs[i].name, rs[i].ops, rs[i].p50_us, rs[i].p99_us);

	mkdir("bench", 0755);
	mkdir("bench/results", 0755);
	FILE *f = fopen("bench/results/engine.json", "w");
	if (f) {
		fprintf(f, "{\n  \"keys\": %zu,\n  \"value_size\": %zu,\n  \"batch\": %zu,\n", keys, vsize, batch);
		for (size_t i = 0; i < nrs; i++)
			fprintf(f, "  \"%s\": {\"ops_per_sec\": %.0f, \"p50_us\": %.2f, \"p99_us\": %.2f}%s\n",
			        rs[i].name, rs[i].ops, rs[i].p50_us, rs[i].p99_us, i + 1 < nrs ? "," : "");
		fprintf(f, "}\n");
		fclose(f);
	}
	engine_close(e);
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(val);
	free(lat);
	return 0;
}
