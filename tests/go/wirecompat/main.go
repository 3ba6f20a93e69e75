// wirecompat sends the same hand-built HTTP/2 requests to etcd 3.4 (grpc-go)
// and to MetaStore and compares how each answers: te variations,
// grpc-timeout in every unit, malformed timeouts, headers split across
// CONTINUATION frames, large metadata, :authority forms, content-type
// variants, grpc-encoding, keepalive PINGs (issue 18: accept what a grpc-go
// server accepts from other client stacks).
//
// Usage: wirecompat ETCD_EP MS_EP   (exit 0 = all checks passed)
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

type hdr [2]string

type tcase struct {
	name  string
	hdrs  []hdr // after :method/:scheme/:path (and :authority unless given)
	split int   // header block in this many pieces (HEADERS + CONTINUATION)
	// known: a difference that is understood and written down (printed,
	// not counted); empty = results must be equal
	known string
}

// RangeRequest{key: "k"}
var rangeMsg = []byte{0x0a, 0x01, 'k'}

func frame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// run sends one unary Range with tc's headers on a fresh connection and
// describes the answer: "grpc-status N message M" (with "+data" when a
// response message came), "RST code", "GOAWAY code", or an error.
func run(ep string, tc tcase) string {
	c, err := net.DialTimeout("tcp", ep, 3*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(1<<20, nil)
	fr.MaxHeaderListSize = 1 << 20
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	enc.SetMaxDynamicTableSizeLimit(0)
	// pseudo-headers first (RFC 9113 8.3), then tc's own
	fields := []hdr{{":method", "POST"}, {":scheme", "http"}, {":path", "/etcdserverpb.KV/Range"}}
	auth := ep
	for _, h := range tc.hdrs {
		if h[0] == ":authority" {
			auth = h[1]
		}
	}
	if auth != "" { // "" = no :authority at all
		fields = append(fields, hdr{":authority", auth})
	}
	for _, h := range tc.hdrs {
		if h[0] != ":authority" {
			fields = append(fields, h)
		}
	}
	for _, h := range fields {
		enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
	}
	block := hb.Bytes()
	// at least enough pieces for the default 16 KiB max frame size
	n := (len(block) + 16383) / 16384
	if tc.split > n {
		n = tc.split
	}
	size := (len(block) + n - 1) / n
	for i := 0; i < n; i++ {
		lo, hi := i*size, (i+1)*size
		if hi > len(block) {
			hi = len(block)
		}
		if i == 0 {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[lo:hi], EndHeaders: n == 1})
		} else {
			fr.WriteContinuation(1, i == n-1, block[lo:hi])
		}
	}
	fr.WriteData(1, true, frame(rangeMsg))
	gotData := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return "read: " + strings.SplitN(err.Error(), ":", 2)[0]
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.DataFrame:
			if f.StreamID == 1 && len(f.Data()) > 0 {
				gotData = true
			}
		case *http2.RSTStreamFrame:
			return fmt.Sprintf("RST %v", f.ErrCode)
		case *http2.GoAwayFrame:
			return fmt.Sprintf("GOAWAY %v", f.ErrCode)
		case *http2.MetaHeadersFrame:
			st := ""
			for _, h := range f.Fields {
				if h.Name == "grpc-status" {
					st += " grpc-status " + h.Value
				}
				if h.Name == "grpc-message" && h.Value != "" {
					st += " message " + h.Value
				}
			}
			if f.StreamEnded() {
				if gotData {
					st += " +data"
				}
				return strings.TrimSpace(st)
			}
		}
	}
}

// ping sends a PING on an idle connection and reports whether it was acked.
func ping(ep string) string {
	c, err := net.DialTimeout("tcp", ep, 3*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return "no ack"
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == [8]byte{1, 2, 3, 4, 5, 6, 7, 8} {
			return "acked"
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			fr.WriteSettingsAck()
		}
	}
}

func main() {
	etcdEP, msEP := os.Args[1], os.Args[2]
	ct := hdr{"content-type", "application/grpc"}
	te := hdr{"te", "trailers"}
	big := strings.Repeat("m", 8*1024)
	cases := []tcase{
		{name: "te: trailers", hdrs: []hdr{ct, te}},
		{name: "no te", hdrs: []hdr{ct}},
		{name: "te: Trailers (case)", hdrs: []hdr{ct, {"te", "Trailers"}}},
		{name: "te: trailers, deflate", hdrs: []hdr{ct, {"te", "trailers, deflate"}}},
		{name: "grpc-timeout 1H", hdrs: []hdr{ct, te, {"grpc-timeout", "1H"}}},
		{name: "grpc-timeout 10M", hdrs: []hdr{ct, te, {"grpc-timeout", "10M"}}},
		{name: "grpc-timeout 5S", hdrs: []hdr{ct, te, {"grpc-timeout", "5S"}}},
		{name: "grpc-timeout 3000m", hdrs: []hdr{ct, te, {"grpc-timeout", "3000m"}}},
		{name: "grpc-timeout 3000000u", hdrs: []hdr{ct, te, {"grpc-timeout", "3000000u"}}},
		{name: "grpc-timeout 99999999n", hdrs: []hdr{ct, te, {"grpc-timeout", "99999999n"}}},
		{name: "grpc-timeout 99999999S (8 digits)", hdrs: []hdr{ct, te, {"grpc-timeout", "99999999S"}}},
		{name: "grpc-timeout 1x (bad unit)", hdrs: []hdr{ct, te, {"grpc-timeout", "1x"}}},
		{name: "grpc-timeout S (no digits)", hdrs: []hdr{ct, te, {"grpc-timeout", "S"}}},
		{name: "headers in 3 pieces (CONTINUATION)", hdrs: []hdr{ct, te, {"x-meta", big}}, split: 3},
		{name: "headers in 8 pieces (CONTINUATION)", hdrs: []hdr{ct, te, {"x-meta", big}}, split: 8},
		{name: "headers in 12 pieces (CONTINUATION)", hdrs: []hdr{ct, te, {"x-meta", big}}, split: 12,
			known: "nghttp2 takes at most 8 CONTINUATION frames per header block (its CVE-2024-28182 bound); split at the 16 KiB frame size that is past 128 KiB of headers, over MetaStore's 64 KiB metadata limit anyway."},
		{name: "8 KiB of metadata", hdrs: []hdr{ct, te, {"x-a", big}}},
		{name: "48 KiB of metadata", hdrs: []hdr{ct, te, {"x-a", big}, {"x-b", big}, {"x-c", big}, {"x-d", big}, {"x-e", big}, {"x-f", big}}},
		{name: "96 KiB of metadata", hdrs: []hdr{ct, te, {"x-a", big}, {"x-b", big}, {"x-c", big}, {"x-d", big}, {"x-e", big}, {"x-f", big},
			{"x-g", big}, {"x-h", big}, {"x-i", big}, {"x-j", big}, {"x-k", big}, {"x-l", big}},
			known: "MetaStore bounds request metadata at 64 KiB per call (GRPC_MAX_METADATA_BYTES, a memory budget) and resets the stream; grpc-go's server takes header lists up to 16 MiB."},
		{name: ":authority host only", hdrs: []hdr{ct, te, {":authority", "127.0.0.1"}}},
		{name: ":authority localhost:2379", hdrs: []hdr{ct, te, {":authority", "localhost:2379"}}},
		{name: ":authority [::1]:2379", hdrs: []hdr{ct, te, {":authority", "[::1]:2379"}}},
		{name: ":authority dns name", hdrs: []hdr{ct, te, {":authority", "etcd-0.etcd.default.svc.cluster.local:2379"}}},
		{name: "no :authority", hdrs: []hdr{ct, te, {":authority", ""}}},
		{name: "content-type application/grpc+proto", hdrs: []hdr{{"content-type", "application/grpc+proto"}, te}},
		{name: "content-type application/grpc;charset=utf-8", hdrs: []hdr{{"content-type", "application/grpc;charset=utf-8"}, te}},
		{name: "grpc-encoding identity", hdrs: []hdr{ct, te, {"grpc-encoding", "identity"}}},
		{name: "grpc-encoding snappy (unknown)", hdrs: []hdr{ct, te, {"grpc-encoding", "snappy"}}},
		{name: "grpc-encoding gzip, message not compressed", hdrs: []hdr{ct, te, {"grpc-encoding", "gzip"}},
			known: "etcd 3.4's grpc-go has no gzip decompressor and refuses the call; MetaStore accepts gzip and deflate (api/grpc_compress.h)."},
		{name: "grpc-accept-encoding gzip", hdrs: []hdr{ct, te, {"grpc-accept-encoding", "gzip"}}},
		{name: "user-agent and custom metadata", hdrs: []hdr{ct, te, {"user-agent", "grpc-python/1.51.1 grpc-c/29.0.0 (linux; chttp2)"}, {"x-request-id", "abc"}}},
	}
	failed, passed, known := 0, 0, 0
	for _, tc := range cases {
		a, b := run(etcdEP, tc), run(msEP, tc)
		switch {
		case a == b:
			passed++
			fmt.Printf("  ok: wire: %s: %s\n", tc.name, b)
		case tc.known != "":
			known++
			fmt.Printf("  known difference: wire: %s: etcd %q, metastore %q (%s)\n", tc.name, a, b, tc.known)
		default:
			failed++
			fmt.Printf("  FAIL: wire: %s: etcd %q, metastore %q\n", tc.name, a, b)
		}
	}
	a, b := ping(etcdEP), ping(msEP)
	if a == b && b == "acked" {
		passed++
		fmt.Printf("  ok: wire: keepalive PING acked by both\n")
	} else {
		failed++
		fmt.Printf("  FAIL: wire: keepalive PING: etcd %s, metastore %s\n", a, b)
	}
	fmt.Printf("wirecompat: %d passed, %d failed, %d known differences\n", passed, failed, known)
	if failed > 0 {
		os.Exit(1)
	}
}
