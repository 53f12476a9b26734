package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fetchServer is a loopback HTTP server with the routes the Fetch tests need; it records the
// X-Request-Id of each request by path.
type fetchServer struct {
	*httptest.Server
	mu   sync.Mutex
	ids  map[string][]string
	stop chan struct{} // closed at cleanup: releases slow handlers
}

const payload = "PK\x03\x04 pretend archive bytes"

func newFetchServer(t *testing.T) *fetchServer {
	t.Helper()
	s := &fetchServer{ids: map[string][]string{}, stop: make(chan struct{})}
	mux := http.NewServeMux()
	ok := func(ct string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if ct == "" {
				w.Header()["Content-Type"] = nil // no sniffing: no Content-Type at all
			} else {
				w.Header().Set("Content-Type", ct)
			}
			_, _ = w.Write([]byte(payload))
		}
	}
	mux.HandleFunc("/app.zip", ok("application/zip"))
	mux.HandleFunc("/app.tgz", ok("application/x-gtar"))
	mux.HandleFunc("/octets", ok("application/octet-stream"))
	mux.HandleFunc("/untyped", ok(""))
	mux.HandleFunc("/text", ok("text/plain"))
	mux.HandleFunc("/html", ok("text/html; charset=utf-8"))
	mux.HandleFunc("/xhtml", ok("application/xhtml+xml"))
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/app.zip", http.StatusFound)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { // Content-Length announced
		w.Header().Set("Content-Type", "application/zip")
		_, _ = w.Write(bytes.Repeat([]byte("x"), 4096))
	})
	mux.HandleFunc("/big-chunked", func(w http.ResponseWriter, r *http.Request) { // no length
		w.Header().Set("Content-Type", "application/zip")
		for range 8 {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 512))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/exact", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/zip")
		w.(http.Flusher).Flush()
		_, _ = w.Write(bytes.Repeat([]byte("x"), 1024))
	})
	mux.HandleFunc("/slow-body", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/zip")
		_, _ = w.Write([]byte("PK\x03\x04"))
		w.(http.Flusher).Flush()
		s.hold(r)
	})
	mux.HandleFunc("/slow-headers", func(w http.ResponseWriter, r *http.Request) { s.hold(r) })
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ids[r.URL.Path] = append(s.ids[r.URL.Path], r.Header.Get("X-Request-Id"))
		s.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		close(s.stop)
		s.Close()
	})
	return s
}

// hold blocks a handler until the client goes away or the test ends (bounded either way).
func (s *fetchServer) hold(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.stop:
	case <-time.After(30 * time.Second):
	}
}

func (s *fetchServer) idsFor(path string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids[path]...)
}

func TestFetch(t *testing.T) {
	srv := newFetchServer(t)
	cases := []struct {
		path    string
		f       Fetcher
		ok      bool
		errHas  string
		timeout bool
	}{
		{path: "/app.zip", ok: true},
		{path: "/app.tgz", ok: true},
		{path: "/octets", ok: true},
		{path: "/untyped", ok: true},
		{path: "/redirect", ok: true},
		{path: "/exact", f: Fetcher{MaxBytes: 1024}, ok: true},
		{path: "/missing", errHas: "404"},
		{path: "/text", errHas: `content type "text/plain" is not an archive`},
		{path: "/html", errHas: "is not an archive"},
		{path: "/xhtml", errHas: "is not an archive"},
		{path: "/big", f: Fetcher{MaxBytes: 1024}, errHas: "over the 1024-byte cap"},
		{path: "/big-chunked", f: Fetcher{MaxBytes: 1024}, errHas: "over the 1024-byte cap"},
		{path: "/slow-body", f: Fetcher{Timeout: 300 * time.Millisecond}, errHas: "timed out after 300ms", timeout: true},
		{path: "/slow-headers", f: Fetcher{Timeout: 300 * time.Millisecond}, errHas: "timed out after 300ms", timeout: true},
	}
	for _, c := range cases {
		t.Run(strings.TrimPrefix(c.path, "/"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var buf bytes.Buffer
			id := "req-" + c.path
			n, err := c.f.Fetch(ctx, srv.URL+c.path, id, &buf)
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				if buf.Len() != int(n) || n == 0 {
					t.Fatalf("n=%d, wrote %d", n, buf.Len())
				}
				if c.path != "/exact" && buf.String() != payload {
					t.Fatalf("body %q", buf.String())
				}
			} else {
				if !errors.Is(err, ErrDownload) || State(err) != "download failure" {
					t.Fatalf("err %v, want a download failure", err)
				}
				if !strings.Contains(err.Error(), c.errHas) {
					t.Fatalf("err %q does not say %q", err, c.errHas)
				}
				if c.timeout != errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err %v: deadline exceeded %v, want %v", err, !c.timeout, c.timeout)
				}
				if max := c.f.MaxBytes; max > 0 && int64(buf.Len()) > max {
					t.Fatalf("wrote %d bytes, over the %d cap", buf.Len(), max)
				}
			}
			// SA-16's server side: the archive GET carries the request id (also after a redirect).
			if got := srv.idsFor(c.path); len(got) != 1 || got[0] != id {
				t.Fatalf("server saw X-Request-Id %q on %s", got, c.path)
			}
			if c.path == "/redirect" {
				if got := srv.idsFor("/app.zip"); len(got) == 0 || got[len(got)-1] != id {
					t.Fatalf("redirect target saw X-Request-Id %q", got)
				}
			}
		})
	}
}

func TestFetchNoRequestID(t *testing.T) {
	srv := newFetchServer(t)
	var f Fetcher
	if _, err := f.Fetch(context.Background(), srv.URL+"/octets", "", &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if got := srv.idsFor("/octets"); len(got) != 1 || got[0] != "" {
		t.Fatalf("X-Request-Id %q sent without one", got)
	}
}

func TestFetchCanceled(t *testing.T) {
	srv := newFetchServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var f Fetcher
	_, err := f.Fetch(ctx, srv.URL+"/app.zip", "", &bytes.Buffer{})
	if !errors.Is(err, ErrDownload) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestFetchFailures(t *testing.T) {
	srv := newFetchServer(t)
	// A port that refuses: listen, note the address, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := fmt.Sprintf("http://%s/app.zip", l.Addr())
	l.Close()
	cases := []struct {
		name, url string
		w         interface{ Write([]byte) (int, error) }
		errHas    string
	}{
		{"connection refused", refused, &bytes.Buffer{}, "refused"},
		{"unsupported scheme", "ftp://127.0.0.1/app.zip", &bytes.Buffer{}, "unsupported protocol scheme"},
		{"bad URL", "http://[::1", &bytes.Buffer{}, "bad source URL"},
		{"writer fails", srv.URL + "/app.zip", failingWriter{}, "writing the archive: disk full"},
		{"secrets kept out of connection errors", strings.Replace(refused, "http://", "http://user:secret@", 1) + "?token=secret", &bytes.Buffer{}, "refused"},
		{"secrets kept out of errors", "http://user:secret@" + strings.TrimPrefix(srv.URL, "http://") + "/missing?token=secret", &bytes.Buffer{}, "404"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := (&Fetcher{}).Fetch(ctx, c.url, "", c.w)
			if !errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("err %v, want a download failure saying %q", err, c.errHas)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("err %q leaks a secret", err)
			}
		})
	}
}
