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

/* Reads a varint of at most max bytes from buf[*pos..end). 0 or MS_EINVAL. */
static int read_varint(const uint8_t *buf, size_t *pos, size_t end, unsigned max, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned i = 0; i < max; i++) {
		if (*pos >= end)
			return MS_EINVAL;
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

/* A packed repeated scalar: whole values of wire type wt in [pos, end). */
static int check_packed(const uint8_t *buf, size_t pos, size_t end, unsigned wt)
{
	if (wt == 5)
		return (end - pos) % 4 ? MS_EINVAL : 0;
	if (wt == 1)
		return (end - pos) % 8 ? MS_EINVAL : 0;
	while (pos < end) {
		uint64_t v;
		if (read_varint(buf, &pos, end, 10, &v))
			return MS_EINVAL;
	}
	return 0;
}

static const char *type_name(const ProtobufCMessageDescriptor *d)
{
	return d ? d->name : "message";
}

int ms_pb_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, unsigned max_depth, ms_err *err)
{
	pb_frame st[MS_PB_DEPTH_CAP + 1];
	if (max_depth > MS_PB_DEPTH_CAP)
		max_depth = MS_PB_DEPTH_CAP;
	if (len && !buf)
		return ms_err_set(err, MS_EINVAL, "protobuf: no bytes");
	unsigned sp = 0;
	st[0] = (pb_frame){d, len};
	size_t pos = 0;
	for (;;) {
		pb_frame *f = &st[sp];
		if (pos == f->end) {
			if (sp == 0)
				return 0;
			sp--;
			continue;
		}
		size_t at = pos;
		uint64_t tag;
		if (read_varint(buf, &pos, f->end, 5, &tag) || tag > UINT32_MAX)
			return ms_err_set(err, MS_EINVAL, "protobuf: bad tag at offset %zu in %s", at, type_name(f->d));
		uint32_t id = (uint32_t)(tag >> 3);
		unsigned wt = (unsigned)(tag & 7);
		if (id == 0)
			return ms_err_set(err, MS_EINVAL, "protobuf: field number 0 at offset %zu in %s", at,
			                  type_name(f->d));
		const ProtobufCFieldDescriptor *fd = find_field(f->d, id);
		if (fd) {
			unsigned want = field_wire_type(fd->type);
			bool packable = fd->label == PROTOBUF_C_LABEL_REPEATED && want != 2;
			if (wt != want && !(packable && wt == 2))
				return ms_err_set(err, MS_EINVAL,
				                  "protobuf: field %s.%s (%u) has wire type %u, want %u, at offset %zu",
				                  type_name(f->d), fd->name, id, wt, want, at);
		}
		uint64_t v;
		switch (wt) {
		case 0:
			if (read_varint(buf, &pos, f->end, 10, &v))
				return ms_err_set(err, MS_EINVAL, "protobuf: bad varint at offset %zu in %s", pos,
				                  type_name(f->d));
			break;
		case 1:
		case 5: {
			size_t n = wt == 1 ? 8 : 4;
			if (f->end - pos < n)
				return ms_err_set(err, MS_EINVAL,
				                  "protobuf: fixed value past the end at offset %zu in %s", pos,
				                  type_name(f->d));
			pos += n;
			break;
		}
		case 2: {
			/* protobuf-c reads lengths as 32-bit varints of at most 5 bytes */
			if (read_varint(buf, &pos, f->end, 5, &v) || v > UINT32_MAX)
				return ms_err_set(err, MS_EINVAL, "protobuf: bad length at offset %zu in %s", pos,
				                  type_name(f->d));
			if (v > f->end - pos)
				return ms_err_set(err, MS_EINVAL,
				                  "protobuf: length %llu past the end at offset %zu in %s (%zu left)",
				                  (unsigned long long)v, pos, type_name(f->d), f->end - pos);
			size_t end = pos + (size_t)v;
			if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE) {
				if (sp >= max_depth)
					return ms_err_set(err, MS_PB_ETOO_DEEP,
					                  "protobuf: %s nests deeper than %u messages at offset %zu",
					                  type_name(d), max_depth, pos);
				st[++sp] = (pb_frame){fd->descriptor, end};
				continue; /* pos stays at the sub-message's first byte */
			}
			if (fd && fd->label == PROTOBUF_C_LABEL_REPEATED && field_wire_type(fd->type) != 2 &&
			    check_packed(buf, pos, end, field_wire_type(fd->type)))
				return ms_err_set(err, MS_EINVAL, "protobuf: bad packed field %s.%s at offset %zu",
				                  type_name(f->d), fd->name, pos);
			pos = end;
			break;
		}
		default:
			return ms_err_set(err, MS_EINVAL, "protobuf: wire type %u at offset %zu in %s", wt, at,
			                  type_name(f->d));
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
		return ms_err_set(err, MS_EINVAL, "protobuf: %s does not decode", d->name);
	*out = m;
	return 0;
}
