#!/usr/bin/env bash
# A partition: each member's advertised peer URL is a proxy (peerproxy.py)
# that can cut pairs of members apart. The isolated member cannot write; the
# majority elects a leader and keeps writing; after healing everything
# converges (same data, equal HashKV).
source "$(dirname "$0")/lib.sh"

declare -a XPORT
CLUSTER=""
for i in 1 2 3; do
	CPORT[$i]=$(free_port); PPORT[$i]=$(free_port); XPORT[$i]=$(free_port)
	CEP[$i]=127.0.0.1:${CPORT[$i]}; CDIR[$i]=$TMP/m$i
	CLUSTER="$CLUSTER${CLUSTER:+,}m$i=http://127.0.0.1:${XPORT[$i]}"
	: >"$TMP/cut$i"
	python3 "$(dirname "$0")/peerproxy.py" "${XPORT[$i]}" "${PPORT[$i]}" "$TMP/cut$i" &
	PIDS+=($!)
done
for i in 1 2 3; do
	"$METASTORE" --name "m$i" --data-dir "${CDIR[$i]}" \
		--listen-client-urls "http://${CEP[$i]}" --advertise-client-urls "http://${CEP[$i]}" \
		--listen-peer-urls "http://127.0.0.1:${PPORT[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${XPORT[$i]}" \
		--initial-cluster "$CLUSTER" --heartbeat-interval 50 --election-timeout 500 >>"${CDIR[$i]}.log" 2>&1 &
	CPID[$i]=$!; PIDS+=("${CPID[$i]}")
done
for i in 1 2 3; do
	wait_for "m$i healthy" 30 healthy "${CEP[$i]}" || { fail "m$i did not start"; tail "${CDIR[$i]}.log"; finish; exit 1; }
done
ctl "${CEP[1]}" put before partition >/dev/null

# isolate the leader from both others (both directions)
L=$(leader_of "${CEP[1]}")
li=0; declare -a ID
for i in 1 2 3; do ID[$i]=$(member_id_of "${CEP[$i]}"); [ "${ID[$i]}" == "$L" ] && li=$i; done
check "leader found (m$li)" [ "$li" -ne 0 ]
others=(); for i in 1 2 3; do [ "$i" -ne "$li" ] && others+=("$i"); done
for o in "${others[@]}"; do echo "${ID[$o]}" >>"$TMP/cut$li"; echo "$L" >>"$TMP/cut$o"; done

a=${others[0]}; b=${others[1]}
majority_leads() { local l; l=$(leader_of "${CEP[$a]}"); [ -n "$l" ] && [ "$l" != "$L" ]; }
check "the majority elects a new leader" wait_for "new leader" 20 majority_leads
out=$(etcdctl --endpoints="${CEP[$a]}" --command-timeout=5s put majority yes 2>&1)
check "the majority can write ($out)" [ "$out" == OK ]
out=$(etcdctl --endpoints="${CEP[$li]}" --command-timeout=3s put minority no 2>&1)
check "the isolated member cannot write" [ "$out" != OK ]
check "the isolated member's write is not visible on the majority" [ -z "$(ctl "${CEP[$b]}" get minority --print-value-only)" ]
for n in $(seq 1 20); do ctl "${CEP[$b]}" put "p$n" "$n" >/dev/null || fail "majority put p$n"; done

# heal
for i in 1 2 3; do : >"$TMP/cut$i"; done
converged() {
	[ "$(etcdctl --endpoints="${CEP[$li]}" get p --prefix --keys-only --consistency=s | grep -c .)" -eq 20 ] &&
	[ "$(etcdctl --endpoints="${CEP[$li]}" get majority --print-value-only --consistency=s)" == yes ]
}
check "the healed member converges" wait_for "converge" 30 converged
one_leader() { [ "$(for i in 1 2 3; do leader_of "${CEP[$i]}"; done | sort -u | grep -c .)" -eq 1 ]; }
check "the cluster has one leader everyone agrees on" wait_for "agree" 10 one_leader
ctl "${CEP[$li]}" put after heal >/dev/null
check "writes through the healed member work" [ "$(ctl "${CEP[$a]}" get after --print-value-only)" == heal ]
equal_hashes() {
	[ "$(for i in 1 2 3; do ctl "${CEP[$i]}" endpoint hashkv -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["HashKV"]["hash"])'; done | sort -u | wc -l)" -eq 1 ]
}
check "HashKV equal on all members" wait_for "equal hashes" 10 equal_hashes
finish
