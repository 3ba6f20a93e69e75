/* apply.c — the apply stage: executes committed log entries against the
 * engine in log order, exactly once (entries at or below the engine's
 * consistent index are skipped), one engine batch per group of entries, and
 * hands the results of this member's proposals back to the loop. */
#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/pbcheck.h"
#include "server/server_int.h"

/* Errors etcd reports to the client; anything else while applying means the
 * member cannot continue without diverging from the log. */
static bool client_error(int code)
{
	return code <= MS_EKEY_EMPTY;
}

/* ---- decoding and validating requests another member produced ---- */

int ms_request_decode(const uint8_t *data, size_t len, Msinternal__InternalRequest **out, ms_err *err)
{
	/* The one place an InternalRequest is unpacked from bytes this member
	 * did not pack itself (log entries, forwarded proposals): checks on the
	 * wire bytes before unpacking belong here. */
	ProtobufCMessage *m;
	ms_err why = {0};
	*out = NULL;
	if (ms_pb_unpack(&msinternal__internal_request__descriptor, data, len, MS_PB_MAX_DEPTH_INTERNAL, &m, &why))
		return ms_err_set(err, MS_EINVAL, "etcdserver: request does not decode: %s", why.msg);
	*out = (Msinternal__InternalRequest *)m;
	return 0;
}

static int missing(ms_err *err, const char *what)
{
	return ms_err_set(err, MS_EINVAL, "etcdserver: %s request without its body", what);
}

int ms_request_check(const Msinternal__InternalRequest *req, int max_txn_ops, ms_err *err)
{
	switch (req->request_case) {
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUT:
		return req->put ? engine_check_put(req->put, err) : missing(err, "put");
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_DELETE_RANGE:
		return req->delete_range ? engine_check_delete(req->delete_range, err) : missing(err, "delete");
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_TXN:
		return req->txn ? engine_check_txn(req->txn, max_txn_ops, err) : missing(err, "txn");
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_COMPACTION:
		return req->compaction ? 0 : missing(err, "compaction");
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_LEASE_GRANT:
		if (!req->lease_grant)
			return missing(err, "lease grant");
		/* the proposer picks the id (0 is "no lease") and clamps the TTL */
		if (req->lease_grant->id == 0 || req->lease_grant->ttl <= 0)
			return ms_err_set(err, MS_EINVAL, "etcdserver: lease grant with id %lld ttl %lld",
			                  (long long)req->lease_grant->id, (long long)req->lease_grant->ttl);
		return 0;
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE:
		return req->lease_revoke ? 0 : missing(err, "lease revoke");
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUBLISH:
		return req->publish && req->publish->attributes ? 0 : missing(err, "publish");
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_CLUSTER_VERSION:
		if (!req->cluster_version)
			return missing(err, "cluster version");
		if (strcmp(req->cluster_version->version, "3.4.0") != 0)
			return ms_err_set(err, MS_EINVAL, "etcdserver: unsupported cluster version");
		return 0;
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_MEMBER_UPDATE:
		return req->member_update && req->member_update->n_peerurls ? 0 : missing(err, "member update");
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_ALARM:
		if (!req->alarm)
			return missing(err, "alarm");
		/* what ms_alarm_apply can apply: the corruption check's ACTIVATE */
		if (req->alarm->action != ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE ||
		    req->alarm->alarm != ETCDSERVERPB__ALARM_TYPE__CORRUPT)
			return ms_err_set(err, MS_EINVAL, "etcdserver: unsupported alarm request");
		return 0;
	default:
		return ms_err_set(err, MS_EINVAL, "etcdserver: unknown request kind %d", (int)req->request_case);
	}
}

static ProtobufCMessage *new_lease_grant_resp(int64_t id, int64_t ttl, int64_t rev)
{
	Etcdserverpb__LeaseGrantResponse *r = ms_malloc(sizeof *r);
	Etcdserverpb__ResponseHeader *h = ms_malloc(sizeof *h);
	MS_ASSERT(r && h);
	etcdserverpb__lease_grant_response__init(r);
	etcdserverpb__response_header__init(h);
	h->revision = rev;
	r->header = h;
	r->id = id;
	r->ttl = ttl;
	return &r->base;
}

static ProtobufCMessage *new_lease_revoke_resp(int64_t rev)
{
	Etcdserverpb__LeaseRevokeResponse *r = ms_malloc(sizeof *r);
	Etcdserverpb__ResponseHeader *h = ms_malloc(sizeof *h);
	MS_ASSERT(r && h);
	etcdserverpb__lease_revoke_response__init(r);
	etcdserverpb__response_header__init(h);
	h->revision = rev;
	r->header = h;
	return &r->base;
}

static int save_members(ms_server *s, engine_apply *a, ms_err *err)
{
	size_t len;
	pthread_mutex_lock(&s->members_mu);
	uint8_t *buf = ms_members_pack(s->members, &len);
	pthread_mutex_unlock(&s->members_mu);
	if (!buf)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	int rc = engine_apply_meta_put(a, "members", buf, len, err);
	ms_free(buf);
	return rc;
}

static apply_result *make_result(uint64_t id, int code, ProtobufCMessage *resp, const char *msg)
{
	size_t ml = strlen(msg) + 1;
	apply_result *r = ms_malloc(sizeof *r + ml);
	MS_ASSERT(r != NULL);
	r->id = id;
	r->code = code;
	r->resp = resp;
	memcpy(r->msg, msg, ml);
	return r;
}

static void log_published(ms_server *s, const Msinternal__PublishRequest *p)
{
	char urls[1024] = "";
	size_t off = 0;
	for (size_t i = 0; p->attributes && i < p->attributes->n_client_urls && off < sizeof urls; i++)
		off += (size_t)snprintf(urls + off, sizeof urls - off, "%s%s", i ? " " : "",
		                        p->attributes->client_urls[i]);
	MS_INFO("etcdserver", "published {Name:%s ClientURLs:[%s]} to cluster %llx",
	        p->attributes ? p->attributes->name : "", urls, (unsigned long long)s->cluster_id);
}

/* Executes one request; returns a client-visible code (0 or <= MS_EKEY_EMPTY)
 * with *resp set on success, or a fatal code. */
static int apply_one(ms_server *s, engine_apply *a, const Msinternal__InternalRequest *req, ProtobufCMessage **resp,
                     bool *members_changed, ms_err *err)
{
	int rc = 0;
	*resp = NULL;
	if (ms_alarm_refuses(s, (int)req->request_case))
		return ms_err_set(err, MS_ECORRUPT_CLUSTER, "etcdserver: corrupt cluster");
	switch (req->request_case) {
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUT: {
		Etcdserverpb__PutResponse *r = NULL;
		rc = engine_apply_put(a, req->put, &r, err);
		*resp = r ? &r->base : NULL;
		break;
	}
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_DELETE_RANGE: {
		Etcdserverpb__DeleteRangeResponse *r = NULL;
		rc = engine_apply_delete(a, req->delete_range, &r, err);
		*resp = r ? &r->base : NULL;
		break;
	}
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_TXN: {
		Etcdserverpb__TxnResponse *r = NULL;
		rc = engine_apply_txn(a, req->txn, &r, err);
		*resp = r ? &r->base : NULL;
		break;
	}
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_COMPACTION: {
		Etcdserverpb__CompactionResponse *r = NULL;
		rc = engine_apply_compact(a, req->compaction->revision, &r, err);
		*resp = r ? &r->base : NULL;
		break;
	}
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_LEASE_GRANT:
		rc = engine_apply_lease_grant(a, req->lease_grant->id, req->lease_grant->ttl, err);
		if (rc == 0)
			ms_lease_srv_applied_grant(s, req->lease_grant->id, req->lease_grant->ttl);
		if (rc == 0)
			*resp = new_lease_grant_resp(req->lease_grant->id, req->lease_grant->ttl, engine_apply_rev(a));
		break;
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE:
		rc = engine_apply_lease_revoke(a, req->lease_revoke->id, err);
		if (rc == 0)
			ms_lease_srv_applied_revoke(s, req->lease_revoke->id);
		if (rc == 0)
			*resp = new_lease_revoke_resp(engine_apply_rev(a));
		break;
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_ALARM:
		rc = ms_alarm_apply(s, a, req->alarm, req->proposer == s->id ? resp : NULL, err);
		break;
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUBLISH:
		if (ms_members_apply_publish(s, req->publish)) {
			size_t len;
			pthread_mutex_lock(&s->members_mu);
			uint8_t *buf = ms_members_pack(s->members, &len);
			pthread_mutex_unlock(&s->members_mu);
			if (!buf)
				return ms_err_set(err, MS_ENOMEM, "out of memory");
			rc = engine_apply_meta_put(a, "members", buf, len, err);
			ms_free(buf);
			if (rc == 0 && req->publish->member_id == s->id) {
				atomic_store(&s->published, true);
				log_published(s, req->publish);
			}
		}
		break;
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_MEMBER_UPDATE:
		if (ms_members_apply_change(s, RAFT_NODE_ADD_VOTER, req->member_update->id, NULL, req->member_update,
		                            req->proposer == s->id ? resp : NULL)) {
			rc = save_members(s, a, err);
			if (rc == 0)
				*members_changed = true;
		}
		break;
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_CLUSTER_VERSION: {
		const char *v = req->cluster_version->version;
		if (strcmp(v, "3.4.0") != 0)
			return ms_err_set(err, MS_EUNSUPPORTED, "unsupported cluster version %s", v);
		rc = engine_apply_meta_put(a, "cluster_version", (const uint8_t *)v, strlen(v), err);
		if (rc == 0 && !s->cluster_version[0]) {
			snprintf(s->cluster_version, sizeof s->cluster_version, "%s", v);
			MS_NOTICE("membership", "set the initial cluster version to 3.4");
			MS_INFO("etcdserver/api", "enabled capabilities for version 3.4");
		}
		break;
	}
	default:
		return ms_err_set(err, MS_EUNSUPPORTED, "log entry holds an unknown request (%d)",
		                  (int)req->request_case);
	}
	return rc;
}

int ms_server_apply(void *ud, const raft_node_entry *ents, size_t n)
{
	ms_server *s = ud;
	ms_err err = {0};
	engine_apply *a;
	int rc = engine_apply_begin(s->eng, ms_server_on_events, s, &a, &err); /* watch hub + lease keys */
	if (rc) {
		MS_ERROR("etcdserver", "cannot begin apply: %s", err.msg);
		return rc;
	}
	uint64_t ci = engine_consistent_index(s->eng), last = ci;
	/* results are handed out only after the batch is committed */
	apply_result **pending = ms_malloc((n + 1) * sizeof *pending);
	bool members_changed = false;
	MS_ASSERT(pending != NULL);
	size_t np = 0;
	for (size_t i = 0; i < n; i++) {
		const raft_node_entry *e = &ents[i];
		if (e->index <= ci)
			continue; /* already in the engine: exactly once */
		last = e->index;
		if (e->type == RAFT_NODE_ENTRY_CONF_CHANGE) {
			raft_node_conf_change cc;
			if ((rc = raft_node_conf_change_decode(e->data, e->len, &cc))) {
				ms_err_set(&err, MS_ECORRUPT, "conf change entry %llu does not decode",
				           (unsigned long long)e->index);
				break;
			}
			/* the bootstrap entries re-add the initial members: no-ops */
			Msinternal__MemberChangeContext *mc = NULL;
			if (cc.context_len) {
				ProtobufCMessage *m;
				if (ms_pb_unpack(&msinternal__member_change_context__descriptor, cc.context,
				                 cc.context_len, MS_PB_MAX_DEPTH_INTERNAL, &m, &err) == 0)
					mc = (Msinternal__MemberChangeContext *)m;
				if (!mc) {
					/* every member skips it alike (the leader refuses
					 * such a proposal; this is a forged or old entry) */
					MS_WARN("etcdserver", "conf change entry %llu has a bad member record: skipped",
					        (unsigned long long)e->index);
					continue;
				}
			}
			bool mine = mc && mc->proposer == s->id;
			ProtobufCMessage *resp = NULL;
			if (ms_members_apply_change(s, cc.type, cc.node_id, mc ? mc->member : NULL, NULL,
			                            mine ? &resp : NULL)) {
				if ((rc = save_members(s, a, &err))) {
					if (resp)
						protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
					if (mc)
						protobuf_c_message_free_unpacked(&mc->base, &ms_pb_allocator);
					break;
				}
				members_changed = true;
			}
			if (mine)
				pending[np++] = make_result(mc->id, 0, resp, "");
			if (mc)
				protobuf_c_message_free_unpacked(&mc->base, &ms_pb_allocator);
			continue;
		}
		if (e->len == 0)
			continue; /* a new leader's empty entry */
		/* A request that does not decode or validate is consumed with an
		 * error result: every member decides the same from the same bytes
		 * (the checks use no local configuration: the txn op limit is
		 * --max-txn-ops only where a proposal enters the log), so all of
		 * them skip it, and the consistent index moves past it. */
		Msinternal__InternalRequest *req = NULL;
		memset(&err, 0, sizeof err);
		int code = ms_request_decode(e->data, e->len, &req, &err);
		if (code == 0)
			code = ms_request_check(req, INT_MAX, &err);
		if (code) {
			MS_WARN("etcdserver", "log entry %llu holds an invalid request (%s): skipped",
			        (unsigned long long)e->index, err.msg);
			if (req && req->proposer == s->id)
				pending[np++] = make_result(req->id, code, NULL, err.msg);
			if (req)
				protobuf_c_message_free_unpacked(&req->base, &ms_pb_allocator);
			continue;
		}
		ProtobufCMessage *resp = NULL;
		code = apply_one(s, a, req, &resp, &members_changed, &err);
		if (code && !client_error(code)) {
			rc = code;
			protobuf_c_message_free_unpacked(&req->base, &ms_pb_allocator);
			break;
		}
		if (req->proposer == s->id) {
			pending[np++] = make_result(req->id, code, resp, err.msg);
		} else if (resp) {
			protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
		}
		protobuf_c_message_free_unpacked(&req->base, &ms_pb_allocator);
	}
	if (rc) {
		MS_ERROR("etcdserver", "apply failed at index %llu: %s", (unsigned long long)last, err.msg);
		engine_apply_abort(a);
	} else if ((rc = engine_apply_commit(a, last, &err))) {
		MS_ERROR("etcdserver", "cannot commit applied entries up to %llu: %s", (unsigned long long)last,
		         err.msg);
	}
	if (members_changed && rc == 0)
		pending[np++] = make_result(APPLY_NOTE_MEMBERS, 0, NULL, "");
	for (size_t i = 0; i < np; i++) {
		if (rc) {
			if (pending[i]->resp)
				protobuf_c_message_free_unpacked(pending[i]->resp, &ms_pb_allocator);
			ms_free(pending[i]);
		} else {
			ms_queue_push_quiet(s->results_q, pending[i]);
		}
	}
	ms_free(pending);
	/* one wake-up for the results and the watch feed (they share its fd) */
	ms_queue_wake(s->results_q);
	return rc;
}

void ms_server_results_cb(evutil_socket_t fd, short what, void *arg)
{
	ms_server *s = arg;
	if (fd >= 0)
		ms_queue_ack(s->results_q);
	apply_result *r;
	while ((r = ms_queue_pop(s->results_q))) {
		if (r->id == APPLY_NOTE_MEMBERS) {
			ms_free(r);
			ms_server_members_changed(s);
			continue;
		}
		/* the waiter may have timed out already */
		waiter *w = ms_server_waiter_take(s, r->id);
		if (w) {
			if (r->resp)
				ms_server_fill_resp_header(s, r->resp);
			w->done(w->arg, r->code, r->resp, r->code ? r->msg : NULL);
			ms_free(w);
		} else if (r->resp) {
			protobuf_c_message_free_unpacked(r->resp, &ms_pb_allocator);
		}
		ms_free(r);
	}
}
