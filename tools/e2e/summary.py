#!/usr/bin/env python3
"""summary.py — the README's e2e table from make e2e-etcd's results.

Reads build/e2e/results.txt (MetaStore), results-ref.txt (etcd 3.4, REF=1)
and, if present, results-strip.txt (STRIP_PEER_TLS=1 diagnostic), groups the
tests by what they exercise and prints a markdown table: tests, passing with
MetaStore, passing with etcd 3.4 here, passing once peer TLS is stripped, and
the failure causes seen. Usage: tools/e2e/summary.py [build-dir]
"""
import collections
import os
import re
import sys

# (group, regexp on the test name); first match wins
GROUPS = [
    ("auth (users, roles, permissions, CN auth, JWT)", r"TestCtlV3(Auth|User|Role).*|TestV3CurlAuth.*"),
    ("JSON gateway (/v3/* over HTTP)", r"TestV3Curl(Lease|PutGet|Watch|Txn|Campaign|Proclaim|Resign).*"),
    ("max concurrent streams (--max-concurrent-streams, gateway)", r"TestV3Curl_MaxStreams.*"),
    ("TLS cipher suites (--cipher-suites, gateway)", r"TestV3CurlCipherSuites.*"),
    ("snapshot save/restore/status", r"TestCtlV3Snapshot.*|TestIssue6361"),
    ("defragment", r"TestCtlV3Defrag"),
    ("quota and NOSPACE alarm", r"TestCtlV3Alarm"),
    ("metrics (/metrics counters)", r"TestV3Metrics.*"),
    ("config file (--config-file)", r"TestEtcdExampleConfig"),
    ("peer certificate CN / hostname checks", r"TestEtcdPeer(CN|Name)Auth"),
    ("unix:// peer URLs", r"TestEtcdUnixPeers"),
    ("cluster start-up (TLS variants)", r"TestEtcdMultiPeer"),
    ("KV put/get/del/txn/compact (TLS variants)", r"TestCtlV3(Put|Get|Del|Txn|Compact).*"),
    ("lease (TLS variants)", r"TestCtlV3Lease.*"),
    ("watch (TLS variants)", r"TestCtlV3Watch.*"),
    ("members (TLS variants)", r"TestCtlV3Member.*"),
    ("endpoint health/status/hashkv, move-leader, version", r"TestCtlV3(Endpoint|MoveLeader|Version|DialWithHTTPScheme).*"),
    ("election, lock, make-mirror", r"TestCtlV3(Elect|Lock|MakeMirror).*"),
]


def load(path):
    res = {}
    if not os.path.exists(path):
        return res
    for line in open(path):
        m = re.match(r"^(PASS|FAIL|TIMEOUT) (\S+) \S+(?:  # (.*))?$", line.rstrip("\n"))
        if m:
            res[m.group(2)] = (m.group(1), m.group(3) or "")
    return res


def cause(why):
    m = re.search(r"flag (--[a-z0-9-]+) is an etcd flag", why)
    if m:
        return "refuses " + m.group(1)
    if "not implemented" in why:
        return "gateway answers 501"
    if "Unimplemented" in why:
        return "RPC Unimplemented"
    if "is not supported" in why:
        return "refused option"
    if "PROTOCOL_ERROR" in why:
        return ":authority rejected"
    return "other" if why else ""


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    ms = load(os.path.join(build, "e2e", "results.txt"))
    ref = load(os.path.join(build, "e2e", "results-ref.txt"))
    strip = load(os.path.join(build, "e2e", "results-strip.txt"))
    names = sorted(set(ms) | set(ref))
    rows = collections.OrderedDict((g, []) for g, _ in GROUPS)
    rows["other"] = []
    for n in names:
        for g, rx in GROUPS:
            if re.fullmatch(rx, n):
                rows[g].append(n)
                break
        else:
            rows["other"].append(n)
    npass = lambda d, ts: sum(1 for t in ts if d.get(t, ("",))[0] == "PASS")
    print("| group | tests | MetaStore | etcd 3.4 here | MetaStore, peer TLS stripped | MetaStore failures (count) |")
    print("| --- | --- | --- | --- | --- | --- |")
    tot = [0, 0, 0, 0]
    for g, ts in rows.items():
        if not ts:
            continue
        causes = collections.Counter(cause(ms[t][1]) for t in ts if t in ms and ms[t][0] != "PASS")
        cs = ", ".join("%s (%d)" % (c or "?", k) for c, k in causes.most_common())
        vals = [len(ts), npass(ms, ts), npass(ref, ts), npass(strip, ts)]
        tot = [a + b for a, b in zip(tot, vals)]
        print("| %s | %d | %d | %d | %s | %s |" % (g, vals[0], vals[1], vals[2], vals[3] if strip else "-", cs))
    print("| **total** | %d | %d | %d | %s | |" % (tot[0], tot[1], tot[2], tot[3] if strip else "-"))


if __name__ == "__main__":
    main()
