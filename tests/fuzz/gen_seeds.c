/* gen_seeds.c — writes the seed corpora of the fuzz targets under
 * tests/fuzz/corpus/<target>/ as real encodings: request messages filled
 * from their descriptors, gRPC conversations produced by an nghttp2 client,
 * raft messages and log records from the real encoders, engine rows from
 * the engine's codec. `make fuzz-seeds` runs it; the output is committed.
 * Deterministic: the same tree writes the same files. */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/engine_int.h"
#include "raft/raft.h"
#include "raft/raft_core.h"
#include "raft/transport.h"
#include "raftpb.pb-c.h"
#include "tests/fuzz/fuzz_types.h"

typedef struct wbuf {
	uint8_t *p;
	size_t n, cap;
} wbuf;

static void put(wbuf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put_byte(wbuf *b, uint8_t c)
{
	put(b, &c, 1);
}

static void put_varint(wbuf *b, uint64_t v)
{
	do {
		put_byte(b, (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)));
		v >>= 7;
	} while (v);
}

static void put_tag(wbuf *b, uint32_t id, unsigned wt)
{
	put_varint(b, (uint64_t)id << 3 | wt);
}

static void put_len(wbuf *b, uint32_t id, const wbuf *v)
{
	put_tag(b, id, 2);
	put_varint(b, v->n);
	put(b, v->p, v->n);
}

static const char *root = "tests/fuzz/corpus";
static unsigned nwritten;

static void write_seed(const char *target, const char *name, uint8_t prefix, bool with_prefix, const void *p, size_t n)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", root, target);
	if (mkdir(path, 0755) && errno != EEXIST) {
		perror(path);
		exit(1);
	}
	snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
	FILE *f = fopen(path, "wb");
	if (!f || (with_prefix && fwrite(&prefix, 1, 1, f) != 1) || (n && fwrite(p, 1, n, f) != n) || fclose(f)) {
		perror(path);
		exit(1);
	}
	nwritten++;
}

/* A message of type d with every field set (two values for a repeated
 * one), sub-messages to depth 3. first_of_oneof: only the first member of
 * each oneof (otherwise all are written and protobuf-c keeps the last). */
static void fill(wbuf *b, const ProtobufCMessageDescriptor *d, int depth, bool first_of_oneof, unsigned salt)
{
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (first_of_oneof && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && i > 0 &&
		    (d->fields[i - 1].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    d->fields[i - 1].quantifier_offset == f->quantifier_offset)
			continue;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth >= 3)
			continue;
		unsigned reps = f->label == PROTOBUF_C_LABEL_REPEATED ? 2 : 1;
		for (unsigned r = 0; r < reps; r++) {
			uint64_t v = 1 + r + salt;
			switch (f->type) {
			case PROTOBUF_C_TYPE_SFIXED32:
			case PROTOBUF_C_TYPE_FIXED32:
			case PROTOBUF_C_TYPE_FLOAT:
				put_tag(b, f->id, 5);
				put(b, &v, 4);
				break;
			case PROTOBUF_C_TYPE_SFIXED64:
			case PROTOBUF_C_TYPE_FIXED64:
			case PROTOBUF_C_TYPE_DOUBLE:
				put_tag(b, f->id, 1);
				put(b, &v, 8);
				break;
			case PROTOBUF_C_TYPE_STRING:
			case PROTOBUF_C_TYPE_BYTES: {
				char s[40];
				wbuf sb = {0};
				int sn = strstr(f->name, "URLs") || strstr(f->name, "_urls")
				             ? snprintf(s, sizeof s, "http://127.0.0.1:%u", 2380 + (unsigned)v)
				             : snprintf(s, sizeof s, "%s%u", r ? "k" : "foo", (unsigned)v);
				put(&sb, s, (size_t)sn);
				put_len(b, f->id, &sb);
				free(sb.p);
				break;
			}
			case PROTOBUF_C_TYPE_MESSAGE: {
				wbuf sb = {0};
				fill(&sb, f->descriptor, depth + 1, first_of_oneof, salt + r);
				put_len(b, f->id, &sb);
				free(sb.p);
				break;
			}
			case PROTOBUF_C_TYPE_SINT32:
			case PROTOBUF_C_TYPE_SINT64:
				put_tag(b, f->id, 0);
				put_varint(b, v * 2 + 1); /* zigzag: negative */
				break;
			default:
				put_tag(b, f->id, 0);
				put_varint(b, f->type == PROTOBUF_C_TYPE_BOOL ? 1 : v);
				break;
			}
		}
	}
}

/* A TxnRequest nesting `levels` txns, each with one success op; the
 * innermost op puts "k". Built inside out. */
static wbuf nested_txn(unsigned levels)
{
	wbuf in = {0};
	static const uint8_t put_k[] = {0x0a, 0x01, 'k', 0x12, 0x01, 'v'};
	put(&in, put_k, sizeof put_k);
	wbuf op = {0}, txn = {0};
	put_len(&op, 2, &in); /* RequestOp.request_put */
	put_len(&txn, 2, &op);
	for (unsigned i = 1; i < levels; i++) {
		free(in.p);
		in = txn;
		op.n = 0;
		put_len(&op, 4, &in); /* RequestOp.request_txn */
		txn = (wbuf){0};
		put_len(&txn, 2, &op);
	}
	free(in.p);
	free(op.p);
	return txn;
}

/* ---- fuzz_request ---- */
static void request_seeds(void)
{
	fuzz_type t[FUZZ_MAX_TYPES];
	size_t n = fuzz_types(t);
	for (size_t i = 0; i < n; i++) {
		for (int v = 0; v < 2; v++) {
			wbuf b = {0};
			fill(&b, t[i].d, 0, v == 1, (unsigned)i);
			char name[96];
			snprintf(name, sizeof name, "%02zu-%s-%s", i, t[i].d->short_name, v ? "oneof" : "all");
			write_seed("fuzz_request", name, (uint8_t)i, true, b.p, b.n);
			free(b.p);
		}
		if (t[i].d == &etcdserverpb__txn_request__descriptor) {
			/* the deepest accepted txn and the first refused one */
			static const unsigned levels[] = {3, 128, 129};
			for (size_t k = 0; k < 3; k++) {
				wbuf b = nested_txn(levels[k]);
				char name[64];
				snprintf(name, sizeof name, "%02zu-TxnRequest-nested-%u", i, levels[k]);
				write_seed("fuzz_request", name, (uint8_t)i, true, b.p, b.n);
				free(b.p);
			}
		}
	}
}

/* ---- fuzz_grpc: an nghttp2 client's bytes after the preface ---- */
typedef struct body {
	const uint8_t *p;
	size_t n, off;
} body;

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
	body *b = src->ptr;
	size_t k = b->n - b->off < len ? b->n - b->off : len;
	memcpy(buf, b->p + b->off, k);
	b->off += k;
	if (b->off == b->n)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)k;
}

static void grpc_frame(wbuf *b, const wbuf *msg)
{
	uint8_t h[5] = {0, (uint8_t)(msg->n >> 24), (uint8_t)(msg->n >> 16), (uint8_t)(msg->n >> 8), (uint8_t)msg->n};
	put(b, h, 5);
	put(b, msg->p, msg->n);
}

static void grpc_seed(const char *name, const char *path, const wbuf *msgs, size_t nmsgs, bool two_streams)
{
	nghttp2_session_callbacks *cb;
	nghttp2_session *s;
	if (nghttp2_session_callbacks_new(&cb) || nghttp2_session_client_new(&s, cb, NULL))
		abort();
	nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
	nghttp2_nv hdrs[] = {
	    NV(":method", "POST"),
	    NV(":scheme", "http"),
	    NV(":path", path),
	    NV(":authority", "127.0.0.1:2379"),
	    NV("content-type", "application/grpc"),
	    NV("te", "trailers"),
	    NV("grpc-timeout", "5S"),
	    NV("hasleader", "true"),
	};
#undef NV
	wbuf data = {0};
	for (size_t i = 0; i < nmsgs; i++)
		grpc_frame(&data, &msgs[i]);
	body bodies[2] = {{data.p, data.n, 0}, {data.p, data.n, 0}};
	for (int k = 0; k < (two_streams ? 2 : 1); k++) {
		nghttp2_data_provider prd = {.source.ptr = &bodies[k], .read_callback = body_read};
		if (nghttp2_submit_request(s, NULL, hdrs, sizeof hdrs / sizeof *hdrs, &prd, NULL) < 0)
			abort();
	}
	wbuf out = {0};
	const uint8_t *p;
	ssize_t n;
	while ((n = nghttp2_session_mem_send(s, &p)) > 0)
		put(&out, p, (size_t)n);
	size_t skip = out.n >= 24 && !memcmp(out.p, "PRI * HTTP/2.0", 14) ? 24 : 0;
	char fname[96];
	snprintf(fname, sizeof fname, "%s-whole", name);
	write_seed("fuzz_grpc", fname, 0, true, out.p + skip, out.n - skip);
	snprintf(fname, sizeof fname, "%s-chunked", name);
	write_seed("fuzz_grpc", fname, 7, true, out.p + skip, out.n - skip);
	free(out.p);
	free(data.p);
	nghttp2_session_del(s);
	nghttp2_session_callbacks_del(cb);
}

static void grpc_seeds(void)
{
	wbuf range = {0}, watch[3] = {{0}}, ka = {0}, leader = {0};
	fill(&range, &etcdserverpb__range_request__descriptor, 0, true, 0);
	fill(&watch[0], &etcdserverpb__watch_request__descriptor, 0, true, 0);
	static const uint8_t cancel[] = {0x12, 0x02, 0x08, 0x01}, progress[] = {0x1a, 0x00};
	put(&watch[1], cancel, sizeof cancel);
	put(&watch[2], progress, sizeof progress);
	fill(&ka, &etcdserverpb__lease_keep_alive_request__descriptor, 0, true, 0);
	fill(&leader, &v3electionpb__leader_request__descriptor, 0, true, 0);
	wbuf txn = nested_txn(4), deep = nested_txn(200), empty = {0};
	grpc_seed("range", "/etcdserverpb.KV/Range", &range, 1, false);
	grpc_seed("range-two-streams", "/etcdserverpb.KV/Range", &range, 1, true);
	grpc_seed("range-empty", "/etcdserverpb.KV/Range", &empty, 1, false);
	grpc_seed("txn", "/etcdserverpb.KV/Txn", &txn, 1, false);
	grpc_seed("txn-too-deep", "/etcdserverpb.KV/Txn", &deep, 1, false);
	grpc_seed("watch", "/etcdserverpb.Watch/Watch", watch, 3, false);
	wbuf kas[2] = {ka, ka};
	grpc_seed("keepalive", "/etcdserverpb.Lease/LeaseKeepAlive", kas, 2, false);
	grpc_seed("observe", "/v3electionpb.Election/Observe", &leader, 1, false);
	grpc_seed("unknown", "/etcdserverpb.KV/Nope", &range, 1, false);
	free(range.p);
	for (int i = 0; i < 3; i++)
		free(watch[i].p);
	free(ka.p);
	free(leader.p);
	free(txn.p);
	free(deep.p);
}

/* ---- fuzz_http1 ---- */
static void http1_seeds(void)
{
	static const char *const reqs[] = {
	    "GET /health HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n\r\n",
	    "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	    "GET /metrics HTTP/1.0\r\n\r\n",
	    "POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{\"key\":\"a\"}",
	    "POST /v3/kv/put HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	    "GET /health HTTP/1.1\r\n\r\nGET /version HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n",
	    "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof reqs / sizeof *reqs; i++) {
		char name[32];
		snprintf(name, sizeof name, "req-%zu-whole", i);
		write_seed("fuzz_http1", name, 0, true, reqs[i], strlen(reqs[i]));
		snprintf(name, sizeof name, "req-%zu-chunked", i);
		write_seed("fuzz_http1", name, 3, true, reqs[i], strlen(reqs[i]));
	}
}

/* ---- fuzz_peer ---- */
static void peer_seeds(void)
{
	wbuf ir = {0};
	fill(&ir, &msinternal__internal_request__descriptor, 0, true, 0);
	raft_conf_change cc = {RAFT_CC_ADD_LEARNER, 0x42, ir.p, ir.n};
	size_t cclen;
	uint8_t *ccb = raft_conf_change_encode(&cc, &cclen);
	raft_entry ents[] = {{5, 10, RAFT_ENTRY_NORMAL, ir.p, ir.n},
	                     {5, 11, RAFT_ENTRY_CONF_CHANGE, ccb, cclen},
	                     {5, 12, RAFT_ENTRY_NORMAL, NULL, 0}};
	uint64_t voters[] = {1, 2, 3}, learners[] = {4};
	for (int t = RAFT_MSG_APP; t <= RAFT_MSG_TYPE_MAX; t++) {
		raft_msg m = {0};
		m.type = (raft_msg_type)t;
		m.from = 1;
		m.to = 2;
		m.term = 5;
		m.log_term = 4;
		m.index = 9;
		m.commit = 8;
		m.reject = t == RAFT_MSG_APP_RESP;
		m.reject_hint = 7;
		if (t == RAFT_MSG_APP) {
			m.entries = ents;
			m.n_entries = 3;
		}
		if (t == RAFT_MSG_HEARTBEAT || t == RAFT_MSG_READ_INDEX) {
			m.context = (const uint8_t *)"ctx-1234";
			m.context_len = 8;
		}
		if (t == RAFT_MSG_SNAP)
			m.snapshot = (raft_snapshot_meta){100, 5, {voters, 3, learners, 1}};
		uint8_t *b;
		size_t n;
		if (raft_transport_encode_msg(&m, &b, &n, NULL))
			abort();
		char name[48];
		snprintf(name, sizeof name, "msg-%s", raft_msg_type_name(m.type));
		write_seed("fuzz_peer", name, 4, true, b, n);
		ms_free(b);
	}
	static const ProtobufCMessageDescriptor *const frames[] = {
	    &msraft__hello__descriptor, &msraft__snap_chunk__descriptor, &msraft__snap_end__descriptor,
	    &msraft__snap_ack__descriptor};
	for (uint8_t i = 0; i < 4; i++) {
		wbuf b = {0};
		fill(&b, frames[i], 0, true, i);
		char name[48];
		snprintf(name, sizeof name, "frame-%s", frames[i]->short_name);
		write_seed("fuzz_peer", name, i, true, b.p, b.n);
		free(b.p);
	}

	/* ---- fuzz_raft_log: the same payloads as stored entry records ---- */
	wbuf rec = {0};
	uint8_t hdr[9];
	ms_put_u64le(hdr, 5);
	hdr[8] = RAFT_NODE_ENTRY_NORMAL;
	put(&rec, hdr, 9);
	put(&rec, ir.p, ir.n);
	write_seed("fuzz_raft_log", "entry-normal", 0, true, rec.p, rec.n);
	rec.n = 0;
	wbuf deep = nested_txn(128), wrapped = {0};
	put_len(&wrapped, 12, &deep); /* InternalRequest.txn */
	put(&rec, hdr, 9);
	put(&rec, wrapped.p, wrapped.n);
	write_seed("fuzz_raft_log", "entry-txn-128-levels", 0, true, rec.p, rec.n);
	rec.n = 0;
	wbuf mc = {0};
	fill(&mc, &msinternal__member_change_context__descriptor, 0, true, 0);
	raft_conf_change cc2 = {RAFT_CC_ADD_VOTER, 0x42, mc.p, mc.n};
	uint8_t *cc2b = raft_conf_change_encode(&cc2, &cclen);
	hdr[8] = RAFT_NODE_ENTRY_CONF_CHANGE;
	put(&rec, hdr, 9);
	put(&rec, cc2b, cclen);
	write_seed("fuzz_raft_log", "entry-conf-change", 0, true, rec.p, rec.n);
	raft_conf_state cs = {voters, 3, learners, 1};
	uint8_t *csb = raft_conf_state_encode(&cs, &cclen);
	write_seed("fuzz_raft_log", "conf-state", 1, true, csb, cclen);
	ms_free(csb);
	ms_free(cc2b);
	ms_free(ccb);
	free(rec.p);
	free(deep.p);
	free(wrapped.p);
	free(mc.p);
	free(ir.p);
}

/* ---- fuzz_engine ---- */
static void engine_seeds(void)
{
	static const uint8_t key0[] = {'a', 0, 'b'};
	engine_kv kvs[] = {
	    {(const uint8_t *)"foo", 3, (const uint8_t *)"bar", 3, 2, 5, 3, 0x1234},
	    {key0, 3, NULL, 0, 1, 1, 1, 0},
	};
	for (size_t i = 0; i < 2; i++) {
		uint8_t b[128];
		size_t n = engine_kv_encode(&kvs[i], b, sizeof b);
		char name[32];
		snprintf(name, sizeof name, "value-%zu", i);
		write_seed("fuzz_engine", name, 0, true, b, n);
		uint8_t k[64];
		size_t kl = eng_key_enc(kvs[i].key, kvs[i].key_len, k);
		eng_rev_put(k + kl, kvs[i].mod_rev, (int64_t)i);
		snprintf(name, sizeof name, "key-%zu", i);
		write_seed("fuzz_engine", name, 1, true, k, kl + ENG_REVLEN);
	}
	uint8_t tomb = ENG_TOMBSTONE;
	write_seed("fuzz_engine", "tombstone", 0, true, &tomb, 1);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		root = argv[1];
	request_seeds();
	grpc_seeds();
	http1_seeds();
	peer_seeds();
	engine_seeds();
	printf("gen_seeds: %u files under %s\n", nwritten, root);
	return 0;
}
