/* corrupt_kv.c — test tool: damages one member's store on purpose, so the
 * corruption check has something to find (tests/integration/test_corrupt.sh).
 *
 *   corrupt_kv <data-dir>/metastore/kv <key>
 *
 * Rewrites the newest version of <key> in the kv column family with the
 * first byte of its value changed, the way a flipped bit on disk would: the
 * row stays well-formed, only the data differs from the other members'. The
 * member must be stopped. Built for tests only (build-tests), never part of
 * the server: the server has no way to write a row outside the log. */
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

static const char *const cf_names[] = {"default", "kv", "rev", "lease", "meta"};
#define NCF (sizeof cf_names / sizeof cf_names[0])

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s <data-dir>/metastore/kv <key>\n", argv[0]);
		return 2;
	}
	const char *key = argv[2];
	size_t klen = strlen(key);
	rocksdb_options_t *opts = rocksdb_options_create();
	const rocksdb_options_t *cfo[NCF];
	rocksdb_column_family_handle_t *h[NCF];
	for (size_t i = 0; i < NCF; i++)
		cfo[i] = opts;
	char *err = NULL;
	rocksdb_t *db = rocksdb_open_column_families(opts, argv[1], (int)NCF, cf_names, cfo, h, &err);
	if (err) {
		fprintf(stderr, "corrupt_kv: cannot open %s: %s\n", argv[1], err);
		return 1;
	}
	/* rows are ordered by key then revision: the last row whose value
	 * decodes to <key> is its newest version */
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, ro, h[1]);
	char *row = NULL, *val = NULL;
	size_t row_len = 0, val_len = 0;
	for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t rl, vl;
		const char *rk = rocksdb_iter_key(it, &rl);
		const char *v = rocksdb_iter_value(it, &vl);
		engine_kv kv;
		if (engine_kv_decode((const uint8_t *)v, vl, &kv) || kv.key_len != klen || memcmp(kv.key, key, klen))
			continue;
		free(row);
		free(val);
		row = malloc(rl);
		val = malloc(vl);
		if (!row || !val)
			return 1;
		memcpy(row, rk, rl);
		memcpy(val, v, vl);
		row_len = rl;
		val_len = vl;
	}
	rocksdb_iter_destroy(it);
	int rc = 1;
	engine_kv kv;
	if (!row || engine_kv_decode((const uint8_t *)val, val_len, &kv) || kv.value_len == 0) {
		fprintf(stderr, "corrupt_kv: no version of %s with a value in %s\n", key, argv[1]);
		goto out;
	}
	/* kv.value aliases val: change it in place, re-encode to be sure the
	 * row is still well-formed */
	((uint8_t *)kv.value)[0]++;
	size_t need = engine_kv_encode(&kv, NULL, 0);
	uint8_t *out = malloc(need);
	if (!out)
		goto out;
	engine_kv_encode(&kv, out, need);
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(wo, 1);
	rocksdb_put_cf(db, wo, h[1], row, row_len, (const char *)out, need, &err);
	rocksdb_writeoptions_destroy(wo);
	free(out);
	if (err) {
		fprintf(stderr, "corrupt_kv: write failed: %s\n", err);
		goto out;
	}
	printf("corrupt_kv: %s now holds %.*s (mod revision %lld)\n", key, (int)kv.value_len, (const char *)kv.value,
	       (long long)kv.mod_rev);
	rc = 0;
out:
	free(row);
	free(val);
	rocksdb_readoptions_destroy(ro);
	for (size_t i = 0; i < NCF; i++)
		rocksdb_column_family_handle_destroy(h[i]);
	rocksdb_close(db);
	rocksdb_options_destroy(opts);
	return rc;
}
