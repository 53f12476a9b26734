package occi_test

import (
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
	summary := "crlf\r\nend\\"
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
