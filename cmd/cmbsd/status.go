package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/cmbs/bus"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/feed"
)

// statusPath answers health checks and says what the broker is doing. It
// lies under the query interface's /-/, which no OCCI collection can use.
const statusPath = "/-/status"

// storeProbeTimeout bounds the store check of one status request.
const storeProbeTimeout = 2 * time.Second

// statusHandler serves statusPath: 200 while the store answers, 503 when
// it does not, with the running layers and the broker's counters either
// way.
type statusHandler struct {
	store     store.Store
	storeDesc string
	broker    *cmbs.Broker
	bus       *bus.Bus       // nil without bus sockets
	feed      *feed.Follower // nil with the embedded store
	started   time.Time
}

type statusReport struct {
	Status  string              `json:"status"` // "ok" or "unavailable"
	Version string              `json:"version"`
	Uptime  float64             `json:"uptime_s"`
	Store   storeStatus         `json:"store"`
	Layers  []cmbs.RunningLayer `json:"layers"`
	Broker  cmbs.Stats          `json:"broker"`
	Curve   *cmbs.CurveStatus   `json:"curve,omitempty"` // absent without --curve-key
	Bus     *bus.Stats          `json:"bus,omitempty"`
	// Feed is how far this server's caches follow the store's changes
	// (CouchDB only).
	Feed *feed.Stats `json:"feed,omitempty"`
}

type storeStatus struct {
	Store     string  `json:"store"`
	OK        bool    `json:"ok"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

func (h *statusHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"status": http.StatusMethodNotAllowed, "message": "method " + r.Method + " is not allowed on " + statusPath + "; allowed: GET, HEAD"}})
		return
	}
	rep := statusReport{
		Status:  "ok",
		Version: occi.Version,
		Uptime:  time.Since(h.started).Seconds(),
		Store:   h.probeStore(r.Context()),
		Layers:  h.broker.RunningLayers(),
		Broker:  h.broker.Stats(),
		Curve:   h.broker.CurveStatus(),
		Feed:    feedStatus(h.feed),
	}
	if rep.Layers == nil {
		rep.Layers = []cmbs.RunningLayer{}
	}
	if h.bus != nil {
		st := h.bus.Stats()
		rep.Bus = &st
	}
	code := http.StatusOK
	if !rep.Store.OK {
		rep.Status, code = "unavailable", http.StatusServiceUnavailable
	}
	w.WriteHeader(code)
	if r.Method == http.MethodGet {
		_ = json.NewEncoder(w).Encode(rep)
	}
}

// probeStore reads a document that does not exist: the store answering
// "not found" in time is a store that works. (A CouchDB database that
// disappeared is not "not found": the CouchDB store recreates it, or
// reports itself unavailable.)
func (h *statusHandler) probeStore(ctx context.Context) storeStatus {
	ctx, cancel := context.WithTimeout(ctx, storeProbeTimeout)
	defer cancel()
	start := time.Now()
	_, err := h.store.Get(ctx, "status:probe")
	st := storeStatus{Store: h.storeDesc, LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
	switch {
	case err == nil || errors.Is(err, store.ErrNotFound):
		st.OK = true
	case ctx.Err() != nil:
		st.Error = fmt.Sprintf("no answer within %v: %v", storeProbeTimeout, err)
	default:
		st.Error = err.Error()
	}
	return st
}

// withStatus serves statusPath with status and everything else with next.
func withStatus(status http.Handler, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == statusPath {
			status.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
