# golib.sh — builds the Go test programs under tests/go/ against the Debian
# packaged clientv3 (GOPATH mode, no network). Binaries and the Go build
# cache live under build/go so repeated runs are fast.
GOBIN=$ROOT/build/go/bin
# go_build NAME: fails when the build fails (a binary left from an earlier
# build never stands in for it).
go_build() {
	local name=$1 log
	mkdir -p "$GOBIN" "$ROOT/build/go/cache"
	rm -f "$GOBIN/$name"
	if ! log=$( (cd "$ROOT/tests/go/$name" && GO111MODULE=off GOPATH=$ROOT/build/go/path:/usr/share/gocode \
		GOCACHE=$ROOT/build/go/cache GOFLAGS=-mod=mod go build -o "$GOBIN/$name" .) 2>&1); then
		echo "$log" | tail -20
		return 1
	fi
	[ -x "$GOBIN/$name" ]
}
