/* test_queue.c — ms_queue: order, back-pressure, and queues that share one
 * wake-up fd (quiet pushes, one wake, no lost wake-ups across threads). */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/ms.h"

static bool readable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

static void test_order_and_full(void **state)
{
	ms_queue *q;
	assert_int_equal(ms_queue_new(4, &q), 0);
	uintptr_t pushed = 0;
	while (ms_queue_try_push(q, (void *)(pushed + 1)))
		pushed++;
	assert_true(pushed >= 4); /* cap is rounded up, never down */
	assert_true(readable(ms_queue_fd(q), 0));
	ms_queue_ack(q);
	assert_false(readable(ms_queue_fd(q), 0));
	for (uintptr_t i = 1; i <= pushed; i++)
		assert_ptr_equal(ms_queue_pop(q), (void *)i);
	assert_null(ms_queue_pop(q));
	ms_queue_del(q);
}

static void test_shared_fd_one_wake(void **state)
{
	ms_queue *a, *b, *c;
	assert_int_equal(ms_queue_new(16, &a), 0);
	assert_int_equal(ms_queue_new_sharing(16, a, &b), 0);
	assert_int_equal(ms_queue_new_sharing(16, a, &c), 0);
	assert_int_equal(ms_queue_fd(a), ms_queue_fd(b));
	assert_int_equal(ms_queue_fd(a), ms_queue_fd(c));

	/* quiet pushes do not wake */
	ms_queue_push_quiet(b, (void *)1);
	ms_queue_push_quiet(c, (void *)2);
	assert_false(readable(ms_queue_fd(a), 0));
	/* one wake on any of them covers all */
	ms_queue_wake(a);
	assert_true(readable(ms_queue_fd(b), 0));
	ms_queue_ack(b);
	assert_ptr_equal(ms_queue_pop(b), (void *)1);
	ms_queue_ack(c); /* nothing left to read: must not block */
	assert_ptr_equal(ms_queue_pop(c), (void *)2);
	assert_null(ms_queue_pop(a));

	/* a pending wake is not repeated: still one readable event */
	ms_queue_push(a, (void *)3);
	ms_queue_push(b, (void *)4);
	assert_true(readable(ms_queue_fd(c), 0));
	ms_queue_ack(a);
	assert_false(readable(ms_queue_fd(a), 0));
	assert_ptr_equal(ms_queue_pop(a), (void *)3);
	assert_ptr_equal(ms_queue_pop(b), (void *)4);

	/* the fd lives until the last sharer goes, in any order */
	ms_queue_del(a);
	ms_queue_push(c, (void *)5);
	assert_true(readable(ms_queue_fd(c), 0));
	ms_queue_del(c);
	ms_queue_ack(b);
	ms_queue_del(b);
}

/* Producers fill two sharing queues quietly and wake once per round, as the
 * apply thread does; the consumer acks, then drains both. Every item must
 * arrive: a lost wake-up would leave the consumer waiting (bounded by the
 * poll timeout, which fails the test). */
#define ROUNDS 20000
typedef struct prod {
	ms_queue *x, *y;
	uintptr_t base;
} prod;

static void *producer(void *arg)
{
	prod *p = arg;
	for (uintptr_t i = 0; i < ROUNDS; i++) {
		ms_queue_push_quiet(p->x, (void *)(p->base + 2 * i + 1));
		ms_queue_push_quiet(p->y, (void *)(p->base + 2 * i + 2));
		ms_queue_wake(p->x);
	}
	return NULL;
}

static void test_shared_no_lost_wakeup(void **state)
{
	ms_queue *x, *y;
	assert_int_equal(ms_queue_new(64, &x), 0);
	assert_int_equal(ms_queue_new_sharing(64, x, &y), 0);
	pthread_t th[2];
	prod ps[2] = {{x, y, 0}, {x, y, 1u << 30}};
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, producer, &ps[i]), 0);
	size_t got = 0, want = 2 * 2 * ROUNDS;
	uintptr_t last_x[2] = {0, 0};
	while (got < want) {
		assert_true(readable(ms_queue_fd(y), 10000));
		ms_queue_ack(y);
		void *v;
		while ((v = ms_queue_pop(x))) {
			uintptr_t u = (uintptr_t)v;
			int who = u >= (1u << 30);
			/* per producer, the x items come in order */
			assert_true(u > last_x[who]);
			last_x[who] = u;
			got++;
		}
		while (ms_queue_pop(y))
			got++;
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(got, want);
	ms_queue_del(x);
	ms_queue_del(y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_and_full),
	    cmocka_unit_test(test_shared_fd_one_wake),
	    cmocka_unit_test(test_shared_no_lost_wakeup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
