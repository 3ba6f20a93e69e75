#!/usr/bin/env bash
# The same hand-built HTTP/2 requests to etcd 3.4 (grpc-go) and MetaStore:
# te variations, grpc-timeout in every unit and malformed, CONTINUATION,
# large metadata, :authority forms, content-type variants, grpc-encoding,
# keepalive PINGs; answers must match except the differences the probe
# names and explains (tests/go/wirecompat).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/golib.sh"

go_build wirecompat || { fail "building the Go probe"; finish; exit 1; }
P=$(free_port); Q=$(free_port); EP=$(free_port); EQ=$(free_port)
start_member ms m1 "$TMP/ms" "$P" "$Q"
start_member etcd e1 "$TMP/etcd" "$EP" "$EQ"
wait_for "metastore ready" 20 healthy "127.0.0.1:$P" || { fail "metastore did not start"; finish; exit 1; }
wait_for "etcd ready" 20 healthy "127.0.0.1:$EP" || { fail "etcd did not start"; finish; exit 1; }
if "$GOBIN/wirecompat" "127.0.0.1:$EP" "127.0.0.1:$P"; then ok "wire checks"; else fail "wire checks"; fi
finish
