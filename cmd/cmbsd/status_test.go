package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/store"
)

// statusServer is the OCCI server over st with the status page, as cmbsd
// wires them.
func statusServer(t *testing.T, st store.Store) http.Handler {
	t.Helper()
	srv, err := occi.NewServer(t.Context(), occi.Options{Store: st, Providers: providers.NewRegistry()})
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
	return withStatus(&statusHandler{store: st, storeDesc: "test", broker: broker, started: time.Now()}, srv.Handler())
}

// A filter past its bounds is the client's 400, on both stores, and the
// store stays healthy: the status still says ok.
func TestStatusOKAfterOversizedFilter(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) store.Store{
		"sqlite":  func(t *testing.T) store.Store { return testserver.OpenSQLite(t) },
		"couchdb": func(t *testing.T) store.Store { return testserver.OpenCouch(t, couchpeer.URLForTest(t)) },
	} {
		t.Run(name, func(t *testing.T) {
			h := statusServer(t, open(t))
			alts := make([]string, 1000)
			for i := range alts {
				alts[i] = fmt.Sprintf(`{"id":"c%d"}`, i)
			}
			for _, req := range []*http.Request{
				httptest.NewRequest(http.MethodGet, "/compute/", strings.NewReader(`{"resources":[`+strings.Join(alts, ",")+`]}`)),
				httptest.NewRequest(http.MethodGet, "/compute/?q="+url.QueryEscape(strings.Repeat("w ", 501)), nil),
			} {
				req.Header.Set("Content-Type", "application/occi+json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusBadRequest {
					t.Fatalf("oversized filter %s: %d %s", req.URL, rec.Code, rec.Body)
				}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, statusPath, nil))
			var rep map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil || rec.Code != http.StatusOK || rep["status"] != "ok" || rep["store"].(map[string]any)["ok"] != true {
				t.Fatalf("GET %s after an oversized filter: %d %s", statusPath, rec.Code, rec.Body)
			}
		})
	}
}

// The status answers 503 naming the store's error once the store fails,
// and refuses methods other than GET and HEAD with a JSON 405.
func TestStatusReportsAFailingStore(t *testing.T) {
	st := testserver.OpenSQLite(t)
	t.Cleanup(func() { _ = st.Close() }) // also closed below, on purpose
	h := statusServer(t, st)

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
