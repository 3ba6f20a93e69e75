/* lease_srv.c — wires the lease manager (lease/) into the server: start-up
 * recovery from the engine, LeaseGrant/Revoke through raft, keep-alive and
 * TimeToLive from memory, and expiry on the leader.
 *
 * Decisions:
 *   - The proposer picks the id (ID 0) and raises the TTL to the minimum
 *     before proposing, so every member applies the same grant.
 *   - Only the leader's manager is primary (runs expiry clocks). A loop timer
 *     every LEASE_TICK_MS pops expired leases (at most etcd's rate:
 *     LEASE_REVOKE_RATE / 2 per 500 ms) and proposes a revoke for each, as an
 *     ordinary proposal whose result nobody waits for; a lost proposal is
 *     popped again after the manager's retry delay.
 *   - Keep-alives and TimeToLive are answered from the leader's memory. On a
 *     follower (MS_ENOT_LEADER from the manager) they must be forwarded to
 *     the leader: lease_forward() is that hook; until the peer transport
 *     exists it answers "etcdserver: not leader". */
#include <event2/event.h>
#include <string.h>
#include <sys/random.h>

#include "lease/lease.h"
#include "server/server_int.h"

#define LEASE_TICK_MS 100
/* etcd revokes at most leaseRevokeRate/2 per 500 ms */
#define LEASE_POP_PER_TICK (LEASE_REVOKE_RATE / 2 * LEASE_TICK_MS / 500)

struct ms_lease_srv {
	lease_mgr *m;
	uint64_t rng; /* xorshift64*; only used under the manager's mutex */
	int64_t min_ttl;
	bool primary; /* loop thread */
	struct event *tick_ev;
};

static int64_t lease_clock(void *ud)
{
	return ms_now_mono_ns();
}

static uint64_t lease_rand(void *ud)
{
	struct ms_lease_srv *ls = ud;
	ls->rng ^= ls->rng >> 12;
	ls->rng ^= ls->rng << 25;
	ls->rng ^= ls->rng >> 27;
	return ls->rng * 0x2545F4914F6CDD1DULL;
}

int ms_lease_srv_init(ms_server *s, ms_err *err)
{
	struct ms_lease_srv *ls = ms_calloc(1, sizeof *ls);
	if (!ls)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	s->lease = ls;
	if (getrandom(&ls->rng, sizeof ls->rng, 0) != sizeof ls->rng || ls->rng == 0)
		ls->rng = (uint64_t)ms_now_wall_ns() | 1;
	ls->min_ttl = lease_min_ttl(s->cfg.heartbeat_ms, s->cfg.election_ms);
	lease_cfg cfg = {.now = lease_clock, .rand = lease_rand, .rand_ud = ls, .min_ttl = ls->min_ttl};
	int rc = lease_mgr_new(&cfg, &ls->m, err);
	if (rc)
		return rc;
	if ((rc = engine_leases(s->eng, lease_mgr_load, ls->m, err)))
		return rc;
	if (lease_count(ls->m))
		MS_INFO("lease", "recovered %zu leases", lease_count(ls->m));
	return 0;
}

static void on_revoke_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
}

static int propose_revoke(ms_server *s, int64_t id, int64_t deadline, ms_done_fn done, void *arg)
{
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	Etcdserverpb__LeaseRevokeRequest r = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
	r.id = id;
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE;
	req.lease_revoke = &r;
	return ms_server_propose(s, &req, deadline, done, arg);
}

/* Expiry (leader only): proposes a revoke for each expired lease. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	ms_server *s = arg;
	struct ms_lease_srv *ls = s->lease;
	if (!ls->primary || lease_next_due(ls->m) > ms_now_mono_ns())
		return;
	int64_t ids[LEASE_POP_PER_TICK];
	size_t n = lease_expired_pop(ls->m, ids, MS_ARRAY_LEN(ids));
	for (size_t i = 0; i < n; i++) {
		int rc = propose_revoke(s, ids[i], 0, on_revoke_done, NULL);
		if (rc)
			MS_WARN("lease", "failed to revoke expired lease %016llx: %s (retried later)",
			        (unsigned long long)ids[i], ms_strerror(rc));
	}
}

int ms_lease_srv_start(ms_server *s, ms_err *err)
{
	struct ms_lease_srv *ls = s->lease;
	ls->tick_ev = event_new(s->base, -1, EV_PERSIST, on_tick, s);
	if (!ls->tick_ev)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	struct timeval tv = {0, LEASE_TICK_MS * 1000};
	event_add(ls->tick_ev, &tv);
	return 0;
}

void ms_lease_srv_free(ms_server *s)
{
	struct ms_lease_srv *ls = s->lease;
	if (!ls)
		return;
	if (ls->tick_ev)
		event_free(ls->tick_ev);
	lease_mgr_del(ls->m);
	ms_free(ls);
	s->lease = NULL;
}

void ms_lease_srv_on_leader(ms_server *s, uint64_t leader)
{
	struct ms_lease_srv *ls = s->lease;
	if (!ls)
		return;
	bool lead = leader && leader == s->id;
	if (lead && !ls->primary) {
		/* a new leader extends every lease by the election timeout, so
		 * keep-alives lost in the election do not expire anyone */
		lease_mgr_promote(ls->m, (int64_t)s->cfg.election_ms * 1000000);
		ls->primary = true;
	} else if (!lead && ls->primary) {
		lease_mgr_demote(ls->m);
		ls->primary = false;
	}
}

/* ---- apply thread ---- */

void ms_lease_srv_applied_grant(ms_server *s, int64_t id, int64_t ttl)
{
	ms_err err = {0};
	/* the engine accepted it, so the manager (which mirrors the engine) must */
	int rc = lease_grant(s->lease->m, id, ttl, NULL, &err);
	if (rc)
		MS_ERROR("lease", "lease manager refused applied grant %016llx: %s", (unsigned long long)id, err.msg);
}

void ms_lease_srv_applied_revoke(ms_server *s, int64_t id)
{
	ms_err err = {0};
	int rc = lease_revoke(s->lease->m, id, &err);
	if (rc)
		MS_ERROR("lease", "lease manager refused applied revoke %016llx: %s", (unsigned long long)id, err.msg);
}

void ms_lease_srv_on_events(ms_server *s, Mvccpb__Event *const *evs, size_t n)
{
	ms_err err = {0};
	if (lease_mgr_on_events(s->lease->m, evs, n, &err))
		MS_WARN("lease", "lease key mirror: %s", err.msg);
}

/* ---- requests (loop) ---- */

static Etcdserverpb__ResponseHeader *new_header(ms_server *s)
{
	Etcdserverpb__ResponseHeader *h = ms_malloc(sizeof *h);
	if (!h)
		return NULL;
	etcdserverpb__response_header__init(h);
	ms_server_fill_header(s, h, engine_current_rev(s->eng));
	return h;
}

int ms_server_lease_grant(ms_server *s, int64_t id, int64_t ttl, int64_t deadline, ms_done_fn done, void *arg)
{
	struct ms_lease_srv *ls = s->lease;
	int rc = lease_check_ttl(ttl, NULL);
	if (rc)
		return rc;
	if (id == 0 && (rc = lease_mgr_next_id(ls->m, &id, NULL)))
		return rc;
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
	g.id = id;
	g.ttl = ttl < ls->min_ttl ? ls->min_ttl : ttl; /* the reply carries the effective TTL */
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_LEASE_GRANT;
	req.lease_grant = &g;
	return ms_server_propose(s, &req, deadline, done, arg);
}

int ms_server_lease_revoke(ms_server *s, int64_t id, int64_t deadline, ms_done_fn done, void *arg)
{
	return propose_revoke(s, id, deadline, done, arg);
}

/* A follower forwards keep-alives to the leader over the peer transport (as
 * etcd's LeaseRenew does over HTTP); the answer carries the leader's TTL and
 * this member fills its own header. */
typedef struct fwd_renew {
	ms_server *s;
	int64_t id;
	ms_done_fn done;
	void *arg;
} fwd_renew;

static int renew_reply(ms_server *s, int64_t id, int64_t ttl, ms_done_fn done, void *arg)
{
	Etcdserverpb__LeaseKeepAliveResponse *r = ms_malloc(sizeof *r);
	if (!r)
		return MS_ENOMEM;
	etcdserverpb__lease_keep_alive_response__init(r);
	if (!(r->header = new_header(s))) {
		ms_free(r);
		return MS_ENOMEM;
	}
	r->id = id;
	r->ttl = ttl;
	done(arg, 0, &r->base, NULL);
	return 0;
}

static void forwarded_renew_done(void *arg, int code, const uint8_t *resp, size_t len)
{
	fwd_renew *f = arg;
	int64_t ttl = 0;
	if (code == 0) {
		Etcdserverpb__LeaseKeepAliveResponse *r =
		    etcdserverpb__lease_keep_alive_response__unpack(&ms_pb_allocator, len, resp);
		if (r) {
			ttl = r->ttl;
			protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
		} else {
			code = MS_EIO;
		}
	}
	if (code == MS_ELEASE_NOT_FOUND)
		code = 0, ttl = 0; /* etcd: no error, TTL 0 */
	if (code || renew_reply(f->s, f->id, ttl, f->done, f->arg) != 0)
		f->done(f->arg, code ? code : MS_ENOMEM, NULL, NULL);
	ms_free(f);
}

static int lease_forward(ms_server *s, int64_t id, ms_done_fn done, void *arg)
{
	uint64_t leader = ms_server_leader(s);
	if (!leader)
		return MS_ENO_LEADER;
	fwd_renew *f = ms_malloc(sizeof *f);
	if (!f)
		return MS_ENOMEM;
	*f = (fwd_renew){s, id, done, arg};
	Msinternal__PeerRequest req = MSINTERNAL__PEER_REQUEST__INIT;
	Etcdserverpb__LeaseKeepAliveRequest ka = ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
	ka.id = id;
	req.request_case = MSINTERNAL__PEER_REQUEST__REQUEST_KEEP_ALIVE;
	req.keep_alive = &ka;
	/* etcd waits for the leader up to its request timeout */
	int rc = ms_server_peer_call(s, leader, &req, ms_now_mono_ns() + 5 * 1000000000LL, forwarded_renew_done, f);
	if (rc)
		ms_free(f);
	return rc;
}

int ms_lease_srv_renew_local(ms_server *s, int64_t id, int64_t *ttl)
{
	*ttl = 0;
	int rc = lease_renew(s->lease->m, id, ttl, NULL);
	return rc == MS_ELEASE_NOT_FOUND ? 0 : rc; /* TTL 0 */
}

int ms_server_lease_renew(ms_server *s, int64_t id, ms_done_fn done, void *arg)
{
	int64_t ttl = 0;
	int rc = lease_renew(s->lease->m, id, &ttl, NULL);
	if (rc == MS_ENOT_LEADER)
		return lease_forward(s, id, done, arg);
	if (rc == MS_ELEASE_NOT_FOUND)
		ttl = 0; /* etcd: no error, TTL 0 */
	else if (rc)
		return rc;
	return renew_reply(s, id, ttl, done, arg);
}

typedef struct key_acc {
	ProtobufCBinaryData *v;
	size_t n, cap;
} key_acc;

static int collect_key(void *arg, const uint8_t *key, size_t len)
{
	key_acc *a = arg;
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 8;
		ProtobufCBinaryData *v = ms_realloc(a->v, cap * sizeof *v);
		if (!v)
			return MS_ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	uint8_t *p = ms_malloc(len ? len : 1);
	if (!p)
		return MS_ENOMEM;
	memcpy(p, key, len);
	a->v[a->n++] = (ProtobufCBinaryData){.len = len, .data = p};
	return 0;
}

int ms_server_lease_ttl(ms_server *s, int64_t id, bool keys, Etcdserverpb__LeaseTimeToLiveResponse **out)
{
	Etcdserverpb__LeaseTimeToLiveResponse *r = ms_malloc(sizeof *r);
	if (!r)
		return MS_ENOMEM;
	etcdserverpb__lease_time_to_live_response__init(r);
	if (!(r->header = new_header(s))) {
		ms_free(r);
		return MS_ENOMEM;
	}
	r->id = id;
	lease_ttl_info info;
	int rc = lease_time_to_live(s->lease->m, id, &info, NULL);
	if (rc == MS_ELEASE_NOT_FOUND) {
		r->ttl = -1; /* etcd: OK with TTL -1, grantedTTL 0 */
		*out = r;
		return 0;
	}
	if (rc)
		goto fail;
	/* TODO(peer transport): a follower's clocks are stopped; forward to the leader */
	r->ttl = info.remaining_ttl < 0 ? 0 : info.remaining_ttl;
	r->grantedttl = info.granted_ttl;
	if (keys) {
		key_acc a = {0};
		rc = lease_keys(s->lease->m, id, collect_key, &a, NULL);
		r->keys = a.v;
		r->n_keys = a.n;
		if (rc == MS_ELEASE_NOT_FOUND) /* revoked meanwhile */
			rc = 0;
		if (rc)
			goto fail;
	}
	*out = r;
	return 0;
fail:
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	return rc;
}

int ms_server_lease_leases(ms_server *s, Etcdserverpb__LeaseLeasesResponse **out)
{
	int64_t *ids = NULL;
	size_t n = 0;
	int rc = lease_list(s->lease->m, &ids, &n, NULL);
	if (rc)
		return rc;
	Etcdserverpb__LeaseLeasesResponse *r = ms_malloc(sizeof *r);
	if (!r) {
		ms_free(ids);
		return MS_ENOMEM;
	}
	etcdserverpb__lease_leases_response__init(r);
	r->header = new_header(s);
	r->leases = n ? ms_calloc(n, sizeof *r->leases) : NULL;
	rc = r->header && (!n || r->leases) ? 0 : MS_ENOMEM;
	for (size_t i = 0; i < n && !rc; i++) {
		Etcdserverpb__LeaseStatus *st = ms_malloc(sizeof *st);
		if (!st) {
			rc = MS_ENOMEM;
			break;
		}
		etcdserverpb__lease_status__init(st);
		st->id = ids[i];
		r->leases[r->n_leases++] = st;
	}
	ms_free(ids);
	if (rc) {
		protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
		return rc;
	}
	*out = r;
	return 0;
}

/* apply thread, after a snapshot replaced the store: the manager follows
 * the store's lease records again (a follower's manager keeps no clocks
 * running, so dropping and reloading loses nothing). */
int ms_lease_srv_reload(ms_server *s, ms_err *err)
{
	int64_t *ids = NULL;
	size_t n = 0;
	int rc = lease_list(s->lease->m, &ids, &n, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++)
		lease_revoke(s->lease->m, ids[i], NULL);
	ms_free(ids);
	return engine_leases(s->eng, lease_mgr_load, s->lease->m, err);
}
