/* gob.h — a strict decoder for Go's encoding/gob streams, into a generic
 * value tree (no Go types needed on this side).
 *
 * Wire format facts follow Go's encoding/gob doc: every message is a byte
 * count then either a type definition (negative id + wireType) or a value
 * (positive id + encoding). Struct values are (field delta, value) pairs
 * ending with delta 0; any other top-level value is a "singleton": a 0 delta
 * then the value. Types may be defined before the types they reference;
 * references are resolved when a value is decoded.
 *
 * Strictness: every count is checked against the bytes left in its message,
 * every message must be consumed exactly, arrays must match their declared
 * length, type ids must be defined (user ids >= 64, each once), nesting is
 * bounded (GOB_MAX_DEPTH) and so is the number of types (GOB_MAX_TYPES).
 * Interface values are refused (MS_EUNSUPPORTED): the legacy store has none.
 * Errors are MS_ECORRUPT (or MS_ENOMEM / MS_EUNSUPPORTED) with a message and
 * the byte offset of the fault, from gob_dec_offset().
 *
 * Memory: values, types and their arrays come from an arena owned by the
 * decoder; strings, byte slices and GobEncoder payloads alias the input
 * buffer. Everything a decoder hands out is valid until the next
 * gob_dec_reset() or gob_dec_del(), and only while the input buffer lives.
 * Memory use is bounded by a small multiple of the input size. */
#ifndef MS_GOB_H
#define MS_GOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ms.h"

#define GOB_MAX_DEPTH 64
#define GOB_MAX_TYPES 1024

/* Predefined type ids (Go's encoding/gob). */
enum {
	GOB_TID_BOOL = 1,
	GOB_TID_INT = 2,
	GOB_TID_UINT = 3,
	GOB_TID_FLOAT = 4,
	GOB_TID_BYTES = 5,
	GOB_TID_STRING = 6,
	GOB_TID_COMPLEX = 7,
	GOB_TID_INTERFACE = 8,
	GOB_TID_FIRST_USER = 64, /* user-defined ids are above this */
};

typedef enum gob_kind {
	GOB_BOOL = 1,
	GOB_INT,
	GOB_UINT,
	GOB_FLOAT,
	GOB_COMPLEX,
	GOB_BYTES,
	GOB_STRING,
	GOB_STRUCT,
	GOB_SLICE,
	GOB_ARRAY,
	GOB_MAP,
	GOB_ENCODED,   /* GobEncoder, BinaryMarshaler or TextMarshaler payload */
	GOB_INTERFACE, /* a type only: values are refused */
} gob_kind;

/* Which marshaler produced a GOB_ENCODED value. */
typedef enum gob_marshaler { GOB_M_NONE = 0, GOB_M_GOB, GOB_M_BINARY, GOB_M_TEXT } gob_marshaler;

typedef struct gob_field {
	const char *name; /* not NUL-terminated; aliases the input */
	size_t name_len;
	int64_t type_id;
} gob_field;

typedef struct gob_type {
	int64_t id;
	gob_kind kind;
	const char *name; /* Go's name for the type ("KeyValue", "map[string]bool"); not NUL-terminated */
	size_t name_len;
	int64_t elem;            /* SLICE, ARRAY, MAP: element type id */
	int64_t key;             /* MAP: key type id */
	int64_t len;             /* ARRAY: declared length */
	gob_marshaler marshaler; /* ENCODED */
	size_t nfields;          /* STRUCT */
	const gob_field *fields;
} gob_type;

typedef struct gob_value gob_value;

/* A struct value holds only the fields that were transmitted (gob omits
 * zero values), in increasing field number. */
typedef struct gob_member {
	size_t index; /* into type->fields */
	const gob_value *value;
} gob_member;

struct gob_value {
	gob_kind kind;
	const gob_type *type;
	size_t offset; /* where the value starts in the input, for messages */
	union {
		bool b;
		int64_t i;
		uint64_t u;
		double f;
		struct {
			double re, im;
		} c;
		struct { /* BYTES, STRING, ENCODED: aliases the input */
			const uint8_t *p;
			size_t len;
		} bytes;
		struct { /* SLICE, ARRAY: n elements; MAP: n pairs, elems[2i] key, elems[2i+1] value */
			size_t n;
			const gob_value *const *elems;
		} list;
		struct { /* STRUCT */
			size_t n;
			const gob_member *members;
		} st;
	};
};

typedef struct gob_dec gob_dec;

/* Creates a decoder reading buf[0..len). buf must outlive the decoder's
 * values. Caller frees with gob_dec_del. */
int gob_dec_new(const uint8_t *buf, size_t len, gob_dec **out, ms_err *err);
/* Starts over on a new stream, forgetting its types and values but keeping
 * the arena's first block (cheap reuse across many small streams). */
void gob_dec_reset(gob_dec *d, const uint8_t *buf, size_t len);
/* NULL is a no-op. */
void gob_dec_del(gob_dec *d);

/* Decodes the next value of the stream (reading the type definitions before
 * it). Returns 1 with *out set, 0 at the clean end of the stream, or a
 * negative MS_E* code; the decoder is unusable after an error. */
int gob_dec_next(gob_dec *d, const gob_value **out, ms_err *err);
/* Decodes a stream that must hold exactly one value. */
int gob_dec_one(gob_dec *d, const gob_value **out, ms_err *err);
/* Byte offset in the input where decoding stopped (the fault after an error). */
size_t gob_dec_offset(const gob_dec *d);

/* The transmitted value of the struct field called name, or NULL when the
 * field was not sent (zero value) or the type has no such field. *known
 * (if non-NULL) says whether the type has the field. */
const gob_value *gob_struct_get(const gob_value *st, const char *name, bool *known);
/* The type with this id in the current stream (basic or user-defined), or
 * NULL. Ids of field types are resolved through this. */
const gob_type *gob_dec_type(const gob_dec *d, int64_t id);
/* True when the type's name is exactly name. */
bool gob_type_named(const gob_type *t, const char *name);
/* A short name for a kind ("int", "struct", ...). */
const char *gob_kind_name(gob_kind k);

/* Go's time.Time binary form (MarshalBinary, version 1 or 2), as sent for a
 * time.Time through GobEncoder. sec counts from 0001-01-01 00:00:00 UTC. */
typedef struct gob_time {
	int64_t sec;
	int32_t nsec;
	int16_t offset_min; /* zone offset in minutes east of UTC; -1 with utc set for UTC */
	bool utc;
	int8_t offset_sec; /* version 2 only: seconds part of the offset */
} gob_time;
int gob_time_decode(const uint8_t *p, size_t len, gob_time *t, ms_err *err);
/* Unix nanoseconds of t; MS_EINVAL when it does not fit an int64. */
int gob_time_unix_nano(const gob_time *t, int64_t *out);
/* RFC 3339 with nanoseconds as Go prints it (trailing fraction zeros
 * dropped, "Z" for UTC, else "+hh:mm"). buf needs 40 bytes. */
void gob_time_format(const gob_time *t, char *buf, size_t cap);

#endif
