// hostile drives a running member with streams that never read (HTTP/2
// window 0) and checks that the member's memory stays bounded, that another
// client is served meanwhile, and that the starved streams lose nothing once
// they do read.
//
// Usage: hostile ENDPOINT PID MAX_GROWTH_MIB   (exit 0 = all checks passed)
//
// Load: HIST puts of VAL bytes under "h/" (the history), then on one raw
// HTTP/2 connection whose SETTINGS_INITIAL_WINDOW_SIZE is 0:
//   - WATCHES Watch streams, each watching "h/" from revision 1 and sending
//     PROGRESS progress requests;
//   - one LeaseKeepAlive stream sending KEEPALIVES requests;
//   - one Election.Observe stream while the leader proclaims PROCLAIMS values
//     of VAL bytes.
//
// The member's RSS is sampled for a while; its growth over the RSS before
// the load must stay under MAX_GROWTH_MIB. Then the windows open and WATCHES
// streams must each receive every revision of the history exactly once, in
// order (starved streams are caught up from history, never skip).
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	HIST       = 500
	VAL        = 32 * 1024
	WATCHES    = 24
	CHECKED    = 4 // streams whose catch-up is checked in full
	PROGRESS   = 2000
	KEEPALIVES = 200000
	PROCLAIMS  = 200
	// creates on a slow stream: 20 batches of 10000
	CREATE_BATCHES = 20
	CREATE_BATCH   = 10000
)

var failed = 0

func check(desc string, ok bool, detail string) {
	if ok {
		fmt.Printf("  ok: %s\n", desc)
	} else {
		failed++
		fmt.Printf("  FAIL: %s: %s\n", desc, detail)
	}
}

func rssKiB(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return -1
}

// raw is one HTTP/2 connection driven frame by frame.
type raw struct {
	c    net.Conn
	mu   sync.Mutex // writes
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
	next uint32
	ep   string

	dmu    sync.Mutex
	data   map[uint32][]byte // DATA received per stream
	ended  map[uint32]bool
	status map[uint32]string // grpc-status and grpc-message from the trailers
	reader bool              // open windows as data arrives
}

func dialRaw(ep string) (*raw, error) {
	c, err := net.DialTimeout("tcp", ep, 5*time.Second)
	if err != nil {
		return nil, err
	}
	r := &raw{c: c, next: 1, ep: ep, data: map[uint32][]byte{}, ended: map[uint32]bool{},
		status: map[uint32]string{}}
	r.fr = http2.NewFramer(c, c)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(65536, nil)
	r.henc = hpack.NewEncoder(&r.hbuf)
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		return nil, err
	}
	// window 0: the server may send no DATA on any stream
	if err := r.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		return nil, err
	}
	go r.readLoop()
	return r, nil
}

func (r *raw) readLoop() {
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				r.mu.Lock()
				r.fr.WriteSettingsAck()
				r.mu.Unlock()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				r.mu.Lock()
				r.fr.WritePing(true, f.Data)
				r.mu.Unlock()
			}
		case *http2.DataFrame:
			r.dmu.Lock()
			r.data[f.StreamID] = append(r.data[f.StreamID], f.Data()...)
			if f.StreamEnded() {
				r.ended[f.StreamID] = true
			}
			open := r.reader
			r.dmu.Unlock()
			if open && len(f.Data()) > 0 {
				r.mu.Lock()
				r.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
				r.fr.WriteWindowUpdate(f.StreamID, uint32(len(f.Data())))
				r.mu.Unlock()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				r.dmu.Lock()
				r.ended[f.StreamID] = true
				r.status[f.StreamID] = headerValue(f, "grpc-status") + " " + headerValue(f, "grpc-message")
				r.dmu.Unlock()
			}
		}
	}
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.Fields {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// open starts a stream on path; returns its id.
func (r *raw) open(path string) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.next
	r.next += 2
	r.hbuf.Reset()
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", path},
		{":authority", r.ep}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		r.henc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hbuf.Bytes(), EndHeaders: true})
	return id
}

func frame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// send writes msgs (already framed, concatenated) on stream id in DATA
// frames of at most 16 KiB.
func (r *raw) send(id uint32, b []byte, end bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(b) > 0 || end {
		n := len(b)
		if n > 16384 {
			n = 16384
		}
		last := end && n == len(b)
		if err := r.fr.WriteData(id, last, b[:n]); err != nil {
			return err
		}
		b = b[n:]
		if last {
			break
		}
	}
	return nil
}

// messages splits a stream's received bytes into gRPC messages.
func messages(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			break
		}
		out = append(out, b[5:5+n])
		b = b[5+n:]
	}
	return out
}

func main() {
	ep, pid := os.Args[1], os.Args[2]
	maxGrowth, _ := strconv.ParseInt(os.Args[3], 10, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("client:", err)
		os.Exit(1)
	}
	defer cli.Close()

	// the history: revisions 2 .. HIST+1
	val := strings.Repeat("v", VAL)
	for i := 0; i < HIST; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("h/%04d", i), val); err != nil {
			fmt.Println("put:", err)
			os.Exit(1)
		}
	}
	lg, err := cli.Grant(ctx, 600)
	if err != nil {
		fmt.Println("grant:", err)
		os.Exit(1)
	}
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(600))
	if err != nil {
		fmt.Println("session:", err)
		os.Exit(1)
	}
	el := concurrency.NewElection(sess, "e")
	if err := el.Campaign(ctx, "first"); err != nil {
		fmt.Println("campaign:", err)
		os.Exit(1)
	}
	before := rssKiB(pid)
	fmt.Printf("  member RSS before the load: %d KiB\n", before)

	r, err := dialRaw(ep)
	if err != nil {
		fmt.Println("raw dial:", err)
		os.Exit(1)
	}
	var watchIDs []uint32
	create, _ := (&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte("h/"), RangeEnd: []byte("h0"), StartRevision: 1}}}).Marshal()
	prog, _ := (&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}).Marshal()
	progs := bytes.Repeat(frame(prog), PROGRESS)
	for i := 0; i < WATCHES; i++ {
		id := r.open("/etcdserverpb.Watch/Watch")
		watchIDs = append(watchIDs, id)
		r.send(id, frame(create), false)
		r.send(id, progs, false)
	}
	// a slow stream that keeps creating watchers: it may queue CREATES_OK
	// created replies, then it is ended with ResourceExhausted; the creates
	// are paced so the history fills the stream first
	floodID := r.open("/etcdserverpb.Watch/Watch")
	r.send(floodID, frame(create), false)
	go func() {
		for i := 0; i < CREATE_BATCHES; i++ {
			var b []byte
			for j := 0; j < CREATE_BATCH; j++ {
				m, _ := (&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
					Key: []byte(fmt.Sprintf("c/%d/%d", i, j))}}}).Marshal()
				b = append(b, frame(m)...)
			}
			if r.send(floodID, b, false) != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	ka, _ := (&pb.LeaseKeepAliveRequest{ID: int64(lg.ID)}).Marshal()
	kaID := r.open("/etcdserverpb.Lease/LeaseKeepAlive")
	go r.send(kaID, bytes.Repeat(frame(ka), KEEPALIVES), false)
	obs := []byte{0x0a, 0x01, 'e'} // LeaderRequest{name: "e"}
	obsID := r.open("/v3electionpb.Election/Observe")
	r.send(obsID, frame(obs), true)
	go func() {
		for i := 0; i < PROCLAIMS; i++ {
			if el.Proclaim(ctx, fmt.Sprintf("%06d%s", i, val)) != nil {
				return
			}
		}
	}()

	// sample the member while the starved streams sit there; another client
	// must be served all along
	peak := before
	slowest := time.Duration(0)
	served := 0
	for i := 0; i < 40; i++ {
		t0 := time.Now()
		gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Get(gctx, "h/0000", clientv3.WithCountOnly())
		gcancel()
		if d := time.Since(t0); d > slowest {
			slowest = d
		}
		if err == nil {
			served++
		}
		if v := rssKiB(pid); v > peak {
			peak = v
		}
		time.Sleep(250 * time.Millisecond)
	}
	growth := (peak - before) / 1024
	fmt.Printf("  member RSS peak under the load: %d KiB (growth %d MiB, bound %d MiB); slowest Get %v\n",
		peak, growth, maxGrowth, slowest)
	check("member RSS growth stays under the bound", before > 0 && growth < maxGrowth,
		fmt.Sprintf("grew %d MiB", growth))
	check("another client is served meanwhile (40 Gets within 2 s each)", served == 40,
		fmt.Sprintf("%d of 40 served, slowest %v", served, slowest))

	// open the windows: the checked streams must get the whole history
	r.mu.Lock()
	for _, id := range watchIDs[CHECKED:] {
		r.fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	r.fr.WriteRSTStream(kaID, http2.ErrCodeCancel)
	// floodID stays open: its status is read below
	r.fr.WriteRSTStream(obsID, http2.ErrCodeCancel)
	r.mu.Unlock()
	r.dmu.Lock()
	r.reader = true
	r.dmu.Unlock()
	r.mu.Lock()
	r.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	r.fr.WriteWindowUpdate(0, 1<<30)
	r.mu.Unlock()
	deadline := time.Now().Add(120 * time.Second)
	type result struct {
		revs      []int64
		progress  int
		created   bool
		canceled  bool
		badDecode bool
	}
	var res []result
	for {
		res = res[:0]
		done := true
		r.dmu.Lock()
		for _, id := range watchIDs[:CHECKED] {
			var x result
			for _, m := range messages(r.data[id]) {
				var wr pb.WatchResponse
				if wr.Unmarshal(m) != nil {
					x.badDecode = true
					continue
				}
				switch {
				case wr.Created:
					x.created = true
				case wr.Canceled:
					x.canceled = true
				case len(wr.Events) == 0:
					x.progress++
				}
				for _, ev := range wr.Events {
					x.revs = append(x.revs, ev.Kv.ModRevision)
				}
			}
			if len(x.revs) < HIST && !x.canceled && !r.ended[id] {
				done = false
			}
			res = append(res, x)
		}
		r.dmu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// the create flood's stream ended with etcd's "too many requests"
	var floodStatus string
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		r.dmu.Lock()
		floodStatus = r.status[floodID]
		r.dmu.Unlock()
		if floodStatus != "" {
			break
		}
	}
	check("a slow stream that keeps creating watchers ends with ResourceExhausted",
		floodStatus == "8 etcdserver: too many requests", fmt.Sprintf("status %q", floodStatus))
	for i, x := range res {
		inOrder := len(x.revs) == HIST
		for j := range x.revs {
			if inOrder && x.revs[j] != int64(j+2) {
				inOrder = false
			}
		}
		check(fmt.Sprintf("starved watch stream %d: created, then revisions 2..%d once each in order", i, HIST+1),
			x.created && !x.canceled && !x.badDecode && inOrder,
			fmt.Sprintf("created %v canceled %v %d events", x.created, x.canceled, len(x.revs)))
		check(fmt.Sprintf("starved watch stream %d: its progress requests were answered (%d replies for %d requests)",
			i, x.progress, PROGRESS), x.progress >= 1 && x.progress <= PROGRESS, "")
	}
	r.c.Close()

	// still serving after all that
	_, err = cli.Put(ctx, "after", "ok")
	check("a put after the load", err == nil, fmt.Sprint(err))
	if failed > 0 {
		os.Exit(1)
	}
}
