/* test_tls.c — common/tls.h: Go cipher-suite names, auto-tls certificates,
 * start-up errors naming the file (missing, key mismatch, expired, no PEM),
 * and real handshakes on a loopback port through the gRPC server and client
 * seams: mutual TLS with the client's CN visible to the call, a client
 * without a certificate or from a foreign CA refused in the handshake, a
 * revoked serial refused, a server certificate for another host refused by
 * the client, an allowed-CN check. Certificates are made here, in a
 * temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/grpc.h"
#include "api/grpc_client.h"
#include "common/tls.h"

static char tmp[256];

static void path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", tmp, name);
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *v)
{
	X509V3_CTX c;
	X509V3_set_ctx_nodb(&c);
	X509V3_set_ctx(&c, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &c, nid, v);
	assert_non_null(e);
	assert_true(X509_add_ext(x, e, -1));
	X509_EXTENSION_free(e);
}

/* name.crt / name.key: CN=cn, serial, valid [from, to] seconds from now,
 * SAN san (or none), signed by ca (NULL: self-signed, usable as a CA). */
static void make_cert(const char *name, const char *cn, long serial, long from, long to, const char *san,
                      const char *ca)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	assert_non_null(k);
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), to);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_pubkey(x, k);
	X509 *issuer = x;
	EVP_PKEY *signer = k;
	EVP_PKEY *cak = NULL;
	X509 *cax = NULL;
	char p[512];
	if (ca) {
		path(p, sizeof p, ca);
		strcat(p, ".crt");
		FILE *f = fopen(p, "r");
		assert_non_null(f);
		cax = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
		path(p, sizeof p, ca);
		strcat(p, ".key");
		f = fopen(p, "r");
		assert_non_null(f);
		cak = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		assert_non_null(cax);
		assert_non_null(cak);
		issuer = cax;
		signer = cak;
		add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
	} else {
		add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
	}
	X509_set_issuer_name(x, X509_get_subject_name(issuer));
	add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
	if (san)
		add_ext(x, issuer, NID_subject_alt_name, san);
	assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
	path(p, sizeof p, name);
	strcat(p, ".crt");
	FILE *f = fopen(p, "w");
	PEM_write_X509(f, x);
	fclose(f);
	path(p, sizeof p, name);
	strcat(p, ".key");
	f = fopen(p, "w");
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	X509_free(cax);
	EVP_PKEY_free(k);
	EVP_PKEY_free(cak);
}

/* ca.crl revoking serial */
static void make_crl(const char *ca, long serial)
{
	char p[512];
	path(p, sizeof p, ca);
	strcat(p, ".key");
	FILE *f = fopen(p, "r");
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	path(p, sizeof p, ca);
	strcat(p, ".crt");
	f = fopen(p, "r");
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	X509_CRL *crl = X509_CRL_new();
	X509_CRL_set_version(crl, 1);
	X509_CRL_set_issuer_name(crl, X509_get_subject_name(x));
	ASN1_TIME *t = ASN1_TIME_adj(NULL, time(NULL), 0, 0);
	X509_CRL_set1_lastUpdate(crl, t);
	X509_REVOKED *r = X509_REVOKED_new();
	ASN1_INTEGER *s = ASN1_INTEGER_new();
	ASN1_INTEGER_set(s, serial);
	X509_REVOKED_set_serialNumber(r, s);
	X509_REVOKED_set_revocationDate(r, t);
	X509_CRL_add0_revoked(crl, r);
	X509_CRL_sign(crl, k, EVP_sha256());
	path(p, sizeof p, ca);
	strcat(p, ".crl");
	f = fopen(p, "w");
	PEM_write_X509_CRL(f, crl);
	fclose(f);
	ASN1_INTEGER_free(s);
	ASN1_TIME_free(t);
	X509_CRL_free(crl);
	X509_free(x);
	EVP_PKEY_free(k);
}

static int setup(void **state)
{
	snprintf(tmp, sizeof tmp, "/tmp/ms-test-tls.XXXXXX");
	assert_non_null(mkdtemp(tmp));
	make_cert("ca", "test-ca", 1, -60, 86400, NULL, NULL);
	make_cert("server", "server", 2, -60, 86400, "IP:127.0.0.1", "ca");
	make_cert("alice", "alice", 3, -60, 86400, NULL, "ca");
	make_cert("mallory", "mallory", 4, -60, 86400, NULL, "ca"); /* revoked below */
	make_cert("other", "other", 5, -60, 86400, "IP:127.0.0.2", "ca");
	make_cert("expired", "expired", 6, -7200, -3600, "IP:127.0.0.1", "ca");
	make_cert("fca", "foreign-ca", 1, -60, 86400, NULL, NULL);
	make_cert("eve", "alice", 7, -60, 86400, NULL, "fca");
	make_crl("ca", 4);
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- cipher suites ---- */

static void test_cipher_names(void **state)
{
	char out[256];
	ms_err err = {0};
	assert_int_equal(ms_tls_cipher_list("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "
	                                    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
	                                    out, sizeof out, &err),
	                 0);
	assert_string_equal(out, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305");
	assert_int_equal(ms_tls_cipher_list("TLS_AES_128_GCM_SHA256", out, sizeof out, &err), 0);
	assert_string_equal(out, ""); /* TLS 1.3: not configurable, as in Go */
	assert_int_equal(ms_tls_cipher_list("", out, sizeof out, &err), 0);
	assert_string_equal(out, "");
	assert_int_equal(ms_tls_cipher_list("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_NOPE", out, sizeof out, &err),
	                 MS_EINVAL);
	assert_string_equal(err.msg, "unexpected TLS cipher suite \"TLS_NOPE\"");
	/* a mapped list OpenSSL accepts builds a context */
	char c[512], k[512];
	path(c, sizeof c, "server.crt");
	path(k, sizeof k, "server.key");
	ms_tls *t = NULL;
	ms_tls_opts o = {.cert_file = c, .key_file = k, .cipher_suites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"};
	assert_int_equal(ms_tls_new(&o, &t, &err), 0);
	ms_tls_free(t);
}

/* ---- loading errors ---- */

static void expect_error(const char *cert, const char *key, const char *want1, const char *want2)
{
	char c[512], k[512];
	path(c, sizeof c, cert);
	path(k, sizeof k, key);
	ms_tls *t = NULL;
	ms_err err = {0};
	ms_tls_opts o = {.cert_file = c, .key_file = k};
	assert_int_equal(ms_tls_new(&o, &t, &err), MS_EINVAL);
	assert_null(t);
	if (!strstr(err.msg, want1) || !strstr(err.msg, want2))
		fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err.msg, want1, want2);
}

static void test_load_errors(void **state)
{
	expect_error("missing.crt", "server.key", "--cert-file", "missing.crt: open: No such file or directory");
	expect_error("server.crt", "missing.key", "--key-file", "missing.key: open: No such file or directory");
	expect_error("server.crt", "alice.key", "alice.key", "does not match the certificate in");
	expect_error("expired.crt", "expired.key", "expired.crt", "has expired");
	expect_error("server.key", "server.key", "server.key", "no PEM certificate");
	expect_error("server.crt", "server.crt", "server.crt", "no PEM private key");
	/* CA and CRL files are named too */
	char c[512], k[512], ca[512];
	path(c, sizeof c, "server.crt");
	path(k, sizeof k, "server.key");
	path(ca, sizeof ca, "nope-ca.crt");
	ms_tls *t = NULL;
	ms_err err = {0};
	ms_tls_opts o = {
	    .cert_file = c, .key_file = k, .trusted_ca_file = ca, .client_cert_auth = true, .flag_prefix = "peer-"};
	assert_int_equal(ms_tls_new(&o, &t, &err), MS_EINVAL);
	assert_non_null(strstr(err.msg, "--peer-trusted-ca-file"));
	o.trusted_ca_file = NULL;
	o.crl_file = ca;
	assert_int_equal(ms_tls_new(&o, &t, &err), MS_EINVAL);
	assert_non_null(strstr(err.msg, "--peer-crl-file"));
	o.crl_file = NULL;
	o.key_file = NULL;
	assert_int_equal(ms_tls_new(&o, &t, &err), MS_EINVAL);
	assert_non_null(strstr(err.msg, "KeyFile and CertFile must both be present"));
	o.key_file = k;
	o.allowed_cn = "a";
	o.allowed_hostname = "b";
	assert_int_equal(ms_tls_new(&o, &t, &err), MS_EINVAL);
	assert_non_null(strstr(err.msg, "mutually exclusive"));
}

/* ---- auto-tls ---- */

static void test_self_cert(void **state)
{
	char dir[512], c[600], k[600];
	path(dir, sizeof dir, "data/fixtures/client");
	char *hosts[] = {"127.0.0.1:2379", "localhost:2379", "[::1]:2379"};
	ms_err err = {0};
	assert_int_equal(ms_tls_self_cert(dir, hosts, 3, 2, &err), 0);
	snprintf(c, sizeof c, "%s/cert.pem", dir);
	snprintf(k, sizeof k, "%s/key.pem", dir);
	struct stat st;
	assert_int_equal(stat(k, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	FILE *f = fopen(c, "r");
	assert_non_null(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
	assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
	char o[64];
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationName, o, sizeof o) > 0);
	assert_string_equal(o, "etcd");
	/* 2 years of validity: expires between 729 and 731 days from now */
	int days = 0, secs = 0;
	assert_true(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)));
	assert_true(days >= 729 && days <= 731);
	X509_free(x);
	/* a second start reuses the pair */
	struct stat st2, st3;
	assert_int_equal(stat(c, &st2), 0);
	assert_int_equal(ms_tls_self_cert(dir, hosts, 3, 2, &err), 0);
	assert_int_equal(stat(c, &st3), 0);
	assert_int_equal(st2.st_ino, st3.st_ino);
	assert_int_equal(st2.st_mtime, st3.st_mtime);
	/* and it loads */
	ms_tls *t = NULL;
	ms_tls_opts to = {.cert_file = c, .key_file = k, .insecure_skip_verify = true};
	assert_int_equal(ms_tls_new(&to, &t, &err), 0);
	ms_tls_free(t);
}

/* ---- handshakes through the gRPC seams ---- */

/* answers with the CN of the client certificate, or "-" */
static void h_cn(grpc_call *call, const uint8_t *msg, size_t len, void *ud)
{
	const char *cn = grpc_call_peer_cn(call);
	grpc_call_send(call, (const uint8_t *)(cn ? cn : "-"), cn ? strlen(cn) : 1);
	grpc_call_finish(call, GRPC_OK, NULL);
}

static const grpc_method methods[] = {{"/test.T/Cn", GRPC_UNARY, h_cn, NULL, NULL, NULL}};

typedef struct result {
	bool done;
	int status;
	char msg[64];
} result;

static void r_msg(grpc_client_call *call, const uint8_t *msg, size_t len, void *ud)
{
	result *r = ud;
	snprintf(r->msg, sizeof r->msg, "%.*s", (int)MS_MIN(len, 63), (const char *)msg);
}

static void r_done(grpc_client_call *call, int status, const char *message, void *ud)
{
	result *r = ud;
	r->done = true;
	r->status = status;
}

static bool hung;
static void guard_cb(evutil_socket_t fd, short what, void *arg)
{
	hung = true;
	event_base_loopbreak(arg);
}

static ms_tls *mk(const char *cert, const char *key, const char *ca, const char *crl, bool auth, const char *cn)
{
	char c[512], k[512], a[512], r[512];
	path(c, sizeof c, cert ? cert : "");
	path(k, sizeof k, key ? key : "");
	path(a, sizeof a, ca ? ca : "");
	path(r, sizeof r, crl ? crl : "");
	ms_tls_opts o = {.cert_file = cert ? c : NULL,
	                 .key_file = key ? k : NULL,
	                 .trusted_ca_file = ca ? a : NULL,
	                 .crl_file = crl ? r : NULL,
	                 .client_cert_auth = auth,
	                 .allowed_cn = cn};
	ms_tls *t = NULL;
	ms_err err = {0};
	if (ms_tls_new(&o, &t, &err))
		fail_msg("ms_tls_new: %s", err.msg);
	return t;
}

/* One call to a TLS server with srv_tls from a client with cl_tls; returns
 * the status and the answer in r. */
static void call_once(ms_tls *srv_tls, ms_tls *cl_tls, result *r)
{
	struct event_base *base = event_base_new();
	grpc_server *srv = NULL;
	grpc_client *cl = NULL;
	ms_err err = {0};
	int port = 0;
	assert_int_equal(grpc_server_new(base, NULL, methods, 1, &srv, &err), 0);
	assert_int_equal(grpc_server_listen_tls(srv, "127.0.0.1", 0, srv_tls, &port, &err), 0);
	grpc_client_opts co = {.tls = cl_tls};
	assert_int_equal(grpc_client_new(base, "127.0.0.1", port, &co, &cl, &err), 0);
	memset(r, 0, sizeof *r);
	assert_int_equal(grpc_client_unary(cl, "/test.T/Cn", (const uint8_t *)"x", 1, 0, r_msg, r_done, r, NULL), 0);
	hung = false;
	struct event *guard = evtimer_new(base, guard_cb, base);
	struct timeval tv = {20, 0}; /* only keeps a broken build from hanging */
	evtimer_add(guard, &tv);
	while (!r->done && !hung)
		event_base_loop(base, EVLOOP_ONCE);
	assert_false(hung);
	grpc_client_free(cl);
	grpc_server_free(srv);
	event_free(guard);
	event_base_free(base);
}

static void test_mtls(void **state)
{
	ms_tls *srv = mk("server.crt", "server.key", "ca.crt", "ca.crl", true, NULL);
	result r;

	ms_tls *alice = mk("alice.crt", "alice.key", "ca.crt", NULL, false, NULL);
	call_once(srv, alice, &r);
	assert_int_equal(r.status, GRPC_OK);
	assert_string_equal(r.msg, "alice"); /* the CN reaches the call */
	ms_tls_free(alice);

	ms_tls *anon = mk(NULL, NULL, "ca.crt", NULL, false, NULL);
	call_once(srv, anon, &r);
	assert_int_equal(r.status, GRPC_UNAVAILABLE); /* no certificate: refused in the handshake */
	ms_tls_free(anon);

	ms_tls *eve = mk("eve.crt", "eve.key", "ca.crt", NULL, false, NULL);
	call_once(srv, eve, &r);
	assert_int_equal(r.status, GRPC_UNAVAILABLE); /* CN alice, but from a foreign CA */
	ms_tls_free(eve);

	ms_tls *mallory = mk("mallory.crt", "mallory.key", "ca.crt", NULL, false, NULL);
	call_once(srv, mallory, &r);
	assert_int_equal(r.status, GRPC_UNAVAILABLE); /* revoked by ca.crl */
	ms_tls_free(mallory);
	ms_tls_free(srv);

	/* without client-cert-auth no certificate is asked for: no CN */
	srv = mk("server.crt", "server.key", "ca.crt", NULL, false, NULL);
	alice = mk("alice.crt", "alice.key", "ca.crt", NULL, false, NULL);
	call_once(srv, alice, &r);
	assert_int_equal(r.status, GRPC_OK);
	assert_string_equal(r.msg, "-");
	ms_tls_free(srv);

	/* allowed CN */
	srv = mk("server.crt", "server.key", "ca.crt", NULL, true, "bob");
	call_once(srv, alice, &r);
	assert_int_equal(r.status, GRPC_UNAVAILABLE);
	ms_tls_free(srv);
	srv = mk("server.crt", "server.key", "ca.crt", NULL, true, "alice");
	call_once(srv, alice, &r);
	assert_int_equal(r.status, GRPC_OK);
	ms_tls_free(srv);
	ms_tls_free(alice);
}

static void test_client_verifies_server(void **state)
{
	result r;
	/* a certificate for 127.0.0.2 served on 127.0.0.1: the client refuses */
	ms_tls *srv = mk("other.crt", "other.key", NULL, NULL, false, NULL);
	ms_tls *cl = mk(NULL, NULL, "ca.crt", NULL, false, NULL);
	call_once(srv, cl, &r);
	assert_int_equal(r.status, GRPC_UNAVAILABLE);
	ms_tls_free(srv);
	/* a server from a CA the client does not trust */
	srv = mk("server.crt", "server.key", NULL, NULL, false, NULL);
	ms_tls *cl2 = mk(NULL, NULL, "fca.crt", NULL, false, NULL);
	call_once(srv, cl2, &r);
	assert_int_equal(r.status, GRPC_UNAVAILABLE);
	/* the right CA and host */
	call_once(srv, cl, &r);
	assert_int_equal(r.status, GRPC_OK);
	ms_tls_free(srv);
	ms_tls_free(cl);
	ms_tls_free(cl2);
}

/* A client that connects and never says ClientHello is closed by the
 * handshake deadline: the owner sees an error event. */
static short hs_events;
static void hs_event_cb(struct bufferevent *bev, short what, void *arg)
{
	hs_events = what;
	event_base_loopbreak(arg);
}

static void test_handshake_deadline(void **state)
{
	ms_tls *srv = mk("server.crt", "server.key", NULL, NULL, false, NULL);
	struct event_base *base = event_base_new();
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	evutil_make_socket_nonblocking(sv[0]);
	struct bufferevent *bev = ms_tls_bev_accept(srv, base, sv[0], BEV_OPT_CLOSE_ON_FREE, 200);
	assert_non_null(bev);
	hs_events = 0;
	bufferevent_setcb(bev, NULL, NULL, hs_event_cb, base);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	hung = false;
	struct event *guard = evtimer_new(base, guard_cb, base);
	struct timeval tv = {20, 0};
	evtimer_add(guard, &tv);
	event_base_dispatch(base);
	assert_false(hung);
	assert_true(hs_events & BEV_EVENT_ERROR);
	assert_true(hs_events & BEV_EVENT_TIMEOUT);
	bufferevent_free(bev); /* frees the SSL and its deadline timer */
	close(sv[1]);
	event_free(guard);
	event_base_free(base);
	ms_tls_free(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cipher_names),
	    cmocka_unit_test(test_load_errors),
	    cmocka_unit_test(test_self_cert),
	    cmocka_unit_test(test_mtls),
	    cmocka_unit_test(test_client_verifies_server),
	    cmocka_unit_test(test_handshake_deadline),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
