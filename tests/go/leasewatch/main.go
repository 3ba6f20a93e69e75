// leasewatch checks the Watch and Lease services with the official Go client
// (clientv3) and with raw gRPC streams where the exact replies matter: many
// watchers on one stream, created replies in request order with IDs from 0,
// cancel replies (none for an unknown ID), duplicate IDs and empty ranges,
// compacted start revisions, fragments, progress requests and periodic
// progress notifications, a slow stream that is caught up from history, and
// KeepAlive streams. It runs against etcd 3.4 too, which is how its
// expectations were checked.
//
// Usage: leasewatch ENDPOINT   (exit 0 = all checks passed)
// The server must run with a progress-notify interval of at most 1 s
// (etcd: --experimental-watch-progress-notify-interval=500ms; MetaStore:
// --experimental-watch-progress-notify-interval=500ms) and default
// --max-request-bytes.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/mvcc/mvccpb"
	"google.golang.org/grpc"
)

var failed = 0

func check(desc string, ok bool, detail string, args ...interface{}) {
	if ok {
		fmt.Printf("  ok: %s\n", desc)
	} else {
		failed++
		fmt.Printf("  FAIL: %s: %s\n", desc, fmt.Sprintf(detail, args...))
	}
}

func ctxT(d time.Duration) context.Context {
	c, _ := context.WithTimeout(context.Background(), d)
	return c
}

// rawWatch is a Watch stream driven by hand.
type rawWatch struct {
	s pb.Watch_WatchClient
}

func newRaw(conn *grpc.ClientConn, ctx context.Context) *rawWatch {
	s, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		fmt.Println("  FAIL: open raw watch stream:", err)
		os.Exit(1)
	}
	return &rawWatch{s}
}

func (r *rawWatch) create(c *pb.WatchCreateRequest) {
	r.s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}})
}
func (r *rawWatch) cancel(id int64) {
	r.s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}})
}
func (r *rawWatch) progress() {
	r.s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
}

// recv waits for one reply (at most 5 s).
func (r *rawWatch) recv() *pb.WatchResponse {
	ch := make(chan *pb.WatchResponse, 1)
	go func() {
		resp, err := r.s.Recv()
		if err != nil {
			resp = nil
		}
		ch <- resp
	}()
	select {
	case resp := <-ch:
		return resp
	case <-time.After(5 * time.Second):
		return nil
	}
}

func curRev(cli *clientv3.Client) int64 {
	r, err := cli.Get(ctxT(5*time.Second), "nosuchkey-for-rev")
	if err != nil {
		return -1
	}
	return r.Header.Revision
}

func main() {
	if len(os.Args) != 2 {
		fmt.Println("usage: leasewatch ENDPOINT")
		os.Exit(2)
	}
	ep := os.Args[1]
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("  FAIL: connect:", err)
		os.Exit(1)
	}
	defer cli.Close()
	conn, err := grpc.Dial(ep, grpc.WithInsecure(), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
		// a fixed 64 KiB window (no BDP growth): a stream that is not read
		// really backs up on the server (slowStream)
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		fmt.Println("  FAIL: dial:", err)
		os.Exit(1)
	}
	defer conn.Close()

	manyWatchers(cli)
	rawReplies(cli, conn)
	compacted(cli, conn)
	fragments(cli, conn)
	progress(cli)
	slowStream(cli, conn)
	keepAlive(cli)

	if failed > 0 {
		fmt.Printf("leasewatch: %d checks failed\n", failed)
		os.Exit(1)
	}
	fmt.Println("leasewatch: all checks passed")
}

// manyWatchers: 100 watchers on one clientv3 stream (same context), each on
// its own key; each sees exactly its own event. The Go client matches created
// replies to its requests by order, so a reply out of order shows up here as
// events on the wrong channel.
func manyWatchers(cli *clientv3.Client) {
	const n = 100
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chans := make([]clientv3.WatchChan, n)
	for i := 0; i < n; i++ {
		chans[i] = cli.Watch(ctx, fmt.Sprintf("mw/%03d", i), clientv3.WithCreatedNotify())
	}
	created := 0
	for i := 0; i < n; i++ {
		select {
		case r := <-chans[i]:
			if r.Created {
				created++
			}
		case <-time.After(5 * time.Second):
		}
	}
	check("100 watchers on one stream created", created == n, "%d created", created)
	for i := 0; i < n; i++ {
		cli.Put(ctxT(5*time.Second), fmt.Sprintf("mw/%03d", i), fmt.Sprintf("v%d", i))
	}
	good := 0
	for i := 0; i < n; i++ {
		select {
		case r := <-chans[i]:
			if len(r.Events) == 1 && string(r.Events[0].Kv.Key) == fmt.Sprintf("mw/%03d", i) &&
				string(r.Events[0].Kv.Value) == fmt.Sprintf("v%d", i) {
				good++
			}
		case <-time.After(5 * time.Second):
		}
	}
	check("each watcher got exactly its own event", good == n, "%d of %d", good, n)
}

// rawReplies: created replies in request order with IDs 0.., cancel replies,
// no reply for an unknown cancel, progress reply with id -1, duplicate id and
// empty range refused in the created reply.
func rawReplies(cli *clientv3.Client, conn *grpc.ClientConn) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rw := newRaw(conn, ctx)
	rev := curRev(cli)
	for i := 0; i < 5; i++ {
		rw.create(&pb.WatchCreateRequest{Key: []byte(fmt.Sprintf("rr/%d", i))})
	}
	inOrder := true
	for i := 0; i < 5; i++ {
		r := rw.recv()
		if r == nil || !r.Created || r.Canceled || r.WatchId != int64(i) || r.Header.Revision != rev {
			inOrder = false
			fmt.Printf("    reply %d: %v\n", i, r)
		}
	}
	check("created replies in request order, IDs 0..4, header = current revision", inOrder, "see above")

	rw.cancel(42) // unknown: no reply
	rw.cancel(2)
	r := rw.recv()
	check("cancel reply (and none for an unknown id)", r != nil && r.Canceled && r.WatchId == 2 && !r.Created,
		"got %v", r)
	rw.progress()
	r = rw.recv()
	check("progress request answered with watch_id -1 and the current revision",
		r != nil && r.WatchId == -1 && !r.Created && !r.Canceled && len(r.Events) == 0 && r.Header.Revision == rev,
		"got %v (rev %d)", r, rev)

	rw.create(&pb.WatchCreateRequest{Key: []byte("dup"), WatchId: 7})
	r = rw.recv()
	check("explicit watch id", r != nil && r.Created && r.WatchId == 7, "got %v", r)
	rw.create(&pb.WatchCreateRequest{Key: []byte("dup2"), WatchId: 7})
	r = rw.recv()
	check("duplicate watch id: created+canceled, id -1, etcd's reason",
		r != nil && r.Created && r.Canceled && r.WatchId == -1 &&
			r.CancelReason == "mvcc: duplicate watch ID provided on the WatchStream", "got %v", r)
	rw.create(&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")})
	r = rw.recv()
	check("empty range: created+canceled with etcd's reason",
		r != nil && r.Created && r.Canceled && r.WatchId == -1 && r.CancelReason == "mvcc: watcher range is empty",
		"got %v", r)
	rw.create(&pb.WatchCreateRequest{Key: []byte("auto")})
	r = rw.recv()
	check("next automatic id skips ids in use (5)", r != nil && r.Created && r.WatchId == 5, "got %v", r)

	// events of one txn in one reply; filters; prev_kv
	rw.create(&pb.WatchCreateRequest{Key: []byte("tx/"), RangeEnd: []byte("tx0"), PrevKv: true})
	r = rw.recv()
	id := r.GetWatchId()
	rw.create(&pb.WatchCreateRequest{Key: []byte("tx/"), RangeEnd: []byte("tx0"),
		Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}})
	r = rw.recv()
	idNoPut := r.GetWatchId()
	cli.Put(ctxT(5*time.Second), "tx/a", "old")
	cli.Txn(ctxT(5*time.Second)).Then(clientv3.OpPut("tx/a", "1"), clientv3.OpPut("tx/b", "2"),
		clientv3.OpDelete("tx/c")).Commit()
	cli.Delete(ctxT(5*time.Second), "tx/a")
	got := map[int64][]*pb.WatchResponse{}
	for i := 0; i < 4; i++ { // id: put, txn, delete; idNoPut: delete (either order)
		r = rw.recv()
		if r == nil {
			break
		}
		got[r.WatchId] = append(got[r.WatchId], r)
	}
	all := got[id]
	okTxn := len(all) == 3 && len(all[1].Events) == 2 && all[1].Events[0].PrevKv != nil &&
		string(all[1].Events[0].PrevKv.Value) == "old" && all[1].Events[1].PrevKv == nil &&
		all[1].Header.Revision == all[0].Header.Revision+1
	check("all events of one txn in one reply, with prev_kv", okTxn, "got %v", all)
	nd := got[idNoPut]
	if len(nd) == 0 {
		if r = rw.recv(); r != nil {
			nd = append(nd, r)
		}
	}
	check("NOPUT filter: only the delete", len(nd) == 1 && len(nd[0].Events) == 1 &&
		nd[0].Events[0].Type == mvccpb.DELETE, "got %v", nd)
}

func compacted(cli *clientv3.Client, conn *grpc.ClientConn) {
	for i := 0; i < 3; i++ {
		cli.Put(ctxT(5*time.Second), "cmp", fmt.Sprint(i))
	}
	rev := curRev(cli)
	if _, err := cli.Compact(ctxT(5*time.Second), rev-1); err != nil {
		check("compact", false, "%v", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rw := newRaw(conn, ctx)
	rw.create(&pb.WatchCreateRequest{Key: []byte("cmp"), StartRevision: rev - 2})
	r1 := rw.recv()
	r2 := rw.recv()
	check("compacted start: created reply first", r1 != nil && r1.Created && !r1.Canceled && r1.WatchId == 0,
		"got %v", r1)
	check("then canceled with compact_revision and header revision 0",
		r2 != nil && r2.Canceled && r2.CompactRevision == rev-1 && r2.WatchId == 0 && r2.Header.Revision == 0,
		"got %v", r2)
	// from the compact revision itself still works
	rw.create(&pb.WatchCreateRequest{Key: []byte("cmp"), StartRevision: rev - 1})
	r1 = rw.recv()
	r2 = rw.recv()
	check("watch from the compact revision replays history", r1 != nil && r1.Created && r2 != nil &&
		len(r2.Events) == 2 && r2.Events[0].Kv.ModRevision == rev-1, "got %v / %v", r1, r2)

	wc := cli.Watch(context.Background(), "cmp", clientv3.WithRev(rev-2))
	select {
	case r := <-wc:
		check("clientv3 sees ErrCompacted", r.Err() != nil && strings.Contains(r.Err().Error(),
			"required revision has been compacted") && r.CompactRevision == rev-1, "got %v", r.Err())
	case <-time.After(5 * time.Second):
		check("clientv3 sees ErrCompacted", false, "timeout")
	}
}

// fragments: a txn whose watch reply (with prev_kv) is larger than
// max-request-bytes + 512 KiB is split when the watcher asked for fragments.
func fragments(cli *clientv3.Client, conn *grpc.ClientConn) {
	const n, size = 8, 170 * 1024
	val := func(c byte) string { return string(bytes.Repeat([]byte{c}, size)) }
	for i := 0; i < n; i++ {
		cli.Put(ctxT(5*time.Second), fmt.Sprintf("fr/%d", i), val('a'))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rw := newRaw(conn, ctx)
	rw.create(&pb.WatchCreateRequest{Key: []byte("fr/"), RangeEnd: []byte("fr0"), PrevKv: true, Fragment: true})
	rw.recv()
	// the create may reach the server after the txn: start at the txn's revision
	wc := cli.Watch(ctx, "fr/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithFragment(),
		clientv3.WithRev(curRev(cli)+1))
	ops := make([]clientv3.Op, n)
	for i := range ops {
		ops[i] = clientv3.OpPut(fmt.Sprintf("fr/%d", i), val('b'))
	}
	if _, err := cli.Txn(ctxT(10 * time.Second)).Then(ops...).Commit(); err != nil {
		check("big txn", false, "%v", err)
		return
	}
	var parts []*pb.WatchResponse
	total := 0
	for total < n {
		r := rw.recv()
		if r == nil {
			break
		}
		parts = append(parts, r)
		total += len(r.Events)
	}
	okFrag := len(parts) >= 2 && total == n
	for i, p := range parts {
		if p.Fragment != (i < len(parts)-1) {
			okFrag = false
		}
	}
	check("fragmented reply: several parts, fragment=true on all but the last", okFrag,
		"%d parts, %d events", len(parts), total)
	select {
	case r := <-wc:
		check("clientv3 reassembles the fragments", len(r.Events) == n && r.Events[0].PrevKv != nil,
			"%d events, err %v", len(r.Events), r.Err())
	case <-time.After(10 * time.Second):
		check("clientv3 reassembles the fragments", false, "timeout")
	}
}

func progress(cli *clientv3.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wc := cli.Watch(ctx, "prog", clientv3.WithCreatedNotify())
	<-wc
	cli.Put(ctxT(5*time.Second), "other", "x")
	rev := curRev(cli)
	if err := cli.RequestProgress(ctx); err != nil {
		check("RequestProgress", false, "%v", err)
		return
	}
	select {
	case r := <-wc:
		check("RequestProgress: a progress notify at the current revision",
			r.IsProgressNotify() && r.Header.Revision == rev, "got rev %d (want %d), progress=%v",
			r.Header.Revision, rev, r.IsProgressNotify())
	case <-time.After(5 * time.Second):
		check("RequestProgress", false, "timeout")
	}
	// periodic notifications for progress_notify watchers
	wp := cli.Watch(ctx, "prog2", clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())
	<-wp
	select {
	case r := <-wp:
		check("periodic progress notification", r.IsProgressNotify() && r.Header.Revision >= rev,
			"got %+v", r)
	case <-time.After(15 * time.Second):
		check("periodic progress notification", false, "none within 15 s (interval must be <= 1 s)")
	}
}

// slowStream: a raw watcher that does not read while ~12 MiB of events are
// written; then it reads everything: every revision arrives once, in order.
func slowStream(cli *clientv3.Client, conn *grpc.ClientConn) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rw := newRaw(conn, ctx)
	rw.create(&pb.WatchCreateRequest{Key: []byte("slow/"), RangeEnd: []byte("slow0")})
	if r := rw.recv(); r == nil || !r.Created {
		check("slow stream: created", false, "got %v", r)
		return
	}
	start := curRev(cli) + 1
	const n = 120
	val := string(bytes.Repeat([]byte{'s'}, 100*1024))
	for i := 0; i < n; i++ {
		if _, err := cli.Put(ctxT(5*time.Second), fmt.Sprintf("slow/%d", i%7), val); err != nil {
			check("slow stream: put", false, "%v", err)
			return
		}
	}
	next := start
	ok := true
	for next < start+n {
		r := rw.recv()
		if r == nil {
			ok = false
			break
		}
		for _, ev := range r.Events {
			if ev.Kv.ModRevision != next {
				ok = false
			}
			next = ev.Kv.ModRevision + 1
		}
		if !ok {
			break
		}
	}
	check("slow stream: every revision once, in order", ok && next == start+n, "next %d want %d", next, start+n)
}

func keepAlive(cli *clientv3.Client) {
	g, err := cli.Grant(ctxT(5*time.Second), 3)
	if err != nil {
		check("grant", false, "%v", err)
		return
	}
	check("grant TTL", g.TTL == 3, "TTL %d", g.TTL)
	cli.Put(ctxT(5*time.Second), "ka/key", "v", clientv3.WithLease(g.ID))
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := cli.KeepAlive(ctx, g.ID)
	if err != nil {
		check("KeepAlive", false, "%v", err)
		cancel()
		return
	}
	n := 0
	deadline := time.After(15 * time.Second)
loop:
	for n < 5 {
		select {
		case r, ok := <-ch:
			if !ok {
				break loop
			}
			if r.TTL != 3 || r.ID != g.ID {
				check("keep-alive reply", false, "%+v", r)
			}
			n++
		case <-deadline:
			break loop
		}
	}
	check("5 keep-alive replies with the granted TTL", n == 5, "%d replies", n)
	t, err := cli.TimeToLive(ctxT(5*time.Second), g.ID, clientv3.WithAttachedKeys())
	check("TTL refreshed: the lease outlived its TTL and still has its key",
		err == nil && t.TTL > 0 && t.GrantedTTL == 3 && len(t.Keys) == 1 && string(t.Keys[0]) == "ka/key",
		"%+v %v", t, err)
	cancel()
	_, err = cli.KeepAliveOnce(ctxT(5*time.Second), 0x7fffdeadbeef)
	check("KeepAliveOnce on an unknown lease: lease not found", err != nil &&
		strings.Contains(err.Error(), "requested lease not found"), "%v", err)
	cli.Revoke(ctxT(5*time.Second), g.ID)
	t, err = cli.TimeToLive(ctxT(5*time.Second), g.ID)
	check("TimeToLive after revoke: TTL -1", err == nil && t.TTL == -1 && t.GrantedTTL == 0, "%+v %v", t, err)
	r, _ := cli.Get(ctxT(5*time.Second), "ka/key")
	check("revoke deleted the attached key", r != nil && len(r.Kvs) == 0, "%v", r)
}
