/* grpc_compress.c — inflating received gRPC messages (gzip, deflate) with
 * zlib, bounded by the receive limit so a small "zip bomb" cannot make the
 * server allocate more than one message's worth. */
#include "api/grpc_compress.h"

#include <string.h>
#include <zlib.h>

#include "common/ms.h"

bool grpc_compress_identity(const char *encoding)
{
	return !encoding || !*encoding || strcmp(encoding, "identity") == 0;
}

bool grpc_compress_known(const char *encoding)
{
	return grpc_compress_identity(encoding) || strcmp(encoding, "gzip") == 0 || strcmp(encoding, "deflate") == 0;
}

int grpc_decompress(const char *encoding, const uint8_t *in, size_t len, size_t max, uint8_t **out, size_t *out_len,
                    const char **why)
{
	*out = NULL;
	*out_len = 0;
	*why = "";
	bool gz = strcmp(encoding, "gzip") == 0;
	z_stream z;
	memset(&z, 0, sizeof z);
	/* 15 + 16: a gzip wrapper only; 15: a zlib wrapper only */
	if (inflateInit2(&z, gz ? 15 + 16 : 15) != Z_OK)
		return GRPC_DECOMPRESS_NOMEM;
	int rc = GRPC_DECOMPRESS_OK;
	/* grows with what comes out, up to max + 1 (to tell "too large") */
	size_t cap = MS_MIN(MS_MAX(len * 4, (size_t)256), max + 1), n = 0;
	uint8_t *buf = ms_malloc(cap);
	if (!buf) {
		rc = GRPC_DECOMPRESS_NOMEM;
		goto cleanup_z;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)MS_MIN(len, (size_t)UINT32_MAX);
	for (;;) {
		if (n == cap) {
			if (cap > max) {
				rc = GRPC_DECOMPRESS_TOO_LARGE;
				break;
			}
			size_t ncap = MS_MIN(cap * 2, max + 1);
			uint8_t *p = ms_realloc(buf, ncap);
			if (!p) {
				rc = GRPC_DECOMPRESS_NOMEM;
				break;
			}
			buf = p;
			cap = ncap;
		}
		z.next_out = buf + n;
		z.avail_out = (uInt)MS_MIN(cap - n, (size_t)UINT32_MAX);
		int zr = inflate(&z, Z_NO_FLUSH);
		n = (size_t)(z.next_out - buf);
		if (zr == Z_STREAM_END) {
			/* gRPC: one message is one member; trailing bytes are junk */
			if (z.avail_in != 0) {
				*why = "gzip: invalid header";
				rc = GRPC_DECOMPRESS_CORRUPT;
			}
			break;
		}
		if (zr == Z_BUF_ERROR && z.avail_in == 0) {
			*why = "unexpected EOF"; /* the input ended inside the stream */
			rc = GRPC_DECOMPRESS_CORRUPT;
			break;
		}
		if (zr == Z_MEM_ERROR) {
			rc = GRPC_DECOMPRESS_NOMEM;
			break;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			/* Go's texts for the two common cases */
			*why =
			    gz && z.total_out == 0 && z.total_in < 10 ? "gzip: invalid header" : "flate: corrupt input";
			rc = GRPC_DECOMPRESS_CORRUPT;
			break;
		}
	}
	*out_len = rc == GRPC_DECOMPRESS_TOO_LARGE ? max + 1 : n;
	if (rc == GRPC_DECOMPRESS_OK)
		*out = buf;
	else
		ms_free(buf);
cleanup_z:
	inflateEnd(&z);
	return rc;
}
