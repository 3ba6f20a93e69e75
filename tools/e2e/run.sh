#!/bin/sh
# run.sh — etcd 3.4's own e2e suite (golang-etcd-server-dev, tests/e2e) with
# bin/metastore as the `etcd` binary and the real etcdctl 3.4; REF=1 runs the
# same tests with the real etcd 3.4 binary, to know what passes here at all.
#
# Each test runs alone, in its own network namespace (`unshare -n`, loopback
# only) because the suite uses fixed ports (20000 and up): a run cannot collide
# with other tests on the machine, and JOBS>1 may run tests side by side.
# Each test gets E2E_TIMEOUT seconds (default 240) so one hang costs one test.
#
# Environment: REF=1, METASTORE=<binary> (default bin/metastore), ONLY=<regexp>, JOBS=<n> (default 1),
# E2E_TIMEOUT=<s>, BUILD=<dir> (default build). Results: $BUILD/e2e/results.txt
# (or results-ref.txt), one "PASS|FAIL|TIMEOUT name seconds" line per test and
# a total; each test's output in $BUILD/e2e/logs[-ref]/<name>.log.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
E2E_SRC=/usr/share/gocode/src/go.etcd.io/etcd
OUT=$BUILD/e2e
TEST_BIN=$OUT/e2e.test
TIMEOUT=${E2E_TIMEOUT:-240}
JOBS=${JOBS:-1}
SKIP=$ROOT/tools/e2e/skip.txt

if [ ! -d "$E2E_SRC/tests/e2e" ]; then
	echo "e2e-etcd: $E2E_SRC/tests/e2e is missing (golang-etcd-server-dev; run make deps)" >&2
	exit 1
fi
for t in unshare ip timeout go; do
	command -v $t >/dev/null 2>&1 || { echo "e2e-etcd: $t is not installed" >&2; exit 1; }
done
if [ "${REF:-}" = 1 ]; then
	ETCD=$(command -v etcd) || { echo "e2e-etcd: no etcd binary on PATH" >&2; exit 1; }
	SUFFIX=-ref
else
	ETCD=${METASTORE:-$ROOT/bin/metastore}
	SUFFIX=
fi
[ -x "$ETCD" ] || { echo "e2e-etcd: $ETCD is not built" >&2; exit 1; }
# STRIP_PEER_TLS=1, a diagnostic only (never the reported count): `etcd` is a
# wrapper that drops peer TLS (--peer-auto-tls, --peer-*-file, https:// in
# peer URLs), to see what the tests whose only TLS is on the peer port need
# besides it. Results in results-strip.txt.
if [ "${STRIP_PEER_TLS:-}" = 1 ]; then
	SUFFIX=$SUFFIX-strip
fi
CTL=$(command -v etcdctl) || { echo "e2e-etcd: no etcdctl on PATH" >&2; exit 1; }
BINDIR=$OUT/bin$SUFFIX
LOGS=$OUT/logs$SUFFIX
RESULTS=$OUT/results$SUFFIX.txt
# a partial run (ONLY=) keeps the full run's list
[ -n "${ONLY:-}" ] && RESULTS=$OUT/results$SUFFIX.only.txt
# One test (`run.sh --one NAME`, the environment set up below): its own netns
# with loopback up; cwd is the suite's directory (it reads
# ../../integration/fixtures and ../../etcd.conf.yml.sample from there).
if [ "${1:-}" = --one ]; then
	name=$2
	start=$(date +%s)
	# EXPECT_DEBUG: the suite copies each process's output into the log (why it failed)
	EXPECT_DEBUG=1 timeout -k 10 "$TIMEOUT" unshare -n sh -c 'ip link set lo up && cd "$0" && exec "$1" -test.run "^$2\$" -test.v \
		-test.timeout "$3s" -bin-dir "$4" -cert-dir "$5"' \
		"$E2E_SRC/tests/e2e" "$TEST_BIN" "$name" "$((TIMEOUT - 5))" "$BINDIR" "$E2E_SRC/integration/fixtures" \
		>"$LOGS/$name.log" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	# the PASS line may follow a process's output without a newline (GetFormat's protobuf)
	if [ $rc -eq 0 ] && grep -aq -- "--- PASS: $name " "$LOGS/$name.log" && ! grep -aq -- "--- FAIL: " "$LOGS/$name.log"; then
		st=PASS
	elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		st=TIMEOUT
	else
		st=FAIL
	fi
	why=
	if [ $st != PASS ]; then
		# the first line that names a cause: a refusal by MetaStore, an
		# RPC it answers Unimplemented, or the test's own failure line
		why=$(grep -m1 -oE "(is an etcd flag that MetaStore does not support|is not supported|not implemented|Unimplemented|flag provided but not defined: -[a-z0-9-]+|URL scheme must be [^,]*)" "$LOGS/$name.log" | head -1)
		case $why in
		*"does not support") why=$(grep -m1 -oE "flag --[a-z0-9-]+ is an etcd flag that MetaStore does not support" "$LOGS/$name.log" | head -1) ;;
		"") why=$(grep -m1 -E "^ +[a-z0-9_]+\.go:[0-9]+: " "$LOGS/$name.log" | sed 's/^ *//' | cut -c1-160) ;;
		esac
	fi
	printf '%s %s %ss%s\n' "$st" "$name" "$secs" "${why:+  # $why}"
	exit 0
fi

mkdir -p "$BINDIR" "$LOGS"
if [ "${STRIP_PEER_TLS:-}" = 1 ]; then
	rm -f "$BINDIR/etcd"
	cat >"$BINDIR/etcd" <<WRAP
#!/bin/bash
out=(); skip=0; prev=
for a in "\$@"; do
	if [ \$skip = 1 ]; then skip=0; prev=; continue; fi
	case "\$a" in
	--peer-auto-tls|--peer-auto-tls=true|--peer-client-cert-auth|--peer-client-cert-auth=true) continue ;;
	--peer-cert-file|--peer-key-file|--peer-trusted-ca-file) skip=1; continue ;;
	esac
	case "\$prev" in
	--listen-peer-urls|--initial-advertise-peer-urls|--initial-cluster) a=\${a//https:/http:} ;;
	esac
	out+=("\$a"); prev=\$a
done
exec "$ETCD" "\${out[@]}"
WRAP
	chmod +x "$BINDIR/etcd"
else
	ln -sf "$ETCD" "$BINDIR/etcd"
fi
ln -sf "$CTL" "$BINDIR/etcdctl"

mkdir -p "$OUT/gopath"

# Build the suite in GOPATH mode (Debian's Go packages under /usr/share/gocode)
# once; rebuilt when the suite's sources change.
if [ ! -x "$TEST_BIN" ] || [ -n "$(find "$E2E_SRC/tests/e2e" -newer "$TEST_BIN" -name '*.go' | head -1)" ]; then
	echo "e2e-etcd: building etcd's e2e tests (several minutes the first time)"
	(cd "$E2E_SRC/tests/e2e" && GO111MODULE=off GOPATH="$OUT/gopath:/usr/share/gocode" \
		go test -c -o "$TEST_BIN.tmp" .) || { echo "e2e-etcd: go test -c failed" >&2; exit 1; }
	mv "$TEST_BIN.tmp" "$TEST_BIN"
fi

# The test list, minus the skipped patterns.
SKIP_RE=$(grep -v '^#' "$SKIP" | sed -n 's/ # .*//p' | paste -sd'|' -)
"$TEST_BIN" -test.list '.*' | grep '^Test' | grep -Ev "^($SKIP_RE)\$" >"$OUT/list$SUFFIX.txt"
LIST=$OUT/list$SUFFIX.txt
if [ -n "${ONLY:-}" ]; then
	grep -E "${ONLY}" "$OUT/list$SUFFIX.txt" >"$OUT/list$SUFFIX.only" || true
	LIST=$OUT/list$SUFFIX.only
fi
TOTAL=$(wc -l <"$LIST")
echo "e2e-etcd: $TOTAL tests with etcd=$ETCD (timeout ${TIMEOUT}s each, $JOBS at a time)"

# (in braces: sh reads it whole, so editing this file mid-run is harmless)
{
: >"$RESULTS.tmp"
xargs -P "$JOBS" -n 1 "$0" --one <"$LIST" | tee -a "$RESULTS.tmp"
PASSED=$(grep -c '^PASS ' "$RESULTS.tmp")
sort -k2 "$RESULTS.tmp" >"$RESULTS"
rm -f "$RESULTS.tmp"
echo "total: $PASSED of $TOTAL passed (etcd=$ETCD)" | tee -a "$RESULTS"
echo "e2e-etcd: results in $RESULTS, logs in $LOGS"
exit 0
}
