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

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
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
