/* main.c — the metastore binary: etcd's flags, then one member: server core
 * (raft, engine, apply) and the client API on one event loop. */
#include <event2/event.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api.h"
#include "cmd/flags.h"
#include "common/ms.h"
#include "common/tls.h"
#include "server/server.h"

#define ETCD_VERSION "3.4.23"
#define METASTORE_VERSION "0.1.0"

typedef struct url_list {
	char **v;
	size_t n;
} url_list;

static int split_list(const char *s, url_list *out)
{
	out->v = NULL;
	out->n = 0;
	if (!s || !*s)
		return 0;
	size_t cap = 1;
	for (const char *p = s; *p; p++)
		cap += *p == ',';
	out->v = ms_calloc(cap, sizeof *out->v);
	if (!out->v)
		return MS_ENOMEM;
	const char *p = s;
	for (;;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		while (l && (*p == ' ')) {
			p++;
			l--;
		}
		while (l && p[l - 1] == ' ')
			l--;
		if (l) {
			out->v[out->n] = ms_strndup(p, l);
			if (!out->v[out->n++])
				return MS_ENOMEM;
		}
		if (!c)
			break;
		p = c + 1;
	}
	return 0;
}

static void free_list(url_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		ms_free(l->v[i]);
	ms_free(l->v);
}

static bool valid_url(const char *u)
{
	return !strncmp(u, "http://", 7) || !strncmp(u, "https://", 8) || !strncmp(u, "unix://", 7) ||
	       !strncmp(u, "unixs://", 8);
}

/* --initial-cluster "n1=u1,n2=u2,n1=u3": a name may repeat for more URLs. */
static int parse_initial_cluster(const char *s, ms_peer **out, size_t *n, char *errbuf, size_t errsz)
{
	url_list items;
	if (split_list(s, &items))
		return MS_ENOMEM;
	ms_peer *peers = ms_calloc(items.n ? items.n : 1, sizeof *peers);
	size_t np = 0;
	int rc = 0;
	for (size_t i = 0; i < items.n && !rc; i++) {
		char *eq = strchr(items.v[i], '=');
		if (!eq || eq == items.v[i] || !valid_url(eq + 1)) {
			snprintf(errbuf, errsz, "failed to parse initial-cluster entry %s", items.v[i]);
			rc = MS_EINVAL;
			break;
		}
		*eq = 0;
		ms_peer *p = NULL;
		for (size_t j = 0; j < np; j++)
			if (!strcmp(peers[j].name, items.v[i]))
				p = &peers[j];
		if (!p) {
			p = &peers[np++];
			p->name = ms_strdup(items.v[i]);
		}
		char **nu = ms_realloc(p->peer_urls, (p->npeer_urls + 1) * sizeof *nu);
		MS_ASSERT(nu && p->name);
		p->peer_urls = nu;
		p->peer_urls[p->npeer_urls++] = ms_strdup(eq + 1);
	}
	free_list(&items);
	*out = peers;
	*n = np;
	return rc;
}

static void free_peers(ms_peer *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < p[i].npeer_urls; j++)
			ms_free(p[i].peer_urls[j]);
		ms_free(p[i].peer_urls);
		ms_free(p[i].name);
	}
	ms_free(p);
}

/* etcd >= 3.4.10 (pkg/fileutil TouchDirAll -> CheckDirPermission): an
 * existing data or wal directory whose permissions are not 0700 is used,
 * with a warning in etcd's words; it is neither refused nor changed (the
 * operator may share it on purpose). New directories are made 0700. */
static void check_dir_permission(const char *dir)
{
	struct stat st;
	if (!dir || !*dir || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || (st.st_mode & 07777) == 0700)
		return;
	/* Go's os.FileMode String() of the directory, as etcd prints it */
	static const char rwx[] = "rwxrwxrwx";
	char mode[11];
	mode[0] = 'd';
	for (int i = 0; i < 9; i++)
		mode[1 + i] = (st.st_mode & (0400 >> i)) ? rwx[i] : '-';
	mode[10] = 0;
	MS_WARN("pkg/fileutil",
	        "check file permission: directory \"%s\" exist, but the permission is \"%s\". The recommended "
	        "permission is \"-rwx------\" to prevent possible unprivileged access to the data.",
	        dir, mode);
}

static int verify_error(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "etcdmain: error verifying flags, ");
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, ". See 'etcd --help'.\n");
	return 1;
}

/* ---- TLS from etcd's flags (etcd 3.4's embed: configurePeerListeners,
 * configureClientListeners, ClientSelfCert/PeerSelfCert) ---- */

/* etcd serves http:// and https:// on one address by sniffing the first
 * bytes; MetaStore does not (yet): such a pair is refused by name. */
static int same_addr_both_schemes(const url_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		for (size_t j = 0; j < l->n; j++)
			if (!strncmp(l->v[i], "http://", 7) && !strncmp(l->v[j], "https://", 8) &&
			    !strcmp(l->v[i] + 7, l->v[j] + 8)) {
				fprintf(stderr,
				        "metastore: %s and %s: serving http and https on the same address is not "
				        "supported; use two ports\n",
				        l->v[i], l->v[j]);
				return 1;
			}
	return 0;
}

/* "scheme://host:port/..." -> "host:port" for auto-tls SANs (ms_malloc'd list) */
static char **url_hosts(const url_list *l)
{
	char **h = ms_calloc(l->n + 1, sizeof *h);
	for (size_t i = 0; h && i < l->n; i++) {
		const char *p = strstr(l->v[i], "://");
		p = p ? p + 3 : l->v[i];
		h[i] = ms_strndup(p, strcspn(p, "/"));
	}
	return h;
}

static void free_hosts(char **h, size_t n)
{
	for (size_t i = 0; h && i < n; i++)
		ms_free(h[i]);
	ms_free(h);
}

/* One side's TLS: client (prefix "") or peer (prefix "peer-"). *out stays
 * NULL when no certificate is configured or made. Returns 0 or prints the
 * error and returns 1. */
static int tls_side(const char *prefix, const char *cert, const char *key, const char *ca, const char *crl,
                    bool cert_auth, bool auto_tls, const char *allowed_cn, const char *allowed_host,
                    const char *ciphers, uint64_t validity, const char *data_dir, const url_list *listen, ms_tls **out)
{
	const char *side = *prefix ? "peer" : "client";
	char dir[1024], cpath[1100], kpath[1100];
	ms_err err = {0};
	bool given = (cert && *cert) || (key && *key);
	bool self = false;
	if (auto_tls && given) {
		MS_WARN("embed", "ignoring %s auto TLS since certs given", side);
	} else if (auto_tls) {
		/* etcd replaces the whole TLS info with the self-signed pair: the
		 * CA, CRL and client-cert-auth flags of this side no longer apply */
		if (cert_auth || (ca && *ca) || (crl && *crl))
			MS_WARN(
			    "embed",
			    "--%sauto-tls: --%sclient-cert-auth, --%strusted-ca-file and the CRL file do not apply to "
			    "the self-signed certificate (as in etcd 3.4)",
			    prefix, prefix, prefix);
		snprintf(dir, sizeof dir, "%s/fixtures/%s", data_dir, side);
		char **hosts = url_hosts(listen);
		int rc = hosts ? ms_tls_self_cert(dir, hosts, listen->n, (unsigned)validity, &err) : MS_ENOMEM;
		free_hosts(hosts, listen->n);
		if (rc) {
			fprintf(stderr, "etcdmain: could not get certs (%s)\n",
			        rc == MS_ENOMEM ? "out of memory" : err.msg);
			return 1;
		}
		snprintf(cpath, sizeof cpath, "%s/cert.pem", dir);
		snprintf(kpath, sizeof kpath, "%s/key.pem", dir);
		cert = cpath;
		key = kpath;
		ca = crl = allowed_cn = allowed_host = NULL;
		cert_auth = false;
		self = true;
		given = true;
	}
	if (!given)
		return 0;
	bool any_https = false;
	for (size_t i = 0; i < listen->n; i++)
		any_https |= !strncmp(listen->v[i], "https://", 8);
	if (!*prefix && !any_https) {
		/* etcd builds the client TLS config only for https listeners */
		MS_WARN("embed", "no https client URL: ignoring key and cert files");
		return 0;
	}
	for (size_t i = 0; i < listen->n; i++)
		if (!strncmp(listen->v[i], "http://", 7)) {
			MS_WARN("embed",
			        "scheme is HTTP while key and cert files are present; ignoring key and cert files "
			        "(%s-url %s)",
			        side, listen->v[i]);
			if (cert_auth)
				MS_WARN("embed",
				        "scheme is HTTP while --%sclient-cert-auth is enabled; ignoring client cert "
				        "auth for this URL (%s)",
				        prefix, listen->v[i]);
		}
	ms_tls_opts o = {.cert_file = cert,
	                 .key_file = key,
	                 .trusted_ca_file = ca,
	                 .crl_file = crl,
	                 .client_cert_auth = cert_auth,
	                 .allowed_cn = allowed_cn,
	                 .allowed_hostname = allowed_host,
	                 .cipher_suites = ciphers,
	                 .insecure_skip_verify = self,
	                 .flag_prefix = prefix};
	if (ms_tls_new(&o, out, &err)) {
		fprintf(stderr, "etcdmain: %s\n", err.msg);
		return 1;
	}
	MS_INFO("embed", "%sTLS: cert = %s, key = %s, trusted-ca = %s, client-cert-auth = %s, crl-file = %s",
	        *prefix ? "peer" : "Client", cert, key, ca ? ca : "", cert_auth ? "true" : "false", crl ? crl : "");
	return 0;
}

typedef struct app {
	struct event_base *base;
	ms_server *srv;
	api *api;
	url_list listen;
	ms_tls *client_tls;
	int max_txn_ops;
	uint32_t max_concurrent_streams;
	int listen_failed;
	bool initial_corrupt_check, checking;
} app;

static void serve_clients(app *a)
{
	ms_err err = {0};
	if (api_new(a->base, a->srv, &a->api, &err)) {
		MS_ERROR("etcdmain", "cannot start the client API: %s", err.msg);
		a->listen_failed = 1;
		event_base_loopbreak(a->base);
		return;
	}
	api_set_max_txn_ops(a->api, a->max_txn_ops);
	api_set_tls(a->api, a->client_tls);
	api_set_max_concurrent_streams(a->api, a->max_concurrent_streams);
	for (size_t i = 0; i < a->listen.n; i++) {
		if (api_listen(a->api, a->listen.v[i], &err)) {
			MS_ERROR("etcdmain", "listen on %s failed: %s", a->listen.v[i], err.msg);
			a->listen_failed = 1;
			event_base_loopbreak(a->base);
			return;
		}
	}
}

/* --experimental-initial-corrupt-check answered: serve, or stop as etcd does
 * ("etcdmain: <id> found data inconsistency with peers", exit status 1). */
static void on_checked(void *ud, int code, const char *msg)
{
	app *a = ud;
	if (code) {
		MS_ERROR("etcdmain", "%s", msg ? msg : ms_strerror(code));
		a->listen_failed = 1;
		event_base_loopbreak(a->base);
		return;
	}
	serve_clients(a);
}

static void on_ready(void *ud)
{
	app *a = ud;
	if (a->api || a->checking)
		return;
	if (a->initial_corrupt_check) {
		a->checking = true;
		if (ms_server_initial_corrupt_check(a->srv, on_checked, a))
			on_checked(a, MS_ENOMEM, "cannot start the initial corruption check");
		return;
	}
	serve_clients(a);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	app *a = arg;
	MS_NOTICE("osutil", "received %s signal, shutting down...", sig == SIGINT ? "interrupt" : "terminated");
	event_base_loopbreak(a->base);
}

int main(int argc, char **argv)
{
	ms_flags f;
	int rc = ms_flags_parse(argc, argv, &f);
	if (rc)
		return rc;
	if (f.help) {
		ms_flags_usage();
		return 0;
	}
	if (f.version) {
		printf("etcd Version: %s\nGit SHA: metastore-%s\nGo Version: none (MetaStore is written in C)\n"
		       "Go OS/Arch: linux/amd64\n",
		       ETCD_VERSION, METASTORE_VERSION);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	/* a handful of threads: glibc's default of 8 arenas per core only
	 * fragments memory (measured: 6-9 MiB of RSS) */
	mallopt(M_ARENA_MAX, 2);

	/* ---- validate, with etcd's wording where etcd has one ---- */
	if (f.config_file && *f.config_file) {
		fprintf(stderr, "metastore: --config-file is not supported yet; pass the settings as flags\n");
		return 1;
	}
	if (strcmp(f.logger, "capnslog") != 0) {
		fprintf(stderr, "metastore: --logger=%s is not supported; only capnslog output is implemented\n",
		        f.logger);
		return 1;
	}
	if (strcmp(f.log_outputs, "default") != 0 && strcmp(f.log_outputs, "stderr") != 0) {
		fprintf(stderr, "metastore: --log-outputs=%s is not supported; logs go to stderr\n", f.log_outputs);
		return 1;
	}
	ms_log_level lvl;
	if (!strcmp(f.log_level, "debug"))
		lvl = MS_LOG_DEBUG;
	else if (!strcmp(f.log_level, "info"))
		lvl = MS_LOG_INFO;
	else if (!strcmp(f.log_level, "warn"))
		lvl = MS_LOG_WARN;
	else if (!strcmp(f.log_level, "error") || !strcmp(f.log_level, "panic") || !strcmp(f.log_level, "fatal"))
		lvl = MS_LOG_ERROR;
	else
		return verify_error("unknown log level %s%s", f.log_level, "");
	ms_log_set_level(f.debug ? MS_LOG_DEBUG : lvl);
	fprintf(stderr, "[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead\n");

	if (f.set_listen_client_urls && !f.set_advertise_client_urls)
		return verify_error(
		    "%s%s", "--advertise-client-urls is required when --listen-client-urls is set explicitly", "");
	if (f.election_timeout < 5 * f.heartbeat_interval) {
		char e[32], h[32];
		snprintf(e, sizeof e, "%llu", (unsigned long long)f.election_timeout);
		snprintf(h, sizeof h, "%llu", (unsigned long long)f.heartbeat_interval);
		return verify_error(
		    "--election-timeout[%sms] should be at least as 5 times as --heartbeat-interval[%sms]", e, h);
	}
	if (f.election_timeout > 50000) {
		char e[32];
		snprintf(e, sizeof e, "%llu", (unsigned long long)f.election_timeout);
		return verify_error("--election-timeout[%sms] is too long, and should be set less than %sms", e,
		                    "50000");
	}
	if (strcmp(f.initial_cluster_state, "new") && strcmp(f.initial_cluster_state, "existing"))
		return verify_error(
		    "invalid value \"%s\" for flag -initial-cluster-state: valid values are \"new\", \"existing\"%s",
		    f.initial_cluster_state, "");
	if (f.max_txn_ops == 0 || f.max_txn_ops > 1000000)
		return verify_error("--max-txn-ops must be between 1 and %s%s", "1000000", "");
	if (f.max_concurrent_streams == 0 || f.max_concurrent_streams > UINT32_MAX)
		return verify_error("--max-concurrent-streams must be between 1 and %s%s", "4294967295", "");
	if (f.max_request_bytes == 0)
		return verify_error("--max-request-bytes must be positive%s%s", "", "");

	url_list acurls, apurls, lpurls;
	app a = {0};
	if (split_list(f.listen_client_urls, &a.listen) || split_list(f.advertise_client_urls, &acurls) ||
	    split_list(f.initial_advertise_peer_urls, &apurls) || split_list(f.listen_peer_urls, &lpurls))
		return 1;
	for (size_t i = 0; i < a.listen.n; i++)
		if (!valid_url(a.listen.v[i]))
			return verify_error("URL scheme must be http, https, unix or unixs: %s%s", a.listen.v[i], "");
	ms_peer *peers;
	size_t npeers;
	char ebuf[512];
	if (parse_initial_cluster(f.initial_cluster, &peers, &npeers, ebuf, sizeof ebuf))
		return verify_error("%s%s", ebuf, "");
	ms_peer *self = NULL;
	for (size_t i = 0; i < npeers; i++)
		if (!strcmp(peers[i].name, f.name))
			self = &peers[i];
	if (!self) {
		fprintf(stderr, "etcdmain: couldn't find local name \"%s\" in the initial cluster configuration\n",
		        f.name);
		return 1;
	}
	/* --initial-advertise-peer-urls must equal this member's --initial-cluster URLs */
	for (size_t i = 0; i < self->npeer_urls; i++) {
		bool found = false;
		for (size_t j = 0; j < apurls.n; j++)
			found |= !strcmp(self->peer_urls[i], apurls.v[j]);
		if (!found || self->npeer_urls != apurls.n) {
			fprintf(
			    stderr,
			    "etcdmain: --initial-cluster has %s=%s but missing from --initial-advertise-peer-urls=%s\n",
			    f.name, self->peer_urls[i], f.initial_advertise_peer_urls);
			return 1;
		}
	}

	char default_dir[512];
	const char *data_dir = f.data_dir;
	if (!data_dir || !*data_dir) {
		snprintf(default_dir, sizeof default_dir, "%s.etcd", f.name);
		data_dir = default_dir;
	}
	MS_INFO("etcdmain", "MetaStore Version: %s (etcd API %s)", METASTORE_VERSION, ETCD_VERSION);
	MS_INFO("etcdmain", "data dir = %s", data_dir);
	check_dir_permission(data_dir);
	check_dir_permission(f.wal_dir);
	/* Every file the stores create (RocksDB opens its files with 0644 and
	 * honours the umask; the raft log is a RocksDB too) and every directory
	 * is private to the member's user: 0600 and 0700, as etcd's. */
	umask(077);

	/* TLS: certificates are read (or made) now, so a bad file stops start-up
	 * with its name before anything listens */
	char cbuf[1024];
	ms_err cerr = {0};
	if (ms_tls_cipher_list(f.cipher_suites, cbuf, sizeof cbuf, &cerr)) {
		fprintf(stderr, "etcdmain: %s\n", cerr.msg);
		return 1;
	}
	if (same_addr_both_schemes(&a.listen) || same_addr_both_schemes(&lpurls))
		return 1;
	ms_tls *peer_tls = NULL;
	if (tls_side("peer-", f.peer_cert_file, f.peer_key_file, f.peer_trusted_ca_file, f.peer_crl_file,
	             f.peer_client_cert_auth, f.peer_auto_tls, f.peer_cert_allowed_cn, f.peer_cert_allowed_hostname,
	             f.cipher_suites, f.self_signed_cert_validity, data_dir, &lpurls, &peer_tls))
		return 1;
	if (tls_side("", f.cert_file, f.key_file, f.trusted_ca_file, f.client_crl_file, f.client_cert_auth, f.auto_tls,
	             NULL, f.client_cert_allowed_hostname, f.cipher_suites, f.self_signed_cert_validity, data_dir,
	             &a.listen, &a.client_tls))
		return 1;
	for (size_t i = 0; i < a.listen.n; i++)
		if (!strncmp(a.listen.v[i], "https://", 8) && !a.client_tls) {
			fprintf(
			    stderr,
			    "etcdmain: TLS key/cert (--cert-file, --key-file) must be provided for client url %s with "
			    "HTTPS scheme\n",
			    a.listen.v[i]);
			return 1;
		}
	for (size_t i = 0; i < lpurls.n; i++)
		if (!strncmp(lpurls.v[i], "https://", 8) && !peer_tls) {
			fprintf(stderr,
			        "etcdmain: cannot listen on TLS for %s: KeyFile and CertFile are not presented\n",
			        lpurls.v[i]);
			return 1;
		}

	ms_server_config cfg = {
	    .name = f.name,
	    .data_dir = data_dir,
	    .wal_dir = f.wal_dir,
	    .client_urls = acurls.v,
	    .nclient_urls = acurls.n,
	    .peer_urls = apurls.v,
	    .npeer_urls = apurls.n,
	    .listen_peer_urls = lpurls.v,
	    .nlisten_peer_urls = lpurls.n,
	    .peer_tls = peer_tls,
	    .initial_cluster = peers,
	    .ninitial_cluster = npeers,
	    .initial_cluster_new = !strcmp(f.initial_cluster_state, "new"),
	    .initial_cluster_token = f.initial_cluster_token,
	    .max_request_bytes = f.max_request_bytes,
	    .max_txn_ops = (int)f.max_txn_ops,
	    .quota_backend_bytes = f.quota_backend_bytes,
	    .heartbeat_ms = (int)f.heartbeat_interval,
	    .election_ms = (int)f.election_timeout,
	    .snapshot_count = f.snapshot_count,
	    .strict_reconfig_check = f.strict_reconfig_check,
	    .watch_progress_notify_ns = f.watch_progress_notify_ns,
	    .corrupt_check_ns = f.corrupt_check_ns,
	    .on_ready = on_ready,
	    .ready_ud = &a,
	};
	a.max_txn_ops = (int)f.max_txn_ops;
	a.initial_corrupt_check = f.initial_corrupt_check;
	a.max_concurrent_streams = (uint32_t)f.max_concurrent_streams;
	a.base = event_base_new();
	if (!a.base) {
		fprintf(stderr, "etcdmain: cannot create the event loop\n");
		return 1;
	}
	ms_err err = {0};
	if (ms_server_new(a.base, &cfg, &a.srv, &err)) {
		MS_ERROR("etcdmain", "%s", err.msg);
		fprintf(stderr, "etcdmain: %s\n", err.msg);
		return 1;
	}
	struct event *sigint = evsignal_new(a.base, SIGINT, on_signal, &a);
	struct event *sigterm = evsignal_new(a.base, SIGTERM, on_signal, &a);
	event_add(sigint, NULL);
	event_add(sigterm, NULL);
	MS_INFO("etcdserver", "starting member %llx in cluster %llx", (unsigned long long)ms_server_id(a.srv),
	        (unsigned long long)ms_server_cluster_id(a.srv));
	if (ms_server_start(a.srv, &err)) {
		MS_ERROR("etcdmain", "%s", err.msg);
		ms_server_free(a.srv);
		return 1;
	}
	event_base_dispatch(a.base);

	api_free(a.api);
	ms_server_free(a.srv);
	event_free(sigint);
	event_free(sigterm);
	event_base_free(a.base);
	ms_tls_free(a.client_tls);
	ms_tls_free(peer_tls);
	free_peers(peers, npeers);
	free_list(&a.listen);
	free_list(&acurls);
	free_list(&apurls);
	free_list(&lpurls);
	ms_flags_free(&f);
	return a.listen_failed ? 1 : 0;
}
