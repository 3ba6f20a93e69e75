#!/usr/bin/env bash
# Hostile clients on the client port (issue 10): each attack runs against one
# member while a second client must keep being served within a second and the
# member's RSS stays under a stated bound (tests/go/hostile prints the figures).
# The member runs with 1024 file descriptors, so its connection limit (75%:
# 768) is reachable. Also issue 11's :authority check (clientv3 Status with an
# "http://" endpoint).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/golib.sh"

go_build hostile || { fail "building the Go probe"; finish; exit 1; }
P=$(free_port); Q=$(free_port)
EP=127.0.0.1:$P
( ulimit -n 1024 && exec "$METASTORE" --name m1 --data-dir "$TMP/ms" \
	--listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
	--listen-peer-urls "http://127.0.0.1:$Q" --initial-advertise-peer-urls "http://127.0.0.1:$Q" \
	--initial-cluster "m1=http://127.0.0.1:$Q" >>"$TMP/ms.log" 2>&1 ) &
PID=$!
PIDS+=("$PID")
wait_for "ready" 20 healthy "$EP" || { fail "member did not start"; finish; exit 1; }

# attack and the RSS growth it may cause (MiB), from the budgets in README "Limits"
for a in norecv:160 headers:64 partial:200 idle:64 h1pipe:64; do
	name=${a%%:*} bound=${a#*:}
	echo "  -- $name"
	if "$GOBIN/hostile" "$name" "$EP" "$PID" "$bound"; then ok "$name attack survived"; else fail "$name attack"; fi
	check "$name: member still running" kill -0 "$PID"
	check "$name: etcdctl is served afterwards" ctl "$EP" get hostile-probe
done
check "clientv3 Status with an http:// endpoint (:authority)" "$GOBIN/hostile" authority "$EP"
finish
