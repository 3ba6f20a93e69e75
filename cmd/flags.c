/* flags.c — etcd-compatible flag and environment parsing for metastore. */
#include "cmd/flags.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ms.h"

extern char **environ;

typedef enum { F_STRING, F_UINT, F_INT, F_BOOL, F_DURATION } flag_type;

typedef struct flag_def {
	const char *name;
	flag_type type;
	size_t off;      /* offset into ms_flags */
	const char *def; /* default, as text */
	const char *help;
	size_t set_off; /* offset of a "was set" bool, or 0 */
} flag_def;

#define OFF(field) offsetof(ms_flags, field)

static const flag_def flags[] = {
    {"name", F_STRING, OFF(name), "default", "Human-readable name for this member.", 0},
    {"data-dir", F_STRING, OFF(data_dir), "", "Path to the data directory (default ${name}.etcd).", 0},
    {"wal-dir", F_STRING, OFF(wal_dir), "", "Path to the dedicated raft log directory.", 0},
    {"listen-client-urls", F_STRING, OFF(listen_client_urls), "http://localhost:2379",
     "List of URLs to listen on for client traffic.", OFF(set_listen_client_urls)},
    {"advertise-client-urls", F_STRING, OFF(advertise_client_urls), "http://localhost:2379",
     "List of this member's client URLs to advertise to the public.", OFF(set_advertise_client_urls)},
    {"listen-peer-urls", F_STRING, OFF(listen_peer_urls), "http://localhost:2380",
     "List of URLs to listen on for peer traffic.", 0},
    {"initial-advertise-peer-urls", F_STRING, OFF(initial_advertise_peer_urls), "http://localhost:2380",
     "List of this member's peer URLs to advertise to the rest of the cluster.", 0},
    {"initial-cluster", F_STRING, OFF(initial_cluster), "default=http://localhost:2380",
     "Initial cluster configuration for bootstrapping.", 0},
    {"initial-cluster-state", F_STRING, OFF(initial_cluster_state), "new",
     "Initial cluster state ('new' or 'existing').", 0},
    {"initial-cluster-token", F_STRING, OFF(initial_cluster_token), "etcd-cluster",
     "Initial cluster token for the etcd cluster during bootstrap.", 0},
    {"heartbeat-interval", F_UINT, OFF(heartbeat_interval), "100", "Time (in milliseconds) of a heartbeat interval.",
     0},
    {"election-timeout", F_UINT, OFF(election_timeout), "1000", "Time (in milliseconds) for an election to timeout.",
     0},
    {"snapshot-count", F_UINT, OFF(snapshot_count), "100000",
     "Number of committed transactions to trigger a snapshot to disk.", 0},
    {"quota-backend-bytes", F_INT, OFF(quota_backend_bytes), "0",
     "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).", 0},
    {"max-request-bytes", F_UINT, OFF(max_request_bytes), "1572864",
     "Maximum client request size in bytes the server will accept.", 0},
    {"max-concurrent-streams", F_UINT, OFF(max_concurrent_streams), "1000",
     "Maximum concurrent streams that each client can open at a time (etcd's default is 4294967295; "
     "MetaStore's is 1000, see README \"Limits\").",
     0},
    {"max-txn-ops", F_UINT, OFF(max_txn_ops), "128", "Maximum number of operations permitted in a transaction.", 0},
    {"strict-reconfig-check", F_BOOL, OFF(strict_reconfig_check), "true",
     "Reject reconfiguration requests that would cause quorum loss.", 0},
    {"enable-grpc-gateway", F_BOOL, OFF(enable_grpc_gateway), "true",
     "Enable GRPC gateway (only 'true'; the JSON gateway answers 501 until it is implemented).", 0},
    {"experimental-watch-progress-notify-interval", F_DURATION, OFF(watch_progress_notify_ns), "10m",
     "Duration of periodic watch progress notifications.", 0},
    /* the corruption check (server/corrupt.c) */
    {"experimental-initial-corrupt-check", F_BOOL, OFF(initial_corrupt_check), "false",
     "Enable to check data corruption before serving any client/peer traffic.", 0},
    {"experimental-corrupt-check-time", F_DURATION, OFF(corrupt_check_ns), "0s",
     "Duration of time between cluster corruption check passes.", 0},
    {"logger", F_STRING, OFF(logger), "capnslog", "Only 'capnslog' is supported.", 0},
    {"log-outputs", F_STRING, OFF(log_outputs), "default", "Only 'default' and 'stderr' are supported.", 0},
    {"log-level", F_STRING, OFF(log_level), "info",
     "Configures log level. Only supports debug, info, warn, error, panic, or fatal.", 0},
    {"debug", F_BOOL, OFF(debug), "false", "Enable debug-level logging for etcd.", 0},
    /* ---- TLS: etcd 3.4's names and help ---- */
    {"cert-file", F_STRING, OFF(cert_file), "", "Path to the client server TLS cert file.", 0},
    {"key-file", F_STRING, OFF(key_file), "", "Path to the client server TLS key file.", 0},
    {"client-cert-auth", F_BOOL, OFF(client_cert_auth), "false", "Enable client cert authentication.", 0},
    {"client-crl-file", F_STRING, OFF(client_crl_file), "", "Path to the client certificate revocation list file.", 0},
    {"client-cert-allowed-hostname", F_STRING, OFF(client_cert_allowed_hostname), "",
     "Allowed TLS hostname for client cert authentication.", 0},
    {"trusted-ca-file", F_STRING, OFF(trusted_ca_file), "", "Path to the client server TLS trusted CA cert file.", 0},
    {"auto-tls", F_BOOL, OFF(auto_tls), "false", "Client TLS using generated certificates", 0},
    {"self-signed-cert-validity", F_UINT, OFF(self_signed_cert_validity), "1",
     "The validity period of the client and peer certificates generated by --auto-tls and --peer-auto-tls, the "
     "unit is year.",
     0},
    {"peer-cert-file", F_STRING, OFF(peer_cert_file), "", "Path to the peer server TLS cert file.", 0},
    {"peer-key-file", F_STRING, OFF(peer_key_file), "", "Path to the peer server TLS key file.", 0},
    {"peer-client-cert-auth", F_BOOL, OFF(peer_client_cert_auth), "false", "Enable peer client cert authentication.",
     0},
    {"peer-trusted-ca-file", F_STRING, OFF(peer_trusted_ca_file), "", "Path to the peer server TLS trusted CA file.",
     0},
    {"peer-auto-tls", F_BOOL, OFF(peer_auto_tls), "false", "Peer TLS using generated certificates", 0},
    {"peer-crl-file", F_STRING, OFF(peer_crl_file), "", "Path to the peer certificate revocation list file.", 0},
    {"peer-cert-allowed-cn", F_STRING, OFF(peer_cert_allowed_cn), "",
     "Required CN for client certs connecting to the peer endpoint.", 0},
    {"peer-cert-allowed-hostname", F_STRING, OFF(peer_cert_allowed_hostname), "",
     "Allowed TLS hostname for inter peer authentication.", 0},
    {"cipher-suites", F_STRING, OFF(cipher_suites), "",
     "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be "
     "auto-populated by Go).",
     0},
    {"config-file", F_STRING, OFF(config_file), "", "Path to the server configuration file (not supported yet).", 0},
    {"version", F_BOOL, OFF(version), "false", "Print the version and exit.", 0},
    {"help", F_BOOL, OFF(help), "false", "Show this help.", 0},
};

/* etcd 3.4 flags MetaStore does not implement: refused by name. */
static const char *const unsupported[] = {
    "cors",
    "host-whitelist",
    "listen-metrics-urls",
    "auto-compaction-mode",
    "auto-compaction-retention",
    "metrics",
    "enable-pprof",
    "enable-v2",
    "pre-vote",
    "initial-election-tick-advance",
    "max-snapshots",
    "max-wals",
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "backend-batch-interval",
    "backend-batch-limit",
    "auth-token",
    "bcrypt-cost",
    "auth-token-ttl",
    "discovery",
    "discovery-fallback",
    "discovery-proxy",
    "discovery-srv",
    "discovery-srv-name",
    "proxy",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
    "force-new-cluster",
    "unsafe-no-fsync",
    "log-package-levels",
    "experimental-enable-lease-checkpoint",
    "experimental-compaction-batch-limit",
    "experimental-warning-apply-duration",
    "experimental-backend-bbolt-freelist-type",
    "experimental-peer-skip-client-san-verification",
    "experimental-enable-v2v3",
};

/* Flags etcd 3.4 accepts and ignores; so do we, with etcd's warning. */
static const char *const ignored[] = {
    "cluster-active-size",
    "cluster-remove-delay",
    "cluster-sync-interval",
    "config",
    "force",
    "max-result-buffer",
    "max-retry-attempts",
    "peer-heartbeat-interval",
    "peer-election-timeout",
    "retry-interval",
    "snapshot",
    "v",
    "vv",
};

static const flag_def *find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < MS_ARRAY_LEN(flags); i++)
		if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

static bool in_list(const char *const *list, size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(list[i]) == len && memcmp(list[i], name, len) == 0)
			return true;
	return false;
}

static int set_value(ms_flags *f, const flag_def *d, const char *val, const char *origin)
{
	char *base = (char *)f;
	switch (d->type) {
	case F_STRING: {
		char **p = (char **)(base + d->off);
		ms_free(*p);
		*p = ms_strdup(val);
		return 0;
	}
	case F_BOOL: {
		bool *p = (bool *)(base + d->off);
		if (!strcmp(val, "true") || !strcmp(val, "1") || !strcmp(val, "t") || !strcmp(val, "T") ||
		    !strcmp(val, "TRUE") || !strcmp(val, "True"))
			*p = true;
		else if (!strcmp(val, "false") || !strcmp(val, "0") || !strcmp(val, "f") || !strcmp(val, "F") ||
		         !strcmp(val, "FALSE") || !strcmp(val, "False"))
			*p = false;
		else
			goto bad;
		return 0;
	}
	case F_UINT: {
		char *end;
		errno = 0;
		if (*val == '-' || *val == 0)
			goto bad;
		unsigned long long v = strtoull(val, &end, 0);
		if (errno || *end)
			goto bad;
		*(uint64_t *)(base + d->off) = v;
		return 0;
	}
	case F_DURATION: {
		/* Go's time.ParseDuration subset: [0-9]+(.[0-9]+)?(ns|us|ms|s|m|h), repeated */
		const char *q = val;
		double total = 0;
		if (!*q)
			goto bad;
		if (!strcmp(q, "0")) {
			*(int64_t *)(base + d->off) = 0;
			return 0;
		}
		while (*q) {
			char *end;
			double v = strtod(q, &end);
			if (end == q || v < 0)
				goto bad;
			q = end;
			double unit;
			if (!strncmp(q, "ns", 2))
				unit = 1, q += 2;
			else if (!strncmp(q, "us", 2) || !strncmp(q, "\xc2\xb5s", 3))
				unit = 1e3, q += q[0] == 'u' ? 2 : 3;
			else if (!strncmp(q, "ms", 2))
				unit = 1e6, q += 2;
			else if (*q == 's')
				unit = 1e9, q += 1;
			else if (*q == 'm')
				unit = 60e9, q += 1;
			else if (*q == 'h')
				unit = 3600e9, q += 1;
			else
				goto bad;
			total += v * unit;
		}
		*(int64_t *)(base + d->off) = (int64_t)total;
		return 0;
	}
	case F_INT: {
		char *end;
		errno = 0;
		long long v = strtoll(val, &end, 0);
		if (errno || *end || *val == 0)
			goto bad;
		*(int64_t *)(base + d->off) = v;
		return 0;
	}
	}
bad:
	fprintf(stderr, "invalid value \"%s\" for flag -%s: parse error (from %s)\n", val, d->name, origin);
	return 2;
}

void ms_flags_usage(void)
{
	fprintf(stderr, "Usage:\n\n  metastore [flags]\n    Start a MetaStore (etcd v3 API) member.\n\n"
	                "  metastore --version\n    Show the version.\n\nFlags:\n");
	for (size_t i = 0; i < MS_ARRAY_LEN(flags); i++)
		fprintf(stderr, "  --%s%s%s\n      %s\n", flags[i].name, *flags[i].def ? " '" : "",
		        *flags[i].def ? flags[i].def : "", flags[i].help);
	fprintf(stderr, "\nEvery flag may also be given as an ETCD_<NAME> environment variable.\n"
	                "Other etcd flags (auth, discovery, proxy, ...) are refused by name.\n");
}

static void env_name(const char *flag, char *out, size_t cap)
{
	size_t n = (size_t)snprintf(out, cap, "ETCD_");
	for (const char *p = flag; *p && n + 1 < cap; p++)
		out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	out[n] = 0;
}

int ms_flags_parse(int argc, char **argv, ms_flags *f)
{
	memset(f, 0, sizeof *f);
	bool given[MS_ARRAY_LEN(flags)] = {0};
	for (size_t i = 0; i < MS_ARRAY_LEN(flags); i++)
		if (set_value(f, &flags[i], flags[i].def, "default"))
			return 1;

	int i;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || a[1] == 0)
			break; /* first non-flag argument ends the flags (Go's flag package) */
		a++;
		if (*a == '-') {
			a++;
			if (*a == 0) { /* "--" terminates the flags */
				i++;
				break;
			}
		}
		if (*a == '-' || *a == '=') {
			fprintf(stderr, "bad flag syntax: %s\n", argv[i]);
			ms_flags_usage();
			return 2;
		}
		const char *eq = strchr(a, '=');
		size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
		const flag_def *d = find_flag(a, nlen);
		if (!d) {
			if (in_list(unsupported, MS_ARRAY_LEN(unsupported), a, nlen)) {
				fprintf(stderr,
				        "metastore: flag --%.*s is an etcd flag that MetaStore does not support\n",
				        (int)nlen, a);
				return 1;
			}
			if (in_list(ignored, MS_ARRAY_LEN(ignored), a, nlen)) {
				MS_WARN("etcdmain", "flag --%.*s is ignored (as etcd 3.4 ignores it)", (int)nlen, a);
				if (!eq && i + 1 < argc && argv[i + 1][0] != '-')
					i++;
				continue;
			}
			fprintf(stderr, "flag provided but not defined: -%.*s\n", (int)nlen, a);
			ms_flags_usage();
			return 2;
		}
		const char *val;
		if (eq) {
			val = eq + 1;
		} else if (d->type == F_BOOL) {
			val = "true";
		} else {
			if (i + 1 >= argc) {
				fprintf(stderr, "flag needs an argument: -%s\n", d->name);
				ms_flags_usage();
				return 2;
			}
			val = argv[++i];
		}
		int rc = set_value(f, d, val, "command line");
		if (rc)
			return rc;
		given[d - flags] = true;
	}
	if (i < argc) {
		fprintf(stderr, "etcdmain: error verifying flags, '%s' is not a valid flag. See 'etcd --help'.\n",
		        argv[i]);
		return 1;
	}

	/* ETCD_* environment: applies where the flag was not given; shadowing is fatal. */
	for (char **e = environ; e && *e; e++) {
		if (strncmp(*e, "ETCD_", 5) != 0)
			continue;
		const char *eq = strchr(*e, '=');
		if (!eq)
			continue;
		bool known = false;
		for (size_t k = 0; k < MS_ARRAY_LEN(flags); k++) {
			char name[96];
			env_name(flags[k].name, name, sizeof name);
			if (strlen(name) != (size_t)(eq - *e) || memcmp(name, *e, (size_t)(eq - *e)) != 0)
				continue;
			known = true;
			if (given[k]) {
				fprintf(
				    stderr,
				    "etcdmain: conflicting environment variable \"%s\" is shadowed by corresponding "
				    "command-line flag (either unset environment variable or disable flag)\n",
				    name);
				return 1;
			}
			if (eq[1] == 0)
				break;
			int rc = set_value(f, &flags[k], eq + 1, name);
			if (rc)
				return 1;
			given[k] = true;
		}
		if (!known) {
			for (size_t k = 0; k < MS_ARRAY_LEN(unsupported); k++) {
				char name[96];
				env_name(unsupported[k], name, sizeof name);
				if (strlen(name) == (size_t)(eq - *e) && memcmp(name, *e, (size_t)(eq - *e)) == 0) {
					fprintf(stderr,
					        "metastore: %.*s sets an etcd flag that MetaStore does not support\n",
					        (int)(eq - *e), *e);
					return 1;
				}
			}
			if (strncmp(*e, "ETCDCTL_", 8) != 0)
				MS_WARN("flags", "unrecognized environment variable %s", *e);
		}
	}
	for (size_t k = 0; k < MS_ARRAY_LEN(flags); k++) {
		if (given[k] && flags[k].set_off)
			*(bool *)((char *)f + flags[k].set_off) = true;
	}
	return 0;
}

void ms_flags_free(ms_flags *f)
{
	for (size_t i = 0; i < MS_ARRAY_LEN(flags); i++)
		if (flags[i].type == F_STRING) {
			char **p = (char **)((char *)f + flags[i].off);
			ms_free(*p);
			*p = NULL;
		}
}
