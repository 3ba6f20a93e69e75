#!/usr/bin/env python3
"""hostile_peer.py — attacks on a member's peer port, for test_hostile_peer.sh.

Speaks the transport's framing (raft/transport.h): [u32 BE length of
kind+payload][u8 kind][payload], payloads hand-encoded protobuf
(proto/raftpb.proto, proto/internal.proto). Each command prints one line
"result: ..." describing what the server did, and exits 0 when the probe
itself ran (the shell test judges the outcome).

  forward HOST PORT CLUSTER FROM TO       forged FORWARD frames (garbage, invalid requests)
  join HOST PORT                          JOIN as a made-up member; prints the member count answered
  raft HOST PORT CLUSTER FROM TO TERM     raft messages (APP, TIMEOUT_NOW) from FROM at TERM
  snapshot HOST PORT CLUSTER FROM TO ANNOUNCE SEND
                                          a snapshot stream announcing ANNOUNCE bytes, sending SEND
  ungreeted HOST PORT N MIB HOLD          N connections announcing a 64 MiB first frame, each
                                          trying to send MIB MiB of it, held open HOLD seconds
"""
import socket
import struct
import sys
import time

HELLO, MSG, FORWARD, SNAP_CHUNK, SNAP_END, SNAP_ACK, JOIN, JOIN_RESP, SNAP_BEGIN = range(1, 10)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(field, n):
    return varint(field << 3) + varint(n)


def f_bytes(field, b):
    return varint(field << 3 | 2) + varint(len(b)) + b


def frame(kind, payload):
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def hello(cluster, frm, to):
    return frame(HELLO, f_varint(1, cluster) + f_varint(2, frm) + f_varint(3, to) + f_varint(4, 1))


def connect(host, port):
    s = socket.create_connection((host, int(port)), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def closed_by_peer(s, wait=3.0):
    """True when the server closes the connection within wait seconds."""
    s.settimeout(0.2)
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            d = s.recv(65536)
            if not d:
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def send_all(s, data):
    try:
        s.sendall(data)
        return True
    except OSError:
        return False


def cmd_forward(host, port, cluster, frm, to):
    cluster, frm, to = int(cluster), int(frm), int(to)
    put_empty_key = f_varint(1, (1 << 50) + 42) + f_varint(2, frm) + f_bytes(10, f_bytes(2, b"v"))  # PutRequest{value}
    unknown_kind = f_varint(1, (1 << 50) + 43) + f_varint(2, frm) + f_bytes(99, b"\x08\x01")
    other_proposer = f_varint(1, (1 << 50) + 44) + f_varint(2, frm + 1) + f_bytes(10, f_bytes(1, b"k") + f_bytes(2, b"v"))
    payloads = [
        b"P" + b"\xff\xff\xff\xff\x0f\x12\x80",  # does not decode
        b"P" + put_empty_key,
        b"P" + unknown_kind,
        b"P" + other_proposer,
        b"C" + b"\x00" + struct.pack("<Q", 0x1234) + b"\xff\xff",  # add voter 0x1234, context garbage
        b"C" + b"\x00" + struct.pack("<Q", 0x1235),  # add voter without any context
    ]
    s = connect(host, port)
    ok = send_all(s, hello(cluster, frm, to))
    sent = 0
    for p in payloads:
        if not ok:
            break
        ok = send_all(s, frame(FORWARD, p))
        sent += ok
    closed = closed_by_peer(s, 1.0)
    s.close()
    print("result: sent %d forged FORWARD frames, connection %s" % (sent, "closed" if closed else "kept"))


def cmd_join(host, port):
    # a made-up member asking to join with its own peer URL
    member = f_varint(1, 0xBADBAD) + f_bytes(3, b"http://127.0.0.1:9")
    s = connect(host, port)
    send_all(s, hello(0, 0, 0) + frame(JOIN, member))
    s.settimeout(5)
    buf = b""
    try:
        while len(buf) < 5 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    except OSError:
        pass
    # a second JOIN, then a raft frame on the join connection: closed
    send_all(s, frame(JOIN, member))
    closed = closed_by_peer(s, 3.0)
    s.close()
    n = 0
    if len(buf) >= 5 and buf[4] == JOIN_RESP:
        body = buf[5:]
        i = 0
        # MemberListResponse: header = 1, members = 2 (count the members)
        while i < len(body):
            key = body[i]
            i += 1
            if key & 7 == 2:
                ln, shift = 0, 0
                while True:
                    b = body[i]
                    i += 1
                    ln |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                if key >> 3 == 2:
                    n += 1
                i += ln
            else:
                while body[i] & 0x80:
                    i += 1
                i += 1
    print("result: join answered with %d members; second request %s" % (n, "closed" if closed else "kept"))


def raft_msg(typ, frm, to, term, index=0, entries=b""):
    return f_varint(1, typ) + f_varint(2, frm) + f_varint(3, to) + f_varint(4, term) + f_varint(6, index) + entries


def cmd_raft(host, port, cluster, frm, to, term):
    cluster, frm, to, term = int(cluster), int(frm), int(to), int(term)
    ent = f_bytes(10, f_varint(1, term) + f_varint(2, 1 << 40) + f_bytes(4, b"\xff\xff\xff"))
    s = connect(host, port)
    ok = send_all(s, hello(cluster, frm, to))
    ok = ok and send_all(s, frame(MSG, raft_msg(1, frm, to, term, 1 << 40, ent)))  # APP at a later term
    ok = ok and send_all(s, frame(MSG, raft_msg(10, frm, to, term)))  # TIMEOUT_NOW
    closed = closed_by_peer(s, 2.0)
    s.close()
    print("result: raft messages from %x %s, connection %s" % (frm, "sent" if ok else "cut", "closed" if closed else "kept"))


def cmd_snapshot(host, port, cluster, frm, to, announce, send):
    cluster, frm, to, announce, send = int(cluster), int(frm), int(to), int(announce), int(send)
    s = connect(host, port)
    ok = send_all(s, hello(cluster, frm, to) + frame(SNAP_BEGIN, f_varint(1, 1) + f_varint(2, announce)))
    chunk = b"\xab" * (1 << 20)
    off = 0
    while ok and off < send:
        n = min(len(chunk), send - off)
        ok = send_all(s, frame(SNAP_CHUNK, f_bytes(1, b"db") + f_varint(2, off) + f_bytes(3, chunk[:n])))
        off += n if ok else 0
    closed = not ok or closed_by_peer(s, 3.0)
    s.close()
    print("result: announced %d, sent %d of %d bytes, stream %s" % (announce, off, send, "refused" if closed else "kept"))


def cmd_ungreeted(host, port, n, mib, hold):
    n, mib, hold = int(n), int(mib), float(hold)
    conns = []
    for _ in range(n):
        try:
            s = connect(host, port)
        except OSError:
            continue
        s.setblocking(False)
        conns.append([s, 0, True])
    head = struct.pack(">IB", 64 << 20, HELLO)  # a 64 MiB "HELLO"
    junk = b"\x00" * (256 << 10)
    for c in conns:
        try:
            c[0].send(head)
        except OSError:
            c[2] = False
    # push up to mib MiB on each, round robin, until done or refused
    deadline = time.time() + 10.0
    want = mib << 20
    while time.time() < deadline and any(c[2] and c[1] < want for c in conns):
        progress = False
        for c in conns:
            if not c[2] or c[1] >= want:
                continue
            try:
                k = c[0].send(junk[: min(len(junk), want - c[1])])
                c[1] += k
                progress = progress or k > 0
            except BlockingIOError:
                pass
            except OSError:
                c[2] = False
        if not progress:
            time.sleep(0.01)
    print("pushed: %d MiB" % (sum(c[1] for c in conns) >> 20), flush=True)
    time.sleep(hold)  # the connections stay open while the test measures the member
    # still open from the server's side?
    alive = 0
    for c in conns:
        s = c[0]
        try:
            d = s.recv(1)
            if d:
                alive += 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        s.close()
    sent = sum(c[1] for c in conns)
    print("result: %d connections, %d MiB pushed in total, %d still open after %.0f s" % (len(conns), sent >> 20, alive, hold))


def main(argv):
    cmds = {"forward": cmd_forward, "join": cmd_join, "raft": cmd_raft, "snapshot": cmd_snapshot, "ungreeted": cmd_ungreeted}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    cmds[argv[1]](*argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
