// hostile sends requests whose protobuf bytes are hostile (nesting 50,000
// levels deep, truncated varints, lengths past the end, wrong wire types,
// deep nesting through every sub-message field) as raw bytes over gRPC, and
// checks each answer's code and message against what etcd 3.4 answers, that
// the member keeps running, and that a second client is served within a
// second after every case (and while the deep requests keep coming).
// Usage: hostile ENDPOINT   (exit 0 = all checks passed). The same checks
// pass against etcd 3.4 itself (test_hostile_decode.sh runs both).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
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

func expectStatus(desc string, err error, code codes.Code, msg string, exact bool) {
	s, _ := status.FromError(err)
	ok := err != nil && s.Code() == code && strings.HasPrefix(s.Message(), msg)
	if exact {
		ok = ok && s.Message() == msg
	}
	check(desc, ok, fmt.Sprintf("got %v, want %v %q", err, code, msg))
}

func varint(v uint64) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// field: a length-delimited field wrapping body.
func field(num int, body []byte) []byte {
	b := append(varint(uint64(num)<<3|2), varint(uint64(len(body)))...)
	return append(b, body...)
}

// wrap nests body in length-delimited fields, nums[0] innermost, in one
// pass (wrapping level by level would copy the bytes 50,000 times).
func wrap(body []byte, nums []int) []byte {
	sizes := make([]int, len(nums)+1)
	sizes[0] = len(body)
	for i, n := range nums {
		sizes[i+1] = sizes[i] + len(varint(uint64(n)<<3|2)) + len(varint(uint64(sizes[i])))
	}
	out := make([]byte, 0, sizes[len(nums)])
	for i := len(nums) - 1; i >= 0; i-- {
		out = append(out, varint(uint64(nums[i])<<3|2)...)
		out = append(out, varint(uint64(sizes[i]))...)
	}
	return append(out, body...)
}

// nestedTxn: a TxnRequest nesting `levels` txns, each with one op in
// branch (2 success, 3 failure) around a Put of key=value.
func nestedTxn(levels int, branch int, key, value string) []byte {
	put := append(field(1, []byte(key)), field(2, []byte(value))...)
	nums := []int{2, branch} // RequestOp.request_put, TxnRequest.<branch>
	for i := 1; i < levels; i++ {
		nums = append(nums, 4, branch) // RequestOp.request_txn, TxnRequest.<branch>
	}
	return wrap(put, nums)
}

// deepField: `levels` nested length-delimited field-num wrappers around a
// varint: the deepest nesting any message type can be sent, whatever the
// schema makes of it.
func deepField(levels int, num int) []byte {
	nums := make([]int, levels)
	for i := range nums {
		nums[i] = num
	}
	return wrap([]byte{0x08, 0x01}, nums)
}

const tooMany = "etcdserver: too many operations in txn request"
const unmarshal = "grpc: error unmarshalling request: "
const streamUnmarshal = "grpc: failed to unmarshal the received message "

var unary = []string{
	"/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn",
	"/etcdserverpb.KV/Compact", "/etcdserverpb.Lease/LeaseGrant", "/etcdserverpb.Lease/LeaseRevoke",
	"/etcdserverpb.Lease/LeaseTimeToLive", "/etcdserverpb.Lease/LeaseLeases", "/etcdserverpb.Cluster/MemberAdd",
	"/etcdserverpb.Cluster/MemberRemove", "/etcdserverpb.Cluster/MemberUpdate", "/etcdserverpb.Cluster/MemberList",
	"/etcdserverpb.Cluster/MemberPromote", "/etcdserverpb.Maintenance/Alarm", "/etcdserverpb.Maintenance/Status",
	"/etcdserverpb.Maintenance/HashKV", "/etcdserverpb.Maintenance/MoveLeader",
	"/v3electionpb.Election/Campaign", "/v3electionpb.Election/Proclaim", "/v3electionpb.Election/Leader",
	"/v3electionpb.Election/Resign", "/v3lockpb.Lock/Lock", "/v3lockpb.Lock/Unlock",
}

func main() {
	ep := os.Args[1]
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, ep, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	// the second client: its own connection
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("client:", err)
		os.Exit(1)
	}
	defer cli.Close()
	invoke := func(method string, in []byte) error {
		c, cc := context.WithTimeout(ctx, 10*time.Second)
		defer cc()
		var out []byte
		return conn.Invoke(c, method, in, &out, grpc.ForceCodec(rawCodec{}))
	}
	served := func(what string) {
		c, cc := context.WithTimeout(ctx, time.Second)
		defer cc()
		t0 := time.Now()
		_, err := cli.Put(c, "alive", what)
		check("second client served within 1 s after "+what, err == nil,
			fmt.Sprintf("%v after %v", err, time.Since(t0)))
	}

	// 1. the attack of issue 10: one ~400 KB Txn nesting 50,000 levels
	deep := nestedTxn(50000, 2, "deep", "x")
	fmt.Printf("  (50,000-level txn: %d bytes)\n", len(deep))
	expectStatus("50,000-level txn -> InvalidArgument too many operations", invoke("/etcdserverpb.KV/Txn", deep),
		codes.InvalidArgument, tooMany, true)
	served("50,000-level txn")
	expectStatus("50,000-level txn through failure branches -> too many operations",
		invoke("/etcdserverpb.KV/Txn", nestedTxn(50000, 3, "deep", "x")), codes.InvalidArgument, tooMany, true)
	// and while a client keeps sending them, another is served
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			select {
			case <-stop:
				return
			default:
			}
			invoke("/etcdserverpb.KV/Txn", deep)
		}
	}()
	for i := 0; i < 5; i++ {
		served(fmt.Sprintf("deep txns in flight (%d)", i))
	}
	close(stop)
	wg.Wait()

	// 2. the bound: etcd at --max-txn-ops 128 takes 128 levels of one op
	// each, not 129; the deepest one is applied (through the raft log)
	check("128-level txn is applied", invoke("/etcdserverpb.KV/Txn", nestedTxn(128, 2, "deep128", "v")) == nil, "")
	{
		c, cc := context.WithTimeout(ctx, 5*time.Second)
		r, err := cli.Get(c, "deep128")
		cc()
		check("128-level txn's put is visible", err == nil && len(r.Kvs) == 1 && string(r.Kvs[0].Value) == "v",
			fmt.Sprint(err))
	}
	expectStatus("129-level txn -> too many operations", invoke("/etcdserverpb.KV/Txn", nestedTxn(129, 2, "deep129", "v")),
		codes.InvalidArgument, tooMany, true)
	served("the nesting bound")

	// 3. malformed framing, exact answers as etcd's decoder words them
	type bad struct {
		desc, method string
		in           []byte
		msg          string
	}
	exact := []bad{
		{"length past the end", "/etcdserverpb.KV/Put", []byte{0x0a, 0x05, 'a'}, "unexpected EOF"},
		{"truncated varint", "/etcdserverpb.KV/Range", []byte{0x18, 0xff}, "unexpected EOF"},
		{"truncated tag", "/etcdserverpb.KV/Range", []byte{0xff}, "unexpected EOF"},
		{"11-byte varint", "/etcdserverpb.KV/Range", append([]byte{0x18}, append([]byte(strings.Repeat("\xff", 10)), 0x01)...), "proto: integer overflow"},
		{"wrong wire type (key as varint)", "/etcdserverpb.KV/Put", []byte{0x08, 0x01}, "proto: wrong wireType = 0 for field Key"},
		{"wrong wire type (range_end as fixed32)", "/etcdserverpb.KV/Range", []byte{0x15, 1, 2, 3, 4}, "proto: wrong wireType = 5 for field RangeEnd"},
		{"wrong wire type (success as varint)", "/etcdserverpb.KV/Txn", []byte{0x10, 0x01}, "proto: wrong wireType = 0 for field Success"},
		{"field number 0", "/etcdserverpb.KV/Put", []byte{0x00, 0x00}, "proto: PutRequest: illegal tag 0 (wire type 0)"},
		{"wire type 7", "/etcdserverpb.KV/Put", []byte{0x7f}, "proto: illegal wireType 7"},
		{"end group", "/etcdserverpb.KV/Put", []byte{0x7c}, "proto: PutRequest: wiretype end group for non-group"},
		{"inner length past its parent", "/etcdserverpb.KV/Txn", []byte{0x12, 0x03, 0x12, 0x05, 0x0a, 0x01, 'a'}, "unexpected EOF"},
	}
	for _, b := range exact {
		expectStatus(b.desc+" -> Internal "+b.msg, invoke(b.method, b.in), codes.Internal, unmarshal+b.msg, true)
	}
	// every unary method refuses broken framing with grpc-go's answer
	for _, m := range unary {
		for _, in := range [][]byte{{0x0a, 0x05, 0x01}, {0x7a, 0xff, 0xff, 0xff, 0xff, 0x0f}, {0x78, 0xff}} {
			expectStatus(fmt.Sprintf("%s % x -> Internal", m, in), invoke(m, in), codes.Internal, unmarshal, false)
		}
	}
	served("malformed framing")

	// 4. 50,000 levels through the first sub-message field of every
	// request type (fields 1-4): whatever the schema makes of it, the
	// member answers and survives
	for _, m := range unary {
		if m == "/v3electionpb.Election/Campaign" || m == "/v3lockpb.Lock/Lock" {
			continue // a well-formed one waits for its turn: in etcd too
		}
		for num := 1; num <= 4; num++ {
			err := invoke(m, deepField(50000, num))
			s, _ := status.FromError(err)
			check(fmt.Sprintf("%s: 50,000 levels of field %d answered", m, num),
				err == nil || (s.Code() != codes.Unavailable && s.Code() != codes.DeadlineExceeded), fmt.Sprint(err))
		}
	}
	served("deep nesting in every request type")

	// 5. streams: a bad message ends the stream with grpc-go's answer
	streamCase := func(desc, method string, first, badMsg []byte, server bool) {
		c, cc := context.WithTimeout(ctx, 10*time.Second)
		defer cc()
		st, err := conn.NewStream(c, &grpc.StreamDesc{ServerStreams: true, ClientStreams: !server}, method,
			grpc.ForceCodec(rawCodec{}))
		if err != nil {
			check(desc, false, err.Error())
			return
		}
		if first != nil {
			st.SendMsg(first)
			var out []byte
			check(desc+": a good message is answered first", st.RecvMsg(&out) == nil, "")
		}
		st.SendMsg(badMsg)
		st.CloseSend()
		var out []byte
		for {
			if err = st.RecvMsg(&out); err != nil {
				break
			}
		}
		if err == io.EOF {
			check(desc, false, "stream ended OK")
			return
		}
		expectStatus(desc, err, codes.Internal, streamUnmarshal+"unexpected EOF", true)
	}
	watchCreate := field(1, field(1, []byte("w")))
	streamCase("Watch: truncated message -> Internal", "/etcdserverpb.Watch/Watch", watchCreate, []byte{0x0a, 0x09, 0x0a}, false)
	streamCase("Watch: 50,000-level garbage -> Internal", "/etcdserverpb.Watch/Watch", nil,
		func() []byte { b := deepField(50000, 1); return b[:len(b)/2] }(), false)
	grant := []byte{0x08, 0x3c} // LeaseGrant TTL 60, for a keep-alive that works
	var gout []byte
	var leaseID []byte
	if err := conn.Invoke(ctx, "/etcdserverpb.Lease/LeaseGrant", grant, &gout, grpc.ForceCodec(rawCodec{})); err == nil {
		// LeaseGrantResponse.ID is field 2 (varint): copy it as KeepAlive's field 1
		for i := 0; i+1 < len(gout); i++ {
			if gout[i] == 0x10 {
				j := i + 1
				for j < len(gout) && gout[j]&0x80 != 0 {
					j++
				}
				leaseID = append([]byte{0x08}, gout[i+1:j+1]...)
				break
			}
		}
	}
	check("lease granted for the keep-alive case", leaseID != nil, "")
	streamCase("LeaseKeepAlive: truncated message -> Internal", "/etcdserverpb.Lease/LeaseKeepAlive", leaseID,
		[]byte{0x08, 0x80}, false)
	streamCase("Observe: truncated request -> Internal", "/v3electionpb.Election/Observe", nil, []byte{0x0a, 0x02}, true)
	served("malformed stream messages")

	if failed > 0 {
		fmt.Printf("hostile: %d checks failed\n", failed)
		os.Exit(1)
	}
}
