// Package pyzmqtest runs the project's pyzmq interop scripts from tests:
// Debian's python3 with python3-zmq (libzmq) talking to our pure-Go sockets
// proves the wire is plain ZMTP.
package pyzmqtest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Python returns a python3 that can import zmq: Debian's /usr/bin/python3
// first (the python3 first on PATH here may be a pyenv one without zmq).
// Without one it skips t, or fails it when CI=true, where the interop tests
// must run.
func Python(t testing.TB) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil && p != candidates[0] {
		candidates = append(candidates, p)
	}
	for _, py := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := exec.CommandContext(ctx, py, "-c", "import zmq").Run()
		cancel()
		if err == nil {
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

// REQ sends frames as one multipart message count times from a pyzmq REQ
// socket (REQ adds the empty delimiter) to endpoint, and returns the frames
// of the last reply. ctx bounds the run; the script gives up after 10 s
// without a reply. It is CurveREQ's NULL client.
func REQ(t testing.TB, ctx context.Context, py, endpoint string, count int, frames ...string) []string {
	t.Helper()
	reply, err := CurveREQ(t, ctx, py, endpoint, CurveKeys{}, 10*time.Second, count, frames...)
	if err != nil {
		t.Fatalf("python req: %v", err)
	}
	return reply
}
