package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRecoverPanics(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "fine") })
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Half-Done", "yes")
		panic("secret internals")
	})
	mux.HandleFunc("/panic-after-write", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "partial")
		panic("too late")
	})
	srv := httptest.NewServer(recoverPanics(logger, mux))
	// net/http logs the aborted connection itself; keep it out of the test output.
	srv.Config.ErrorLog = slog.NewLogLogger(slog.NewTextHandler(io.Discard, nil), slog.LevelError)
	t.Cleanup(srv.Close)

	get := func(path string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		if err != nil {
			return nil, nil, err
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}

	resp, body, err := get("/ok")
	if err != nil || resp.StatusCode != 200 || string(body) != "fine" {
		t.Fatalf("/ok: %v %v %q", err, resp, body)
	}

	resp, body, err = get("/panic")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 500 || resp.Header.Get("Content-Type") != "application/json" ||
		string(body) != `{"error":{"status":500,"message":"internal error"}}`+"\n" {
		t.Fatalf("/panic: status %d, type %q, body %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if resp.Header.Get("X-Half-Done") != "" {
		t.Error("headers prepared before the panic leaked into the 500")
	}
	if strings.Contains(string(body), "secret") || strings.Contains(string(body), "goroutine") {
		t.Errorf("body leaks internals: %q", body)
	}
	if l := logs.String(); !strings.Contains(l, "secret internals") || !strings.Contains(l, "recover_test.go") {
		t.Errorf("panic and stack not logged: %s", l)
	}

	// The response has started: the client must see a broken response, not a
	// complete-looking one.
	// Depending on what was flushed, that is no response or a short body.
	if _, body, err = get("/panic-after-write"); err == nil {
		t.Fatalf("/panic-after-write: complete response %q, want the connection aborted", body)
	}
}
