#!/usr/bin/env bash
# kill -9 during a stream of writes, restart, every acknowledged write is
# present with its value; repeated over several crash cycles.
source "$(dirname "$0")/lib.sh"

P=$(free_port); Q=$(free_port)
EPT=127.0.0.1:$P
DIR=$TMP/ms

# writer ID: puts w<ID>-<n> = v<n> until a put fails; acknowledged n -> file
writer() {
	local id=$1 n=0
	while :; do
		n=$((n + 1))
		ctl "$EPT" put "w$id-$(printf %06d $n)" "v$n" >/dev/null 2>&1 || break
		echo "w$id-$(printf %06d $n) v$n" >>"$TMP/acked.$id"
	done
}

for cycle in 1 2 3; do
	start_member ms m1 "$DIR" "$P" "$Q"
	pid=$LAST_PID
	wait_for "restart $cycle" 20 healthy "$EPT" || { fail "member did not start (cycle $cycle)"; tail -20 "$DIR.log"; break; }
	if [ "$cycle" -gt 1 ]; then
		# everything acknowledged before the previous kill must be there
		cat "$TMP"/acked.* | sort >"$TMP/want"
		ctl "$EPT" get w --prefix | paste - - -d' ' | sort >"$TMP/have"
		missing=$(comm -23 "$TMP/want" "$TMP/have" | wc -l)
		check "cycle $cycle: all $(wc -l <"$TMP/want") acknowledged writes survived kill -9 ($missing missing)" [ "$missing" -eq 0 ]
	fi
	for w in 1 2 3 4; do writer "$w$cycle" & done
	# let some writes be acknowledged, then kill in the middle of the stream
	wait_for "writes acknowledged" 30 bash -c "[ \$(cat $TMP/acked.*$cycle 2>/dev/null | wc -l) -ge $((40 * cycle)) ]"
	kill -9 "$pid"
	wait 2>/dev/null
done
start_member ms m1 "$DIR" "$P" "$Q"
wait_for "final restart" 20 healthy "$EPT" || fail "member did not restart"
cat "$TMP"/acked.* | sort >"$TMP/want"
ctl "$EPT" get w --prefix | paste - - -d' ' | sort >"$TMP/have"
missing=$(comm -23 "$TMP/want" "$TMP/have" | wc -l)
check "final: all $(wc -l <"$TMP/want") acknowledged writes present ($missing missing)" [ "$missing" -eq 0 ]
# the revision continues where it was: one more put lands after the last
rev_before=$(ctl "$EPT" get x -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
ctl "$EPT" put after-crash 1 >/dev/null
rev_after=$(ctl "$EPT" get x -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
check "revision advances by one after restart ($rev_before -> $rev_after)" [ "$rev_after" -eq $((rev_before + 1)) ]
finish
