package model

import (
	"reflect"
	"strings"
)

// A filter is a JSON object describing what matching descriptions contain
// (pyOCNI's GET-with-body filters). The semantics fix pyOCNI's matcher: every
// key must match (AND); objects match as a subset, recursively; anything else
// (strings, numbers, arrays) must be equal; a path the description lacks is
// no match. A list of filters ORs them.

// Match reports whether desc satisfies the filter.
func Match(desc map[string]any, filter map[string]any) bool {
	for k, fv := range filter {
		dv, ok := desc[k]
		if !ok {
			return false
		}
		if !matchValue(dv, fv) {
			return false
		}
	}
	return true
}

func matchValue(dv, fv any) bool {
	if fm, ok := fv.(map[string]any); ok {
		dm, ok := dv.(map[string]any)
		if !ok {
			return false
		}
		return Match(dm, fm)
	}
	return jsonEqual(dv, fv)
}

// jsonEqual compares decoded JSON values, treating every number type alike.
func jsonEqual(a, b any) bool {
	if isNumber(a) && isNumber(b) {
		return toFloat(a) == toFloat(b)
	}
	switch at := a.(type) {
	case []any:
		bt, ok := b.([]any)
		if !ok || len(at) != len(bt) {
			return false
		}
		for i := range at {
			if !jsonEqual(at[i], bt[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bt, ok := b.(map[string]any)
		if !ok || len(at) != len(bt) {
			return false
		}
		for k, v := range at {
			w, ok := bt[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func toFloat(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case float32:
		return float64(n)
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case int32:
		return float64(n)
	case uint:
		return float64(n)
	case uint64:
		return float64(n)
	case uint32:
		return float64(n)
	}
	return 0
}

// Selector turns a filter into the equivalent Mango selector, with field
// paths under prefix (e.g. "" for whole documents). Path segments with dots
// are escaped, so attribute "l3.1_socket" becomes "…l3\.1_socket".
func Selector(prefix string, filter map[string]any) map[string]any {
	sel := map[string]any{}
	addSelector(sel, prefix, filter)
	return sel
}

func addSelector(sel map[string]any, prefix string, filter map[string]any) {
	for k, v := range filter {
		path := EscapeField(k)
		if prefix != "" {
			path = prefix + "." + path
		}
		if m, ok := v.(map[string]any); ok {
			if len(m) == 0 {
				sel[path] = map[string]any{"$type": "object"}
				continue
			}
			addSelector(sel, path, m)
			continue
		}
		sel[path] = map[string]any{"$eq": v}
	}
}

// EscapeField escapes one Mango field path segment.
func EscapeField(seg string) string {
	if !strings.ContainsAny(seg, `.\`) {
		return seg
	}
	seg = strings.ReplaceAll(seg, `\`, `\\`)
	return strings.ReplaceAll(seg, ".", `\.`)
}

// FieldPath joins path segments into an escaped Mango field path.
func FieldPath(segs ...string) string {
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = EscapeField(s)
	}
	return strings.Join(out, ".")
}
