package main

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

// TestBinaryShutdownWithOpenEventStream: a browser following
// /console/events does not hold cmbsd's shutdown: SIGTERM ends the stream
// and cmbsd exits 0 (before --shutdown-timeout would cut requests off and
// report a failure).
func TestBinaryShutdownWithOpenEventStream(t *testing.T) {
	p := startCmbsd(t, t.TempDir(), nil, "--listen", "127.0.0.1:0", "--layers-file", "none")
	base := "http://" + p.waitListening(t)
	ctx, cancel := context.WithTimeout(t.Context(), exitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/console/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("GET /console/events: %d %s", resp.StatusCode, ct)
	}
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("first line %q: %v", line, err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM with an open event stream:\n%s", code, p.stderr.String())
	}
	if out := p.stderr.String(); strings.Contains(out, "requests still running") {
		t.Fatalf("the event stream held the shutdown:\n%s", out)
	}
}
