package transport

import (
	"bytes"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs/transport/curve"
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

// The Deliver benchmarks mirror an L3.2 fan-out in cmbsbench: one
// client, 10 servers, deliverInFlight Deliver calls at once (the
// bench's concurrent send actions), so that each connection carries
// that many requests at a time, and a handler that only acknowledges.
// Besides ns/op (one Deliver to all 10) they report the process CPU per
// delivery, client and servers together, which a loaded machine skews
// less than the rate.
const deliverInFlight = 8

func BenchmarkDeliver10(b *testing.B) { benchDeliver10(b, nil, nil) }

// BenchmarkDeliver10Inline: the same with the servers' handlers run by
// their connections' readers (WithInlineHandlers), as the broker's layer
// sockets do.
func BenchmarkDeliver10Inline(b *testing.B) {
	benchDeliver10(b, []Option{WithInlineHandlers(200 * time.Microsecond)}, nil)
}

// BenchmarkDeliver10Curve: the same over CURVE.
func BenchmarkDeliver10Curve(b *testing.B) {
	srvOpt, cliOpt := benchCurve(b)
	benchDeliver10(b, srvOpt, cliOpt)
}

// BenchmarkDeliver10CurveInline: CURVE, handlers inline.
func BenchmarkDeliver10CurveInline(b *testing.B) {
	srvOpt, cliOpt := benchCurve(b)
	benchDeliver10(b, append(srvOpt, WithInlineHandlers(200*time.Microsecond)), cliOpt)
}

func benchDeliver10(b *testing.B, srvOpts, cliOpts []Option) {
	ctx := testCtx(b)
	eps := make([]string, 10)
	for i := range eps {
		eps[i] = startServer(b, echo, srvOpts...).Addr()
	}
	c := newClient(b, cliOpts...)
	e := Envelope{ID: "bench-broadcast", MimeType: "application/occi+json", Body: benchBody}
	check := func() error {
		for _, r := range c.Deliver(ctx, eps, e) {
			if r.Err != nil {
				return r.Err
			}
		}
		return nil
	}
	if err := check(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range deliverInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := check(); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N*len(eps)), "cpu-ns/delivery")
}

// processCPU is the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchCurve returns the options of a CURVE server and of a client that
// knows its key.
func benchCurve(b *testing.B) (srv, cli []Option) {
	server, client := curveKeys(b), curveKeys(b)
	cfg := &curve.ServerConfig{Keys: server, Authorize: onlyKeys(client.Public)}
	return []Option{WithCurveServer(cfg)}, []Option{WithCurveClient(client, keyFor(server.Public))}
}
