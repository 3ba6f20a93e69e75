// electlock checks the server-side Lock (v3lockpb) and Election
// (v3electionpb) services with their generated Go clients: Lock/Unlock with
// two contenders (the second blocks until the first unlocks), re-entrant
// locks, lease 0 (a 60 s lease made by the server), an unknown lease, a
// blocked Lock cancelled by its deadline (the server removes its key), a
// waiter whose own lease expires; Campaign/Proclaim/Leader/Observe/Resign
// with a blocked second campaigner, a cancelled campaign, and etcd's error
// messages and codes. It runs against etcd 3.4 too, which is how its
// expectations were checked.
//
// Usage: electlock ENDPOINT   (exit 0 = all checks passed)
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/clientv3"
	epb "go.etcd.io/etcd/etcdserver/api/v3election/v3electionpb"
	lpb "go.etcd.io/etcd/etcdserver/api/v3lock/v3lockpb"
	"go.etcd.io/etcd/mvcc/mvccpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// waitUntil polls cond every 20 ms for at most limit; a condition wait, not a
// timing assertion (the limit only bounds a broken server).
func waitUntil(limit time.Duration, cond func() bool) bool {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

func exists(cli *clientv3.Client, key string) bool {
	r, err := cli.Get(ctxT(5*time.Second), key)
	return err == nil && len(r.Kvs) == 1
}

func errIs(err error, code codes.Code, msg string) bool {
	s, ok := status.FromError(err)
	return ok && s.Code() == code && s.Message() == msg
}

func grant(cli *clientv3.Client, ttl int64) clientv3.LeaseID {
	r, err := cli.Grant(ctxT(5*time.Second), ttl)
	if err != nil {
		fmt.Println("  FAIL: grant:", err)
		os.Exit(1)
	}
	return r.ID
}

type lockResult struct {
	resp *lpb.LockResponse
	err  error
}

func lockAsync(lc lpb.LockClient, ctx context.Context, name string, lease clientv3.LeaseID) chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		r, err := lc.Lock(ctx, &lpb.LockRequest{Name: []byte(name), Lease: int64(lease)})
		ch <- lockResult{r, err}
	}()
	return ch
}

func done(ch chan lockResult) bool {
	select {
	case r := <-ch:
		ch <- r
		return true
	default:
		return false
	}
}

func locks(cli *clientv3.Client, lc lpb.LockClient) {
	l1, l2, l3 := grant(cli, 30), grant(cli, 30), grant(cli, 30)
	k1 := fmt.Sprintf("lk/%x", l1)
	k2 := fmt.Sprintf("lk/%x", l2)
	k3 := fmt.Sprintf("lk/%x", l3)

	r1, err := lc.Lock(ctxT(5*time.Second), &lpb.LockRequest{Name: []byte("lk"), Lease: int64(l1)})
	check("Lock: uncontended", err == nil && string(r1.GetKey()) == k1, "%v %v", r1, err)
	if err != nil {
		return
	}
	g, _ := cli.Get(ctxT(5*time.Second), k1)
	check("Lock: key exists with the lease and an empty value",
		len(g.Kvs) == 1 && g.Kvs[0].Lease == int64(l1) && len(g.Kvs[0].Value) == 0, "%v", g.Kvs)
	check("Lock: header revision is the key's create revision",
		len(g.Kvs) == 1 && r1.Header.Revision == g.Kvs[0].CreateRevision && r1.Header.MemberId != 0 &&
			r1.Header.ClusterId != 0 && r1.Header.RaftTerm != 0, "%v %v", r1.Header, g.Kvs)

	r1b, err := lc.Lock(ctxT(5*time.Second), &lpb.LockRequest{Name: []byte("lk"), Lease: int64(l1)})
	check("Lock: again with the same lease is granted at once (same key)",
		err == nil && string(r1b.GetKey()) == k1, "%v %v", r1b, err)
	if err == nil {
		check("Lock: re-entrant header is the txn's (no new revision)",
			r1b.Header.Revision == r1.Header.Revision, "%d vs %d", r1b.Header.Revision, r1.Header.Revision)
	}

	ch := lockAsync(lc, ctxT(10*time.Second), "lk", l2)
	check("Lock: second contender's key appears", waitUntil(5*time.Second, func() bool { return exists(cli, k2) }), "no %s", k2)
	check("Lock: second contender blocks while the first holds the lock", !done(ch), "returned early")
	u, err := lc.Unlock(ctxT(5*time.Second), &lpb.UnlockRequest{Key: []byte(k1)})
	check("Unlock: first holder", err == nil && u.Header.Revision > r1.Header.Revision, "%v %v", u, err)
	res := <-ch
	check("Lock: second contender gets the lock after Unlock",
		res.err == nil && string(res.resp.GetKey()) == k2, "%v %v", res.resp, res.err)
	if res.err == nil && u != nil {
		check("Lock: waiter's header is read after the unlock",
			res.resp.Header.Revision >= u.Header.Revision && res.resp.Header.MemberId != 0, "%v vs %d",
			res.resp.Header, u.Header.Revision)
	}

	// a blocked Lock ended by its deadline: the server removes its key
	ch3 := lockAsync(lc, ctxT(1500*time.Millisecond), "lk", l3)
	res3 := <-ch3
	check("Lock: a blocked Lock ends with the caller's deadline",
		status.Code(res3.err) == codes.DeadlineExceeded, "%v %v", res3.resp, res3.err)
	check("Lock: the cancelled waiter's key is removed",
		waitUntil(5*time.Second, func() bool { return !exists(cli, k3) }), "%s still there", k3)
	check("Lock: the holder is unaffected", exists(cli, k2), "%s gone", k2)

	u2, err := lc.Unlock(ctxT(5*time.Second), &lpb.UnlockRequest{Key: []byte(k2)})
	check("Unlock: second holder", err == nil && u2.Header != nil && !exists(cli, k2), "%v %v", u2, err)
	u3, err := lc.Unlock(ctxT(5*time.Second), &lpb.UnlockRequest{Key: []byte(k2)})
	check("Unlock: a key that is gone is fine (no new revision)",
		err == nil && u2 != nil && u3.Header.Revision == u2.Header.Revision, "%v %v", u3, err)
	_, err = lc.Unlock(ctxT(5*time.Second), &lpb.UnlockRequest{})
	check("Unlock: empty key", errIs(err, codes.Unknown, "etcdserver: key is not provided"), "%v", err)

	// lease 0: the server grants a 60 s lease that nobody keeps alive
	r0, err := lc.Lock(ctxT(5*time.Second), &lpb.LockRequest{Name: []byte("lz")})
	if check("Lock: lease 0", err == nil, "%v", err); err == nil {
		g, _ := cli.Get(ctxT(5*time.Second), string(r0.Key))
		ok := len(g.Kvs) == 1 && string(r0.Key) == fmt.Sprintf("lz/%x", g.Kvs[0].Lease) && g.Kvs[0].Lease != 0
		check("Lock: lease 0 makes a lease named in the key", ok, "%s %v", r0.Key, g.Kvs)
		if ok {
			t, err := cli.TimeToLive(ctxT(5*time.Second), clientv3.LeaseID(g.Kvs[0].Lease))
			check("Lock: the made lease has a 60 s TTL", err == nil && t.GrantedTTL == 60, "%v %v", t, err)
			cli.Revoke(ctxT(5*time.Second), clientv3.LeaseID(g.Kvs[0].Lease))
		}
	}

	_, err = lc.Lock(ctxT(5*time.Second), &lpb.LockRequest{Name: []byte("lk"), Lease: 0x1234abcd})
	check("Lock: unknown lease", errIs(err, codes.Unknown, "etcdserver: requested lease not found"), "%v", err)

	_, err = lc.Lock(ctxT(5*time.Second), &lpb.LockRequest{Name: []byte("lk"), Lease: int64(l1)})
	check("Lock: after Unlock the first lease locks again", err == nil, "%v", err)

	// a waiter whose own lease expires keeps waiting, as etcd 3.4's recipe
	// does, and is answered (with its now deleted key) once the holder goes
	ls := grant(cli, 2)
	ks := fmt.Sprintf("lk/%x", ls)
	chs := lockAsync(lc, ctxT(15*time.Second), "lk", ls)
	check("Lock: short-lease waiter's key appears", waitUntil(5*time.Second, func() bool { return exists(cli, ks) }), "no %s", ks)
	check("Lock: short-lease waiter's key expires",
		waitUntil(10*time.Second, func() bool { return !exists(cli, ks) }), "%s still there", ks)
	check("Lock: the expired waiter still waits for the holder", !done(chs), "returned early")
	lc.Unlock(ctxT(5*time.Second), &lpb.UnlockRequest{Key: []byte(k1)})
	rs := <-chs
	check("Lock: the expired waiter is answered once the holder unlocks",
		rs.err == nil && string(rs.resp.GetKey()) == ks, "%v %v", rs.resp, rs.err)
	// three in line: the last waits on the middle one; when the middle one
	// leaves, it goes on waiting for the holder
	rh, err := lc.Lock(ctxT(5*time.Second), &lpb.LockRequest{Name: []byte("lq"), Lease: int64(l1)})
	check("Lock: a third lock's holder", err == nil, "%v", err)
	mctx, mcancel := context.WithCancel(context.Background())
	chm := lockAsync(lc, mctx, "lq", l2)
	km := fmt.Sprintf("lq/%x", l2)
	check("Lock: middle waiter's key appears", waitUntil(5*time.Second, func() bool { return exists(cli, km) }), "no %s", km)
	chl := lockAsync(lc, ctxT(10*time.Second), "lq", l3)
	kl := fmt.Sprintf("lq/%x", l3)
	check("Lock: last waiter's key appears", waitUntil(5*time.Second, func() bool { return exists(cli, kl) }), "no %s", kl)
	mcancel()
	<-chm
	check("Lock: the middle waiter's key is removed when it cancels",
		waitUntil(5*time.Second, func() bool { return !exists(cli, km) }), "%s still there", km)
	check("Lock: the last waiter still waits for the holder", !done(chl), "returned early")
	uh, err := lc.Unlock(ctxT(5*time.Second), &lpb.UnlockRequest{Key: rh.GetKey()})
	rl := <-chl
	check("Lock: the last waiter gets the lock once the holder unlocks",
		err == nil && rl.err == nil && string(rl.resp.GetKey()) == kl && rl.resp.Header.Revision >= uh.Header.Revision,
		"%v %v %v", rl.resp, rl.err, err)
	lc.Unlock(ctxT(5*time.Second), &lpb.UnlockRequest{Key: []byte(kl)})

	cli.Revoke(ctxT(5*time.Second), l1)
	cli.Revoke(ctxT(5*time.Second), l2)
	cli.Revoke(ctxT(5*time.Second), l3)
}

type campResult struct {
	resp *epb.CampaignResponse
	err  error
}

func campaignAsync(ec epb.ElectionClient, ctx context.Context, name string, lease clientv3.LeaseID, val string) chan campResult {
	ch := make(chan campResult, 1)
	go func() {
		r, err := ec.Campaign(ctx, &epb.CampaignRequest{Name: []byte(name), Lease: int64(lease), Value: []byte(val)})
		ch <- campResult{r, err}
	}()
	return ch
}

// observer reads an Observe stream into a channel.
func observer(ec epb.ElectionClient, ctx context.Context, name string) chan *epb.LeaderResponse {
	ch := make(chan *epb.LeaderResponse, 100)
	s, err := ec.Observe(ctx, &epb.LeaderRequest{Name: []byte(name)})
	if err != nil {
		close(ch)
		return ch
	}
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				close(ch)
				return
			}
			ch <- r
		}
	}()
	return ch
}

func next(ch chan *epb.LeaderResponse) *epb.LeaderResponse {
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		return nil
	}
}

func kvIs(kv *mvccpb.KeyValue, key, val string) bool {
	return kv != nil && string(kv.Key) == key && string(kv.Value) == val
}

func elections(cli *clientv3.Client, ec epb.ElectionClient) {
	l1, l2, l3 := grant(cli, 30), grant(cli, 30), grant(cli, 30)
	k1, k2, k3 := fmt.Sprintf("el/%x", l1), fmt.Sprintf("el/%x", l2), fmt.Sprintf("el/%x", l3)

	_, err := ec.Leader(ctxT(5*time.Second), &epb.LeaderRequest{Name: []byte("el")})
	check("Leader: none yet", errIs(err, codes.Unknown, "election: no leader"), "%v", err)

	octx, ocancel := context.WithCancel(context.Background())
	obs := observer(ec, octx, "el")

	c1, err := ec.Campaign(ctxT(5*time.Second), &epb.CampaignRequest{Name: []byte("el"), Lease: int64(l1), Value: []byte("v1")})
	check("Campaign: uncontended", err == nil && string(c1.GetLeader().GetKey()) == k1 &&
		string(c1.GetLeader().GetName()) == "el" && c1.GetLeader().GetLease() == int64(l1), "%v %v", c1, err)
	if err != nil {
		ocancel()
		return
	}
	lead1 := c1.Leader
	check("Campaign: rev is the key's create revision = header revision",
		lead1.Rev == c1.Header.Revision && c1.Header.MemberId != 0, "%v", c1)

	o := next(obs)
	check("Observe: the first leader (waited for on an empty election)", o != nil && kvIs(o.Kv, k1, "v1"), "%v", o)
	if o != nil {
		check("Observe: header revision is the put's revision", o.Header.Revision == lead1.Rev && o.Header.MemberId != 0,
			"%v vs %d", o.Header, lead1.Rev)
	}

	ld, err := ec.Leader(ctxT(5*time.Second), &epb.LeaderRequest{Name: []byte("el")})
	check("Leader: the campaigner", err == nil && kvIs(ld.Kv, k1, "v1") && ld.Kv.CreateRevision == lead1.Rev &&
		ld.Kv.Lease == int64(l1), "%v %v", ld, err)

	ch2 := campaignAsync(ec, ctxT(10*time.Second), "el", l2, "v2")
	check("Campaign: second campaigner's key appears", waitUntil(5*time.Second, func() bool { return exists(cli, k2) }), "no %s", k2)
	select {
	case r := <-ch2:
		check("Campaign: second campaigner blocks while the first leads", false, "%v %v", r.resp, r.err)
	default:
		check("Campaign: second campaigner blocks while the first leads", true, "")
	}

	p, err := ec.Proclaim(ctxT(5*time.Second), &epb.ProclaimRequest{Leader: lead1, Value: []byte("v1b")})
	check("Proclaim: by the leader", err == nil && p.Header.Revision > lead1.Rev, "%v %v", p, err)
	o = next(obs)
	check("Observe: the proclamation", o != nil && kvIs(o.Kv, k1, "v1b"), "%v", o)
	if o != nil && p != nil {
		check("Observe: header of a watched change", o.Header.Revision == p.Header.Revision, "%v vs %v", o.Header, p.Header)
	}
	ld, err = ec.Leader(ctxT(5*time.Second), &epb.LeaderRequest{Name: []byte("el")})
	check("Leader: the proclaimed value", err == nil && kvIs(ld.Kv, k1, "v1b"), "%v %v", ld, err)

	bad := *lead1
	bad.Rev++
	_, err = ec.Proclaim(ctxT(5*time.Second), &epb.ProclaimRequest{Leader: &bad, Value: []byte("x")})
	check("Proclaim: wrong revision", errIs(err, codes.Unknown, "election: not leader"), "%v", err)
	_, err = ec.Proclaim(ctxT(5*time.Second), &epb.ProclaimRequest{Value: []byte("x")})
	check("Proclaim: no leader key", errIs(err, codes.Unknown, `"leader" field must be provided`), "%v", err)
	_, err = ec.Resign(ctxT(5*time.Second), &epb.ResignRequest{})
	check("Resign: no leader key", errIs(err, codes.Unknown, `"leader" field must be provided`), "%v", err)

	rs, err := ec.Resign(ctxT(5*time.Second), &epb.ResignRequest{Leader: lead1})
	check("Resign: the leader", err == nil && rs.Header.Revision > lead1.Rev && !exists(cli, k1), "%v %v", rs, err)
	r2 := <-ch2
	check("Campaign: the second campaigner wins after Resign", r2.err == nil && string(r2.resp.GetLeader().GetKey()) == k2,
		"%v %v", r2.resp, r2.err)
	var lead2 *epb.LeaderKey
	if r2.err == nil {
		lead2 = r2.resp.Leader
		check("Campaign: a waiter's header is its txn's", r2.resp.Header.Revision == lead2.Rev, "%v", r2.resp)
	}
	o = next(obs)
	check("Observe: the new leader", o != nil && kvIs(o.Kv, k2, "v2"), "%v", o)
	if o != nil && rs != nil {
		check("Observe: header of a new leader is read after the resign", o.Header.Revision >= rs.Header.Revision,
			"%v vs %v", o.Header, rs.Header)
	}

	rs2, err := ec.Resign(ctxT(5*time.Second), &epb.ResignRequest{Leader: lead1})
	check("Resign: again (no longer leader) is fine", err == nil && rs2.Header.Revision == rs.Header.Revision, "%v %v", rs2, err)
	_, err = ec.Proclaim(ctxT(5*time.Second), &epb.ProclaimRequest{Leader: lead1, Value: []byte("x")})
	check("Proclaim: by a resigned leader", errIs(err, codes.Unknown, "election: not leader"), "%v", err)

	if lead2 != nil {
		c2b, err := ec.Campaign(ctxT(5*time.Second), &epb.CampaignRequest{Name: []byte("el"), Lease: int64(l2), Value: []byte("v2b")})
		check("Campaign: again with the leader's lease keeps the key and proclaims",
			err == nil && c2b.Leader.Rev == lead2.Rev && string(c2b.Leader.Key) == k2, "%v %v", c2b, err)
		o = next(obs)
		check("Observe: the re-campaign's value", o != nil && kvIs(o.Kv, k2, "v2b"), "%v", o)

		// a blocked Campaign ended by its deadline: the server resigns it
		c3, err := ec.Campaign(ctxT(1500*time.Millisecond), &epb.CampaignRequest{Name: []byte("el"), Lease: int64(l3), Value: []byte("v3")})
		check("Campaign: a blocked Campaign ends with the caller's deadline",
			status.Code(err) == codes.DeadlineExceeded, "%v %v", c3, err)
		check("Campaign: the cancelled campaigner's key is removed",
			waitUntil(5*time.Second, func() bool { return !exists(cli, k3) }), "%s still there", k3)

		_, err = ec.Resign(ctxT(5*time.Second), &epb.ResignRequest{Leader: lead2})
		check("Resign: the second leader", err == nil, "%v", err)
		_, err = ec.Leader(ctxT(5*time.Second), &epb.LeaderRequest{Name: []byte("el")})
		check("Leader: none after the last resigns", errIs(err, codes.Unknown, "election: no leader"), "%v", err)
	}

	c3, err := ec.Campaign(ctxT(5*time.Second), &epb.CampaignRequest{Name: []byte("el"), Lease: int64(l3), Value: []byte("v3")})
	check("Campaign: into an empty election", err == nil, "%v", err)
	o = next(obs)
	check("Observe: a leader after an empty spell", o != nil && kvIs(o.Kv, k3, "v3"), "%v", o)
	if o != nil && c3 != nil {
		check("Observe: its header revision is the put's", o.Header.Revision == c3.Leader.Rev, "%v vs %d", o.Header, c3.Leader.Rev)
	}
	ocancel()
	_, more := <-obs
	for more {
		_, more = <-obs
	}
	check("Observe: ends when the client cancels", true, "")

	// a late observer starts with the current leader, from a range
	octx2, ocancel2 := context.WithCancel(context.Background())
	obs2 := observer(ec, octx2, "el")
	o = next(obs2)
	check("Observe: a late observer gets the current leader first", o != nil && kvIs(o.Kv, k3, "v3") &&
		o.Header.Revision >= c3.Leader.Rev, "%v", o)
	cli.Revoke(ctxT(5*time.Second), l3)
	cli.Put(ctxT(5*time.Second), "el/zzz", "plain")
	o = next(obs2)
	check("Observe: the next key after the leader's lease is revoked", o != nil && kvIs(o.Kv, "el/zzz", "plain"), "%v", o)
	ocancel2()
	cli.Delete(ctxT(5*time.Second), "el/zzz")

	// lease 0 campaign: the server grants a 60 s lease
	c0, err := ec.Campaign(ctxT(5*time.Second), &epb.CampaignRequest{Name: []byte("ez"), Value: []byte("z")})
	if check("Campaign: lease 0", err == nil && c0.Leader.Lease != 0 &&
		string(c0.Leader.Key) == fmt.Sprintf("ez/%x", c0.Leader.Lease), "%v %v", c0, err); err == nil {
		t, err := cli.TimeToLive(ctxT(5*time.Second), clientv3.LeaseID(c0.Leader.Lease))
		check("Campaign: the made lease has a 60 s TTL", err == nil && t.GrantedTTL == 60, "%v %v", t, err)
		cli.Revoke(ctxT(5*time.Second), clientv3.LeaseID(c0.Leader.Lease))
	}
	_, err = ec.Campaign(ctxT(5*time.Second), &epb.CampaignRequest{Name: []byte("el"), Lease: 0x1234abcd, Value: []byte("q")})
	check("Campaign: unknown lease", errIs(err, codes.Unknown, "etcdserver: requested lease not found"), "%v", err)
	cli.Revoke(ctxT(5*time.Second), l1)
	cli.Revoke(ctxT(5*time.Second), l2)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Println("usage: electlock ENDPOINT")
		os.Exit(2)
	}
	ep := os.Args[1]
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("  FAIL: connect:", err)
		os.Exit(1)
	}
	defer cli.Close()
	conn := cli.ActiveConnection()
	locks(cli, lpb.NewLockClient(conn))
	elections(cli, epb.NewElectionClient(conn))
	if failed > 0 {
		fmt.Printf("electlock: %d failed\n", failed)
		os.Exit(1)
	}
	fmt.Println("electlock: all passed")
}
