// Package metrics is cmbsd's Prometheus instrumentation: one registry per
// server (no global state), the HTTP middleware that counts requests by
// route pattern, method and status with latency histograms, a store.Store
// wrapper that counts operations and their errors, and a collector that
// reads the CMBS broker's own counters at scrape time. Handler serves the
// registry in the Prometheus exposition format.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every cmbs metric name.
const Namespace = "cmbs"

// Registry holds one server's metrics.
type Registry struct {
	reg  *prometheus.Registry
	http *httpMetrics
}

// New returns a registry with the Go runtime and process collectors and the
// HTTP request metrics registered.
func New() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	r := &Registry{reg: reg, http: newHTTPMetrics()}
	reg.MustRegister(r.http.requests, r.http.duration, r.http.inFlight)
	return r
}

// Register adds collectors (e.g. a BrokerCollector) to the registry.
func (r *Registry) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Handler serves the registry's metrics in the Prometheus exposition
// format (text, or protobuf/OpenMetrics when the scraper asks for it).
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// Gatherer is the registry, for tests and custom exposition.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }
