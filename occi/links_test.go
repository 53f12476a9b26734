package occi_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/store"
)

// startCompute starts a server; the compute and networkinterface kinds
// these tests use are OCCI Infrastructure's built-in ones.
func startCompute(t *testing.T, st store.Store) (*client, string) {
	srv := testserver.Start(t, testserver.Options{Store: st})
	return newClient(t, srv.URL), srv.URL
}

func TestLinksAsEntities(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		c, base := startCompute(t, open(t))
		linksAsEntities(t, c, base)
	})
}

func linksAsEntities(t *testing.T, c *client, base string) {
	for _, id := range []string{"a", "b"} {
		c.expect("PUT", "/compute/"+id, []byte(`{"resources":[{"kind":"http://schemas.ogf.org/occi/infrastructure#compute","attributes":{"occi.compute.cores":2}}]}`), 201)
	}
	// A link whose target does not exist is refused, and nothing is stored.
	r := c.expect("POST", "/networkinterface/", []byte(`{"links":[{"kind":"http://schemas.ogf.org/occi/infrastructure#networkinterface","id":"n0",
		"source":"/compute/a","target":"/compute/nope"}]}`), 400)
	if !strings.Contains(string(r.body), "/compute/nope") {
		t.Fatalf("error does not name the missing target: %s", r.body)
	}
	c.expect("GET", "/networkinterface/n0", nil, 404)

	// Source and target as pyOCNI absolute URLs and as OCCI 1.2 objects.
	c.expect("POST", "/networkinterface/", []byte(`{"links":[{"kind":"http://schemas.ogf.org/occi/infrastructure#networkinterface","id":"n1",
		"source":"`+base+`/compute/a","target":{"location":"/compute/b","kind":"http://schemas.ogf.org/occi/infrastructure#compute"},
		"attributes":{"occi.networkinterface.interface":"eth0"}}]}`), 201)
	link := c.expect("GET", "/networkinterface/n1", nil, 200).json(t)
	if link["source"] != base+"/compute/a" || link["target"] != base+"/compute/b" {
		t.Fatalf("link ends: %v", link)
	}
	// A resource kind refuses a link description and vice versa.
	c.expect("POST", "/compute/", []byte(`{"links":[{"kind":"http://schemas.ogf.org/occi/infrastructure#compute","source":"/compute/a","target":"/compute/b"}]}`), 400)

	// The OCCI 1.2 rendering of a resource shows its links.
	res := c.expect("GET", "/compute/a", nil, 200, "Accept", "application/json").json(t)
	links, _ := res["links"].([]any)
	if len(links) != 1 || links[0].(map[string]any)["id"] != "n1" {
		t.Fatalf("1.2 rendering of /compute/a: links %v", res["links"])
	}
	attrs := res["attributes"].(map[string]any)
	if attrs["occi.compute.cores"] != 2.0 || attrs["occi.compute.state"] != "inactive" || attrs["occi.core.id"] != "a" {
		t.Fatalf("1.2 attributes (flat, with defaults): %v", attrs)
	}
	// The text rendering shows it as a Link line.
	txt := c.expect("GET", "/compute/a", nil, 200, "Accept", "text/plain")
	for _, want := range []string{
		`Category: compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"`,
		`X-OCCI-Attribute: occi.compute.cores=2`,
		`Link: <` + base + `/compute/b>; rel="http://schemas.ogf.org/occi/infrastructure#compute"; self="` + base + `/networkinterface/n1"`,
	} {
		if !strings.Contains(string(txt.body), want) {
			t.Fatalf("text rendering lacks %q:\n%s", want, txt.body)
		}
	}

	// Deleting a resource deletes the links at either end.
	c.expect("DELETE", "/compute/b", nil, 200)
	c.expect("GET", "/networkinterface/n1", nil, 404)
	c.expect("GET", "/compute/a", nil, 200)
}

func TestInlineLinksAtCreation(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		c, base := startCompute(t, open(t))
		inlineLinksAtCreation(t, c, base)
	})
}

func inlineLinksAtCreation(t *testing.T, c *client, base string) {
	c.expect("PUT", "/compute/t", []byte(`{"resources":[{"kind":"http://schemas.ogf.org/occi/infrastructure#compute"}]}`), 201)
	r := c.expect("POST", "/compute/", []byte(`{"resources":[{"kind":"http://schemas.ogf.org/occi/infrastructure#compute","id":"s",
		"links":[{"kind":"http://schemas.ogf.org/occi/infrastructure#networkinterface","id":"nic","target":"/compute/t",
		          "attributes":{"occi.networkinterface.interface":"eth1"}}]}]}`), 201)
	if locs := r.json(t)["Location"].([]any); len(locs) != 1 || locs[0] != base+"/compute/s" {
		t.Fatalf("created: %v", locs)
	}
	link := c.expect("GET", "/networkinterface/nic", nil, 200).json(t)
	if link["source"] != base+"/compute/s" {
		t.Fatalf("inline link source: %v", link["source"])
	}
	s := c.expect("GET", "/compute/s", nil, 200).json(t)
	if l := s["links"].([]any); len(l) != 1 || l[0] != base+"/networkinterface/nic" {
		t.Fatalf("resource lists its inline link: %v", s["links"])
	}
	// An inline link to a missing target fails the whole create.
	c.expect("POST", "/compute/", []byte(`{"resources":[{"kind":"http://schemas.ogf.org/occi/infrastructure#compute","id":"s2",
		"links":[{"kind":"http://schemas.ogf.org/occi/infrastructure#networkinterface","target":"/compute/gone"}]}]}`), 400)
	c.expect("GET", "/compute/s2", nil, 404)
}

func TestTextRenderingsRoundTrip(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		c, base := startCompute(t, open(t))
		textRenderingsRoundTrip(t, c, base)
	})
}

func textRenderingsRoundTrip(t *testing.T, c *client, base string) {
	body := "Category: compute; scheme=\"http://schemas.ogf.org/occi/infrastructure#\"; class=\"kind\"\n" +
		"X-OCCI-Attribute: occi.core.title=\"web, front\"\n" +
		"X-OCCI-Attribute: occi.compute.cores=4\n"
	r := c.expect("POST", "/compute/", []byte(body), 201, "Content-Type", "text/plain", "Accept", "text/plain")
	loc, named := strings.CutPrefix(strings.TrimSpace(string(r.body)), "X-OCCI-Location: ")
	if !named || !strings.HasPrefix(loc, base+"/compute/") {
		t.Fatalf("text create answered %q", r.body)
	}
	path := strings.TrimPrefix(loc, base)
	got := c.expect("GET", path, nil, 200).json(t)
	if got["title"] != "web, front" || got["attributes"].(map[string]any)["occi"].(map[string]any)["compute"].(map[string]any)["cores"] != 4.0 {
		t.Fatalf("text-created entity: %v", got)
	}
	// text/occi: the same data in headers, comma-joined.
	r = c.expect("POST", "/compute/", nil, 201,
		"Content-Type", "text/occi", "Accept", "text/occi",
		"Category", `compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"`,
		"X-OCCI-Attribute", `occi.core.id="hdr", occi.compute.cores=3`)
	if r.header.Get("Location") != base+"/compute/hdr" || r.header.Get("X-OCCI-Location") != base+"/compute/hdr" || string(r.body) != "OK\n" {
		t.Fatalf("text/occi create: %v %q", r.header, r.body)
	}
	// An invalid value in text is a 400 naming the attribute.
	r = c.expect("POST", "/compute/", []byte("Category: compute; scheme=\"http://schemas.ogf.org/occi/infrastructure#\"; class=\"kind\"\nX-OCCI-Attribute: occi.compute.cores=\"many\"\n"), 400,
		"Content-Type", "text/plain", "Accept", "text/plain")
	if !strings.Contains(string(r.body), "occi.compute.cores") {
		t.Fatalf("text error does not name the attribute: %s", r.body)
	}
	// Immutable attributes cannot change after creation.
	c.expect("POST", path, []byte(`{"resources":[{"attributes":{"occi.compute.state":"active"}}]}`), 400)
	c.expect("POST", path, []byte(`{"resources":[{"attributes":{"occi.compute.cores":8}}]}`), 201)
}

func TestLinkRelIsTheTargetKind(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		c, base := startCompute(t, open(t))
		linkRelIsTheTargetKind(t, c, base)
	})
}

// linkRelIsTheTargetKind: links created through every rendering render
// rel as their target's kind; a rel the client gives is checked against
// the target, not dropped.
func linkRelIsTheTargetKind(t *testing.T, c *client, base string) {
	const (
		computeCat = `Category: compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"`
		text       = "text/plain"
	)
	c.expect("PUT", "/compute/a", []byte(`{"resources":[{"kind":"`+categories.ComputeKind+`"}]}`), 201)
	c.expect("PUT", "/storage/s", []byte(`{"resources":[{"kind":"`+categories.StorageKind+`","attributes":{"occi.storage.size":1}}]}`), 201)
	c.expect("PUT", "/network/n", []byte(`{"resources":[{"kind":"`+categories.NetworkKind+`"}]}`), 201)

	// A link entity in text/plain, one in text/occi, and one inline.
	c.expect("POST", "/storagelink/", []byte(`Category: storagelink; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"
X-OCCI-Attribute: occi.core.id="sl"
X-OCCI-Attribute: occi.core.source="`+base+`/compute/a"
X-OCCI-Attribute: occi.core.target="`+base+`/storage/s"
`), 201, "Content-Type", text, "Accept", text)
	c.expect("POST", "/networkinterface/", nil, 201, "Content-Type", "text/occi", "Accept", "text/occi",
		"Category", `networkinterface; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"`,
		"X-OCCI-Attribute", `occi.core.id="ni", occi.core.source="/compute/a", occi.core.target="`+base+`/network/n"`)
	c.expect("POST", "/compute/", []byte(computeCat+`
Link: <`+base+`/network/n>; rel="`+categories.NetworkKind+`"; category="`+categories.NetworkInterfaceKind+`"
X-OCCI-Attribute: occi.core.id="b"
`), 201, "Content-Type", text, "Accept", text)
	// rel may name an ancestor of the target's kind; the rendering names the kind.
	c.expect("POST", "/compute/", []byte(computeCat+`
Link: <`+base+`/storage/s>; rel="`+categories.ResourceKind+`"; category="`+categories.StorageLinkKind+`"
X-OCCI-Attribute: occi.core.id="c"
`), 201, "Content-Type", text, "Accept", text)

	wantRel := map[string]string{base + "/storage/s": categories.StorageKind, base + "/network/n": categories.NetworkKind}
	for path, n := range map[string]int{"/compute/a": 2, "/compute/b": 1, "/compute/c": 1} {
		for _, accept := range []string{"text/plain", "text/occi"} {
			r := c.expect("GET", path, nil, 200, "Accept", accept)
			var links []string
			if accept == "text/occi" {
				for _, v := range r.header.Values("Link") {
					links = append(links, splitOutside(v, ',')...)
				}
			} else {
				for _, l := range strings.Split(string(r.body), "\n") {
					if v, ok := strings.CutPrefix(l, "Link: "); ok {
						links = append(links, v)
					}
				}
			}
			got := 0
			for _, v := range links {
				l := parseLinkText(t, strings.TrimSpace(v))
				if strings.Contains(l.target, "?action=") {
					continue
				}
				got++
				if l.rel != wantRel[l.target] {
					t.Fatalf("%s (%s): link to %s has rel %q, want %q", path, accept, l.target, l.rel, wantRel[l.target])
				}
			}
			if got != n {
				t.Fatalf("%s (%s): %d links, want %d: %v", path, accept, got, n, links)
			}
		}
	}

	// A rel that contradicts the target is refused, naming it; nothing is stored.
	r := c.expect("POST", "/compute/", []byte(computeCat+`
Link: <`+base+`/network/n>; rel="`+categories.StorageKind+`"; category="`+categories.NetworkInterfaceKind+`"
X-OCCI-Attribute: occi.core.id="bad"
`), 400, "Content-Type", text, "Accept", text)
	if !strings.Contains(string(r.body), categories.StorageKind) {
		t.Fatalf("error does not name the rel: %s", r.body)
	}
	c.expect("GET", "/compute/bad", nil, 404)
	// The same in OCCI 1.2 JSON, whose target.kind is the rel.
	r = c.expect("POST", "/networkinterface/", []byte(`{"kind":"`+categories.NetworkInterfaceKind+`","id":"bad",
		"source":{"location":"/compute/a"},"target":{"location":"/network/n","kind":"`+categories.ComputeKind+`"}}`), 400,
		"Content-Type", "application/json", "Accept", "application/json")
	if !strings.Contains(string(r.body), categories.ComputeKind) {
		t.Fatalf("error does not name the target kind: %s", r.body)
	}
	c.expect("GET", "/networkinterface/bad", nil, 404)

	// A link instance's text rendering carries occi.core.target.kind; the
	// rendering read back and sent again (with source.kind too) is accepted
	// every time, and each kind is checked.
	r = c.expect("GET", "/storagelink/sl", nil, 200, "Accept", text)
	if !strings.Contains(string(r.body), "X-OCCI-Attribute: occi.core.target.kind=\""+categories.StorageKind+"\"\n") {
		t.Fatalf("link rendering lacks occi.core.target.kind:\n%s", r.body)
	}
	for i := range 5 {
		c.expect("PUT", "/storagelink/sl", append(r.body, "X-OCCI-Attribute: occi.core.source.kind=\""+categories.ComputeKind+"\"\n"...), 200,
			"Content-Type", text, "Accept", text)
		id := fmt.Sprintf("copy%d", i)
		c.expect("PUT", "/storagelink/"+id, []byte(strings.ReplaceAll(string(r.body), `occi.core.id="sl"`, `occi.core.id="`+id+`"`)), 201,
			"Content-Type", text, "Accept", text)
	}
	linkText := func(sourceKind, targetKind string) []byte {
		return []byte(`Category: storagelink; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"
X-OCCI-Attribute: occi.core.source="/compute/a"
X-OCCI-Attribute: occi.core.source.kind="` + sourceKind + `"
X-OCCI-Attribute: occi.core.target="/storage/s"
X-OCCI-Attribute: occi.core.target.kind="` + targetKind + `"
`)
	}
	for _, tc := range []struct{ source, target, named string }{
		{categories.StorageKind, categories.StorageKind, "source kind " + categories.StorageKind},
		{categories.ComputeKind, categories.ComputeKind, "target kind) " + categories.ComputeKind},
	} {
		r := c.expect("POST", "/storagelink/", linkText(tc.source, tc.target), 400, "Content-Type", text, "Accept", text)
		if !strings.Contains(string(r.body), tc.named) {
			t.Fatalf("error does not name the %s: %s", tc.named, r.body)
		}
	}
	c.expect("POST", "/storagelink/", linkText(categories.ResourceKind, categories.StorageKind), 201, "Content-Type", text, "Accept", text)
}

func TestEveryRenderingListsLinks(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		c, base := startCompute(t, open(t))
		everyRenderingListsLinks(t, c, base)
	})
}

// everyRenderingListsLinks: a compute with a storagelink and a
// networkinterface, each created at its own collection, lists both in
// pyOCNI JSON, OCCI 1.2 JSON, text/plain and text/occi.
func everyRenderingListsLinks(t *testing.T, c *client, base string) {
	c.expect("PUT", "/compute/a", []byte(`{"resources":[{"kind":"`+categories.ComputeKind+`"}]}`), 201)
	c.expect("PUT", "/storage/s", []byte(`{"resources":[{"kind":"`+categories.StorageKind+`","attributes":{"occi.storage.size":1}}]}`), 201)
	c.expect("PUT", "/network/n", []byte(`{"resources":[{"kind":"`+categories.NetworkKind+`"}]}`), 201)
	c.expect("PUT", "/compute/t", []byte(`{"resources":[{"kind":"`+categories.ComputeKind+`"}]}`), 201)
	c.expect("POST", "/storagelink/", []byte(`{"links":[{"kind":"`+categories.StorageLinkKind+`","id":"sl","source":"/compute/a","target":"/storage/s"}]}`), 201)
	c.expect("POST", "/networkinterface/", []byte(`{"kind":"`+categories.NetworkInterfaceKind+`","id":"ni",
		"source":{"location":"/compute/a"},"target":{"location":"/network/n"}}`), 201, "Content-Type", "application/json", "Accept", "application/json")
	want := []string{base + "/networkinterface/ni", base + "/storagelink/sl"}

	check := func(rendering string, got []string) {
		t.Helper()
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s rendering of /compute/a lists links %v, want %v", rendering, got, want)
		}
	}
	pyocni := c.expect("GET", "/compute/a", nil, 200).json(t)
	check("pyOCNI JSON", asList(pyocni["links"]))
	j12 := c.expect("GET", "/compute/a", nil, 200, "Accept", "application/json").json(t)
	var got []string
	for _, l := range asAnyList(j12["links"]) {
		lm := l.(map[string]any)
		got = append(got, base+map[string]string{categories.StorageLinkKind: "/storagelink/", categories.NetworkInterfaceKind: "/networkinterface/"}[lm["kind"].(string)]+lm["id"].(string))
	}
	check("OCCI 1.2 JSON", got)
	for _, accept := range []string{"text/plain", "text/occi"} {
		r := c.expect("GET", "/compute/a", nil, 200, "Accept", accept)
		var values []string
		if accept == "text/occi" {
			for _, v := range r.header.Values("Link") {
				values = append(values, splitOutside(v, ',')...)
			}
		} else {
			for _, l := range strings.Split(string(r.body), "\n") {
				if v, ok := strings.CutPrefix(l, "Link: "); ok {
					values = append(values, v)
				}
			}
		}
		got = nil
		for _, v := range values {
			if l := parseLinkText(t, strings.TrimSpace(v)); !strings.Contains(l.target, "?action=") {
				got = append(got, l.self)
			}
		}
		check(accept, got)
	}

	// pyOCNI's inline links and what a client stored in "links" stay; a
	// deleted link no longer shows.
	c.expect("PUT", "/compute/b", []byte(`{"resources":[{"kind":"`+categories.ComputeKind+`",
		"links":[{"kind":"`+categories.NetworkInterfaceKind+`","id":"in","target":"/compute/t"}]}]}`), 201)
	c.expect("POST", "/storagelink/", []byte(`{"links":[{"kind":"`+categories.StorageLinkKind+`","id":"sb","source":"/compute/b","target":"/storage/s"}]}`), 201)
	if got := asList(c.expect("GET", "/compute/b", nil, 200).json(t)["links"]); !slices.Equal(got, []string{base + "/networkinterface/in", base + "/storagelink/sb"}) {
		t.Fatalf("pyOCNI links of /compute/b: %v", got)
	}
	c.expect("DELETE", "/networkinterface/in", nil, 200)
	if got := asList(c.expect("GET", "/compute/b", nil, 200).json(t)["links"]); !slices.Equal(got, []string{base + "/storagelink/sb"}) {
		t.Fatalf("pyOCNI links of /compute/b after deleting one: %v", got)
	}
}

func TestLinkStoredWithoutTargetKind(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		srv := testserver.Start(t, testserver.Options{Store: open(t)})
		c := newClient(t, srv.URL)
		c.expect("PUT", "/network/n", []byte(`{"resources":[{"kind":"`+categories.NetworkKind+`"}]}`), 201)
		// A resource and a link as stored before resources listed their
		// links and links recorded their target's kind.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := srv.Store.Put(ctx, store.Document{ID: "/compute/a", Body: []byte(`{"type":"resource","id":"a",
			"kind":"` + categories.ComputeKind + `","mixins":[],"attributes":{"occi":{"compute":{"state":"inactive"}}},"actions":[],"links":[]}`)}); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Store.Put(ctx, store.Document{ID: "/networkinterface/old", Body: []byte(`{"type":"link","id":"old",
			"kind":"` + categories.NetworkInterfaceKind + `","mixins":[],"attributes":{},"actions":[],"links":[],
			"source":"/compute/a","target":"/network/n"}`)}); err != nil {
			t.Fatal(err)
		}
		r := c.expect("GET", "/compute/a", nil, 200, "Accept", "text/plain")
		want := `Link: <` + srv.URL + `/network/n>; rel="` + categories.NetworkKind + `"; self="` + srv.URL + `/networkinterface/old"`
		if !strings.Contains(string(r.body), want) {
			t.Fatalf("rendering lacks %s:\n%s", want, r.body)
		}
		link := c.expect("GET", "/networkinterface/old", nil, 200, "Accept", "application/json").json(t)
		if tk := link["target"].(map[string]any)["kind"]; tk != categories.NetworkKind {
			t.Fatalf("1.2 JSON target.kind %v", tk)
		}
	})
}

// TestCollectionListingShowsLinks: the OCCI 1.2 JSON listing of a
// collection shows each resource's links, as the single-entity rendering
// does, reading them with one store query per batch (not one per
// resource); a mixin's membership answer shows them too.
func TestCollectionListingShowsLinks(t *testing.T) {
	const batch, n = 4, 20
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		st := &countingStore{Store: open(t)}
		srv := testserver.Start(t, testserver.Options{Store: st, ListBatch: batch})
		c := newClient(t, srv.URL)
		c.expect("PUT", "/storage/s", []byte(`{"resources":[{"kind":"`+categories.StorageKind+`","attributes":{"occi.storage.size":1}}]}`), 201)
		want := map[string][]string{}
		var links []string
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("c%02d", i)
			c.expect("PUT", "/compute/"+id, []byte(`{"resources":[{"kind":"`+categories.ComputeKind+`"}]}`), 201)
			for j := 0; j < i%3; j++ {
				lid := fmt.Sprintf("l%02d%d", i, j)
				links = append(links, `{"kind":"`+categories.StorageLinkKind+`","id":"`+lid+`","source":"/compute/`+id+`","target":"/storage/s"}`)
				want[id] = append(want[id], lid)
			}
		}
		c.expect("POST", "/storagelink/", []byte(`{"links":[`+strings.Join(links, ",")+`]}`), 201)
		check := func(what string, body map[string]any, count int) {
			t.Helper()
			res := asAnyList(body["resources"])
			if len(res) != count {
				t.Fatalf("%s: %d resources, want %d", what, len(res), count)
			}
			for _, r := range res {
				rm := r.(map[string]any)
				var got []string
				for _, l := range asAnyList(rm["links"]) {
					lm := l.(map[string]any)
					if lm["target"].(map[string]any)["location"] != srv.URL+"/storage/s" {
						t.Fatalf("%s: link %v", what, lm)
					}
					got = append(got, lm["id"].(string))
				}
				sort.Strings(got)
				if id := rm["id"].(string); !slices.Equal(got, want[id]) {
					t.Fatalf("%s: resource %s lists links %v, want %v", what, id, got, want[id])
				}
			}
		}
		st.start()
		check("GET /compute/", c.expect("GET", "/compute/", nil, 200, "Accept", "application/json").json(t), n)
		// Per batch: the batch's read and its links' read; and the empty
		// pass over the collection's links.
		if calls, _, _ := st.counts(); calls > 2*(n/batch+1)+1 {
			t.Fatalf("listing %d resources in batches of %d made %d store queries; want one for the links of each batch", n, batch, calls)
		}
		// A single resource's rendering agrees.
		check("GET /compute/c05", map[string]any{"resources": []any{c.expect("GET", "/compute/c05", nil, 200, "Accept", "application/json").json(t)}}, 1)

		c.expect("POST", "/-/", []byte(`{"mixins":[{"term":"tagged","scheme":"http://example.com/tags#","location":"/tagged/"}]}`), 200)
		r := c.expect("POST", "/tagged/", []byte(`{"X-OCCI-Location":["`+srv.URL+`/compute/c01","`+srv.URL+`/compute/c02"]}`), 200, "Accept", "application/json")
		check("POST /tagged/", r.json(t), 2)
	})
}
