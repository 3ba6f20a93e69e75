/* queue.c — bounded MPMC pointer ring (Concurrency Kit) with eventfd wake-ups. */
#include "common/ms.h"

#include <ck_ring.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* The eventfd and its pending flag: one per queue, or shared by queues
 * whose consumers run on the same event loop. */
typedef struct waker {
	int efd;
	atomic_int signaled; /* 1 while a wake-up is pending */
	atomic_int refs;
} waker;

struct ms_queue {
	ck_ring_t ring;
	ck_ring_buffer_t *buf;
	waker *w;
};

/* NULL when out of memory or file descriptors */
static waker *waker_new(void)
{
	waker *w = ms_calloc(1, sizeof *w);
	if (w && (w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		ms_free(w);
		w = NULL;
	}
	return w;
}

static void waker_unref(waker *w)
{
	if (atomic_fetch_sub(&w->refs, 1) == 1) {
		close(w->efd);
		ms_free(w);
	}
}

static int queue_new(size_t cap, waker *shared, ms_queue **out)
{
	size_t size = 2;
	while (size < cap + 1)
		size <<= 1;
	ms_queue *q = ms_calloc(1, sizeof *q);
	if (!q)
		return MS_ENOMEM;
	q->buf = ms_calloc(size, sizeof *q->buf);
	q->w = shared ? shared : waker_new();
	if (q->w)
		atomic_fetch_add(&q->w->refs, 1);
	if (!q->buf || !q->w) {
		int rc = q->buf ? MS_EIO : MS_ENOMEM;
		if (q->w)
			waker_unref(q->w);
		ms_free(q->buf);
		ms_free(q);
		return rc;
	}
	ck_ring_init(&q->ring, (unsigned int)size);
	*out = q;
	return 0;
}

int ms_queue_new(size_t cap, ms_queue **out)
{
	return queue_new(cap, NULL, out);
}

int ms_queue_new_sharing(size_t cap, ms_queue *peer, ms_queue **out)
{
	return queue_new(cap, peer->w, out);
}

void ms_queue_del(ms_queue *q)
{
	if (!q)
		return;
	waker_unref(q->w);
	ms_free(q->buf);
	ms_free(q);
}

void ms_queue_wake(ms_queue *q)
{
	if (atomic_exchange(&q->w->signaled, 1) == 0) {
		uint64_t one = 1;
		ssize_t w = write(q->w->efd, &one, sizeof one);
		(void)w; /* EAGAIN only when the counter is saturated: already readable */
	}
}

static bool try_push(ms_queue *q, void *p, bool quiet)
{
	MS_ASSERT(p != NULL);
	if (!ck_ring_enqueue_mpmc(&q->ring, q->buf, p))
		return false;
	if (!quiet)
		ms_queue_wake(q);
	return true;
}

bool ms_queue_try_push(ms_queue *q, void *p)
{
	return try_push(q, p, false);
}

static void push(ms_queue *q, void *p, bool quiet)
{
	unsigned spins = 0;
	while (!try_push(q, p, quiet)) {
		if (quiet)
			ms_queue_wake(q); /* full: make sure the consumer is draining */
		if (++spins < 64) {
			sched_yield();
		} else {
			struct timespec ts = {0, 100000}; /* full: the consumer is behind */
			nanosleep(&ts, NULL);
		}
	}
}

void ms_queue_push(ms_queue *q, void *p)
{
	push(q, p, false);
}

void ms_queue_push_quiet(ms_queue *q, void *p)
{
	push(q, p, true);
}

void *ms_queue_pop(ms_queue *q)
{
	void *p = NULL;
	if (!ck_ring_dequeue_mpmc(&q->ring, q->buf, &p))
		return NULL;
	return p;
}

void ms_queue_kick(ms_queue *q)
{
	if (ck_ring_size(&q->ring) > 0) {
		atomic_store(&q->w->signaled, 1);
		uint64_t one = 1;
		ssize_t w = write(q->w->efd, &one, sizeof one);
		(void)w;
	}
}

int ms_queue_fd(const ms_queue *q)
{
	return q->w->efd;
}

void ms_queue_ack(ms_queue *q)
{
	uint64_t v;
	ssize_t r = read(q->w->efd, &v, sizeof v);
	(void)r;
	atomic_store(&q->w->signaled, 0);
}

void ms_queue_wait(ms_queue *q)
{
	struct pollfd pfd = {.fd = q->w->efd, .events = POLLIN};
	while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
		;
	ms_queue_ack(q);
}
