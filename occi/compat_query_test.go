package occi_test

// The pyOCNI compatibility cases (what pyOCNI did, numbered 1–96, and what
// cmbs does instead where pyOCNI was wrong), at this server's target
// behaviour. Each case is a top-level test named
// Test_case_NN_…, so `go test -run case_58 ./occi/` runs exactly one of them;
// variants of one case are its subtests. This file holds the shared
// fixtures (F1–F4, the recording provider "rec") and the cases of the
// query interface /-/.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/store"
)

// The entities F3 and F4 create.
const (
	memberID = "016ad860-2a9a-504f-8861-aeafd0b2ae29"
	l1ID     = "0101d860-2a9a-504f-8861-aeafd0b20101"
	l2ID     = "0102d860-2a9a-504f-8861-aeafd0a10201"
	pathM    = "/cmbs/member/" + memberID
	pathL1   = "/cmbs/message/" + l1ID
	pathL2   = "/cmbs/message/" + l2ID

	cmbsScheme   = "http://houssem.org/cmbs#"
	memberKind   = cmbsScheme + "member"
	messageKind  = cmbsScheme + "message"
	memberAction = "http://houssem.org/cmbs/member/action#"
	coreScheme   = "http://schemas.ogf.org/occi/core#"
)

// recCall is one call a provider received.
type recCall struct {
	Provider string // the name the call came through (cmbs_member, cmbs_message)
	Op       string // create, update, delete, action
	Location string
	Entity   *model.Entity // the entity (the new state for update)
	Old      *model.Entity // update only
	Term     string        // action only
	Attrs    map[string]any
}

// recorder is the test backend "rec" of the cases: it records every call and lets a
// test choose action results.
type recorder struct {
	mu     sync.Mutex
	calls  []recCall
	result func(e *model.Entity, inv providers.Invocation) (any, error)
}

// recProvider is the recorder seen through one provider name.
type recProvider struct {
	name string
	r    *recorder
}

var _ providers.Provider = recProvider{}

func snapshotEntity(e *model.Entity) *model.Entity {
	if e == nil {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	c := &model.Entity{}
	if err := json.Unmarshal(b, c); err != nil {
		panic(err)
	}
	c.Location, c.Rev = e.Location, e.Rev
	return c
}

func (p recProvider) add(c recCall) {
	c.Provider = p.name
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	p.r.calls = append(p.r.calls, c)
}

func (p recProvider) Create(_ context.Context, e *model.Entity) error {
	p.add(recCall{Op: "create", Location: e.Location, Entity: snapshotEntity(e)})
	return nil
}

func (p recProvider) Update(_ context.Context, old, updated *model.Entity) error {
	p.add(recCall{Op: "update", Location: updated.Location, Entity: snapshotEntity(updated), Old: snapshotEntity(old)})
	return nil
}

func (p recProvider) Delete(_ context.Context, e *model.Entity) error {
	p.add(recCall{Op: "delete", Location: e.Location, Entity: snapshotEntity(e)})
	return nil
}

func (p recProvider) Action(_ context.Context, e *model.Entity, inv providers.Invocation) (any, error) {
	attrs, _ := model.DeepCopy(inv.Attributes).(map[string]any)
	p.add(recCall{Op: "action", Location: e.Location, Entity: snapshotEntity(e), Term: inv.Term, Attrs: attrs})
	p.r.mu.Lock()
	fn := p.r.result
	p.r.mu.Unlock()
	if fn != nil {
		return fn(e, inv)
	}
	return nil, nil
}

// register binds the recorder under the names pyCMBS's put_provider files use.
func (r *recorder) register(reg *providers.Registry, _ *occi.Server) error {
	for _, name := range []string{"cmbs_member", "cmbs_message"} {
		if err := reg.Register(name, recProvider{name: name, r: r}); err != nil {
			return err
		}
	}
	return nil
}

// take returns the calls recorded so far and forgets them.
func (r *recorder) take() []recCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

func (r *recorder) setResult(fn func(e *model.Entity, inv providers.Invocation) (any, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.result = fn
}

// compatEnv is a fresh server with the recorder bound and some of the
// fixture steps applied.
type compatEnv struct {
	t    *testing.T
	srv  *testserver.Server
	c    *client
	rec  *recorder
	base string
}

// newCompat starts a server and applies the fixture steps ("F1".."F4"); the
// recorder starts empty after them.
func newCompat(t *testing.T, steps ...string) *compatEnv {
	t.Helper()
	rec := &recorder{}
	srv := testserver.Start(t, testserver.Options{Register: rec.register})
	e := &compatEnv{t: t, srv: srv, c: newClient(t, srv.URL), rec: rec, base: srv.URL}
	e.apply(steps...)
	rec.take()
	return e
}

func (e *compatEnv) apply(steps ...string) {
	e.t.Helper()
	for _, s := range steps {
		switch s {
		case "F1":
			e.c.expect("POST", "/-/", fixture(e.t, "pycmbs/post_category_cmbs_member.json"), 200)
			e.c.expect("PUT", "/-/", fixture(e.t, "pycmbs/put_provider_cmbs_member.json"), 200)
		case "F2":
			e.c.expect("POST", "/-/", fixture(e.t, "pycmbs/post_category_cmbs_message.json"), 200)
			e.c.expect("PUT", "/-/", fixture(e.t, "pycmbs/put_provider_cmbs_message.json"), 200)
		case "F3":
			e.c.expect("POST", "/cmbs/member/", fixture(e.t, "pycmbs/post_member.json"), 201)
		case "F4":
			e.c.expect("POST", "/cmbs/message/", fixture(e.t, "pycmbs/post_message_l1.json"), 201)
			e.c.expect("POST", "/cmbs/message/", fixture(e.t, "pycmbs/post_message_l2.json"), 201)
		default:
			e.t.Fatalf("unknown fixture step %q", s)
		}
	}
}

func (e *compatEnv) abs(p string) string { return e.base + p }

// fixtureJSON decodes a fixture file.
func fixtureJSON(t testing.TB, name string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(fixture(t, name), &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// firstResource is resources[0] of an entity fixture.
func firstResource(t testing.TB, name string) map[string]any {
	t.Helper()
	return fixtureJSON(t, name)["resources"].([]any)[0].(map[string]any)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// storeState is every stored document's revision, by id.
func storeState(t testing.TB, st store.Store) map[string]string {
	t.Helper()
	docs, err := st.Find(context.Background(), store.Query{})
	if err != nil {
		t.Fatalf("list store: %v", err)
	}
	out := make(map[string]string, len(docs))
	for _, d := range docs {
		out[d.ID] = d.Rev
	}
	return out
}

// unchanged runs fn and fails when the store changed meanwhile: a refused
// request must neither lose nor half-write anything.
func (e *compatEnv) unchanged(fn func()) {
	e.t.Helper()
	before := storeState(e.t, e.srv.Store)
	fn()
	after := storeState(e.t, e.srv.Store)
	if !reflect.DeepEqual(before, after) {
		e.t.Fatalf("store changed by a refused request:\nbefore %v\nafter  %v", before, after)
	}
}

// expectError checks a reply is this server's JSON error with that status,
// whose message names every word (case-insensitively). It returns the error
// object.
func expectError(t testing.TB, r reply, status int, words ...string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("error Content-Type %q, want application/json; charset=utf-8 (body %s)", ct, r.body)
	}
	if s := r.header.Get("Server"); s != occi.ServerHeader {
		t.Fatalf("Server header %q, want %q", s, occi.ServerHeader)
	}
	var body struct {
		Error map[string]any `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error == nil {
		t.Fatalf("error body is not {\"error\":{…}}: %v: %s", err, r.body)
	}
	for k := range body.Error {
		if k != "status" && k != "message" && k != "attribute" {
			t.Fatalf("error object has an unexpected member %q: %s", k, r.body)
		}
	}
	if got, _ := body.Error["status"].(float64); int(got) != status {
		t.Fatalf("error.status %v, want %d", body.Error["status"], status)
	}
	msg, _ := body.Error["message"].(string)
	if msg == "" {
		t.Fatalf("error has no message: %s", r.body)
	}
	for _, w := range words {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
			t.Fatalf("error message %q does not name %q", msg, w)
		}
	}
	return body.Error
}

// expectJSONOK checks a successful JSON reply's headers and returns its body.
func expectJSONOK(t testing.TB, r reply, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/occi+json; charset=utf-8" {
		t.Fatalf("Content-Type %q, want application/occi+json; charset=utf-8", ct)
	}
	return r.json(t)
}

// expectEmpty checks a reply has that status and no body.
func expectEmpty(t testing.TB, r reply, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
	if len(r.body) != 0 {
		t.Fatalf("body %q, want none", r.body)
	}
}

// builtinIDs are the categories every server has (OCCI core and
// infrastructure); the pyOCNI cases count what the client registered.
var builtinIDs = func() map[string]bool {
	out := map[string]bool{}
	for _, c := range categories.Builtin() {
		out[c.ID()] = true
	}
	return out
}()

// nBuiltin is how many categories a server has before any is registered.
var nBuiltin = len(builtinIDs)

// userCategories splits a GET /-/ reply into the user categories of each
// class (the built-in ones left out), each as its JSON description.
func userCategories(t testing.TB, body map[string]any) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	for _, k := range []string{"kinds", "mixins", "actions"} {
		list, ok := body[k].([]any)
		if !ok {
			t.Fatalf("%s is %T (%v), want a list", k, body[k], body[k])
		}
		out[k] = []map[string]any{}
		for _, c := range list {
			m := c.(map[string]any)
			if s, _ := m["scheme"].(string); builtinIDs[s+m["term"].(string)] {
				continue // OCCI core and infrastructure, built in
			}
			out[k] = append(out[k], m)
		}
	}
	for k := range body {
		if k != "kinds" && k != "mixins" && k != "actions" {
			t.Fatalf("category listing has an unexpected member %q", k)
		}
	}
	return out
}

// ids lists categories' scheme+term, sorted.
func ids(cats []map[string]any) []string {
	out := []string{}
	for _, c := range cats {
		out = append(out, c["scheme"].(string)+c["term"].(string))
	}
	sort.Strings(out)
	return out
}

func sorted(s ...string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}

// byID indexes posted category descriptions by scheme+term.
func byID(t testing.TB, docs ...map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, d := range docs {
		for _, k := range []string{"kinds", "mixins", "actions"} {
			list, _ := d[k].([]any)
			for _, c := range list {
				m := c.(map[string]any)
				out[m["scheme"].(string)+m["term"].(string)] = m
			}
		}
	}
	return out
}

func (e *compatEnv) listCategories() map[string][]map[string]any {
	e.t.Helper()
	return userCategories(e.t, expectJSONOK(e.t, e.c.do("GET", "/-/", nil), 200))
}

// locations reads a {"X-OCCI-Location":[…]} listing as a sorted list.
func locations(t testing.TB, r reply) []string {
	t.Helper()
	body := expectJSONOK(t, r, 200)
	list, ok := body["X-OCCI-Location"].([]any)
	if !ok || len(body) != 1 {
		t.Fatalf("listing is not {\"X-OCCI-Location\":[…]}: %s", r.body)
	}
	out := []string{}
	for _, l := range list {
		out = append(out, l.(string))
	}
	sort.Strings(out)
	return out
}

func memberActions() []string {
	var out []string
	for _, a := range []string{"check_neighbors", "start_l1", "start_l2", "start_l31", "start_l32", "start_l4",
		"stop_l1", "stop_l2", "stop_l31", "stop_l32", "stop_l4"} {
		out = append(out, memberAction+a)
	}
	return out
}

func messageActions() []string {
	var out []string
	for _, a := range []string{"execute", "send_l1", "send_l2", "send_l31", "send_l32", "send_l4"} {
		out = append(out, "http://houssem.org/cmbs/message/action#"+a)
	}
	return out
}

// --- Query interface ---

func Test_case_01_empty_db_lists_only_core(t *testing.T) {
	e := newCompat(t)
	r := e.c.do("GET", "/-/", nil)
	body := expectJSONOK(t, r, 200)
	if s := r.header.Get("Server"); s != occi.ServerHeader {
		t.Fatalf("Server %q", s)
	}
	cats := userCategories(t, body)
	for k, list := range cats {
		if len(list) != 0 {
			t.Fatalf("%s on an empty server: %v", k, list)
		}
	}
	var core []string
	for _, k := range body["kinds"].([]any) {
		m := k.(map[string]any)
		if m["scheme"] == coreScheme {
			core = append(core, m["scheme"].(string)+m["term"].(string))
		}
	}
	sort.Strings(core)
	if want := sorted(coreScheme+"entity", coreScheme+"link", coreScheme+"resource"); !reflect.DeepEqual(core, want) {
		t.Fatalf("built-in kinds %v, want %v", core, want)
	}
}

func Test_case_02_register_member_category(t *testing.T) {
	e := newCompat(t)
	expectEmpty(t, e.c.do("POST", "/-/", fixture(t, "pycmbs/post_category_cmbs_member.json")), 200)
	cats := e.listCategories()
	if len(cats["kinds"]) != 1 || len(cats["actions"]) != 11 || len(cats["mixins"]) != 0 {
		t.Fatalf("after registering: %d kinds, %d mixins, %d actions", len(cats["kinds"]), len(cats["mixins"]), len(cats["actions"]))
	}
}

func Test_case_03_duplicate_registration_conflicts(t *testing.T) {
	e := newCompat(t, "F1")
	// The same document again is a no-op (a setup can run twice) …
	e.unchanged(func() {
		expectEmpty(t, e.c.do("POST", "/-/", fixture(t, "pycmbs/post_category_cmbs_member.json")), 200)
		expectEmpty(t, e.c.do("PUT", "/-/", fixture(t, "pycmbs/put_provider_cmbs_member.json")), 200)
	})
	// … a different definition under a registered id is a conflict.
	changed := fixtureJSON(t, "pycmbs/post_category_cmbs_member.json")
	changed["kinds"].([]any)[0].(map[string]any)["title"] = "another member"
	e.unchanged(func() {
		expectError(t, e.c.do("POST", "/-/", mustJSON(t, changed)), 409, memberKind, "already registered", "different definition")
	})
	cats := e.listCategories()
	if len(cats["kinds"]) != 1 || len(cats["actions"]) != 11 {
		t.Fatalf("after the refused repeat: %d kinds, %d actions", len(cats["kinds"]), len(cats["actions"]))
	}
}

func Test_case_04_list_is_what_was_posted(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	cats := e.listCategories()
	if got, want := ids(cats["kinds"]), sorted(memberKind, messageKind); !reflect.DeepEqual(got, want) {
		t.Fatalf("kinds %v, want %v", got, want)
	}
	var mixins []string
	for _, m := range []string{"l1", "l2", "l31", "l32", "l4"} {
		mixins = append(mixins, cmbsScheme+m)
	}
	if got, want := ids(cats["mixins"]), sorted(mixins...); !reflect.DeepEqual(got, want) {
		t.Fatalf("mixins %v, want %v", got, want)
	}
	if got, want := ids(cats["actions"]), sorted(append(memberActions(), messageActions()...)...); !reflect.DeepEqual(got, want) {
		t.Fatalf("actions %v, want %v", got, want)
	}
	posted := byID(t, fixtureJSON(t, "pycmbs/post_category_cmbs_member.json"), fixtureJSON(t, "pycmbs/post_category_cmbs_message.json"))
	for _, k := range []string{"kinds", "mixins", "actions"} {
		for _, c := range cats[k] {
			id := c["scheme"].(string) + c["term"].(string)
			if !reflect.DeepEqual(c, posted[id]) {
				t.Fatalf("%s differs from what was posted:\n got %v\nwant %v", id, c, posted[id])
			}
		}
	}
}

func Test_case_05_location_conflict(t *testing.T) {
	e := newCompat(t, "F1")
	e.unchanged(func() {
		expectError(t, e.c.do("POST", "/-/", []byte(`{"kinds":[{"term":"other","scheme":"http://x#","location":"/cmbs/member/"}]}`)),
			409, "/cmbs/member/")
	})
}

func Test_case_06_id_shared_across_classes(t *testing.T) {
	e := newCompat(t, "F1")
	e.unchanged(func() {
		expectError(t, e.c.do("POST", "/-/", []byte(`{"mixins":[{"term":"start_l1","scheme":"http://houssem.org/cmbs/member/action#","location":"/m/"}]}`)),
			409, memberAction+"start_l1")
	})
}

func Test_case_07_same_request_duplicate(t *testing.T) {
	e := newCompat(t)
	e.unchanged(func() {
		expectError(t, e.c.do("POST", "/-/", []byte(`{"kinds":[{"term":"a","scheme":"http://x#","location":"/a/"},{"term":"a","scheme":"http://x#","location":"/a2/"}]}`)),
			400, "http://x#a", "twice")
	})
	if cats := e.listCategories(); len(cats["kinds"]) != 0 {
		t.Fatalf("a refused request stored %v", cats["kinds"])
	}
}

func Test_case_08_content_types(t *testing.T) {
	e := newCompat(t)
	t.Run("missing_type_sniffed_empty_document", func(t *testing.T) {
		e.unchanged(func() {
			expectError(t, e.c.do("POST", "/-/", []byte(`{}`), "Content-Type", ""), 400, "kinds", "mixins", "actions")
		})
	})
	t.Run("put_empty_document", func(t *testing.T) {
		e.unchanged(func() {
			expectError(t, e.c.do("PUT", "/-/", []byte(`{}`)), 400, "kinds", "providers")
		})
	})
	t.Run("missing_type_sniffed_json", func(t *testing.T) {
		expectEmpty(t, e.c.do("POST", "/-/", []byte(`{"actions":[{"term":"a","scheme":"http://x#"}]}`), "Content-Type", ""), 200)
	})
	for _, ct := range []string{"application/xml", "image/png"} {
		t.Run(strings.ReplaceAll(ct, "/", "_"), func(t *testing.T) {
			e.unchanged(func() {
				expectError(t, e.c.do("POST", "/-/", []byte(`{}`), "Content-Type", ct), 415, ct)
			})
		})
	}
}

func Test_case_09_invalid_json(t *testing.T) {
	e := newCompat(t)
	e.unchanged(func() {
		expectError(t, e.c.do("POST", "/-/", []byte(`{bad json`)), 400, "JSON")
	})
}

// categoryFilterCase is a GET /-/ with a filter body and the user
// categories each class must list (nil: none).
type categoryFilterCase struct {
	name        string
	contentType string
	body        string
	want        map[string][]string
}

func runCategoryFilters(t *testing.T, cases []categoryFilterCase) {
	t.Helper()
	e := newCompat(t, "F1", "F2")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.contentType
			if ct == "" {
				ct = "application/occi+json"
			}
			got := userCategories(t, expectJSONOK(t, e.c.do("GET", "/-/", []byte(tc.body), "Content-Type", ct), 200))
			for _, k := range []string{"kinds", "mixins", "actions"} {
				want := sorted(tc.want[k]...)
				if g := ids(got[k]); !reflect.DeepEqual(g, want) {
					t.Fatalf("%s: got %v, want %v", k, g, want)
				}
			}
		})
	}
}

func Test_case_10_filter_by_term(t *testing.T) {
	runCategoryFilters(t, []categoryFilterCase{
		{name: "term", body: `{"kinds":[{"term":"member"}]}`, want: map[string][]string{"kinds": {memberKind}}},
	})
}

func Test_case_11_filter_all_keys_must_match(t *testing.T) {
	runCategoryFilters(t, []categoryFilterCase{
		{name: "wrong_scheme", body: `{"kinds":[{"term":"member","scheme":"http://WRONG#"}]}`},
		{name: "right_scheme", body: `{"kinds":[{"term":"member","scheme":"http://houssem.org/cmbs#"}]}`, want: map[string][]string{"kinds": {memberKind}}},
	})
}

func Test_case_12_filter_by_location(t *testing.T) {
	runCategoryFilters(t, []categoryFilterCase{
		{name: "mixin_location", body: `{"mixins":[{"location":"/cmbs/message/l1/"}]}`, want: map[string][]string{"mixins": {cmbsScheme + "l1"}}},
	})
}

func Test_case_13_filter_objects_are_ored(t *testing.T) {
	runCategoryFilters(t, []categoryFilterCase{
		{name: "two_terms", body: `{"actions":[{"term":"start_l1"},{"term":"send_l1"}]}`,
			want: map[string][]string{"actions": {memberAction + "start_l1", "http://houssem.org/cmbs/message/action#send_l1"}}},
		{name: "overlapping_filters_list_once", body: `{"actions":[{"term":"start_l1"},{"scheme":"http://houssem.org/cmbs/member/action#","term":"start_l1"}]}`,
			want: map[string][]string{"actions": {memberAction + "start_l1"}}},
	})
}

func Test_case_14_empty_filter(t *testing.T) {
	runCategoryFilters(t, []categoryFilterCase{{name: "empty_object", body: `{}`}})
}

func Test_case_15_filter_list_equality(t *testing.T) {
	runCategoryFilters(t, []categoryFilterCase{
		{name: "whole_list", body: `{"kinds":[{"actions":["http://houssem.org/cmbs/message/action#execute"]}]}`, want: map[string][]string{"kinds": {messageKind}}},
		{name: "part_of_list", body: `{"kinds":[{"actions":["` + memberAction + `start_l1"]}]}`},
	})
}

func Test_case_16_filter_attribute_subset(t *testing.T) {
	runCategoryFilters(t, []categoryFilterCase{
		{name: "partial_definition", body: `{"kinds":[{"attributes":{"cmbs":{"member":{"state":{"mutable":true}}}}}]}`, want: map[string][]string{"kinds": {memberKind}}},
		{name: "missing_path", body: `{"kinds":[{"attributes":{"cmbs":{"member":{"nope":{"mutable":true}}}}}]}`},
	})
}

func Test_case_17_filter_content_types(t *testing.T) {
	runCategoryFilters(t, []categoryFilterCase{
		{name: "text_plain", contentType: "text/plain", body: `Category: member; scheme="http://houssem.org/cmbs#"; class="kind"`,
			want: map[string][]string{"kinds": {memberKind}}},
		{name: "text_plain_without_class", contentType: "text/plain", body: `Category: l1; scheme="http://houssem.org/cmbs#"`,
			want: map[string][]string{"mixins": {cmbsScheme + "l1"}}},
	})
	e := newCompat(t, "F1")
	expectError(t, e.c.do("GET", "/-/", []byte(`{"kinds":[]}`), "Content-Type", "image/png"), 415, "image/png")
}

func Test_case_18_text_renderings(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	total := nBuiltin + 2 + 5 + 17 // built-in categories + user kinds, mixins, actions
	t.Run("text_plain", func(t *testing.T) {
		r := e.c.expect("GET", "/-/", nil, 200, "Accept", "text/plain")
		if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		lines := strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n")
		if len(lines) != total {
			t.Fatalf("%d lines, want %d:\n%s", len(lines), total, r.body)
		}
		var member string
		for _, l := range lines {
			if !strings.HasPrefix(l, "Category: ") {
				t.Fatalf("line %q does not start with \"Category: \"", l)
			}
			if strings.HasPrefix(l, `Category: member; scheme="http://houssem.org/cmbs#"; class="kind"`) {
				member = l
			}
		}
		for _, want := range []string{`title="CMBS member"`, `location="/cmbs/member/"`,
			"cmbs.member.local", memberAction + "stop_l4"} {
			if !strings.Contains(member, want) {
				t.Fatalf("member line %q lacks %s", member, want)
			}
		}
		// local is required but has a default, so clients need not give it:
		// text renderings do not mark it (see docs/decisions.md).
		if strings.Contains(member, "cmbs.member.local{required}") {
			t.Fatalf("member line %q marks a defaulted attribute required", member)
		}
		// The rendering reads back: POSTing it to another server registers
		// the same categories (attribute names and flags, not full definitions).
		other := newCompat(t)
		var user []string
		for _, l := range lines {
			term, rest, _ := strings.Cut(strings.TrimPrefix(l, "Category: "), "; scheme=\"")
			scheme, _, _ := strings.Cut(rest, "\"")
			if !builtinIDs[scheme+term] {
				user = append(user, l)
			}
		}
		expectEmpty(t, other.c.do("POST", "/-/", []byte(strings.Join(user, "\n")), "Content-Type", "text/plain"), 200)
		got := other.listCategories()
		if len(got["kinds"]) != 2 || len(got["mixins"]) != 5 || len(got["actions"]) != 17 {
			t.Fatalf("re-registered %d kinds, %d mixins, %d actions", len(got["kinds"]), len(got["mixins"]), len(got["actions"]))
		}
	})
	t.Run("text_occi", func(t *testing.T) {
		r := e.c.expect("GET", "/-/", nil, 200, "Accept", "text/occi")
		if string(r.body) != "OK\n" {
			t.Fatalf("body %q, want OK", r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "text/occi; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		if n := len(r.header.Values("Category")); n != total {
			t.Fatalf("%d Category headers, want %d", n, total)
		}
	})
}

func Test_case_19_bind_provider(t *testing.T) {
	e := newCompat(t)
	e.c.expect("POST", "/-/", fixture(t, "pycmbs/post_category_cmbs_member.json"), 200)
	expectEmpty(t, e.c.do("PUT", "/-/", fixture(t, "pycmbs/put_provider_cmbs_member.json")), 200)
	e.apply("F3")
	e.rec.take()
	e.c.expect("POST", pathM+"?action=start_l1", []byte(`{}`), 200)
	calls := e.rec.take()
	if len(calls) != 1 || calls[0].Provider != "cmbs_member" || calls[0].Op != "action" {
		t.Fatalf("calls after binding: %+v", calls)
	}
}

func Test_case_20_provider_of_unknown_category(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/-/", []byte(`{"providers":[{"OCCI_ID":"http://nope#x","Provider":{"local":["cmbs_member"]}}]}`)), 400, "http://nope#x")
	})
}

func Test_case_21_provider_of_a_mixin(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/-/", []byte(`{"providers":[{"OCCI_ID":"http://houssem.org/cmbs#l1","Provider":{"local":["cmbs_member"]}}]}`)), 400, "mixin")
	})
}

func Test_case_22_provider_unknown_member(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/-/", []byte(`{"providers":[{"OCCI_ID":"http://houssem.org/cmbs#member","Provider":{"foo":[]}}]}`)), 400, "foo")
	})
}

func Test_case_23_update_title(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	expectEmpty(t, e.c.do("PUT", "/-/", []byte(`{"kinds":[{"term":"member","scheme":"http://houssem.org/cmbs#","title":"T2"}]}`)), 200)
	want := byID(t, fixtureJSON(t, "pycmbs/post_category_cmbs_member.json"))[memberKind]
	want["title"] = "T2"
	for _, k := range e.listCategories()["kinds"] {
		if k["term"] == "member" {
			if !reflect.DeepEqual(k, want) {
				t.Fatalf("member after the update:\n got %v\nwant %v", k, want)
			}
			return
		}
	}
	t.Fatal("member kind gone")
}

func Test_case_24_location_is_immutable(t *testing.T) {
	e := newCompat(t, "F1")
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/-/", []byte(`{"kinds":[{"term":"member","scheme":"http://houssem.org/cmbs#","location":"/x/"}]}`)), 400, "location")
	})
}

func Test_case_25_update_cannot_add_members(t *testing.T) {
	e := newCompat(t, "F1")
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/-/", []byte(`{"kinds":[{"term":"member","scheme":"http://houssem.org/cmbs#","related":[]}]}`)), 400, "related")
	})
}

func Test_case_26_update_unknown_action(t *testing.T) {
	e := newCompat(t, "F1")
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/-/", []byte(`{"actions":[{"term":"nope","scheme":"http://x#"}]}`)), 400, "http://x#nope")
	})
}

func Test_case_27_action_has_no_location(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/-/", []byte(`{"actions":[{"term":"execute","scheme":"http://houssem.org/cmbs/message/action#","location":"/x/"}]}`)), 400, "location")
	})
}

func Test_case_28_delete_action(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	// The member kind declares stop_l4: deleting it alone would leave the
	// kind listing an action that answers 400.
	e.unchanged(func() {
		expectError(t, e.c.do("DELETE", "/-/", []byte(`{"actions":[{"term":"stop_l4","scheme":"http://houssem.org/cmbs/member/action#"}]}`)),
			409, memberAction+"stop_l4", "kind "+memberKind)
	})
	e.c.expect("POST", pathM+"?action=stop_l4", []byte(`{}`), 200)
	e.rec.take()
	// Once the kind no longer declares it, it can go.
	var without []any
	for _, a := range memberActions() {
		if a != memberAction+"stop_l4" {
			without = append(without, a)
		}
	}
	e.c.expect("PUT", "/-/", mustJSON(t, map[string]any{"kinds": []any{map[string]any{"term": "member", "scheme": cmbsScheme, "actions": without}}}), 200)
	expectEmpty(t, e.c.do("DELETE", "/-/", []byte(`{"actions":[{"term":"stop_l4","scheme":"http://houssem.org/cmbs/member/action#"}]}`)), 200)
	cats := e.listCategories()
	for _, a := range ids(cats["actions"]) {
		if a == memberAction+"stop_l4" {
			t.Fatal("deleted action still listed")
		}
	}
	if len(cats["actions"]) != 10 {
		t.Fatalf("%d actions left, want 10", len(cats["actions"]))
	}
	// Invoking it is refused, naming the actions the member does declare.
	expectError(t, e.c.do("POST", pathM+"?action=stop_l4", []byte(`{}`)), 400, "stop_l4", "declared: check_neighbors, start_l1")
	if calls := e.rec.take(); len(calls) != 0 {
		t.Fatalf("provider called for a deleted action: %+v", calls)
	}
}

func Test_case_29_kind_with_entities_cannot_be_deleted(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	e.unchanged(func() {
		expectError(t, e.c.do("DELETE", "/-/", []byte(`{"kinds":[{"term":"member","scheme":"http://houssem.org/cmbs#"}]}`)), 409, memberKind)
	})
	e.c.expect("GET", pathM, nil, 200)
	// Once its entities are gone, it can.
	e.c.expect("DELETE", pathM, nil, 200)
	expectEmpty(t, e.c.do("DELETE", "/-/", []byte(`{"kinds":[{"term":"member","scheme":"http://houssem.org/cmbs#"}]}`)), 200)
	if k := e.listCategories()["kinds"]; len(k) != 0 {
		t.Fatalf("kinds left: %v", k)
	}
}

func Test_case_30_delete_mixin_detaches_everywhere(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F4")
	second := firstResource(t, "pycmbs/post_message_l1.json")
	second["id"] = "second-l1"
	e.c.expect("POST", "/cmbs/message/", mustJSON(t, map[string]any{"resources": []any{second}}), 201)
	expectEmpty(t, e.c.do("DELETE", "/-/", []byte(`{"mixins":[{"term":"l1","scheme":"http://houssem.org/cmbs#"}]}`)), 200)
	for _, p := range []string{pathL1, "/cmbs/message/second-l1"} {
		got := e.c.expect("GET", p, nil, 200).json(t)
		if ms := got["mixins"].([]any); len(ms) != 0 {
			t.Fatalf("%s keeps mixins %v", p, ms)
		}
		// The entity stays usable: a partial update validates against what
		// its kind and remaining mixins define.
		e.c.expect("POST", p, []byte(`{"resources":[{"title":"after l1"}]}`), 201)
	}
	if m := e.listCategories()["mixins"]; len(m) != 4 {
		t.Fatalf("mixins left: %v", ids(m))
	}
	// Its collection went with it.
	expectError(t, e.c.do("GET", "/cmbs/message/l1/", nil), 404, "/cmbs/message/l1/")
}

func Test_case_31_delete_needs_a_body(t *testing.T) {
	e := newCompat(t, "F1")
	e.unchanged(func() {
		expectError(t, e.c.do("DELETE", "/-/", nil), 400, "category document")
	})
}

func Test_case_32_text_plain_delete(t *testing.T) {
	e := newCompat(t, "F1")
	// Deleted with the kind that declares it, in one request.
	expectEmpty(t, e.c.do("DELETE", "/-/", []byte("Category: start_l1; scheme=\"http://houssem.org/cmbs/member/action#\"; class=action;\n"+
		"Category: member; scheme=\"http://houssem.org/cmbs#\"; class=kind"),
		"Content-Type", "text/plain"), 200)
	for _, a := range ids(e.listCategories()["actions"]) {
		if a == memberAction+"start_l1" {
			t.Fatal("start_l1 still listed")
		}
	}
}

func Test_case_33_text_plain_register(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	expectEmpty(t, e.c.do("POST", "/-/", []byte(`Category: l9; scheme="http://houssem.org/cmbs#"; class="mixin"; location="/cmbs/message/l9/"`),
		"Content-Type", "text/plain"), 200)
	want := map[string]any{"term": "l9", "scheme": "http://houssem.org/cmbs#", "location": "/cmbs/message/l9/"}
	for _, m := range e.listCategories()["mixins"] {
		if m["term"] == "l9" {
			if !reflect.DeepEqual(m, want) {
				t.Fatalf("stored mixin %v, want %v", m, want)
			}
			return
		}
	}
	t.Fatal("l9 not listed")
}

// rawDo sends a prepared request and reads the whole reply.
func rawDo(t testing.TB, req *http.Request) reply {
	t.Helper()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}
