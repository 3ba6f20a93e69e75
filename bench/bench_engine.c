/* bench_engine.c — engine micro benchmark, ops/s and p50/p95/p99 latency of:
 *   put    one Put per apply batch (a lightly loaded apply thread)
 *   putb   --batch N Puts per apply batch (the apply thread under many
 *          clients); latency is the batch time / N
 *   get    point Range of a random key at the current revision
 *   range  Range [k, end) over --range-len consecutive existing keys, limit
 *          --range-len (one page of a prefix listing); keys/10 ops, >= 200
 *   txn    Txn "mod_revision(k) == last seen ? put k : get k", one per apply
 *          batch through engine_apply_txn (how the server applies it)
 *   codec  engine_kv_encode + engine_kv_decode of one KeyValue with a
 *          --value-size value; 16 * keys round trips timed 64 at a time
 *          (latency = batch time / 64: a single one is too short to time)
 * Usage: bench_engine [--keys N] [--value-size N] [--batch N] [--range-len N]
 *   --keys N        key space and ops per put/putb/get/txn row (50000)
 *   --value-size N  value bytes (256)
 *   --batch N       puts per apply batch in putb (64)
 *   --range-len N   keys per range (100)
 * Prints a table and writes bench/results/engine.json (relative to the
 * working directory). */
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

#define CODEC_BATCH 64 /* codec round trips per timed sample */

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
	double p50_us, p95_us, p99_us;
} result;

/* The q-quantile of sorted lat[0..n) (n > 0) divided by per, in us. */
static double pct_us(const int64_t *lat, size_t n, double q, double per)
{
	size_t i = (size_t)((double)n * q);
	return (double)lat[i < n ? i : n - 1] / per / 1e3;
}

/* nops operations took total_ns; lat holds nlat latency samples, each the
 * time of per ops (per > 1 for ops too short to time one by one). */
static result summarize(const char *name, int64_t *lat, size_t nlat, size_t per, size_t nops, int64_t total_ns)
{
	qsort(lat, nlat, sizeof *lat, cmp_i64);
	double d = (double)per;
	result r = {name, (double)nops / ((double)(total_ns > 0 ? total_ns : 1) / 1e9), pct_us(lat, nlat, 0.50, d),
	            pct_us(lat, nlat, 0.95, d), pct_us(lat, nlat, 0.99, d)};
	return r;
}

/* State shared by the phases: the store, the value written, what is known
 * about each key index (written at all, last mod revision) and the next
 * consistent index to commit with. */
typedef struct bench {
	engine *e;
	size_t keys, vsize, batch, range_len;
	uint8_t *val;
	uint8_t *present; /* [keys]: key i has been written */
	int64_t *modrev;  /* [keys]: key i's mod revision, 0 = never written */
	int64_t *lat;     /* latency samples, one phase at a time */
	uint64_t ci;
	ms_err err;
} bench;

static size_t key_fmt(char *buf, size_t cap, size_t i)
{
	return (size_t)snprintf(buf, cap, "/bench/key/%012zu", i);
}

/* Records a successful put of key i (the response's revision is its mod
 * revision: every put bumps the main revision). */
static void note_put(bench *b, size_t i, const Etcdserverpb__PutResponse *resp)
{
	b->present[i] = 1;
	if (resp->header)
		b->modrev[i] = resp->header->revision;
}

static int bench_put(bench *b, result *out)
{
	char key[32];
	int64_t t0 = ms_now_mono_ns();
	for (size_t i = 0; i < b->keys; i++) {
		int64_t s = ms_now_mono_ns();
		size_t k = (size_t)rand() % b->keys;
		Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
		p.key = (ProtobufCBinaryData){key_fmt(key, sizeof key, k), (uint8_t *)key};
		p.value = (ProtobufCBinaryData){b->vsize, b->val};
		engine_apply *a;
		Etcdserverpb__PutResponse *resp;
		if (engine_apply_begin(b->e, NULL, NULL, &a, &b->err))
			return -1;
		if (engine_apply_put(a, &p, &resp, &b->err)) {
			engine_apply_abort(a);
			return -1;
		}
		note_put(b, k, resp);
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		if (engine_apply_commit(a, ++b->ci, &b->err))
			return -1;
		b->lat[i] = ms_now_mono_ns() - s;
	}
	*out = summarize("put", b->lat, b->keys, 1, b->keys, ms_now_mono_ns() - t0);
	return 0;
}

/* batch puts per committed batch; latency is per op */
static int bench_putb(bench *b, result *out)
{
	char key[32];
	int64_t t0 = ms_now_mono_ns();
	for (size_t i = 0; i < b->keys; i += b->batch) {
		int64_t s = ms_now_mono_ns();
		size_t n = b->keys - i < b->batch ? b->keys - i : b->batch;
		engine_apply *a;
		if (engine_apply_begin(b->e, NULL, NULL, &a, &b->err))
			return -1;
		for (size_t j = 0; j < n; j++) {
			size_t k = (size_t)rand() % b->keys;
			Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
			p.key = (ProtobufCBinaryData){key_fmt(key, sizeof key, k), (uint8_t *)key};
			p.value = (ProtobufCBinaryData){b->vsize, b->val};
			Etcdserverpb__PutResponse *resp;
			if (engine_apply_put(a, &p, &resp, &b->err)) {
				engine_apply_abort(a);
				return -1;
			}
			note_put(b, k, resp);
			protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		}
		b->ci += n; /* one raft entry per put */
		if (engine_apply_commit(a, b->ci, &b->err))
			return -1;
		int64_t per = (ms_now_mono_ns() - s) / (int64_t)n;
		for (size_t j = 0; j < n; j++)
			b->lat[i + j] = per;
	}
	*out = summarize("putb", b->lat, b->keys, 1, b->keys, ms_now_mono_ns() - t0);
	return 0;
}

/* point Range at the current revision; about 1/e of the keys were never
 * written (random keys), as a client's misses */
static int bench_get(bench *b, result *out)
{
	char key[32];
	int64_t t0 = ms_now_mono_ns();
	for (size_t i = 0; i < b->keys; i++) {
		int64_t s = ms_now_mono_ns();
		Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
		r.key = (ProtobufCBinaryData){key_fmt(key, sizeof key, (size_t)rand() % b->keys), (uint8_t *)key};
		Etcdserverpb__RangeResponse *resp;
		if (engine_range(b->e, &r, &resp, &b->err))
			return -1;
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		b->lat[i] = ms_now_mono_ns() - s;
	}
	*out = summarize("get", b->lat, b->keys, 1, b->keys, ms_now_mono_ns() - t0);
	return 0;
}

/* Range over range_len consecutive existing keys: [key(first), key(last + 1))
 * with limit range_len, so every call returns exactly range_len kvs (checked)
 * and the count covers only the span. */
static int bench_range(bench *b, size_t nops, result *out)
{
	size_t npresent = 0;
	for (size_t i = 0; i < b->keys; i++)
		npresent += b->present[i];
	size_t *idx = ms_malloc((npresent ? npresent : 1) * sizeof *idx);
	if (!idx) {
		ms_err_set(&b->err, MS_ENOMEM, "range: out of memory");
		return -1;
	}
	for (size_t i = 0, j = 0; i < b->keys; i++)
		if (b->present[i])
			idx[j++] = i;
	if (npresent == 0) { /* the put phases always write some key */
		ms_free(idx);
		ms_err_set(&b->err, MS_EINVAL, "range: no keys written");
		return -1;
	}
	size_t len = b->range_len < npresent ? b->range_len : npresent;
	b->range_len = len; /* what is reported: fewer keys exist than asked */
	char key[32], end[32];
	int rc = 0;
	int64_t t0 = ms_now_mono_ns();
	for (size_t i = 0; i < nops; i++) {
		int64_t s = ms_now_mono_ns();
		size_t first = (size_t)rand() % (npresent - len + 1);
		Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
		r.key = (ProtobufCBinaryData){key_fmt(key, sizeof key, idx[first]), (uint8_t *)key};
		size_t last = idx[first + len - 1];
		r.range_end = (ProtobufCBinaryData){key_fmt(end, sizeof end, last + 1), (uint8_t *)end};
		r.limit = (int64_t)len;
		Etcdserverpb__RangeResponse *resp;
		if ((rc = engine_range(b->e, &r, &resp, &b->err)))
			goto out_idx;
		size_t got = resp->n_kvs;
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		if (got != len) {
			rc = ms_err_set(&b->err, MS_EINVAL, "range returned %zu kvs, want %zu", got, len);
			goto out_idx;
		}
		b->lat[i] = ms_now_mono_ns() - s;
	}
	*out = summarize("range", b->lat, nops, 1, nops, ms_now_mono_ns() - t0);
out_idx:
	ms_free(idx);
	return rc ? -1 : 0;
}

/* Compare-and-swap txns, one per apply batch: if mod_revision(k) equals the
 * revision last seen for k (0 for a key never written, as etcd compares a
 * missing key), put k, else get k. All should succeed; *failed counts those
 * that did not. */
static int bench_txn(bench *b, size_t *failed, result *out)
{
	char key[32];
	*failed = 0;
	int64_t t0 = ms_now_mono_ns();
	for (size_t i = 0; i < b->keys; i++) {
		int64_t s = ms_now_mono_ns();
		size_t k = (size_t)rand() % b->keys;
		ProtobufCBinaryData kb = {key_fmt(key, sizeof key, k), (uint8_t *)key};
		Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
		cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
		cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
		cmp.key = kb;
		cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
		cmp.mod_revision = b->modrev[k];
		Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
		put.key = kb;
		put.value = (ProtobufCBinaryData){b->vsize, b->val};
		Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT;
		get.key = kb;
		Etcdserverpb__RequestOp ok = ETCDSERVERPB__REQUEST_OP__INIT, ko = ETCDSERVERPB__REQUEST_OP__INIT;
		ok.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
		ok.request_put = &put;
		ko.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
		ko.request_range = &get;
		Etcdserverpb__Compare *cmps[] = {&cmp};
		Etcdserverpb__RequestOp *oks[] = {&ok}, *kos[] = {&ko};
		Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
		t.n_compare = 1;
		t.compare = cmps;
		t.n_success = 1;
		t.success = oks;
		t.n_failure = 1;
		t.failure = kos;

		engine_apply *a;
		Etcdserverpb__TxnResponse *resp;
		if (engine_apply_begin(b->e, NULL, NULL, &a, &b->err))
			return -1;
		if (engine_apply_txn(a, &t, &resp, &b->err)) {
			engine_apply_abort(a);
			return -1;
		}
		if (resp->succeeded && resp->header) {
			b->present[k] = 1;
			b->modrev[k] = resp->header->revision;
		} else {
			(*failed)++;
		}
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		if (engine_apply_commit(a, ++b->ci, &b->err))
			return -1;
		b->lat[i] = ms_now_mono_ns() - s;
	}
	*out = summarize("txn", b->lat, b->keys, 1, b->keys, ms_now_mono_ns() - t0);
	return 0;
}

/* Encode + strict decode of one KeyValue, timed CODEC_BATCH at a time. */
static int bench_codec(bench *b, size_t nbatches, result *out)
{
	char key[32];
	engine_kv kv = {.key = (const uint8_t *)key,
	                .key_len = key_fmt(key, sizeof key, 0),
	                .value = b->val,
	                .value_len = b->vsize,
	                .create_rev = 1234,
	                .mod_rev = 5678,
	                .version = 3,
	                .lease = 0};
	size_t need = engine_kv_encode(&kv, NULL, 0);
	uint8_t *buf = ms_malloc(need);
	if (!buf) {
		ms_err_set(&b->err, MS_ENOMEM, "codec: out of memory");
		return -1;
	}
	int rc = 0;
	volatile int64_t sink = 0; /* keeps the decode from being optimized away */
	int64_t t0 = ms_now_mono_ns();
	for (size_t i = 0; i < nbatches; i++) {
		int64_t s = ms_now_mono_ns();
		for (int j = 0; j < CODEC_BATCH; j++) {
			kv.mod_rev++;
			engine_kv dec;
			if (engine_kv_encode(&kv, buf, need) != need || engine_kv_decode(buf, need, &dec)) {
				rc = ms_err_set(&b->err, MS_ECORRUPT, "codec: round trip failed");
				goto out_buf;
			}
			sink += dec.mod_rev + (int64_t)dec.value_len;
		}
		b->lat[i] = ms_now_mono_ns() - s;
	}
	*out = summarize("codec", b->lat, nbatches, CODEC_BATCH, nbatches * CODEC_BATCH, ms_now_mono_ns() - t0);
	if (sink == 0)
		rc = ms_err_set(&b->err, MS_EINVAL, "codec: decoded nothing");
out_buf:
	ms_free(buf);
	return rc ? -1 : 0;
}

int main(int argc, char **argv)
{
	size_t keys = 50000, vsize = 256, batch = 64, range_len = 100;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--keys") && i + 1 < argc)
			keys = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--value-size") && i + 1 < argc)
			vsize = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
			batch = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--range-len") && i + 1 < argc)
			range_len = strtoull(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: %s [--keys N] [--value-size N] [--batch N] [--range-len N]\n", argv[0]);
			return 2;
		}
	}
	if (keys == 0)
		keys = 1;
	if (batch == 0)
		batch = 1;
	if (range_len == 0)
		range_len = 1;
	size_t range_ops = keys / 10 < 200 ? 200 : keys / 10;
	size_t codec_batches = keys * 16 / CODEC_BATCH ? keys * 16 / CODEC_BATCH : 1;
	size_t nlat = keys;
	if (range_ops > nlat)
		nlat = range_ops;
	if (codec_batches > nlat)
		nlat = codec_batches;

	int rc = 1;
	char dir[] = "/tmp/bench_engine.XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	char path[64];
	snprintf(path, sizeof path, "%s/db", dir);
	bench b = {.keys = keys, .vsize = vsize, .batch = batch, .range_len = range_len};
	engine_opts o = {.create_if_missing = true};
	if (engine_open(path, &o, &b.e, &b.err)) {
		fprintf(stderr, "engine_open: %s\n", b.err.msg);
		goto out_dir;
	}
	b.val = ms_malloc(vsize ? vsize : 1);
	b.present = ms_calloc(keys, sizeof *b.present);
	b.modrev = ms_calloc(keys, sizeof *b.modrev);
	b.lat = ms_malloc(nlat * sizeof *b.lat);
	if (!b.val || !b.present || !b.modrev || !b.lat) {
		fprintf(stderr, "out of memory\n");
		goto out_bufs;
	}
	memset(b.val, 'v', vsize);
	srand(1);

	result rs[6];
	size_t nrs = 0, txn_failed = 0;
	const char *phase = "put";
	if (bench_put(&b, &rs[nrs++]))
		goto out_fail;
	phase = "putb";
	if (bench_putb(&b, &rs[nrs++]))
		goto out_fail;
	phase = "get";
	if (bench_get(&b, &rs[nrs++]))
		goto out_fail;
	phase = "range";
	if (bench_range(&b, range_ops, &rs[nrs++]))
		goto out_fail;
	phase = "txn";
	if (bench_txn(&b, &txn_failed, &rs[nrs++]))
		goto out_fail;
	phase = "codec";
	if (bench_codec(&b, codec_batches, &rs[nrs++]))
		goto out_fail;

	printf("engine benchmark: %zu ops per put/putb/get/txn, value %zu bytes, putb = %zu puts per batch,\n"
	       "  range = %zu ops of %zu keys, codec = %zu round trips timed %d at a time\n",
	       keys, vsize, batch, range_ops, b.range_len, codec_batches * CODEC_BATCH, CODEC_BATCH);
	printf("%-6s %12s %10s %10s %10s\n", "op", "ops/s", "p50 us", "p95 us", "p99 us");
	for (size_t i = 0; i < nrs; i++)
		printf("%-6s %12.0f %10.3f %10.3f %10.3f\n", rs[i].name, rs[i].ops, rs[i].p50_us, rs[i].p95_us,
		       rs[i].p99_us);
	if (txn_failed)
		printf("warning: %zu of %zu txn compares failed (expected none)\n", txn_failed, keys);

	mkdir("bench", 0755);
	mkdir("bench/results", 0755);
	FILE *f = fopen("bench/results/engine.json", "w");
	if (f) {
		fprintf(f, "{\n  \"keys\": %zu,\n  \"value_size\": %zu,\n  \"batch\": %zu,\n  \"range_len\": %zu,\n",
		        keys, vsize, batch, b.range_len);
		for (size_t i = 0; i < nrs; i++)
			fprintf(f,
			        "  \"%s\": {\"ops_per_sec\": %.0f, \"p50_us\": %.3f, \"p95_us\": %.3f, \"p99_us\": "
			        "%.3f}%s\n",
			        rs[i].name, rs[i].ops, rs[i].p50_us, rs[i].p95_us, rs[i].p99_us,
			        i + 1 < nrs ? "," : "");
		fprintf(f, "}\n");
		fclose(f);
	} else {
		perror("bench/results/engine.json");
	}
	rc = txn_failed ? 1 : 0;
	goto out_bufs;
out_fail:
	fprintf(stderr, "%s: %s\n", phase, b.err.msg);
out_bufs:
	engine_close(b.e);
	ms_free(b.val);
	ms_free(b.present);
	ms_free(b.modrev);
	ms_free(b.lat);
out_dir:
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
