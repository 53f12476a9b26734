package occi_test

// pyOCNI compatibility cases: collections (kind and mixin locations, and
// other paths ending in "/").

import (
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
)

// opsOf lists the operations and locations of recorded calls.
func opsOf(calls []recCall) []string {
	out := []string{}
	for _, c := range calls {
		out = append(out, c.Op+" "+c.Location)
	}
	sort.Strings(out)
	return out
}

// nsAttrs reads attributes.cmbs.<ns> of a bare entity description.
func nsAttrs(t testing.TB, desc map[string]any, ns string) map[string]any {
	t.Helper()
	a, _ := desc["attributes"].(map[string]any)
	c, _ := a["cmbs"].(map[string]any)
	m, ok := c[ns].(map[string]any)
	if !ok {
		t.Fatalf("no attributes.cmbs.%s in %v", ns, desc)
	}
	return m
}

func Test_case_34_create_member(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	r := e.c.do("POST", "/cmbs/member/", fixture(t, "pycmbs/post_member.json"))
	body := expectJSONOK(t, r, 201)
	want := map[string]any{"Location": []any{e.abs(pathM)}}
	if !reflect.DeepEqual(body, want) {
		t.Fatalf("body %v, want %v", body, want)
	}
	if l := r.header.Values("Location"); len(l) != 1 || l[0] != e.abs(pathM) {
		t.Fatalf("Location header %v", l)
	}
	calls := e.rec.take()
	if got := opsOf(calls); !reflect.DeepEqual(got, []string{"create " + pathM}) || calls[0].Provider != "cmbs_member" {
		t.Fatalf("provider calls %+v", calls)
	}
	if calls[0].Entity.Kind != memberKind || calls[0].Entity.ID != memberID {
		t.Fatalf("create got %+v", calls[0].Entity)
	}
}

func Test_case_35_duplicate_create(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F3")
	e.unchanged(func() {
		expectError(t, e.c.do("POST", "/cmbs/member/", fixture(t, "pycmbs/post_member.json")), 409, pathM)
	})
	// The existing member's provider state is not touched by the refused
	// duplicate (no create, and above all no compensating delete).
	if calls := e.rec.take(); len(calls) != 0 {
		t.Fatalf("provider calls for a refused duplicate: %+v", calls)
	}
}

func Test_case_36_kind_must_match_collection(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	e.unchanged(func() {
		expectError(t, e.c.do("POST", "/cmbs/member/", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#message","attributes":{},"id":"x"}]}`)),
			400, messageKind)
	})
	if calls := e.rec.take(); len(calls) != 0 {
		t.Fatalf("provider calls: %+v", calls)
	}
}

func Test_case_37_generated_id(t *testing.T) {
	e := newCompat(t, "F1")
	body := expectJSONOK(t, e.c.do("POST", "/cmbs/member/", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","attributes":{}}]}`)), 201)
	locs := body["Location"].([]any)
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(e.abs("/cmbs/member/")) + `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	if len(locs) != 1 || !re.MatchString(locs[0].(string)) {
		t.Fatalf("Location %v is not a generated uuid under /cmbs/member/", locs)
	}
	got := e.c.expect("GET", strings.TrimPrefix(locs[0].(string), e.base), nil, 200).json(t)
	if !strings.HasSuffix(locs[0].(string), "/"+got["id"].(string)) {
		t.Fatalf("id %v does not match the location %v", got["id"], locs[0])
	}
}

func Test_case_38_no_attributes(t *testing.T) {
	e := newCompat(t, "F1")
	e.c.expect("POST", "/cmbs/member/", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"y"}]}`), 201)
	got := e.c.expect("GET", "/cmbs/member/y", nil, 200).json(t)
	// Declared defaults fill in what was not given; the required local has one.
	if a := nsAttrs(t, got, "member"); a["local"] != "true" || a["state"] != "inactive" {
		t.Fatalf("defaults not applied: %v", a)
	}
}

func Test_case_39_create_outside_a_kind_collection(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	body := []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#message","attributes":{},"id":"z"}]}`)
	e.unchanged(func() {
		t.Run("not_a_category", func(t *testing.T) {
			expectError(t, e.c.do("POST", "/nope/", body), 404, "/nope/")
		})
		t.Run("mixin_collection", func(t *testing.T) {
			expectError(t, e.c.do("POST", "/cmbs/message/l1/", body), 400, "mixin")
		})
	})
}

func Test_case_40_absent_attributes_stay_absent(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F4")
	a := nsAttrs(t, e.c.expect("GET", pathL2, nil, 200).json(t), "message")
	if v, has := a["result"]; has {
		t.Fatalf("result = %#v, want absent", v)
	}
	want := firstResource(t, "pycmbs/post_message_l2.json")["attributes"].(map[string]any)["cmbs"].(map[string]any)["message"]
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("attributes %v, want exactly the posted %v", a, want)
	}
}

func Test_case_41_each_resource_keeps_its_attributes(t *testing.T) {
	e := newCompat(t, "F1")
	e.c.expect("POST", "/cmbs/member/", []byte(`{"resources":[
		{"kind":"http://houssem.org/cmbs#member","id":"a","attributes":{"cmbs":{"member":{"state":"active","local":"true"}}}},
		{"kind":"http://houssem.org/cmbs#member","id":"b","attributes":{"cmbs":{"member":{"state":"inactive","local":"false","l1_socket":"tcp://x:1"}}}}]}`), 201)
	a := nsAttrs(t, e.c.expect("GET", "/cmbs/member/a", nil, 200).json(t), "member")
	b := nsAttrs(t, e.c.expect("GET", "/cmbs/member/b", nil, 200).json(t), "member")
	if a["state"] != "active" || a["local"] != "true" || a["l1_socket"] == "tcp://x:1" {
		t.Fatalf("a: %v", a)
	}
	if b["state"] != "inactive" || b["local"] != "false" || b["l1_socket"] != "tcp://x:1" {
		t.Fatalf("b: %v", b)
	}
	if calls := e.rec.take(); !reflect.DeepEqual(opsOf(calls), []string{"create /cmbs/member/a", "create /cmbs/member/b"}) {
		t.Fatalf("provider calls %v", opsOf(calls))
	}
}

func Test_case_42_undeclared_attribute(t *testing.T) {
	e := newCompat(t, "F1")
	e.unchanged(func() {
		r := e.c.do("POST", "/cmbs/member/", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"o",
			"attributes":{"cmbs":{"member":{"local":"true"}},"org":{"x":{"y":1}}}}]}`))
		if got := expectError(t, r, 400, "org.x.y")["attribute"]; got != "org.x.y" {
			t.Fatalf("error.attribute %v, want org.x.y", got)
		}
	})
	if calls := e.rec.take(); len(calls) != 0 {
		t.Fatalf("provider calls: %+v", calls)
	}
}

func Test_case_43_unknown_body(t *testing.T) {
	e := newCompat(t, "F1")
	e.unchanged(func() {
		expectError(t, e.c.do("POST", "/cmbs/member/", []byte(`{"foo":1}`)), 400, "resources")
	})
}

func Test_case_44_request_content_type(t *testing.T) {
	e := newCompat(t, "F1")
	t.Run("missing_sniffed_as_json", func(t *testing.T) {
		e.c.expect("POST", "/cmbs/member/", fixture(t, "pycmbs/post_member.json"), 201, "Content-Type", "")
		e.c.expect("GET", pathM, nil, 200)
	})
	t.Run("missing_not_json", func(t *testing.T) {
		e.unchanged(func() {
			expectError(t, e.c.do("POST", "/cmbs/member/", []byte("hello"), "Content-Type", ""), 400, "hello")
		})
	})
	t.Run("unsupported", func(t *testing.T) {
		e.unchanged(func() {
			expectError(t, e.c.do("POST", "/cmbs/member/", fixture(t, "pycmbs/post_member.json"), "Content-Type", "application/xml"), 415, "application/xml")
		})
	})
}

func Test_case_45_list_collection(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F3", "F4")
	if got := locations(t, e.c.do("GET", "/cmbs/member/", nil)); !reflect.DeepEqual(got, []string{e.abs(pathM)}) {
		t.Fatalf("members %v", got)
	}
	if calls := e.rec.take(); len(calls) != 0 {
		t.Fatalf("listing called the provider: %+v", calls)
	}
}

// entityFilterCase is a collection GET with a filter body.
type entityFilterCase struct {
	name string
	path string
	body string
	want []string // paths
}

func runEntityFilters(t *testing.T, steps []string, cases []entityFilterCase) {
	t.Helper()
	e := newCompat(t, steps...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = "/cmbs/member/"
			}
			want := []string{}
			for _, p := range tc.want {
				want = append(want, e.abs(p))
			}
			sort.Strings(want)
			if got := locations(t, e.c.do("GET", path, []byte(tc.body))); !reflect.DeepEqual(got, want) {
				t.Fatalf("GET %s %s: %v, want %v", path, tc.body, got, want)
			}
		})
	}
}

func Test_case_46_filter_local(t *testing.T) {
	runEntityFilters(t, []string{"F1", "F3"}, []entityFilterCase{
		{name: "true", body: `{"resources":[{"attributes":{"cmbs":{"member":{"local":"true"}}}}]}`, want: []string{pathM}},
		{name: "false", body: `{"resources":[{"attributes":{"cmbs":{"member":{"local":"false"}}}}]}`},
		{name: "flat_name", body: `{"resources":[{"attributes":{"cmbs.member.local":"true"}}]}`, want: []string{pathM}},
	})
}

func Test_case_47_filter_socket(t *testing.T) {
	runEntityFilters(t, []string{"F1", "F3"}, []entityFilterCase{
		{name: "known", body: `{"resources":[{"attributes":{"cmbs":{"member":{"l1_socket":"tcp://127.0.0.1:5010"}}}}]}`, want: []string{pathM}},
		{name: "unknown", body: `{"resources":[{"attributes":{"cmbs":{"member":{"l1_socket":"tcp://10.0.0.1:1"}}}}]}`},
		{name: "and", body: `{"resources":[{"attributes":{"cmbs":{"member":{"l1_socket":"tcp://127.0.0.1:5010","local":"false"}}}}]}`},
	})
}

func Test_case_48_empty_filter(t *testing.T) {
	runEntityFilters(t, []string{"F1", "F3"}, []entityFilterCase{{name: "empty_object", body: `{}`}})
}

func Test_case_49_filter_by_kind(t *testing.T) {
	runEntityFilters(t, []string{"F1", "F3"}, []entityFilterCase{
		{name: "kind", body: `{"resources":[{"kind":"http://houssem.org/cmbs#member"}]}`, want: []string{pathM}},
	})
}

func Test_case_50_filter_missing_attribute(t *testing.T) {
	runEntityFilters(t, []string{"F1", "F3"}, []entityFilterCase{
		{name: "nope", body: `{"resources":[{"attributes":{"cmbs":{"member":{"nope":"x"}}}}]}`},
	})
}

func Test_case_51_matches_listed_once(t *testing.T) {
	runEntityFilters(t, []string{"F1", "F3"}, []entityFilterCase{
		{name: "two_filters", body: `{"resources":[{"kind":"http://houssem.org/cmbs#member"},{"id":"` + memberID + `"}]}`, want: []string{pathM}},
	})
}

func Test_case_52_links_filter(t *testing.T) {
	runEntityFilters(t, []string{"F1", "F3"}, []entityFilterCase{{name: "empty_links", body: `{"links":[]}`}})
}

func Test_case_53_mixin_and_kind_collections(t *testing.T) {
	runEntityFilters(t, []string{"F1", "F2", "F4"}, []entityFilterCase{
		{name: "l1", path: "/cmbs/message/l1/", want: []string{pathL1}},
		{name: "l2", path: "/cmbs/message/l2/", want: []string{pathL2}},
		{name: "l31_empty", path: "/cmbs/message/l31/"},
		{name: "message", path: "/cmbs/message/", want: []string{pathL1, pathL2}},
		{name: "mixin_filtered", path: "/cmbs/message/l1/", body: `{"resources":[{"attributes":{"cmbs":{"message":{"cmbs_layer":"l1"}}}}]}`, want: []string{pathL1}},
	})
}

func Test_case_54_path_listing(t *testing.T) {
	runEntityFilters(t, []string{"F1", "F2", "F3", "F4"}, []entityFilterCase{
		{name: "cmbs", path: "/cmbs/", want: []string{pathM, pathL1, pathL2}},
	})
	e := newCompat(t, "F1", "F3")
	// A path ending in "/" with no collection at or below it and no entity
	// under it is a typo: 404 naming it (see docs/decisions.md).
	for _, p := range []string{"/unknown/", "/member/", "/a/b/c/d/", "/cmbs/nothing/", "/cmbs/member/nope/"} {
		t.Run("no_collection"+strings.ReplaceAll(p, "/", "_"), func(t *testing.T) {
			expectError(t, e.c.do("GET", p, nil), 404, p, "not a collection")
		})
	}
	// A prefix of a kind's location lists (empty when nothing lives there),
	// and so does a prefix of an entity's location chosen with PUT.
	e.c.expect("POST", "/-/", []byte(`{"kinds":[{"term":"deep","scheme":"http://x#","location":"/x/y/deep/"}]}`), 200)
	if got := locations(t, e.c.do("GET", "/x/", nil)); len(got) != 0 {
		t.Fatalf("/x/ lists %v", got)
	}
	e.c.expect("PUT", "/own/place/m1", []byte(`{"resources":[{"kind":"`+memberKind+`","attributes":{"cmbs":{"member":{"local":"false"}}}}]}`), 201)
	if got := locations(t, e.c.do("GET", "/own/", nil)); !reflect.DeepEqual(got, []string{e.abs("/own/place/m1")}) {
		t.Fatalf("/own/ lists %v", got)
	}
	for _, p := range []string{"/compute", "/a/b/c/d", "/cmbs/member/nope"} {
		t.Run("no_entity"+strings.ReplaceAll(p, "/", "_"), func(t *testing.T) {
			expectError(t, e.c.do("GET", p, nil), 404, p)
		})
	}
}

func Test_case_55_text_plain_listing(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	r := e.c.expect("GET", "/cmbs/member/", nil, 200, "Accept", "text/plain")
	if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if want := "X-OCCI-Location: " + e.abs(pathM) + "\n"; string(r.body) != want {
		t.Fatalf("body %q, want %q", r.body, want)
	}
}

func Test_case_56_text_occi_listing(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	e.c.expect("POST", "/cmbs/member/", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"second","attributes":{"cmbs":{"member":{"local":"false"}}}}]}`), 201)
	r := e.c.expect("GET", "/cmbs/member/", nil, 200, "Accept", "text/occi")
	if string(r.body) != "OK\n" {
		t.Fatalf("body %q, want OK", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "text/occi; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	vals := r.header.Values("X-OCCI-Location")
	if len(vals) != 1 {
		t.Fatalf("X-OCCI-Location headers %v, want one comma-joined", vals)
	}
	var got []string
	for _, v := range strings.Split(vals[0], ",") {
		got = append(got, strings.TrimSpace(v))
	}
	sort.Strings(got)
	if want := sorted(e.abs(pathM), e.abs("/cmbs/member/second")); !reflect.DeepEqual(got, want) {
		t.Fatalf("X-OCCI-Location %v, want %v", got, want)
	}
}

func Test_case_57_uri_list(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	r := e.c.expect("GET", "/cmbs/member/", nil, 200, "Accept", "text/uri-list")
	if ct := r.header.Get("Content-Type"); ct != "text/uri-list; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if want := e.abs(pathM) + "\n"; string(r.body) != want {
		t.Fatalf("body %q, want %q", r.body, want)
	}
}

func mixinsOf(t testing.TB, c *client, path string) []string {
	t.Helper()
	out := []string{}
	for _, m := range c.expect("GET", path, nil, 200).json(t)["mixins"].([]any) {
		out = append(out, m.(string))
	}
	return out
}

func Test_case_58_associate_mixin(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F4")
	body := mustJSON(t, map[string]any{"X-OCCI-Location": []string{e.abs(pathL1)}})
	expectEmpty(t, e.c.do("POST", "/cmbs/message/l2/", body), 200)
	if got, want := mixinsOf(t, e.c, pathL1), []string{cmbsScheme + "l1", cmbsScheme + "l2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("L1 mixins %v, want %v", got, want)
	}
	calls := e.rec.take()
	if len(calls) != 1 || calls[0].Op != "update" || calls[0].Location != pathL1 || calls[0].Provider != "cmbs_message" {
		t.Fatalf("provider calls %+v", calls)
	}
	if !reflect.DeepEqual(calls[0].Old.Mixins, []string{cmbsScheme + "l1"}) || !reflect.DeepEqual(calls[0].Entity.Mixins, []string{cmbsScheme + "l1", cmbsScheme + "l2"}) {
		t.Fatalf("update(old %v, new %v)", calls[0].Old.Mixins, calls[0].Entity.Mixins)
	}
	// Repeating it changes nothing.
	e.unchanged(func() {
		expectEmpty(t, e.c.do("POST", "/cmbs/message/l2/", body), 200)
	})
	if got := mixinsOf(t, e.c, pathL1); len(got) != 2 {
		t.Fatalf("L1 mixins after the repeat: %v", got)
	}
	if calls := e.rec.take(); len(calls) != 0 {
		t.Fatalf("provider calls for a no-op: %+v", calls)
	}
	// Relative paths work as well as absolute URLs.
	expectEmpty(t, e.c.do("POST", "/cmbs/message/l31/", []byte(`{"X-OCCI-Location":["`+pathL1+`"]}`)), 200)
	if got := mixinsOf(t, e.c, pathL1); len(got) != 3 {
		t.Fatalf("L1 mixins: %v", got)
	}
}

func Test_case_59_associate_needs_a_mixin(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F4")
	e.unchanged(func() {
		expectError(t, e.c.do("POST", "/cmbs/message/", mustJSON(t, map[string]any{"X-OCCI-Location": []string{e.abs(pathL1)}})), 404, "/cmbs/message/")
	})
}

func Test_case_60_associate_unknown_entity(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F4")
	e.unchanged(func() {
		body := mustJSON(t, map[string]any{"X-OCCI-Location": []string{e.abs(pathL2), e.abs("/cmbs/message/nope")}})
		expectError(t, e.c.do("POST", "/cmbs/message/l1/", body), 404, "/cmbs/message/nope")
	})
	if calls := e.rec.take(); len(calls) != 0 {
		t.Fatalf("provider calls: %+v", calls)
	}
}

func Test_case_61_replace_mixin_membership(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F4")
	expectEmpty(t, e.c.do("PUT", "/cmbs/message/l2/", mustJSON(t, map[string]any{"X-OCCI-Location": []string{e.abs(pathL1)}})), 200)
	if got := locations(t, e.c.do("GET", "/cmbs/message/l2/", nil)); !reflect.DeepEqual(got, []string{e.abs(pathL1)}) {
		t.Fatalf("l2 members %v", got)
	}
	if got := mixinsOf(t, e.c, pathL2); len(got) != 0 {
		t.Fatalf("L2 mixins %v, want none", got)
	}
	if got := opsOf(e.rec.take()); !reflect.DeepEqual(got, []string{"update " + pathL1, "update " + pathL2}) {
		t.Fatalf("provider calls %v", got)
	}
	// An unknown member refuses the whole replacement.
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/cmbs/message/l2/", []byte(`{"X-OCCI-Location":["/cmbs/message/nope"]}`)), 404, "/cmbs/message/nope")
	})
	// An empty list empties the collection.
	expectEmpty(t, e.c.do("PUT", "/cmbs/message/l2/", []byte(`{"X-OCCI-Location":[]}`)), 200)
	if got := locations(t, e.c.do("GET", "/cmbs/message/l2/", nil)); len(got) != 0 {
		t.Fatalf("l2 members %v", got)
	}
}

func Test_case_62_dissociate_mixin(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F4")
	expectEmpty(t, e.c.do("DELETE", "/cmbs/message/l2/", mustJSON(t, map[string]any{"X-OCCI-Location": []string{e.abs(pathL2)}})), 200)
	if got := locations(t, e.c.do("GET", "/cmbs/message/l2/", nil)); len(got) != 0 {
		t.Fatalf("l2 members %v", got)
	}
	if got := mixinsOf(t, e.c, pathL2); len(got) != 0 {
		t.Fatalf("L2 mixins %v", got)
	}
	e.c.expect("GET", pathL2, nil, 200) // dissociated, not deleted
	if got := opsOf(e.rec.take()); !reflect.DeepEqual(got, []string{"update " + pathL2}) {
		t.Fatalf("provider calls %v", got)
	}
	// Dissociating l1 drops the attribute only l1 defines.
	expectEmpty(t, e.c.do("DELETE", "/cmbs/message/l1/", mustJSON(t, map[string]any{"X-OCCI-Location": []string{pathL1}})), 200)
	if _, has := nsAttrs(t, e.c.expect("GET", pathL1, nil, 200).json(t), "message")["l1_socket_receiver_member"]; has {
		t.Fatal("l1_socket_receiver_member kept after leaving l1")
	}
}

func Test_case_63_delete_kind_collection(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F3", "F4")
	e.c.expect("POST", "/cmbs/member/", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"second","attributes":{"cmbs":{"member":{"local":"false"}}}}]}`), 201)
	e.rec.take()
	expectEmpty(t, e.c.do("DELETE", "/cmbs/member/", nil), 200)
	if got := locations(t, e.c.do("GET", "/cmbs/member/", nil)); len(got) != 0 {
		t.Fatalf("members left: %v", got)
	}
	if got := opsOf(e.rec.take()); !reflect.DeepEqual(got, []string{"delete " + pathM, "delete /cmbs/member/second"}) {
		t.Fatalf("provider calls %v", got)
	}
	if got := locations(t, e.c.do("GET", "/cmbs/message/", nil)); len(got) != 2 {
		t.Fatalf("messages touched: %v", got)
	}
	// A list is refused on a kind collection; the kind itself stays.
	e.unchanged(func() {
		expectError(t, e.c.do("DELETE", "/cmbs/message/", mustJSON(t, map[string]any{"X-OCCI-Location": []string{pathL1}})), 400, "/cmbs/message/")
	})
	if k := e.listCategories()["kinds"]; len(k) != 2 {
		t.Fatalf("kinds %v", ids(k))
	}
}

func Test_case_64_collection_action(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F3", "F4")
	e.c.expect("POST", "/cmbs/member/", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"second","attributes":{"cmbs":{"member":{"local":"false"}}}}]}`), 201)
	e.rec.take()
	e.rec.setResult(func(ent *model.Entity, inv providers.Invocation) (any, error) {
		if ent.ID == "second" {
			return nil, nil
		}
		return map[string]any{"started": inv.Term}, nil
	})
	body := expectJSONOK(t, e.c.do("POST", "/cmbs/member/?action=start_l1", []byte(`{}`)), 200)
	want := map[string]any{"results": map[string]any{
		e.abs(pathM):                 map[string]any{"started": "start_l1"},
		e.abs("/cmbs/member/second"): nil,
	}}
	if !reflect.DeepEqual(body, want) {
		t.Fatalf("body %v, want %v", body, want)
	}
	calls := e.rec.take()
	if got := opsOf(calls); !reflect.DeepEqual(got, []string{"action " + pathM, "action /cmbs/member/second"}) {
		t.Fatalf("provider calls %v", got)
	}
	for _, c := range calls {
		if c.Term != "start_l1" || c.Provider != "cmbs_member" {
			t.Fatalf("call %+v", c)
		}
	}
	t.Run("mixin_collection", func(t *testing.T) {
		e.rec.setResult(nil)
		body := expectJSONOK(t, e.c.do("POST", "/cmbs/message/l1/?action=send_l1", []byte(`{}`)), 200)
		if want := map[string]any{"results": map[string]any{e.abs(pathL1): nil}}; !reflect.DeepEqual(body, want) {
			t.Fatalf("body %v, want %v", body, want)
		}
		if got := opsOf(e.rec.take()); !reflect.DeepEqual(got, []string{"action " + pathL1}) {
			t.Fatalf("provider calls %v", got)
		}
	})
	t.Run("undeclared", func(t *testing.T) {
		expectError(t, e.c.do("POST", "/cmbs/member/?action=send_l1", []byte(`{}`)), 400, "send_l1")
		if calls := e.rec.take(); len(calls) != 0 {
			t.Fatalf("provider calls %+v", calls)
		}
	})
	t.Run("not_a_collection", func(t *testing.T) {
		expectError(t, e.c.do("POST", "/nope/?action=x", []byte(`{}`)), 404, "/nope/")
	})
}

// TestTextRequests covers the OCCI text inputs pyOCNI's smoke scripts send:
// entity creation and mixin tagging in text/plain, text/occi
// headers and text/uri-list.
func TestTextRequests(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F4")
	created := func(r reply) string {
		t.Helper()
		locs := expectJSONOK(t, r, 201)["Location"].([]any)
		if len(locs) != 1 {
			t.Fatalf("Location %v", locs)
		}
		return strings.TrimPrefix(locs[0].(string), e.base)
	}
	t.Run("create_text_plain", func(t *testing.T) {
		p := created(e.c.do("POST", "/cmbs/member/", []byte("Category: member; scheme=\"http://houssem.org/cmbs#\"; class=\"kind\";\nX-OCCI-Attribute: cmbs.member.local=\"false\""),
			"Content-Type", "text/plain"))
		if a := nsAttrs(t, e.c.expect("GET", p, nil, 200).json(t), "member"); a["local"] != "false" {
			t.Fatalf("attributes %v", a)
		}
	})
	t.Run("create_text_occi", func(t *testing.T) {
		p := created(e.c.do("POST", "/cmbs/member/", nil, "Content-Type", "text/occi",
			"Category", `member; scheme="http://houssem.org/cmbs#"; class="kind"`,
			"X-OCCI-Attribute", `cmbs.member.local="false", cmbs.member.state="failed", occi.core.title="t"`))
		got := e.c.expect("GET", p, nil, 200).json(t)
		if a := nsAttrs(t, got, "member"); a["local"] != "false" || a["state"] != "failed" || got["title"] != "t" {
			t.Fatalf("entity %v", got)
		}
	})
	t.Run("entity_round_trip", func(t *testing.T) {
		text := e.c.expect("GET", pathL1, nil, 200, "Accept", "text/plain").body
		e.c.expect("PUT", "/cmbs/message/copy", text, 201, "Content-Type", "text/plain")
		orig := e.c.expect("GET", pathL1, nil, 200).json(t)
		cp := e.c.expect("GET", "/cmbs/message/copy", nil, 200).json(t)
		if !reflect.DeepEqual(orig["attributes"], cp["attributes"]) || !reflect.DeepEqual(orig["mixins"], cp["mixins"]) || orig["title"] != cp["title"] {
			t.Fatalf("text round trip:\n orig %v\n copy %v", orig, cp)
		}
	})
	for _, tc := range []struct{ name, ct, body string }{
		{"tag_text_plain", "text/plain", "X-OCCI-Location: " + e.abs(pathL2) + "\n"},
		{"tag_uri_list", "text/uri-list", "# members\n" + e.abs(pathL2) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectEmpty(t, e.c.do("POST", "/cmbs/message/l31/", []byte(tc.body), "Content-Type", tc.ct), 200)
			if got := locations(t, e.c.do("GET", "/cmbs/message/l31/", nil)); !reflect.DeepEqual(got, []string{e.abs(pathL2)}) {
				t.Fatalf("l31 members %v", got)
			}
			expectEmpty(t, e.c.do("DELETE", "/cmbs/message/l31/", []byte(tc.body), "Content-Type", tc.ct), 200)
			if got := locations(t, e.c.do("GET", "/cmbs/message/l31/", nil)); len(got) != 0 {
				t.Fatalf("l31 members %v", got)
			}
		})
	}
	t.Run("tag_text_occi", func(t *testing.T) {
		expectEmpty(t, e.c.do("PUT", "/cmbs/message/l32/", nil, "Content-Type", "text/occi", "X-OCCI-Location", e.abs(pathL1)+", "+pathL2), 200)
		if got := locations(t, e.c.do("GET", "/cmbs/message/l32/", nil)); !reflect.DeepEqual(got, sorted(e.abs(pathL1), e.abs(pathL2))) {
			t.Fatalf("l32 members %v", got)
		}
	})
}
