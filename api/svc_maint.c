/* svc_maint.c — Maintenance (Status, HashKV, Alarm), Cluster (MemberList),
 * gRPC health, and the HTTP/1.1 endpoints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api_int.h"

#define ETCD_VERSION "3.4.23"

static void maint_status(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	ms_server_status st;
	ms_server_get_status(a->srv, &st);
	Etcdserverpb__StatusResponse r = ETCDSERVERPB__STATUS_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	ms_server_fill_header(a->srv, &h, st.revision);
	r.header = &h;
	r.version = ETCD_VERSION;
	r.dbsize = st.db_size;
	r.dbsizeinuse = st.db_size_in_use;
	r.leader = st.leader;
	r.raftindex = st.raft_index;
	r.raftterm = st.raft_term;
	r.raftappliedindex = st.raft_applied_index;
	r.islearner = st.is_learner;
	char *errs[1] = {"etcdserver: no leader"};
	if (!st.leader) {
		r.n_errors = 1;
		r.errors = errs;
	}
	api_reply(call, &r.base);
}

static void maint_hash_kv(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	Etcdserverpb__HashKVRequest *r = etcdserverpb__hash_kvrequest__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "grpc: error unmarshalling request");
		return;
	}
	int64_t rev = r->revision;
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	grpc_call_ref(call);
	int rc = ms_server_hash_kv(a->srv, rev, api_unary_done, call);
	if (rc) {
		api_finish_error(call, rc, NULL);
		grpc_call_unref(call);
	}
}

static void maint_alarm(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	Etcdserverpb__AlarmRequest *r = etcdserverpb__alarm_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "grpc: error unmarshalling request");
		return;
	}
	if (r->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
		/* the raised alarms of the type asked for (NONE = all); as etcd,
		 * no header */
		Etcdserverpb__AlarmResponse *resp = NULL;
		int rc = ms_server_alarm_list(a->srv, r->alarm, &resp);
		if (rc) {
			api_finish_error(call, rc, NULL);
		} else {
			api_reply(call, &resp->base);
			protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		}
	} else if (r->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE &&
	           r->alarm == ETCDSERVERPB__ALARM_TYPE__CORRUPT) {
		grpc_call_ref(call);
		int rc = ms_server_alarm_activate(a->srv, r->memberid, r->alarm, grpc_call_deadline(call),
		                                  api_unary_done, call);
		if (rc) {
			api_finish_error(call, rc, NULL);
			grpc_call_unref(call);
		}
	} else {
		/* NOSPACE needs the space quota, DEACTIVATE comes with it */
		grpc_call_finish(call, GRPC_UNIMPLEMENTED, "metastore: only CORRUPT alarms are raised so far");
	}
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

/* etcd answers Defragment without a header */
static void defrag_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	Etcdserverpb__DefragmentResponse *r = (Etcdserverpb__DefragmentResponse *)resp;
	if (r && r->header) {
		protobuf_c_message_free_unpacked(&r->header->base, &ms_pb_allocator);
		r->header = NULL;
	}
	api_unary_done(arg, code, resp, msg);
}

static void maint_defragment(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	Etcdserverpb__DefragmentRequest *r = etcdserverpb__defragment_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "grpc: error unmarshalling request");
		return;
	}
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	grpc_call_ref(call);
	int rc = ms_server_defragment(a->srv, defrag_done, call);
	if (rc) {
		api_finish_error(call, rc, NULL);
		grpc_call_unref(call);
	}
}

static void move_leader_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	grpc_call *call = arg;
	if (!grpc_call_closed(call)) {
		if (code) {
			api_finish_error(call, code, msg);
		} else {
			Etcdserverpb__MoveLeaderResponse r =
			    ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT; /* no header, as etcd */
			api_reply(call, &r.base);
		}
	}
	grpc_call_unref(call);
}

static void maint_move_leader(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	Etcdserverpb__MoveLeaderRequest *r = etcdserverpb__move_leader_request__unpack(&ms_pb_allocator, len, msg);
	if (!r) {
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "grpc: error unmarshalling request");
		return;
	}
	uint64_t target = r->targetid;
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	grpc_call_ref(call);
	int rc = ms_server_move_leader(a->srv, target, grpc_call_deadline(call), move_leader_done, call);
	if (rc) {
		api_finish_error(call, rc, NULL);
		grpc_call_unref(call);
	}
}

static void cluster_member_list(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	Etcdserverpb__Member **m;
	size_t n;
	int rc = ms_server_members(a->srv, &m, &n);
	if (rc) {
		api_finish_error(call, rc, NULL);
		return;
	}
	Etcdserverpb__MemberListResponse r = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	ms_server_fill_header(a->srv, &h, 0); /* Cluster replies carry no revision */
	r.header = &h;
	r.members = m;
	r.n_members = n;
	api_reply(call, &r.base);
	ms_server_members_free(m, n);
}

/* ---- Cluster membership: answered once the change is applied ---- */
#define UNPACK_OR_RETURN(var, type, fn)                                                                                \
	type *var = fn(&ms_pb_allocator, len, msg);                                                                    \
	if (!var) {                                                                                                    \
		grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "grpc: error unmarshalling request");                    \
		return;                                                                                                \
	}

static void member_started(grpc_call *call, int rc)
{
	if (rc) {
		api_finish_error(call, rc, NULL);
		grpc_call_unref(call);
	}
}

static void cluster_member_add(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	UNPACK_OR_RETURN(r, Etcdserverpb__MemberAddRequest, etcdserverpb__member_add_request__unpack);
	grpc_call_ref(call);
	member_started(call, ms_server_member_add(a->srv, r->peerurls, r->n_peerurls, r->islearner,
	                                          grpc_call_deadline(call), api_unary_done, call));
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

static void cluster_member_remove(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	UNPACK_OR_RETURN(r, Etcdserverpb__MemberRemoveRequest, etcdserverpb__member_remove_request__unpack);
	grpc_call_ref(call);
	member_started(call, ms_server_member_remove(a->srv, r->id, grpc_call_deadline(call), api_unary_done, call));
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

static void cluster_member_update(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	UNPACK_OR_RETURN(r, Etcdserverpb__MemberUpdateRequest, etcdserverpb__member_update_request__unpack);
	grpc_call_ref(call);
	member_started(call, ms_server_member_update(a->srv, r->id, r->peerurls, r->n_peerurls,
	                                             grpc_call_deadline(call), api_unary_done, call));
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

static void cluster_member_promote(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api *a = ud;
	UNPACK_OR_RETURN(r, Etcdserverpb__MemberPromoteRequest, etcdserverpb__member_promote_request__unpack);
	grpc_call_ref(call);
	member_started(call, ms_server_member_promote(a->srv, r->id, grpc_call_deadline(call), api_unary_done, call));
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

static void health_check(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	/* grpc.health.v1.HealthCheckResponse{status: SERVING} */
	static const uint8_t serving[] = {0x08, 0x01};
	if (grpc_call_send(call, serving, sizeof serving) == 0)
		grpc_call_finish(call, GRPC_OK, NULL);
}

const grpc_method api_maint_methods[] = {
    {"/etcdserverpb.Maintenance/Status", GRPC_UNARY, maint_status, NULL, NULL, NULL},
    {"/etcdserverpb.Maintenance/HashKV", GRPC_UNARY, maint_hash_kv, NULL, NULL, NULL},
    {"/etcdserverpb.Maintenance/Alarm", GRPC_UNARY, maint_alarm, NULL, NULL, NULL},
    {"/etcdserverpb.Maintenance/MoveLeader", GRPC_UNARY, maint_move_leader, NULL, NULL, NULL},
    {"/etcdserverpb.Maintenance/Defragment", GRPC_UNARY, maint_defragment, NULL, NULL, NULL},
    {"/etcdserverpb.Cluster/MemberList", GRPC_UNARY, cluster_member_list, NULL, NULL, NULL},
    {"/etcdserverpb.Cluster/MemberAdd", GRPC_UNARY, cluster_member_add, NULL, NULL, NULL},
    {"/etcdserverpb.Cluster/MemberRemove", GRPC_UNARY, cluster_member_remove, NULL, NULL, NULL},
    {"/etcdserverpb.Cluster/MemberUpdate", GRPC_UNARY, cluster_member_update, NULL, NULL, NULL},
    {"/etcdserverpb.Cluster/MemberPromote", GRPC_UNARY, cluster_member_promote, NULL, NULL, NULL},
    {"/grpc.health.v1.Health/Check", GRPC_UNARY, health_check, NULL, NULL, NULL},
};
const size_t api_maint_nmethods = MS_ARRAY_LEN(api_maint_methods);

/* ---- HTTP/1.1 ---- */
static void set_body(grpc_http1_response *resp, int status, const char *ctype, const char *text)
{
	resp->status = status;
	resp->content_type = ctype;
	resp->body_len = strlen(text);
	resp->body = ms_memdup(text, resp->body_len);
	if (!resp->body)
		resp->body_len = 0;
}

static long rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, rss = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * sysconf(_SC_PAGESIZE);
}

static void http_metrics(api *a, grpc_http1_response *resp)
{
	ms_server_status st;
	ms_server_get_status(a->srv, &st);
	char buf[2048];
	snprintf(buf, sizeof buf,
	         "# TYPE etcd_server_has_leader gauge\netcd_server_has_leader %d\n"
	         "# TYPE etcd_server_is_leader gauge\netcd_server_is_leader %d\n"
	         "# TYPE etcd_server_id gauge\netcd_server_id{server_id=\"%llx\"} 1\n"
	         "# TYPE etcd_server_version gauge\netcd_server_version{server_version=\"" ETCD_VERSION "\"} 1\n"
	         "# TYPE etcd_mvcc_db_total_size_in_bytes gauge\netcd_mvcc_db_total_size_in_bytes %lld\n"
	         "# TYPE etcd_mvcc_db_total_size_in_use_in_bytes gauge\netcd_mvcc_db_total_size_in_use_in_bytes %lld\n"
	         "# TYPE etcd_debugging_mvcc_current_revision gauge\netcd_debugging_mvcc_current_revision %lld\n"
	         "# TYPE etcd_server_proposals_applied_total gauge\netcd_server_proposals_applied_total %llu\n"
	         "# TYPE etcd_server_proposals_committed_total gauge\netcd_server_proposals_committed_total %llu\n"
	         "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n",
	         st.leader != 0, st.leader != 0 && st.leader == ms_server_id(a->srv),
	         (unsigned long long)ms_server_id(a->srv), (long long)st.db_size, (long long)st.db_size_in_use,
	         (long long)st.revision, (unsigned long long)st.raft_applied_index, (unsigned long long)st.raft_index,
	         rss_bytes());
	set_body(resp, 200, "text/plain; version=0.0.4", buf);
}

void api_http1(void *ud, const grpc_http1_request *req, grpc_http1_response *resp)
{
	api *a = ud;
	size_t plen = strcspn(req->path, "?");
	bool get = !strcmp(req->method, "GET");
	if (plen == 7 && !strncmp(req->path, "/health", 7)) {
		if (!get)
			return set_body(resp, 405, "text/plain", "Method Not Allowed\n");
		/* A member without a leader cannot serve a quorum read: unhealthy;
		 * so is a cluster with a raised alarm, as in etcd. (No NOSPACE alarm
		 * is raised yet, so ?exclude=NOSPACE changes nothing.) */
		bool ok = ms_server_leader(a->srv) != 0;
		Etcdserverpb__AlarmResponse *al = NULL;
		if (ok && ms_server_alarm_list(a->srv, ETCDSERVERPB__ALARM_TYPE__NONE, &al) == 0) {
			ok = al->n_alarms == 0;
			protobuf_c_message_free_unpacked(&al->base, &ms_pb_allocator);
		}
		return set_body(resp, ok ? 200 : 503, "application/json",
		                ok ? "{\"health\":\"true\"}" : "{\"health\":\"false\"}");
	}
	if (plen == 8 && !strncmp(req->path, "/version", 8)) {
		if (!get)
			return set_body(resp, 405, "text/plain", "Method Not Allowed\n");
		return set_body(resp, 200, "application/json",
		                "{\"etcdserver\":\"" ETCD_VERSION "\",\"etcdcluster\":\"3.4.0\"}");
	}
	if (plen == 8 && !strncmp(req->path, "/metrics", 8)) {
		if (!get)
			return set_body(resp, 405, "text/plain", "Method Not Allowed\n");
		return http_metrics(a, resp);
	}
	if (!strncmp(req->path, "/v3/", 4) || !strncmp(req->path, "/v3beta/", 8))
		return set_body(resp, 501, "application/json",
		                "{\"error\":\"metastore: the JSON gateway is not implemented yet\",\"code\":12}");
	set_body(resp, 404, "text/plain", "404 page not found\n");
}
