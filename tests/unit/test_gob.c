/* test_gob.c — the gob decoder and the legacy record checks, on streams made
 * by Go's encoding/gob (tests/fixtures/gob) and on hand-made broken ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <cmocka.h>

/* The migration tool's sources are not in libmetastore.a: build them in. */
#include "tools/migrate/gob.c"
#include "tools/migrate/legacy.c"

#include "tests/unit/test_gob_util.h"

#define FIX "tests/fixtures/gob/"

/* ---- helpers ---- */
typedef struct bb {
	uint8_t b[8192];
	size_t n;
} bb;

/* Appends bytes written as hex pairs ("ff 82 01"). */
static void put(bb *x, const char *hex)
{
	for (const char *p = hex; *p;) {
		if (*p == ' ') {
			p++;
			continue;
		}
		char t[3] = {p[0], p[1], 0};
		x->b[x->n++] = (uint8_t)strtoul(t, NULL, 16);
		p += 2;
	}
}
static void put_str(bb *x, const char *s)
{
	x->b[x->n++] = (uint8_t)strlen(s);
	memcpy(x->b + x->n, s, strlen(s));
	x->n += strlen(s);
}
/* Appends one message: its byte count (< 128 here), then the bytes. */
static void put_msg(bb *x, const bb *m)
{
	assert_true(m->n < 128);
	x->b[x->n++] = (uint8_t)m->n;
	memcpy(x->b + x->n, m->b, m->n);
	x->n += m->n;
}

static uint8_t *fixture(const char *name, size_t *len)
{
	char path[256];
	snprintf(path, sizeof path, FIX "%s", name);
	uint8_t *b = tu_read_file(path, len);
	if (!b)
		fail_msg("cannot read %s (tests run from the repo root)", path);
	return b;
}

static tj *fixture_json(const char *name)
{
	size_t n;
	uint8_t *b = fixture(name, &n);
	b = realloc(b, n + 1);
	b[n] = 0;
	tj *j = tj_parse((const char *)b);
	free(b);
	return j;
}

static gob_dec *new_dec(void)
{
	gob_dec *d;
	assert_int_equal(gob_dec_new(NULL, 0, &d, NULL), 0);
	return d;
}

/* Decodes exactly one value; returns rc, and the error text in err. */
static int decode(gob_dec *d, const uint8_t *b, size_t n, const gob_value **v, ms_err *err)
{
	gob_dec_reset(d, b, n);
	return gob_dec_one(d, v, err);
}

static void assert_bytes(const uint8_t *p, size_t n, const uint8_t *want, size_t wn)
{
	assert_int_equal(n, wn);
	if (n)
		assert_memory_equal(p, want, n);
}

/* ---- the fixture blobs, against their JSON ---- */
static void test_kv_blobs(void **state)
{
	const char *names[] = {"kv_all_zero", "kv_boundaries", "kv_max", "kv_negative", "kv_only_key"};
	gob_dec *d = new_dec();
	for (size_t i = 0; i < MS_ARRAY_LEN(names); i++) {
		char p[64];
		size_t n, kn, vn;
		snprintf(p, sizeof p, "blobs/%s.gob", names[i]);
		uint8_t *b = fixture(p, &n);
		snprintf(p, sizeof p, "blobs/%s.json", names[i]);
		tj *j = fixture_json(p);
		legacy_kv kv;
		ms_err err = {0};
		int rc = legacy_kv_from_gob(d, b, n, &kv, NULL, &err);
		if (rc)
			fail_msg("%s: %s", names[i], err.msg);
		uint8_t *k = tu_b64_field(tj_get(j, "Key"), &kn), *v = tu_b64_field(tj_get(j, "Value"), &vn);
		assert_bytes(kv.key, kv.key_len, k, kn);
		assert_bytes(kv.value, kv.value_len, v, vn);
		assert_int_equal(kv.create_rev, tj_int(tj_get(j, "CreateRevision")));
		assert_int_equal(kv.mod_rev, tj_int(tj_get(j, "ModRevision")));
		assert_int_equal(kv.version, tj_int(tj_get(j, "Version")));
		assert_int_equal(kv.lease, tj_int(tj_get(j, "Lease")));
		free(k);
		free(v);
		free(b);
		tj_free(j);
	}
	gob_dec_del(d);
}

static void test_lease_blobs(void **state)
{
	const char *names[] = {"lease_empty_keys", "lease_many_keys", "lease_zero_time"};
	gob_dec *d = new_dec();
	for (size_t i = 0; i < MS_ARRAY_LEN(names); i++) {
		char p[64];
		size_t n;
		snprintf(p, sizeof p, "blobs/%s.gob", names[i]);
		uint8_t *b = fixture(p, &n);
		snprintf(p, sizeof p, "blobs/%s.json", names[i]);
		tj *j = fixture_json(p);
		legacy_lease l;
		ms_err err = {0};
		if (legacy_lease_from_gob(d, b, n, &l, NULL, &err))
			fail_msg("%s: %s", names[i], err.msg);
		assert_int_equal(l.id, tj_int(tj_get(j, "ID")));
		assert_int_equal(l.ttl, tj_int(tj_get(j, "TTL")));
		char ts[48];
		gob_time_format(&l.grant, ts, sizeof ts);
		assert_string_equal(ts, tj_get(j, "GrantTime")->str);
		const tj *keys = tj_get(j, "Keys");
		size_t want = keys && keys->kind == TJ_OBJ ? keys->n : 0;
		assert_int_equal(l.nkeys, want);
		for (size_t k = 0; k < l.nkeys; k++) {
			const gob_value *kv = l.pairs[2 * k], *bv = l.pairs[2 * k + 1];
			assert_int_equal(kv->kind, GOB_STRING);
			assert_int_equal(bv->kind, GOB_BOOL);
			char key[64];
			snprintf(key, sizeof key, "%.*s", (int)kv->bytes.len, (const char *)kv->bytes.p);
			const tj *jb = tj_get(keys, key);
			assert_non_null(jb);
			assert_int_equal(bv->b, jb->b);
		}
		free(b);
		tj_free(j);
	}
	gob_dec_del(d);
}

static void test_lease_grant_time(void **state)
{
	size_t n;
	uint8_t *b = fixture("blobs/lease_many_keys.gob", &n);
	gob_dec *d = new_dec();
	legacy_lease l;
	assert_int_equal(legacy_lease_from_gob(d, b, n, &l, NULL, NULL), 0);
	int64_t ns;
	assert_int_equal(gob_time_unix_nano(&l.grant, &ns), 0);
	assert_int_equal(ns, 1761883200123456789LL); /* 2025-10-31T04:00:00.123456789Z */
	assert_int_equal(l.grant.offset_min, 480);
	free(b);
	b = fixture("blobs/lease_zero_time.gob", &n);
	assert_int_equal(legacy_lease_from_gob(d, b, n, &l, NULL, NULL), 0);
	assert_int_equal(l.grant.sec, 0);
	assert_true(l.grant.utc);
	assert_int_equal(gob_time_unix_nano(&l.grant, &ns), MS_EINVAL); /* year 1 is outside int64 ns */
	free(b);
	gob_dec_del(d);
}

static void test_revision_blobs(void **state)
{
	const char *names[] = {"revision_small", "revision_large"};
	gob_dec *d = new_dec();
	for (size_t i = 0; i < MS_ARRAY_LEN(names); i++) {
		char p[64];
		size_t n, jn;
		snprintf(p, sizeof p, "blobs/%s.gob", names[i]);
		uint8_t *b = fixture(p, &n);
		snprintf(p, sizeof p, "blobs/%s.json", names[i]);
		uint8_t *jt = fixture(p, &jn);
		jt = realloc(jt, jn + 1);
		jt[jn] = 0;
		int64_t rev;
		assert_int_equal(legacy_int_from_gob(d, b, n, &rev, NULL, NULL), 0);
		assert_int_equal(rev, strtoll((char *)jt, NULL, 10));
		free(b);
		free(jt);
	}
	gob_dec_del(d);
}

/* ---- the general decoder, on streams from Go (tests/fixtures/gob/gen) ---- */
static const gob_value *field(const gob_value *st, const char *name)
{
	bool known;
	const gob_value *v = gob_struct_get(st, name, &known);
	if (!known)
		fail_msg("no field %s", name);
	return v;
}

static void assert_str(const gob_value *v, const char *s)
{
	assert_non_null(v);
	assert_true(v->kind == GOB_STRING || v->kind == GOB_BYTES);
	assert_bytes(v->bytes.p, v->bytes.len, (const uint8_t *)s, strlen(s));
}

static void test_all_kinds(void **state)
{
	size_t n;
	uint8_t *b = fixture("types/all_kinds.gob", &n);
	gob_dec *d = new_dec();
	const gob_value *v;
	ms_err err = {0};
	if (decode(d, b, n, &v, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(v->kind, GOB_STRUCT);
	assert_true(gob_type_named(v->type, "AllKinds"));
	assert_true(field(v, "B")->b);
	assert_int_equal(field(v, "I")->i, -1234567890123LL);
	assert_int_equal(field(v, "U")->kind, GOB_UINT);
	assert_true(field(v, "U")->u == UINT64_MAX);
	assert_true(field(v, "F")->f == 17.0);
	assert_true(field(v, "C")->c.re == 1.5 && field(v, "C")->c.im == -2.0);
	assert_str(field(v, "S"), "h\xc3\xa9llo");
	assert_bytes(field(v, "Bs")->bytes.p, field(v, "Bs")->bytes.len, (const uint8_t *)"\x00\x01\x02\xff", 4);
	const gob_value *ints = field(v, "Ints");
	assert_int_equal(ints->kind, GOB_SLICE);
	assert_int_equal(ints->list.n, 3);
	assert_int_equal(ints->list.elems[0]->i, 0);
	assert_int_equal(ints->list.elems[1]->i, -1);
	assert_int_equal(ints->list.elems[2]->i, 300);
	const gob_value *arr = field(v, "Arr");
	assert_int_equal(arr->kind, GOB_ARRAY);
	assert_int_equal(arr->list.n, 3);
	assert_str(arr->list.elems[0], "a");
	assert_str(arr->list.elems[1], "");
	assert_str(arr->list.elems[2], "c");
	const gob_value *m = field(v, "M");
	assert_int_equal(m->kind, GOB_MAP);
	assert_int_equal(m->list.n, 1);
	assert_str(m->list.elems[0], "one");
	assert_int_equal(m->list.elems[1]->i, 1);
	const gob_value *nested = field(v, "Nested");
	assert_int_equal(field(nested, "A")->i, 7);
	assert_str(field(nested, "B"), "in");
	const gob_value *items = field(v, "Items");
	assert_int_equal(items->list.n, 3);
	assert_int_equal(field(items->list.elems[0], "A")->i, 1);
	assert_null(field(items->list.elems[0], "B"));
	assert_str(field(items->list.elems[1], "B"), "two");
	assert_int_equal(items->list.elems[2]->st.n, 0);
	assert_int_equal(field(field(v, "P"), "A")->i, -5);
	const gob_value *t = field(v, "T");
	assert_int_equal(t->kind, GOB_ENCODED);
	assert_true(gob_type_named(t->type, "Time"));
	gob_time tm;
	assert_int_equal(gob_time_decode(t->bytes.p, t->bytes.len, &tm, NULL), 0);
	char ts[48];
	gob_time_format(&tm, ts, sizeof ts);
	assert_string_equal(ts, "2001-02-03T04:05:06.0000007-03:30");
	assert_int_equal(field(v, "Neg")->i, -128);
	assert_int_equal(field(v, "U8")->u, 200);
	const gob_value *grid = field(v, "Grid");
	assert_int_equal(grid->list.n, 2);
	assert_int_equal(grid->list.elems[1]->list.elems[0]->i, 3);
	assert_int_equal(grid->list.elems[1]->list.elems[1]->i, 4);
	assert_null(field(v, "Zero")); /* zero values are not sent */
	free(b);
	gob_dec_del(d);
}

static void test_recursive_type(void **state)
{
	size_t n;
	uint8_t *b = fixture("types/list.gob", &n);
	gob_dec *d = new_dec();
	const gob_value *v;
	assert_int_equal(decode(d, b, n, &v, NULL), 0);
	for (int want = 1; want <= 3; want++) {
		assert_non_null(v);
		assert_int_equal(field(v, "V")->i, want);
		v = field(v, "Next");
	}
	assert_null(v);
	free(b);
	gob_dec_del(d);
}

static void test_stream_of_values(void **state)
{
	size_t n;
	uint8_t *b = fixture("types/multi.gob", &n);
	gob_dec *d = new_dec();
	const gob_value *v;
	gob_dec_reset(d, b, n);
	assert_int_equal(gob_dec_next(d, &v, NULL), 1);
	assert_int_equal(field(v, "A")->i, 1);
	assert_int_equal(gob_dec_next(d, &v, NULL), 1); /* second value reuses the type */
	assert_int_equal(field(v, "A")->i, 2);
	assert_str(field(v, "B"), "y");
	assert_int_equal(gob_dec_next(d, &v, NULL), 0);
	/* gob_dec_one insists on a single value */
	ms_err err = {0};
	assert_int_equal(decode(d, b, n, &v, &err), MS_ECORRUPT);
	assert_non_null(strstr(err.msg, "after the value"));
	free(b);
	gob_dec_del(d);
}

static void test_top_level_values(void **state)
{
	gob_dec *d = new_dec();
	const gob_value *v;
	size_t n;
	uint8_t *b = fixture("types/top_slice.gob", &n);
	assert_int_equal(decode(d, b, n, &v, NULL), 0);
	assert_int_equal(v->kind, GOB_SLICE);
	assert_int_equal(v->list.n, 3);
	assert_str(v->list.elems[0], "p");
	assert_str(v->list.elems[2], "q");
	free(b);
	b = fixture("types/top_map.gob", &n);
	assert_int_equal(decode(d, b, n, &v, NULL), 0);
	assert_int_equal(v->kind, GOB_MAP);
	assert_int_equal(v->list.elems[0]->i, -3);
	assert_true(v->list.elems[1]->b);
	free(b);
	b = fixture("types/top_float.gob", &n);
	assert_int_equal(decode(d, b, n, &v, NULL), 0);
	assert_int_equal(v->kind, GOB_FLOAT);
	assert_true(v->f == 17.0);
	free(b);
	b = fixture("types/top_time.gob", &n);
	assert_int_equal(decode(d, b, n, &v, NULL), 0);
	assert_int_equal(v->kind, GOB_ENCODED);
	assert_int_equal(v->type->marshaler, GOB_M_GOB);
	gob_time tm;
	assert_int_equal(gob_time_decode(v->bytes.p, v->bytes.len, &tm, NULL), 0);
	int64_t ns;
	assert_int_equal(gob_time_unix_nano(&tm, &ns), 0);
	assert_int_equal(ns, 1761912000123456789LL);
	free(b);
	gob_dec_del(d);
}

/* The worked example in Go's encoding/gob documentation. */
static void test_go_doc_example(void **state)
{
	bb x = {.n = 0};
	put(&x, "1f ff 81 03 01 01 05 50 6f 69 6e 74 01 ff 82 00 01 02 01 01 58 01 04 00 01 01 59 01 04 00 00 00"
	        "07 ff 82 01 2c 01 42 00");
	gob_dec *d = new_dec();
	const gob_value *v;
	assert_int_equal(decode(d, x.b, x.n, &v, NULL), 0);
	assert_true(gob_type_named(v->type, "Point"));
	assert_int_equal(field(v, "X")->i, 22);
	assert_int_equal(field(v, "Y")->i, 33);
	gob_dec_del(d);
}

/* ---- broken input ---- */
static void expect_error(gob_dec *d, const uint8_t *b, size_t n, const char *needle)
{
	const gob_value *v;
	ms_err err = {0};
	int rc = decode(d, b, n, &v, &err);
	if (rc >= 0)
		fail_msg("decoded a broken stream (want \"%s\")", needle);
	if (!strstr(err.msg, needle))
		fail_msg("error \"%s\" lacks \"%s\"", err.msg, needle);
	assert_true(gob_dec_offset(d) <= n);
}

/* The KeyValue type definition from the fixtures, then a value message. */
static void kv_stream(bb *x, const char *value_hex)
{
	size_t n;
	uint8_t *b = fixture("blobs/kv_all_zero.gob", &n);
	x->n = 0;
	memcpy(x->b, b, 0x62); /* the type definition message */
	x->n = 0x62;
	free(b);
	bb m = {.n = 0};
	put(&m, value_hex);
	put_msg(x, &m);
}

static void test_truncated(void **state)
{
	const char *names[] = {"blobs/kv_max.gob", "blobs/lease_many_keys.gob", "types/all_kinds.gob",
	                       "blobs/revision_large.gob"};
	gob_dec *d = new_dec();
	for (size_t i = 0; i < MS_ARRAY_LEN(names); i++) {
		size_t n;
		uint8_t *b = fixture(names[i], &n);
		for (size_t cut = 0; cut < n; cut++) {
			uint8_t *c = malloc(cut + 1); /* exact size so ASan sees overreads */
			memcpy(c, b, cut);
			const gob_value *v;
			int rc = decode(d, c, cut, &v, NULL);
			if (rc >= 0)
				fail_msg("%s cut at %zu decoded", names[i], cut);
			free(c);
		}
		free(b);
	}
	gob_dec_del(d);
}

static void test_mutated_bytes_never_crash(void **state)
{
	const char *names[] = {"blobs/kv_max.gob", "blobs/lease_many_keys.gob", "types/all_kinds.gob",
	                       "types/list.gob"};
	static const uint8_t vals[] = {0x00, 0x01, 0x7f, 0x80, 0x81, 0xf7, 0xf8, 0xfc, 0xff};
	gob_dec *d = new_dec();
	size_t decoded = 0, refused = 0;
	for (size_t i = 0; i < MS_ARRAY_LEN(names); i++) {
		size_t n;
		uint8_t *b = fixture(names[i], &n);
		uint8_t *c = malloc(n);
		for (size_t pos = 0; pos < n; pos++) {
			for (size_t k = 0; k < MS_ARRAY_LEN(vals); k++) {
				memcpy(c, b, n);
				c[pos] = vals[k];
				const gob_value *v;
				ms_err err = {0};
				int rc = decode(d, c, n, &v, &err);
				if (rc == 0)
					decoded++;
				else
					refused++;
				assert_true(rc == 0 || rc == MS_ECORRUPT || rc == MS_EUNSUPPORTED);
				assert_true(rc == 0 || err.msg[0]);
			}
		}
		free(c);
		free(b);
	}
	assert_true(refused > 0 && decoded > 0);
	gob_dec_del(d);
}

static void test_huge_lengths(void **state)
{
	gob_dec *d = new_dec();
	bb x;
	/* Key claims 2^32-1 bytes */
	kv_stream(&x, "ff 82 01 fc ff ff ff ff 61 00");
	expect_error(d, x.b, x.n, "bytes length 4294967295 exceeds");
	/* Key claims 2^64-1 bytes */
	kv_stream(&x, "ff 82 01 f8 ff ff ff ff ff ff ff ff 61 00");
	expect_error(d, x.b, x.n, "exceeds");
	/* a 9-byte unsigned integer */
	kv_stream(&x, "ff 82 03 f7 01 02 03 04 05 06 07 08 09 00");
	expect_error(d, x.b, x.n, "longer than 8 bytes");
	/* a message longer than the stream */
	x.n = 0;
	put(&x, "fc 7f ff ff ff 04 00 0e");
	expect_error(d, x.b, x.n, "message length 2147483647");
	/* a slice count larger than the bytes left */
	size_t n;
	uint8_t *b = fixture("types/top_slice.gob", &n);
	memcpy(x.b, b, n);
	x.n = n;
	free(b);
	assert_int_equal(x.b[n - 6], 0x03); /* the element count */
	x.b[n - 6] = 0x7f;
	expect_error(d, x.b, x.n, "slice length 127 exceeds");
	/* an empty message */
	x.n = 0;
	put(&x, "00");
	expect_error(d, x.b, x.n, "zero");
	gob_dec_del(d);
}

static void test_type_id_errors(void **state)
{
	gob_dec *d = new_dec();
	bb x;
	kv_stream(&x, "ff 84 00"); /* value of type 66: never defined */
	expect_error(d, x.b, x.n, "undefined type id 66");
	kv_stream(&x, "00 00"); /* type id 0 */
	expect_error(d, x.b, x.n, "undefined type id 0");
	/* the same type defined twice */
	size_t n;
	uint8_t *b = fixture("blobs/kv_all_zero.gob", &n);
	memcpy(x.b, b, 0x62);
	memcpy(x.b + 0x62, b, n);
	x.n = 0x62 + n;
	free(b);
	expect_error(d, x.b, x.n, "redefined");
	/* a reserved id (-16, wireType) redefined */
	x.n = 0;
	put(&x, "04 1f 01 00 00");
	expect_error(d, x.b, x.n, "reserved");
	/* a struct field of a type that is never defined */
	x.n = 0;
	bb m = {.n = 0};
	put(&m, "ff 81 03 01 01");
	put_str(&m, "S");
	put(&m, "01 ff 82 00 01 01 01");
	put_str(&m, "F");
	put(&m, "01 ff 90 00 00 00"); /* field F: type 72 */
	put_msg(&x, &m);
	m.n = 0;
	put(&m, "ff 82 01 02 00");
	put_msg(&x, &m);
	expect_error(d, x.b, x.n, "undefined type id 72");
	/* interface values are refused, clearly */
	x.n = 0;
	m.n = 0;
	put(&m, "ff 81 03 01 01");
	put_str(&m, "S");
	put(&m, "01 ff 82 00 01 01 01");
	put_str(&m, "F");
	put(&m, "01 10 00 00 00"); /* field F: interface (8) */
	put_msg(&x, &m);
	m.n = 0;
	put(&m, "ff 82 01 00 00");
	put_msg(&x, &m);
	expect_error(d, x.b, x.n, "interface values are not supported");
	gob_dec_del(d);
}

static void test_structural_errors(void **state)
{
	gob_dec *d = new_dec();
	bb x;
	kv_stream(&x, "ff 82 07 02 00"); /* delta past the 6 fields */
	expect_error(d, x.b, x.n, "field delta 7 past the 6 fields");
	kv_stream(&x, "ff 82 03 02 00 00"); /* a byte left over in the value message */
	expect_error(d, x.b, x.n, "1 bytes left over after the value");
	kv_stream(&x, "ff 82 03 02"); /* no end of struct */
	expect_error(d, x.b, x.n, "unexpected end of message");
	/* a stream that is only type definitions */
	size_t n;
	uint8_t *b = fixture("blobs/kv_all_zero.gob", &n);
	expect_error(d, b, 0x62, "ends after type definitions");
	/* bytes after the last message */
	memcpy(x.b, b, n);
	x.b[n] = 0;
	x.n = n + 1;
	expect_error(d, x.b, x.n, "1 bytes after the value");
	free(b);
	/* a singleton with a non-zero delta */
	x.n = 0;
	put(&x, "03 04 01 0e");
	expect_error(d, x.b, x.n, "non-zero field delta");
	/* bool sent as 2 */
	x.n = 0;
	put(&x, "03 02 00 02");
	expect_error(d, x.b, x.n, "bool encoded as 2");
	/* arrays must have their declared length: type 65 = [2]int */
	const char *arr_def = "ff 81 01 01 01 01 41 01 ff 82 00 01 04 01 04 00 00";
	bb m = {.n = 0};
	put(&m, arr_def);
	x.n = 0;
	put_msg(&x, &m);
	m.n = 0;
	put(&m, "ff 82 00 02 02 04");
	put_msg(&x, &m);
	const gob_value *v;
	assert_int_equal(decode(d, x.b, x.n, &v, NULL), 0);
	assert_int_equal(v->list.n, 2);
	assert_int_equal(v->list.elems[1]->i, 2);
	m.n = 0;
	put(&m, arr_def);
	x.n = 0;
	put_msg(&x, &m);
	m.n = 0;
	put(&m, "ff 82 00 03 02 04 06");
	put_msg(&x, &m);
	expect_error(d, x.b, x.n, "sent with 3 elements");
	/* a type definition naming two kinds at once */
	x.n = 0;
	m.n = 0;
	put(&m, "ff 81 01 01 01 01 41 01 ff 82 00 01 04 01 04 00 01 01 01 01 41 00 01 04 00 00");
	put_msg(&x, &m);
	expect_error(d, x.b, x.n, "describes 2 kinds");
	gob_dec_del(d);
}

/* A recursive slice type nested past the depth bound. */
static void test_depth_bound(void **state)
{
	gob_dec *d = new_dec();
	for (int depth = 10; depth <= 200; depth += 190) {
		bb x = {.n = 0}, m = {.n = 0};
		put(&m, "ff 81 02 01 01 01 54 01 ff 82 00 01 ff 82 00 00"); /* type T []T */
		put_msg(&x, &m);
		size_t start = x.n;
		x.b[x.n++] = 0; /* message length, set below (< 128 is not enough: use 2 bytes) */
		x.b[x.n++] = 0;
		put(&x, "ff 82 00");
		for (int i = 0; i < depth - 1; i++)
			x.b[x.n++] = 1;
		x.b[x.n++] = 0;
		size_t len = x.n - start - 2;
		x.b[start] = 0xfe; /* two-byte count prefix: FE hi lo */
		memmove(x.b + start + 3, x.b + start + 2, len);
		x.b[start + 1] = (uint8_t)(len >> 8);
		x.b[start + 2] = (uint8_t)len;
		x.n++;
		const gob_value *v;
		ms_err err = {0};
		int rc = decode(d, x.b, x.n, &v, &err);
		if (depth < GOB_MAX_DEPTH) {
			if (rc)
				fail_msg("%s", err.msg);
		} else {
			assert_int_equal(rc, MS_ECORRUPT);
			assert_non_null(strstr(err.msg, "nested deeper"));
		}
	}
	gob_dec_del(d);
}

static void test_wrong_field_types(void **state)
{
	gob_dec *d = new_dec();
	size_t n, off = 0;
	legacy_kv kv;
	ms_err err = {0};
	uint8_t *b = fixture("types/kv_uint.gob", &n);
	assert_int_equal(legacy_kv_from_gob(d, b, n, &kv, &off, &err), MS_ECORRUPT);
	assert_non_null(strstr(err.msg, "field CreateRevision is a uint, want a int"));
	free(b);
	b = fixture("types/kv_extra.gob", &n);
	assert_int_equal(legacy_kv_from_gob(d, b, n, &kv, &off, &err), MS_ECORRUPT);
	assert_non_null(strstr(err.msg, "unknown field Owner holds a value"));
	assert_true(off > 0 && off < n);
	free(b);
	b = fixture("types/kv_extra_zero.gob", &n); /* an unknown field never sent loses nothing */
	assert_int_equal(legacy_kv_from_gob(d, b, n, &kv, &off, &err), 0);
	assert_int_equal(kv.create_rev, 3);
	free(b);
	/* a lease where a KeyValue is expected */
	b = fixture("blobs/lease_many_keys.gob", &n);
	assert_int_equal(legacy_kv_from_gob(d, b, n, &kv, &off, &err), MS_ECORRUPT);
	assert_non_null(strstr(err.msg, "unknown field"));
	free(b);
	/* a struct where the revision int is expected */
	b = fixture("blobs/kv_only_key.gob", &n);
	int64_t rev;
	assert_int_equal(legacy_int_from_gob(d, b, n, &rev, &off, &err), MS_ECORRUPT);
	assert_non_null(strstr(err.msg, "want an int"));
	free(b);
	gob_dec_del(d);
}

static void test_time_errors(void **state)
{
	gob_time t;
	uint8_t b[16] = {1};
	assert_int_equal(gob_time_decode(b, 15, &t, NULL), 0);
	assert_int_equal(gob_time_decode(b, 14, &t, NULL), MS_ECORRUPT);
	assert_int_equal(gob_time_decode(b, 16, &t, NULL), MS_ECORRUPT);
	b[0] = 3;
	assert_int_equal(gob_time_decode(b, 15, &t, NULL), MS_ECORRUPT);
	b[0] = 2;
	assert_int_equal(gob_time_decode(b, 16, &t, NULL), 0);
	b[9] = 0x3b; /* nsec = 0x3b9aca00 = 1e9 */
	b[10] = 0x9a;
	b[11] = 0xca;
	assert_int_equal(gob_time_decode(b, 16, &t, NULL), MS_ECORRUPT);
	gob_time z = {.sec = 62135596800LL, .utc = true, .offset_min = -1};
	char s[48];
	gob_time_format(&z, s, sizeof s);
	assert_string_equal(s, "1970-01-01T00:00:00Z");
}

static void test_compacted_and_ids(void **state)
{
	int64_t v;
	assert_int_equal(legacy_compacted_decode((const uint8_t *)"\0\0\0\0\0\0\x01\x92", 8, &v, NULL), 0);
	assert_int_equal(v, 402);
	assert_int_equal(legacy_compacted_decode((const uint8_t *)"\0\0\0\0\0\x01\x92", 7, &v, NULL), MS_ECORRUPT);
	assert_int_equal(legacy_compacted_decode((const uint8_t *)"\x80\0\0\0\0\0\0\0", 8, &v, NULL), MS_ECORRUPT);
	int64_t id;
	assert_int_equal(legacy_parse_id((const uint8_t *)"7587855087607742465", 19, &id), 0);
	assert_int_equal(id, 7587855087607742465LL);
	assert_int_equal(legacy_parse_id((const uint8_t *)"9223372036854775807", 19, &id), 0);
	assert_int_equal(legacy_parse_id((const uint8_t *)"9223372036854775808", 19, &id), MS_EINVAL);
	assert_int_equal(legacy_parse_id((const uint8_t *)"012", 3, &id), MS_EINVAL);
	assert_int_equal(legacy_parse_id((const uint8_t *)"-1", 2, &id), MS_EINVAL);
	assert_int_equal(legacy_parse_id((const uint8_t *)"", 0, &id), MS_EINVAL);
	assert_int_equal(legacy_parse_id((const uint8_t *)"1x", 2, &id), MS_EINVAL);
}

static void test_escape(void **state)
{
	char out[64];
	assert_string_equal(legacy_escape((const uint8_t *)"kv:a\0\xff\"\\\n", 9, out, sizeof out),
	                    "kv:a\\x00\\xff\\\"\\\\\\x0a");
	uint8_t big[100];
	memset(big, 'a', sizeof big);
	legacy_escape(big, sizeof big, out, 16);
	assert_int_equal(strlen(out), 15);
	assert_string_equal(out + 12, "...");
}

/* Every allocation failure while decoding is reported, never a crash or leak. */
static void test_alloc_failures(void **state)
{
	size_t n;
	uint8_t *b = fixture("types/all_kinds.gob", &n);
	bool succeeded = false;
	for (long k = 1; k < 200 && !succeeded; k++) {
		gob_dec *d;
		ms_alloc_fail_after(k);
		int rc = gob_dec_new(b, n, &d, NULL);
		if (rc == 0) {
			const gob_value *v;
			rc = gob_dec_one(d, &v, NULL);
			gob_dec_del(d);
		}
		ms_alloc_fail_after(0);
		assert_true(rc == 0 || rc == MS_ENOMEM);
		succeeded = rc == 0;
	}
	assert_true(succeeded);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kv_blobs),
	    cmocka_unit_test(test_lease_blobs),
	    cmocka_unit_test(test_lease_grant_time),
	    cmocka_unit_test(test_revision_blobs),
	    cmocka_unit_test(test_all_kinds),
	    cmocka_unit_test(test_recursive_type),
	    cmocka_unit_test(test_stream_of_values),
	    cmocka_unit_test(test_top_level_values),
	    cmocka_unit_test(test_go_doc_example),
	    cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_mutated_bytes_never_crash),
	    cmocka_unit_test(test_huge_lengths),
	    cmocka_unit_test(test_type_id_errors),
	    cmocka_unit_test(test_structural_errors),
	    cmocka_unit_test(test_depth_bound),
	    cmocka_unit_test(test_wrong_field_types),
	    cmocka_unit_test(test_time_errors),
	    cmocka_unit_test(test_compacted_and_ids),
	    cmocka_unit_test(test_escape),
	    cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
