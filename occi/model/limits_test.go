package model

import (
	"net/http"
	"strings"
	"testing"
)

// The attribute-value bound applies at any depth, to declared and
// undeclared values alike, in Prepare and CheckUpdate.
func TestAttrSetMaxValues(t *testing.T) {
	defs, err := ParseAttrDefs(map[string]any{"x": map[string]any{
		"list": map[string]any{"type": "Array", "mutable": true},
		"obj":  map[string]any{"type": "Object", "mutable": true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	set := NewAttrSet(defs)
	set.SetMaxValues(3)
	for _, tc := range []struct {
		name  string
		tree  map[string]any
		words []string
	}{
		{"long_array", map[string]any{"x": map[string]any{"list": []any{1, 2, 3, 4}}}, []string{"x.list", "4 elements", "limit is 3"}},
		{"nested_array", map[string]any{"x": map[string]any{"obj": map[string]any{"a": []any{[]any{1, 2, 3, 4}}}}}, []string{"x.obj", "4 elements"}},
		{"wide_object", map[string]any{"x": map[string]any{"obj": map[string]any{"a": 1, "b": 2, "c": 3, "d": 4}}}, []string{"x.obj", "4 members"}},
		{"many_attributes", map[string]any{"y": map[string]any{"a": 1, "b": 2, "c": 3, "d": 4}}, []string{"4 attributes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for op, err := range map[string]error{"Prepare": set.Prepare(tc.tree), "CheckUpdate": set.CheckUpdate(tc.tree, tc.tree)} {
				if StatusOf(err) != http.StatusRequestEntityTooLarge {
					t.Fatalf("%s: %v, want 413", op, err)
				}
				for _, w := range tc.words {
					if !strings.Contains(err.Error(), w) {
						t.Fatalf("%s: %q does not name %q", op, err, w)
					}
				}
			}
		})
	}
	if err := set.Prepare(map[string]any{"x": map[string]any{"list": []any{1, 2, 3}, "obj": map[string]any{"a": []any{1, 2, 3}}}}); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
}

// Category bounds name the category and the limit; a pattern is refused
// before it is compiled.
func TestCheckBounds(t *testing.T) {
	c, err := ParseCategory(ClassMixin, map[string]any{"term": strings.Repeat("t", MaxTermBytes+1), "scheme": "http://x#", "location": "/m/"})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckBounds(c); StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "term") || !strings.Contains(err.Error(), "1024") {
		t.Fatalf("long term: %v", err)
	}
	_, err = ParseAttrDefs(map[string]any{"a": map[string]any{"b": map[string]any{"pattern": "(" + strings.Repeat("a", MaxPatternBytes) + ")"}}})
	if StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "a.b") || !strings.Contains(err.Error(), "4096") {
		t.Fatalf("long pattern: %v", err)
	}
}
