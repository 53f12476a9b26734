package occi_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/store"
)

// Attribute names and values outside ASCII (and with dots in a segment)
// filter the same on both stores: the filter becomes a Mango selector
// that the embedded store evaluates itself and CouchDB evaluates natively.
func TestFilterOnNonASCIIAttributes(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		srv := testserver.Start(t, testserver.Options{Store: open(t)})
		c := newClient(t, srv.URL)
		def := map[string]any{"type": "String", "mutable": true, "required": false}
		kind := map[string]any{"kinds": []any{map[string]any{
			"term": "lieu", "scheme": "http://example.org/géo#", "title": "Ort",
			"location":   "/géo/lieu/",
			"attributes": map[string]any{"géo": map[string]any{"größe": def, "v1.ü": def}},
		}}}
		c.expect("POST", "/-/", mustJSON(t, kind), 200)
		create := func(id, größe, dotted string) {
			e := map[string]any{"resources": []any{map[string]any{
				"kind": "http://example.org/géo#lieu", "id": id,
				"attributes": map[string]any{"géo": map[string]any{"größe": größe, "v1.ü": dotted}},
			}}}
			c.expect("POST", "/géo/lieu/", mustJSON(t, e), 201)
		}
		create("a", "groß", "ä")
		create("b", "klein", "ö")
		for _, tc := range []struct {
			filter map[string]any
			want   []string
		}{
			{map[string]any{"géo": map[string]any{"größe": "groß"}}, []string{"a"}},
			{map[string]any{"géo.größe": "klein"}, []string{"b"}},
			{map[string]any{"géo": map[string]any{"v1.ü": "ö"}}, []string{"b"}},
			{map[string]any{"géo": map[string]any{"größe": "gross"}}, []string{}},
		} {
			body := mustJSON(t, map[string]any{"resources": []any{map[string]any{"attributes": tc.filter}}})
			want := []string{}
			for _, id := range tc.want {
				want = append(want, srv.URL+"/géo/lieu/"+id)
			}
			if got := locations(t, c.do("GET", "/géo/lieu/", body)); !reflect.DeepEqual(got, want) {
				t.Errorf("filter %s: %v, want %v", body, got, want)
			}
		}
	})
}

// A category whose attribute names a filter could not address (an empty
// segment; a backslash, which CouchDB's Mango drops) is refused whole.
func TestUnaddressableAttributeNamesAreRefused(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv.URL)
	def := map[string]any{"type": "String"}
	for _, tc := range []struct {
		attrs map[string]any
		name  string
	}{
		{map[string]any{"x.y..z": def}, "x.y..z"},
		{map[string]any{"x": map[string]any{"y": map[string]any{"": def}}}, "x.y."},
		{map[string]any{"x": map[string]any{`a\b`: def}}, `x.a\b`},
		// Names the text renderings (X-OCCI-Attribute: name=value) cannot carry.
		{map[string]any{"x": map[string]any{"a=b": def}}, "x.a=b"},
		{map[string]any{"x,y": def}, "x,y"},
		{map[string]any{"x": map[string]any{"a\nb": def}}, "x.a\nb"},
		{map[string]any{"x\u0000": def}, "x\u0000"},
		{map[string]any{"x\u007f": def}, "x\u007f"},
		{map[string]any{"x y": def}, "x y"},
		{map[string]any{`x"y`: def}, `x"y`},
	} {
		kind := map[string]any{"kinds": []any{map[string]any{
			"term": "k", "scheme": "http://example.org/names#", "location": "/k/", "attributes": tc.attrs,
		}}}
		e := c.expect("POST", "/-/", mustJSON(t, kind), 400).json(t)["error"].(map[string]any)
		if e["attribute"] != tc.name {
			t.Errorf("%v: error %v does not name attribute %q", tc.attrs, e, tc.name)
		}
		if msg, _ := e["message"].(string); !strings.Contains(msg, "http://example.org/names#k") {
			t.Errorf("%v: error %v does not name the category", tc.attrs, e)
		}
	}
	// None was registered: the same kind with a good name still can be.
	kind := map[string]any{"kinds": []any{map[string]any{
		"term": "k", "scheme": "http://example.org/names#", "location": "/k/",
		"attributes": map[string]any{"x": map[string]any{"a.b": def}},
	}}}
	c.expect("POST", "/-/", mustJSON(t, kind), 200)
}

// The query interface's paths, /-/ and below (/-/status), are no
// collection's location.
func TestQueryInterfacePathsAreNoLocation(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv.URL)
	for _, loc := range []string{"/-/", "/-/status/", "/.well-known/x/"} {
		kind := map[string]any{"kinds": []any{map[string]any{"term": "k", "scheme": "http://example.org/loc#", "location": loc}}}
		e := c.expect("POST", "/-/", mustJSON(t, kind), 400).json(t)["error"].(map[string]any)
		if msg, _ := e["message"].(string); !strings.Contains(msg, "reserved") {
			t.Errorf("location %s: %v", loc, e)
		}
	}
}

// A category stored with an attribute name that registration now refuses
// (written before the check) still loads and serves its entities.
func TestStoredCategoryWithTextUnsafeNameLoads(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		st := open(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := st.Put(ctx, store.Document{ID: categories.DocPrefix + "http://example.org/old#k", Body: []byte(`{"type":"category","class":"kind",
			"description":{"term":"k","scheme":"http://example.org/old#","location":"/old/","related":["` + categories.ResourceKind + `"],
			"attributes":{"a=b":{"type":"string","mutable":true,"required":false}}},
			"provider":{"local":[],"remote":[]}}`)}); err != nil {
			t.Fatal(err)
		}
		srv := testserver.Start(t, testserver.Options{Store: st})
		c := newClient(t, srv.URL)
		c.expect("PUT", "/old/e", []byte(`{"resources":[{"kind":"http://example.org/old#k","attributes":{"a=b":"v"}}]}`), 201)
		if got := c.expect("GET", "/old/e", nil, 200, "Accept", "application/json").json(t)["attributes"].(map[string]any)["a=b"]; got != "v" {
			t.Fatalf("attribute a=b of /old/e: %v", got)
		}
	})
}
