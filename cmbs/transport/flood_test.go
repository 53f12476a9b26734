package transport

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/pyzmqtest"
)

// flood keeps n silent connections from local to srv open, opening a new
// one as soon as the server closes one, until the test ends. It returns
// how many it has opened so far.
func flood(t *testing.T, srv *Server, local net.IP, n int) *atomic.Int64 {
	t.Helper()
	ctx, stop := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	var opened atomic.Int64
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local}}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1)
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", tcpAddr(srv.Addr()))
				if err != nil {
					// Out of ports for a moment, or the flood is over.
					select {
					case <-ctx.Done():
					case <-time.After(time.Millisecond):
					}
					continue
				}
				opened.Add(1)
				unblock := context.AfterFunc(ctx, func() { _ = c.Close() })
				_, _ = c.Read(buf) // until the server drops it
				unblock()
				_ = c.Close()
			}
		}()
	}
	return &opened
}

// A flood of 1,000 silent connections from one address, each re-opened as
// soon as it is dropped, locks no one out: a pyzmq client from another
// address gets all its replies, and so does a client from the flood's own
// address, which sends its greeting at once and so is never the one
// evicted.
func TestFloodFromOneSourceStarvesNobody(t *testing.T) {
	py := pyzmqtest.Python(t)
	ctx := testCtx(t)
	srv := startServer(t, echo)
	flooder := net.IPv4(127, 0, 0, 2)
	opened := flood(t, srv, flooder, 1000)
	// Under way: every pending slot the flood can take is taken, and it
	// goes on being evicted and re-opened.
	waitFor(t, ctx, "the flood to start", func() bool { return opened.Load() >= 3000 })

	got := pyRequest(t, ctx, py, srv.Addr(), env("py", "through the flood"), 4)
	if want := []string{"py", "application/occi+json", "through the flood"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("pyzmq reply %q, want %q", got, want)
	}

	// libzmq's "source;destination" endpoint binds the flood's address.
	sameSource := "tcp://" + flooder.String() + ":0;" + tcpAddr(srv.Addr())
	got = pyRequest(t, ctx, py, sameSource, env("py-same", "beside the flood"), 4)
	if want := []string{"py-same", "application/occi+json", "beside the flood"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("pyzmq reply from the flood's address %q, want %q", got, want)
	}
	for i := range 3 {
		nc := zmtpPeer(t, srv, flooder)
		req := append(longFrameHeader(0)[:0], zmtpFlagMore, 0, zmtpFlagMore, 2, 'i', 'd', zmtpFlagMore, 1, 'm', 0, 1, 'b')
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(req); err != nil {
			t.Fatal(err)
		}
		reply := make([]byte, len(req))
		if _, err := io.ReadFull(nc, reply); err != nil || string(reply) != string(req) {
			t.Fatalf("reply %d to a client from the flood's address: %q, %v", i, reply, err)
		}
		_ = nc.Close()
	}
	st := srv.Stats()
	t.Logf("the flood opened %d connections; server stats %+v", opened.Load(), st)
}

// At its address's bound, a new connection evicts the oldest silent one;
// connections that have spoken are kept (within withEvictAfter), and then
// it is the new one that is closed; other addresses are not affected.
func TestPendingBoundPerSource(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo, WithHandshakeTimeout(5*time.Minute), withMaxPendingPerSource(2), withEvictAfter(5*time.Minute))
	dial := func(local net.IP, speak bool) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local}}
		c, err := d.DialContext(ctx, "tcp", tcpAddr(srv.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if speak {
			if _, err := c.Write([]byte{0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f}); err != nil {
				t.Fatal(err)
			}
			// The server answers the signature with its own greeting.
			if _, err := io.ReadFull(c, make([]byte, 10)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, ctx, "the connection to be pending", func() bool {
			srv.mu.Lock()
			defer srv.mu.Unlock()
			for _, pc := range srv.pending[sourceOf(c.LocalAddr())] {
				if pc.gc.RemoteAddr().String() == c.LocalAddr().String() {
					return true
				}
			}
			return false
		})
		return c
	}
	a, b, other := net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3), net.IPv4(127, 0, 0, 4)
	oldest := dial(a, false)
	dial(a, false)
	dial(a, false) // evicts the oldest
	waitClosed(t, ctx, oldest)
	dial(other, false)

	dial(b, true)
	dial(b, true)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: b}}
	third, err := d.DialContext(ctx, "tcp", tcpAddr(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	waitClosed(t, ctx, third)

	srv.mu.Lock()
	counts := map[string]int{}
	for src, q := range srv.pending {
		counts[src.String()] = len(q)
	}
	srv.mu.Unlock()
	if counts["127.0.0.2"] != 2 || counts["127.0.0.3"] != 2 || counts["127.0.0.4"] != 1 {
		t.Fatalf("pending per source %v, want 2 from 127.0.0.2 and from 127.0.0.3, 1 from 127.0.0.4", counts)
	}
	if st := srv.Stats(); st.RejectedConns != 2 {
		t.Fatalf("stats = %+v, want 2 connections rejected (one evicted, one refused)", st)
	}
}
