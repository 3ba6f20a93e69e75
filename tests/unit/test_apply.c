/* test_apply.c — what may enter the raft log, and what a member does with an
 * entry that should never have: a one-member server on a temporary data dir
 * (no sockets) has garbage and invalid requests written straight into its
 * raft log as committed entries; on restart it applies past them with no
 * abort, the consistent index moves on, the valid entry after them is
 * applied, and a second restart is as good. ms_request_check's rules are
 * checked directly. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "raft/log_store.h"
#include "server/server_int.h"

static struct event_base *base;
static struct event *tick;
static bool ready;

static void noop_cb(evutil_socket_t fd, short what, void *arg) {}

#define RUN_UNTIL(cond)                                                                                                \
	do {                                                                                                           \
		int64_t dl_ = ms_now_mono_ns() + 30 * (int64_t)1000000000;                                             \
		while (!(cond)) {                                                                                      \
			if (ms_now_mono_ns() > dl_)                                                                    \
				fail_msg("timed out waiting for %s", #cond);                                           \
			event_base_loop(base, EVLOOP_ONCE);                                                            \
		}                                                                                                      \
	} while (0)

static void on_ready(void *ud)
{
	ready = true;
}

static char *peer_urls[] = {"http://127.0.0.1:1"};
static char *client_urls[] = {"http://127.0.0.1:2"};

static ms_server *server_start(const char *dir)
{
	static ms_peer self = {"n1", peer_urls, 1};
	ms_server_config cfg = {.name = "n1",
	                        .data_dir = dir,
	                        .client_urls = client_urls,
	                        .nclient_urls = 1,
	                        .peer_urls = peer_urls,
	                        .npeer_urls = 1,
	                        .initial_cluster = &self,
	                        .ninitial_cluster = 1,
	                        .initial_cluster_new = true,
	                        .initial_cluster_token = "test",
	                        .max_request_bytes = 1572864,
	                        .max_txn_ops = 128,
	                        .heartbeat_ms = 100,
	                        .election_ms = 1000,
	                        .snapshot_count = 100000,
	                        .on_ready = on_ready};
	ms_server *s = NULL;
	ms_err err = {0};
	ready = false;
	if (ms_server_new(base, &cfg, &s, &err) || ms_server_start(s, &err))
		fail_msg("server: %s", err.msg);
	RUN_UNTIL(ready);
	return s;
}

typedef struct result {
	bool done;
	int code;
	ProtobufCMessage *resp;
} result;

static void done_cb(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	result *r = arg;
	r->done = true;
	r->code = code;
	r->resp = resp;
}

static void free_result(result *r)
{
	if (r->resp)
		protobuf_c_message_free_unpacked(r->resp, &ms_pb_allocator);
	memset(r, 0, sizeof *r);
}

static int put(ms_server *s, const char *k, const char *v)
{
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = (ProtobufCBinaryData){strlen(k), (uint8_t *)k};
	p.value = (ProtobufCBinaryData){strlen(v), (uint8_t *)v};
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUT;
	req.put = &p;
	result r = {0};
	int rc = ms_server_propose(s, &req, 0, done_cb, &r);
	if (rc)
		return rc;
	RUN_UNTIL(r.done);
	rc = r.code;
	free_result(&r);
	return rc;
}

/* The value of k (serializable read), or NULL; caller frees. */
static char *get(ms_server *s, const char *k)
{
	Etcdserverpb__RangeRequest *rr = ms_malloc(sizeof *rr);
	etcdserverpb__range_request__init(rr);
	rr->key.data = (uint8_t *)ms_strdup(k);
	rr->key.len = strlen(k);
	rr->serializable = true;
	result r = {0};
	assert_int_equal(ms_server_range(s, rr, 0, done_cb, &r), 0);
	RUN_UNTIL(r.done);
	assert_int_equal(r.code, 0);
	Etcdserverpb__RangeResponse *resp = (Etcdserverpb__RangeResponse *)r.resp;
	char *v = NULL;
	if (resp->n_kvs == 1)
		v = strndup((char *)resp->kvs[0]->value.data, resp->kvs[0]->value.len);
	free_result(&r);
	return v;
}

static uint64_t applied(ms_server *s)
{
	ms_server_status st;
	ms_server_get_status(s, &st);
	return st.raft_applied_index;
}

typedef struct last_ent {
	uint64_t index, term;
} last_ent;

static int note_entry(void *arg, const raft_log_rec *rec)
{
	last_ent *l = arg;
	l->index = rec->index;
	l->term = rec->term;
	return 0;
}

static uint8_t *pack_put(const char *k, const char *v, uint64_t proposer, size_t *len)
{
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	p.key = (ProtobufCBinaryData){strlen(k), (uint8_t *)k};
	p.value = (ProtobufCBinaryData){strlen(v), (uint8_t *)v};
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUT;
	req.put = &p;
	req.proposer = proposer;
	req.id = 99;
	*len = msinternal__internal_request__get_packed_size(&req);
	uint8_t *b = ms_malloc(*len);
	msinternal__internal_request__pack(&req, b);
	return b;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void test_apply_past_bad_entries(void **state)
{
	char dir[] = "/tmp/ms-apply-XXXXXX";
	assert_non_null(mkdtemp(dir));
	ms_server *s = server_start(dir);
	assert_int_equal(put(s, "k1", "v1"), 0);
	uint64_t id = ms_server_id(s);
	ms_server_free(s);

	/* committed entries the leader would never have proposed: bytes that
	 * do not decode, a put with an empty key, a request of a kind nothing
	 * applies, then a valid put */
	char logdir[512];
	snprintf(logdir, sizeof logdir, "%s/metastore/raft", dir);
	raft_log_store *ls;
	ms_err err = {0};
	assert_int_equal(raft_log_store_open(logdir, false, &ls, &err), 0);
	raft_log_hs hs;
	uint64_t si, st;
	uint8_t *conf = NULL;
	size_t conf_len;
	last_ent last = {0};
	assert_int_equal(raft_log_store_load(ls, &hs, &si, &st, &conf, &conf_len, note_entry, &last, &err), 0);
	ms_free(conf);
	assert_true(last.index > 0);
	static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x80};
	size_t l_empty, l_good;
	uint8_t *empty_key =
	    pack_put("", "x", id, &l_empty); /* "proposed" by this member: its result has a waiter id */
	uint8_t *good = pack_put("k2", "after", 0, &l_good);
	Msinternal__InternalRequest alarm = MSINTERNAL__INTERNAL_REQUEST__INIT;
	Etcdserverpb__AlarmRequest ar = ETCDSERVERPB__ALARM_REQUEST__INIT;
	alarm.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_ALARM;
	alarm.alarm = &ar;
	uint8_t abuf[64];
	size_t l_alarm = msinternal__internal_request__pack(&alarm, abuf);
	uint64_t b = last.index + 1;
	raft_log_rec recs[] = {{b, hs.term, RAFT_NODE_ENTRY_NORMAL, garbage, sizeof garbage},
	                       {b + 1, hs.term, RAFT_NODE_ENTRY_NORMAL, empty_key, l_empty},
	                       {b + 2, hs.term, RAFT_NODE_ENTRY_NORMAL, abuf, l_alarm},
	                       {b + 3, hs.term, RAFT_NODE_ENTRY_NORMAL, good, l_good}};
	raft_log_hs nhs = {hs.term, hs.vote, b + 3};
	raft_log_write w = {.hs = &nhs, .ents = recs, .nents = 4};
	assert_int_equal(raft_log_store_write(ls, &w, 1, &err), 0);
	raft_log_store_close(ls);
	ms_free(empty_key);
	ms_free(good);

	/* restart: the bad entries are consumed, the good one applied */
	s = server_start(dir);
	RUN_UNTIL(applied(s) >= b + 3);
	char *v = get(s, "k2");
	assert_non_null(v);
	assert_string_equal(v, "after");
	free(v);
	v = get(s, "k1");
	assert_string_equal(v, "v1");
	free(v);
	assert_int_equal(put(s, "k3", "v3"), 0);
	uint64_t at = applied(s);
	ms_server_free(s);

	/* and again: nothing is replayed twice, nothing aborts */
	s = server_start(dir);
	RUN_UNTIL(applied(s) >= at);
	v = get(s, "k3");
	assert_string_equal(v, "v3");
	free(v);
	ms_server_free(s);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Local proposals are held to the log's rules too. */
static void test_propose_refuses_invalid(void **state)
{
	char dir[] = "/tmp/ms-apply-XXXXXX";
	assert_non_null(mkdtemp(dir));
	ms_server *s = server_start(dir);
	assert_int_equal(put(s, "", "v"), MS_EKEY_EMPTY);
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	result r = {0};
	assert_int_equal(ms_server_propose(s, &req, 0, done_cb, &r), MS_EINVAL); /* no kind */
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_TXN;            /* kind without body */
	assert_int_equal(ms_server_propose(s, &req, 0, done_cb, &r), MS_EINVAL);
	assert_false(r.done);
	ms_server_free(s);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_request_check(void **state)
{
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	ms_err err = {0};
	assert_int_equal(ms_request_check(&req, 128, &err), MS_EINVAL);
	req.request_case = 77;
	assert_int_equal(ms_request_check(&req, 128, &err), MS_EINVAL);
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUT;
	assert_int_equal(ms_request_check(&req, 128, &err), MS_EINVAL);
	Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
	req.put = &p;
	assert_int_equal(ms_request_check(&req, 128, &err), MS_EKEY_EMPTY);
	p.key = (ProtobufCBinaryData){1, (uint8_t *)"k"};
	assert_int_equal(ms_request_check(&req, 128, &err), 0);

	/* a txn over the op limit: refused with the limit, fine without it */
	Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
	Etcdserverpb__RequestOp ops[3], *opp[3];
	Etcdserverpb__PutRequest puts[3];
	char keys[3][2] = {"a", "b", "c"};
	for (int i = 0; i < 3; i++) {
		etcdserverpb__request_op__init(&ops[i]);
		etcdserverpb__put_request__init(&puts[i]);
		puts[i].key = (ProtobufCBinaryData){1, (uint8_t *)keys[i]};
		ops[i].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
		ops[i].request_put = &puts[i];
		opp[i] = &ops[i];
	}
	t.success = opp;
	t.n_success = 3;
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_TXN;
	req.txn = &t;
	assert_int_equal(ms_request_check(&req, 2, &err), MS_ETOO_MANY_OPS);
	assert_int_equal(ms_request_check(&req, INT_MAX, &err), 0);

	Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_LEASE_GRANT;
	req.lease_grant = &g;
	g.ttl = 5;
	assert_int_equal(ms_request_check(&req, 128, &err), MS_EINVAL); /* id 0 */
	g.id = 7;
	assert_int_equal(ms_request_check(&req, 128, &err), 0);
	Msinternal__ClusterVersionRequest cv = MSINTERNAL__CLUSTER_VERSION_REQUEST__INIT;
	cv.version = "9.9.9";
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_CLUSTER_VERSION;
	req.cluster_version = &cv;
	assert_int_equal(ms_request_check(&req, 128, &err), MS_EINVAL);
	cv.version = "3.4.0";
	assert_int_equal(ms_request_check(&req, 128, &err), 0);
	Msinternal__InternalRequest *out = NULL;
	static const uint8_t junk[] = {0xff, 0xff, 0xff};
	assert_int_equal(ms_request_decode(junk, sizeof junk, &out, &err), MS_EINVAL);
	assert_null(out);
}

static int setup(void **state)
{
	base = event_base_new();
	tick = event_new(base, -1, EV_PERSIST, noop_cb, NULL);
	struct timeval tv = {0, 5000};
	event_add(tick, &tv);
	ms_log_set_level(getenv("APPLY_TEST_LOG") ? MS_LOG_DEBUG : MS_LOG_ERROR);
	return 0;
}

static int teardown(void **state)
{
	event_free(tick);
	event_base_free(base);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_check),
	    cmocka_unit_test(test_propose_refuses_invalid),
	    cmocka_unit_test(test_apply_past_bad_entries),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
