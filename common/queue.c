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

struct ms_queue {
	ck_ring_t ring;
	ck_ring_buffer_t *buf;
	int efd;
	atomic_int signaled; /* 1 while a wake-up is pending */
};

int ms_queue_new(size_t cap, ms_queue **out)
{
	size_t size = 2;
	while (size < cap + 1)
		size <<= 1;
	ms_queue *q = ms_calloc(1, sizeof *q);
	if (!q)
		return MS_ENOMEM;
	q->buf = ms_calloc(size, sizeof *q->buf);
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!q->buf || q->efd < 0) {
		int rc = q->buf ? MS_EIO : MS_ENOMEM;
		if (q->efd >= 0)
			close(q->efd);
		ms_free(q->buf);
		ms_free(q);
		return rc;
	}
	ck_ring_init(&q->ring, (unsigned int)size);
	*out = q;
	return 0;
}

void ms_queue_del(ms_queue *q)
{
	if (!q)
		return;
	close(q->efd);
	ms_free(q->buf);
	ms_free(q);
}

static void wake(ms_queue *q)
{
	if (atomic_exchange(&q->signaled, 1) == 0) {
		uint64_t one = 1;
		ssize_t w = write(q->efd, &one, sizeof one);
		(void)w; /* EAGAIN only when the counter is saturated: already readable */
	}
}

bool ms_queue_try_push(ms_queue *q, void *p)
{
	MS_ASSERT(p != NULL);
	if (!ck_ring_enqueue_mpmc(&q->ring, q->buf, p))
		return false;
	wake(q);
	return true;
}

void ms_queue_push(ms_queue *q, void *p)
{
	unsigned spins = 0;
	while (!ms_queue_try_push(q, p)) {
		if (++spins < 64) {
			sched_yield();
		} else {
			struct timespec ts = {0, 100000}; /* full: the consumer is behind */
			nanosleep(&ts, NULL);
		}
	}
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
		atomic_store(&q->signaled, 1);
		uint64_t one = 1;
		ssize_t w = write(q->efd, &one, sizeof one);
		(void)w;
	}
}

int ms_queue_fd(const ms_queue *q)
{
	return q->efd;
}

void ms_queue_ack(ms_queue *q)
{
	uint64_t v;
	ssize_t r = read(q->efd, &v, sizeof v);
	(void)r;
	atomic_store(&q->signaled, 0);
}

void ms_queue_wait(ms_queue *q)
{
	struct pollfd pfd = {.fd = q->efd, .events = POLLIN};
	while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
		;
	ms_queue_ack(q);
}
