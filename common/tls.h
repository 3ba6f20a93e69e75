/* tls.h — TLS for the client port, the peer port and MetaStore's own
 * clients (metastore-bench, the peer transport's dialer): OpenSSL contexts
 * built from etcd's flags, used through libevent's bufferevent_openssl (the
 * handshake never blocks the loop). No hand-written crypto.
 *
 * Decisions (etcd 3.4's behaviour unless said otherwise)
 *  - TLS 1.2 minimum, 1.3 allowed; renegotiation refused.
 *  - --cipher-suites takes Go's names (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
 *    ...) and maps them to OpenSSL's TLS 1.2 names; an unknown name is an
 *    error naming it (`unexpected TLS cipher suite "X"`, as etcd). TLS 1.3
 *    suites are not configurable, as in Go: their names are accepted and
 *    leave OpenSSL's TLS 1.3 defaults.
 *  - Server side: a client certificate is asked for only with
 *    client_cert_auth, and then required and verified against the trusted CA
 *    file in the handshake (no certificate, a foreign CA, a revoked serial or
 *    a CN/hostname not allowed = the handshake fails; nothing reaches the
 *    protocol above). ALPN: http/1.1 when the client offers it, else h2, and
 *    no ALPN is accepted too (the HTTP/2 preface is still sniffed after the
 *    handshake). etcd (Go's http server) prefers h2 and serves /health over
 *    HTTP/2 as well; MetaStore's HTTP/2 side serves gRPC only, and gRPC
 *    clients offer h2 without http/1.1, so preferring http/1.1 gives curl
 *    and browsers the HTTP endpoints and gRPC clients h2.
 *  - CRL (--client-crl-file, --peer-crl-file): PEM or DER, read at start-up;
 *    a presented certificate (any in the chain) whose serial number is listed
 *    is refused, as etcd's check (by serial; the CRL's signature is not
 *    checked, as in etcd). etcd re-reads the file per connection; MetaStore
 *    reads it once (a restart picks up a new CRL).
 *  - Allowed CN / hostname (--peer-cert-allowed-cn, --peer-cert-allowed-
 *    hostname, --client-cert-allowed-hostname): checked on the leaf of a
 *    verified client certificate; CN and hostname together is an error.
 *  - Certificates are loaded once at start-up; a missing or unreadable file,
 *    a file without a PEM certificate or key, a key that does not match the
 *    certificate, and an expired (or not yet valid) certificate are errors
 *    naming the file. (etcd loads lazily and serves an expired certificate;
 *    refusing it at start-up is the clearer failure.)
 *  - Dialing side: the server certificate is verified against the trusted CA
 *    file (or the system roots without one) and against the host dialed (IP
 *    or DNS name), as Go does; insecure_skip_verify turns that off (auto-tls
 *    contexts, as etcd's self-signed TLSInfo).
 *  - A handshake has a deadline (ms_tls_bev_accept's timeout): a client that
 *    connects and never finishes the handshake is closed, so per-handshake
 *    memory is bounded by OpenSSL's limits for the time of the deadline.
 *  - Not done: the SAN check etcd makes on peer client certificates against
 *    the remote address (--experimental-peer-skip-client-san-verification
 *    stays refused), reloading certificates without a restart.
 *
 * Threads: an ms_tls is immutable after ms_tls_new and may be shared; the
 * bufferevents belong to their loop. */
#ifndef MS_COMMON_TLS_H
#define MS_COMMON_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/ms.h"

struct event_base;
struct bufferevent;
struct ssl_ctx_st;

typedef struct ms_tls_opts {
	const char *cert_file, *key_file; /* both or neither (neither: a client without a certificate) */
	const char *trusted_ca_file;      /* NULL/"": no client verification; dialing: the system roots */
	const char *crl_file;
	bool client_cert_auth;
	const char *allowed_cn, *allowed_hostname;
	const char *cipher_suites; /* Go names, comma-separated; NULL/"" = OpenSSL's defaults */
	bool insecure_skip_verify; /* dialing side: do not verify the server's certificate */
	const char *flag_prefix;   /* "" or "peer-": error messages name --<prefix>cert-file etc. */
} ms_tls_opts;

typedef struct ms_tls ms_tls;

/* Loads certificates and builds the server and client contexts. */
int ms_tls_new(const ms_tls_opts *o, ms_tls **out, ms_err *err);
void ms_tls_free(ms_tls *t);

/* Go cipher-suite names -> an OpenSSL TLS 1.2 cipher list in out ("" when
 * only TLS 1.3 names were given). MS_EINVAL names the unknown suite. */
int ms_tls_cipher_list(const char *go_names, char *out, size_t cap, ms_err *err);

/* etcd's auto-tls: <dir>/cert.pem and <dir>/key.pem, reused when both exist,
 * else made: a self-signed ECDSA P-521 certificate, O=etcd, a random 128-bit
 * serial, valid for validity_years (0 = 1) from now, server and client auth,
 * with hosts ("host:port" or "[v6]:port" as in URLs; IPs become IP SANs,
 * names DNS SANs). dir is created (0700). */
int ms_tls_self_cert(const char *dir, char *const *hosts, size_t nhosts, unsigned validity_years, ms_err *err);

/* A server-side TLS bufferevent on an accepted socket. A handshake not done
 * within handshake_ms raises BEV_EVENT_ERROR on it (the owner's event
 * callback closes it as any error). NULL on failure (fd is then NOT closed). */
struct bufferevent *ms_tls_bev_accept(ms_tls *t, struct event_base *base, int fd, int bev_opts, int handshake_ms);
/* A client-side TLS bufferevent (fd -1: connect it with
 * bufferevent_socket_connect), verifying the server as host (an IP or a DNS
 * name; also sent as SNI when a name). alpn_h2 offers ALPN "h2". */
struct bufferevent *ms_tls_bev_connect(ms_tls *t, struct event_base *base, const char *host, bool alpn_h2,
                                       int bev_opts);
/* The CN of the verified certificate the other side presented on bev (a TLS
 * bufferevent whose handshake is done): 0 and the CN in buf, or MS_ENOTFOUND
 * (plain connection, no certificate, not verified, no CN). */
int ms_tls_peer_cn(struct bufferevent *bev, char *buf, size_t cap);
/* Why TLS failed on bev (takes the OpenSSL errors queued on it): 0 and the
 * reason in buf — an alert the other side sent in Go's words, as etcd logs
 * it ("remote error: tls: bad certificate"), else OpenSSL's reason — or
 * MS_ENOTFOUND (a plain connection, or no TLS error). */
int ms_tls_bev_error(struct bufferevent *bev, char *buf, size_t cap);

/* Blocking TLS over a connected blocking socket, for the start-up path that
 * runs before the loop (a joining member's request to a running member).
 * SO_RCVTIMEO/SO_SNDTIMEO on fd bound every step. The server is verified as
 * host, as ms_tls_bev_connect does. */
typedef struct ms_tls_sync ms_tls_sync;
int ms_tls_sync_connect(ms_tls *t, int fd, const char *host, ms_tls_sync **out, ms_err *err);
/* As read(2)/write(2): bytes moved, 0 at EOF, -1 with errno set (EAGAIN:
 * the socket timeout passed). */
long ms_tls_sync_io(ms_tls_sync *s, void *buf, size_t len, bool wr);
/* Frees (the socket stays open). NULL is a no-op. */
void ms_tls_sync_free(ms_tls_sync *s);

/* The client context (for callers that make their own SSL objects). */
struct ssl_ctx_st *ms_tls_client_ctx(ms_tls *t);

#endif
