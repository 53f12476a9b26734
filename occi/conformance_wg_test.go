package occi_test

// The spec-valid checks of OCCI-WG tests/test_occi_11.py (doyouspeakOCCI's
// ctf_*), with OCCI 1.2 substitutions (OCCI/1.2 in Server, the 1.2
// infrastructure model, a registered rel for the user mixin), plus the
// protocol checks of ooi's middleware tests and the query extras.

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/testserver"
)

const myStuff = `my_stuff; scheme="http://example.com/occi/my_stuff#"; class="mixin"`

func wgClient(t *testing.T, accept string) *occiClient {
	srv := testserver.Start(t, testserver.Options{})
	return &occiClient{t: t, base: srv.URL, d: dialectFor(t, accept)}
}

// dialectFor is the dialect that asks for accept.
func dialectFor(t *testing.T, accept string) dialect {
	for _, d := range dialects {
		if d.accept == accept {
			return d
		}
	}
	t.Fatalf("no dialect %s", accept)
	return dialect{}
}

// ctf_341 and ctf_367: the query interface, its RFC 5785 twin, a Category
// filter that returns exactly one category, user mixins.
func TestWG_QueryInterface(t *testing.T) {
	c := wgClient(t, "text/occi")
	a := c.expect(c.do("GET", "/-/", nil, nil), 200)
	b := c.expect(c.do("GET", "/.well-known/org/ogf/occi/-/", nil, nil), 200)
	if strings.Join(a.header.Values("Category"), ",") != strings.Join(b.header.Values("Category"), ",") {
		t.Fatal("/-/ and /.well-known/org/ogf/occi/-/ differ")
	}
	r := c.expect(c.do("GET", "/-/", nil, nil, "Content-Type", "text/occi", "Category", `compute; scheme="`+categories.InfraScheme+`"`), 200)
	if got := c.textLines(r, "Category"); len(got) != 1 || !strings.HasPrefix(got[0], "Category: compute;") {
		t.Fatalf("filtered query: %v", got)
	}
	c.expect(c.do("POST", "/-/", []string{"Category: " + myStuff + `; rel="` + categories.OSTemplateMixin + `"; location="/my_stuff/"`}, nil), 200)
	c.expect(c.do("POST", "/-/", []string{"Category: " + myStuff + `; location="/my_stuff/"`}, nil), 409)
	// A provider-defined mixin cannot be deleted; a user mixin can.
	c.expect(c.do("DELETE", "/-/", []string{`Category: os_tpl; scheme="` + categories.InfraScheme + `"; class="mixin"`}, nil), 403)
	c.expect(c.do("DELETE", "/-/", []string{"Category: " + myStuff}, nil), 200)
	// Its collection is gone with it (no entity lives below it).
	c.expect(c.do("GET", "/my_stuff/", nil, nil), 404)
}

// ctf_342/343: kind and mixin collections, tagging, filters.
func TestWG_OperationsOnMixinsAndKinds(t *testing.T) {
	c := wgClient(t, "text/occi")
	compute := `compute; scheme="` + categories.InfraScheme + `"; class="kind"`
	// OCCI 1.1 clients create at the root, naming the kind.
	r1 := c.expect(c.do("POST", "/", []string{"Category: " + compute}, nil), 201)
	r2 := c.expect(c.do("POST", "/", []string{"Category: " + compute, `X-OCCI-Attribute: occi.compute.hostname="foo-wg-bar"`}, nil), 201)
	c1, c2 := r1.header.Get("Location"), r2.header.Get("Location")
	listed := c.list("/compute/", nil)
	uri := c.do("GET", "/compute/", nil, nil, "Accept", "text/uri-list")
	if got := strings.Fields(string(uri.body)); uri.status != 200 || len(got) != len(listed) || len(got) == 0 || got[0] != listed[0] {
		t.Fatalf("uri-list %q vs %v", uri.body, listed)
	}
	start := ocat{term: "start", scheme: categories.ComputeActions, class: "action"}
	c.expect(c.action(c.base+"/compute/", start, nil), 200)
	for _, loc := range []string{c1, c2} {
		if st := c.get(loc).attrs["occi.compute.state"]; st != "active" {
			t.Fatalf("%s after the collection start: %v", loc, st)
		}
	}
	c.expect(c.do("POST", "/-/", []string{"Category: " + myStuff + `; location="/my_stuff/"`}, nil), 200)
	c.expect(c.do("POST", "/my_stuff/", []string{"X-OCCI-Location: " + c1}, nil), 200)
	if e := c.get(c1); !slices.Contains(e.categories, "http://example.com/occi/my_stuff#my_stuff") {
		t.Fatalf("tagged compute: %v", e.categories)
	}
	c.expect(c.do("PUT", "/my_stuff/", []string{"X-OCCI-Location: " + c2}, nil), 200)
	if got := c.list("/my_stuff/", nil); len(got) != 1 || got[0] != c2 {
		t.Fatalf("/my_stuff/ after PUT: %v", got)
	}
	if got := c.list("/compute/", &ocat{term: "my_stuff", scheme: "http://example.com/occi/my_stuff#", class: "mixin"}); len(got) != 1 || got[0] != c2 {
		t.Fatalf("/compute/ filtered by my_stuff: %v", got)
	}
	r := c.expect(c.do("GET", "/compute/", nil, nil, "X-OCCI-Attribute", `occi.compute.hostname="foo-wg-bar"`), 200)
	if got := c.textLines(r, "X-OCCI-Location"); len(got) != 1 {
		t.Fatalf("attribute filter: %v", got)
	}
	c.expect(c.do("DELETE", "/my_stuff/", []string{"X-OCCI-Location: " + c2}, nil), 200)
	c.expect(c.do("DELETE", "/-/", []string{"Category: " + myStuff}, nil), 200)
	c.expect(c.do("DELETE", "/compute/", nil, nil), 200)
	if got := c.list("/compute/", nil); len(got) != 0 {
		t.Fatalf("after DELETE /compute/: %v", got)
	}
}

// ctf_344: resource instances: action via its action link, partial update,
// PUT create and full update, delete.
func TestWG_OperationsOnResourceInstances(t *testing.T) {
	c := wgClient(t, "text/occi")
	compute := "Category: " + `compute; scheme="` + categories.InfraScheme + `"; class="kind"`
	loc := c.expect(c.do("POST", "/compute/", []string{compute}, nil), 201).header.Get("Location")
	var startLink string
	for _, l := range c.textLines(c.expect(c.do("GET", loc, nil, nil), 200), "Link") {
		if strings.Contains(l, "?action=start>") {
			startLink = parseLinkText(t, strings.TrimPrefix(l, "Link: ")).target
		}
	}
	if startLink == "" {
		t.Fatal("no start action link")
	}
	c.expect(c.do("POST", startLink, []string{`Category: start; scheme="` + categories.ComputeActions + `"; class="action"`}, nil), 200)
	c.expect(c.do("POST", loc, []string{`X-OCCI-Attribute: occi.compute.hostname="foo"`}, nil), 200)
	c.expect(c.do("PUT", "/compute/123", []string{compute, `X-OCCI-Attribute: example.test="foo"`}, nil), 400)
	c.expect(c.do("PUT", "/compute/123", []string{compute, `X-OCCI-Attribute: occi.core.title="put"`}, nil), 201)
	c.expect(c.do("PUT", "/compute/123", []string{compute, `X-OCCI-Attribute: occi.core.title="full update"`}, nil), 200)
	if e := c.get(c.base + "/compute/123"); e.attrs["occi.core.title"] != "full update" {
		t.Fatalf("after the full update: %v", e.attrs)
	}
	c.expect(c.do("DELETE", loc, nil, nil), 200)
	c.expect(c.do("DELETE", "/compute/123", nil, nil), 200)
}

// ctf_345: links as entities and inline at creation.
func TestWG_HandlingLinkInstances(t *testing.T) {
	c := wgClient(t, "text/occi")
	comp := c.expect(c.do("POST", "/compute/", []string{`Category: compute; scheme="` + categories.InfraScheme + `"; class="kind"`}, nil), 201).header.Get("Location")
	netw := c.expect(c.do("POST", "/network/", []string{`Category: network; scheme="` + categories.InfraScheme + `"; class="kind"`}, nil), 201).header.Get("Location")
	link := c.expect(c.do("POST", "/networkinterface/", []string{`Category: networkinterface; scheme="` + categories.InfraScheme + `"; class="kind"`,
		`X-OCCI-Attribute: occi.core.source="` + comp + `", occi.core.target="` + netw + `"`}, nil), 201).header.Get("Location")
	attrs := strings.Join(c.expect(c.do("GET", link, nil, nil), 200).header.Values("X-OCCI-Attribute"), ",")
	for _, want := range []string{"occi.core.source", "occi.core.target", "occi.networkinterface.mac"} {
		if !strings.Contains(attrs, want) {
			t.Fatalf("link attributes %s lack %s", attrs, want)
		}
	}
	c.expect(c.do("DELETE", comp, nil, nil), 200)
	c.expect(c.do("GET", link, nil, nil), 404)
	comp = c.expect(c.do("POST", "/compute/", []string{`Category: compute; scheme="` + categories.InfraScheme + `"; class="kind"`,
		`Link: <` + netw + `>; rel="` + categories.NetworkKind + `"; category="` + categories.NetworkInterfaceKind + `"`}, nil), 201).header.Get("Location")
	if len(c.expect(c.do("GET", comp, nil, nil), 200).header.Values("Link")) == 0 {
		t.Fatal("compute created with an inline link has no Link header")
	}
}

// ctf_35: syntax of the text renderings and quote escaping.
func TestWG_Syntax(t *testing.T) {
	c := wgClient(t, "text/plain")
	lines := strings.Split(string(c.expect(c.do("GET", "/-/", nil, nil), 200).body), "\n")
	re := regexp.MustCompile(`\w+; \bscheme=[a-z:./#"]*; \bclass="(?:action|kind|mixin)"`)
	if !re.MatchString(lines[1]) {
		t.Fatalf("line 2 %q does not match the WG syntax check", lines[1])
	}
	occi := &occiClient{t: t, base: c.base, d: dialectFor(t, "text/occi")}
	if !re.MatchString(occi.expect(occi.do("GET", "/-/", nil, nil), 200).header.Get("Category")) {
		t.Fatal("text/occi Category header fails the WG syntax check")
	}
	r := occi.expect(occi.do("POST", "/compute/", []string{`Category: compute; scheme="` + categories.InfraScheme + `"; class="kind"`,
		`X-OCCI-Attribute: occi.compute.memory=3.6, occi.core.title="How's your quotes escaping? \", occi.compute.memory=1.0"`}, nil), 201)
	e := c.get(r.header.Get("Location"))
	if e.attrs["occi.compute.memory"] != "3.6" || e.attrs["occi.core.title"] != `How's your quotes escaping? ", occi.compute.memory=1.0` {
		t.Fatalf("attributes %v", e.attrs)
	}
}

// ctf_365 (1.2: OCCI/1.2), ctf_366, and ooi's protocol checks.
func TestWG_VersioningAndMediaTypes(t *testing.T) {
	c := wgClient(t, "text/plain")
	for _, accept := range []string{"text/plain", "text/occi", "text/occi+plain", "application/json", "application/occi+json; version=1.2"} {
		r := c.do("GET", "/-/", nil, nil, "Accept", accept)
		want, _, _ := strings.Cut(accept, ";")
		if got, _, _ := strings.Cut(r.header.Get("Content-Type"), ";"); r.status != 200 || got != want {
			t.Fatalf("Accept %s: %d %s", accept, r.status, r.header.Get("Content-Type"))
		}
	}
	if !strings.Contains(c.do("GET", "/nope", nil, nil).header.Get("Server"), "OCCI/1.2") {
		t.Fatal("no OCCI/1.2 in Server on a 404")
	}
	c.expect(c.do("GET", "/-/", nil, nil, "Accept", "image/png"), 406)
	c.expect(c.do("GET", "/-/", nil, nil, "Accept", "text/uri-list"), 400)
	c.expect(c.do("GET", "/compute/", nil, nil, "Accept", "text/uri-list"), 200)
	for ua, status := range map[string]int{"foo OCCI/1.2 bar": 200, "foo OCCI/1.1 bar": 200, "foo OCCI/2.2 bar": 501, "foo OCCI/1.3": 501, "fooOCCI/2.2bar": 200} {
		if r := c.do("GET", "/-/", nil, nil, "User-Agent", ua); r.status != status {
			t.Fatalf("User-Agent %q: %d, want %d", ua, r.status, status)
		}
	}
}

// ctf_gfd184 with the 1.2 model: the infrastructure kinds, mixins and
// actions as discovered in each rendering.
func TestWG_OCCIInfrastructure(t *testing.T) {
	forEachDialect(t, func(t *testing.T, c *occiClient) {
		cats := c.discover(nil)
		for term, attrs := range map[string][]string{
			"compute":          {"occi.compute.architecture", "occi.compute.cores", "occi.compute.hostname", "occi.compute.share", "occi.compute.memory", "occi.compute.state", "occi.compute.state.message"},
			"network":          {"occi.network.vlan", "occi.network.label", "occi.network.state"},
			"storage":          {"occi.storage.size", "occi.storage.state"},
			"storagelink":      {"occi.storagelink.deviceid", "occi.storagelink.mountpoint", "occi.storagelink.state"},
			"networkinterface": {"occi.networkinterface.interface", "occi.networkinterface.mac", "occi.networkinterface.state"},
		} {
			k := findCat(t, cats, categories.InfraScheme+term, "kind")
			for _, a := range attrs {
				if _, ok := k.attrs[a]; !ok {
					t.Fatalf("%s lacks %s", term, a)
				}
			}
			if want := map[bool]string{true: coreScheme + "link", false: coreScheme + "resource"}[strings.HasSuffix(term, "link") || term == "networkinterface"]; k.rel != want {
				t.Fatalf("%s rel %q, want %s", term, k.rel, want)
			}
		}
		for _, a := range []string{"compute/action#start", "compute/action#stop", "compute/action#restart", "compute/action#suspend", "compute/action#save",
			"network/action#up", "network/action#down", "storage/action#online", "storage/action#offline"} {
			findCat(t, cats, "http://schemas.ogf.org/occi/infrastructure/"+a, "action")
		}
		for _, m := range []string{categories.IPNetworkMixin, categories.IPNetworkInterface, categories.OSTemplateMixin, categories.ResourceTemplateMixin} {
			findCat(t, cats, m, "mixin")
		}
	})
}

// State transitions stay honest: refused transitions are 409.
func TestConformance_StateMachine(t *testing.T) {
	forEachDialect(t, func(t *testing.T, c *occiClient) {
		cats := c.discover(nil)
		loc := infraCreate(t, c, cats, "compute", nil, nil)
		act := func(term string, status int, state string) {
			t.Helper()
			c.expect(c.action(loc, findCat(t, cats, categories.ComputeActions+term, "action"), nil), status)
			if got := c.get(loc).attrs["occi.compute.state"]; got != state {
				t.Fatalf("after %s: state %v, want %s", term, got, state)
			}
		}
		act("suspend", http.StatusConflict, "inactive")
		act("start", http.StatusOK, "active")
		act("start", http.StatusConflict, "active")
		act("suspend", http.StatusOK, "suspended")
		act("restart", http.StatusOK, "active")
		c.expect(c.action(loc, findCat(t, cats, categories.ComputeActions+"stop", "action"), map[string]any{"method": "acpioff"}), http.StatusOK)
		c.expect(c.action(loc, findCat(t, cats, categories.ComputeActions+"stop", "action"), map[string]any{"method": "yank"}), http.StatusBadRequest)
		// Clients cannot set the state themselves.
		if c.d.isJSON() {
			c.expect(c.do("POST", loc, nil, map[string]any{"kind": categories.ComputeKind, "attributes": map[string]any{"occi.compute.state": "active"}}), http.StatusBadRequest)
		} else {
			c.expect(c.do("POST", loc, []string{`X-OCCI-Attribute: occi.compute.state="active"`}, nil), http.StatusBadRequest)
		}
	})
}

// Query extras: ?q=, ?category=, pagination.
func TestConformance_QueryExtras(t *testing.T) {
	forEachDialect(t, func(t *testing.T, c *occiClient) {
		cats := c.discover(nil)
		for _, h := range []string{"alpha", "beta", "gamma"} {
			infraCreate(t, c, cats, "compute", nil, map[string]any{"occi.compute.hostname": h + ".example.org"})
		}
		if got := c.list("/compute/?q=occi.compute.hostname=beta.example.org", nil); len(got) != 1 {
			t.Fatalf("?q=name=value: %v", got)
		}
		if got := c.list("/compute/?q=GAMMA", nil); len(got) != 1 {
			t.Fatalf("?q=word: %v", got)
		}
		if got := c.list("/?category="+strings.ReplaceAll(categories.ComputeKind, "#", "%23"), nil); len(got) != 3 {
			t.Fatalf("?category=: %v", got)
		}
		all := c.list("/compute/", nil)
		p1, p2 := c.list("/compute/?page=1&number=2", nil), c.list("/compute/?page=2&number=2", nil)
		if len(p1) != 2 || len(p2) != 1 || slices.Contains(p1, p2[0]) || len(all) != 3 {
			t.Fatalf("pages %v %v of %v", p1, p2, all)
		}
		if got := c.list("/compute/?page=9&number=2", nil); len(got) != 0 {
			t.Fatalf("past the end: %v", got)
		}
		c.expect(c.do("GET", "/compute/?page=1&number=100000", nil, nil), http.StatusRequestEntityTooLarge)
	})
}
