/* fuzz_engine.c — libFuzzer target for the engine's row decoders
 * (engine/engine_codec.c): a kv CF value (binary KeyValue or tombstone) and
 * a kv CF key (escaped user key, terminator, complemented revision). Byte 0
 * picks. What decodes must encode back to the same bytes: the encodings are
 * canonical, and range scans compare encoded keys. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void must(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_engine: %s\n", what);
		abort();
	}
}

static void kv_value(const uint8_t *buf, size_t n)
{
	if (eng_is_tombstone(buf, n))
		return;
	engine_kv kv;
	if (engine_kv_decode(buf, n, &kv))
		return;
	for (size_t i = 0; i < kv.key_len; i++)
		sink += kv.key[i];
	for (size_t i = 0; i < kv.value_len; i++)
		sink += kv.value[i];
	size_t need = engine_kv_encode(&kv, NULL, 0);
	must(need == n, "encoded size differs");
	uint8_t *enc = malloc(need);
	must(engine_kv_encode(&kv, enc, need) == need && !memcmp(enc, buf, n), "value does not encode back");
	free(enc);
}

static void kv_key(const uint8_t *buf, size_t n)
{
	if (n < ENG_REVLEN)
		return;
	size_t klen = n - ENG_REVLEN;
	uint8_t *key = malloc(klen ? klen : 1);
	ssize_t kl = eng_key_dec(buf, klen, key);
	if (kl >= 0) {
		int64_t main, sub;
		eng_rev_get(buf + klen, &main, &sub);
		uint8_t *enc = malloc(2 * (size_t)kl + 2 + ENG_REVLEN);
		size_t el = eng_key_enc(key, (size_t)kl, enc);
		eng_rev_put(enc + el, main, sub);
		must(el == klen && !memcmp(enc, buf, n), "key does not encode back");
		free(enc);
	}
	free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t n = size - 1;
	uint8_t *buf = malloc(n ? n : 1);
	memcpy(buf, data + 1, n);
	if (data[0] % 2 == 0)
		kv_value(buf, n);
	else
		kv_key(buf, n);
	sink += eng_crc32c(0, buf, n);
	free(buf);
	return 0;
}
