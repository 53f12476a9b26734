package occi_test

// Category rules and entity bounds: what registration, update and deletion
// of categories refuse, and what tagging an entity with mixins checks. On
// both stores.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

// newCompatOn is newCompat on a store of the caller's choice.
func newCompatOn(t *testing.T, st store.Store, steps ...string) *compatEnv {
	t.Helper()
	rec := &recorder{}
	srv := testserver.Start(t, testserver.Options{Store: st, Register: rec.register})
	e := &compatEnv{t: t, srv: srv, c: newClient(t, srv.URL), rec: rec, base: srv.URL}
	e.apply(steps...)
	rec.take()
	return e
}

// Registering what is registered already, exactly so, is a no-op answered
// 200; anything different under a registered id stays 409. Re-binding a kind
// to the providers it has is a no-op too, even for a built-in kind.
func TestRegistrationIsIdempotent(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		e := newCompatOn(t, open(t), "F1", "F2")
		e.unchanged(func() {
			e.apply("F1", "F2")
			expectEmpty(t, e.c.do("PUT", "/-/", []byte(`{"providers":[{"OCCI_ID":"`+categories.ComputeKind+`","Provider":{"local":["occi_infrastructure"],"remote":[]}}]}`)), 200)
		})
		// A document with one known and one new category registers the new one.
		expectEmpty(t, e.c.do("POST", "/-/", []byte(`{"actions":[{"term":"execute","scheme":"http://houssem.org/cmbs/message/action#","title":"execute locally the message","attributes":{}},`+
			`{"term":"fresh","scheme":"http://x#"}]}`)), 200)
		if _, ok := byID(t, map[string]any{"actions": anyList(e.listCategories()["actions"])})["http://x#fresh"]; !ok {
			t.Fatal("the new action of a partly known document was not registered")
		}
		e.unchanged(func() {
			// Another title is another definition.
			expectError(t, e.c.do("POST", "/-/", []byte(`{"actions":[{"term":"execute","scheme":"http://houssem.org/cmbs/message/action#","title":"changed"}]}`)),
				409, "http://houssem.org/cmbs/message/action#execute", "different definition")
			// Another class is too.
			expectError(t, e.c.do("POST", "/-/", []byte(`{"mixins":[{"term":"member","scheme":"http://houssem.org/cmbs#","location":"/mm/"}]}`)),
				409, memberKind, "kind")
			// Rebinding a built-in kind elsewhere stays forbidden.
			expectError(t, e.c.do("PUT", "/-/", []byte(`{"providers":[{"OCCI_ID":"`+categories.ComputeKind+`","Provider":{"local":["cmbs_member"]}}]}`)), 403, "built in")
		})
	})
}

func anyList(ms []map[string]any) []any {
	out := make([]any, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// An action a kind or mixin still declares cannot be deleted on its own.
func TestDeleteDeclaredAction(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		e := newCompatOn(t, open(t), "F1", "F2")
		e.unchanged(func() {
			expectError(t, e.c.do("DELETE", "/-/", []byte(`{"actions":[{"term":"send_l1","scheme":"http://houssem.org/cmbs/message/action#"}]}`)),
				409, "http://houssem.org/cmbs/message/action#send_l1", "mixin "+cmbsScheme+"l1")
		})
		// With the mixin that declares it, in one request, it goes.
		expectEmpty(t, e.c.do("DELETE", "/-/", []byte(`{"actions":[{"term":"send_l1","scheme":"http://houssem.org/cmbs/message/action#"}],`+
			`"mixins":[{"term":"l1","scheme":"http://houssem.org/cmbs#"}]}`)), 200)
		for _, a := range ids(e.listCategories()["actions"]) {
			if strings.HasSuffix(a, "#send_l1") {
				t.Fatal("send_l1 still listed")
			}
		}
		// Likewise a mixin another depends on, and a kind another has as parent.
		e.c.expect("POST", "/-/", []byte(`{"kinds":[{"term":"base","scheme":"http://x#","location":"/base/"},{"term":"sub","scheme":"http://x#","location":"/sub/","parent":"http://x#base"}],`+
			`"mixins":[{"term":"dep","scheme":"http://x#","location":"/dep/"},{"term":"top","scheme":"http://x#","location":"/top/","depends":["http://x#dep"]}]}`), 200)
		e.unchanged(func() {
			expectError(t, e.c.do("DELETE", "/-/", []byte(`{"mixins":[{"term":"dep","scheme":"http://x#"}]}`)), 409, "mixin http://x#dep", "mixin http://x#top")
			expectError(t, e.c.do("DELETE", "/-/", []byte(`{"kinds":[{"term":"base","scheme":"http://x#"}]}`)), 409, "kind http://x#base", "kind http://x#sub")
		})
		expectEmpty(t, e.c.do("DELETE", "/-/", []byte(`{"kinds":[{"term":"base","scheme":"http://x#"},{"term":"sub","scheme":"http://x#"}],`+
			`"mixins":[{"term":"dep","scheme":"http://x#"},{"term":"top","scheme":"http://x#"}]}`)), 200)
	})
}

// A default that fails its own definition is refused at registration, with
// pyOCNI's two placeholders excepted; a location without its trailing "/"
// is normalised everywhere.
func TestDefaultsAndLocations(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		e := newCompatOn(t, open(t), "F1", "F2") // cmbs_layer's default "true" fails l1|l2|…: still registers
		kind := func(attr string) []byte {
			return []byte(`{"kinds":[{"term":"d","scheme":"http://x#","location":"/d/","attributes":{"x":{"a":` + attr + `}}}]}`)
		}
		for name, attr := range map[string]string{
			"number_default_not_a_number": `{"type":"Number","default":"many"}`,
			"default_fails_pattern":       `{"type":"String","pattern":"^[0-9]+$","default":"abc"}`,
			"boolean_default_not_boolean": `{"type":"Boolean","default":3}`,
			"array_default_not_array":     `{"type":"Array","default":{"a":1}}`,
			"true_fails_a_number":         `{"type":"Number","default":"true"}`,
		} {
			t.Run(name, func(t *testing.T) {
				e.unchanged(func() {
					r := e.c.do("POST", "/-/", kind(attr))
					if got := expectError(t, r, 400, "http://x#d", "x.a", "default"); got["attribute"] != "x.a" {
						t.Fatalf("error attribute %v, want x.a", got["attribute"])
					}
				})
			})
		}
		for i, attr := range []string{
			`{"type":"Array","default":""}`, // pyOCNI's "no default"
			`{"type":"String","pattern":"^(l1|l2)$","default":"true"}`,
			`{"type":"String","pattern":"^[0-9]+$","default":"42"}`,
		} {
			body := []byte(`{"kinds":[{"term":"ok` + fmt.Sprint(i) + `","scheme":"http://x#","location":"/ok` + fmt.Sprint(i) + `/","attributes":{"x":{"a":` + attr + `}}}]}`)
			expectEmpty(t, e.c.do("POST", "/-/", body), 200)
		}
		// An update cannot bring in a failing default either.
		e.unchanged(func() {
			expectError(t, e.c.do("PUT", "/-/", []byte(`{"kinds":[{"term":"ok2","scheme":"http://x#","attributes":{"x":{"a":{"type":"String","pattern":"^[0-9]+$","default":"x"}}}}]}`)),
				400, "http://x#ok2", "x.a")
		})

		// Location "/nos" is "/nos/": stored, rendered and served so.
		expectEmpty(t, e.c.do("POST", "/-/", []byte(`{"kinds":[{"term":"nos","scheme":"http://x#","location":"/nos"}]}`)), 200)
		for _, k := range e.listCategories()["kinds"] {
			if k["term"] == "nos" && k["location"] != "/nos/" {
				t.Fatalf("location rendered %v, want /nos/", k["location"])
			}
		}
		e.c.expect("POST", "/nos/", []byte(`{"resources":[{"kind":"http://x#nos","id":"n1"}]}`), 201)
		if got := locations(t, e.c.do("GET", "/nos/", nil)); len(got) != 1 || got[0] != e.abs("/nos/n1") {
			t.Fatalf("/nos/ lists %v", got)
		}
		e.unchanged(func() {
			expectEmpty(t, e.c.do("POST", "/-/", []byte(`{"kinds":[{"term":"nos","scheme":"http://x#","location":"/nos"}]}`)), 200)
			expectEmpty(t, e.c.do("PUT", "/-/", []byte(`{"kinds":[{"term":"nos","scheme":"http://x#","location":"/nos"}]}`)), 200)
			expectError(t, e.c.do("PUT", "/-/", []byte(`{"kinds":[{"term":"nos","scheme":"http://x#","location":"/other/"}]}`)), 400, "location")
		})
	})
}

// A mixin's applies is enforced when it tags an entity, and a compute has at
// most one os_tpl and one resource_tpl template.
func TestMixinAppliesAndTemplates(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		e := newCompatOn(t, open(t), "F1", "F2")
		debian := categories.OSTemplateScheme + "debian12"
		ubuntu := categories.OSTemplateScheme + "ubuntu2404"
		small := categories.CRTPScheme + "small"
		compute := func(id string, mixins ...string) []byte {
			return mustJSON(t, map[string]any{"resources": []any{map[string]any{"kind": categories.ComputeKind, "id": id, "mixins": mixins}}})
		}
		e.unchanged(func() {
			expectError(t, e.c.do("POST", "/compute/", compute("c0", categories.IPNetworkMixin)), 400,
				categories.IPNetworkMixin, categories.NetworkKind, categories.ComputeKind)
			expectError(t, e.c.do("POST", "/compute/", compute("c0", debian, ubuntu)), 400, debian, ubuntu, "os_tpl")
			expectError(t, e.c.do("POST", "/compute/", compute("c0", small, categories.CRTPScheme+"large")), 400, "resource_tpl")
		})
		e.c.expect("POST", "/compute/", compute("c1", debian, small), 201)
		e.unchanged(func() {
			// Tagging through the mixin collection, a partial update, a replace.
			expectError(t, e.c.do("POST", "/os_tpl/ubuntu2404/", []byte(`{"X-OCCI-Location":["/compute/c1"]}`)), 400, debian, ubuntu)
			expectError(t, e.c.do("POST", "/compute/c1", compute("c1", debian, small, ubuntu)), 400, "os_tpl")
			expectError(t, e.c.do("PUT", "/compute/c1", compute("c1", ubuntu, debian)), 400, "os_tpl")
		})
		// A user mixin that applies to members cannot tag a message.
		e.c.expect("POST", "/-/", []byte(`{"mixins":[{"term":"only_members","scheme":"http://x#","location":"/only_members/","applies":["`+memberKind+`"]}]}`), 200)
		e.apply("F4")
		expectError(t, e.c.do("POST", "/only_members/", []byte(`{"X-OCCI-Location":["`+pathL1+`"]}`)), 400, "http://x#only_members", memberKind, messageKind)
		// Swapping the template in one update is fine.
		e.c.expect("POST", "/compute/c1", compute("c1", ubuntu, small), 201)
		// A kind below compute takes compute's mixins.
		e.c.expect("POST", "/-/", []byte(`{"kinds":[{"term":"bigcompute","scheme":"http://x#","location":"/bigcompute/","parent":"`+categories.ComputeKind+`"}]}`), 200)
		e.c.expect("POST", "/bigcompute/", mustJSON(t, map[string]any{"resources": []any{map[string]any{"kind": "http://x#bigcompute", "id": "b1", "mixins": []string{debian}}}}), 201)
	})
}

// Kinds that are their own ancestors and mixins that depend on themselves
// are refused, naming the cycle.
func TestCategoryCycles(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		e := newCompatOn(t, open(t))
		for _, tc := range []struct{ name, body, cycle string }{
			{"own_parent", `{"kinds":[{"term":"a","scheme":"http://x#","location":"/a/","parent":"http://x#a"}]}`, "http://x#a → http://x#a"},
			{"mutual_parents", `{"kinds":[{"term":"a","scheme":"http://x#","location":"/a/","parent":"http://x#b"},{"term":"b","scheme":"http://x#","location":"/b/","parent":"http://x#a"}]}`,
				"http://x#a → http://x#b → http://x#a"},
			{"self_dependent_mixin", `{"mixins":[{"term":"m","scheme":"http://x#","location":"/m/","depends":["http://x#m"]}]}`, "http://x#m → http://x#m"},
			{"mutual_depends", `{"mixins":[{"term":"m","scheme":"http://x#","location":"/m/","depends":["http://x#n"]},{"term":"n","scheme":"http://x#","location":"/n/","depends":["http://x#o"]},{"term":"o","scheme":"http://x#","location":"/o/","depends":["http://x#m"]}]}`,
				"http://x#m → http://x#n → http://x#o → http://x#m"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e.unchanged(func() { expectError(t, e.c.do("POST", "/-/", []byte(tc.body)), 400, "cycle", tc.cycle) })
			})
		}
		// A PUT that closes a cycle.
		e.c.expect("POST", "/-/", []byte(`{"kinds":[{"term":"a","scheme":"http://x#","location":"/a/","parent":"`+coreScheme+`resource"},{"term":"b","scheme":"http://x#","location":"/b/","parent":"http://x#a"}],`+
			`"mixins":[{"term":"m","scheme":"http://x#","location":"/m/","depends":[]},{"term":"n","scheme":"http://x#","location":"/n/","depends":["http://x#m"]}]}`), 200)
		e.unchanged(func() {
			expectError(t, e.c.do("PUT", "/-/", []byte(`{"kinds":[{"term":"a","scheme":"http://x#","parent":"http://x#b"}]}`)), 400, "cycle", "http://x#a → http://x#b → http://x#a")
			expectError(t, e.c.do("PUT", "/-/", []byte(`{"mixins":[{"term":"m","scheme":"http://x#","depends":["http://x#n"]}]}`)), 400, "cycle", "http://x#m → http://x#n → http://x#m")
		})
		// A diamond is no cycle.
		e.c.expect("POST", "/-/", []byte(`{"mixins":[{"term":"p","scheme":"http://x#","location":"/p/","depends":["http://x#m","http://x#n"]}]}`), 200)
	})
}

// Bounds on categories and on entity attributes, each refused naming the limit.
func TestCategoryAndEntityBounds(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		e := newCompatOn(t, open(t), "F1", "F2", "F4")
		long := func(n int) string { return strings.Repeat("a", n) }
		for _, tc := range []struct {
			name, body string
			status     int
			words      []string
		}{
			{"term", `{"mixins":[{"term":"` + long(1025) + `","scheme":"http://x#","location":"/t/"}]}`, 400, []string{"term", "1024"}},
			{"scheme", `{"mixins":[{"term":"t","scheme":"http://` + long(2048) + `#","location":"/t/"}]}`, 400, []string{"scheme", "2048"}},
			{"location", `{"mixins":[{"term":"t","scheme":"http://x#","location":"/` + long(2048) + `/"}]}`, 400, []string{"http://x#t", "location", "2048"}},
			{"title", `{"mixins":[{"term":"t","scheme":"http://x#","location":"/t/","title":"` + long(4097) + `"}]}`, 400, []string{"http://x#t", "title", "4096"}},
			{"pattern", `{"mixins":[{"term":"t","scheme":"http://x#","location":"/t/","attributes":{"x":{"p":{"type":"String","pattern":"` + long(4097) + `"}}}}]}`, 400, []string{"http://x#t", "x.p", "pattern", "4096"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e.unchanged(func() { expectError(t, e.c.do("POST", "/-/", []byte(tc.body)), tc.status, tc.words...) })
			})
		}
		t.Run("attribute_definitions", func(t *testing.T) {
			defs := map[string]any{}
			for i := range model.MaxAttrDefs + 1 {
				defs[fmt.Sprintf("x.a%d", i)] = map[string]any{"type": "String"}
			}
			body := mustJSON(t, map[string]any{"mixins": []any{map[string]any{"term": "t", "scheme": "http://x#", "location": "/t/", "attributes": defs}}})
			e.unchanged(func() {
				expectError(t, e.c.do("POST", "/-/", body), 400, "http://x#t", "1001 attribute definitions", "1000")
			})
		})
		t.Run("categories_per_request", func(t *testing.T) {
			var ms []any
			for i := range model.MaxCategoriesPerRequest + 1 {
				ms = append(ms, map[string]any{"term": fmt.Sprintf("m%d", i), "scheme": "http://many#", "location": fmt.Sprintf("/many/%d/", i)})
			}
			e.unchanged(func() {
				expectError(t, e.c.do("POST", "/-/", mustJSON(t, map[string]any{"mixins": ms})), 413, "1001 categories", "1000")
			})
			// The limit itself is fine.
			expectEmpty(t, e.c.do("POST", "/-/", mustJSON(t, map[string]any{"mixins": ms[:model.MaxCategoriesPerRequest]})), 200)
		})
		t.Run("entity_array", func(t *testing.T) {
			hist := make([]any, model.DefaultMaxAttributes+1)
			for i := range hist {
				hist[i] = "h"
			}
			body := mustJSON(t, map[string]any{"resources": []any{map[string]any{"attributes": map[string]any{"cmbs": map[string]any{"message": map[string]any{"path_history": hist}}}}}})
			e.unchanged(func() {
				r := expectError(t, e.c.do("POST", pathL1, body), 413, "cmbs.message.path_history", "10001 elements", "10000")
				if r["attribute"] != "cmbs.message.path_history" {
					t.Fatalf("attribute %v", r["attribute"])
				}
			})
			body = mustJSON(t, map[string]any{"resources": []any{map[string]any{"attributes": map[string]any{"cmbs": map[string]any{"message": map[string]any{"path_history": hist[:model.DefaultMaxAttributes]}}}}}})
			e.c.expect("POST", pathL1, body, 201)
		})
		t.Run("entity_object", func(t *testing.T) {
			content := map[string]any{}
			for i := range model.DefaultMaxAttributes + 1 {
				content[fmt.Sprint(i)] = i
			}
			res := firstResource(t, "pycmbs/post_message_l1.json")
			res["id"] = "big"
			res["attributes"].(map[string]any)["cmbs"].(map[string]any)["message"].(map[string]any)["message_content"] = content
			e.unchanged(func() {
				expectError(t, e.c.do("POST", "/cmbs/message/", mustJSON(t, map[string]any{"resources": []any{res}})), 413, "message_content", "10001 members")
			})
		})
		t.Run("entity_lists", func(t *testing.T) {
			long := make([]any, model.DefaultMaxAttributes+1)
			for i := range long {
				long[i] = "x"
			}
			e.unchanged(func() {
				expectError(t, e.c.do("POST", pathL1, mustJSON(t, map[string]any{"resources": []any{map[string]any{"actions": long}}})), 413, "actions", "10001 elements", "10000")
				expectError(t, e.c.do("POST", pathL1, mustJSON(t, map[string]any{"resources": []any{map[string]any{"links": []any{map[string]any{"x": long}}}}})), 413, "links", "10001 elements")
				res := firstResource(t, "pycmbs/post_message_l1.json")
				res["id"], res["actions"] = "many-actions", long
				expectError(t, e.c.do("POST", "/cmbs/message/", mustJSON(t, map[string]any{"resources": []any{res}})), 413, "actions")
			})
		})
		t.Run("entity_attribute_count", func(t *testing.T) {
			attrs := map[string]any{}
			for i := range model.DefaultMaxAttributes + 1 {
				attrs[fmt.Sprintf("u.a%d", i)] = "v"
			}
			e.unchanged(func() {
				expectError(t, e.c.do("POST", pathL1, mustJSON(t, map[string]any{"resources": []any{map[string]any{"attributes": attrs}}})), 413, "attributes; the limit is 10000")
			})
		})
	})
}

// Errors a user can act on name what they can choose from.
func TestCategoryErrorsNameTheChoices(t *testing.T) {
	e := newCompat(t, "F1")
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/-/", []byte(`{"providers":[{"OCCI_ID":"`+memberKind+`","Provider":{"local":["nope"]}}]}`)),
			400, `"nope"`, "registered: cmbs_member, cmbs_message, occi_infrastructure")
		expectError(t, e.c.do("POST", "/-/", []byte(`{"kinds":[{"term":"k","scheme":"http://x#","location":"/k/","title":5}]}`)), 400, "kind http://x#k", "title")
		expectError(t, e.c.do("POST", "/-/", []byte(`{"kinds":[{"term":"k","scheme":"http://x#","location":"/k/","attributes":{"a":{"b":{"type":"Colour"}}}}]}`)), 400, "kind http://x#k", "Colour")
	})
}
