package transport

import (
	"github.com/cmbs/cmbs/internal/loopback"
	"github.com/cmbs/cmbs/internal/pyzmqtest"

	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"go.uber.org/goleak"
)

func TestRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, func(_ context.Context, req Envelope) (Envelope, error) {
		return Envelope{MimeType: "application/json", Body: append([]byte("got "), req.Body...)}, nil
	})
	if !strings.HasPrefix(srv.Addr(), "tcp://127.0.0.1:") || strings.HasSuffix(srv.Addr(), ":0") {
		t.Fatalf("Addr = %q, want the real port", srv.Addr())
	}
	c := newClient(t)
	reply, err := c.Request(ctx, srv.Addr(), env("msg-1", `{"x":1}`))
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if reply.ID != "msg-1" || reply.MimeType != "application/json" || string(reply.Body) != `got {"x":1}` || reply.Routing != nil {
		t.Fatalf("reply = %+v", reply)
	}
	// The reply can arrive before the server counts it; after Close the
	// counts are final.
	_ = srv.Close()
	if st := srv.Stats(); st.Requests != 1 || st.Replies != 1 || st.Malformed != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestConcurrentClientsNoMisroutes(t *testing.T) {
	const clients, perClient = 4, 200
	srv := startServer(t, echo)

	run := func(t *testing.T, clientFor func(i int) *Client) {
		ctx := testCtx(t)
		var misrouted, failed atomic.Int64
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := clientFor(i)
				for j := range perClient {
					id := fmt.Sprintf("c%d-%d", i, j)
					body := fmt.Sprintf(`{"client":%d,"seq":%d}`, i, j)
					reply, err := c.Request(ctx, srv.Addr(), env(id, body))
					if err != nil {
						failed.Add(1)
						t.Errorf("client %d request %d: %v", i, j, err)
						return
					}
					if reply.ID != id || string(reply.Body) != body {
						misrouted.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if misrouted.Load() != 0 || failed.Load() != 0 {
			t.Fatalf("%d misrouted, %d failed of %d", misrouted.Load(), failed.Load(), clients*perClient)
		}
	}
	t.Run("separate clients", func(t *testing.T) {
		cs := make([]*Client, clients)
		for i := range cs {
			cs[i] = newClient(t)
		}
		run(t, func(i int) *Client { return cs[i] })
	})
	t.Run("one shared client", func(t *testing.T) {
		c := newClient(t, WithMaxInFlight(2)) // fewer slots than goroutines
		run(t, func(int) *Client { return c })
	})
}

func TestDeadPeerFailsWithinDeadline(t *testing.T) {
	c := newClient(t)
	ep := loopback.FreeEndpoint(t)
	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Request(ctx, ep, env("a", "x"))
	elapsed := time.Since(start)
	if !errors.Is(err, ErrNoAnswer) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrNoAnswer and DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "peer did not answer") || !strings.Contains(err.Error(), ep) {
		t.Fatalf("error %q should say the peer at %s did not answer", err, ep)
	}
	// zmq4 alone would give up after 2.5 s or block forever; the request
	// must end with its own deadline (generous slack for -race).
	if elapsed > 4*time.Second {
		t.Fatalf("Request took %v with a 2s deadline", elapsed)
	}
	t.Logf("dead peer: %v after %v", err, elapsed)
}

// A peer that accepts TCP and never speaks ZMTP must not hold Request past
// its deadline: zmq4's Dial would wait in the handshake forever.
func TestMuteListenerFailsWithinDeadline(t *testing.T) {
	silent := loopback.SilentPeer(t)
	c := newClient(t)
	ctx, cancel := context.WithTimeout(testCtx(t), 500*time.Millisecond)
	defer cancel()
	_, err := c.Request(ctx, silent, env("a", "x"))
	if !errors.Is(err, ErrNoAnswer) || !strings.Contains(err.Error(), "no ZMTP handshake") {
		t.Fatalf("err = %v, want ErrNoAnswer saying the handshake never happened", err)
	}
}

func TestSlowHandlerTimesOutThenRecovers(t *testing.T) {
	srv := startServer(t, func(ctx context.Context, req Envelope) (Envelope, error) {
		if req.ID == "slow" {
			<-ctx.Done()
			return Envelope{}, ctx.Err()
		}
		return echo(ctx, req)
	})
	c := newClient(t)
	ctx := testCtx(t)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := c.Request(short, srv.Addr(), env("slow", "x")); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("slow request: err = %v, want ErrNoAnswer", err)
	}
	reply, err := c.Request(ctx, srv.Addr(), env("fast", "y"))
	if err != nil || string(reply.Body) != "y" {
		t.Fatalf("request after a timeout: %+v, %v", reply, err)
	}
}

// Lazy Pirate: a server restarted on the same port is used by the next
// request, whether or not a request failed while it was down.
func TestServerRestartOnSamePort(t *testing.T) {
	ctx := testCtx(t)
	ep := loopback.FreeEndpoint(t)
	listen := func() *Server {
		t.Helper()
		srv, err := Listen(ctx, ep, echo)
		if err != nil {
			t.Fatalf("Listen %s: %v", ep, err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		return srv
	}
	c := newClient(t)
	request := func(ctx context.Context, id string) error {
		reply, err := c.Request(ctx, ep, env(id, id))
		if err == nil && string(reply.Body) != id {
			err = fmt.Errorf("reply %q to %q", reply.Body, id)
		}
		return err
	}

	srv := listen()
	for i := range 3 {
		if err := request(ctx, fmt.Sprint("before-", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	// Down: a request fails within its deadline.
	down, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := request(down, "while-down"); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("request while the server is down: %v, want ErrNoAnswer", err)
	}
	srv = listen()
	if err := request(ctx, "after-restart"); err != nil {
		t.Fatalf("first request after restart: %v", err)
	}

	// Restarted between two requests, nothing in between: the cached socket
	// to the old server is noticed as dead and replaced before sending.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	listen()
	if err := request(ctx, "after-second-restart"); err != nil {
		t.Fatalf("first request after an unobserved restart: %v", err)
	}
}

func TestGarbageIsCountedAndSurvived(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo)

	// A plain zmq4 DEALER (zmq4's own tcp transport) sending junk.
	dealer := zmq4.NewDealer(ctx)
	defer dealer.Close()
	if err := dealer.Dial(srv.Addr()); err != nil {
		t.Fatalf("dial: %v", err)
	}
	junk := []struct {
		name   string
		frames [][]byte
		wantID string
	}{
		{"two frames", frames("", "text/plain"), malformedID},
		{"five junk frames", frames("j1", "j2", "j3", "j4", "j5"), "j3"},
		{"no delimiter", frames("id-1", "text/plain", "x"), "id-1"},
		{"empty id", frames("", "", "text/plain", "x"), malformedID},
		{"bad UTF-8 id", [][]byte{nil, {0xff}, []byte("text/plain"), []byte("x")}, malformedID},
	}
	for _, j := range junk {
		if err := dealer.Send(zmq4.NewMsgFrom(j.frames...)); err != nil {
			t.Fatalf("%s: send: %v", j.name, err)
		}
		msg, err := dealer.Recv()
		if err != nil {
			t.Fatalf("%s: recv: %v", j.name, err)
		}
		// The DEALER sees [delimiter, id, mimetype, body].
		got, err := Parse(msg.Frames)
		if err != nil || got.MimeType != ErrorMimeType || got.ID != j.wantID {
			t.Fatalf("%s: reply %q (%v), want an error envelope with id %q", j.name, msg.Frames, err, j.wantID)
		}
		if re := decodeRemoteError(got.Body); re.Code != CodeMalformed {
			t.Fatalf("%s: error body %s", j.name, got.Body)
		}
	}

	// Raw bytes that are not ZMTP at all.
	raw, err := net.Dial("tcp", tcpAddr(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// The server closes it: wait for EOF instead of sleeping.
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatalf("non-ZMTP connection got %d bytes back instead of being closed", n)
	}
	_ = raw.Close()

	c := newClient(t)
	if reply, err := c.Request(ctx, srv.Addr(), env("ok", "still serving")); err != nil || string(reply.Body) != "still serving" {
		t.Fatalf("request after garbage: %+v, %v", reply, err)
	}
	_ = srv.Close()
	st := srv.Stats()
	if st.Malformed != uint64(len(junk)) || st.RejectedConns != 1 || st.Requests != 1 {
		t.Fatalf("stats = %+v, want %d malformed, 1 rejected connection, 1 request", st, len(junk))
	}
}

// The silent-client stall zmq4's own accept loop has: connections that never send the
// ZMTP greeting must not lock other clients out.
func TestSilentClientsDoNotStallOthers(t *testing.T) {
	ctx := testCtx(t)
	// The server drops silent connections after the handshake timeout;
	// make it longer than the test so that only each connection having a
	// wait of its own can explain a prompt answer.
	srv := startServer(t, echo, WithHandshakeTimeout(5*time.Minute))
	for range 3 {
		silent, err := net.Dial("tcp", tcpAddr(srv.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
	}

	t.Run("go client", func(t *testing.T) {
		c := newClient(t)
		reqCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		start := time.Now()
		reply, err := c.Request(reqCtx, srv.Addr(), env("past-the-silent", "hi"))
		if err != nil || string(reply.Body) != "hi" {
			t.Fatalf("Request with 3 silent connections open: %+v, %v", reply, err)
		}
		t.Logf("answered in %v with 3 silent connections open", time.Since(start))
	})
	t.Run("libzmq client", func(t *testing.T) {
		py := pyzmqtest.Python(t)
		got := pyRequest(t, ctx, py, srv.Addr(), env("py-1", "hello"), 1)
		if want := []string{"py-1", "application/occi+json", "hello"}; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("pyzmq reply %q, want %q", got, want)
		}
	})
	if st := srv.Stats(); st.RejectedConns != 0 {
		t.Fatalf("silent connections were dropped early: %+v", st)
	}
}

// A client that sends the ZMTP signature and then stalls holds up nobody:
// its handshake waits in its own goroutine (zmq4's accept loop ran every
// handshake inline), here with a deadline longer than the test.
func TestStalledHandshakeHoldsUpNobody(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo, WithHandshakeTimeout(5*time.Minute))
	stalled, err := net.Dial("tcp", tcpAddr(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	sig := []byte{0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f}
	if _, err := stalled.Write(sig); err != nil {
		t.Fatal(err)
	}
	c := newClient(t)
	reqCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if reply, err := c.Request(reqCtx, srv.Addr(), env("after-stall", "ok")); err != nil || string(reply.Body) != "ok" {
		t.Fatalf("Request behind a stalled handshake: %+v, %v", reply, err)
	}
}

func TestInteropPyzmqREQ(t *testing.T) {
	py := pyzmqtest.Python(t)
	ctx := testCtx(t)
	srv := startServer(t, func(_ context.Context, req Envelope) (Envelope, error) {
		body := fmt.Sprintf(`{"member_description":{"id":%q},"sockets_l1":[%q]}`, req.ID, string(req.Body))
		return Envelope{MimeType: "application/json", Body: []byte(body)}, nil
	})
	id := "6f1c2a3e-msg"
	body := `{"kind":"http://houssem.org/cmbs#message","attributes":{"cmbs":{"message":{"cmbs_layer":"l1"}}}}`
	got := pyRequest(t, ctx, py, srv.Addr(), Envelope{ID: id, MimeType: "application/occi+json", Body: []byte(body)}, 3)
	wantBody := fmt.Sprintf(`{"member_description":{"id":%q},"sockets_l1":[%q]}`, id, body)
	if len(got) != 3 || got[0] != id || got[1] != "application/json" || got[2] != wantBody {
		t.Fatalf("pyzmq REQ got %q", got)
	}
	_ = srv.Close() // final counts
	if st := srv.Stats(); st.Requests != 3 || st.Replies != 3 {
		t.Fatalf("stats = %+v, want 3 requests and replies", st)
	}
}

func TestHandlerFailuresBecomeErrorEnvelopes(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, func(ctx context.Context, req Envelope) (Envelope, error) {
		switch req.ID {
		case "error":
			return Envelope{}, errors.New("boom")
		case "remote":
			return Envelope{}, fmt.Errorf("lookup: %w", &RemoteError{Code: "not_found", Message: "no such member"})
		case "panic":
			panic("handler bug")
		case "invalid":
			return Envelope{MimeType: "bad\x00mime"}, nil
		case "slow":
			<-ctx.Done()
			return Envelope{}, ctx.Err()
		}
		return echo(ctx, req)
	}, WithHandlerTimeout(100*time.Millisecond))
	c := newClient(t)
	for _, tc := range []struct{ id, code, msg string }{
		{"error", CodeHandler, "boom"},
		{"remote", "not_found", "no such member"},
		{"panic", CodeInternal, "handler panicked"},
		{"invalid", CodeInternal, "invalid reply"},
		{"slow", CodeTimeout, "did not finish"},
	} {
		reply, err := c.Request(ctx, srv.Addr(), env(tc.id, "x"))
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != tc.code || !strings.Contains(re.Message, tc.msg) {
			t.Fatalf("%s: err = %v, want RemoteError %s containing %q", tc.id, err, tc.code, tc.msg)
		}
		if reply.MimeType != ErrorMimeType || reply.ID != tc.id {
			t.Fatalf("%s: reply = %+v, want the error envelope", tc.id, reply)
		}
	}
	if reply, err := c.Request(ctx, srv.Addr(), env("fine", "y")); err != nil || string(reply.Body) != "y" {
		t.Fatalf("after handler failures: %+v, %v", reply, err)
	}
	if st := srv.Stats(); st.HandlerErrors != 5 || st.Requests != 6 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestOverloadedServerAnswersAtOnce(t *testing.T) {
	ctx := testCtx(t)
	entered, release := make(chan struct{}), make(chan struct{})
	srv := startServer(t, func(ctx context.Context, req Envelope) (Envelope, error) {
		if req.ID == "block" {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return echo(ctx, req)
	}, WithMaxConcurrent(1))
	c := newClient(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, srv.Addr(), env("block", "x"))
		done <- err
	}()
	<-entered
	_, err := c.Request(ctx, srv.Addr(), env("second", "y"))
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != CodeOverloaded {
		t.Fatalf("second request: %v, want %s", err, CodeOverloaded)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("blocked request: %v", err)
	}
	if st := srv.Stats(); st.Overloaded != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, func(_ context.Context, req Envelope) (Envelope, error) {
		if req.ID == "big-reply" {
			return req.Reply("text/plain", bytes.Repeat([]byte("r"), 8<<10)), nil
		}
		return echo(ctx, req)
	}, WithMaxMessageSize(4<<10))

	c := newClient(t, WithRequestTimeout(2*time.Second))
	_, err := c.Request(ctx, srv.Addr(), env("big", strings.Repeat("b", 8<<10)))
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("oversize request: %v, want ErrConnectionLost (the server hangs up)", err)
	}
	if reply, err := c.Request(ctx, srv.Addr(), env("small", "s")); err != nil || string(reply.Body) != "s" {
		t.Fatalf("small request after an oversize one: %+v, %v", reply, err)
	}

	small := newClient(t, WithMaxMessageSize(4<<10))
	if _, err := small.Request(ctx, srv.Addr(), env("big-reply", "x")); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("oversize reply: %v, want ErrConnectionLost", err)
	}
}

// A plain ROUTER answering with a foreign correlation frame first: the
// client must skip it and return the reply to its own request.
func TestStaleRepliesAreIgnored(t *testing.T) {
	ctx := testCtx(t)
	router := zmq4.NewRouter(ctx)
	defer router.Close()
	if err := router.Listen("tcp://127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		msg, err := router.Recv()
		if err != nil {
			served <- err
			return
		}
		// [identity, token, "", id, mimetype, body]
		f := msg.Frames
		if len(f) != 6 {
			served <- fmt.Errorf("router got %q", f)
			return
		}
		// A token of the right size that is not this request's (an
		// abandoned request's, say), and one of another size.
		other := binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(f[1])^1<<63)
		stale := zmq4.NewMsgFrom(f[0], other, nil, f[3], f[4], []byte("stale"))
		if err := router.Send(zmq4.NewMsgFrom(f[0], []byte("old-token"), nil, f[3], f[4], []byte("stale"))); err != nil {
			served <- err
			return
		}
		fresh := zmq4.NewMsgFrom(f[0], f[1], nil, f[3], f[4], []byte("fresh"))
		if err := router.Send(stale); err != nil {
			served <- err
			return
		}
		served <- router.Send(fresh)
	}()
	c := newClient(t)
	reply, err := c.Request(ctx, "tcp://"+router.Addr().String(), env("q", "x"))
	if err != nil || string(reply.Body) != "fresh" {
		t.Fatalf("reply = %+v, %v; want the fresh one", reply, err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

func TestListenErrors(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo)
	start := time.Now()
	_, err := Listen(ctx, srv.Addr(), echo)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second Listen on %s: %v, want EADDRINUSE", srv.Addr(), err)
	}
	t.Logf("address in use reported in %v: %v", time.Since(start), err)

	for _, ep := range []string{"ipc:///tmp/x", "127.0.0.1:5010", "tcp://nohostport"} {
		if _, err := Listen(ctx, ep, echo); !errors.Is(err, ErrBadEndpoint) {
			t.Errorf("Listen(%q): %v, want ErrBadEndpoint", ep, err)
		}
	}
	if _, err := newClient(t).Request(ctx, "udp://127.0.0.1:1", env("a", "b")); !errors.Is(err, ErrBadEndpoint) {
		t.Errorf("Request to udp: %v, want ErrBadEndpoint", err)
	}
	if _, err := newClient(t).Request(ctx, srv.Addr(), Envelope{MimeType: "m"}); !errors.Is(err, ErrMalformedEnvelope) {
		t.Errorf("Request without id: %v, want ErrMalformedEnvelope", err)
	}
}

func TestServerCloseWithRequestInFlight(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	ctx := testCtx(t)
	entered := make(chan struct{})
	var once sync.Once
	srv, err := Listen(ctx, "tcp://127.0.0.1:0", func(ctx context.Context, req Envelope) (Envelope, error) {
		once.Do(func() { close(entered) })
		<-ctx.Done()
		return Envelope{}, ctx.Err()
	}, WithHandlerTimeout(time.Minute))
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

	start := time.Now()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with a handler blocked for a minute", d)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
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
}

func TestClientCloseWithRequestInFlight(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	ctx := testCtx(t)
	entered := make(chan struct{})
	srv, err := Listen(ctx, "tcp://127.0.0.1:0", func(ctx context.Context, req Envelope) (Envelope, error) {
		close(entered)
		<-ctx.Done()
		return Envelope{}, ctx.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(WithRequestTimeout(time.Minute))
	done := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, srv.Addr(), env("in-flight", "x"))
		done <- err
	}()
	<-entered
	_ = c.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("in-flight request: %v, want ErrClosed", err)
	}
	if _, err := c.Request(ctx, srv.Addr(), env("late", "x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("request after Close: %v, want ErrClosed", err)
	}
	_ = c.Close()
	_ = srv.Close()
	goleak.VerifyNone(t, leaks)
}

func TestDeliver(t *testing.T) {
	ctx := testCtx(t)
	var eps []string
	counts := make([]atomic.Int64, 3)
	for i := range counts {
		srv := startServer(t, func(_ context.Context, req Envelope) (Envelope, error) {
			counts[i].Add(1)
			return req.Reply("application/json", fmt.Appendf(nil, `{"ack":%d}`, i)), nil
		})
		eps = append(eps, srv.Addr())
	}
	dead := loopback.FreeEndpoint(t)
	eps = append(eps[:1], append([]string{dead}, eps[1:]...)...)

	c := newClient(t, WithRequestTimeout(500*time.Millisecond), WithFanOut(2))
	start := time.Now()
	results := c.Deliver(ctx, eps, env("broadcast-1", `{"l2":true}`))
	if len(results) != len(eps) {
		t.Fatalf("%d results for %d endpoints", len(results), len(eps))
	}
	acks := 0
	for i, r := range results {
		if r.Endpoint != eps[i] {
			t.Fatalf("result %d is for %s, want %s", i, r.Endpoint, eps[i])
		}
		if r.Endpoint == dead {
			if !errors.Is(r.Err, ErrNoAnswer) {
				t.Fatalf("dead endpoint: %v, want ErrNoAnswer", r.Err)
			}
			continue
		}
		if r.Err != nil || r.Reply.ID != "broadcast-1" || !strings.HasPrefix(string(r.Reply.Body), `{"ack":`) {
			t.Fatalf("endpoint %s: %+v", r.Endpoint, r)
		}
		acks++
	}
	if acks != 3 {
		t.Fatalf("%d acks, want 3", acks)
	}
	for i := range counts {
		if n := counts[i].Load(); n != 1 {
			t.Fatalf("server %d got %d deliveries, want 1", i, n)
		}
	}
	t.Logf("delivered to 3 of 4 (one dead) in %v", time.Since(start))

	// Again on the connections now up (sent from the calling goroutine),
	// with one server refusing: its error envelope is a *RemoteError,
	// named as Request names it.
	refusing := startServer(t, func(context.Context, Envelope) (Envelope, error) {
		return Envelope{}, &RemoteError{Code: "nope", Message: "refused"}
	})
	if r := c.Deliver(ctx, []string{refusing.Addr()}, env("warm-up", "x")); r[0].Err == nil {
		t.Fatal("the refusing server acknowledged")
	}
	live := []string{eps[0], eps[2], refusing.Addr()}
	results = c.Deliver(ctx, live, env("broadcast-2", `{"l2":true}`))
	for i, r := range results[:2] {
		if r.Err != nil || r.Reply.ID != "broadcast-2" {
			t.Fatalf("second delivery to %s: %+v", live[i], r)
		}
	}
	var re *RemoteError
	if r := results[2]; !errors.As(r.Err, &re) || re.Code != "nope" || r.Reply.MimeType != ErrorMimeType ||
		!strings.Contains(r.Err.Error(), `transport: request "broadcast-2" to `+refusing.Addr()) {
		t.Fatalf("refusing server: %+v (%v)", r, r.Err)
	}
	for _, n := range []int{0, 1} { // eps[0] and eps[2]
		if got := counts[n].Load(); got != 2 {
			t.Fatalf("server %d got %d deliveries, want 2", n, got)
		}
	}
}

// Requests to one endpoint are pipelined on one connection: 40 handlers
// that each wait until all 40 are running can only finish if all 40
// requests are in flight at once, and the server sees one connection.
func TestRequestsArePipelinedOnOneConnection(t *testing.T) { pipelined(t) }

// pipelined sends 40 requests at once on one connection, whose handlers
// can only all finish together (each waits for the others), and checks
// that all are read, run and answered.
func pipelined(t *testing.T, opts ...Option) {
	const n = 40
	ctx := testCtx(t)
	var running atomic.Int64
	all := make(chan struct{})
	srv := startServer(t, func(ctx context.Context, req Envelope) (Envelope, error) {
		if running.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
		case <-ctx.Done():
			return Envelope{}, ctx.Err()
		}
		return echo(ctx, req)
	}, opts...)
	c := newClient(t, WithRequestTimeout(10*time.Second))
	errs := make(chan error, n)
	for i := range n {
		go func() {
			id := fmt.Sprint("p-", i)
			reply, err := c.Request(ctx, srv.Addr(), env(id, id))
			if err == nil && string(reply.Body) != id {
				err = fmt.Errorf("reply %q to %q", reply.Body, id)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// (Replies is counted after the write, which the client can beat.)
	if st := srv.Stats(); st.Connections != 1 || st.Requests != n {
		t.Fatalf("stats %+v, want %d requests on 1 connection", st, n)
	}
}

// A request that times out on a connection whose peer keeps answering
// others leaves the connection in place for them.
func TestSlowRequestDoesNotCostTheConnection(t *testing.T) {
	ctx := testCtx(t)
	slowIn := make(chan struct{})
	srv := startServer(t, func(ctx context.Context, req Envelope) (Envelope, error) {
		if req.ID == "slow" {
			close(slowIn)
			<-ctx.Done()
			return Envelope{}, ctx.Err()
		}
		return echo(ctx, req)
	})
	c := newClient(t)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	slow := make(chan error, 1)
	go func() {
		_, err := c.Request(short, srv.Addr(), env("slow", "x"))
		slow <- err
	}()
	<-slowIn
	// Answered while the slow one waits: the connection is heard from.
	for i := range 3 {
		if _, err := c.Request(ctx, srv.Addr(), env(fmt.Sprint("fast-", i), "y")); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-slow; !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("slow request: %v, want ErrNoAnswer", err)
	}
	if _, err := c.Request(ctx, srv.Addr(), env("after", "z")); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Connections != 1 {
		t.Fatalf("%d connections, want the first one kept", st.Connections)
	}
}

// rawDealer performs the ZMTP handshake with zmq4 on a bare TCP
// connection, for tests that speak to the server below the envelope.
func rawDealer(t *testing.T, srv *Server) *zmq4.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", tcpAddr(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	zc, err := zmq4.Open(nc, nullSecurity(), zmq4.Dealer, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return zc
}

// libzmq sends PING when heartbeats are on; the server answers PONG with
// the ping's context and keeps serving.
func TestPingIsAnsweredWithPong(t *testing.T) {
	srv := startServer(t, echo)
	zc := rawDealer(t, srv)
	if err := zc.SendCmd(zmq4.CmdPing, []byte{0, 10, 'c', 't', 'x'}); err != nil {
		t.Fatal(err)
	}
	cmd, err := zc.RecvCmd()
	if err != nil || cmd.Name != zmq4.CmdPong || string(cmd.Body) != "ctx" {
		t.Fatalf("got %+v, %v; want PONG with context ctx", cmd, err)
	}
	if err := zc.SendMsg(zmq4.NewMsgFrom(nil, []byte("id"), []byte("m"), []byte("b"))); err != nil {
		t.Fatal(err)
	}
	msg, err := zc.RecvMsg()
	if err != nil || len(msg.Frames) != 4 || string(msg.Frames[3]) != "b" {
		t.Fatalf("reply %q, %v", msg.Frames, err)
	}
}

// A message of more frames than any envelope has ends its connection
// (it could otherwise grow without bound inside the size limit); the
// server keeps serving others.
func TestEndlessFramesEndTheConnection(t *testing.T) {
	srv := startServer(t, echo)
	zc := rawDealer(t, srv)
	frames := make([][]byte, maxFramesPerMessage+1)
	if err := zc.SendMsg(zmq4.NewMsgFrom(frames...)); err != nil {
		t.Fatal(err)
	}
	if msg, err := zc.RecvMsg(); err == nil {
		t.Fatalf("got %q, want the connection closed", msg.Frames)
	}
	c := newClient(t)
	if _, err := c.Request(testCtx(t), srv.Addr(), env("ok", "x")); err != nil {
		t.Fatal(err)
	}
}

func TestIdleConnectionsAreClosed(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo)
	c := newClient(t, WithIdleTimeout(50*time.Millisecond))
	if _, err := c.Request(ctx, srv.Addr(), env("a", "1")); err != nil {
		t.Fatalf("Request: %v", err)
	}
	openConns := func() (server, peers int) {
		srv.mu.Lock()
		server = len(srv.conns)
		srv.mu.Unlock()
		c.mu.Lock()
		peers = len(c.peers)
		c.mu.Unlock()
		return server, peers
	}
	for {
		server, peers := openConns()
		if server == 0 && peers == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the idle connection was never closed: server has %d open, client knows %d endpoints", server, peers)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, err := c.Request(ctx, srv.Addr(), env("b", "2")); err != nil {
		t.Fatalf("Request after the idle close: %v", err)
	}
	if n := srv.Stats().Connections; n != 2 {
		t.Fatalf("server saw %d connections, want 2 (the second request dials afresh)", n)
	}
}

func TestConnectionInUseIsNotReaped(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo)
	c := newClient(t, WithIdleTimeout(300*time.Millisecond))
	for i := range 40 {
		if _, err := c.Request(ctx, srv.Addr(), env(fmt.Sprint(i), "x")); err != nil {
			t.Fatalf("Request %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond) // 800ms in all, never 300ms idle
	}
	if n := srv.Stats().Connections; n != 1 {
		t.Fatalf("server saw %d connections, want 1: a connection in use was reaped", n)
	}
}

// The reaper closes connections while requests and deliveries start on
// them; none of those may fail, since a reaped connection had nothing in
// flight and the request can dial afresh.
func TestReapingRacesNoRequest(t *testing.T) {
	ctx := testCtx(t)
	var srvs []*Server
	var eps []string
	for range 3 {
		srvs = append(srvs, startServer(t, echo))
		eps = append(eps, srvs[len(srvs)-1].Addr())
	}
	c := newClient(t, WithIdleTimeout(time.Microsecond))
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for g := range 6 {
		wg.Go(func() {
			for i := range 150 {
				time.Sleep(time.Duration(i%3) * 500 * time.Microsecond)
				if g%2 == 0 {
					if _, err := c.Request(ctx, eps[i%len(eps)], env("r", "x")); err != nil {
						errs <- err
						return
					}
					continue
				}
				for _, r := range c.Deliver(ctx, eps, env("d", "x")) {
					if r.Err != nil {
						errs <- r.Err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var dialled uint64
	for _, srv := range srvs {
		dialled += srv.Stats().Connections
	}
	if dialled <= uint64(len(srvs)) {
		t.Fatalf("%d connections for %d servers: the reaper never closed one, so the race was not run", dialled, len(srvs))
	}
	t.Logf("%d connections dialled", dialled)
}

// Close interrupts a request still in its ZMTP handshake with a peer that
// never answers, instead of waiting for the handshake timeout.
func TestClientCloseDuringHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	c := NewClient(WithRequestTimeout(time.Minute), WithHandshakeTimeout(time.Minute))
	done := make(chan error, 1)
	go func() {
		_, err := c.Request(context.Background(), "tcp://"+ln.Addr().String(), env("stuck", "x"))
		done <- err
	}()
	var peer net.Conn
	select {
	case peer = <-accepted:
		defer peer.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("the client never connected")
	}
	closed := make(chan struct{})
	go func() {
		_ = c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for the handshake (timeout 1 minute) instead of ending it")
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("request in its handshake: %v, want ErrClosed", err)
	}
}
