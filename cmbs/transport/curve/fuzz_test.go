package curve_test

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/cmbs/cmbs/cmbs/transport/curve"
)

// FuzzServerHandshake feeds arbitrary bytes to the server side of the
// handshake: it must fail cleanly (never panic, never read a frame bigger
// than its command allows).
func FuzzServerHandshake(f *testing.F) {
	server, err := curve.GenerateKeyPair(nil)
	if err != nil {
		f.Fatal(err)
	}
	client, err := curve.GenerateKeyPair(nil)
	if err != nil {
		f.Fatal(err)
	}
	// A real HELLO as the seed, so the fuzzer starts past the first check.
	var hello bytes.Buffer
	_, _ = curve.Client(bytes.NewReader(nil), &hello, client, server.Public, nil)
	f.Add(hello.Bytes())
	f.Add(append(hello.Bytes(), 0x06, 0, 0, 0, 0, 0, 0, 0x01, 0x01))
	f.Add([]byte{0x04, 6, 5, 'E', 'R', 'R', 'O', 'R'})
	cfg := &curve.ServerConfig{Keys: server}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := curve.Server(bytes.NewReader(data), io.Discard, cfg, nil); err == nil {
			t.Fatal("a handshake completed from fuzzed bytes")
		}
	})
}

// FuzzClientHandshake is the same for the client, which reads WELCOME and
// READY.
func FuzzClientHandshake(f *testing.F) {
	server, _ := curve.GenerateKeyPair(nil)
	client, _ := curve.GenerateKeyPair(nil)
	f.Add([]byte{0x04, 168})
	f.Add([]byte{0x04, 10, 5, 'E', 'R', 'R', 'O', 'R', 3, 'b', 'a', 'd'})
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := curve.Client(bytes.NewReader(data), io.Discard, client, server.Public, nil); err == nil {
			t.Fatal("a handshake completed from fuzzed bytes")
		}
	})
}

// FuzzOpen feeds arbitrary MESSAGE bodies to an established session: none
// may open (they are not sealed with its key), and none may panic.
func FuzzOpen(f *testing.F) {
	server, _ := curve.GenerateKeyPair(nil)
	client, _ := curve.GenerateKeyPair(nil)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan *curve.Session, 1)
	go func() {
		s, _ := curve.Server(b, b, &curve.ServerConfig{Keys: server}, nil)
		done <- s
	}()
	cs, err := curve.Client(a, a, client, server.Public, nil)
	ss := <-done
	if err != nil || ss == nil {
		f.Fatalf("handshake: %v", err)
	}
	frame := cs.AppendMessage(nil, curve.FlagMore, []byte("seed"))
	f.Add(frame[2:])
	f.Add([]byte("\x07MESSAGE"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, _, err := ss.Open(body); err == nil && !bytes.Equal(body, frame[2:]) {
			t.Fatalf("a fuzzed MESSAGE opened: %x", body)
		}
	})
}
