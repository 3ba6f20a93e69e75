/* fuzz_types.h — the message types a client or a peer can make the server
 * decode, in a fixed order shared by fuzz_request.c (the first input byte
 * picks one) and gen_seeds.c (which writes seeds for each). Built from the
 * generated service descriptors, so a new RPC is fuzzed without an edit. */
#ifndef MS_FUZZ_TYPES_H
#define MS_FUZZ_TYPES_H

#include <stddef.h>

#include "common/pbcheck.h"
#include "internal.pb-c.h"
#include "rpc.pb-c.h"
#include "v3election.pb-c.h"
#include "v3lock.pb-c.h"

typedef struct fuzz_type {
	const ProtobufCMessageDescriptor *d;
	unsigned depth; /* the bound its decode site uses */
} fuzz_type;

#define FUZZ_MAX_TYPES 96

/* Fills t (FUZZ_MAX_TYPES entries) and returns how many: every request type
 * of etcd's services, then what the raft log and the peer port carry. */
static inline size_t fuzz_types(fuzz_type *t)
{
	static const ProtobufCServiceDescriptor *const services[] = {
	    &etcdserverpb__kv__descriptor,          &etcdserverpb__watch__descriptor,
	    &etcdserverpb__lease__descriptor,       &etcdserverpb__cluster__descriptor,
	    &etcdserverpb__maintenance__descriptor, &etcdserverpb__auth__descriptor,
	    &v3electionpb__election__descriptor,    &v3lockpb__lock__descriptor,
	};
	static const ProtobufCMessageDescriptor *const internal[] = {
	    &msinternal__internal_request__descriptor,
	    &msinternal__peer_request__descriptor,
	    &msinternal__peer_response__descriptor,
	    &msinternal__member_change_context__descriptor,
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof services / sizeof *services; i++)
		for (unsigned j = 0; j < services[i]->n_methods; j++) {
			const ProtobufCMessageDescriptor *d = services[i]->methods[j].input;
			size_t k = 0;
			while (k < n && t[k].d != d)
				k++;
			if (k == n && n < FUZZ_MAX_TYPES)
				t[n++] = (fuzz_type){d, MS_PB_MAX_DEPTH};
		}
	for (size_t i = 0; i < sizeof internal / sizeof *internal && n < FUZZ_MAX_TYPES; i++)
		t[n++] = (fuzz_type){internal[i], MS_PB_MAX_DEPTH_INTERNAL};
	return n;
}

#endif
