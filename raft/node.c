/* node.c — drives the raft core on an event loop: ticks, ready batches, the
 * log writer thread (group commit) and the apply thread. */
#include "raft/raft.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>

#include "raft/log_store.h"
#include "raft/raft_core.h"
#include "raft/transport.h"

/* A unit of work for the log writer: what one ready batch must persist, and
 * what to do once it is durable. */
typedef struct log_job {
	raft_log_hs hs;
	bool has_hs;
	uint64_t truncate_from;
	raft_log_rec *ents;
	size_t nents;
	uint64_t persisted_index, persisted_term; /* 0 = nothing to report */
	raft_msg *after;                          /* messages to send once durable (deep copies) */
	size_t nafter;
	uint64_t compact_index, compact_term; /* log compaction to run after the write (0 = none) */
	uint8_t *compact_conf;
	size_t compact_conf_len;
	int rc; /* result of the write */
} log_job;

/* Committed entries for the apply thread (entries and data in one block). */
typedef struct apply_job {
	char *install_dir;      /* a snapshot to install instead of entries */
	uint64_t install_index; /* its raft index */
	size_t n;
	raft_node_entry ents[];
} apply_job;

typedef struct applied_note {
	uint64_t index;
	int rc;
	bool synced; /* the state machine is durable up to index */
} applied_note;

/* Entries kept behind a compaction for followers that lag a little (etcd
 * keeps 5000); smaller when --snapshot-count is smaller. */
#define CATCHUP_ENTRIES 5000
/* The log is compacted every this many applied entries, or every
 * --snapshot-count if smaller. etcd compacts only at --snapshot-count and so
 * holds up to 105000 entries in memory (about 36 MiB of 256-byte puts);
 * here a compaction costs one sync of the store (an fdatasync of its WAL),
 * so it is done often and the in-memory log stays under about
 * CATCHUP_ENTRIES + COMPACT_EVERY entries. */
#define COMPACT_EVERY 5000

static char stop_sentinel;

struct raft_node {
	uint64_t id;
	raft_core *core;
	raft_log_store *log;
	raft_transport *tr;
	struct event_base *base;
	raft_node_callbacks cb;
	void *ud;
	int tick_ms;
	uint64_t rng;

	ms_queue *log_q, *log_done_q;  /* loop -> writer, writer -> loop */
	ms_queue *apply_q, *applied_q; /* loop -> apply, apply -> loop */
	struct event *tick_ev, *log_done_ev, *applied_ev;
	pthread_t writer, applier;
	bool threads_started;

	bool driving;
	char *snap_dir;
	uint64_t snap_seq;
	struct snap_out {
		uint64_t to;
		char *dir;
	} * snap_out; /* checkpoints being streamed */
	size_t nsnap_out;
	uint64_t *snap_failed; /* reports deferred until after advance */
	size_t nsnap_failed;
	char *incoming_dir; /* a received snapshot stepped into the core */
	uint64_t incoming_index;
	uint64_t snapshot_count;
	uint64_t compact_every; /* min(snapshot_count, COMPACT_EVERY); 0 = never */
	uint64_t last_sync;     /* apply thread: index of the last state machine sync */
	uint64_t leader, term;
	_Atomic uint64_t applied;
	/* Raft's commit index is volatile state (Figure 2): a hard state that
	 * only moves commit is not written on its own (a RocksDB write and two
	 * thread hand-offs per put); it rides with the next write, and a
	 * restart takes commit as at least the applied index. */
	raft_log_hs hs_queued; /* the last hard state handed to the writer */
	raft_log_hs hs_latest; /* the core's, possibly newer in commit only */
};

/* ---- randomness for election timeouts: injected into the core ---- */
static uint64_t node_rand(void *ud, uint64_t n)
{
	raft_node *rn = ud;
	/* xorshift64*: seeded from getrandom at start-up */
	rn->rng ^= rn->rng >> 12;
	rn->rng ^= rn->rng << 25;
	rn->rng ^= rn->rng >> 27;
	uint64_t v = rn->rng * 2685821657736338717ULL;
	return n ? v % n : 0;
}

/* ---- loading the log at start-up ---- */
typedef struct load_ctx {
	raft_entry *ents;
	size_t n, cap;
} load_ctx;

static int load_entry(void *arg, const raft_log_rec *rec)
{
	load_ctx *lc = arg;
	if (lc->n == lc->cap) {
		size_t cap = lc->cap ? lc->cap * 2 : 256;
		raft_entry *ne = ms_realloc(lc->ents, cap * sizeof *ne);
		if (!ne)
			return MS_ENOMEM;
		lc->ents = ne;
		lc->cap = cap;
	}
	uint8_t *data = rec->len ? ms_memdup(rec->data, rec->len) : NULL;
	if (rec->len && !data)
		return MS_ENOMEM;
	lc->ents[lc->n++] = (raft_entry){rec->term, rec->index, (raft_entry_type)rec->type, data, rec->len};
	return 0;
}

static void load_free(load_ctx *lc)
{
	for (size_t i = 0; i < lc->n; i++)
		ms_free((void *)lc->ents[i].data);
	ms_free(lc->ents);
}

/* ---- threads ---- */
static void *writer_main(void *arg)
{
	raft_node *n = arg;
	log_job *batch[256];
	raft_log_write w[256];
	for (;;) {
		ms_queue_wait(n->log_q);
		for (;;) {
			size_t nb = 0;
			bool stop = false;
			void *p;
			while (nb < MS_ARRAY_LEN(batch) && (p = ms_queue_pop(n->log_q))) {
				if (p == &stop_sentinel) {
					stop = true;
					break;
				}
				batch[nb++] = p;
			}
			if (nb) {
				for (size_t i = 0; i < nb; i++)
					w[i] =
					    (raft_log_write){batch[i]->has_hs ? &batch[i]->hs : NULL,
					                     batch[i]->truncate_from, batch[i]->ents, batch[i]->nents};
				ms_err err = {0};
				/* group commit: one synchronous write for everything queued */
				int rc = raft_log_store_write(n->log, w, nb, &err);
				if (rc)
					MS_ERROR("raft", "failed to persist the raft log: %s", err.msg);
				for (size_t i = 0; i < nb && rc == 0; i++) {
					if (!batch[i]->compact_index)
						continue;
					rc = raft_log_store_compact(n->log, batch[i]->compact_index,
					                            batch[i]->compact_term, batch[i]->compact_conf,
					                            batch[i]->compact_conf_len, &err);
					if (rc)
						MS_ERROR("raft", "failed to compact the raft log: %s", err.msg);
					else
						MS_INFO("raft", "compacted raft log at %llu",
						        (unsigned long long)batch[i]->compact_index);
				}
				for (size_t i = 0; i < nb; i++) {
					batch[i]->rc = rc;
					ms_queue_push(n->log_done_q, batch[i]);
				}
			}
			if (stop)
				return NULL;
			if (nb < MS_ARRAY_LEN(batch))
				break;
		}
	}
}

/* apply thread: one group of committed entries */
static int apply_group(raft_node *n, apply_job **jobs, size_t nj, size_t total, uint64_t *last)
{
	int rc;
	if (nj == 1) {
		rc = n->cb.apply(n->ud, jobs[0]->ents, jobs[0]->n);
		*last = jobs[0]->ents[jobs[0]->n - 1].index;
	} else {
		raft_node_entry *all = ms_malloc(total * sizeof *all);
		MS_ASSERT(all != NULL);
		size_t k = 0;
		for (size_t i = 0; i < nj; i++) {
			memcpy(all + k, jobs[i]->ents, jobs[i]->n * sizeof *all);
			k += jobs[i]->n;
		}
		rc = n->cb.apply(n->ud, all, total);
		*last = all[total - 1].index;
		ms_free(all);
	}
	return rc;
}

static void post_applied(raft_node *n, uint64_t last, int rc, bool force_sync)
{
	applied_note *note = ms_malloc(sizeof *note);
	MS_ASSERT(note != NULL);
	note->index = last;
	note->synced = false;
	if (rc == 0 && n->cb.sync && (force_sync || (n->compact_every && last - n->last_sync >= n->compact_every))) {
		rc = n->cb.sync(n->ud);
		if (rc == 0) {
			n->last_sync = last;
			note->synced = true;
		}
	}
	note->rc = rc;
	if (rc == 0)
		atomic_store(&n->applied, last);
	ms_queue_push(n->applied_q, note);
}

static void *applier_main(void *arg)
{
	raft_node *n = arg;
	apply_job *carry = NULL; /* an install job met while grouping */
	for (;;) {
		if (!carry)
			ms_queue_wait(n->apply_q);
		void *p;
		while (carry || (p = ms_queue_pop(n->apply_q))) {
			if (carry) {
				p = carry;
				carry = NULL;
			}
			if (p == &stop_sentinel)
				return NULL;
			apply_job *j = p;
			if (j->install_dir) {
				/* Raft §7: the leader's snapshot replaces the state machine;
				 * entries after it follow in later jobs */
				uint64_t ci = 0, idx = j->install_index;
				int rc = n->cb.install(n->ud, j->install_dir, &ci);
				if (rc == 0)
					MS_INFO("raft", "%llx installed a snapshot at %llu (store at %llu)",
					        (unsigned long long)n->id, (unsigned long long)idx,
					        (unsigned long long)ci);
				ms_free(j->install_dir);
				ms_free(j);
				if (rc == 0)
					n->last_sync = ci; /* the installed copy is durable */
				/* the core learns the snapshot's index; entries up to the
				 * store's own index are skipped when they arrive */
				post_applied(n, idx, rc, false);
				continue;
			}
			/* group: everything queued now is applied by one callback */
			apply_job *jobs[64];
			size_t nj = 0, total = 0;
			jobs[nj++] = j;
			total += j->n;
			bool stop = false;
			while (nj < MS_ARRAY_LEN(jobs) && (p = ms_queue_pop(n->apply_q))) {
				if (p == &stop_sentinel) {
					stop = true;
					break;
				}
				if (((apply_job *)p)->install_dir) {
					carry = p;
					break;
				}
				jobs[nj++] = p;
				total += ((apply_job *)p)->n;
			}
			uint64_t last = 0;
			int rc = apply_group(n, jobs, nj, total, &last);
			for (size_t i = 0; i < nj; i++)
				ms_free(jobs[i]);
			post_applied(n, last, rc, false);
			if (stop)
				return NULL;
		}
	}
}

/* ---- the ready loop ---- */
/* Raft §7: a follower behind our compacted log gets a copy of the state
 * machine (an engine checkpoint, possibly newer than the snapshot's index:
 * the receiver skips what its store already holds). Known limitation: the
 * checkpoint is made on the loop (a flush plus hard links). */
static void send_snapshot(raft_node *n, const raft_msg *m)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/out-%llx-%llu", n->snap_dir, (unsigned long long)m->to,
	         (unsigned long long)++n->snap_seq);
	ms_rmtree(dir);
	int rc = n->cb.make_snapshot ? n->cb.make_snapshot(n->ud, dir) : MS_EUNSUPPORTED;
	if (rc == 0)
		rc = raft_transport_send_snapshot(n->tr, m, dir);
	if (rc == 0) {
		struct snap_out *so = ms_realloc(n->snap_out, (n->nsnap_out + 1) * sizeof *so);
		MS_ASSERT(so != NULL);
		n->snap_out = so;
		so[n->nsnap_out].to = m->to;
		so[n->nsnap_out++].dir = ms_strdup(dir);
		MS_INFO("raft", "%llx: sending a snapshot at %llu to %llx", (unsigned long long)n->id,
		        (unsigned long long)m->snapshot.index, (unsigned long long)m->to);
		return;
	}
	MS_WARN("raft", "%llx: cannot send a snapshot to %llx (%s)", (unsigned long long)n->id,
	        (unsigned long long)m->to, ms_strerror(rc));
	ms_rmtree(dir);
	uint64_t *f = ms_realloc(n->snap_failed, (n->nsnap_failed + 1) * sizeof *f);
	MS_ASSERT(f != NULL);
	n->snap_failed = f;
	f[n->nsnap_failed++] = m->to; /* reported after advance */
}

static void send_msgs(raft_node *n, const raft_msg *msgs, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (!n->tr)
			continue;
		if (msgs[i].type == RAFT_MSG_SNAP)
			send_snapshot(n, &msgs[i]);
		else
			raft_transport_send(n->tr, &msgs[i]);
	}
}

/* Deep copies of messages that must wait for the log write. */
static raft_msg *copy_msgs(const raft_msg *msgs, size_t count)
{
	if (!count)
		return NULL;
	raft_msg *c = ms_calloc(count, sizeof *c);
	MS_ASSERT(c != NULL);
	for (size_t i = 0; i < count; i++) {
		c[i] = msgs[i];
		c[i].entries = NULL;
		c[i].n_entries = 0;
		c[i].snapshot.conf_state = (raft_conf_state){0};
		if (msgs[i].context_len) {
			c[i].context = ms_memdup(msgs[i].context, msgs[i].context_len);
			MS_ASSERT(c[i].context != NULL);
		}
		if (msgs[i].n_entries) {
			raft_entry *e = ms_calloc(msgs[i].n_entries, sizeof *e);
			MS_ASSERT(e != NULL);
			for (size_t j = 0; j < msgs[i].n_entries; j++) {
				e[j] = msgs[i].entries[j];
				if (e[j].len) {
					e[j].data = ms_memdup(e[j].data, e[j].len);
					MS_ASSERT(e[j].data != NULL);
				}
			}
			c[i].entries = e;
			c[i].n_entries = msgs[i].n_entries;
		}
		MS_ASSERT(raft_conf_state_copy(&c[i].snapshot.conf_state, &msgs[i].snapshot.conf_state) == 0);
	}
	return c;
}

static void free_msgs(raft_msg *c, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		ms_free((void *)c[i].context);
		for (size_t j = 0; j < c[i].n_entries; j++)
			ms_free((void *)c[i].entries[j].data);
		ms_free(c[i].entries);
		raft_conf_state_free(&c[i].snapshot.conf_state);
	}
	ms_free(c);
}

static log_job *make_log_job(const raft_ready *rd)
{
	size_t bytes = 0;
	for (size_t i = 0; i < rd->n_entries; i++)
		bytes += rd->entries[i].len;
	log_job *j = ms_calloc(1, sizeof *j + rd->n_entries * sizeof(raft_log_rec) + bytes);
	MS_ASSERT(j != NULL);
	j->ents = (raft_log_rec *)(j + 1);
	uint8_t *data = (uint8_t *)(j->ents + rd->n_entries);
	for (size_t i = 0; i < rd->n_entries; i++) {
		const raft_entry *e = &rd->entries[i];
		if (e->len)
			memcpy(data, e->data, e->len);
		j->ents[i] = (raft_log_rec){e->index, e->term, (uint8_t)e->type, data, e->len};
		data += e->len;
	}
	j->nents = rd->n_entries;
	j->truncate_from = rd->truncate_from;
	if (rd->n_entries) {
		j->persisted_index = rd->entries[rd->n_entries - 1].index;
		j->persisted_term = rd->entries[rd->n_entries - 1].term;
	}
	return j;
}

static apply_job *make_apply_job(const raft_ready *rd)
{
	size_t bytes = 0;
	for (size_t i = 0; i < rd->n_committed; i++)
		bytes += rd->committed[i].len;
	apply_job *j = ms_malloc(sizeof *j + rd->n_committed * sizeof(raft_node_entry) + bytes);
	MS_ASSERT(j != NULL);
	uint8_t *data = (uint8_t *)(j->ents + rd->n_committed);
	for (size_t i = 0; i < rd->n_committed; i++) {
		const raft_entry *e = &rd->committed[i];
		if (e->len)
			memcpy(data, e->data, e->len);
		j->ents[i] = (raft_node_entry){e->index, e->term, (raft_node_entry_type)e->type, data, e->len};
		data += e->len;
	}
	j->n = rd->n_committed;
	j->install_dir = NULL;
	return j;
}

static void drive(raft_node *n)
{
	if (n->driving)
		return; /* the outer call picks up what a callback added */
	n->driving = true;
	while (raft_core_has_ready(n->core)) {
		raft_ready rd;
		int rc = raft_core_ready(n->core, &rd);
		MS_ASSERT(rc == 0);
		log_job *snapjob = NULL;
		if (rd.snapshot) {
			/* Raft §7: the state machine is replaced (apply thread, in
			 * order) and the whole log with it (writer thread, in order). */
			MS_ASSERT(n->incoming_dir != NULL);
			apply_job *aj = ms_calloc(1, sizeof *aj);
			MS_ASSERT(aj != NULL);
			aj->install_dir = n->incoming_dir;
			aj->install_index = rd.snapshot->index;
			n->incoming_dir = NULL;
			ms_queue_push(n->apply_q, aj);
			snapjob = ms_calloc(1, sizeof *snapjob);
			MS_ASSERT(snapjob != NULL);
			snapjob->truncate_from = rd.snapshot->index + 1;
			snapjob->compact_index = rd.snapshot->index;
			snapjob->compact_term = rd.snapshot->term;
			snapjob->compact_conf =
			    raft_conf_state_encode(&rd.snapshot->conf_state, &snapjob->compact_conf_len);
			MS_ASSERT(snapjob->compact_conf != NULL);
			snapjob->persisted_index = rd.snapshot->index;
			snapjob->persisted_term = rd.snapshot->term;
			ms_queue_push(n->log_q, snapjob);
		}
		if (rd.hs_changed)
			n->hs_latest = (raft_log_hs){rd.hs.term, rd.hs.vote, rd.hs.commit};
		bool hs_must = n->hs_latest.term != n->hs_queued.term || n->hs_latest.vote != n->hs_queued.vote;
		if (rd.n_entries || hs_must || rd.truncate_from || rd.n_msgs_after_persist) {
			/* votes and append responses go out only once this batch, and
			 * every earlier one, is durable (Raft Figure 2) */
			log_job *j = make_log_job(&rd);
			if (memcmp(&n->hs_latest, &n->hs_queued, sizeof n->hs_latest) != 0) {
				j->has_hs = true;
				j->hs = n->hs_latest;
				n->hs_queued = n->hs_latest;
			}
			j->after = copy_msgs(rd.msgs_after_persist, rd.n_msgs_after_persist);
			j->nafter = rd.n_msgs_after_persist;
			ms_queue_push(n->log_q, j);
		}
		/* the leader's appends go out while its own write runs */
		send_msgs(n, rd.msgs, rd.n_msgs);
		if (rd.n_committed)
			ms_queue_push(n->apply_q, make_apply_job(&rd));

		/* read states are handed out after advance (callbacks may propose) */
		uint64_t *read_ids = NULL, *read_idx = NULL;
		size_t nr = 0;
		if (rd.n_reads) {
			read_ids = ms_malloc(2 * rd.n_reads * sizeof *read_ids);
			MS_ASSERT(read_ids != NULL);
			read_idx = read_ids + rd.n_reads;
		}
		for (size_t i = 0; i < rd.n_reads; i++) {
			if (rd.reads[i].context_len != 8)
				continue;
			read_ids[nr] = ms_get_u64le(rd.reads[i].context);
			read_idx[nr++] = rd.reads[i].index;
		}
		bool leader_changed = rd.leader != n->leader || raft_core_term(n->core) != n->term;
		raft_core_advance(n->core, &rd);

		if (leader_changed) {
			uint64_t old = n->leader;
			n->leader = raft_core_leader(n->core);
			n->term = raft_core_term(n->core);
			if (n->leader != old && n->leader == n->id)
				MS_NOTICE("raft", "%llx became leader at term %llu", (unsigned long long)n->id,
				          (unsigned long long)n->term);
			if (n->leader != old && n->leader)
				MS_INFO("raft", "raft.node: %llx elected leader %llx at term %llu",
				        (unsigned long long)n->id, (unsigned long long)n->leader,
				        (unsigned long long)n->term);
			else if (n->leader != old)
				MS_INFO("raft", "raft.node: %llx lost leader %llx at term %llu",
				        (unsigned long long)n->id, (unsigned long long)old,
				        (unsigned long long)n->term);
			if (n->cb.on_leader)
				n->cb.on_leader(n->ud, n->leader, n->term);
		}
		for (size_t i = 0; i < nr; i++)
			if (n->cb.on_read)
				n->cb.on_read(n->ud, read_ids[i], read_idx[i]);
		for (size_t i = 0; i < n->nsnap_failed; i++)
			raft_core_report_snapshot(n->core, n->snap_failed[i], false);
		n->nsnap_failed = 0;
		ms_free(read_ids);
	}
	n->driving = false;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	raft_node *n = arg;
	raft_core_tick(n->core);
	drive(n);
}

static void on_log_done(evutil_socket_t fd, short what, void *arg)
{
	raft_node *n = arg;
	ms_queue_ack(n->log_done_q);
	log_job *j;
	while ((j = ms_queue_pop(n->log_done_q))) {
		if (j->rc) {
			/* The log is the durable record of acknowledged writes: a member
			 * that cannot write it must not go on. */
			MS_ERROR("raft", "%llx: raft log write failed; stopping", (unsigned long long)n->id);
			abort();
		}
		send_msgs(n, j->after, j->nafter);
		free_msgs(j->after, j->nafter);
		ms_free(j->compact_conf);
		if (j->persisted_index)
			raft_core_persisted(n->core, j->persisted_index, j->persisted_term);
		ms_free(j);
	}
	drive(n);
}

/* Raft §7: the state machine is durable up to synced, so the log below it
 * (less a margin for followers that lag a little) can go, in the core and
 * on disk. The on-disk compaction runs on the writer thread, in order. The
 * membership recorded is the applied one: conf changes within the margin
 * are still in the kept log. */
static void compact_log(raft_node *n, uint64_t synced)
{
	uint64_t margin = MS_MIN((uint64_t)CATCHUP_ENTRIES, n->snapshot_count);
	if (synced <= margin)
		return;
	uint64_t index = synced - margin;
	if (index < raft_core_first_index(n->core))
		return;
	uint64_t term = raft_core_term_at(n->core, index);
	const raft_conf_state *cs = raft_core_conf_state(n->core);
	size_t len;
	uint8_t *conf = raft_conf_state_encode(cs, &len);
	MS_ASSERT(conf != NULL);
	if (raft_core_compact(n->core, index, term, cs) != 0) {
		ms_free(conf);
		return;
	}
	log_job *j = ms_calloc(1, sizeof *j);
	MS_ASSERT(j != NULL);
	j->compact_index = index;
	j->compact_term = term;
	j->compact_conf = conf;
	j->compact_conf_len = len;
	ms_queue_push(n->log_q, j);
}

static void on_applied(evutil_socket_t fd, short what, void *arg)
{
	raft_node *n = arg;
	ms_queue_ack(n->applied_q);
	applied_note *a;
	uint64_t last = 0, synced = 0;
	while ((a = ms_queue_pop(n->applied_q))) {
		if (a->rc) {
			MS_ERROR("etcdserver", "applying entry %llu failed (%s); stopping",
			         (unsigned long long)a->index, ms_strerror(a->rc));
			abort();
		}
		last = a->index;
		if (a->synced)
			synced = a->index;
		ms_free(a);
	}
	if (last) {
		raft_core_applied(n->core, last);
		if (synced)
			compact_log(n, synced);
		if (n->cb.on_applied)
			n->cb.on_applied(n->ud, last);
		drive(n);
	}
}

/* ---- transport callbacks (loop) ---- */
static void tr_on_msg(void *ud, const raft_msg *m)
{
	raft_node *n = ud;
	raft_core_step(n->core, m);
	drive(n);
}

/* Forwarded proposals start with a tag: 'P' + entry data, or 'C' + a conf
 * change ([u8 type][u64 LE node id][context], raft_conf_change_encode). */
#define FWD_PROPOSAL 'P'
#define FWD_CONF_CHANGE 'C'
#define FWD_PEER_REQ 'Q'  /* a server-level request outside the log */
#define FWD_PEER_RESP 'R' /* its answer */

static void tr_on_forward(void *ud, uint64_t from, const uint8_t *data, size_t len)
{
	raft_node *n = ud;
	/* a follower's proposal; if leadership moved on meanwhile it is dropped
	 * and the follower's caller times out, as in etcd */
	int rc = MS_EINVAL;
	if (len >= 1 && (data[0] == FWD_PEER_REQ || data[0] == FWD_PEER_RESP)) {
		if (n->cb.on_peer)
			n->cb.on_peer(n->ud, from, data[0] == FWD_PEER_RESP, data + 1, len - 1);
		return;
	}
	/* only what the server validated enters the log */
	if (len >= 1 && data[0] == FWD_PROPOSAL) {
		if (!n->cb.check_forward || (rc = n->cb.check_forward(n->ud, from, false, data + 1, len - 1)) == 0)
			rc = raft_core_propose(n->core, data + 1, len - 1, NULL, NULL);
	} else if (len >= 1 && data[0] == FWD_CONF_CHANGE) {
		raft_conf_change cc;
		if (raft_conf_change_decode(data + 1, len - 1, &cc) == 0 &&
		    (!n->cb.check_forward ||
		     (rc = n->cb.check_forward(n->ud, from, true, cc.context, cc.context_len)) == 0))
			rc = raft_core_propose_conf_change(n->core, &cc, NULL, NULL);
	}
	if (rc == 0)
		drive(n);
	else
		MS_DEBUG("raft", "%llx: dropped a proposal forwarded by %llx (%s)", (unsigned long long)n->id,
		         (unsigned long long)from, ms_strerror(rc));
}

static int send_tagged(raft_node *n, uint64_t to, uint8_t tag, const uint8_t *data, size_t len);

static int forward(raft_node *n, uint8_t tag, const uint8_t *data, size_t len)
{
	uint64_t leader = raft_core_leader(n->core);
	if (leader == RAFT_NONE || !n->tr)
		return MS_ENO_LEADER;
	return send_tagged(n, leader, tag, data, len);
}

int raft_node_peer_send(raft_node *n, uint64_t to, bool response, const uint8_t *data, size_t len)
{
	if (!n->tr)
		return MS_EAGAIN;
	return send_tagged(n, to, response ? FWD_PEER_RESP : FWD_PEER_REQ, data, len);
}

static int send_tagged(raft_node *n, uint64_t to, uint8_t tag, const uint8_t *data, size_t len)
{
	uint8_t stackbuf[4096];
	uint8_t *buf = len + 1 <= sizeof stackbuf ? stackbuf : ms_malloc(len + 1);
	if (!buf)
		return MS_ENOMEM;
	buf[0] = tag;
	if (len)
		memcpy(buf + 1, data, len);
	int rc = raft_transport_forward(n->tr, to, buf, len + 1);
	if (buf != stackbuf)
		ms_free(buf);
	return rc == 0 ? 0 : MS_EAGAIN;
}

static void tr_on_unreachable(void *ud, uint64_t peer)
{
	raft_node *n = ud;
	raft_core_report_unreachable(n->core, peer);
	drive(n);
}

static int tr_on_join(void *ud, const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len)
{
	raft_node *n = ud;
	return n->cb.on_join ? n->cb.on_join(n->ud, req, len, resp, resp_len) : MS_EUNSUPPORTED;
}

int raft_node_join(const char *url, struct ms_tls *tls, const uint8_t *req, size_t len, uint8_t **resp,
                   size_t *resp_len, ms_err *err)
{
	return raft_transport_join(url, tls, req, len, 5000, resp, resp_len, err);
}

static void tr_on_snapshot_sent(void *ud, uint64_t peer, bool ok)
{
	raft_node *n = ud;
	for (size_t i = 0; i < n->nsnap_out; i++) {
		if (n->snap_out[i].to != peer)
			continue;
		ms_rmtree(n->snap_out[i].dir);
		ms_free(n->snap_out[i].dir);
		n->snap_out[i] = n->snap_out[--n->nsnap_out];
		break;
	}
	MS_INFO("raft", "%llx: snapshot to %llx %s", (unsigned long long)n->id, (unsigned long long)peer,
	        ok ? "delivered" : "failed");
	raft_core_report_snapshot(n->core, peer, ok);
	drive(n);
}

/* Only the leader this member follows sends it snapshots (the transport
 * asks when a stream is announced, before any byte is written). */
static bool tr_snap_allowed(void *ud, uint64_t from, uint64_t bytes)
{
	raft_node *n = ud;
	return from != RAFT_NONE && raft_core_leader(n->core) == from && from != n->id;
}

/* A complete snapshot from the leader: stepped into the core, which asks
 * for its installation in a ready batch (or ignores it if it is stale). */
static void tr_on_snapshot(void *ud, const raft_msg *m, const char *dir)
{
	raft_node *n = ud;
	if (!n->cb.install) {
		MS_WARN("raft", "%llx: dropping a snapshot from %llx: this member cannot install snapshots",
		        (unsigned long long)n->id, (unsigned long long)m->from);
		ms_rmtree(dir);
		return;
	}
	if (n->incoming_dir) {
		ms_rmtree(n->incoming_dir);
		ms_free(n->incoming_dir);
	}
	n->incoming_dir = ms_strdup(dir);
	n->incoming_index = m->snapshot.index;
	MS_INFO("raft", "%llx: received a snapshot at %llu from %llx", (unsigned long long)n->id,
	        (unsigned long long)m->snapshot.index, (unsigned long long)m->from);
	raft_core_step(n->core, m);
	drive(n);
	if (n->incoming_dir) {
		/* not wanted (stale): the core kept its own log */
		ms_rmtree(n->incoming_dir);
		ms_free(n->incoming_dir);
		n->incoming_dir = NULL;
	}
}

/* ---- public ---- */
int raft_node_new(const raft_node_config *cfg, raft_node **out, ms_err *err)
{
	int rc;
	raft_node *n = ms_calloc(1, sizeof *n);
	if (!n)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	n->id = cfg->id;
	n->base = cfg->base;
	n->cb = cfg->cb;
	n->ud = cfg->ud;
	n->tick_ms = cfg->tick_ms > 0 ? cfg->tick_ms : 100;
	if (getrandom(&n->rng, sizeof n->rng, 0) != sizeof n->rng || n->rng == 0)
		n->rng = (uint64_t)ms_now_wall_ns() | 1;
	atomic_store(&n->applied, cfg->applied);
	n->snapshot_count = cfg->snapshot_count;
	n->compact_every = MS_MIN(cfg->snapshot_count, (uint64_t)COMPACT_EVERY);
	n->snap_dir = ms_strdup(cfg->snap_dir ? cfg->snap_dir : ".");
	n->last_sync = cfg->applied;

	if ((rc = raft_log_store_open(cfg->log_dir, cfg->create, &n->log, err)))
		goto fail;
	if (cfg->create) {
		/* bootstrap: the initial membership is the snapshot at index 0 */
		raft_conf_state cs = {(uint64_t *)cfg->voters, cfg->nvoters, NULL, 0};
		size_t len;
		uint8_t *conf = raft_conf_state_encode(&cs, &len);
		if (!conf) {
			rc = ms_err_set(err, MS_ENOMEM, "out of memory");
			goto fail;
		}
		rc = raft_log_store_compact(n->log, 0, 0, conf, len, err);
		ms_free(conf);
		if (rc)
			goto fail;
	}

	raft_log_hs hs;
	uint64_t snap_index, snap_term;
	uint8_t *conf = NULL;
	size_t conf_len;
	load_ctx lc = {0};
	rc = raft_log_store_load(n->log, &hs, &snap_index, &snap_term, &conf, &conf_len, load_entry, &lc, err);
	if (rc) {
		load_free(&lc);
		goto fail;
	}
	n->hs_queued = n->hs_latest = hs;
	raft_restore rs = {.hs = {hs.term, hs.vote, hs.commit},
	                   .snap = {snap_index, snap_term, {0}},
	                   .entries = lc.ents,
	                   .n_entries = lc.n,
	                   .applied = cfg->applied};
	if (conf && (rc = raft_conf_state_decode(conf, conf_len, &rs.snap.conf_state))) {
		ms_free(conf);
		load_free(&lc);
		rc = ms_err_set(err, MS_ECORRUPT, "raft log: bad membership record in snapshot meta");
		goto fail;
	}
	ms_free(conf);
	if (rs.applied < snap_index)
		rs.applied = snap_index;
	raft_config rcfg = {.id = n->id,
	                    .election_tick = cfg->election_ticks > 0 ? cfg->election_ticks : 10,
	                    .heartbeat_tick = 1,
	                    .pre_vote = true,
	                    .check_quorum = true,
	                    .rand = node_rand,
	                    .rand_ud = n};
	rc = raft_core_new(&rcfg, &rs, &n->core, err);
	raft_conf_state_free(&rs.snap.conf_state);
	load_free(&lc);
	if (rc)
		goto fail;
	n->term = raft_core_term(n->core);

	if ((rc = ms_queue_new(4096, &n->log_q)) || (rc = ms_queue_new(4096, &n->log_done_q)) ||
	    (rc = ms_queue_new(4096, &n->apply_q)) ||
	    (rc = cfg->applied_wake ? ms_queue_new_sharing(4096, cfg->applied_wake, &n->applied_q)
	                            : ms_queue_new(4096, &n->applied_q))) {
		ms_err_set(err, rc, "cannot create queues");
		goto fail;
	}
	if (cfg->nlisten_urls || cfg->npeers) {
		raft_transport_cb tcb = {.on_msg = tr_on_msg,
		                         .on_forward = tr_on_forward,
		                         .on_unreachable = tr_on_unreachable,
		                         .on_snapshot_sent = tr_on_snapshot_sent,
		                         .on_snapshot = tr_on_snapshot,
		                         .on_join = tr_on_join,
		                         .snap_allowed = tr_snap_allowed};
		if ((rc = raft_transport_new(n->base, cfg->cluster_id, n->id, cfg->snap_dir, &tcb, n, &n->tr, err)))
			goto fail;
		raft_transport_set_tls(n->tr, cfg->peer_tls);
		for (size_t i = 0; i < cfg->nlisten_urls; i++)
			if ((rc = raft_transport_listen(n->tr, cfg->listen_urls[i], err)))
				goto fail;
		for (size_t i = 0; i < cfg->npeers; i++)
			if ((rc = raft_transport_set_peer(n->tr, cfg->peers[i].id, cfg->peers[i].urls,
			                                  cfg->peers[i].nurls))) {
				ms_err_set(err, rc, "bad peer URL for member %llx",
				           (unsigned long long)cfg->peers[i].id);
				goto fail;
			}
	}
	*out = n;
	return 0;
fail:
	raft_node_free(n);
	return rc;
}

int raft_node_start(raft_node *n, ms_err *err)
{
	if (pthread_create(&n->writer, NULL, writer_main, n) != 0)
		return ms_err_set(err, MS_EIO, "cannot start the raft log writer thread");
	if (pthread_create(&n->applier, NULL, applier_main, n) != 0) {
		ms_queue_push(n->log_q, &stop_sentinel);
		pthread_join(n->writer, NULL);
		return ms_err_set(err, MS_EIO, "cannot start the apply thread");
	}
	n->threads_started = true;
	pthread_setname_np(n->writer, "ms-logwriter");
	pthread_setname_np(n->applier, "ms-apply");
	n->log_done_ev = event_new(n->base, ms_queue_fd(n->log_done_q), EV_READ | EV_PERSIST, on_log_done, n);
	n->applied_ev = event_new(n->base, ms_queue_fd(n->applied_q), EV_READ | EV_PERSIST, on_applied, n);
	n->tick_ev = event_new(n->base, -1, EV_PERSIST, on_tick, n);
	if (!n->log_done_ev || !n->applied_ev || !n->tick_ev)
		return ms_err_set(err, MS_ENOMEM, "out of memory");
	struct timeval tv = {n->tick_ms / 1000, (n->tick_ms % 1000) * 1000};
	event_add(n->log_done_ev, NULL);
	event_add(n->applied_ev, NULL);
	event_add(n->tick_ev, &tv);

	/* A lone voter need not wait for an election timeout: logical ticks
	 * until it campaigns (the core decides; nothing else can vote). */
	const raft_conf_state *cs = raft_core_conf_state(n->core);
	if (cs->n_voters == 1 && cs->voters[0] == n->id) {
		for (int i = 0; i < 1000 && raft_core_role(n->core) != RAFT_LEADER; i++) {
			raft_core_tick(n->core);
			drive(n);
			if (raft_core_role(n->core) == RAFT_CANDIDATE || raft_core_role(n->core) == RAFT_PRE_CANDIDATE)
				break; /* the vote must be persisted first; the log writer completes it */
		}
	}
	drive(n);
	return 0;
}

void raft_node_free(raft_node *n)
{
	if (!n)
		return;
	if (n->threads_started) {
		ms_queue_push(n->log_q, &stop_sentinel);
		ms_queue_push(n->apply_q, &stop_sentinel);
		pthread_join(n->writer, NULL);
		pthread_join(n->applier, NULL);
	}
	raft_transport_free(n->tr);
	for (size_t i = 0; i < n->nsnap_out; i++) {
		ms_rmtree(n->snap_out[i].dir);
		ms_free(n->snap_out[i].dir);
	}
	ms_free(n->snap_out);
	ms_free(n->snap_failed);
	if (n->incoming_dir)
		ms_rmtree(n->incoming_dir);
	ms_free(n->incoming_dir);
	ms_free(n->snap_dir);
	if (n->tick_ev)
		event_free(n->tick_ev);
	if (n->log_done_ev)
		event_free(n->log_done_ev);
	if (n->applied_ev)
		event_free(n->applied_ev);
	void *p;
	ms_queue *qs[] = {n->log_q, n->log_done_q, n->apply_q, n->applied_q};
	for (size_t i = 0; i < MS_ARRAY_LEN(qs); i++) {
		if (!qs[i])
			continue;
		while ((p = ms_queue_pop(qs[i]))) {
			if (p == &stop_sentinel)
				continue;
			if (qs[i] == n->apply_q && ((apply_job *)p)->install_dir) {
				ms_rmtree(((apply_job *)p)->install_dir);
				ms_free(((apply_job *)p)->install_dir);
			}
			if (qs[i] == n->log_q || qs[i] == n->log_done_q) {
				free_msgs(((log_job *)p)->after, ((log_job *)p)->nafter);
				ms_free(((log_job *)p)->compact_conf);
			}
			ms_free(p);
		}
		ms_queue_del(qs[i]);
	}
	raft_core_del(n->core);
	raft_log_store_close(n->log);
	ms_free(n);
}

int raft_node_propose(raft_node *n, const uint8_t *data, size_t len)
{
	int rc = raft_core_propose(n->core, data, len, NULL, NULL);
	if (rc == MS_ENOT_LEADER)
		return forward(n, FWD_PROPOSAL, data, len);
	if (rc == 0)
		drive(n);
	return rc;
}

int raft_node_propose_conf_change(raft_node *n, raft_node_cc_type type, uint64_t node_id, const uint8_t *ctx,
                                  size_t len)
{
	raft_conf_change cc = {(raft_conf_change_type)type, node_id, ctx, len};
	int rc = raft_core_propose_conf_change(n->core, &cc, NULL, NULL);
	if (rc == MS_ENOT_LEADER) {
		size_t elen;
		uint8_t *enc = raft_conf_change_encode(&cc, &elen);
		if (!enc)
			return MS_ENOMEM;
		rc = forward(n, FWD_CONF_CHANGE, enc, elen);
		ms_free(enc);
		return rc;
	}
	if (rc == 0)
		drive(n);
	return rc;
}

bool raft_node_peer_progress(const raft_node *n, uint64_t id, uint64_t *match, uint64_t *last)
{
	*last = raft_core_last_index(n->core);
	return raft_core_peer_match(n->core, id, match);
}

int raft_node_set_peer(raft_node *n, uint64_t id, char *const *urls, size_t nurls)
{
	return n->tr && id != n->id ? raft_transport_set_peer(n->tr, id, urls, nurls) : 0;
}

void raft_node_remove_peer(raft_node *n, uint64_t id)
{
	if (n->tr)
		raft_transport_remove_peer(n->tr, id);
}

bool raft_node_peer_active(const raft_node *n, uint64_t id)
{
	return id == n->id || (n->tr && raft_transport_peer_active(n->tr, id));
}

int raft_node_read_index(raft_node *n, uint64_t read_id)
{
	uint8_t ctx[8];
	ms_put_u64le(ctx, read_id);
	int rc = raft_core_read_index(n->core, ctx, sizeof ctx);
	if (rc == 0)
		drive(n);
	return rc;
}

int raft_node_transfer_leader(raft_node *n, uint64_t target)
{
	int rc = raft_core_transfer_leader(n->core, target);
	if (rc == 0)
		drive(n);
	return rc;
}

uint64_t raft_node_id(const raft_node *n)
{
	return n->id;
}
uint64_t raft_node_leader(const raft_node *n)
{
	return raft_core_leader(n->core);
}
uint64_t raft_node_term(const raft_node *n)
{
	return raft_core_term(n->core);
}
uint64_t raft_node_commit(const raft_node *n)
{
	return raft_core_commit(n->core);
}
uint64_t raft_node_applied(const raft_node *n)
{
	return atomic_load(&((raft_node *)n)->applied);
}
uint64_t raft_node_last_index(const raft_node *n)
{
	return raft_core_last_index(n->core);
}
bool raft_node_is_leader(const raft_node *n)
{
	return raft_core_role(n->core) == RAFT_LEADER;
}

int raft_node_conf_change_decode(const uint8_t *data, size_t len, raft_node_conf_change *out)
{
	raft_conf_change cc;
	int rc = raft_conf_change_decode(data, len, &cc);
	if (rc)
		return rc;
	*out = (raft_node_conf_change){(raft_node_cc_type)cc.type, cc.node_id, cc.context, cc.context_len};
	return 0;
}
