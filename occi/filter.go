package occi

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/model"
)

// entityMatcher is a collection filter in OCCI's text terms: Category and
// X-OCCI-Attribute filters (in the body or the request headers), erocci's
// ?q= and ?category=. Its conditions go to the store as Mango selectors
// (pushdown), which select a superset of the matches; match then decides
// exactly for each entity the store returns (and alone for ?q= words,
// which no index serves).
type entityMatcher struct {
	// categories: each must be the entity's kind (or an ancestor of it) or
	// one of its mixins; class, when given, says which.
	categories []textCategory
	// attrs are flat attribute names with the values they must have.
	attrs map[string]any
	// words must each occur (case-insensitively) in some attribute value.
	words []string
	// ids are ?category= identifiers (scheme#term, or a scheme ending in #):
	// the entity's kind or a mixin must match one.
	ids []string
}

func (m *entityMatcher) empty() bool {
	return m == nil || len(m.categories) == 0 && len(m.attrs) == 0 && len(m.words) == 0 && len(m.ids) == 0
}

// collectionMatcher reads the filters of a collection GET.
func collectionMatcher(r *http.Request, body *requestBody) (*entityMatcher, error) {
	m := &entityMatcher{attrs: map[string]any{}}
	doc, err := headerDoc(r, body)
	if err != nil {
		return nil, err
	}
	if doc == nil {
		doc = body.Text
	}
	if doc != nil {
		m.categories = doc.Categories
		for k, v := range doc.Attributes {
			m.attrs[k] = v
		}
	}
	q := r.URL.Query()
	for _, id := range q["category"] {
		if id = strings.TrimSpace(id); id != "" {
			if !strings.Contains(id, "#") {
				return nil, model.BadRequest("category %q must be scheme#term or a scheme ending in #", id)
			}
			m.ids = append(m.ids, id)
		}
	}
	for _, qs := range q["q"] {
		for _, term := range strings.Fields(qs) {
			name, val, isPair := strings.Cut(term, "=")
			if !isPair {
				m.words = append(m.words, strings.ToLower(term))
				continue
			}
			if name == "" {
				return nil, model.BadRequest("?q= term %q: want name=value or a bare word", term)
			}
			v, err := parseTextValue(val)
			if err != nil {
				v = val
			}
			m.attrs[name] = v
		}
	}
	if len(m.ids) > maxFilterAlternatives {
		return nil, model.BadRequest("the filter names %d categories with ?category=; at most %d alternatives are allowed in one request", len(m.ids), maxFilterAlternatives)
	}
	if n := len(m.categories) + len(m.attrs) + len(m.words) + len(m.ids); n > maxFilterConditions {
		return nil, model.BadRequest("the filter has %d conditions; at most %d are allowed in one request", n, maxFilterConditions)
	}
	return m, nil
}

// needsAttributes reports whether match reads the entity's attributes.
func (m *entityMatcher) needsAttributes() bool { return len(m.attrs)+len(m.words) > 0 }

// match reports whether an entity passes every filter. kindChain is the
// entity's kind and its ancestors; flat its attributes with flat names
// (needed only when needsAttributes).
func (m *entityMatcher) match(e *model.Entity, kindChain []string, flat map[string]any) bool {
	isKind := func(id string) bool { return slices.Contains(kindChain, id) }
	for _, c := range m.categories {
		id := c.id()
		switch c.Class {
		case "kind":
			if !isKind(id) {
				return false
			}
		case "mixin":
			if !e.HasMixin(id) {
				return false
			}
		default:
			if !isKind(id) && !e.HasMixin(id) {
				return false
			}
		}
	}
	if len(m.ids) > 0 {
		names := func(id string) bool {
			is := func(c string) bool { return c == id || (strings.HasSuffix(id, "#") && strings.HasPrefix(c, id)) }
			return slices.ContainsFunc(kindChain, is) || slices.ContainsFunc(e.Mixins, is)
		}
		if !slices.ContainsFunc(m.ids, names) {
			return false
		}
	}
	for name, want := range m.attrs {
		got, ok := flat[name]
		if !ok || valueString(got) != valueString(want) {
			return false
		}
	}
	for _, w := range m.words {
		found := false
		for _, v := range flat {
			if strings.Contains(strings.ToLower(valueString(v)), w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// valueString is the form attribute values are compared in: strings as
// they are, anything else as its text rendering (so 3 and 3.0 agree).
func valueString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return textValue(v)
}

// flatAttributes lists an entity's attributes with flat names, OCCI core's
// included (links' ends as paths: normalizeLinkEnds makes filter values
// paths too).
func flatAttributes(e *model.Entity, attrs *model.AttrSet) map[string]any {
	flat := attrs.Flatten(e.Attributes)
	flat["occi.core.id"] = e.ID
	if e.HasTitle || e.Title != "" {
		flat["occi.core.title"] = e.Title
	}
	if e.HasSummary || e.Summary != "" {
		flat["occi.core.summary"] = e.Summary
	}
	if e.Type == model.TypeLink {
		flat["occi.core.source"] = e.Source
		flat["occi.core.target"] = e.Target
	}
	return flat
}

// normalizeLinkEnds makes filter values for link ends paths, as stored.
func (m *entityMatcher) normalizeLinkEnds() error {
	for _, k := range []string{"occi.core.source", "occi.core.target"} {
		if v, ok := m.attrs[k].(string); ok {
			p, err := model.EntityPath(v)
			if err != nil {
				return fmt.Errorf("filter %s: %w", k, err)
			}
			m.attrs[k] = p
		}
	}
	return nil
}

// selectors are the matcher's conditions as Mango selectors over stored
// entity documents, AND-ed: every entity match accepts passes them (the
// store may return a few more, which match then drops). kindSelector is the
// selector of a kind's entities, its derived kinds' included.
func (m *entityMatcher) selectors(cats *categories.Registry, kindSelector func(string) map[string]any) []map[string]any {
	var out []map[string]any
	mixin := func(id string) map[string]any {
		return map[string]any{"mixins": map[string]any{"$elemMatch": map[string]any{"$eq": id}}}
	}
	for _, c := range m.categories {
		id := c.id()
		switch c.Class {
		case "kind":
			out = append(out, kindSelector(id))
		case "mixin":
			out = append(out, mixin(id))
		default:
			out = append(out, map[string]any{"$or": []any{kindSelector(id), mixin(id)}})
		}
	}
	if len(m.ids) > 0 {
		var ors []any
		for _, id := range m.ids {
			if !strings.HasSuffix(id, "#") {
				ors = append(ors, kindSelector(id), mixin(id))
				continue
			}
			// A scheme: every kind in it (and their derived kinds), and
			// any mixin whose id starts with it.
			for _, k := range cats.All(model.ClassKind) {
				if strings.HasPrefix(k.ID(), id) {
					ors = append(ors, kindSelector(k.ID()))
				}
			}
			ors = append(ors, map[string]any{"mixins": map[string]any{"$elemMatch": map[string]any{"$regex": "^" + regexp.QuoteMeta(id)}}})
		}
		out = append(out, map[string]any{"$or": ors})
	}
	if len(m.attrs) == 0 {
		return out
	}
	all := cats.All("")
	for name, want := range m.attrs {
		if sel := attrSelector(all, name, want); sel != nil {
			out = append(out, sel)
		}
	}
	return out
}

// coreFields are the stored members that hold OCCI core attributes.
var coreFields = map[string]string{
	"occi.core.id":      "id",
	"occi.core.title":   "title",
	"occi.core.summary": "summary",
	"occi.core.source":  "source",
	"occi.core.target":  "target",
}

// attrSelector selects the entities whose attribute name may have a value
// that valueString renders as valueString(want); nil when no selector can
// say (a JSON array or object value, an empty title).
func attrSelector(cats []*model.Category, name string, want any) map[string]any {
	ws := valueString(want)
	if strings.HasPrefix(ws, "[") || strings.HasPrefix(ws, "{") {
		return nil
	}
	// The stored values valueString renders as ws.
	values := []any{ws}
	if f, err := strconv.ParseFloat(ws, 64); err == nil {
		values = append(values, f)
	}
	switch ws {
	case "true":
		values = append(values, true)
	case "false":
		values = append(values, false)
	case `""`:
		values = append(values, nil)
	}
	cond := map[string]any{"$in": values}
	if field, ok := coreFields[name]; ok {
		if ws == "" && (field == "title" || field == "summary") {
			return nil // stored as absent, with has_title/has_summary
		}
		return map[string]any{field: cond}
	}
	// Where the attribute is stored: at each path a definition of that
	// name gives it (a segment may hold a dot, "l3.1_socket"), and split
	// at every dot (undeclared names).
	var paths []string
	if segs := strings.Split(name, "."); !slices.ContainsFunc(segs, func(s string) bool { return s == "" || s[0] == '$' }) {
		// Not a name the store can address (no definition has one).
		paths = append(paths, model.FieldPath(append([]string{"attributes"}, segs...)...))
	}
	for _, c := range cats {
		for i := range c.Attributes {
			if d := &c.Attributes[i]; d.Name() == name {
				if p := model.FieldPath(append([]string{"attributes"}, d.Path...)...); !slices.Contains(paths, p) {
					paths = append(paths, p)
				}
			}
		}
	}
	switch len(paths) {
	case 0:
		return nil
	case 1:
		return map[string]any{paths[0]: cond}
	}
	ors := make([]any, len(paths))
	for i, p := range paths {
		ors[i] = map[string]any{p: cond}
	}
	return map[string]any{"$or": ors}
}
