package occi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/testserver"
)

// journeyClient speaks one OCCI rendering only.
type journeyClient struct {
	t    *testing.T
	c    *client
	base string
	text bool // text/plain; otherwise OCCI 1.2 JSON
}

func (j *journeyClient) send(method, path string, want int, textBody string, jsonBody any) reply {
	j.t.Helper()
	if j.text {
		return j.c.expect(method, path, []byte(textBody), want, "Content-Type", "text/plain", "Accept", "text/plain")
	}
	var body []byte
	if jsonBody != nil {
		var err error
		if body, err = json.Marshal(jsonBody); err != nil {
			j.t.Fatal(err)
		}
	}
	return j.c.expect(method, path, body, want, "Content-Type", "application/json", "Accept", "application/json")
}

// create posts an entity and returns its path.
func (j *journeyClient) create(coll, kind string, attrs map[string]any) string {
	j.t.Helper()
	var lines strings.Builder
	lines.WriteString("Category: " + kind + "; scheme=\"" + categories.InfraScheme + "\"; class=\"kind\"\n")
	for k, v := range attrs {
		lines.WriteString("X-OCCI-Attribute: " + k + "=" + textValueOf(v) + "\n")
	}
	r := j.send("POST", coll, 201, lines.String(), map[string]any{"kind": categories.InfraScheme + kind, "attributes": attrs})
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, j.base+coll) {
		j.t.Fatalf("create in %s: Location %q", coll, loc)
	}
	return strings.TrimPrefix(loc, j.base)
}

// read returns the entity's attributes (flat names) and its mixins,
// parsed from the client's own rendering.
func (j *journeyClient) read(path string) (attrs map[string]string, mixins []string) {
	j.t.Helper()
	r := j.send("GET", path, 200, "", nil)
	attrs = map[string]string{}
	if j.text {
		for _, line := range strings.Split(string(r.body), "\n") {
			if v, ok := strings.CutPrefix(line, "X-OCCI-Attribute: "); ok {
				k, val, _ := strings.Cut(v, "=")
				attrs[k] = strings.Trim(val, `"`)
			}
			if v, ok := strings.CutPrefix(line, "Category: "); ok && strings.Contains(v, `class="mixin"`) {
				term, rest, _ := strings.Cut(v, ";")
				scheme := rest[strings.Index(rest, `scheme="`)+8:]
				mixins = append(mixins, scheme[:strings.Index(scheme, `"`)]+term)
			}
		}
		return attrs, mixins
	}
	e := r.json(j.t)
	for k, v := range e["attributes"].(map[string]any) {
		attrs[k] = strings.Trim(textValueOf(v), `"`)
	}
	for _, m := range asAnyList(e["mixins"]) {
		mixins = append(mixins, m.(string))
	}
	return attrs, mixins
}

// TestClientJourney: a client that speaks only text/plain, or only OCCI
// 1.2 JSON, discovers the model, creates, updates, links, tags with a user
// mixin, triggers an action on and deletes a compute resource.
func TestClientJourney(t *testing.T) {
	for _, rendering := range []string{"text/plain", "json-1.2"} {
		t.Run(rendering, func(t *testing.T) {
			srv := testserver.Start(t, testserver.Options{})
			j := &journeyClient{t: t, c: newClient(t, srv.URL), base: srv.URL, text: rendering == "text/plain"}

			// Discover.
			model := j.send("GET", "/-/", 200, "", nil)
			if !strings.Contains(string(model.body), "compute") || !strings.Contains(string(model.body), categories.InfraScheme) {
				t.Fatalf("the model does not show the compute kind:\n%.400s", model.body)
			}

			// Create.
			vm := j.create("/compute/", "compute", map[string]any{"occi.compute.cores": 2, "occi.core.title": "web"})
			if attrs, _ := j.read(vm); attrs["occi.compute.cores"] != "2" || attrs["occi.compute.state"] != "inactive" {
				t.Fatalf("created compute: %v", attrs)
			}

			// Update (partial).
			j.send("POST", vm, 200, "X-OCCI-Attribute: occi.compute.cores=4\n",
				map[string]any{"attributes": map[string]any{"occi.compute.cores": 4}})
			if attrs, _ := j.read(vm); attrs["occi.compute.cores"] != "4" || attrs["occi.core.title"] != "web" {
				t.Fatalf("updated compute: %v", attrs)
			}

			// Link it to a network.
			net := j.create("/network/", "network", nil)
			nic := j.create("/networkinterface/", "networkinterface", map[string]any{
				"occi.core.source": vm, "occi.core.target": net, "occi.networkinterface.interface": "eth0",
			})
			if attrs, _ := j.read(nic); !strings.HasSuffix(attrs["occi.core.source"], vm) || !strings.HasSuffix(attrs["occi.core.target"], net) {
				t.Fatalf("link ends: %v", attrs)
			}

			// A user mixin, and tag the compute with it.
			const tagScheme = "http://example.org/occi/tags#"
			j.send("POST", "/-/", 200,
				"Category: prod; scheme=\""+tagScheme+"\"; class=\"mixin\"; location=\"/tags/prod/\"\n",
				map[string]any{"mixins": []any{map[string]any{"term": "prod", "scheme": tagScheme, "location": "/tags/prod/"}}})
			j.send("POST", "/tags/prod/", 200, "X-OCCI-Location: "+srv.URL+vm+"\n",
				map[string]any{"locations": []any{srv.URL + vm}})
			if _, mixins := j.read(vm); len(mixins) != 1 || mixins[0] != tagScheme+"prod" {
				t.Fatalf("mixins after tagging: %v", mixins)
			}

			// Trigger an action.
			j.send("POST", vm+"?action=start", 200,
				"Category: start; scheme=\""+categories.ComputeActions+"\"; class=\"action\"\n",
				map[string]any{"action": categories.ComputeActions + "start"})
			if attrs, _ := j.read(vm); attrs["occi.compute.state"] != "active" {
				t.Fatalf("state after start: %v", attrs)
			}

			// Delete: the compute and its link are gone, the network stays.
			j.send("DELETE", vm, 200, "", nil)
			j.send("GET", vm, 404, "", nil)
			j.send("GET", nic, 404, "", nil)
			j.send("GET", net, 200, "", nil)
		})
	}
}
