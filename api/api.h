/* api.h — MetaStore's client-facing surface: the etcd v3 gRPC services
 * (KV, Maintenance, Cluster, health) on the gRPC layer, and the HTTP/1.1
 * endpoints on the same port (/health, /version, /metrics).
 *
 * Threads: everything runs on the loop thread that owns the server.
 * Not served yet (answered with Unimplemented, never faked): Auth,
 * Maintenance Snapshot/Hash, and the JSON gateway (HTTP 501).
 *
 * How each streaming RPC ends (etcd 3.4's v3rpc handlers; issue 18). Rules
 * common to all: a client cancel (RST_STREAM) or a lost connection ends the
 * call at once, its watchers/renewals/waiters are dropped and nothing more
 * is sent; a grpc-timeout that expires ends it with DeadlineExceeded
 * "context deadline exceeded" (the client's own timer fires at the same
 * moment); an error mid-stream is a status in the trailers after whatever
 * was sent, never a silent close; at server shutdown the connections close
 * and clients see Unavailable (etcd closes them too, after a grace period).
 *   - Watch (bidi): a client half-close does NOT end it: etcd's recvLoop
 *     returns nil on io.EOF and the stream keeps delivering events until the
 *     client cancels. No request ends it either: a bad create gets a
 *     created+canceled reply, an unknown cancel id no reply. Memory per
 *     stream is bounded (server/watch_srv.c; a slow stream that keeps
 *     creating/canceling gets ResourceExhausted "etcdserver: too many
 *     requests").
 *   - LeaseKeepAlive (bidi): one reply per request; after a client
 *     half-close the stream ends with OK once every request received before
 *     it is answered (etcd's loop answers each request before reading the
 *     next, and returns nil on io.EOF); a half-close with no request ends it
 *     at once with OK. A renewal error (no leader, timeout) ends it with
 *     that status (svc_lease.c).
 *   - Election.Observe (server streaming; the client half-closes right
 *     after its request, which changes nothing): sends the leader and each
 *     change until the client cancels; ends with OK when its observer stops
 *     (a failed read or a lost watcher), as etcd's returns nil.
 *   - Lock.Lock and Election.Campaign (unary, but may wait long): a client
 *     cancel or deadline while waiting deletes the waiter's key.
 *   - Maintenance.Snapshot: not served: Unimplemented "unknown method
 *     Snapshot for service etcdserverpb.Maintenance". */
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
