/* lease.c — the lease manager: expiry min-heap, id table, key attachments. */
#include "lease/lease.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kv.pb-c.h"

#define NS_PER_S 1000000000LL
#define NOT_IN_HEAP SIZE_MAX

typedef struct lease lease;

/* One key attached to a lease: in the key table (key -> item) and in its
 * lease's list, so revoke walks the lease's keys without a scan. */
typedef struct lease_item {
	lease *owner;
	struct lease_item *prev, *next;
	uint64_t hash;
	size_t len;
	uint8_t key[];
} lease_item;

struct lease {
	int64_t id;
	int64_t ttl;    /* granted, seconds (after raising to min_ttl) */
	int64_t expiry; /* ns; INT64_MAX = forever (follower) */
	int64_t due;    /* heap key: when to look at it next (>= expiry once popped) */
	size_t hidx;    /* position in the heap, NOT_IN_HEAP when absent */
	lease_item *items;
	size_t nitems;
};

struct lease_mgr {
	pthread_mutex_t mu;
	lease_cfg cfg;
	bool primary;
	ms_htab byid;  /* lease * */
	ms_htab bykey; /* lease_item * */
	lease **heap;
	size_t hn, hcap;
};

/* ---- helpers ---- */

static int64_t sat_add(int64_t a, int64_t b)
{
	int64_t r;
	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

static int64_t ttl_ns(int64_t ttl)
{
	int64_t r;
	if (__builtin_mul_overflow(ttl, NS_PER_S, &r))
		return INT64_MAX;
	return r;
}

static int64_t now_ns(lease_mgr *m)
{
	return m->cfg.now(m->cfg.now_ud);
}

static bool id_eq(const void *entry, const void *key)
{
	return ((const lease *)entry)->id == *(const int64_t *)key;
}

typedef struct keyref {
	const uint8_t *key;
	size_t len;
} keyref;

static bool key_eq(const void *entry, const void *key)
{
	const lease_item *it = entry;
	const keyref *k = key;
	return it->len == k->len && memcmp(it->key, k->key, k->len) == 0;
}

static lease *find_lease(lease_mgr *m, int64_t id)
{
	return ms_htab_find(&m->byid, ms_hash_u64((uint64_t)id), id_eq, &id);
}

/* ---- the heap (min by due) ---- */

static void heap_set(lease_mgr *m, size_t i, lease *l)
{
	m->heap[i] = l;
	l->hidx = i;
}

static void sift_up(lease_mgr *m, size_t i)
{
	lease *l = m->heap[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (m->heap[p]->due <= l->due)
			break;
		heap_set(m, i, m->heap[p]);
		i = p;
	}
	heap_set(m, i, l);
}

static void sift_down(lease_mgr *m, size_t i)
{
	lease *l = m->heap[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= m->hn)
			break;
		if (c + 1 < m->hn && m->heap[c + 1]->due < m->heap[c]->due)
			c++;
		if (l->due <= m->heap[c]->due)
			break;
		heap_set(m, i, m->heap[c]);
		i = c;
	}
	heap_set(m, i, l);
}

static int heap_reserve(lease_mgr *m, size_t n)
{
	if (n <= m->hcap)
		return 0;
	size_t ncap = m->hcap ? m->hcap : 64;
	while (ncap < n)
		ncap *= 2;
	lease **nh = ms_realloc(m->heap, ncap * sizeof *nh);
	if (!nh)
		return MS_ENOMEM;
	m->heap = nh;
	m->hcap = ncap;
	return 0;
}

static int heap_push(lease_mgr *m, lease *l)
{
	int rc = heap_reserve(m, m->hn + 1);
	if (rc)
		return rc;
	m->heap[m->hn] = l;
	l->hidx = m->hn++;
	sift_up(m, l->hidx);
	return 0;
}

static void heap_remove(lease_mgr *m, lease *l)
{
	size_t i = l->hidx;
	if (i == NOT_IN_HEAP)
		return;
	MS_ASSERT(i < m->hn && m->heap[i] == l);
	l->hidx = NOT_IN_HEAP;
	lease *last = m->heap[--m->hn];
	if (i == m->hn)
		return;
	heap_set(m, i, last);
	/* the moved leaf may belong above or below the hole */
	if (i > 0 && m->heap[(i - 1) / 2]->due > last->due)
		sift_up(m, i);
	else
		sift_down(m, i);
}

/* Re-sorts l after its due changed: O(log n). */
static void heap_fix(lease_mgr *m, lease *l)
{
	size_t i = l->hidx;
	if (i > 0 && m->heap[(i - 1) / 2]->due > l->due)
		sift_up(m, i);
	else
		sift_down(m, i);
}

static void heapify(lease_mgr *m)
{
	for (size_t i = 0; i < m->hn; i++)
		m->heap[i]->hidx = i;
	for (size_t i = m->hn / 2; i-- > 0;)
		sift_down(m, i);
}

/* ---- key attachments ---- */

static void item_unlink(lease_item *it)
{
	lease *l = it->owner;
	if (it->prev)
		it->prev->next = it->next;
	else
		l->items = it->next;
	if (it->next)
		it->next->prev = it->prev;
	it->prev = it->next = NULL;
	l->nitems--;
}

static void item_link(lease *l, lease_item *it)
{
	it->owner = l;
	it->prev = NULL;
	it->next = l->items;
	if (l->items)
		l->items->prev = it;
	l->items = it;
	l->nitems++;
}

static void item_drop(lease_mgr *m, lease_item *it)
{
	keyref k = {it->key, it->len};
	lease_item *got = ms_htab_remove(&m->bykey, it->hash, key_eq, &k);
	MS_ASSERT(got == it);
	item_unlink(it);
	ms_free(it);
}

static int attach_locked(lease_mgr *m, const uint8_t *key, size_t len, int64_t id, ms_err *err)
{
	keyref k = {key, len};
	uint64_t h = ms_hash_bytes(key, len);
	lease_item *it = ms_htab_find(&m->bykey, h, key_eq, &k);
	lease *l = id ? find_lease(m, id) : NULL;
	if (!l) {
		if (it)
			item_drop(m, it);
		if (id)
			return ms_err_set(err, MS_ELEASE_NOT_FOUND, "lease %016llx not found", (unsigned long long)id);
		return 0;
	}
	if (it) {
		if (it->owner != l) {
			item_unlink(it);
			item_link(l, it);
		}
		return 0;
	}
	it = ms_malloc(sizeof *it + len);
	if (!it)
		return ms_err_set(err, MS_ENOMEM, "lease: out of memory attaching a key");
	it->hash = h;
	it->len = len;
	if (len)
		memcpy(it->key, key, len);
	if (ms_htab_insert(&m->bykey, h, it)) {
		ms_free(it);
		return ms_err_set(err, MS_ENOMEM, "lease: out of memory attaching a key");
	}
	item_link(l, it);
	return 0;
}

/* ---- lifecycle ---- */

int64_t lease_min_ttl(int64_t heartbeat_ms, int64_t election_ms)
{
	if (heartbeat_ms <= 0 || election_ms <= 0)
		return 2;
	int64_t ticks = election_ms / heartbeat_ms;
	int64_t ms = (3 * ticks / 2) * heartbeat_ms;
	return (ms + 999) / 1000;
}

int lease_mgr_new(const lease_cfg *cfg, lease_mgr **out, ms_err *err)
{
	*out = NULL;
	if (!cfg || !cfg->now)
		return ms_err_set(err, MS_EINVAL, "lease: a clock is required");
	lease_mgr *m = ms_calloc(1, sizeof *m);
	if (!m)
		return ms_err_set(err, MS_ENOMEM, "lease: out of memory");
	m->cfg = *cfg;
	if (m->cfg.min_ttl <= 0)
		m->cfg.min_ttl = 2;
	if (m->cfg.retry_ns <= 0)
		m->cfg.retry_ns = 3 * NS_PER_S;
	if (m->cfg.revoke_rate <= 0)
		m->cfg.revoke_rate = LEASE_REVOKE_RATE;
	pthread_mutex_init(&m->mu, NULL);
	*out = m;
	return 0;
}

static void free_lease(lease *l)
{
	lease_item *it = l->items;
	while (it) {
		lease_item *nx = it->next;
		ms_free(it);
		it = nx;
	}
	ms_free(l);
}

void lease_mgr_del(lease_mgr *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->byid.cap; i++)
		if (m->byid.h[i])
			free_lease(m->byid.v[i]);
	ms_htab_free(&m->byid);
	ms_htab_free(&m->bykey);
	ms_free(m->heap);
	pthread_mutex_destroy(&m->mu);
	ms_free(m);
}

int lease_check_ttl(int64_t ttl, ms_err *err)
{
	if (ttl > LEASE_MAX_TTL)
		return ms_err_set(err, MS_ELEASE_TTL_LARGE, "etcdserver: too large lease TTL");
	return 0;
}

int lease_mgr_next_id(lease_mgr *m, int64_t *id, ms_err *err)
{
	if (!m->cfg.rand)
		return ms_err_set(err, MS_EINVAL, "lease: no randomness configured");
	pthread_mutex_lock(&m->mu);
	int rc = ms_err_set(err, MS_EAGAIN, "lease: no free id found");
	for (int tries = 0; tries < 64; tries++) {
		int64_t c = (int64_t)(m->cfg.rand(m->cfg.rand_ud) & (uint64_t)INT64_MAX);
		if (c != 0 && !find_lease(m, c)) {
			*id = c;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

/* check_max is off for recovery: what is on disk was accepted once. */
static int grant_locked(lease_mgr *m, int64_t id, int64_t ttl, bool check_max, int64_t *granted, ms_err *err)
{
	if (id == 0)
		return ms_err_set(err, MS_EINVAL, "lease: id 0 is not a lease");
	if (check_max && ttl > LEASE_MAX_TTL)
		return ms_err_set(err, MS_ELEASE_TTL_LARGE, "etcdserver: too large lease TTL");
	if (find_lease(m, id))
		return ms_err_set(err, MS_ELEASE_EXISTS, "etcdserver: lease already exists");
	if (ttl < m->cfg.min_ttl)
		ttl = m->cfg.min_ttl;
	lease *l = ms_calloc(1, sizeof *l);
	if (!l)
		return ms_err_set(err, MS_ENOMEM, "lease: out of memory");
	l->id = id;
	l->ttl = ttl;
	l->hidx = NOT_IN_HEAP;
	l->expiry = l->due = INT64_MAX;
	if (ms_htab_insert(&m->byid, ms_hash_u64((uint64_t)id), l)) {
		ms_free(l);
		return ms_err_set(err, MS_ENOMEM, "lease: out of memory");
	}
	if (m->primary) {
		l->expiry = l->due = sat_add(now_ns(m), ttl_ns(ttl));
		if (heap_push(m, l)) {
			ms_htab_remove(&m->byid, ms_hash_u64((uint64_t)id), id_eq, &id);
			ms_free(l);
			return ms_err_set(err, MS_ENOMEM, "lease: out of memory");
		}
	}
	if (granted)
		*granted = ttl;
	return 0;
}

int lease_grant(lease_mgr *m, int64_t id, int64_t ttl, int64_t *granted_ttl, ms_err *err)
{
	pthread_mutex_lock(&m->mu);
	int rc = grant_locked(m, id, ttl, true, granted_ttl, err);
	pthread_mutex_unlock(&m->mu);
	return rc;
}

int lease_revoke(lease_mgr *m, int64_t id, ms_err *err)
{
	pthread_mutex_lock(&m->mu);
	lease *l = ms_htab_remove(&m->byid, ms_hash_u64((uint64_t)id), id_eq, &id);
	if (!l) {
		pthread_mutex_unlock(&m->mu);
		return ms_err_set(err, MS_ELEASE_NOT_FOUND, "etcdserver: requested lease not found");
	}
	heap_remove(m, l);
	while (l->items)
		item_drop(m, l->items);
	ms_free(l);
	pthread_mutex_unlock(&m->mu);
	return 0;
}

int lease_renew(lease_mgr *m, int64_t id, int64_t *ttl, ms_err *err)
{
	int rc = 0;
	pthread_mutex_lock(&m->mu);
	lease *l;
	if (!m->primary) {
		rc = ms_err_set(err, MS_ENOT_LEADER, "etcdserver: not leader");
	} else if (!(l = find_lease(m, id))) {
		rc = ms_err_set(err, MS_ELEASE_NOT_FOUND, "etcdserver: requested lease not found");
	} else {
		int64_t now = now_ns(m);
		if (l->expiry <= now) {
			rc = ms_err_set(err, MS_ELEASE_NOT_FOUND, "etcdserver: requested lease not found");
		} else {
			l->expiry = l->due = sat_add(now, ttl_ns(l->ttl));
			heap_fix(m, l);
			if (ttl)
				*ttl = l->ttl;
		}
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

int lease_time_to_live(lease_mgr *m, int64_t id, lease_ttl_info *out, ms_err *err)
{
	pthread_mutex_lock(&m->mu);
	lease *l = find_lease(m, id);
	if (!l) {
		pthread_mutex_unlock(&m->mu);
		return ms_err_set(err, MS_ELEASE_NOT_FOUND, "etcdserver: requested lease not found");
	}
	out->granted_ttl = l->ttl;
	out->nkeys = l->nitems;
	out->primary = m->primary;
	if (m->primary && l->expiry != INT64_MAX) {
		out->remaining_ns = l->expiry - now_ns(m);
		out->remaining_ttl = out->remaining_ns / NS_PER_S; /* truncates toward 0, as Go's int64(float) */
	} else {
		out->remaining_ns = INT64_MAX;
		out->remaining_ttl = l->ttl;
	}
	pthread_mutex_unlock(&m->mu);
	return 0;
}

int lease_keys(lease_mgr *m, int64_t id, lease_key_fn fn, void *arg, ms_err *err)
{
	pthread_mutex_lock(&m->mu);
	lease *l = find_lease(m, id);
	int rc = 0;
	if (!l)
		rc = ms_err_set(err, MS_ELEASE_NOT_FOUND, "etcdserver: requested lease not found");
	for (lease_item *it = l ? l->items : NULL; it && rc == 0; it = it->next)
		rc = fn(arg, it->key, it->len);
	pthread_mutex_unlock(&m->mu);
	return rc;
}

int lease_list(lease_mgr *m, int64_t **ids, size_t *n, ms_err *err)
{
	pthread_mutex_lock(&m->mu);
	*ids = NULL;
	*n = 0;
	if (m->byid.n) {
		int64_t *a = ms_malloc(m->byid.n * sizeof *a);
		if (!a) {
			pthread_mutex_unlock(&m->mu);
			return ms_err_set(err, MS_ENOMEM, "lease: out of memory");
		}
		size_t k = 0;
		for (size_t i = 0; i < m->byid.cap; i++)
			if (m->byid.h[i])
				a[k++] = ((lease *)m->byid.v[i])->id;
		*ids = a;
		*n = k;
	}
	pthread_mutex_unlock(&m->mu);
	return 0;
}

size_t lease_count(lease_mgr *m)
{
	pthread_mutex_lock(&m->mu);
	size_t n = m->byid.n;
	pthread_mutex_unlock(&m->mu);
	return n;
}

bool lease_exists(lease_mgr *m, int64_t id)
{
	pthread_mutex_lock(&m->mu);
	bool ok = find_lease(m, id) != NULL;
	pthread_mutex_unlock(&m->mu);
	return ok;
}

int lease_attach(lease_mgr *m, const uint8_t *key, size_t len, int64_t id, ms_err *err)
{
	pthread_mutex_lock(&m->mu);
	int rc = attach_locked(m, key, len, id, err);
	pthread_mutex_unlock(&m->mu);
	return rc;
}

int64_t lease_of_key(lease_mgr *m, const uint8_t *key, size_t len)
{
	keyref k = {key, len};
	pthread_mutex_lock(&m->mu);
	lease_item *it = ms_htab_find(&m->bykey, ms_hash_bytes(key, len), key_eq, &k);
	int64_t id = it ? it->owner->id : 0;
	pthread_mutex_unlock(&m->mu);
	return id;
}

int lease_mgr_on_events(lease_mgr *m, struct Mvccpb__Event *const *evs, size_t n, ms_err *err)
{
	int rc = 0;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < n; i++) {
		const Mvccpb__Event *ev = evs[i];
		if (!ev || !ev->kv)
			continue;
		int64_t id = ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT ? ev->kv->lease : 0;
		int r = attach_locked(m, ev->kv->key.data, ev->kv->key.len, id, err);
		if (r == MS_ENOMEM && rc == 0)
			rc = r;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

int lease_mgr_load(void *arg, int64_t id, int64_t ttl, const uint8_t *const *keys, const size_t *key_lens, size_t nkeys)
{
	lease_mgr *m = arg;
	pthread_mutex_lock(&m->mu);
	int rc = grant_locked(m, id, ttl, false, NULL, NULL);
	for (size_t i = 0; i < nkeys && rc == 0; i++)
		rc = attach_locked(m, keys[i], key_lens[i], id, NULL);
	pthread_mutex_unlock(&m->mu);
	return rc;
}

/* ---- leadership ---- */

static int by_expiry(const void *a, const void *b)
{
	const lease *x = *(lease *const *)a, *y = *(lease *const *)b;
	return (x->expiry > y->expiry) - (x->expiry < y->expiry);
}

/* etcd's Promote pile-up rule: walk leases by expiry; in each window opened
 * by a lease, the first 3/4 revoke_rate keep their expiry and later ones are
 * pushed back in proportion to how many came before them. */
static void spread_expiries(lease_mgr *m, int64_t now, int64_t extend_ns)
{
	size_t n = m->hn;
	lease **ls = ms_malloc(n * sizeof *ls);
	if (!ls)
		return; /* spreading is an optimisation; the clocks are already right */
	memcpy(ls, m->heap, n * sizeof *ls);
	qsort(ls, n, sizeof *ls, by_expiry);
	int64_t target = (3 * (int64_t)m->cfg.revoke_rate) / 4;
	if (target < 1)
		target = 1;
	int64_t base = ls[0]->expiry - now;
	int64_t next = sat_add(base, NS_PER_S);
	int64_t expires = 0;
	for (size_t i = 0; i < n; i++) {
		lease *l = ls[i];
		int64_t rem = l->expiry - now;
		if (rem > next) {
			base = rem;
			next = sat_add(base, NS_PER_S);
			expires = 1;
			continue;
		}
		expires++;
		if (expires <= target)
			continue;
		double rate_delay = (double)NS_PER_S * ((double)expires / (double)target) - (double)(rem - base);
		int64_t delay = (int64_t)rate_delay;
		next = sat_add(base, delay);
		l->expiry = l->due = sat_add(sat_add(now, sat_add(delay, extend_ns)), ttl_ns(l->ttl));
	}
	ms_free(ls);
}

void lease_mgr_promote(lease_mgr *m, int64_t extend_ns)
{
	pthread_mutex_lock(&m->mu);
	if (heap_reserve(m, m->byid.n) != 0) {
		/* keep running as primary with what fits: leases not in the heap
		 * simply do not expire here until a later promote */
		MS_ERROR("lease", "out of memory promoting %zu leases", m->byid.n);
	}
	int64_t now = now_ns(m);
	m->primary = true;
	m->hn = 0;
	for (size_t i = 0; i < m->byid.cap; i++) {
		if (!m->byid.h[i])
			continue;
		lease *l = m->byid.v[i];
		l->expiry = l->due = sat_add(sat_add(now, extend_ns), ttl_ns(l->ttl));
		if (m->hn < m->hcap)
			m->heap[m->hn++] = l;
		else
			l->hidx = NOT_IN_HEAP;
	}
	if (m->hn >= (size_t)m->cfg.revoke_rate)
		spread_expiries(m, now, extend_ns);
	heapify(m);
	pthread_mutex_unlock(&m->mu);
}

void lease_mgr_demote(lease_mgr *m)
{
	pthread_mutex_lock(&m->mu);
	m->primary = false;
	for (size_t i = 0; i < m->hn; i++) {
		m->heap[i]->hidx = NOT_IN_HEAP;
		m->heap[i]->expiry = m->heap[i]->due = INT64_MAX;
	}
	m->hn = 0;
	pthread_mutex_unlock(&m->mu);
}

bool lease_mgr_is_primary(lease_mgr *m)
{
	pthread_mutex_lock(&m->mu);
	bool p = m->primary;
	pthread_mutex_unlock(&m->mu);
	return p;
}

size_t lease_expired_pop(lease_mgr *m, int64_t *ids, size_t max)
{
	size_t k = 0;
	pthread_mutex_lock(&m->mu);
	if (m->primary && m->hn) {
		int64_t now = now_ns(m);
		while (k < max && m->hn && m->heap[0]->due <= now) {
			lease *l = m->heap[0];
			if (l->expiry <= now) {
				ids[k++] = l->id;
				l->due = sat_add(now, m->cfg.retry_ns);
			} else {
				l->due = l->expiry;
			}
			sift_down(m, 0);
		}
	}
	pthread_mutex_unlock(&m->mu);
	return k;
}

int64_t lease_next_due(lease_mgr *m)
{
	pthread_mutex_lock(&m->mu);
	int64_t d = m->primary && m->hn ? m->heap[0]->due : INT64_MAX;
	pthread_mutex_unlock(&m->mu);
	return d;
}

int lease_mgr_check(lease_mgr *m)
{
	int rc = 0;
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->hn && !rc; i++) {
		if (m->heap[i]->hidx != i)
			rc = MS_ECORRUPT;
		if (i > 0 && m->heap[(i - 1) / 2]->due > m->heap[i]->due)
			rc = MS_ECORRUPT;
	}
	if (!m->primary && m->hn)
		rc = MS_ECORRUPT;
	size_t nleases = 0, nitems = 0;
	for (size_t i = 0; i < m->byid.cap && !rc; i++) {
		if (!m->byid.h[i])
			continue;
		lease *l = m->byid.v[i];
		nleases++;
		if (m->primary && (l->hidx >= m->hn || m->heap[l->hidx] != l))
			rc = MS_ECORRUPT;
		if (!m->primary && l->hidx != NOT_IN_HEAP)
			rc = MS_ECORRUPT;
		if (l->due < l->expiry)
			rc = MS_ECORRUPT;
		size_t c = 0;
		for (lease_item *it = l->items; it; it = it->next) {
			keyref k = {it->key, it->len};
			if (it->owner != l || ms_htab_find(&m->bykey, it->hash, key_eq, &k) != it)
				rc = MS_ECORRUPT;
			c++;
		}
		if (c != l->nitems)
			rc = MS_ECORRUPT;
		nitems += c;
	}
	if (!rc && (nleases != m->byid.n || nitems != m->bykey.n || (m->primary && m->hn != nleases)))
		rc = MS_ECORRUPT;
	pthread_mutex_unlock(&m->mu);
	return rc;
}
