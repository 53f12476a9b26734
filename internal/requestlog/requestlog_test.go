package requestlog_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cmbs/cmbs/internal/requestlog"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestMiddleware(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	var seen []string
	var mu sync.Mutex
	h := requestlog.Middleware(log, func(*http.Request) string { return "/things/{id}" },
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, requestlog.ID(r.Context()))
			mu.Unlock()
			if r.URL.Path == "/things/none" {
				http.Error(w, "no such thing", http.StatusNotFound)
				return
			}
			_, _ = io.WriteString(w, "thing")
		}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	tests := []struct {
		path, id string
		keep     bool
		status   int
	}{
		{"/things/1", "req-1", true, 200},
		{"/things/2", "00f067aa0ba902b7:4bf92f3577b34da6a3ce929d0e0e4736/x+y=", true, 200},
		{"/things/none", "", false, 404},
		{"/things/3", strings.Repeat("a", requestlog.MaxIDLength), true, 200},
		{"/things/4", strings.Repeat("a", requestlog.MaxIDLength+1), false, 200},
		{"/things/5", "two words", false, 200},
		{"/things/6", "tab\there", false, 200},
		{"/things/7", "é", false, 200},
	}
	var echoed []string
	for _, tt := range tests {
		req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tt.id != "" {
			req.Header.Set(requestlog.Header, tt.id)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		got := resp.Header.Get(requestlog.Header)
		if tt.keep && got != tt.id || !tt.keep && (got == "" || got == tt.id || len(got) != 26) {
			t.Errorf("%s with id %q: echoed %q (keep %v)", tt.path, tt.id, got, tt.keep)
		}
		echoed = append(echoed, got)
	}
	lines := logs.lines(t)
	if len(lines) != len(tests) {
		t.Fatalf("%d log lines for %d requests", len(lines), len(tests))
	}
	for i, l := range lines {
		tt := tests[i]
		if l["msg"] != "request" || l["level"] != "INFO" || l["method"] != "GET" || l["route"] != "/things/{id}" ||
			l["path"] != tt.path || l["status"] != float64(tt.status) || l["request_id"] != echoed[i] || seen[i] != echoed[i] {
			t.Errorf("line %d: %v (echoed %q, handler saw %q)", i, l, echoed[i], seen[i])
		}
		if tt.status == 200 && l["bytes"] != 5.0 {
			t.Errorf("line %d: bytes %v, want 5", i, l["bytes"])
		}
	}
}

// TestMiddlewareQuietAboveInfo: at warn, no request line is written.
func TestMiddlewareQuietAboveInfo(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := requestlog.Middleware(log, func(*http.Request) string { return "/" }, http.NotFoundHandler())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Header().Get(requestlog.Header) == "" {
		t.Error("no request id echoed")
	}
	if n := len(logs.lines(t)); n != 0 {
		t.Errorf("%d lines at warn", n)
	}
}
