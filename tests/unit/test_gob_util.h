/* test_gob_util.h — helpers for the gob and migration tests: read a file,
 * a tiny JSON reader (numbers kept as text so int64s stay exact), base64. */
#ifndef MS_TEST_GOB_UTIL_H
#define MS_TEST_GOB_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole file; NULL if it cannot. Caller frees with free(). */
static inline uint8_t *tu_read_file(const char *path, size_t *len)
{
	*len = 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 4096, n = 0;
	uint8_t *buf = malloc(cap);
	for (;;) {
		if (n == cap)
			buf = realloc(buf, cap *= 2);
		size_t r = fread(buf + n, 1, cap - n, f);
		if (r == 0)
			break;
		n += r;
	}
	fclose(f);
	*len = n;
	return buf;
}

typedef enum { TJ_NULL, TJ_BOOL, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ } tj_kind;
typedef struct tj {
	tj_kind kind;
	char *str; /* STR (unescaped, NUL-terminated; len in n), NUM (text) */
	size_t n;  /* STR length, ARR/OBJ count */
	bool b;
	struct tj **items; /* ARR elements, OBJ values */
	char **keys;       /* OBJ keys */
} tj;

static inline void tj_free(tj *j)
{
	if (!j)
		return;
	for (size_t i = 0; (j->kind == TJ_ARR || j->kind == TJ_OBJ) && i < j->n; i++) {
		tj_free(j->items[i]);
		if (j->keys)
			free(j->keys[i]);
	}
	free(j->items);
	free(j->keys);
	free(j->str);
	free(j);
}

static inline void tj_ws(const char **p)
{
	while (**p == ' ' || **p == '\n' || **p == '\r' || **p == '\t')
		(*p)++;
}

static inline void tj_utf8(char *out, size_t *o, unsigned cp)
{
	if (cp < 0x80) {
		out[(*o)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*o)++] = (char)(0xc0 | cp >> 6);
		out[(*o)++] = (char)(0x80 | (cp & 63));
	} else if (cp < 0x10000) {
		out[(*o)++] = (char)(0xe0 | cp >> 12);
		out[(*o)++] = (char)(0x80 | (cp >> 6 & 63));
		out[(*o)++] = (char)(0x80 | (cp & 63));
	} else {
		out[(*o)++] = (char)(0xf0 | cp >> 18);
		out[(*o)++] = (char)(0x80 | (cp >> 12 & 63));
		out[(*o)++] = (char)(0x80 | (cp >> 6 & 63));
		out[(*o)++] = (char)(0x80 | (cp & 63));
	}
}

static inline char *tj_string(const char **p, size_t *len)
{
	const char *s = *p + 1;
	char *out = malloc(strlen(s) + 1);
	size_t o = 0;
	while (*s && *s != '"') {
		if (*s != '\\') {
			out[o++] = *s++;
			continue;
		}
		s++;
		char c = *s++;
		switch (c) {
		case 'n':
			out[o++] = '\n';
			break;
		case 't':
			out[o++] = '\t';
			break;
		case 'r':
			out[o++] = '\r';
			break;
		case 'b':
			out[o++] = '\b';
			break;
		case 'f':
			out[o++] = '\f';
			break;
		case 'u': {
			unsigned cp = (unsigned)strtoul((char[5]){s[0], s[1], s[2], s[3], 0}, NULL, 16);
			s += 4;
			if (cp >= 0xd800 && cp < 0xdc00 && s[0] == '\\' && s[1] == 'u') {
				unsigned lo = (unsigned)strtoul((char[5]){s[2], s[3], s[4], s[5], 0}, NULL, 16);
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				s += 6;
			}
			tj_utf8(out, &o, cp);
			break;
		}
		default:
			out[o++] = c;
			break;
		}
	}
	*p = *s ? s + 1 : s;
	out[o] = 0;
	*len = o;
	return out;
}

static inline tj *tj_parse_at(const char **p)
{
	tj_ws(p);
	tj *j = calloc(1, sizeof *j);
	const char *s = *p;
	if (*s == '{' || *s == '[') {
		bool obj = *s == '{';
		j->kind = obj ? TJ_OBJ : TJ_ARR;
		(*p)++;
		size_t cap = 0;
		for (;;) {
			tj_ws(p);
			if (**p == (obj ? '}' : ']')) {
				(*p)++;
				break;
			}
			if (**p == ',') {
				(*p)++;
				continue;
			}
			if (j->n == cap) {
				cap = cap ? cap * 2 : 8;
				j->items = realloc(j->items, cap * sizeof *j->items);
				if (obj)
					j->keys = realloc(j->keys, cap * sizeof *j->keys);
			}
			if (obj) {
				size_t kl;
				tj_ws(p);
				j->keys[j->n] = tj_string(p, &kl);
				tj_ws(p);
				(*p)++; /* ':' */
			}
			j->items[j->n++] = tj_parse_at(p);
		}
	} else if (*s == '"') {
		j->kind = TJ_STR;
		j->str = tj_string(p, &j->n);
	} else if (strncmp(s, "null", 4) == 0) {
		*p += 4;
	} else if (strncmp(s, "true", 4) == 0 || strncmp(s, "false", 5) == 0) {
		j->kind = TJ_BOOL;
		j->b = *s == 't';
		*p += j->b ? 4 : 5;
	} else {
		j->kind = TJ_NUM;
		size_t n = strspn(s, "-+0123456789.eE");
		j->str = strndup(s, n);
		*p += n;
	}
	return j;
}

static inline tj *tj_parse(const char *text)
{
	return tj_parse_at(&text);
}

static inline tj *tj_get(const tj *o, const char *key)
{
	for (size_t i = 0; o && o->kind == TJ_OBJ && i < o->n; i++)
		if (strcmp(o->keys[i], key) == 0)
			return o->items[i];
	return NULL;
}

static inline long long tj_int(const tj *j)
{
	return j && j->kind == TJ_NUM ? strtoll(j->str, NULL, 10) : 0;
}

/* Decodes standard base64 (with padding) into a malloc'd buffer. */
static inline uint8_t *tu_base64(const char *s, size_t *len)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(s);
	uint8_t *out = malloc(n / 4 * 3 + 3);
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n && s[i] != '='; i++) {
		const char *c = strchr(al, s[i]);
		if (!c || !*c)
			continue;
		acc = acc << 6 | (uint32_t)(c - al);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	*len = o;
	return out;
}

/* A JSON value that is base64 text, or null for empty. */
static inline uint8_t *tu_b64_field(const tj *j, size_t *len)
{
	if (!j || j->kind != TJ_STR) {
		*len = 0;
		return malloc(1);
	}
	return tu_base64(j->str, len);
}

#endif
