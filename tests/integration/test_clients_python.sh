#!/usr/bin/env bash
# python3-etcd3 (gRPC's C core through grpcio) against etcd 3.4 and
# MetaStore side by side: KV, txn, watch (history, live, cancel), leases
# (grant, one-shot refresh that half-closes, keep-alive stream, expiry,
# revoke), lock, status, compaction (tests/integration/clients_python.py).
source "$(dirname "$0")/lib.sh"

# Debian's python3-etcd3 lives in /usr/lib/python3/dist-packages: use the
# system interpreter, not whatever python3 comes first on PATH
PY=/usr/bin/python3
if ! "$PY" -c 'import etcd3, grpc' 2>/dev/null; then
	fail "python3-etcd3 is not installed (tools/deps.sh installs it: make deps)"
	finish
	exit 1
fi
P=$(free_port); Q=$(free_port); EP=$(free_port); EQ=$(free_port)
start_member ms m1 "$TMP/ms" "$P" "$Q"
start_member etcd e1 "$TMP/etcd" "$EP" "$EQ"
wait_for "metastore ready" 20 healthy "127.0.0.1:$P" || { fail "metastore did not start"; finish; exit 1; }
wait_for "etcd ready" 20 healthy "127.0.0.1:$EP" || { fail "etcd did not start"; finish; exit 1; }
if timeout 300 "$PY" "$ROOT/tests/integration/clients_python.py" "127.0.0.1:$EP" "127.0.0.1:$P" ${VERBOSE:+-v}; then
	ok "python3-etcd3 checks"
else
	fail "python3-etcd3 checks"
fi
finish
