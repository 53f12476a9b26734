package transport

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// waitDone waits for ctx to end, failing the test after a bound.
func waitDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not cancelled within 10s", what)
	}
}

// The shared timer cancels every call whose deadline passed, whichever
// ended before it, and is re-armed when calls start after the list
// emptied; a finished call is cancelled at once; after close every call
// starts cancelled.
func TestDeadlinesExpireInOrder(t *testing.T) {
	d := &deadlines{timeout: 50 * time.Millisecond}
	defer d.close()
	for round := range 2 { // the second round re-arms a timer that fired
		c1, c2, c3 := d.start(context.Background()), d.start(context.Background()), d.start(context.Background())
		if dl, ok := c1.Deadline(); !ok || dl.After(c2.deadline) || c2.deadline.After(c3.deadline) {
			t.Fatalf("round %d: deadlines out of order: %v %v %v", round, dl, c2.deadline, c3.deadline)
		}
		derived, cancel := context.WithCancel(c3)
		defer cancel()
		fired := make(chan struct{})
		context.AfterFunc(c1, func() { close(fired) })

		d.finish(c2)
		if err := c2.Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: a finished call's Err = %v, want Canceled", round, err)
		}
		if c1.Err() != nil || c3.Err() != nil {
			t.Fatalf("round %d: finishing one call ended others: %v %v", round, c1.Err(), c3.Err())
		}
		for i, c := range []context.Context{c1, c3, derived} {
			waitDone(t, c, fmt.Sprintf("round %d context %d", round, i))
			if err := c.Err(); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("round %d context %d: Err = %v, want DeadlineExceeded", round, i, err)
			}
			if err := context.Cause(c); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("round %d context %d: Cause = %v, want DeadlineExceeded", round, i, err)
			}
		}
		select {
		case <-fired:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: AfterFunc did not run", round)
		}
		d.finish(c1) // after expiry: a no-op
		d.finish(c3)
		if d.head != nil || d.tail != nil {
			t.Fatalf("round %d: calls left listed", round)
		}
	}
	long := &deadlines{timeout: time.Hour}
	c := long.start(context.Background())
	long.close()
	if err := c.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call in progress at close: Err = %v, want Canceled", err)
	}
	if err := long.start(context.Background()).Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call started after close: Err = %v, want Canceled", err)
	}
}

// A handler that overruns its deadline gets its context cancelled and an
// error reply sent for it, whether it runs on a handler goroutine or
// inline, among quick requests pipelined on the same connection; the
// quick ones are answered, each to its own request.
func TestHandlerDeadlineAmongPipelinedRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"goroutines", nil},
		{"inline", []Option{WithInlineHandlers(time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			h := func(ctx context.Context, req Envelope) (Envelope, error) {
				if string(req.Body) != "slow" {
					return req.Reply("text/plain", req.Body), nil
				}
				// Derived contexts are cancelled with it.
				derived, cancel := context.WithCancel(ctx)
				defer cancel()
				select {
				case <-derived.Done():
				case <-time.After(20 * time.Second):
					return Envelope{}, errors.New("the deadline never came")
				}
				if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
					return Envelope{}, fmt.Errorf("ended with %v (cause %v), want the deadline", ctx.Err(), context.Cause(ctx))
				}
				return Envelope{}, ctx.Err()
			}
			srv := startServer(t, h, append(tc.opts, WithHandlerTimeout(200*time.Millisecond))...)
			// Fewer in flight than the server's slots, which a reply
			// can overtake.
			c := newClient(t, WithMaxInFlight(32))
			inParallel(t, 200, func(i int) error {
				body := fmt.Sprintf("quick-%d", i)
				if i%50 == 0 {
					body = "slow"
				}
				reply, err := c.Request(ctx, srv.Addr(), env(fmt.Sprint(i), body))
				var re *RemoteError
				switch {
				case body == "slow" && !(errors.As(err, &re) && re.Code == CodeTimeout):
					return fmt.Errorf("slow request %d: %v, want a %s error reply", i, err, CodeTimeout)
				case body != "slow" && err != nil:
					return fmt.Errorf("quick request %d: %v", i, err)
				case body != "slow" && (string(reply.Body) != body || reply.ID != fmt.Sprint(i)):
					return fmt.Errorf("request %d got %q (id %q)", i, reply.Body, reply.ID)
				}
				return nil
			})
		})
	}
}

// Contexts derived from a handler's and cancelled before it ends leave
// nothing registered with it: a long handler deriving one per store call
// does not grow its context.
func TestHandlerContextForgetsStoppedAfterFuncs(t *testing.T) {
	d := &deadlines{timeout: time.Hour}
	defer d.close()
	c := d.start(context.Background())
	defer d.finish(c)
	for range 1000 {
		derived, cancel := context.WithTimeout(c, time.Hour)
		cancel()
		<-derived.Done()
	}
	stop := context.AfterFunc(c, func() { t.Error("a stopped AfterFunc ran") })
	if !stop() {
		t.Fatal("stopping an AfterFunc of a live context reported false")
	}
	c.mu.Lock()
	n := len(c.afters)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d AfterFuncs still registered after every derived context was cancelled", n)
	}
}
