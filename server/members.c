/* members.c — member and cluster IDs derived as etcd derives them, and the
 * member list kept in the engine's meta records.
 *
 * IDs: a member's ID is the first 8 bytes (big-endian) of SHA-1 over its
 * sorted peer URLs concatenated, then the cluster token; the cluster ID is
 * the same over the sorted member IDs (8 bytes big-endian each). So the same
 * flags give the same IDs as etcd 3.4. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

static uint64_t sha1_prefix(const uint8_t *data, size_t len)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	MS_ASSERT(EVP_Digest(data, len, md, &mdlen, EVP_sha1(), NULL) == 1);
	return ms_get_u64be(md);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}
static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

uint64_t ms_member_id(char **peer_urls, size_t n, const char *token)
{
	char **sorted = ms_malloc((n ? n : 1) * sizeof *sorted);
	MS_ASSERT(sorted != NULL);
	memcpy(sorted, peer_urls, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, cmp_str);
	size_t len = strlen(token);
	for (size_t i = 0; i < n; i++)
		len += strlen(sorted[i]);
	uint8_t *b = ms_malloc(len + 1), *p = b;
	MS_ASSERT(b != NULL);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(sorted[i]);
		memcpy(p, sorted[i], l);
		p += l;
	}
	memcpy(p, token, strlen(token));
	uint64_t id = sha1_prefix(b, len);
	ms_free(b);
	ms_free(sorted);
	return id;
}

uint64_t ms_cluster_id(const uint64_t *ids, size_t n)
{
	uint64_t *sorted = ms_malloc((n ? n : 1) * sizeof *sorted);
	uint8_t *b = ms_malloc((n ? n : 1) * 8);
	MS_ASSERT(sorted && b);
	memcpy(sorted, ids, n * sizeof *ids);
	qsort(sorted, n, sizeof *sorted, cmp_u64);
	for (size_t i = 0; i < n; i++)
		ms_put_u64be(b + 8 * i, sorted[i]);
	uint64_t id = sha1_prefix(b, 8 * n);
	ms_free(sorted);
	ms_free(b);
	return id;
}

uint8_t *ms_members_pack(const Etcdserverpb__MemberListResponse *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(&m->base);
	uint8_t *buf = ms_malloc(*len ? *len : 1);
	if (buf)
		protobuf_c_message_pack(&m->base, buf);
	return buf;
}

static int save_u64(engine_apply *a, const char *name, uint64_t v, ms_err *err)
{
	uint8_t b[8];
	ms_put_u64be(b, v);
	return engine_apply_meta_put(a, name, b, 8, err);
}

static int load_u64(engine *e, const char *name, uint64_t *v, ms_err *err)
{
	uint8_t *b;
	size_t len;
	int rc = engine_meta_get(e, name, &b, &len, err);
	if (rc)
		return rc;
	if (len != 8) {
		ms_free(b);
		return ms_err_set(err, MS_ECORRUPT, "meta record %s has %zu bytes, want 8", name, len);
	}
	*v = ms_get_u64be(b);
	ms_free(b);
	return 0;
}

/* New cluster: members from --initial-cluster, written to meta before the
 * first entry is applied (consistent index 0). */
int ms_members_bootstrap(ms_server *s, ms_err *err)
{
	const ms_server_config *c = &s->cfg;
	size_t n = c->ninitial_cluster;
	Etcdserverpb__Member *mem = ms_calloc(n, sizeof *mem);
	Etcdserverpb__Member **ptrs = ms_calloc(n, sizeof *ptrs);
	uint64_t *ids = ms_calloc(n, sizeof *ids);
	int rc = 0;
	if (!mem || !ptrs || !ids) {
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		etcdserverpb__member__init(&mem[i]);
		mem[i].id = ids[i] = ms_member_id(c->initial_cluster[i].peer_urls, c->initial_cluster[i].npeer_urls,
		                                  c->initial_cluster_token);
		mem[i].name = c->initial_cluster[i].name;
		mem[i].n_peerurls = c->initial_cluster[i].npeer_urls;
		mem[i].peerurls = c->initial_cluster[i].peer_urls;
		ptrs[i] = &mem[i];
		for (size_t j = 0; j < i; j++)
			if (ids[j] == ids[i]) {
				rc = ms_err_set(err, MS_EINVAL, "member count is unequal");
				goto out;
			}
		if (!strcmp(mem[i].name, c->name))
			s->id = mem[i].id;
	}
	s->cluster_id = ms_cluster_id(ids, n);
	Etcdserverpb__MemberListResponse list = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
	list.n_members = n;
	list.members = ptrs;
	size_t len;
	uint8_t *buf = ms_members_pack(&list, &len);
	if (!buf) {
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
		goto out;
	}
	engine_apply *a;
	if ((rc = engine_apply_begin(s->eng, NULL, NULL, &a, err)) == 0) {
		if ((rc = engine_apply_meta_put(a, "members", buf, len, err)) == 0 &&
		    (rc = save_u64(a, "cluster_id", s->cluster_id, err)) == 0 &&
		    (rc = save_u64(a, "local_member_id", s->id, err)) == 0)
			rc = engine_apply_commit(a, engine_consistent_index(s->eng), err);
		else
			engine_apply_abort(a);
	}
	ms_free(buf);
out:
	ms_free(mem);
	ms_free(ptrs);
	ms_free(ids);
	return rc;
}

/* A joining member (--initial-cluster-state existing): ask the running
 * members named in --initial-cluster for the cluster ID, this member's ID
 * (assigned by MemberAdd) and the member list, and write them to meta. */
int ms_members_join(ms_server *s, ms_err *err)
{
	const ms_server_config *c = &s->cfg;
	Etcdserverpb__Member me = ETCDSERVERPB__MEMBER__INIT;
	me.peerurls = c->peer_urls;
	me.n_peerurls = c->npeer_urls;
	size_t len = etcdserverpb__member__get_packed_size(&me);
	uint8_t *req = ms_malloc(len ? len : 1);
	if (!req)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	etcdserverpb__member__pack(&me, req);
	Etcdserverpb__MemberListResponse *l = NULL;
	ms_err jerr = {0};
	for (size_t i = 0; i < c->ninitial_cluster && !l; i++) {
		if (!strcmp(c->initial_cluster[i].name, c->name))
			continue;
		for (size_t j = 0; j < c->initial_cluster[i].npeer_urls && !l; j++) {
			uint8_t *resp;
			size_t rlen;
			if (raft_node_join(c->initial_cluster[i].peer_urls[j], c->peer_tls, req, len, &resp, &rlen,
			                   &jerr) != 0)
				continue;
			l = etcdserverpb__member_list_response__unpack(&ms_pb_allocator, rlen, resp);
			ms_free(resp);
		}
	}
	ms_free(req);
	if (!l)
		return ms_err_set(err, MS_EIO, "cannot fetch the cluster from the members in --initial-cluster (%s)",
		                  jerr.msg[0] ? jerr.msg : "no other member given");
	int rc = 0;
	if (!l->header || !l->header->member_id) {
		rc = ms_err_set(
		    err, MS_EINVAL,
		    "no member with peer URLs %s has been added to the cluster; run 'etcdctl member add' first",
		    c->npeer_urls ? c->peer_urls[0] : "");
		goto out;
	}
	s->id = l->header->member_id;
	s->cluster_id = l->header->cluster_id;
	size_t blen;
	uint8_t *buf = ms_members_pack(l, &blen);
	if (!buf) {
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
		goto out;
	}
	engine_apply *a;
	if ((rc = engine_apply_begin(s->eng, NULL, NULL, &a, err)) == 0) {
		if ((rc = engine_apply_meta_put(a, "members", buf, blen, err)) == 0 &&
		    (rc = save_u64(a, "cluster_id", s->cluster_id, err)) == 0 &&
		    (rc = save_u64(a, "local_member_id", s->id, err)) == 0)
			rc = engine_apply_commit(a, engine_consistent_index(s->eng), err);
		else
			engine_apply_abort(a);
	}
	ms_free(buf);
	MS_INFO("etcdserver", "joining cluster %llx as member %llx", (unsigned long long)s->cluster_id,
	        (unsigned long long)s->id);
out:
	protobuf_c_message_free_unpacked(&l->base, &ms_pb_allocator);
	return rc;
}

/* loop: answers a joining member: the member list, with the cluster ID and
 * the joiner's ID (0 when no member has its peer URLs) in the header. */
int ms_members_on_join(void *ud, const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len)
{
	ms_server *s = ud;
	Etcdserverpb__Member *me = etcdserverpb__member__unpack(&ms_pb_allocator, len, req);
	if (!me)
		return MS_EINVAL;
	Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
	h.cluster_id = s->cluster_id;
	pthread_mutex_lock(&s->members_mu);
	for (size_t i = 0; i < s->members->n_members && !h.member_id; i++) {
		Etcdserverpb__Member *m = s->members->members[i];
		for (size_t j = 0; j < m->n_peerurls; j++)
			for (size_t k = 0; k < me->n_peerurls; k++)
				if (!strcmp(m->peerurls[j], me->peerurls[k]))
					h.member_id = m->id;
	}
	Etcdserverpb__ResponseHeader *saved = s->members->header;
	s->members->header = &h;
	*resp = ms_members_pack(s->members, resp_len);
	s->members->header = saved;
	pthread_mutex_unlock(&s->members_mu);
	protobuf_c_message_free_unpacked(&me->base, &ms_pb_allocator);
	return *resp ? 0 : MS_ENOMEM;
}

/* Restart: this member's ID, the cluster ID and the member list from meta. */
int ms_members_load(ms_server *s, ms_err *err)
{
	int rc;
	if ((rc = load_u64(s->eng, "local_member_id", &s->id, err)) ||
	    (rc = load_u64(s->eng, "cluster_id", &s->cluster_id, err)))
		return rc == MS_ENOTFOUND ? ms_err_set(err, MS_ECORRUPT, "the store has no member record") : rc;
	uint8_t *buf;
	size_t len;
	if ((rc = engine_meta_get(s->eng, "members", &buf, &len, err)))
		return rc == MS_ENOTFOUND ? ms_err_set(err, MS_ECORRUPT, "the store has no member list") : rc;
	s->members = etcdserverpb__member_list_response__unpack(&ms_pb_allocator, len, buf);
	ms_free(buf);
	if (!s->members)
		return ms_err_set(err, MS_ECORRUPT, "the member list record does not decode");
	uint8_t *v;
	if (engine_meta_get(s->eng, "cluster_version", &v, &len, NULL) == 0) {
		snprintf(s->cluster_version, sizeof s->cluster_version, "%.*s", (int)len, (char *)v);
		ms_free(v);
	}
	return 0;
}

bool ms_members_apply_publish(ms_server *s, const Msinternal__PublishRequest *p)
{
	if (!p->attributes)
		return false;
	bool changed = false;
	pthread_mutex_lock(&s->members_mu);
	for (size_t i = 0; i < s->members->n_members; i++) {
		Etcdserverpb__Member *m = s->members->members[i];
		if (m->id != p->member_id)
			continue;
		char *name = ms_strdup(p->attributes->name ? p->attributes->name : "");
		char **urls = ms_calloc(p->attributes->n_client_urls + 1, sizeof *urls);
		MS_ASSERT(name && urls);
		for (size_t j = 0; j < p->attributes->n_client_urls; j++) {
			urls[j] = ms_strdup(p->attributes->client_urls[j]);
			MS_ASSERT(urls[j]);
		}
		/* an unpacked empty string is protobuf-c's static default */
		if (m->name != protobuf_c_empty_string)
			ms_free(m->name);
		for (size_t j = 0; j < m->n_clienturls; j++)
			ms_free(m->clienturls[j]);
		ms_free(m->clienturls);
		m->name = name;
		m->clienturls = urls;
		m->n_clienturls = p->attributes->n_client_urls;
		changed = true;
	}
	pthread_mutex_unlock(&s->members_mu);
	return changed;
}

int ms_server_members(ms_server *s, Etcdserverpb__Member ***out, size_t *n)
{
	pthread_mutex_lock(&s->members_mu);
	size_t len;
	uint8_t *buf = ms_members_pack(s->members, &len);
	pthread_mutex_unlock(&s->members_mu);
	if (!buf)
		return MS_ENOMEM;
	Etcdserverpb__MemberListResponse *copy = etcdserverpb__member_list_response__unpack(&ms_pb_allocator, len, buf);
	ms_free(buf);
	if (!copy)
		return MS_ENOMEM;
	*out = copy->members;
	*n = copy->n_members;
	copy->members = NULL;
	copy->n_members = 0;
	protobuf_c_message_free_unpacked(&copy->base, &ms_pb_allocator);
	return 0;
}

void ms_server_members_free(Etcdserverpb__Member **m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		protobuf_c_message_free_unpacked(&m[i]->base, &ms_pb_allocator);
	ms_free(m);
}

bool ms_members_has(ms_server *s, uint64_t id)
{
	bool found = false;
	pthread_mutex_lock(&s->members_mu);
	for (size_t i = 0; i < s->members->n_members && !found; i++)
		found = s->members->members[i]->id == id && !s->members->members[i]->islearner;
	pthread_mutex_unlock(&s->members_mu);
	return found;
}

/* ---- membership changes (loop: validate and propose; apply thread: apply) ---- */

static bool valid_peer_url(const char *u)
{
	const char *p;
	if (!strncmp(u, "http://", 7))
		p = u + 7;
	else if (!strncmp(u, "https://", 8))
		p = u + 8;
	else
		return false;
	const char *colon = strrchr(p, ':');
	if (!colon || colon == p)
		return false;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	return *end == 0 && port > 0 && port < 65536 && !strchr(p, '/');
}

static Etcdserverpb__Member *find_member(Etcdserverpb__MemberListResponse *l, uint64_t id, size_t *idx)
{
	for (size_t i = 0; i < l->n_members; i++)
		if (l->members[i]->id == id) {
			if (idx)
				*idx = i;
			return l->members[i];
		}
	return NULL;
}

/* True when a member other than except_id already uses one of urls. */
static bool peer_url_taken(Etcdserverpb__MemberListResponse *l, char **urls, size_t nurls, uint64_t except_id)
{
	for (size_t i = 0; i < l->n_members; i++) {
		Etcdserverpb__Member *m = l->members[i];
		if (m->id == except_id)
			continue;
		for (size_t j = 0; j < m->n_peerurls; j++)
			for (size_t k = 0; k < nurls; k++)
				if (!strcmp(m->peerurls[j], urls[k]))
					return true;
	}
	return false;
}

/* etcd's strict reconfiguration check for a new or promoted voter: the
 * started voters must still be a quorum of the grown cluster. */
static bool ready_for_voter(Etcdserverpb__MemberListResponse *l)
{
	size_t nmembers = 1, nstarted = 0;
	for (size_t i = 0; i < l->n_members; i++) {
		if (l->members[i]->islearner)
			continue;
		nmembers++;
		if (l->members[i]->name && l->members[i]->name[0])
			nstarted++;
	}
	if (nstarted == 1 && nmembers == 2)
		return true;
	return nstarted >= nmembers / 2 + 1;
}

static int propose_member_change(ms_server *s, raft_node_cc_type type, const Etcdserverpb__Member *m, int64_t deadline,
                                 ms_done_fn done, void *arg)
{
	Msinternal__MemberChangeContext ctx = MSINTERNAL__MEMBER_CHANGE_CONTEXT__INIT;
	ctx.id = ++s->next_req_id;
	ctx.proposer = s->id;
	ctx.member = (Etcdserverpb__Member *)m;
	size_t len = msinternal__member_change_context__get_packed_size(&ctx);
	uint8_t *buf = ms_malloc(len ? len : 1);
	if (!buf)
		return MS_ENOMEM;
	msinternal__member_change_context__pack(&ctx, buf);
	int rc = ms_server_add_waiter(s, ctx.id, deadline, done, arg);
	if (rc == 0) {
		rc = raft_node_propose_conf_change(s->node, type, m->id, buf, len);
		if (rc)
			ms_server_drop_waiter(s, ctx.id);
	}
	ms_free(buf);
	return rc;
}

int ms_server_member_add(ms_server *s, char **urls, size_t nurls, bool learner, int64_t deadline, ms_done_fn done,
                         void *arg)
{
	if (nurls == 0)
		return MS_EMEMBER_BAD_URLS;
	for (size_t i = 0; i < nurls; i++)
		if (!valid_peer_url(urls[i]))
			return MS_EMEMBER_BAD_URLS;
	int rc = 0;
	pthread_mutex_lock(&s->members_mu);
	size_t nlearners = 0;
	for (size_t i = 0; i < s->members->n_members; i++)
		nlearners += s->members->members[i]->islearner;
	if (peer_url_taken(s->members, urls, nurls, 0))
		rc = MS_EPEER_URL_EXISTS;
	if (!rc && learner && nlearners >= 1)
		rc = MS_ETOO_MANY_LEARNERS;
	if (!rc && !learner && s->cfg.strict_reconfig_check && !ready_for_voter(s->members))
		rc = MS_ENOT_ENOUGH_STARTED;
	/* etcd: sorted peer URLs + token + the current Unix time */
	char token[512];
	snprintf(token, sizeof token, "%s%lld", s->cfg.initial_cluster_token,
	         (long long)(ms_now_wall_ns() / 1000000000));
	uint64_t id = ms_member_id(urls, nurls, token);
	if (!rc && find_member(s->members, id, NULL))
		rc = MS_EMEMBER_EXISTS;
	pthread_mutex_unlock(&s->members_mu);
	if (rc)
		return rc;
	Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
	m.id = id;
	m.name = "";
	m.peerurls = urls;
	m.n_peerurls = nurls;
	m.islearner = learner;
	return propose_member_change(s, learner ? RAFT_NODE_ADD_LEARNER : RAFT_NODE_ADD_VOTER, &m, deadline, done, arg);
}

int ms_server_member_remove(ms_server *s, uint64_t id, int64_t deadline, ms_done_fn done, void *arg)
{
	int rc = 0;
	pthread_mutex_lock(&s->members_mu);
	Etcdserverpb__Member *m = find_member(s->members, id, NULL);
	if (!m) {
		rc = MS_EMEMBER_NOT_FOUND;
	} else if (!m->islearner && s->cfg.strict_reconfig_check) {
		/* the voters left, counting those this member reaches, must be a quorum */
		size_t voters = 0, active = 0;
		for (size_t i = 0; i < s->members->n_members; i++) {
			Etcdserverpb__Member *v = s->members->members[i];
			if (v->islearner)
				continue;
			voters++;
			if (v->id != id && raft_node_peer_active(s->node, v->id))
				active++;
		}
		if (active < (voters - 1) / 2 + 1)
			rc = MS_EUNHEALTHY;
	}
	pthread_mutex_unlock(&s->members_mu);
	if (rc)
		return rc;
	Etcdserverpb__Member rm = ETCDSERVERPB__MEMBER__INIT;
	rm.id = id;
	return propose_member_change(s, RAFT_NODE_REMOVE, &rm, deadline, done, arg);
}

int ms_server_member_promote(ms_server *s, uint64_t id, int64_t deadline, ms_done_fn done, void *arg)
{
	int rc = 0;
	pthread_mutex_lock(&s->members_mu);
	Etcdserverpb__Member *m = find_member(s->members, id, NULL);
	if (!m)
		rc = MS_EMEMBER_NOT_FOUND;
	else if (!m->islearner)
		rc = MS_ENOT_LEARNER;
	else if (s->cfg.strict_reconfig_check && !ready_for_voter(s->members))
		rc = MS_ENOT_ENOUGH_STARTED;
	pthread_mutex_unlock(&s->members_mu);
	if (rc)
		return rc;
	/* etcd: a learner is ready when its log matches at least 90% of the
	 * leader's; checked where the progress is known, on the leader */
	uint64_t match, last;
	if (raft_node_peer_progress(s->node, id, &match, &last) && (double)match < (double)last * 0.9)
		return MS_ELEARNER_NOT_READY;
	Etcdserverpb__Member pm = ETCDSERVERPB__MEMBER__INIT;
	pm.id = id;
	return propose_member_change(s, RAFT_NODE_ADD_VOTER, &pm, deadline, done, arg);
}

int ms_server_member_update(ms_server *s, uint64_t id, char **urls, size_t nurls, int64_t deadline, ms_done_fn done,
                            void *arg)
{
	if (nurls == 0)
		return MS_EMEMBER_BAD_URLS;
	for (size_t i = 0; i < nurls; i++)
		if (!valid_peer_url(urls[i]))
			return MS_EMEMBER_BAD_URLS;
	int rc = 0;
	pthread_mutex_lock(&s->members_mu);
	if (!find_member(s->members, id, NULL))
		rc = MS_EMEMBER_NOT_FOUND;
	else if (peer_url_taken(s->members, urls, nurls, id))
		rc = MS_EPEER_URL_EXISTS;
	pthread_mutex_unlock(&s->members_mu);
	if (rc)
		return rc;
	Msinternal__InternalRequest req = MSINTERNAL__INTERNAL_REQUEST__INIT;
	Etcdserverpb__MemberUpdateRequest mu = ETCDSERVERPB__MEMBER_UPDATE_REQUEST__INIT;
	mu.id = id;
	mu.peerurls = urls;
	mu.n_peerurls = nurls;
	req.request_case = MSINTERNAL__INTERNAL_REQUEST__REQUEST_MEMBER_UPDATE;
	req.member_update = &mu;
	return ms_server_propose(s, &req, deadline, done, arg);
}

/* Deep copy through the wire format (every string then belongs to the copy). */
static Etcdserverpb__Member *member_copy(const Etcdserverpb__Member *m)
{
	size_t len = etcdserverpb__member__get_packed_size(m);
	uint8_t *buf = ms_malloc(len ? len : 1);
	MS_ASSERT(buf != NULL);
	etcdserverpb__member__pack(m, buf);
	Etcdserverpb__Member *c = etcdserverpb__member__unpack(&ms_pb_allocator, len, buf);
	ms_free(buf);
	MS_ASSERT(c != NULL);
	return c;
}

static ProtobufCMessage *member_response(ms_server *s, raft_node_cc_type type, bool update,
                                         const Etcdserverpb__Member *added)
{
	/* members (and the added member) as of this entry; header by the loop */
	size_t len;
	uint8_t *buf = ms_members_pack(s->members, &len);
	MS_ASSERT(buf != NULL);
	Etcdserverpb__MemberListResponse *l = etcdserverpb__member_list_response__unpack(&ms_pb_allocator, len, buf);
	ms_free(buf);
	MS_ASSERT(l != NULL);
	ProtobufCMessage *out;
	if (update) {
		Etcdserverpb__MemberUpdateResponse *r = ms_malloc(sizeof *r);
		MS_ASSERT(r);
		etcdserverpb__member_update_response__init(r);
		r->members = l->members, r->n_members = l->n_members;
		out = &r->base;
	} else if (type == RAFT_NODE_REMOVE) {
		Etcdserverpb__MemberRemoveResponse *r = ms_malloc(sizeof *r);
		MS_ASSERT(r);
		etcdserverpb__member_remove_response__init(r);
		r->members = l->members, r->n_members = l->n_members;
		out = &r->base;
	} else if (added) {
		Etcdserverpb__MemberAddResponse *r = ms_malloc(sizeof *r);
		MS_ASSERT(r);
		etcdserverpb__member_add_response__init(r);
		r->members = l->members, r->n_members = l->n_members;
		r->member = member_copy(added);
		out = &r->base;
	} else {
		Etcdserverpb__MemberPromoteResponse *r = ms_malloc(sizeof *r);
		MS_ASSERT(r);
		etcdserverpb__member_promote_response__init(r);
		r->members = l->members, r->n_members = l->n_members;
		out = &r->base;
	}
	l->members = NULL;
	l->n_members = 0;
	protobuf_c_message_free_unpacked(&l->base, &ms_pb_allocator);
	return out;
}

/* apply thread: one membership change entry (or a MemberUpdate request).
 * Returns whether the list changed; *resp is the answer for its proposer. */
bool ms_members_apply_change(ms_server *s, raft_node_cc_type type, uint64_t id, const Etcdserverpb__Member *rec,
                             const Etcdserverpb__MemberUpdateRequest *upd, ProtobufCMessage **resp)
{
	bool changed = false;
	const Etcdserverpb__Member *added = NULL;
	pthread_mutex_lock(&s->members_mu);
	Etcdserverpb__MemberListResponse *l = s->members;
	size_t idx;
	Etcdserverpb__Member *m = find_member(l, id, &idx);
	if (upd) {
		if (m) {
			for (size_t j = 0; j < m->n_peerurls; j++)
				ms_free(m->peerurls[j]);
			ms_free(m->peerurls);
			m->peerurls = ms_calloc(upd->n_peerurls + 1, sizeof *m->peerurls);
			MS_ASSERT(m->peerurls);
			for (size_t j = 0; j < upd->n_peerurls; j++)
				MS_ASSERT((m->peerurls[j] = ms_strdup(upd->peerurls[j])));
			m->n_peerurls = upd->n_peerurls;
			changed = true;
			MS_INFO("membership", "updated member %llx in cluster %llx", (unsigned long long)id,
			        (unsigned long long)s->cluster_id);
		}
	} else if (type == RAFT_NODE_REMOVE) {
		if (m) {
			protobuf_c_message_free_unpacked(&m->base, &ms_pb_allocator);
			memmove(&l->members[idx], &l->members[idx + 1], (l->n_members - idx - 1) * sizeof *l->members);
			l->n_members--;
			changed = true;
			MS_INFO("membership", "removed member %llx from cluster %llx", (unsigned long long)id,
			        (unsigned long long)s->cluster_id);
		}
	} else if (m) {
		if (type == RAFT_NODE_ADD_VOTER && m->islearner) {
			m->islearner = false;
			changed = true;
			MS_INFO("membership", "promoted member %llx in cluster %llx", (unsigned long long)id,
			        (unsigned long long)s->cluster_id);
		}
	} else if (rec) {
		Etcdserverpb__Member **nm = ms_realloc(l->members, (l->n_members + 1) * sizeof *nm);
		MS_ASSERT(nm != NULL);
		l->members = nm;
		Etcdserverpb__Member *c = member_copy(rec);
		c->id = id;
		c->islearner = type == RAFT_NODE_ADD_LEARNER;
		l->members[l->n_members++] = c;
		added = c;
		changed = true;
		MS_INFO("membership", "added member %llx %s to cluster %llx", (unsigned long long)id,
		        c->n_peerurls ? c->peerurls[0] : "", (unsigned long long)s->cluster_id);
	}
	if (resp)
		*resp = member_response(s, type, upd != NULL, added);
	pthread_mutex_unlock(&s->members_mu);
	return changed;
}

int ms_members_after_install(ms_server *s, ms_err *err)
{
	/* the snapshot's meta names the leader as the local member: ours again */
	engine_apply *a;
	int rc = engine_apply_begin(s->eng, NULL, NULL, &a, err);
	if (rc)
		return rc;
	if ((rc = save_u64(a, "local_member_id", s->id, err)) == 0)
		rc = engine_apply_commit(a, engine_consistent_index(s->eng), err);
	else
		engine_apply_abort(a);
	if (rc)
		return rc;
	uint8_t *buf;
	size_t len;
	if ((rc = engine_meta_get(s->eng, "members", &buf, &len, err)))
		return rc;
	Etcdserverpb__MemberListResponse *l = etcdserverpb__member_list_response__unpack(&ms_pb_allocator, len, buf);
	ms_free(buf);
	if (!l)
		return ms_err_set(err, MS_ECORRUPT, "the snapshot's member list does not decode");
	pthread_mutex_lock(&s->members_mu);
	Etcdserverpb__MemberListResponse *old = s->members;
	s->members = l;
	pthread_mutex_unlock(&s->members_mu);
	protobuf_c_message_free_unpacked(&old->base, &ms_pb_allocator);
	return 0;
}
