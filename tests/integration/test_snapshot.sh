#!/usr/bin/env bash
# A member down for more than --snapshot-count entries catches up from a
# snapshot (the leader's log is compacted past it), then follows the log
# again; every member ends with equal data and HashKV.
source "$(dirname "$0")/lib.sh"

start_cluster 3 --snapshot-count 100
for i in 1 2 3; do
	wait_for "m$i healthy" 30 healthy "${CEP[$i]}" || { fail "m$i did not start"; finish; exit 1; }
done
for n in $(seq 1 20); do ctl "${CEP[1]}" put "a$n" "$n" >/dev/null; done
M3=$(member_id_of "${CEP[3]}")
kill -9 "${CPID[3]}"; wait "${CPID[3]}" 2>/dev/null
# if m3 led, a put forwarded to it just before the kill is lost with it (as
# in etcd): wait for a leader among the survivors, and retry a failed put
survivors_lead() { local l; l=$(leader_of "${CEP[1]}"); [ -n "$l" ] && [ "$l" != "$M3" ]; }
wait_for "a leader among m1, m2" 20 survivors_lead || fail "no leader after killing m3"
put_retry() { for _ in 1 2 3; do ctl "${CEP[1]}" put "$1" "$2" >/dev/null 2>&1 && return 0; done; return 1; }
# far more than --snapshot-count entries while m3 is down, through a txn
# stream so it is quick
for n in $(seq 1 600); do echo "put b$(printf %04d $n) $n"; done | awk '{print $0}' >"$TMP/puts"
while read -r _ k v; do put_retry "$k" "$v" || fail "put $k"; done <"$TMP/puts"
check "the leader compacted its log" grep -q "compacted raft log" "${CDIR[1]}.log" "${CDIR[2]}.log"

start_cluster_member 3 --snapshot-count 100
wait_for "m3 back" 30 healthy "${CEP[3]}" || fail "m3 did not restart"
caught_up() { [ "$(etcdctl --endpoints="${CEP[3]}" get b --prefix --keys-only --consistency=s 2>/dev/null | grep -c .)" -eq 600 ]; }
check "m3 caught up (600 keys)" wait_for "m3 catch-up" 30 caught_up
check "m3 installed a snapshot" grep -q "installed a snapshot" "${CDIR[3]}.log"
check "a leader sent it" bash -c "grep -q 'snapshot to .* delivered' ${CDIR[1]}.log ${CDIR[2]}.log"
check "m3 keeps its own member ID" [ "$(member_id_of "${CEP[3]}")" != "$(member_id_of "${CEP[1]}")" ]
check "m3 still knows the cluster" [ "$(ctl "${CEP[3]}" member list | grep -c started)" -eq 3 ]
ctl "${CEP[2]}" put after snapshot >/dev/null
check "m3 follows the log after the snapshot" wait_for "after on m3" 10 bash -c "[ \"\$(etcdctl --endpoints=${CEP[3]} get after --print-value-only --consistency=s)\" == snapshot ]"
ctl "${CEP[3]}" put from-m3 yes >/dev/null
check "writes through m3 work" [ "$(ctl "${CEP[1]}" get from-m3 --print-value-only)" == yes ]
equal_hashes() {
	[ "$(for i in 1 2 3; do ctl "${CEP[$i]}" endpoint hashkv -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["HashKV"]["hash"])'; done | sort -u | wc -l)" -eq 1 ]
}
check "HashKV equal on all members" wait_for "hashes" 10 equal_hashes
# and m3 restarts from its installed store
kill "${CPID[3]}"; wait "${CPID[3]}" 2>/dev/null
start_cluster_member 3 --snapshot-count 100
wait_for "m3 restart" 30 healthy "${CEP[3]}" || fail "m3 did not restart after the snapshot"
check "m3 data after a restart" [ "$(ctl "${CEP[3]}" get b --prefix --keys-only --consistency=s | grep -c .)" -eq 600 ]
finish
