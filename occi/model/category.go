package model

import (
	"net/url"
	"strings"
)

// Class is the kind of category.
type Class string

// The three category classes.
const (
	ClassKind   Class = "kind"
	ClassMixin  Class = "mixin"
	ClassAction Class = "action"
)

// Plural is the key of the class's list in a category document ("kinds", …).
func (c Class) Plural() string { return string(c) + "s" }

// Provider names the provider plug-ins bound to a kind (pyOCNI's
// {"local":[…],"remote":[…]}); Local[0] serves the kind.
type Provider struct {
	Local  []string `json:"local"`
	Remote []string `json:"remote"`
}

// Category is a kind, mixin or action.
type Category struct {
	Class    Class
	Term     string
	Scheme   string
	Title    string
	Location string // kinds and mixins: a path ending in "/"
	Parent   string // OCCI 1.2 kind parent
	Related  []string
	Depends  []string
	Applies  []string
	Actions  []string
	// Attributes are the parsed definitions of Description["attributes"].
	Attributes []AttrDef
	// Provider is set for kinds.
	Provider Provider
	// Builtin marks categories the server defines (OCCI core, infrastructure);
	// clients cannot delete or change them.
	Builtin bool
	// Description is the category exactly as registered (plus PUT updates),
	// which the pyOCNI JSON rendering returns verbatim.
	Description map[string]any
}

// ID is the category identifier, scheme + term.
func (c *Category) ID() string { return c.Scheme + c.Term }

// categoryKeys lists the members ParseCategory interprets; others are kept
// verbatim in Description.
var stringListKeys = []string{"related", "depends", "applies", "actions"}

// ParseCategory reads one category description of the given class, checking
// the members it interprets.
func ParseCategory(class Class, desc map[string]any) (*Category, error) {
	c := &Category{Class: class, Description: desc}
	var err error
	if c.Term, err = stringMember(desc, "term", true); err != nil {
		return nil, err
	}
	if c.Scheme, err = stringMember(desc, "scheme", true); err != nil {
		return nil, err
	}
	if strings.ContainsAny(c.Term, " \t\r\n\"#;,") {
		return nil, BadRequest("category term %q contains a character not allowed in a term", c.Term)
	}
	if c.Title, err = stringMember(desc, "title", false); err != nil {
		return nil, err
	}
	if c.Parent, err = stringMember(desc, "parent", false); err != nil {
		return nil, err
	}
	for _, key := range stringListKeys {
		list, err := stringList(desc, key)
		if err != nil {
			return nil, err
		}
		switch key {
		case "related":
			c.Related = list
		case "depends":
			c.Depends = list
		case "applies":
			c.Applies = list
		case "actions":
			c.Actions = list
		}
	}
	loc, err := stringMember(desc, "location", false)
	if err != nil {
		return nil, err
	}
	switch class {
	case ClassKind, ClassMixin:
		if loc == "" {
			return nil, BadRequest("%s %s needs a location", class, c.ID())
		}
		if c.Location, err = CollectionPath(loc); err != nil {
			return nil, BadRequest("%s %s: %v", class, c.ID(), err)
		}
	case ClassAction:
		if loc != "" {
			return nil, BadRequest("action %s cannot have a location", c.ID())
		}
		if len(c.Actions) > 0 {
			return nil, BadRequest("action %s cannot list actions", c.ID())
		}
	}
	if c.Attributes, err = ParseAttrDefs(desc["attributes"]); err != nil {
		return nil, err
	}
	return c, nil
}

// CheckBounds refuses a category whose term, scheme, title, location,
// attribute names, attribute definition count or lists exceed this package's
// Max* limits (400 naming the category and the limit; patterns are bounded
// before they are compiled, in ParseAttrDefs). The registry applies it to categories being
// registered or updated, so stored ones keep loading.
func CheckBounds(c *Category) error {
	id := c.ID()
	if len(id) > 64 {
		id = id[:64] + "…"
	}
	wrap := func(err error) error {
		if err == nil {
			return nil
		}
		me := err.(*Error)
		me.Message = string(c.Class) + " " + id + ": " + me.Message
		return me
	}
	loc, _ := c.Description["location"].(string)
	for _, m := range []struct {
		name, value string
		max         int
	}{{"term", c.Term, MaxTermBytes}, {"scheme", c.Scheme, MaxSchemeBytes}, {"title", c.Title, MaxTitleBytes},
		{"location", loc, MaxLocationBytes}, {"location", c.Location, MaxLocationBytes}, {"parent", c.Parent, MaxTermBytes + MaxSchemeBytes}} {
		if err := checkLen(m.name, m.value, m.max); err != nil {
			return wrap(err)
		}
	}
	for key, list := range map[string][]string{"related": c.Related, "depends": c.Depends, "applies": c.Applies, "actions": c.Actions} {
		if len(list) > MaxCategoryRefs {
			return wrap(BadRequest("category member %q lists %d categories; the limit is %d", key, len(list), MaxCategoryRefs))
		}
		for _, ref := range list {
			if err := checkLen(key+" entry", ref, MaxTermBytes+MaxSchemeBytes); err != nil {
				return wrap(err)
			}
		}
	}
	if len(c.Attributes) > MaxAttrDefs {
		return wrap(BadRequest("%d attribute definitions; the limit is %d per category", len(c.Attributes), MaxAttrDefs))
	}
	for i := range c.Attributes {
		d := &c.Attributes[i]
		if n := len(d.Name()); n > MaxTermBytes {
			e := BadRequest("an attribute name is %d bytes long; the limit is %d bytes", n, MaxTermBytes)
			return wrap(e)
		}
	}
	return nil
}

func stringMember(desc map[string]any, key string, required bool) (string, error) {
	v, ok := desc[key]
	if !ok || v == nil {
		if required {
			return "", BadRequest("category member %q is required", key)
		}
		return "", nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", BadRequest("category member %q must be a string, got %s", key, jsonKind(v))
	}
	if required && s == "" {
		return "", BadRequest("category member %q must not be empty", key)
	}
	return s, nil
}

func stringList(desc map[string]any, key string) ([]string, error) {
	v, ok := desc[key]
	if !ok || v == nil {
		return nil, nil
	}
	if s, isStr := v.(string); isStr && s == "" {
		return nil, nil
	}
	arr, isArr := v.([]any)
	if !isArr {
		return nil, BadRequest("category member %q must be an array of strings, got %s", key, jsonKind(v))
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, isStr := e.(string)
		if !isStr {
			return nil, BadRequest("category member %q must be an array of strings", key)
		}
		out = append(out, s)
	}
	return out, nil
}

// CollectionPath normalises a kind or mixin location: a path (or an absolute
// URL, whose path is taken) that starts and ends with "/", has no empty,
// "." or ".." segments, and is not the query interface.
func CollectionPath(loc string) (string, error) {
	p, err := PathOf(loc)
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	if p == "/" {
		return "", BadRequest("location %q is the root; a collection needs its own path", loc)
	}
	if err := checkSegments(p); err != nil {
		return "", err
	}
	if strings.HasPrefix(p, "/-/") || strings.HasPrefix(p, "/.well-known/") {
		// Entities cannot live there either (EntityPath), and the server's
		// own paths (/-/status) do.
		return "", BadRequest("location %q is reserved for the query interface", loc)
	}
	return p, nil
}

// EntityPath normalises an entity location: a path (or absolute URL) that
// starts with "/", does not end with "/", and has clean segments.
func EntityPath(loc string) (string, error) {
	p, err := PathOf(loc)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(p, "/") || strings.Count(p, "/") < 2 {
		return "", BadRequest("%q is not an entity location (want /collection/id)", loc)
	}
	if err := checkSegments(p); err != nil {
		return "", err
	}
	if strings.HasPrefix(p, "/-/") || strings.HasPrefix(p, "/.well-known/") {
		return "", BadRequest("location %q is reserved for the query interface", loc)
	}
	return p, nil
}

func checkSegments(p string) error {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return BadRequest("location %q has an empty or relative segment", p)
		}
		if strings.ContainsAny(s, "?#") || needsEscape(s) {
			return BadRequest("location %q has a character not allowed in a path", p)
		}
	}
	return nil
}

// needsEscape reports whether s has a character that a URL path must
// percent-encode: '%', spaces, control characters and "<>\"^`{|}.
// Locations are stored and rendered as raw paths, so such a character would
// make an entity's rendered location name another path (a stored "x%2Fy"
// is reached at "x%252Fy") or an invalid URL.
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte("%\"<>\\^`{|}", c) >= 0 {
			return true
		}
	}
	return false
}

// PathOf returns the path of an absolute http(s) URL, or the string itself
// when it is already an absolute path. Locations are stored as paths so the
// server answers whatever host name a client used.
func PathOf(s string) (string, error) {
	if strings.HasPrefix(s, "/") {
		return s, nil
	}
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		u, err := url.Parse(s)
		if err != nil || u.Path == "" {
			return "", BadRequest("location %q is not a valid URL", s)
		}
		return u.Path, nil
	}
	return "", BadRequest("location %q must be a path starting with / or an http(s) URL", s)
}
