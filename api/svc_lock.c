/* svc_lock.c — etcd's v3lock service (Lock, Unlock) run inside the server
 * as etcd 3.4 runs it (clientv3/concurrency's Mutex over leases, txns and
 * watches), plus the recipe pieces the Election service shares: server-side
 * watchers, waitDeletes, Unknown errors.
 *
 * Lock(name, lease): key = name + "/" + lease in lower-case hex; lease 0
 * means a fresh 60 s lease that nobody keeps alive (etcd's orphaned
 * session). One txn puts the key with the lease if it has no create revision
 * and reads the first key of the prefix by create revision; the caller holds
 * the lock when that is its own key, otherwise it waits (waitDeletes) until
 * every key of the prefix created before its own is deleted. As in etcd 3.4,
 * a waiter whose own lease expires keeps waiting and is answered with its
 * (deleted) key once the earlier holders are gone.
 *
 * Everything runs on the loop thread; each step is an asynchronous server
 * request or a server-side watcher. A call that ends while it waits (client
 * cancel, deadline, connection loss) drops its waiter and deletes its key,
 * as the recipe's Unlock-on-error does. */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "api/api_int.h"
#include "v3lock.pb-c.h"

#define BAD_REQUEST "grpc: error unmarshalling request: unexpected EOF or bad wire data"
#define SESSION_TTL 60 /* clientv3/concurrency's default session TTL */

void api_finish_unknown(grpc_call *call, int code, const char *detail)
{
	int status;
	const char *msg;
	char buf[MS_ERR_MSG];
	api_error(code, detail, &status, &msg, buf, sizeof buf);
	grpc_call_finish(call, GRPC_UNKNOWN, msg);
}

/* ---- server-side watchers ---- */

typedef struct kw_msg {
	struct kw_msg *next;
	size_t len;
	uint8_t data[];
} kw_msg;

struct api_kwatch {
	ms_watch *w;
	struct event *ev;
	kw_msg *head, **tail;
	size_t queued;   /* bytes in head..tail */
	grpc_call *flow; /* the client call fn's output goes to, or NULL */
	api_kwatch_fn fn;
	void *arg;
	bool delivering, closed;
};

static void kw_free(api_kwatch *kw)
{
	while (kw->head) {
		kw_msg *m = kw->head;
		kw->head = m->next;
		ms_free(m);
	}
	if (kw->ev)
		event_free(kw->ev);
	ms_free(kw);
}

/* The watch server's sink: runs inside its code, so only queue and defer. */
static int kw_send(void *ud, const uint8_t *msg, size_t len)
{
	api_kwatch *kw = ud;
	kw_msg *m = ms_malloc(sizeof *m + len);
	if (!m)
		return MS_ENOMEM; /* the watch server retries from history */
	m->next = NULL;
	m->len = len;
	memcpy(m->data, msg, len);
	kw->queued += len;
	*kw->tail = m;
	kw->tail = &m->next;
	event_active(kw->ev, EV_TIMEOUT, 1);
	return 0;
}

/* What the watch server counts against its slow-stream bound: responses not
 * yet delivered, plus what the client call has not taken yet, so a client
 * that never reads its Observe stream holds at most that bound (the watch
 * server polls waiting streams, no drain callback is needed). */
static size_t kw_pending(void *ud)
{
	api_kwatch *kw = ud;
	return kw->queued + (kw->flow ? grpc_call_pending_bytes(kw->flow) : 0);
}
static void kw_want_drain(void *ud) {}
static const ms_watch_sink kw_sink = {kw_send, kw_pending, kw_want_drain};

static void kw_deliver(evutil_socket_t fd, short what, void *arg)
{
	api_kwatch *kw = arg;
	kw->delivering = true;
	while (kw->head && !kw->closed) {
		kw_msg *m = kw->head;
		kw->head = m->next;
		if (!kw->head)
			kw->tail = &kw->head;
		kw->queued -= m->len;
		Etcdserverpb__WatchResponse *r =
		    etcdserverpb__watch_response__unpack(&ms_pb_allocator, m->len, m->data);
		ms_free(m);
		if (r) {
			kw->fn(kw->arg, r);
			protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
		}
	}
	kw->delivering = false;
	if (kw->closed)
		kw_free(kw);
}

int api_kwatch_open(api *a, ProtobufCBinaryData key, ProtobufCBinaryData end, int64_t start_rev, api_kwatch_fn fn,
                    void *arg, api_kwatch **out)
{
	api_kwatch *kw = ms_calloc(1, sizeof *kw);
	if (!kw)
		return MS_ENOMEM;
	kw->tail = &kw->head;
	kw->fn = fn;
	kw->arg = arg;
	kw->ev = event_new(a->base, -1, 0, kw_deliver, kw);
	if (!kw->ev) {
		kw_free(kw);
		return MS_ENOMEM;
	}
	int rc = ms_server_watch_open(a->srv, &kw_sink, kw, &kw->w);
	if (rc) {
		kw_free(kw);
		return rc;
	}
	Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
	c.key = key;
	c.range_end = end;
	c.start_revision = start_rev;
	Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
	r.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
	r.create_request = &c;
	rc = ms_server_watch_request(kw->w, &r);
	if (rc) {
		ms_server_watch_close(kw->w);
		kw_free(kw);
		return rc;
	}
	*out = kw;
	return 0;
}

void api_kwatch_set_flow(api_kwatch *kw, grpc_call *flow)
{
	kw->flow = flow;
}

void api_kwatch_close(api_kwatch *kw)
{
	if (!kw || kw->closed)
		return;
	ms_server_watch_close(kw->w);
	kw->w = NULL;
	kw->closed = true;
	if (!kw->delivering)
		kw_free(kw);
}

/* ---- small request helpers ---- */

static int bin_dup(ProtobufCBinaryData *dst, const uint8_t *p, size_t n)
{
	dst->data = ms_malloc(n + 1);
	if (!dst->data)
		return MS_ENOMEM;
	if (n)
		memcpy(dst->data, p, n);
	dst->len = n;
	return 0;
}

Etcdserverpb__RangeRequest *api_range_by_create(ProtobufCBinaryData key, ProtobufCBinaryData end, bool desc)
{
	Etcdserverpb__RangeRequest *r = ms_malloc(sizeof *r);
	if (!r)
		return NULL;
	etcdserverpb__range_request__init(r);
	if (bin_dup(&r->key, key.data, key.len) || bin_dup(&r->range_end, end.data, end.len)) {
		protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
		return NULL;
	}
	r->limit = 1;
	r->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
	r->sort_order =
	    desc ? ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND : ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	return r;
}

static void detached_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
}

/* Proposes a DeleteRange of one key whose answer nobody waits for (the
 * cleanup of a cancelled Lock). */
static void lock_delete_detached(api *a, ProtobufCBinaryData key)
{
	Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
	d.key = key;
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_DELETE_RANGE;
	req.delete_range = &d;
	int rc = ms_server_propose(a->srv, &req, 0, detached_done, NULL);
	if (rc)
		MS_WARN("v3lock", "cannot remove the key of a cancelled waiter: %s", ms_strerror(rc));
}

int api_recipe_keys(ProtobufCBinaryData name, int64_t lease, ProtobufCBinaryData *pfx, ProtobufCBinaryData *end,
                    ProtobufCBinaryData *key)
{
	/* Go's %x of an int64: a minus sign, then the magnitude */
	char hex[24];
	uint64_t mag = lease < 0 ? (uint64_t)0 - (uint64_t)lease : (uint64_t)lease;
	int hl = snprintf(hex, sizeof hex, "%s%llx", lease < 0 ? "-" : "", (unsigned long long)mag);
	pfx->data = ms_malloc(name.len + 1);
	end->data = ms_malloc(name.len + 1);
	key->data = ms_malloc(name.len + 1 + (size_t)hl);
	if (!pfx->data || !end->data || !key->data) {
		ms_free(pfx->data);
		ms_free(end->data);
		ms_free(key->data);
		pfx->data = end->data = key->data = NULL;
		return MS_ENOMEM;
	}
	if (name.len)
		memcpy(pfx->data, name.data, name.len);
	pfx->data[name.len] = '/';
	pfx->len = name.len + 1;
	/* the prefix ends in '/', so its range end is the same bytes with '0' */
	memcpy(end->data, pfx->data, pfx->len);
	end->data[name.len] = '/' + 1;
	end->len = pfx->len;
	memcpy(key->data, pfx->data, pfx->len);
	memcpy(key->data + pfx->len, hex, (size_t)hl);
	key->len = pfx->len + (size_t)hl;
	return 0;
}

/* ---- waitDeletes ---- */

struct api_waitdel {
	api *a;
	ProtobufCBinaryData pfx, end;
	int64_t max_create_rev;
	api_waitdel_fn fn;
	void *arg;
	api_kwatch *kw;
	bool inflight; /* a Range is out; its completion frees a cancelled wait */
	bool cancelled;
};

static void wd_free(api_waitdel *wd)
{
	api_kwatch_close(wd->kw);
	ms_free(wd->pfx.data);
	ms_free(wd->end.data);
	ms_free(wd);
}

static void wd_finish(api_waitdel *wd, int code, const Etcdserverpb__ResponseHeader *hdr, const char *detail)
{
	api_kwatch_close(wd->kw);
	wd->kw = NULL;
	wd->fn(wd->arg, code, hdr, detail);
	wd_free(wd);
}

static void wd_range_done(void *arg, int code, ProtobufCMessage *resp, const char *msg);

/* etcd: Range(pfx, last create, max_create_rev) */
static int wd_range(api_waitdel *wd)
{
	Etcdserverpb__RangeRequest *r = api_range_by_create(wd->pfx, wd->end, true);
	if (!r)
		return MS_ENOMEM;
	r->max_create_revision = wd->max_create_rev;
	wd->inflight = true;
	int rc = ms_server_range(wd->a->srv, r, 0, wd_range_done, wd);
	if (rc) {
		wd->inflight = false;
		protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	}
	return rc;
}

static void wd_event(void *arg, const Etcdserverpb__WatchResponse *r)
{
	api_waitdel *wd = arg;
	if (r->canceled) {
		/* clientv3's wr.Err(): compacted, or the watcher went away */
		wd_finish(wd, r->compact_revision ? MS_ECOMPACTED : MS_EWATCH_CANCELED, NULL, NULL);
		return;
	}
	for (size_t i = 0; i < r->n_events; i++)
		if (r->events[i]->type == MVCCPB__EVENT__EVENT_TYPE__DELETE) {
			api_kwatch_close(wd->kw);
			wd->kw = NULL;
			int rc = wd_range(wd);
			if (rc)
				wd_finish(wd, rc, NULL, NULL);
			return;
		}
}

static void wd_range_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	api_waitdel *wd = arg;
	wd->inflight = false;
	Etcdserverpb__RangeResponse *rr = (Etcdserverpb__RangeResponse *)resp;
	if (wd->cancelled) {
		wd_free(wd);
	} else if (code) {
		wd_finish(wd, code, NULL, msg);
	} else if (rr->n_kvs == 0) {
		wd_finish(wd, 0, rr->header, NULL);
	} else {
		/* etcd's waitDelete: watch the last earlier key from the Range's revision */
		ProtobufCBinaryData none = {0, NULL};
		int64_t rev = rr->header ? rr->header->revision : 0;
		int rc = api_kwatch_open(wd->a, rr->kvs[0]->key, none, rev, wd_event, wd, &wd->kw);
		if (rc)
			wd_finish(wd, rc, NULL, NULL);
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
}

int api_wait_deletes(api *a, ProtobufCBinaryData pfx, ProtobufCBinaryData end, int64_t max_create_rev,
                     api_waitdel_fn fn, void *arg, api_waitdel **out)
{
	api_waitdel *wd = ms_calloc(1, sizeof *wd);
	if (!wd)
		return MS_ENOMEM;
	wd->a = a;
	wd->max_create_rev = max_create_rev;
	wd->fn = fn;
	wd->arg = arg;
	int rc = bin_dup(&wd->pfx, pfx.data, pfx.len);
	if (!rc)
		rc = bin_dup(&wd->end, end.data, end.len);
	if (!rc)
		rc = wd_range(wd);
	if (rc) {
		wd_free(wd);
		return rc;
	}
	*out = wd;
	return 0;
}

void api_wait_deletes_cancel(api_waitdel *wd)
{
	if (!wd)
		return;
	wd->cancelled = true;
	api_kwatch_close(wd->kw);
	wd->kw = NULL;
	if (!wd->inflight)
		wd_free(wd);
}

/* ---- Lock ---- */

typedef struct lock_op {
	api *a;
	grpc_call *call;
	int64_t lease;
	ProtobufCBinaryData name, pfx, end, key;
	int64_t myrev;
	bool key_made; /* our txn ran: the key exists (ours to delete on cancel) */
	api_waitdel *wd;
} lock_op;

static void lock_free(lock_op *op)
{
	ms_free(op->name.data);
	ms_free(op->pfx.data);
	ms_free(op->end.data);
	ms_free(op->key.data);
	grpc_call_unref(op->call);
	ms_free(op);
}

/* The call went away: drop the op; a key we made is deleted, as the recipe's
 * Unlock after a failed wait. */
static void lock_abort(lock_op *op)
{
	if (grpc_call_data(op->call) == op)
		grpc_call_set_data(op->call, NULL);
	if (op->key_made)
		lock_delete_detached(op->a, op->key);
	lock_free(op);
}

static bool lock_gone(const lock_op *op)
{
	return grpc_call_data(op->call) != op || grpc_call_closed(op->call);
}

static void lock_fail(lock_op *op, int code, const char *detail)
{
	grpc_call_set_data(op->call, NULL);
	api_finish_unknown(op->call, code, detail);
	lock_abort(op);
}

static void lock_reply(lock_op *op, const Etcdserverpb__ResponseHeader *hdr)
{
	grpc_call_set_data(op->call, NULL);
	V3lockpb__LockResponse r = V3LOCKPB__LOCK_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h = *hdr;
	r.header = &h;
	r.key = op->key;
	api_reply(op->call, &r.base);
	lock_free(op);
}

static void lock_waited(void *arg, int code, const Etcdserverpb__ResponseHeader *hdr, const char *detail)
{
	lock_op *op = arg;
	op->wd = NULL;
	if (lock_gone(op))
		lock_abort(op);
	else if (code)
		lock_fail(op, code, detail);
	else
		lock_reply(op, hdr);
}

static void lock_txn_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	lock_op *op = arg;
	Etcdserverpb__TxnResponse *t = (Etcdserverpb__TxnResponse *)resp;
	if (code == 0)
		op->key_made = true;
	if (lock_gone(op)) {
		lock_abort(op);
	} else if (code) {
		lock_fail(op, code, msg);
	} else if (t->n_responses != 2 || !t->header) {
		lock_fail(op, MS_EINVAL, "unexpected txn response");
	} else {
		Etcdserverpb__RangeResponse *mine = t->responses[0]->response_range;
		Etcdserverpb__RangeResponse *owner = t->responses[1]->response_range;
		op->myrev = t->header->revision;
		if (!t->succeeded && mine && mine->n_kvs)
			op->myrev = mine->kvs[0]->create_revision; /* re-entrant: this lease already waits or holds */
		if (!owner || owner->n_kvs == 0 || owner->kvs[0]->create_revision == op->myrev) {
			lock_reply(op, t->header);
		} else {
			int rc = api_wait_deletes(op->a, op->pfx, op->end, op->myrev - 1, lock_waited, op, &op->wd);
			if (rc)
				lock_fail(op, rc, NULL);
		}
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
}

/* Txn(create_revision(key) == 0 ? put key lease, first-by-create(pfx)
 *                                : get key, first-by-create(pfx)) */
static int lock_txn(lock_op *op)
{
	int rc = api_recipe_keys(op->name, op->lease, &op->pfx, &op->end, &op->key);
	if (rc)
		return rc;
	Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
	cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
	cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
	cmp.key = op->key;
	cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
	cmp.create_revision = 0;
	Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
	put.key = op->key;
	put.lease = op->lease;
	Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT;
	get.key = op->key;
	Etcdserverpb__RangeRequest owner = ETCDSERVERPB__RANGE_REQUEST__INIT;
	owner.key = op->pfx;
	owner.range_end = op->end;
	owner.limit = 1;
	owner.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
	owner.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
	Etcdserverpb__RequestOp ops[4] = {ETCDSERVERPB__REQUEST_OP__INIT, ETCDSERVERPB__REQUEST_OP__INIT,
	                                  ETCDSERVERPB__REQUEST_OP__INIT, ETCDSERVERPB__REQUEST_OP__INIT};
	ops[0].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	ops[0].request_put = &put;
	ops[1].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	ops[1].request_range = &owner;
	ops[2].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	ops[2].request_range = &get;
	ops[3] = ops[1];
	Etcdserverpb__Compare *cmps[1] = {&cmp};
	Etcdserverpb__RequestOp *succ[2] = {&ops[0], &ops[1]};
	Etcdserverpb__RequestOp *fail[2] = {&ops[2], &ops[3]};
	Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
	txn.n_compare = 1;
	txn.compare = cmps;
	txn.n_success = 2;
	txn.success = succ;
	txn.n_failure = 2;
	txn.failure = fail;
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_TXN;
	req.txn = &txn;
	return ms_server_propose(op->a->srv, &req, 0, lock_txn_done, op);
}

static void lock_granted(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	lock_op *op = arg;
	if (code == 0)
		op->lease = ((Etcdserverpb__LeaseGrantResponse *)resp)->id;
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
	if (lock_gone(op)) {
		lock_abort(op);
		return;
	}
	if (!code)
		code = lock_txn(op);
	if (code)
		lock_fail(op, code, code == MS_ENOMEM ? NULL : msg);
}

static void lock_lock(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	V3lockpb__LockRequest *r = v3lockpb__lock_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	lock_op *op = NULL;
	int rc = 0;
	if (!api_require_leader(a, call))
		goto out;
	op = ms_calloc(1, sizeof *op);
	if (!op || bin_dup(&op->name, r->name.data, r->name.len)) {
		ms_free(op);
		api_finish_error(call, MS_ENOMEM, NULL);
		goto out;
	}
	op->a = a;
	op->call = call;
	op->lease = r->lease;
	grpc_call_ref(call);
	grpc_call_set_data(call, op);
	/* etcd: a session on lease 0 grants a fresh lease first */
	if (op->lease == 0)
		rc = ms_server_lease_grant(a->srv, 0, SESSION_TTL, 0, lock_granted, op);
	else
		rc = lock_txn(op);
	if (rc)
		lock_fail(op, rc, NULL);
out:
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

/* The call ended (cancel, deadline, connection): a waiting Lock stops
 * waiting and removes its key; one with a request in flight is finished by
 * that request's completion, which sees the call gone. */
static void lock_close(grpc_call *call, void *ud)
{
	lock_op *op = grpc_call_data(call);
	if (!op)
		return;
	grpc_call_set_data(call, NULL);
	if (op->wd) {
		api_wait_deletes_cancel(op->wd);
		op->wd = NULL;
		lock_abort(op);
	}
}

/* ---- Unlock ---- */

static void unlock_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	grpc_call *call = arg;
	if (!grpc_call_closed(call)) {
		if (code) {
			api_finish_unknown(call, code, msg);
		} else {
			V3lockpb__UnlockResponse r = V3LOCKPB__UNLOCK_RESPONSE__INIT;
			r.header = ((Etcdserverpb__DeleteRangeResponse *)resp)->header;
			api_reply(call, &r.base);
		}
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
	grpc_call_unref(call);
}

static void lock_unlock(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	V3lockpb__UnlockRequest *r = v3lockpb__unlock_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, BAD_REQUEST);
		return;
	}
	if (api_require_leader(a, call)) {
		Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
		d.key = r->key;
		ms_err err = {0};
		int rc = engine_check_delete(&d, &err);
		if (rc) {
			api_finish_unknown(call, rc, err.msg);
		} else {
			Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
			req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_DELETE_RANGE;
			req.delete_range = &d;
			grpc_call_ref(call);
			rc = ms_server_propose(a->srv, &req, grpc_call_deadline(call), unlock_done, call);
			if (rc) {
				api_finish_unknown(call, rc, NULL);
				grpc_call_unref(call);
			}
		}
	}
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

const grpc_method api_lock_methods[] = {
    {"/v3lockpb.Lock/Lock", GRPC_UNARY, lock_lock, NULL, lock_close, NULL},
    {"/v3lockpb.Lock/Unlock", GRPC_UNARY, lock_unlock, NULL, NULL, NULL},
};
const size_t api_lock_nmethods = MS_ARRAY_LEN(api_lock_methods);
