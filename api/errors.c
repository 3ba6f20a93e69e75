/* errors.c — the one place MS_E* codes become etcd's gRPC codes and exact
 * messages (clients match on the text). */
#include <stdio.h>

#include "api/api.h"
#include "api/grpc.h"

typedef struct err_map {
	int code;
	int grpc;
	const char *msg;
} err_map;

static const err_map table[] = {
    {MS_EKEY_EMPTY, GRPC_INVALID_ARGUMENT, "etcdserver: key is not provided"},
    {MS_EKEY_NOT_FOUND, GRPC_INVALID_ARGUMENT, "etcdserver: key not found"},
    {MS_EVALUE_PROVIDED, GRPC_INVALID_ARGUMENT, "etcdserver: value is provided"},
    {MS_ELEASE_PROVIDED, GRPC_INVALID_ARGUMENT, "etcdserver: lease is provided"},
    {MS_ETOO_MANY_OPS, GRPC_INVALID_ARGUMENT, "etcdserver: too many operations in txn request"},
    {MS_EDUP_KEY, GRPC_INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"},
    {MS_ECOMPACTED, GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"},
    {MS_EFUTURE_REV, GRPC_OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"},
    {MS_ENOSPACE, GRPC_RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"},
    {MS_ELEASE_NOT_FOUND, GRPC_NOT_FOUND, "etcdserver: requested lease not found"},
    {MS_ELEASE_EXISTS, GRPC_FAILED_PRECONDITION, "etcdserver: lease already exists"},
    {MS_ELEASE_TTL_LARGE, GRPC_OUT_OF_RANGE, "etcdserver: too large lease TTL"},
    {MS_EREQ_TOO_LARGE, GRPC_INVALID_ARGUMENT, "etcdserver: request is too large"},
    {MS_ETOO_MANY_REQS, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests"},
    {MS_ENO_LEADER, GRPC_UNAVAILABLE, "etcdserver: no leader"},
    {MS_ENOT_LEADER, GRPC_FAILED_PRECONDITION, "etcdserver: not leader"},
    {MS_ELEADER_CHANGED, GRPC_UNAVAILABLE, "etcdserver: leader changed"},
    {MS_EMEMBER_EXISTS, GRPC_FAILED_PRECONDITION, "etcdserver: member ID already exist"},
    {MS_EPEER_URL_EXISTS, GRPC_FAILED_PRECONDITION, "etcdserver: Peer URLs already exists"},
    {MS_EMEMBER_NOT_FOUND, GRPC_NOT_FOUND, "etcdserver: member not found"},
    {MS_EMEMBER_BAD_URLS, GRPC_INVALID_ARGUMENT, "etcdserver: given member URLs are invalid"},
    {MS_ENOT_LEARNER, GRPC_FAILED_PRECONDITION, "etcdserver: can only promote a learner member"},
    {MS_ELEARNER_NOT_READY, GRPC_FAILED_PRECONDITION,
     "etcdserver: can only promote a learner member which is in sync with leader"},
    {MS_ETOO_MANY_LEARNERS, GRPC_FAILED_PRECONDITION, "etcdserver: too many learner members in cluster"},
    {MS_EUNHEALTHY, GRPC_UNAVAILABLE, "etcdserver: unhealthy cluster"},
    {MS_ENOT_ENOUGH_STARTED, GRPC_FAILED_PRECONDITION,
     "etcdserver: re-configuration failed due to not enough started members"},
    {MS_EBAD_TRANSFEREE, GRPC_FAILED_PRECONDITION, "etcdserver: bad leader transferee"},
    {MS_ELEARNER_RPC, GRPC_UNAVAILABLE, "etcdserver: rpc not supported for learner"},
    {MS_ECORRUPT_CLUSTER, GRPC_DATA_LOSS, "etcdserver: corrupt cluster"},
    {MS_ETIMEOUT, GRPC_UNAVAILABLE, "etcdserver: request timed out"},
    {MS_ETIMEOUT_LEADER_FAIL, GRPC_UNAVAILABLE,
     "etcdserver: request timed out, possibly due to previous leader failure"},
    {MS_ESTOPPED, GRPC_UNAVAILABLE, "etcdserver: server stopped"},
    {MS_ETIMEOUT_TRANSFER, GRPC_UNAVAILABLE, "etcdserver: request timed out, leader transfer took too long"},
    {MS_EWATCH_CANCELED, GRPC_CANCELED, "etcdserver: watch canceled"},
};

void api_error(int code, const char *detail, int *grpc_status, const char **message, char *buf, size_t bufsz)
{
	for (size_t i = 0; i < MS_ARRAY_LEN(table); i++)
		if (table[i].code == code) {
			*grpc_status = table[i].grpc;
			*message = table[i].msg;
			return;
		}
	switch (code) {
	case MS_EINVAL:
		*grpc_status = GRPC_INVALID_ARGUMENT;
		break;
	case MS_EUNSUPPORTED:
		*grpc_status = GRPC_UNIMPLEMENTED;
		break;
	case MS_ENOMEM:
		*grpc_status = GRPC_RESOURCE_EXHAUSTED;
		break;
	case MS_ECANCELED:
		*grpc_status = GRPC_CANCELED;
		break;
	default:
		*grpc_status = GRPC_INTERNAL;
		break;
	}
	snprintf(buf, bufsz, "%s", detail && *detail ? detail : ms_strerror(code));
	*message = buf;
}
