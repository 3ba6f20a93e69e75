/* fuzz_gob.c — libFuzzer target for the gob decoder and the legacy record
 * checks: any input must decode or be refused, never crash, leak or read
 * out of bounds. `make fuzz` builds it like every tests/fuzz/fuzz_*.c; by
 * hand, from the repo root:
 *   clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_gob.c \
 *     common/ms.c -lprotobuf-c -o fuzz_gob
 * Seeds: tests/fuzz/corpus/fuzz_gob (the fixture streams). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The migration tool's sources are not in libmetastore.a: build them in. */
#include "tools/migrate/gob.c"
#include "tools/migrate/legacy.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches every byte a value claims, so ASan checks the aliases too. */
static unsigned walk(const gob_value *v)
{
	unsigned h = (unsigned)v->kind;
	switch (v->kind) {
	case GOB_BYTES:
	case GOB_STRING:
	case GOB_ENCODED:
		for (size_t i = 0; i < v->bytes.len; i++)
			h = h * 31 + v->bytes.p[i];
		if (v->kind == GOB_ENCODED) {
			gob_time t;
			if (gob_time_decode(v->bytes.p, v->bytes.len, &t, NULL) == 0) {
				char buf[48];
				int64_t ns;
				gob_time_format(&t, buf, sizeof buf);
				h += (unsigned)strlen(buf) + (unsigned)gob_time_unix_nano(&t, &ns);
			}
		}
		break;
	case GOB_STRUCT:
		for (size_t i = 0; i < v->st.n; i++)
			h = h * 31 + walk(v->st.members[i].value) + (unsigned)v->st.members[i].index;
		break;
	case GOB_SLICE:
	case GOB_ARRAY:
		for (size_t i = 0; i < v->list.n; i++)
			h = h * 31 + walk(v->list.elems[i]);
		break;
	case GOB_MAP:
		for (size_t i = 0; i < 2 * v->list.n; i++)
			h = h * 31 + walk(v->list.elems[i]);
		break;
	default:
		h = h * 31 + (unsigned)v->u;
		break;
	}
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size copy, so reads past the end are caught */
	uint8_t *buf = malloc(size ? size : 1);
	memcpy(buf, data, size);
	gob_dec *d;
	if (gob_dec_new(buf, size, &d, NULL) == 0) {
		const gob_value *v;
		volatile unsigned sink = 0;
		for (int i = 0; i < 16 && gob_dec_next(d, &v, NULL) == 1; i++)
			sink += walk(v);
		legacy_kv kv;
		legacy_lease l;
		int64_t rev;
		if (legacy_kv_from_gob(d, buf, size, &kv, NULL, NULL) == 0) {
			for (size_t i = 0; i < kv.key_len; i++)
				sink += kv.key[i];
			for (size_t i = 0; i < kv.value_len; i++)
				sink += kv.value[i];
		}
		if (legacy_lease_from_gob(d, buf, size, &l, NULL, NULL) == 0)
			for (size_t i = 0; i < 2 * l.nkeys; i++)
				sink += walk(l.pairs[i]);
		legacy_int_from_gob(d, buf, size, &rev, NULL, NULL);
		(void)sink;
		gob_dec_del(d);
	}
	free(buf);
	return 0;
}
