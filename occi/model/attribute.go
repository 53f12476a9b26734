package model

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
)

// Attribute types, normalised to OCCI 1.2's lower-case names.
const (
	TypeAny     = "" // no type declared: any JSON value
	TypeString  = "string"
	TypeNumber  = "number"
	TypeBoolean = "boolean"
	TypeArray   = "array"
	TypeObject  = "object"
)

// typeNames maps every spelling seen in OCCI renderings and pyOCNI files
// (compared case-insensitively) to a type.
var typeNames = map[string]string{
	"string": TypeString, "str": TypeString, "text": TypeString, "uri": TypeString, "enum": TypeString,
	"number": TypeNumber, "integer": TypeNumber, "int": TypeNumber, "float": TypeNumber, "double": TypeNumber,
	"boolean": TypeBoolean, "bool": TypeBoolean,
	"array": TypeArray, "list": TypeArray,
	"object": TypeObject, "map": TypeObject, "hash": TypeObject, "dict": TypeObject,
}

// definitionKeys are the properties an attribute definition may carry; an
// object holding one of them with a non-object value is a definition, not a
// namespace.
var definitionKeys = map[string]bool{
	"type": true, "mutable": true, "required": true, "pattern": true, "default": true,
	"description": true, "minimum": true, "maximum": true, "title": true,
}

// AttrDef is one attribute definition of a kind, mixin or action.
type AttrDef struct {
	// Path locates the attribute in the nested attribute tree, e.g.
	// ["cmbs","member","l3.1_socket"]. Segments may contain dots.
	Path []string
	// Type is one of the Type constants.
	Type     string
	Required bool
	Mutable  bool
	// Pattern, when set, must match (somewhere in) a string value, with JSON
	// Schema's unanchored semantics: anchor it with ^…$ for a full match.
	Pattern *regexp.Regexp
	// Default is applied when the attribute is absent at creation. HasDefault
	// is false when none was declared or the declared one fails the definition
	// itself (pyOCNI files use "" for "no default" and declare defaults that
	// violate their own patterns).
	Default     any
	HasDefault  bool
	Description string
}

// Name is the flat OCCI name, the path joined with dots.
func (d *AttrDef) Name() string { return strings.Join(d.Path, ".") }

// ParseAttrDefs reads the "attributes" member of a category description: the
// pyOCNI nested tree ({"cmbs":{"member":{"state":{…}}}}) or OCCI 1.2's flat
// map ({"occi.compute.cores":{…}}), or a mix. nil and {} give no definitions.
func ParseAttrDefs(v any) ([]AttrDef, error) {
	if v == nil {
		return nil, nil
	}
	tree, ok := v.(map[string]any)
	if !ok {
		if s, isStr := v.(string); isStr && s == "" {
			return nil, nil // pyOCNI writes "" for "none"
		}
		return nil, BadRequest("attributes must be an object, got %s", jsonKind(v))
	}
	var defs []AttrDef
	if err := parseDefTree(tree, nil, &defs); err != nil {
		return nil, err
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i].Name() < defs[j].Name() })
	for i := 1; i < len(defs); i++ {
		if defs[i].Name() == defs[i-1].Name() {
			return nil, AttributeError(defs[i].Name(), "attribute %s is defined twice", defs[i].Name())
		}
	}
	return defs, nil
}

func parseDefTree(tree map[string]any, prefix []string, out *[]AttrDef) error {
	for key, val := range tree {
		obj, ok := val.(map[string]any)
		if !ok {
			name := strings.Join(append(append([]string{}, prefix...), key), ".")
			return AttributeError(name, "attribute definition %s must be an object, got %s", name, jsonKind(val))
		}
		var path []string
		if prefix == nil && strings.Contains(key, ".") {
			path = strings.Split(key, ".") // OCCI 1.2 flat name
		} else {
			path = append(append([]string{}, prefix...), key)
		}
		if isDefinition(obj, len(path)) {
			def, err := parseDef(path, obj)
			if err != nil {
				return err
			}
			*out = append(*out, def)
			continue
		}
		if err := parseDefTree(obj, path, out); err != nil {
			return err
		}
	}
	return nil
}

// isDefinition tells a definition from a namespace: a definition has a
// property with a scalar value, or consists only of property names (a lone
// JSON-Schema pattern or object default); an empty object below the root
// declares an attribute with no properties.
func isDefinition(obj map[string]any, depth int) bool {
	if len(obj) == 0 {
		return depth > 1
	}
	onlyProps := true
	for k, v := range obj {
		if !definitionKeys[k] {
			onlyProps = false
			continue
		}
		if _, isObj := v.(map[string]any); !isObj {
			return true
		}
	}
	return onlyProps
}

func parseDef(path []string, obj map[string]any) (AttrDef, error) {
	def := AttrDef{Path: path}
	name := def.Name()
	if t, ok := obj["type"]; ok && t != nil {
		s, isStr := t.(string)
		if !isStr {
			return def, AttributeError(name, "attribute %s: type must be a string", name)
		}
		if s != "" {
			norm, known := typeNames[strings.ToLower(s)]
			if !known {
				return def, AttributeError(name, "attribute %s: unknown type %q (want string, number, boolean, array or object)", name, s)
			}
			def.Type = norm
		}
	}
	var err error
	if def.Required, err = boolProp(obj, "required", name); err != nil {
		return def, err
	}
	if def.Mutable, err = boolProp(obj, "mutable", name); err != nil {
		return def, err
	}
	if d, ok := obj["description"].(string); ok {
		def.Description = d
	}
	if err := checkPatternLen(obj["pattern"], name); err != nil {
		return def, err
	}
	switch p := obj["pattern"].(type) {
	case nil:
	case string:
		if p != "" {
			if def.Pattern, err = regexp.Compile(p); err != nil {
				return def, AttributeError(name, "attribute %s: pattern %q is not a valid regular expression: %v", name, p, err)
			}
		}
	case map[string]any:
		// OCCI 1.2 renders pattern as a JSON Schema; its "pattern" keyword is
		// the part that constrains strings.
		if s, ok := p["pattern"].(string); ok && s != "" {
			if def.Pattern, err = regexp.Compile(s); err != nil {
				return def, AttributeError(name, "attribute %s: pattern %q is not a valid regular expression: %v", name, s, err)
			}
		}
	default:
		return def, AttributeError(name, "attribute %s: pattern must be a string or a JSON Schema object", name)
	}
	if d, ok := obj["default"]; ok && d != nil {
		def.Default = d
		def.HasDefault = def.Check(d) == nil && !(d == "" && def.Type != TypeString && def.Type != TypeAny)
	}
	return def, nil
}

// checkPatternLen refuses a pattern longer than MaxPatternBytes before it is
// compiled.
func checkPatternLen(p any, name string) error {
	if m, ok := p.(map[string]any); ok {
		p = m["pattern"]
	}
	if s, ok := p.(string); ok && len(s) > MaxPatternBytes {
		return AttributeError(name, "attribute %s: pattern is %d bytes long; the limit is %d bytes", name, len(s), MaxPatternBytes)
	}
	return nil
}

func boolProp(obj map[string]any, key, name string) (bool, error) {
	switch v := obj[key].(type) {
	case nil:
		return false, nil
	case bool:
		return v, nil
	case string:
		switch strings.ToLower(v) {
		case "true":
			return true, nil
		case "false", "":
			return false, nil
		}
	}
	return false, AttributeError(name, "attribute %s: %s must be a boolean", name, key)
}

// Check validates one value against the definition's type and pattern.
func (d *AttrDef) Check(v any) error {
	name := d.Name()
	if v == nil {
		return nil // JSON null clears an attribute
	}
	switch d.Type {
	case TypeString:
		if _, ok := v.(string); !ok {
			return AttributeError(name, "attribute %s must be a string, got %s", name, jsonKind(v))
		}
	case TypeNumber:
		if !isNumber(v) {
			return AttributeError(name, "attribute %s must be a number, got %s", name, jsonKind(v))
		}
	case TypeBoolean:
		if _, ok := v.(bool); !ok && !isBoolWord(v) {
			return AttributeError(name, "attribute %s must be a boolean, got %s", name, jsonKind(v))
		}
	case TypeArray:
		if _, ok := v.([]any); !ok && v != "" {
			return AttributeError(name, "attribute %s must be an array, got %s", name, jsonKind(v))
		}
	case TypeObject:
		// pyCMBS's own files put text in its Object-typed message_content, so
		// a string is accepted as opaque content.
		switch v.(type) {
		case map[string]any, string:
		default:
			return AttributeError(name, "attribute %s must be an object, got %s", name, jsonKind(v))
		}
	}
	if s, ok := v.(string); ok && d.Pattern != nil && !d.matches(s) {
		return AttributeError(name, "attribute %s: %q does not match the pattern %q", name, s, d.Pattern.String())
	}
	return nil
}

// matches applies the pattern; Python's spellings True/False (which pyCMBS
// writes for its true|false flags) are tried in lower case too.
func (d *AttrDef) matches(s string) bool {
	if d.Pattern.MatchString(s) {
		return true
	}
	return isBoolWord(s) && d.Pattern.MatchString(strings.ToLower(s))
}

func isBoolWord(v any) bool {
	s, ok := v.(string)
	return ok && (strings.EqualFold(s, "true") || strings.EqualFold(s, "false"))
}

func isNumber(v any) bool {
	switch v.(type) {
	case float64, float32, int, int64, int32, uint, uint64, uint32:
		return true
	}
	return false
}

// jsonKind names a decoded JSON value's type for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	if isNumber(v) {
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

// AttrSet is the attribute definitions that apply to an entity: its kind's
// (with parents) and its mixins'.
type AttrSet struct {
	byName map[string]*AttrDef
	defs   []*AttrDef
	// maxValues bounds the attribute values validated against the set (see
	// SetMaxValues); 0 means no bound.
	maxValues int
}

// SetMaxValues bounds, for Prepare and CheckUpdate, an entity's attribute
// count and the length of any array and member count of any object in its
// values (413 beyond). Call it before the set is shared.
func (s *AttrSet) SetMaxValues(n int) { s.maxValues = n }

// NewAttrSet collects definitions; a later definition of the same name wins
// (a mixin refining its kind's attribute).
func NewAttrSet(groups ...[]AttrDef) *AttrSet {
	s := &AttrSet{byName: map[string]*AttrDef{}}
	for _, g := range groups {
		for i := range g {
			d := &g[i]
			if _, dup := s.byName[pathKey(d.Path)]; !dup {
				s.defs = append(s.defs, d)
			} else {
				for j, old := range s.defs {
					if pathKey(old.Path) == pathKey(d.Path) {
						s.defs[j] = d
					}
				}
			}
			s.byName[pathKey(d.Path)] = d
			s.byName[d.Name()] = d
		}
	}
	return s
}

func pathKey(p []string) string { return strings.Join(p, "\x00") }

// Defs lists the definitions in the set.
func (s *AttrSet) Defs() []*AttrDef { return s.defs }

// ByPath finds the definition at a nested path.
func (s *AttrSet) ByPath(path []string) *AttrDef { return s.byName[pathKey(path)] }

// ByName finds the definition with a flat dotted name.
func (s *AttrSet) ByName(name string) *AttrDef {
	if d := s.byName[name]; d != nil && d.Name() == name {
		return d
	}
	return nil
}

// Nest turns client attributes (pyOCNI nested, OCCI 1.2 flat dotted names, or
// a mix) into the nested tree the server stores. Flat names are resolved
// against the definitions first, so a declared "cmbs.member.l3.1_socket"
// lands under the segment "l3.1_socket"; undeclared flat names split on dots.
func (s *AttrSet) Nest(attrs map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range attrs {
		var path []string
		switch {
		case s.ByName(k) != nil:
			path = s.ByName(k).Path
		case strings.Contains(k, ".") && s.ByPath([]string{k}) == nil:
			path = strings.Split(k, ".")
		default:
			path = []string{k}
		}
		if m, ok := v.(map[string]any); ok && s.ByPath(path) == nil {
			// A namespace: merge it so {"a":{"b":1}} and {"a.c":2} combine.
			existing, _ := Lookup(out, path)
			em, isMap := existing.(map[string]any)
			if !isMap {
				em = map[string]any{}
				SetPath(out, path, em)
			}
			mergeTree(em, s.nestBelow(path, m), s, path)
			continue
		}
		SetPath(out, path, v)
	}
	return out
}

// nestBelow resolves flat names inside a nested namespace object.
func (s *AttrSet) nestBelow(prefix []string, m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		path := append(append([]string{}, prefix...), k)
		if sub, ok := v.(map[string]any); ok && s.ByPath(path) == nil {
			out[k] = s.nestBelow(path, sub)
			continue
		}
		out[k] = v
	}
	return out
}

// Leaf is one attribute value found in a tree.
type Leaf struct {
	Path  []string
	Value any
	Def   *AttrDef // nil when undeclared
}

// Leaves lists the attribute values of a nested tree: declared attributes
// (whatever their value's shape) and, for undeclared ones, every non-object
// value, in name order.
func (s *AttrSet) Leaves(tree map[string]any) []Leaf {
	// Each leaf's key is built once, for the definition's lookup and the
	// sort (every entity write and filter match walks its attributes).
	var sorted leavesByKey
	var walk func(prefix []string, m map[string]any)
	walk = func(prefix []string, m map[string]any) {
		for k, v := range m {
			path := append(append(make([]string, 0, len(prefix)+1), prefix...), k)
			key := pathKey(path)
			if d := s.byName[key]; d != nil {
				sorted.add(key, Leaf{Path: path, Value: v, Def: d})
				continue
			}
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(path, sub)
				continue
			}
			sorted.add(key, Leaf{Path: path, Value: v})
		}
	}
	walk(nil, tree)
	sort.Sort(&sorted)
	return sorted.leaves
}

// leavesByKey sorts leaves by their paths' keys (pathKey).
type leavesByKey struct {
	keys   []string
	leaves []Leaf
}

func (l *leavesByKey) add(key string, leaf Leaf) {
	l.keys = append(l.keys, key)
	l.leaves = append(l.leaves, leaf)
}

func (l *leavesByKey) Len() int           { return len(l.keys) }
func (l *leavesByKey) Less(i, j int) bool { return l.keys[i] < l.keys[j] }
func (l *leavesByKey) Swap(i, j int) {
	l.keys[i], l.keys[j] = l.keys[j], l.keys[i]
	l.leaves[i], l.leaves[j] = l.leaves[j], l.leaves[i]
}

// Flatten renders a nested tree with flat dotted names (OCCI 1.2).
func (s *AttrSet) Flatten(tree map[string]any) map[string]any {
	out := map[string]any{}
	for _, l := range s.Leaves(tree) {
		out[strings.Join(l.Path, ".")] = l.Value
	}
	return out
}

// Prepare validates the attributes of a new entity and fills in defaults:
// every value must be declared (occi.core.* is always allowed) and pass its
// definition, and every required attribute must be present afterwards.
// tree is modified in place.
func (s *AttrSet) Prepare(tree map[string]any) error {
	if err := s.checkValues(tree); err != nil {
		return err
	}
	return s.complete(tree)
}

// Complete is Prepare without checking the values given one by one: it
// bounds their number as Prepare does (not the arrays and objects inside
// them), fills in defaults and checks that every required attribute is
// present, for a tree the server built itself from values it knows are
// valid.
func (s *AttrSet) Complete(tree map[string]any) error {
	if err := s.checkCount(tree); err != nil {
		return err
	}
	return s.complete(tree)
}

// checkCount refuses a tree with more values than the set's bound, as
// Leaves counts them.
func (s *AttrSet) checkCount(tree map[string]any) error {
	if s.maxValues > 0 {
		if n := s.countLeaves(make([]byte, 0, 64), tree); n > s.maxValues {
			return TooLarge("the entity has %d attributes; the limit is %d", n, s.maxValues)
		}
	}
	return nil
}

func (s *AttrSet) complete(tree map[string]any) error {
	for _, d := range s.defs {
		if _, present := Lookup(tree, d.Path); !present && d.HasDefault {
			SetPath(tree, d.Path, deepCopy(d.Default))
		}
	}
	for _, d := range s.defs {
		if v, present := Lookup(tree, d.Path); d.Required && (!present || v == nil) {
			return AttributeError(d.Name(), "attribute %s is required", d.Name())
		}
	}
	return nil
}

// CheckUpdate validates a full new attribute tree against the old one:
// values must be declared and valid, required ones present, immutable ones
// unchanged.
func (s *AttrSet) CheckUpdate(old, updated map[string]any) error {
	if err := s.checkValues(updated); err != nil {
		return err
	}
	return s.checkDefs(old, updated)
}

// checkDefs checks required and immutable attributes of an update.
func (s *AttrSet) checkDefs(old, updated map[string]any) error {
	for _, d := range s.defs {
		nv, present := Lookup(updated, d.Path)
		if d.Required && (!present || nv == nil) {
			return AttributeError(d.Name(), "attribute %s is required", d.Name())
		}
		if !d.Mutable {
			ov, had := Lookup(old, d.Path)
			if had != present || !reflect.DeepEqual(ov, nv) {
				return AttributeError(d.Name(), "attribute %s is immutable", d.Name())
			}
		}
	}
	return nil
}

// CheckPatch is CheckUpdate for an update that merged patch (a nested
// tree, as MergeAttributes took it) into old, giving updated, where old's
// own values are valid: only patch's values are checked one by one, the
// number of updated's values is bounded, and every required and immutable
// attribute is checked as CheckUpdate does. A value of old that no longer
// passes its definition is not looked at again; anything patch brings is.
func (s *AttrSet) CheckPatch(old, updated, patch map[string]any) error {
	var leaves leavesByKey
	s.patchLeaves(nil, patch, updated, &leaves)
	sort.Sort(&leaves) // the first error is the one Leaves' order finds
	if err := s.checkLeaves(leaves.leaves); err != nil {
		return err
	}
	if err := s.checkCount(updated); err != nil {
		return err
	}
	return s.checkDefs(old, updated)
}

// patchLeaves adds to leaves the values of updated that patch brought, as
// Leaves would find them: it follows MergeAttributes, which merged a
// namespace object into the one updated already had.
func (s *AttrSet) patchLeaves(prefix []string, patch, updated map[string]any, leaves *leavesByKey) {
	for k, v := range patch {
		path := append(prefix[:len(prefix):len(prefix)], k)
		key := pathKey(path)
		d := s.byName[key]
		if sub, ok := v.(map[string]any); ok && d == nil {
			if merged, _ := updated[k].(map[string]any); len(merged) > 0 {
				s.patchLeaves(path, sub, merged, leaves)
				continue
			}
		}
		leaves.add(key, Leaf{Path: path, Value: v, Def: d})
	}
}

// countLeaves counts the values Leaves finds in tree, without building
// them: key is the pathKey of tree's namespace (nil at the top).
func (s *AttrSet) countLeaves(key []byte, tree map[string]any) int {
	n := 0
	for k, v := range tree {
		path := key
		if len(path) > 0 {
			path = append(path, 0)
		}
		path = append(path, k...)
		if s.byName[string(path)] == nil {
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				n += s.countLeaves(path, sub)
				continue
			}
		}
		n++
	}
	return n
}

func (s *AttrSet) checkValues(tree map[string]any) error {
	return s.checkLeaves(s.Leaves(tree))
}

func (s *AttrSet) checkLeaves(leaves []Leaf) error {
	if err := checkValueBounds(leaves, s.maxValues); err != nil {
		return err
	}
	for _, l := range leaves {
		name := strings.Join(l.Path, ".")
		if l.Def == nil {
			if len(l.Path) > 0 && l.Path[0] == "occi" && len(l.Path) > 1 && l.Path[1] == "core" {
				continue
			}
			err := AttributeError(name, "attribute %s is not defined by the entity's kind or mixins", name)
			err.Err = ErrUndefinedAttribute
			return err
		}
		if err := l.Def.Check(l.Value); err != nil {
			return err
		}
	}
	return nil
}

// Lookup finds the value at a path in a nested tree.
func Lookup(tree map[string]any, path []string) (any, bool) {
	var cur any = tree
	for _, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// SetPath stores a value at a path, creating namespaces on the way (and
// replacing non-object values that stand where a namespace must go).
func SetPath(tree map[string]any, path []string, v any) {
	cur := tree
	for _, seg := range path[:len(path)-1] {
		next, ok := cur[seg].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[seg] = next
		}
		cur = next
	}
	cur[path[len(path)-1]] = v
}

// DeletePath removes the value at a path and any namespaces left empty.
func DeletePath(tree map[string]any, path []string) {
	if len(path) == 0 {
		return
	}
	if len(path) == 1 {
		delete(tree, path[0])
		return
	}
	sub, ok := tree[path[0]].(map[string]any)
	if !ok {
		return
	}
	DeletePath(sub, path[1:])
	if len(sub) == 0 {
		delete(tree, path[0])
	}
}

// MergeAttributes deep-merges src into dst (new values win); a declared
// attribute's value is replaced whole even when it is an object.
func (s *AttrSet) MergeAttributes(dst, src map[string]any) {
	mergeTree(dst, src, s, nil)
}

func mergeTree(dst, src map[string]any, s *AttrSet, prefix []string) {
	for k, v := range src {
		path := append(append([]string{}, prefix...), k)
		sm, srcIsMap := v.(map[string]any)
		dm, dstIsMap := dst[k].(map[string]any)
		if srcIsMap && dstIsMap && (s == nil || s.ByPath(path) == nil) {
			mergeTree(dm, sm, s, path)
			continue
		}
		dst[k] = v
	}
}

// deepCopy copies decoded JSON so defaults are never shared between entities.
func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(t))
		for i, e := range t {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

// DeepCopy copies a decoded JSON value.
func DeepCopy(v any) any { return deepCopy(v) }
