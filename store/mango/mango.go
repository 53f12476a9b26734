// Package mango implements CouchDB Mango selectors: parsing, the
// normalisation CouchDB applies (src/mango/src/mango_selector.erl: norm_ops,
// norm_fields, norm_negations) and matching, in CouchDB's collation order.
//
// It is the one Mango implementation of the project: the embedded store
// matches with it, the CouchDB store validates every selector with it before
// sending it (so a selector one store refuses, the other refuses too), and
// tests use it as the reference for what a selector means.
//
// kivik's x/mango was the first choice, but at v4.5.2 it rejects
// nested-object selectors ({"a":{"b":1}}) and several operators on one
// field, panics on {"$elemMatch":{"field":…}}, has no field-level $not, lets
// $ne/$lt match documents that lack the field, treats null as absent for
// $exists, does not give $in array-membership semantics and compares 1.2
// equal to 1.5. x/collate is still used for strings.
//
// Regular expressions ($regex) are Go's RE2 syntax: a PCRE-only construct
// (look-around, back-references) is an invalid selector here, whichever
// store serves it. Operators CouchDB added after 3.3 ($beginsWith) are
// refused as unknown.
package mango

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

// Operator names.
const (
	OpAnd         = "$and"
	OpOr          = "$or"
	OpNot         = "$not"
	OpNor         = "$nor"
	OpEq          = "$eq"
	OpNe          = "$ne"
	OpLt          = "$lt"
	OpLte         = "$lte"
	OpGt          = "$gt"
	OpGte         = "$gte"
	OpIn          = "$in"
	OpNin         = "$nin"
	OpExists      = "$exists"
	OpType        = "$type"
	OpMod         = "$mod"
	OpRegex       = "$regex"
	OpAll         = "$all"
	OpSize        = "$size"
	OpElemMatch   = "$elemMatch"
	OpAllMatch    = "$allMatch"
	OpKeyMapMatch = "$keyMapMatch"
)

// Node is one selector node: either a field node (Op == "") applying Cond to
// the value at Field, or an operator. It mirrors CouchDB's {[{Key, Value}]}
// single-pair objects, so the normalisation steps translate one to one.
// A parsed selector is normalised: $nor and $not survive only inside
// $elemMatch/$allMatch/$keyMapMatch (elsewhere they are pushed down to the
// terminal operators), and field names sit directly above a terminal
// operator. Nodes are read-only once Parse returns them.
type Node struct {
	Op    string
	Field string  // field name or path, when Op == ""
	Cond  *Node   // field condition (Op == ""), or the argument of $not/$elemMatch/$allMatch/$keyMapMatch
	Args  []*Node // arguments of $and/$or/$nor
	// Val is the argument of a terminal operator: the decoded JSON value
	// ($eq…$gte, $in/$nin/$all: []any, $exists: bool, $type/$regex: string),
	// float64 for $size, [2]int64{divisor, remainder} for $mod.
	Val any
	re  *regexp.Regexp

	// Path is the parsed Field, set once normalisation is complete.
	Path []string
}

// Selector is a parsed, normalised Mango selector.
type Selector struct {
	Root *Node // nil matches everything
}

// ErrSelector marks a malformed selector; stores wrap it with
// store.ErrInvalid. The message names the problem.
var ErrSelector = errors.New("invalid selector")

func selectorErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrSelector}, args...)...)
}

// Parse parses and normalises a selector. An empty or null selector
// matches every document.
func Parse(raw json.RawMessage) (*Selector, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return &Selector{}, nil
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
		return &Selector{}, nil
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
	return &Selector{Root: n}, nil
}

// normOps validates operator arguments and turns implicit forms into
// explicit ones: several keys become $and, a bare value becomes $eq.
func normOps(v any) (*Node, error) {
	obj, ok := v.(map[string]any)
	if !ok || len(obj) == 0 {
		return &Node{Op: OpEq, Val: v}, nil
	}
	if len(obj) > 1 {
		keys := slices.Sorted(maps.Keys(obj))
		and := &Node{Op: OpAnd}
		for _, k := range keys {
			n, err := normOps(map[string]any{k: obj[k]})
			if err != nil {
				return nil, err
			}
			and.Args = append(and.Args, n)
		}
		return and, nil
	}
	var k string
	var arg any
	for k, arg = range obj {
	}
	switch k {
	case OpAnd, OpOr, OpNor:
		list, ok := arg.([]any)
		if !ok {
			return nil, selectorErrorf("%s needs an array", k)
		}
		n := &Node{Op: k}
		for _, a := range list {
			c, err := normOps(a)
			if err != nil {
				return nil, err
			}
			n.Args = append(n.Args, c)
		}
		return n, nil
	case OpNot, OpElemMatch, OpAllMatch, OpKeyMapMatch:
		if _, ok := arg.(map[string]any); !ok {
			return nil, selectorErrorf("%s needs an object", k)
		}
		c, err := normOps(arg)
		if err != nil {
			return nil, err
		}
		return &Node{Op: k, Cond: c}, nil
	case OpIn, OpNin, OpAll:
		if _, ok := arg.([]any); !ok {
			return nil, selectorErrorf("%s needs an array", k)
		}
		return &Node{Op: k, Val: arg}, nil
	case OpExists:
		if _, ok := arg.(bool); !ok {
			return nil, selectorErrorf("%s needs a boolean", k)
		}
		return &Node{Op: k, Val: arg}, nil
	case OpType:
		if _, ok := arg.(string); !ok {
			return nil, selectorErrorf("%s needs a string", k)
		}
		return &Node{Op: k, Val: arg}, nil
	case OpMod:
		l, ok := arg.([]any)
		if !ok || len(l) != 2 {
			return nil, selectorErrorf("%s needs [divisor, remainder]", k)
		}
		d, dok := AsInteger(l[0])
		r, rok := AsInteger(l[1])
		if !dok || !rok || d == 0 {
			return nil, selectorErrorf("%s needs two integers and a non-zero divisor", k)
		}
		return &Node{Op: k, Val: [2]int64{d, r}}, nil
	case OpRegex:
		s, ok := arg.(string)
		if !ok {
			return nil, selectorErrorf("%s needs a string", k)
		}
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, selectorErrorf("%s: %v", k, err)
		}
		return &Node{Op: k, Val: s, re: re}, nil
	case OpSize:
		n, ok := AsInteger(arg)
		if !ok || n < 0 {
			return nil, selectorErrorf("%s needs a non-negative integer", k)
		}
		return &Node{Op: k, Val: float64(n)}, nil
	case OpEq, OpNe, OpLt, OpLte, OpGt, OpGte:
		return &Node{Op: k, Val: arg}, nil
	}
	if strings.HasPrefix(k, "$") {
		return nil, selectorErrorf("unknown or unsupported operator %s", k)
	}
	c, err := normOps(arg)
	if err != nil {
		return nil, err
	}
	return &Node{Field: k, Cond: c}, nil
}

// normFields pushes field names down to the terminal operators, through the
// boolean operators: {"a":{"$or":[{"b":1},{"$gt":2}]}} becomes
// {"$or":[{"a.b":1},{"a":{"$gt":2}}]}. $elemMatch and friends start a new
// path for their argument.
func normFields(n *Node, path string) (*Node, error) {
	switch n.Op {
	case OpAnd, OpOr, OpNor:
		out := &Node{Op: n.Op, Args: make([]*Node, 0, len(n.Args))}
		for _, a := range n.Args {
			c, err := normFields(a, path)
			if err != nil {
				return nil, err
			}
			out.Args = append(out.Args, c)
		}
		return out, nil
	case OpNot:
		c, err := normFields(n.Cond, path)
		if err != nil {
			return nil, err
		}
		return &Node{Op: OpNot, Cond: c}, nil
	case OpElemMatch, OpAllMatch, OpKeyMapMatch:
		c, err := normFields(n.Cond, "")
		if err != nil {
			return nil, err
		}
		return &Node{Field: path, Cond: &Node{Op: n.Op, Cond: c}}, nil
	case "":
		p := n.Field
		if path != "" {
			p = path + "." + n.Field
		}
		return normFields(n.Cond, p)
	default:
		return &Node{Field: path, Cond: n}, nil
	}
}

// normNegations moves $not and $nor down to the field conditions, as CouchDB
// does. This is not cosmetic: {"$not":{"a":1}} becomes {"a":{"$ne":1}}, which
// does not match documents without "a".
func normNegations(n *Node) *Node {
	switch n.Op {
	case OpNot:
		return negate(n.Cond)
	case OpNor:
		out := &Node{Op: OpAnd}
		for _, a := range n.Args {
			out.Args = append(out.Args, negate(a))
		}
		return out
	case OpAnd, OpOr:
		out := &Node{Op: n.Op}
		for _, a := range n.Args {
			out.Args = append(out.Args, normNegations(a))
		}
		return out
	case OpElemMatch, OpAllMatch, OpKeyMapMatch:
		return &Node{Op: n.Op, Cond: normNegations(n.Cond)}
	}
	return n
}

var negated = map[string]string{
	OpLt: OpGte, OpLte: OpGt, OpGt: OpLte, OpGte: OpLt,
	OpEq: OpNe, OpNe: OpEq, OpIn: OpNin, OpNin: OpIn,
}

func negate(n *Node) *Node {
	switch n.Op {
	case OpNot:
		return normNegations(n.Cond)
	case OpNor:
		out := &Node{Op: OpOr}
		for _, a := range n.Args {
			out.Args = append(out.Args, normNegations(a))
		}
		return out
	case OpAnd, OpOr:
		out := &Node{Op: OpOr}
		if n.Op == OpOr {
			out.Op = OpAnd
		}
		for _, a := range n.Args {
			out.Args = append(out.Args, negate(a))
		}
		return out
	case OpExists:
		return &Node{Op: OpExists, Val: !n.Val.(bool)}
	case "":
		return &Node{Field: n.Field, Cond: negate(n.Cond)}
	}
	if op, ok := negated[n.Op]; ok {
		return &Node{Op: op, Val: n.Val}
	}
	return &Node{Op: OpNot, Cond: n}
}

// resolvePaths parses every field name into its path segments. top reports
// whether n is outside any $elemMatch, where an empty field name is invalid.
func resolvePaths(n *Node, top bool) error {
	switch n.Op {
	case "":
		if n.Field == "" {
			if top {
				return selectorErrorf("missing field name")
			}
		} else {
			p, err := SplitField(n.Field)
			if err != nil {
				return err
			}
			n.Path = p
		}
		return resolvePaths(n.Cond, top)
	case OpAnd, OpOr, OpNor:
		for _, a := range n.Args {
			if err := resolvePaths(a, top); err != nil {
				return err
			}
		}
	case OpNot:
		return resolvePaths(n.Cond, top)
	case OpElemMatch, OpAllMatch, OpKeyMapMatch:
		return resolvePaths(n.Cond, false)
	}
	return nil
}

// SplitField splits a field name on the dots that are not escaped with a
// backslash, then drops the backslashes (mango_util:parse_field).
func SplitField(field string) ([]string, error) {
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

// Match reports whether doc (a decoded JSON object, with _id and _rev) matches.
func (s *Selector) Match(doc any) bool {
	if s.Root == nil {
		return true
	}
	return matchNode(s.Root, doc, false)
}

// GetField results.
const (
	Found = iota
	NotFound
	BadPath
)

// GetField follows path from v: object members by name, array elements by
// decimal index (mango_doc:get_field).
func GetField(v any, path []string) (any, int) {
	for _, seg := range path {
		switch t := v.(type) {
		case map[string]any:
			next, ok := t[seg]
			if !ok {
				return nil, NotFound
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(t) {
				return nil, BadPath
			}
			v = t[i]
		default:
			return nil, BadPath
		}
	}
	return v, Found
}

// matchNode evaluates n against v. raw selects byte-wise string comparison,
// which CouchDB uses for _id.
func matchNode(n *Node, v any, raw bool) bool {
	cmp := Compare
	if raw {
		cmp = CompareRaw
	}
	switch n.Op {
	case "":
		if n.Field == "" {
			return matchNode(n.Cond, v, raw)
		}
		sub, st := GetField(v, n.Path)
		switch st {
		case NotFound:
			return n.Cond.Op == OpExists && !n.Cond.Val.(bool)
		case BadPath:
			return false
		}
		return matchNode(n.Cond, sub, raw || (len(n.Path) == 1 && n.Path[0] == "_id"))
	case OpAnd:
		for _, a := range n.Args {
			if !matchNode(a, v, raw) {
				return false
			}
		}
		return true
	case OpOr:
		if len(n.Args) == 0 {
			return true
		}
		for _, a := range n.Args {
			if matchNode(a, v, raw) {
				return true
			}
		}
		return false
	case OpNor:
		for _, a := range n.Args {
			if matchNode(a, v, raw) {
				return false
			}
		}
		return true
	case OpNot:
		return !matchNode(n.Cond, v, raw)
	case OpElemMatch:
		arr, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range arr {
			if matchNode(n.Cond, e, false) {
				return true
			}
		}
		return false
	case OpAllMatch:
		arr, ok := v.([]any)
		if !ok || len(arr) == 0 {
			return false
		}
		for _, e := range arr {
			if !matchNode(n.Cond, e, false) {
				return false
			}
		}
		return true
	case OpKeyMapMatch:
		obj, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for k := range obj {
			if matchNode(n.Cond, k, false) {
				return true
			}
		}
		return false
	case OpEq:
		return cmp(v, n.Val) == 0
	case OpNe:
		return cmp(v, n.Val) != 0
	case OpLt:
		return cmp(v, n.Val) < 0
	case OpLte:
		return cmp(v, n.Val) <= 0
	case OpGt:
		return cmp(v, n.Val) > 0
	case OpGte:
		return cmp(v, n.Val) >= 0
	case OpIn:
		return inList(v, n.Val.([]any), cmp)
	case OpNin:
		args := n.Val.([]any)
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
	case OpExists:
		// Reached only for a field that exists.
		return n.Val.(bool)
	case OpType:
		return jsonTypeName(v) == n.Val.(string)
	case OpMod:
		i, ok := AsInteger(v)
		if !ok {
			return false
		}
		m := n.Val.([2]int64)
		return i%m[0] == m[1]
	case OpRegex:
		s, ok := v.(string)
		return ok && n.re.MatchString(s)
	case OpSize:
		arr, ok := v.([]any)
		return ok && float64(len(arr)) == n.Val.(float64)
	case OpAll:
		return matchAll(v, n.Val.([]any))
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
		if !slices.ContainsFunc(arr, func(e any) bool { return Compare(e, a) == 0 }) {
			has = false
			break
		}
	}
	if has {
		return true
	}
	if len(args) == 1 {
		if inner, ok := args[0].([]any); ok {
			return Compare(inner, arr) == 0
		}
	}
	return false
}

// AsInteger reports whether v is a JSON number with an integral value.
func AsInteger(v any) (int64, bool) {
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
