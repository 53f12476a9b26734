package couchpeer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// client never keeps connections, so goleak sees no idle-connection
// goroutines after the tests.
func do(t *testing.T, method, url, body string) *http.Response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func decodeBody(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("decoding %s: %v", resp.Request.URL, err)
	}
	return v
}

func TestPeerLifecycleAndFixes(t *testing.T) {
	if os.Getenv(EnvURL) != "" {
		t.Skipf("%s is set: this test is about the peer itself", EnvURL)
	}
	begin := time.Now()
	base := URLForTest(t)
	t.Logf("peer up at %s in %v", base, time.Since(begin))
	if !strings.HasPrefix(base, "http://127.0.0.1:") || !strings.HasSuffix(base, "/") {
		t.Fatalf("URL = %q", base)
	}
	db := base + DBForTest(t, base)
	if resp := do(t, "PUT", db, ""); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create db: %s", resp.Status)
	}

	// Fix 1: ETag is the quoted revision on writes, GET, HEAD and DELETE.
	put := do(t, "PUT", db+"/%2Fa%2Fb", `{"x":1}`)
	rev, _ := decodeBody(t, put)["rev"].(string)
	if put.StatusCode != http.StatusCreated || rev == "" || put.Header.Get("ETag") != `"`+rev+`"` {
		t.Fatalf("PUT: %s, rev %q, ETag %q", put.Status, rev, put.Header.Get("ETag"))
	}
	for _, m := range []string{"GET", "HEAD"} {
		if got := do(t, m, db+"/%2Fa%2Fb", "").Header.Get("ETag"); got != `"`+rev+`"` {
			t.Fatalf("%s ETag = %q, want %q", m, got, `"`+rev+`"`)
		}
	}
	del := do(t, "DELETE", db+"/%2Fa%2Fb?rev="+rev, "")
	delRev, _ := decodeBody(t, del)["rev"].(string)
	if del.StatusCode != http.StatusOK || del.Header.Get("ETag") != `"`+delRev+`"` {
		t.Fatalf("DELETE: %s, ETag %q, rev %q", del.Status, del.Header.Get("ETag"), delRev)
	}
	if got := do(t, "GET", db, "").Header.Get("ETag"); got != "" {
		t.Fatalf("database info has the weak body ETag %q", got)
	}

	// Fix 2: no compression, even when asked for it.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", db+"/_changes", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Close = true
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ce := resp.Header.Get("Content-Encoding"); ce != "" {
		t.Fatalf("_changes answered with Content-Encoding %q", ce)
	}

	// Fix 3: _changes?filter=_selector filters instead of killing the peer.
	do(t, "PUT", db+"/b", `{"type":"x"}`)
	do(t, "PUT", db+"/c", `{"type":"y"}`)
	sel := decodeBody(t, do(t, "POST", db+"/_changes?filter=_selector", `{"selector":{"type":"y"}}`))
	if res, _ := sel["results"].([]any); len(res) != 1 || res[0].(map[string]any)["id"] != "c" {
		t.Fatalf("_selector changes = %v, want only c", sel)
	}
	if resp := do(t, "POST", db+"/_changes?filter=_selector", `{}`); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("_selector without a selector: %s, want 400", resp.Status)
	}

	// Fix 4: a longpoll feed with nothing to report ends after ?timeout=.
	start := time.Now()
	lp := decodeBody(t, do(t, "GET", db+"/_changes?feed=longpoll&since=now&timeout=300", ""))
	if el := time.Since(start); el < 250*time.Millisecond || el > 5*time.Second {
		t.Fatalf("longpoll returned after %v, want ~300ms", el)
	}
	if res, _ := lp["results"].([]any); len(res) != 0 || lp["last_seq"] == nil {
		t.Fatalf("longpoll timeout answer = %v", lp)
	}
	// …and still wakes on a write.
	wrote := make(chan struct{})
	defer func() { <-wrote }()
	go func() {
		defer close(wrote)
		time.Sleep(100 * time.Millisecond)
		req, _ := http.NewRequest("PUT", db+"/d", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Close = true
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	woke := decodeBody(t, do(t, "GET", db+"/_changes?feed=longpoll&since=now&timeout=10000", ""))
	if res, _ := woke["results"].([]any); len(res) != 1 || res[0].(map[string]any)["id"] != "d" {
		t.Fatalf("longpoll = %v, want the write of d", woke)
	}
	// The peer survived all of the above.
	if resp := do(t, "GET", base, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", resp.Status)
	}
}

func TestStopLeavesNoProcess(t *testing.T) {
	dir, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(t.Context(), Options{Dir: dir, Stderr: os.Stderr})
	if err != nil {
		unavailable(t, err)
	}
	pid := p.Pid()
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("peer process %d still exists after Stop (kill -0: %v)", pid, err)
	}
	req, _ := http.NewRequest("GET", p.URL(), nil)
	req.Close = true
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("peer still answers at %s after Stop", p.URL())
	}
}

func TestStartErrors(t *testing.T) {
	t.Run("NotInstalled", func(t *testing.T) {
		_, err := Start(t.Context(), Options{Dir: t.TempDir()})
		if !errors.Is(err, ErrNotInstalled) {
			t.Fatalf("Start in an empty dir: %v, want ErrNotInstalled", err)
		}
		_, err = Start(t.Context(), Options{Node: filepath.Join(t.TempDir(), "no-node")})
		if err == nil {
			t.Fatal("Start with a missing node binary succeeded")
		}
	})
	t.Run("ExitsEarly", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "node_modules", "express-pouchdb"), 0o755); err != nil {
			t.Fatal(err)
		}
		script := "process.stderr.write('boom\\n'); process.exit(3);"
		if err := os.WriteFile(filepath.Join(dir, "couch-peer.js"), []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Start(t.Context(), Options{Dir: dir})
		if err == nil || errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "boom") {
			if errors.Is(err, ErrNotInstalled) {
				unavailable(t, err) // no node here
			}
			t.Fatalf("Start of a crashing peer: %v, want its stderr in the error", err)
		}
	})
	t.Run("NeverListens", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "node_modules", "express-pouchdb"), 0o755); err != nil {
			t.Fatal(err)
		}
		// Ignores SIGTERM too (once node got that far), so Start has to kill it.
		script := "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000);"
		if err := os.WriteFile(filepath.Join(dir, "couch-peer.js"), []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		_, err := Start(t.Context(), Options{Dir: dir, StartTimeout: 300 * time.Millisecond, StopGrace: 200 * time.Millisecond})
		if errors.Is(err, ErrNotInstalled) {
			unavailable(t, err)
		}
		if err == nil || !strings.Contains(err.Error(), "not listening") {
			t.Fatalf("Start of a silent peer: %v", err)
		}
		if el := time.Since(begin); el > 5*time.Second {
			t.Fatalf("Start took %v", el)
		}
	})
	t.Run("ContextCanceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := Start(ctx, Options{})
		if errors.Is(err, ErrNotInstalled) {
			unavailable(t, err)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Start with a canceled context: %v", err)
		}
	})
}

func TestReadyWriter(t *testing.T) {
	ready := make(chan string, 1)
	var rest bytes.Buffer
	w := &readyWriter{ready: ready, rest: &rest}
	for _, chunk := range []string{"warn: x\nlisten", "ing http://127.0.0.1:1/\nlater", " line\n"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if got := <-ready; got != "http://127.0.0.1:1/" {
		t.Fatalf("ready = %q", got)
	}
	if rest.String() != "warn: x\nlater line\n" {
		t.Fatalf("rest = %q", rest.String())
	}
}

func TestDBForTest(t *testing.T) {
	name := DBForTest(t, "http://127.0.0.1:1/") // cleanup's delete fails quietly
	if !strings.HasPrefix(name, "test_testdbfortest_") || len(name) != len("test_testdbfortest_")+12 {
		t.Fatalf("name = %q", name)
	}
	if got := dbNamePart("TestX/Sub Case/é"); got != "testx-sub-case--" {
		t.Fatalf("dbNamePart = %q", got)
	}
}
