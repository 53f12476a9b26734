// Package loopback gives tests endpoints on 127.0.0.1: a free one, and a
// peer that accepts connections and never answers.
package loopback

import (
	"net"
	"sync"
	"testing"
)

// FreeEndpoint returns a "tcp://127.0.0.1:port" endpoint nobody listens on
// (yet).
func FreeEndpoint(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "tcp://" + addr
}

// SilentPeer listens on a loopback endpoint, accepts every connection and
// never sends a byte: a hung peer. Its listener and connections are closed
// when t ends.
func SilentPeer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "tcp://" + ln.Addr().String()
}
