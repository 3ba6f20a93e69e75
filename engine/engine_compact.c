/* engine_compact.c — the background removal of superseded revisions below
 * the compaction revision, in chunks, so a large compaction never holds up
 * the apply thread or readers.
 *
 * For each user key the newest version <= C is kept unless it is a
 * tombstone; every older version goes, in the same WriteBatch as the rest
 * of that key's rows (chunks end on key boundaries), and history rows with
 * main < C are dropped with one DeleteRange. Readers are safe: a read at
 * R >= C never needs a removed row, and readers check the compaction
 * revision after taking their snapshot. */
#include "engine/engine_int.h"

#include <string.h>

#define CHUNK_ROWS 1000

static int compact_run(engine *e, int64_t c)
{
	int rc = 0;
	char *rerr = NULL;
	rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
	uint8_t *resume = NULL, *prev = NULL;
	size_t resume_len = 0, prev_len = 0, prev_cap = 0;
	for (;;) {
		bool stop;
		pthread_mutex_lock(&e->cmu);
		stop = e->stopping;
		pthread_mutex_unlock(&e->cmu);
		if (stop) {
			rc = MS_ESTOPPED;
			break;
		}
		rocksdb_iterator_t *it = rocksdb_create_iterator_cf(e->db, e->ro, e->cf_kv);
		if (resume)
			rocksdb_iter_seek(it, (const char *)resume, resume_len);
		else
			rocksdb_iter_seek_to_first(it);
		size_t rows = 0;
		bool kept = false, at_end = true;
		prev_len = 0;
		for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
			size_t rlen, vlen;
			const uint8_t *rk = (const uint8_t *)rocksdb_iter_key(it, &rlen);
			if (rlen < ENG_REVLEN + 2)
				continue;
			size_t plen = rlen - ENG_REVLEN;
			if (plen != prev_len || memcmp(rk, prev, plen)) {
				if (rows >= CHUNK_ROWS) {
					/* chunk boundary on a new key */
					ms_free(resume);
					resume = ms_memdup(rk, plen);
					resume_len = plen;
					at_end = false;
					break;
				}
				if (prev_cap < plen) {
					ms_free(prev);
					prev = ms_malloc(plen);
					prev_cap = plen;
				}
				if (!prev) {
					rc = MS_ENOMEM;
					prev_cap = 0;
					break;
				}
				memcpy(prev, rk, plen);
				prev_len = plen;
				kept = false;
			}
			rows++;
			int64_t main;
			eng_rev_get(rk + plen, &main, NULL);
			if (main > c)
				continue;
			const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
			if (!kept) {
				kept = true;
				if (!eng_is_tombstone(v, vlen))
					continue;
			}
			rocksdb_writebatch_delete_cf(wb, e->cf_kv, (const char *)rk, rlen);
		}
		rocksdb_iter_destroy(it);
		if (rc)
			break;
		if (rocksdb_writebatch_count(wb)) {
			rocksdb_write(e->db, e->wo, wb, &rerr);
			rocksdb_writebatch_clear(wb);
			if (rerr) {
				MS_ERROR("mvcc", "compaction write failed: %s", rerr);
				rocksdb_free(rerr);
				rc = MS_EIO;
				break;
			}
		}
		if (at_end)
			break;
		if (!resume) {
			rc = MS_ENOMEM;
			break;
		}
	}
	if (!rc) {
		uint8_t lo[ENG_REVLEN] = {0}, hi[ENG_REVLEN] = {0};
		ms_put_u64be(hi, (uint64_t)c);
		rocksdb_writebatch_delete_range_cf(wb, e->cf_rev, (const char *)lo, sizeof lo, (const char *)hi,
		                                   sizeof hi);
		uint8_t b[8];
		ms_put_u64le(b, (uint64_t)c);
		rocksdb_writebatch_put_cf(wb, e->cf_meta, "compact_done", 12, (const char *)b, 8);
		rocksdb_write(e->db, e->wo, wb, &rerr);
		if (rerr) {
			MS_ERROR("mvcc", "compaction write failed: %s", rerr);
			rocksdb_free(rerr);
			rc = MS_EIO;
		}
	}
	rocksdb_writebatch_destroy(wb);
	ms_free(resume);
	ms_free(prev);
	return rc;
}

static void *compact_main(void *arg)
{
	engine *e = arg;
	pthread_mutex_lock(&e->cmu);
	for (;;) {
		while (!e->stopping && e->compact_target <= e->compact_done)
			pthread_cond_wait(&e->ccond, &e->cmu);
		if (e->stopping)
			break;
		int64_t c = e->compact_target;
		pthread_mutex_unlock(&e->cmu);
		int64_t t0 = ms_now_mono_ns();
		int rc = compact_run(e, c);
		pthread_mutex_lock(&e->cmu);
		if (rc == 0) {
			e->compact_done = c;
			MS_INFO("mvcc", "finished scheduled compaction at %lld (took %.3fms)", (long long)c,
			        (double)(ms_now_mono_ns() - t0) / 1e6);
		} else if (rc != MS_ESTOPPED) {
			/* do not spin on a failing disk; a restart resumes from compact_done */
			e->compact_done = c;
			MS_ERROR("mvcc", "compaction at %lld failed (%d)", (long long)c, rc);
		}
		pthread_cond_broadcast(&e->cdone);
	}
	pthread_cond_broadcast(&e->cdone);
	pthread_mutex_unlock(&e->cmu);
	return NULL;
}

int eng_compact_start(engine *e, ms_err *err)
{
	if (pthread_create(&e->compact_thread, NULL, compact_main, e))
		return ms_err_set(err, MS_EIO, "engine: cannot start the compaction thread");
	e->compact_thread_started = true;
	return 0;
}

void eng_compact_stop(engine *e)
{
	if (!e->compact_thread_started)
		return;
	pthread_mutex_lock(&e->cmu);
	e->stopping = true;
	pthread_cond_broadcast(&e->ccond);
	pthread_mutex_unlock(&e->cmu);
	pthread_join(e->compact_thread, NULL);
	e->compact_thread_started = false;
}

void eng_compact_schedule(engine *e, int64_t rev)
{
	pthread_mutex_lock(&e->cmu);
	if (rev > e->compact_target)
		e->compact_target = rev;
	pthread_cond_broadcast(&e->ccond);
	pthread_mutex_unlock(&e->cmu);
}

int engine_compact_wait(engine *e, int64_t rev)
{
	int rc = 0;
	pthread_mutex_lock(&e->cmu);
	if (rev > e->compact_target) {
		pthread_mutex_unlock(&e->cmu);
		return MS_EINVAL; /* never scheduled: waiting would never end */
	}
	while (e->compact_done < rev && !e->stopping)
		pthread_cond_wait(&e->cdone, &e->cmu);
	if (e->compact_done < rev)
		rc = MS_ESTOPPED;
	pthread_mutex_unlock(&e->cmu);
	return rc;
}
