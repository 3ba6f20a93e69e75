/* engine_codec.c — the binary KeyValue value format, the order-preserving
 * key encoding of kv rows (layout documented in engine_int.h), crc32c. */
#include "engine/engine_int.h"

#include <protobuf-c/protobuf-c.h>
#include <string.h>

#define KV_FIXED (4 + 4 + 8 * 4)

size_t engine_kv_encode(const engine_kv *kv, uint8_t *buf, size_t cap)
{
	size_t need = KV_FIXED + kv->key_len + kv->value_len;
	if (!buf || cap < need)
		return need;
	uint8_t *p = buf;
	ms_put_u32le(p, (uint32_t)kv->key_len);
	p += 4;
	if (kv->key_len)
		memcpy(p, kv->key, kv->key_len);
	p += kv->key_len;
	ms_put_u32le(p, (uint32_t)kv->value_len);
	p += 4;
	if (kv->value_len)
		memcpy(p, kv->value, kv->value_len);
	p += kv->value_len;
	ms_put_u64le(p, (uint64_t)kv->create_rev);
	ms_put_u64le(p + 8, (uint64_t)kv->mod_rev);
	ms_put_u64le(p + 16, (uint64_t)kv->version);
	ms_put_u64le(p + 24, (uint64_t)kv->lease);
	return need;
}

int engine_kv_decode(const uint8_t *buf, size_t len, engine_kv *kv)
{
	if (!buf || len < KV_FIXED)
		return MS_ECORRUPT;
	size_t klen = ms_get_u32le(buf);
	if (klen > len - KV_FIXED)
		return MS_ECORRUPT;
	size_t vlen = ms_get_u32le(buf + 4 + klen);
	if (vlen != len - KV_FIXED - klen)
		return MS_ECORRUPT; /* trailing garbage or truncation */
	kv->key = buf + 4;
	kv->key_len = klen;
	kv->value = buf + 8 + klen;
	kv->value_len = vlen;
	const uint8_t *p = buf + 8 + klen + vlen;
	kv->create_rev = (int64_t)ms_get_u64le(p);
	kv->mod_rev = (int64_t)ms_get_u64le(p + 8);
	kv->version = (int64_t)ms_get_u64le(p + 16);
	kv->lease = (int64_t)ms_get_u64le(p + 24);
	return 0;
}

size_t eng_key_enc(const uint8_t *key, size_t len, uint8_t *buf)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		buf[n++] = key[i];
		if (key[i] == 0)
			buf[n++] = 0xFF;
	}
	buf[n++] = 0x00;
	buf[n++] = 0x01;
	return n;
}

ssize_t eng_key_dec(const uint8_t *p, size_t plen, uint8_t *buf)
{
	size_t n = 0;
	for (size_t i = 0; i < plen; i++) {
		if (p[i] != 0) {
			buf[n++] = p[i];
			continue;
		}
		if (i + 1 >= plen)
			return -1;
		if (p[i + 1] == 0xFF) {
			buf[n++] = 0;
			i++;
		} else if (p[i + 1] == 0x01 && i + 2 == plen) {
			return (ssize_t)n;
		} else {
			return -1;
		}
	}
	return -1;
}

void eng_rev_put(uint8_t *p, int64_t main, int64_t sub)
{
	ms_put_u64be(p, ~(uint64_t)main);
	ms_put_u64be(p + 8, ~(uint64_t)sub);
}

void eng_rev_get(const uint8_t *p, int64_t *main, int64_t *sub)
{
	*main = (int64_t)~ms_get_u64be(p);
	if (sub)
		*sub = (int64_t)~ms_get_u64be(p + 8);
}

bool eng_is_tombstone(const uint8_t *v, size_t len)
{
	return len == 1 && v[0] == ENG_TOMBSTONE;
}

int eng_bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = n ? memcmp(a, b, n) : 0;
	if (c)
		return c;
	return al < bl ? -1 : al > bl ? 1 : 0;
}

Mvccpb__KeyValue *eng_pb_kv(const engine_kv *kv, bool keys_only)
{
	Mvccpb__KeyValue *m = ms_malloc(sizeof *m);
	if (!m)
		return NULL;
	mvccpb__key_value__init(m);
	if (kv->key_len) {
		m->key.data = ms_memdup(kv->key, kv->key_len);
		if (!m->key.data)
			goto fail;
		m->key.len = kv->key_len;
	}
	if (!keys_only && kv->value_len) {
		m->value.data = ms_memdup(kv->value, kv->value_len);
		if (!m->value.data)
			goto fail;
		m->value.len = kv->value_len;
	}
	m->create_revision = kv->create_rev;
	m->mod_revision = kv->mod_rev;
	m->version = kv->version;
	m->lease = kv->lease;
	return m;
fail:
	protobuf_c_message_free_unpacked(&m->base, &ms_pb_allocator);
	return NULL;
}

/* Castagnoli polynomial, reflected; table built once. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t eng_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
	const uint8_t *p = buf;
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return ~crc;
}
