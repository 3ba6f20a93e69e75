/* tls.c — OpenSSL contexts from etcd's TLS flags, auto-tls certificates and
 * TLS bufferevents (see tls.h for the decisions). */
#include "common/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct ms_tls {
	SSL_CTX *server, *client;
	X509_CRL *crl;
	char *allowed_cn, *allowed_host;
	bool allowed_host_ip;
};

/* ---- cipher suites: Go's names -> OpenSSL's ---- */

static const struct {
	const char *go, *ossl; /* ossl NULL: a TLS 1.3 suite (not configurable, as in Go) */
} suites[] = {
    {"TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"},
    {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"},
    {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"},
    {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"},
    {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"},
    {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
    {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
    {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"},
    {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA"},
    {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305"},
    {"TLS_AES_128_GCM_SHA256", NULL},
    {"TLS_AES_256_GCM_SHA384", NULL},
    {"TLS_CHACHA20_POLY1305_SHA256", NULL},
};

int ms_tls_cipher_list(const char *go_names, char *out, size_t cap, ms_err *err)
{
	size_t n = 0;
	if (cap)
		out[0] = 0;
	const char *p = go_names ? go_names : "";
	while (*p) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		while (l && *p == ' ')
			p++, l--;
		while (l && p[l - 1] == ' ')
			l--;
		if (l) {
			const char *ossl = NULL;
			bool found = false;
			for (size_t i = 0; i < MS_ARRAY_LEN(suites) && !found; i++)
				if (strlen(suites[i].go) == l && !memcmp(suites[i].go, p, l)) {
					found = true;
					ossl = suites[i].ossl;
				}
			if (!found)
				return ms_err_set(err, MS_EINVAL, "unexpected TLS cipher suite \"%.*s\"", (int)l, p);
			if (ossl) {
				size_t ol = strlen(ossl);
				if (n + ol + 2 > cap)
					return ms_err_set(err, MS_EINVAL, "--cipher-suites: too many suites");
				if (n)
					out[n++] = ':';
				memcpy(out + n, ossl, ol + 1);
				n += ol;
			}
		}
		if (!c)
			break;
		p = c + 1;
	}
	return 0;
}

/* ---- loading ---- */

/* The first OpenSSL error as text (and the queue cleared). */
static const char *ossl_err(char *buf, size_t cap)
{
	unsigned long e = ERR_peek_last_error();
	if (!e)
		snprintf(buf, cap, "unknown error");
	else
		ERR_error_string_n(e, buf, cap);
	ERR_clear_error();
	return buf;
}

/* Opens path for reading; errors name the flag and the file. */
static FILE *open_file(const char *flag, const char *path, ms_err *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		ms_err_set(err, MS_EINVAL, "--%s %s: open: %s", flag, path, strerror(errno));
	return f;
}

static bool is_ip(const char *h)
{
	unsigned char b[16];
	return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static int load_cert_key(SSL_CTX *ctx, const ms_tls_opts *o, ms_err *err)
{
	char cf[64], kf[64], eb[160];
	snprintf(cf, sizeof cf, "%scert-file", o->flag_prefix ? o->flag_prefix : "");
	snprintf(kf, sizeof kf, "%skey-file", o->flag_prefix ? o->flag_prefix : "");
	FILE *f = open_file(cf, o->cert_file, err);
	if (!f)
		return MS_EINVAL;
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x) {
		ERR_clear_error();
		return ms_err_set(err, MS_EINVAL, "--%s %s: no PEM certificate in the file", cf, o->cert_file);
	}
	int rc = 0;
	if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
		rc = ms_err_set(err, MS_EINVAL, "--%s %s: the certificate has expired", cf, o->cert_file);
		goto out;
	}
	if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
		rc = ms_err_set(err, MS_EINVAL, "--%s %s: the certificate is not valid yet", cf, o->cert_file);
		goto out;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
		rc = ms_err_set(err, MS_EINVAL, "--%s %s: %s", cf, o->cert_file, ossl_err(eb, sizeof eb));
		goto out;
	}
	if (!(f = open_file(kf, o->key_file, err))) {
		rc = MS_EINVAL;
		goto out;
	}
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!k) {
		ERR_clear_error();
		rc = ms_err_set(err, MS_EINVAL, "--%s %s: no PEM private key in the file", kf, o->key_file);
		goto out;
	}
	int ok = SSL_CTX_use_PrivateKey(ctx, k) == 1 && SSL_CTX_check_private_key(ctx) == 1;
	EVP_PKEY_free(k);
	if (!ok) {
		ERR_clear_error();
		rc = ms_err_set(err, MS_EINVAL, "--%s %s: the private key does not match the certificate in %s", kf,
		                o->key_file, o->cert_file);
	}
out:
	X509_free(x);
	return rc;
}

static int load_ca(SSL_CTX *ctx, const ms_tls_opts *o, bool for_clients, ms_err *err)
{
	char fl[64], eb[160];
	snprintf(fl, sizeof fl, "%strusted-ca-file", o->flag_prefix ? o->flag_prefix : "");
	FILE *f = open_file(fl, o->trusted_ca_file, err);
	if (!f)
		return MS_EINVAL;
	fclose(f);
	if (SSL_CTX_load_verify_locations(ctx, o->trusted_ca_file, NULL) != 1)
		return ms_err_set(err, MS_EINVAL, "--%s %s: %s", fl, o->trusted_ca_file, ossl_err(eb, sizeof eb));
	if (for_clients) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->trusted_ca_file);
		if (!names)
			return ms_err_set(err, MS_EINVAL, "--%s %s: no PEM certificate in the file", fl,
			                  o->trusted_ca_file);
		SSL_CTX_set_client_CA_list(ctx, names);
	}
	return 0;
}

static int load_crl(ms_tls *t, const ms_tls_opts *o, ms_err *err)
{
	char fl[64];
	snprintf(fl, sizeof fl, "%s-crl-file", o->flag_prefix && *o->flag_prefix ? "peer" : "client");
	FILE *f = open_file(fl, o->crl_file, err);
	if (!f)
		return MS_EINVAL;
	t->crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	if (!t->crl) { /* etcd takes DER too */
		rewind(f);
		t->crl = d2i_X509_CRL_fp(f, NULL);
	}
	fclose(f);
	ERR_clear_error();
	if (!t->crl)
		return ms_err_set(err, MS_EINVAL, "--%s %s: not a PEM or DER certificate revocation list", fl,
		                  o->crl_file);
	return 0;
}

/* ---- verification of a presented certificate (both sides) ---- */

/* Why a certificate was refused, for the operator (etcd logs "rejected
 * connection from ..." the same way). */
static int refuse(SSL *ssl, X509_STORE_CTX *xs, X509 *cert, int code, const char *why)
{
	if (code)
		X509_STORE_CTX_set_error(xs, code);
	char cn[128] = "";
	if (cert)
		X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
	char addr[INET6_ADDRSTRLEN + 8] = "?";
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int fd = ssl ? SSL_get_fd(ssl) : -1;
	if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof addr);
		else
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof addr);
	}
	MS_WARN("embed", "rejected TLS connection with %s (certificate CN \"%s\": %s)", addr, cn,
	        why ? why : X509_verify_cert_error_string(X509_STORE_CTX_get_error(xs)));
	return 0;
}

/* The refusals use the words of etcd's checks ("CommonName authentication
 * failed", "client certificate authentication failed"), and
 * X509_V_ERR_CERT_REJECTED makes OpenSSL send a bad_certificate alert, as
 * Go does when such a check refuses a certificate: the other side logs
 * "remote error: tls: bad certificate". etcd's e2e tests wait for these
 * lines. */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	ms_tls *t = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
	if (!ok && ssl && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
		return refuse(ssl, xs, X509_STORE_CTX_get_current_cert(xs), 0, NULL);
	if (!ok || !t)
		return ok;
	X509 *cert = X509_STORE_CTX_get_current_cert(xs);
	if (t->crl && cert) {
		X509_REVOKED *rev = NULL;
		if (X509_CRL_get0_by_serial(t->crl, &rev, X509_get0_serialNumber(cert)) == 1)
			return refuse(ssl, xs, cert, X509_V_ERR_CERT_REVOKED, "revoked by the CRL file");
	}
	if (X509_STORE_CTX_get_error_depth(xs) != 0 || !cert)
		return ok;
	if (t->allowed_cn) {
		char cn[256];
		int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
		if (n < 0 || strcmp(cn, t->allowed_cn) != 0)
			return refuse(ssl, xs, cert, X509_V_ERR_CERT_REJECTED, "CommonName authentication failed");
	}
	if (t->allowed_host) {
		int m = t->allowed_host_ip ? X509_check_ip_asc(cert, t->allowed_host, 0)
		                           : X509_check_host(cert, t->allowed_host, 0, 0, NULL);
		if (m != 1)
			return refuse(ssl, xs, cert, X509_V_ERR_CERT_REJECTED,
			              "client certificate authentication failed");
	}
	return ok;
}

static const unsigned char alpn_h2[] = {2, 'h', '2'};

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg)
{
	/* http/1.1 first: MetaStore's HTTP/2 side serves gRPC only, so a client
	 * offering both (curl, browsers) gets /health etc. over HTTP/1.1; gRPC
	 * clients offer h2 alone (grpc-go) or with grpc-exp (grpc core) */
	static const char *const want[] = {"http/1.1", "h2"};
	for (size_t w = 0; w < MS_ARRAY_LEN(want); w++) {
		size_t wl = strlen(want[w]);
		for (unsigned int i = 0; i < inlen;) {
			unsigned int l = in[i];
			if (i + 1 + l > inlen)
				return SSL_TLSEXT_ERR_NOACK;
			if (l == wl && !memcmp(in + i + 1, want[w], wl)) {
				*out = in + i + 1;
				*outlen = (unsigned char)l;
				return SSL_TLSEXT_ERR_OK;
			}
			i += 1 + l;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *ctx_base(const SSL_METHOD *m, ms_tls *t, const char *ciphers, ms_err *err)
{
	SSL_CTX *ctx = SSL_CTX_new(m);
	if (!ctx) {
		ms_err_set(err, MS_ENOMEM, "TLS: cannot create a context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* idle connections hold no 34 KiB buffers */
	SSL_CTX_set_app_data(ctx, t);
	if (ciphers && *ciphers && SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
		char eb[160];
		ms_err_set(err, MS_EINVAL, "--cipher-suites: OpenSSL refuses %s: %s", ciphers, ossl_err(eb, sizeof eb));
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int ms_tls_new(const ms_tls_opts *o, ms_tls **out, ms_err *err)
{
	char ciphers[1024];
	int rc = ms_tls_cipher_list(o->cipher_suites, ciphers, sizeof ciphers, err);
	if (rc)
		return rc;
	bool have_cert = o->cert_file && *o->cert_file, have_key = o->key_file && *o->key_file;
	if (have_cert != have_key)
		return ms_err_set(err, MS_EINVAL, "KeyFile and CertFile must both be present[key: %s, cert: %s]",
		                  have_key ? o->key_file : "", have_cert ? o->cert_file : "");
	bool have_cn = o->allowed_cn && *o->allowed_cn, have_host = o->allowed_hostname && *o->allowed_hostname;
	if (have_cn && have_host)
		return ms_err_set(err, MS_EINVAL,
		                  "AllowedCN and AllowedHostname are mutually exclusive (cn=\"%s\", hostname=\"%s\")",
		                  o->allowed_cn, o->allowed_hostname);
	ms_tls *t = ms_calloc(1, sizeof *t);
	if (!t)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	if ((have_cn && !(t->allowed_cn = ms_strdup(o->allowed_cn))) ||
	    (have_host && !(t->allowed_host = ms_strdup(o->allowed_hostname)))) {
		rc = ms_err_set(err, MS_ENOMEM, "out of memory");
		goto fail;
	}
	t->allowed_host_ip = have_host && is_ip(o->allowed_hostname);
	if (o->crl_file && *o->crl_file && (rc = load_crl(t, o, err)))
		goto fail;
	bool have_ca = o->trusted_ca_file && *o->trusted_ca_file;

	/* server: only with a certificate */
	if (have_cert) {
		if (!(t->server = ctx_base(TLS_server_method(), t, ciphers, err))) {
			rc = err->code;
			goto fail;
		}
		if ((rc = load_cert_key(t->server, o, err)))
			goto fail;
		SSL_CTX_set_alpn_select_cb(t->server, alpn_select_cb, NULL);
		/* a resumed session skips the client certificate check: keep it
		 * simple and always do the full handshake when certificates matter */
		if (o->client_cert_auth) {
			/* without a CA file Go verifies against the system roots */
			if (have_ca && (rc = load_ca(t->server, o, true, err)))
				goto fail;
			if (!have_ca)
				SSL_CTX_set_default_verify_paths(t->server);
			SSL_CTX_set_verify(t->server, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
			SSL_CTX_set_session_cache_mode(t->server, SSL_SESS_CACHE_OFF);
			SSL_CTX_set_num_tickets(t->server, 0);
			static const unsigned char sid[] = "metastore";
			SSL_CTX_set_session_id_context(t->server, sid, sizeof sid - 1);
		}
	}

	/* client: always (a client without its own certificate is fine) */
	if (!(t->client = ctx_base(TLS_client_method(), t, ciphers, err))) {
		rc = err->code;
		goto fail;
	}
	if (have_cert && (rc = load_cert_key(t->client, o, err)))
		goto fail;
	if (have_ca) {
		if ((rc = load_ca(t->client, o, false, err)))
			goto fail;
	} else {
		SSL_CTX_set_default_verify_paths(t->client);
	}
	SSL_CTX_set_verify(t->client, o->insecure_skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, verify_cb);
	*out = t;
	return 0;
fail:
	ms_tls_free(t);
	return rc ? rc : MS_EINVAL;
}

void ms_tls_free(ms_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->server);
	SSL_CTX_free(t->client);
	X509_CRL_free(t->crl);
	ms_free(t->allowed_cn);
	ms_free(t->allowed_host);
	ms_free(t);
}

struct ssl_ctx_st *ms_tls_client_ctx(ms_tls *t)
{
	return t->client;
}

/* ---- auto-tls ---- */

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!e)
		return MS_EINVAL;
	int ok = X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok ? 0 : MS_ENOMEM;
}

/* "host:port" / "[v6]:port" / "host" -> "IP:a,DNS:b,..." */
static int build_san(char *const *hosts, size_t n, char *out, size_t cap)
{
	size_t used = 0;
	out[0] = 0;
	for (size_t i = 0; i < n; i++) {
		char h[256];
		const char *s = hosts[i];
		size_t l;
		if (*s == '[') {
			const char *rb = strchr(s, ']');
			if (!rb)
				continue;
			s++;
			l = (size_t)(rb - s);
		} else {
			const char *c = strrchr(s, ':');
			l = c ? (size_t)(c - s) : strlen(s);
		}
		if (!l || l >= sizeof h)
			continue;
		memcpy(h, s, l);
		h[l] = 0;
		int w = snprintf(out + used, cap - used, "%s%s:%s", used ? "," : "", is_ip(h) ? "IP" : "DNS", h);
		if (w < 0 || (size_t)w >= cap - used)
			return MS_EINVAL;
		used += (size_t)w;
	}
	return 0;
}

int ms_tls_self_cert(const char *dir, char *const *hosts, size_t nhosts, unsigned validity_years, ms_err *err)
{
	char cert_path[1024], key_path[1024], eb[160];
	int rc = ms_mkdir_p(dir, err);
	if (rc)
		return rc;
	snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
	snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
	struct stat st;
	if (stat(cert_path, &st) == 0 && stat(key_path, &st) == 0)
		return 0; /* made by an earlier start: reused, as etcd does */

	EVP_PKEY *pkey = NULL;
	X509 *x = NULL;
	BIGNUM *bn = NULL;
	FILE *f = NULL;
	rc = MS_EIO;
	if (!(pkey = EVP_EC_gen("P-521")) || !(x = X509_new()) || !(bn = BN_new())) {
		ms_err_set(err, MS_EIO, "auto-tls: cannot generate a key: %s", ossl_err(eb, sizeof eb));
		goto out;
	}
	if (!validity_years)
		validity_years = 1;
	char san[2048];
	if (build_san(hosts, nhosts, san, sizeof san)) {
		ms_err_set(err, MS_EINVAL, "auto-tls: too many hosts");
		goto out;
	}
	X509_NAME *name = X509_get_subject_name(x);
	if (!X509_set_version(x, 2) || !BN_rand(bn, 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) || !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), (int)(365 * validity_years), 0, NULL) ||
	    !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"etcd", -1, -1, 0) ||
	    !X509_set_issuer_name(x, name) || !X509_set_pubkey(x, pkey) ||
	    add_ext(x, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
	    add_ext(x, NID_ext_key_usage, "serverAuth,clientAuth") || (*san && add_ext(x, NID_subject_alt_name, san)) ||
	    !X509_sign(x, pkey, EVP_sha512())) {
		ms_err_set(err, MS_EIO, "auto-tls: cannot make the certificate: %s", ossl_err(eb, sizeof eb));
		goto out;
	}
	/* the key first, private from the start; the certificate last, so a
	 * crash in between leaves no pair that would be reused */
	int fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	BIO *kb = fd >= 0 ? BIO_new_fd(fd, BIO_CLOSE) : NULL;
	if (!kb) {
		ms_err_set(err, MS_EIO, "auto-tls: %s: %s", key_path, fd < 0 ? strerror(errno) : "out of memory");
		if (fd >= 0)
			close(fd);
		goto out;
	}
	/* "EC PRIVATE KEY" (SEC 1), as etcd writes it */
	int kok = PEM_write_bio_PrivateKey_traditional(kb, pkey, NULL, NULL, 0, NULL, NULL);
	BIO_free(kb);
	if (!kok) {
		ms_err_set(err, MS_EIO, "auto-tls: cannot write %s", key_path);
		goto out;
	}
	if (!(f = fopen(cert_path, "w"))) {
		ms_err_set(err, MS_EIO, "auto-tls: %s: %s", cert_path, strerror(errno));
		goto out;
	}
	if (!PEM_write_X509(f, x) || fclose(f) != 0) {
		f = NULL;
		unlink(cert_path);
		ms_err_set(err, MS_EIO, "auto-tls: cannot write %s", cert_path);
		goto out;
	}
	f = NULL;
	MS_INFO("embed", "created cert file %s", cert_path);
	MS_INFO("embed", "created key file %s", key_path);
	rc = 0;
out:
	if (f)
		fclose(f);
	BN_free(bn);
	X509_free(x);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return rc;
}

/* ---- bufferevents ---- */

/* The handshake deadline of one accepted connection; owned by its SSL (ex
 * data), so it goes away with the bufferevent whatever closes it. */
typedef struct hs_timer {
	struct event *ev;
	struct bufferevent *bev;
} hs_timer;

static int hs_idx = -1;
static pthread_once_t hs_once = PTHREAD_ONCE_INIT;

static void hs_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	hs_timer *h = ptr;
	if (!h)
		return;
	if (h->ev)
		event_free(h->ev);
	ms_free(h);
}

static void hs_init(void)
{
	hs_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, hs_free);
}

static void hs_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	hs_timer *h = arg;
	SSL *ssl = bufferevent_openssl_get_ssl(h->bev);
	if (ssl && !SSL_is_init_finished(ssl))
		bufferevent_trigger_event(h->bev, BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT, 0); /* may free h */
}

struct bufferevent *ms_tls_bev_accept(ms_tls *t, struct event_base *base, int fd, int bev_opts, int handshake_ms)
{
	if (!t->server)
		return NULL;
	pthread_once(&hs_once, hs_init);
	SSL *ssl = SSL_new(t->server);
	if (!ssl)
		return NULL;
	hs_timer *h = NULL;
	if (handshake_ms > 0) {
		/* owned by the SSL from here on: SSL_free frees it */
		if (hs_idx < 0 || !(h = ms_calloc(1, sizeof *h)) || !SSL_set_ex_data(ssl, hs_idx, h)) {
			ms_free(h);
			SSL_free(ssl);
			return NULL;
		}
		if (!(h->ev = evtimer_new(base, hs_timeout_cb, h))) {
			SSL_free(ssl);
			return NULL;
		}
	}
	struct bufferevent *bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, bev_opts);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	/* a peer that closes without close_notify is an ordinary EOF */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	if (h) {
		h->bev = bev;
		struct timeval tv = {handshake_ms / 1000, (handshake_ms % 1000) * 1000};
		evtimer_add(h->ev, &tv);
	}
	return bev;
}

static int set_host(SSL *ssl, const char *host);

struct bufferevent *ms_tls_bev_connect(ms_tls *t, struct event_base *base, const char *host, bool alpn_h2_on,
                                       int bev_opts)
{
	SSL *ssl = SSL_new(t->client);
	if (!ssl)
		return NULL;
	if (set_host(ssl, host)) {
		SSL_free(ssl);
		return NULL;
	}
	if (alpn_h2_on)
		SSL_set_alpn_protos(ssl, alpn_h2, sizeof alpn_h2);
	struct bufferevent *bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, bev_opts);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* ---- blocking ---- */

struct ms_tls_sync {
	SSL *ssl;
};

/* The verify parameters for dialing host (IP or DNS name; [v6] too). */
static int set_host(SSL *ssl, const char *host)
{
	if (!host || !*host)
		return 0;
	char h[256];
	size_t l = strlen(host);
	if (*host == '[' && l > 2 && l - 2 < sizeof h && host[l - 1] == ']') {
		memcpy(h, host + 1, l - 2);
		h[l - 2] = 0;
	} else {
		snprintf(h, sizeof h, "%s", host);
	}
	bool ip = is_ip(h);
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	if (!ip)
		SSL_set_tlsext_host_name(ssl, h);
	return (ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, h) : X509_VERIFY_PARAM_set1_host(vp, h, 0)) == 1 ? 0 : MS_EINVAL;
}

int ms_tls_sync_connect(ms_tls *t, int fd, const char *host, ms_tls_sync **out, ms_err *err)
{
	char eb[160];
	ms_tls_sync *s = ms_calloc(1, sizeof *s);
	if (!s || !(s->ssl = SSL_new(t->client))) {
		ms_free(s);
		return ms_err_set(err, MS_ENOMEM, "TLS: out of memory");
	}
	if (set_host(s->ssl, host) || SSL_set_fd(s->ssl, fd) != 1) {
		ms_tls_sync_free(s);
		return ms_err_set(err, MS_EINVAL, "TLS: cannot set up a connection to %s", host);
	}
	int r = SSL_connect(s->ssl);
	if (r != 1) {
		long vr = SSL_get_verify_result(s->ssl);
		if (vr != X509_V_OK)
			ms_err_set(err, MS_EIO, "TLS handshake with %s: %s", host, X509_verify_cert_error_string(vr));
		else
			ms_err_set(err, MS_EIO, "TLS handshake with %s failed: %s", host, ossl_err(eb, sizeof eb));
		ms_tls_sync_free(s);
		return MS_EIO;
	}
	*out = s;
	return 0;
}

long ms_tls_sync_io(ms_tls_sync *s, void *buf, size_t len, bool wr)
{
	size_t n = 0;
	int r = wr ? SSL_write_ex(s->ssl, buf, len, &n) : SSL_read_ex(s->ssl, buf, len, &n);
	if (r == 1)
		return (long)n;
	int e = SSL_get_error(s->ssl, r);
	ERR_clear_error();
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
	    (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))) {
		errno = EAGAIN;
		return -1;
	}
	if (e == SSL_ERROR_SYSCALL && errno == EINTR)
		return -1;
	errno = EIO;
	return -1;
}

void ms_tls_sync_free(ms_tls_sync *s)
{
	if (!s)
		return;
	SSL_free(s->ssl);
	ms_free(s);
}

int ms_tls_peer_cn(struct bufferevent *bev, char *buf, size_t cap)
{
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
	if (!ssl || !SSL_is_init_finished(ssl) || SSL_get_verify_result(ssl) != X509_V_OK)
		return MS_ENOTFOUND;
	X509 *cert = SSL_get0_peer_certificate(ssl);
	if (!cert || !(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER))
		return MS_ENOTFOUND;
	int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, (int)cap);
	return n > 0 ? 0 : MS_ENOTFOUND;
}

/* Go's crypto/tls texts for the alerts a peer may send (alert.go). */
static const char *go_alert_text(int alert)
{
	switch (alert) {
	case 10:
		return "unexpected message";
	case 20:
		return "bad record MAC";
	case 40:
		return "handshake failure";
	case 42:
		return "bad certificate";
	case 43:
		return "unsupported certificate";
	case 44:
		return "revoked certificate";
	case 45:
		return "expired certificate";
	case 46:
		return "unknown certificate";
	case 47:
		return "illegal parameter";
	case 48:
		return "unknown certificate authority";
	case 49:
		return "access denied";
	case 50:
		return "error decoding message";
	case 51:
		return "error decrypting message";
	case 70:
		return "protocol version not supported";
	case 71:
		return "insufficient security level";
	case 80:
		return "internal error";
	case 90:
		return "user canceled";
	case 109:
		return "unsupported extension";
	case 112:
		return "unrecognized name";
	case 116:
		return "certificate required";
	case 120:
		return "no application protocol";
	default:
		return NULL;
	}
}

int ms_tls_bev_error(struct bufferevent *bev, char *buf, size_t cap)
{
	unsigned long e, any = 0;
	const char *go = NULL;
	while ((e = bufferevent_get_openssl_error(bev)) != 0) {
		int reason = ERR_GET_REASON(e);
		if (!go && reason > SSL_AD_REASON_OFFSET)
			go = go_alert_text(reason - SSL_AD_REASON_OFFSET);
		if (!any || ERR_reason_error_string(e))
			any = e;
	}
	if (go) {
		snprintf(buf, cap, "remote error: tls: %s", go);
		return 0;
	}
	if (!any)
		return MS_ENOTFOUND;
	char es[160];
	ERR_error_string_n(any, es, sizeof es);
	snprintf(buf, cap, "tls: %s", es);
	return 0;
}
