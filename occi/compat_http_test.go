package occi_test

// pyOCNI compatibility cases: routing and HTTP.

import (
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
)

func Test_case_86_routing(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	for _, p := range []string{"/compute", "/a/b/c/d", "/cmbs/member/nope/deeper"} {
		t.Run("404"+strings.ReplaceAll(p, "/", "_"), func(t *testing.T) {
			expectError(t, e.c.do("GET", p, nil), 404)
		})
	}
	// A path ending in "/" lists what lives below it, 404 when nothing
	// (no collection, no entity) does; the root lists every entity.
	if got := locations(t, e.c.do("GET", "/", nil)); !reflect.DeepEqual(got, []string{e.abs(pathM)}) {
		t.Fatalf("/ lists %v", got)
	}
	expectError(t, e.c.do("GET", "/a/b/c/d/", nil), 404, "/a/b/c/d/")
	// OCCI 1.2's discovery location serves the query interface too.
	if got := userCategories(t, expectJSONOK(t, e.c.do("GET", "/.well-known/org/ogf/occi/-/", nil), 200)); len(got["kinds"]) != 1 {
		t.Fatalf("well-known kinds %v", ids(got["kinds"]))
	}
}

func Test_case_87_methods(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	t.Run("head", func(t *testing.T) {
		r := e.c.do("HEAD", "/-/", nil)
		if r.status != 200 || len(r.body) != 0 {
			t.Fatalf("HEAD /-/: %d %q", r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/occi+json; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		if r := e.c.do("HEAD", pathM, nil); r.status != 200 || r.header.Get("ETag") == "" {
			t.Fatalf("HEAD entity: %d, ETag %q", r.status, r.header.Get("ETag"))
		}
	})
	t.Run("options", func(t *testing.T) {
		for _, p := range []string{"/-/", pathM, "/cmbs/member/"} {
			r := e.c.do("OPTIONS", p, nil)
			expectEmpty(t, r, 204)
			if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "DELETE") {
				t.Fatalf("OPTIONS %s: Allow %q", p, allow)
			}
		}
	})
	t.Run("patch", func(t *testing.T) {
		e.unchanged(func() {
			for _, p := range []string{pathM, "/-/"} {
				r := e.c.do("PATCH", p, []byte(`{"resources":[{"title":"x"}]}`))
				expectError(t, r, 405, "PATCH")
				if allow := r.header.Get("Allow"); !strings.Contains(allow, "POST") || strings.Contains(allow, "PATCH") {
					t.Fatalf("PATCH %s: Allow %q", p, allow)
				}
			}
		})
	})
}

func Test_case_88_host_independence(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	send := func(method, path string, body []byte) reply {
		t.Helper()
		req, err := http.NewRequest(method, e.base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "localhost:8090"
		req.Header.Set("Content-Type", "application/occi+json")
		req.Header.Set("Accept", "application/occi+json")
		return rawDo(t, req)
	}
	if got := locations(t, send("GET", "/cmbs/member/", nil)); !reflect.DeepEqual(got, []string{"http://localhost:8090" + pathM}) {
		t.Fatalf("listing under another Host: %v", got)
	}
	if got := expectJSONOK(t, send("GET", pathM, nil), 200); got["id"] != memberID {
		t.Fatalf("GET under another Host: %v", got)
	}
	r := send("POST", "/cmbs/member/", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"h","attributes":{"cmbs":{"member":{"local":"false"}}}}]}`))
	if got := expectJSONOK(t, r, 201); !reflect.DeepEqual(got, map[string]any{"Location": []any{"http://localhost:8090/cmbs/member/h"}}) {
		t.Fatalf("create under another Host: %v", got)
	}
	// Mixin tagging accepts locations under any host: only the path counts.
	e.apply("F2", "F4")
	expectEmpty(t, send("POST", "/cmbs/message/l2/", []byte(`{"X-OCCI-Location":["http://localhost:8090`+pathL1+`"]}`)), 200)
	if got := mixinsOf(t, e.c, pathL1); len(got) != 2 {
		t.Fatalf("L1 mixins %v", got)
	}

	// A configured public URL wins over the Host header.
	pub := testserver.Start(t, testserver.Options{PublicURL: "https://occi.example.org/"})
	c := newClient(t, pub.URL)
	c.expect("POST", "/-/", fixture(t, "pycmbs/post_category_cmbs_member.json"), 200)
	body := c.expect("POST", "/cmbs/member/", fixture(t, "pycmbs/post_member.json"), 201).json(t)
	if !reflect.DeepEqual(body, map[string]any{"Location": []any{"https://occi.example.org" + pathM}}) {
		t.Fatalf("with a public URL: %v", body)
	}
}

func Test_case_89_server_and_content_type_headers(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	requests := []struct {
		method, path string
		body         string
		headers      []string
		status       int
		json         bool
	}{
		{"GET", "/-/", "", nil, 200, true},
		{"POST", "/-/", `{"actions":[{"term":"x","scheme":"http://x#"}]}`, nil, 200, false},
		{"POST", "/cmbs/member/", string(fixture(t, "pycmbs/post_member.json")), nil, 201, true},
		{"GET", "/cmbs/member/", "", nil, 200, true},
		{"GET", pathM, "", nil, 200, true},
		{"GET", pathM, "", []string{"Accept", "application/occi+json; charset=utf-8"}, 200, true},
		{"GET", pathM, "", []string{"Accept", "*/*"}, 200, true},
		{"GET", pathM, "", []string{"Accept", ""}, 200, true},
		{"GET", pathM, "", []string{"Accept", "text/html;q=0.9, application/occi+json"}, 200, true},
		{"POST", pathM, `{"resources":[{"title":"t"}]}`, nil, 201, true},
		{"POST", pathM + "?action=start_l1", `{}`, nil, 200, false},
		{"GET", "/cmbs/member/", "", []string{"Accept", "text/occi"}, 200, false},
		{"GET", "/nope", "", nil, 404, false},
		{"PATCH", pathM, "", nil, 405, false},
		{"OPTIONS", "/-/", "", nil, 204, false},
		{"GET", pathM, "", []string{"Accept", "image/png"}, 406, false},
		{"DELETE", pathM, "", nil, 200, false},
	}
	for _, rq := range requests {
		r := e.c.do(rq.method, rq.path, []byte(rq.body), rq.headers...)
		if r.status != rq.status {
			t.Fatalf("%s %s: status %d, want %d: %s", rq.method, rq.path, r.status, rq.status, r.body)
		}
		if s := r.header.Get("Server"); s != occi.ServerHeader {
			t.Fatalf("%s %s: Server %q, want %q", rq.method, rq.path, s, occi.ServerHeader)
		}
		if rq.json {
			expectJSONOK(t, r, rq.status)
		}
		if rq.status >= 400 {
			expectError(t, r, rq.status)
		}
	}
	if !strings.HasPrefix(occi.ServerHeader, "cmbs/") || !strings.HasSuffix(occi.ServerHeader, " OCCI/1.2") {
		t.Fatalf("ServerHeader %q", occi.ServerHeader)
	}
}

// TestErrorsInTextRenderings checks that a text Accept gets the error as
// one plain line.
func TestErrorsInTextRenderings(t *testing.T) {
	e := newCompat(t, "F1")
	r := e.c.do("GET", "/cmbs/member/nope", nil, "Accept", "text/plain")
	if r.status != 404 || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("%d %q", r.status, r.header.Get("Content-Type"))
	}
	if lines := strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "/cmbs/member/nope") {
		t.Fatalf("body %q", r.body)
	}
}
