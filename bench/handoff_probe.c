/* handoff_probe.c — what one thread hand-off costs on this machine: two
 * threads bounce a token through a pair of ms_queues (the same eventfd
 * wake-ups the write path uses: loop -> log writer -> loop -> apply ->
 * loop), and the round trip's percentiles are printed, halved to one
 * hand-off. A put on one member crosses four such hand-offs plus one
 * fsync (see bench/fsync_probe).
 *
 * Usage: handoff_probe [--count N] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ms.h"

static ms_queue *ping, *pong;
static long count = 20000;

static void *echo_main(void *arg)
{
	for (long i = 0; i < count; i++) {
		void *p;
		while (!(p = ms_queue_pop(ping)))
			ms_queue_wait(ping);
		ms_queue_push(pong, p);
	}
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--count") && i + 1 < argc) {
			count = atol(argv[++i]);
		} else {
			fprintf(stderr, "usage: handoff_probe [--count N]\n");
			return 2;
		}
	}
	if (count < 1 || ms_queue_new(16, &ping) || ms_queue_new(16, &pong))
		return 1;
	int64_t *rt = malloc((size_t)count * sizeof *rt);
	pthread_t th;
	if (!rt || pthread_create(&th, NULL, echo_main, NULL) != 0)
		return 1;
	for (long i = 0; i < count; i++) {
		int64_t t0 = ms_now_mono_ns();
		ms_queue_push(ping, (void *)1);
		while (!ms_queue_pop(pong))
			ms_queue_wait(pong);
		rt[i] = ms_now_mono_ns() - t0;
	}
	pthread_join(th, NULL);
	qsort(rt, (size_t)count, sizeof *rt, cmp_i64);
	printf("hand-off probe: %ld round trips through two ms_queues; one hand-off (half a round trip): "
	       "p50 %.1f us, p90 %.1f us, p99 %.1f us\n",
	       count, rt[count / 2] / 2e3, rt[count * 9 / 10] / 2e3, rt[count * 99 / 100] / 2e3);
	free(rt);
	ms_queue_del(ping);
	ms_queue_del(pong);
	return 0;
}
