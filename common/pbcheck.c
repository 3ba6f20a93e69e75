/* pbcheck.c — the wire-level protobuf checker (see pbcheck.h): one loop over
 * the bytes with an explicit stack of enclosing messages, no recursion. */
#include "common/pbcheck.h"

#include <assert.h>

/* One enclosing message: its type (NULL: no known fields) and where its
 * bytes end. */
typedef struct pb_frame {
	const ProtobufCMessageDescriptor *d;
	size_t end;
} pb_frame;

/* read_varint's result for bytes that end inside a value (MS_EINVAL is a
 * value longer than allowed). Private to this file. */
#define PB_EOF (-41)

/* Reads a varint of at most max bytes from buf[*pos..end). 0, PB_EOF or
 * MS_EINVAL. */
static int read_varint(const uint8_t *buf, size_t *pos, size_t end, unsigned max, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned i = 0; i < max; i++) {
		if (*pos >= end)
			return PB_EOF;
		uint8_t b = buf[(*pos)++];
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return MS_EINVAL;
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, uint32_t id)
{
	if (!d)
		return NULL;
	/* protobuf-c keeps fields sorted by tag number */
	size_t lo = 0, hi = d->n_fields;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (d->fields[mid].id == id)
			return &d->fields[mid];
		if (d->fields[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The wire type a field's values have when not packed. */
static unsigned field_wire_type(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return 5;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 1;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return 2;
	default:
		return 0; /* int32/64, uint32/64, sint32/64, bool, enum */
	}
}

/* A packed repeated scalar: whole values of wire type wt in [pos, end).
 * 0, PB_EOF or MS_EINVAL. */
static int check_packed(const uint8_t *buf, size_t pos, size_t end, unsigned wt)
{
	if (wt == 5)
		return (end - pos) % 4 ? PB_EOF : 0;
	if (wt == 1)
		return (end - pos) % 8 ? PB_EOF : 0;
	while (pos < end) {
		uint64_t v;
		int rc = read_varint(buf, &pos, end, 10, &v);
		if (rc)
			return rc;
	}
	return 0;
}

static const char *type_name(const ProtobufCMessageDescriptor *d)
{
	return d ? d->short_name : "message";
}

/* The Go field name gogo's errors use: range_end -> RangeEnd. */
static const char *go_name(const char *name, char *buf, size_t cap)
{
	size_t n = 0;
	bool up = true;
	for (const char *p = name; *p && n + 1 < cap; p++) {
		if (*p == '_') {
			up = true;
			continue;
		}
		buf[n++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
		up = false;
	}
	buf[n] = 0;
	return buf;
}

/* A failed read, in the words etcd's (gogo) decoder uses, so a client sees
 * the same "grpc: error unmarshalling request: unexpected EOF". */
static int bad_read(ms_err *err, int rc)
{
	if (rc == PB_EOF)
		return ms_err_set(err, MS_EINVAL, "unexpected EOF");
	return ms_err_set(err, MS_EINVAL, "proto: integer overflow");
}

int ms_pb_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, unsigned max_depth, ms_err *err)
{
	pb_frame st[MS_PB_DEPTH_CAP + 1];
	if (max_depth > MS_PB_DEPTH_CAP)
		max_depth = MS_PB_DEPTH_CAP;
	if (len && !buf)
		return ms_err_set(err, MS_EINVAL, "unexpected EOF");
	unsigned sp = 0;
	st[0] = (pb_frame){d, len};
	size_t pos = 0;
	int rc;
	for (;;) {
		pb_frame *f = &st[sp];
		if (pos == f->end) {
			if (sp == 0)
				return 0;
			sp--;
			continue;
		}
		uint64_t tag, v;
		if ((rc = read_varint(buf, &pos, f->end, 5, &tag)))
			return bad_read(err, rc);
		if (tag > UINT32_MAX)
			return bad_read(err, MS_EINVAL);
		uint32_t id = (uint32_t)(tag >> 3);
		unsigned wt = (unsigned)(tag & 7);
		/* in the order etcd's decoder checks, so the words match */
		if (wt == 4)
			return ms_err_set(err, MS_EINVAL, "proto: %s: wiretype end group for non-group",
			                  type_name(f->d));
		if (id == 0)
			return ms_err_set(err, MS_EINVAL, "proto: %s: illegal tag 0 (wire type %u)", type_name(f->d),
			                  wt);
		const ProtobufCFieldDescriptor *fd = find_field(f->d, id);
		unsigned want = fd ? field_wire_type(fd->type) : wt;
		bool packed = fd && fd->label == PROTOBUF_C_LABEL_REPEATED && want != 2 && wt == 2;
		if (wt != want && !packed) {
			char gn[64];
			return ms_err_set(err, MS_EINVAL, "proto: wrong wireType = %u for field %s", wt,
			                  go_name(fd->name, gn, sizeof gn));
		}
		switch (wt) {
		case 0:
			if ((rc = read_varint(buf, &pos, f->end, 10, &v)))
				return bad_read(err, rc);
			break;
		case 1:
		case 5:
			if (f->end - pos < (wt == 1 ? 8u : 4u))
				return bad_read(err, PB_EOF);
			pos += wt == 1 ? 8 : 4;
			break;
		case 2: {
			/* protobuf-c reads lengths as 32-bit varints of at most 5 bytes */
			if ((rc = read_varint(buf, &pos, f->end, 5, &v)))
				return bad_read(err, rc);
			if (v > f->end - pos)
				return bad_read(err, PB_EOF);
			size_t end = pos + (size_t)v;
			if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE) {
				if (sp >= max_depth)
					return ms_err_set(err, MS_PB_ETOO_DEEP,
					                  "proto: %s nests deeper than %u messages", type_name(d),
					                  max_depth);
				st[++sp] = (pb_frame){fd->descriptor, end};
				continue; /* pos stays at the sub-message's first byte */
			}
			if (packed && (rc = check_packed(buf, pos, end, want)))
				return bad_read(err, rc);
			pos = end;
			break;
		}
		default: /* 3 (groups: protobuf-c has none), 6, 7 */
			return ms_err_set(err, MS_EINVAL, "proto: illegal wireType %u", wt);
		}
	}
}

int ms_pb_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, unsigned max_depth,
                 ProtobufCMessage **out, ms_err *err)
{
	assert(d);
	*out = NULL;
	int rc = ms_pb_check(d, buf, len, max_depth, err);
	if (rc)
		return rc;
	ProtobufCMessage *m = protobuf_c_message_unpack(d, &ms_pb_allocator, len, buf);
	if (!m)
		return ms_err_set(err, MS_EINVAL, "proto: %s does not decode", d->short_name);
	*out = m;
	return 0;
}
