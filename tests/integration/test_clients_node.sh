#!/usr/bin/env bash
# The npm etcd3 client (grpc-js, Node's own HTTP/2) against etcd 3.4 and
# MetaStore side by side: KV, txn, watch (history, live, cancel), leases
# (grant, keepaliveOnce, a keep-alive stream ended by half-close, the
# library's auto keep-alive, revoke, expiry), lock, status, compaction
# (tests/node/clients_node.js).
#
# The client comes from the npm registry (versions pinned by
# tests/node/package-lock.json) into build/node. When it is not installed
# yet and the registry cannot be reached, the test is skipped with a message
# saying so; any other failure to install fails the test.
source "$(dirname "$0")/lib.sh"

NODE_DIR=$ROOT/build/node
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	fail "node and npm are not installed (tools/deps.sh installs them: make deps)"
	finish
	exit 1
fi
mkdir -p "$NODE_DIR"
if ! cmp -s "$ROOT/tests/node/package-lock.json" "$NODE_DIR/package-lock.json" || [ ! -d "$NODE_DIR/node_modules/etcd3" ]; then
	cp "$ROOT/tests/node/package.json" "$ROOT/tests/node/package-lock.json" "$NODE_DIR/"
	if ! timeout 60 npm ping >/dev/null 2>&1; then
		echo "  SKIP: the npm registry is unreachable and the etcd3 client is not installed in build/node"
		finish
		exit 0
	fi
	if ! (cd "$NODE_DIR" && timeout 600 npm ci --no-audit --no-fund --loglevel=error); then
		rm -f "$NODE_DIR/package-lock.json"
		fail "npm ci of the etcd3 client"
		finish
		exit 1
	fi
fi
P=$(free_port); Q=$(free_port); EP=$(free_port); EQ=$(free_port)
start_member ms m1 "$TMP/ms" "$P" "$Q"
start_member etcd e1 "$TMP/etcd" "$EP" "$EQ"
wait_for "metastore ready" 20 healthy "127.0.0.1:$P" || { fail "metastore did not start"; finish; exit 1; }
wait_for "etcd ready" 20 healthy "127.0.0.1:$EP" || { fail "etcd did not start"; finish; exit 1; }
if NODE_PATH=$NODE_DIR/node_modules timeout 300 node "$ROOT/tests/node/clients_node.js" "127.0.0.1:$EP" "127.0.0.1:$P" ${VERBOSE:+-v}; then
	ok "node etcd3 checks"
else
	fail "node etcd3 checks"
fi
finish
