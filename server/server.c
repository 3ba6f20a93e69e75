/* server.c — the etcd server core: data directory, start-up, proposals and
 * their waiters, linearizable reads (ReadIndex batched in rounds), reader
 * threads, status. Apply lives in apply.c, membership in members.c. */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/server_int.h"

#define WTAB_SIZE 16384 /* power of two */

static const char *const foreign_entries[] = {"member", "snap", "wal"};

/* ---- data directory ---- */
static int path_join(char **out, const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	*out = ms_malloc(n);
	if (!*out)
		return MS_ENOMEM;
	snprintf(*out, n, "%s/%s", a, b);
	return 0;
}

/* Decides whether dir is a new member (true), an existing MetaStore member
 * (false), or something we must not touch (error). */
static int check_data_dir(const char *dir, bool *fresh, ms_err *err)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		if (errno == ENOENT) {
			*fresh = true;
			return 0;
		}
		return ms_err_set(err, MS_EIO, "cannot access data directory %s: %s", dir, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return ms_err_set(err, MS_EINVAL, "data directory %s is not a directory", dir);
	DIR *d = opendir(dir);
	if (!d)
		return ms_err_set(err, MS_EIO, "cannot read data directory %s: %s", dir, strerror(errno));
	bool ours = false, other = false;
	char other_name[256] = "";
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!strcmp(de->d_name, "metastore")) {
			ours = true;
			continue;
		}
		if (!strcmp(de->d_name, "fixtures")) /* --auto-tls certificates, made first (as etcd) */
			continue;
		for (size_t i = 0; i < MS_ARRAY_LEN(foreign_entries); i++)
			if (!strcmp(de->d_name, foreign_entries[i])) {
				rc = ms_err_set(
				    err, MS_ECORRUPT,
				    "data directory %s holds an etcd data set (%s/), not MetaStore's; "
				    "refusing to serve or overwrite it (migrate it, or choose another --data-dir)",
				    dir, de->d_name);
				break;
			}
		if (rc)
			break;
		if (!other)
			snprintf(other_name, sizeof other_name, "%s", de->d_name);
		other = true;
	}
	closedir(d);
	if (rc)
		return rc;
	if (other)
		return ms_err_set(err, MS_ECORRUPT,
		                  "data directory %s is not a MetaStore data directory (it holds \"%s\"); "
		                  "refusing to serve or overwrite it",
		                  dir, other_name);
	*fresh = !ours;
	return 0;
}

/* A store written by metastore-migrate carries the flags it was made for
 * (<data-dir>/metastore/migrated, key=value lines). Its first start must
 * use the same member name, cluster and token, or the IDs would differ
 * from what the operator planned: refuse with a message naming the
 * difference. */
static int check_migrated(const ms_server_config *cfg, ms_err *err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/metastore/migrated", cfg->data_dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char line[4096];
	int rc = 0;
	char ic[4096] = "";
	size_t off = 0;
	for (size_t i = 0; i < cfg->ninitial_cluster; i++)
		for (size_t j = 0; j < cfg->initial_cluster[i].npeer_urls && off < sizeof ic; j++)
			off += (size_t)snprintf(ic + off, sizeof ic - off, "%s%s=%s", off ? "," : "",
			                        cfg->initial_cluster[i].name, cfg->initial_cluster[i].peer_urls[j]);
	char ap[4096] = "";
	off = 0;
	for (size_t i = 0; i < cfg->npeer_urls && off < sizeof ap; i++)
		off += (size_t)snprintf(ap + off, sizeof ap - off, "%s%s", off ? "," : "", cfg->peer_urls[i]);
	while (!rc && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = 0;
		const char *want = eq + 1, *have = NULL, *flag = NULL;
		if (!strcmp(line, "name"))
			have = cfg->name, flag = "--name";
		else if (!strcmp(line, "initial-cluster"))
			have = ic, flag = "--initial-cluster";
		else if (!strcmp(line, "initial-advertise-peer-urls"))
			have = ap, flag = "--initial-advertise-peer-urls";
		else if (!strcmp(line, "initial-cluster-token"))
			have = cfg->initial_cluster_token, flag = "--initial-cluster-token";
		if (have && strcmp(have, want) != 0)
			rc = ms_err_set(
			    err, MS_EINVAL,
			    "data directory %s was migrated for %s=%s, but this member was started with %s=%s",
			    cfg->data_dir, flag, want, flag, have);
	}
	fclose(f);
	return rc;
}

/* ---- waiters (loop thread) ---- */
static void waiter_insert(ms_server *s, waiter *w)
{
	size_t b = (size_t)(w->id * 0x9E3779B97F4A7C15ULL >> 50) & (WTAB_SIZE - 1);
	w->hnext = s->wtab[b];
	s->wtab[b] = w;
	w->next = &s->whead;
	w->prev = s->whead.prev;
	s->whead.prev->next = w;
	s->whead.prev = w;
	s->nwaiters++;
}

waiter *ms_server_waiter_take(ms_server *s, uint64_t id)
{
	size_t b = (size_t)(id * 0x9E3779B97F4A7C15ULL >> 50) & (WTAB_SIZE - 1);
	for (waiter **pp = &s->wtab[b]; *pp; pp = &(*pp)->hnext) {
		waiter *w = *pp;
		if (w->id != id)
			continue;
		*pp = w->hnext;
		w->prev->next = w->next;
		w->next->prev = w->prev;
		s->nwaiters--;
		return w;
	}
	return NULL;
}

/* ---- reads ---- */
static void read_dispatch(ms_server *s, read_req *r)
{
	ms_queue_push(s->read_q, r);
}

static void read_fail(read_req *r, int code)
{
	r->done(r->arg, code, NULL, NULL);
	if (r->range)
		protobuf_c_message_free_unpacked(&r->range->base, &ms_pb_allocator);
	ms_free(r);
}

static void start_read_round(ms_server *s)
{
	if (s->read_round_id || !s->reads_queued || !s->leader)
		return;
	s->read_round_id = ++s->next_read_round;
	s->reads_inflight = s->reads_queued;
	s->reads_queued = NULL;
	int rc = raft_node_read_index(s->node, s->read_round_id);
	if (rc) {
		read_req *r = s->reads_inflight;
		s->reads_inflight = NULL;
		s->read_round_id = 0;
		while (r) {
			read_req *next = r->next;
			read_fail(r, rc == MS_ENOT_LEADER ? MS_ENO_LEADER : rc);
			r = next;
		}
	}
}

static void release_applied_reads(ms_server *s)
{
	uint64_t applied = atomic_load(&s->applied_index);
	for (read_req **pp = &s->reads_wait_apply; *pp;) {
		read_req *r = *pp;
		if (r->index <= applied) {
			*pp = r->next;
			if (r->kind == READ_BARRIER) {
				r->done(r->arg, 0, NULL, NULL);
				ms_free(r);
			} else {
				read_dispatch(s, r);
			}
		} else {
			pp = &r->next;
		}
	}
}

static void on_read(void *ud, uint64_t read_id, uint64_t index)
{
	ms_server *s = ud;
	if (read_id != s->read_round_id)
		return; /* a round we gave up on */
	read_req *r = s->reads_inflight;
	s->reads_inflight = NULL;
	s->read_round_id = 0;
	while (r) {
		read_req *next = r->next;
		r->index = index;
		r->next = s->reads_wait_apply;
		s->reads_wait_apply = r;
		r = next;
	}
	release_applied_reads(s);
	start_read_round(s);
}

static void *reader_main(void *arg)
{
	ms_server *s = arg;
	for (;;) {
		ms_queue_wait(s->read_q);
		read_req *r;
		while ((r = ms_queue_pop(s->read_q))) {
			if (r == (read_req *)s) {
				ms_queue_kick(s->read_q); /* the other readers' sentinels */
				return NULL;
			}
			ms_queue_kick(s->read_q);
			memset(&r->err, 0, sizeof r->err);
			if (r->kind == READ_RANGE) {
				Etcdserverpb__RangeResponse *resp = NULL;
				r->code = engine_range(s->eng, r->range, &resp, &r->err);
				r->resp = resp ? &resp->base : NULL;
			} else if (r->kind == READ_COMPACT_WAIT) {
				r->code = engine_compact_wait(s->eng, r->rev);
			} else if (r->kind == READ_DEFRAG) {
				MS_NOTICE("etcdserver", "starting to defragment the storage backend...");
				r->code = engine_defrag(s->eng, &r->err);
				if (r->code == 0) {
					Etcdserverpb__DefragmentResponse *resp = ms_malloc(sizeof *resp);
					MS_ASSERT(resp != NULL);
					etcdserverpb__defragment_response__init(resp);
					r->resp = &resp->base;
					MS_NOTICE("etcdserver", "finished defragmenting the storage backend");
				}
			} else if (r->kind == READ_HASHKV) {
				uint32_t hash;
				int64_t hrev, crev;
				r->code = engine_hash_kv(s->eng, r->rev, &hash, &hrev, &crev, &r->err);
				if (r->code == 0) {
					Etcdserverpb__HashKVResponse *resp = ms_malloc(sizeof *resp);
					Etcdserverpb__ResponseHeader *h = ms_malloc(sizeof *h);
					MS_ASSERT(resp && h);
					etcdserverpb__hash_kvresponse__init(resp);
					etcdserverpb__response_header__init(h);
					h->revision = hrev;
					resp->header = h;
					resp->hash = hash;
					resp->compact_revision = crev ? crev : -1;
					r->resp = &resp->base;
				}
			}
			ms_queue_push(s->read_done_q, r);
		}
	}
}

static void on_read_done(evutil_socket_t fd, short what, void *arg)
{
	ms_server *s = arg;
	ms_queue_ack(s->read_done_q);
	read_req *r;
	while ((r = ms_queue_pop(s->read_done_q))) {
		if (r->resp)
			ms_server_fill_resp_header(s, r->resp);
		r->done(r->arg, r->code, r->resp, r->code ? r->err.msg : NULL);
		if (r->range)
			protobuf_c_message_free_unpacked(&r->range->base, &ms_pb_allocator);
		ms_free(r);
	}
}

/* ---- deadlines ---- */
static void finish_moves(ms_server *s, int64_t now, int stop_code);
static void flush_pending(ms_server *s);
static void propose_publish(ms_server *s);
static void propose_cluster_version(ms_server *s);
static void fail_expired_reads(read_req **list, int64_t now)
{
	for (read_req **pp = list; *pp;) {
		read_req *r = *pp;
		if (r->deadline && r->deadline <= now) {
			*pp = r->next;
			read_fail(r, MS_ETIMEOUT);
		} else {
			pp = &r->next;
		}
	}
}

static void on_peers_gone(evutil_socket_t fd, short what, void *arg);

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	ms_server *s = arg;
	int64_t now = ms_now_mono_ns();
	for (waiter *w = s->whead.next; w != &s->whead;) {
		waiter *next = w->next;
		if (w->deadline <= now) {
			ms_server_waiter_take(s, w->id);
			w->done(w->arg, MS_ETIMEOUT, NULL, NULL);
			ms_free(w);
		}
		w = next;
	}
	fail_expired_reads(&s->reads_queued, now);
	fail_expired_reads(&s->reads_inflight, now);
	fail_expired_reads(&s->reads_wait_apply, now);
	finish_moves(s, now, 0);
	ms_server_peer_sweep(s, now);
	if (s->pending_head)
		flush_pending(s);
	/* publishing is retried until it commits: a proposal can be dropped
	 * on the way to the leader (its connection not up yet) */
	propose_publish(s);
	if (atomic_load(&s->published))
		propose_cluster_version(s);
}

static int64_t default_deadline(const ms_server *s)
{
	/* etcd: 5 s plus two election timeouts */
	return ms_now_mono_ns() + (5000 + 2 * (int64_t)s->cfg.election_ms) * 1000000;
}

/* ---- raft callbacks (loop) ---- */
static void flush_pending(ms_server *s);
static void on_publish_done(void *arg, int code, ProtobufCMessage *resp, const char *msg);

static void propose_publish(ms_server *s)
{
	if (atomic_load(&s->published) || s->publish_inflight || !s->leader)
		return;
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	Msinternal__PublishRequest pub = MSINTERNAL__PUBLISH_REQUEST__INIT;
	Msinternal__Attributes attr = MSINTERNAL__ATTRIBUTES__INIT;
	attr.name = (char *)s->cfg.name;
	attr.n_client_urls = s->cfg.nclient_urls;
	attr.client_urls = s->cfg.client_urls;
	pub.member_id = s->id;
	pub.attributes = &attr;
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUBLISH;
	req.publish = &pub;
	if (ms_server_propose(s, &req, 0, on_publish_done, s) == 0)
		s->publish_inflight = true;
}

static void on_version_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	ms_server *s = arg;
	s->version_inflight = false;
}

static void propose_cluster_version(ms_server *s)
{
	if (s->cluster_version[0] || s->version_inflight || s->leader != s->id)
		return;
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	Msinternal__ClusterVersionRequest cv = MSINTERNAL__CLUSTER_VERSION_REQUEST__INIT;
	cv.version = "3.4.0";
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_CLUSTER_VERSION;
	req.cluster_version = &cv;
	if (ms_server_propose(s, &req, 0, on_version_done, s) == 0)
		s->version_inflight = true;
}

static void on_publish_done(void *arg, int code, ProtobufCMessage *resp, const char *msg)
{
	ms_server *s = arg;
	s->publish_inflight = false;
	if (code)
		return; /* the sweep retries it until it commits, as etcd does (not at once: a leader
		         * refusing it, e.g. with too many requests, answers quickly) */
	if (s->cfg.on_ready)
		s->cfg.on_ready(s->cfg.ready_ud);
	propose_cluster_version(s);
}

static void on_leader(void *ud, uint64_t leader, uint64_t term)
{
	ms_server *s = ud;
	s->leader = leader;
	s->term = term;
	atomic_store(&s->atomic_leader, leader);
	atomic_store(&s->atomic_term, term);
	ms_lease_srv_on_leader(s, leader); /* only the leader expires leases */
	/* a ReadIndex round in flight may never be answered: start over */
	if (s->read_round_id) {
		read_req *r = s->reads_inflight;
		while (r && r->next)
			r = r->next;
		if (r) {
			r->next = s->reads_queued;
			s->reads_queued = s->reads_inflight;
		}
		s->reads_inflight = NULL;
		s->read_round_id = 0;
	}
	finish_moves(s, 0, 0);
	if (leader) {
		flush_pending(s);
		propose_publish(s);
		if (atomic_load(&s->published))
			propose_cluster_version(s);
		start_read_round(s);
	}
}

/* etcd's maxGapBetweenApplyAndCommitIndex: past this many committed but
 * unapplied entries new proposals are refused with "too many requests". */
#define MAX_APPLY_GAP 5000

static bool apply_lagging(ms_server *s)
{
	uint64_t ci = raft_node_commit(s->node), ai = atomic_load(&s->applied_index);
	return ci > ai + MAX_APPLY_GAP;
}

/* loop, leader: a follower forwarded a proposal. Only a request that
 * decodes, validates with this member's limits and was proposed by the
 * forwarding member itself enters the log; the forwarder's waiting call is
 * told why not (when the request has an id to answer). */
static int check_forward(void *ud, uint64_t from, bool conf_change, const uint8_t *data, size_t len)
{
	ms_server *s = ud;
	ms_err err = {0};
	int rc = 0;
	if (conf_change) {
		/* the context names the proposer; the bootstrap entries carry none
		 * and are never forwarded */
		Msinternal__MemberChangeContext *mc =
		    len ? msinternal__member_change_context__unpack(&ms_pb_allocator, len, data) : NULL;
		if (!mc || mc->proposer != from || !mc->member)
			rc = MS_EINVAL;
		else if (apply_lagging(s))
			rc = MS_ETOO_MANY_REQS;
		if (rc && mc && mc->proposer == from)
			ms_server_peer_answer(s, from, mc->id, rc, NULL);
		if (mc)
			protobuf_c_message_free_unpacked(&mc->base, &ms_pb_allocator);
		if (rc)
			MS_WARN("etcdserver", "refused a membership change forwarded by %llx (%s)",
			        (unsigned long long)from, ms_strerror(rc));
		return rc;
	}
	Msinternal__InternalRequest *req = NULL;
	rc = ms_request_decode(data, len, &req, &err);
	if (rc == 0 && req->proposer != from)
		rc = ms_err_set(&err, MS_EINVAL, "proposer %llx is not the forwarding member",
		                (unsigned long long)req->proposer);
	if (rc == 0 && len > s->cfg.max_request_bytes)
		rc = ms_err_set(&err, MS_EREQ_TOO_LARGE, "etcdserver: request is too large");
	if (rc == 0)
		rc = ms_request_check(req, s->cfg.max_txn_ops, &err);
	if (rc == 0 && apply_lagging(s))
		rc = ms_err_set(&err, MS_ETOO_MANY_REQS, "etcdserver: too many requests");
	if (rc) {
		if (rc != MS_ETOO_MANY_REQS)
			MS_WARN("etcdserver", "refused a proposal forwarded by %llx: %s", (unsigned long long)from,
			        err.msg);
		if (req && req->proposer == from)
			ms_server_peer_answer(s, from, req->id, rc, NULL);
	}
	if (req)
		protobuf_c_message_free_unpacked(&req->base, &ms_pb_allocator);
	return rc;
}

static void on_applied(void *ud, uint64_t index)
{
	ms_server *s = ud;
	atomic_store(&s->applied_index, index);
	release_applied_reads(s);
}

/* apply thread: the engine's writes are not fsynced one by one (the raft
 * log is the durable record); before the log is compacted they must be. */
static int sync_engine(void *ud)
{
	ms_server *s = ud;
	ms_err err = {0};
	int rc = engine_sync(s->eng, &err);
	if (rc)
		MS_ERROR("etcdserver", "cannot sync the store: %s", err.msg);
	return rc;
}

/* loop: a follower behind our compacted log gets a checkpoint of the store */
static int make_snapshot(void *ud, const char *dir)
{
	ms_server *s = ud;
	ms_err err = {0};
	int rc = engine_checkpoint(s->eng, dir, &err);
	if (rc)
		MS_ERROR("etcdserver", "cannot make a snapshot: %s", err.msg);
	return rc;
}

/* apply thread: the leader's snapshot replaces the store; this member's
 * watchers then catch up on what it covers from the new store's history. */
static int install_snapshot(void *ud, const char *dir, uint64_t *applied)
{
	ms_server *s = ud;
	ms_err err = {0};
	int rc = engine_install(s->eng, dir, &err);
	if (rc == 0)
		rc = ms_members_after_install(s, &err);
	if (rc == 0)
		rc = ms_lease_srv_reload(s, &err);
	if (rc == 0)
		rc = ms_corrupt_reload(s, &err);
	if (rc) {
		MS_ERROR("etcdserver", "cannot install the snapshot: %s", err.msg);
		return rc;
	}
	*applied = engine_consistent_index(s->eng);
	ms_watch_srv_on_install(s, engine_current_rev(s->eng));
	MS_INFO("etcdserver", "applied snapshot: store at revision %lld, index %llu",
	        (long long)engine_current_rev(s->eng), (unsigned long long)*applied);
	/* the loop re-reads the member list for the transport */
	apply_result *r = ms_malloc(sizeof *r + 1);
	MS_ASSERT(r != NULL);
	r->id = APPLY_NOTE_MEMBERS;
	r->code = 0;
	r->resp = NULL;
	r->msg[0] = 0;
	ms_queue_push(s->results_q, r);
	return 0;
}

/* ---- life cycle ---- */
int ms_server_new(struct event_base *base, const ms_server_config *cfg, ms_server **out, ms_err *err)
{
	int rc;
	ms_server *s = ms_calloc(1, sizeof *s);
	if (!s)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	s->base = base;
	s->cfg = *cfg;
	if (!s->cfg.election_ms)
		s->cfg.election_ms = 1000;
	if (!s->cfg.heartbeat_ms)
		s->cfg.heartbeat_ms = 100;
	pthread_mutex_init(&s->members_mu, NULL);
	s->whead.next = s->whead.prev = &s->whead;
	s->pending_tail = &s->pending_head;
	s->wtab = ms_calloc(WTAB_SIZE, sizeof *s->wtab);
	if (!s->wtab) {
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
		goto fail;
	}
	/* proposal ids: unique across restarts of this member */
	s->next_req_id = (uint64_t)(ms_now_wall_ns() / 1000000) << 20;

	bool fresh = false;
	if ((rc = check_data_dir(cfg->data_dir, &fresh, err)))
		goto fail;
	char *msdir;
	if ((rc = path_join(&msdir, cfg->data_dir, "metastore"))) {
		ms_err_set(err, rc, "out of memory");
		goto fail;
	}
	rc = path_join(&s->kv_dir, msdir, "kv");
	if (!rc) {
		if (cfg->wal_dir && *cfg->wal_dir)
			rc = path_join(&s->raft_dir, cfg->wal_dir, "raft");
		else
			rc = path_join(&s->raft_dir, msdir, "raft");
	}
	if (!rc && fresh)
		rc = ms_mkdir_p(msdir, err);
	if (!rc && fresh && cfg->wal_dir && *cfg->wal_dir)
		rc = ms_mkdir_p(cfg->wal_dir, err);
	ms_free(msdir);
	if (rc)
		goto fail;

	/* a member whose raft log does not exist yet is new (fresh directory,
	 * or a store written by metastore-migrate) */
	struct stat st;
	bool new_member = stat(s->raft_dir, &st) != 0;
	if (!new_member && stat(s->kv_dir, &st) != 0) {
		rc = ms_err_set(err, MS_ECORRUPT, "data directory %s has a raft log but no key-value store (%s)",
		                cfg->data_dir, s->kv_dir);
		goto fail;
	}
	engine_opts eo = {
	    .create_if_missing = new_member, .max_txn_ops = cfg->max_txn_ops, .quota_bytes = cfg->quota_backend_bytes};
	if ((rc = engine_open(s->kv_dir, &eo, &s->eng, err)))
		goto fail;
	/* the apply thread's results, the watch feed and the raft node's applied
	 * notes share one wake-up fd: one syscall and one loop wake per batch */
	if ((rc = ms_queue_new(8192, &s->results_q))) {
		ms_err_set(err, rc, "cannot create queues");
		goto fail;
	}
	if ((rc = ms_lease_srv_init(s, err)) || (rc = ms_watch_srv_init(s, err)) || (rc = ms_corrupt_init(s, err)))
		goto fail;

	if (new_member && !cfg->initial_cluster_new) {
		if ((rc = ms_members_join(s, err)))
			goto fail;
	} else if (new_member) {
		if ((rc = check_migrated(cfg, err)) || (rc = ms_members_bootstrap(s, err)))
			goto fail;
		if (!s->id) {
			rc = ms_err_set(err, MS_EINVAL,
			                "couldn't find local name \"%s\" in the initial cluster configuration",
			                cfg->name);
			goto fail;
		}
	}
	if ((rc = ms_members_load(s, err)))
		goto fail;
	for (size_t i = 0; i < s->members->n_members; i++)
		if (s->members->members[i]->id == s->id)
			atomic_store(&s->is_learner, s->members->members[i]->islearner);
	if (s->cluster_version[0])
		MS_INFO("etcdserver/api", "enabled capabilities for version %.3s", s->cluster_version);
	uint64_t *voters = ms_calloc(s->members->n_members, sizeof *voters);
	if (!voters) {
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
		goto fail;
	}
	size_t nv = 0;
	/* a joining member starts with no configuration: it learns it from the
	 * leader's log */
	for (size_t i = 0; i < s->members->n_members && cfg->initial_cluster_new; i++)
		if (!s->members->members[i]->islearner)
			voters[nv++] = s->members->members[i]->id;
	atomic_store(&s->applied_index, engine_consistent_index(s->eng));
	raft_node_peer *peers = ms_calloc(s->members->n_members, sizeof *peers);
	char *snap_dir = NULL;
	if (!peers || path_join(&snap_dir, cfg->data_dir, "metastore/snap")) {
		ms_free(voters);
		ms_free(peers);
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = ms_mkdir_p(snap_dir, err))) {
		ms_free(voters);
		ms_free(peers);
		ms_free(snap_dir);
		goto fail;
	}
	size_t npeers = 0;
	s->peer_ids = ms_calloc(s->members->n_members + 1, sizeof *s->peer_ids);
	if (!s->peer_ids) {
		ms_free(voters);
		ms_free(peers);
		ms_free(snap_dir);
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < s->members->n_members; i++) {
		Etcdserverpb__Member *m = s->members->members[i];
		if (m->id != s->id) {
			s->peer_ids[npeers] = m->id;
			peers[npeers++] = (raft_node_peer){m->id, m->peerurls, m->n_peerurls};
		}
	}
	s->n_peer_ids = npeers;
	raft_node_config rc_cfg = {
	    .id = s->id,
	    .cluster_id = s->cluster_id,
	    .listen_urls = cfg->listen_peer_urls,
	    .nlisten_urls = cfg->nlisten_peer_urls,
	    .peer_tls = cfg->peer_tls,
	    .peers = peers,
	    .npeers = npeers,
	    .snap_dir = snap_dir,
	    .log_dir = s->raft_dir,
	    .create = new_member,
	    .voters = voters,
	    .nvoters = nv,
	    .applied = engine_consistent_index(s->eng),
	    .tick_ms = s->cfg.heartbeat_ms,
	    .election_ticks = s->cfg.election_ms / s->cfg.heartbeat_ms,
	    .base = base,
	    .snapshot_count = s->cfg.snapshot_count,
	    .applied_wake = s->results_q,
	    .cb = {.apply = ms_server_apply,
	           .sync = sync_engine,
	           .make_snapshot = make_snapshot,
	           .install = install_snapshot,
	           .on_applied = on_applied,
	           .on_read = on_read,
	           .on_leader = on_leader,
	           .on_join = ms_members_on_join,
	           .check_forward = check_forward,
	           .on_peer = ms_server_on_peer},
	    .ud = s,
	};
	rc = raft_node_new(&rc_cfg, &s->node, err);
	ms_free(voters);
	ms_free(peers);
	ms_free(snap_dir);
	if (rc)
		goto fail;

	if ((rc = ms_queue_new(8192, &s->read_q)) || (rc = ms_queue_new(8192, &s->read_done_q))) {
		ms_err_set(err, rc, "cannot create queues");
		goto fail;
	}
	*out = s;
	return 0;
fail:
	ms_server_free(s);
	return rc;
}

int ms_server_start(ms_server *s, ms_err *err)
{
	s->results_ev = event_new(s->base, ms_queue_fd(s->results_q), EV_READ | EV_PERSIST, ms_server_results_cb, s);
	s->read_done_ev = event_new(s->base, ms_queue_fd(s->read_done_q), EV_READ | EV_PERSIST, on_read_done, s);
	s->sweep_ev = event_new(s->base, -1, EV_PERSIST, on_sweep, s);
	s->gone_ev = evtimer_new(s->base, on_peers_gone, s);
	if (!s->results_ev || !s->read_done_ev || !s->sweep_ev || !s->gone_ev)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	struct timeval tv = {0, 100000};
	event_add(s->results_ev, NULL);
	event_add(s->read_done_ev, NULL);
	event_add(s->sweep_ev, &tv);

	s->nreaders = s->cfg.reader_threads > 0 ? s->cfg.reader_threads : 2;
	s->readers = ms_calloc((size_t)s->nreaders, sizeof *s->readers);
	if (!s->readers)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	for (int i = 0; i < s->nreaders; i++)
		if (pthread_create(&s->readers[i], NULL, reader_main, s) != 0) {
			s->nreaders = i;
			return ms_err_set(err, MS_EIO, "cannot start reader threads");
		} else {
			pthread_setname_np(s->readers[i], "ms-reader");
		}
	int lwrc;
	if ((lwrc = ms_lease_srv_start(s, err)) || (lwrc = ms_watch_srv_start(s, err)) ||
	    (lwrc = ms_corrupt_start(s, err)))
		return lwrc;
	return raft_node_start(s->node, err);
}

static void fail_reads(read_req *r)
{
	while (r) {
		read_req *next = r->next;
		read_fail(r, MS_ESTOPPED);
		r = next;
	}
}

void ms_server_free(ms_server *s)
{
	if (!s)
		return;
	/* stop the threads that could still post results, then fail what waits */
	raft_node_free(s->node);
	s->node = NULL;
	for (int i = 0; i < s->nreaders; i++)
		ms_queue_push(s->read_q, s);
	for (int i = 0; i < s->nreaders; i++)
		pthread_join(s->readers[i], NULL);
	ms_free(s->readers);
	if (s->results_q)
		ms_server_results_cb(-1, 0, s);
	if (s->read_done_q)
		on_read_done(-1, 0, s);
	if (s->read_q) {
		read_req *r;
		while ((r = ms_queue_pop(s->read_q)))
			if (r != (read_req *)s)
				read_fail(r, MS_ESTOPPED);
	}
	while (s->pending_head) {
		pending_prop *p = s->pending_head;
		s->pending_head = p->next;
		ms_free(p);
	}
	finish_moves(s, 0, MS_ESTOPPED);
	ms_server_peer_sweep(s, -1);
	fail_reads(s->reads_queued);
	fail_reads(s->reads_inflight);
	fail_reads(s->reads_wait_apply);
	if (s->wtab) {
		while (s->whead.next != &s->whead) {
			waiter *w = s->whead.next;
			ms_server_waiter_take(s, w->id);
			w->done(w->arg, MS_ESTOPPED, NULL, NULL);
			ms_free(w);
		}
	}
	if (s->results_ev)
		event_free(s->results_ev);
	if (s->read_done_ev)
		event_free(s->read_done_ev);
	if (s->sweep_ev)
		event_free(s->sweep_ev);
	if (s->gone_ev)
		event_free(s->gone_ev);
	ms_free(s->peer_ids);
	ms_free(s->gone_ids);
	ms_queue_del(s->results_q);
	ms_queue_del(s->read_q);
	ms_queue_del(s->read_done_q);
	ms_watch_srv_free(s); /* the apply thread is stopped: nothing feeds them now */
	ms_lease_srv_free(s);
	ms_corrupt_free(s);
	engine_close(s->eng);
	if (s->members)
		protobuf_c_message_free_unpacked(&s->members->base, &ms_pb_allocator);
	pthread_mutex_destroy(&s->members_mu);
	ms_free(s->wtab);
	ms_free(s->kv_dir);
	ms_free(s->raft_dir);
	ms_free(s);
}

/* ---- requests ---- */
/* Proposals made while no leader is known wait (until their deadline) and
 * go out when one is elected, as etcd's do. */
static void pending_push(ms_server *s, pending_prop *p)
{
	s->pending_bytes += p->len;
	p->next = NULL;
	*s->pending_tail = p;
	s->pending_tail = &p->next;
}

/* Proposals wait here while no leader is known, or when the way to the
 * leader is down (a forward was dropped: MS_EAGAIN); the sweep and leader
 * changes retry them until their caller's deadline, as etcd's do. */
static void flush_pending(ms_server *s)
{
	pending_prop *list = s->pending_head;
	s->pending_head = NULL;
	s->pending_tail = &s->pending_head;
	s->pending_bytes = 0; /* pending_push counts what goes back */
	while (list) {
		pending_prop *p = list;
		list = p->next;
		/* skip proposals whose caller already timed out */
		size_t b = (size_t)(p->id * 0x9E3779B97F4A7C15ULL >> 50) & (WTAB_SIZE - 1);
		bool live = false;
		for (waiter *w = s->wtab[b]; w && !live; w = w->hnext)
			live = w->id == p->id;
		int rc = !live ? 0 : !s->leader ? MS_EAGAIN : raft_node_propose(s->node, p->data, p->len);
		if (rc == MS_EAGAIN || rc == MS_ENO_LEADER) {
			pending_push(s, p);
			continue;
		}
		if (rc) {
			waiter *w = ms_server_waiter_take(s, p->id);
			if (w) {
				w->done(w->arg, rc, NULL, NULL);
				ms_free(w);
			}
		}
		ms_free(p);
	}
}

int ms_server_propose(ms_server *s, Msinternal__InternalRequest *req, int64_t deadline, ms_done_fn done, void *arg)
{
	/* what every entry of the log must be (the API checked most of it; a
	 * request built inside the server is held to the same rule) */
	int crc = ms_request_check(req, s->cfg.max_txn_ops, NULL);
	if (crc)
		return crc;
	if (apply_lagging(s) || s->nwaiters >= MS_SERVER_MAX_WAITERS)
		return MS_ETOO_MANY_REQS;
	req->id = ++s->next_req_id;
	req->proposer = s->id;
	size_t len = msinternal__internal_request__get_packed_size(req);
	if (len > s->cfg.max_request_bytes)
		return MS_EREQ_TOO_LARGE;
	uint8_t stackbuf[4096];
	uint8_t *buf = len <= sizeof stackbuf ? stackbuf : ms_malloc(len);
	if (!buf)
		return MS_ENOMEM;
	msinternal__internal_request__pack(req, buf);
	waiter *w = ms_malloc(sizeof *w);
	if (!w) {
		if (buf != stackbuf)
			ms_free(buf);
		return MS_ENOMEM;
	}
	*w = (waiter){.id = req->id, .deadline = deadline ? deadline : default_deadline(s), .done = done, .arg = arg};
	/* registered before proposing: a one-member apply can be quick */
	waiter_insert(s, w);
	int rc = s->leader ? raft_node_propose(s->node, buf, len) : MS_ENO_LEADER;
	if ((rc == MS_ENO_LEADER || rc == MS_EAGAIN) && s->pending_bytes + len > MS_SERVER_MAX_PENDING_BYTES) {
		rc = MS_ETOO_MANY_REQS; /* no leader for a while: the backlog is bounded */
	} else if (rc == MS_ENO_LEADER || rc == MS_EAGAIN) {
		pending_prop *p = ms_malloc(sizeof *p + len);
		if (p) {
			p->id = req->id;
			p->len = len;
			memcpy(p->data, buf, len);
			pending_push(s, p);
			rc = 0;
		} else {
			rc = MS_ENOMEM;
		}
	}
	if (buf != stackbuf)
		ms_free(buf);
	if (rc) {
		ms_server_waiter_take(s, w->id);
		ms_free(w);
	}
	return rc;
}

int ms_server_add_waiter(ms_server *s, uint64_t id, int64_t deadline, ms_done_fn done, void *arg)
{
	waiter *w = ms_malloc(sizeof *w);
	if (!w)
		return MS_ENOMEM;
	*w = (waiter){.id = id, .deadline = deadline ? deadline : default_deadline(s), .done = done, .arg = arg};
	waiter_insert(s, w);
	return 0;
}

void ms_server_drop_waiter(ms_server *s, uint64_t id)
{
	ms_free(ms_server_waiter_take(s, id));
}

#define PEER_GRACE_S 5

static bool id_in(const uint64_t *ids, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* loop, PEER_GRACE_S after removals: the removed members leave the
 * transport (their frames are refused from now on), unless re-added. */
static void on_peers_gone(evutil_socket_t fd, short what, void *arg)
{
	ms_server *s = arg;
	for (size_t i = 0; i < s->n_gone_ids; i++)
		if (!id_in(s->peer_ids, s->n_peer_ids, s->gone_ids[i]))
			raft_node_remove_peer(s->node, s->gone_ids[i]);
	s->n_gone_ids = 0;
}

/* loop: the transport's peers follow the applied member list; a member
 * removed from the cluster stops, as etcd does. */
void ms_server_members_changed(ms_server *s)
{
	pthread_mutex_lock(&s->members_mu);
	bool self = false;
	size_t n = s->members->n_members;
	uint64_t *ids = ms_calloc(n + 1, sizeof *ids),
	         *gone = ms_realloc(s->gone_ids, (s->n_gone_ids + s->n_peer_ids + 1) * sizeof *gone);
	if (gone)
		s->gone_ids = gone;
	size_t nids = 0;
	for (size_t i = 0; i < n; i++) {
		Etcdserverpb__Member *m = s->members->members[i];
		if (m->id == s->id) {
			self = true;
			atomic_store(&s->is_learner, m->islearner);
		} else {
			raft_node_set_peer(s->node, m->id, m->peerurls, m->n_peerurls);
			if (ids)
				ids[nids++] = m->id;
		}
	}
	pthread_mutex_unlock(&s->members_mu);
	if (ids && gone) {
		for (size_t i = 0; i < s->n_peer_ids; i++)
			if (!id_in(ids, nids, s->peer_ids[i]) && !id_in(s->gone_ids, s->n_gone_ids, s->peer_ids[i]))
				s->gone_ids[s->n_gone_ids++] = s->peer_ids[i];
		ms_free(s->peer_ids);
		s->peer_ids = ids;
		s->n_peer_ids = nids;
		if (s->n_gone_ids && s->gone_ev) {
			struct timeval tv = {PEER_GRACE_S, 0};
			evtimer_add(s->gone_ev, &tv);
		}
	} else {
		ms_free(ids); /* out of memory: removed members stay peers until the next change */
	}
	if (!self) {
		MS_WARN("etcdserver", "the member has been permanently removed from the cluster");
		MS_WARN("etcdserver", "the data-dir used by this member must be removed.");
		event_base_loopbreak(s->base);
	}
}

static int queue_read(ms_server *s, read_req *r, bool linearizable)
{
	if (!linearizable) {
		read_dispatch(s, r);
		return 0;
	}
	/* with no leader the read waits (until its deadline) for one */
	r->next = s->reads_queued;
	s->reads_queued = r;
	start_read_round(s);
	return 0;
}

int ms_server_range(ms_server *s, Etcdserverpb__RangeRequest *rr, int64_t deadline, ms_done_fn done, void *arg)
{
	read_req *r = ms_calloc(1, sizeof *r);
	if (!r)
		return MS_ENOMEM;
	r->kind = READ_RANGE;
	r->range = rr;
	r->deadline = deadline ? deadline : default_deadline(s);
	r->done = done;
	r->arg = arg;
	int rc = queue_read(s, r, !rr->serializable);
	if (rc)
		ms_free(r); /* the caller still owns rr on failure */
	return rc;
}

int ms_server_hash_kv(ms_server *s, int64_t rev, ms_done_fn done, void *arg)
{
	read_req *r = ms_calloc(1, sizeof *r);
	if (!r)
		return MS_ENOMEM;
	r->kind = READ_HASHKV;
	r->rev = rev;
	r->deadline = default_deadline(s);
	r->done = done;
	r->arg = arg;
	read_dispatch(s, r);
	return 0;
}

int ms_server_compact_wait(ms_server *s, int64_t rev, ms_done_fn done, void *arg)
{
	read_req *r = ms_calloc(1, sizeof *r);
	if (!r)
		return MS_ENOMEM;
	r->kind = READ_COMPACT_WAIT;
	r->rev = rev;
	r->done = done;
	r->arg = arg;
	read_dispatch(s, r);
	return 0;
}

int ms_server_defragment(ms_server *s, ms_done_fn done, void *arg)
{
	read_req *r = ms_calloc(1, sizeof *r);
	if (!r)
		return MS_ENOMEM;
	r->kind = READ_DEFRAG;
	r->done = done;
	r->arg = arg;
	read_dispatch(s, r);
	return 0;
}

int ms_server_move_leader(ms_server *s, uint64_t target, int64_t deadline, ms_done_fn done, void *arg)
{
	if (s->leader != s->id)
		return MS_ENOT_LEADER;
	if (target == s->id) {
		done(arg, 0, NULL, NULL); /* already leads */
		return 0;
	}
	move_wait *m = ms_malloc(sizeof *m);
	if (!m)
		return MS_ENOMEM;
	int rc = raft_node_transfer_leader(s->node, target);
	if (rc) {
		ms_free(m);
		return rc == MS_EINVAL ? MS_EBAD_TRANSFEREE : rc;
	}
	*m = (move_wait){target, deadline ? deadline : default_deadline(s), done, arg, s->moves};
	s->moves = m;
	return 0;
}

/* Completes MoveLeader calls: the transferee leads (0), or their deadline
 * passed (now >= deadline), or the server stops. */
static void finish_moves(ms_server *s, int64_t now, int stop_code)
{
	for (move_wait **pp = &s->moves; *pp;) {
		move_wait *m = *pp;
		int code = 1;
		if (stop_code)
			code = stop_code;
		else if (s->leader == m->target)
			code = 0;
		else if (now >= m->deadline)
			code = MS_ETIMEOUT_TRANSFER;
		if (code == 1) {
			pp = &m->next;
			continue;
		}
		*pp = m->next;
		m->done(m->arg, code, NULL, NULL);
		ms_free(m);
	}
}

int ms_server_read_barrier(ms_server *s, int64_t deadline, ms_done_fn done, void *arg)
{
	read_req *r = ms_calloc(1, sizeof *r);
	if (!r)
		return MS_ENOMEM;
	r->kind = READ_BARRIER;
	r->deadline = deadline ? deadline : default_deadline(s);
	r->done = done;
	r->arg = arg;
	int rc = queue_read(s, r, true);
	if (rc)
		ms_free(r);
	return rc;
}

/* ---- identity and status ---- */
uint64_t ms_server_id(const ms_server *s)
{
	return s->id;
}
bool ms_server_is_learner(const ms_server *s)
{
	return atomic_load(&((ms_server *)s)->is_learner);
}
uint64_t ms_server_cluster_id(const ms_server *s)
{
	return s->cluster_id;
}
uint64_t ms_server_term(const ms_server *s)
{
	return s->term;
}
uint64_t ms_server_leader(const ms_server *s)
{
	return s->leader;
}
size_t ms_server_max_request_bytes(const ms_server *s)
{
	return s->cfg.max_request_bytes;
}

void ms_server_fill_header(const ms_server *s, Etcdserverpb__ResponseHeader *h, int64_t rev)
{
	h->cluster_id = s->cluster_id;
	h->member_id = s->id;
	h->raft_term = s->term;
	if (rev >= 0)
		h->revision = rev;
}

int ms_server_fill_resp_header(const ms_server *s, ProtobufCMessage *resp)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(resp->descriptor, "header");
	if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
		return MS_EINVAL;
	Etcdserverpb__ResponseHeader **hp = (Etcdserverpb__ResponseHeader **)((char *)resp + f->offset);
	if (!*hp) {
		*hp = ms_malloc(sizeof **hp);
		if (!*hp)
			return MS_ENOMEM;
		etcdserverpb__response_header__init(*hp);
	}
	ms_server_fill_header(s, *hp, -1);
	return 0;
}

void ms_server_get_status(const ms_server *s, ms_server_status *st)
{
	memset(st, 0, sizeof *st);
	st->leader = s->leader;
	st->raft_term = s->term;
	st->raft_index = raft_node_commit(s->node);
	st->raft_applied_index = atomic_load(&((ms_server *)s)->applied_index);
	st->db_size = engine_db_size(s->eng);
	st->db_size_in_use = engine_db_size_in_use(s->eng);
	st->revision = engine_current_rev(s->eng);
	st->is_learner = ms_server_is_learner(s);
}
