package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/metrics"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/couch"
	"github.com/cmbs/cmbs/store/sqlite"
	"github.com/cmbs/cmbs/store/storetest"
)

var couchServer *couchpeer.Server

func TestMain(m *testing.M) {
	code := couchpeer.Run(m, &couchServer)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// stores opens each store implementation on a fresh database.
var stores = map[string]func(t *testing.T) store.Store{
	"sqlite": func(t *testing.T) store.Store {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "cmbs.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	},
	"couch": func(t *testing.T) store.Store {
		base := couchServer.URL(t)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		s, err := couch.Open(ctx, base, couchpeer.DBForTest(t, base))
		if err != nil {
			t.Fatal(err)
		}
		return s
	},
}

// instrumented opens a store through InstrumentStore, closed after t.
func instrumented(t *testing.T, open func(t *testing.T) store.Store) (store.Store, *metrics.Registry) {
	t.Helper()
	reg := metrics.New()
	st, err := reg.InstrumentStore(open(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st, reg
}

// TestInstrumentedStoreContract: the wrapper changes nothing the store
// contract says, on both stores.
func TestInstrumentedStoreContract(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				st, _ := instrumented(t, open)
				return st
			})
		})
	}
}

// value returns the value of the counter, gauge or histogram count named
// name whose labels include want, and whether there is one.
func value(t *testing.T, reg *metrics.Registry, name string, want map[string]string) (float64, bool) {
	t.Helper()
	fams, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metric
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// TestStoreMetrics: operations are counted by result and timed, on both
// stores.
func TestStoreMetrics(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			st, reg := instrumented(t, open)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if _, err := st.Get(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Get missing: %v", err)
			}
			rev, err := st.Put(ctx, store.Document{ID: "a", Body: []byte(`{"x":1}`)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Put(ctx, store.Document{ID: "a", Body: []byte(`{"x":2}`)}); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("Put without rev: %v", err)
			}
			if _, err := st.Delete(ctx, "a", rev); err != nil {
				t.Fatal(err)
			}
			if _, _, err := st.Changes(ctx, store.ChangesOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				op, result string
				want       float64
			}{
				{"get", "not_found", 1}, {"get", "ok", 0}, {"put", "ok", 1}, {"put", "conflict", 1},
				{"delete", "ok", 1}, {"changes", "ok", 1}, {"find", "ok", 0},
			} {
				got, ok := value(t, reg, "cmbs_store_operations_total", map[string]string{"op": c.op, "result": c.result})
				if !ok || got != c.want {
					t.Errorf("%s %s: %v (present %v), want %v", c.op, c.result, got, ok, c.want)
				}
			}
			if n, _ := value(t, reg, "cmbs_store_operation_duration_seconds", map[string]string{"op": "put"}); n != 2 {
				t.Errorf("put timed %v times, want 2", n)
			}
		})
	}
}

// TestHTTPMiddleware: requests are counted by the route the route function
// names, a bounded method and the status actually written.
func TestHTTPMiddleware(t *testing.T) {
	reg := metrics.New()
	mux := http.NewServeMux()
	mux.HandleFunc("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "item")
	})
	route := func(r *http.Request) string {
		if strings.HasPrefix(r.URL.Path, "/items/") {
			return "/items/{id}"
		}
		return "{other}"
	}
	srv := httptest.NewServer(reg.Middleware(route, mux))
	defer srv.Close()

	do := func(method, path string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	do("GET", "/items/1")
	do("GET", "/items/2")
	do("GET", "/items/missing")
	do("BREW", "/pot")

	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"route": "/items/{id}", "method": "GET", "code": "200"}, 2},
		{map[string]string{"route": "/items/{id}", "method": "GET", "code": "404"}, 1},
		{map[string]string{"route": "{other}", "method": "OTHER"}, 1},
	} {
		if got, _ := value(t, reg, "cmbs_http_requests_total", c.labels); got != c.want {
			t.Errorf("requests %v = %v, want %v", c.labels, got, c.want)
		}
	}
	if n, _ := value(t, reg, "cmbs_http_request_duration_seconds", map[string]string{"route": "/items/{id}", "method": "GET"}); n != 3 {
		t.Errorf("%v GETs timed, want 3", n)
	}
	if n, _ := value(t, reg, "cmbs_http_requests_in_flight", nil); n != 0 {
		t.Errorf("%v requests in flight after all answered", n)
	}
	// The Go runtime collector is registered.
	if _, ok := value(t, reg, "go_goroutines", nil); !ok {
		t.Error("no go_goroutines")
	}
}
