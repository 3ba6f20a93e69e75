/* main.c — metastore-migrate: flags, signals and the summary around migrate_run. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ms.h"
#include "tools/migrate/migrate.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	stop_flag = 1;
}

static void usage(FILE *f)
{
	fputs("usage: metastore-migrate --from LEGACY_DIR --data-dir NEW_DIR --name NAME\n"
	      "         --initial-cluster NAME=URL[,NAME=URL...] --initial-advertise-peer-urls URL[,URL...]\n"
	      "         [--initial-cluster-token TOKEN] [--verify] [--dry-run]\n"
	      "\n"
	      "Moves a Go MetaStore RocksDB directory (gob or binary values) into a new MetaStore\n"
	      "data directory that `metastore` starts from as a one-member cluster. The source is\n"
	      "opened read-only; the result appears at NEW_DIR only when complete and checked.\n"
	      "  --dry-run   decode and check everything, print counts, write nothing\n"
	      "  --verify    compare every record of the result with the source before finishing\n",
	      f);
}

/* The flag's name without its dashes: etcd accepts both -flag and --flag. */
static const char *bare(const char *a)
{
	if (a[0] != '-')
		return "";
	return a[1] == '-' ? a + 2 : a + 1;
}

/* Takes "--flag value" or "--flag=value" (name without dashes). */
static bool flag_value(int argc, char **argv, int *i, const char *name, const char **out)
{
	size_t n = strlen(name);
	const char *a = bare(argv[*i]);
	if (strncmp(a, name, n) != 0)
		return false;
	if (a[n] == '=') {
		*out = a + n + 1;
		return true;
	}
	if (a[n] != 0)
		return false;
	if (*i + 1 >= argc) {
		fprintf(stderr, "metastore-migrate: --%s needs a value\n", name);
		exit(2);
	}
	*out = argv[++*i];
	return true;
}

int main(int argc, char **argv)
{
	migrate_opts o = {.log = stderr, .stop = &stop_flag};
	for (int i = 1; i < argc; i++) {
		const char *a = bare(argv[i]);
		if (flag_value(argc, argv, &i, "from", &o.from) ||
		    flag_value(argc, argv, &i, "data-dir", &o.data_dir) ||
		    flag_value(argc, argv, &i, "name", &o.name) ||
		    flag_value(argc, argv, &i, "initial-cluster", &o.initial_cluster) ||
		    flag_value(argc, argv, &i, "initial-advertise-peer-urls", &o.initial_advertise_peer_urls) ||
		    flag_value(argc, argv, &i, "initial-cluster-token", &o.initial_cluster_token))
			continue;
		if (strcmp(a, "dry-run") == 0) {
			o.dry_run = true;
		} else if (strcmp(a, "verify") == 0) {
			o.verify = true;
		} else if (strcmp(a, "help") == 0 || strcmp(a, "h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "metastore-migrate: unknown flag %s\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!o.from || (!o.dry_run && !o.data_dir)) {
		fprintf(stderr, "metastore-migrate: --from and --data-dir are required\n");
		usage(stderr);
		return 2;
	}
	o.progress = isatty(STDERR_FILENO);
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	migrate_stats st;
	ms_err err = {0};
	int rc = migrate_run(&o, &st, &err);
	if (rc) {
		fprintf(stderr, "metastore-migrate: %s%s\n", err.msg,
		        o.dry_run ? "" : " (nothing was written; the source is unchanged)");
		return 1;
	}
	double s = st.seconds > 0 ? st.seconds : 1e-9, mb = (double)st.bytes / 1e6;
	fprintf(stderr,
	        "metastore-migrate: %s %llu keys (%llu gob, %llu binary), %llu leases (%llu keys attached), "
	        "revision %lld (legacy compacted %lld), %llu disagreements, %.2f MB in %.2f s (%.0f keys/s, %.1f MB/s)",
	        o.dry_run ? "dry run checked" : "migrated", (unsigned long long)st.kvs, (unsigned long long)st.kvs_gob,
	        (unsigned long long)st.kvs_binary, (unsigned long long)st.leases, (unsigned long long)st.leased_keys,
	        (long long)st.revision, (long long)st.legacy_compacted, (unsigned long long)st.disagreements, mb,
	        st.seconds, (double)st.kvs / s, mb / s);
	if (o.dry_run)
		fputs("; nothing written\n", stderr);
	else if (o.verify)
		fprintf(stderr, "; verified %llu records; data dir %s\n", (unsigned long long)st.verified, o.data_dir);
	else
		fprintf(stderr, "; data dir %s\n", o.data_dir);
	return 0;
}
