/* peer.c — requests one member asks another outside the log, over the peer
 * transport: a follower forwards lease keep-alives to the leader (as etcd's
 * LeaseRenew does over HTTP), and the corruption check asks for HashKV.
 * Calls wait in a small list on the loop and time out with the sweep. The
 * same PeerResponse carries a leader's refusal of a forwarded proposal back
 * to the follower's waiting call. */
#include <string.h>

#include "common/pbcheck.h"
#include "server/server_int.h"

typedef struct peer_call {
	uint64_t id;
	int64_t deadline;
	ms_peer_done_fn done;
	void *arg;
	struct peer_call *next;
} peer_call;

int ms_server_peer_call(ms_server *s, uint64_t to, Msinternal__PeerRequest *req, int64_t deadline, ms_peer_done_fn done,
                        void *arg)
{
	if (!s->node)
		return MS_ESTOPPED; /* shutting down: a read finishing late may still ask */
	req->id = ++s->next_req_id;
	size_t len = msinternal__peer_request__get_packed_size(req);
	uint8_t *buf = ms_malloc(len ? len : 1);
	peer_call *c = ms_malloc(sizeof *c);
	if (!buf || !c) {
		ms_free(buf);
		ms_free(c);
		return MS_ENOMEM;
	}
	msinternal__peer_request__pack(req, buf);
	int rc = raft_node_peer_send(s->node, to, false, buf, len);
	ms_free(buf);
	if (rc) {
		ms_free(c);
		return rc;
	}
	*c = (peer_call){req->id, deadline, done, arg, s->peer_calls};
	s->peer_calls = c;
	return 0;
}

/* Times out calls whose deadline passed (now), or all of them (now < 0). */
void ms_server_peer_sweep(ms_server *s, int64_t now)
{
	for (peer_call **pp = (peer_call **)&s->peer_calls; *pp;) {
		peer_call *c = *pp;
		if (now >= 0 && c->deadline > now) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		c->done(c->arg, now < 0 ? MS_ESTOPPED : MS_ETIMEOUT, NULL, 0);
		ms_free(c);
	}
}

void ms_server_peer_answer(ms_server *s, uint64_t to, uint64_t id, int code, const ProtobufCMessage *resp)
{
	if (!s->node)
		return; /* shutting down */
	Msinternal__PeerResponse pr = MSINTERNAL__PEER_RESPONSE__INIT;
	pr.id = id;
	pr.code = code;
	uint8_t *rb = NULL;
	if (resp) {
		pr.response.len = protobuf_c_message_get_packed_size(resp);
		rb = ms_malloc(pr.response.len ? pr.response.len : 1);
		if (!rb)
			return;
		protobuf_c_message_pack(resp, rb);
		pr.response.data = rb;
	}
	size_t len = msinternal__peer_response__get_packed_size(&pr);
	uint8_t *buf = ms_malloc(len ? len : 1);
	if (buf) {
		msinternal__peer_response__pack(&pr, buf);
		raft_node_peer_send(s->node, to, true, buf, len);
		ms_free(buf);
	}
	ms_free(rb);
}

static void on_request(ms_server *s, uint64_t from, const uint8_t *data, size_t len)
{
	ProtobufCMessage *m;
	ms_err err = {0};
	if (ms_pb_unpack(&msinternal__peer_request__descriptor, data, len, MS_PB_MAX_DEPTH_INTERNAL, &m, &err)) {
		MS_WARN("etcdserver", "undecodable peer request from %llx: %s", (unsigned long long)from, err.msg);
		return;
	}
	Msinternal__PeerRequest *req = (Msinternal__PeerRequest *)m;
	switch (req->request_case) {
	case MSINTERNAL__PEER_REQUEST__REQUEST_KEEP_ALIVE: {
		int64_t ttl = 0;
		int code = ms_lease_srv_renew_local(s, req->keep_alive->id, &ttl);
		Etcdserverpb__LeaseKeepAliveResponse r = ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
		r.id = req->keep_alive->id;
		r.ttl = ttl;
		ms_server_peer_answer(s, from, req->id, code, code ? NULL : &r.base);
		break;
	}
	case MSINTERNAL__PEER_REQUEST__REQUEST_HASH_KV:
		ms_corrupt_on_peer_hash(s, from, req->id, req->hash_kv->revision);
		break;
	default:
		ms_server_peer_answer(s, from, req->id, MS_EUNSUPPORTED, NULL);
		break;
	}
	protobuf_c_message_free_unpacked(&req->base, &ms_pb_allocator);
}

static void on_response(ms_server *s, const uint8_t *data, size_t len)
{
	ProtobufCMessage *m;
	if (ms_pb_unpack(&msinternal__peer_response__descriptor, data, len, MS_PB_MAX_DEPTH_INTERNAL, &m, NULL))
		return;
	Msinternal__PeerResponse *r = (Msinternal__PeerResponse *)m;
	bool found = false;
	for (peer_call **pp = (peer_call **)&s->peer_calls; *pp; pp = &(*pp)->next) {
		peer_call *c = *pp;
		if (c->id != r->id)
			continue;
		*pp = c->next;
		c->done(c->arg, r->code, r->response.data, r->response.len);
		ms_free(c);
		found = true;
		break;
	}
	/* Not a peer call: the leader refused a proposal we forwarded (peer
	 * calls and proposals share one id sequence). Only an error can end a
	 * proposal this way; its success comes from apply. */
	if (!found && r->code < 0) {
		waiter *w = ms_server_waiter_take(s, r->id);
		if (w) {
			w->done(w->arg, r->code, NULL, NULL);
			ms_free(w);
		}
	}
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
}

void ms_server_on_peer(void *ud, uint64_t from, bool response, const uint8_t *data, size_t len)
{
	ms_server *s = ud;
	if (response)
		on_response(s, data, len);
	else
		on_request(s, from, data, len);
}
