/* lease.h — the lease manager: a pure, I/O-free core (no clock, no
 * randomness, no disk of its own) that tracks every lease's granted TTL, its
 * expiry and the keys attached to it, and says which leases have expired.
 *
 * Shape (etcd's lessor, lease/lessor.go):
 *   - A binary min-heap ordered by the time each lease must next be looked at
 *     ("due", int64 ns of the injected monotonic clock); each lease keeps its
 *     heap index, so a keep-alive re-sorts in O(log n) and a revoke removes in
 *     O(log n). An open-addressing table maps id -> lease.
 *   - Only the primary (raft leader) runs expiry clocks. A manager starts as a
 *     follower: leases are tracked with no expiry ("forever", as etcd) and
 *     lease_renew refuses with MS_ENOT_LEADER (the server forwards keep-alives
 *     to the leader). lease_mgr_promote(election timeout) starts the clocks at
 *     now + extend + TTL for every lease; lease_mgr_demote stops them.
 *   - Expiry never deletes anything here: lease_expired_pop hands the caller up
 *     to max expired ids; the caller proposes a LeaseRevoke for each through
 *     raft, and when the revoke is applied (on every member) the apply stage
 *     calls lease_revoke. A popped lease is rescheduled retry_ns later, so if
 *     the proposal is lost (leader change, dropped) it is returned again.
 *     An expired lease that was not yet revoked cannot be renewed
 *     (MS_ELEASE_NOT_FOUND), like etcd, whose Renew waits for the revoke.
 *   - Attached keys: the manager mirrors the engine's attachments so that
 *     TimeToLive --keys needs no disk read. It keeps key -> lease (etcd's
 *     itemMap) and per lease a list of its keys; it learns about them from the
 *     engine's events (lease_mgr_on_events: a PUT attaches the key to
 *     kv->lease, detaching it from its previous lease; a DELETE detaches) and,
 *     at start-up, from engine_leases() through lease_mgr_load.
 *
 * Wiring (server):
 *   apply stage:   LeaseGrant -> engine_apply_lease_grant, then lease_grant;
 *                  LeaseRevoke (client or expiry) -> engine_apply_lease_revoke,
 *                  then lease_revoke; the engine's events callback ->
 *                  lease_mgr_on_events (same order as the engine emits them).
 *   leader loop:   a timer at lease_next_due(): lease_expired_pop(ids, 500)
 *                  -> propose a revoke for each (etcd: leaseRevokeRate/2 per
 *                  500 ms); on becoming leader lease_mgr_promote(election
 *                  timeout ns), on losing it lease_mgr_demote.
 *   API:           LeaseGrant with ID 0 -> lease_mgr_next_id; TTL checked
 *                  with lease_check_ttl before proposing; KeepAlive ->
 *                  lease_renew (MS_ELEASE_NOT_FOUND -> reply TTL 0, no error);
 *                  TimeToLive -> lease_time_to_live (MS_ELEASE_NOT_FOUND ->
 *                  reply TTL -1, grantedTTL 0) and lease_keys; Leases ->
 *                  lease_list.
 *
 * Threads: every public function takes the manager's internal mutex for its
 * whole duration, so the apply thread, the event loop and timers may call it
 * concurrently. All calls are O(log n) or O(1) except lease_mgr_promote,
 * lease_mgr_demote and lease_list (O(n)) and lease_keys (O(keys)). The clock
 * and rand callbacks are called with the mutex held: they must be cheap and
 * must not call back into the manager. Nothing here blocks on I/O.
 */
#ifndef MS_LEASE_H
#define MS_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ms.h"

/* etcd's MaxLeaseTTL (seconds): a larger TTL is "etcdserver: too large lease TTL". */
#define LEASE_MAX_TTL 9000000000LL
/* etcd's leaseRevokeRate: revokes per second the leader aims at. */
#define LEASE_REVOKE_RATE 1000

typedef struct lease_mgr lease_mgr;

/* Injected monotonic clock, in nanoseconds. */
typedef int64_t (*lease_now_fn)(void *ud);
/* Injected randomness (for lease_mgr_next_id only). */
typedef uint64_t (*lease_rand_fn)(void *ud);

typedef struct lease_cfg {
	lease_now_fn now; /* required */
	void *now_ud;
	lease_rand_fn rand; /* required by lease_mgr_next_id only */
	void *rand_ud;
	int64_t min_ttl;  /* seconds; TTLs below are raised to it; 0 -> 2 (etcd default) */
	int64_t retry_ns; /* a popped, still unrevoked lease is returned again after this; 0 -> 3 s */
	int revoke_rate;  /* promote spreads expiries to this many per second; 0 -> LEASE_REVOKE_RATE */
} lease_cfg;

/* etcd's minimum lease TTL in seconds for the given --heartbeat-interval and
 * --election-timeout (ms): ceil(((3 * electionTicks) / 2) * heartbeat), with
 * electionTicks = election / heartbeat. 2 with the defaults (100, 1000). */
int64_t lease_min_ttl(int64_t heartbeat_ms, int64_t election_ms);

/* Creates a manager (a follower: no expiry clocks until promoted).
 * MS_EINVAL without cfg->now; MS_ENOMEM. Free with lease_mgr_del. */
int lease_mgr_new(const lease_cfg *cfg, lease_mgr **out, ms_err *err);
/* Frees the manager and everything it tracks. NULL is a no-op. */
void lease_mgr_del(lease_mgr *m);

/* Checks a TTL before proposing a grant: MS_ELEASE_TTL_LARGE above
 * LEASE_MAX_TTL. Smaller and negative TTLs are fine (raised to min_ttl). */
int lease_check_ttl(int64_t ttl, ms_err *err);

/* Picks an id for LeaseGrant with ID 0: a random positive int64 that is not
 * in use. Another grant with the same id may still be in flight in raft; the
 * apply then fails with MS_ELEASE_EXISTS, as etcd's would. MS_EINVAL without
 * cfg->rand. */
int lease_mgr_next_id(lease_mgr *m, int64_t *id, ms_err *err);

/* Records a granted lease (called when the grant is applied). id must be
 * non-zero (MS_EINVAL; choosing one for ID 0 is the caller's job). ttl above
 * LEASE_MAX_TTL -> MS_ELEASE_TTL_LARGE; id in use -> MS_ELEASE_EXISTS. TTLs
 * below min_ttl (including negative) are raised to it; *granted_ttl (may be
 * NULL) gets the effective TTL, the one the reply carries. On the primary the
 * lease expires ttl seconds from now. */
int lease_grant(lease_mgr *m, int64_t id, int64_t ttl, int64_t *granted_ttl, ms_err *err);

/* Forgets a lease and its key attachments (called when the revoke is
 * applied; deleting the keys is the engine's job). MS_ELEASE_NOT_FOUND. */
int lease_revoke(lease_mgr *m, int64_t id, ms_err *err);

/* Keep-alive: on the primary, restarts the lease's clock at now + TTL and
 * puts its granted TTL in *ttl. MS_ENOT_LEADER on a follower (forward it);
 * MS_ELEASE_NOT_FOUND for an unknown lease or one whose expiry has passed
 * (its revoke is on its way): the KeepAlive reply is then TTL 0, no error. */
int lease_renew(lease_mgr *m, int64_t id, int64_t *ttl, ms_err *err);

typedef struct lease_ttl_info {
	int64_t granted_ttl;   /* seconds */
	int64_t remaining_ns;  /* expiry - now (negative once expired); INT64_MAX on a follower */
	int64_t remaining_ttl; /* what TimeToLive replies: whole seconds, truncated as etcd's
	                          int64(Remaining().Seconds()); the granted TTL on a follower */
	size_t nkeys;          /* keys attached */
	bool primary;
} lease_ttl_info;

/* TimeToLive. MS_ELEASE_NOT_FOUND (reply TTL -1, grantedTTL 0). */
int lease_time_to_live(lease_mgr *m, int64_t id, lease_ttl_info *out, ms_err *err);

/* Calls fn for each key attached to lease id (in no particular order) with the
 * mutex held: fn must copy what it keeps and must not call the manager. fn
 * returning non-zero stops the walk and is returned. MS_ELEASE_NOT_FOUND. */
typedef int (*lease_key_fn)(void *arg, const uint8_t *key, size_t len);
int lease_keys(lease_mgr *m, int64_t id, lease_key_fn fn, void *arg, ms_err *err);

/* Every lease id, unordered, in a new array the caller frees with ms_free
 * (NULL when there are none). MS_ENOMEM. */
int lease_list(lease_mgr *m, int64_t **ids, size_t *n, ms_err *err);
size_t lease_count(lease_mgr *m);
bool lease_exists(lease_mgr *m, int64_t id);

/* Attachment of one key (the engine's view after a write): lease 0 detaches
 * the key from whatever lease it had. Attaching to an unknown lease detaches
 * the key and returns MS_ELEASE_NOT_FOUND (the engine refuses such writes, so
 * this only happens when a revoke overtook the write's event). MS_ENOMEM. */
int lease_attach(lease_mgr *m, const uint8_t *key, size_t len, int64_t lease, ms_err *err);
/* The lease key is attached to, 0 for none. */
int64_t lease_of_key(lease_mgr *m, const uint8_t *key, size_t len);

/* Feeds the engine's events (engine_events_fn's evs, in order): PUT ->
 * lease_attach(kv->key, kv->lease), DELETE -> detach. Unknown leases are
 * ignored (see lease_attach). MS_ENOMEM (state stays consistent: the key is
 * left detached). The argument is Mvccpb__Event ** (kv.pb-c.h); declared as
 * struct pointer so this header needs no generated code. */
struct Mvccpb__Event;
int lease_mgr_on_events(lease_mgr *m, struct Mvccpb__Event *const *evs, size_t n, ms_err *err);

/* Start-up recovery, with the exact signature of engine_lease_fn so it can
 * be passed to engine_leases(e, lease_mgr_load, m, err): grants (arg is the
 * lease_mgr) and attaches the keys. */
int lease_mgr_load(void *arg, int64_t id, int64_t ttl, const uint8_t *const *keys, const size_t *key_lens,
                   size_t nkeys);

/* Becoming leader: every lease's clock restarts at now + extend_ns + TTL
 * (extend = the election timeout, so clients whose keep-alives were lost in
 * the election are not expired). As etcd, when there are >= revoke_rate
 * leases, expiries that pile up are spread so that at most 3/4 revoke_rate
 * fall in any second. Idempotent. */
void lease_mgr_promote(lease_mgr *m, int64_t extend_ns);
/* Losing leadership: stops every clock (leases live "forever" on followers). */
void lease_mgr_demote(lease_mgr *m);
bool lease_mgr_is_primary(lease_mgr *m);

/* Up to max expired lease ids (expiry <= now) into ids, earliest expiry
 * first; returns how many (0 on a follower). Each returned lease is looked at
 * again retry_ns later if it has not been revoked by then. */
size_t lease_expired_pop(lease_mgr *m, int64_t *ids, size_t max);
/* When lease_expired_pop may next return something (ns of the injected
 * clock), INT64_MAX if never (follower or no leases): the caller's timer. */
int64_t lease_next_due(lease_mgr *m);

/* Test hook: checks the heap invariant, heap indices and table consistency;
 * returns 0 or MS_ECORRUPT. O(n). */
int lease_mgr_check(lease_mgr *m);

#endif
