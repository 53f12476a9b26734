package pyzmqtest

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

//go:embed curve.py
var curveScript []byte

// CurveKeys are the Z85 keys of a pyzmq CURVE socket: its own pair, and for
// a client the server key it expects. A client with no Public is a NULL
// client.
type CurveKeys struct {
	Public, Secret, ServerKey string
	// Heartbeat, when set, turns libzmq's ZMTP heartbeats on (CurveREQ):
	// PINGs every Heartbeat, the connection dropped without an answer
	// within three, and four between requests.
	Heartbeat time.Duration
}

func (k CurveKeys) env(timeout time.Duration) []string {
	return append(os.Environ(), "PATH=/usr/local/bin:/usr/bin:/bin",
		"CURVE_PUBLIC="+k.Public, "CURVE_SECRET="+k.Secret, "CURVE_SERVERKEY="+k.ServerKey,
		"TIMEOUT_MS="+strconv.FormatInt(timeout.Milliseconds(), 10),
		"HEARTBEAT_MS="+strconv.FormatInt(k.Heartbeat.Milliseconds(), 10))
}

func writeScript(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "curve.py")
	if err := os.WriteFile(path, curveScript, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// CurveREQ sends frames count times from a pyzmq REQ socket with keys to
// endpoint and returns the last reply's frames, or an error when none came
// within timeout (a refused handshake looks like that to libzmq, which
// retries quietly).
func CurveREQ(t testing.TB, ctx context.Context, py, endpoint string, keys CurveKeys, timeout time.Duration, count int, frames ...string) ([]string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, py, append([]string{writeScript(t), "req", endpoint, strconv.Itoa(count)}, frames...)...)
	cmd.Env = keys.env(timeout)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("curve.py req: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, err
	}
	var reply []string
	if err := json.Unmarshal(out, &reply); err != nil {
		return nil, fmt.Errorf("curve.py output %q: %w", out, err)
	}
	return reply, nil
}

// CurveRouter starts a pyzmq CURVE ROUTER (keys: its own pair) on
// 127.0.0.1 that answers every envelope with its body prefixed "py:", and
// returns its endpoint. It stops when the test ends.
func CurveRouter(t testing.TB, ctx context.Context, py string, keys CurveKeys) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, py, writeScript(t), "router")
	cmd.Env = keys.env(10 * time.Second)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPath := filepath.Join(t.TempDir(), "stderr")
	errFile, err := os.Create(errPath)
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	cmd.Stderr = errFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close() // the script's signal to stop
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		msg, _ := os.ReadFile(errPath)
		t.Fatalf("curve.py router did not print its endpoint: %v\n%s", err, msg)
	}
	return strings.TrimSpace(line)
}
