package transport

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
)

// The two round-trip benchmarks move the same 3 frames (id, mimetype,
// 64-byte body) over TCP loopback one request at a time, so their ratio is
// the cost of this package over plain zmq4 (goal: at most 1.5×).

var benchBody = bytes.Repeat([]byte("b"), 64)

func BenchmarkRoundTrip(b *testing.B) { benchRoundTrip(b) }

// BenchmarkRoundTripInline: the same with the handler run on the
// connection's reader (WithInlineHandlers).
func BenchmarkRoundTripInline(b *testing.B) { benchRoundTrip(b, WithInlineHandlers(time.Millisecond)) }

func benchRoundTrip(b *testing.B, opts ...Option) {
	ctx := testCtx(b)
	srv := startServer(b, echo, opts...)
	c := newClient(b)
	req := Envelope{ID: "bench-id", MimeType: "application/occi+json", Body: benchBody}
	if _, err := c.Request(ctx, srv.Addr(), req); err != nil { // connect outside the loop
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Request(ctx, srv.Addr(), req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawZMQ4ReqRep(b *testing.B) {
	ctx := testCtx(b)
	rep := zmq4.NewRep(ctx)
	defer rep.Close()
	if err := rep.Listen("tcp://127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			msg, err := rep.Recv()
			if err != nil {
				return
			}
			if err := rep.Send(msg); err != nil {
				return
			}
		}
	}()
	defer wg.Wait()
	defer rep.Close() // before wg.Wait: ends the echo loop

	req := zmq4.NewReq(ctx)
	defer req.Close()
	if err := req.Dial("tcp://" + rep.Addr().String()); err != nil {
		b.Fatal(err)
	}
	msg := zmq4.NewMsgFrom([]byte("bench-id"), []byte("application/occi+json"), benchBody)
	roundTrip := func() {
		if err := req.SendMulti(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := req.Recv(); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		roundTrip()
	}
}

func BenchmarkDeliver10(b *testing.B) {
	ctx := testCtx(b)
	eps := make([]string, 10)
	for i := range eps {
		eps[i] = startServer(b, echo).Addr()
	}
	c := newClient(b)
	e := Envelope{ID: "bench-broadcast", MimeType: "application/occi+json", Body: benchBody}
	check := func() {
		for _, r := range c.Deliver(ctx, eps, e) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	check()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		check()
	}
}
