package requestlog_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cmbs/cmbs/internal/metrics"
	"github.com/cmbs/cmbs/internal/requestlog"
)

// BenchmarkObservedChain: what the request log and the HTTP metrics add to
// one request, as cmbsd chains them (compare BenchmarkBareHandler).
func BenchmarkObservedChain(b *testing.B) {
	route := func(*http.Request) string { return "/compute/{id}" }
	reg := metrics.New()
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := requestlog.Middleware(log, route, reg.Middleware(route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})))
	req := httptest.NewRequest("GET", "/compute/x1", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}

func BenchmarkBareHandler(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	req := httptest.NewRequest("GET", "/compute/x1", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}
