/* test_migrate.c — end to end: build a legacy Go MetaStore RocksDB from
 * tests/fixtures/gob/legacy.load, migrate it, and compare the new store with
 * expected.json; broken sources are refused with nothing left behind and the
 * source unchanged. With MIGRATE_BENCH_KEYS=N in the environment it instead
 * measures a migration of N generated keys and prints keys/s and MB/s. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

/* The migration tool's sources are not in libmetastore.a: build them in. */
#include "tools/migrate/gob.c"
#include "tools/migrate/legacy.c"
#include "tools/migrate/migrate.c"

#include "tests/unit/test_gob_util.h"

#define FIX "tests/fixtures/gob/"

/* ---- legacy rows ---- */
typedef struct row {
	uint8_t *k, *v;
	size_t kn, vn;
} row;

typedef struct rows {
	row *r;
	size_t n, cap;
} rows;

static void rows_add(rows *rs, const void *k, size_t kn, const void *v, size_t vn)
{
	if (rs->n == rs->cap)
		rs->r = realloc(rs->r, (rs->cap = rs->cap ? rs->cap * 2 : 512) * sizeof *rs->r);
	row *x = &rs->r[rs->n++];
	x->k = malloc(kn + 1);
	x->v = malloc(vn + 1);
	memcpy(x->k, k, kn);
	memcpy(x->v, v, vn);
	x->kn = kn;
	x->vn = vn;
}

static void rows_free(rows *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->r[i].k);
		free(rs->r[i].v);
	}
	free(rs->r);
	memset(rs, 0, sizeof *rs);
}

static row *rows_find(rows *rs, const char *k, size_t kn)
{
	for (size_t i = 0; i < rs->n; i++)
		if (rs->r[i].kn == kn && memcmp(rs->r[i].k, k, kn) == 0)
			return &rs->r[i];
	return NULL;
}

static void rows_set(rows *rs, const void *k, size_t kn, const void *v, size_t vn)
{
	row *x = rows_find(rs, k, kn);
	if (!x) {
		rows_add(rs, k, kn, v, vn);
		return;
	}
	free(x->v);
	x->v = malloc(vn + 1);
	memcpy(x->v, v, vn);
	x->vn = vn;
}

static size_t unhex(const char *s, size_t n, uint8_t *out)
{
	size_t o = 0;
	for (size_t i = 0; i + 1 < n; i += 2) {
		char t[3] = {s[i], s[i + 1], 0};
		out[o++] = (uint8_t)strtoul(t, NULL, 16);
	}
	return o;
}

/* Parses `ldb load --hex` input: one "0xKEY ==> 0xVALUE" a line. */
static void load_fixture(rows *rs)
{
	size_t n;
	char *text = (char *)tu_read_file(FIX "legacy.load", &n);
	assert_non_null(text);
	text = realloc(text, n + 1);
	text[n] = 0;
	for (char *line = text; *line;) {
		char *end = strchr(line, '\n');
		if (!end)
			end = line + strlen(line);
		char *sep = strstr(line, " ==> ");
		assert_true(sep && sep < end && line[0] == '0' && line[1] == 'x' && sep[5] == '0' && sep[6] == 'x');
		uint8_t *k = malloc((size_t)(sep - line)), *v = malloc((size_t)(end - sep));
		size_t kn = unhex(line + 2, (size_t)(sep - line - 2), k);
		size_t vn = unhex(sep + 7, (size_t)(end - sep - 7), v);
		rows_add(rs, k, kn, v, vn);
		free(k);
		free(v);
		line = *end ? end + 1 : end;
	}
	free(text);
}

/* Writes the rows into a new RocksDB at dir, as the Go MetaStore would have. */
static void write_legacy(const char *dir, const rows *rs)
{
	rocksdb_options_t *o = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(o, 1);
	char *err = NULL;
	rocksdb_t *db = rocksdb_open(o, dir, &err);
	if (err)
		fail_msg("rocksdb_open %s: %s", dir, err);
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	for (size_t i = 0; i < rs->n; i++) {
		rocksdb_writebatch_put(wb, (const char *)rs->r[i].k, rs->r[i].kn, (const char *)rs->r[i].v,
		                       rs->r[i].vn);
		if (rocksdb_writebatch_count(wb) >= 10000 || i + 1 == rs->n) {
			rocksdb_write(db, wo, wb, &err);
			assert_null(err);
			rocksdb_writebatch_clear(wb);
		}
	}
	rocksdb_writebatch_destroy(wb);
	rocksdb_writeoptions_destroy(wo);
	rocksdb_close(db);
	rocksdb_options_destroy(o);
}

/* ---- a scratch directory per test ---- */
typedef struct fx {
	char base[64];
	char legacy[96];
	char out[96];
	rows rs;
} fx;

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	return remove(p);
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof *f);
	snprintf(f->base, sizeof f->base, "/tmp/test_migrate-XXXXXX");
	if (!mkdtemp(f->base))
		return -1;
	snprintf(f->legacy, sizeof f->legacy, "%s/legacy", f->base);
	snprintf(f->out, sizeof f->out, "%s/new", f->base);
	load_fixture(&f->rs);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	nftw(f->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	rows_free(&f->rs);
	free(f);
	return 0;
}

static migrate_opts opts_for(const fx *f)
{
	static FILE *devnull;
	if (!devnull)
		devnull = fopen("/dev/null", "w");
	return (migrate_opts){
	    .from = f->legacy,
	    .data_dir = f->out,
	    .name = "m1",
	    .initial_cluster = "m1=http://127.0.0.1:12380",
	    .initial_advertise_peer_urls = "http://127.0.0.1:12380",
	    .log = devnull,
	};
}

/* FNV-1a over every file name and byte under dir, sorted by name. */
static uint64_t hash_tree(const char *dir)
{
	struct dirent **ents;
	int n = scandir(dir, &ents, NULL, alphasort);
	assert_true(n >= 0);
	uint64_t h = 1469598103934665603ull;
	for (int i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		if (strcmp(name, ".") && strcmp(name, "..")) {
			char p[512];
			snprintf(p, sizeof p, "%s/%s", dir, name);
			for (const char *c = name; *c; c++)
				h = (h ^ (uint8_t)*c) * 1099511628211ull;
			struct stat st;
			assert_int_equal(lstat(p, &st), 0);
			if (S_ISDIR(st.st_mode)) {
				h ^= hash_tree(p);
			} else {
				size_t len;
				uint8_t *b = tu_read_file(p, &len);
				assert_non_null(b);
				for (size_t j = 0; j < len; j++)
					h = (h ^ b[j]) * 1099511628211ull;
				h = (h ^ len) * 1099511628211ull;
				free(b);
			}
		}
		free(ents[i]);
	}
	free(ents);
	return h;
}

/* Nothing at out, and no NEW.tmp-* beside it. */
static void assert_nothing_left(const fx *f)
{
	struct stat st;
	assert_int_not_equal(stat(f->out, &st), 0);
	DIR *d = opendir(f->base);
	struct dirent *de;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, "new", 3) == 0)
			fail_msg("left behind: %s", de->d_name);
	closedir(d);
}

/* ---- comparing the new store with expected.json ---- */
typedef struct want_lease {
	int64_t id, ttl;
	size_t nkeys;
	tj *exp;
	size_t seen;
} want_lease;

static int lease_cb(void *arg, int64_t id, int64_t ttl, const uint8_t *const *keys, const size_t *lens, size_t n)
{
	tj *exp = arg;
	const tj *leases = tj_get(exp, "leases"), *kvs = tj_get(exp, "kvs");
	const tj *l = NULL;
	for (size_t i = 0; i < leases->n; i++)
		if (tj_int(tj_get(leases->items[i], "id")) == id)
			l = leases->items[i];
	assert_non_null(l);
	assert_int_equal(ttl, tj_int(tj_get(l, "ttl")));
	assert_int_equal(n, tj_get(l, "keys")->n);
	/* the attached keys are exactly the kvs that carry this lease (base64: exact bytes) */
	size_t want = 0;
	for (size_t i = 0; i < kvs->n; i++) {
		if (tj_int(tj_get(kvs->items[i], "lease")) != id)
			continue;
		want++;
		size_t kn;
		uint8_t *k = tu_b64_field(tj_get(kvs->items[i], "key"), &kn);
		bool found = false;
		for (size_t j = 0; j < n && !found; j++)
			found = lens[j] == kn && memcmp(keys[j], k, kn) == 0;
		assert_true(found);
		free(k);
	}
	assert_int_equal(want, n);
	return 0;
}

static void compare_with_expected(const char *out_dir)
{
	size_t n;
	char *text = (char *)tu_read_file(FIX "expected.json", &n);
	text = realloc(text, n + 1);
	text[n] = 0;
	tj *exp = tj_parse(text);
	free(text);
	char kv_dir[256];
	snprintf(kv_dir, sizeof kv_dir, "%s/metastore/kv", out_dir);
	engine *e;
	ms_err err = {0};
	engine_opts eo = {0};
	if (engine_open(kv_dir, &eo, &e, &err))
		fail_msg("engine_open: %s", err.msg);
	int64_t rev = tj_int(tj_get(exp, "revision"));
	assert_int_equal(engine_current_rev(e), rev);
	assert_int_equal(engine_compact_rev(e), rev); /* no history before the migration */
	const tj *kvs = tj_get(exp, "kvs");
	assert_int_equal(kvs->n, 400);
	for (size_t i = 0; i < kvs->n; i++) {
		const tj *x = kvs->items[i];
		size_t kn, vn;
		uint8_t *k = tu_b64_field(tj_get(x, "key"), &kn), *v = tu_b64_field(tj_get(x, "value"), &vn);
		Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
		Etcdserverpb__RangeResponse *resp;
		req.key.data = k;
		req.key.len = kn;
		if (engine_range(e, &req, &resp, &err))
			fail_msg("range: %s", err.msg);
		assert_int_equal(resp->n_kvs, 1);
		const Mvccpb__KeyValue *a = resp->kvs[0];
		assert_int_equal(a->value.len, vn);
		if (vn)
			assert_memory_equal(a->value.data, v, vn);
		assert_int_equal(a->create_revision, tj_int(tj_get(x, "create_revision")));
		assert_int_equal(a->mod_revision, tj_int(tj_get(x, "mod_revision")));
		assert_int_equal(a->version, tj_int(tj_get(x, "version")));
		assert_int_equal(a->lease, tj_int(tj_get(x, "lease")));
		protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
		free(k);
		free(v);
	}
	/* nothing more than those keys */
	Etcdserverpb__RangeRequest all = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__RangeResponse *resp;
	all.key.data = (uint8_t *)"\0";
	all.key.len = 1;
	all.range_end = all.key;
	all.count_only = true;
	assert_int_equal(engine_range(e, &all, &resp, &err), 0);
	assert_int_equal(resp->count, 400);
	protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
	for (size_t i = 0; i < tj_get(exp, "leases")->n; i++)
		assert_true(engine_lease_exists(e, tj_int(tj_get(tj_get(exp, "leases")->items[i], "id"))));
	assert_int_equal(engine_leases(e, lease_cb, exp, &err), 0);
	engine_close(e);
	tj_free(exp);
}

/* ---- tests ---- */
static void test_migrates_fixture(void **state)
{
	fx *f = *state;
	write_legacy(f->legacy, &f->rs);
	uint64_t before = hash_tree(f->legacy);
	migrate_opts o = opts_for(f);
	o.verify = true;
	migrate_stats st;
	ms_err err = {0};
	if (migrate_run(&o, &st, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(st.kvs, 400);
	assert_int_equal(st.kvs_gob, 400);
	assert_int_equal(st.leases, 9);
	assert_int_equal(st.revision, 1207);
	assert_int_equal(st.legacy_compacted, 402);
	assert_int_equal(st.disagreements, 0);
	assert_int_equal(st.verified, 400);
	assert_int_equal(hash_tree(f->legacy), before); /* the source is byte-identical */
	compare_with_expected(f->out);
	char p[256];
	snprintf(p, sizeof p, "%s/metastore/migrated", f->out);
	size_t n;
	char *boot = (char *)tu_read_file(p, &n);
	assert_non_null(boot);
	boot = realloc(boot, n + 1);
	boot[n] = 0;
	assert_string_equal(boot, "name=m1\ninitial-cluster=m1=http://127.0.0.1:12380\n"
	                          "initial-advertise-peer-urls=http://127.0.0.1:12380\n"
	                          "initial-cluster-token=etcd-cluster\n");
	free(boot);
	/* nothing else beside the result */
	DIR *d = opendir(f->base);
	struct dirent *de;
	int entries = 0;
	while ((de = readdir(d)))
		entries += de->d_name[0] != '.';
	closedir(d);
	assert_int_equal(entries, 2); /* legacy, new */
}

/* Some values in the later binary form, one with its lease dropped (the
 * lease's Keys still lists it: a disagreement, reported, the key's own
 * field wins). */
static void test_mixed_binary_and_gob(void **state)
{
	fx *f = *state;
	gob_dec *d;
	assert_int_equal(gob_dec_new(NULL, 0, &d, NULL), 0);
	size_t nbin = 0;
	const row *dropped = NULL;
	for (size_t i = 0; i < f->rs.n; i++) {
		row *x = &f->rs.r[i];
		if (x->kn < 3 || memcmp(x->k, "kv:", 3) || i % 3)
			continue;
		legacy_kv g;
		assert_int_equal(legacy_kv_from_gob(d, x->v, x->vn, &g, NULL, NULL), 0);
		engine_kv kv = {g.key, g.key_len, g.value, g.value_len, g.create_rev, g.mod_rev, g.version, g.lease};
		if (!dropped && g.lease) {
			kv.lease = 0;
			dropped = x;
		}
		size_t n = engine_kv_encode(&kv, NULL, 0);
		uint8_t *b = malloc(n);
		engine_kv_encode(&kv, b, n);
		free(x->v);
		x->v = b;
		x->vn = n;
		nbin++;
	}
	gob_dec_del(d);
	assert_non_null(dropped);
	write_legacy(f->legacy, &f->rs);
	migrate_opts o = opts_for(f);
	o.verify = true;
	migrate_stats st;
	ms_err err = {0};
	if (migrate_run(&o, &st, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(st.kvs, 400);
	assert_int_equal(st.kvs_binary, nbin);
	assert_int_equal(st.kvs_gob, 400 - nbin);
	assert_int_equal(st.disagreements, 1);
	assert_int_equal(st.verified, 400);
	/* the key kept lease 0 */
	char kv_dir[256];
	snprintf(kv_dir, sizeof kv_dir, "%s/metastore/kv", f->out);
	engine *e;
	engine_opts eo = {0};
	assert_int_equal(engine_open(kv_dir, &eo, &e, NULL), 0);
	Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
	Etcdserverpb__RangeResponse *resp;
	req.key.data = dropped->k + 3;
	req.key.len = dropped->kn - 3;
	assert_int_equal(engine_range(e, &req, &resp, NULL), 0);
	assert_int_equal(resp->n_kvs, 1);
	assert_int_equal(resp->kvs[0]->lease, 0);
	protobuf_c_message_free_unpacked(&resp->base, &ms_pb_allocator);
	engine_close(e);
}

static void test_dry_run_writes_nothing(void **state)
{
	fx *f = *state;
	write_legacy(f->legacy, &f->rs);
	uint64_t before = hash_tree(f->legacy);
	migrate_opts o = opts_for(f);
	o.dry_run = true;
	o.data_dir = NULL;
	o.name = o.initial_cluster = o.initial_advertise_peer_urls = NULL;
	migrate_stats st;
	ms_err err = {0};
	if (migrate_run(&o, &st, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(st.kvs, 400);
	assert_int_equal(st.leases, 9);
	assert_int_equal(hash_tree(f->legacy), before);
	assert_nothing_left(f);
}

static void test_existing_data_dir(void **state)
{
	fx *f = *state;
	write_legacy(f->legacy, &f->rs);
	migrate_opts o = opts_for(f);
	migrate_stats st;
	ms_err err = {0};
	assert_int_equal(mkdir(f->out, 0700), 0);
	char p[256];
	snprintf(p, sizeof p, "%s/keep", f->out);
	FILE *k = fopen(p, "w");
	fputs("mine", k);
	fclose(k);
	assert_int_equal(migrate_run(&o, &st, &err), MS_EEXIST);
	assert_non_null(strstr(err.msg, "not empty"));
	size_t n;
	char *b = (char *)tu_read_file(p, &n);
	assert_int_equal(n, 4); /* untouched */
	free(b);
	/* a data dir inside the source is refused: the source stays untouched */
	uint64_t before = hash_tree(f->legacy);
	o.data_dir = p; /* f->legacy/inner */
	snprintf(p, sizeof p, "%s/inner", f->legacy);
	assert_int_equal(migrate_run(&o, &st, &err), MS_EINVAL);
	assert_non_null(strstr(err.msg, "inside the source"));
	assert_int_equal(hash_tree(f->legacy), before);
	o.data_dir = f->out;
	snprintf(p, sizeof p, "%s/keep", f->out);
	/* an empty directory is fine: it is replaced */
	remove(p);
	if (migrate_run(&o, &st, &err))
		fail_msg("%s", err.msg);
	compare_with_expected(f->out);
}

/* A broken source: the run fails naming the key, and leaves nothing. */
static void expect_refused(fx *f, const char *needle1, const char *needle2)
{
	nftw(f->legacy, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	write_legacy(f->legacy, &f->rs);
	uint64_t before = hash_tree(f->legacy);
	migrate_opts o = opts_for(f);
	migrate_stats st;
	ms_err err = {0};
	int rc = migrate_run(&o, &st, &err);
	if (rc == 0)
		fail_msg("broken source migrated (want \"%s\")", needle1);
	if (!strstr(err.msg, needle1) || (needle2 && !strstr(err.msg, needle2)))
		fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err.msg, needle1, needle2 ? needle2 : "");
	assert_nothing_left(f);
	assert_int_equal(hash_tree(f->legacy), before);
	/* a dry run refuses it too */
	o.dry_run = true;
	assert_int_not_equal(migrate_run(&o, &st, &err), 0);
	assert_nothing_left(f);
}

#define KEYNAME "kv:bad\x00\xff key"
#define KEYESC "kv:bad\\x00\\xff key"

static void put_kv_blob(fx *f, const char *blob, size_t cut)
{
	size_t n;
	char p[128];
	snprintf(p, sizeof p, FIX "%s", blob);
	uint8_t *b = tu_read_file(p, &n);
	assert_non_null(b);
	rows_set(&f->rs, KEYNAME, sizeof KEYNAME - 1, b, cut ? cut : n);
	free(b);
}

static void test_refuses_truncated_gob(void **state)
{
	fx *f = *state;
	put_kv_blob(f, "blobs/kv_max.gob", 200);
	expect_refused(f, "key \"" KEYESC "\"", "gob: offset 98: message length 344");
}

static void test_refuses_unknown_type_id(void **state)
{
	fx *f = *state;
	size_t n;
	uint8_t *b = tu_read_file(FIX "blobs/kv_only_key.gob", &n);
	assert_int_equal(b[0x63], 0xff);
	b[0x64] = 0x84; /* value of type 66 */
	rows_set(&f->rs, KEYNAME, sizeof KEYNAME - 1, b, n);
	free(b);
	expect_refused(f, "key \"" KEYESC "\"", "undefined type id 66");
}

static void test_refuses_huge_length(void **state)
{
	fx *f = *state;
	size_t n;
	uint8_t *b = tu_read_file(FIX "blobs/kv_only_key.gob", &n);
	/* value message: 06 ff 82 01 01 61 00 -> the key length becomes FC FF FF FF FF */
	uint8_t v[0x62 + 12];
	memcpy(v, b, 0x62);
	static const uint8_t msg[] = {0x0a, 0xff, 0x82, 0x01, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x61, 0x00};
	memcpy(v + 0x62, msg, sizeof msg);
	rows_set(&f->rs, KEYNAME, sizeof KEYNAME - 1, v, 0x62 + sizeof msg);
	free(b);
	expect_refused(f, "key \"" KEYESC "\"", "exceeds");
}

static void test_refuses_wrong_field_type(void **state)
{
	fx *f = *state;
	put_kv_blob(f, "types/kv_uint.gob", 0);
	expect_refused(f, "key \"" KEYESC "\"", "CreateRevision is a uint");
}

static void test_refuses_unknown_field_with_value(void **state)
{
	fx *f = *state;
	put_kv_blob(f, "types/kv_extra.gob", 0);
	expect_refused(f, "key \"" KEYESC "\"", "Owner");
}

static void test_refuses_bad_binary_length(void **state)
{
	fx *f = *state;
	engine_kv kv = {(const uint8_t *)"bad\0\xff key", 9, (const uint8_t *)"v", 1, 2, 2, 1, 0};
	uint8_t b[64];
	size_t n = engine_kv_encode(&kv, b, sizeof b);
	b[4 + 9] = 2; /* value length 2, one byte present */
	rows_set(&f->rs, KEYNAME, sizeof KEYNAME - 1, b, n);
	expect_refused(f, "key \"" KEYESC "\"", "value length 2 at offset 13");
	/* a binary value cut short */
	b[4 + 9] = 1;
	rows_set(&f->rs, KEYNAME, sizeof KEYNAME - 1, b, n - 1);
	expect_refused(f, "key \"" KEYESC "\"", "binary KeyValue");
}

static void test_refuses_inconsistent_records(void **state)
{
	fx *f = *state;
	/* Key field differs from the row key */
	engine_kv kv = {(const uint8_t *)"other", 5, (const uint8_t *)"v", 1, 2, 2, 1, 0};
	uint8_t b[64];
	size_t n = engine_kv_encode(&kv, b, sizeof b);
	rows_set(&f->rs, "kv:mine", 7, b, n);
	expect_refused(f, "key \"kv:mine\"", "differs from the row key");
	/* mod revision past meta:revision */
	kv = (engine_kv){(const uint8_t *)"mine", 4, (const uint8_t *)"v", 1, 2, 5000, 1, 0};
	n = engine_kv_encode(&kv, b, sizeof b);
	rows_set(&f->rs, "kv:mine", 7, b, n);
	expect_refused(f, "key \"kv:mine\"", "past meta:revision");
	/* a lease that does not exist */
	kv = (engine_kv){(const uint8_t *)"mine", 4, (const uint8_t *)"v", 1, 2, 3, 1, 12345};
	n = engine_kv_encode(&kv, b, sizeof b);
	rows_set(&f->rs, "kv:mine", 7, b, n);
	expect_refused(f, "key \"kv:mine\"", "lease 12345 does not exist");
}

static void test_refuses_bad_meta_and_leases(void **state)
{
	fx *f = *state;
	rows saved = {0};
	for (size_t i = 0; i < f->rs.n; i++)
		rows_add(&saved, f->rs.r[i].k, f->rs.r[i].kn, f->rs.r[i].v, f->rs.r[i].vn);
	/* an unknown kind of row */
	rows_set(&f->rs, "other:x", 7, "1", 1);
	expect_refused(f, "key \"other:x\"", "unknown kind of row");
	/* the revision is not a gob int */
	rows_free(&f->rs);
	for (size_t i = 0; i < saved.n; i++)
		rows_add(&f->rs, saved.r[i].k, saved.r[i].kn, saved.r[i].v, saved.r[i].vn);
	size_t n;
	uint8_t *b = tu_read_file(FIX "blobs/kv_only_key.gob", &n);
	rows_set(&f->rs, "meta:revision", 13, b, n);
	free(b);
	expect_refused(f, "meta:revision", "want an int");
	/* a compacted revision of the wrong size */
	rows_set(&f->rs, "meta:revision", 13, "\x05\x04\x00\xfe\x09\x6e", 6);
	rows_set(&f->rs, "meta:compacted_revision", 23, "\x01\x92", 2);
	expect_refused(f, "meta:compacted_revision", "want 8");
	rows_set(&f->rs, "meta:compacted_revision", 23, "\0\0\0\0\0\0\x01\x92", 8);
	/* a lease stored under another id's key */
	b = tu_read_file(FIX "blobs/lease_many_keys.gob", &n); /* ID 3 */
	rows_set(&f->rs, "lease:4", 7, b, n);
	expect_refused(f, "key \"lease:4\"", "lease ID 3");
	rows_set(&f->rs, "lease:03", 8, b, n);
	expect_refused(f, "key \"lease:03\"", "not lease:<decimal id>");
	free(b);
	rows_free(&saved);
}

static void test_refuses_missing_revision_and_source(void **state)
{
	fx *f = *state;
	migrate_opts o = opts_for(f);
	migrate_stats st;
	ms_err err = {0};
	assert_int_equal(migrate_run(&o, &st, &err), MS_ENOTFOUND); /* no source at all */
	assert_non_null(strstr(err.msg, "not a RocksDB directory"));
	assert_nothing_left(f);
	row *r = rows_find(&f->rs, "meta:revision", 13);
	assert_non_null(r);
	r->k[0] = 'x'; /* "xeta:revision": the revision is missing, and an unknown row */
	write_legacy(f->legacy, &f->rs);
	assert_int_equal(migrate_run(&o, &st, &err), MS_ECORRUPT);
	assert_non_null(strstr(err.msg, "meta:revision\" is missing"));
	assert_nothing_left(f);
}

static void test_cluster_flags(void **state)
{
	migrate_opts o = {.name = "a",
	                  .initial_cluster = "a=http://h:1,a=https://h:2",
	                  .initial_advertise_peer_urls = "https://h:2,http://h:1"};
	ms_err err = {0};
	assert_int_equal(migrate_check_cluster(&o, &err), 0);
	o.initial_advertise_peer_urls = "http://h:1";
	assert_int_equal(migrate_check_cluster(&o, &err), MS_EINVAL); /* https://h:2 not advertised */
	o.initial_cluster = "a=http://h:1,b=http://h:3";
	assert_int_equal(migrate_check_cluster(&o, &err), MS_EINVAL);
	assert_non_null(strstr(err.msg, "one-member"));
	o.initial_cluster = "b=http://h:1";
	assert_int_equal(migrate_check_cluster(&o, &err), MS_EINVAL);
	o.initial_cluster = "a=http://h:9";
	assert_int_equal(migrate_check_cluster(&o, &err), MS_EINVAL);
	assert_non_null(strstr(err.msg, "not in --initial-advertise-peer-urls"));
	o.initial_cluster = "a=h:1";
	assert_int_equal(migrate_check_cluster(&o, &err), MS_EINVAL);
	o.initial_cluster = "a";
	assert_int_equal(migrate_check_cluster(&o, &err), MS_EINVAL);
	o.initial_cluster = "a=http://h:1";
	o.name = "";
	assert_int_equal(migrate_check_cluster(&o, &err), MS_EINVAL);
	o.name = "a";
	o.initial_cluster_token = "t\nname=evil";
	assert_int_equal(migrate_check_cluster(&o, &err), MS_EINVAL);
	o.initial_cluster_token = "tok";
	assert_int_equal(migrate_check_cluster(&o, &err), 0);
}

/* ---- benchmark mode (not part of `make test`) ---- */
static void put_uint(uint8_t *b, size_t *n, uint64_t u)
{
	if (u < 128) {
		b[(*n)++] = (uint8_t)u;
		return;
	}
	int bytes = 0;
	for (uint64_t x = u; x; x >>= 8)
		bytes++;
	b[(*n)++] = (uint8_t)-bytes;
	for (int i = bytes - 1; i >= 0; i--)
		b[(*n)++] = (uint8_t)(u >> (8 * i));
}
static void put_int(uint8_t *b, size_t *n, int64_t i)
{
	put_uint(b, n, i < 0 ? (~(uint64_t)i << 1) | 1 : (uint64_t)i << 1);
}

/* A gob KeyValue stream as Go writes it: the fixture's type definition, then the value. */
static size_t gob_kv(const uint8_t *typedef_msg, const engine_kv *kv, uint8_t *out)
{
	uint8_t body[8192];
	size_t n = 0;
	body[n++] = 0xff;
	body[n++] = 0x82;
	int64_t ints[4] = {kv->create_rev, kv->mod_rev, kv->version, kv->lease};
	int last = -1;
	body[n++] = (uint8_t)(0 - last);
	last = 0;
	put_uint(body, &n, kv->key_len);
	memcpy(body + n, kv->key, kv->key_len);
	n += kv->key_len;
	body[n++] = 1;
	last = 1;
	put_uint(body, &n, kv->value_len);
	memcpy(body + n, kv->value, kv->value_len);
	n += kv->value_len;
	for (int i = 0; i < 4; i++) {
		if (!ints[i])
			continue;
		put_uint(body, &n, (uint64_t)(2 + i - last));
		last = 2 + i;
		put_int(body, &n, ints[i]);
	}
	body[n++] = 0;
	memcpy(out, typedef_msg, 0x62);
	size_t o = 0x62;
	put_uint(out, &o, n);
	memcpy(out + o, body, n);
	return o + n;
}

static int bench(long nkeys)
{
	fx *f;
	void *st = NULL;
	if (setup(&st))
		return 1;
	f = st;
	rows_free(&f->rs);
	size_t tn;
	uint8_t *td = tu_read_file(FIX "blobs/kv_all_zero.gob", &tn);
	uint8_t value[256], buf[8192];
	memset(value, 'v', sizeof value);
	/* 1000 leases, every 10th key leased; half the values in the binary form */
	for (long l = 1; l <= 1000; l++) {
		char k[32];
		int kn = snprintf(k, sizeof k, "lease:%ld", l);
		/* Lease{ID l, TTL 60}: the lease_empty_keys type definitions with our fields */
		size_t ln;
		uint8_t *src = tu_read_file(FIX "blobs/lease_empty_keys.gob", &ln), lb[256];
		size_t defs = 0x6d; /* where its value message starts */
		assert_int_equal(src[defs + 1], 0xff);
		memcpy(lb, src, defs);
		free(src);
		size_t o = defs;
		uint8_t body[64];
		size_t bn = 0;
		body[bn++] = 0xff;
		body[bn++] = 0x84;
		body[bn++] = 1;
		put_int(body, &bn, l);
		body[bn++] = 1;
		put_int(body, &bn, 60);
		body[bn++] = 0;
		put_uint(lb, &o, bn);
		memcpy(lb + o, body, bn);
		rows_add(&f->rs, k, (size_t)kn, lb, o + bn);
	}
	for (long i = 0; i < nkeys; i++) {
		char k[48];
		int kn = snprintf(k, sizeof k, "kv:/registry/pods/ns-%ld/pod-%08ld", i % 97, i);
		engine_kv kv = {(const uint8_t *)k + 3,
		                (size_t)kn - 3,
		                value,
		                64 + (size_t)(i % 192),
		                i + 2,
		                i + 2,
		                1,
		                i % 10 == 0 ? 1 + (i / 10) % 1000 : 0};
		size_t n = i % 2 ? engine_kv_encode(&kv, buf, sizeof buf) : gob_kv(td, &kv, buf);
		rows_add(&f->rs, k, (size_t)kn, buf, n);
	}
	uint8_t rv[16];
	size_t rn = 0;
	rv[rn++] = 0;
	rv[rn++] = 4; /* type int */
	rv[rn++] = 0;
	put_int(rv, &rn, nkeys + 1);
	rv[0] = (uint8_t)(rn - 1);
	rows_add(&f->rs, "meta:revision", 13, rv, rn);
	write_legacy(f->legacy, &f->rs);
	for (int mode = 0; mode <= 2; mode++) { /* dry run, default check, --verify */
		migrate_opts o = opts_for(f);
		o.dry_run = mode == 0;
		o.verify = mode == 2;
		migrate_stats ms;
		ms_err err = {0};
		if (migrate_run(&o, &ms, &err)) {
			fprintf(stderr, "bench: %s\n", err.msg);
			return 1;
		}
		printf("migrate %s: %llu keys (%llu gob, %llu binary), %llu leases, %.1f MB in %.2f s: %.0f keys/s, "
		       "%.1f MB/s\n",
		       mode == 0   ? "--dry-run"
		       : mode == 2 ? "--verify"
		                   : "(default check)",
		       (unsigned long long)ms.kvs, (unsigned long long)ms.kvs_gob, (unsigned long long)ms.kvs_binary,
		       (unsigned long long)ms.leases, (double)ms.bytes / 1e6, ms.seconds, (double)ms.kvs / ms.seconds,
		       (double)ms.bytes / 1e6 / ms.seconds);
		nftw(f->out, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	}
	free(td);
	teardown(&st);
	return 0;
}

int main(void)
{
	const char *b = getenv("MIGRATE_BENCH_KEYS");
	if (b)
		return bench(atol(b));
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_migrates_fixture, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mixed_binary_and_gob, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dry_run_writes_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_existing_data_dir, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_truncated_gob, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_unknown_type_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_huge_length, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_wrong_field_type, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_unknown_field_with_value, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_bad_binary_length, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_inconsistent_records, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_bad_meta_and_leases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_missing_revision_and_source, setup, teardown),
	    cmocka_unit_test(test_cluster_flags),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
