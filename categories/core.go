package categories

import "github.com/cmbs/cmbs/occi/model"

// OCCI Core 1.2 category identifiers.
const (
	CoreScheme = "http://schemas.ogf.org/occi/core#"
	EntityKind = CoreScheme + "entity"
	// ResourceKind is the parent of every resource kind.
	ResourceKind = CoreScheme + "resource"
	// LinkKind is the parent of every link kind.
	LinkKind = CoreScheme + "link"
)

// Core returns OCCI Core's built-in kinds: entity, resource and link, with
// their attributes as OCCI 1.2 defines them. Their collections (/resource/,
// /link/) list every resource and link.
func Core() []*model.Category {
	str := func(name string, mutable, required bool, desc string) map[string]any {
		return map[string]any{"type": "string", "mutable": mutable, "required": required, "description": desc}
	}
	entity := map[string]any{
		"term": "entity", "scheme": CoreScheme, "title": "Entity",
		"attributes": map[string]any{
			"occi.core.id":    str("occi.core.id", false, true, "the entity's identifier"),
			"occi.core.title": str("occi.core.title", true, false, "the entity's title"),
		},
	}
	resource := map[string]any{
		"term": "resource", "scheme": CoreScheme, "title": "Resource", "parent": EntityKind,
		"location": "/resource/",
		"attributes": map[string]any{
			"occi.core.summary": str("occi.core.summary", true, false, "a summary of the resource"),
		},
	}
	link := map[string]any{
		"term": "link", "scheme": CoreScheme, "title": "Link", "parent": EntityKind,
		"location": "/link/",
		"attributes": map[string]any{
			"occi.core.source": str("occi.core.source", true, true, "the resource the link starts at"),
			"occi.core.target": str("occi.core.target", true, true, "the resource the link points to"),
		},
	}
	var out []*model.Category
	for _, desc := range []map[string]any{entity, resource, link} {
		c := &model.Category{Class: model.ClassKind, Builtin: true, Description: desc}
		c.Term, _ = desc["term"].(string)
		c.Scheme = CoreScheme
		c.Title, _ = desc["title"].(string)
		c.Parent, _ = desc["parent"].(string)
		c.Location, _ = desc["location"].(string)
		defs, err := model.ParseAttrDefs(desc["attributes"])
		if err != nil {
			panic("categories: core attribute definitions: " + err.Error()) // a programming error, caught by tests
		}
		c.Attributes = defs
		out = append(out, c)
	}
	return out
}
