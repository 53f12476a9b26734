package transport

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs/transport/curve"
)

// curvePeer dials srv and runs the greeting and the CURVE handshake as a
// DEALER with keys, returning the bare connection and the session, for
// tests that write MESSAGE frames by hand.
func curvePeer(t *testing.T, srv *Server, keys curve.KeyPair, serverKey curve.Key) (net.Conn, *curve.Session) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", tcpAddr(srv.Addr()), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(curveGreeting(false)); err != nil {
		t.Fatal(err)
	}
	greeting := make([]byte, zmtpGreetingSize)
	if _, err := nc.Read(greeting); err != nil {
		t.Fatal(err)
	}
	md := curve.AppendMetadata(nil, [2]string{"Socket-Type", "DEALER"})
	sess, err := curve.Client(nc, nc, keys, serverKey, md)
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, sess
}

// The read budget counts a CURVE frame's bytes as they arrive, like a NULL
// one's; a CURVE message trickling in is cut off at the message timeout and
// its budget returned.
func TestCurveMessageUnderReadBudgetAndTimeout(t *testing.T) {
	ctx := testCtx(t)
	server, client := curveKeys(t), curveKeys(t)
	const timeout = 300 * time.Millisecond
	srv := startServer(t, echo, WithCurveServer(&curve.ServerConfig{Keys: server}), WithMessageTimeout(timeout))
	c, sess := curvePeer(t, srv, client, server.Public)

	// One MESSAGE of 1 MiB of plaintext, of which only the first 200 KiB are sent.
	frame := sess.AppendMessage(nil, 0, bytes.Repeat([]byte("x"), 1<<20))
	if _, err := c.Write(frame[:200<<10]); err != nil {
		t.Fatal(err)
	}
	budget := srv.opts.readBudget
	waitFor(t, ctx, "the CURVE frame to take budget", func() bool { return budget.InUse() > 0 })
	if n := budget.InUse(); n > 512<<10 {
		t.Fatalf("200 KiB sent of a 1 MiB CURVE frame hold %d bytes of the budget", n)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for off := 200 << 10; off < len(frame); off++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.Write(frame[off : off+1]); err != nil {
				return
			}
		}
	}()
	waitClosed(t, ctx, c)
	close(stop)
	wg.Wait()
	if st := srv.Stats(); st.SlowClosed != 1 {
		t.Fatalf("stats = %+v, want the trickling CURVE peer closed as slow", st)
	}
	waitFor(t, ctx, "the budget to be returned", func() bool { return budget.InUse() == 0 })

	// A whole large message over CURVE, read from the budget, round trips.
	cl := newClient(t, WithCurveClient(client, keyFor(server.Public)))
	body := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16)
	reply, err := cl.Request(ctx, srv.Addr(), Envelope{ID: "big", MimeType: "application/octet-stream", Body: body})
	if err != nil || !bytes.Equal(reply.Body, body) {
		t.Fatalf("3 MiB CURVE round trip: %d bytes back, %v", len(reply.Body), err)
	}
	if s, clb := budget.InUse(), cl.opts.readBudget.InUse(); s != 0 || clb != 0 {
		t.Fatalf("read budgets still hold %d (server) and %d (client) bytes", s, clb)
	}
}

// On the wire every CURVE frame is a message of its own, under the limit;
// the decrypted frames of one message together are checked against it.
func TestCurveDecryptedMessageSizeIsChecked(t *testing.T) {
	ctx := testCtx(t)
	server, client := curveKeys(t), curveKeys(t)
	const max = 64 << 10
	srv := startServer(t, echo, WithCurveServer(&curve.ServerConfig{Keys: server}), WithMaxMessageSize(max))
	c, sess := curvePeer(t, srv, client, server.Public)
	part := bytes.Repeat([]byte("y"), 40<<10)
	var msg []byte
	msg = sess.AppendMessage(msg, curve.FlagMore, []byte("id"))
	msg = sess.AppendMessage(msg, curve.FlagMore, part)
	msg = sess.AppendMessage(msg, 0, part)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ctx, c)
	if n := srv.opts.readBudget.InUse(); n != 0 {
		t.Fatalf("%d bytes of the read budget still held", n)
	}
}

// A CURVE connection on which no message arrives is closed at the idle
// timeout, sealed PINGs notwithstanding.
func TestCurveIdlePeerIsClosed(t *testing.T) {
	ctx := testCtx(t)
	server, client := curveKeys(t), curveKeys(t)
	srv := startServer(t, echo, WithCurveServer(&curve.ServerConfig{Keys: server}),
		WithPeerIdleTimeout(200*time.Millisecond), WithMessageTimeout(50*time.Millisecond))
	silent, _ := curvePeer(t, srv, client, server.Public)
	pinging, sess := curvePeer(t, srv, client, server.Public)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			ping := sess.AppendMessage(nil, curve.FlagCommand, []byte("\x04PING\x00\x0a"))
			if _, err := pinging.Write(ping); err != nil {
				return
			}
		}
	}()
	waitClosed(t, ctx, silent)
	waitClosed(t, ctx, pinging)
	if st := srv.Stats(); st.IdleClosed != 2 {
		t.Fatalf("stats = %+v, want 2 idle CURVE connections closed", st)
	}
}

// A client given the wrong key for a CURVE server fails at once, without
// retrying a handshake that would only be refused again.
func TestCurveWrongServerKeyIsNotRetried(t *testing.T) {
	ctx := testCtx(t)
	server, client, stranger := curveKeys(t), curveKeys(t), curveKeys(t)
	cfg := &curve.ServerConfig{Keys: server}
	srv := startServer(t, echo, WithCurveServer(cfg))
	c := newClient(t, WithCurveClient(client, keyFor(stranger.Public)), WithRequestTimeout(10*time.Second))
	start := time.Now()
	_, err := c.Request(ctx, srv.Addr(), env("id", "x"))
	if !errors.Is(err, ErrCurveClosed) {
		t.Fatalf("wrong server key: %v, want ErrCurveClosed", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("wrong server key took %s to fail", d)
	}
	if got := cfg.Refused(); got != 1 {
		t.Fatalf("refused = %d, want 1", got)
	}
}
