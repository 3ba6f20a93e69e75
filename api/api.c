/* api.c — wires the etcd services onto the gRPC layer and listens. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

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

static void guard_on_message(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	api_slot *sl = ud;
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
	if (!strncmp(url, "http://", 7))
		p = url + 7;
	else if (!strncmp(url, "https://", 8) || !strncmp(url, "unix://", 7) || !strncmp(url, "unixs://", 8))
		return ms_err_set(err, MS_EUNSUPPORTED, "listen URL %s: only http:// client URLs are supported", url);
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
	int rc = grpc_server_listen(a->grpc, host, (int)port, &bound, err);
	if (rc)
		return rc;
	MS_INFO("embed", "ready to serve client requests");
	MS_NOTICE("embed", "serving insecure client requests on %s:%d, this is strongly discouraged!", host, bound);
	return 0;
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
