#!/usr/bin/env bash
# Streams that never read (HTTP/2 window 0): 24 Watch streams over a 16 MiB
# history with progress requests, one more that keeps creating watchers, a
# LeaseKeepAlive flood and an Observe under proclaims. The member's RSS growth stays bounded, another client is
# served meanwhile, and the starved watch streams get every revision once
# they read (tests/go/streamprobe).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/golib.sh"

# RSS growth allowed: 25 watch streams x (1 MiB slow-stream bound + one
# 512 KiB catch-up read + one revision) + a keep-alive stream (4 MiB) + an
# observer, with room for the allocator: measured 42-47 MiB; the unbounded
# server (ab30aee) grew by 627 MiB under the same load, and 13 of 40 Gets
# of another client took over 2 s
MAX_GROWTH_MIB=${MAX_GROWTH_MIB:-96}

go_build streamprobe || { fail "building the Go probe"; finish; exit 1; }
P=$(free_port); Q=$(free_port)
start_member ms m1 "$TMP/ms" "$P" "$Q"
MS_PID=$LAST_PID
wait_for "ready" 20 healthy "127.0.0.1:$P" || { fail "member did not start"; finish; exit 1; }
if "$GOBIN/streamprobe" "127.0.0.1:$P" "$MS_PID" "$MAX_GROWTH_MIB"; then ok "hostile stream checks"; else fail "hostile stream checks"; fi
check "member still running" kill -0 "$MS_PID"
finish
