#!/usr/bin/env bash
# Maintenance.Defragment (etcdctl defrag): the same output as etcd 3.4, the
# store gives back the space of deleted and compacted keys, the data is
# intact afterwards.
source "$(dirname "$0")/lib.sh"

MP=$(free_port); MQ=$(free_port); EP=$(free_port); EQ=$(free_port)
start_member ms m1 "$TMP/ms" "$MP" "$MQ"
start_member etcd e1 "$TMP/etcd" "$EP" "$EQ"
for ep in "127.0.0.1:$MP" "127.0.0.1:$EP"; do
	wait_for "$ep healthy" 30 healthy "$ep" || { fail "$ep did not start"; finish; exit 1; }
done

out_ms=$(ctl "127.0.0.1:$MP" defrag 2>&1); rc_ms=$?
out_etcd=$(ctl "127.0.0.1:$EP" defrag 2>&1)
check "defrag succeeds ($out_ms)" [ "$rc_ms" -eq 0 ]
check "same output as etcd 3.4 (port aside)" [ "${out_ms//$MP/PORT}" == "${out_etcd//$EP/PORT}" ]

dbsize() { ctl "$1" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])'; }
val=$(head -c 2048 /dev/zero | tr '\0' x)
for i in $(seq 1 400); do ctl "127.0.0.1:$MP" put "big$i" "$val" >/dev/null || { fail "put big$i"; break; }; done
ctl "127.0.0.1:$MP" put keep yes >/dev/null
ctl "127.0.0.1:$MP" del big --prefix >/dev/null || fail "delete"
rev=$(ctl "127.0.0.1:$MP" get keep -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
ctl "127.0.0.1:$MP" compact "$rev" --physical >/dev/null || fail "compact"
before=$(dbsize "127.0.0.1:$MP")
ctl "127.0.0.1:$MP" defrag >/dev/null || fail "second defrag"
after=$(dbsize "127.0.0.1:$MP")
check "the store shrank after deleting, compacting and defragmenting ($before -> $after bytes)" [ "$after" -lt "$before" ]
check "data intact after defrag" [ "$(ctl "127.0.0.1:$MP" get keep --print-value-only)" == yes ]
check "deleted keys stay deleted" [ -z "$(ctl "127.0.0.1:$MP" get big --prefix --keys-only)" ]
finish
