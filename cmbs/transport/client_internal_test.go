package transport

import (
	"errors"
	"testing"
	"time"
)

// A connection that ended before a request was written on it (reaped as
// idle, or failed by another request) refuses the send with errNotSent,
// which Request and Deliver answer by sending on a fresh connection; a
// later Request does not pick the ended connection at all.
func TestEndedConnectionIsNotSentOn(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, echo)
	c := newClient(t)
	if _, err := c.Request(ctx, srv.Addr(), env("first", "1")); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	p := c.peers[srv.Addr()]
	c.mu.Unlock()
	p.mu.Lock()
	cc := p.conn
	p.mu.Unlock()
	if !cc.expire(time.Now().Add(time.Hour)) {
		t.Fatal("an idle connection was not expired")
	}
	if _, err := c.send(ctx, cc, env("late", "2"), nil); !errors.Is(err, errNotSent) || !errors.Is(err, errIdleClosed) {
		t.Fatalf("send on the expired connection: %v, want errNotSent (closed after standing idle)", err)
	}
	// p.conn still names the ended connection, as between the reaper's
	// expire and its clearing p.conn.
	if _, err := c.Request(ctx, srv.Addr(), env("after", "3")); err != nil {
		t.Fatalf("Request after the connection ended: %v", err)
	}
	if r := c.Deliver(ctx, []string{srv.Addr()}, env("deliver", "4")); r[0].Err != nil {
		t.Fatalf("Deliver after: %v", r[0].Err)
	}
	if n := srv.Stats().Connections; n != 2 {
		t.Fatalf("server saw %d connections, want 2", n)
	}
}
