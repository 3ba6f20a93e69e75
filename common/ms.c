/* ms.c — errors, allocation with fault injection, capnslog-style logging. */
#include "common/ms.h"

#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int ms_err_set(ms_err *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->code = code;
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
	}
	return code;
}

const char *ms_strerror(int code)
{
	switch (code) {
	case MS_OK:
		return "ok";
	case MS_EINVAL:
		return "invalid argument";
	case MS_ENOMEM:
		return "out of memory";
	case MS_EIO:
		return "I/O error";
	case MS_ECORRUPT:
		return "corrupt data";
	case MS_ENOTFOUND:
		return "not found";
	case MS_EEXIST:
		return "already exists";
	case MS_EAGAIN:
		return "try again";
	case MS_ESTOPPED:
		return "server stopped";
	case MS_ETIMEOUT:
		return "timed out";
	case MS_ECANCELED:
		return "canceled";
	case MS_EUNSUPPORTED:
		return "not supported";
	default:
		return "error";
	}
}

/* ---- allocation ---- */
static atomic_long fail_countdown; /* 0 = off; otherwise allocations left before failing */

void ms_alloc_fail_after(long n)
{
	atomic_store(&fail_countdown, n);
}

static bool alloc_should_fail(void)
{
	long c = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
	if (c == 0)
		return false;
	if (c == 1)
		return true; /* stays at 1: every later allocation fails too */
	return atomic_fetch_sub(&fail_countdown, 1) <= 1;
}

void *ms_malloc(size_t n)
{
	return alloc_should_fail() ? NULL : malloc(n ? n : 1);
}
void *ms_calloc(size_t c, size_t s)
{
	return alloc_should_fail() ? NULL : calloc(c ? c : 1, s ? s : 1);
}
void *ms_realloc(void *p, size_t n)
{
	return alloc_should_fail() ? NULL : realloc(p, n ? n : 1);
}
void ms_free(void *p)
{
	free(p);
}

char *ms_strndup(const char *s, size_t n)
{
	char *d = ms_malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}
char *ms_strdup(const char *s)
{
	return ms_strndup(s, strlen(s));
}
void *ms_memdup(const void *p, size_t n)
{
	void *d = ms_malloc(n);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

static void *pb_alloc(void *ud, size_t n)
{
	return ms_malloc(n);
}
static void pb_free(void *ud, void *p)
{
	ms_free(p);
}
ProtobufCAllocator ms_pb_allocator = {pb_alloc, pb_free, NULL};

/* ---- logging ---- */
static _Atomic int log_level = MS_LOG_INFO;
void ms_log_set_level(ms_log_level lvl)
{
	atomic_store(&log_level, (int)lvl);
}
ms_log_level ms_log_get_level(void)
{
	return (ms_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

void ms_log(ms_log_level lvl, const char *pkg, const char *fmt, ...)
{
	static const char letters[] = "DINWEC";
	if ((int)lvl < atomic_load_explicit(&log_level, memory_order_relaxed))
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	int n =
	    snprintf(line, sizeof line, "%04d-%02d-%02d %02d:%02d:%02d.%06ld %c | %s: ", tm.tm_year + 1900,
	             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000, letters[lvl], pkg);
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof line)
		n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line - 1)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	/* one write(2) per line so lines from threads never interleave */
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

_Noreturn void ms_assert_fail(const char *expr, const char *file, int line)
{
	ms_log(MS_LOG_FATAL, "metastore", "assertion failed: %s (%s:%d)", expr, file, line);
	abort();
}

int64_t ms_now_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t ms_now_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
