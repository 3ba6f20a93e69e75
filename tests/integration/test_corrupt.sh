#!/usr/bin/env bash
# The corruption check (server/corrupt.c), with etcd 3.4's meaning: three
# members; one member's store is changed behind its back (a value rewritten
# in its RocksDB while it is stopped, by tests/tools/corrupt_kv). Restarted
# with --experimental-initial-corrupt-check it refuses to serve and says why;
# restarted without it, the leader's periodic check
# (--experimental-corrupt-check-time) raises the CORRUPT alarm through raft:
# every member lists it, writes fail with "etcdserver: corrupt cluster",
# reads still work, /health says false, and the alarm survives a restart.
source "$(dirname "$0")/lib.sh"
CORRUPT_KV=${BUILD:-$ROOT/build}/tests/tools/corrupt_kv
[ -x "$CORRUPT_KV" ] || { fail "$CORRUPT_KV is not built (make build-tests)"; finish; exit 1; }

CHECK_FLAGS=(--experimental-initial-corrupt-check --experimental-corrupt-check-time 1s)
start_cluster 3 "${CHECK_FLAGS[@]}"
for i in 1 2 3; do
	wait_for "m$i healthy" 30 healthy "${CEP[$i]}" || { fail "m$i did not become healthy"; tail -20 "${CDIR[$i]}.log"; finish; exit 1; }
done
ok "three members with both check flags healthy"

for i in $(seq 0 9); do
	ctl "${CEP[1]}" put "foo$i" "v$i" >/dev/null || fail "put foo$i"
done
hashes() {
	local i out=""
	for i in "$@"; do out="$out $(ctl "${CEP[$i]}" endpoint hashkv -w json | python3 -c 'import json,sys; r=json.load(sys.stdin)[0]["HashKV"]; print("%d@%d" % (r["hash"], r["header"]["revision"]))')" || return 1; done
	echo "$out"
}
same_hashes() { local h; h=$(hashes 1 2 3) || return 1; [ "$(echo $h | tr ' ' '\n' | sort -u | wc -l)" -eq 1 ]; }
check "HashKV equal on all members after the writes" wait_for "equal hashes" 20 same_hashes
alarms() { ctl "$1" alarm list; }
consistent_round() { cat "${CDIR[1]}.log" "${CDIR[2]}.log" "${CDIR[3]}.log" | grep -q 'corruption check: HashKV consistent with 2 of 2 peers'; }
check "the leader's periodic check ran and found the members consistent" wait_for "a consistent round" 30 consistent_round
check "no alarm while the data agrees" [ -z "$(alarms "${CEP[1]}")" ]

stop_member() {
	kill -TERM "${CPID[$1]}"
	wait_for "m$1 exits" 30 bash -c "! kill -0 ${CPID[$1]}"
}

# damage m1's store
ID1=$(member_id_of "${CEP[1]}")
stop_member 1 || fail "m1 did not stop"
check "corrupt_kv rewrote foo3 in m1's store" "$CORRUPT_KV" "${CDIR[1]}/metastore/kv" foo3

# a healthy member restarted with the initial check passes it and serves;
# m2 and m3 come back without the periodic check, so that only the initial
# check looks at m1 next
stop_member 2 || fail "m2 did not stop"
off=$(stat -c %s "${CDIR[2]}.log")
start_cluster_member 2 --experimental-initial-corrupt-check
check "m2 (undamaged) passes the initial check and serves" wait_for "m2 healthy" 30 healthy "${CEP[2]}"
check "m2 logged a clean initial check" bash -c "tail -c +$((off + 1)) '${CDIR[2]}.log' | grep -q 'succeeded on initial corruption checking: no corruption'"
stop_member 3 || fail "m3 did not stop"
start_cluster_member 3
wait_for "m3 healthy" 30 healthy "${CEP[3]}" || fail "m3 did not come back"

# restarted with the initial check, m1 must refuse to serve
off=$(stat -c %s "${CDIR[1]}.log")
start_cluster_member 1 --experimental-initial-corrupt-check
exited() { ! kill -0 "${CPID[1]}" 2>/dev/null; }
if wait_for "m1 exits after the initial check" 40 exited; then
	wait "${CPID[1]}"
	st=$?
	check "m1 exited with status 1 ($st)" [ "$st" -eq 1 ]
else
	fail "m1 kept running with a damaged store"
fi
check "m1 said etcd's message: etcdmain: $ID1 found data inconsistency with peers" \
	bash -c "tail -c +$((off + 1)) '${CDIR[1]}.log' | grep -q 'etcdmain: $ID1 found data inconsistency with peers'"
check "m1 logged the differing hashes" bash -c "tail -c +$((off + 1)) '${CDIR[1]}.log' | grep -q \"$ID1's hash\""
check "m1 never served clients" bash -c "! tail -c +$((off + 1)) '${CDIR[1]}.log' | grep -q 'serving insecure client requests'"
check "no alarm was raised (no member runs the periodic check)" [ -z "$(alarms "${CEP[2]}")" ]

# restarted without the initial check, m1 serves its damaged copy, and the
# leader's periodic check catches it
start_cluster_member 1 --experimental-corrupt-check-time 1s
wait_for "m1 healthy" 30 healthy "${CEP[1]}" || fail "m1 did not come back"
for i in 2 3; do
	stop_member $i || fail "m$i did not stop"
	start_cluster_member $i --experimental-corrupt-check-time 1s
	wait_for "m$i healthy" 30 healthy "${CEP[$i]}" || fail "m$i did not come back"
done
check "m1 serves the damaged value (as etcd would, without the check)" \
	[ "$(ctl "${CEP[1]}" get foo3 --print-value-only --consistency=s)" != v3 ]
has_corrupt() { alarms "$1" | grep -q 'alarm:CORRUPT'; }
for i in 1 2 3; do
	check "m$i lists the CORRUPT alarm" wait_for "CORRUPT alarm on m$i" 30 has_corrupt "${CEP[$i]}"
done
L=$(leader_of "${CEP[2]}")
named=$(alarms "${CEP[2]}" | sed -n 's/^memberID:\([0-9]*\) alarm:CORRUPT *$/\1/p' | head -1)
named_hex=$(printf '%x' "$named" 2>/dev/null)
if [ "$L" != "$ID1" ]; then
	check "the alarm names m1 ($named_hex, leader $L)" [ "$named_hex" == "$ID1" ]
else
	# etcd's rule: a leader with the odd hash blames the followers
	check "the alarm names a follower of the damaged leader ($named_hex)" [ -n "$named_hex" ] && [ "$named_hex" != "$ID1" ]
fi
out=$(ctl "${CEP[2]}" put foo-new x 2>&1)
check "a write fails with etcdserver: corrupt cluster ($(echo "$out" | tail -1))" bash -c "echo '$out' | grep -q 'etcdserver: corrupt cluster'"
check "a delete fails too" bash -c "etcdctl --endpoints=${CEP[3]} --command-timeout=5s del foo1 2>&1 | grep -q 'corrupt cluster'"
check "reads are still served" [ "$(ctl "${CEP[2]}" get foo1 --print-value-only)" == v1 ]
health=$(curl -s "http://${CEP[3]}/health")
check "/health reports false ($health)" [ "$health" == '{"health":"false"}' ]

# the alarm is kept in the store: it survives a restart
stop_member 3 || fail "m3 did not stop"
start_cluster_member 3
wait_for "m3 back" 30 bash -c "etcdctl --endpoints=${CEP[3]} --command-timeout=2s endpoint status >/dev/null" || fail "m3 did not come back"
check "m3 still lists the alarm after a restart" has_corrupt "${CEP[3]}"
check "m3 still refuses writes" bash -c "etcdctl --endpoints=${CEP[3]} --command-timeout=5s put a b 2>&1 | grep -q 'corrupt cluster'"
finish
