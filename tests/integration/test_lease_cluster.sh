#!/usr/bin/env bash
# Three members: kill -9 the leader while a lease is kept alive through a
# follower: it never expires; the key of a lease nobody renews is deleted
# once, on every member.
source "$(dirname "$0")/lib.sh"

start_cluster 3
for i in 1 2 3; do
	wait_for "m$i healthy" 30 healthy "${CEP[$i]}" || { fail "m$i did not start"; finish; exit 1; }
done
L=$(leader_of "${CEP[1]}")
li=0; fi=0
for i in 1 2 3; do
	if [ "$(member_id_of "${CEP[$i]}")" == "$L" ]; then li=$i; elif [ "$fi" -eq 0 ]; then fi=$i; fi
done
other=$((6 - li - fi))
check "leader m$li, followers m$fi and m$other" [ "$li" -ne 0 ] && [ "$fi" -ne 0 ]

# kept alive through a follower (the keep-alives are forwarded to the leader)
KEPT=$(ctl "${CEP[$fi]}" lease grant 4 | awk '{print $2}')
ctl "${CEP[$fi]}" put kept yes --lease="$KEPT" >/dev/null
etcdctl --endpoints="${CEP[$fi]},${CEP[$other]}" lease keep-alive "$KEPT" >"$TMP/keepalive.out" 2>&1 &
KPID=$!; PIDS+=("$KPID")
check "keep-alives answered through the follower" wait_for "keep-alive reply" 10 grep -q "keepalived with TTL(4)" "$TMP/keepalive.out"
# nobody renews this one
LONE=$(ctl "${CEP[$fi]}" lease grant 3 | awk '{print $2}')
ctl "${CEP[$fi]}" put lone x --lease="$LONE" >/dev/null
REV=$(ctl "${CEP[$fi]}" get lone -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["kvs"][0]["mod_revision"])')

kill -9 "${CPID[$li]}"
newleader() { local l; l=$(leader_of "${CEP[$fi]}"); [ -n "$l" ] && [ "$l" != "$L" ]; }
check "a new leader after killing m$li" wait_for "new leader" 20 newleader
check "the un-renewed lease's key is deleted" wait_for "lone gone" 20 bash -c "[ -z \"\$(etcdctl --endpoints=${CEP[$other]} get lone --consistency=s --print-value-only)\" ]"
# the kept lease must outlive several of its TTLs across the failover
alive_for() {
	local end=$(( $(date +%s) + $1 ))
	while [ "$(date +%s)" -lt "$end" ]; do
		[ "$(etcdctl --endpoints="${CEP[$fi]}" get kept --consistency=s --print-value-only 2>/dev/null)" == yes ] || return 1
		sleep 0.5
	done
}
check "the kept-alive lease never expired (12 s = 3 TTLs after the kill)" alive_for 12
out=$(timeout 3 etcdctl --endpoints="${CEP[$other]}" watch --rev="$REV" lone 2>/dev/null)
check "the lone key has exactly one PUT and one DELETE in its history" [ "$(grep -c '^DELETE$' <<<"$out")" -eq 1 ]
# the killed member comes back and agrees
start_cluster_member "$li"
wait_for "m$li back" 30 healthy "${CEP[$li]}" || fail "m$li did not restart"
check "restarted member: lone key gone" wait_for "lone gone on m$li" 20 bash -c "[ -z \"\$(etcdctl --endpoints=${CEP[$li]} get lone --consistency=s --print-value-only)\" ]"
check "restarted member: kept key present" [ "$(ctl "${CEP[$li]}" get kept --consistency=s --print-value-only)" == yes ]
kill "$KPID" 2>/dev/null
finish
