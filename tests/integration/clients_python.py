#!/usr/bin/python3
# clients_python.py — python3-etcd3 (gRPC's C core through grpcio) against
# etcd 3.4 and MetaStore side by side: the same scenario runs on both fresh
# members and every observable result is compared; results that must hold
# on their own (a one-shot lease refresh ends at once, a key expires) are
# checked on both. Usage: clients_python.py ETCD_HOST:PORT MS_HOST:PORT
# Prints "ok: ..." / "FAIL: ..." lines and a count; exit 0 = no failure.
import sys
import threading
import time

import etcd3
import grpc
from etcd3.etcdrpc import rpc_pb2

PASS, FAIL = [0], [0]


def ok(desc):
    PASS[0] += 1
    print("  ok: python: " + desc)


def fail(desc, detail=""):
    FAIL[0] += 1
    print("  FAIL: python: %s %s" % (desc, detail))


def check(desc, cond, detail=""):
    ok(desc) if cond else fail(desc, detail)


def client(ep):
    host, port = ep.rsplit(":", 1)
    # every call has a deadline: a stream that never ends fails the check
    # instead of hanging the test
    return etcd3.client(host=host, port=int(port), timeout=5)


def ev(e):
    kind = type(e).__name__
    return (kind, e.key.decode(), e.value.decode(), e.mod_revision)


def scenario(c, out):
    """Runs everything on one member; appends (name, result) to out."""

    def rec(name, value):
        out.append((name, value))

    # ---- KV ----
    rev0 = c.get_response(b"nosuchkey").header.revision
    rec("start revision", rev0)
    c.put("k1", "v1")
    c.put("k2", "v2")
    c.put("k3", "v3")
    v, meta = c.get("k1")
    rec("get k1", (v, meta.key, meta.create_revision - rev0, meta.mod_revision - rev0, meta.version))
    rec("get missing", c.get("nope"))
    rec("get_prefix", sorted((v.decode(), m.key.decode()) for v, m in c.get_prefix("k")))
    rec("get_all count", len(list(c.get_all())))
    r = c.put("k1", "v1b", prev_kv=True)
    rec("put prev_kv", r.prev_kv.value)
    rec("delete existing", c.delete("k3"))
    rec("delete missing", c.delete("k3"))
    rec("sorted descend by key", [m.key for v, m in c.get_prefix("k", sort_order="descend", sort_target="key")])
    # ---- txn ----
    ok1, res = c.transaction(compare=[c.transactions.value("k1") == "v1b"],
                             success=[c.transactions.put("t1", "yes"), c.transactions.get("k2")],
                             failure=[c.transactions.put("t1", "no")])
    rec("txn success", (ok1, [[(v, m.key) for v, m in part] if isinstance(part, list) else type(part).__name__
                              for part in res]))
    ok2, _ = c.transaction(compare=[c.transactions.version("k2") > 5],
                           success=[c.transactions.put("t2", "yes")],
                           failure=[c.transactions.put("t2", "no"), c.transactions.delete("k2")])
    rec("txn failure branch", (ok2, c.get("t2")[0], c.get("k2")[0]))
    ok3, _ = c.transaction(compare=[c.transactions.create("nokey") == 0, c.transactions.mod("k1") > 0],
                           success=[], failure=[])
    rec("txn compare create/mod", ok3)

    # ---- watch: history, live, cancel ----
    base = c.get_response(b"nosuchkey").header.revision
    for i in range(3):
        c.put("w/%d" % i, "h%d" % i)
    c.delete("w/1")
    it, cancel = c.watch_prefix("w/", start_revision=base + 1)
    hist = []
    for e in it:
        hist.append(ev(e))
        if len(hist) == 4:
            break
    cancel()
    rec("watch history", [(k, key, val, rv - rev0) for k, key, val, rv in hist])
    got = []
    done = threading.Event()

    def cb(resp):
        if isinstance(resp, Exception):
            return
        for e in resp.events:
            got.append(ev(e))
        if len(got) >= 2:
            done.set()

    wid = c.add_watch_callback("live", callback=cb)
    c.put("live", "a")
    c.put("live", "b")
    done.wait(5)
    c.cancel_watch(wid)
    c.put("live", "after-cancel")
    time.sleep(0.3)  # a canceled watch must not see this put: give it the chance
    rec("live watch then cancel", [(k, key, val, rv - rev0) for k, key, val, rv in got])
    # a Watch stream whose client half-closes keeps serving (etcd's recvLoop
    # returns nil on EOF and the stream lives until the client cancels)
    def wgen():
        yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"hc"))

    ws = etcd3.etcdrpc.WatchStub(c.channel).Watch(wgen(), 10)
    created = next(ws)
    c.put("hc", "after-half-close")
    evs = next(ws)
    ws.cancel()
    rec("watch after client half-close", (created.created, [e.kv.value for e in evs.events]))
    one = c.watch_once("w/0", timeout=5, start_revision=base + 1)
    rec("watch_once from history", (type(one).__name__, one.value))

    # ---- leases ----
    lease = c.lease(30)
    rec("lease granted ttl", lease.granted_ttl)
    c.put("lk", "lv", lease=lease)
    t0 = time.time()
    try:
        replies = lease.refresh()
        took = time.time() - t0
        rec("one-shot refresh (half-close) replies", [(r.TTL > 0, r.ID == lease.id) for r in replies])
        rec("one-shot refresh ends at once", took < 2.5)
    except Exception as e:  # etcd3 raises ConnectionTimeoutError after the deadline
        rec("one-shot refresh (half-close) replies", "error %s" % type(e).__name__)
        rec("one-shot refresh ends at once", False)
    rec("lease keys", [k for k in lease.keys])
    rec("lease remaining ttl sane", 0 < lease.remaining_ttl <= 30)
    # a keep-alive stream that stays open: three requests, three replies,
    # then the client half-closes and the stream ends with OK
    reqs = []
    stop = threading.Event()

    def gen():
        for _ in range(3):
            yield rpc_pb2.LeaseKeepAliveRequest(ID=lease.id)
            time.sleep(0.2)
        stop.wait(5)

    stream = c.leasestub.LeaseKeepAlive(gen(), 10)
    try:
        for r in stream:
            reqs.append((r.ID == lease.id, r.TTL > 0))
            if len(reqs) == 3:
                stop.set()
    except grpc.RpcError:
        pass
    rec("keep-alive stream: one reply per request, then OK", (reqs, stream.code().name))
    # keep-alive of an unknown lease: TTL 0, no error (etcd)
    try:
        rec("refresh unknown lease", [r.TTL for r in c.refresh_lease(0x1234)])
    except Exception as e:
        rec("refresh unknown lease", "raised %s" % type(e).__name__)
    lease.revoke()
    rec("revoke removes the key", c.get("lk"))
    rec("info of a revoked lease", c.get_lease_info(lease.id).TTL)
    short = c.lease(2)
    c.put("ex", "v", lease=short)
    deadline = time.time() + 10
    while time.time() < deadline and c.get("ex")[0] is not None:
        time.sleep(0.1)
    rec("expiry deletes the key", c.get("ex"))

    # ---- lock (python-etcd3's recipe: lease + txn on create revision) ----
    # Debian's python3-etcd3 0.12 with tenacity 8 raises TypeError when
    # acquire() has to wait (its wait callback has the old signature), so
    # waiting is polled here with acquire(timeout=0), which never waits.
    def acquire_polling(lock, secs):
        deadline = time.time() + secs
        while True:
            if lock.acquire(timeout=0):
                return True
            if time.time() >= deadline:
                return False
            time.sleep(0.1)

    lk = c.lock("mylock", ttl=10)
    rec("lock acquire", lk.acquire(timeout=0))
    rec("lock is held", lk.is_acquired())
    other = c.lock("mylock", ttl=10)
    rec("second lock refused while held", acquire_polling(other, 1))
    waiter = {}

    def wait_lock():
        waiter["got"] = acquire_polling(other, 8)

    th = threading.Thread(target=wait_lock)
    th.start()
    time.sleep(0.3)
    rec("release", lk.release())
    th.join(10)
    rec("waiter gets the lock after release", waiter.get("got"))
    other.release()

    # ---- status ----
    st = c.status()
    rec("status", (st.version, st.leader is not None, st.raft_term >= 1))

    # ---- compaction ----
    cur = c.get_response(b"nosuchkey").header.revision
    c.compact(cur - 2, physical=True)
    def range_at(rev):
        try:
            r = c.kvstub.Range(rpc_pb2.RangeRequest(key=b"k1", revision=rev), 5)
            return [kv.value for kv in r.kvs]
        except grpc.RpcError as e:
            return (e.code().name, e.details())

    rec("get a compacted revision", range_at(cur - 4))
    rec("get at the compact revision", range_at(cur - 2))
    canceled = {}
    d2 = threading.Event()

    def ccb(resp):
        canceled["r"] = type(resp).__name__ if isinstance(resp, Exception) else repr(resp)
        d2.set()

    try:
        c.add_watch_callback("k1", callback=ccb, start_revision=cur - 4)
        d2.wait(5)
        rec("watch from a compacted revision", canceled.get("r"))
    except Exception as e:
        rec("watch from a compacted revision", type(e).__name__)


def main():
    eps = sys.argv[1:3]
    results = {}
    for name, ep in zip(("etcd", "metastore"), eps):
        results[name] = []
        try:
            scenario(client(ep), results[name])
        except Exception as e:
            import traceback
            traceback.print_exc()
            fail("%s: scenario raised" % name, repr(e))
    e, m = results["etcd"], results["metastore"]
    names = [n for n, _ in e] or [n for n, _ in m]
    em, mm = dict(e), dict(m)
    must_hold = {"one-shot refresh ends at once": True}
    for n in names:
        if len(sys.argv) > 3:  # -v: what was compared
            print("    %s: %r" % (n, mm.get(n)))
        check("%s: same as etcd" % n, n in em and n in mm and em[n] == mm[n],
              "etcd=%r metastore=%r" % (em.get(n), mm.get(n)))
        if n in must_hold:
            check("%s: etcd" % n, em.get(n) == must_hold[n], repr(em.get(n)))
            check("%s: metastore" % n, mm.get(n) == must_hold[n], repr(mm.get(n)))
    print("python (python3-etcd3 %s, grpcio %s): %d passed, %d failed" %
          (getattr(etcd3, "__version__", "?"), grpc.__version__, PASS[0], FAIL[0]))
    sys.exit(1 if FAIL[0] else 0)


main()
