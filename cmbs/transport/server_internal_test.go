package transport

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// Connections that send the ZMTP signature and then stall count against
// the pending bound until their handshake ends, like silent ones: beyond
// it, new connections are dropped, and a slot freed serves again.
func TestStalledHandshakesAreBounded(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo, WithHandshakeTimeout(5*time.Minute), withMaxPending(2), withEvictAfter(5*time.Minute))
	sig := []byte{0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f}
	var stalled []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", tcpAddr(srv.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(sig); err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
	}
	// The signature has been read once the server starts its greeting.
	for _, c := range stalled {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 10)); err != nil {
			t.Fatalf("no greeting from the server: %v", err)
		}
	}
	third, err := net.Dial("tcp", tcpAddr(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	// Dropped at once: the read ends with EOF, not with its deadline.
	_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := third.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a third pending connection was kept (read %d bytes, %v)", n, err)
	}
	if got := srv.Stats().RejectedConns; got != 1 {
		t.Fatalf("rejected %d connections, want 1", got)
	}

	_ = stalled[0].Close()
	for {
		srv.mu.Lock()
		waiting := srv.waiting
		srv.mu.Unlock()
		if waiting < 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("closing a stalled connection never freed its pending slot")
		case <-time.After(5 * time.Millisecond):
		}
	}
	c := newClient(t)
	reqCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if reply, err := c.Request(reqCtx, srv.Addr(), env("freed", "ok")); err != nil || string(reply.Body) != "ok" {
		t.Fatalf("Request once a pending slot is free: %+v, %v", reply, err)
	}
}
