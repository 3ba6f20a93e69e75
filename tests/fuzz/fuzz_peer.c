/* fuzz_peer.c — libFuzzer target for what arrives on the peer port: raft
 * messages (raft_transport_decode_msg, raft/transport_codec.c) and the
 * transport's own frames (Hello, SnapChunk, SnapEnd, SnapAck). Byte 0 picks
 * which. A raft message that decodes must encode again and decode to the
 * same fields (the leader re-sends what it got, e.g. entries to followers). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbcheck.h"
#include "raft/transport.h"
#include "raftpb.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void same(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_peer: re-encoded message differs: %s\n", what);
		abort();
	}
}

static void raft_msg_case(const uint8_t *buf, size_t n)
{
	raft_msg m, m2;
	ms_err err = {0};
	if (raft_transport_decode_msg(buf, n, &m, &err))
		return;
	for (size_t i = 0; i < m.n_entries; i++)
		for (size_t j = 0; j < m.entries[i].len; j++)
			sink += m.entries[i].data[j];
	for (size_t i = 0; i < m.context_len; i++)
		sink += m.context[i];
	uint8_t *enc;
	size_t elen;
	if (raft_transport_encode_msg(&m, &enc, &elen, &err) == 0) {
		same(raft_transport_decode_msg(enc, elen, &m2, &err) == 0, "decode");
		same(m2.type == m.type && m2.term == m.term && m2.index == m.index && m2.commit == m.commit &&
		         m2.log_term == m.log_term && m2.reject == m.reject && m2.n_entries == m.n_entries &&
		         m2.context_len == m.context_len &&
		         m2.snapshot.conf_state.n_voters == m.snapshot.conf_state.n_voters,
		     "fields");
		for (size_t i = 0; i < m.n_entries; i++)
			same(
			    m2.entries[i].len == m.entries[i].len &&
			        (!m.entries[i].len || !memcmp(m2.entries[i].data, m.entries[i].data, m.entries[i].len)),
			    "entry");
		raft_transport_msg_free(&m2);
		ms_free(enc);
	}
	raft_transport_msg_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const ProtobufCMessageDescriptor *const frames[] = {
	    &msraft__hello__descriptor,
	    &msraft__snap_chunk__descriptor,
	    &msraft__snap_end__descriptor,
	    &msraft__snap_ack__descriptor,
	};
	if (size < 1)
		return 0;
	size_t n = size - 1;
	uint8_t *buf = malloc(n ? n : 1);
	memcpy(buf, data + 1, n);
	unsigned pick = data[0] % 5;
	if (pick == 4) {
		raft_msg_case(buf, n);
	} else {
		ProtobufCMessage *m;
		if (ms_pb_unpack(frames[pick], buf, n, MS_PB_MAX_DEPTH_INTERNAL, &m, NULL) == 0) {
			sink += protobuf_c_message_get_packed_size(m);
			protobuf_c_message_free_unpacked(m, &ms_pb_allocator);
		}
	}
	free(buf);
	return 0;
}
