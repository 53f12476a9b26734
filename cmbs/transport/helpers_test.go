package transport

import (
	"github.com/cmbs/cmbs/internal/pyzmqtest"
	"sync"

	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
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

func tcpAddr(endpoint string) string { return strings.TrimPrefix(endpoint, "tcp://") }

func env(id, body string) Envelope {
	return Envelope{ID: id, MimeType: "application/occi+json", Body: []byte(body)}
}

// pyRequest sends one envelope from a pyzmq REQ socket and returns the
// reply frames.
func pyRequest(t *testing.T, ctx context.Context, py, endpoint string, e Envelope, count int) []string {
	t.Helper()
	return pyzmqtest.REQ(t, ctx, py, endpoint, count, e.ID, e.MimeType, string(e.Body))
}

func nullSecurity() zmq4.Security { return null.Security() }

// inParallel runs f(0) … f(n-1) on goroutines of their own, waits for
// them all, and reports each error f returned.
func inParallel(t testing.TB, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
