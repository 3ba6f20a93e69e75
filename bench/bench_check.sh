#!/usr/bin/env bash
# bench_check.sh — performance regression check: a fresh MetaStore-vs-etcd
# run (bench/bench_compare.sh) against a committed baseline of the same
# shape. Only same-run ratios are compared (MetaStore / etcd on this machine
# at this moment), so a slower or busier machine does not read as a
# regression. Flags, per load present in both:
#   throughput ratio fell by more than 10 %   (fresh rps_ratio < 0.90 x baseline)
#   p99 ratio rose by more than 15 %          (fresh p99_ratio > 1.15 x baseline)
#   peak RSS ratio rose by more than 15 %
# and exits 1 when anything is flagged (2 on usage or run errors).
#
#   bench/bench_check.sh [BASELINE]            (default bench/baseline.json)
#
# Environment: CHECK_RESULT=file compares that compare.json instead of
# running (to re-check a finished run); TPUT_DROP (0.10), P99_RISE (0.15),
# RSS_RISE (0.15) change the thresholds; everything else (SCALE, LOADS,
# BENCH, METASTORE, ETCD) goes to bench_compare.sh. MEMBERS defaults to the
# baseline's member count.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${1:-$ROOT/bench/baseline.json}
TPUT_DROP=${TPUT_DROP:-0.10}
P99_RISE=${P99_RISE:-0.15}
RSS_RISE=${RSS_RISE:-0.15}
command -v jq >/dev/null || { echo "bench_check: needs jq" >&2; exit 2; }
[ -r "$BASE" ] || { echo "bench_check: no baseline $BASE (save a bench/results/compare.json there)" >&2; exit 2; }

if [ -n "${CHECK_RESULT:-}" ]; then
	FRESH=$CHECK_RESULT
else
	FRESH=$(mktemp /tmp/ms-bench-check.XXXXXX.json)
	trap 'rm -f "$FRESH"' EXIT
	export MEMBERS=${MEMBERS:-$(jq -r '.members // 1' "$BASE")}
	# the baseline's loads only, unless LOADS says otherwise
	export LOADS=${LOADS:-$(jq -r '[.loads[].load] | join(" ")' "$BASE")}
	OUT=$FRESH bash "$ROOT/bench/bench_compare.sh" || { echo "bench_check: the run failed" >&2; exit 2; }
fi

if [ "$(jq .members "$BASE")" != "$(jq .members "$FRESH")" ]; then
	echo "bench_check: baseline has $(jq .members "$BASE") member(s), this run $(jq .members "$FRESH")" >&2
	exit 2
fi

echo
echo "bench_check: $FRESH against $BASE (same-run ratios MetaStore/etcd)"
jq -r -n --slurpfile b "$BASE" --slurpfile f "$FRESH" \
	--argjson td "$TPUT_DROP" --argjson pr "$P99_RISE" --argjson rr "$RSS_RISE" '
	def r2: if . == null then "n/a" else (. * 100 | round / 100) end;
	($b[0].loads | map({(.load): .}) | add) as $bl |
	[ $f[0].loads[] | select($bl[.load] != null) | . as $x | $bl[$x.load] as $y |
	  { load: $x.load,
	    rb: $y.rps_ratio, rf: $x.rps_ratio, pb: $y.p99_ratio, pf: $x.p99_ratio,
	    tput_bad: ($y.rps_ratio != null and ($x.rps_ratio == null or $x.rps_ratio < $y.rps_ratio * (1 - $td))),
	    p99_bad: ($y.p99_ratio != null and ($x.p99_ratio == null or $x.p99_ratio > $y.p99_ratio * (1 + $pr))) } ] as $rows |
	# peak RSS is over the whole run: comparable only when the loads match
	(if ([$b[0].loads[].load] | sort) == ([$f[0].loads[].load] | sort)
	 then [$b[0].peak_rss_kb.ratio, $f[0].peak_rss_kb.ratio] else [null, null] end) as [$sb, $sf] |
	($sb != null and $sf != null and $sf > $sb * (1 + $rr)) as $rss_bad |
	(["load", "x r/s base", "x r/s now", "x p99|rss base", "x p99|rss now", "verdict"] | @tsv),
	($rows[] | [ .load, (.rb | r2), (.rf | r2), (.pb | r2), (.pf | r2),
	             (if .tput_bad and .p99_bad then "REGRESSION (throughput, p99)"
	              elif .tput_bad then "REGRESSION (throughput)"
	              elif .p99_bad then "REGRESSION (p99)" else "ok" end) ] | map(tostring) | @tsv),
	(["peak-rss", "-", "-", ($sb | r2), ($sf | r2), (if $rss_bad then "REGRESSION (rss)" else "ok" end)]
	 | map(tostring) | @tsv),
	(if ([$rows[] | select(.tput_bad or .p99_bad)] | length) > 0 or $rss_bad then "RESULT: regression" else "RESULT: ok" end)
	' | tee /tmp/ms-bench-check.$$.txt | column -t -s $'\t'
verdict=$(tail -1 /tmp/ms-bench-check.$$.txt)
rm -f /tmp/ms-bench-check.$$.txt
[ "$verdict" = "RESULT: ok" ]
