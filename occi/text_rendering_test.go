package occi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/store"
)

func TestTextValuesRoundTrip(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		srv := testserver.Start(t, testserver.Options{Store: open(t)})
		textValuesRoundTrip(t, srv.URL)
	})
}

// textValuesRoundTrip: strings with line breaks, quotes, backslashes and
// separators, and numbers a float formats with an exponent, come back
// from the text renderings as they were sent, read as strictly as pOCCI
// (numbers without exponent).
func textValuesRoundTrip(t *testing.T, base string) {
	kind := ocat{term: "compute", scheme: categories.InfraScheme, class: "kind", location: "/compute/"}
	title := "line one\nline two \"quoted\" back\\slash, occi.compute.cores=9; x=\"y\" \\n"
	summary := "crlf\r\nend\\ \x01\x1f\x7f\ttab \\u0041"
	for _, d := range dialects[:2] { // text/plain, text/occi
		c := &occiClient{t: t, base: base, d: d}
		r, loc := c.create(kind.location, newEntity{kind: kind, attrs: map[string]any{
			"occi.core.title":     title,
			"occi.core.summary":   summary,
			"occi.compute.memory": 0.0000001,
			"occi.compute.share":  1e21,
		}})
		c.expect(r, 201)
		for _, reader := range dialects[:2] {
			rc := &occiClient{t: t, base: base, d: reader}
			e := rc.get(loc)
			for name, want := range map[string]any{
				"occi.core.title":     title,
				"occi.core.summary":   summary,
				"occi.compute.memory": "0.0000001",
				"occi.compute.share":  "1000000000000000000000",
			} {
				if e.attrs[name] != want {
					t.Fatalf("sent in %s, read in %s: %s = %q, want %q", d.name, reader.name, name, e.attrs[name], want)
				}
			}
		}
		// What the text renderings show is what is stored.
		j := newClient(t, base).expect("GET", loc[len(base):], nil, 200).json(t)
		if j["title"] != title || j["summary"] != summary {
			t.Fatalf("sent in %s, stored title %q summary %q", d.name, j["title"], j["summary"])
		}
	}
}

func TestErrorsFollowTheRendering(t *testing.T) {
	c := newClient(t, testserver.Start(t, testserver.Options{}).URL)
	for _, tc := range []struct {
		method, path, body, accept string
		status                     int
		ctype                      string // "" means the JSON error shape
		words                      []string
	}{
		{"GET", "/compute/nope", "", "text/occi", 404, "text/occi", []string{"/compute/nope"}},
		{"GET", "/compute/nope", "", "text/plain", 404, "text/plain", []string{"/compute/nope"}},
		{"GET", "/compute/nope", "", "text/occi+plain", 404, "text/occi+plain", []string{"/compute/nope"}},
		{"GET", "/compute/nope", "", "application/json", 404, "", []string{"/compute/nope"}},
		{"GET", "/compute/nope", "", "application/occi+json", 404, "", []string{"/compute/nope"}},
		// 406: the client's text type cannot render the answer, but it reads text.
		{"GET", "/-/", "", "text/html", 406, "text/plain", []string{"text/html"}},
		{"GET", "/-/", "", "image/png", 406, "", []string{"image/png"}},
		// text/uri-list where no listing is served: the error in text/plain.
		{"GET", "/-/", "", "text/uri-list", 400, "text/plain", []string{"text/uri-list"}},
		{"GET", "/compute/nope", "", "text/uri-list, text/occi;q=0.5", 404, "text/occi", []string{"/compute/nope"}},
		// A message that quotes the client's input: not HTML-escaped, one line in text.
		{"PUT", "/compute/x", `{"resources":[{"kind":"http://x/<b>&#k\nk"}]}`, "application/json", 400, "", []string{"<b>&"}},
		{"PUT", "/compute/x", `{"resources":[{"kind":"http://x/<b>&#k\nk"}]}`, "text/plain", 400, "text/plain", []string{"<b>&", `k\nk`}},
	} {
		r := c.do(tc.method, tc.path, []byte(tc.body), "Accept", tc.accept)
		what := tc.method + " " + tc.path + " (Accept " + tc.accept + ")"
		if tc.ctype == "" {
			expectError(t, r, tc.status, tc.words...)
			if strings.Contains(string(r.body), `\u003c`) || strings.Contains(string(r.body), `\u0026`) {
				t.Fatalf("%s: error escapes HTML: %s", what, r.body)
			}
			continue
		}
		if r.status != tc.status {
			t.Fatalf("%s: status %d, want %d: %s", what, r.status, tc.status, r.body)
		}
		if ct, _, _ := strings.Cut(r.header.Get("Content-Type"), ";"); ct != tc.ctype {
			t.Fatalf("%s: Content-Type %q, want %s", what, r.header.Get("Content-Type"), tc.ctype)
		}
		body := string(r.body)
		if strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") || !strings.HasPrefix(body, http.StatusText(tc.status)+": ") {
			t.Fatalf("%s: error body is not one line %q: %q", what, http.StatusText(tc.status)+": …", body)
		}
		for _, w := range tc.words {
			if !strings.Contains(body, w) {
				t.Fatalf("%s: error %q does not name %s", what, body, w)
			}
		}
	}
}

func TestOCCIWriteAnswers(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		srv := testserver.Start(t, testserver.Options{Store: open(t)})
		occiWriteAnswers(t, newClient(t, srv.URL), srv.URL)
	})
}

// occiWriteAnswers: a create names its location X-OCCI-Location in the
// text renderings (pyOCNI documents keep Location), and POST/PUT on a
// mixin collection answer with the collection in OCCI renderings (pyOCNI:
// 200, no body).
func occiWriteAnswers(t *testing.T, c *client, base string) {
	const computeCat = `Category: compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"`
	r := c.expect("POST", "/compute/", []byte(computeCat+"\nX-OCCI-Attribute: occi.core.id=\"a\"\n"), 201, "Content-Type", "text/plain", "Accept", "text/plain")
	if want := "X-OCCI-Location: " + base + "/compute/a\n"; string(r.body) != want {
		t.Fatalf("text/plain create answered %q, want %q", r.body, want)
	}
	r = c.expect("POST", "/compute/", nil, 201, "Content-Type", "text/occi", "Accept", "text/occi",
		"Category", strings.TrimPrefix(computeCat, "Category: "), "X-OCCI-Attribute", `occi.core.id="b"`)
	if r.header.Get("X-OCCI-Location") != base+"/compute/b" || r.header.Get("Location") != base+"/compute/b" || string(r.body) != "OK\n" {
		t.Fatalf("text/occi create answered %v %q", r.header, r.body)
	}
	r = c.expect("POST", "/compute/", []byte(`{"resources":[{"kind":"`+categories.ComputeKind+`","id":"p"}]}`), 201, "Accept", "text/plain")
	if want := "Location: " + base + "/compute/p\n"; string(r.body) != want {
		t.Fatalf("pyOCNI create with Accept text/plain answered %q, want %q", r.body, want)
	}

	c.expect("POST", "/-/", []byte(`{"mixins":[{"term":"tag","scheme":"http://example.org/t#","location":"/tags/"}]}`), 200)
	a, b := base+"/compute/a", base+"/compute/b"
	r = c.expect("POST", "/tags/", []byte("X-OCCI-Location: "+a+"\n"), 200, "Content-Type", "text/plain", "Accept", "text/plain")
	if want := "X-OCCI-Location: " + a + "\n"; string(r.body) != want {
		t.Fatalf("text/plain tag answered %q, want %q", r.body, want)
	}
	r = c.expect("PUT", "/tags/", nil, 200, "Content-Type", "text/occi", "Accept", "text/occi", "X-OCCI-Location", b)
	if r.header.Get("X-OCCI-Location") != b || string(r.body) != "OK\n" {
		t.Fatalf("text/occi replace answered %v %q", r.header, r.body)
	}
	r = c.expect("POST", "/tags/", []byte(`{"locations":["`+a+`"]}`), 200, "Content-Type", "application/json", "Accept", "application/json")
	validate12(t, r.body, "entity_collection")
	var ids []string
	for _, e := range asAnyList(r.json(t)["resources"]) {
		ids = append(ids, e.(map[string]any)["id"].(string))
	}
	if !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("1.2 JSON tag answered %s", r.body)
	}
	r = c.expect("PUT", "/tags/", []byte(a+"\n"), 200, "Content-Type", "text/uri-list", "Accept", "text/uri-list")
	if string(r.body) != a+"\n" {
		t.Fatalf("uri-list replace answered %q", r.body)
	}
	// pyOCNI: 200 and nothing else.
	r = c.expect("POST", "/tags/", []byte(`{"X-OCCI-Location":["`+b+`"]}`), 200)
	if len(r.body) != 0 {
		t.Fatalf("pyOCNI tag answered %q", r.body)
	}
}
