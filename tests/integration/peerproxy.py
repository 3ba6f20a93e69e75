#!/usr/bin/env python3
"""peerproxy.py — a TCP proxy in front of one member's peer port, for
partition tests. It reads the transport's HELLO frame ([u32 BE len][u8 kind=1]
[msraft.Hello protobuf]) to learn which member is connecting, and drops the
connection when that member is cut off from this one. The cut list is a file
of member ids (hex, one a line), re-read for every connection and every
second; existing connections of newly cut members are closed.

usage: peerproxy.py LISTEN_PORT TARGET_PORT CUTFILE
"""
import asyncio
import os
import sys

LISTEN, TARGET, CUTFILE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = {}  # writer -> from_id


def cut_ids():
    try:
        with open(CUTFILE) as f:
            return {int(l.strip(), 16) for l in f if l.strip()}
    except FileNotFoundError:
        return set()


def hello_from(payload):
    """from_id (field 2, varint) of an msraft.Hello."""
    i, out = 0, {}
    while i < len(payload):
        key, i = varint(payload, i)
        if key & 7 != 0:
            return None
        val, i = varint(payload, i)
        out[key >> 3] = val
    return out.get(2)


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return v, i


async def pipe(r, w):
    try:
        while True:
            d = await r.read(65536)
            if not d:
                break
            w.write(d)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()


async def handle(cr, cw):
    try:
        hdr = await cr.readexactly(5)
        n = int.from_bytes(hdr[:4], "big")
        body = await cr.readexactly(n - 1)
    except Exception:
        cw.close()
        return
    frm = hello_from(body) if hdr[4] == 1 else None
    if frm is None or frm in cut_ids():
        cw.close()
        return
    try:
        tr, tw = await asyncio.open_connection("127.0.0.1", TARGET)
    except Exception:
        cw.close()
        return
    tw.write(hdr + body)
    conns[cw] = (frm, tw)
    await asyncio.gather(pipe(cr, tw), pipe(tr, cw))
    conns.pop(cw, None)


async def watchdog():
    while True:
        await asyncio.sleep(0.2)
        cut = cut_ids()
        for cw, (frm, tw) in list(conns.items()):
            if frm in cut:
                cw.close()
                tw.close()
                conns.pop(cw, None)


async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", LISTEN)
    asyncio.ensure_future(watchdog())
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
