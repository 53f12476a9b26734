package transport

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/cmbs/cmbs/internal/pyzmqtest"
)

// rawPeer performs the ZMTP handshake as typ on a bare TCP connection to
// endpoint (zmq4's sockets leak goroutines on close; its Conn does not).
func rawPeer(t *testing.T, endpoint string, typ zmq4.SocketType) *zmq4.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", tcpAddr(endpoint))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	zc, err := zmq4.Open(nc, nullSecurity(), typ, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return zc
}

// DP-11: a subscriber to T receives exactly the T messages, in order, as
// three-frame envelopes.
func TestPublisherDeliversBySubscribedID(t *testing.T) {
	pub, err := ListenPub(testCtx(t), "tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	sub := rawPeer(t, pub.Addr(), zmq4.Sub)
	if err := sub.SendMsg(zmq4.NewMsg(append([]byte{1}, "T"...))); err != nil {
		t.Fatal(err)
	}
	// The subscription is in once a probe on T arrives.
	waitFor(t, testCtx(t), "subscription", func() bool { return pub.Stats().Subscriptions == 1 })
	const n = 50
	pub.Publish(Envelope{ID: "T", MimeType: "text/plain", Body: []byte("probe")}.Frames())
	if m, err := sub.RecvMsg(); err != nil || string(m.Frames[2]) != "probe" {
		t.Fatalf("probe: %q %v", m.Frames, err)
	}
	for i := range n {
		pub.Publish(Envelope{ID: "U", MimeType: "text/plain", Body: fmt.Appendf(nil, "u%d", i)}.Frames())
		pub.Publish(Envelope{ID: "T", MimeType: "text/plain", Body: fmt.Appendf(nil, "t%d", i)}.Frames())
	}
	for i := range n {
		m, err := sub.RecvMsg()
		if err != nil {
			t.Fatal(err)
		}
		env, err := Parse(m.Frames)
		if err != nil || env.ID != "T" || string(env.Body) != fmt.Sprintf("t%d", i) {
			t.Fatalf("message %d: %q, %v", i, m.Frames, err)
		}
	}
	if s := pub.Stats(); s.Dropped != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// A puller hands every pushed message to its handler, in order.
func TestPullerReceivesPushedMessages(t *testing.T) {
	got := make(chan [][]byte, 100)
	pull, err := ListenPull(testCtx(t), "tcp://127.0.0.1:0", func(_ context.Context, f [][]byte) { got <- f })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pull.Close() })
	push := rawPeer(t, pull.Addr(), zmq4.Push)
	for i := range 10 {
		if err := push.SendMsg(zmq4.NewMsgFrom([]byte("T"), []byte("text/plain"), fmt.Appendf(nil, "m%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		select {
		case f := <-got:
			if string(f[2]) != fmt.Sprintf("m%d", i) {
				t.Fatalf("message %d: %q", i, f)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("timed out")
		}
	}
}

// A pyzmq (libzmq) SUB socket subscribes to and receives from a Publisher.
func TestPublisherWithPyzmqSubscriber(t *testing.T) {
	py := pyzmqtest.Python(t)
	pub, err := ListenPub(testCtx(t), "tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	script := filepath.Join(t.TempDir(), "sub.py")
	if err := os.WriteFile(script, []byte(`import sys, zmq
s = zmq.Context().socket(zmq.SUB)
s.setsockopt(zmq.SUBSCRIBE, b"T")
s.setsockopt(zmq.RCVTIMEO, 20000)
s.setsockopt(zmq.LINGER, 0)
s.connect(sys.argv[1])
print(b"|".join(s.recv_multipart()).decode(), flush=True)
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, script, pub.Addr())
	out := make(chan string, 1)
	go func() {
		b, err := cmd.Output()
		out <- fmt.Sprintf("%s%v", b, err)
	}()
	// Publish until the subscriber got one: its subscription arrives
	// some time after it connects (the slow joiner).
	for {
		pub.Publish(Envelope{ID: "T.x", MimeType: "text/plain", Body: []byte("hi")}.Frames())
		select {
		case s := <-out:
			if s != "T.x|text/plain|hi\n<nil>" {
				t.Fatalf("pyzmq SUB got %q", s)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}
