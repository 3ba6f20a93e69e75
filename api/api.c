/* api.c — wires the etcd services onto the gRPC layer and listens. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "common/pbcheck.h"
#include "v3election.pb-c.h"
#include "v3lock.pb-c.h"

void api_finish_error(grpc_call *call, int code, const char *detail)
{
	int status;
	const char *msg;
	char buf[MS_ERR_MSG];
	api_error(code, detail, &status, &msg, buf, sizeof buf);
	grpc_call_finish(call, status, msg);
}

void api_reply(grpc_call *call, const ProtobufCMessage *resp)
{
	if (grpc_call_send_pb(call, resp) == 0)
		grpc_call_finish(call, GRPC_OK, NULL);
}

void api_unary_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	grpc_call *call = arg;
	if (!grpc_call_closed(call)) {
		if (code)
			api_finish_error(call, code, msg);
		else
			api_reply(call, resp);
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
	grpc_call_unref(call);
}

/* etcd: a learner serves only Status and serializable Range; every other
 * unary call and every stream gets "rpc not supported for learner". */
static bool learner_allows(const api_slot *sl, const uint8_t *msg, size_t len)
{
	if (!strcmp(sl->m.path, "/etcdserverpb.Maintenance/Status"))
		return true;
	if (strcmp(sl->m.path, "/etcdserverpb.KV/Range") != 0)
		return false;
	Etcdserverpb__RangeRequest *r = etcdserverpb__range_request__unpack(&ms_pb_allocator, len, msg);
	bool ok = r && r->serializable;
	if (r)
		protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	return ok;
}

/* Every client message passes the wire check before anything unpacks it:
 * protobuf-c recurses per nesting level, and a TxnRequest can nest as deep
 * as its bytes allow. Only TxnRequest is recursive in etcd's protos, so
 * "too deep" can only be a txn nesting past MS_PB_MAX_DEPTH: etcd's answer
 * for that txn is the one for a txn over --max-txn-ops (etcd passes the op
 * budget down to nested txns, so its default refuses nesting past 128
 * levels too). Malformed bytes get grpc-go's answer when etcd's decoder
 * refuses them: Internal, "grpc: error unmarshalling request: <why>" on a
 * unary call, "grpc: failed to unmarshal the received message <why>" on a
 * stream, which then ends (etcd's stream handlers return Recv's error). */
static bool wire_ok(const api_slot *sl, grpc_call *call, const uint8_t *msg, size_t len)
{
	ms_err err = {0};
	int rc = ms_pb_check(sl->req, msg, len, MS_PB_MAX_DEPTH, &err);
	if (rc == 0)
		return true;
	MS_DEBUG("etcdserver", "%s: refused request: %s", sl->m.path, err.msg);
	if (rc == MS_PB_ETOO_DEEP) {
		api_finish_error(call, MS_ETOO_MANY_OPS, NULL);
	} else {
		char m[MS_ERR_MSG + 64];
		snprintf(m, sizeof m, "%s%s",
		         sl->m.kind == GRPC_UNARY ? "grpc: error unmarshalling request: "
		                                  : "grpc: failed to unmarshal the received message ",
		         err.msg);
		grpc_call_finish(call, GRPC_INTERNAL, m);
	}
	return false;
}

static void guard_on_message(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api_slot *sl = ud;
	if (!wire_ok(sl, call, msg, len))
		return;
	if (ms_server_is_learner(sl->a->srv) && !learner_allows(sl, msg, len)) {
		api_finish_error(call, MS_ELEARNER_RPC, NULL);
		return;
	}
	sl->m.on_message(call, msg, len, sl->a);
}

static void guard_on_half_close(grpc_call *call, void *ud)
{
	api_slot *sl = ud;
	if (sl->m.on_half_close)
		sl->m.on_half_close(call, sl->a);
}

static void guard_on_close(grpc_call *call, void *ud)
{
	api_slot *sl = ud;
	if (sl->m.on_close)
		sl->m.on_close(call, sl->a);
}

/* The request type of a served path, from the generated service
 * descriptors (so no hand-kept table can drift from the methods served).
 * 0, or MS_EINVAL for a path no descriptor names (health excepted). */
static int request_type(const char *path, const ProtobufCMessageDescriptor **out, ms_err *err)
{
	static const ProtobufCServiceDescriptor *const services[] = {
	    &etcdserverpb__kv__descriptor,          &etcdserverpb__watch__descriptor,
	    &etcdserverpb__lease__descriptor,       &etcdserverpb__cluster__descriptor,
	    &etcdserverpb__maintenance__descriptor, &etcdserverpb__auth__descriptor,
	    &v3electionpb__election__descriptor,    &v3lockpb__lock__descriptor,
	};
	*out = NULL;
	if (!strcmp(path, "/grpc.health.v1.Health/Check"))
		return 0;
	const char *slash = path[0] == '/' ? strchr(path + 1, '/') : NULL;
	if (slash) {
		size_t sl = (size_t)(slash - path - 1);
		for (size_t i = 0; i < MS_ARRAY_LEN(services); i++) {
			const ProtobufCServiceDescriptor *sd = services[i];
			if (strlen(sd->name) != sl || strncmp(sd->name, path + 1, sl) != 0)
				continue;
			for (unsigned j = 0; j < sd->n_methods; j++)
				if (!strcmp(sd->methods[j].name, slash + 1)) {
					*out = sd->methods[j].input;
					return 0;
				}
		}
	}
	return ms_err_set(err, MS_EINVAL, "api: no request type for %s", path);
}

int api_new(struct event_base *base, ms_server *srv, api **out, ms_err *err)
{
	api *a = ms_calloc(1, sizeof *a);
	if (!a)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	a->base = base;
	a->srv = srv;
	a->max_txn_ops = 128;
	const struct {
		const grpc_method *m;
		size_t n;
	} tables[] = {{api_kv_methods, api_kv_nmethods},       {api_maint_methods, api_maint_nmethods},
	              {api_lease_methods, api_lease_nmethods}, {api_watch_methods, api_watch_nmethods},
	              {api_lock_methods, api_lock_nmethods},   {api_election_methods, api_election_nmethods}};
	size_t total = 0;
	for (size_t i = 0; i < MS_ARRAY_LEN(tables); i++)
		total += tables[i].n;
	a->methods = ms_calloc(total, sizeof *a->methods);
	a->slots = ms_calloc(total, sizeof *a->slots);
	if (!a->methods || !a->slots) {
		ms_free(a->methods);
		ms_free(a->slots);
		ms_free(a);
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < MS_ARRAY_LEN(tables); i++)
		for (size_t j = 0; j < tables[i].n; j++) {
			api_slot *sl = &a->slots[a->nmethods];
			sl->a = a;
			sl->m = tables[i].m[j];
			int rc = request_type(sl->m.path, &sl->req, err);
			if (rc) {
				api_free(a);
				return rc;
			}
			a->methods[a->nmethods++] = (grpc_method){sl->m.path,          sl->m.kind,     guard_on_message,
			                                          guard_on_half_close, guard_on_close, sl};
		}
	grpc_server_opts o = {0};
	o.max_recv_msg = ms_server_max_request_bytes(srv) + 512 * 1024;
	o.http1 = api_http1;
	o.http1_ud = a;
	int rc = grpc_server_new(base, &o, a->methods, a->nmethods, &a->grpc, err);
	if (rc) {
		api_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

void api_set_max_txn_ops(api *a, int n)
{
	a->max_txn_ops = n;
}

void api_set_max_concurrent_streams(api *a, uint32_t n)
{
	grpc_server_set_max_concurrent_streams(a->grpc, n);
}

int api_listen(api *a, const char *url, ms_err *err)
{
	const char *p;
	bool secure = false;
	if (!strncmp(url, "http://", 7)) {
		p = url + 7;
	} else if (!strncmp(url, "https://", 8)) {
		p = url + 8;
		secure = true;
		if (!a->tls)
			return ms_err_set(err, MS_EINVAL,
			                  "TLS key/cert (--cert-file, --key-file) must be provided for client url %s "
			                  "with HTTPS scheme",
			                  url);
	} else if (!strncmp(url, "unix://", 7) || !strncmp(url, "unixs://", 8))
		return ms_err_set(err, MS_EUNSUPPORTED, "listen URL %s: unix sockets are not supported", url);
	else
		return ms_err_set(err, MS_EINVAL, "listen URL %s: URL scheme must be http, https, unix or unixs", url);
	const char *colon = strrchr(p, ':');
	if (!colon)
		return ms_err_set(err, MS_EINVAL, "listen URL %s: missing port in address", url);
	char host[256];
	size_t hl = (size_t)(colon - p);
	if (hl >= sizeof host)
		return ms_err_set(err, MS_EINVAL, "listen URL %s: host too long", url);
	memcpy(host, p, hl);
	host[hl] = 0;
	if (host[0] == '[' && hl > 1 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = 0;
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if ((*end && *end != '/') || port < 0 || port > 65535)
		return ms_err_set(err, MS_EINVAL, "listen URL %s: invalid port", url);
	int bound;
	int rc = grpc_server_listen_tls(a->grpc, host, (int)port, secure ? a->tls : NULL, &bound, err);
	if (rc)
		return rc;
	MS_INFO("embed", "ready to serve client requests");
	if (secure)
		MS_INFO("embed", "serving client requests on %s:%d", host, bound);
	else
		MS_NOTICE("embed", "serving insecure client requests on %s:%d, this is strongly discouraged!", host,
		          bound);
	return 0;
}

void api_set_tls(api *a, struct ms_tls *tls)
{
	a->tls = tls;
}

void api_free(api *a)
{
	if (!a)
		return;
	grpc_server_free(a->grpc);
	ms_free(a->methods);
	ms_free(a->slots);
	ms_free(a);
}
