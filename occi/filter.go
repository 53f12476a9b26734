package occi

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/cmbs/cmbs/occi/model"
)

// entityMatcher is a collection filter the store cannot evaluate: OCCI text
// Category/X-OCCI-Attribute filters (in the body or the request headers),
// erocci's ?q= and ?category=. Entities are matched in the server after the
// store has selected the collection.
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
