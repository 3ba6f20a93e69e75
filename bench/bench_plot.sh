#!/usr/bin/env bash
# bench_plot.sh — one latency PNG per load from a bench_compare.sh result:
# latency at p50/p90/p95/p99/p99.9/max, etcd against MetaStore, log scale.
# Installs gnuplot-nox with apt-get when gnuplot is missing (and apt-get is
# usable); otherwise says so and exits 0, since the plots are a convenience.
#
#   bench/bench_plot.sh [compare.json] [outdir]
#       (defaults bench/results/compare.json, bench/results/plots)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IN=${1:-$ROOT/bench/results/compare.json}
OUTDIR=${2:-$ROOT/bench/results/plots}
command -v jq >/dev/null || { echo "bench_plot: needs jq" >&2; exit 2; }
[ -r "$IN" ] || { echo "bench_plot: no $IN" >&2; exit 2; }
if ! command -v gnuplot >/dev/null; then
	if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
		echo "bench_plot: installing gnuplot-nox"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 ||
			{ apt-get update -qq >/dev/null 2>&1 &&
				DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null 2>&1; } || true
	fi
	if ! command -v gnuplot >/dev/null; then
		echo "bench_plot: gnuplot not available (apt-get install gnuplot-nox); skipping the plots"
		exit 0
	fi
fi
mkdir -p "$OUTDIR"
members=$(jq -r '.members // 1' "$IN")
TMP=$(mktemp -d /tmp/ms-plot.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
for load in $(jq -r '.loads[] | select(.etcd.latency != null or .metastore.latency != null) | .load' "$IN"); do
	dat=$TMP/$load.dat
	jq -r --arg l "$load" '.loads[] | select(.load == $l) |
		def v(k; f): (k.latency[f] // "NaN") | tostring;
		(["p50", "p50_ms"], ["p90", "p90_ms"], ["p95", "p95_ms"], ["p99", "p99_ms"], ["p99.9", "p999_ms"],
		 ["max", "max_ms"]) as [$name, $f] | [$name, v(.etcd; $f), v(.metastore; $f)] | @tsv' "$IN" >"$dat"
	png=$OUTDIR/${members}m-$load.png
	gnuplot <<GP
set terminal pngcairo size 720,420 noenhanced
set output "$png"
set title "$load, $members member(s): request latency"
set ylabel "ms (log scale)"
set logscale y
set grid ytics
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left
plot "$dat" using 2:xtic(1) title "etcd 3.4", "" using 3 title "MetaStore"
GP
	echo "bench_plot: $png"
done
