package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmbs/cmbs/internal/httprecord"
)

// RouteFunc names the route pattern a request was served by (e.g.
// "/-/", "/compute/{id}"). It must return one of a bounded set of values:
// it becomes a label, and a raw path there would make one time series per
// entity.
type RouteFunc func(*http.Request) string

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time from the request's arrival to the end of its handler, by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120},
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "http", Name: "requests_in_flight",
			Help: "HTTP requests being served now.",
		}),
	}
}

// Middleware counts and times every request next serves. route names the
// request's route pattern once next has served it.
func (r *Registry) Middleware(route RouteFunc, next http.Handler) http.Handler {
	m := r.http
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		m.inFlight.Inc()
		sw := httprecord.Wrap(w)
		defer func() {
			m.inFlight.Dec()
			rt, method := route(req), methodLabel(req.Method)
			m.requests.WithLabelValues(rt, method, codeLabel(sw.Status())).Inc()
			m.duration.WithLabelValues(rt, method).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, req)
	})
}

// methodLabel keeps the method label bounded: a client can send any token
// as a method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodDelete, http.MethodOptions, http.MethodPatch:
		return m
	}
	return "OTHER"
}

func codeLabel(code int) string {
	switch code {
	case 0, http.StatusOK:
		// A handler that wrote nothing answered 200. (cmbsd recovers
		// panics inside this middleware, so their 500 is written through
		// the recorder and counted as such.)
		return "200"
	case http.StatusCreated:
		return "201"
	case http.StatusNoContent:
		return "204"
	case http.StatusNotFound:
		return "404"
	}
	return strconv.Itoa(code)
}
