#!/usr/bin/env bash
# A member that keeps serving a watch while it is cut off, and falls behind
# the leader's compacted log, installs a snapshot when the partition heals;
# its watcher then gets every event the snapshot covered, from history.
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
		--initial-cluster "$CLUSTER" --heartbeat-interval 50 --election-timeout 500 --snapshot-count 100 \
		>>"${CDIR[$i]}.log" 2>&1 &
	CPID[$i]=$!; PIDS+=("${CPID[$i]}")
done
for i in 1 2 3; do
	wait_for "m$i healthy" 30 healthy "${CEP[$i]}" || { fail "m$i did not start"; finish; exit 1; }
done
declare -a ID
for i in 1 2 3; do ID[$i]=$(member_id_of "${CEP[$i]}"); done
# the watched member is one that is not the leader
L=$(leader_of "${CEP[1]}")
wi=0; for i in 1 2 3; do [ "${ID[$i]}" != "$L" ] && [ "$wi" -eq 0 ] && wi=$i; done
others=(); for i in 1 2 3; do [ "$i" -ne "$wi" ] && others+=("$i"); done
# a watch stream on it, opened while it has a leader, from an explicit
# revision so an event written before the stream is up is not missed
REV=$(ctl "${CEP[$wi]}" get nosuchkey -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
etcdctl --endpoints="${CEP[$wi]}" watch --prefix s/ --rev=$((REV + 1)) >"$TMP/watch.out" 2>&1 &
WPID=$!; PIDS+=("$WPID")
ctl "${CEP[${others[0]}]}" put s/first 0 >/dev/null
check "the watch is live" wait_for "first event" 10 grep -q "^s/first$" "$TMP/watch.out"

# cut it off; the majority writes far more than --snapshot-count entries
for o in "${others[@]}"; do echo "${ID[$o]}" >>"$TMP/cut$wi"; echo "${ID[$wi]}" >>"$TMP/cut$o"; done
for n in $(seq 1 400); do ctl "${CEP[${others[0]}]}" put "s/$(printf %04d $n)" "$n" >/dev/null || fail "put $n"; done
check "the majority compacted its log" bash -c "grep -q 'compacted raft log' ${CDIR[${others[0]}]}.log ${CDIR[${others[1]}]}.log"

# heal: the cut-off member installs a snapshot and its watcher catches up
for i in 1 2 3; do : >"$TMP/cut$i"; done
check "the member installed a snapshot" wait_for "install" 30 grep -q "installed a snapshot" "${CDIR[$wi]}.log"
all_events() { [ "$(grep -c '^s/0' "$TMP/watch.out")" -eq 400 ]; }
check "its watcher got all 400 events the snapshot covered" wait_for "400 events" 30 all_events
check "in revision order, each once" bash -c "[ \"\$(grep '^s/0' $TMP/watch.out)\" == \"\$(grep '^s/0' $TMP/watch.out | sort -u)\" ]"
ctl "${CEP[${others[1]}]}" put s/after 1 >/dev/null
check "and live events after it" wait_for "live" 10 grep -q "^s/after$" "$TMP/watch.out"
finish
