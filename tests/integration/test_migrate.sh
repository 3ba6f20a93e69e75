#!/usr/bin/env bash
# Migration end to end: a legacy Go MetaStore RocksDB (built from
# tests/fixtures/gob/legacy.load) goes through bin/metastore-migrate, then
# bin/metastore serves it and etcdctl sees every key, revision and lease of
# expected.json. Broken sources and bad flags are refused with nothing
# written, and the source stays byte-identical.
source "$(dirname "$0")/lib.sh"
MIGRATE=${MIGRATE:-$BIN/metastore-migrate}
FIXD=$ROOT/tests/fixtures/gob

cc -O1 -o "$TMP/mklegacy" "$FIXD/gen/mklegacy.c" -lrocksdb || { fail "build mklegacy"; finish; exit 1; }
"$TMP/mklegacy" "$FIXD/legacy.load" "$TMP/legacy" >/dev/null || { fail "build the legacy db"; finish; exit 1; }
hash_src() { (cd "$1" && find . -type f -exec sha256sum {} + | sort); }
before=$(hash_src "$TMP/legacy")
P=$(free_port); Q=$(free_port)
PEER=http://127.0.0.1:$Q
cluster=(--name m1 --initial-cluster "m1=$PEER" --initial-advertise-peer-urls "$PEER")

# expect_exit CODE PATTERN CMD...: CMD exits with CODE and prints PATTERN
expect_exit() {
	local code=$1 pat=$2; shift 2
	local out rc
	out=$(timeout 60 "$@" 2>&1 </dev/null); rc=$?
	if [ "$rc" -eq "$code" ] && grep -qF -- "$pat" <<<"$out"; then ok "exit $code: $pat"; else
		fail "expected exit $code and '$pat', got exit $rc: $(head -c 400 <<<"$out")"; fi
}
# nothing_at DIR: neither DIR nor DIR.tmp-* exists
nothing_at() { [ ! -e "$1" ] && ! compgen -G "$1.tmp-*" >/dev/null; }

# ---- refusals: nothing written, source untouched ----
expect_exit 2 "unknown flag --bogus" "$MIGRATE" --bogus
expect_exit 1 "one-member cluster" "$MIGRATE" --from "$TMP/legacy" --data-dir "$TMP/x" --name m1 \
	--initial-cluster "m1=$PEER,m2=http://127.0.0.1:1" --initial-advertise-peer-urls "$PEER"
expect_exit 1 "not in --initial-advertise-peer-urls" "$MIGRATE" --from "$TMP/legacy" --data-dir "$TMP/x" --name m1 \
	--initial-cluster "m1=http://127.0.0.1:1" --initial-advertise-peer-urls "$PEER"
expect_exit 1 "not a RocksDB directory" "$MIGRATE" --from "$TMP/nowhere" --data-dir "$TMP/x" "${cluster[@]}"
check "nothing written for bad flags" nothing_at "$TMP/x"
mkdir -p "$TMP/full" && echo mine >"$TMP/full/keep"
expect_exit 1 "is not empty" "$MIGRATE" --from "$TMP/legacy" --data-dir "$TMP/full" "${cluster[@]}"
check "non-empty data dir untouched" [ "$(cat "$TMP/full/keep")" == mine ] 

# a truncated gob value under a key with a NUL byte
cp "$FIXD/legacy.load" "$TMP/bad.load"
val=$(head -1 "$FIXD/legacy.load" | sed 's/.* ==> 0x//' | cut -c1-300)
echo "0x6b763a6261640001 ==> 0x$val" >>"$TMP/bad.load"
"$TMP/mklegacy" "$TMP/bad.load" "$TMP/badsrc" >/dev/null
bad_before=$(hash_src "$TMP/badsrc")
expect_exit 1 'key "kv:bad\x00\x01": value is neither gob (gob: offset 98' \
	"$MIGRATE" --from "$TMP/badsrc" --data-dir "$TMP/bad" "${cluster[@]}"
check "no data dir after a refused value" nothing_at "$TMP/bad"
check "refused source unchanged" [ "$bad_before" == "$(hash_src "$TMP/badsrc")" ]

expect_exit 0 "dry run checked 400 keys (400 gob, 0 binary), 9 leases (101 keys attached), revision 1207" \
	"$MIGRATE" --from "$TMP/legacy" --dry-run
check "dry run writes nothing" nothing_at "$TMP/new"

# ---- the migration ----
expect_exit 0 "migrated 400 keys (400 gob, 0 binary), 9 leases (101 keys attached), revision 1207" \
	"$MIGRATE" --from "$TMP/legacy" --data-dir "$TMP/new" "${cluster[@]}" --verify
check "source byte-identical" [ "$before" == "$(hash_src "$TMP/legacy")" ]
check "bootstrap file" grep -qx "initial-cluster=m1=$PEER" "$TMP/new/metastore/migrated"
check "no temporary directory left" bash -c "! compgen -G '$TMP/new.tmp-*'"

# ---- a first start with other flags than the migration's is refused ----
OQ=$(free_port)
expect_exit 1 "was migrated for --name=m1, but this member was started with --name=other" \
	"$METASTORE" --name other --data-dir "$TMP/new" --initial-cluster "other=http://127.0.0.1:$OQ" \
	--initial-advertise-peer-urls "http://127.0.0.1:$OQ"
check "the refused start created no raft log" [ ! -e "$TMP/new/metastore/raft" ]

# ---- served by metastore, read with etcdctl ----
start_member ms m1 "$TMP/new" "$P" "$Q"
EP=127.0.0.1:$P
if ! wait_for "ready" 20 healthy "$EP"; then
	fail "metastore did not start on the migrated data dir: $(tail -3 "$TMP/new.log")"
	finish; exit 1
fi
ctl "$EP" get --from-key "" -w json >"$TMP/all.json"
check "every key, value and revision as expected" python3 - "$FIXD/expected.json" "$TMP/all.json" <<'EOF'
import json, sys
exp = json.load(open(sys.argv[1])); got = json.load(open(sys.argv[2]))
assert got["header"]["revision"] == exp["revision"], (got["header"]["revision"], exp["revision"])
kvs = {k["key"]: k for k in got.get("kvs", [])}
assert len(kvs) == len(exp["kvs"]) == got["count"], (len(kvs), len(exp["kvs"]))
for e in exp["kvs"]:
    g = kvs[e["key"]]
    for f in ("create_revision", "mod_revision", "version", "lease"):
        assert g.get(f, 0) == e[f], (e["key"], f, g.get(f, 0), e[f])
    assert g.get("value") == e["value"] or (not g.get("value") and not e["value"]), e["key"]
EOF
# (skipped, not passed, while the server does not serve the Lease service)
if ctl "$EP" lease list -w json >"$TMP/leases.json" 2>"$TMP/leases.err" || ! grep -q "code = Unimplemented" "$TMP/leases.err"; then
for id in $(python3 -c 'import json,sys; [print("%x" % l["id"]) for l in json.load(open(sys.argv[1])).get("leases", [])]' "$TMP/leases.json"); do
	ctl "$EP" lease timetolive "$id" --keys -w json
done >"$TMP/ttl.json"
check "every lease with its TTL and keys" python3 - "$FIXD/expected.json" "$TMP/ttl.json" <<'EOF'
import json, sys
exp = json.load(open(sys.argv[1]))
got = {}
for line in open(sys.argv[2]):
    if line.strip():
        r = json.loads(line); got[r["id"]] = r
assert sorted(got) == sorted(l["id"] for l in exp["leases"]), (sorted(got), [l["id"] for l in exp["leases"]])
for l in exp["leases"]:
    g = got[l["id"]]
    assert g["granted-ttl"] == l["ttl"], (l["id"], g["granted-ttl"], l["ttl"])
    want = sorted(k["key"] for k in exp["kvs"] if k["lease"] == l["id"])  # base64, exact bytes
    assert sorted(g.get("keys", [])) == want, l["id"]
EOF
else
	echo "  SKIP: leases not compared: the server does not serve etcdserverpb.Lease yet"
fi
check "history before the migration is compacted" \
	bash -c "ctl() { etcdctl --endpoints=$EP --dial-timeout=2s --command-timeout=5s \"\$@\"; }; ctl get k000003 --rev=1206 2>&1 | grep -q 'required revision has been compacted'"
rev=$(ctl "$EP" put after-migration v -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
check "the next write is revision 1208" [ "$rev" == 1208 ]
finish
