package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs/transport/curve"
	"github.com/cmbs/cmbs/internal/pyzmqtest"
)

func curveKeys(t testing.TB) curve.KeyPair {
	t.Helper()
	kp, err := curve.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// keyFor answers every endpoint with key.
func keyFor(key curve.Key) func(string) (curve.Key, bool) {
	return func(string) (curve.Key, bool) { return key, true }
}

func onlyKeys(keys ...curve.Key) func(curve.Key) bool {
	return func(k curve.Key) bool {
		for _, a := range keys {
			if a == k {
				return true
			}
		}
		return false
	}
}

func TestCurveRequestsAndRefusals(t *testing.T) {
	ctx := testCtx(t)
	server, client, stranger := curveKeys(t), curveKeys(t), curveKeys(t)
	cfg := &curve.ServerConfig{Keys: server, Authorize: onlyKeys(client.Public)}
	srv := startServer(t, echo, WithCurveServer(cfg))

	c := newClient(t, WithCurveClient(client, keyFor(server.Public)))
	for _, size := range []int{5, 300, 200 << 10} {
		body := strings.Repeat("b", size)
		reply, err := c.Request(ctx, srv.Addr(), env("id-1", body))
		if err != nil || string(reply.Body) != body {
			t.Fatalf("%d-byte request over CURVE: %v (reply %d bytes)", size, err, len(reply.Body))
		}
	}
	if cfg.Refused() != 0 {
		t.Fatalf("refused = %d before any refusal", cfg.Refused())
	}

	short := func(opts ...Option) error {
		c := newClient(t, append(opts, WithRequestTimeout(3*time.Second))...)
		_, err := c.Request(ctx, srv.Addr(), env("id-2", "x"))
		return err
	}
	if err := short(WithCurveClient(stranger, keyFor(server.Public))); err == nil {
		t.Error("a client whose key is not authorised was served")
	}
	if err := short(WithCurveClient(client, keyFor(stranger.Public))); err == nil {
		t.Error("a client expecting another server key was served")
	}
	if err := short(); err == nil {
		t.Error("a NULL client was served")
	}
	// The server counts a refusal as it closes the connection, which may be
	// just after the client has seen the close.
	waitFor(t, ctx, "three refusals counted", func() bool { return cfg.Refused() >= 3 })
	if got := cfg.Refused(); got != 3 {
		t.Errorf("refused = %d, want 3 (unauthorised, wrong server key, NULL)", got)
	}
	none := func(string) (curve.Key, bool) { return curve.Key{}, false }
	if err := short(WithCurveClient(client, none)); !errors.Is(err, ErrNoServerKey) {
		t.Errorf("no server key: %v, want ErrNoServerKey", err)
	}
	// The authorised client still works after all that.
	if _, err := c.Request(ctx, srv.Addr(), env("id-3", "again")); err != nil {
		t.Fatal(err)
	}
}

// A message bigger than the limit is refused after decryption too (on the
// wire every CURVE frame is a MESSAGE of its own, so the frame guard sees
// only one frame at a time).
func TestCurveMessageLimit(t *testing.T) {
	server, client := curveKeys(t), curveKeys(t)
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	done := make(chan *curve.Session, 1)
	go func() {
		s, err := curve.Server(b, b, &curve.ServerConfig{Keys: server}, nil)
		if err != nil {
			b.Close()
		}
		done <- s
	}()
	cs, err := curve.Client(a, a, client, server.Public, nil)
	ss := <-done
	if err != nil || ss == nil {
		t.Fatalf("handshake: %v", err)
	}
	cc := &curveConn{s: ss, max: 4 << 10}
	frame := func(flags byte, n int) []byte {
		f := cs.AppendMessage(nil, flags, bytes.Repeat([]byte("x"), n))
		return f[len(f)-(curve.MessageOverhead+n):] // the body, past the header
	}
	for i, step := range []struct {
		flags byte
		n     int
		ok    bool
	}{
		{curve.FlagMore, 3 << 10, true},
		{0, 1 << 10, true}, // 4 KiB in all: at the limit
		{curve.FlagMore, 3 << 10, true},
		{0, 2 << 10, false}, // 5 KiB in all
	} {
		_, _, err := cc.open(frame(step.flags, step.n))
		if (err == nil) != step.ok {
			t.Fatalf("frame %d: err %v, want ok=%v", i, err, step.ok)
		}
	}
}

func TestCurvePyzmqREQClient(t *testing.T) {
	py := pyzmqtest.Python(t)
	ctx := testCtx(t)
	server, client, stranger := curveKeys(t), curveKeys(t), curveKeys(t)
	cfg := &curve.ServerConfig{Keys: server, Authorize: onlyKeys(client.Public)}
	srv := startServer(t, echo, WithCurveServer(cfg))

	keys := pyzmqtest.CurveKeys{Public: client.Public.String(), Secret: client.Secret.String(), ServerKey: server.Public.String()}
	body := strings.Repeat("p", 1000)
	reply, err := pyzmqtest.CurveREQ(t, ctx, py, srv.Addr(), keys, 10*time.Second, 3, "py-1", "text/plain", body)
	if err != nil {
		t.Fatal(err)
	}
	if len(reply) != 3 || reply[0] != "py-1" || reply[2] != body {
		t.Fatalf("reply %q", reply)
	}

	// libzmq's heartbeats travel boxed as commands: our server must open
	// the PINGs and answer with boxed PONGs, or libzmq drops the
	// connection and the requests after the pauses fail.
	hb := keys
	hb.Heartbeat = 100 * time.Millisecond
	if reply, err := pyzmqtest.CurveREQ(t, ctx, py, srv.Addr(), hb, 5*time.Second, 3, "py-hb", "text/plain", "beat"); err != nil || reply[2] != "beat" {
		t.Fatalf("with heartbeats: %q, %v", reply, err)
	}
	if got := srv.Stats().Connections; got != 2 {
		t.Errorf("%d connections for two REQ sockets: a heartbeat went unanswered and libzmq reconnected", got)
	}

	for name, k := range map[string]pyzmqtest.CurveKeys{
		"wrong server key": {Public: client.Public.String(), Secret: client.Secret.String(), ServerKey: stranger.Public.String()},
		"unauthorised":     {Public: stranger.Public.String(), Secret: stranger.Secret.String(), ServerKey: server.Public.String()},
		"NULL client":      {},
	} {
		before := cfg.Refused()
		if _, err := pyzmqtest.CurveREQ(t, ctx, py, srv.Addr(), k, 1500*time.Millisecond, 1, "py-2", "text/plain", "x"); err == nil {
			t.Errorf("%s: answered", name)
		}
		if cfg.Refused() <= before {
			t.Errorf("%s: not counted as refused", name)
		}
	}
}

func TestCurveClientToPyzmqRouter(t *testing.T) {
	py := pyzmqtest.Python(t)
	ctx := testCtx(t)
	server, client, stranger := curveKeys(t), curveKeys(t), curveKeys(t)
	endpoint := pyzmqtest.CurveRouter(t, ctx, py, pyzmqtest.CurveKeys{Public: server.Public.String(), Secret: server.Secret.String()})

	c := newClient(t, WithCurveClient(client, keyFor(server.Public)))
	for _, body := range []string{"hello", strings.Repeat("z", 70<<10)} {
		reply, err := c.Request(ctx, endpoint, env("go-1", body))
		if err != nil || string(reply.Body) != "py:"+body {
			t.Fatalf("request to a pyzmq CURVE ROUTER: %v, reply %d bytes", err, len(reply.Body))
		}
	}
	res := c.Deliver(ctx, []string{endpoint}, env("go-2", "fan"))
	if len(res) != 1 || res[0].Err != nil {
		t.Fatalf("Deliver: %+v", res)
	}

	wrong := newClient(t, WithCurveClient(client, keyFor(stranger.Public)), WithRequestTimeout(3*time.Second))
	if _, err := wrong.Request(ctx, endpoint, env("go-3", "x")); err == nil {
		t.Fatal("a client expecting another server key was answered by the pyzmq ROUTER")
	}
	null := newClient(t, WithRequestTimeout(3*time.Second))
	if _, err := null.Request(ctx, endpoint, env("go-4", "x")); err == nil {
		t.Fatal("a NULL client was answered by the pyzmq CURVE ROUTER")
	}
}

// The handshake obeys the connection's context like the NULL one.
func TestCurveHandshakeCancelled(t *testing.T) {
	server, client := curveKeys(t), curveKeys(t)
	srv := startServer(t, echo, WithCurveServer(&curve.ServerConfig{Keys: server}))
	c := newClient(t, WithCurveClient(client, keyFor(server.Public)))
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	if _, err := c.Request(ctx, srv.Addr(), env("c", "x")); err == nil {
		t.Fatal("a cancelled request succeeded")
	}
}

// A CURVE server refuses a handshake frame announcing more than its
// command can hold as soon as it reads the header, and counts it; the
// socket serves others on.
func TestCurveServerRefusesOversizedHello(t *testing.T) {
	ctx := testCtx(t)
	server, client := curveKeys(t), curveKeys(t)
	cfg := &curve.ServerConfig{Keys: server}
	srv := startServer(t, echo, WithCurveServer(cfg))
	for _, hdr := range [][]byte{
		{0x06, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00}, // a 1 TiB command
		{0x04, 0xC8, 0x05, 'H', 'E', 'L', 'L', 'O'},            // HELLO, 200 bytes announced, 6 sent
		{0x00, 0x05, 'h', 'e', 'l', 'l', 'o'},                  // a message instead of HELLO
	} {
		before := cfg.Refused()
		c, err := net.DialTimeout("tcp", tcpAddr(srv.Addr()), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(append(curveGreeting(false), hdr...)); err != nil {
			t.Fatal(err)
		}
		// The server's greeting, then the end of the connection (the
		// truncated HELLO ends at the handshake timeout or when we close).
		buf := make([]byte, 256)
		n := 0
		for {
			k, err := c.Read(buf[n:])
			n += k
			if err != nil || n == len(buf) {
				break
			}
			if n >= zmtpGreetingSize && hdr[0] == 0x04 {
				break // the truncated HELLO: the server waits for the rest
			}
		}
		c.Close()
		if n < zmtpGreetingSize || string(buf[12:17]) != "CURVE" {
			t.Fatalf("header %x: the server's greeting was %q", hdr, buf[:n])
		}
		deadline := time.Now().Add(10 * time.Second)
		for cfg.Refused() == before {
			if time.Now().After(deadline) {
				t.Fatalf("header %x not counted as refused", hdr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	c := newClient(t, WithCurveClient(client, keyFor(server.Public)))
	if _, err := c.Request(ctx, srv.Addr(), env("after", "ok")); err != nil {
		t.Fatal(err)
	}
}
