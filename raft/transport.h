/* transport.h — the raft peer transport (private to raft/): raft messages,
 * forwarded proposals and snapshot files between the members of a cluster,
 * over TCP on the node's libevent loop.
 *
 * Design
 *  - Threads: everything runs on one libevent loop (the node's). No call is
 *    thread-safe; call from the loop thread only.
 *  - Callbacks are never invoked from inside a raft_transport_* call: they
 *    always run from the loop (a dropped send reports on_unreachable a moment
 *    later). This matters because the node sends while it holds a raft_ready,
 *    and the core forbids mutating calls (report_unreachable) until advance.
 *    A callback may call any raft_transport_* function except
 *    raft_transport_free.
 *  - Listener: one per raft_transport_listen() URL (http(s)://host:port;
 *    port 0 picks a free port). TLS (https://, raft_transport_set_tls) lives
 *    in the single function that creates a connection's bufferevent
 *    (tr_bev_new in transport.c): a connection whose handshake fails (a
 *    certificate that does not verify) never reaches the frame handling.
 *  - Per peer: one OUTBOUND connection carries everything this member sends
 *    to it (in order). It is dialed on the first send; when it fails it is
 *    redialed with exponential backoff (100 ms doubling to 5 s, jittered with
 *    a deterministic xorshift seeded by the member id), rotating through the
 *    peer's URLs. Messages sent while it connects wait in its output buffer;
 *    messages sent while the peer is down (backing off) or whose output buffer
 *    is over the limit (64 MiB) are dropped and on_unreachable(peer) follows
 *    (raft retransmits; the node calls raft_core_report_unreachable). Frames
 *    queued when a connection dies are lost the same way. What a member
 *    receives arrives on the peer's inbound connections.
 *  - Every connection starts with a HELLO frame {cluster_id, from_id, to_id}
 *    from the dialer. The receiver closes a connection whose cluster_id or
 *    to_id do not match (warning names both), whose from_id is not one of
 *    its peers (raft_transport_set_peer: the current members), one that
 *    sends anything else first, and one that sends no HELLO within 10 s.
 *    Without peer TLS a HELLO proves nothing, so the member check is about
 *    mistakes and strays, not a defence against a host that can reach the
 *    peer port and knows a member id; the bounds below are that defence.
 *  - Bounds on what a connection can make this member hold (issue 10):
 *    before HELLO a frame may be at most RAFT_TRANSPORT_MAX_HELLO bytes and
 *    at most RAFT_TRANSPORT_MAX_UNGREETED connections may be waiting for
 *    their HELLO (more are closed at accept); a joiner's JOIN frame is at
 *    most RAFT_TRANSPORT_MAX_JOIN bytes and it gets one answer. After HELLO
 *    a connection's input buffer holds at most one frame (the read
 *    watermark is RAFT_TRANSPORT_MAX_FRAME plus the header: libevent stops
 *    reading until the frame is consumed), and a member id holds at most
 *    RAFT_TRANSPORT_MAX_CONNS_PER_PEER inbound connections (a new one
 *    closes the oldest). When a peer is removed its inbound connections are
 *    closed and frames from it are refused. Accept failures (EMFILE) pause
 *    the listener (100 ms doubling to 2 s) instead of spinning.
 *  - Frames: [u32 big-endian L][u8 kind][payload of L-1 bytes], 1 <= L <=
 *    RAFT_TRANSPORT_MAX_FRAME. Payloads are msraft.* protobufs
 *    (proto/raftpb.proto) except FORWARD (opaque bytes). A bad length, an
 *    unknown kind, an undecodable payload or a message not addressed to this
 *    member (to != self, from != the HELLO's from_id) closes that connection
 *    with a warning; nothing else is affected.
 *  - Snapshots: raft_transport_send_snapshot() opens a NEW connection to the
 *    peer, sends HELLO, SNAP_BEGIN {file count, byte count} (the totals it
 *    is about to send, measured when the stream starts), every regular file
 *    of a flat directory as SNAP_CHUNK frames of up to 1 MiB {name, offset,
 *    data}, then SNAP_END {SNAP msg, file count, byte count}. The receiver
 *    refuses (closes) a stream whose sender is not allowed (cb.snap_allowed:
 *    the node allows only the leader it follows), that announces more than
 *    the hard cap (raft_transport_set_snap_limits, default 64 GiB) or more
 *    than the free space of snap_dir minus a reserve (default 256 MiB, and
 *    minus what other streams in progress announced), that sends more than
 *    it announced, or a chunk before SNAP_BEGIN; at most
 *    RAFT_TRANSPORT_MAX_SNAPS_IN streams are received at once, and a stream
 *    that makes no progress for 60 s is closed. The receiver writes the files under
 *    <snap_dir>/incoming-<from>-<n>/, checks names (no '/', not "." or "..")
 *    and totals, calls on_snapshot(msg, dir) and answers SNAP_ACK; the sender
 *    then reports on_snapshot_sent(peer, true). A failure anywhere (either
 *    side closes, a 60 s stall, a bad chunk) reports on_snapshot_sent(peer,
 *    false) and the receiver deletes the partial directory.
 *    Known limitation: file reads (sender) and write(2)s (receiver) of 1 MiB
 *    chunks run on the loop, and received files are not fsynced: the node
 *    must fsync (or copy durably) before it relies on them.
 */
#ifndef MS_RAFT_TRANSPORT_H
#define MS_RAFT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ms.h"
#include "raft/raft_core.h"

struct event_base;

#define RAFT_TRANSPORT_MAX_FRAME (64u << 20) /* L above this closes the connection */
#define RAFT_TRANSPORT_CHUNK (1u << 20)      /* snapshot chunk data size */

/* Frame kinds (the u8 after the length). */
typedef enum raft_transport_kind {
	RAFT_TR_HELLO = 1,      /* msraft.Hello */
	RAFT_TR_MSG = 2,        /* msraft.Message */
	RAFT_TR_FORWARD = 3,    /* opaque bytes: a proposal forwarded to the leader */
	RAFT_TR_SNAP_CHUNK = 4, /* msraft.SnapChunk */
	RAFT_TR_SNAP_END = 5,   /* msraft.SnapEnd */
	RAFT_TR_SNAP_ACK = 6,   /* msraft.SnapAck, receiver -> sender */
	RAFT_TR_JOIN = 7,       /* opaque bytes: a joining member asks for the cluster */
	RAFT_TR_JOIN_RESP = 8,  /* opaque bytes: the answer */
	RAFT_TR_SNAP_BEGIN = 9, /* msraft.SnapBegin: a snapshot stream's announced totals */
} raft_transport_kind;

#define RAFT_TRANSPORT_MAX_HELLO 1024u           /* largest frame before HELLO */
#define RAFT_TRANSPORT_MAX_JOIN (64u << 10)      /* largest JOIN request */
#define RAFT_TRANSPORT_MAX_UNGREETED 64          /* connections waiting for their HELLO */
#define RAFT_TRANSPORT_MAX_CONNS_PER_PEER 4      /* inbound connections per member id */
#define RAFT_TRANSPORT_MAX_SNAPS_IN 2            /* snapshot streams received at once */
#define RAFT_TRANSPORT_SNAP_CAP (64ull << 30)    /* default hard cap of one snapshot stream */
#define RAFT_TRANSPORT_SNAP_RESERVE (256u << 20) /* default free disk kept when receiving */

typedef struct raft_transport raft_transport;

/* Every callback runs on the loop, with ud as given to raft_transport_new.
 * Pointers passed in are borrowed for the call only unless said otherwise. */
typedef struct raft_transport_cb {
	/* A raft message from a peer (m->to == self). Step it into the core. */
	void (*on_msg)(void *ud, const raft_msg *m);
	/* Opaque bytes a peer sent with raft_transport_forward. */
	void (*on_forward)(void *ud, uint64_t from, const uint8_t *data, size_t len);
	/* A complete snapshot: m is the SNAP message, dir
	 * ("<snap_dir>/incoming-<from>-<n>", snap_dir as given) holds the files.
	 * The node now owns dir: it installs it or deletes it. If this callback
	 * is NULL the transport deletes dir. */
	void (*on_snapshot)(void *ud, const raft_msg *m, const char *dir);
	/* Something sent to peer was dropped or its connection failed. */
	void (*on_unreachable)(void *ud, uint64_t peer);
	/* A raft_transport_send_snapshot() to peer finished; ok = the receiver
	 * acknowledged it. Call raft_core_report_snapshot(peer, ok). */
	void (*on_snapshot_sent)(void *ud, uint64_t peer, bool ok);
	/* A member that is joining (--initial-cluster-state existing) and does
	 * not know its ID or the cluster yet connected with HELLO {0, 0, 0} and
	 * sent req. Return 0 with an ms_malloc'd answer (sent back as
	 * JOIN_RESP), or an error to close the connection. NULL = refuse. */
	int (*on_join)(void *ud, const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len);
	/* Member from announced a snapshot stream of bytes: may it send one
	 * now? NULL = any peer may. */
	bool (*snap_allowed)(void *ud, uint64_t from, uint64_t bytes);
} raft_transport_cb;

/* Creates a transport on base for member self_id of cluster cluster_id.
 * snap_dir (copied) is where incoming snapshots are written; it must exist.
 * cb is copied; any callback may be NULL. MS_EINVAL, MS_ENOMEM. */
int raft_transport_new(struct event_base *base, uint64_t cluster_id, uint64_t self_id, const char *snap_dir,
                       const raft_transport_cb *cb, void *ud, raft_transport **out, ms_err *err);
/* Closes every connection and listener and frees. Snapshot streams in
 * progress are abandoned without on_snapshot_sent; partial incoming
 * directories are deleted. Not from inside a callback. */
void raft_transport_free(raft_transport *t);

/* Tuning (tests use short backoffs): output buffer limit per peer in bytes
 * and the reconnect backoff range in milliseconds; 0 keeps a value. */
void raft_transport_set_limits(raft_transport *t, size_t max_queue_bytes, int backoff_min_ms, int backoff_max_ms);
/* Incoming snapshot bounds: the hard cap of one stream's announced bytes
 * and the free disk to keep in snap_dir; 0 keeps a value. */
void raft_transport_set_snap_limits(raft_transport *t, uint64_t max_bytes, uint64_t reserve_bytes);

/* Peer TLS (borrowed; it must outlive t): https:// listeners accept with it
 * and https:// peer URLs are dialed with it (the server certificate is
 * verified against the peer CA and the URL's host). Call before listening. */
struct ms_tls;
void raft_transport_set_tls(raft_transport *t, struct ms_tls *tls);

/* Listens on url ("http://host:port" or "https://host:port"; port 0 = any
 * free port). May be called once per --listen-peer-urls entry. MS_EINVAL for
 * a malformed URL or https:// without raft_transport_set_tls, MS_EIO when
 * the address can't be bound. */
int raft_transport_listen(raft_transport *t, const char *url, ms_err *err);
/* The port the first listener is bound to (0 if none). */
int raft_transport_port(const raft_transport *t);

/* Adds peer id or replaces its URLs (copied; "http://host:port"; the first
 * that connects is used). Replacing URLs closes the outbound connection so
 * the next send dials the new ones. MS_EINVAL (bad URL, id 0 or self).
 * An https:// URL is dialed with the TLS set by raft_transport_set_tls
 * (without one, each dial fails and the peer is unreachable). */
int raft_transport_set_peer(raft_transport *t, uint64_t id, char *const *urls, size_t n);
/* Forgets peer id and closes its outbound connection (queued frames are
 * dropped without a callback). Unknown ids are ignored. */
void raft_transport_remove_peer(raft_transport *t, uint64_t id);

/* Sends m to m->to. m is borrowed: it is encoded before returning. Returns 0
 * when queued; MS_EAGAIN when dropped (peer down or queue full;
 * on_unreachable(m->to) follows); MS_ENOTFOUND for an unknown peer (no
 * callback); MS_EINVAL when m does not fit a frame or is a RAFT_MSG_SNAP
 * (those go with raft_transport_send_snapshot; a receiver also refuses a SNAP
 * in a MSG frame). */
int raft_transport_send(raft_transport *t, const raft_msg *m);
/* Sends opaque bytes (copied) to peer to, on the same ordered connection as
 * its raft messages. Return codes as raft_transport_send. */
int raft_transport_forward(raft_transport *t, uint64_t to, const uint8_t *data, size_t len);
/* Streams the regular files of dir (read now and while streaming: keep the
 * directory until on_snapshot_sent) and then snap (a RAFT_MSG_SNAP, borrowed,
 * encoded at once) to snap->to on a new connection. 0 = started, and
 * on_snapshot_sent(snap->to, ok) follows exactly once; otherwise (MS_ENOTFOUND
 * unknown peer, MS_EIO unreadable dir, MS_EINVAL not a SNAP) no callback. */
int raft_transport_send_snapshot(raft_transport *t, const raft_msg *snap, const char *dir);

/* Joining: connects to url (http(s)://host:port; https with tls, blocking
 * TLS, the server verified as for any dial) with blocking sockets (only for
 * start-up, before the loop runs), sends HELLO {0, 0, 0} and JOIN req, and
 * returns the JOIN_RESP payload (ms_malloc'd). MS_EIO, MS_ETIMEOUT. */
int raft_transport_join(const char *url, struct ms_tls *tls, const uint8_t *req, size_t len, int timeout_ms,
                        uint8_t **resp, size_t *resp_len, ms_err *err);

/* True while the outbound connection to id is established (etcd's "active
 * peer" for its started-members checks). */
bool raft_transport_peer_active(const raft_transport *t, uint64_t id);

/* ---- wire codec (transport_codec.c), separately testable ---- */

/* Encodes m as an msraft.Message into a new ms_malloc'd buffer (caller
 * frees). MS_EINVAL (bad type), MS_ENOMEM. */
int raft_transport_encode_msg(const raft_msg *m, uint8_t **buf, size_t *len, ms_err *err);
/* Decodes an msraft.Message into out, which then owns its storage (entries
 * and their data, context, conf state arrays): free with
 * raft_transport_msg_free. MS_EINVAL when malformed or a type/entry type is
 * unknown (out is left zeroed), MS_ENOMEM. */
int raft_transport_decode_msg(const uint8_t *buf, size_t len, raft_msg *out, ms_err *err);
/* Frees what raft_transport_decode_msg allocated and zeroes m. */
void raft_transport_msg_free(raft_msg *m);

#endif
