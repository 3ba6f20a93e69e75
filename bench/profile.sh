#!/usr/bin/env bash
# profile.sh — where a one-member MetaStore spends its CPU under one load:
# starts bin/metastore on a temp data dir, drives it with metastore-bench in
# the background, samples the server with perf (cpu-clock, DWARF call
# graphs) for PROFILE_SECONDS, and prints the hottest functions. Without a
# usable perf it runs the server under valgrind --tool=callgrind with a
# smaller load instead. Also prints the server's peak RSS.
#
#   bench/profile.sh [put|range|range-s|txn|lease|watch]      (default put)
#
# Environment: BIN (default bin), BENCH, METASTORE, PROFILE_SECONDS (5),
# TOP (lines of the report, 40), PROFILE_TOOL=callgrind (even with perf), SERVER_FLAGS (extra server flags), PROFILE_ONLY_LOAD=1 (no profiler: run the
# load to completion and print throughput and peak RSS), TOTAL (requests),
# KEEP_TMP=1, CLIENTS and CONNS (64 and 8).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOAD=${1:-${BENCH_LOAD:-put}}
BIN=${BIN:-$ROOT/bin}
METASTORE=${METASTORE:-$BIN/metastore}
BENCH=${BENCH:-$BIN/metastore-bench}
SECS=${PROFILE_SECONDS:-5}
TOP=${TOP:-40}
[ -x "$METASTORE" ] || { echo "profile: no $METASTORE (make first)" >&2; exit 2; }
[ -x "$BENCH" ] || { echo "profile: no $BENCH" >&2; exit 2; }

COMMON="--key-size 8 --val-size 256 --key-space 100000 --conns ${CONNS:-8} --clients ${CLIENTS:-64} --quiet"
case $LOAD in
put) ARGS="put" ;;
range) ARGS="range --consistency l" ;;
range-s) ARGS="range --consistency s" ;;
txn) ARGS="txn --txn-mode put" ;;
lease) ARGS="lease --lease-op keepalive" ;;
watch) ARGS="watch --watchers 1000 --streams 10 --key-space 100"; COMMON="--key-size 8 --val-size 256 --conns 2 --clients 16 --quiet" ;;
*) echo "profile: unknown load $LOAD (put, range, range-s, txn, lease, watch)" >&2; exit 2 ;;
esac

TMP=$(mktemp -d /tmp/ms-profile.XXXXXX)
SPID=""
LPID=""
cleanup() {
	[ -n "$LPID" ] && kill "$LPID" 2>/dev/null || true
	[ -n "$SPID" ] && kill "$SPID" 2>/dev/null || true
	wait 2>/dev/null || true
	if [ -z "${KEEP_TMP:-}" ]; then rm -rf "$TMP"; else echo "(kept $TMP)"; fi
}
trap cleanup EXIT

free_port() {
	local p
	while :; do
		# below the kernel's ephemeral range (32768+), where outgoing
		# connections would race us for the port
		p=$((10000 + RANDOM % 22000))
		if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
	done
}
CPORT=$(free_port)
PPORT=$(free_port)

MODE=${PROFILE_TOOL:-perf}
if [ -n "${PROFILE_ONLY_LOAD:-}" ]; then
	MODE=none
elif [ "$MODE" = callgrind ]; then
	:
elif ! command -v perf >/dev/null || ! perf record -e cpu-clock -o "$TMP/probe.data" true >/dev/null 2>&1; then
	if command -v valgrind >/dev/null; then MODE=callgrind; else MODE=none; echo "profile: no perf, no valgrind: load only"; fi
fi

WRAP=()
[ "$MODE" = callgrind ] && WRAP=(valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out")
# shellcheck disable=SC2086 # SERVER_FLAGS is a word list
"${WRAP[@]}" "$METASTORE" --name p0 --data-dir "$TMP/p0" \
	--listen-client-urls "http://127.0.0.1:$CPORT" --advertise-client-urls "http://127.0.0.1:$CPORT" \
	--listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
	--initial-cluster "p0=http://127.0.0.1:$PPORT" --initial-cluster-state new ${SERVER_FLAGS:-} >"$TMP/server.log" 2>&1 &
SPID=$!
deadline=$((SECONDS + 60))
until (exec 3<>/dev/tcp/127.0.0.1/$CPORT) 2>/dev/null; do
	if ((SECONDS > deadline)) || ! kill -0 "$SPID" 2>/dev/null; then
		echo "profile: server did not start; log tail:" >&2
		tail -5 "$TMP/server.log" >&2
		exit 1
	fi
	sleep 0.1
done
sleep 0.5 # leader election of the single member

case $MODE in
perf)
	TOTAL=${TOTAL:-10000000}
	# shellcheck disable=SC2086 # word lists on purpose
	"$BENCH" $ARGS $COMMON --total "$TOTAL" --endpoints "127.0.0.1:$CPORT" >"$TMP/bench.txt" 2>&1 &
	LPID=$!
	sleep 1 # past start-up and lease grants
	echo "profile: perf record -e cpu-clock -F 999 --call-graph dwarf -p $SPID for ${SECS}s under '$ARGS'"
	perf record -e cpu-clock -F 999 --call-graph dwarf -o "$TMP/perf.data" -p "$SPID" -- sleep "$SECS" \
		>"$TMP/perf.log" 2>&1 || { cat "$TMP/perf.log" >&2; exit 1; }
	kill "$LPID" 2>/dev/null || true
	wait "$LPID" 2>/dev/null || true
	LPID=""
	echo "== self time (perf report --no-children --sort sym)"
	perf report -i "$TMP/perf.data" --stdio --no-children --sort sym -g none 2>/dev/null |
		grep -E '^ +[0-9]' | sed -n "1,${TOP}p"
	echo "== by thread id (perf report --sort pid)"
	perf report -i "$TMP/perf.data" --stdio --no-children --sort pid -g none 2>/dev/null |
		grep -E '^ +[0-9]' | sed -n 1,10p
	;;
callgrind)
	TOTAL=${TOTAL:-20000}
	# shellcheck disable=SC2086
	"$BENCH" $ARGS $COMMON --total "$TOTAL" --timeout 120 --endpoints "127.0.0.1:$CPORT" >"$TMP/bench.txt" 2>&1 || true
	kill "$SPID"
	wait "$SPID" 2>/dev/null || true
	SPID=""
	echo "== callgrind (self cost, top $TOP)"
	callgrind_annotate --inclusive=no "$TMP/callgrind.out" 2>/dev/null | sed -n "1,$((TOP + 20))p"
	;;
none)
	TOTAL=${TOTAL:-60000}
	# server CPU per request: steadier than req/s on a shared machine
	cpu() { awk '{print $14 + $15}' "/proc/$SPID/stat"; }
	c0=$(cpu)
	# shellcheck disable=SC2086
	"$BENCH" $ARGS $COMMON --total "$TOTAL" --endpoints "127.0.0.1:$CPORT" --json "$TMP/bench.json" >"$TMP/bench.txt" 2>&1
	c1=$(cpu)
	cat "$TMP/bench.txt"
	awk -v a="$c0" -v b="$c1" -v k="$(getconf CLK_TCK)" -v n="$TOTAL" \
		'BEGIN {printf "server CPU: %.2f s, %.1f us/request\n", (b - a) / k, (b - a) / k / n * 1e6}'
	;;
esac
if [ -n "$SPID" ] && [ -r "/proc/$SPID/status" ]; then
	echo "server peak RSS: $(awk '/^VmHWM:/ {print int($2 / 1024)}' "/proc/$SPID/status") MiB" \
		"(now $(awk '/^VmRSS:/ {print int($2 / 1024)}' "/proc/$SPID/status") MiB)"
fi
