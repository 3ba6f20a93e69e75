#!/usr/bin/env bash
# bench_compare.sh — MetaStore against etcd 3.4 on this machine: the same
# loads from metastore-bench against a fresh cluster of each (loopback ports,
# temp data dirs, identical flags), run one after the other so they never
# share the CPU; prints a side-by-side table with ratios and writes
# bench/results/compare.json.
#
#   bench/bench_compare.sh [MEMBERS]
#
# Environment:
#   MEMBERS    members per cluster (default 1; 3 once MetaStore has its raft
#              transport: every load then spreads over all endpoints)
#   SCALE      multiplies every --total (default 1; 0.1 for a smoke run)
#   KINDS      which servers, in order (default "etcd metastore")
#   LOADS      space-separated subset of the load names below (default all)
#   BENCH, METASTORE, ETCD   binaries (defaults: bin/metastore-bench or
#              bin/metastore_bench, bin/metastore, etcd on PATH)
#   OUT        JSON result file (default bench/results/compare.json)
#   KEEP_TMP=1 keep data dirs and logs
#   TLS=1      https on both ports with mutual TLS for both servers (the same
#              test certificates, made with tests/integration/tls_certs.sh);
#              the load generator and etcdctl present a client certificate
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MEMBERS=${MEMBERS:-${1:-1}}
SCALE=${SCALE:-1}
KINDS=${KINDS:-"etcd metastore"}
METASTORE=${METASTORE:-$ROOT/bin/metastore}
ETCD=${ETCD:-etcd}
OUT=${OUT:-$ROOT/bench/results/compare.json}
if [ -z "${BENCH:-}" ]; then
	for b in "$ROOT/bin/metastore-bench" "$ROOT/bin/metastore_bench"; do
		[ -x "$b" ] && BENCH=$b && break
	done
fi
for tool in jq etcdctl; do command -v $tool >/dev/null || { echo "bench_compare: needs $tool" >&2; exit 2; }; done
[ -x "${BENCH:-}" ] || { echo "bench_compare: no metastore-bench binary (set BENCH=)" >&2; exit 2; }
[ -x "$METASTORE" ] || { echo "bench_compare: no $METASTORE (make first)" >&2; exit 2; }
command -v "$ETCD" >/dev/null || { echo "bench_compare: no etcd binary" >&2; exit 2; }

# name|metastore-bench arguments (--total is scaled). Same for both servers.
COMMON="--key-size 8 --val-size 256 --key-space 100000"
ALL_LOADS=(
	"put-1c|put --conns 1 --clients 1 --total 3000"
	"put-64c|put --conns 8 --clients 64 --total 60000"
	"put-256c|put --conns 16 --clients 256 --total 100000"
	"range-l-1c|range --consistency l --conns 1 --clients 1 --total 5000"
	"range-l-64c|range --consistency l --conns 8 --clients 64 --total 100000"
	"range-s-64c|range --consistency s --conns 8 --clients 64 --total 100000"
	"txn-put-64c|txn --txn-mode put --conns 8 --clients 64 --total 40000"
	"txn-put-256c|txn --txn-mode put --conns 16 --clients 256 --total 60000"
	"txn-cas-64c|txn --txn-mode cas --conns 8 --clients 64 --total 40000"
	"watch-1k|watch --watchers 1000 --streams 10 --key-space 100 --conns 2 --clients 16 --total 5000"
	"lease-ka-64c|lease --lease-op keepalive --conns 8 --clients 64 --total 100000"
)
WANT=${LOADS:-}

TMP=$(mktemp -d /tmp/ms-bench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -z "${KEEP_TMP:-}" ]; then rm -rf "$TMP"; else echo "(kept $TMP)"; fi
}
trap cleanup EXIT

S=http
TLS_FLAGS=()
TLS_CLI=()
if [ "${TLS:-0}" = 1 ]; then
	S=https
	sh "$ROOT/tests/integration/tls_certs.sh" "$TMP/certs" >/dev/null
	C=$TMP/certs
	TLS_FLAGS=(--cert-file "$C/server.crt" --key-file "$C/server.key" --trusted-ca-file "$C/ca.crt" --client-cert-auth
		--peer-cert-file "$C/server.crt" --peer-key-file "$C/server.key" --peer-trusted-ca-file "$C/ca.crt"
		--peer-client-cert-auth)
	TLS_CLI=(--cacert "$C/ca.crt" --cert "$C/client.crt" --key "$C/client.key")
fi

free_port() {
	local p
	while :; do
		# below the kernel's ephemeral range (32768+), where outgoing
		# connections would race us for the port
		p=$((10000 + RANDOM % 22000))
		if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
	done
}

# start_cluster KIND N: N members of KIND (etcd|metastore) with fresh data
# dirs; sets PIDS (this cluster's), ENDPOINTS (comma list).
start_cluster() {
	local kind=$1 n=$2 bin i initial="" cports=() pports=()
	bin=$METASTORE
	[ "$kind" = etcd ] && bin=$ETCD
	for ((i = 0; i < n; i++)); do
		cports+=("$(free_port)")
		pports+=("$(free_port)")
		initial+="${initial:+,}$kind$i=$S://127.0.0.1:${pports[i]}"
	done
	CLUSTER_PIDS=()
	ENDPOINTS=""
	for ((i = 0; i < n; i++)); do
		local dir=$TMP/$kind$i
		"$bin" --name "$kind$i" --data-dir "$dir" \
			--listen-client-urls "$S://127.0.0.1:${cports[i]}" --advertise-client-urls "$S://127.0.0.1:${cports[i]}" \
			--listen-peer-urls "$S://127.0.0.1:${pports[i]}" --initial-advertise-peer-urls "$S://127.0.0.1:${pports[i]}" \
			--initial-cluster "$initial" --initial-cluster-state new "${TLS_FLAGS[@]}" >>"$dir.log" 2>&1 &
		CLUSTER_PIDS+=("$!")
		PIDS+=("$!")
		ENDPOINTS+="${ENDPOINTS:+,}$S://127.0.0.1:${cports[i]}"
	done
	local deadline=$((SECONDS + 30))
	until etcdctl --endpoints="$ENDPOINTS" --dial-timeout=1s --command-timeout=2s "${TLS_CLI[@]}" endpoint health >/dev/null 2>&1; do
		if ((SECONDS > deadline)); then
			echo "bench_compare: $kind cluster not healthy after 30s; log tail:" >&2
			tail -5 "$TMP/${kind}0.log" >&2
			return 1
		fi
		sleep 0.1
	done
}

stop_cluster() {
	local p
	for p in "${CLUSTER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${CLUSTER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

# Peak RSS (KiB) summed over the cluster's members.
cluster_hwm() {
	local p sum=0 v
	for p in "${CLUSTER_PIDS[@]}"; do
		v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}

# CPU seconds (user + system) used so far by the cluster.
cluster_cpu() {
	local p tck total=0
	tck=$(getconf CLK_TCK)
	for p in "${CLUSTER_PIDS[@]}"; do
		total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	awk -v t="$total" -v k="$tck" 'BEGIN {printf "%.2f", t / k}'
}

scaled() { awk -v t="$1" -v s="$SCALE" 'BEGIN {v = int(t * s); print (v < 1 ? 1 : v)}'; }

ROWS=$TMP/rows.jsonl
: >"$ROWS"
echo "bench_compare: $MEMBERS member(s) per cluster, scale $SCALE, $(nproc) CPUs, bench $BENCH, $S"
for kind in $KINDS; do
	echo "== $kind: starting $MEMBERS member(s)"
	start_cluster "$kind" "$MEMBERS"
	for entry in "${ALL_LOADS[@]}"; do
		name=${entry%%|*}
		args=${entry#*|}
		if [ -n "$WANT" ] && [[ " $WANT " != *" $name "* ]]; then continue; fi
		total=${args##*--total }
		total=${total%% *}
		args=${args/--total $total/--total $(scaled "$total")}
		cpu0=$(cluster_cpu)
		# shellcheck disable=SC2086 # args is a word list on purpose
		if "$BENCH" $args $COMMON --endpoints "$ENDPOINTS" "${TLS_CLI[@]}" --quiet --json "$TMP/$kind-$name.json" \
			>"$TMP/$kind-$name.txt" 2>&1; then
			cpu=$(awk -v a="$cpu0" -v b="$(cluster_cpu)" 'BEGIN {printf "%.2f", b - a}')
			jq -c --arg kind "$kind" --arg load "$name" --arg args "$args $COMMON" --argjson cpu "$cpu" \
				'{kind: $kind, load: $load, args: $args, ok: .ok, errors: .errors,
				  rps: .requests_per_sec, p50_ms: .latency.p50_ms, p99_ms: .latency.p99_ms,
				  avg_ms: .latency.avg_ms, server_cpu_s: $cpu, client_cpu_s: .client_cpu_s, latency: .latency,
				  watch_p50_ms: .watch_delivery_latency.p50_ms, watch_p99_ms: .watch_delivery_latency.p99_ms}' \
				"$TMP/$kind-$name.json" >>"$ROWS"
			printf '   %-13s %10.0f req/s  p99 %7.2f ms\n' "$name" \
				"$(jq .requests_per_sec "$TMP/$kind-$name.json")" "$(jq .latency.p99_ms "$TMP/$kind-$name.json")"
		else
			echo "   $name: FAILED: $(tail -1 "$TMP/$kind-$name.txt")"
			jq -nc --arg kind "$kind" --arg load "$name" --arg args "$args $COMMON" \
				--arg why "$(tail -1 "$TMP/$kind-$name.txt")" \
				'{kind: $kind, load: $load, args: $args, failed: $why}' >>"$ROWS"
		fi
	done
	hwm=$(cluster_hwm)
	jq -nc --arg kind "$kind" --argjson kb "$hwm" '{kind: $kind, load: "peak-rss", rss_kb: $kb}' >>"$ROWS"
	echo "   peak RSS     $((hwm / 1024)) MiB"
	stop_cluster
done

mkdir -p "$(dirname "$OUT")"
jq -s --arg date "$(date -u +%FT%TZ)" --argjson members "$MEMBERS" --argjson cpus "$(nproc)" \
	--arg etcd "$("$ETCD" --version 2>/dev/null | head -1)" \
	--arg rev "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" --arg scale "$SCALE" '
	def row(k; l): map(select(.kind == k and .load == l)) | first;
	def ratio(a; b): if (a != null and b != null and b != 0) then (a / b * 100 | round / 100) else null end;
	. as $all |
	{date: $date, members: $members, cpus: $cpus, scale: $scale, etcd_version: $etcd, metastore_rev: $rev,
	 loads: ([$all[] | select(.load != "peak-rss") | .load] | unique | map(. as $n | {load: $n,
	       etcd: ($all | row("etcd"; $n)), metastore: ($all | row("metastore"; $n))}
	     | .rps_ratio = ratio(.metastore.rps; .etcd.rps)
	     | .p99_ratio = ratio(.metastore.p99_ms; .etcd.p99_ms))),
	 peak_rss_kb: {etcd: (map(select(.load == "peak-rss" and .kind == "etcd")) | first | .rss_kb),
	               metastore: (map(select(.load == "peak-rss" and .kind == "metastore")) | first | .rss_kb)}}
	| .peak_rss_kb.ratio = ratio(.peak_rss_kb.metastore; .peak_rss_kb.etcd)' "$ROWS" >"$OUT"

# the side-by-side table, in the order of ALL_LOADS
echo
printf '%-13s | %10s %10s %6s | %8s %8s %6s | %8s %8s | %8s %8s\n' load "etcd r/s" "ms r/s" "x" "etcd p99" "ms p99" "x" "etcd cpu" "ms cpu" "cli@etcd" "cli@ms"
printf '%s\n' "--------------+-------------------------------+--------------------------+-------------------+------------------"
for entry in "${ALL_LOADS[@]}"; do
	name=${entry%%|*}
	jq -r --arg n "$name" '.loads[] | select(.load == $n) |
		def f(x; d): if x == null then "n/a" else (x * d | round / d | tostring) end;
		[ .load, f(.etcd.rps; 1), f(.metastore.rps; 1), f(.rps_ratio; 100),
		  f(.etcd.p99_ms; 100), f(.metastore.p99_ms; 100), f(.p99_ratio; 100),
		  f(.etcd.server_cpu_s; 100), f(.metastore.server_cpu_s; 100),
		  f(.etcd.client_cpu_s; 100), f(.metastore.client_cpu_s; 100) ] | @tsv' "$OUT" |
		awk -F'\t' '{printf "%-13s | %10s %10s %6s | %8s %8s %6s | %8s %8s | %8s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11}'
done
jq -r '.loads[] | select(.etcd.watch_p99_ms != null or .metastore.watch_p99_ms != null) |
	"\(.load) watch delivery (put sent -> event) p50/p99 ms: etcd \(.etcd.watch_p50_ms)/\(.etcd.watch_p99_ms)  metastore \(.metastore.watch_p50_ms)/\(.metastore.watch_p99_ms)"' "$OUT"
jq -r '.peak_rss_kb | "peak RSS (MiB): etcd \((.etcd // 0) / 1024 | round)  metastore \((.metastore // 0) / 1024 | round)  x \(.ratio)"' "$OUT"
echo "(x = metastore / etcd; r/s higher is better, p99 and cpu lower is better; cpu = server CPU seconds for the load;"
echo " cli@ = the load generator's own CPU seconds against that server: client and servers share $(nproc) CPUs)"
echo "wrote $OUT"
