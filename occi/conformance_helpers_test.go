package occi_test

// The conformance suite talks to a live server the way OCCI clients do, in
// each of the three OCCI 1.2 renderings, and parses answers as strictly as
// pOCCI (CESNET/pOCCI 1.0.3) does: its own parser, not the server's.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
)

// dialect is one OCCI 1.2 rendering.
type dialect struct {
	name   string
	accept string // Accept of every request
	ctype  string // expected response media type
}

var dialects = []dialect{
	{"text_plain", "text/plain", "text/plain"},
	{"text_occi", "text/occi", "text/occi"},
	{"json12", "application/occi+json; version=1.2", "application/occi+json"},
}

func (d dialect) isJSON() bool { return strings.HasPrefix(d.accept, "application/") }

// forEachDialect runs a conformance check once per rendering, each against
// a fresh server on the store CMBS_TEST_STORE selects.
func forEachDialect(t *testing.T, fn func(t *testing.T, c *occiClient)) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			srv := testserver.Start(t, testserver.Options{})
			fn(t, &occiClient{t: t, base: srv.URL, d: d})
		})
	}
}

// ocat is a category as a client sees it in discovery.
type ocat struct {
	term, scheme, class, title, rel, location string
	attrs                                     map[string]attrFlags
	actions                                   []string
}

type attrFlags struct{ required, immutable bool }

func (c ocat) id() string { return c.scheme + c.term }

// oentity is an entity as a client sees it.
type oentity struct {
	categories []string // kind and mixins, by id
	attrs      map[string]any
	links      []olink
	actions    []string // action type identifiers
}

type olink struct{ target, rel, self, category string }

// oresp is an answer.
type oresp struct {
	status int
	header http.Header
	body   []byte
}

type occiClient struct {
	t    *testing.T
	base string
	d    dialect
}

// do sends a request. Text lines go to the body (text/plain) or to headers
// (text/occi); js, when not nil, is the 1.2 JSON body.
// testHTTP bounds every request of the conformance clients: a hung server
// fails the test instead of holding it until go test's own timeout.
var testHTTP = &http.Client{Timeout: 30 * time.Second}

func (c *occiClient) do(method, url string, lines []string, js any, hdr ...string) *oresp {
	c.t.Helper()
	if !strings.HasPrefix(url, "http") {
		url = c.base + url
	}
	var body io.Reader
	header := http.Header{"Accept": {c.d.accept}}
	switch {
	case js != nil:
		raw, err := json.Marshal(js)
		if err != nil {
			c.t.Fatal(err)
		}
		body = bytes.NewReader(raw)
		header.Set("Content-Type", "application/occi+json")
	case c.d.name == "text_occi" || (c.d.isJSON() && len(lines) > 0):
		header.Set("Content-Type", "text/occi")
		for _, l := range lines {
			name, value, _ := strings.Cut(l, ": ")
			header.Add(name, value)
		}
	case len(lines) > 0:
		header.Set("Content-Type", "text/plain")
		body = strings.NewReader(strings.Join(lines, "\n") + "\n")
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header = header
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := testHTTP.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading the reply: %v", method, url, err)
	}
	r := &oresp{status: res.StatusCode, header: res.Header, body: raw}
	if s := res.Header.Get("Server"); s != occi.ServerHeader {
		c.t.Fatalf("%s %s: Server %q, want %q", method, url, s, occi.ServerHeader)
	}
	if r.status < 300 && c.d.isJSON() && len(bytes.TrimSpace(raw)) > 0 {
		validate12(c.t, raw, "")
	}
	return r
}

// expect checks the status and, for answers with a body, that the
// Content-Type is the one asked for (pOCCI's check_content_type).
func (c *occiClient) expect(r *oresp, statuses ...int) *oresp {
	c.t.Helper()
	for _, s := range statuses {
		if r.status == s {
			if r.status < 300 && (len(r.body) > 0 || c.d.name == "text_occi") {
				if mt, _, _ := strings.Cut(r.header.Get("Content-Type"), ";"); mt != c.d.ctype {
					c.t.Fatalf("Content-Type %q, want %s", r.header.Get("Content-Type"), c.d.ctype)
				}
			}
			return r
		}
	}
	c.t.Fatalf("status %d, want %v; body: %s", r.status, statuses, r.body)
	return nil
}

// textLines returns the OCCI text lines of an answer, from the body or the
// headers, checking pOCCI's rule that a body holds nothing else.
func (c *occiClient) textLines(r *oresp, allowed ...string) []string {
	c.t.Helper()
	var out []string
	if c.d.name == "text_occi" {
		if strings.TrimSpace(string(r.body)) != "OK" {
			c.t.Fatalf("text/occi body %q, want OK", r.body)
		}
		for _, name := range allowed {
			for _, v := range r.header.Values(name) {
				for _, part := range splitOutside(v, ',') {
					if part = strings.TrimSpace(part); part != "" {
						out = append(out, name+": "+part)
					}
				}
			}
		}
		return out
	}
	for _, l := range strings.Split(string(r.body), "\n") {
		l = strings.TrimRight(l, "\r")
		if strings.TrimSpace(l) == "" {
			continue
		}
		name, _, ok := strings.Cut(l, ": ")
		if !ok || !slices.Contains(allowed, name) {
			c.t.Fatalf("line %q is not one of %v", l, allowed)
		}
		out = append(out, l)
	}
	return out
}

// splitOutside splits s at sep outside double quotes and angle brackets.
func splitOutside(s string, sep byte) []string {
	var out []string
	inQ, inA, esc, start := false, false, false, 0
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case esc:
			esc = false
		case ch == '\\' && inQ:
			esc = true
		case ch == '"':
			inQ = !inQ
		case ch == '<' && !inQ:
			inA = true
		case ch == '>' && !inQ:
			inA = false
		case ch == sep && !inQ && !inA:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

var (
	termRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	numberRE   = regexp.MustCompile(`^[0-9.+-]+$`)
	attrListRE = regexp.MustCompile(`[^\s{]+(?:\{[^}]*\})?`)
	attrDefRE  = regexp.MustCompile(`^([A-Za-z0-9_.-]+)(?:\{((?:immutable|required)(?: (?:immutable|required))*)\})?$`)
)

// unquoteText reads a quoted text value (pOCCI: backslash escapes).
func unquoteText(t *testing.T, v string) string {
	t.Helper()
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		t.Fatalf("value %s is not quoted", v)
	}
	var b strings.Builder
	for i := 1; i < len(v)-1; i++ {
		if v[i] == '\\' && i+1 < len(v)-1 {
			i++
			switch v[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 'u':
				// cmbs writes control characters as \u00XX (docs/limits.md);
				// a pOCCI-like client would read "u00XX".
				if r, err := strconv.ParseUint(v[i+1:min(i+5, len(v)-1)], 16, 16); err == nil && i+5 <= len(v)-1 {
					b.WriteRune(rune(r))
					i += 4
					continue
				}
				b.WriteByte('u')
			default:
				b.WriteByte(v[i])
			}
			continue
		}
		if v[i] == '"' {
			t.Fatalf("unescaped quote in %s", v)
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// parseCategoryText parses a Category value as strictly as pOCCI.
func parseCategoryText(t *testing.T, v string) ocat {
	t.Helper()
	parts := splitOutside(v, ';')
	c := ocat{term: strings.TrimSpace(parts[0]), attrs: map[string]attrFlags{}}
	if !termRE.MatchString(c.term) {
		t.Fatalf("category %q: bad term", v)
	}
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			t.Fatalf("category %q: %q is not key=value", v, p)
		}
		if k == "class" && !strings.HasPrefix(val, `"`) {
			val = `"` + val + `"`
		}
		s := unquoteText(t, val)
		switch k {
		case "scheme":
			c.scheme = s
		case "class":
			c.class = s
		case "title":
			c.title = s
		case "rel":
			c.rel = s
		case "location":
			c.location = s
		case "attributes":
			for _, a := range attrListRE.FindAllString(s, -1) {
				m := attrDefRE.FindStringSubmatch(a)
				if m == nil {
					t.Fatalf("category %q: attribute definition %q", v, a)
				}
				c.attrs[m[1]] = attrFlags{required: strings.Contains(m[2], "required"), immutable: strings.Contains(m[2], "immutable")}
			}
		case "actions":
			for _, a := range strings.Fields(s) {
				if !strings.HasPrefix(a, "http://") && !strings.HasPrefix(a, "https://") {
					t.Fatalf("category %q: action %q is not an absolute URL", v, a)
				}
				c.actions = append(c.actions, a)
			}
		default:
			t.Fatalf("category %q: unknown key %q", v, k)
		}
	}
	if c.scheme == "" || c.class == "" {
		t.Fatalf("category %q lacks scheme or class", v)
	}
	if !typeIDRE.MatchString(c.scheme + c.term) {
		t.Fatalf("category %q: scheme %q and term %q do not make a type identifier", v, c.scheme, c.term)
	}
	if c.rel != "" && !typeIDRE.MatchString(c.rel) {
		t.Fatalf("category %q: rel %q is not a type identifier", v, c.rel)
	}
	if c.class != "kind" && c.class != "mixin" && c.class != "action" {
		t.Fatalf("category %q: class %q", v, c.class)
	}
	return c
}

// parseAttributeText parses an X-OCCI-Attribute value.
func parseAttributeText(t *testing.T, v string) (string, any) {
	t.Helper()
	name, val, ok := strings.Cut(v, "=")
	if !ok {
		t.Fatalf("attribute %q is not name=value", v)
	}
	if !attrNameRE.MatchString(name) {
		t.Fatalf("attribute %q: %q is not an attribute name (dot-separated lower-case components)", v, name)
	}
	switch {
	case strings.HasPrefix(val, `"`):
		return name, unquoteText(t, val)
	case val == "true" || val == "false":
		return name, val == "true"
	case numberRE.MatchString(val):
		return name, val
	}
	t.Fatalf("attribute %q: value is neither a quoted string, a number nor a boolean", v)
	return "", nil
}

// parseLinkText parses a Link value as strictly as the OCCI 1.2 text
// grammar:
//
//	"<" URI-reference ">" ";" "rel" "=" <"> type-identifier <">
//	[";" "self" "=" <"> link-instance <">]
//	[";" "category" "=" <"> link-type <"> *(";" name "=" (token | quoted-string))]
//
// rel comes first and names a kind or action (scheme + term); self and
// category are quoted, in that order; a link's own attributes follow its
// category.
func parseLinkText(t *testing.T, v string) olink {
	t.Helper()
	parts := splitOutside(v, ';')
	first := strings.TrimSpace(parts[0])
	if !strings.HasPrefix(first, "<") || !strings.HasSuffix(first, ">") || len(first) < 3 {
		t.Fatalf("link %q: target not in <>", v)
	}
	l := olink{target: first[1 : len(first)-1]}
	params := parts[1:]
	if n := len(params); n > 0 && strings.TrimSpace(params[n-1]) == "" {
		params = params[:n-1] // one trailing ';' (pOCCI's own requests end so)
	}
	const (
		wantRel = iota
		wantSelf
		wantCategory
		wantAttribute
	)
	state := wantRel
	for _, p := range params {
		k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			t.Fatalf("link %q: %q is not key=value", v, p)
		}
		switch {
		case k == "rel" && state == wantRel:
			l.rel = unquoteText(t, val)
			if !typeIDRE.MatchString(l.rel) {
				t.Fatalf("link %q: rel %q is not a type identifier (scheme#term)", v, l.rel)
			}
			state = wantSelf
		case state == wantRel:
			t.Fatalf("link %q: rel must follow the target, got %q", v, p)
		case k == "self" && state == wantSelf:
			l.self = unquoteText(t, val)
			if l.self == "" {
				t.Fatalf("link %q: empty self", v)
			}
			state = wantCategory
		case k == "category" && state <= wantCategory:
			l.category = unquoteText(t, val)
			if !typeIDRE.MatchString(l.category) {
				t.Fatalf("link %q: category %q is not a type identifier", v, l.category)
			}
			state = wantAttribute
		case state == wantAttribute && attrNameRE.MatchString(k):
			if !strings.HasPrefix(val, `"`) && !tokenRE.MatchString(val) {
				t.Fatalf("link %q: attribute %s=%s is neither a token nor a quoted string", v, k, val)
			}
			if strings.HasPrefix(val, `"`) {
				unquoteText(t, val)
			}
		default:
			t.Fatalf("link %q: unexpected %q (order: rel, self, category, attributes)", v, p)
		}
	}
	if state == wantRel {
		t.Fatalf("link %q has no rel", v)
	}
	return l
}

var (
	typeIDRE   = regexp.MustCompile(`^[a-z][a-z0-9+.-]*://[^\s"#]+#[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	attrNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*(?:\.[a-z][a-z0-9_-]*)*$`)
	tokenRE    = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// discover returns the categories of GET /-/ (with an optional Category
// filter in the request headers).
func (c *occiClient) discover(filter *ocat) []ocat {
	c.t.Helper()
	var hdr []string
	if filter != nil {
		hdr = []string{"Content-Type", "text/occi", "Category", filter.term + `; scheme="` + filter.scheme + `"; class="` + filter.class + `"`}
	}
	r := c.expect(c.do("GET", "/-/", nil, nil, hdr...), 200)
	var out []ocat
	if c.d.isJSON() {
		validate12(c.t, r.body, "model")
		var m map[string][]map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil {
			c.t.Fatal(err)
		}
		for _, class := range []string{"kind", "mixin", "action"} {
			for _, j := range m[class+"s"] {
				oc := ocat{class: class, attrs: map[string]attrFlags{}}
				oc.term, _ = j["term"].(string)
				oc.scheme, _ = j["scheme"].(string)
				oc.title, _ = j["title"].(string)
				oc.location, _ = j["location"].(string)
				oc.rel, _ = j["parent"].(string)
				if deps, _ := j["depends"].([]any); len(deps) > 0 {
					oc.rel, _ = deps[0].(string)
				}
				for _, a := range asList(j["actions"]) {
					oc.actions = append(oc.actions, a)
				}
				attrs, _ := j["attributes"].(map[string]any)
				for name, d := range attrs {
					dm := d.(map[string]any)
					_, hasDefault := dm["default"]
					oc.attrs[name] = attrFlags{required: dm["required"] == true && !hasDefault, immutable: dm["mutable"] != true}
				}
				out = append(out, oc)
			}
		}
	} else {
		seen := map[string]bool{}
		for _, l := range c.textLines(r, "Category") {
			oc := parseCategoryText(c.t, strings.TrimPrefix(l, "Category: "))
			if seen[oc.id()] {
				c.t.Fatalf("category %s listed twice", oc.id())
			}
			seen[oc.id()] = true
			out = append(out, oc)
		}
	}
	return out
}

func asList(v any) []string {
	var out []string
	for _, x := range asAnyList(v) {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func asAnyList(v any) []any { l, _ := v.([]any); return l }

func findCat(t *testing.T, cats []ocat, id, class string) ocat {
	t.Helper()
	for _, c := range cats {
		if c.id() == id && c.class == class {
			return c
		}
	}
	t.Fatalf("no %s %s in the model", class, id)
	return ocat{}
}

// list returns the absolute locations of a collection (with an optional
// Category filter in the request headers).
func (c *occiClient) list(path string, filter *ocat) []string {
	c.t.Helper()
	var hdr []string
	if filter != nil {
		hdr = []string{"Content-Type", "text/occi", "Category", filter.term + `; scheme="` + filter.scheme + `"; class="` + filter.class + `"`}
	}
	r := c.expect(c.do("GET", path, nil, nil, hdr...), 200)
	var out []string
	if c.d.isJSON() {
		validate12(c.t, r.body, "entity_collection")
		var m map[string][]map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil {
			c.t.Fatal(err)
		}
		locations := map[string]string{} // kind → its collection
		for _, k := range c.discover(nil) {
			locations[k.id()] = k.location
		}
		for _, key := range []string{"resources", "links"} {
			for _, e := range m[key] {
				out = append(out, c.base+locations[e["kind"].(string)]+e["id"].(string))
			}
		}
	} else {
		for _, l := range c.textLines(r, "X-OCCI-Location", "Location") {
			_, u, _ := strings.Cut(l, ": ")
			out = append(out, strings.TrimSpace(u))
		}
	}
	for _, u := range out {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			c.t.Fatalf("location %q is not absolute", u)
		}
	}
	sort.Strings(out)
	return out
}

// abs makes a location the server rendered as a path absolute.
func (c *occiClient) abs(loc string) string {
	if strings.HasPrefix(loc, "/") {
		return c.base + loc
	}
	return loc
}

// get reads an entity.
func (c *occiClient) get(url string) oentity {
	c.t.Helper()
	return c.parseEntity(c.expect(c.do("GET", url, nil, nil), 200))
}

func (c *occiClient) parseEntity(r *oresp) oentity {
	c.t.Helper()
	e := oentity{attrs: map[string]any{}}
	if c.d.isJSON() {
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil {
			c.t.Fatal(err)
		}
		e.categories = append([]string{m["kind"].(string)}, asList(m["mixins"])...)
		if a, ok := m["attributes"].(map[string]any); ok {
			e.attrs = a
		}
		e.actions = asList(m["actions"])
		for _, l := range asAnyList(m["links"]) {
			lm := l.(map[string]any)
			tgt := lm["target"].(map[string]any)
			tk, _ := tgt["kind"].(string)
			e.links = append(e.links, olink{target: tgt["location"].(string), rel: tk, category: lm["kind"].(string)})
		}
		return e
	}
	// The grammar's order: 1*(Category) *(Link) *(X-OCCI-Attribute) (a
	// text/plain body keeps it; text/occi headers have no order).
	rank := map[string]int{"Category": 0, "Link": 1, "X-OCCI-Attribute": 2}
	last := 0
	for _, l := range c.textLines(r, "Category", "Link", "X-OCCI-Attribute") {
		name, v, _ := strings.Cut(l, ": ")
		if rank[name] < last {
			c.t.Fatalf("%s line after a %s line (order: Category, Link, X-OCCI-Attribute):\n%s", name, map[int]string{1: "Link", 2: "X-OCCI-Attribute"}[last], r.body)
		}
		last = rank[name]
		switch name {
		case "Category":
			oc := parseCategoryText(c.t, v)
			e.categories = append(e.categories, oc.id())
		case "Link":
			lk := parseLinkText(c.t, v)
			if strings.Contains(lk.target, "?action=") {
				e.actions = append(e.actions, lk.rel)
			} else {
				e.links = append(e.links, lk)
			}
		case "X-OCCI-Attribute":
			k, val := parseAttributeText(c.t, v)
			e.attrs[k] = val
		}
	}
	if len(e.categories) == 0 {
		c.t.Fatalf("entity rendering without a Category:\n%s", r.body)
	}
	return e
}

// newEntity is what a client creates.
type newEntity struct {
	kind   ocat
	mixins []ocat
	attrs  map[string]any
	links  []olink // inline links: target, rel (target kind), category (link kind)
}

func textValueOf(v any) string {
	switch x := v.(type) {
	case string:
		var b strings.Builder
		for _, r := range x {
			switch {
			case r == '\\' || r == '"':
				b.WriteRune('\\')
				b.WriteRune(r)
			case r == '\n':
				b.WriteString(`\n`)
			case r == '\r':
				b.WriteString(`\r`)
			case (r < 0x20 && r != '\t') || r == 0x7f:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				b.WriteRune(r)
			}
		}
		return `"` + b.String() + `"`
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

func (n newEntity) lines() []string {
	out := []string{"Category: " + n.kind.term + `; scheme="` + n.kind.scheme + `"; class="kind"`}
	for _, m := range n.mixins {
		out = append(out, "Category: "+m.term+`; scheme="`+m.scheme+`"; class="mixin"`)
	}
	for _, l := range n.links {
		out = append(out, "Link: <"+l.target+`>; rel="`+l.rel+`"; category="`+l.category+`"`)
	}
	keys := make([]string, 0, len(n.attrs))
	for k := range n.attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, "X-OCCI-Attribute: "+k+"="+textValueOf(n.attrs[k]))
	}
	return out
}

func (n newEntity) json12() map[string]any {
	m := map[string]any{"kind": n.kind.id(), "attributes": n.attrs}
	if len(n.mixins) > 0 {
		var ids []string
		for _, x := range n.mixins {
			ids = append(ids, x.id())
		}
		m["mixins"] = ids
	}
	if _, isLink := n.attrs["occi.core.source"]; isLink {
		attrs := map[string]any{}
		for k, v := range n.attrs {
			if k != "occi.core.source" && k != "occi.core.target" {
				attrs[k] = v
			}
		}
		m["attributes"] = attrs
		m["source"] = map[string]any{"location": n.attrs["occi.core.source"]}
		m["target"] = map[string]any{"location": n.attrs["occi.core.target"]}
	}
	for _, l := range n.links {
		m["links"] = append(asAnyList(m["links"]), map[string]any{
			"kind": l.category, "target": map[string]any{"location": l.target, "kind": l.rel}})
	}
	return m
}

// create POSTs a new entity to a collection and returns the answer and the
// created location (from the Location headers, or the body).
func (c *occiClient) create(path string, n newEntity) (*oresp, string) {
	c.t.Helper()
	var r *oresp
	if c.d.isJSON() {
		r = c.do("POST", path, nil, n.json12())
	} else {
		r = c.do("POST", path, n.lines(), nil)
	}
	loc := r.header.Get("Location")
	if loc == "" {
		loc = r.header.Get("X-OCCI-Location")
	}
	if loc == "" && !c.d.isJSON() && r.status < 300 {
		for _, l := range strings.Split(string(r.body), "\n") {
			if v, ok := strings.CutPrefix(l, "X-OCCI-Location: "); ok {
				loc = strings.TrimSpace(v)
			}
		}
	}
	return r, loc
}

// action triggers an action with its Category (text) or invocation (JSON).
func (c *occiClient) action(url string, a ocat, attrs map[string]any) *oresp {
	c.t.Helper()
	target := url + "?action=" + a.term
	if c.d.isJSON() {
		inv := map[string]any{"action": a.id()}
		if attrs != nil {
			inv["attributes"] = attrs
		}
		validate12(c.t, mustJSON(c.t, inv), "action_invocation")
		return c.do("POST", target, nil, inv)
	}
	lines := []string{"Category: " + a.term + `; scheme="` + a.scheme + `"; class="action"`}
	for k, v := range attrs {
		lines = append(lines, "X-OCCI-Attribute: "+k+"="+textValueOf(v))
	}
	return c.do("POST", target, lines, nil)
}

var (
	schemaOnce sync.Once
	schemas    map[string]*jsonschema.Schema
	schemaErr  error
)

// validate12 validates a JSON document against the OCCI 1.2 schema fixture
// (testdata/occi12/occi-schema.json); def names one of its definitions, ""
// the whole schema.
func validate12(t testing.TB, raw []byte, def string) {
	t.Helper()
	schemaOnce.Do(func() {
		f, err := os.Open("../testdata/occi12/occi-schema.json")
		if err != nil {
			schemaErr = err
			return
		}
		defer f.Close()
		doc, err := jsonschema.UnmarshalJSON(f)
		if err != nil {
			schemaErr = err
			return
		}
		comp := jsonschema.NewCompiler()
		if err := comp.AddResource("occi-schema.json", doc); err != nil {
			schemaErr = err
			return
		}
		schemas = map[string]*jsonschema.Schema{}
		for _, d := range []string{"", "model", "kind", "mixin", "action", "resource", "link", "action_invocation", "entity_collection"} {
			ref := "occi-schema.json"
			if d != "" {
				ref += "#/definitions/" + d
			}
			s, err := comp.Compile(ref)
			if err != nil {
				schemaErr = err
				return
			}
			schemas[d] = s
		}
	})
	if schemaErr != nil {
		t.Fatalf("OCCI 1.2 JSON schema: %v", schemaErr)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not JSON: %v\n%s", err, raw)
	}
	if err := schemas[def].Validate(inst); err != nil {
		t.Fatalf("OCCI 1.2 JSON schema (%q) rejects the document: %v\n%s", def, err, raw)
	}
}
