#!/bin/sh
# Test driver. `run.sh unit BIN...` runs cmocka binaries; `run.sh integration`
# runs tests/integration/test_*.sh. Each prints its own output; the last line
# is the plain "N passed, N failed" summary CI reads.
set -u
kind=$1; shift
pass=0; fail=0; failed=""
run_one() {
  name=$1; shift
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); failed="$failed $name"; fi
}
case "$kind" in
unit)
  for b in "$@"; do
    echo "== unit: $b"
    if [ -n "${VALGRIND:-}" ]; then
      run_one "$b" valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite "$b"
    else
      run_one "$b" "$b"
    fi
  done ;;
integration)
  for t in tests/integration/test_*.sh; do
    [ -e "$t" ] || continue
    if [ -n "${ONLY:-}" ] && ! echo "$t" | grep -q "$ONLY"; then continue; fi
    echo "== integration: $t"
    run_one "$t" bash "$t"
  done ;;
*) echo "usage: run.sh unit|integration"; exit 2 ;;
esac
[ -n "$failed" ] && echo "failed:$failed"
echo "$kind: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
