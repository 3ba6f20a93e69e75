#!/usr/bin/env bash
# Three members: replication, follower forwarding, failover after kill -9 of
# the leader with no acknowledged write lost, restart and catch-up, equal
# HashKV on every member.
source "$(dirname "$0")/lib.sh"

start_cluster 3
for i in 1 2 3; do
	wait_for "m$i healthy" 30 healthy "${CEP[$i]}" || { fail "m$i did not become healthy"; tail -20 "${CDIR[$i]}.log"; finish; exit 1; }
done
ok "three members healthy"

ctl "${CEP[1]}" put k1 v1 >/dev/null
check "write on m1 visible on m2" [ "$(ctl "${CEP[2]}" get k1 --print-value-only)" == v1 ]
check "write on m1 visible on m3" [ "$(ctl "${CEP[3]}" get k1 --print-value-only)" == v1 ]
ctl "${CEP[3]}" put k3 v3 >/dev/null
check "write through m3 visible on m1" [ "$(ctl "${CEP[1]}" get k3 --print-value-only)" == v3 ]
check "serializable read on m2 after catching up" wait_for "m2 has k3" 10 bash -c "[ \"\$(etcdctl --endpoints=${CEP[2]} get k3 --print-value-only --consistency=s)\" == v3 ]"
nmem=$(ctl "${CEP[2]}" member list | grep -c started)
check "member list shows 3 started members ($nmem)" [ "$nmem" -eq 3 ]

# leader kill during writes
L=$(leader_of "${CEP[1]}")
li=0
for i in 1 2 3; do [ "$(member_id_of "${CEP[$i]}")" == "$L" ] && li=$i; done
check "one leader known ($L is m$li)" [ "$li" -ne 0 ]
writer() {
	local n=0
	while :; do
		n=$((n + 1))
		if etcdctl --endpoints="$ALL_EPS" --dial-timeout=2s --command-timeout=5s put "w-$(printf %06d $n)" "v$n" >/dev/null 2>&1; then
			echo "w-$(printf %06d $n) v$n" >>"$TMP/acked"
		fi
		[ -e "$TMP/stop" ] && break
	done
}
writer &
WPID=$!
wait_for "some writes acknowledged" 20 bash -c "[ \$(wc -l <$TMP/acked 2>/dev/null || echo 0) -ge 30 ]"
t0=$(date +%s%N)
kill -9 "${CPID[$li]}"
others=()
for i in 1 2 3; do [ "$i" -ne "$li" ] && others+=("$i"); done
new_leader() { local l; l=$(leader_of "${CEP[${others[0]}]}"); [ -n "$l" ] && [ "$l" != "$L" ]; }
if wait_for "new leader" 20 new_leader; then
	t1=$(date +%s%N)
	ok "new leader $(leader_of "${CEP[${others[0]}]}") after $(( (t1 - t0) / 1000000 )) ms (election timeout 500 ms)"
else
	fail "no new leader after killing m$li"
fi
n0=$(wc -l <"$TMP/acked")
wait_for "writes continue after failover" 20 bash -c "[ \$(wc -l <$TMP/acked) -ge $((n0 + 20)) ]" && ok "writes continue after failover" || fail "writes stalled after failover"
touch "$TMP/stop"; wait "$WPID"
sort "$TMP/acked" >"$TMP/want"
ctl "${CEP[${others[0]}]}" get w- --prefix | paste - - -d' ' | sort >"$TMP/have"
missing=$(comm -23 "$TMP/want" "$TMP/have" | wc -l)
check "all $(wc -l <"$TMP/want") acknowledged writes present after failover ($missing missing)" [ "$missing" -eq 0 ]

# the killed member restarts and catches up
start_cluster_member "$li"
wait_for "m$li back" 30 healthy "${CEP[$li]}" || fail "m$li did not restart"
want=$(ctl "${CEP[${others[0]}]}" get w- --prefix --keys-only | grep -c .)
caught_up() { [ "$(etcdctl --endpoints="${CEP[$li]}" get w- --prefix --keys-only --consistency=s | grep -c .)" -eq "$want" ]; }
check "restarted m$li caught up ($want keys)" wait_for "catch up" 20 caught_up
hashes=$(for i in 1 2 3; do ctl "${CEP[$i]}" endpoint hashkv -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["HashKV"]["hash"])'; done | sort -u | wc -l)
check "HashKV equal on all members" [ "$hashes" -eq 1 ]

# move-leader: etcdctl finds the leader through Status on every endpoint
L=$(leader_of "${CEP[1]}")
T=""
for i in 1 2 3; do id=$(member_id_of "${CEP[$i]}"); [ "$id" != "$L" ] && T=$id; done
out=$(ctl "$ALL_EPS" move-leader "$T" 2>&1)
check "move-leader to $T: $out" grep -q "Leadership transferred from $L to $T" <<<"$out"
check "the transferee leads" wait_for "leader is $T" 10 bash -c "[ \"\$(etcdctl --endpoints=${CEP[1]} endpoint status -w json | python3 -c 'import json,sys; print(\"%x\" % json.load(sys.stdin)[0][\"Status\"][\"leader\"])')\" == $T ]"
out=$(ctl "$ALL_EPS" move-leader 1234 2>&1)
check "move-leader to a non-member: bad leader transferee" grep -q "etcdserver: bad leader transferee" <<<"$out"
ctl "${CEP[1]}" put after-move 1 >/dev/null
check "writes work after the transfer" [ "$(ctl "${CEP[2]}" get after-move --print-value-only)" == 1 ]
finish
