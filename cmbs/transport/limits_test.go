package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
)

// zmtpPeer dials the server from local (nil: any address) and runs the
// ZMTP handshake as a DEALER, returning the bare connection for tests that
// write frames by hand.
func zmtpPeer(t *testing.T, srv *Server, local net.IP) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	nc, err := d.Dial("tcp", tcpAddr(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := zmq4.Open(nc, nullSecurity(), zmq4.Dealer, nil, false, nil); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetDeadline(time.Time{})
	return nc
}

// longFrameHeader announces a data frame of size bytes.
func longFrameHeader(size uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{zmtpFlagLong}, size)
}

// waitFor polls cond until it holds, failing the test when ctx ends first.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting: %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitClosed reads from c until the server closes it, failing the test if
// the connection stays open until the test's deadline.
func waitClosed(t *testing.T, ctx context.Context, c net.Conn) {
	t.Helper()
	d, _ := ctx.Deadline()
	_ = c.SetReadDeadline(d)
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the server never closed the connection")
		}
		if err != nil {
			return
		}
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Peers that announce 16 MiB frames and send part of them hold no more
// than the read budget between them, whatever they announce and however
// many they are; small requests are still answered meanwhile, and the
// memory returns when they leave.
func TestTricklingPeersHoldBoundedMemory(t *testing.T) {
	const peers, sent = 150, 1 << 20
	ctx := testCtx(t)
	// The peers stay within the message timeout for the whole test: the
	// budget alone must bound them.
	srv := startServer(t, echo, WithMessageTimeout(10*time.Minute))
	budget := srv.opts.readBudget
	before := heapAlloc()

	chunk := bytes.Repeat([]byte("x"), sent)
	conns := make([]net.Conn, peers)
	for i := range conns {
		conns[i] = zmtpPeer(t, srv, nil)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The server stops reading most of them: their writes block
			// until the test closes the connections.
			if _, err := c.Write(longFrameHeader(MaxBodySize)); err != nil {
				return
			}
			_, _ = c.Write(chunk)
		}()
	}
	// 150 peers want 2 MiB each (1 MiB sent, the next growth taken): the
	// budget fills up and the rest wait for it.
	waitFor(t, ctx, "the read budget to fill up", func() bool { return budget.InUse() > budget.Size()-sent })
	during := heapAlloc()
	t.Logf("heap: %d MiB before, %d MiB with %d peers each sending %d KiB of a 16 MiB frame (read budget %d MiB)",
		before>>20, during>>20, peers, sent>>10, budget.Size()>>20)
	if during > 64<<20 {
		t.Fatalf("heap is %d MiB with %d trickling peers, want under 64 MiB", during>>20, peers)
	}

	c := newClient(t)
	if reply, err := c.Request(ctx, srv.Addr(), env("small", "still served")); err != nil || string(reply.Body) != "still served" {
		t.Fatalf("small request while the budget is spent: %+v, %v", reply, err)
	}
	_ = c.Close()

	for _, c := range conns {
		_ = c.Close()
	}
	wg.Wait()
	waitFor(t, ctx, "the peers' connections to end", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.conns) == 0
	})
	if n := budget.InUse(); n != 0 {
		t.Fatalf("%d bytes of the read budget still held after every peer left", n)
	}
	after := heapAlloc()
	t.Logf("heap: %d MiB after the peers left", after>>20)
	if after > before+16<<20 {
		t.Fatalf("heap is %d MiB after the peers left (%d MiB before): their buffers were kept", after>>20, before>>20)
	}
}

// A frame header's announced size is never allocated up front: a peer
// announcing the largest message and sending nothing more holds at most
// the first growth step.
func TestAnnouncedFrameIsNotAllocated(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo)
	c := zmtpPeer(t, srv, nil)
	if _, err := c.Write(append(longFrameHeader(MaxBodySize), 'x')); err != nil {
		t.Fatal(err)
	}
	budget := srv.opts.readBudget
	waitFor(t, ctx, "the frame to start", func() bool { return budget.InUse() > 0 })
	if n := budget.InUse(); n > largeFrameStart {
		t.Fatalf("a peer that sent 1 byte of a 16 MiB frame holds %d bytes, want at most %d", n, largeFrameStart)
	}
}

// A message must arrive whole within the message timeout once started,
// however steadily its bytes trickle in, and however long the peer waited
// before starting it; the budget it held is returned.
func TestTrickledMessageIsCutOff(t *testing.T) {
	ctx := testCtx(t)
	const timeout = 300 * time.Millisecond
	srv := startServer(t, echo, WithMessageTimeout(timeout))
	for i, size := range []uint64{100, 1 << 20, 100} { // a small frame, one from the budget, and a small one late
		c := zmtpPeer(t, srv, nil)
		if i == 2 {
			// Past the first read deadline: the wait is extended to
			// the idle timeout, and the message must not inherit that.
			time.Sleep(3 * timeout)
		}
		if _, err := c.Write(longFrameHeader(size)); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := c.Write([]byte{'x'}); err != nil {
					return
				}
			}
		}()
		waitClosed(t, ctx, c)
		close(stop)
		wg.Wait()
	}
	if st := srv.Stats(); st.SlowClosed != 3 {
		t.Fatalf("stats = %+v, want 3 slow connections closed", st)
	}
	if n := srv.opts.readBudget.InUse(); n != 0 {
		t.Fatalf("%d bytes of the read budget still held", n)
	}
}

// The message timeout bounds a message, not the wait between messages: a
// peer quiet for longer is still served, heartbeats in between included.
func TestQuietPeerIsNotCutOff(t *testing.T) {
	srv := startServer(t, echo, WithMessageTimeout(50*time.Millisecond))
	zc := rawDealer(t, srv)
	for i := range 3 {
		if i > 0 {
			time.Sleep(200 * time.Millisecond) // 4 message timeouts
			if err := zc.SendCmd(zmq4.CmdPing, []byte{0, 10}); err != nil {
				t.Fatal(err)
			}
			if _, err := zc.RecvCmd(); err != nil {
				t.Fatalf("no PONG: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := zc.SendMsg(zmq4.NewMsgFrom(nil, []byte("id"), []byte("m"), []byte("b"))); err != nil {
			t.Fatal(err)
		}
		if msg, err := zc.RecvMsg(); err != nil || len(msg.Frames) != 4 {
			t.Fatalf("reply %d: %q, %v", i, msg.Frames, err)
		}
	}
	if st := srv.Stats(); st.SlowClosed != 0 || st.IdleClosed != 0 {
		t.Fatalf("stats = %+v: a quiet peer was cut off", st)
	}
}

// A ZMTP command is read whole, by zmq4 during the handshake: its size is
// bounded on its own, far below the message limit.
func TestLargeCommandIsRefused(t *testing.T) {
	g := frameGuard{max: MaxBodySize}
	hdr := binary.BigEndian.AppendUint64([]byte{zmtpFlagCommand | zmtpFlagLong}, maxCommandSize+1)
	var tooBig *frameTooBigError
	if err := g.scan(hdr); !errors.As(err, &tooBig) {
		t.Fatalf("a %d-byte command: %v, want it refused", maxCommandSize+1, err)
	}
	g = frameGuard{max: MaxBodySize}
	hdr = binary.BigEndian.AppendUint64([]byte{zmtpFlagCommand | zmtpFlagLong}, maxCommandSize)
	if err := g.scan(hdr); err != nil {
		t.Fatalf("a %d-byte command: %v", maxCommandSize, err)
	}
}

// A peer on which no message arrives for the idle timeout is closed, ZMTP
// heartbeats notwithstanding; one whose request is still being handled is
// not, and gets its reply.
func TestIdlePeersAreClosed(t *testing.T) {
	ctx := testCtx(t)
	release := make(chan struct{})
	srv := startServer(t, func(ctx context.Context, req Envelope) (Envelope, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return echo(ctx, req)
	}, WithPeerIdleTimeout(200*time.Millisecond), WithMessageTimeout(50*time.Millisecond))

	silent := zmtpPeer(t, srv, nil)
	pinging := rawDealer(t, srv)
	busy := rawDealer(t, srv)
	if err := busy.SendMsg(zmq4.NewMsgFrom(nil, []byte("slow"), []byte("m"), []byte("b"))); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	pinged := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				pinged <- nil
				return
			case <-time.After(30 * time.Millisecond):
			}
			if err := pinging.SendCmd(zmq4.CmdPing, []byte{0, 10}); err != nil {
				pinged <- err // closed by the server: expected
				return
			}
		}
	}()
	waitClosed(t, ctx, silent)
	waitFor(t, ctx, "the pinging peer to be closed", func() bool { return srv.Stats().IdleClosed >= 2 })
	close(stop)
	<-pinged

	// The busy peer has been idle as long, with its handler running.
	if st := srv.Stats(); st.IdleClosed != 2 {
		t.Fatalf("stats = %+v, want 2 idle connections closed", st)
	}
	close(release)
	if msg, err := busy.RecvMsg(); err != nil || len(msg.Frames) != 4 || string(msg.Frames[1]) != "slow" {
		t.Fatalf("reply to a request handled past the idle timeout: %q, %v", msg.Frames, err)
	}
	waitFor(t, ctx, "the busy peer, idle once answered, to be closed", func() bool { return srv.Stats().IdleClosed == 3 })
}

// Connections beyond WithMaxConns are closed at accept; once one closes,
// clients are served again.
func TestConnectionCap(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo, WithMaxConns(3))
	var open []net.Conn
	for range 3 {
		open = append(open, zmtpPeer(t, srv, nil))
	}
	extra, err := net.Dial("tcp", tcpAddr(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	waitClosed(t, ctx, extra)
	if st := srv.Stats(); st.RejectedConns != 1 {
		t.Fatalf("stats = %+v, want 1 rejected connection", st)
	}

	_ = open[0].Close()
	waitFor(t, ctx, "a closed connection to leave the count", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.conns) < 3
	})
	c := newClient(t)
	if reply, err := c.Request(ctx, srv.Addr(), env("room", "again")); err != nil || string(reply.Body) != "again" {
		t.Fatalf("Request once below the cap: %+v, %v", reply, err)
	}
}

// Servers sharing a ConnQuota hold no more connections between them; a
// connection that ends returns its place.
func TestSharedConnQuota(t *testing.T) {
	ctx := testCtx(t)
	q := NewConnQuota(3)
	a := startServer(t, echo, WithConnQuota(q))
	b := startServer(t, echo, WithConnQuota(q))
	first := zmtpPeer(t, a, nil)
	zmtpPeer(t, a, nil)
	zmtpPeer(t, b, nil)
	for _, srv := range []*Server{a, b} {
		extra, err := net.Dial("tcp", tcpAddr(srv.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer extra.Close()
		waitClosed(t, ctx, extra)
	}
	if ra, rb := a.Stats().RejectedConns, b.Stats().RejectedConns; ra != 1 || rb != 1 || q.InUse() != 3 {
		t.Fatalf("rejected %d and %d connections with %d of the quota in use, want 1, 1 and 3", ra, rb, q.InUse())
	}
	_ = first.Close()
	waitFor(t, ctx, "a closed connection to return its place", func() bool { return q.InUse() < 3 })
	c := newClient(t)
	if reply, err := c.Request(ctx, b.Addr(), env("room", "again")); err != nil || string(reply.Body) != "again" {
		t.Fatalf("Request once below the quota: %+v, %v", reply, err)
	}
	_ = c.Close()
	_ = a.Close()
	_ = b.Close()
	if n := q.InUse(); n != 0 {
		t.Fatalf("%d of the quota still in use after both servers closed", n)
	}
}

// A message of many MiB still goes through both ways, its buffers grown as
// it arrives, and every byte of the budgets comes back.
func TestLargeMessageRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo)
	c := newClient(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 12<<20/16)
	reply, err := c.Request(ctx, srv.Addr(), Envelope{ID: "big", MimeType: "application/octet-stream", Body: body})
	if err != nil || !bytes.Equal(reply.Body, body) {
		t.Fatalf("12 MiB round trip: %d bytes back, %v", len(reply.Body), err)
	}
	if s, cl := srv.opts.readBudget.InUse(), c.opts.readBudget.InUse(); s != 0 || cl != 0 {
		t.Fatalf("read budgets still hold %d (server) and %d (client) bytes", s, cl)
	}
}

// A message that finds the budget spent waits for it rather than losing
// its connection, and completes once a trickling peer leaves.
func TestSpentBudgetDelaysInsteadOfDropping(t *testing.T) {
	const budgetSize = 2 << 20
	ctx := testCtx(t)
	srv := startServer(t, echo, WithReadBudget(NewReadBudget(budgetSize)), WithMessageTimeout(time.Minute))
	budget := srv.opts.readBudget
	trickler := zmtpPeer(t, srv, nil)
	if _, err := trickler.Write(longFrameHeader(budgetSize - 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := trickler.Write(bytes.Repeat([]byte("t"), 1<<20+1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the trickler to take the budget", func() bool { return budget.InUse() == budgetSize-100 })

	c := newClient(t, WithRequestTimeout(time.Minute))
	body := bytes.Repeat([]byte("b"), 1<<20)
	type result struct {
		reply Envelope
		err   error
	}
	done := make(chan result, 1)
	go func() {
		reply, err := c.Request(ctx, srv.Addr(), Envelope{ID: "waits", MimeType: "application/octet-stream", Body: body})
		done <- result{reply, err}
	}()
	waitFor(t, ctx, "the request to wait for the budget", func() bool { return budget.waiters() == 1 })
	_ = trickler.Close()
	r := <-done
	if r.err != nil || !bytes.Equal(r.reply.Body, body) {
		t.Fatalf("request that waited for the budget: %d bytes back, %v", len(r.reply.Body), r.err)
	}
	if st := srv.Stats(); st.SlowClosed != 0 || st.Connections != 2 {
		t.Fatalf("stats = %+v, want 2 connections and none closed as slow", st)
	}
}

// ZMTP commands a peer interleaves with a message's frames are not kept
// with the message: they hold none of the read budget.
func TestCommandsInsideAMessageHoldNothing(t *testing.T) {
	srv := startServer(t, echo)
	c := zmtpPeer(t, srv, nil)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte{zmtpFlagMore, 1, 'r'}); err != nil { // a message begun
		t.Fatal(err)
	}
	const pings = 20
	ping := append([]byte("\x04PING\x00\x00"), bytes.Repeat([]byte("c"), maxCommandSize-7)...)
	for range pings {
		if _, err := c.Write(append(binary.BigEndian.AppendUint64([]byte{zmtpFlagCommand | zmtpFlagLong}, uint64(len(ping))), ping...)); err != nil {
			t.Fatal(err)
		}
	}
	pong := make([]byte, 9+len(ping)-2)
	for i := range pings {
		if _, err := io.ReadFull(c, pong); err != nil {
			t.Fatalf("PONG %d: %v", i, err)
		}
	}
	if n := srv.opts.readBudget.InUse(); n != 0 {
		t.Fatalf("%d bytes of the budget held by %d PINGs inside a message", n, pings)
	}
}

// A Client whose connection a Server closes during the handshake (at its
// connection cap) retries within the request's deadline, as libzmq
// reconnects, and is served once there is room.
func TestClientRetriesAConnectionClosedInHandshake(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo, WithMaxConns(1))
	holder := zmtpPeer(t, srv, nil)
	c := newClient(t, WithRequestTimeout(30*time.Second))
	done := make(chan error, 1)
	go func() {
		reply, err := c.Request(ctx, srv.Addr(), env("retried", "in"))
		if err == nil && string(reply.Body) != "in" {
			err = errors.New("wrong reply " + string(reply.Body))
		}
		done <- err
	}()
	waitFor(t, ctx, "the client to be refused", func() bool { return srv.Stats().RejectedConns >= 2 })
	_ = holder.Close()
	if err := <-done; err != nil {
		t.Fatalf("Request once the cap had room: %v", err)
	}
}
