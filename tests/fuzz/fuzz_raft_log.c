/* fuzz_raft_log.c — libFuzzer target for what the raft log stores and the
 * apply thread decodes from it: an entry record as raft_log_store_load reads
 * it ([u64 LE term][u8 type][data]), whose data is a conf change
 * (raft_node_conf_change_decode, then its member record) or an
 * InternalRequest (the apply decode site: wire check, unpack, validation);
 * and the stored conf state of the snapshot meta (raft_conf_state_decode).
 * Byte 0 picks: even = entry record, odd = conf state. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbcheck.h"
#include "engine/engine.h"
#include "internal.pb-c.h"
#include "raft/raft.h"
#include "raft/raft_core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void entry(const uint8_t *e, size_t elen)
{
	if (elen < 9)
		return; /* raft_log_store_load: "entry is truncated" */
	uint64_t term = ms_get_u64le(e);
	uint8_t type = e[8];
	const uint8_t *d = e + 9;
	size_t dlen = elen - 9;
	sink += term;
	ms_err err = {0};
	ProtobufCMessage *m;
	if (type == RAFT_NODE_ENTRY_CONF_CHANGE) {
		raft_node_conf_change cc;
		if (raft_node_conf_change_decode(d, dlen, &cc))
			return;
		if (cc.context_len && ms_pb_unpack(&msinternal__member_change_context__descriptor, cc.context,
		                                   cc.context_len, MS_PB_MAX_DEPTH_INTERNAL, &m, &err) == 0) {
			Msinternal__MemberChangeContext *mc = (Msinternal__MemberChangeContext *)m;
			if (mc->member)
				for (size_t i = 0; i < mc->member->n_peerurls; i++)
					sink += strlen(mc->member->peerurls[i]);
			protobuf_c_message_free_unpacked(m, &ms_pb_allocator);
		}
		return;
	}
	if (dlen == 0)
		return; /* a leader's empty entry */
	if (ms_pb_unpack(&msinternal__internal_request__descriptor, d, dlen, MS_PB_MAX_DEPTH_INTERNAL, &m, &err))
		return;
	Msinternal__InternalRequest *r = (Msinternal__InternalRequest *)m;
	if (r->request_case == MSINTERNAL__INTERNAL_REQUEST__REQUEST_TXN && r->txn)
		engine_check_txn(r->txn, 128, &err);
	else if (r->request_case == MSINTERNAL__INTERNAL_REQUEST__REQUEST_PUT && r->put)
		engine_check_put(r->put, &err);
	protobuf_c_message_free_unpacked(m, &ms_pb_allocator);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t n = size - 1;
	uint8_t *buf = malloc(n ? n : 1);
	memcpy(buf, data + 1, n);
	if (data[0] % 2 == 0) {
		entry(buf, n);
	} else {
		raft_conf_state cs;
		if (raft_conf_state_decode(buf, n, &cs) == 0) {
			raft_conf_state copy;
			if (raft_conf_state_copy(&copy, &cs) == 0)
				raft_conf_state_free(&copy);
			size_t elen;
			uint8_t *enc = raft_conf_state_encode(&cs, &elen);
			if (enc && n && (elen != n || memcmp(enc, buf, n)))
				abort(); /* a decoded conf state (none stored: empty) encodes back to its bytes */
			ms_free(enc);
			raft_conf_state_free(&cs);
		}
	}
	free(buf);
	return 0;
}
