/* lease_tab.h — private to lease/: an open-addressing hash table of
 * pointers, each slot remembering its entry's 64-bit hash, linear probing
 * and backward-shift deletion (no tombstones), so lookups stay short after
 * millions of grants and revokes. The caller hashes and compares. */
#ifndef MS_LEASE_TAB_H
#define MS_LEASE_TAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lease_tab {
	uint64_t *h; /* 0 = empty slot; stored hashes have bit 0 set */
	void **v;
	size_t cap; /* power of two, or 0 */
	size_t n;
} lease_tab;

/* eq(entry, key) says whether a stored entry is the one sought. */
typedef bool (*lease_tab_eq)(const void *entry, const void *key);

void lease_tab_free(lease_tab *t);
/* The entry with hash h equal to key, or NULL. */
void *lease_tab_find(const lease_tab *t, uint64_t h, lease_tab_eq eq, const void *key);
/* Inserts v (which must not be present). MS_ENOMEM. */
int lease_tab_insert(lease_tab *t, uint64_t h, void *v);
/* Removes and returns the entry equal to key, or NULL. */
void *lease_tab_remove(lease_tab *t, uint64_t h, lease_tab_eq eq, const void *key);

uint64_t lease_hash_u64(uint64_t x);
uint64_t lease_hash_bytes(const uint8_t *p, size_t n);

#endif
