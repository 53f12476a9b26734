package occi_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/store"
)

const computeKindID = "http://schemas.ogf.org/occi/infrastructure#compute"

// createComputes creates n compute resources /compute/c000… with hostname
// h<i> and cores i%4.
func createComputes(t *testing.T, c *client, n int) {
	t.Helper()
	for i := 0; i < n; i += 50 {
		var res []string
		for j := i; j < min(n, i+50); j++ {
			res = append(res, fmt.Sprintf(`{"kind":%q,"id":"c%03d","attributes":{"occi":{"compute":{"hostname":"h%d","cores":%d}}}}`, computeKindID, j, j, j%4))
		}
		if r := c.do("POST", "/compute/", []byte(`{"resources":[`+strings.Join(res, ",")+`]}`)); r.status != 201 {
			t.Fatalf("create computes: %d %s", r.status, r.body)
		}
	}
}

func idFilter(n int) []byte {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"id":"c%03d"}`, i%10)
	}
	return []byte(`{"resources":[` + strings.Join(parts, ",") + `]}`)
}

// TestFilterSizeBounded: a filter past the documented bounds is a 400 that
// names the bound, on both stores, never a 503 "store unavailable"; at the
// bound it is served.
func TestFilterSizeBounded(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		srv := testserver.Start(t, testserver.Options{Store: open(t)})
		c := newClient(t, srv.URL)
		createComputes(t, c, 12)
		if got := locations(t, c.do("GET", "/compute/", idFilter(100))); len(got) != 10 {
			t.Fatalf("100 alternatives: %d entities, want 10", len(got))
		}
		for _, path := range []string{"/compute/", "/"} {
			expectError(t, c.do("GET", path, idFilter(101)), 400, "101", "at most 100")
			expectError(t, c.do("GET", path, idFilter(1000)), 400, "at most 100")
		}
		attrs := make([]string, 501)
		for i := range attrs {
			attrs[i] = fmt.Sprintf(`"a%d":"x"`, i)
		}
		expectError(t, c.do("GET", "/compute/", []byte(`{"resources":[{"attributes":{`+strings.Join(attrs, ",")+`}}]}`)), 400, "501 conditions", "at most 500")
		var cats []string
		for i := 0; i < 101; i++ {
			cats = append(cats, "category="+url.QueryEscape(fmt.Sprintf("http://x.example/s%d#", i)))
		}
		expectError(t, c.do("GET", "/compute/?"+strings.Join(cats, "&"), nil), 400, "at most 100")
		words := strings.Repeat("w ", 501)
		expectError(t, c.do("GET", "/compute/?q="+url.QueryEscape(words), nil), 400, "at most 500")
	})
}
