package sqlite

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// This file implements CouchDB Mango selectors: parsing, the normalisation
// CouchDB applies (src/mango/src/mango_selector.erl: norm_ops, norm_fields,
// norm_negations) and matching. kivik's x/mango was the first choice, but at
// v4.5.2 it rejects nested-object selectors ({"a":{"b":1}}) and several
// operators on one field, panics on {"$elemMatch":{"field":…}}, has no
// field-level $not, lets $ne/$lt match documents that lack the field, treats
// null as absent for $exists, does not give $in array-membership semantics and
// compares 1.2 equal to 1.5. Matching is the final word on what Find returns,
// so it has to agree with CouchDB; x/collate is still used for strings.

// Operator names.
const (
	opAnd         = "$and"
	opOr          = "$or"
	opNot         = "$not"
	opNor         = "$nor"
	opEq          = "$eq"
	opNe          = "$ne"
	opLt          = "$lt"
	opLte         = "$lte"
	opGt          = "$gt"
	opGte         = "$gte"
	opIn          = "$in"
	opNin         = "$nin"
	opExists      = "$exists"
	opType        = "$type"
	opMod         = "$mod"
	opRegex       = "$regex"
	opAll         = "$all"
	opSize        = "$size"
	opElemMatch   = "$elemMatch"
	opAllMatch    = "$allMatch"
	opKeyMapMatch = "$keyMapMatch"
)

// node is one selector node: either a field node (op == "") applying cond to
// the value at field, or an operator. It mirrors CouchDB's {[{Key, Value}]}
// single-pair objects, so the normalisation steps translate one to one.
type node struct {
	op    string
	field string  // field name or path, when op == ""
	cond  *node   // field condition (op == ""), or the argument of $not/$elemMatch/$allMatch/$keyMapMatch
	args  []*node // arguments of $and/$or/$nor
	val   any     // argument of a terminal operator
	re    *regexp.Regexp

	// path is the parsed field, set once normalisation is complete.
	path []string
}

// selector is a parsed, normalised Mango selector.
type selector struct {
	root *node // nil matches everything
}

// errSelector marks a malformed selector; callers wrap it with ErrInvalid.
var errSelector = errors.New("invalid selector")

func selectorErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errSelector}, args...)...)
}

// parseSelector parses and normalises a selector. An empty or null selector
// matches every document.
func parseSelector(raw json.RawMessage) (*selector, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return &selector{}, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, selectorErrorf("%v", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, selectorErrorf("selector must be a JSON object")
	}
	if len(obj) == 0 {
		return &selector{}, nil
	}
	n, err := normOps(obj)
	if err != nil {
		return nil, err
	}
	n, err = normFields(n, "")
	if err != nil {
		return nil, err
	}
	n = normNegations(n)
	if err := resolvePaths(n, true); err != nil {
		return nil, err
	}
	return &selector{root: n}, nil
}

// normOps validates operator arguments and turns implicit forms into
// explicit ones: several keys become $and, a bare value becomes $eq.
func normOps(v any) (*node, error) {
	obj, ok := v.(map[string]any)
	if !ok || len(obj) == 0 {
		return &node{op: opEq, val: v}, nil
	}
	if len(obj) > 1 {
		keys := slices.Sorted(maps.Keys(obj))
		and := &node{op: opAnd}
		for _, k := range keys {
			n, err := normOps(map[string]any{k: obj[k]})
			if err != nil {
				return nil, err
			}
			and.args = append(and.args, n)
		}
		return and, nil
	}
	var k string
	var arg any
	for k, arg = range obj {
	}
	switch k {
	case opAnd, opOr, opNor:
		list, ok := arg.([]any)
		if !ok {
			return nil, selectorErrorf("%s needs an array", k)
		}
		n := &node{op: k}
		for _, a := range list {
			c, err := normOps(a)
			if err != nil {
				return nil, err
			}
			n.args = append(n.args, c)
		}
		return n, nil
	case opNot, opElemMatch, opAllMatch, opKeyMapMatch:
		if _, ok := arg.(map[string]any); !ok {
			return nil, selectorErrorf("%s needs an object", k)
		}
		c, err := normOps(arg)
		if err != nil {
			return nil, err
		}
		return &node{op: k, cond: c}, nil
	case opIn, opNin, opAll:
		if _, ok := arg.([]any); !ok {
			return nil, selectorErrorf("%s needs an array", k)
		}
		return &node{op: k, val: arg}, nil
	case opExists:
		if _, ok := arg.(bool); !ok {
			return nil, selectorErrorf("%s needs a boolean", k)
		}
		return &node{op: k, val: arg}, nil
	case opType:
		if _, ok := arg.(string); !ok {
			return nil, selectorErrorf("%s needs a string", k)
		}
		return &node{op: k, val: arg}, nil
	case opMod:
		l, ok := arg.([]any)
		if !ok || len(l) != 2 {
			return nil, selectorErrorf("%s needs [divisor, remainder]", k)
		}
		d, dok := asInteger(l[0])
		r, rok := asInteger(l[1])
		if !dok || !rok || d == 0 {
			return nil, selectorErrorf("%s needs two integers and a non-zero divisor", k)
		}
		return &node{op: k, val: [2]int64{d, r}}, nil
	case opRegex:
		s, ok := arg.(string)
		if !ok {
			return nil, selectorErrorf("%s needs a string", k)
		}
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, selectorErrorf("%s: %v", k, err)
		}
		return &node{op: k, val: s, re: re}, nil
	case opSize:
		n, ok := asInteger(arg)
		if !ok || n < 0 {
			return nil, selectorErrorf("%s needs a non-negative integer", k)
		}
		return &node{op: k, val: float64(n)}, nil
	case opEq, opNe, opLt, opLte, opGt, opGte:
		return &node{op: k, val: arg}, nil
	}
	if strings.HasPrefix(k, "$") {
		return nil, selectorErrorf("unknown or unsupported operator %s", k)
	}
	c, err := normOps(arg)
	if err != nil {
		return nil, err
	}
	return &node{field: k, cond: c}, nil
}

// normFields pushes field names down to the terminal operators, through the
// boolean operators: {"a":{"$or":[{"b":1},{"$gt":2}]}} becomes
// {"$or":[{"a.b":1},{"a":{"$gt":2}}]}. $elemMatch and friends start a new
// path for their argument.
func normFields(n *node, path string) (*node, error) {
	switch n.op {
	case opAnd, opOr, opNor:
		out := &node{op: n.op, args: make([]*node, 0, len(n.args))}
		for _, a := range n.args {
			c, err := normFields(a, path)
			if err != nil {
				return nil, err
			}
			out.args = append(out.args, c)
		}
		return out, nil
	case opNot:
		c, err := normFields(n.cond, path)
		if err != nil {
			return nil, err
		}
		return &node{op: opNot, cond: c}, nil
	case opElemMatch, opAllMatch, opKeyMapMatch:
		c, err := normFields(n.cond, "")
		if err != nil {
			return nil, err
		}
		return &node{field: path, cond: &node{op: n.op, cond: c}}, nil
	case "":
		p := n.field
		if path != "" {
			p = path + "." + n.field
		}
		return normFields(n.cond, p)
	default:
		return &node{field: path, cond: n}, nil
	}
}

// normNegations moves $not and $nor down to the field conditions, as CouchDB
// does. This is not cosmetic: {"$not":{"a":1}} becomes {"a":{"$ne":1}}, which
// does not match documents without "a".
func normNegations(n *node) *node {
	switch n.op {
	case opNot:
		return negate(n.cond)
	case opNor:
		out := &node{op: opAnd}
		for _, a := range n.args {
			out.args = append(out.args, negate(a))
		}
		return out
	case opAnd, opOr:
		out := &node{op: n.op}
		for _, a := range n.args {
			out.args = append(out.args, normNegations(a))
		}
		return out
	case opElemMatch, opAllMatch, opKeyMapMatch:
		return &node{op: n.op, cond: normNegations(n.cond)}
	}
	return n
}

var negated = map[string]string{
	opLt: opGte, opLte: opGt, opGt: opLte, opGte: opLt,
	opEq: opNe, opNe: opEq, opIn: opNin, opNin: opIn,
}

func negate(n *node) *node {
	switch n.op {
	case opNot:
		return normNegations(n.cond)
	case opNor:
		out := &node{op: opOr}
		for _, a := range n.args {
			out.args = append(out.args, normNegations(a))
		}
		return out
	case opAnd, opOr:
		out := &node{op: opOr}
		if n.op == opOr {
			out.op = opAnd
		}
		for _, a := range n.args {
			out.args = append(out.args, negate(a))
		}
		return out
	case opExists:
		return &node{op: opExists, val: !n.val.(bool)}
	case "":
		return &node{field: n.field, cond: negate(n.cond)}
	}
	if op, ok := negated[n.op]; ok {
		return &node{op: op, val: n.val}
	}
	return &node{op: opNot, cond: n}
}

// resolvePaths parses every field name into its path segments. top reports
// whether n is outside any $elemMatch, where an empty field name is invalid.
func resolvePaths(n *node, top bool) error {
	switch n.op {
	case "":
		if n.field == "" {
			if top {
				return selectorErrorf("missing field name")
			}
		} else {
			p, err := splitField(n.field)
			if err != nil {
				return err
			}
			n.path = p
		}
		return resolvePaths(n.cond, top)
	case opAnd, opOr, opNor:
		for _, a := range n.args {
			if err := resolvePaths(a, top); err != nil {
				return err
			}
		}
	case opNot:
		return resolvePaths(n.cond, top)
	case opElemMatch, opAllMatch, opKeyMapMatch:
		return resolvePaths(n.cond, false)
	}
	return nil
}

// splitField splits a field name on the dots that are not escaped with a
// backslash, then drops the backslashes (mango_util:parse_field).
func splitField(field string) ([]string, error) {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(field); i++ {
		c := field[i]
		switch {
		case c == '\\' && i+1 < len(field) && field[i+1] == '.':
			cur.WriteByte('.')
			i++
		case c == '\\':
			// CouchDB removes every backslash.
		case c == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	parts = append(parts, cur.String())
	for _, p := range parts {
		if p == "" {
			return nil, selectorErrorf("invalid field name %q", field)
		}
	}
	return parts, nil
}

// match reports whether doc (a decoded JSON object, with _id and _rev) matches.
func (s *selector) match(doc any) bool {
	if s.root == nil {
		return true
	}
	return matchNode(s.root, doc, false)
}

// lookup results.
const (
	found = iota
	notFound
	badPath
)

// getField follows path from v: object members by name, array elements by
// decimal index (mango_doc:get_field).
func getField(v any, path []string) (any, int) {
	for _, seg := range path {
		switch t := v.(type) {
		case map[string]any:
			next, ok := t[seg]
			if !ok {
				return nil, notFound
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(t) {
				return nil, badPath
			}
			v = t[i]
		default:
			return nil, badPath
		}
	}
	return v, found
}

// matchNode evaluates n against v. raw selects byte-wise string comparison,
// which CouchDB uses for _id.
func matchNode(n *node, v any, raw bool) bool {
	cmp := compareJSON
	if raw {
		cmp = compareRaw
	}
	switch n.op {
	case "":
		if n.field == "" {
			return matchNode(n.cond, v, raw)
		}
		sub, st := getField(v, n.path)
		switch st {
		case notFound:
			return n.cond.op == opExists && !n.cond.val.(bool)
		case badPath:
			return false
		}
		return matchNode(n.cond, sub, raw || (len(n.path) == 1 && n.path[0] == "_id"))
	case opAnd:
		for _, a := range n.args {
			if !matchNode(a, v, raw) {
				return false
			}
		}
		return true
	case opOr:
		if len(n.args) == 0 {
			return true
		}
		for _, a := range n.args {
			if matchNode(a, v, raw) {
				return true
			}
		}
		return false
	case opNor:
		for _, a := range n.args {
			if matchNode(a, v, raw) {
				return false
			}
		}
		return true
	case opNot:
		return !matchNode(n.cond, v, raw)
	case opElemMatch:
		arr, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range arr {
			if matchNode(n.cond, e, false) {
				return true
			}
		}
		return false
	case opAllMatch:
		arr, ok := v.([]any)
		if !ok || len(arr) == 0 {
			return false
		}
		for _, e := range arr {
			if !matchNode(n.cond, e, false) {
				return false
			}
		}
		return true
	case opKeyMapMatch:
		obj, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for k := range obj {
			if matchNode(n.cond, k, false) {
				return true
			}
		}
		return false
	case opEq:
		return cmp(v, n.val) == 0
	case opNe:
		return cmp(v, n.val) != 0
	case opLt:
		return cmp(v, n.val) < 0
	case opLte:
		return cmp(v, n.val) <= 0
	case opGt:
		return cmp(v, n.val) > 0
	case opGte:
		return cmp(v, n.val) >= 0
	case opIn:
		return inList(v, n.val.([]any), cmp)
	case opNin:
		args := n.val.([]any)
		if len(args) == 0 {
			return true
		}
		if _, ok := v.([]any); ok {
			return !inList(v, args, cmp)
		}
		for _, a := range args {
			if cmp(v, a) == 0 {
				return false
			}
		}
		return true
	case opExists:
		// Reached only for a field that exists.
		return n.val.(bool)
	case opType:
		return jsonTypeName(v) == n.val.(string)
	case opMod:
		i, ok := asInteger(v)
		if !ok {
			return false
		}
		m := n.val.([2]int64)
		return i%m[0] == m[1]
	case opRegex:
		s, ok := v.(string)
		return ok && n.re.MatchString(s)
	case opSize:
		arr, ok := v.([]any)
		return ok && float64(len(arr)) == n.val.(float64)
	case opAll:
		return matchAll(v, n.val.([]any))
	}
	return false
}

// inList is $in: with an array value, any element equal to any argument.
func inList(v any, args []any, cmp func(a, b any) int) bool {
	if arr, ok := v.([]any); ok {
		for _, a := range args {
			for _, e := range arr {
				if cmp(e, a) == 0 {
					return true
				}
			}
		}
		return false
	}
	for _, a := range args {
		if cmp(v, a) == 0 {
			return true
		}
	}
	return false
}

// matchAll is $all: every argument is an element of the array value, or the
// single argument is an array equal to the value.
func matchAll(v any, args []any) bool {
	arr, ok := v.([]any)
	if !ok || len(args) == 0 {
		return false
	}
	has := true
	for _, a := range args {
		if !slices.ContainsFunc(arr, func(e any) bool { return compareJSON(e, a) == 0 }) {
			has = false
			break
		}
	}
	if has {
		return true
	}
	if len(args) == 1 {
		if inner, ok := args[0].([]any); ok {
			return compareJSON(inner, arr) == 0
		}
	}
	return false
}

// asInteger reports whether v is a JSON number with an integral value.
func asInteger(v any) (int64, bool) {
	f, ok := v.(float64)
	if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

func jsonTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return ""
}
