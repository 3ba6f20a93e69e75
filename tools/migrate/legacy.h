/* legacy.h — the Go MetaStore's RocksDB records (gob-encoded KeyValue, Lease
 * and revision values), checked and turned into plain C records.
 *
 * Legacy rows: "kv:<user key>" -> KeyValue (gob, or the later binary form,
 * which migrate.c recognises through the engine's codec), "lease:<decimal
 * id>" -> Lease, "meta:revision" -> gob int64, "meta:compacted_revision" ->
 * 8 bytes big-endian. Decoding is strict: a field of the wrong type, or a
 * field this tool does not know that carries a value (it would be lost), is
 * refused with the byte offset. */
#ifndef MS_MIGRATE_LEGACY_H
#define MS_MIGRATE_LEGACY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ms.h"
#include "tools/migrate/gob.h"

typedef struct legacy_kv {
	const uint8_t *key; /* aliases the value buffer */
	size_t key_len;
	const uint8_t *value;
	size_t value_len;
	int64_t create_rev, mod_rev, version, lease;
} legacy_kv;

typedef struct legacy_lease {
	int64_t id, ttl;
	gob_time grant;                /* zero (sec 0, utc) when not transmitted */
	size_t nkeys;                  /* entries of the Keys map */
	const gob_value *const *pairs; /* pairs[2i]: key (string or bytes), pairs[2i+1]: bool */
} legacy_lease;

/* Decodes one gob stream holding a KeyValue. Pointers in kv alias buf.
 * *off (if non-NULL) gets the byte offset of a fault. d is reset first. */
int legacy_kv_from_gob(gob_dec *d, const uint8_t *buf, size_t len, legacy_kv *kv, size_t *off, ms_err *err);
/* Decodes one gob stream holding a Lease; pairs alias d's arena and buf. */
int legacy_lease_from_gob(gob_dec *d, const uint8_t *buf, size_t len, legacy_lease *l, size_t *off, ms_err *err);
/* Decodes one gob stream holding an int64 (meta:revision). */
int legacy_int_from_gob(gob_dec *d, const uint8_t *buf, size_t len, int64_t *v, size_t *off, ms_err *err);
/* meta:compacted_revision: exactly 8 bytes, big-endian, not negative. */
int legacy_compacted_decode(const uint8_t *buf, size_t len, int64_t *v, ms_err *err);
/* "lease:<decimal id>" suffix: digits only, no sign, no leading zero, fits int64. */
int legacy_parse_id(const uint8_t *p, size_t n, int64_t *id);

/* Writes p[0..n) C-style escaped (\xNN for bytes outside printable ASCII,
 * \\ and \" escaped) into out, always NUL-terminated; a value that does not
 * fit ends in "...". Returns out. */
char *legacy_escape(const uint8_t *p, size_t n, char *out, size_t cap);

#endif
