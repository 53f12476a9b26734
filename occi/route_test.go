package occi_test

import (
	"net/http/httptest"
	"testing"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
)

// TestRoute: a request's route pattern is bounded by the categories, never
// a raw path.
func TestRoute(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{Store: testserver.OpenSQLite(t)})
	for path, want := range map[string]string{
		"/-/":                          occi.RouteQuery,
		"/.well-known/org/ogf/occi/-/": occi.RouteQuery,
		"/compute/":                    "/compute/",
		"/compute/vm-1":                "/compute/{id}",
		"/compute/x?action=start":      "/compute/{id}",
		"/networkinterface/":           "/networkinterface/",
		"/networkinterface/nic0":       "/networkinterface/{id}",
		"/":                            occi.RouteOtherCollection,
		"/nowhere/":                    occi.RouteOtherCollection,
		"/nowhere/x":                   occi.RouteOtherEntity,
		"/compute/vm-1/deeper":         occi.RouteOtherEntity,
		"/favicon.ico":                 occi.RouteOtherEntity,
	} {
		if got := srv.OCCI.Route(httptest.NewRequest("GET", path, nil)); got != want {
			t.Errorf("Route(%s) = %q, want %q", path, got, want)
		}
	}
}
