package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// rawRequest encodes a DEALER's request [“”, id, mimetype, body] as ZMTP
// frames.
func rawRequest(id, body string) []byte {
	var buf []byte
	buf = appendFrame(buf, zmtpFlagMore, nil)
	buf = appendFrame(buf, zmtpFlagMore, []byte(id))
	buf = appendFrame(buf, zmtpFlagMore, []byte("text/plain"))
	return appendFrame(buf, 0, []byte(body))
}

// readReplies reads n replies from a raw peer's connection and returns
// their ids, failing the test when they do not come.
func readReplies(t *testing.T, ctx context.Context, nc net.Conn, z *zconn, n int) map[string]bool {
	t.Helper()
	d, _ := ctx.Deadline()
	_ = nc.SetReadDeadline(d)
	ids := map[string]bool{}
	for range n {
		frames, err := z.readMsg(nil)
		if err != nil {
			t.Fatalf("after %d of %d replies: %v", len(ids), n, err)
		}
		env, err := Parse(frames)
		if err != nil {
			t.Fatalf("reply %d: %v", len(ids), err)
		}
		ids[env.ID] = true
	}
	return ids
}

// A burst of pipelined requests that an inline server reads together is
// answered whole even when the peer sends nothing more, or only part of
// the next message: queued replies never wait for the peer.
func TestInlineBurstRepliesNeverWaitForThePeer(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo, WithInlineHandlers(time.Second))
	nc := zmtpPeer(t, srv, nil)
	z := &zconn{gc: newGuardedConn(nc, 1<<20)}
	z.gc.guard.greeting = 0 // zmtpPeer ran the handshake
	const n = 50
	var burst []byte
	for i := range n {
		burst = append(burst, rawRequest(fmt.Sprint("b-", i), "x")...)
	}
	next := rawRequest("last", "y")
	half := len(next) / 2
	// The burst and half of one more message, in one write.
	if _, err := nc.Write(append(burst, next[:half]...)); err != nil {
		t.Fatal(err)
	}
	if ids := readReplies(t, ctx, nc, z, n); len(ids) != n {
		t.Fatalf("%d distinct replies to %d requests", len(ids), n)
	}
	if _, err := nc.Write(next[half:]); err != nil {
		t.Fatal(err)
	}
	if ids := readReplies(t, ctx, nc, z, 1); !ids["last"] {
		t.Fatalf("the last request's reply: %v", ids)
	}
}

// A peer that sends a burst of requests and closes at once, while the
// replies are being queued and written, costs the server its connection
// and nothing else: it goes on serving, and closes with nothing left
// running (goleak).
func TestPeerClosesWithBatchedRepliesPending(t *testing.T) {
	ctx := testCtx(t)
	for _, opts := range [][]Option{{WithInlineHandlers(time.Second)}, nil} {
		srv := startServer(t, echo, opts...)
		for range 5 {
			nc := zmtpPeer(t, srv, nil)
			var burst []byte
			for i := range 500 {
				burst = append(burst, rawRequest(fmt.Sprint("c-", i), "x")...)
			}
			if _, err := nc.Write(burst); err != nil {
				t.Fatal(err)
			}
			if tc, ok := nc.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset: writes of replies fail
			}
			_ = nc.Close()
		}
		c := newClient(t)
		// (Overloaded while the closed peers' requests still run.)
		waitFor(t, ctx, "a request answered after the closed peers", func() bool {
			reply, err := c.Request(ctx, srv.Addr(), env("after", "ok"))
			var re *RemoteError
			if err != nil && !(errors.As(err, &re) && re.Code == CodeOverloaded) {
				t.Fatalf("after the closed peers: %v", err)
			}
			return err == nil && string(reply.Body) == "ok"
		})
		waitFor(t, ctx, "the closed peers' connections to end", func() bool {
			srv.mu.Lock()
			defer srv.mu.Unlock()
			return len(srv.conns) == 1
		})
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Many Deliver calls at once, to servers answering inline and on handler
// goroutines, each get every acknowledgement, each its own.
func TestDeliverManyInFlightNoMisroutes(t *testing.T) {
	ctx := testCtx(t)
	eps := make([]string, 10)
	for i := range eps {
		var opts []Option
		if i%2 == 0 {
			opts = append(opts, WithInlineHandlers(time.Millisecond))
		}
		ep := fmt.Sprint("ep-", i)
		eps[i] = startServer(t, func(_ context.Context, req Envelope) (Envelope, error) {
			return req.Reply("text/plain", []byte(ep+"/"+string(req.Body))), nil
		}, opts...).Addr()
	}
	c := newClient(t, WithMaxInFlight(16))
	inParallel(t, 16, func(g int) error {
		for k := range 60 {
			body := fmt.Sprintf("g%d-k%d", g, k)
			for i, r := range c.Deliver(ctx, eps, env(body, body)) {
				want := fmt.Sprintf("ep-%d/%s", i, body)
				if r.Err != nil || string(r.Reply.Body) != want || r.Endpoint != eps[i] {
					return fmt.Errorf("delivery %s to %d: %q, %v; want %q", body, i, r.Reply.Body, r.Err, want)
				}
			}
		}
		return nil
	})
}

// A connection that ends while a Deliver call waits for replies on it
// wakes the call: that endpoint fails with ErrConnectionLost, not at the
// deadline, and the others are acknowledged.
func TestDeliverWakesWhenAConnectionEnds(t *testing.T) {
	ctx := testCtx(t)
	in := make(chan struct{}, 1)
	stuck := startServer(t, func(ctx context.Context, req Envelope) (Envelope, error) {
		if string(req.Body) == "hold" {
			in <- struct{}{}
			<-ctx.Done() // until the server closes
			return Envelope{}, ctx.Err()
		}
		return echo(ctx, req)
	}, WithHandlerTimeout(time.Minute))
	ok1, ok2 := startServer(t, echo).Addr(), startServer(t, echo, WithInlineHandlers(time.Millisecond)).Addr()
	eps := []string{ok1, stuck.Addr(), ok2}
	c := newClient(t, WithRequestTimeout(time.Minute))
	for _, r := range c.Deliver(ctx, eps, env("warm", "warm")) { // connections up: the grouped path
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	done := make(chan []Result, 1)
	go func() { done <- c.Deliver(ctx, eps, env("hold", "hold")) }()
	select {
	case <-in:
	case <-ctx.Done():
		t.Fatal("the request never reached the handler")
	}
	_ = stuck.Close()
	var results []Result
	select {
	case results = <-done:
	case <-ctx.Done():
		t.Fatal("Deliver did not return after the connection ended")
	}
	for i, r := range results {
		switch {
		case i == 1 && !errors.Is(r.Err, ErrConnectionLost):
			t.Errorf("the closed server: %v, want ErrConnectionLost", r.Err)
		case i != 1 && r.Err != nil:
			t.Errorf("endpoint %d: %v", i, r.Err)
		}
	}
}

// Replies queued during a burst go out before the reader waits for read
// budget for a large message behind the burst: that wait is not the
// peer's, and may last until the message deadline.
func TestInlineBurstRepliesNeverWaitForTheReadBudget(t *testing.T) {
	ctx := testCtx(t)
	budget := NewReadBudget(1 << 20)
	if err := budget.acquire(budget.Size(), time.Time{}, nil, func() bool { return false }); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			budget.release(budget.Size())
		}
	}
	defer release()
	srv := startServer(t, echo, WithInlineHandlers(time.Second), WithReadBudget(budget), WithMessageTimeout(time.Minute))
	nc := zmtpPeer(t, srv, nil)
	z := &zconn{gc: newGuardedConn(nc, 1<<20)}
	z.gc.guard.greeting = 0
	const n = 20
	var burst []byte
	for i := range n {
		burst = append(burst, rawRequest(fmt.Sprint("b-", i), "x")...)
	}
	// Then a message with a frame beyond what is read without the
	// budget, which is all held.
	large := rawRequest("large", string(make([]byte, 4*freeMessageBytes)))
	if _, err := nc.Write(append(burst, large...)); err != nil {
		t.Fatal(err)
	}
	if ids := readReplies(t, ctx, nc, z, n); len(ids) != n {
		t.Fatalf("%d distinct replies to %d requests", len(ids), n)
	}
	release()
	if ids := readReplies(t, ctx, nc, z, 1); !ids["large"] {
		t.Fatalf("the large request's reply: %v", ids)
	}
}

// A Deliver call whose fan-out slots are all taken by endpoints it is
// still dialling has already sent its message on the connections that
// were up: what it queued there does not wait for a slot.
func TestDeliverSendsOnConnectionsUpWhileWaitingForAFanOutSlot(t *testing.T) {
	ctx := testCtx(t)
	got := make(chan struct{}, 1)
	up := startServer(t, func(ctx context.Context, req Envelope) (Envelope, error) {
		if string(req.Body) == "fan" {
			got <- struct{}{}
		}
		return echo(ctx, req)
	}).Addr()
	// Endpoints that accept and never answer the handshake: dialling
	// them lasts until the call's context ends.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, nc)
			mu.Unlock()
		}
	}()
	defer func() {
		_ = ln.Close()
		<-accepted
		mu.Lock()
		for _, nc := range held {
			_ = nc.Close()
		}
		mu.Unlock()
	}()
	mute := "tcp://" + ln.Addr().String()
	c := newClient(t, WithFanOut(1), WithHandshakeTimeout(time.Hour), WithRequestTimeout(time.Hour))
	if _, err := c.Request(ctx, up, env("warm", "warm")); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan []Result, 1)
	go func() { done <- c.Deliver(dctx, []string{up, mute, mute}, env("fan", "fan")) }()
	select {
	case <-got:
	case <-ctx.Done():
		t.Fatal("the message queued for the connection up was never sent")
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Deliver did not return once its context ended")
	}
}
