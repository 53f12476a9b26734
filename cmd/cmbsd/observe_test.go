package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cmbs/cmbs/internal/metrics"
	"github.com/cmbs/cmbs/internal/requestlog"
)

// request sends one request with alice's credentials and returns the
// response with its body read.
func request(t *testing.T, method, url, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.SetBasicAuth("alice", "wonderland")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestBinaryMetrics: /metrics needs the same credentials as every route,
// parses as the Prometheus text format, labels requests by route pattern
// (never by entity id) and has the store, broker and Go runtime families.
func TestBinaryMetrics(t *testing.T) {
	users, err := filepath.Abs(filepath.Join("testdata", "users"))
	if err != nil {
		t.Fatal(err)
	}
	p := startCmbsd(t, t.TempDir(), nil, "--listen", "127.0.0.1:0", "--users", users)
	base := "http://" + p.waitListening(t)

	if got := get(t, base+"/metrics", "", ""); got != http.StatusUnauthorized {
		t.Fatalf("/metrics without credentials: %d, want 401", got)
	}
	ctype := http.Header{"Content-Type": {"application/occi+json"}}
	for _, id := range []string{"vm1", "vm2"} {
		body := `{"resources":[{"kind":"http://schemas.ogf.org/occi/infrastructure#compute","id":"` + id + `"}]}`
		if resp, b := request(t, "POST", base+"/compute/", body, ctype); resp.StatusCode != http.StatusCreated {
			t.Fatalf("create %s: %d %s", id, resp.StatusCode, b)
		}
		if resp, _ := request(t, "GET", base+"/compute/"+id, "", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("get %s: %d", id, resp.StatusCode)
		}
	}
	request(t, "GET", base+"/compute/nope", "", nil)
	request(t, "GET", base+"/-/status", "", nil)
	request(t, "GET", base+"/console/app.js", "", nil)
	request(t, "GET", base+"/console/style.css", "", nil)

	resp, body := request(t, "GET", base+"/metrics", "", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, pr := range problems {
		if strings.HasPrefix(pr.Metric, "cmbs_") {
			t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
		}
	}
	requests := map[string]float64{}
	for _, m := range fams["cmbs_http_requests_total"].GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		requests[l["method"]+" "+l["route"]+" "+l["code"]] = m.GetCounter().GetValue()
		for _, v := range l {
			if strings.Contains(v, "vm1") || strings.Contains(v, "nope") {
				t.Errorf("a raw path in a label: %v", l)
			}
		}
	}
	for key, want := range map[string]float64{
		"POST /compute/ 201":    2,
		"GET /compute/{id} 200": 2,
		"GET /compute/{id} 404": 1,
		"GET /-/status 200":     1,
		"GET /console/ 200":     2, // one label for the console's files
		"GET /metrics 401":      1,
	} {
		if requests[key] != want {
			t.Errorf("requests %q = %v, want %v (all: %v)", key, requests[key], want, requests)
		}
	}
	for _, name := range []string{
		"cmbs_http_request_duration_seconds", "cmbs_store_operations_total", "cmbs_store_operation_duration_seconds",
		"cmbs_broker_deliveries_sent_total", "cmbs_broker_deliveries_received_total", "cmbs_broker_deliveries_failed_total",
		"cmbs_broker_duplicates_total", "cmbs_broker_deliveries_in_flight", "cmbs_broker_discovery_runs_total",
		"cmbs_transport_requests_total", "go_goroutines", "process_resident_memory_bytes",
	} {
		if fams[name] == nil {
			t.Errorf("no %s in /metrics", name)
		}
	}
}

// jsonLines collects the JSON log lines run writes and reports the
// listening address.
type jsonLines struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	addr  chan string
	found bool
}

func (w *jsonLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.found {
		for _, line := range w.lines() {
			if line["msg"] == "listening" {
				w.found = true
				w.addr <- line["addr"].(string)
				break
			}
		}
	}
	return len(p), nil
}

// lines decodes the complete lines so far; w.mu is held.
func (w *jsonLines) lines() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(w.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func (w *jsonLines) all() []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines()
}

// TestRequestLogJSON: with --log-format json every line is a JSON object,
// and every request has one info line with its method, route, status,
// bytes, duration and request id; a client's X-Request-Id is echoed when it
// is a sane token and replaced otherwise.
func TestRequestLogJSON(t *testing.T) {
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stderr := &jsonLines{addr: make(chan string, 1)}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"--listen", "127.0.0.1:0", "--log-format", "json"}, env(nil), io.Discard, stderr)
	}()
	var base string
	select {
	case addr := <-stderr.addr:
		base = "http://" + addr
	case c := <-code:
		t.Fatalf("run returned %d before listening:\n%s", c, stderr.buf.String())
	case <-time.After(testStartTimeout):
		t.Fatal("not listening")
	}

	resp, body := request(t, "GET", base+"/-/", "", http.Header{"X-Request-Id": {"trace-42.a/b"}})
	if got := resp.Header.Get("X-Request-Id"); got != "trace-42.a/b" {
		t.Errorf("echoed X-Request-Id %q, want the client's", got)
	}
	generated := map[string]bool{}
	for _, bad := range []string{"", "has space", strings.Repeat("x", 129), "quote\"d"} {
		resp, _ := request(t, "GET", base+"/compute/x", "", http.Header{"X-Request-Id": {bad}})
		got := resp.Header.Get("X-Request-Id")
		if got == "" || got == bad || generated[got] {
			t.Errorf("X-Request-Id %q answered with %q, want a fresh id", bad, got)
		}
		generated[got] = true
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("run = %d", c)
		}
	case <-time.After(exitTimeout):
		t.Fatal("run did not return after cancel")
	}

	var requests []map[string]any
	for _, l := range stderr.all() {
		if l["msg"] == "request" {
			requests = append(requests, l)
		}
	}
	if len(requests) != 5 {
		t.Fatalf("%d request lines, want 5:\n%s", len(requests), stderr.buf.String())
	}
	first := requests[0]
	for k, want := range map[string]any{"level": "INFO", "method": "GET", "route": "/-/", "path": "/-/",
		"status": 200.0, "bytes": float64(len(body)), "request_id": "trace-42.a/b"} {
		if first[k] != want {
			t.Errorf("request line %s = %v, want %v: %v", k, first[k], want, first)
		}
	}
	if d, _ := first["duration"].(float64); d <= 0 {
		t.Errorf("duration %v: %v", first["duration"], first)
	}
	for _, l := range requests[1:] {
		if l["route"] != "/compute/{id}" || l["status"] != 404.0 || !generated[l["request_id"].(string)] {
			t.Errorf("request line %v", l)
		}
	}
}

func TestLogFormatFlag(t *testing.T) {
	if _, err := parseConfig([]string{"--log-format", "xml"}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "log-format") {
		t.Errorf("--log-format xml: %v", err)
	}
	cfg, err := parseConfig(nil, env(map[string]string{"CMBS_LOG_FORMAT": "JSON"}), io.Discard)
	if err != nil || cfg.LogFormat != "json" {
		t.Errorf("CMBS_LOG_FORMAT=JSON: %q %v", cfg.LogFormat, err)
	}
	if cfg, _ := parseConfig(nil, env(nil), io.Discard); cfg.LogFormat != "text" {
		t.Errorf("default log format %q", cfg.LogFormat)
	}
}

// BenchmarkObservation is what metrics and the request log add to one
// request, without the network: a handler writing 1 KiB, bare and wrapped
// as cmbsd wraps the OCCI server (request log as JSON into a file).
func BenchmarkObservation(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) })
	f, err := os.Create(filepath.Join(b.TempDir(), "requests.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	log := slog.New(slog.NewJSONHandler(f, nil))
	reg := metrics.New()
	route := func(*http.Request) string { return "/compute/{id}" }
	observed := requestlog.Middleware(log, route, reg.Middleware(route, bare))
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"observed", observed}} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/compute/vm1", nil)
			for b.Loop() {
				c.h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
