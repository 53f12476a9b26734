package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// gate is a handler that holds every request until released, counting
// how many it holds at once.
type gate struct {
	mu      sync.Mutex
	held    []chan struct{}
	running int
	most    int
	arrived chan struct{} // one token per request that arrived
}

func newGate(capacity int) *gate { return &gate{arrived: make(chan struct{}, capacity)} }

func (g *gate) handle(ctx context.Context, req Envelope) (Envelope, error) {
	release := make(chan struct{})
	g.mu.Lock()
	g.held = append(g.held, release)
	g.running++
	g.most = max(g.most, g.running)
	g.mu.Unlock()
	g.arrived <- struct{}{}
	defer func() {
		g.mu.Lock()
		g.running--
		g.mu.Unlock()
	}()
	select {
	case <-release:
		return req.Reply(req.MimeType, req.Body), nil
	case <-ctx.Done():
		return Envelope{}, ctx.Err()
	}
}

// releaseNewestFirst answers the held requests in the reverse order of
// their arrival, so replies come back out of order.
func (g *gate) releaseNewestFirst() int {
	g.mu.Lock()
	held := g.held
	g.held = nil
	g.mu.Unlock()
	for i := len(held) - 1; i >= 0; i-- {
		close(held[i])
	}
	return len(held)
}

func (g *gate) maxRunning() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.most
}

// The window: at most WithMaxInFlight requests to one peer are outstanding
// on its connection, the others wait for a slot (not refused, not lost),
// and each reply, however out of order, reaches the request it answers.
func TestWindowBoundsRequestsInFlightPerPeer(t *testing.T) {
	const window, n = 8, 24
	ctx := testCtx(t)
	g := newGate(n)
	srv := startServer(t, g.handle, WithHandlerTimeout(time.Minute))
	c := newClient(t, WithMaxInFlight(window), WithRequestTimeout(time.Minute))

	errs := make(chan error, n)
	for i := range n {
		go func() {
			id := fmt.Sprint("w-", i)
			reply, err := c.Request(ctx, srv.Addr(), env(id, id+"-body"))
			if err == nil && (reply.ID != id || string(reply.Body) != id+"-body") {
				err = fmt.Errorf("request %s got the reply %s %q", id, reply.ID, reply.Body)
			}
			errs <- err
		}()
	}
	// Release the window, newest first, until every request has arrived.
	for answered := 0; answered < n; {
		for range window {
			select {
			case <-g.arrived:
			case <-ctx.Done():
				t.Fatalf("%d requests answered, the window did not refill", answered)
			}
		}
		answered += g.releaseNewestFirst()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if most := g.maxRunning(); most != window {
		t.Fatalf("the peer held %d requests at once, want the window, %d", most, window)
	}
	if st := srv.Stats(); st.Connections != 1 {
		t.Fatalf("%d connections, want the window on one", st.Connections)
	}
}

// A peer that dies with a full window: every delivery it acknowledged is
// reported delivered, every one it had not is reported failed (none lost
// silently, none reported twice), deliveries to the other peer are
// unaffected, and nothing is left running.
func TestPeerDyingMidWindowFailsItsUnacked(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	const window, n, answered = 8, 20, 5
	ctx := testCtx(t)

	healthy, err := Listen(ctx, "tcp://127.0.0.1:0", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer healthy.Close()
	// The dying peer answers its first deliveries, then holds the rest.
	var acked atomic.Int64
	g := newGate(n)
	dying, err := Listen(ctx, "tcp://127.0.0.1:0", func(ctx context.Context, req Envelope) (Envelope, error) {
		if acked.Add(1) <= answered {
			return echo(ctx, req)
		}
		return g.handle(ctx, req)
	}, WithHandlerTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(WithMaxInFlight(window), WithRequestTimeout(3*time.Second))
	defer c.Close()

	eps := []string{healthy.Addr(), dying.Addr()}
	results := make([][]Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = c.Deliver(ctx, eps, env(fmt.Sprint("d-", i), "x")) })
	}
	// The dying peer holds a full window; the rest wait for a slot.
	for range window {
		select {
		case <-g.arrived:
		case <-ctx.Done():
			t.Fatal("the dying peer never held a full window")
		}
	}
	if err := dying.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	delivered := 0
	for i, rs := range results {
		if r := rs[0]; r.Err != nil || r.Reply.ID != fmt.Sprint("d-", i) {
			t.Fatalf("delivery %d to the healthy peer: %+v", i, r)
		}
		r := rs[1]
		switch {
		case r.Err == nil:
			if r.Reply.ID != fmt.Sprint("d-", i) {
				t.Fatalf("delivery %d acknowledged with %s's reply", i, r.Reply.ID)
			}
			delivered++
		case !errors.Is(r.Err, ErrConnectionLost) && !errors.Is(r.Err, ErrNoAnswer):
			t.Fatalf("delivery %d to the dying peer failed with %v, want a lost connection or no answer", i, r.Err)
		}
	}
	if delivered != answered {
		t.Fatalf("%d deliveries to the dying peer reported delivered, it acknowledged %d", delivered, answered)
	}
	if most := g.maxRunning(); most > window {
		t.Fatalf("the dying peer held %d at once, more than the window %d", most, window)
	}
	_ = c.Close()
	_ = healthy.Close()
	goleak.VerifyNone(t, leaks)
}
