package transport

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// Concurrent senders on one connection: every message arrives whole and
// in one piece, and messages queued during a write share the next one.
func TestConcurrentSendsAreCombinedIntact(t *testing.T) {
	const senders, each = 20, 50
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cc := &countingConn{Conn: a}
	z := &zconn{gc: newGuardedConn(cc, 1<<20), writeTimeout: 10 * time.Second}
	// The reader side skips the greeting check: frames only.
	r := &zconn{gc: newGuardedConn(b, 1<<20)}
	r.gc.guard.greeting = 0
	// If a sender fails, the reader must not wait for its messages forever.
	_ = b.SetReadDeadline(time.Now().Add(30 * time.Second))
	z.active.Add(senders)

	got := make(map[string]bool)
	readErr := make(chan error, 1)
	go func() {
		for range senders * each {
			frames, err := r.readMsg(nil)
			if err != nil {
				readErr <- err
				return
			}
			if len(frames) != 3 || string(frames[1]) != "mime" || string(frames[2]) != "body-"+string(frames[0]) {
				readErr <- fmt.Errorf("message arrived mangled: %q", frames)
				return
			}
			got[string(frames[0])] = true
		}
		readErr <- nil
	}()
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				id := fmt.Sprintf("%d-%d", i, j)
				if err := z.send([][]byte{[]byte(id), []byte("mime"), []byte("body-" + id)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	if len(got) != senders*each {
		t.Fatalf("%d distinct messages, want %d", len(got), senders*each)
	}
	if w := cc.writes.Load(); w >= senders*each {
		t.Fatalf("%d writes for %d messages: none were combined", w, senders*each)
	}
	t.Logf("%d messages in %d writes", senders*each, cc.writes.Load())
}
