package occi_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/occi/basicauth"
)

// TestAuthRefusalsFollowTheRendering: Basic authentication's 401 in front
// of the server is written as the server's own errors: in the client's
// rendering (a text line for text/plain, JSON otherwise), with the
// WWW-Authenticate and Cache-Control headers.
func TestAuthRefusalsFollowTheRendering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("alice:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := basicauth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := testserver.Start(t, testserver.Options{Wrap: func(s *occi.Server, next http.Handler) http.Handler {
		return users.MiddlewareWith(next, s.WriteError)
	}})
	c := newClient(t, srv.URL)
	check := func(r reply) {
		t.Helper()
		if r.header.Get("WWW-Authenticate") == "" || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("401 headers: %v", r.header)
		}
	}
	r := c.expect("GET", "/compute/", nil, http.StatusUnauthorized, "Accept", "text/plain")
	check(r)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || string(r.body) != "Unauthorized: authentication required\n" {
		t.Fatalf("text/plain 401: %s %q", ct, r.body)
	}
	r = c.expect("GET", "/compute/", nil, http.StatusUnauthorized, "Accept", "application/json", "Authorization", "Basic YWxpY2U6d3Jvbmc=")
	check(r)
	var body struct {
		Error struct {
			Status  int
			Message string
		}
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error.Status != 401 || body.Error.Message != "invalid credentials" {
		t.Fatalf("JSON 401: %s (%v)", r.body, err)
	}
	c.expect("GET", "/compute/", nil, http.StatusOK, "Authorization", "Basic YWxpY2U6c2VjcmV0")
}
