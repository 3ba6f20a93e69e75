/* htab.c — the open-addressing pointer table the lease manager and the watch hub share. */
#include "common/ms.h"

#include <string.h>

#include "common/ms.h"

static inline uint64_t slot_hash(uint64_t h)
{
	return h | 1;
}

uint64_t ms_hash_u64(uint64_t x)
{
	/* splitmix64 finalizer: ids from a counter spread over the table */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

uint64_t ms_hash_bytes(const uint8_t *p, size_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 29;
		p += 8;
		n -= 8;
	}
	uint64_t w = 0;
	for (size_t i = 0; i < n; i++)
		w |= (uint64_t)p[i] << (8 * i);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
	return ms_hash_u64(h);
}

void ms_htab_free(ms_htab *t)
{
	ms_free(t->h);
	ms_free(t->v);
	memset(t, 0, sizeof *t);
}

void *ms_htab_find(const ms_htab *t, uint64_t h, ms_htab_eq eq, const void *key)
{
	if (!t->cap)
		return NULL;
	h = slot_hash(h);
	size_t mask = t->cap - 1;
	for (size_t i = h & mask; t->h[i]; i = (i + 1) & mask)
		if (t->h[i] == h && eq(t->v[i], key))
			return t->v[i];
	return NULL;
}

static void put_slot(uint64_t *hs, void **vs, size_t mask, uint64_t h, void *v)
{
	size_t i = h & mask;
	while (hs[i])
		i = (i + 1) & mask;
	hs[i] = h;
	vs[i] = v;
}

static int grow(ms_htab *t)
{
	size_t ncap = t->cap ? t->cap * 2 : 16;
	uint64_t *nh = ms_calloc(ncap, sizeof *nh);
	void **nv = ms_calloc(ncap, sizeof *nv);
	if (!nh || !nv) {
		ms_free(nh);
		ms_free(nv);
		return MS_ENOMEM;
	}
	for (size_t i = 0; i < t->cap; i++)
		if (t->h[i])
			put_slot(nh, nv, ncap - 1, t->h[i], t->v[i]);
	ms_free(t->h);
	ms_free(t->v);
	t->h = nh;
	t->v = nv;
	t->cap = ncap;
	return 0;
}

int ms_htab_insert(ms_htab *t, uint64_t h, void *v)
{
	/* load factor <= 3/4 keeps linear probes short */
	if ((t->n + 1) * 4 > t->cap * 3) {
		int rc = grow(t);
		if (rc)
			return rc;
	}
	put_slot(t->h, t->v, t->cap - 1, slot_hash(h), v);
	t->n++;
	return 0;
}

void *ms_htab_remove(ms_htab *t, uint64_t h, ms_htab_eq eq, const void *key)
{
	if (!t->cap)
		return NULL;
	h = slot_hash(h);
	size_t mask = t->cap - 1, i;
	for (i = h & mask; t->h[i]; i = (i + 1) & mask)
		if (t->h[i] == h && eq(t->v[i], key))
			break;
	if (!t->h[i])
		return NULL;
	void *found = t->v[i];
	/* backward shift: pull later entries of the probe run into the hole if
	 * the hole lies between their home slot and where they sit */
	size_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!t->h[j])
			break;
		size_t home = t->h[j] & mask;
		if (((j - home) & mask) >= ((j - i) & mask)) {
			t->h[i] = t->h[j];
			t->v[i] = t->v[j];
			i = j;
		}
	}
	t->h[i] = 0;
	t->v[i] = NULL;
	t->n--;
	return found;
}
