package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
)

// The status answers 503 naming the store's error once the store fails,
// and refuses methods other than GET and HEAD with a JSON 405.
func TestStatusReportsAFailingStore(t *testing.T) {
	ctx := t.Context()
	st := testserver.OpenSQLite(t)
	t.Cleanup(func() { _ = st.Close() }) // also closed below, on purpose
	srv, err := occi.NewServer(ctx, occi.Options{Store: st, Providers: providers.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	broker := cmbs.NewBroker(srv.Entities(), cmbs.Options{})
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := broker.Stop(stopCtx); err != nil {
			t.Error(err)
		}
	})
	h := withStatus(&statusHandler{store: st, storeDesc: "sqlite:s.db", broker: broker, started: time.Now()}, srv.Handler())

	get := func(method string) (int, map[string]any) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, statusPath, nil))
		var m map[string]any
		if method != http.MethodHead {
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
				t.Fatalf("%s %s: not JSON (%v): %q", method, statusPath, err, rec.Body.String())
			}
		}
		return rec.Code, m
	}
	code, rep := get(http.MethodGet)
	if code != http.StatusOK || rep["status"] != "ok" || rep["version"] != occi.Version || rep["store"].(map[string]any)["ok"] != true {
		t.Fatalf("GET %s: %d %v", statusPath, code, rep)
	}
	if layers, ok := rep["layers"].([]any); !ok || len(layers) != 0 {
		t.Fatalf("layers %v, want an empty list", rep["layers"])
	}
	if code, _ := get(http.MethodHead); code != http.StatusOK {
		t.Fatalf("HEAD: %d", code)
	}
	code, rep = get(http.MethodPost)
	if code != http.StatusMethodNotAllowed || !strings.Contains(rep["error"].(map[string]any)["message"].(string), "GET, HEAD") {
		t.Fatalf("POST: %d %v", code, rep)
	}

	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	code, rep = get(http.MethodGet)
	s := rep["store"].(map[string]any)
	if code != http.StatusServiceUnavailable || rep["status"] != "unavailable" || s["ok"] != false || !strings.Contains(s["error"].(string), "closed") {
		t.Fatalf("GET with the store closed: %d %v", code, rep)
	}
}
