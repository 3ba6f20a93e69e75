/* svc_election.c — etcd's v3election service (Campaign, Proclaim, Leader,
 * Observe, Resign) run inside the server as etcd 3.4 runs it
 * (clientv3/concurrency's Election over leases, txns and watches).
 *
 * A campaigner's key is name + "/" + lease in lower-case hex (lease 0: a
 * fresh 60 s lease nobody keeps alive, etcd's orphaned session); the leader
 * is the key of the prefix with the lowest create revision. Campaign puts
 * the key if absent (re-campaigning with a different value proclaims it)
 * and waits until every earlier key is deleted; its header is the txn's.
 * Proclaim and Resign act only while the key still has the leader's create
 * revision ("election: not leader" for Proclaim; Resign is then a no-op).
 * Observe sends the current leader, then each change of its key, and the
 * next leader once the key is deleted. Errors, as etcd's in-server client
 * produces them, have status Unknown.
 *
 * One difference by choice: Resign with lease 0 does not grant the throwaway
 * lease etcd's session would (nothing uses it).
 *
 * Loop thread only; each step is an asynchronous server request or a
 * server-side watcher (svc_lock.c). A Campaign whose call ends while it
 * waits resigns (deletes its key if it still has its revision). */
#include <string.h>

#include "api/api_int.h"
#include "v3election.pb-c.h"

#define BAD_REQUEST "grpc: error unmarshalling request: unexpected EOF or bad wire data"
#define SESSION_TTL 60
#define ERR_NO_LEADER "election: no leader"
#define ERR_NOT_LEADER "election: not leader"
#define ERR_MISSING_LEADER "\"leader\" field must be provided"

/* Proposes Txn(create_revision(key) == rev ? then : otherwise); then and
 * otherwise may be NULL (an empty branch). Checks the txn as KV's Txn does. */
static int cmp_create_txn(api *a, ProtobufCBinaryData key, int64_t rev, Etcdserverpb__RequestOp *then,
                          Etcdserverpb__RequestOp *otherwise, ms_done_fn done, void *arg, ms_err *err)
{
	Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
	cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
	cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
	cmp.key = key;
	cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
	cmp.create_revision = rev;
	Etcdserverpb__Compare *cmps[1] = {&cmp};
	Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
	txn.n_compare = 1;
	txn.compare = cmps;
	txn.n_success = then ? 1 : 0;
	txn.success = &then;
	txn.n_failure = otherwise ? 1 : 0;
	txn.failure = &otherwise;
	int rc = engine_check_txn(&txn, a->max_txn_ops, err);
	if (rc)
		return rc;
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_TXN;
	req.txn = &txn;
	return ms_server_propose(a->srv, &req, 0, done, arg);
}

static void put_op(Etcdserverpb__RequestOp *op, Etcdserverpb__PutRequest *put, ProtobufCBinaryData key,
                   ProtobufCBinaryData value, int64_t lease)
{
	put->key = key;
	put->value = value;
	put->lease = lease;
	op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	op->request_put = put;
}

static void detached_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
}

/* etcd's Resign for a campaign whose caller went away: nobody waits. */
static void resign_detached(api *a, ProtobufCBinaryData key, int64_t rev)
{
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = key;
	Etcdserverpb__RequestOp del = ETCDSERVERPB__REQUEST_OP__INIT;
	del.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	del.request_delete_range = &d;
	ms_err err = {0};
	int rc = cmp_create_txn(a, key, rev, &del, NULL, detached_done, NULL, &err);
	if (rc)
		MS_WARN("v3election", "cannot resign a cancelled campaign: %s", ms_strerror(rc));
}

static int bin_dup(ProtobufCBinaryData *dst, ProtobufCBinaryData src)
{
	dst->data = ms_malloc(src.len + 1);
	if (!dst->data)
		return MS_ENOMEM;
	if (src.len)
		memcpy(dst->data, src.data, src.len);
	dst->len = src.len;
	return 0;
}

/* ---- Campaign ---- */

typedef struct camp_op {
	api *a;
	grpc_call *call;
	int64_t lease;
	ProtobufCBinaryData name, value, pfx, end, key;
	int64_t rev;                      /* the key's create revision */
	Etcdserverpb__ResponseHeader hdr; /* the first txn's: the reply's */
	bool key_made;                    /* the key exists with rev: resign on cancel */
	api_waitdel *wd;
} camp_op;

static void camp_free(camp_op *op)
{
	ms_free(op->name.data);
	ms_free(op->value.data);
	ms_free(op->pfx.data);
	ms_free(op->end.data);
	ms_free(op->key.data);
	grpc_call_unref(op->call);
	ms_free(op);
}

static bool camp_gone(const camp_op *op)
{
	return grpc_call_data(op->call) != op || grpc_call_closed(op->call);
}

static void camp_abort(camp_op *op)
{
	if (grpc_call_data(op->call) == op)
		grpc_call_set_data(op->call, NULL);
	if (op->key_made)
		resign_detached(op->a, op->key, op->rev);
	camp_free(op);
}

/* Fails the call; resign says whether the recipe resigns first (a failed
 * proclaim) or just forgets the key (a failed wait). */
static void camp_fail(camp_op *op, int code, const char *detail, bool resign)
{
	grpc_call_set_data(op->call, NULL);
	if (resign && op->key_made)
		resign_detached(op->a, op->key, op->rev);
	if (code == MS_ENOT_LEADER)
		grpc_call_finish(op->call, GRPC_UNKNOWN, ERR_NOT_LEADER);
	else
		api_finish_unknown(op->call, code, detail);
	camp_free(op);
}

static void camp_waited(void *arg, int code, const Etcdserverpb__ResponseHeader *hdr, const char *detail)
{
	camp_op *op = arg;
	op->wd = NULL;
	if (camp_gone(op)) {
		camp_abort(op);
		return;
	}
	if (code) {
		camp_fail(op, code, detail, false);
		return;
	}
	grpc_call_set_data(op->call, NULL);
	V3electionpb__LeaderKey lk = V3ELECTIONPB__LEADER_KEY__INIT;
	lk.name = op->name;
	lk.key = op->key;
	lk.rev = op->rev;
	lk.lease = op->lease;
	V3electionpb__CampaignResponse r = V3ELECTIONPB__CAMPAIGN_RESPONSE__INIT;
	r.header = &op->hdr;
	r.leader = &lk;
	api_reply(op->call, &r.base);
	camp_free(op);
}

static void camp_wait(camp_op *op)
{
	int rc = api_wait_deletes(op->a, op->pfx, op->end, op->rev - 1, camp_waited, op, &op->wd);
	if (rc)
		camp_fail(op, rc, NULL, false);
}

static void camp_proclaimed(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	camp_op *op = arg;
	Etcdserverpb__TxnResponse *t = (Etcdserverpb__TxnResponse *)resp;
	if (camp_gone(op))
		camp_abort(op);
	else if (code)
		camp_fail(op, code, msg, true);
	else if (!t->succeeded)
		camp_fail(op, MS_ENOT_LEADER, NULL, true);
	else
		camp_wait(op);
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
}

static void camp_txn_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	camp_op *op = arg;
	Etcdserverpb__TxnResponse *t = (Etcdserverpb__TxnResponse *)resp;
	Mvccpb__KeyValue *kv = NULL;
	if (code == 0 && t->header) {
		op->key_made = true;
		op->hdr = *t->header;
		op->rev = t->header->revision;
		if (!t->succeeded && t->n_responses == 1 && t->responses[0]->response_range &&
		    t->responses[0]->response_range->n_kvs == 1) {
			kv = t->responses[0]->response_range->kvs[0];
			op->rev = kv->create_revision; /* this lease already campaigns */
		}
	}
	if (camp_gone(op)) {
		camp_abort(op);
	} else if (code) {
		camp_fail(op, code, msg, false);
	} else if (!t->header || (!t->succeeded && !kv)) {
		camp_fail(op, MS_EINVAL, "unexpected txn response", true);
	} else if (kv && (kv->value.len != op->value.len || memcmp(kv->value.data, op->value.data, op->value.len))) {
		/* etcd: re-campaigning with another value proclaims it */
		Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
		Etcdserverpb__RequestOp then = ETCDSERVERPB__REQUEST_OP__INIT;
		put_op(&then, &put, op->key, op->value, op->lease);
		ms_err err = {0};
		int rc = cmp_create_txn(op->a, op->key, op->rev, &then, NULL, camp_proclaimed, op, &err);
		if (rc)
			camp_fail(op, rc, err.msg, true);
	} else {
		camp_wait(op);
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
}

/* Txn(create_revision(key) == 0 ? put key value lease : get key) */
static int camp_txn(camp_op *op)
{
	int rc = api_recipe_keys(op->name, op->lease, &op->pfx, &op->end, &op->key);
	if (rc)
		return rc;
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__RequestOp then = ETCDSERVERPB__REQUEST_OP__INIT;
	put_op(&then, &put, op->key, op->value, op->lease);
	Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT;
	get.key = op->key;
	Etcdserverpb__RequestOp otherwise = ETCDSERVERPB__REQUEST_OP__INIT;
	otherwise.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	otherwise.request_range = &get;
	ms_err err = {0};
	return cmp_create_txn(op->a, op->key, 0, &then, &otherwise, camp_txn_done, op, &err);
}

static void camp_granted(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	camp_op *op = arg;
	if (code == 0)
		op->lease = ((Etcdserverpb__LeaseGrantResponse *)resp)->id;
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
	if (camp_gone(op)) {
		camp_abort(op);
		return;
	}
	if (!code)
		code = camp_txn(op);
	if (code)
		camp_fail(op, code, msg, false);
}

static void elect_campaign(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	V3electionpb__CampaignRequest *r = v3electionpb__campaign_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	if (!api_require_leader(a, call))
		goto out;
	camp_op *op = ms_calloc(1, sizeof *op);
	if (!op || bin_dup(&op->name, r->name) || bin_dup(&op->value, r->value)) {
		if (op) {
			ms_free(op->name.data);
			ms_free(op);
		}
		api_finish_error(call, MS_ENOMEM, NULL);
		goto out;
	}
	op->a = a;
	op->call = call;
	op->lease = r->lease;
	grpc_call_ref(call);
	grpc_call_set_data(call, op);
	int rc = op->lease == 0 ? ms_server_lease_grant(a->srv, 0, SESSION_TTL, 0, camp_granted, op) : camp_txn(op);
	if (rc)
		camp_fail(op, rc, NULL, false);
out:
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

static void camp_close(grpc_call *call, void *ud)
{
	camp_op *op = grpc_call_data(call);
	if (!op)
		return;
	grpc_call_set_data(call, NULL);
	if (op->wd) {
		api_wait_deletes_cancel(op->wd);
		op->wd = NULL;
		camp_abort(op);
	}
	/* else a request is in flight; its completion sees the call gone */
}

/* ---- Proclaim and Resign: one txn on the leader key's create revision ---- */

typedef struct lk_op {
	grpc_call *call;
	bool proclaim;
	V3electionpb__LeaderKey *leader; /* Proclaim: kept until the lease is known */
	ProtobufCBinaryData value;
	api *a;
} lk_op;

static void lk_free(lk_op *op)
{
	if (op->leader)
		protobuf_c_message_free_unpacked(&op->leader->base, &ms_pb_allocator);
	ms_free(op->value.data);
	grpc_call_unref(op->call);
	ms_free(op);
}

static void lk_txn_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	lk_op *op = arg;
	Etcdserverpb__TxnResponse *t = (Etcdserverpb__TxnResponse *)resp;
	if (!grpc_call_closed(op->call)) {
		if (code) {
			api_finish_unknown(op->call, code, msg);
		} else if (op->proclaim && !t->succeeded) {
			grpc_call_finish(op->call, GRPC_UNKNOWN, ERR_NOT_LEADER);
		} else if (op->proclaim) {
			V3electionpb__ProclaimResponse r = V3ELECTIONPB__PROCLAIM_RESPONSE__INIT;
			r.header = t->header;
			api_reply(op->call, &r.base);
		} else {
			V3electionpb__ResignResponse r = V3ELECTIONPB__RESIGN_RESPONSE__INIT;
			r.header = t->header;
			api_reply(op->call, &r.base);
		}
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
	lk_free(op);
}

static void lk_txn(lk_op *op, int64_t lease)
{
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	Etcdserverpb__DeleteRangeRequest del = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	Etcdserverpb__RequestOp then = ETCDSERVERPB__REQUEST_OP__INIT;
	if (op->proclaim) {
		put_op(&then, &put, op->leader->key, op->value, lease);
	} else {
		del.key = op->leader->key;
		then.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
		then.request_delete_range = &del;
	}
	ms_err err = {0};
	int rc = cmp_create_txn(op->a, op->leader->key, op->leader->rev, &then, NULL, lk_txn_done, op, &err);
	if (rc) {
		api_finish_unknown(op->call, rc, err.msg);
		lk_free(op);
	}
}

static void lk_granted(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	lk_op *op = arg;
	int64_t lease = code == 0 ? ((Etcdserverpb__LeaseGrantResponse *)resp)->id : 0;
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
	if (grpc_call_closed(op->call)) {
		lk_free(op);
	} else if (code) {
		api_finish_unknown(op->call, code, msg);
		lk_free(op);
	} else {
		lk_txn(op, lease);
	}
}

/* leader moves into the op (the request's field is cleared). */
static void lk_start(api *a, grpc_call *call, bool proclaim, V3electionpb__LeaderKey **leader,
                     ProtobufCBinaryData value)
{
	if (!api_require_leader(a, call))
		return;
	if (!*leader) {
		grpc_call_finish(call, GRPC_UNKNOWN, ERR_MISSING_LEADER);
		return;
	}
	lk_op *op = ms_calloc(1, sizeof *op);
	if (!op || bin_dup(&op->value, value)) {
		ms_free(op);
		api_finish_error(call, MS_ENOMEM, NULL);
		return;
	}
	op->a = a;
	op->call = call;
	op->proclaim = proclaim;
	op->leader = *leader;
	*leader = NULL;
	grpc_call_ref(call);
	/* etcd: Proclaim's session on lease 0 grants a fresh lease for the put */
	if (proclaim && op->leader->lease == 0) {
		int rc = ms_server_lease_grant(a->srv, 0, SESSION_TTL, 0, lk_granted, op);
		if (rc) {
			api_finish_unknown(call, rc, NULL);
			lk_free(op);
		}
		return;
	}
	lk_txn(op, op->leader->lease);
}

static void elect_proclaim(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	V3electionpb__ProclaimRequest *r = v3electionpb__proclaim_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	lk_start(ud, call, true, &r->leader, r->value);
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

static void elect_resign(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	V3electionpb__ResignRequest *r = v3electionpb__resign_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	ProtobufCBinaryData none = {0, NULL};
	lk_start(ud, call, false, &r->leader, none);
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

/* ---- Leader ---- */

static void leader_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	grpc_call *call = arg;
	Etcdserverpb__RangeResponse *rr = (Etcdserverpb__RangeResponse *)resp;
	if (!grpc_call_closed(call)) {
		if (code) {
			api_finish_unknown(call, code, msg);
		} else if (rr->n_kvs == 0) {
			grpc_call_finish(call, GRPC_UNKNOWN, ERR_NO_LEADER);
		} else {
			V3electionpb__LeaderResponse r = V3ELECTIONPB__LEADER_RESPONSE__INIT;
			r.header = rr->header;
			r.kv = rr->kvs[0];
			api_reply(call, &r.base);
		}
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
	grpc_call_unref(call);
}

/* Range(name + "/", first by create revision) */
static int first_by_create(api *a, ProtobufCBinaryData name, ms_done_fn done, void *arg)
{
	ProtobufCBinaryData pfx, end, key;
	int rc = api_recipe_keys(name, 0, &pfx, &end, &key);
	if (rc)
		return rc;
	Etcdserverpb__RangeRequest *r = api_range_by_create(pfx, end, false);
	ms_free(pfx.data);
	ms_free(end.data);
	ms_free(key.data);
	if (!r)
		return MS_ENOMEM;
	rc = ms_server_range(a->srv, r, 0, done, arg);
	if (rc)
		protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	return rc;
}

static void elect_leader(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	V3electionpb__LeaderRequest *r = v3electionpb__leader_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	if (api_require_leader(a, call)) {
		grpc_call_ref(call);
		int rc = first_by_create(a, r->name, leader_done, call);
		if (rc) {
			api_finish_unknown(call, rc, NULL);
			grpc_call_unref(call);
		}
	}
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

/* ---- Observe ---- */

typedef struct obs_op {
	api *a;
	grpc_call *call;
	ProtobufCBinaryData name, pfx, end;
	api_kwatch *kw;
	bool want_put; /* watching the empty prefix for the first put */
} obs_op;

static void obs_free(obs_op *op)
{
	if (grpc_call_data(op->call) == op)
		grpc_call_set_data(op->call, NULL);
	api_kwatch_close(op->kw);
	ms_free(op->name.data);
	ms_free(op->pfx.data);
	ms_free(op->end.data);
	grpc_call_unref(op->call);
	ms_free(op);
}

static bool obs_gone(const obs_op *op)
{
	return grpc_call_data(op->call) != op || grpc_call_closed(op->call);
}

/* etcd's Observe returns nil once its observer stops (a failed Range or a
 * lost watcher): the stream ends with OK. */
static void obs_end(obs_op *op)
{
	grpc_call_set_data(op->call, NULL);
	grpc_call_finish(op->call, GRPC_OK, NULL);
	obs_free(op);
}

static int obs_send(obs_op *op, const Etcdserverpb__ResponseHeader *hdr, Mvccpb__KeyValue *kv)
{
	V3electionpb__LeaderResponse r = V3ELECTIONPB__LEADER_RESPONSE__INIT;
	r.header = (Etcdserverpb__ResponseHeader *)hdr;
	r.kv = kv;
	return grpc_call_send_pb(op->call, &r.base);
}

static void obs_event(void *arg, const Etcdserverpb__WatchResponse *r);
static void obs_ranged(void *arg, int code, ProtobufCMessage *resp, const char *msg);

/* Sends the leader and watches its key from the next revision. */
static void obs_follow(obs_op *op, const Etcdserverpb__ResponseHeader *hdr, Mvccpb__KeyValue *kv)
{
	api_kwatch_close(op->kw);
	op->kw = NULL;
	op->want_put = false;
	ProtobufCBinaryData none = {0, NULL};
	if (obs_send(op, hdr, kv) || api_kwatch_open(op->a, kv->key, none, hdr->revision + 1, obs_event, op, &op->kw))
		obs_end(op);
	else
		api_kwatch_set_flow(op->kw, op->call);
}

static void obs_event(void *arg, const Etcdserverpb__WatchResponse *r)
{
	obs_op *op = arg;
	if (obs_gone(op)) {
		obs_free(op);
		return;
	}
	if (r->canceled || !r->header) {
		obs_end(op);
		return;
	}
	for (size_t i = 0; i < r->n_events; i++) {
		Mvccpb__Event *ev = r->events[i];
		if (op->want_put) {
			/* only a put: a delete would make the observer spin */
			if (ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT && ev->kv) {
				Etcdserverpb__ResponseHeader h = *r->header;
				h.revision = ev->kv->mod_revision;
				obs_follow(op, &h, ev->kv);
				return;
			}
		} else if (ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE) {
			/* the leader is gone: read who leads now */
			api_kwatch_close(op->kw);
			op->kw = NULL;
			if (first_by_create(op->a, op->name, obs_ranged, op))
				obs_end(op);
			return;
		} else if (ev->kv && obs_send(op, r->header, ev->kv)) {
			obs_end(op);
			return;
		}
	}
}

static void obs_ranged(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	obs_op *op = arg;
	Etcdserverpb__RangeResponse *rr = (Etcdserverpb__RangeResponse *)resp;
	if (obs_gone(op))
		obs_free(op);
	else if (code || !rr->header)
		obs_end(op);
	else if (rr->n_kvs)
		obs_follow(op, rr->header, rr->kvs[0]);
	else {
		/* no leader: wait for the first put on the prefix */
		op->want_put = true;
		if (api_kwatch_open(op->a, op->pfx, op->end, rr->header->revision, obs_event, op, &op->kw))
			obs_end(op);
		else
			api_kwatch_set_flow(op->kw, op->call);
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
}

static void elect_observe(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	V3electionpb__LeaderRequest *r = v3electionpb__leader_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	if (!api_require_leader(a, call))
		goto out;
	obs_op *op = ms_calloc(1, sizeof *op);
	ProtobufCBinaryData key = {0, NULL};
	if (!op || bin_dup(&op->name, r->name) || api_recipe_keys(r->name, 0, &op->pfx, &op->end, &key)) {
		if (op)
			ms_free(op->name.data);
		ms_free(op);
		api_finish_error(call, MS_ENOMEM, NULL);
		goto out;
	}
	ms_free(key.data);
	op->a = a;
	op->call = call;
	grpc_call_ref(call);
	grpc_call_set_data(call, op);
	int rc = first_by_create(a, op->name, obs_ranged, op);
	if (rc) {
		grpc_call_set_data(call, NULL);
		api_finish_unknown(call, rc, NULL);
		obs_free(op);
	}
out:
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

/* The stream ended: a watching observer stops now; one with a Range in
 * flight stops when it completes. */
static void obs_close(grpc_call *call, void *ud)
{
	obs_op *op = grpc_call_data(call);
	if (!op)
		return;
	grpc_call_set_data(call, NULL);
	if (op->kw)
		obs_free(op);
}

const grpc_method api_election_methods[] = {
    {"/v3electionpb.Election/Campaign", GRPC_UNARY, elect_campaign, NULL, camp_close, NULL},
    {"/v3electionpb.Election/Proclaim", GRPC_UNARY, elect_proclaim, NULL, NULL, NULL},
    {"/v3electionpb.Election/Leader", GRPC_UNARY, elect_leader, NULL, NULL, NULL},
    {"/v3electionpb.Election/Observe", GRPC_SERVER_STREAM, elect_observe, NULL, obs_close, NULL},
    {"/v3electionpb.Election/Resign", GRPC_UNARY, elect_resign, NULL, NULL, NULL},
};
const size_t api_election_nmethods = MS_ARRAY_LEN(api_election_methods);
