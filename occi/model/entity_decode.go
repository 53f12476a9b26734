package model

import (
	"encoding/json"
	"strings"

	"github.com/cmbs/cmbs/internal/jsonscan"
)

// DecodeEntity reads a stored entity document.
func DecodeEntity(id, rev string, body []byte) (*Entity, error) {
	e := &Entity{}
	if !e.decodeStored(body) {
		// Anything unusual is encoding/json's, for its result and error.
		*e = Entity{}
		if err := json.Unmarshal(body, e); err != nil {
			return nil, err
		}
	}
	e.Location, e.Rev = id, rev
	e.Normalize()
	return e, nil
}

// entityFields are the members of a stored entity document, as Entity's
// json tags name them.
var entityFields = []string{"type", "id", "kind", "mixins", "attributes", "actions", "links", "title", "summary",
	"source", "target", "target_kind", "has_title", "has_summary", "out_links"}

// decodeStored fills the zero e from a stored document as
// json.Unmarshal(body, e) would, without reflection (every read of an
// entity decodes one). It returns false for anything it leaves to
// encoding/json: invalid JSON, a member of the wrong type, a member given
// twice, a name that matches a field only without regard to case, escapes
// and bytes jsonscan leaves to it.
func (e *Entity) decodeStored(body []byte) bool {
	s := jsonscan.Scanner{Data: body}
	if c, ok := s.Next(); !ok || c != '{' {
		return false
	}
	if !s.Enter() {
		return false
	}
	defer s.Leave()
	var seen uint32
	if !s.Consume('}') {
		for {
			if c, ok := s.Next(); !ok || c != '"' {
				return false
			}
			key, ok := s.String(true)
			if !ok || !s.Consume(':') {
				return false
			}
			field := -1
			for i, name := range entityFields {
				if key == name {
					field = i
					break
				}
			}
			if field < 0 {
				for _, name := range entityFields {
					if strings.EqualFold(key, name) {
						return false
					}
				}
				if !s.Skip() {
					return false
				}
			} else {
				if seen&(1<<field) != 0 {
					return false // encoding/json merges a repeated object or array into the first
				}
				seen |= 1 << field
				v, ok := s.Value()
				if !ok || !e.setField(entityFields[field], v) {
					return false
				}
			}
			more, ok := s.More('}')
			if !ok {
				return false
			}
			if !more {
				break
			}
		}
	}
	return s.AtEnd()
}

// setField sets one member's decoded value; false when encoding/json would
// refuse its type (or set it in a way this does not repeat). null leaves a
// field as it is, as encoding/json does.
func (e *Entity) setField(name string, v any) bool {
	if v == nil {
		return true
	}
	str := func(dst *string) bool {
		s, ok := v.(string)
		*dst = s
		return ok
	}
	flag := func(dst *bool) bool {
		b, ok := v.(bool)
		*dst = b
		return ok
	}
	list := func(dst *[]any) bool {
		a, ok := v.([]any)
		*dst = a
		return ok
	}
	switch name {
	case "type":
		return str(&e.Type)
	case "id":
		return str(&e.ID)
	case "kind":
		return str(&e.Kind)
	case "title":
		return str(&e.Title)
	case "summary":
		return str(&e.Summary)
	case "source":
		return str(&e.Source)
	case "target":
		return str(&e.Target)
	case "target_kind":
		return str(&e.TargetKind)
	case "has_title":
		return flag(&e.HasTitle)
	case "has_summary":
		return flag(&e.HasSummary)
	case "actions":
		return list(&e.Actions)
	case "links":
		return list(&e.Links)
	case "attributes":
		m, ok := v.(map[string]any)
		e.Attributes = m
		return ok
	case "mixins":
		ss, ok := decodedStrings(v)
		e.Mixins = ss
		return ok
	case "out_links":
		ss, ok := decodedStrings(v)
		e.OutLinks = &ss
		return ok
	}
	return false
}

// decodedStrings is a decoded array of strings as a []string; false for anything
// else (a null element among them: encoding/json's "" is left to it).
func decodedStrings(v any) ([]string, bool) {
	a, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, len(a))
	for i, x := range a {
		if out[i], ok = x.(string); !ok {
			return nil, false
		}
	}
	return out, true
}
