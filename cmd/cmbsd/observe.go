package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/console"
	"github.com/cmbs/cmbs/occi"
)

// metricsPath serves the Prometheus metrics, behind --users like every
// other route.
const metricsPath = "/metrics"

// newLogger is the server's logger in the --log-format asked for.
func newLogger(w io.Writer, cfg config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// withMetrics serves metricsPath with metrics and everything else with next.
func withMetrics(metrics http.Handler, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == metricsPath {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "method "+r.Method+" is not allowed on "+metricsPath+"; allowed: GET, HEAD", http.StatusMethodNotAllowed)
				return
			}
			metrics.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// routeOf names a request's route pattern for metrics and request logs:
// cmbsd's own paths, else the OCCI server's (bounded) route patterns.
func routeOf(srv *occi.Server) func(*http.Request) string {
	return func(r *http.Request) string {
		switch p := r.URL.Path; {
		case p == statusPath, p == metricsPath, p == console.EventsPath:
			return p
		case strings.HasPrefix(p, console.Prefix):
			// The console's pages: one label, not one per file.
			return console.Prefix
		}
		return srv.Route(r)
	}
}

// consoleDelivery is a received message as the console's events page shows
// it.
func consoleDelivery(m cmbs.ReceivedMessage) console.Delivery {
	d := console.Delivery{Layer: string(m.Layer), Member: m.Member, Stored: m.Stored, Duplicate: m.Duplicate, Errors: m.Errors}
	d.Message, _ = m.Message["id"].(string)
	return d
}
