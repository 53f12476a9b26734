package transport

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// inline is the option of the tests below: a grace long enough that a
// handler blocking on purpose is overtaken, short enough not to slow them.
var inline = WithInlineHandlers(5 * time.Millisecond)

// Round trips one at a time are answered inline, each with its own reply.
func TestInlineRoundTrips(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo, inline)
	c := newClient(t)
	for i := range 200 {
		id := fmt.Sprint("rt-", i)
		reply, err := c.Request(ctx, srv.Addr(), env(id, id))
		if err != nil {
			t.Fatal(err)
		}
		if reply.ID != id || string(reply.Body) != id {
			t.Fatalf("reply %q %q to %q", reply.ID, reply.Body, id)
		}
	}
	if st := srv.Stats(); st.Connections != 1 || st.Requests != 200 {
		t.Fatalf("stats %+v, want 200 requests on 1 connection", st)
	}
}

// A handler running inline that blocks does not hold up the requests sent
// behind it on the same connection: after the grace another goroutine
// reads them, and they are answered while it still blocks.
func TestInlineHandlerIsOvertaken(t *testing.T) {
	ctx := testCtx(t)
	slowIn, release := make(chan struct{}), make(chan struct{})
	srv := startServer(t, func(ctx context.Context, req Envelope) (Envelope, error) {
		if req.ID == "slow" {
			close(slowIn)
			select {
			case <-release:
			case <-ctx.Done():
				return Envelope{}, ctx.Err()
			}
		}
		return echo(ctx, req)
	}, inline)
	c := newClient(t)
	slow := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, srv.Addr(), env("slow", "x"))
		slow <- err
	}()
	<-slowIn
	for i := range 3 {
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.Request(short, srv.Addr(), env(fmt.Sprint("fast-", i), "y"))
		cancel()
		if err != nil {
			t.Fatalf("request behind a blocked inline handler: %v", err)
		}
	}
	select {
	case err := <-slow:
		t.Fatalf("the slow request ended before its handler was released: %v", err)
	default:
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	// The connection goes on with its new reader.
	if _, err := c.Request(ctx, srv.Addr(), env("after", "z")); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Connections != 1 || st.Requests != 5 {
		t.Fatalf("stats %+v, want 5 requests on 1 connection", st)
	}
}

// Pipelined requests that can only all finish together (each handler
// waits for the others) are all read and run: the first, inline, is
// overtaken, and those behind it go to handler goroutines.
func TestInlineHandlersPipelined(t *testing.T) { pipelined(t, inline) }

// Close with a handler blocked inline returns at once, fails the request
// and leaves no goroutine behind, whether or not the reading was taken
// over by then.
func TestInlineServerCloseWithRequestInFlight(t *testing.T) {
	for _, grace := range []time.Duration{time.Millisecond, time.Minute} {
		t.Run(grace.String(), func(t *testing.T) {
			leaks := goleak.IgnoreCurrent()
			ctx := testCtx(t)
			entered := make(chan struct{})
			srv, err := Listen(ctx, "tcp://127.0.0.1:0", func(ctx context.Context, req Envelope) (Envelope, error) {
				close(entered)
				<-ctx.Done()
				return Envelope{}, ctx.Err()
			}, WithHandlerTimeout(time.Minute), WithInlineHandlers(grace))
			if err != nil {
				t.Fatal(err)
			}
			c := NewClient(WithRequestTimeout(time.Minute))
			done := make(chan error, 1)
			go func() {
				_, err := c.Request(ctx, srv.Addr(), env("in-flight", "x"))
				done <- err
			}()
			select {
			case <-entered:
			case <-ctx.Done():
				t.Fatal("handler never called")
			}
			time.Sleep(2 * time.Millisecond) // past the short grace: taken over
			if err := srv.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, ErrConnectionLost) {
					t.Fatalf("in-flight request: %v, want ErrConnectionLost", err)
				}
			case <-ctx.Done():
				t.Fatal("in-flight request did not end when the server closed")
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			goleak.VerifyNone(t, leaks)
		})
	}
}
