/* api.h — MetaStore's client-facing surface: the etcd v3 gRPC services
 * (KV, Maintenance, Cluster, health) on the gRPC layer, and the HTTP/1.1
 * endpoints on the same port (/health, /version, /metrics).
 *
 * Threads: everything runs on the loop thread that owns the server.
 * Not served yet (answered with Unimplemented, never faked): Watch, Lease,
 * Auth, Election/Lock, Maintenance Snapshot/Hash, and
 * the JSON gateway (HTTP 501). */
#ifndef MS_API_H
#define MS_API_H

#include "common/ms.h"
#include "server/server.h"

struct event_base;
typedef struct api api;

int api_new(struct event_base *base, ms_server *srv, api **out, ms_err *err);
/* --max-txn-ops (default 128). */
void api_set_max_txn_ops(api *a, int n);
/* The client TLS configuration for https:// URLs (borrowed: it must outlive
 * a; NULL = none, and https:// URLs are refused). */
struct ms_tls;
void api_set_tls(api *a, struct ms_tls *tls);
/* --max-concurrent-streams (default 1000): for connections accepted later. */
void api_set_max_concurrent_streams(api *a, uint32_t n);
/* Listens on a client URL (http:// or https://host:port; unix refused for
 * now). The same host:port twice (etcd serves http and https on one port)
 * is refused: the second bind fails. */
int api_listen(api *a, const char *url, ms_err *err);
void api_free(api *a);

/* etcd's gRPC status code and exact message for an MS_E* code (msg may be
 * NULL: a detail for codes without a fixed etcd text). */
void api_error(int code, const char *detail, int *grpc_status, const char **message, char *buf, size_t bufsz);

#endif
