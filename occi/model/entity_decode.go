package model

import "github.com/cmbs/cmbs/internal/jsonscan"

// decodeEntityFast reads a stored entity document as json.Unmarshal into
// an Entity does, without reflection: every read of an entity decodes one
// (a send_l1 reads its message first, on the round trip's path). ok is
// false for anything it does not read exactly as encoding/json would (a
// member name other than the ones AppendJSON writes, which encoding/json
// would match case-insensitively or ignore; a member named twice; a value
// of another type; invalid JSON), which the caller then leaves to
// encoding/json.
// TestDecodeEntityFastMatchesUnmarshal and FuzzDecodeEntity compare the
// two.
func decodeEntityFast(body []byte) (*Entity, bool) {
	s := jsonscan.Scanner{Data: body}
	if c, ok := s.Next(); !ok || c != '{' {
		return nil, false
	}
	s.Enter()
	defer s.Leave()
	e := &Entity{}
	if s.Consume('}') {
		return e, s.AtEnd()
	}
	var seen uint32 // the members read, by bit: encoding/json reads a repeated one each time, errors included
	for {
		if c, ok := s.Next(); !ok || c != '"' {
			return nil, false
		}
		k, ok := s.String(true)
		if !ok || !s.Consume(':') {
			return nil, false
		}
		s.Space()
		start := s.Pos
		if !s.Skip() {
			return nil, false
		}
		v, ok := jsonscan.DecodeValue(body[start:s.Pos])
		if !ok {
			return nil, false
		}
		bit := -1
		switch k {
		case "type":
			bit, ok = 0, setString(&e.Type, v)
		case "id":
			bit, ok = 1, setString(&e.ID, v)
		case "kind":
			bit, ok = 2, setString(&e.Kind, v)
		case "title":
			bit, ok = 3, setString(&e.Title, v)
		case "summary":
			bit, ok = 4, setString(&e.Summary, v)
		case "source":
			bit, ok = 5, setString(&e.Source, v)
		case "target":
			bit, ok = 6, setString(&e.Target, v)
		case "target_kind":
			bit, ok = 7, setString(&e.TargetKind, v)
		case "has_title":
			bit, ok = 8, setBool(&e.HasTitle, v)
		case "has_summary":
			bit, ok = 9, setBool(&e.HasSummary, v)
		case "mixins":
			bit = 10
			e.Mixins, ok = jsonStrings(v)
		case "out_links":
			bit = 11
			if v != nil {
				var l []string
				if l, ok = jsonStrings(v); ok {
					e.OutLinks = &l
				}
			}
		case "attributes":
			bit = 12
			switch t := v.(type) {
			case nil:
			case map[string]any:
				e.Attributes = t
			default:
				ok = false
			}
		case "actions":
			bit = 13
			e.Actions, ok = jsonList(v)
		case "links":
			bit = 14
			e.Links, ok = jsonList(v)
		}
		if bit < 0 || !ok || seen&(1<<bit) != 0 {
			return nil, false
		}
		seen |= 1 << bit
		more, ok := s.More('}')
		if !ok {
			return nil, false
		}
		if !more {
			return e, s.AtEnd()
		}
	}
}

// setString sets *dst to v, a string, or leaves it for null.
func setString(dst *string, v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		*dst = t
		return true
	}
	return false
}

func setBool(dst *bool, v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case bool:
		*dst = t
		return true
	}
	return false
}

// jsonStrings is v, an array of strings or null, as a []string; an array
// holding anything else is left to encoding/json.
func jsonStrings(v any) ([]string, bool) {
	switch t := v.(type) {
	case nil:
		return nil, true
	case []any:
		l := make([]string, len(t))
		for i, s := range t {
			var ok bool
			if l[i], ok = s.(string); !ok {
				return nil, false
			}
		}
		return l, true
	}
	return nil, false
}

func jsonList(v any) ([]any, bool) {
	switch t := v.(type) {
	case nil:
		return nil, true
	case []any:
		return t, true
	}
	return nil, false
}
