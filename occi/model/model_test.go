package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"github.com/cmbs/cmbs/store/mango"
)

func readJSON(t testing.TB, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// seedKind parses the kind of one of pyCMBS's category files.
func seedKind(t *testing.T, file string) *Category {
	t.Helper()
	doc := readJSON(t, filepath.Join("..", "..", "testdata", file))
	kinds := doc["kinds"].([]any)
	c, err := ParseCategory(ClassKind, kinds[0].(map[string]any))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c
}

func TestSeedCategoriesParse(t *testing.T) {
	for _, file := range []string{
		"readme/post_category_cmbs_member.json", "readme/post_category_cmbs_message.json",
		"pycmbs/post_category_cmbs_member.json", "pycmbs/post_category_cmbs_message.json",
	} {
		doc := readJSON(t, filepath.Join("..", "..", "testdata", file))
		for _, class := range []Class{ClassKind, ClassMixin, ClassAction} {
			list, _ := doc[class.Plural()].([]any)
			for _, item := range list {
				if _, err := ParseCategory(class, item.(map[string]any)); err != nil {
					t.Errorf("%s: %s: %v", file, class, err)
				}
			}
		}
	}
}

func TestReadmeMemberAttributes(t *testing.T) {
	kind := seedKind(t, "readme/post_category_cmbs_member.json")
	set := NewAttrSet(kind.Attributes)
	if d := set.ByName("cmbs.member.l3.1_socket"); d == nil || !reflect.DeepEqual(d.Path, []string{"cmbs", "member", "l3.1_socket"}) {
		t.Fatalf("l3.1_socket definition: %+v", d)
	}
	// pyCMBS's member, exactly as its README posts it, is valid.
	post := readJSON(t, "../../testdata/readme/post_member.json")
	attrs := post["resources"].([]any)[0].(map[string]any)["attributes"].(map[string]any)
	tree := set.Nest(attrs)
	if err := set.Prepare(tree); err != nil {
		t.Fatalf("README member rejected: %v", err)
	}
	if !reflect.DeepEqual(tree, attrs) {
		t.Fatalf("a member giving every attribute must be stored as given:\n got %v\nwant %v", tree, attrs)
	}
	// A flat 1.2 name lands under the dotted segment.
	flat := set.Nest(map[string]any{"cmbs.member.l3.1_socket": "tcp://h:1", "cmbs.member.state": "active"})
	if v, _ := Lookup(flat, []string{"cmbs", "member", "l3.1_socket"}); v != "tcp://h:1" {
		t.Fatalf("flat name nested wrongly: %v", flat)
	}
}

func TestValidation(t *testing.T) {
	member := NewAttrSet(seedKind(t, "pycmbs/post_category_cmbs_member.json").Attributes)
	message := seedKind(t, "pycmbs/post_category_cmbs_message.json")
	msgSet := NewAttrSet(message.Attributes)
	cases := []struct {
		name     string
		set      *AttrSet
		attrs    string
		wantAttr string // "" = valid
	}{
		{"state from the pattern", member, `{"cmbs":{"member":{"state":"suspended"}}}`, ""},
		{"state outside the pattern", member, `{"cmbs":{"member":{"state":"bogus"}}}`, "cmbs.member.state"},
		{"state of the wrong type", member, `{"cmbs":{"member":{"state":3}}}`, "cmbs.member.state"},
		{"socket URI against pyCMBS's hostname pattern", member, `{"cmbs":{"member":{"l1_socket":"tcp://127.0.0.1:5010"}}}`, ""},
		{"array attribute given a string", member, `{"cmbs":{"member":{"neighbors_socket":"tcp://x:1"}}}`, "cmbs.member.neighbors_socket"},
		{"empty string as an empty array (pyOCNI)", member, `{"cmbs":{"member":{"topics":""}}}`, ""},
		{"undeclared attribute", member, `{"cmbs":{"member":{"colour":"red"}}}`, "cmbs.member.colour"},
		{"undeclared namespace", member, `{"org":{"x":{"y":1}}}`, "org.x.y"},
		{"flat undeclared name", member, `{"cmbs.member.nope":"x"}`, "cmbs.member.nope"},
		{"Python True for a true|false flag", msgSet, `{"cmbs":{"message":{"sendable":"True","storable":"False"}}}`, ""},
		{"flag outside the pattern", msgSet, `{"cmbs":{"message":{"sendable":"maybe"}}}`, "cmbs.message.sendable"},
		{"text in Object-typed content (pyCMBS's l2 file)", msgSet, `{"cmbs":{"message":{"message_content":"message l2"}}}`, ""},
		{"object content", msgSet, `{"cmbs":{"message":{"message_content":{"a":1}}}}`, ""},
		{"number in Object-typed content", msgSet, `{"cmbs":{"message":{"result":3}}}`, "cmbs.message.result"},
		{"layer outside the pattern", msgSet, `{"cmbs":{"message":{"cmbs_layer":"l9"}}}`, "cmbs.message.cmbs_layer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var attrs map[string]any
			if err := json.Unmarshal([]byte(tc.attrs), &attrs); err != nil {
				t.Fatal(err)
			}
			tree := tc.set.Nest(attrs)
			err := tc.set.Prepare(tree)
			if tc.wantAttr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var me *Error
			if err == nil || !asError(err, &me) || me.Status != 400 || me.Attribute != tc.wantAttr {
				t.Fatalf("want a 400 naming %s, got %#v", tc.wantAttr, err)
			}
		})
	}
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
	}
	return ok
}

func TestDefaultsRequiredAndImmutable(t *testing.T) {
	defs, err := ParseAttrDefs(map[string]any{
		"x.y.mode":  map[string]any{"type": "string", "default": "on", "pattern": "^(on|off)$", "mutable": true},
		"x.y.id":    map[string]any{"type": "string", "required": true, "mutable": false},
		"x.y.bad":   map[string]any{"type": "string", "default": "nope", "pattern": "^(a|b)$"},
		"x.y.list":  map[string]any{"type": "Array", "default": ""},
		"x.y.count": map[string]any{"type": "number", "default": 2.0},
	})
	if err != nil {
		t.Fatal(err)
	}
	set := NewAttrSet(defs)
	tree := map[string]any{"x": map[string]any{"y": map[string]any{"id": "a"}}}
	if err := set.Prepare(tree); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"x": map[string]any{"y": map[string]any{"id": "a", "mode": "on", "count": 2.0}}}
	if !reflect.DeepEqual(tree, want) {
		t.Fatalf("defaults: got %v want %v (a default failing its own pattern, or \"\" for an array, is not applied)", tree, want)
	}
	if err := set.Prepare(map[string]any{}); err == nil || err.(*Error).Attribute != "x.y.id" {
		t.Fatalf("missing required attribute: got %v", err)
	}
	changed := map[string]any{"x": map[string]any{"y": map[string]any{"id": "b", "mode": "on", "count": 2.0}}}
	if err := set.CheckUpdate(tree, changed); err == nil || err.(*Error).Attribute != "x.y.id" {
		t.Fatalf("immutable change: got %v", err)
	}
}

func TestMatchSemantics(t *testing.T) {
	desc := map[string]any{
		"kind":       "k",
		"mixins":     []any{"a", "b"},
		"attributes": map[string]any{"cmbs": map[string]any{"member": map[string]any{"local": "true", "state": "active", "load": 1.2}}},
		"título":     "s",
	}
	cases := []struct {
		filter string
		want   bool
	}{
		{`{}`, true},
		{`{"kind":"k"}`, true},
		{`{"kind":"k","mixins":["a","b"]}`, true},
		{`{"mixins":["a"]}`, false},
		{`{"attributes":{"cmbs":{"member":{"local":"true","state":"active"}}}}`, true},
		{`{"attributes":{"cmbs":{"member":{"local":"true","state":"inactive"}}}}`, false},
		{`{"attributes":{"cmbs":{"member":{"nope":"x"}}}}`, false},
		{`{"kind":"k","title":"x"}`, false},
		// Cases kivik's x/mango, the former reference, got wrong.
		{`{"attributes":{"cmbs":{"member":{"load":1.5}}}}`, false},
		{`{"attributes":{"cmbs":{"member":{"load":1.2}}}}`, true},
		{`{"título":"s"}`, true},
	}
	for _, tc := range cases {
		var f map[string]any
		if err := json.Unmarshal([]byte(tc.filter), &f); err != nil {
			t.Fatal(err)
		}
		if got := Match(desc, f); got != tc.want {
			t.Errorf("Match(%s) = %v, want %v", tc.filter, got, tc.want)
		}
		if got := mangoMatch(t, f, desc); got != tc.want {
			t.Errorf("Mango selector of %s = %v, want %v", tc.filter, got, tc.want)
		}
	}
}

func mangoMatch(t testing.TB, filter, doc map[string]any) bool {
	raw, err := json.Marshal(Selector("", filter))
	if err != nil {
		t.Fatal(err)
	}
	sel, err := mango.Parse(raw)
	if err != nil {
		t.Fatalf("selector %s: %v", raw, err)
	}
	return sel.Match(doc)
}

// FuzzFilterMatchesSelector checks that a filter evaluated in memory (the
// category registry) and the Mango selector it becomes (entity queries in
// the store) agree on every document.
func FuzzFilterMatchesSelector(f *testing.F) {
	f.Add(`{"kind":"k","attributes":{"a":{"b":1}}}`, `{"kind":"k","attributes":{"a":{"b":1,"c":"x"}}}`)
	f.Add(`{"attributes":{"l3.1_socket":"s"}}`, `{"attributes":{"l3.1_socket":"s"}}`)
	f.Add(`{"mixins":["a"]}`, `{"mixins":["a","b"]}`)
	f.Add(`{"x":{}}`, `{"x":{"y":null}}`)
	f.Fuzz(func(t *testing.T, filterJSON, docJSON string) {
		var filter, doc map[string]any
		if json.Unmarshal([]byte(filterJSON), &filter) != nil || json.Unmarshal([]byte(docJSON), &doc) != nil {
			return
		}
		if hasOperatorKey(filter) {
			return // "$…" keys are Mango operators, never OCCI member names
		}
		if hasIgnorable(filter) || hasIgnorable(doc) {
			// Mango compares strings by CouchDB's Unicode collation, in which
			// control and format characters are ignorable ("\x7f" equals ""),
			// while Match compares them exactly; the two agree on everything else.
			return
		}
		if got, want := mangoMatch(t, filter, doc), Match(doc, filter); got != want {
			t.Fatalf("filter %s on %s: selector says %v, Match says %v", filterJSON, docJSON, got, want)
		}
	})
}

// hasIgnorable reports whether a decoded JSON value has a key or string
// holding a control or format character.
func hasIgnorable(v any) bool {
	ignorable := func(s string) bool {
		return strings.IndexFunc(s, func(r rune) bool { return unicode.In(r, unicode.Cc, unicode.Cf) }) >= 0
	}
	switch t := v.(type) {
	case string:
		return ignorable(t)
	case []any:
		for _, e := range t {
			if hasIgnorable(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range t {
			if ignorable(k) || hasIgnorable(e) {
				return true
			}
		}
	}
	return false
}

func hasOperatorKey(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for k, e := range m {
		if len(k) > 0 && k[0] == '$' || k == "" || hasOperatorKey(e) {
			return true
		}
	}
	return false
}
