/* main.c — the metastore binary: etcd's flags, then one member: server core
 * (raft, engine, apply) and the client API on one event loop. */
#include <event2/event.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "cmd/flags.h"
#include "common/ms.h"
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

static int verify_error(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "etcdmain: error verifying flags, ");
	fprintf(stderr, fmt, a, b);
	fprintf(stderr, ". See 'etcd --help'.\n");
	return 1;
}

typedef struct app {
	struct event_base *base;
	ms_server *srv;
	api *api;
	url_list listen;
	int max_txn_ops;
	uint32_t max_concurrent_streams;
	int listen_failed;
} app;

static void on_ready(void *ud)
{
	app *a = ud;
	if (a->api)
		return;
	ms_err err = {0};
	if (api_new(a->base, a->srv, &a->api, &err)) {
		MS_ERROR("etcdmain", "cannot start the client API: %s", err.msg);
		a->listen_failed = 1;
		event_base_loopbreak(a->base);
		return;
	}
	api_set_max_txn_ops(a->api, a->max_txn_ops);
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
	    .on_ready = on_ready,
	    .ready_ud = &a,
	};
	a.max_txn_ops = (int)f.max_txn_ops;
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
	free_peers(peers, npeers);
	free_list(&a.listen);
	free_list(&acurls);
	free_list(&apurls);
	free_list(&lpurls);
	ms_flags_free(&f);
	return a.listen_failed ? 1 : 0;
}
