#!/bin/sh
# Installs the Debian packages MetaStore needs to build and test. Idempotent and
# quiet when everything is present; works as root with no standard input.
set -eu
PKGS="build-essential pkg-config librocksdb-dev libprotobuf-c-dev protobuf-c-compiler
libnghttp2-dev libevent-dev libck-dev libcmocka-dev libssl-dev etcd-client etcd-server
golang-go golang-etcd-server-dev libhttp-parser-dev libyaml-dev python3 curl
clang libclang-rt-dev zlib1g-dev python3-etcd3"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node (the npm etcd3 client test): any node and npm on PATH will do (a
# NodeSource nodejs carries its own npm, which Debian's npm would conflict with)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing="$missing nodejs npm"
fi
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq </dev/null >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing </dev/null >/dev/null
echo "deps: done"
