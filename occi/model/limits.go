package model

import (
	"net/http"
	"strings"
)

// Bounds on what a category may hold. Every category is in memory on every
// server and its term and scheme are part of every tagged entity's document;
// without bounds one mixin with a megabyte term slowed every later write.
const (
	MaxTermBytes     = 1 << 10 // a category's term
	MaxSchemeBytes   = 2 << 10 // a category's scheme
	MaxLocationBytes = 2 << 10 // a kind's or mixin's location
	MaxTitleBytes    = 4 << 10 // a category's title
	MaxPatternBytes  = 4 << 10 // an attribute definition's pattern
	// MaxAttrDefs bounds the attribute definitions of one category.
	MaxAttrDefs = 1000
	// MaxCategoryRefs bounds each of a category's lists (actions, related,
	// depends, applies).
	MaxCategoryRefs = 1000
	// MaxCategoriesPerRequest bounds the categories one POST, PUT or DELETE
	// /-/ names (each is one store write under the model's write lock).
	MaxCategoriesPerRequest = 1000
)

// DefaultMaxAttributes is the default bound on an entity's attribute count,
// and on the length of any array and the member count of any object in its
// attribute values.
const DefaultMaxAttributes = 10000

// checkLen refuses a category member longer than max bytes.
func checkLen(member, value string, max int) error {
	if len(value) > max {
		return BadRequest("category %s is %d bytes long; the limit is %d bytes", member, len(value), max)
	}
	return nil
}

// TooLarge is a 413 naming the limit that was exceeded.
func TooLarge(format string, args ...any) *Error {
	return Errorf(http.StatusRequestEntityTooLarge, format, args...)
}

// checkValueBounds refuses an attribute tree with more than max attribute
// values, or an array or object (at any depth) with more than max elements or
// members. leaves is the tree's attribute values.
func checkValueBounds(leaves []Leaf, max int) error {
	if max <= 0 {
		return nil
	}
	if len(leaves) > max {
		return TooLarge("the entity has %d attributes; the limit is %d", len(leaves), max)
	}
	for _, l := range leaves {
		if err := checkNested(l.Value, max, "attribute "+strings.Join(l.Path, ".")); err != nil {
			return err
		}
	}
	return nil
}

// checkNested bounds the arrays and objects in v; name says whose value it
// is ("attribute a.b", "links"), and an attribute's error names it.
func checkNested(v any, max int, name string) error {
	tooLarge := func(format string, n int) error {
		e := TooLarge(format, name, n, max)
		if attr, ok := strings.CutPrefix(name, "attribute "); ok {
			e.Attribute = attr
		}
		return e
	}
	switch t := v.(type) {
	case []any:
		if len(t) > max {
			return tooLarge("%s has an array of %d elements; the limit is %d", len(t))
		}
		for _, x := range t {
			if err := checkNested(x, max, name); err != nil {
				return err
			}
		}
	case map[string]any:
		if len(t) > max {
			return tooLarge("%s has an object of %d members; the limit is %d", len(t))
		}
		for _, x := range t {
			if err := checkNested(x, max, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckEntityBounds refuses an entity whose mixins, actions or links lists
// are longer than max, or hold (at any depth) an array or object with more
// than max elements or members (413 naming the member). Its attributes are
// bounded by the AttrSet that validates them (SetMaxValues). max <= 0 means
// no bound.
func CheckEntityBounds(e *Entity, max int) error {
	if max <= 0 {
		return nil
	}
	if len(e.Mixins) > max {
		return TooLarge("the entity has %d mixins; the limit is %d", len(e.Mixins), max)
	}
	for _, m := range []struct {
		name string
		list []any
	}{{"actions", e.Actions}, {"links", e.Links}} {
		if len(m.list) > max {
			return TooLarge("the entity's %s list has %d elements; the limit is %d", m.name, len(m.list), max)
		}
		for _, v := range m.list {
			if err := checkNested(v, max, m.name); err != nil {
				return err
			}
		}
	}
	return nil
}
