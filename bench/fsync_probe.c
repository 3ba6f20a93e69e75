/* fsync_probe.c — the cost of one durable append on this disk: what a
 * one-client put can at best approach (it needs one synced raft log write).
 * Appends SIZE bytes and fdatasyncs, N times, in a fresh file under DIR;
 * prints p50/p99 and writes bench/results/fsync.json.
 * Usage: fsync_probe [--dir DIR] [--count N] [--size BYTES] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ms.h"

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *dir = ".";
	size_t count = 2000, size = 512;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = strtoull(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--size") && i + 1 < argc)
			size = strtoull(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: %s [--dir DIR] [--count N] [--size BYTES]\n", argv[0]);
			return 2;
		}
	}
	if (count == 0)
		count = 1;
	char path[4096];
	snprintf(path, sizeof path, "%s/fsync_probe.%d", dir, (int)getpid());
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	char *buf = calloc(1, size ? size : 1);
	int64_t *lat = malloc(count * sizeof *lat);
	if (!buf || !lat)
		return 1;
	for (size_t i = 0; i < count; i++) {
		int64_t s = ms_now_mono_ns();
		if (write(fd, buf, size) != (ssize_t)size || fdatasync(fd)) {
			perror("write/fdatasync");
			return 1;
		}
		lat[i] = ms_now_mono_ns() - s;
	}
	close(fd);
	unlink(path);
	qsort(lat, count, sizeof *lat, cmp_i64);
	double p50 = (double)lat[count / 2] / 1e3, p99 = (double)lat[(size_t)((double)count * 0.99)] / 1e3;
	printf("fsync probe (%s): %zu x (append %zu B + fdatasync): p50 %.1f us, p99 %.1f us\n", dir, count, size, p50,
	       p99);
	mkdir("bench", 0755);
	mkdir("bench/results", 0755);
	FILE *f = fopen("bench/results/fsync.json", "w");
	if (f) {
		fprintf(f, "{\"dir\": \"%s\", \"count\": %zu, \"size\": %zu, \"p50_us\": %.1f, \"p99_us\": %.1f}\n",
		        dir, count, size, p50, p99);
		fclose(f);
	}
	free(buf);
	free(lat);
	return 0;
}
