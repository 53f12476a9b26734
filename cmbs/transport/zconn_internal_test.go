package transport

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/cmbs/cmbs/cmbs/transport/curve"
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

// A multipart message goes out in one write system call, NULL or CURVE
// (each frame its own MESSAGE box, all in one buffer), and the reader
// gets it whole.
func TestMultipartMessageIsOneWrite(t *testing.T) {
	for _, mode := range []string{"null", "curve"} {
		t.Run(mode, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var srvMech, cliMech *curveMech
			if mode == "curve" {
				srvKeys, err := curve.GenerateKeyPair(nil)
				if err != nil {
					t.Fatal(err)
				}
				cliKeys, err := curve.GenerateKeyPair(nil)
				if err != nil {
					t.Fatal(err)
				}
				srvMech = &curveMech{server: &curve.ServerConfig{Keys: srvKeys}, maxMsg: 1 << 20}
				cliMech = &curveMech{client: &cliKeys, serverKey: srvKeys.Public, maxMsg: 1 << 20}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			type result struct {
				z   *zconn
				err error
			}
			accepted := make(chan result, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					accepted <- result{err: err}
					return
				}
				z, err := handshake(ctx, newGuardedConn(c, 1<<20), zmq4.Router, 10*time.Second, 10*time.Second, readLimits{}, srvMech)
				if err != nil {
					_ = c.Close()
				}
				accepted <- result{z, err}
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			cc := &countingConn{Conn: c}
			z, err := handshake(ctx, newGuardedConn(cc, 1<<20), zmq4.Dealer, 10*time.Second, 10*time.Second, readLimits{}, cliMech)
			if err != nil {
				_ = c.Close()
				t.Fatal(err)
			}
			defer z.close()
			r := <-accepted
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.z.close()
			_ = r.z.gc.SetReadDeadline(time.Now().Add(10 * time.Second))

			before := cc.writes.Load()
			want := [][]byte{[]byte("id-1"), []byte("application/json"), []byte(strings.Repeat("b", 300))}
			if err := z.send(want); err != nil {
				t.Fatal(err)
			}
			if w := cc.writes.Load() - before; w != 1 {
				t.Fatalf("a 3-frame message took %d writes, want 1", w)
			}
			got, err := r.z.readMsg(nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d frames, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("frame %d = %q, want %q", i, got[i], want[i])
				}
			}
		})
	}
}
