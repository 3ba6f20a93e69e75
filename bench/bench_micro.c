/* bench_micro.c — micro benchmarks of three hot paths that need no socket and
 * no disk, each one row of ops/s and p50/p95/p99 latency:
 *   gob_decode      tools/migrate's gob decoder on the legacy Go MetaStore
 *                   rows of tests/fixtures/gob/legacy.load (real encoding/gob
 *                   output: every kv:, lease: and meta:revision value, each a
 *                   complete stream), one record = gob_dec_reset + gob_dec_next
 *                   until the end of its stream; records are timed --gob-batch
 *                   at a time (one is too short to time), latency = batch / n
 *   grpc_unary      the server-side gRPC framing core (grpc_conn) fed by an
 *                   in-memory nghttp2 client on one connection, one stream per
 *                   call: request HEADERS + DATA with a --msg-size message in,
 *                   the handler echoes it, response HEADERS + DATA + trailers
 *                   out through the send callback. Only grpc_conn_recv (which
 *                   flushes the answer) is timed; the client's encode and
 *                   parse are not. grpc_unary_cK: K calls per recv (K streams
 *                   in flight), latency = recv time / K
 *   raft_commit     tests/sim's deterministic simulator, 3 voters, no faults,
 *   raft_sim_step   and disks that keep up (every queued write fsynced and every
 *                   committed entry applied after each sim_step); the leader
 *                   keeps --raft-window proposals in flight until
 *                   --raft-entries are acknowledged (applied on the leader).
 *                   raft_commit: entries/s, latency propose -> ack;
 *                   raft_sim_step: steps/s, latency of one step (the step's
 *                   proposals, message delivery, persistence, apply and the
 *                   simulator's safety checks). Logs are compacted every 256
 *                   applied entries so the per-step log checks stay bounded.
 * Every row is checked (all records decoded to the expected kind, every gRPC
 * reply parsed and equal to its request, every proposal committed and
 * applied identically on all members); a failed check exits 1.
 * Usage: bench_micro [--gob-iters N] [--gob-batch N] [--gob-file PATH]
 *                    [--grpc-calls N] [--msg-size N] [--grpc-streams K]
 *                    [--raft-entries N] [--raft-window N] [--only gob|grpc|raft]
 *                    [--out PATH]
 * Prints a table and writes bench/results/micro.json (relative to the working
 * directory) unless --out says otherwise. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <nghttp2/nghttp2.h>

#include "api/grpc.h"
#include "common/ms.h"

/* Neither the migration tool nor the simulator is in libmetastore.a. */
#include "tests/sim/sim.h"
#include "tools/migrate/gob.c"

#define BM_S 1000000000LL
#define BM_GOB_FILE "tests/fixtures/gob/legacy.load"
#define BM_GRPC_PATH "/etcdserverpb.KV/Range"
#define BM_GRPC_WARMUP 200
#define BM_RAFT_COMPACT_EVERY 256
#define BM_RAFT_LINEARIZABLE_MAX 20000 /* the history check is quadratic */
#define BM_MAX_ROWS 8

static int64_t bm_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * BM_S + ts.tv_nsec;
}

static int bm_cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

typedef struct bm_row {
	char name[32];
	long ops;
	double secs, p50, p95, p99; /* latencies in ns */
	char note[128];
} bm_row;

typedef struct bm_rows {
	bm_row r[BM_MAX_ROWS];
	int n;
	int failures;
} bm_rows;

static void bm_fail(bm_rows *rs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bm_fail(bm_rows *rs, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bench_micro: CHECK FAILED: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	rs->failures++;
}

static double bm_pct(const int64_t *lat, long n, double q)
{
	long i = (long)((double)n * q);
	return (double)lat[i < n ? i : n - 1];
}

/* ops operations took total_ns; lat holds nlat samples, each one op's
 * latency (or a timed batch already divided down to one op). */
static bm_row *bm_add(bm_rows *rs, const char *name, long ops, int64_t total_ns, int64_t *lat, long nlat)
{
	MS_ASSERT(rs->n < BM_MAX_ROWS && nlat > 0);
	bm_row *r = &rs->r[rs->n++];
	memset(r, 0, sizeof *r);
	snprintf(r->name, sizeof r->name, "%s", name);
	qsort(lat, (size_t)nlat, sizeof *lat, bm_cmp64);
	r->ops = ops;
	r->secs = (double)(total_ns > 0 ? total_ns : 1) / 1e9;
	r->p50 = bm_pct(lat, nlat, 0.50);
	r->p95 = bm_pct(lat, nlat, 0.95);
	r->p99 = bm_pct(lat, nlat, 0.99);
	return r;
}

static int64_t *bm_lat_new(long n)
{
	int64_t *lat = ms_malloc((size_t)(n > 0 ? n : 1) * sizeof *lat);
	MS_ASSERT(lat);
	return lat;
}

/* ==== 1. gob decode ========================================================= */

typedef struct bm_blob {
	uint8_t *p;
	size_t n;
	gob_kind want; /* kind of the stream's one value */
} bm_blob;

typedef struct bm_blobs {
	bm_blob *b;
	size_t n, cap, bytes;
} bm_blobs;

static int bm_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes "0x<hex>" at *s into an ms_malloc'd buffer; advances *s. NULL when
 * the text is not hex. */
static uint8_t *bm_hex(const char **s, size_t *len)
{
	const char *p = *s;
	if (p[0] != '0' || (p[1] != 'x' && p[1] != 'X'))
		return NULL;
	p += 2;
	size_t nd = 0;
	while (bm_hexval((unsigned char)p[nd]) >= 0)
		nd++;
	if (nd % 2)
		return NULL;
	uint8_t *out = ms_malloc(nd / 2 + 1);
	MS_ASSERT(out);
	for (size_t i = 0; i < nd / 2; i++)
		out[i] = (uint8_t)(bm_hexval((unsigned char)p[2 * i]) << 4 | bm_hexval((unsigned char)p[2 * i + 1]));
	*len = nd / 2;
	*s = p + nd;
	return out;
}

static void bm_blobs_add(bm_blobs *bs, uint8_t *p, size_t n, gob_kind want)
{
	if (bs->n == bs->cap) {
		bs->cap = bs->cap ? bs->cap * 2 : 64;
		bs->b = ms_realloc(bs->b, bs->cap * sizeof *bs->b);
		MS_ASSERT(bs->b);
	}
	bs->b[bs->n++] = (bm_blob){p, n, want};
	bs->bytes += n;
}

static void bm_blobs_free(bm_blobs *bs)
{
	for (size_t i = 0; i < bs->n; i++)
		ms_free(bs->b[i].p);
	ms_free(bs->b);
	memset(bs, 0, sizeof *bs);
}

/* The gob values of an `ldb load --hex` file: kv: and lease: rows are
 * structs, meta:revision an int (meta:compacted_revision is not gob). */
static int bm_load_legacy(const char *path, bm_blobs *bs)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return MS_EIO;
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;
	while (getline(&line, &cap, f) > 0) {
		const char *s = line;
		size_t kn, vn;
		uint8_t *k = bm_hex(&s, &kn);
		if (!k)
			continue;
		uint8_t *v = NULL;
		if (strncmp(s, " ==> ", 5) == 0) {
			s += 5;
			v = bm_hex(&s, &vn);
			if (v && strspn(s, " \t\r\n") != strlen(s)) {
				ms_free(v);
				v = NULL;
			}
		}
		gob_kind want = 0;
		if (kn > 3 && memcmp(k, "kv:", 3) == 0)
			want = GOB_STRUCT;
		else if (kn > 6 && memcmp(k, "lease:", 6) == 0)
			want = GOB_STRUCT;
		else if (kn == 13 && memcmp(k, "meta:revision", 13) == 0)
			want = GOB_INT;
		ms_free(k);
		if (!v) {
			rc = MS_ECORRUPT;
			break;
		}
		if (want && vn)
			bm_blobs_add(bs, v, vn, want);
		else
			ms_free(v);
	}
	free(line); /* getline's buffer comes from libc malloc */
	fclose(f);
	return rc;
}

/* Go's encoding/gob doc example (Point{22, 33}), when no fixture is found. */
static void bm_builtin_gob(bm_blobs *bs)
{
	static const uint8_t point[] = {0x1f, 0xff, 0x81, 0x03, 0x01, 0x01, 0x05, 0x50, 0x6f, 0x69,
	                                0x6e, 0x74, 0x01, 0xff, 0x82, 0x00, 0x01, 0x02, 0x01, 0x01,
	                                0x58, 0x01, 0x04, 0x00, 0x01, 0x01, 0x59, 0x01, 0x04, 0x00,
	                                0x00, 0x00, 0x07, 0xff, 0x82, 0x01, 0x2c, 0x01, 0x42, 0x00};
	bm_blobs_add(bs, ms_memdup(point, sizeof point), sizeof point, GOB_STRUCT);
}

/* Decodes one record: 0, or -1 when the stream is not one value of the
 * expected kind. */
static int bm_gob_one(gob_dec *d, const bm_blob *b)
{
	const gob_value *v;
	gob_dec_reset(d, b->p, b->n);
	if (gob_dec_next(d, &v, NULL) != 1 || v->kind != b->want)
		return -1;
	return gob_dec_next(d, &v, NULL) == 0 ? 0 : -1;
}

static void bm_gob(bm_rows *rs, long iters, long batch, const char *path)
{
	bm_blobs bs = {0};
	const char *src = path;
	int rc = bm_load_legacy(path, &bs);
	if (rc || bs.n == 0) {
		fprintf(stderr, "bench_micro: no gob records from %s (%s); using the Go doc example stream\n", path,
		        rc ? ms_strerror(rc) : "none found");
		bm_blobs_free(&bs);
		bm_builtin_gob(&bs);
		src = "builtin";
	}
	gob_dec *d;
	ms_err err = {0};
	if (gob_dec_new(NULL, 0, &d, &err)) {
		bm_fail(rs, "gob_dec_new: %s", err.msg);
		bm_blobs_free(&bs);
		return;
	}
	/* warm-up pass, which also checks every record */
	for (size_t i = 0; i < bs.n; i++) {
		if (bm_gob_one(d, &bs.b[i])) {
			bm_fail(rs, "gob record %zu of %s (%zu bytes) does not decode to one %s", i, src, bs.b[i].n,
			        gob_kind_name(bs.b[i].want));
			goto out;
		}
	}
	long nb = (iters + batch - 1) / batch, done = 0, k = 0, bad = 0;
	size_t next = 0, bytes = 0;
	int64_t *lat = bm_lat_new(nb);
	int64_t t0 = bm_now();
	while (done < iters) {
		long m = MS_MIN(batch, iters - done);
		int64_t a = bm_now();
		for (long j = 0; j < m; j++) {
			const bm_blob *b = &bs.b[next];
			bad += bm_gob_one(d, b) != 0;
			bytes += b->n;
			if (++next == bs.n)
				next = 0;
		}
		lat[k++] = (bm_now() - a) / m;
		done += m;
	}
	int64_t total = bm_now() - t0;
	if (bad)
		bm_fail(rs, "%ld gob decodes failed", bad);
	bm_row *r = bm_add(rs, "gob_decode", done, total, lat, k);
	snprintf(r->note, sizeof r->note, "%zu records of %s, avg %zu B, %.0f MB/s, batch %ld", bs.n,
	         src == path ? "legacy.load" : src, bs.bytes / bs.n, (double)bytes / r->secs / 1e6, batch);
	ms_free(lat);
out:
	gob_dec_del(d);
	bm_blobs_free(&bs);
}

/* ==== 2. gRPC framing ======================================================= */

typedef struct bm_stream {
	int32_t id;
	int http_status, grpc_status;
	bool closed;
	uint32_t close_code;
	uint8_t *req; /* 5-byte prefix + message */
	size_t req_len, req_off;
	uint8_t *resp; /* DATA payload received */
	size_t resp_len, resp_cap;
	bool overflow;
} bm_stream;

typedef struct bm_grpc {
	grpc_conn *conn;
	nghttp2_session *cli;
	uint8_t *in, *out; /* client -> server bytes; server -> client bytes */
	size_t in_len, in_cap, out_len, out_cap;
	size_t msg;
	long messages, closes, handler_errors;
	bm_stream *st;
	size_t nst;
} bm_grpc;

static void bm_append(uint8_t **b, size_t *len, size_t *cap, const uint8_t *p, size_t n)
{
	if (*cap - *len < n) {
		size_t c = *cap ? *cap : 16384;
		while (c - *len < n)
			c *= 2;
		*b = ms_realloc(*b, c);
		MS_ASSERT(*b);
		*cap = c;
	}
	memcpy(*b + *len, p, n);
	*len += n;
}

/* the server's send callback: what a socket write would take */
static int bm_srv_send(void *ud, const uint8_t *p, size_t n)
{
	bm_grpc *g = ud;
	bm_append(&g->out, &g->out_len, &g->out_cap, p, n);
	return 0;
}

/* the handler: answers with a message of the request's size (its echo) */
static void bm_echo(grpc_call *call, const uint8_t *m, size_t len, void *ud)
{
	bm_grpc *g = ud;
	g->messages++;
	if (grpc_call_send(call, m, len) || grpc_call_finish(call, GRPC_OK, NULL))
		g->handler_errors++;
}

static void bm_on_close(grpc_call *call, void *ud)
{
	((bm_grpc *)ud)->closes++;
}

static int bm_cli_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                         const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	bm_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (!st || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	char v[16];
	snprintf(v, sizeof v, "%.*s", (int)MS_MIN(vlen, sizeof v - 1), (const char *)value);
	if (nlen == 7 && memcmp(name, ":status", 7) == 0)
		st->http_status = atoi(v);
	else if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0)
		st->grpc_status = atoi(v);
	return 0;
}

static int bm_cli_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t len, void *ud)
{
	bm_stream *st = nghttp2_session_get_stream_user_data(s, id);
	if (!st)
		return 0;
	if (st->resp_cap - st->resp_len < len) {
		st->overflow = true;
		return 0;
	}
	memcpy(st->resp + st->resp_len, d, len);
	st->resp_len += len;
	return 0;
}

static int bm_cli_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	bm_stream *st = nghttp2_session_get_stream_user_data(s, id);
	if (st) {
		st->closed = true;
		st->close_code = code;
	}
	return 0;
}

static ssize_t bm_cli_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                           nghttp2_data_source *src, void *ud)
{
	bm_stream *st = src->ptr;
	size_t n = MS_MIN(st->req_len - st->req_off, length);
	memcpy(buf, st->req + st->req_off, n);
	st->req_off += n;
	if (st->req_off == st->req_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static void bm_grpc_free(bm_grpc *g)
{
	grpc_conn_free(g->conn);
	if (g->cli)
		nghttp2_session_del(g->cli);
	for (size_t i = 0; i < g->nst; i++) {
		ms_free(g->st[i].req);
		ms_free(g->st[i].resp);
	}
	ms_free(g->st);
	ms_free(g->in);
	ms_free(g->out);
}

static int bm_grpc_init(bm_grpc *g, const grpc_method *m, size_t msg, size_t streams)
{
	memset(g, 0, sizeof *g);
	g->msg = msg;
	g->nst = streams;
	g->st = ms_calloc(streams, sizeof *g->st);
	MS_ASSERT(g->st);
	for (size_t i = 0; i < streams; i++) {
		bm_stream *st = &g->st[i];
		st->req_len = 5 + msg;
		st->req = ms_malloc(st->req_len);
		st->resp_cap = 5 + msg;
		st->resp = ms_malloc(st->resp_cap);
		MS_ASSERT(st->req && st->resp);
		st->req[0] = 0;
		st->req[1] = (uint8_t)(msg >> 24);
		st->req[2] = (uint8_t)(msg >> 16);
		st->req[3] = (uint8_t)(msg >> 8);
		st->req[4] = (uint8_t)msg;
		for (size_t j = 0; j < msg; j++)
			st->req[5 + j] = (uint8_t)(j * 31 + i);
	}
	if (grpc_conn_new(NULL, m, 1, bm_srv_send, g, &g->conn))
		return -1;
	nghttp2_session_callbacks *cb;
	if (nghttp2_session_callbacks_new(&cb))
		return -1;
	nghttp2_session_callbacks_set_on_header_callback(cb, bm_cli_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, bm_cli_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, bm_cli_close);
	int rv = nghttp2_session_client_new(&g->cli, cb, g);
	nghttp2_session_callbacks_del(cb);
	if (rv || nghttp2_submit_settings(g->cli, NGHTTP2_FLAG_NONE, NULL, 0))
		return -1;
	return 0;
}

/* Opens stream slot i for call number `call`: the message carries the call
 * number so each reply can be matched to its request. */
static int bm_grpc_submit(bm_grpc *g, size_t i, uint64_t call)
{
	static const char *const hdr[][2] = {
	    {":method", "POST"},
	    {":scheme", "http"},
	    {":path", BM_GRPC_PATH},
	    {":authority", "127.0.0.1:2379"},
	    {"content-type", "application/grpc"},
	    {"user-agent", "grpc-go/1.26.0"},
	    {"te", "trailers"},
	};
	nghttp2_nv nva[MS_ARRAY_LEN(hdr)];
	for (size_t k = 0; k < MS_ARRAY_LEN(hdr); k++)
		nva[k] = (nghttp2_nv){(uint8_t *)hdr[k][0], (uint8_t *)hdr[k][1], strlen(hdr[k][0]), strlen(hdr[k][1]),
		                      NGHTTP2_NV_FLAG_NONE};
	bm_stream *st = &g->st[i];
	st->http_status = 0;
	st->grpc_status = -1;
	st->closed = false;
	st->close_code = 0;
	st->req_off = 0;
	st->resp_len = 0;
	st->overflow = false;
	for (size_t k = 0; k < 8 && k < g->msg; k++)
		st->req[5 + k] = (uint8_t)(call >> (8 * k));
	nghttp2_data_provider prd = {.source.ptr = st, .read_callback = bm_cli_read};
	st->id = nghttp2_submit_request(g->cli, NULL, nva, MS_ARRAY_LEN(nva), &prd, st);
	return st->id > 0 ? 0 : -1;
}

/* Moves bytes both ways until both sides are quiet; adds the time spent in
 * grpc_conn_recv to *srv_ns. */
static int bm_grpc_pump(bm_grpc *g, int64_t *srv_ns)
{
	for (int iter = 0; iter < 1000; iter++) {
		bool progress = false;
		const uint8_t *p;
		ssize_t n;
		while ((n = nghttp2_session_mem_send(g->cli, &p)) > 0)
			bm_append(&g->in, &g->in_len, &g->in_cap, p, (size_t)n);
		if (n < 0)
			return -1;
		if (g->in_len) {
			progress = true;
			int64_t a = bm_now();
			int rc = grpc_conn_recv(g->conn, g->in, g->in_len);
			*srv_ns += bm_now() - a;
			g->in_len = 0;
			if (rc)
				return -1;
		}
		if (g->out_len) {
			progress = true;
			ssize_t r = nghttp2_session_mem_recv(g->cli, g->out, g->out_len);
			if (r != (ssize_t)g->out_len)
				return -1;
			g->out_len = 0;
		}
		if (!progress)
			return 0;
	}
	return -1;
}

/* 0 when slot i holds a complete, correct reply to call number `call`. */
static int bm_grpc_check(const bm_grpc *g, size_t i, uint64_t call)
{
	const bm_stream *st = &g->st[i];
	if (!st->closed || st->close_code || st->overflow || st->http_status != 200 || st->grpc_status != 0)
		return -1;
	if (st->resp_len != 5 + g->msg || memcmp(st->resp, st->req, 5 + g->msg) != 0)
		return -1;
	uint64_t got = 0;
	for (size_t k = 0; k < 8 && k < g->msg; k++)
		got |= (uint64_t)st->resp[5 + k] << (8 * k);
	uint64_t mask = g->msg >= 8 ? UINT64_MAX : ((uint64_t)1 << (8 * g->msg)) - 1;
	return got == (call & mask) ? 0 : -1;
}

/* calls unary calls, `streams` at a time; one row. */
static void bm_grpc_run(bm_rows *rs, long calls, size_t msg, size_t streams)
{
	bm_grpc g;
	grpc_method m = {BM_GRPC_PATH, GRPC_UNARY, bm_echo, NULL, bm_on_close, &g};
	char name[32];
	if (streams == 1)
		snprintf(name, sizeof name, "grpc_unary");
	else
		snprintf(name, sizeof name, "grpc_unary_c%zu", streams);
	if (bm_grpc_init(&g, &m, msg, streams)) {
		bm_fail(rs, "%s: cannot set up the connection", name);
		bm_grpc_free(&g);
		return;
	}
	long rounds = (calls + (long)streams - 1) / (long)streams, k = 0, ok = 0, issued = 0;
	long warm = MS_MAX(1, BM_GRPC_WARMUP / (long)streams);
	int64_t *lat = bm_lat_new(rounds), total = 0, ignored = 0;
	uint64_t call = 0;
	for (long r = -warm; r < rounds; r++) {
		size_t m_now = r < 0 ? streams : (size_t)MS_MIN((long)streams, calls - issued);
		uint64_t first = call;
		for (size_t i = 0; i < m_now; i++) {
			if (bm_grpc_submit(&g, i, call++)) {
				bm_fail(rs, "%s: nghttp2_submit_request failed", name);
				goto out;
			}
		}
		int64_t srv = 0;
		if (bm_grpc_pump(&g, r < 0 ? &ignored : &srv)) {
			bm_fail(rs, "%s: the HTTP/2 exchange broke after %ld calls", name, ok);
			goto out;
		}
		for (size_t i = 0; i < m_now; i++)
			ok += bm_grpc_check(&g, i, first + i) == 0;
		if (r >= 0) {
			lat[k++] = srv / (int64_t)m_now;
			total += srv;
			issued += (long)m_now;
		}
	}
	long want = issued + warm * (long)streams;
	if (ok != want || g.messages != want || g.closes != want || g.handler_errors)
		bm_fail(rs, "%s: %ld calls, %ld correct replies, %ld handled, %ld closed, %ld handler errors", name,
		        want, ok, g.messages, g.closes, g.handler_errors);
	bm_row *row = bm_add(rs, name, issued, total, lat, k);
	snprintf(row->note, sizeof row->note, "msg %zu B each way, %zu stream%s per recv, 1 connection", msg, streams,
	         streams == 1 ? "" : "s");
out:
	ms_free(lat);
	bm_grpc_free(&g);
}

/* ==== 3. raft core steps (the simulator) ==================================== */

typedef struct bm_pending {
	uint64_t op; /* 0 = free slot */
	int64_t t0;
} bm_pending;

/* One step of the world: sim_step without faults, then the disks keep up. */
static void bm_raft_step(sim *s)
{
	sim_step(s, false);
	sim_settle_disks(s);
}

/* Log compaction, as --snapshot-count does, so the simulator's per-step log
 * checks look at a bounded log. */
static void bm_raft_compact(sim *s)
{
	for (size_t i = 0; i < s->o.n; i++) {
		sim_node *n = &s->nodes[i];
		if (n->up && n->sm_applied >= raft_core_first_index(n->core) + BM_RAFT_COMPACT_EVERY)
			sim_node_compact(s, n);
	}
}

static void bm_raft(bm_rows *rs, long entries, long window)
{
	sim_opts o = {.n = 3, .pre_vote = true, .check_quorum = true, .max_inflight = 256, .max_entries = 1024};
	static sim s; /* large: keep it off the stack */
	sim_init(&s, 42, &o);
	bm_pending *pend = ms_calloc((size_t)window, sizeof *pend);
	int64_t *lat = bm_lat_new(entries), *slat = NULL;
	MS_ASSERT(pend);

	/* an election and one acknowledged write before the clock starts */
	sim_node *ld = NULL;
	for (int i = 0; i < 100000 && !s.failed && s.writes_done == 0; i++) {
		sim_node *l = sim_leader(&s);
		if (l && l != ld) {
			ld = l;
			sim_client_write(&s, l, 0);
		}
		bm_raft_step(&s);
	}
	ld = sim_leader(&s);
	if (s.failed || !ld || s.writes_done == 0) {
		bm_fail(rs, "raft: no leader elected (%s)", s.failed ? s.why : "timeout");
		goto out;
	}
	uint64_t warm_writes = s.writes_done, leader_id = ld->id;

	long cap_steps = 1024, nsteps = 0, proposed = 0, acked = 0, outstanding = 0, refused = 0;
	slat = ms_malloc((size_t)cap_steps * sizeof *slat);
	MS_ASSERT(slat);
	int64_t t0 = bm_now();
	while (acked < entries && !s.failed) {
		int64_t a = bm_now();
		for (long i = 0; i < window && proposed < entries; i++) {
			if (pend[i].op)
				continue;
			uint64_t op = sim_client_write(&s, ld, (int)(proposed % SIM_KEYS));
			if (!op) {
				refused++;
				break;
			}
			pend[i] = (bm_pending){op, bm_now()};
			proposed++;
			outstanding++;
		}
		if (refused)
			break;
		bm_raft_step(&s);
		bm_raft_compact(&s);
		int64_t b = bm_now();
		if (nsteps == cap_steps) {
			cap_steps *= 2;
			slat = ms_realloc(slat, (size_t)cap_steps * sizeof *slat);
			MS_ASSERT(slat);
		}
		slat[nsteps++] = b - a;
		for (long i = 0; i < window && outstanding; i++) {
			if (pend[i].op && sim_op_get(&s, pend[i].op)->resp) {
				lat[acked++] = b - pend[i].t0;
				pend[i].op = 0;
				outstanding--;
			}
		}
		if (nsteps > 100 * (entries + 100)) {
			bm_fail(rs, "raft: no progress (%ld of %ld entries acknowledged after %ld steps)", acked,
			        entries, nsteps);
			break;
		}
	}
	int64_t total = bm_now() - t0;
	if (s.failed) {
		bm_fail(rs, "raft: simulator invariant broken: %s", s.why);
		goto out;
	}
	if (refused || acked != entries) {
		bm_fail(rs, "raft: %ld of %ld proposals acknowledged, %ld refused (leader %llu lost its lead?)", acked,
		        entries, refused, (unsigned long long)leader_id);
		goto out;
	}

	/* every member must converge on the same state */
	bool same = false;
	for (int i = 0; i < 10000 && !s.failed && !same; i++) {
		sim_settle_disks(&s);
		same = raft_core_commit(ld->core) == ld->sm_applied;
		for (size_t j = 0; j < s.o.n && same; j++) {
			sim_node *n = &s.nodes[j];
			same = n->up && n->sm_applied == ld->sm_applied && memcmp(n->kv, ld->kv, sizeof n->kv) == 0;
		}
		if (!same)
			bm_raft_step(&s);
	}
	sim_check_logs(&s);
	bool lin = entries <= BM_RAFT_LINEARIZABLE_MAX;
	if (lin)
		sim_check_linearizable(&s);
	uint64_t writes = s.writes_done - warm_writes;
	if (s.failed || !same || writes != (uint64_t)entries || sim_leader(&s) != ld || s.elections != 1) {
		bm_fail(rs, "raft: members %s, %llu writes acknowledged of %ld, %llu elections%s%s",
		        same ? "agree" : "do not converge", (unsigned long long)writes, entries,
		        (unsigned long long)s.elections, s.failed ? ": " : "", s.failed ? s.why : "");
		goto out;
	}
	bm_row *r = bm_add(rs, "raft_commit", entries, total, lat, acked);
	snprintf(r->note, sizeof r->note, "3 voters, %ld in flight, %.1f entries/step, applied %llu on all%s", window,
	         (double)entries / (double)nsteps, (unsigned long long)ld->sm_applied, lin ? ", linearizable" : "");
	r = bm_add(rs, "raft_sim_step", nsteps, total, slat, nsteps);
	snprintf(r->note, sizeof r->note, "sim_step + disks that keep up, checks on every step");
out:
	ms_free(slat);
	ms_free(lat);
	ms_free(pend);
	sim_free(&s);
}

/* ==== main ================================================================== */

static int bm_mkdirs(const char *path)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s", path);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(dir, 0755) && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return 0;
}

static void bm_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static bool bm_arg_long(const char *v, long min, long *out)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < min)
		return false;
	*out = x;
	return true;
}

static void bm_usage(FILE *f, const char *argv0)
{
	fprintf(
	    f,
	    "usage: %s [--gob-iters N] [--gob-batch N] [--gob-file PATH] [--grpc-calls N] [--msg-size N]\n"
	    "          [--grpc-streams K] [--raft-entries N] [--raft-window N] [--only gob|grpc|raft] [--out PATH]\n"
	    "  --gob-iters N     gob records decoded (500000)\n"
	    "  --gob-batch N     records per timed sample (16)\n"
	    "  --gob-file PATH   ldb load --hex file of legacy rows (" BM_GOB_FILE ")\n"
	    "  --grpc-calls N    unary calls per gRPC row (100000)\n"
	    "  --msg-size N      request and reply message bytes (256)\n"
	    "  --grpc-streams K  calls per recv in the second gRPC row; 1 = no second row (16)\n"
	    "  --raft-entries N  proposals to commit (20000)\n"
	    "  --raft-window N   proposals in flight (64)\n"
	    "  --only NAME       run one benchmark\n"
	    "  --out PATH        JSON results (bench/results/micro.json)\n",
	    argv0);
}

int main(int argc, char **argv)
{
	long gob_iters = 500000, gob_batch = 16, grpc_calls = 100000, msg_size = 256, grpc_streams = 16;
	long raft_entries = 20000, raft_window = 64;
	const char *gob_file = BM_GOB_FILE, *out = "bench/results/micro.json", *only = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool ok = v != NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			bm_usage(stdout, argv[0]);
			return 0;
		} else if (!strcmp(a, "--gob-iters"))
			ok = ok && bm_arg_long(v, 1, &gob_iters);
		else if (!strcmp(a, "--gob-batch"))
			ok = ok && bm_arg_long(v, 1, &gob_batch);
		else if (!strcmp(a, "--gob-file"))
			gob_file = v;
		else if (!strcmp(a, "--grpc-calls"))
			ok = ok && bm_arg_long(v, 1, &grpc_calls);
		else if (!strcmp(a, "--msg-size"))
			ok = ok && bm_arg_long(v, 0, &msg_size) && msg_size <= 1 << 20;
		else if (!strcmp(a, "--grpc-streams"))
			ok = ok && bm_arg_long(v, 1, &grpc_streams) && grpc_streams <= 1024;
		else if (!strcmp(a, "--raft-entries"))
			ok = ok && bm_arg_long(v, 1, &raft_entries);
		else if (!strcmp(a, "--raft-window"))
			ok = ok && bm_arg_long(v, 1, &raft_window) && raft_window <= 65536;
		else if (!strcmp(a, "--only")) {
			ok = ok && (!strcmp(v, "gob") || !strcmp(v, "grpc") || !strcmp(v, "raft"));
			only = v;
		} else if (!strcmp(a, "--out"))
			out = v;
		else
			ok = false;
		if (!ok) {
			fprintf(stderr, "bench_micro: bad or unknown argument %s%s%s\n", a, v ? " " : "", v ? v : "");
			bm_usage(stderr, argv[0]);
			return 2;
		}
		i++;
	}
	ms_log_set_level(MS_LOG_WARN);

	static bm_rows rs;
	if (!only || !strcmp(only, "gob"))
		bm_gob(&rs, gob_iters, gob_batch, gob_file);
	if (!only || !strcmp(only, "grpc")) {
		bm_grpc_run(&rs, grpc_calls, (size_t)msg_size, 1);
		if (grpc_streams > 1)
			bm_grpc_run(&rs, grpc_calls, (size_t)msg_size, (size_t)grpc_streams);
	}
	if (!only || !strcmp(only, "raft"))
		bm_raft(&rs, raft_entries, raft_window);

	printf(
	    "micro benchmarks (latency per op; batched rows: batch time / ops)\n%-16s %10s %12s %10s %10s %10s  %s\n",
	    "op", "ops", "ops/s", "p50 ns", "p95 ns", "p99 ns", "notes");
	for (int i = 0; i < rs.n; i++) {
		const bm_row *r = &rs.r[i];
		printf("%-16s %10ld %12.0f %10.0f %10.0f %10.0f  %s\n", r->name, r->ops, (double)r->ops / r->secs,
		       r->p50, r->p95, r->p99, r->note);
	}
	if (bm_mkdirs(out))
		perror("bench_micro: mkdir");
	FILE *f = fopen(out, "w");
	if (f) {
		fprintf(f,
		        "{\"bench\":\"micro\",\"checks_passed\":%s,\"params\":{\"gob_iters\":%ld,\"gob_batch\":%ld,"
		        "\"grpc_calls\":%ld,\"msg_size\":%ld,\"grpc_streams\":%ld,\"raft_entries\":%ld,\"raft_window\":"
		        "%ld},"
		        "\"results\":[",
		        rs.failures ? "false" : "true", gob_iters, gob_batch, grpc_calls, msg_size, grpc_streams,
		        raft_entries, raft_window);
		for (int i = 0; i < rs.n; i++) {
			const bm_row *r = &rs.r[i];
			fprintf(f, "%s\n{\"op\":", i ? "," : "");
			bm_json_str(f, r->name);
			fprintf(f,
			        ",\"ops\":%ld,\"secs\":%.6f,\"ops_per_sec\":%.0f,\"p50_ns\":%.0f,\"p95_ns\":%.0f,\"p99_"
			        "ns\":%.0f,\"note\":",
			        r->ops, r->secs, (double)r->ops / r->secs, r->p50, r->p95, r->p99);
			bm_json_str(f, r->note);
			fputc('}', f);
		}
		fprintf(f, "]}\n");
		fclose(f);
	} else {
		fprintf(stderr, "bench_micro: cannot write %s: %s\n", out, strerror(errno));
	}
	if (rs.failures) {
		fprintf(stderr, "bench_micro: %d check%s failed\n", rs.failures, rs.failures == 1 ? "" : "s");
		return 1;
	}
	return 0;
}
