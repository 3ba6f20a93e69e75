// badinput drives a running member with malformed input and checks that each
// gets etcd's gRPC code (or a GOAWAY) while well-formed clients keep working.
// Usage: badinput ENDPOINT   (exit 0 = all checks passed)
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                               { return "proto" }

var failed = 0

func check(desc string, ok bool, detail string) {
	if ok {
		fmt.Printf("  ok: %s\n", desc)
	} else {
		failed++
		fmt.Printf("  FAIL: %s: %s\n", desc, detail)
	}
}

func expectStatus(desc string, err error, code codes.Code, msgPrefix string) {
	s, _ := status.FromError(err)
	check(desc, err != nil && s.Code() == code && strings.HasPrefix(s.Message(), msgPrefix),
		fmt.Sprintf("got %v", err))
}

// brokenH2 sends the client preface then a frame that breaks HTTP/2 and
// reports whether the server answered with GOAWAY before closing.
func brokenH2(ep string, frame []byte) bool {
	c, err := net.DialTimeout("tcp", ep, 2*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	c.Write(frame)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return false
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			// after GOAWAY the server closes the connection
			_, err := io.Copy(io.Discard, c)
			return err == nil
		}
	}
}

func main() {
	ep := os.Args[1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, err := grpc.DialContext(ctx, ep, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	var out []byte
	invoke := func(method string, in []byte) error {
		return conn.Invoke(ctx, method, in, &out, grpc.ForceCodec(rawCodec{}))
	}

	// malformed protobuf: a field header whose length runs past the end
	expectStatus("malformed Put -> Internal (grpc-go's unmarshal error, as etcd)", invoke("/etcdserverpb.KV/Put", []byte{0x0a, 0xff, 0x01, 0x41}), codes.Internal, "grpc: error unmarshalling request: unexpected EOF")
	expectStatus("malformed Range -> Internal (grpc-go's unmarshal error, as etcd)", invoke("/etcdserverpb.KV/Range", []byte{0xff, 0xff, 0xff, 0xff}), codes.Internal, "grpc: error unmarshalling request: unexpected EOF")
	expectStatus("malformed Txn -> Internal (grpc-go's unmarshal error, as etcd)", invoke("/etcdserverpb.KV/Txn", []byte{0x0a, 0x05, 0x08}), codes.Internal, "grpc: error unmarshalling request: unexpected EOF")
	expectStatus("unknown method -> Unimplemented", invoke("/etcdserverpb.KV/Nope", nil), codes.Unimplemented, "")
	expectStatus("unknown service -> Unimplemented", invoke("/nope.Svc/X", nil), codes.Unimplemented, "")
	expectStatus("empty key -> InvalidArgument", invoke("/etcdserverpb.KV/Put", []byte{0x12, 0x01, 0x76}), codes.InvalidArgument, "etcdserver: key is not provided")

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("client:", err)
		os.Exit(1)
	}
	defer cli.Close()
	// a request over --max-request-bytes (1.5 MiB) but under the receive limit
	_, err = cli.Put(ctx, "big", string(bytes.Repeat([]byte("x"), 1600*1024)))
	// clientv3 recognises etcd's message and hands out its typed error
	check("1.6 MiB put -> rpctypes.ErrRequestTooLarge", err == rpctypes.ErrRequestTooLarge, fmt.Sprint(err))
	// a message over the gRPC receive limit (max-request-bytes + 512 KiB)
	huge := append([]byte{0x0a, 0x04, 'h', 'u', 'g', 'e', 0x12, 0x80, 0x80, 0xc0, 0x01}, bytes.Repeat([]byte("x"), 3*1024*1024)...)
	err = conn.Invoke(ctx, "/etcdserverpb.KV/Put", huge, &out, grpc.ForceCodec(rawCodec{}), grpc.MaxCallSendMsgSize(16<<20))
	expectStatus("3 MiB put -> ResourceExhausted", err, codes.ResourceExhausted, "grpc: received message larger than max (3145739 vs. 2097152)")

	// broken HTTP/2 on other connections: GOAWAY and close
	check("garbage frame type with bad SETTINGS length -> GOAWAY", brokenH2(ep, []byte{0, 0, 1, 0x4, 0, 0, 0, 0, 0, 0xff}), "no GOAWAY")
	check("DATA on stream 0 -> GOAWAY", brokenH2(ep, []byte{0, 0, 1, 0x0, 0, 0, 0, 0, 0, 0x00}), "no GOAWAY")
	check("HEADERS with garbage HPACK -> GOAWAY", brokenH2(ep, []byte{0, 0, 3, 0x1, 0x5, 0, 0, 0, 1, 0xff, 0xff, 0xff}), "no GOAWAY")

	// and the well-behaved client never noticed
	if _, err := cli.Put(ctx, "still", "working"); err != nil {
		check("put after bad input", false, err.Error())
	} else {
		r, err := cli.Get(ctx, "still")
		check("get after bad input", err == nil && len(r.Kvs) == 1 && string(r.Kvs[0].Value) == "working", fmt.Sprint(err))
	}
	r, err := cli.Get(ctx, "big")
	check("rejected puts changed nothing", err == nil && len(r.Kvs) == 0, fmt.Sprint(err))
	if failed > 0 {
		os.Exit(1)
	}
}
