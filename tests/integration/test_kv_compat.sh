#!/usr/bin/env bash
# etcdctl KV commands print exactly what they print against etcd 3.4: the
# same commands run against a fresh MetaStore and a fresh etcd side by side.
source "$(dirname "$0")/lib.sh"

MP=$(free_port); MQ=$(free_port); EP=$(free_port); EQ=$(free_port)
start_member ms m1 "$TMP/ms" "$MP" "$MQ"
start_member etcd e1 "$TMP/etcd" "$EP" "$EQ"
MS=127.0.0.1:$MP
ET=127.0.0.1:$EP
wait_for "metastore ready" 20 healthy "$MS" || { fail "metastore did not start"; cat "$TMP/ms.log"; finish; exit 1; }
wait_for "etcd ready" 30 healthy "$ET" || { fail "etcd did not start"; finish; exit 1; }

# run ENDPOINT INPUT ARGS...: etcdctl output (stdout+stderr) and exit code
run() {
	local ep=$1 input=$2; shift 2
	local out rc
	out=$(printf '%s' "$input" | ctl "$ep" "$@" 2>&1); rc=$?
	# client-side noise that differs per run: timestamps, client ids,
	# the endpoint's port, latencies
	printf '%s\nexit=%d\n' "$out" "$rc" | sed -E -e 's/"ts":"[^"]*"/"ts":"T"/g' \
		-e 's/"target":"[^"]*"/"target":"X"/g' -e "s/$ep/ENDPOINT/g" -e 's/took = [0-9.]+[a-zµ]+/took = D/g'
}

# JSON output: the IDs and term differ by design between the two servers
norm_json() {
	python3 -c '
import json, sys, re
t = sys.stdin.read()
lines = []
for line in t.splitlines():
    try:
        o = json.loads(line)
    except Exception:
        lines.append(line); continue
    def walk(x):
        if isinstance(x, dict):
            for k in list(x):
                if k in ("cluster_id", "member_id", "raft_term"):
                    x[k] = 0
                else:
                    walk(x[k])
        elif isinstance(x, list):
            for v in x: walk(v)
    walk(o)
    lines.append(json.dumps(o, sort_keys=True))
print("\n".join(lines))'
}

same_in() {
	local desc=$1 input=$2; shift 2
	local a b
	a=$(run "$MS" "$input" "$@"); b=$(run "$ET" "$input" "$@")
	if [[ " $* " == *" -w json "* || " $* " == *"--write-out=json"* ]]; then
		a=$(printf '%s' "$a" | norm_json); b=$(printf '%s' "$b" | norm_json)
	fi
	if [ "$a" == "$b" ]; then ok "$desc"; else
		fail "$desc: etcdctl $*"
		diff <(echo "$b") <(echo "$a") | sed 's/^/      /' | head -20
	fi
}
same() { local d=$1; shift; same_in "$d" "" "$@"; }

same "put" put foo bar
same "put overwrites" put foo bar2
same "put --prev-kv" put foo bar3 --prev-kv
same "get" get foo
same "get missing" get nosuch
same "get -w json" get foo -w json
same "get --rev old" get foo --rev=2
same "get --rev 1 (empty store)" get foo --rev=1
for k in a b c d e; do same "put $k" put "$k" "v$k"; done
same "put a again" put a va2
same "put binary-ish value" put key-with-dash "value with spaces"
same "range [a, d)" get a d
same "--prefix" get --prefix ""
same "--prefix k" get --prefix k
same "--from-key" get --from-key c
same "--limit" get --prefix "" --limit 2
same "--limit -w json (more, count)" get --prefix "" --limit 2 -w json
same "--keys-only" get --prefix "" --keys-only
same "--print-value-only" get --prefix "" --print-value-only
same "sort by KEY DESCEND" get --prefix "" --sort-by=KEY --order=DESCEND
same "sort by VERSION" get --prefix "" --sort-by=VERSION --order=DESCEND
same "sort by CREATE" get --prefix "" --sort-by=CREATE --order=ASCEND
same "sort by MODIFY" get --prefix "" --sort-by=MODIFY --order=DESCEND
same "sort by VALUE" get --prefix "" --sort-by=VALUE
same "sort + limit" get --prefix "" --sort-by=MODIFY --order=DESCEND --limit 3
same "serializable get" get foo --consistency=s
same "hex" get foo --hex
same "get --rev middle range" get --prefix "" --rev=5
same "json full range" get --prefix "" -w json
same "del single" del b
same "del missing (no revision bump)" del nosuch
same "get after no-op del" get --prefix "" -w json
same "del --prev-kv" del c --prev-kv
same "del range" del d f
same "del --prefix" del --prefix key
same "del --from-key" del --from-key zz
same "put for txn" put txnkey 1

TXN_OK='value("txnkey") = "1"

put txnkey 2
get txnkey

put txnkey failed

'
same_in "txn success branch" "$TXN_OK" txn
same_in "txn failure branch" "$TXN_OK" txn
TXN_CMP='mod("txnkey") > "0"
version("txnkey") = "2"
create("txnkey") < "1000"

del txnkey
put other x

get txnkey

'
same_in "txn compares mod/version/create" "$TXN_CMP" txn
TXN_MISSING='value("nokey") = "x"

put never 1

get never

'
same_in "txn on missing key" "$TXN_MISSING" txn
same_in "txn -w json" "$TXN_CMP" txn -w json
same "state after txns" get --prefix "" -w json
same "compaction" compaction 5
same "get compacted rev" get foo --rev=3
same "get future rev" get foo --rev=100000
same "compaction again (compacted)" compaction 4
same "compaction future" compaction 100000
same "compaction --physical" compaction --physical 8
same "get at compacted boundary" get --prefix "" --rev=8
same "empty key" put "" v
same "get empty key" get ""
same "final state" get --prefix "" -w json
same "endpoint health" endpoint health
finish
