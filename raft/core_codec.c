/* core_codec.c — byte encodings the Raft core defines for its callers: conf
 * change entry data and stored conf states; plus names for logs. */
#include <string.h>

#include "raft/raft_core.h"

uint8_t *raft_conf_change_encode(const raft_conf_change *cc, size_t *len)
{
	size_t n = 9 + cc->context_len;
	uint8_t *b = ms_malloc(n);
	if (!b)
		return NULL;
	b[0] = (uint8_t)cc->type;
	ms_put_u64le(b + 1, cc->node_id);
	if (cc->context_len)
		memcpy(b + 9, cc->context, cc->context_len);
	*len = n;
	return b;
}

int raft_conf_change_decode(const uint8_t *buf, size_t len, raft_conf_change *cc)
{
	if (!buf || len < 9 || buf[0] > RAFT_CC_REMOVE)
		return MS_EINVAL;
	cc->type = (raft_conf_change_type)buf[0];
	cc->node_id = ms_get_u64le(buf + 1);
	if (cc->node_id == RAFT_NONE)
		return MS_EINVAL;
	cc->context = len > 9 ? buf + 9 : NULL;
	cc->context_len = len - 9;
	return 0;
}

uint8_t *raft_conf_state_encode(const raft_conf_state *cs, size_t *len)
{
	size_t n = 8 + 8 * (cs->n_voters + cs->n_learners);
	uint8_t *b = ms_malloc(n), *p;
	if (!b)
		return NULL;
	ms_put_u32le(b, (uint32_t)cs->n_voters);
	ms_put_u32le(b + 4, (uint32_t)cs->n_learners);
	p = b + 8;
	for (size_t i = 0; i < cs->n_voters; i++, p += 8)
		ms_put_u64le(p, cs->voters[i]);
	for (size_t i = 0; i < cs->n_learners; i++, p += 8)
		ms_put_u64le(p, cs->learners[i]);
	*len = n;
	return b;
}

int raft_conf_state_decode(const uint8_t *buf, size_t len, raft_conf_state *cs)
{
	memset(cs, 0, sizeof *cs);
	if (len == 0)
		return 0; /* no conf state stored: empty membership */
	if (len < 8)
		return MS_EINVAL;
	uint64_t nv = ms_get_u32le(buf), nl = ms_get_u32le(buf + 4);
	if (nv > (1u << 20) || nl > (1u << 20) || len != 8 + 8 * (nv + nl))
		return MS_EINVAL;
	if (nv && !(cs->voters = ms_malloc(nv * 8)))
		goto nomem;
	if (nl && !(cs->learners = ms_malloc(nl * 8)))
		goto nomem;
	const uint8_t *p = buf + 8;
	for (uint64_t i = 0; i < nv; i++, p += 8)
		cs->voters[i] = ms_get_u64le(p);
	for (uint64_t i = 0; i < nl; i++, p += 8)
		cs->learners[i] = ms_get_u64le(p);
	cs->n_voters = nv;
	cs->n_learners = nl;
	/* ids are non-zero and appear once */
	for (size_t i = 0; i < nv + nl; i++) {
		uint64_t a = i < nv ? cs->voters[i] : cs->learners[i - nv];
		if (a == RAFT_NONE)
			goto bad;
		for (size_t j = i + 1; j < nv + nl; j++)
			if (a == (j < nv ? cs->voters[j] : cs->learners[j - nv]))
				goto bad;
	}
	return 0;
bad:
	raft_conf_state_free(cs);
	return MS_EINVAL;
nomem:
	raft_conf_state_free(cs);
	return MS_ENOMEM;
}

void raft_conf_state_free(raft_conf_state *cs)
{
	ms_free(cs->voters);
	ms_free(cs->learners);
	memset(cs, 0, sizeof *cs);
}

int raft_conf_state_copy(raft_conf_state *dst, const raft_conf_state *src)
{
	raft_conf_state t = {0};
	if (src->n_voters && !(t.voters = ms_memdup(src->voters, src->n_voters * sizeof(uint64_t))))
		return MS_ENOMEM;
	if (src->n_learners && !(t.learners = ms_memdup(src->learners, src->n_learners * sizeof(uint64_t)))) {
		ms_free(t.voters);
		return MS_ENOMEM;
	}
	t.n_voters = src->n_voters;
	t.n_learners = src->n_learners;
	*dst = t;
	return 0;
}

const char *raft_msg_type_name(raft_msg_type t)
{
	switch (t) {
	case RAFT_MSG_APP:
		return "MsgApp";
	case RAFT_MSG_APP_RESP:
		return "MsgAppResp";
	case RAFT_MSG_VOTE:
		return "MsgVote";
	case RAFT_MSG_VOTE_RESP:
		return "MsgVoteResp";
	case RAFT_MSG_PRE_VOTE:
		return "MsgPreVote";
	case RAFT_MSG_PRE_VOTE_RESP:
		return "MsgPreVoteResp";
	case RAFT_MSG_HEARTBEAT:
		return "MsgHeartbeat";
	case RAFT_MSG_HEARTBEAT_RESP:
		return "MsgHeartbeatResp";
	case RAFT_MSG_SNAP:
		return "MsgSnap";
	case RAFT_MSG_TIMEOUT_NOW:
		return "MsgTimeoutNow";
	case RAFT_MSG_READ_INDEX:
		return "MsgReadIndex";
	case RAFT_MSG_READ_INDEX_RESP:
		return "MsgReadIndexResp";
	}
	return "MsgUnknown";
}

const char *raft_role_name(raft_role r)
{
	switch (r) {
	case RAFT_FOLLOWER:
		return "follower";
	case RAFT_PRE_CANDIDATE:
		return "pre-candidate";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_LEADER:
		return "leader";
	}
	return "unknown";
}
