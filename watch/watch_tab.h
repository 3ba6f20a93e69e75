/* watch_tab.h — private to watch/: an open-addressing hash table of
 * pointers, each slot remembering its entry's 64-bit hash, linear probing
 * and backward-shift deletion (no tombstones), so lookups stay short after
 * many adds and removes. The caller hashes and compares. (A twin of
 * lease/lease_tab.c: modules do not share private code.) */
#ifndef MS_WATCH_TAB_H
#define MS_WATCH_TAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct watch_tab {
	uint64_t *h; /* 0 = empty slot; stored hashes have bit 0 set */
	void **v;
	size_t cap; /* power of two, or 0 */
	size_t n;
} watch_tab;

/* eq(entry, key) says whether a stored entry is the one sought. */
typedef bool (*watch_tab_eq)(const void *entry, const void *key);

void watch_tab_free(watch_tab *t);
/* The entry with hash h equal to key, or NULL. */
void *watch_tab_find(const watch_tab *t, uint64_t h, watch_tab_eq eq, const void *key);
/* Inserts v (which must not be present). MS_ENOMEM. */
int watch_tab_insert(watch_tab *t, uint64_t h, void *v);
/* Removes and returns the entry equal to key, or NULL. */
void *watch_tab_remove(watch_tab *t, uint64_t h, watch_tab_eq eq, const void *key);

uint64_t watch_hash_u64(uint64_t x);
uint64_t watch_hash_bytes(const uint8_t *p, size_t n);

#endif
