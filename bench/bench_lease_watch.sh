#!/usr/bin/env bash
# `make bench-lease-watch`: watch fan-out and lease loads, MetaStore against
# etcd 3.4 on the same machine in the same run (one member each):
#   - watch fan-out: WATCHERS watchers on 100 streams, 1000 puts/s over 100
#     keys -> delivery latency put-sent -> event-received p50/p90/p99
#   - lease grant and keep-alive throughput (64 clients)
#   - expiring LEASES leases of TTL 5 s: time from the first grant until
#     every lease is gone (both servers revoke at etcd's 1000/s)
# Knobs: WATCHERS (default 10000), LEASES (default 100000; 0 skips expiry).
set -u
cd "$(dirname "$0")/.."
source tests/integration/lib.sh
BENCH=${BENCH:-bin/metastore-bench}
WATCHERS=${WATCHERS:-10000}
LEASES=${LEASES:-100000}
for kind in ms etcd; do
	P=$(free_port); Q=$(free_port)
	start_member "$kind" b1 "$TMP/$kind" "$P" "$Q"
	pid=$LAST_PID
	wait_for "$kind" 30 healthy "127.0.0.1:$P" || { echo "$kind did not start"; exit 1; }
	echo "=== $kind"
	echo "watch fan-out: $WATCHERS watchers / 100 streams, 4000 puts at 1000/s over 100 keys"
	"$BENCH" watch --endpoints "127.0.0.1:$P" --watchers "$WATCHERS" --streams 100 --key-space 100 \
		--total 4000 --rate 1000 --clients 8 --quiet 2>&1 | sed -n '/Watch:/p;/Watch delivery/,/99.9%/p' | grep -E "Watch:|50%|90%|99%"
	echo "lease grant, 64 clients"
	"$BENCH" lease --lease-op grant --endpoints "127.0.0.1:$P" --clients 64 --total 20000 --quiet 2>&1 | grep -E "Requests/sec|99%"
	echo "lease keep-alive, 64 clients"
	"$BENCH" lease --lease-op keepalive --endpoints "127.0.0.1:$P" --clients 64 --total 50000 --quiet 2>&1 | grep -E "Requests/sec|99%"
	if [ "$LEASES" -gt 0 ]; then
		t0=$(date +%s%N)
		"$BENCH" lease --lease-op grant --ttl 5 --endpoints "127.0.0.1:$P" --clients 64 --total "$LEASES" --quiet >/dev/null 2>&1
		t1=$(date +%s%N)
		gone() { [ "$(etcdctl --endpoints="127.0.0.1:$P" --command-timeout=30s lease list 2>/dev/null | head -1 | awk '{print $2}')" = 0 ]; }
		wait_for "all leases expired" 600 gone || echo "leases still left after 600 s"
		t2=$(date +%s%N)
		echo "expiry: $LEASES leases granted in $(( (t1 - t0) / 1000000 )) ms; all gone $(( (t2 - t0) / 1000000 )) ms after the first grant"
	fi
	echo "peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)"
	kill "$pid"
done
