// Package loopback gives tests endpoints on 127.0.0.1: a free one, and a
// peer that accepts connections and never answers.
package loopback

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// FreeEndpoint returns a "tcp://127.0.0.1:port" endpoint nobody listens on
// (yet).
func FreeEndpoint(t testing.TB) string {
	t.Helper()
	ep, err := Free()
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// The ports Free hands out lie below Linux's default ephemeral range
// (32768–60999): a port the kernel picked for "127.0.0.1:0" and that was
// closed again is handed to the next listener on port 0 or to an outgoing
// connection, so a test that reserved it that way and bound it later could
// find it taken by another server of its own (seen under load). Ports of
// this range are only ever taken by someone asking for them.
const (
	freeLow  = 20000
	freeHigh = 32000
)

var (
	handedMu sync.Mutex
	handed   = map[int]bool{} // ports this process has handed out
)

// Free returns a "tcp://127.0.0.1:port" endpoint nobody listens on (yet),
// never the same one twice in a process.
func Free() (string, error) {
	handedMu.Lock()
	defer handedMu.Unlock()
	var lastErr error
	for range 200 {
		port := freeLow + rand.IntN(freeHigh-freeLow)
		if handed[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			lastErr = err
			continue
		}
		_ = ln.Close()
		handed[port] = true
		return "tcp://" + ln.Addr().String(), nil
	}
	return "", fmt.Errorf("loopback: no free port in %d–%d: %v", freeLow, freeHigh, lastErr)
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
