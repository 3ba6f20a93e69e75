/* corrupt.c — alarms and the corruption check, with etcd 3.4's meaning
 * (etcdserver/corrupt.go, the alarm store and applierV3Corrupt).
 *
 * Alarms: an AlarmRequest ACTIVATE goes through the log and is applied on
 * every member; the raised alarms are kept in the engine's meta ("alarms", a
 * packed AlarmResponse) in the same batch, and in memory for Alarm GET. While
 * a CORRUPT alarm is raised every member refuses, at apply time, the requests
 * etcd's corrupt applier refuses (Put, DeleteRange, Txn, Compaction,
 * LeaseGrant, LeaseRevoke) with "etcdserver: corrupt cluster"; reads are
 * still served (etcd's Range does not go through that applier either). The
 * decision is made on the apply thread in log order, so every member makes
 * the same one. Only CORRUPT is raised so far; NOSPACE (the quota) and
 * DEACTIVATE are refused with Unimplemented until they are implemented.
 *
 * The check: HashKV (engine_hash_kv: the history up to a revision, with what
 * the member's compaction keeps) is compared at one revision. Peers are asked
 * over the peer transport (a PeerRequest, answered from a reader thread), the
 * way etcd asks over its peer URLs: it needs no client URL and no client
 * credentials. Rules, as etcd:
 *  - initial (--experimental-initial-corrupt-check), before the member serves
 *    clients (MetaStore: once it has published itself, so its store has
 *    caught up with the log it had): local (hash, rev, compact) against each
 *    peer's HashKV at rev. A different hash with the same compact revision is
 *    a mismatch; a peer behind (future revision), compacted past rev, with a
 *    different compact revision or not answering is skipped with a warning.
 *    Any mismatch: the member refuses to serve ("<id> found data
 *    inconsistency with peers").
 *  - periodic (--experimental-corrupt-check-time), on the leader only: local
 *    (h, rev, crev), each follower's HashKV at rev, then local again
 *    (h2, rev2, crev2). A follower whose revision or compact revision is
 *    ahead of the leader's, or whose hash differs at the same compact
 *    revision, gets a CORRUPT alarm with its member ID; the leader's own ID
 *    when its hash changed with neither revision moving. One alarm per round.
 */
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "server/server_int.h"

/* Raised alarms are at most one per (member, type): bounded by the cluster
 * size, but a client may name any member ID, so the list is capped. */
#define ALARMS_MAX 64
#define ALARMS_META "alarms"

typedef struct peer_ans {
	struct check_run *run;
	uint64_t id;
	int code; /* 0, an MS_E* code from the peer, MS_ETIMEOUT, or 1 = waiting */
	uint32_t hash;
	int64_t rev, crev;
} peer_ans;

typedef struct check_run {
	ms_server *s;
	bool initial;
	ms_check_done_fn done; /* initial check */
	void *ud;
	uint32_t hash;
	int64_t rev, crev;
	peer_ans *peers;
	size_t npeers, nwait;
	bool stopped; /* the server is going away: no answer, no new request */
} check_run;

struct ms_corrupt {
	/* the alarm list: written by the apply thread, read by Alarm GET */
	pthread_mutex_t mu;
	Etcdserverpb__AlarmMember alarms[ALARMS_MAX];
	size_t nalarms;
	bool corrupt; /* a CORRUPT alarm is raised (apply thread) */
	/* periodic check (loop) */
	struct event *timer;
	check_run *running;
	uint64_t ok_term; /* the term of the last round logged as consistent */
};

static const char *alarm_name(Etcdserverpb__AlarmType t)
{
	switch (t) {
	case ETCDSERVERPB__ALARM_TYPE__NOSPACE:
		return "NOSPACE";
	case ETCDSERVERPB__ALARM_TYPE__CORRUPT:
		return "CORRUPT";
	default:
		return "NONE";
	}
}

/* ---- the alarm store ---- */

/* Loads the raised alarms from the store (start-up, or after a snapshot
 * replaced the store). Caller holds no lock; the apply thread is idle. */
static int alarms_load(ms_server *s, ms_err *err)
{
	struct ms_corrupt *c = s->corrupt;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = engine_meta_get(s->eng, ALARMS_META, &buf, &len, err);
	pthread_mutex_lock(&c->mu);
	c->nalarms = 0;
	c->corrupt = false;
	pthread_mutex_unlock(&c->mu);
	if (rc == MS_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	Etcdserverpb__AlarmResponse *r = etcdserverpb__alarm_response__unpack(&ms_pb_allocator, len, buf);
	ms_free(buf);
	if (!r)
		return ms_err_set(err, MS_ECORRUPT, "meta record %s does not decode", ALARMS_META);
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < r->n_alarms && c->nalarms < ALARMS_MAX; i++) {
		Etcdserverpb__AlarmMember *m = &c->alarms[c->nalarms++];
		etcdserverpb__alarm_member__init(m);
		m->memberid = r->alarms[i]->memberid;
		m->alarm = r->alarms[i]->alarm;
		if (m->alarm == ETCDSERVERPB__ALARM_TYPE__CORRUPT)
			c->corrupt = true;
	}
	pthread_mutex_unlock(&c->mu);
	protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
	if (c->corrupt)
		MS_WARN("etcdserver", "a CORRUPT alarm is raised: writes are refused");
	return 0;
}

int ms_corrupt_reload(ms_server *s, ms_err *err)
{
	return alarms_load(s, err);
}

bool ms_alarm_refuses(ms_server *s, int request_case)
{
	if (!s->corrupt->corrupt)
		return false;
	switch (request_case) {
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUT:
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_DELETE_RANGE:
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_TXN:
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_COMPACTION:
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_LEASE_GRANT:
	case MSINTERNAL__INTERNAL_REQUEST__REQUEST_LEASE_REVOKE:
		return true;
	default:
		return false;
	}
}

int ms_alarm_apply(ms_server *s, engine_apply *a, const Etcdserverpb__AlarmRequest *r, ProtobufCMessage **resp,
                   ms_err *err)
{
	struct ms_corrupt *c = s->corrupt;
	/* only ACTIVATE of CORRUPT is ever proposed (ms_server_alarm_activate);
	 * anything else in the log came from a newer member: refuse to diverge */
	if (r->action != ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE ||
	    r->alarm != ETCDSERVERPB__ALARM_TYPE__CORRUPT)
		return ms_err_set(err, MS_EUNSUPPORTED, "log entry holds an alarm request this member cannot apply");
	Etcdserverpb__AlarmResponse *out = NULL;
	if (resp) {
		out = ms_malloc(sizeof *out);
		MS_ASSERT(out != NULL);
		etcdserverpb__alarm_response__init(out);
		*resp = &out->base;
	}
	pthread_mutex_lock(&c->mu);
	bool found = false;
	for (size_t i = 0; i < c->nalarms; i++)
		found |= c->alarms[i].memberid == r->memberid && c->alarms[i].alarm == r->alarm;
	bool added = false;
	if (!found && c->nalarms < ALARMS_MAX) {
		Etcdserverpb__AlarmMember *m = &c->alarms[c->nalarms++];
		etcdserverpb__alarm_member__init(m);
		m->memberid = r->memberid;
		m->alarm = r->alarm;
		added = true;
	}
	c->corrupt = true;
	/* the record to persist: the whole list */
	Etcdserverpb__AlarmMember *ptrs[ALARMS_MAX];
	for (size_t i = 0; i < c->nalarms; i++)
		ptrs[i] = &c->alarms[i];
	Etcdserverpb__AlarmResponse rec = ETCDSERVERPB__ALARM_RESPONSE__INIT;
	rec.alarms = ptrs;
	rec.n_alarms = c->nalarms;
	size_t len = etcdserverpb__alarm_response__get_packed_size(&rec);
	uint8_t *buf = ms_malloc(len ? len : 1);
	if (buf)
		etcdserverpb__alarm_response__pack(&rec, buf);
	pthread_mutex_unlock(&c->mu);
	if (!buf)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	int rc = engine_apply_meta_put(a, ALARMS_META, buf, len, err);
	ms_free(buf);
	if (rc)
		return rc;
	if (added) {
		MS_WARN("etcdserver", "alarm %s raised by peer %llx", alarm_name(r->alarm),
		        (unsigned long long)r->memberid);
		if (out) {
			out->alarms = ms_malloc(sizeof *out->alarms);
			Etcdserverpb__AlarmMember *m = ms_malloc(sizeof *m);
			MS_ASSERT(out->alarms && m);
			etcdserverpb__alarm_member__init(m);
			m->memberid = r->memberid;
			m->alarm = r->alarm;
			out->alarms[0] = m;
			out->n_alarms = 1;
		}
	}
	return 0;
}

int ms_server_alarm_list(ms_server *s, Etcdserverpb__AlarmType t, Etcdserverpb__AlarmResponse **out)
{
	struct ms_corrupt *c = s->corrupt;
	Etcdserverpb__AlarmResponse *r = ms_malloc(sizeof *r);
	if (!r)
		return MS_ENOMEM;
	etcdserverpb__alarm_response__init(r);
	pthread_mutex_lock(&c->mu);
	r->alarms = ms_calloc(c->nalarms ? c->nalarms : 1, sizeof *r->alarms);
	for (size_t i = 0; r->alarms && i < c->nalarms; i++) {
		if (t != ETCDSERVERPB__ALARM_TYPE__NONE && c->alarms[i].alarm != t)
			continue;
		Etcdserverpb__AlarmMember *m = ms_malloc(sizeof *m);
		if (!m)
			break;
		*m = c->alarms[i];
		r->alarms[r->n_alarms++] = m;
	}
	pthread_mutex_unlock(&c->mu);
	if (!r->alarms) {
		protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
		return MS_ENOMEM;
	}
	*out = r;
	return 0;
}

int ms_server_alarm_activate(ms_server *s, uint64_t member, Etcdserverpb__AlarmType t, int64_t deadline,
                             ms_done_fn done, void *arg)
{
	if (t != ETCDSERVERPB__ALARM_TYPE__CORRUPT)
		return MS_EUNSUPPORTED; /* NOSPACE needs the quota: not raised yet */
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	Etcdserverpb__AlarmRequest ar = ETCDSERVERPB__ALARM_REQUEST__INIT;
	ar.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
	ar.memberid = member;
	ar.alarm = t;
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_ALARM;
	req.alarm = &ar;
	return ms_server_propose(s, &req, deadline, done, arg);
}

static bool alarm_raised(ms_server *s, uint64_t member, Etcdserverpb__AlarmType t)
{
	struct ms_corrupt *c = s->corrupt;
	bool found = false;
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->nalarms; i++)
		found |= c->alarms[i].memberid == member && c->alarms[i].alarm == t;
	pthread_mutex_unlock(&c->mu);
	return found;
}

/* ---- answering a peer's HashKV question ---- */
typedef struct hash_answer {
	ms_server *s;
	uint64_t to, id;
} hash_answer;

static void hash_answer_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	hash_answer *h = arg;
	if (code != MS_ESTOPPED) {
		if (resp)
			ms_server_fill_resp_header(h->s, resp);
		ms_server_peer_answer(h->s, h->to, h->id, code, resp);
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
	ms_free(h);
}

void ms_corrupt_on_peer_hash(ms_server *s, uint64_t from, uint64_t id, int64_t rev)
{
	hash_answer *h = ms_malloc(sizeof *h);
	if (!h || ms_server_hash_kv(s, rev, hash_answer_done, h)) {
		ms_free(h);
		ms_server_peer_answer(s, from, id, MS_ENOMEM, NULL);
		return;
	}
	*h = (hash_answer){s, from, id};
}

/* ---- one check round ---- */
static void run_free(check_run *run)
{
	if (run->s->corrupt && run->s->corrupt->running == run)
		run->s->corrupt->running = NULL;
	ms_free(run->peers);
	ms_free(run);
}

static void on_alarm_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	if (code && code != MS_ESTOPPED)
		MS_WARN("etcdserver", "cannot raise the CORRUPT alarm: %s", msg ? msg : ms_strerror(code));
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
}

static void initial_finish(check_run *run)
{
	ms_server *s = run->s;
	int mismatch = 0;
	for (size_t i = 0; i < run->npeers; i++) {
		peer_ans *p = &run->peers[i];
		switch (p->code) {
		case 0:
			if (p->hash == run->hash)
				break;
			if (p->crev == run->crev) {
				MS_ERROR("etcdserver",
				         "%llx's hash %u != %llx's hash %u (revision %lld, peer revision %lld, compact "
				         "revision %lld)",
				         (unsigned long long)s->id, run->hash, (unsigned long long)p->id, p->hash,
				         (long long)run->rev, (long long)p->rev, (long long)run->crev);
				mismatch++;
			} else {
				MS_WARN("etcdserver",
				        "%llx cannot check hash of peer(%llx): peer has a different compact revision "
				        "%lld (revision:%lld)",
				        (unsigned long long)s->id, (unsigned long long)p->id, (long long)p->crev,
				        (long long)run->rev);
			}
			break;
		case MS_EFUTURE_REV:
			MS_WARN("etcdserver",
			        "%llx cannot check the hash of peer(%llx) at revision %lld: peer is lagging behind",
			        (unsigned long long)s->id, (unsigned long long)p->id, (long long)run->rev);
			break;
		case MS_ECOMPACTED:
			MS_WARN(
			    "etcdserver",
			    "%llx cannot check the hash of peer(%llx) at revision %lld: local node is lagging behind",
			    (unsigned long long)s->id, (unsigned long long)p->id, (long long)run->rev);
			break;
		default:
			MS_WARN("etcdserver", "%llx cannot fetch the hash from peer(%llx): %s",
			        (unsigned long long)s->id, (unsigned long long)p->id, ms_strerror(p->code));
			break;
		}
	}
	char msg[128];
	if (mismatch) {
		snprintf(msg, sizeof msg, "%llx found data inconsistency with peers", (unsigned long long)s->id);
		run->done(run->ud, MS_ECORRUPT, msg);
	} else {
		MS_INFO("etcdserver", "%llx succeeded on initial corruption checking: no corruption",
		        (unsigned long long)s->id);
		run->done(run->ud, 0, NULL);
	}
	run_free(run);
}

static void periodic_second(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	check_run *run = arg;
	ms_server *s = run->s;
	if (code || !resp) {
		if (code != MS_ESTOPPED)
			MS_WARN("etcdserver", "corruption check: cannot hash the local store: %s",
			        msg ? msg : ms_strerror(code));
		goto out;
	}
	Etcdserverpb__HashKVResponse *r = (Etcdserverpb__HashKVResponse *)resp;
	uint32_t h2 = r->hash;
	int64_t rev2 = r->header ? r->header->revision : 0, crev2 = r->compact_revision;
	uint64_t bad = 0;
	if (h2 != run->hash && rev2 == run->rev && crev2 == run->crev) {
		MS_WARN("etcdserver", "mismatched hashes %u and %u for revision %lld", run->hash, h2,
		        (long long)run->rev);
		bad = s->id;
	}
	for (size_t i = 0; i < run->npeers && !bad; i++) {
		peer_ans *p = &run->peers[i];
		if (p->code)
			continue;
		if (p->rev > rev2) {
			MS_WARN("etcdserver", "revision %lld from member %llx, expected at most %lld",
			        (long long)p->rev, (unsigned long long)p->id, (long long)rev2);
			bad = p->id;
		} else if (p->crev > crev2) {
			MS_WARN("etcdserver", "compact revision %lld from member %llx, expected at most %lld",
			        (long long)p->crev, (unsigned long long)p->id, (long long)crev2);
			bad = p->id;
		} else if (p->crev == run->crev && p->hash != run->hash) {
			MS_WARN("etcdserver", "hash %u at revision %lld from member %llx, expected hash %u", p->hash,
			        (long long)run->rev, (unsigned long long)p->id, run->hash);
			bad = p->id;
		}
	}
	if (!bad && s->corrupt && s->corrupt->ok_term != s->term) {
		/* once per term, so an operator sees the check runs */
		size_t n = 0;
		for (size_t i = 0; i < run->npeers; i++)
			n += run->peers[i].code == 0;
		MS_INFO("etcdserver", "corruption check: HashKV consistent with %zu of %zu peers at revision %lld", n,
		        run->npeers, (long long)run->rev);
		s->corrupt->ok_term = s->term;
	}
	if (bad && alarm_raised(s, bad, ETCDSERVERPB__ALARM_TYPE__CORRUPT))
		bad = 0; /* raised already: the log needs no second entry each round */
	if (bad && ms_server_alarm_activate(s, bad, ETCDSERVERPB__ALARM_TYPE__CORRUPT, 0, on_alarm_done, NULL))
		MS_WARN("etcdserver", "cannot propose the CORRUPT alarm for %llx", (unsigned long long)bad);
out:
	if (resp)
		protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);
	run_free(run);
}

/* Every peer answered (or timed out). */
static void peers_done(check_run *run)
{
	if (run->stopped) {
		run_free(run);
		return;
	}
	if (run->initial) {
		initial_finish(run);
		return;
	}
	if (ms_server_hash_kv(run->s, 0, periodic_second, run))
		run_free(run);
}

static void on_peer_hash(void *arg, int code, const uint8_t *data, size_t len)
{
	peer_ans *p = arg;
	check_run *run = p->run;
	p->code = code;
	if (code == MS_ESTOPPED)
		run->stopped = true;
	if (code == 0) {
		Etcdserverpb__HashKVResponse *r = etcdserverpb__hash_kvresponse__unpack(&ms_pb_allocator, len, data);
		if (r) {
			p->hash = r->hash;
			p->rev = r->header ? r->header->revision : 0;
			p->crev = r->compact_revision;
			protobuf_c_message_free_unpacked(&r->base, &ms_pb_allocator);
		} else {
			p->code = MS_EINVAL;
		}
	}
	if (--run->nwait == 0)
		peers_done(run);
}

/* The local hash is known: ask every other member for theirs at run->rev. */
static void on_local_hash(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	check_run *run = arg;
	ms_server *s = run->s;
	if (code || !resp) {
		if (code != MS_ESTOPPED) {
			MS_WARN("etcdserver", "corruption check: cannot hash the local store: %s",
			        msg ? msg : ms_strerror(code));
			if (run->initial)
				run->done(run->ud, code ? code : MS_EIO, msg ? msg : "cannot hash the local store");
		}
		run_free(run);
		return;
	}
	Etcdserverpb__HashKVResponse *r = (Etcdserverpb__HashKVResponse *)resp;
	run->hash = r->hash;
	run->rev = r->header ? r->header->revision : 0;
	run->crev = r->compact_revision;
	protobuf_c_message_free_unpacked(resp, &ms_pb_allocator);

	Etcdserverpb__Member **m;
	size_t n;
	if (ms_server_members(s, &m, &n)) {
		if (run->initial)
			run->done(run->ud, MS_ENOMEM, "out of memory");
		run_free(run);
		return;
	}
	run->peers = ms_calloc(n ? n : 1, sizeof *run->peers);
	if (!run->peers) {
		ms_server_members_free(m, n);
		if (run->initial)
			run->done(run->ud, MS_ENOMEM, "out of memory");
		run_free(run);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (m[i]->id != s->id)
			run->peers[run->npeers++] = (peer_ans){.run = run, .id = m[i]->id, .code = 1};
	ms_server_members_free(m, n);
	/* etcd's request timeout: 5 s plus two election timeouts */
	int64_t deadline = ms_now_mono_ns() + (5000 + 2 * (int64_t)s->cfg.election_ms) * 1000000;
	run->nwait = 1; /* held until every call is out */
	for (size_t i = 0; i < run->npeers; i++) {
		Msinternal__PeerRequest pr = MSINTERNAL__PEER_REQUEST__INIT;
		Etcdserverpb__HashKVRequest hr = ETCDSERVERPB__HASH_KVREQUEST__INIT;
		hr.revision = run->rev;
		pr.request_case = MSINTERNAL__PEER_REQUEST__REQUEST_HASH_KV;
		pr.hash_kv = &hr;
		run->nwait++;
		int rc = ms_server_peer_call(s, run->peers[i].id, &pr, deadline, on_peer_hash, &run->peers[i]);
		if (rc) {
			if (rc == MS_ESTOPPED)
				run->stopped = true;
			run->peers[i].code = rc; /* not connected: skipped, as an unreachable peer in etcd */
			run->nwait--;
		}
	}
	if (--run->nwait == 0)
		peers_done(run);
}

static check_run *run_new(ms_server *s, bool initial)
{
	check_run *run = ms_calloc(1, sizeof *run);
	if (!run)
		return NULL;
	run->s = s;
	run->initial = initial;
	return run;
}

int ms_server_initial_corrupt_check(ms_server *s, ms_check_done_fn done, void *ud)
{
	check_run *run = run_new(s, true);
	if (!run)
		return MS_ENOMEM;
	run->done = done;
	run->ud = ud;
	MS_INFO("etcdserver", "%llx starting initial corruption check with timeout %lldms...",
	        (unsigned long long)s->id, (long long)(5000 + 2 * (int64_t)s->cfg.election_ms));
	int rc = ms_server_hash_kv(s, 0, on_local_hash, run);
	if (rc)
		ms_free(run);
	return rc;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	ms_server *s = arg;
	if (s->leader != s->id || s->corrupt->running)
		return;
	check_run *run = run_new(s, false);
	if (!run)
		return;
	s->corrupt->running = run;
	if (ms_server_hash_kv(s, 0, on_local_hash, run)) {
		s->corrupt->running = NULL;
		ms_free(run);
	}
}

/* ---- life cycle ---- */
int ms_corrupt_init(ms_server *s, ms_err *err)
{
	struct ms_corrupt *c = ms_calloc(1, sizeof *c);
	if (!c)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	pthread_mutex_init(&c->mu, NULL);
	s->corrupt = c;
	return alarms_load(s, err);
}

int ms_corrupt_start(ms_server *s, ms_err *err)
{
	int64_t ns = s->cfg.corrupt_check_ns;
	if (ns <= 0)
		return 0;
	s->corrupt->timer = event_new(s->base, -1, EV_PERSIST, on_timer, s);
	if (!s->corrupt->timer)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	struct timeval tv = {(time_t)(ns / 1000000000), (suseconds_t)((ns % 1000000000) / 1000)};
	event_add(s->corrupt->timer, &tv);
	MS_INFO("etcdserver", "enabled corruption checking with %lldms interval", (long long)(ns / 1000000));
	return 0;
}

void ms_corrupt_free(ms_server *s)
{
	struct ms_corrupt *c = s->corrupt;
	if (!c)
		return;
	if (c->timer)
		event_free(c->timer);
	/* a round still running was finished by the failed reads and peer calls
	 * (MS_ESTOPPED) before this runs */
	if (c->running)
		c->running->stopped = true;
	pthread_mutex_destroy(&c->mu);
	ms_free(c);
	s->corrupt = NULL;
}
