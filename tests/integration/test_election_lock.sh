#!/usr/bin/env bash
# The server-side Lock (v3lockpb) and Election (v3electionpb) services,
# called directly with their generated Go clients (tests/go/electlock):
# MetaStore and etcd 3.4 side by side, the same checks on both, so the
# expectations are etcd's. Afterwards neither store holds a leftover
# lock/election key (cancelled waiters cleaned up), and the key sets match.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/golib.sh"

MP=$(free_port); MQ=$(free_port); EP=$(free_port); EQ=$(free_port)
start_member ms m1 "$TMP/ms" "$MP" "$MQ"
MSPID=$LAST_PID
start_member etcd e1 "$TMP/etcd" "$EP" "$EQ"
MS=127.0.0.1:$MP
ET=127.0.0.1:$EP
wait_for "metastore ready" 20 healthy "$MS" || { fail "metastore did not start"; cat "$TMP/ms.log"; finish; exit 1; }
wait_for "etcd ready" 30 healthy "$ET" || { fail "etcd did not start"; finish; exit 1; }

if ! go_build electlock; then
	fail "building tests/go/electlock"
	finish
	exit 1
fi

# run both at once: each takes a few seconds of waiting on lease expiry
"$GOBIN/electlock" "$MS" >"$TMP/el.ms" 2>"$TMP/el.ms.err" &
A=$!
"$GOBIN/electlock" "$ET" >"$TMP/el.etcd" 2>"$TMP/el.etcd.err" &
B=$!
wait $A; RA=$?
wait $B; RB=$?
grep -v '^  ok:' "$TMP/el.ms" | sed 's/^/  ms  /'
if [ $RA -eq 0 ]; then ok "electlock checks (metastore): $(grep -c '^  ok:' "$TMP/el.ms") passed"; else
	fail "electlock checks (metastore)"; fi
if [ $RB -eq 0 ]; then ok "electlock checks (etcd: the checks themselves)"; else
	fail "electlock checks (etcd)"; grep -v '^  ok:' "$TMP/el.etcd" | sed 's/^/  etcd  /'; fi

# nothing is left behind at the end (the program itself checks that each
# cancelled waiter's key goes while its lease is still alive)
keys() { ctl "$1" get --prefix --keys-only "" | grep -E '^(lk|lq|lz|el|ez)/' | sed -E 's#/[0-9a-f]+$#/LEASE#' | sort; }
check "metastore: no leftover lock/election keys" test -z "$(keys "$MS")"
check "etcd: no leftover lock/election keys" test -z "$(keys "$ET")"
check "metastore still running" kill -0 "$MSPID"
finish
