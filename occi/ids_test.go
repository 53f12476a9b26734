package occi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/store"
)

const (
	computeKind = "http://schemas.ogf.org/occi/infrastructure#compute"
	nicKind     = "http://schemas.ogf.org/occi/infrastructure#networkinterface"
)

// hostileIDs are entity ids that must never be stored: each would become a
// location outside its collection, a location that needs escaping, or a
// header value that splits or truncates a response.
var hostileIDs = []string{
	"../cmbs/member/victim", "..", ".", "/", "a/b", "%2e%2e", "a%20b",
	"http://evil.example/x", "a?b", "a#b",
	"a\tb", "a\rb", "a\nb", "a\x00b", "a b", "a\\b", "a<b", "\xff\xfe",
	"a\u2028b", "a\u200bb", "a\u0085b",
	strings.Repeat("x", 256),
}

// idPath is one way a client gives an entity id. send sends id and returns
// the reply; created is where a good id ends up.
type idPath struct {
	name    string
	send    func(c *client, id string) reply
	created func(id string) string
	// headerOnly paths cannot carry ids a header value cannot hold.
	headerOnly bool
}

func jsonBody(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func textQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func idPaths(t testing.TB) []idPath {
	atCompute := func(id string) string { return "/compute/" + id }
	atNIC := func(id string) string { return "/networkinterface/" + id }
	post := func(path string, v func(id string) any, hdr ...string) func(c *client, id string) reply {
		return func(c *client, id string) reply { return c.do("POST", path, jsonBody(t, v(id)), hdr...) }
	}
	resource := func(desc map[string]any) any {
		desc["kind"] = computeKind
		return map[string]any{"resources": []any{desc}}
	}
	// Inline links and PUT locations need ids of their own; n keeps each
	// request independent of the others.
	n := 0
	fresh := func(prefix string) string { n++; return prefix + "-" + strconv.Itoa(n) }
	inline := func(link map[string]any) any {
		link["kind"], link["target"] = nicKind, "/compute/victim"
		return resource(map[string]any{"id": fresh("src"), "links": []any{link}})
	}
	return []idPath{
		{name: "pyocni-id", created: atCompute, send: post("/compute/", func(id string) any {
			return resource(map[string]any{"id": id})
		})},
		{name: "pyocni-flat-occi.core.id", created: atCompute, send: post("/compute/", func(id string) any {
			return resource(map[string]any{"attributes": map[string]any{"occi.core.id": id}})
		})},
		{name: "pyocni-nested-occi.core.id", created: atCompute, send: post("/compute/", func(id string) any {
			return resource(map[string]any{"attributes": map[string]any{"occi": map[string]any{"core": map[string]any{"id": id}}}})
		})},
		{name: "json12-occi.core.id", created: atCompute, send: post("/compute/", func(id string) any {
			return map[string]any{"kind": computeKind, "attributes": map[string]any{"occi.core.id": id}}
		}, "Content-Type", "application/json", "Accept", "application/json")},
		{name: "json12-id", created: atCompute, send: post("/compute/", func(id string) any {
			return map[string]any{"kind": computeKind, "id": id}
		}, "Content-Type", "application/json", "Accept", "application/json")},
		{name: "text-plain-body", created: atCompute, send: func(c *client, id string) reply {
			body := "Category: compute; scheme=\"http://schemas.ogf.org/occi/infrastructure#\"; class=\"kind\"\n" +
				"X-OCCI-Attribute: occi.core.id=" + textQuote(id) + "\n"
			return c.do("POST", "/compute/", []byte(body), "Content-Type", "text/plain", "Accept", "text/plain")
		}},
		{name: "text-occi-header", created: atCompute, headerOnly: true, send: func(c *client, id string) reply {
			return c.do("POST", "/compute/", nil, "Content-Type", "text/occi", "Accept", "text/occi",
				"Category", `compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"`,
				"X-OCCI-Attribute", "occi.core.id="+textQuote(id))
		}},
		{name: "put-path", created: atCompute, send: func(c *client, id string) reply {
			return c.do("PUT", "/compute/"+url.PathEscape(id), jsonBody(t, resource(map[string]any{})))
		}},
		{name: "put-body-id", created: func(string) string { return "/compute/put-1" }, send: func(c *client, id string) reply {
			return c.do("PUT", "/compute/"+fresh("put"), jsonBody(t, resource(map[string]any{"id": id})))
		}},
		{name: "link-id", created: atNIC, send: post("/networkinterface/", func(id string) any {
			return map[string]any{"links": []any{map[string]any{"kind": nicKind, "id": id, "source": "/compute/victim", "target": "/compute/victim"}}}
		})},
		{name: "link-flat-occi.core.id", created: atNIC, send: post("/networkinterface/", func(id string) any {
			return map[string]any{"links": []any{map[string]any{"kind": nicKind, "source": "/compute/victim", "target": "/compute/victim",
				"attributes": map[string]any{"occi.core.id": id}}}}
		})},
		{name: "inline-link-id", created: atNIC, send: post("/compute/", func(id string) any {
			return inline(map[string]any{"id": id})
		})},
		{name: "inline-link-occi.core.id", created: atNIC, send: post("/compute/", func(id string) any {
			return inline(map[string]any{"attributes": map[string]any{"occi.core.id": id}})
		})},
	}
}

// One id rule holds on every input path: a hostile id is refused with a
// 400 that names the id, and nothing is stored; a good id on the same path
// is stored where it says.
func TestEntityIDRuleOnEveryInputPath(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		c, _ := startCompute(t, open(t))
		c.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		c.expect("PUT", "/compute/victim", []byte(`{"resources":[{"kind":"`+computeKind+`"}]}`), 201)
		want := map[string]bool{"/compute/victim": true}
		for _, p := range idPaths(t) {
			good := "good-" + strings.ReplaceAll(p.name, ".", "-")
			r := p.send(c, good)
			if r.status != 200 && r.status != 201 {
				t.Fatalf("%s with good id %q: status %d: %s", p.name, good, r.status, r.body)
			}
			want[p.created(good)] = true
			for _, id := range hostileIDs {
				if p.headerOnly && strings.ContainsAny(id, "\r\n\x00") {
					continue // not a valid header value; the client cannot send it
				}
				r := p.send(c, id)
				// The router answers a path with dot segments by redirecting
				// to its clean form, which stores nothing.
				if r.status < 400 && r.status != http.StatusMovedPermanently {
					t.Errorf("%s with id %q: status %d: %s", p.name, id, r.status, r.body)
					continue
				}
				if r.status >= 500 {
					t.Errorf("%s with id %q: status %d: %s", p.name, id, r.status, r.body)
				}
				if loc := r.header.Get("Location"); loc != "" && (r.status != http.StatusMovedPermanently || strings.ContainsAny(loc, "\x00\r\n\t ")) {
					t.Errorf("%s with id %q: Location %q", p.name, id, loc)
				}
			}
		}
		got := map[string]bool{}
		for _, coll := range []string{"/compute/", "/networkinterface/"} {
			for _, l := range c.expect("GET", coll, nil, 200).json(t)["X-OCCI-Location"].([]any) {
				u, err := url.Parse(l.(string))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(u.Path, "/compute/src-") { // inline links' resources
					got[u.Path] = true
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("stored %v, want %v", keys(got), keys(want))
		}
	})
}

// The refusal names the id and what is wrong with it.
func TestEntityIDErrorNamesTheProblem(t *testing.T) {
	c, _ := startCompute(t, nil)
	for id, want := range map[string]string{
		"../cmbs/member/victim":  "'/'",
		"..":                     "relative",
		"a\x00b":                 "control",
		strings.Repeat("x", 300): "longer than 255 bytes",
	} {
		r := c.expect("POST", "/compute/", jsonBody(t, map[string]any{"kind": computeKind, "attributes": map[string]any{"occi.core.id": id}}),
			400, "Content-Type", "application/json", "Accept", "application/json")
		var e struct {
			Error struct {
				Message, Attribute string
			}
		}
		if err := json.Unmarshal(r.body, &e); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(e.Error.Message, "entity id") || !strings.Contains(e.Error.Message, want) || e.Error.Attribute != "occi.core.id" {
			t.Errorf("id %q: error %+v, want it to say %q and name occi.core.id", id, e.Error, want)
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return slices.Clip(out)
}
