/* legacy.c — checks decoded gob values against the Go MetaStore's record types. */
#include "tools/migrate/legacy.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct want_field {
	const char *name;
	gob_kind kind, alt; /* alt: a second accepted kind, or 0 */
} want_field;

static int bad(size_t *off, size_t at, ms_err *err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int bad(size_t *off, size_t at, ms_err *err, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (off)
		*off = at;
	return ms_err_set(err, MS_ECORRUPT, "offset %zu: %s", at, msg);
}

/* The struct's type may only declare known fields with the right kinds, or
 * unknown fields that were not transmitted (their zero value is lost by
 * nobody). */
static int check_struct(gob_dec *d, const gob_value *v, const char *what, const want_field *w, size_t nw, size_t *off,
                        ms_err *err)
{
	if (v->kind != GOB_STRUCT)
		return bad(off, v->offset, err, "%s: want a struct, got a %s", what, gob_kind_name(v->kind));
	const gob_type *t = v->type;
	for (size_t i = 0; i < t->nfields; i++) {
		const gob_field *f = &t->fields[i];
		char fname[64];
		snprintf(fname, sizeof fname, "%.*s", (int)MS_MIN(f->name_len, 60), f->name);
		size_t j;
		for (j = 0; j < nw; j++)
			if (strlen(w[j].name) == f->name_len && memcmp(w[j].name, f->name, f->name_len) == 0)
				break;
		if (j == nw) {
			for (size_t m = 0; m < v->st.n; m++)
				if (v->st.members[m].index == i)
					return bad(off, v->st.members[m].value->offset, err,
					           "%s: unknown field %s holds a value (it would be lost)", what,
					           fname);
			continue;
		}
		const gob_type *ft = gob_dec_type(d, f->type_id);
		if (!ft)
			return bad(off, v->offset, err, "%s: field %s has an undefined type", what, fname);
		if (ft->kind != w[j].kind && ft->kind != w[j].alt)
			return bad(off, v->offset, err, "%s: field %s is a %s, want a %s", what, fname,
			           gob_kind_name(ft->kind), gob_kind_name(w[j].kind));
		if (ft->kind == GOB_MAP) { /* the only map: Lease.Keys, map[string]bool */
			const gob_type *kt = gob_dec_type(d, ft->key), *et = gob_dec_type(d, ft->elem);
			if (!kt || (kt->kind != GOB_STRING && kt->kind != GOB_BYTES) || !et || et->kind != GOB_BOOL)
				return bad(off, v->offset, err, "%s: field %s is %.*s, want map[string]bool", what,
				           fname, (int)ft->name_len, ft->name);
		}
	}
	return 0;
}

static int decode_one(gob_dec *d, const uint8_t *buf, size_t len, const gob_value **v, size_t *off, ms_err *err)
{
	gob_dec_reset(d, buf, len);
	int rc = gob_dec_one(d, v, err);
	if (rc && off)
		*off = gob_dec_offset(d);
	return rc;
}

static int64_t int_of(const gob_value *st, const char *name)
{
	const gob_value *v = gob_struct_get(st, name, NULL);
	return v ? v->i : 0;
}

int legacy_kv_from_gob(gob_dec *d, const uint8_t *buf, size_t len, legacy_kv *kv, size_t *off, ms_err *err)
{
	static const want_field fields[] = {
	    {"Key", GOB_BYTES, GOB_STRING}, {"Value", GOB_BYTES, GOB_STRING}, {"CreateRevision", GOB_INT, 0},
	    {"ModRevision", GOB_INT, 0},    {"Version", GOB_INT, 0},          {"Lease", GOB_INT, 0},
	};
	const gob_value *v;
	int rc;
	if ((rc = decode_one(d, buf, len, &v, off, err)) ||
	    (rc = check_struct(d, v, "KeyValue", fields, MS_ARRAY_LEN(fields), off, err)))
		return rc;
	memset(kv, 0, sizeof *kv);
	const gob_value *k = gob_struct_get(v, "Key", NULL), *val = gob_struct_get(v, "Value", NULL);
	if (k) {
		kv->key = k->bytes.p;
		kv->key_len = k->bytes.len;
	}
	if (val) {
		kv->value = val->bytes.p;
		kv->value_len = val->bytes.len;
	}
	kv->create_rev = int_of(v, "CreateRevision");
	kv->mod_rev = int_of(v, "ModRevision");
	kv->version = int_of(v, "Version");
	kv->lease = int_of(v, "Lease");
	return 0;
}

int legacy_lease_from_gob(gob_dec *d, const uint8_t *buf, size_t len, legacy_lease *l, size_t *off, ms_err *err)
{
	static const want_field fields[] = {
	    {"ID", GOB_INT, 0},
	    {"TTL", GOB_INT, 0},
	    {"GrantTime", GOB_ENCODED, 0},
	    {"Keys", GOB_MAP, 0},
	};
	const gob_value *v;
	int rc;
	if ((rc = decode_one(d, buf, len, &v, off, err)) ||
	    (rc = check_struct(d, v, "Lease", fields, MS_ARRAY_LEN(fields), off, err)))
		return rc;
	memset(l, 0, sizeof *l);
	l->grant.utc = true;
	l->id = int_of(v, "ID");
	l->ttl = int_of(v, "TTL");
	const gob_value *g = gob_struct_get(v, "GrantTime", NULL);
	if (g) {
		ms_err terr = {0};
		if (g->type->marshaler == GOB_M_TEXT)
			return bad(off, g->offset, err, "Lease: GrantTime is text-marshaled, want binary");
		/* the offset is that of the payload's length prefix */
		if (gob_time_decode(g->bytes.p, g->bytes.len, &l->grant, &terr))
			return bad(off, g->offset, err, "Lease: GrantTime: %s", terr.msg);
	}
	const gob_value *keys = gob_struct_get(v, "Keys", NULL);
	if (keys) {
		l->nkeys = keys->list.n;
		l->pairs = keys->list.elems;
	}
	return 0;
}

int legacy_int_from_gob(gob_dec *d, const uint8_t *buf, size_t len, int64_t *out, size_t *off, ms_err *err)
{
	const gob_value *v;
	int rc = decode_one(d, buf, len, &v, off, err);
	if (rc)
		return rc;
	if (v->kind != GOB_INT)
		return bad(off, v->offset, err, "revision: want an int, got a %s", gob_kind_name(v->kind));
	*out = v->i;
	return 0;
}

int legacy_compacted_decode(const uint8_t *buf, size_t len, int64_t *v, ms_err *err)
{
	if (len != 8)
		return ms_err_set(err, MS_ECORRUPT, "compacted revision is %zu bytes, want 8", len);
	uint64_t u = ms_get_u64be(buf);
	if (u > INT64_MAX)
		return ms_err_set(err, MS_ECORRUPT, "compacted revision %llu is negative as an int64",
		                  (unsigned long long)u);
	*v = (int64_t)u;
	return 0;
}

int legacy_parse_id(const uint8_t *p, size_t n, int64_t *id)
{
	if (n == 0 || n > 19 || (p[0] == '0' && n > 1))
		return MS_EINVAL;
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return MS_EINVAL;
		x = x * 10 + (uint64_t)(p[i] - '0');
	}
	if (x > INT64_MAX)
		return MS_EINVAL;
	*id = (int64_t)x;
	return 0;
}

char *legacy_escape(const uint8_t *p, size_t n, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	MS_ASSERT(cap >= 8);
	for (size_t i = 0; i < n; i++) {
		char tmp[4];
		size_t k;
		uint8_t c = p[i];
		if (c == '\\' || c == '"') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			k = 2;
		} else if (c >= 0x20 && c < 0x7f) {
			tmp[0] = (char)c;
			k = 1;
		} else {
			tmp[0] = '\\';
			tmp[1] = 'x';
			tmp[2] = hex[c >> 4];
			tmp[3] = hex[c & 15];
			k = 4;
		}
		if (o + k + 4 > cap) { /* room for "..." and NUL */
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, tmp, k);
		o += k;
	}
	out[o] = 0;
	return out;
}
