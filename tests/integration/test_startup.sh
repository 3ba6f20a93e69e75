#!/usr/bin/env bash
# Start-up: etcd's flags and messages, ETCD_* variables, refusal of foreign or
# damaged data directories (left untouched), HTTP endpoints, restart.
source "$(dirname "$0")/lib.sh"

# expect_exit CODE PATTERN CMD...: CMD exits with CODE and prints PATTERN
expect_exit() {
	local code=$1 pat=$2; shift 2
	local out rc
	out=$(timeout 10 "$@" 2>&1 </dev/null); rc=$?
	if [ "$rc" -eq "$code" ] && grep -qF -- "$pat" <<<"$out"; then ok "exit $code: $pat"; else
		fail "expected exit $code and '$pat', got exit $rc: $(head -c 400 <<<"$out")"; fi
}

expect_exit 2 "flag provided but not defined: -no-such-flag" "$METASTORE" --no-such-flag
expect_exit 1 "flag --discovery is an etcd flag that MetaStore does not support" "$METASTORE" --discovery x
expect_exit 1 "error verifying flags, --advertise-client-urls is required when --listen-client-urls is set explicitly" \
	"$METASTORE" --listen-client-urls http://127.0.0.1:1
expect_exit 1 "should be at least as 5 times as --heartbeat-interval" "$METASTORE" --heartbeat-interval 300 --election-timeout 1000
expect_exit 1 "'stray' is not a valid flag" "$METASTORE" stray
expect_exit 1 "couldn't find local name \"x\" in the initial cluster configuration" "$METASTORE" --name x --data-dir "$TMP/nox"
expect_exit 1 'conflicting environment variable "ETCD_NAME" is shadowed' env ETCD_NAME=a "$METASTORE" --name a
expect_exit 1 "--config-file is not supported yet" "$METASTORE" --config-file /dev/null
expect_exit 0 "etcd Version: 3.4.23" "$METASTORE" --version
expect_exit 0 "--initial-cluster-token" "$METASTORE" --help

P=$(free_port); Q=$(free_port)
# an etcd data directory is refused and left as it was
mkdir -p "$TMP/etcddir/member/wal" "$TMP/etcddir/member/snap"
echo "bbolt" >"$TMP/etcddir/member/snap/db"
before=$(cd "$TMP/etcddir" && find . -type f -exec sha256sum {} + | sort)
expect_exit 1 "holds an etcd data set (member/)" "$METASTORE" --name m --data-dir "$TMP/etcddir" \
	--listen-client-urls http://127.0.0.1:$P --advertise-client-urls http://127.0.0.1:$P \
	--initial-advertise-peer-urls http://127.0.0.1:$Q --initial-cluster m=http://127.0.0.1:$Q
after=$(cd "$TMP/etcddir" && find . -type f -exec sha256sum {} + | sort)
check "etcd data directory untouched" [ "$before" == "$after" ]
mkdir -p "$TMP/otherdir" && echo hi >"$TMP/otherdir/notes.txt"
expect_exit 1 "is not a MetaStore data directory" "$METASTORE" --name m --data-dir "$TMP/otherdir" \
	--initial-advertise-peer-urls http://127.0.0.1:$Q --initial-cluster m=http://127.0.0.1:$Q
check "foreign file untouched" [ "$(cat "$TMP/otherdir/notes.txt")" == hi ]

# a real member: HTTP endpoints, then restart from its data
DIR=$TMP/ms
start_member ms m1 "$DIR" "$P" "$Q"
wait_for "ready" 20 healthy "127.0.0.1:$P" || { fail "member did not start"; finish; exit 1; }
check "/health" [ "$(curl -s http://127.0.0.1:$P/health)" == '{"health":"true"}' ]
check "/version" [ "$(curl -s http://127.0.0.1:$P/version)" == '{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}' ]
check "/metrics has etcd_server_has_leader 1" bash -c "curl -s http://127.0.0.1:$P/metrics | grep -qx 'etcd_server_has_leader 1'"
check "POST /health -> 405" [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:$P/health)" == 405 ]
check "log has 'published' line" grep -q "etcdserver: published {Name:m1 ClientURLs:\[http://127.0.0.1:$P\]} to cluster" "$DIR.log"
check "log has 'enabled capabilities for version 3.4'" grep -q "enabled capabilities for version 3.4" "$DIR.log"
ctl "127.0.0.1:$P" put k1 v1 >/dev/null
id1=$(ctl "127.0.0.1:$P" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["member_id"])')
kill "$LAST_PID"; wait "$LAST_PID" 2>/dev/null
check "SIGTERM stops the member" bash -c "! kill -0 $LAST_PID 2>/dev/null"
# a new data dir and everything in it is private: directories 0700, files 0600
check "data dir created 0700" [ "$(stat -c %a "$DIR")" == 700 ]
check "the store has files" [ "$(find "$DIR" -type f | grep -c .)" -gt 4 ]
check "every directory under the data dir is 0700" [ -z "$(find "$DIR" -type d ! -perm 700)" ]
check "every file under the data dir is 0600" [ -z "$(find "$DIR" -type f ! -perm 600)" ]
# an existing data dir with wider permissions: etcd 3.4.10+ warns (pkg/fileutil
# CheckDirPermission) and goes on; so does MetaStore, naming the directory
chmod 755 "$DIR"
# restart ignores --initial-cluster (what is on disk wins)
start_member ms m1 "$DIR" "$P" "$Q"
wait_for "restart" 20 healthy "127.0.0.1:$P" || fail "member did not restart"
check "warns about a 0755 data dir, naming it" grep -qF "pkg/fileutil: check file permission: directory \"$DIR\" exist, but the permission is \"drwxr-xr-x\". The recommended permission is \"-rwx------\"" "$DIR.log"
check "the 0755 data dir is left as it was" [ "$(stat -c %a "$DIR")" == 755 ]
check "data survives a clean restart" [ "$(ctl "127.0.0.1:$P" get k1 --print-value-only)" == v1 ]
id2=$(ctl "127.0.0.1:$P" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["member_id"])')
check "member ID kept across restart" [ "$id1" == "$id2" ]
kill -9 "$LAST_PID"; wait "$LAST_PID" 2>/dev/null

# damaged store: refused with a message naming it
rm -f "$DIR/metastore/kv/CURRENT"
expect_exit 1 "metastore/kv" "$METASTORE" --name m1 --data-dir "$DIR" \
	--listen-client-urls http://127.0.0.1:$P --advertise-client-urls http://127.0.0.1:$P \
	--initial-advertise-peer-urls http://127.0.0.1:$Q --initial-cluster m1=http://127.0.0.1:$Q
finish
