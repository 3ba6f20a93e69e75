/* transport_codec.c — raft_msg <-> msraft.Message (proto/raftpb.proto), the
 * payload of the transport's MSG frames and of SNAP_END. */
#include "raft/transport.h"

#include <protobuf-c/protobuf-c.h>
#include <string.h>

#include "raftpb.pb-c.h"

/* Builds a Message that borrows m's buffers; entries/snapshot storage comes
 * from one block the caller frees with ms_free(*block). */
static int msg_to_pb(const raft_msg *m, Msraft__Message *pb, Msraft__SnapshotMeta *snap, void **block)
{
	*block = NULL;
	if (m->type < RAFT_MSG_APP || m->type > RAFT_MSG_TYPE_MAX)
		return MS_EINVAL;
	msraft__message__init(pb);
	pb->type = (uint32_t)m->type;
	pb->from = m->from;
	pb->to = m->to;
	pb->term = m->term;
	pb->log_term = m->log_term;
	pb->index = m->index;
	pb->commit = m->commit;
	pb->reject = m->reject;
	pb->reject_hint = m->reject_hint;
	if (m->context_len) {
		pb->context.data = (uint8_t *)m->context;
		pb->context.len = m->context_len;
	}
	if (m->n_entries) {
		size_t n = m->n_entries;
		uint8_t *b = ms_malloc(n * (sizeof(Msraft__Entry *) + sizeof(Msraft__Entry)));
		if (!b)
			return MS_ENOMEM;
		*block = b;
		Msraft__Entry **ptrs = (Msraft__Entry **)b;
		Msraft__Entry *ents = (Msraft__Entry *)(ptrs + n);
		for (size_t i = 0; i < n; i++) {
			const raft_entry *e = &m->entries[i];
			msraft__entry__init(&ents[i]);
			ents[i].term = e->term;
			ents[i].index = e->index;
			ents[i].type = (uint32_t)e->type;
			ents[i].data.data = (uint8_t *)e->data;
			ents[i].data.len = e->len;
			ptrs[i] = &ents[i];
		}
		pb->entries = ptrs;
		pb->n_entries = n;
	}
	const raft_snapshot_meta *s = &m->snapshot;
	if (m->type == RAFT_MSG_SNAP || s->index || s->term || s->conf_state.n_voters || s->conf_state.n_learners) {
		msraft__snapshot_meta__init(snap);
		snap->index = s->index;
		snap->term = s->term;
		snap->voters = s->conf_state.voters;
		snap->n_voters = s->conf_state.n_voters;
		snap->learners = s->conf_state.learners;
		snap->n_learners = s->conf_state.n_learners;
		pb->snapshot = snap;
	}
	return 0;
}

int raft_transport_encode_msg(const raft_msg *m, uint8_t **buf, size_t *len, ms_err *err)
{
	Msraft__Message pb;
	Msraft__SnapshotMeta snap;
	void *block;
	*buf = NULL;
	*len = 0;
	int rc = msg_to_pb(m, &pb, &snap, &block);
	if (rc)
		return ms_err_set(err, rc, rc == MS_EINVAL ? "raft message type %d unknown" : "out of memory",
		                  (int)m->type);
	size_t n = msraft__message__get_packed_size(&pb);
	uint8_t *out = ms_malloc(n ? n : 1);
	if (!out) {
		ms_free(block);
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	}
	msraft__message__pack(&pb, out);
	ms_free(block);
	*buf = out;
	*len = n;
	return 0;
}

void raft_transport_msg_free(raft_msg *m)
{
	ms_free(m->entries); /* entry array and entry data are one block */
	ms_free((void *)m->context);
	ms_free(m->snapshot.conf_state.voters);
	ms_free(m->snapshot.conf_state.learners);
	memset(m, 0, sizeof *m);
}

static uint64_t *dup_ids(const uint64_t *ids, size_t n, bool *oom)
{
	if (!n)
		return NULL;
	uint64_t *p = ms_memdup(ids, n * sizeof *ids);
	if (!p)
		*oom = true;
	return p;
}

int raft_transport_decode_msg(const uint8_t *buf, size_t len, raft_msg *out, ms_err *err)
{
	memset(out, 0, sizeof *out);
	Msraft__Message *pb = msraft__message__unpack(&ms_pb_allocator, len, buf);
	if (!pb)
		return ms_err_set(err, MS_EINVAL, "undecodable raft message (%zu bytes)", len);
	int rc = 0;
	if (pb->type < RAFT_MSG_APP || pb->type > RAFT_MSG_TYPE_MAX) {
		rc = ms_err_set(err, MS_EINVAL, "unknown raft message type %u", pb->type);
		goto free_pb;
	}
	size_t data_bytes = 0;
	for (size_t i = 0; i < pb->n_entries; i++) {
		if (pb->entries[i]->type > RAFT_ENTRY_CONF_CHANGE) {
			rc = ms_err_set(err, MS_EINVAL, "unknown raft entry type %u", pb->entries[i]->type);
			goto free_pb;
		}
		data_bytes += pb->entries[i]->data.len;
	}
	out->type = (raft_msg_type)pb->type;
	out->from = pb->from;
	out->to = pb->to;
	out->term = pb->term;
	out->log_term = pb->log_term;
	out->index = pb->index;
	out->commit = pb->commit;
	out->reject = pb->reject;
	out->reject_hint = pb->reject_hint;
	bool oom = false;
	if (pb->n_entries) {
		raft_entry *ents = ms_malloc(pb->n_entries * sizeof *ents + data_bytes);
		if (!ents) {
			oom = true;
			goto check_oom;
		}
		uint8_t *data = (uint8_t *)(ents + pb->n_entries);
		for (size_t i = 0; i < pb->n_entries; i++) {
			const Msraft__Entry *e = pb->entries[i];
			ents[i] = (raft_entry){e->term, e->index, (raft_entry_type)e->type, NULL, e->data.len};
			if (e->data.len) {
				memcpy(data, e->data.data, e->data.len);
				ents[i].data = data;
				data += e->data.len;
			}
		}
		out->entries = ents;
		out->n_entries = pb->n_entries;
	}
	if (pb->context.len) {
		out->context = ms_memdup(pb->context.data, pb->context.len);
		out->context_len = pb->context.len;
		if (!out->context)
			oom = true;
	}
	if (pb->snapshot) {
		const Msraft__SnapshotMeta *s = pb->snapshot;
		out->snapshot.index = s->index;
		out->snapshot.term = s->term;
		out->snapshot.conf_state.voters = dup_ids(s->voters, s->n_voters, &oom);
		out->snapshot.conf_state.n_voters = s->n_voters;
		out->snapshot.conf_state.learners = dup_ids(s->learners, s->n_learners, &oom);
		out->snapshot.conf_state.n_learners = s->n_learners;
	}
check_oom:
	if (oom) {
		raft_transport_msg_free(out);
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
	}
free_pb:
	msraft__message__free_unpacked(pb, &ms_pb_allocator);
	return rc;
}
