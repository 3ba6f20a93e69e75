#!/usr/bin/env bash
# Malformed requests get etcd's gRPC codes; broken HTTP/2 gets GOAWAY while
# other connections keep working (a Go client: raw gRPC + raw frames).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/golib.sh"

go_build badinput || { fail "building the Go checker"; finish; exit 1; }
P=$(free_port); Q=$(free_port)
start_member ms m1 "$TMP/ms" "$P" "$Q"
wait_for "ready" 20 healthy "127.0.0.1:$P" || { fail "member did not start"; finish; exit 1; }
if "$GOBIN/badinput" "127.0.0.1:$P"; then ok "bad input checks"; else fail "bad input checks"; fi
check "member still running" kill -0 "$LAST_PID"
finish
