/* grpc_compress.h — message compression on the receive path (private to
 * api/grpc*; used by grpc_call.c and grpc_conn.c).
 *
 * What a client may send, and what it gets:
 *   - grpc-encoding absent, "" or "identity": messages with the compressed
 *     flag set are refused as grpc-go does (Internal "grpc: compressed flag
 *     set with identity or empty encoding").
 *   - "gzip" (RFC 1952) and "deflate" (zlib, RFC 1950; gRPC's name for it):
 *     a message with the flag set is inflated before the handler sees it,
 *     bounded by max_recv_msg: larger -> ResourceExhausted "grpc: received
 *     message after decompression larger than max (N vs. M)"; corrupt ->
 *     Internal "grpc: failed to decompress the received message ...".
 *     Messages without the flag are taken as they are.
 *   - any other encoding: Unimplemented "grpc: Decompressor is not installed
 *     for grpc-encoding \"X\"" before any message is read, as grpc-go's
 *     server answers (a Trailers-Only response).
 * Replies are never compressed (identity needs no grpc-encoding header;
 * every client accepts it), and no grpc-accept-encoding is sent: grpc-go's
 * server (etcd's) sends none either. Note that etcd 3.4 itself registers no
 * decompressor and refuses gzip with the Unimplemented above; accepting it
 * is a superset no client can trip over.
 */
#ifndef MS_API_GRPC_COMPRESS_H
#define MS_API_GRPC_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True for NULL, "", "identity", "gzip" and "deflate". */
bool grpc_compress_known(const char *encoding);
/* True when encoding names no compression (NULL, "" or "identity"). */
bool grpc_compress_identity(const char *encoding);

enum { GRPC_DECOMPRESS_OK = 0, GRPC_DECOMPRESS_CORRUPT = 1, GRPC_DECOMPRESS_TOO_LARGE = 2, GRPC_DECOMPRESS_NOMEM = 3 };

/* Inflates in[0, len) sent with encoding (gzip or deflate) into *out
 * (ms_malloc'd, the caller frees; *out_len bytes). At most max bytes are
 * produced: GRPC_DECOMPRESS_TOO_LARGE with *out_len = how many bytes were
 * seen (at least max + 1). GRPC_DECOMPRESS_CORRUPT fills why (a short text,
 * in Go's words where they exist). */
int grpc_decompress(const char *encoding, const uint8_t *in, size_t len, size_t max, uint8_t **out, size_t *out_len,
                    const char **why);

#endif
