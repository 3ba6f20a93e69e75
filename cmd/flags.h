/* flags.h — etcd's command line for metastore (private to cmd/).
 *
 * Go flag package rules, as etcd: `-x` or `--x`, `--x=v` or `--x v`, booleans
 * `--x` or `--x=false`; `ETCD_<NAME>` environment variables apply to flags not
 * given on the command line, and a variable shadowed by a flag is fatal.
 * Every etcd flag MetaStore does not support is refused by name at start-up
 * (never silently ignored); flags etcd itself ignores are accepted with a
 * warning, as etcd does. */
#ifndef MS_CMD_FLAGS_H
#define MS_CMD_FLAGS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ms_flags {
	char *name, *data_dir, *wal_dir;
	char *listen_client_urls, *advertise_client_urls;
	char *listen_peer_urls, *initial_advertise_peer_urls;
	char *initial_cluster, *initial_cluster_state, *initial_cluster_token;
	char *log_level, *logger, *log_outputs;
	char *config_file;
	uint64_t max_request_bytes, max_txn_ops, max_concurrent_streams, heartbeat_interval, election_timeout,
	    snapshot_count;
	int64_t quota_backend_bytes;
	int64_t watch_progress_notify_ns;
	bool initial_corrupt_check; /* --experimental-initial-corrupt-check */
	int64_t corrupt_check_ns;   /* --experimental-corrupt-check-time */
	bool debug, version, help, enable_grpc_gateway, strict_reconfig_check;
	/* TLS (common/tls.h, wired in main.c) */
	char *cert_file, *key_file, *trusted_ca_file, *client_crl_file, *client_cert_allowed_hostname;
	char *peer_cert_file, *peer_key_file, *peer_trusted_ca_file, *peer_crl_file;
	char *peer_cert_allowed_cn, *peer_cert_allowed_hostname, *cipher_suites;
	uint64_t self_signed_cert_validity;
	bool client_cert_auth, auto_tls, peer_client_cert_auth, peer_auto_tls;
	/* which flags came from the command line or environment */
	bool set_listen_client_urls, set_advertise_client_urls;
} ms_flags;

/* Parses argv and the environment. On error prints etcd's message to stderr
 * and returns the exit status to use (2 for an unknown flag, 1 otherwise);
 * returns 0 on success. */
int ms_flags_parse(int argc, char **argv, ms_flags *f);
void ms_flags_usage(void);
void ms_flags_free(ms_flags *f);

#endif
