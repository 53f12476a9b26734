package model

import "github.com/cmbs/cmbs/internal/jsonenc"

// AppendJSON appends the entity's JSON, the stored document body, to dst:
// the bytes json.Marshal(e) writes (same fields, order and omissions),
// faster, as every store write encodes one. A field added to Entity must be
// added here too: TestEntityAppendJSONMatchesMarshal fails until it is.
func (e *Entity) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"type":`...)
	dst = jsonenc.AppendString(dst, e.Type)
	dst = append(dst, `,"id":`...)
	dst = jsonenc.AppendString(dst, e.ID)
	dst = append(dst, `,"kind":`...)
	dst = jsonenc.AppendString(dst, e.Kind)
	dst = append(dst, `,"mixins":`...)
	dst = jsonenc.AppendStrings(dst, e.Mixins)
	var err error
	dst = append(dst, `,"attributes":`...)
	if dst, err = jsonenc.Append(dst, e.Attributes); err != nil {
		return dst, err
	}
	dst = append(dst, `,"actions":`...)
	if dst, err = jsonenc.Append(dst, e.Actions); err != nil {
		return dst, err
	}
	dst = append(dst, `,"links":`...)
	if dst, err = jsonenc.Append(dst, e.Links); err != nil {
		return dst, err
	}
	for _, f := range [...]struct{ name, v string }{
		{`,"title":`, e.Title}, {`,"summary":`, e.Summary}, {`,"source":`, e.Source},
		{`,"target":`, e.Target}, {`,"target_kind":`, e.TargetKind},
	} {
		if f.v != "" {
			dst = append(dst, f.name...)
			dst = jsonenc.AppendString(dst, f.v)
		}
	}
	if e.HasTitle {
		dst = append(dst, `,"has_title":true`...)
	}
	if e.HasSummary {
		dst = append(dst, `,"has_summary":true`...)
	}
	if e.OutLinks != nil {
		dst = append(dst, `,"out_links":`...)
		if *e.OutLinks == nil {
			dst = append(dst, "null"...)
		} else {
			dst = jsonenc.AppendStrings(dst, *e.OutLinks)
		}
	}
	return append(dst, '}'), nil
}
