/* pbcheck.h — a wire-level protobuf checker that runs before protobuf-c
 * unpacks anything from outside the process.
 *
 * protobuf_c_message_unpack (and free_unpacked, get_packed_size, pack)
 * recurse once per nested sub-message, so a message whose sub-messages nest
 * deeply enough (etcd's TxnRequest -> RequestOp -> TxnRequest -> ... is
 * recursive; 400 KB buys 50,000 levels) overflows the stack of whichever
 * thread decodes it. ms_pb_check walks the bytes first, without recursion
 * (an explicit stack of bounded size), using the message descriptor to know
 * which length-delimited fields are sub-messages, and refuses:
 *   - tags that are malformed (over 5 bytes, above 2^32-1, field number 0),
 *     wire types 3, 4 (groups, which protobuf-c does not support), 6 and 7;
 *   - varints longer than 10 bytes or running past the end;
 *   - fixed32/fixed64 and length-delimited values running past the end of
 *     their enclosing message;
 *   - a known field sent with a wire type its type cannot have (a repeated
 *     scalar may also come packed, as wire type 2, whose contents must be
 *     whole values);
 *   - sub-messages nested deeper than max_depth.
 * Unknown fields are checked for framing only; their bytes are never
 * descended into (protobuf-c keeps them as opaque bytes).
 *
 * Depth counts sub-message levels below the top message: a top-level
 * TxnRequest is depth 0, its RequestOps depth 1, a nested TxnRequest depth
 * 2. MS_PB_MAX_DEPTH (256) lets a txn nest 128 levels, each with one op:
 * exactly the deepest txn etcd accepts under its default --max-txn-ops (128),
 * since etcd passes the remaining op budget down to nested txns. There is no
 * flag: with a larger --max-txn-ops, nesting past 128 levels is still
 * refused, with etcd's answer for a txn over --max-txn-ops. 257 levels of
 * protobuf-c recursion use well under 1 MiB of stack.
 *
 * Everything after a successful check (unpack, free, validation, apply,
 * response building) may recurse on nesting: its depth is bounded by the
 * checked depth. Callers: api/api.c (every client message, before any
 * handler), server/apply.c (InternalRequest from the raft log), server/peer.c
 * (peer requests), and the fuzz targets under tests/fuzz/. */
#ifndef MS_PBCHECK_H
#define MS_PBCHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ms.h"

/* The nesting bound for a client request (see above). */
#define MS_PB_MAX_DEPTH 256
/* The same request wrapped once more: an InternalRequest in the raft log or
 * in a forwarded proposal carries a client request as a field. */
#define MS_PB_MAX_DEPTH_INTERNAL (MS_PB_MAX_DEPTH + 1)
/* The largest max_depth ms_pb_check accepts (its explicit stack's size). */
#define MS_PB_DEPTH_CAP 512

/* Returned by ms_pb_check when the bytes are well formed so far but nest
 * deeper than max_depth. The API answers it as etcd answers a txn over
 * --max-txn-ops; internal decoders treat it as undecodable. */
#define MS_PB_ETOO_DEEP (-40)

/* Checks that buf[0..len) is a well-formed encoding of a message of type d
 * nesting at most max_depth (<= MS_PB_DEPTH_CAP) levels of sub-messages.
 * d may be NULL: the bytes are then checked as a message with no known
 * fields (framing only). Returns 0, MS_EINVAL (malformed; err says what in
 * the words of etcd's gogo decoder, e.g. "unexpected EOF") or
 * MS_PB_ETOO_DEEP. Never allocates; O(len) time. */
int ms_pb_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, unsigned max_depth, ms_err *err);

/* ms_pb_check, then protobuf_c_message_unpack with ms_pb_allocator (d must
 * not be NULL). On 0, *out is the message (the caller frees it with
 * protobuf_c_message_free_unpacked(*out, &ms_pb_allocator)); otherwise *out
 * is NULL and the result is ms_pb_check's, or MS_EINVAL when protobuf-c
 * refuses the bytes (or runs out of memory). */
int ms_pb_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, unsigned max_depth,
                 ProtobufCMessage **out, ms_err *err);

#endif
