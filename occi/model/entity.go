package model

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Entity types.
const (
	TypeResource = "resource"
	TypeLink     = "link"
)

// Entity is a resource or a link. It is also the stored document body (with
// Location as the document id and Rev as its revision).
type Entity struct {
	Location string `json:"-"`
	Rev      string `json:"-"`

	Type       string         `json:"type"`
	ID         string         `json:"id"`
	Kind       string         `json:"kind"`
	Mixins     []string       `json:"mixins"`
	Attributes map[string]any `json:"attributes"`
	// Actions and Links are kept as the client gave them (pyOCNI returns them
	// verbatim); Links of a resource created with inline links hold those
	// links' locations instead.
	Actions []any  `json:"actions"`
	Links   []any  `json:"links"`
	Title   string `json:"title,omitempty"`
	Summary string `json:"summary,omitempty"`
	// Source and Target are the link's end points, as paths.
	Source     string `json:"source,omitempty"`
	Target     string `json:"target,omitempty"`
	TargetKind string `json:"target_kind,omitempty"`
	// HasTitle and HasSummary remember whether the client gave them, so a
	// title of "" round-trips.
	HasTitle   bool `json:"has_title,omitempty"`
	HasSummary bool `json:"has_summary,omitempty"`
	// OutLinks lists the locations of the links whose source is this
	// resource, as the entity service records them while links come and go,
	// so that a resource with no links renders without a query for them. nil
	// means unknown (a document stored before the list was kept, or written
	// by something that does not keep it): the links are then looked up. No
	// client sets it: it is not a member of an entity description.
	OutLinks *[]string `json:"out_links,omitempty"`
}

// LinksUnknown tells whether the links starting at the entity must be
// looked up: it is a resource whose stored document may not list them all.
// A link has none; a resource with an empty OutLinks has none.
func (e *Entity) LinksUnknown() bool {
	return e.Type == TypeResource && (e.OutLinks == nil || len(*e.OutLinks) > 0)
}

// Normalize gives nil collections their empty values so renderings and
// stored documents are stable.
func (e *Entity) Normalize() {
	if e.Mixins == nil {
		e.Mixins = []string{}
	}
	if e.Attributes == nil {
		e.Attributes = map[string]any{}
	}
	if e.Actions == nil {
		e.Actions = []any{}
	}
	if e.Links == nil {
		e.Links = []any{}
	}
}

// HasMixin reports whether the entity is tagged with the mixin id.
func (e *Entity) HasMixin(id string) bool {
	for _, m := range e.Mixins {
		if m == id {
			return true
		}
	}
	return false
}

// EntityInput is one entity description as a client sent it, checked for
// shape, with the set of members present (for partial updates).
type EntityInput struct {
	Entity
	Present map[string]bool
	// InlineLinks are link descriptions given inside a resource's "links".
	InlineLinks []map[string]any
	// SourceKind is the kind a link's description gives its source (OCCI
	// 1.2's source.kind), to be checked against the source; not stored.
	SourceKind string
}

var entityMembers = map[string]bool{
	"kind": true, "mixins": true, "attributes": true, "actions": true, "id": true,
	"title": true, "summary": true, "links": true, "source": true, "target": true, "rel": true,
	"location": true,
}

// ParseEntityInput checks an entity description's members and types.
// typ is TypeResource or TypeLink.
func ParseEntityInput(desc map[string]any, typ string) (*EntityInput, error) {
	in := &EntityInput{Present: map[string]bool{}}
	in.Type = typ
	for k, v := range desc {
		if !entityMembers[k] {
			return nil, BadRequest("unknown member %q in %s description", k, typ)
		}
		in.Present[k] = true
		var err error
		switch k {
		case "kind":
			in.Kind, err = entityString(k, v)
		case "id":
			in.ID, err = entityString(k, v)
			if err == nil && in.ID == "" {
				delete(in.Present, k) // "" means "let the server choose"
			}
		case "title":
			in.Title, err = entityString(k, v)
			in.HasTitle = true
		case "summary":
			in.Summary, err = entityString(k, v)
			in.HasSummary = true
		case "location", "rel":
			_, err = entityString(k, v)
		case "mixins":
			in.Mixins, err = entityStrings(k, v)
		case "attributes":
			switch a := v.(type) {
			case nil:
				in.Attributes = map[string]any{}
			case map[string]any:
				in.Attributes = a
			case string:
				if a != "" {
					err = BadRequest("member \"attributes\" must be an object")
				}
				in.Attributes = map[string]any{}
			default:
				err = BadRequest("member \"attributes\" must be an object, got %s", jsonKind(v))
			}
		case "actions":
			in.Actions, err = entityArray(k, v)
		case "links":
			in.Links, err = entityArray(k, v)
			if err == nil && typ == TypeResource {
				for _, l := range in.Links {
					if m, ok := l.(map[string]any); ok {
						in.InlineLinks = append(in.InlineLinks, m)
					}
				}
			}
		case "source", "target":
			var loc, kind string
			loc, kind, err = endpoint(k, v)
			if k == "source" {
				in.Source, in.SourceKind = loc, kind
			} else {
				in.Target, in.TargetKind = loc, kind
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if in.ID == "" {
		// OCCI 1.2 JSON and text clients give the id as occi.core.id, flat
		// or nested; a mismatch with "id" is reported when the attributes
		// are applied.
		if id, ok := coreID(in.Attributes); ok && id != "" {
			in.ID = id
			in.Present["id"] = true
		}
	}
	if in.ID != "" {
		if err := CheckEntityID(in.ID); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// coreID finds occi.core.id among attributes given flat ("occi.core.id")
// or nested ({"occi":{"core":{"id":…}}}).
func coreID(attrs map[string]any) (string, bool) {
	if v, ok := attrs["occi.core.id"]; ok {
		s, isStr := v.(string)
		return s, isStr
	}
	occi, _ := attrs["occi"].(map[string]any)
	core, _ := occi["core"].(map[string]any)
	if v, ok := core["id"]; ok {
		s, isStr := v.(string)
		return s, isStr
	}
	return "", false
}

// MaxEntityIDBytes is the longest entity id accepted.
const MaxEntityIDBytes = 255

// CheckEntityID is the one rule for entity ids, whichever way a client gives
// them (the "id" member, the occi.core.id attribute flat or nested, a text
// rendering, a link inside a resource, the last segment of a PUT location) and
// whoever creates the entity (the HTTP edge or a CMBS message). An id becomes
// the last segment of the entity's location, so it must be one path segment
// that needs no escaping: 1 to 255 bytes of valid UTF-8, not "." or "..",
// without '/', '?', '#', '%', '\', white space, control characters, or the
// characters a URL path escapes ("<>^`{|}).
func CheckEntityID(id string) error {
	bad := func(why string) error {
		return AttributeError("occi.core.id", "entity id %q %s", id, why)
	}
	switch {
	case id == "":
		return bad("is empty")
	case len(id) > MaxEntityIDBytes:
		return AttributeError("occi.core.id", "entity id of %d bytes is longer than %d bytes", len(id), MaxEntityIDBytes)
	case !utf8.ValidString(id):
		return bad("is not valid UTF-8")
	case id == "." || id == "..":
		return bad("is a relative path segment")
	case strings.ContainsAny(id, "/?#"):
		return bad("must not contain '/', '?' or '#': it is one segment of the entity's location")
	case needsEscape(id):
		return bad("must not contain '%', '\\', spaces, control characters or other characters a URL path escapes")
	}
	for _, r := range id {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			return bad("must not contain white space, control or format characters")
		}
	}
	return nil
}

func entityString(key string, v any) (string, error) {
	if v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", BadRequest("member %q must be a string, got %s", key, jsonKind(v))
	}
	return s, nil
}

func entityStrings(key string, v any) ([]string, error) {
	arr, err := entityArray(key, v)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, BadRequest("member %q must be an array of strings", key)
		}
		out = append(out, s)
	}
	return out, nil
}

func entityArray(key string, v any) ([]any, error) {
	switch a := v.(type) {
	case nil:
		return []any{}, nil
	case []any:
		return a, nil
	case string:
		if a == "" {
			return []any{}, nil
		}
	}
	return nil, BadRequest("member %q must be an array, got %s", key, jsonKind(v))
}

// endpoint reads a link source or target: a location string (pyOCNI) or
// {"location":…, "kind":…} (OCCI 1.2).
func endpoint(key string, v any) (loc, kind string, err error) {
	switch t := v.(type) {
	case string:
		loc = t
	case map[string]any:
		if loc, err = entityString(key+".location", t["location"]); err != nil {
			return "", "", err
		}
		if kind, err = entityString(key+".kind", t["kind"]); err != nil {
			return "", "", err
		}
	default:
		return "", "", BadRequest("member %q must be a location or an object with a location", key)
	}
	if loc == "" {
		return "", "", BadRequest("member %q needs a location", key)
	}
	if loc, err = EntityPath(loc); err != nil {
		return "", "", err
	}
	return loc, kind, nil
}

// DecodeEntity reads a stored entity document.
func DecodeEntity(id, rev string, body []byte) (*Entity, error) {
	e, ok := decodeEntityFast(body)
	if !ok {
		e = &Entity{}
		if err := json.Unmarshal(body, e); err != nil {
			return nil, err
		}
	}
	e.Location, e.Rev = id, rev
	e.Normalize()
	return e, nil
}
