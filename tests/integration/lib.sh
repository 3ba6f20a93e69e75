# lib.sh — helpers for integration tests: real bin/metastore (and etcd 3.4)
# processes on loopback ports, driven with etcdctl. Source it; call
# `finish` at the end. Everything started is killed on exit.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BIN:-$ROOT/bin}
METASTORE=${METASTORE:-$BIN/metastore}
export ETCDCTL_API=3
TMP=$(mktemp -d /tmp/ms-it.XXXXXX)
PIDS=()
FAILS=0
PASSES=0

cleanup() {
	exec 2>/dev/null # no job-control noise about the processes we kill
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [ "$FAILS" -eq 0 ] && [ -z "${KEEP_TMP:-}" ]; then rm -rf "$TMP"; else echo "  (kept $TMP)"; fi
}
trap cleanup EXIT

# free_port: a TCP port on 127.0.0.1 nobody listens on.
free_port() {
	local p
	while :; do
		# below the kernel's ephemeral range (32768+), where outgoing
		# connections would race us for the port; never the same port
		# twice in one test ($(free_port) runs in a subshell: remember in a file)
		p=$((10000 + RANDOM % 22000))
		grep -qx "$p" "$TMP/ports" 2>/dev/null && continue
		if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p" >>"$TMP/ports"; echo "$p"; return; fi
	done
}

ok() { PASSES=$((PASSES + 1)); echo "  ok: $*"; }
fail() { FAILS=$((FAILS + 1)); echo "  FAIL: $*"; }

# check DESC COND...: runs COND, passes when it succeeds.
check() { local d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }

# wait_for DESC SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_for() {
	local d=$1 secs=$2; shift 2
	local deadline=$(( $(date +%s%N) / 1000000 + secs * 1000 ))
	while (( $(date +%s%N) / 1000000 < deadline )); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "  timed out after ${secs}s waiting for: $d"
	return 1
}

ctl() { local ep=$1; shift; etcdctl --endpoints="$ep" --dial-timeout=2s --command-timeout=5s "$@"; }

healthy() { ctl "$1" endpoint health; }

# start_member KIND NAME DATADIR CLIENTPORT PEERPORT [extra flags]: starts
# metastore (KIND=ms) or etcd (KIND=etcd) as a one-member cluster; sets
# LAST_PID; logs to $DATADIR.log.
start_member() {
	local kind=$1 name=$2 dir=$3 cport=$4 pport=$5; shift 5
	local bin=$METASTORE
	[ "$kind" = etcd ] && bin=etcd
	"$bin" --name "$name" --data-dir "$dir" \
		--listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
		--listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
		--initial-cluster "$name=http://127.0.0.1:$pport" "$@" >>"$dir.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

finish() {
	echo "$(basename "$0"): $PASSES passed, $FAILS failed"
	[ "$FAILS" -eq 0 ]
}

# start_cluster N: N members m1..mN on fresh ports; sets CEP[i] (client
# endpoint), CPID[i], CDIR[i], CLUSTER (initial-cluster), ALL_EPS.
declare -a CEP CPID CDIR CPORT PPORT
start_cluster() {
	local n=$1 i
	shift
	CLUSTER=""
	for i in $(seq 1 "$n"); do
		CPORT[$i]=$(free_port); PPORT[$i]=$(free_port)
		CLUSTER="$CLUSTER${CLUSTER:+,}m$i=http://127.0.0.1:${PPORT[$i]}"
		CEP[$i]=127.0.0.1:${CPORT[$i]}
		CDIR[$i]=$TMP/m$i
	done
	ALL_EPS=$(IFS=,; echo "${CEP[*]}")
	for i in $(seq 1 "$n"); do start_cluster_member "$i" "$@"; done
}
# start_cluster_member I [flags]: (re)starts member I of the cluster.
start_cluster_member() {
	local i=$1; shift
	"$METASTORE" --name "m$i" --data-dir "${CDIR[$i]}" \
		--listen-client-urls "http://${CEP[$i]}" --advertise-client-urls "http://${CEP[$i]}" \
		--listen-peer-urls "http://127.0.0.1:${PPORT[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${PPORT[$i]}" \
		--initial-cluster "$CLUSTER" --heartbeat-interval 50 --election-timeout 500 "$@" >>"${CDIR[$i]}.log" 2>&1 &
	CPID[$i]=$!
	PIDS+=("${CPID[$i]}")
}
# leader_of EP: the leader's member id in hex as EP sees it (empty if none)
leader_of() {
	ctl "$1" endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)[0]["Status"]
print("%x" % s["leader"] if s.get("leader") else "")'
}
member_id_of() {
	ctl "$1" endpoint status -w json 2>/dev/null | python3 -c 'import json,sys; print("%x" % json.load(sys.stdin)[0]["Status"]["header"]["member_id"])'
}
