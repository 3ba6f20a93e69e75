/* gob.c — strict decoder for Go encoding/gob streams into a generic value tree. */
#include "tools/migrate/gob.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- types known before any stream starts --------------------------------
 * The basic types 1..8, and the types that describe types (wireType and its
 * parts, ids 16..23 in Go), so that a type definition is decoded by the same
 * strict code as any value. Id 24 stands for Go's gobEncoderType, which the
 * Go side numbers later; it only ever appears inside wireType. */
enum {
	TID_WIRE = 16,
	TID_ARRAY_T = 17,
	TID_COMMON = 18,
	TID_SLICE_T = 19,
	TID_STRUCT_T = 20,
	TID_FIELD_T = 21,
	TID_FIELD_SLICE = 22,
	TID_MAP_T = 23,
	TID_GOBENC_T = 24
};

#define F(n, id)                                                                                                       \
	{                                                                                                              \
		n, sizeof(n) - 1, id                                                                                   \
	}
static const gob_field wire_fields[] = {
    F("ArrayT", TID_ARRAY_T),          F("SliceT", TID_SLICE_T),
    F("StructT", TID_STRUCT_T),        F("MapT", TID_MAP_T),
    F("GobEncoderT", TID_GOBENC_T),    F("BinaryMarshalerT", TID_GOBENC_T),
    F("TextMarshalerT", TID_GOBENC_T),
};
static const gob_field common_fields[] = {F("Name", GOB_TID_STRING), F("Id", GOB_TID_INT)};
static const gob_field array_fields[] = {F("CommonType", TID_COMMON), F("Elem", GOB_TID_INT), F("Len", GOB_TID_INT)};
static const gob_field slice_fields[] = {F("CommonType", TID_COMMON), F("Elem", GOB_TID_INT)};
static const gob_field struct_fields[] = {F("CommonType", TID_COMMON), F("Field", TID_FIELD_SLICE)};
static const gob_field field_fields[] = {F("Name", GOB_TID_STRING), F("Id", GOB_TID_INT)};
static const gob_field map_fields[] = {F("CommonType", TID_COMMON), F("Key", GOB_TID_INT), F("Elem", GOB_TID_INT)};
static const gob_field gobenc_fields[] = {F("CommonType", TID_COMMON)};
#undef F

#define BASIC(i, k, n)                                                                                                 \
	{                                                                                                              \
		.id = i, .kind = k, .name = n, .name_len = sizeof(n) - 1                                               \
	}
#define STRUCT(i, n, f)                                                                                                \
	{                                                                                                              \
		.id = i, .kind = GOB_STRUCT, .name = n, .name_len = sizeof(n) - 1, .nfields = MS_ARRAY_LEN(f),         \
		.fields = f                                                                                            \
	}
static const gob_type builtin_types[] = {
    BASIC(GOB_TID_BOOL, GOB_BOOL, "bool"),
    BASIC(GOB_TID_INT, GOB_INT, "int"),
    BASIC(GOB_TID_UINT, GOB_UINT, "uint"),
    BASIC(GOB_TID_FLOAT, GOB_FLOAT, "float"),
    BASIC(GOB_TID_BYTES, GOB_BYTES, "bytes"),
    BASIC(GOB_TID_STRING, GOB_STRING, "string"),
    BASIC(GOB_TID_COMPLEX, GOB_COMPLEX, "complex"),
    BASIC(GOB_TID_INTERFACE, GOB_INTERFACE, "interface"),
    STRUCT(TID_WIRE, "wireType", wire_fields),
    STRUCT(TID_ARRAY_T, "arrayType", array_fields),
    STRUCT(TID_COMMON, "CommonType", common_fields),
    STRUCT(TID_SLICE_T, "sliceType", slice_fields),
    STRUCT(TID_STRUCT_T, "structType", struct_fields),
    STRUCT(TID_FIELD_T, "fieldType", field_fields),
    {.id = TID_FIELD_SLICE, .kind = GOB_SLICE, .name = "[]*fieldType", .name_len = 12, .elem = TID_FIELD_T},
    STRUCT(TID_MAP_T, "mapType", map_fields),
    STRUCT(TID_GOBENC_T, "gobEncoderType", gobenc_fields),
};
#undef BASIC
#undef STRUCT

/* ---- the decoder ---- */
typedef struct arena_blk {
	struct arena_blk *next;
	size_t cap, used;
	_Alignas(16) unsigned char data[];
} arena_blk;

#define TYPE_SLOTS (2 * GOB_MAX_TYPES) /* open-addressing table, load <= 1/2 */

struct gob_dec {
	const uint8_t *buf;
	size_t len, pos;
	size_t msg_end; /* reads stop here: the end of the current message */
	int depth;
	bool failed;
	ms_err *err;
	arena_blk *arena;       /* newest first; the last one is kept by reset */
	const gob_type **slots; /* user types by id */
	int64_t *used_slots;    /* slot indexes in use, to clear them on reset */
	size_t ntypes;
	gob_member *scratch; /* members of the structs being decoded, innermost last */
	size_t nscratch, cap_scratch;
};

static int dec_fail(gob_dec *d, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int dec_fail(gob_dec *d, int code, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	d->failed = true;
	return ms_err_set(d->err, code, "gob: offset %zu: %s", d->pos, msg);
}

static void *arena_alloc(gob_dec *d, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	arena_blk *b = d->arena;
	if (!b || b->cap - b->used < n) {
		size_t cap = b ? b->cap * 2 : 4096;
		if (cap > (1u << 20))
			cap = 1u << 20;
		if (cap < n)
			cap = n;
		arena_blk *nb = ms_malloc(sizeof *nb + cap);
		if (!nb)
			return NULL;
		nb->cap = cap;
		nb->used = 0;
		nb->next = b;
		d->arena = b = nb;
	}
	void *p = b->data + b->used;
	b->used += n;
	return p;
}

int gob_dec_new(const uint8_t *buf, size_t len, gob_dec **out, ms_err *err)
{
	gob_dec *d = ms_calloc(1, sizeof *d);
	if (!d)
		goto fail_dec;
	d->slots = ms_calloc(TYPE_SLOTS, sizeof *d->slots);
	if (!d->slots)
		goto fail_slots;
	d->used_slots = ms_malloc(GOB_MAX_TYPES * sizeof *d->used_slots);
	if (!d->used_slots)
		goto fail_used;
	gob_dec_reset(d, buf, len);
	*out = d;
	return 0;
fail_used:
	ms_free(d->slots);
fail_slots:
	ms_free(d);
fail_dec:
	return ms_err_set(err, MS_ENOMEM, "gob: out of memory");
}

void gob_dec_reset(gob_dec *d, const uint8_t *buf, size_t len)
{
	while (d->arena && d->arena->next) {
		arena_blk *n = d->arena->next;
		ms_free(d->arena);
		d->arena = n;
	}
	if (d->arena)
		d->arena->used = 0;
	for (size_t i = 0; i < d->ntypes; i++)
		d->slots[d->used_slots[i]] = NULL;
	d->ntypes = 0;
	d->nscratch = 0;
	d->buf = buf;
	d->len = len;
	d->pos = 0;
	d->msg_end = len;
	d->depth = 0;
	d->failed = false;
	d->err = NULL;
}

void gob_dec_del(gob_dec *d)
{
	if (!d)
		return;
	while (d->arena) {
		arena_blk *n = d->arena->next;
		ms_free(d->arena);
		d->arena = n;
	}
	ms_free(d->slots);
	ms_free(d->used_slots);
	ms_free(d->scratch);
	ms_free(d);
}

size_t gob_dec_offset(const gob_dec *d)
{
	return d->pos;
}

/* ---- type table ---- */
static size_t slot_of(int64_t id)
{
	return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 53) % TYPE_SLOTS;
}

static const gob_type *user_type(const gob_dec *d, int64_t id)
{
	for (size_t s = slot_of(id);; s = (s + 1) % TYPE_SLOTS) {
		const gob_type *t = d->slots[s];
		if (!t || t->id == id)
			return t;
	}
}

static int add_type(gob_dec *d, const gob_type *t)
{
	if (d->ntypes >= GOB_MAX_TYPES)
		return dec_fail(d, MS_ECORRUPT, "more than %d type definitions", GOB_MAX_TYPES);
	size_t s = slot_of(t->id);
	while (d->slots[s])
		s = (s + 1) % TYPE_SLOTS;
	d->slots[s] = t;
	d->used_slots[d->ntypes++] = (int64_t)s;
	return 0;
}

/* Resolves a type id used by a value. Builtin "type of types" ids are only
 * reachable from the builtin types themselves. */
static const gob_type *find_type(const gob_dec *d, int64_t id, bool internal)
{
	if (id >= GOB_TID_FIRST_USER)
		return user_type(d, id);
	for (size_t i = 0; i < MS_ARRAY_LEN(builtin_types); i++)
		if (builtin_types[i].id == id)
			return (internal || id <= GOB_TID_INTERFACE) ? &builtin_types[i] : NULL;
	return NULL;
}

/* ---- primitives ---- */
static int rd_uint(gob_dec *d, uint64_t *v)
{
	if (d->pos >= d->msg_end)
		return dec_fail(d, MS_ECORRUPT, "unexpected end of message (message ends at %zu)", d->msg_end);
	uint8_t b = d->buf[d->pos];
	if (b <= 0x7f) {
		d->pos++;
		*v = b;
		return 0;
	}
	size_t n = (size_t)(-(int)(int8_t)b);
	if (n > 8)
		return dec_fail(d, MS_ECORRUPT, "unsigned integer longer than 8 bytes (byte count %zu)", n);
	if (d->msg_end - d->pos - 1 < n)
		return dec_fail(d, MS_ECORRUPT, "unsigned integer of %zu bytes exceeds the message", n);
	uint64_t x = 0;
	for (size_t i = 1; i <= n; i++)
		x = x << 8 | d->buf[d->pos + i];
	d->pos += n + 1;
	*v = x;
	return 0;
}

static int rd_int(gob_dec *d, int64_t *v)
{
	uint64_t u;
	int rc = rd_uint(d, &u);
	if (rc)
		return rc;
	*v = (u & 1) ? (int64_t) ~(u >> 1) : (int64_t)(u >> 1);
	return 0;
}

static int rd_float(gob_dec *d, double *v)
{
	uint64_t u;
	int rc = rd_uint(d, &u);
	if (rc)
		return rc;
	u = __builtin_bswap64(u); /* gob sends the bytes reversed: exponent first */
	memcpy(v, &u, sizeof *v);
	return 0;
}

/* A count of items that each take at least `per` bytes of what is left. */
static int rd_count(gob_dec *d, size_t per, const char *what, size_t *n)
{
	uint64_t u;
	size_t at = d->pos;
	int rc = rd_uint(d, &u);
	if (rc)
		return rc;
	size_t left = d->msg_end - d->pos;
	if (u > left / per) {
		d->pos = at;
		return dec_fail(d, MS_ECORRUPT, "%s length %llu exceeds the %zu bytes left in the message", what,
		                (unsigned long long)u, left);
	}
	*n = (size_t)u;
	return 0;
}

static gob_value *new_value(gob_dec *d, const gob_type *t)
{
	gob_value *v = arena_alloc(d, sizeof *v);
	if (!v) {
		dec_fail(d, MS_ENOMEM, "out of memory");
		return NULL;
	}
	memset(v, 0, sizeof *v);
	v->kind = t->kind;
	v->type = t;
	return v;
}

static int resolve(gob_dec *d, const gob_type *parent, int64_t id, const gob_type **out)
{
	const gob_type *t = find_type(d, id, parent->id < GOB_TID_FIRST_USER);
	if (!t)
		return dec_fail(d, MS_ECORRUPT, "type %.*s refers to undefined type id %lld", (int)parent->name_len,
		                parent->name, (long long)id);
	*out = t;
	return 0;
}

static int decode_value(gob_dec *d, const gob_type *t, const gob_value **out);

static int push_member(gob_dec *d, size_t index, const gob_value *v)
{
	if (d->nscratch == d->cap_scratch) {
		size_t cap = d->cap_scratch ? d->cap_scratch * 2 : 64;
		gob_member *m = ms_realloc(d->scratch, cap * sizeof *m);
		if (!m)
			return dec_fail(d, MS_ENOMEM, "out of memory");
		d->scratch = m;
		d->cap_scratch = cap;
	}
	d->scratch[d->nscratch++] = (gob_member){index, v};
	return 0;
}

/* (field delta, value)* 0: deltas are positive, so fields come in order. */
static int decode_struct(gob_dec *d, const gob_type *t, gob_value *v)
{
	size_t base = d->nscratch;
	size_t field = SIZE_MAX; /* Go starts at -1 */
	int rc;
	for (;;) {
		uint64_t delta;
		size_t at = d->pos;
		if ((rc = rd_uint(d, &delta)))
			return rc;
		if (delta == 0)
			break;
		size_t left = t->nfields - (field + 1); /* fields after the current one */
		if (delta > left) {
			d->pos = at;
			return dec_fail(d, MS_ECORRUPT, "field delta %llu past the %zu fields of struct %.*s",
			                (unsigned long long)delta, t->nfields, (int)t->name_len, t->name);
		}
		field += (size_t)delta;
		const gob_type *ft = NULL;
		const gob_value *fv;
		if ((rc = resolve(d, t, t->fields[field].type_id, &ft)) || (rc = decode_value(d, ft, &fv)) ||
		    (rc = push_member(d, field, fv)))
			return rc;
	}
	size_t n = d->nscratch - base;
	gob_member *m = NULL;
	if (n) {
		m = arena_alloc(d, n * sizeof *m);
		if (!m)
			return dec_fail(d, MS_ENOMEM, "out of memory");
		memcpy(m, d->scratch + base, n * sizeof *m);
	}
	d->nscratch = base;
	v->st.n = n;
	v->st.members = m;
	return 0;
}

static int decode_list(gob_dec *d, const gob_type *t, gob_value *v)
{
	int rc;
	size_t n, per = t->kind == GOB_MAP ? 2 : 1;
	size_t at = d->pos;
	if ((rc = rd_count(d, per, gob_kind_name(t->kind), &n)))
		return rc;
	if (t->kind == GOB_ARRAY && (uint64_t)n != (uint64_t)t->len) {
		d->pos = at;
		return dec_fail(d, MS_ECORRUPT, "array %.*s of length %lld sent with %zu elements", (int)t->name_len,
		                t->name, (long long)t->len, n);
	}
	const gob_type *et = NULL, *kt = NULL;
	if ((rc = resolve(d, t, t->elem, &et)))
		return rc;
	if (t->kind == GOB_MAP && (rc = resolve(d, t, t->key, &kt)))
		return rc;
	const gob_value **elems = NULL;
	if (n) {
		elems = arena_alloc(d, n * per * sizeof *elems);
		if (!elems)
			return dec_fail(d, MS_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		if (kt && (rc = decode_value(d, kt, &elems[2 * i])))
			return rc;
		if ((rc = decode_value(d, et, &elems[per * i + per - 1])))
			return rc;
	}
	v->list.n = n;
	v->list.elems = elems;
	return 0;
}

static int decode_value(gob_dec *d, const gob_type *t, const gob_value **out)
{
	int rc = 0;
	if (t->kind == GOB_INTERFACE)
		return dec_fail(d, MS_EUNSUPPORTED, "interface values are not supported");
	if (d->depth >= GOB_MAX_DEPTH)
		return dec_fail(d, MS_ECORRUPT, "values nested deeper than %d", GOB_MAX_DEPTH);
	gob_value *v = new_value(d, t);
	if (!v)
		return MS_ENOMEM;
	size_t at = d->pos;
	v->offset = at;
	d->depth++;
	switch (t->kind) {
	case GOB_BOOL: {
		uint64_t u;
		if ((rc = rd_uint(d, &u)))
			break;
		if (u > 1) {
			d->pos = at;
			rc = dec_fail(d, MS_ECORRUPT, "bool encoded as %llu", (unsigned long long)u);
		}
		v->b = u == 1;
		break;
	}
	case GOB_INT:
		rc = rd_int(d, &v->i);
		break;
	case GOB_UINT:
		rc = rd_uint(d, &v->u);
		break;
	case GOB_FLOAT:
		rc = rd_float(d, &v->f);
		break;
	case GOB_COMPLEX:
		if (!(rc = rd_float(d, &v->c.re)))
			rc = rd_float(d, &v->c.im);
		break;
	case GOB_BYTES:
	case GOB_STRING:
	case GOB_ENCODED: {
		size_t n;
		if ((rc = rd_count(d, 1, gob_kind_name(t->kind), &n)))
			break;
		v->bytes.p = d->buf + d->pos;
		v->bytes.len = n;
		d->pos += n;
		break;
	}
	case GOB_STRUCT:
		rc = decode_struct(d, t, v);
		break;
	case GOB_SLICE:
	case GOB_ARRAY:
	case GOB_MAP:
		rc = decode_list(d, t, v);
		break;
	case GOB_INTERFACE:
		break; /* refused above */
	}
	d->depth--;
	*out = v;
	return rc;
}

/* ---- type definitions: a wireType value turned into a gob_type ---- */
static const gob_value *member(const gob_value *st, size_t index)
{
	for (size_t i = 0; i < st->st.n; i++)
		if (st->st.members[i].index == index)
			return st->st.members[i].value;
	return NULL;
}
static int64_t member_int(const gob_value *st, size_t index)
{
	const gob_value *v = member(st, index);
	return v ? v->i : 0;
}

static int check_elem_id(gob_dec *d, int64_t id, const char *what)
{
	if (id <= 0)
		return dec_fail(d, MS_ECORRUPT, "type definition has %s type id %lld", what, (long long)id);
	return 0;
}

static int define_type(gob_dec *d, int64_t id, const gob_value *w)
{
	int rc;
	if (w->st.n != 1)
		return dec_fail(d, MS_ECORRUPT, "type definition of id %lld describes %zu kinds (want exactly 1)",
		                (long long)id, w->st.n);
	size_t which = w->st.members[0].index;
	const gob_value *body = w->st.members[0].value;
	gob_type *t = arena_alloc(d, sizeof *t);
	if (!t)
		return dec_fail(d, MS_ENOMEM, "out of memory");
	memset(t, 0, sizeof *t);
	t->id = id;
	const gob_value *common = member(body, 0), *name = common ? member(common, 0) : NULL;
	if (name) {
		t->name = (const char *)name->bytes.p;
		t->name_len = name->bytes.len;
	} else {
		t->name = "";
	}
	switch (which) {
	case 0: /* ArrayT */
		t->kind = GOB_ARRAY;
		t->elem = member_int(body, 1);
		t->len = member_int(body, 2);
		if ((rc = check_elem_id(d, t->elem, "array element")))
			return rc;
		if (t->len < 0)
			return dec_fail(d, MS_ECORRUPT, "array type with length %lld", (long long)t->len);
		break;
	case 1: /* SliceT */
		t->kind = GOB_SLICE;
		t->elem = member_int(body, 1);
		if ((rc = check_elem_id(d, t->elem, "slice element")))
			return rc;
		break;
	case 2: { /* StructT */
		t->kind = GOB_STRUCT;
		const gob_value *fs = member(body, 1);
		size_t n = fs ? fs->list.n : 0;
		gob_field *f = NULL;
		if (n) {
			f = arena_alloc(d, n * sizeof *f);
			if (!f)
				return dec_fail(d, MS_ENOMEM, "out of memory");
		}
		for (size_t i = 0; i < n; i++) {
			const gob_value *fv = fs->list.elems[i], *fname = member(fv, 0);
			f[i].name = fname ? (const char *)fname->bytes.p : "";
			f[i].name_len = fname ? fname->bytes.len : 0;
			f[i].type_id = member_int(fv, 1);
			if ((rc = check_elem_id(d, f[i].type_id, "struct field")))
				return rc;
		}
		t->nfields = n;
		t->fields = f;
		break;
	}
	case 3: /* MapT */
		t->kind = GOB_MAP;
		t->key = member_int(body, 1);
		t->elem = member_int(body, 2);
		if ((rc = check_elem_id(d, t->key, "map key")) || (rc = check_elem_id(d, t->elem, "map element")))
			return rc;
		break;
	default: /* GobEncoderT, BinaryMarshalerT, TextMarshalerT */
		t->kind = GOB_ENCODED;
		t->marshaler = which == 4 ? GOB_M_GOB : which == 5 ? GOB_M_BINARY : GOB_M_TEXT;
		break;
	}
	return add_type(d, t);
}

/* Reads the byte count of the next message and limits reads to it. */
static int begin_message(gob_dec *d)
{
	uint64_t n;
	int rc;
	size_t at = d->pos;
	d->msg_end = d->len;
	if ((rc = rd_uint(d, &n)))
		return rc;
	if (n == 0 || n > d->len - d->pos) {
		size_t left = d->len - d->pos;
		d->pos = at;
		return dec_fail(d, MS_ECORRUPT, "message length %llu is zero or exceeds the %zu bytes left",
		                (unsigned long long)n, left);
	}
	d->msg_end = d->pos + (size_t)n;
	return 0;
}

static int end_message(gob_dec *d, const char *what)
{
	if (d->pos != d->msg_end)
		return dec_fail(d, MS_ECORRUPT, "%zu bytes left over after the %s in its message", d->msg_end - d->pos,
		                what);
	return 0;
}

int gob_dec_next(gob_dec *d, const gob_value **out, ms_err *err)
{
	int rc;
	bool defined = false;
	d->err = err;
	if (d->failed)
		return ms_err_set(err, MS_EINVAL, "gob: decoder already failed");
	for (;;) {
		if (d->pos == d->len) {
			if (defined)
				return dec_fail(d, MS_ECORRUPT, "stream ends after type definitions, before a value");
			return 0;
		}
		if ((rc = begin_message(d)))
			return rc;
		int64_t id;
		size_t at = d->pos;
		if ((rc = rd_int(d, &id)))
			return rc;
		if (id < 0) {
			if (id == INT64_MIN || -id < GOB_TID_FIRST_USER || user_type(d, -id)) {
				d->pos = at;
				/* unsigned negation: id may be INT64_MIN (found by fuzz_gob) */
				return dec_fail(d, MS_ECORRUPT, "type id %llu redefined or reserved",
				                0ull - (unsigned long long)id);
			}
			const gob_value *w;
			if ((rc = decode_value(d, find_type(d, TID_WIRE, true), &w)) || (rc = define_type(d, -id, w)) ||
			    (rc = end_message(d, "type definition")))
				return rc;
			defined = true;
			continue;
		}
		const gob_type *t = id > 0 ? find_type(d, id, false) : NULL;
		if (!t) {
			d->pos = at;
			return dec_fail(d, MS_ECORRUPT, "value of undefined type id %lld", (long long)id);
		}
		if (t->kind != GOB_STRUCT) {
			uint64_t delta;
			if ((rc = rd_uint(d, &delta)))
				return rc;
			if (delta != 0) {
				d->pos--;
				return dec_fail(d, MS_ECORRUPT, "non-zero field delta %llu before a singleton value",
				                (unsigned long long)delta);
			}
		}
		if ((rc = decode_value(d, t, out)) || (rc = end_message(d, "value")))
			return rc;
		return 1;
	}
}

int gob_dec_one(gob_dec *d, const gob_value **out, ms_err *err)
{
	int rc = gob_dec_next(d, out, err);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return dec_fail(d, MS_ECORRUPT, "empty stream: no value");
	if (d->pos != d->len)
		return dec_fail(d, MS_ECORRUPT, "%zu bytes after the value", d->len - d->pos);
	return 0;
}

/* ---- accessors ---- */
const gob_type *gob_dec_type(const gob_dec *d, int64_t id)
{
	return find_type(d, id, false);
}

bool gob_type_named(const gob_type *t, const char *name)
{
	size_t n = strlen(name);
	return t->name_len == n && memcmp(t->name, name, n) == 0;
}

const gob_value *gob_struct_get(const gob_value *st, const char *name, bool *known)
{
	size_t n = strlen(name);
	if (known)
		*known = false;
	if (st->kind != GOB_STRUCT)
		return NULL;
	const gob_type *t = st->type;
	for (size_t i = 0; i < t->nfields; i++) {
		if (t->fields[i].name_len == n && memcmp(t->fields[i].name, name, n) == 0) {
			if (known)
				*known = true;
			return member(st, i);
		}
	}
	return NULL;
}

const char *gob_kind_name(gob_kind k)
{
	switch (k) {
	case GOB_BOOL:
		return "bool";
	case GOB_INT:
		return "int";
	case GOB_UINT:
		return "uint";
	case GOB_FLOAT:
		return "float";
	case GOB_COMPLEX:
		return "complex";
	case GOB_BYTES:
		return "bytes";
	case GOB_STRING:
		return "string";
	case GOB_STRUCT:
		return "struct";
	case GOB_SLICE:
		return "slice";
	case GOB_ARRAY:
		return "array";
	case GOB_MAP:
		return "map";
	case GOB_ENCODED:
		return "encoded";
	case GOB_INTERFACE:
		return "interface";
	}
	return "?";
}

/* ---- time.Time ---- */
#define SECS_0001_TO_1970 62135596800LL /* Go's unixToInternal */

int gob_time_decode(const uint8_t *p, size_t len, gob_time *t, ms_err *err)
{
	if (len < 1)
		return ms_err_set(err, MS_ECORRUPT, "time: empty encoding");
	if (p[0] != 1 && p[0] != 2)
		return ms_err_set(err, MS_ECORRUPT, "time: unsupported encoding version %u", p[0]);
	size_t want = p[0] == 1 ? 15 : 16;
	if (len != want)
		return ms_err_set(err, MS_ECORRUPT, "time: %zu bytes, version %u wants %zu", len, p[0], want);
	t->sec = (int64_t)ms_get_u64be(p + 1);
	uint32_t ns = (uint32_t)p[9] << 24 | (uint32_t)p[10] << 16 | (uint32_t)p[11] << 8 | p[12];
	if (ns >= 1000000000u)
		return ms_err_set(err, MS_ECORRUPT, "time: nanoseconds %u out of range", ns);
	t->nsec = (int32_t)ns;
	t->offset_min = (int16_t)((uint16_t)p[13] << 8 | p[14]);
	t->utc = t->offset_min == -1;
	t->offset_sec = p[0] == 2 ? (int8_t)p[15] : 0;
	if (t->utc && t->offset_sec != 0)
		return ms_err_set(err, MS_ECORRUPT, "time: UTC with a seconds offset");
	return 0;
}

int gob_time_unix_nano(const gob_time *t, int64_t *out)
{
	int64_t s, ns;
	if (__builtin_sub_overflow(t->sec, SECS_0001_TO_1970, &s) || __builtin_mul_overflow(s, 1000000000LL, &ns) ||
	    __builtin_add_overflow(ns, (int64_t)t->nsec, out))
		return MS_EINVAL;
	return 0;
}

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *dd)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*dd = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void gob_time_format(const gob_time *t, char *buf, size_t cap)
{
	int64_t off = t->utc ? 0 : (int64_t)t->offset_min * 60 + t->offset_sec;
	/* 128-bit: sec is any int64 a stream carries (fuzz_gob found the
	 * overflow near INT64_MIN); the day count then fits in 64 bits */
	__int128 local = (__int128)t->sec - SECS_0001_TO_1970 + off;
	int64_t days = (int64_t)(local >= 0 ? local / 86400 : -((-local + 86399) / 86400));
	int64_t sod = (int64_t)(local - (__int128)days * 86400);
	int64_t y;
	unsigned mo, dd;
	civil_from_days(days, &y, &mo, &dd);
	char frac[12] = "";
	if (t->nsec) {
		snprintf(frac, sizeof frac, ".%09d", (int)t->nsec);
		size_t n = strlen(frac);
		while (frac[n - 1] == '0')
			frac[--n] = 0;
	}
	char zone[8] = "Z";
	if (off != 0) { /* Go prints "Z" for any zero offset */
		int om = t->offset_min < 0 ? -t->offset_min : t->offset_min;
		snprintf(zone, sizeof zone, "%c%02d:%02d", t->offset_min < 0 ? '-' : '+', om / 60 % 100, om % 60);
	}
	snprintf(buf, cap, "%04lld-%02u-%02uT%02d:%02d:%02d%s%s", (long long)y, mo, dd, (int)(sod / 3600),
	         (int)(sod / 60 % 60), (int)(sod % 60), frac, zone);
}
