package transport

import (
	"github.com/cmbs/cmbs/internal/pyzmqtest"

	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Every test must leave no goroutine behind: no PUB sockets are used,
	// so none of zmq4's known leaks needs ignoring.
	goleak.VerifyTestMain(m)
}

// testCtx bounds a whole test: zmq4 failure modes hang rather than fail.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func echo(_ context.Context, req Envelope) (Envelope, error) {
	return req.Reply(req.MimeType, req.Body), nil
}

func startServer(t testing.TB, h Handler, opts ...Option) *Server {
	t.Helper()
	srv, err := Listen(testCtx(t), "tcp://127.0.0.1:0", h, opts...)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func newClient(t testing.TB, opts ...Option) *Client {
	t.Helper()
	c := NewClient(opts...)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// freeEndpoint returns a loopback endpoint nobody listens on (yet).
func freeEndpoint(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "tcp://" + addr
}

func tcpAddr(endpoint string) string { return strings.TrimPrefix(endpoint, "tcp://") }

func env(id, body string) Envelope {
	return Envelope{ID: id, MimeType: "application/occi+json", Body: []byte(body)}
}

// pyRequest sends one envelope from a pyzmq REQ socket and returns the
// reply frames.
func pyRequest(t *testing.T, ctx context.Context, py, endpoint string, e Envelope, count int) []string {
	t.Helper()
	return pyzmqtest.Run(t, ctx, py, "req_client.py", endpoint, e.ID, e.MimeType, string(e.Body), fmt.Sprint(count))
}
