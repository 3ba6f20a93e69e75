/* migrate.c — legacy RocksDB (gob or binary values) to a MetaStore data directory. */
#ifndef _GNU_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#endif
#include "tools/migrate/migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <protobuf-c/protobuf-c.h>

#include "engine/engine.h"
#include "tools/migrate/gob.h"
#include "tools/migrate/legacy.h"

#define KEY_ESC 160 /* room for an escaped key in messages */

/* ---- a set of (lease id, user key) pairs ---- */
typedef struct pair {
	int64_t lease;
	uint8_t *key;
	size_t len;
	uint64_t hash;
	bool seen;
} pair;

typedef struct pair_set {
	pair *slots;
	size_t cap, n;
} pair_set;

static uint64_t pair_hash(int64_t lease, const uint8_t *k, size_t n)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)lease * 0x9E3779B97F4A7C15ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ k[i]) * 1099511628211ull;
	return h | 1; /* 0 marks an empty slot */
}

static pair *pair_find(pair_set *s, int64_t lease, const uint8_t *k, size_t n, uint64_t h)
{
	if (!s->cap)
		return NULL;
	for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		pair *p = &s->slots[i];
		if (!p->hash || (p->hash == h && p->lease == lease && p->len == n && memcmp(p->key, k, n) == 0))
			return p;
	}
}

static pair *pair_get(pair_set *s, int64_t lease, const uint8_t *k, size_t n)
{
	pair *p = pair_find(s, lease, k, n, pair_hash(lease, k, n));
	return p && p->hash ? p : NULL;
}

/* Adds (lease, key); *added false when it was there already. */
static int pair_add(pair_set *s, int64_t lease, const uint8_t *k, size_t n, bool *added)
{
	if ((s->n + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		pair *slots = ms_calloc(cap, sizeof *slots);
		if (!slots)
			return MS_ENOMEM;
		pair_set ns = {slots, cap, 0};
		for (size_t i = 0; i < s->cap; i++)
			if (s->slots[i].hash)
				*pair_find(&ns, s->slots[i].lease, s->slots[i].key, s->slots[i].len, s->slots[i].hash) =
				    s->slots[i];
		ms_free(s->slots);
		s->slots = slots;
		s->cap = cap;
	}
	uint64_t h = pair_hash(lease, k, n);
	pair *p = pair_find(s, lease, k, n, h);
	*added = !p->hash;
	if (p->hash)
		return 0;
	uint8_t *copy = ms_memdup(k, n);
	if (!copy && n)
		return MS_ENOMEM;
	*p = (pair){lease, copy, n, h, false};
	s->n++;
	return 0;
}

static void pair_set_free(pair_set *s)
{
	for (size_t i = 0; i < s->cap; i++)
		if (s->slots[i].hash)
			ms_free(s->slots[i].key);
	ms_free(s->slots);
	memset(s, 0, sizeof *s);
}

/* ---- leases of the source ---- */
typedef struct lease_rec {
	int64_t id, ttl;
	uint64_t listed;   /* true entries in its Keys map */
	uint64_t attached; /* keys whose Lease field names it */
} lease_rec;

typedef struct run {
	const migrate_opts *o;
	migrate_stats *st;
	FILE *log;
	rocksdb_t *src;
	rocksdb_readoptions_t *ro;
	gob_dec *dec;
	lease_rec *leases; /* sorted by id */
	size_t nleases;
	pair_set listed;   /* from Lease.Keys */
	pair_set attached; /* from KeyValue.Lease */
	engine *eng;
	char *tmp_dir; /* NEW_DIR.tmp-XXXXXX while it exists */
	char *final_dir;
	int64_t t0;
	int64_t last_draw;
	uint64_t warned;
} run;

static const char *key_esc(const uint8_t *k, size_t n, char *buf)
{
	return legacy_escape(k, n, buf, KEY_ESC);
}

static void warn(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(run *r, const char *fmt, ...)
{
	r->st->disagreements++;
	if (r->warned++ >= 20) {
		if (r->warned == 21)
			fprintf(r->log, "metastore-migrate: warning: further disagreements are only counted\n");
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	if (r->o->progress)
		fputs("\r\033[K", r->log);
	fputs("metastore-migrate: warning: ", r->log);
	vfprintf(r->log, fmt, ap);
	fputc('\n', r->log);
	va_end(ap);
}

static lease_rec *lease_find(run *r, int64_t id)
{
	size_t lo = 0, hi = r->nleases;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (r->leases[mid].id == id)
			return &r->leases[mid];
		if (r->leases[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void progress(run *r, bool final)
{
	if (!r->o->progress)
		return;
	int64_t now = ms_now_mono_ns();
	if (!final && now - r->last_draw < 200000000)
		return;
	r->last_draw = now;
	double s = (double)(now - r->t0) / 1e9, mb = (double)r->st->bytes / 1e6;
	if (s <= 0)
		s = 1e-9;
	fprintf(r->log, "\r\033[K  %s %llu keys  %llu leases  %.1f MB  %.0f keys/s  %.1f MB/s%s",
	        r->o->dry_run ? "checked" : "migrated", (unsigned long long)r->st->kvs,
	        (unsigned long long)r->st->leases, mb, (double)r->st->kvs / s, mb / s, final ? "\n" : "");
	fflush(r->log);
}

static int stopped(run *r, ms_err *err)
{
	if (r->o->stop && *r->o->stop)
		return ms_err_set(err, MS_ECANCELED, "interrupted");
	return 0;
}

/* ---- cluster flags ---- */
static bool has_newline(const char *s)
{
	return s && strpbrk(s, "\r\n");
}

/* Is url one of the comma-separated entries of list? */
static bool url_in(const char *url, size_t n, const char *list)
{
	for (const char *p = list; *p;) {
		size_t l = strcspn(p, ",");
		if (l == n && memcmp(p, url, n) == 0)
			return true;
		p += l + (p[l] == ',');
	}
	return false;
}

int migrate_check_cluster(const migrate_opts *o, ms_err *err)
{
	if (!o->name || !*o->name)
		return ms_err_set(err, MS_EINVAL, "--name is required");
	if (!o->initial_cluster || !*o->initial_cluster)
		return ms_err_set(err, MS_EINVAL, "--initial-cluster is required");
	if (!o->initial_advertise_peer_urls || !*o->initial_advertise_peer_urls)
		return ms_err_set(err, MS_EINVAL, "--initial-advertise-peer-urls is required");
	if (has_newline(o->name) || has_newline(o->initial_cluster) || has_newline(o->initial_advertise_peer_urls) ||
	    has_newline(o->initial_cluster_token) || strchr(o->name, '=') || strchr(o->name, ','))
		return ms_err_set(err, MS_EINVAL, "flag values must not contain newlines (nor '=' or ',' in --name)");
	if (o->initial_cluster_token && !*o->initial_cluster_token)
		return ms_err_set(err, MS_EINVAL, "--initial-cluster-token must not be empty");
	size_t nurls = 0;
	for (const char *p = o->initial_cluster; *p;) {
		size_t l = strcspn(p, ",");
		const char *eq = memchr(p, '=', l);
		if (!eq || eq == p || eq + 1 == p + l)
			return ms_err_set(err, MS_EINVAL, "--initial-cluster: entry \"%.*s\" is not name=url", (int)l,
			                  p);
		size_t nl = (size_t)(eq - p);
		const char *url = eq + 1;
		size_t ul = l - nl - 1;
		if (nl != strlen(o->name) || memcmp(p, o->name, nl) != 0)
			return ms_err_set(err, MS_EINVAL,
			                  "--initial-cluster names member \"%.*s\": a migrated store starts as a "
			                  "one-member cluster (\"%s\"); add members afterwards with member add",
			                  (int)nl, p, o->name);
		if (!(ul > 7 && strncmp(url, "http://", 7) == 0) && !(ul > 8 && strncmp(url, "https://", 8) == 0))
			return ms_err_set(err, MS_EINVAL, "--initial-cluster: \"%.*s\" is not an http(s) URL", (int)ul,
			                  url);
		if (!url_in(url, ul, o->initial_advertise_peer_urls))
			return ms_err_set(err, MS_EINVAL,
			                  "--initial-cluster has %.*s for %s, not in --initial-advertise-peer-urls %s",
			                  (int)ul, url, o->name, o->initial_advertise_peer_urls);
		nurls++;
		p += l + (p[l] == ',');
	}
	if (nurls == 0)
		return ms_err_set(err, MS_EINVAL, "--initial-cluster does not name %s", o->name);
	/* and every advertised URL is listed for this member */
	for (const char *p = o->initial_advertise_peer_urls; *p;) {
		size_t l = strcspn(p, ",");
		bool found = false;
		for (const char *q = o->initial_cluster; *q && !found;) {
			size_t ql = strcspn(q, ",");
			const char *eq = memchr(q, '=', ql);
			size_t ul = ql - (size_t)(eq + 1 - q);
			found = ul == l && memcmp(eq + 1, p, l) == 0;
			q += ql + (q[ql] == ',');
		}
		if (!found)
			return ms_err_set(err, MS_EINVAL,
			                  "--initial-advertise-peer-urls has %.*s, which --initial-cluster does not "
			                  "list for %s",
			                  (int)l, p, o->name);
		p += l + (p[l] == ',');
	}
	return 0;
}

/* ---- files ---- */
static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void remove_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int fsync_path(const char *path, ms_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ms_err_set(err, MS_EIO, "open %s: %s", path, strerror(errno));
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	return rc ? ms_err_set(err, MS_EIO, "fsync %s: %s", path, strerror(e)) : 0;
}

static int fsync_tree_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return fsync_path(path, NULL) ? -1 : 0;
}

/* 0 if dir is absent or an empty directory; MS_EEXIST otherwise. */
static int check_target(const char *dir, ms_err *err)
{
	struct stat st;
	if (stat(dir, &st)) {
		if (errno == ENOENT)
			return 0;
		return ms_err_set(err, MS_EIO, "data dir %s: %s", dir, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return ms_err_set(err, MS_EEXIST, "data dir %s exists and is not a directory", dir);
	DIR *d = opendir(dir);
	if (!d)
		return ms_err_set(err, MS_EIO, "data dir %s: %s", dir, strerror(errno));
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = ms_err_set(err, MS_EEXIST, "data dir %s is not empty (refusing to overwrite it)", dir);
	closedir(d);
	return rc;
}

/* The new directory must not land inside the source, which stays untouched. */
static int check_outside(const char *from, const char *data_dir, ms_err *err)
{
	char *src = realpath(from, NULL), *dd = ms_strdup(data_dir);
	int rc = 0;
	if (!dd) {
		free(src);
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	}
	char *slash = strrchr(dd, '/');
	const char *parent_path = !slash ? "." : slash == dd ? "/" : (*slash = 0, dd);
	char *parent = realpath(parent_path, NULL);
	if (src && parent) {
		size_t n = strlen(src);
		if (strncmp(parent, src, n) == 0 && (parent[n] == 0 || parent[n] == '/' || n == 1))
			rc = ms_err_set(err, MS_EINVAL, "--data-dir %s is inside the source %s", data_dir, from);
	}
	free(src);
	free(parent);
	ms_free(dd);
	return rc;
}

static char *path_join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *p = ms_malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", a, b);
	return p;
}

static int write_bootstrap(run *r, const char *path, ms_err *err)
{
	const migrate_opts *o = r->o;
	FILE *f = fopen(path, "wx");
	if (!f)
		return ms_err_set(err, MS_EIO, "create %s: %s", path, strerror(errno));
	fprintf(f, "name=%s\ninitial-cluster=%s\ninitial-advertise-peer-urls=%s\ninitial-cluster-token=%s\n", o->name,
	        o->initial_cluster, o->initial_advertise_peer_urls,
	        o->initial_cluster_token ? o->initial_cluster_token : "etcd-cluster");
	if (fflush(f) || fsync(fileno(f))) {
		int e = errno;
		fclose(f);
		return ms_err_set(err, MS_EIO, "write %s: %s", path, strerror(e));
	}
	if (fclose(f))
		return ms_err_set(err, MS_EIO, "close %s: %s", path, strerror(errno));
	return 0;
}

/* ---- the source ---- */
static int open_source(run *r, ms_err *err)
{
	struct stat st;
	char *cur = path_join(r->o->from, "CURRENT");
	if (!cur)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	int missing = stat(cur, &st);
	ms_free(cur);
	if (missing)
		return ms_err_set(err, MS_ENOTFOUND, "%s is not a RocksDB directory (no CURRENT file)", r->o->from);
	rocksdb_options_t *opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(opts, 0);
	rocksdb_options_set_paranoid_checks(opts, 1);
	/* RocksDB writes its info LOG even read-only; keep it out of the source */
	rocksdb_options_set_db_log_dir(opts, "/dev/null/none");
	rocksdb_options_set_info_log_level(opts, 4 /* HEADER: as quiet as it gets */);
	char *rerr = NULL;
	r->src = rocksdb_open_for_read_only(opts, r->o->from, 0, &rerr);
	rocksdb_options_destroy(opts);
	if (rerr) {
		ms_err_set(err, MS_EIO, "open %s read-only: %s", r->o->from, rerr);
		rocksdb_free(rerr);
		return MS_EIO;
	}
	r->ro = rocksdb_readoptions_create();
	rocksdb_readoptions_set_verify_checksums(r->ro, 1);
	rocksdb_readoptions_set_fill_cache(r->ro, 0);
	return 0;
}

static int src_get(run *r, const char *key, char **val, size_t *len, ms_err *err)
{
	char *rerr = NULL;
	*val = rocksdb_get(r->src, r->ro, key, strlen(key), len, &rerr);
	if (rerr) {
		ms_err_set(err, MS_EIO, "read %s: %s", key, rerr);
		rocksdb_free(rerr);
		return MS_EIO;
	}
	return 0;
}

static int iter_status(rocksdb_iterator_t *it, ms_err *err)
{
	char *rerr = NULL;
	rocksdb_iter_get_error(it, &rerr);
	if (rerr) {
		ms_err_set(err, MS_EIO, "reading the source: %s", rerr);
		rocksdb_free(rerr);
		return MS_EIO;
	}
	return 0;
}

static bool has_prefix(const char *k, size_t n, const char *p)
{
	size_t l = strlen(p);
	return n >= l && memcmp(k, p, l) == 0;
}

static int read_meta(run *r, ms_err *err)
{
	char *v;
	size_t n, off = 0;
	int rc;
	ms_err e2 = {0};
	if ((rc = src_get(r, "meta:revision", &v, &n, err)))
		return rc;
	if (!v)
		return ms_err_set(err, MS_ECORRUPT, "key \"meta:revision\" is missing: not a Go MetaStore database?");
	rc = legacy_int_from_gob(r->dec, (const uint8_t *)v, n, &r->st->revision, &off, &e2);
	rocksdb_free(v);
	if (rc)
		return ms_err_set(err, rc, "key \"meta:revision\": value offset %zu: %s", off, e2.msg);
	if (r->st->revision < 1)
		return ms_err_set(err, MS_ECORRUPT, "key \"meta:revision\": revision %lld is not positive",
		                  (long long)r->st->revision);
	if ((rc = src_get(r, "meta:compacted_revision", &v, &n, err)))
		return rc;
	if (v) {
		rc = legacy_compacted_decode((const uint8_t *)v, n, &r->st->legacy_compacted, &e2);
		rocksdb_free(v);
		if (rc)
			return ms_err_set(err, rc, "key \"meta:compacted_revision\": %s", e2.msg);
		if (r->st->legacy_compacted > r->st->revision)
			return ms_err_set(err, MS_ECORRUPT,
			                  "key \"meta:compacted_revision\": %lld is past meta:revision %lld",
			                  (long long)r->st->legacy_compacted, (long long)r->st->revision);
	}
	return 0;
}

static int read_lease(run *r, const char *k, size_t kn, const uint8_t *v, size_t vn, ms_err *err)
{
	char esc[KEY_ESC];
	int64_t id;
	legacy_lease l;
	size_t off = 0;
	ms_err e2 = {0};
	int rc;
	if (legacy_parse_id((const uint8_t *)k + 6, kn - 6, &id) || id == 0)
		return ms_err_set(err, MS_ECORRUPT, "key \"%s\": not lease:<decimal id>",
		                  key_esc((const uint8_t *)k, kn, esc));
	if ((rc = legacy_lease_from_gob(r->dec, v, vn, &l, &off, &e2)))
		return ms_err_set(err, rc, "key \"%s\": value offset %zu: %s", key_esc((const uint8_t *)k, kn, esc),
		                  off, e2.msg);
	if (l.id != id)
		return ms_err_set(err, MS_ECORRUPT, "key \"%s\": value has lease ID %lld",
		                  key_esc((const uint8_t *)k, kn, esc), (long long)l.id);
	if (l.ttl <= 0)
		return ms_err_set(err, MS_ECORRUPT, "key \"%s\": TTL %lld is not positive",
		                  key_esc((const uint8_t *)k, kn, esc), (long long)l.ttl);
	lease_rec *nl = ms_realloc(r->leases, (r->nleases + 1) * sizeof *nl);
	if (!nl)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	r->leases = nl;
	lease_rec *rec = &r->leases[r->nleases++];
	*rec = (lease_rec){id, l.ttl, 0, 0};
	for (size_t i = 0; i < l.nkeys; i++) {
		const gob_value *kk = l.pairs[2 * i], *b = l.pairs[2 * i + 1];
		if (!b->b)
			continue; /* false: not attached */
		bool added;
		if (pair_add(&r->listed, id, kk->bytes.p, kk->bytes.len, &added))
			return ms_err_set(err, MS_ENOMEM, "out of memory");
		rec->listed += added;
	}
	r->st->leases++;
	r->st->bytes += kn + vn;
	return 0;
}

/* Leases sort as "lease:<decimal>", not by id: sort them by id after reading. */
static int cmp_lease(const void *a, const void *b)
{
	int64_t x = ((const lease_rec *)a)->id, y = ((const lease_rec *)b)->id;
	return x < y ? -1 : x > y;
}

static int read_leases(run *r, ms_err *err)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator(r->src, r->ro);
	int rc = 0;
	for (rocksdb_iter_seek(it, "lease:", 6); rocksdb_iter_valid(it) && !rc; rocksdb_iter_next(it)) {
		size_t kn, vn;
		const char *k = rocksdb_iter_key(it, &kn);
		if (!has_prefix(k, kn, "lease:"))
			break;
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
		rc = read_lease(r, k, kn, v, vn, err);
	}
	if (!rc)
		rc = iter_status(it, err);
	rocksdb_iter_destroy(it);
	/* ids are unique: their keys are, and legacy_parse_id refuses leading zeros */
	if (!rc && r->nleases)
		qsort(r->leases, r->nleases, sizeof *r->leases, cmp_lease);
	return rc;
}

static const char *binary_problem(const uint8_t *v, size_t n, char *buf, size_t cap)
{
	if (n < 40) {
		snprintf(buf, cap, "%zu bytes, shorter than the 40-byte minimum", n);
	} else {
		uint32_t kl = ms_get_u32le(v);
		if (kl > n - 40)
			snprintf(buf, cap, "key length %u at offset 0 exceeds the value", kl);
		else
			snprintf(buf, cap, "value length %u at offset %u does not match the %zu bytes left",
			         ms_get_u32le(v + 4 + kl), 4 + kl, n - 40 - kl);
	}
	return buf;
}

static int import_kv(run *r, const char *k, size_t kn, const uint8_t *v, size_t vn, ms_err *err)
{
	char esc[KEY_ESC];
	engine_kv kv;
	legacy_kv g;
	size_t off = 0;
	ms_err e2 = {0};
	int rc;
	bool bin = engine_kv_decode(v, vn, &kv) == 0;
	int grc = legacy_kv_from_gob(r->dec, v, vn, &g, &off, &e2);
	if (bin && grc == 0)
		return ms_err_set(err, MS_ECORRUPT, "key \"%s\": value reads both as gob and as binary KeyValue",
		                  key_esc((const uint8_t *)k, kn, esc));
	if (!bin && grc) {
		char why[96];
		return ms_err_set(err, grc == MS_ENOMEM ? MS_ENOMEM : MS_ECORRUPT,
		                  "key \"%s\": value is neither gob (%s) nor binary KeyValue (%s)",
		                  key_esc((const uint8_t *)k, kn, esc), e2.msg, binary_problem(v, vn, why, sizeof why));
	}
	if (!bin) {
		kv = (engine_kv){g.key, g.key_len, g.value, g.value_len, g.create_rev, g.mod_rev, g.version, g.lease};
		r->st->kvs_gob++;
	} else {
		r->st->kvs_binary++;
	}
	const char *why = NULL;
	if (kv.key_len != kn - 3 || memcmp(kv.key, k + 3, kn - 3) != 0)
		why = "the value's Key differs from the row key";
	else if (kv.key_len == 0)
		why = "empty key";
	else if (kv.create_rev < 1 || kv.mod_rev < kv.create_rev)
		why = "create revision must be >= 1 and <= mod revision";
	else if (kv.mod_rev < 2)
		why = "mod revision below 2 (revision 1 is the empty store)";
	else if (kv.mod_rev > r->st->revision)
		why = "mod revision is past meta:revision";
	else if (kv.version < 1)
		why = "version must be >= 1";
	else if (kv.lease < 0)
		why = "negative lease";
	if (why)
		return ms_err_set(
		    err, MS_ECORRUPT, "key \"%s\": %s (create %lld, mod %lld, version %lld, lease %lld, revision %lld)",
		    key_esc((const uint8_t *)k, kn, esc), why, (long long)kv.create_rev, (long long)kv.mod_rev,
		    (long long)kv.version, (long long)kv.lease, (long long)r->st->revision);
	if (kv.lease) {
		lease_rec *l = lease_find(r, kv.lease);
		if (!l)
			return ms_err_set(err, MS_ECORRUPT, "key \"%s\": lease %lld does not exist",
			                  key_esc((const uint8_t *)k, kn, esc), (long long)kv.lease);
		l->attached++;
		r->st->leased_keys++;
		pair *p = pair_get(&r->listed, kv.lease, kv.key, kv.key_len);
		if (p)
			p->seen = true;
		else
			warn(r,
			     "key \"%s\" has lease %lld, but that lease's Keys does not list it; keeping the key's "
			     "lease",
			     key_esc(kv.key, kv.key_len, esc), (long long)kv.lease);
		bool added;
		if ((rc = pair_add(&r->attached, kv.lease, kv.key, kv.key_len, &added)))
			return ms_err_set(err, rc, "out of memory");
	}
	if (r->eng && (rc = engine_import_kv(r->eng, &kv, &e2)))
		return ms_err_set(err, rc, "key \"%s\": %s", key_esc((const uint8_t *)k, kn, esc), e2.msg);
	r->st->kvs++;
	r->st->bytes += kn + vn;
	return 0;
}

/* Every row: kv: rows are imported, lease: and meta: rows were read before,
 * anything else is refused (it would be lost). */
static int import_rows(run *r, ms_err *err)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator(r->src, r->ro);
	int rc = 0;
	uint64_t n = 0;
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && !rc; rocksdb_iter_next(it)) {
		size_t kn, vn;
		const char *k = rocksdb_iter_key(it, &kn);
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
		if (has_prefix(k, kn, "kv:")) {
			rc = import_kv(r, k, kn, v, vn, err);
		} else if (has_prefix(k, kn, "lease:")) {
			continue;
		} else if ((kn == 13 && memcmp(k, "meta:revision", 13) == 0) ||
		           (kn == 23 && memcmp(k, "meta:compacted_revision", 23) == 0)) {
			r->st->bytes += kn + vn;
		} else {
			char esc[KEY_ESC];
			rc = ms_err_set(err, MS_ECORRUPT, "key \"%s\": unknown kind of row (want kv:, lease: or meta:)",
			                key_esc((const uint8_t *)k, kn, esc));
		}
		if (!rc && (++n & 1023) == 0) {
			rc = stopped(r, err);
			progress(r, false);
		}
	}
	if (!rc)
		rc = iter_status(it, err);
	rocksdb_iter_destroy(it);
	return rc;
}

static void report_unattached(run *r)
{
	char esc[KEY_ESC];
	for (size_t i = 0; i < r->listed.cap; i++) {
		pair *p = &r->listed.slots[i];
		if (p->hash && !p->seen)
			warn(r, "lease %lld lists key \"%s\", which does not carry that lease; it stays unattached",
			     (long long)p->lease, key_esc(p->key, p->len, esc));
	}
}

/* ---- checking the result ---- */
typedef struct lease_check {
	run *r;
	ms_err *err;
	size_t seen;
} lease_check;

static int check_lease_cb(void *arg, int64_t id, int64_t ttl, const uint8_t *const *keys, const size_t *lens, size_t n)
{
	lease_check *c = arg;
	lease_rec *l = lease_find(c->r, id);
	if (!l)
		return ms_err_set(c->err, MS_ECORRUPT, "verify: the new store has lease %lld, the source does not",
		                  (long long)id);
	if (l->ttl != ttl || l->attached != n)
		return ms_err_set(c->err, MS_ECORRUPT,
		                  "verify: lease %lld has TTL %lld and %zu keys, want TTL %lld and %llu keys",
		                  (long long)id, (long long)ttl, n, (long long)l->ttl, (unsigned long long)l->attached);
	for (size_t i = 0; i < n; i++) {
		if (!pair_get(&c->r->attached, id, keys[i], lens[i])) {
			char esc[KEY_ESC];
			return ms_err_set(c->err, MS_ECORRUPT,
			                  "verify: lease %lld has key \"%s\" attached, the source does not",
			                  (long long)id, key_esc(keys[i], lens[i], esc));
		}
	}
	c->seen++;
	return 0;
}

static int kv_differs(const Mvccpb__KeyValue *a, const engine_kv *b)
{
	return a->key.len != b->key_len || memcmp(a->key.data, b->key, b->key_len) || a->value.len != b->value_len ||
	       (b->value_len && memcmp(a->value.data, b->value, b->value_len)) || a->create_revision != b->create_rev ||
	       a->mod_revision != b->mod_rev || a->version != b->version || a->lease != b->lease;
}

/* The next legacy kv: row at or after the iterator, decoded. 0 = none left. */
static int next_source_kv(run *r, rocksdb_iterator_t *it, engine_kv *kv, ms_err *err)
{
	for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kn, vn;
		const char *k = rocksdb_iter_key(it, &kn);
		if (!has_prefix(k, kn, "kv:"))
			return 0;
		const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vn);
		if (engine_kv_decode(v, vn, kv) == 0)
			return 1;
		legacy_kv g;
		if (legacy_kv_from_gob(r->dec, v, vn, &g, NULL, err))
			return MS_ECORRUPT;
		*kv = (engine_kv){g.key, g.key_len, g.value, g.value_len, g.create_rev, g.mod_rev, g.version, g.lease};
		return 1;
	}
	return iter_status(it, err);
}

/* Pages through the whole new store in key order beside the source's kv:
 * rows (also in key order) and compares every record; without full, only
 * the count. */
static int check_kvs(run *r, engine *e, bool full, ms_err *err)
{
	uint8_t *start = ms_malloc(1);
	size_t start_len = 1;
	int rc = 0;
	uint64_t count = 0;
	if (!start)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	start[0] = 0;
	rocksdb_iterator_t *it = rocksdb_create_iterator(r->src, r->ro);
	rocksdb_iter_seek(it, "kv:", 3);
	for (;;) {
		Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
		Etcdserverpb__RangeResponse *resp = NULL;
		req.key.data = start;
		req.key.len = start_len;
		req.range_end.data = (uint8_t *)"\0";
		req.range_end.len = 1;
		req.limit = 1000;
		req.keys_only = !full;
		if ((rc = engine_range(e, &req, &resp, err)))
			break;
		for (size_t i = 0; i < resp->n_kvs && !rc; i++) {
			const Mvccpb__KeyValue *a = resp->kvs[i];
			count++;
			if (!full)
				continue;
			engine_kv b;
			char esc[KEY_ESC];
			rc = next_source_kv(r, it, &b, err);
			if (rc == 0)
				rc = ms_err_set(err, MS_ECORRUPT,
				                "verify: the new store has key \"%s\", the source does not",
				                key_esc(a->key.data, a->key.len, esc));
			else if (rc == 1 && kv_differs(a, &b))
				rc = ms_err_set(err, MS_ECORRUPT, "verify: key \"%s\" differs from the source",
				                key_esc(b.key, b.key_len, esc));
			else if (rc == 1) {
				rc = 0;
				r->st->verified++;
				rocksdb_iter_next(it);
			}
		}
		bool more = resp->more && resp->n_kvs > 0;
		if (!rc && more) {
			const Mvccpb__KeyValue *last = resp->kvs[resp->n_kvs - 1];
			uint8_t *ns = ms_realloc(start, last->key.len + 1);
			if (!ns) {
				rc = ms_err_set(err, MS_ENOMEM, "out of memory");
			} else {
				start = ns;
				memcpy(start, last->key.data, last->key.len);
				start[last->key.len] = 0; /* the next key after last */
				start_len = last->key.len + 1;
			}
		}
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		if (rc || !more)
			break;
		if ((rc = stopped(r, err)))
			break;
	}
	if (!rc && full) {
		engine_kv b;
		rc = next_source_kv(r, it, &b, err);
		if (rc == 1) {
			char esc[KEY_ESC];
			rc = ms_err_set(err, MS_ECORRUPT, "verify: key \"%s\" is missing from the new store",
			                key_esc(b.key, b.key_len, esc));
		}
	}
	rocksdb_iter_destroy(it);
	ms_free(start);
	if (!rc && count != r->st->kvs)
		rc = ms_err_set(err, MS_ECORRUPT, "verify: the new store has %llu keys, the source %llu",
		                (unsigned long long)count, (unsigned long long)r->st->kvs);
	return rc;
}

static int check_result(run *r, const char *kv_dir, ms_err *err)
{
	engine *e = NULL;
	engine_opts eo = {0};
	ms_err e2 = {0};
	int rc = engine_open(kv_dir, &eo, &e, &e2);
	if (rc)
		return ms_err_set(err, rc, "verify: reopening the new store: %s", e2.msg);
	if (engine_current_rev(e) != r->st->revision || engine_compact_rev(e) != r->st->revision) {
		rc = ms_err_set(
		    err, MS_ECORRUPT, "verify: new store at revision %lld compacted %lld, want %lld for both",
		    (long long)engine_current_rev(e), (long long)engine_compact_rev(e), (long long)r->st->revision);
		goto out;
	}
	lease_check lc = {r, err, 0};
	if ((rc = engine_leases(e, check_lease_cb, &lc, err)))
		goto out;
	if (lc.seen != r->nleases) {
		rc = ms_err_set(err, MS_ECORRUPT, "verify: the new store has %zu leases, the source %zu", lc.seen,
		                r->nleases);
		goto out;
	}
	rc = check_kvs(r, e, r->o->verify, err);
out:
	engine_close(e);
	return rc;
}

/* ---- the run ---- */
static int make_tmp(run *r, ms_err *err)
{
	size_t n = strlen(r->o->data_dir);
	while (n > 1 && r->o->data_dir[n - 1] == '/')
		n--;
	r->final_dir = ms_strndup(r->o->data_dir, n);
	r->tmp_dir = ms_malloc(n + 16);
	if (!r->final_dir || !r->tmp_dir)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	snprintf(r->tmp_dir, n + 16, "%s.tmp-XXXXXX", r->final_dir);
	if (!mkdtemp(r->tmp_dir)) {
		int e = errno;
		ms_free(r->tmp_dir);
		r->tmp_dir = NULL;
		return ms_err_set(err, MS_EIO, "create a directory beside %s: %s", r->final_dir, strerror(e));
	}
	return 0;
}

static int migrate(run *r, ms_err *err)
{
	const migrate_opts *o = r->o;
	int rc;
	char *ms_dir = NULL, *kv_dir = NULL, *boot = NULL;
	ms_err e2 = {0};
	if (!o->from)
		return ms_err_set(err, MS_EINVAL, "--from is required");
	if (!o->dry_run || o->name || o->initial_cluster || o->initial_advertise_peer_urls)
		if ((rc = migrate_check_cluster(o, err)))
			return rc;
	if (!o->dry_run) {
		if (!o->data_dir || !*o->data_dir)
			return ms_err_set(err, MS_EINVAL, "--data-dir is required");
		if ((rc = check_target(o->data_dir, err)) || (rc = check_outside(o->from, o->data_dir, err)))
			return rc;
	}
	if ((rc = open_source(r, err)) || (rc = gob_dec_new(NULL, 0, &r->dec, err)) || (rc = read_meta(r, err)) ||
	    (rc = read_leases(r, err)))
		return rc;
	if (!o->dry_run) {
		if ((rc = make_tmp(r, err)))
			return rc;
		ms_dir = path_join(r->tmp_dir, "metastore");
		kv_dir = ms_dir ? path_join(ms_dir, "kv") : NULL;
		boot = ms_dir ? path_join(ms_dir, "migrated") : NULL;
		if (!kv_dir || !boot) {
			rc = ms_err_set(err, MS_ENOMEM, "out of memory");
			goto out;
		}
		if (mkdir(ms_dir, 0700)) {
			rc = ms_err_set(err, MS_EIO, "mkdir %s: %s", ms_dir, strerror(errno));
			goto out;
		}
		engine_opts eo = {.create_if_missing = true};
		if ((rc = engine_open(kv_dir, &eo, &r->eng, &e2))) {
			rc = ms_err_set(err, rc, "creating the new store: %s", e2.msg);
			goto out;
		}
		for (size_t i = 0; i < r->nleases; i++) {
			if ((rc = engine_import_lease(r->eng, r->leases[i].id, r->leases[i].ttl, &e2))) {
				rc = ms_err_set(err, rc, "lease %lld: %s", (long long)r->leases[i].id, e2.msg);
				goto out;
			}
		}
	}
	if ((rc = import_rows(r, err)))
		goto out;
	report_unattached(r);
	if (o->dry_run)
		goto out;
	if ((rc = engine_import_finish(r->eng, r->st->revision, r->st->revision, &e2))) {
		rc = ms_err_set(err, rc, "finishing the new store: %s", e2.msg);
		goto out;
	}
	engine_close(r->eng);
	r->eng = NULL;
	if ((rc = write_bootstrap(r, boot, err)) || (rc = check_result(r, kv_dir, err)))
		goto out;
	if (nftw(r->tmp_dir, fsync_tree_cb, 16, FTW_PHYS)) {
		rc = ms_err_set(err, MS_EIO, "fsync %s failed", r->tmp_dir);
		goto out;
	}
	/* rename(2) also replaces an empty directory; re-check it is still empty */
	if ((rc = check_target(r->final_dir, err)))
		goto out;
	if (rename(r->tmp_dir, r->final_dir)) {
		rc = ms_err_set(err, MS_EIO, "rename %s to %s: %s", r->tmp_dir, r->final_dir, strerror(errno));
		goto out;
	}
	ms_free(r->tmp_dir);
	r->tmp_dir = NULL;
	char *parent = ms_strdup(r->final_dir);
	if (parent) {
		char *slash = strrchr(parent, '/');
		if (!slash)
			strcpy(parent, ".");
		else if (slash == parent)
			slash[1] = 0;
		else
			*slash = 0;
		rc = fsync_path(parent, err);
		ms_free(parent);
	}
out:
	ms_free(ms_dir);
	ms_free(kv_dir);
	ms_free(boot);
	return rc;
}

int migrate_run(const migrate_opts *o, migrate_stats *st, ms_err *err)
{
	run r = {.o = o, .st = st, .log = o->log ? o->log : stderr};
	memset(st, 0, sizeof *st);
	r.t0 = r.last_draw = ms_now_mono_ns();
	int rc = migrate(&r, err);
	if (!rc)
		progress(&r, true);
	else if (o->progress)
		fputs("\r\033[K", r.log);
	engine_close(r.eng);
	if (r.tmp_dir) {
		remove_tree(r.tmp_dir); /* never leave a partial data directory */
		ms_free(r.tmp_dir);
	}
	ms_free(r.final_dir);
	if (r.ro)
		rocksdb_readoptions_destroy(r.ro);
	if (r.src)
		rocksdb_close(r.src);
	gob_dec_del(r.dec);
	ms_free(r.leases);
	pair_set_free(&r.listed);
	pair_set_free(&r.attached);
	st->seconds = (double)(ms_now_mono_ns() - r.t0) / 1e9;
	return rc;
}
