/* ms.h — what every MetaStore module shares: the error convention, the one
 * allocation wrapper (with a fail-the-Nth-allocation test mode), logging in
 * etcd's capnslog line format, and a few small helpers. */
#ifndef MS_COMMON_H
#define MS_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ----------------------------------------------------------------
 * Functions return 0 or a negative MS_E* code. Human context goes into an
 * ms_err the caller passes (may be NULL). Codes that correspond to an etcd
 * client-visible error are named after it; api/ translates them, once, into
 * etcd's gRPC code and exact message. */
enum {
	MS_OK = 0,
	MS_EINVAL = -1, /* bad argument / malformed input (generic) */
	MS_ENOMEM = -2,
	MS_EIO = -3,           /* disk or socket failure */
	MS_ECORRUPT = -4,      /* data on disk fails a check */
	MS_ENOTFOUND = -5,     /* generic not found (internal) */
	MS_EEXIST = -6,        /* generic already exists (internal) */
	MS_EAGAIN = -7,        /* queue full / try again */
	MS_ESTOPPED = -8,      /* "etcdserver: server stopped" */
	MS_ETIMEOUT = -9,      /* "etcdserver: request timed out" */
	MS_ECANCELED = -10,    /* the caller went away */
	MS_EUNSUPPORTED = -11, /* refused clearly: not implemented */

	/* etcd request errors */
	MS_EKEY_EMPTY = -100,           /* etcdserver: key is not provided */
	MS_EKEY_NOT_FOUND = -101,       /* etcdserver: key not found */
	MS_EVALUE_PROVIDED = -102,      /* etcdserver: value is provided */
	MS_ELEASE_PROVIDED = -103,      /* etcdserver: lease is provided */
	MS_ETOO_MANY_OPS = -104,        /* etcdserver: too many operations in txn request */
	MS_EDUP_KEY = -105,             /* etcdserver: duplicate key given in txn request */
	MS_ECOMPACTED = -106,           /* etcdserver: mvcc: required revision has been compacted */
	MS_EFUTURE_REV = -107,          /* etcdserver: mvcc: required revision is a future revision */
	MS_ENOSPACE = -108,             /* etcdserver: mvcc: database space exceeded */
	MS_ELEASE_NOT_FOUND = -109,     /* etcdserver: requested lease not found */
	MS_ELEASE_EXISTS = -110,        /* etcdserver: lease already exists */
	MS_ELEASE_TTL_LARGE = -111,     /* etcdserver: too large lease TTL */
	MS_EREQ_TOO_LARGE = -112,       /* etcdserver: request is too large */
	MS_ETOO_MANY_REQS = -113,       /* etcdserver: too many requests */
	MS_ENO_LEADER = -114,           /* etcdserver: no leader */
	MS_ENOT_LEADER = -115,          /* etcdserver: not leader */
	MS_ELEADER_CHANGED = -116,      /* etcdserver: leader changed */
	MS_EMEMBER_EXISTS = -117,       /* etcdserver: member ID already exist */
	MS_EPEER_URL_EXISTS = -118,     /* etcdserver: Peer URLs already exists */
	MS_EMEMBER_NOT_FOUND = -119,    /* etcdserver: member not found */
	MS_EMEMBER_BAD_URLS = -120,     /* etcdserver: given member URLs are invalid */
	MS_ENOT_LEARNER = -121,         /* etcdserver: can only promote a learner member */
	MS_ELEARNER_NOT_READY = -122,   /* ... which is in sync with leader */
	MS_ETOO_MANY_LEARNERS = -123,   /* etcdserver: too many learner members in cluster */
	MS_EUNHEALTHY = -124,           /* etcdserver: unhealthy cluster */
	MS_ENOT_ENOUGH_STARTED = -125,  /* re-configuration failed due to not enough started members */
	MS_EBAD_TRANSFEREE = -126,      /* etcdserver: bad leader transferee */
	MS_ELEARNER_RPC = -127,         /* etcdserver: rpc not supported for learner */
	MS_ECORRUPT_CLUSTER = -128,     /* etcdserver: corrupt cluster */
	MS_ETIMEOUT_LEADER_FAIL = -129, /* request timed out, possibly due to previous leader failure */
	MS_EWATCH_CANCELED = -130,      /* etcdserver: watch canceled */
	MS_ETIMEOUT_TRANSFER = -131,    /* etcdserver: request timed out, leader transfer took too long */
};

#define MS_ERR_MSG 256
typedef struct ms_err {
	int code;
	char msg[MS_ERR_MSG];
} ms_err;

/* Records code and a printf-style message in err (if non-NULL); returns code. */
int ms_err_set(ms_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A short English name for a code ("invalid argument", ...). */
const char *ms_strerror(int code);

/* ---- allocation ------------------------------------------------------------
 * Every allocation goes through these. ms_alloc_fail_after(n) makes the n-th
 * allocation from now on (1-based) and all after it fail, so tests can walk
 * every error path; 0 turns the mode off. */
void *ms_malloc(size_t n);
void *ms_calloc(size_t count, size_t size);
void *ms_realloc(void *p, size_t n);
void ms_free(void *p);
char *ms_strdup(const char *s);
char *ms_strndup(const char *s, size_t n);
void *ms_memdup(const void *p, size_t n);
void ms_alloc_fail_after(long n);
/* protobuf-c allocator backed by ms_malloc/ms_free. */
struct ProtobufCAllocator;
extern struct ProtobufCAllocator ms_pb_allocator;

/* ---- logging ---------------------------------------------------------------
 * capnslog's line shape, which etcd tooling reads:
 *   2026-11-21 14:23:24.417501 I | etcdserver: published ... */
typedef enum { MS_LOG_DEBUG = 0, MS_LOG_INFO, MS_LOG_NOTICE, MS_LOG_WARN, MS_LOG_ERROR, MS_LOG_FATAL } ms_log_level;
void ms_log_set_level(ms_log_level lvl);
ms_log_level ms_log_get_level(void);
/* pkg is etcd's package label ("etcdserver", "raft", "embed", ...). */
void ms_log(ms_log_level lvl, const char *pkg, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define MS_DEBUG(pkg, ...)                                                                                             \
	do {                                                                                                           \
		if (ms_log_get_level() <= MS_LOG_DEBUG)                                                                \
			ms_log(MS_LOG_DEBUG, pkg, __VA_ARGS__);                                                        \
	} while (0)
#define MS_INFO(pkg, ...) ms_log(MS_LOG_INFO, pkg, __VA_ARGS__)
#define MS_NOTICE(pkg, ...) ms_log(MS_LOG_NOTICE, pkg, __VA_ARGS__)
#define MS_WARN(pkg, ...) ms_log(MS_LOG_WARN, pkg, __VA_ARGS__)
#define MS_ERROR(pkg, ...) ms_log(MS_LOG_ERROR, pkg, __VA_ARGS__)

/* ---- assertions that stay on in release builds (data-corrupting invariants) */
#define MS_ASSERT(c)                                                                                                   \
	do {                                                                                                           \
		if (__builtin_expect(!(c), 0))                                                                         \
			ms_assert_fail(#c, __FILE__, __LINE__);                                                        \
	} while (0)
_Noreturn void ms_assert_fail(const char *expr, const char *file, int line);

/* ---- little helpers -------------------------------------------------------- */
/* Monotonic and wall clocks in nanoseconds: only for code outside the pure
 * cores (raft core, lease heap, watch matcher get time injected). */
int64_t ms_now_mono_ns(void);
int64_t ms_now_wall_ns(void);

static inline void ms_put_u32le(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t ms_get_u32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void ms_put_u64le(uint8_t *p, uint64_t v)
{
	ms_put_u32le(p, (uint32_t)v);
	ms_put_u32le(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t ms_get_u64le(const uint8_t *p)
{
	return (uint64_t)ms_get_u32le(p) | (uint64_t)ms_get_u32le(p + 4) << 32;
}
static inline void ms_put_u64be(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}
static inline uint64_t ms_get_u64be(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

#define MS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MS_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- thread hand-off queue -------------------------------------------------
 * A bounded multi-producer multi-consumer ring of pointers (ck_ring) with an
 * eventfd that wakes the consumer: an event loop watches ms_queue_fd(), a
 * thread blocks in ms_queue_wait(). A producer only makes a syscall when the
 * consumer has drained since the last wake-up. Consumers call ms_queue_ack()
 * (loop) or ms_queue_wait() (thread) and then pop until empty. */
typedef struct ms_queue ms_queue;
/* cap is rounded up to a power of two. */
int ms_queue_new(size_t cap, ms_queue **out);
/* A queue that shares peer's eventfd: for consumers on one event loop, each
 * with its own event on the same fd (libevent runs every event of a
 * readable fd). A producer that fills several such queues in a row then
 * makes one wake-up syscall, and the loop wakes once. Every consumer must
 * ack before it drains, as usual. */
int ms_queue_new_sharing(size_t cap, ms_queue *peer, ms_queue **out);
void ms_queue_del(ms_queue *q);
/* Never fails: when the ring is full the producer backs off until there is
 * room (back-pressure). p must not be NULL. */
void ms_queue_push(ms_queue *q, void *p);
/* Like ms_queue_push without the wake-up: the producer promises a later
 * ms_queue_wake() (or a push) on this queue or one sharing its fd. */
void ms_queue_push_quiet(ms_queue *q, void *p);
void ms_queue_wake(ms_queue *q);
/* Non-blocking: false when the queue is full. */
bool ms_queue_try_push(ms_queue *q, void *p);
/* NULL when empty. */
void *ms_queue_pop(ms_queue *q);
int ms_queue_fd(const ms_queue *q);
/* Loop consumer: call when the fd is readable, before draining. */
void ms_queue_ack(ms_queue *q);
/* Several thread consumers: after taking one item, wake another consumer
 * when more are queued. */
void ms_queue_kick(ms_queue *q);
/* Thread consumer: blocks until something may have been pushed. */
void ms_queue_wait(ms_queue *q);

/* ---- directories ---- */
/* mkdir -p with mode 0700. MS_EIO names the directory that failed. */
int ms_mkdir_p(const char *path, ms_err *err);
/* rm -rf: best effort, for directories this process made. */
void ms_rmtree(const char *path);

/* ---- hash table of pointers -------------------------------------------------
 * Open addressing, each slot remembering its entry's 64-bit hash, linear
 * probing and backward-shift deletion (no tombstones), so lookups stay short
 * after millions of inserts and removes. The caller hashes and compares.
 * Not thread-safe: its owner locks. */
typedef struct ms_htab {
	uint64_t *h; /* 0 = empty slot; stored hashes have bit 0 set */
	void **v;
	size_t cap; /* power of two, or 0 */
	size_t n;
} ms_htab;

/* eq(entry, key) says whether a stored entry is the one sought. */
typedef bool (*ms_htab_eq)(const void *entry, const void *key);

void ms_htab_free(ms_htab *t);
/* The entry with hash h equal to key, or NULL. */
void *ms_htab_find(const ms_htab *t, uint64_t h, ms_htab_eq eq, const void *key);
/* Inserts v (which must not be present). MS_ENOMEM. */
int ms_htab_insert(ms_htab *t, uint64_t h, void *v);
/* Removes and returns the entry equal to key, or NULL. */
void *ms_htab_remove(ms_htab *t, uint64_t h, ms_htab_eq eq, const void *key);

uint64_t ms_hash_u64(uint64_t x);
uint64_t ms_hash_bytes(const uint8_t *p, size_t n);

#endif
