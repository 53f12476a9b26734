package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// pythonWithZMQ returns a python3 that can import zmq (Debian's
// python3-zmq), or skips the test — except under CI=true, where the
// interop test must run.
func pythonWithZMQ(t *testing.T) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, py := range candidates {
		if exec.Command(py, "-c", "import zmq").Run() == nil {
			return py
		}
	}
	msg := "no python3 with the zmq module (Debian: apt-get install -y python3-zmq; tried " + strings.Join(candidates, ", ") + ")"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true requires the interop test to run")
	}
	t.Skip(msg)
	return ""
}

// pyRequest sends one envelope from a pyzmq REQ socket and returns the
// reply frames.
func pyRequest(t *testing.T, ctx context.Context, py, endpoint string, e Envelope, count int) []string {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "req_client.py"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, py, script, endpoint, e.ID, e.MimeType, string(e.Body), fmt.Sprint(count))
	// The pyenv python3 first on PATH lacks zmq; give the child the
	// system PATH so nothing it spawns picks that one up either.
	cmd.Env = append(os.Environ(), "PATH=/usr/local/bin:/usr/bin:/bin")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("python REQ client: %v\n%s", err, stderr)
	}
	var reply []string
	if err := json.Unmarshal(out, &reply); err != nil {
		t.Fatalf("python output %q: %v", out, err)
	}
	return reply
}
