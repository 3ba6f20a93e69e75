#!/usr/bin/env bash
# Hostile peers (issue 10): what a host that reaches the peer port can do.
# Probes (hostile_peer.py): forged FORWARD frames, a made-up member joining
# and sending raft messages, oversize snapshot streams, 16 connections that
# never finish their greeting while announcing a 64 MiB frame. After each:
# the member is alive, serves a client within a second, its RSS grew by less
# than a bound, and nothing bad entered the log (restart works, data equal).
# RSS before/after each attack is printed. METASTORE=<other binary> runs the
# same probes against another build (how the base numbers were taken).
source "$(dirname "$0")/lib.sh"

PROBE=(python3 "$ROOT/tests/integration/hostile_peer.py")
RSS_GROWTH_MAX_KB=$((64 * 1024)) # what one attack may add to a member's RSS
FAKE=12245933                    # 0xbadbad: not a member of any cluster here

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; }
# status_field EP EXPR: EXPR over s = the endpoint's Status (etcdctl JSON)
status_field() {
	ctl "$1" endpoint status -w json | python3 -c '
import json, sys
s = json.load(sys.stdin)[0]["Status"]
print(eval(sys.argv[1]))' "$2"
}
served_fast() { etcdctl --endpoints="$1" --dial-timeout=1s --command-timeout=1s put hostile-probe "$2" >/dev/null; }
rss_bounded() { [ -n "$2" ] && [ -n "$1" ] && [ $(($2 - $1)) -lt "$RSS_GROWTH_MAX_KB" ]; }

# after_attack NAME PID EP BEFORE_KB
after_attack() {
	local name=$1 pid=$2 ep=$3 before=$4 now
	check "$name: member alive" kill -0 "$pid"
	check "$name: a client is served within a second" served_fast "$ep" "$name"
	now=$(rss_kb "$pid")
	echo "  RSS [$name]: before ${before:-?} KiB, after ${now:-?} KiB"
	check "$name: RSS grew by less than $((RSS_GROWTH_MAX_KB / 1024)) MiB" rss_bounded "$before" "$now"
}

# probe_expect DESC PATTERN ARGS...: runs the probe, its result line must match
probe_expect() {
	local d=$1 pat=$2 out; shift 2
	out=$("${PROBE[@]}" "$@" 2>&1)
	echo "  probe: $out"
	if grep -qE -- "$pat" <<<"$out"; then ok "$d"; else fail "$d (want /$pat/)"; fi
}

# ---------------- one member ----------------
P=$(free_port); Q=$(free_port)
DIR=$TMP/one
EP=127.0.0.1:$P
start_member ms m1 "$DIR" "$P" "$Q"
PID=$LAST_PID
wait_for "m1 ready" 20 healthy "$EP" || { fail "member did not start"; finish; exit 1; }
CID=$(status_field "$EP" 's["header"]["cluster_id"]')
MID=$(status_field "$EP" 's["header"]["member_id"]')
ctl "$EP" put before-attacks yes >/dev/null || fail "first put"

# 1. forged FORWARD frames: from a made-up id, and claiming to be the member itself
before=$(rss_kb "$PID")
probe_expect "FORWARD from a made-up id: refused at HELLO" "connection closed" forward 127.0.0.1 "$Q" "$CID" "$FAKE" "$MID"
probe_expect "FORWARD claiming to be the member itself: refused" "connection closed" forward 127.0.0.1 "$Q" "$CID" "$MID" "$MID"
after_attack "forged FORWARD" "$PID" "$EP" "$before"
check "the made-up member was named in the refusal" grep -q "refused a connection from $(printf %x "$FAKE"): not a member" "$DIR.log"

# 2. a made-up member joins (gets the member list, adds nothing), then
#    sends raft messages at a later term (refused: the term does not move)
before=$(rss_kb "$PID")
TERM0=$(status_field "$EP" 's["header"]["raft_term"]')
probe_expect "JOIN answers the member list once" "join answered with 1 members; second request closed" join 127.0.0.1 "$Q"
probe_expect "raft messages from a made-up id: refused" "connection closed" raft 127.0.0.1 "$Q" "$CID" "$FAKE" "$MID" $((TERM0 + 100))
after_attack "made-up member" "$PID" "$EP" "$before"
check "still one member" [ "$(ctl "$EP" member list | grep -c .)" -eq 1 ]
check "the term did not move" [ "$(status_field "$EP" 's["header"]["raft_term"]')" -eq "$TERM0" ]
check "still its own leader" [ "$(status_field "$EP" 's["leader"]')" == "$MID" ]

# 3. 16 connections that never finish their greeting, each announcing a
#    64 MiB first frame and pushing 64 MiB of it
before=$(rss_kb "$PID")
"${PROBE[@]}" ungreeted 127.0.0.1 "$Q" 16 64 3 >"$TMP/ungreeted.out" 2>&1 &
UNG=$!
wait_for "the probe pushed its bytes" 30 grep -q pushed "$TMP/ungreeted.out" || fail "ungreeted probe did not run"
during=$(rss_kb "$PID")
echo "  RSS [ungreeted, while held]: ${during:-?} KiB"
check "ungreeted: RSS while the connections are held is bounded" rss_bounded "$before" "$during"
check "ungreeted: a client is served while they are held" served_fast "$EP" ungreeted-held
wait "$UNG"
echo "  probe: $(grep result "$TMP/ungreeted.out")"
check "ungreeted: the member closed every one of the 16" grep -q "16 connections, .* 0 still open" "$TMP/ungreeted.out"
after_attack "ungreeted" "$PID" "$EP" "$before"

# nothing bad entered the log: a restart replays it, the data is there
check "no invalid request was ever applied, no apply failed" bash -c "! grep -qE 'holds an invalid request|apply failed|stopping' '$DIR.log'"
kill "$PID"; wait "$PID" 2>/dev/null
start_member ms m1 "$DIR" "$P" "$Q"
PID=$LAST_PID
wait_for "m1 restart" 20 healthy "$EP" || fail "member did not restart after the attacks"
check "data intact after the restart" [ "$(ctl "$EP" get before-attacks --print-value-only)" == yes ]
kill "$PID"; wait "$PID" 2>/dev/null

# ---------------- three members ----------------
start_cluster 3
for i in 1 2 3; do
	wait_for "m$i healthy" 30 healthy "${CEP[$i]}" || { fail "m$i did not start"; finish; exit 1; }
done
ctl "${CEP[1]}" put cluster-before yes >/dev/null || fail "cluster put"
CID=$(status_field "${CEP[1]}" 's["header"]["cluster_id"]')
declare -a MIDS
for i in 1 2 3; do MIDS[$i]=$(status_field "${CEP[$i]}" 's["header"]["member_id"]'); done
LEADER=$(status_field "${CEP[1]}" 's["leader"]')
L=0
for i in 1 2 3; do [ "${MIDS[$i]}" == "$LEADER" ] && L=$i; done
[ "$L" -ne 0 ] || { fail "no leader found"; finish; exit 1; }
F=$((L % 3 + 1))   # a follower
O=$((F % 3 + 1))   # the other follower
SNAPDIR=${CDIR[$F]}/metastore/snap

# 4. snapshot streams to a follower, claiming to be its leader
before=$(rss_kb "${CPID[$F]}")
probe_expect "snapshot announcing 1 TiB: refused (cap / free disk)" "stream refused" \
	snapshot 127.0.0.1 "${PPORT[$F]}" "$CID" "${MIDS[$L]}" "${MIDS[$F]}" $((1 << 40)) 0
probe_expect "snapshot announcing 1 MiB, sending 64 MiB: refused" "stream refused" \
	snapshot 127.0.0.1 "${PPORT[$F]}" "$CID" "${MIDS[$L]}" "${MIDS[$F]}" $((1 << 20)) $((64 << 20))
probe_expect "snapshot from a member that is not the leader: refused" "stream refused" \
	snapshot 127.0.0.1 "${PPORT[$F]}" "$CID" "${MIDS[$O]}" "${MIDS[$F]}" $((1 << 20)) $((1 << 20))
after_attack "oversize snapshot" "${CPID[$F]}" "${CEP[$F]}" "$before"
check "no partial snapshot left behind" [ -z "$(ls -A "$SNAPDIR" 2>/dev/null)" ]
check "the disk was not filled (snap dir under 4 MiB)" [ "$(du -sk "$SNAPDIR" | cut -f1)" -lt 4096 ]
check "the refusals name the reason" bash -c "grep -qE 'would not fit|over the cap' '${CDIR[$F]}.log' && grep -q 'exceeds its announcement' '${CDIR[$F]}.log' && grep -q 'not expected from it' '${CDIR[$F]}.log'"

# 5. forged FORWARD frames to the leader, claiming to be a follower: the
#    leader validates before proposing, so nothing enters the log
before=$(rss_kb "${CPID[$L]}")
probe_expect "forged FORWARD to the leader: connection kept, requests refused" "sent 6 forged FORWARD frames" \
	forward 127.0.0.1 "${PPORT[$L]}" "$CID" "${MIDS[$F]}" "${MIDS[$L]}"
after_attack "forged FORWARD to the leader" "${CPID[$L]}" "${CEP[$L]}" "$before"
check "the leader logged its refusals" bash -c "[ \$(grep -c 'refused a proposal forwarded by' '${CDIR[$L]}.log') -ge 4 ] && [ \$(grep -c 'refused a membership change forwarded by' '${CDIR[$L]}.log') -ge 2 ]"
check "still three members" [ "$(ctl "${CEP[$L]}" member list | grep -c .)" -eq 3 ]

# 6. raft messages from a made-up id to a follower: refused, its term holds
TERMF=$(status_field "${CEP[$F]}" 's["header"]["raft_term"]')
probe_expect "raft messages from a made-up id to a follower: refused" "connection closed" \
	raft 127.0.0.1 "${PPORT[$F]}" "$CID" "$FAKE" "${MIDS[$F]}" $((TERMF + 100))
check "the follower's term did not move" [ "$(status_field "${CEP[$F]}" 's["header"]["raft_term"]')" -eq "$TERMF" ]

for i in 1 2 3; do check "m$i alive after every attack" kill -0 "${CPID[$i]}"; done
check "no member applied an invalid request" bash -c "! grep -q 'holds an invalid request' ${CDIR[1]}.log ${CDIR[2]}.log ${CDIR[3]}.log"
ctl "${CEP[$L]}" put cluster-after yes >/dev/null || fail "cluster put after the attacks"
kill "${CPID[$F]}"; wait "${CPID[$F]}" 2>/dev/null
# the follower comes back with a looser --max-txn-ops than the leader's
start_cluster_member "$F" --max-txn-ops 1000
wait_for "follower restart" 30 healthy "${CEP[$F]}" || fail "the follower did not restart"
caught_up() { [ "$(etcdctl --endpoints="${CEP[$F]}" get cluster-after --print-value-only --consistency=s)" == yes ]; }
check "the restarted follower has the data" wait_for "catch-up" 20 caught_up

# 7. the leader validates what it is forwarded with its own limits, and the
#    follower's client gets the leader's error at once (not a timeout)
if [ "$(status_field "${CEP[$F]}" 's["leader"]')" == "${MIDS[$F]}" ]; then
	ctl "${CEP[$F]}" move-leader "$(printf %x "${MIDS[$L]}")" >/dev/null || fail "move-leader away from the follower"
fi
txn_input() { echo; for n in $(seq 1 200); do echo "put txn-$n v"; done; echo; echo; }
t0=$(date +%s%N)
out=$(txn_input | etcdctl --endpoints="${CEP[$F]}" --command-timeout=4s txn 2>&1)
ms=$((($(date +%s%N) - t0) / 1000000))
echo "  txn of 200 ops through the follower: $(head -c 200 <<<"$out") (${ms} ms)"
check "a forwarded txn over the leader's --max-txn-ops is refused with etcd's error" grep -q "too many operations in txn request" <<<"$out"
check "none of its puts was applied" [ -z "$(ctl "${CEP[$L]}" get txn-1 --print-value-only)" ]
equal_hashes() {
	[ "$(for i in 1 2 3; do ctl "${CEP[$i]}" endpoint hashkv -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["HashKV"]["hash"])'; done | sort -u | wc -l)" -eq 1 ]
}
check "HashKV equal on all members" wait_for "hashes" 20 equal_hashes

# 8. a removed member: once its removal is applied (and a grace period for
#    the leader to tell it has passed) its id is refused like a made-up one
ctl "${CEP[$L]}" member remove "$(printf %x "${MIDS[$O]}")" >/dev/null || fail "member remove"
check "the removed member stops" wait_for "removed member exits" 30 bash -c "! kill -0 ${CPID[$O]} 2>/dev/null"
refused_removed() {
	"${PROBE[@]}" raft 127.0.0.1 "${PPORT[$L]}" "$CID" "${MIDS[$O]}" "${MIDS[$L]}" 1 | grep -q "connection closed"
}
check "the removed member's id is refused by the leader" wait_for "removed id refused" 30 refused_removed
finish
