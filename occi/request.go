package occi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/jsonscan"
	"github.com/cmbs/cmbs/occi/model"
)

// requestBody is a decoded request, whatever its format.
type requestBody struct {
	// JSON is set for JSON bodies (always an object).
	JSON map[string]any
	// Text is set for OCCI text requests (text/plain body, text/occi headers).
	Text *textDoc
	// URIs is set for text/uri-list bodies.
	URIs []string
}

func (b *requestBody) empty() bool {
	switch {
	case b.JSON != nil:
		return false
	case b.Text != nil:
		return b.Text.empty()
	}
	return b.URIs == nil
}

// headerDoc is the OCCI text rendering in the request headers when the
// body is empty (OCCI 1.2 clients filter with Category and X-OCCI-Attribute
// headers), or nil when there is a body.
func headerDoc(r *http.Request, b *requestBody) (*textDoc, error) {
	if !b.empty() {
		return nil, nil
	}
	return parseTextHeaders(r.Header)
}

// readBody reads and decodes the request body according to its Content-Type.
// A missing type, and the form type curl sends by default with -d, are
// sniffed: a body starting with '{' is JSON, anything else OCCI text.
func readBody(r *http.Request) (*requestBody, error) {
	raw, err := readAll(r)
	if err != nil {
		return nil, bodyError(err)
	}
	ct := r.Header.Get("Content-Type")
	mt := ""
	if ct != "" {
		var perr error
		mt, _, perr = mime.ParseMediaType(ct)
		if perr != nil {
			mt = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
		}
	}
	trimmed := bytes.TrimSpace(raw)
	switch mt {
	case "", "application/x-www-form-urlencoded":
		if len(trimmed) == 0 {
			return &requestBody{}, nil
		}
		if trimmed[0] == '{' || trimmed[0] == '[' {
			return decodeJSON(raw)
		}
		doc, err := parseTextBody(raw)
		if err != nil {
			return nil, err
		}
		return &requestBody{Text: doc}, nil
	case "application/occi+json", "application/json":
		if len(trimmed) == 0 {
			return &requestBody{}, nil
		}
		return decodeJSON(raw)
	case "text/plain", "text/occi+plain":
		doc, err := parseTextBody(raw)
		if err != nil {
			return nil, err
		}
		return &requestBody{Text: doc}, nil
	case "text/occi":
		doc, err := parseTextHeaders(r.Header)
		if err != nil {
			return nil, err
		}
		if len(trimmed) > 0 {
			more, err := parseTextBody(raw)
			if err != nil {
				return nil, err
			}
			mergeText(doc, more)
		}
		return &requestBody{Text: doc}, nil
	case "text/uri-list":
		var uris []string
		for _, line := range strings.Split(string(raw), "\n") {
			line = strings.TrimSpace(line)
			if line != "" && !strings.HasPrefix(line, "#") {
				uris = append(uris, line)
			}
		}
		if uris == nil {
			uris = []string{}
		}
		return &requestBody{URIs: uris}, nil
	}
	if strings.HasSuffix(mt, "+json") {
		return decodeJSON(raw)
	}
	return nil, model.Errorf(http.StatusUnsupportedMediaType,
		"%s is not a request format this server reads: use application/occi+json, application/json, text/plain, text/occi or text/uri-list", mt)
}

// readAll reads a request body into one allocation of its Content-Length
// when it has one (limited by the body limit before, see body.go), instead
// of growing a buffer through a body of megabytes.
func readAll(r *http.Request) ([]byte, error) {
	if r.ContentLength <= 0 {
		return io.ReadAll(r.Body)
	}
	raw := make([]byte, r.ContentLength)
	n := 0
	for n < len(raw) {
		m, err := r.Body.Read(raw[n:])
		n += m
		switch {
		case err == io.EOF:
			return raw[:n], nil // shorter than announced: what there is, as io.ReadAll
		case err != nil:
			return nil, err
		}
	}
	more, err := io.ReadAll(r.Body)
	return append(raw, more...), err
}

func mergeText(dst, src *textDoc) {
	dst.Categories = append(dst.Categories, src.Categories...)
	for k, v := range src.Attributes {
		dst.Attributes[k] = v
	}
	dst.Links = append(dst.Links, src.Links...)
	dst.Locations = append(dst.Locations, src.Locations...)
}

func decodeJSON(raw []byte) (*requestBody, error) {
	// The common case without reflection (a 10 MiB process input in a
	// tenth of the time); anything unusual, errors among it, as before.
	if v, ok := jsonscan.DecodeValue(raw); ok {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, model.BadRequest("request body must be a JSON object")
		}
		return &requestBody{JSON: obj}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var v any
	if err := dec.Decode(&v); err != nil {
		var syn *json.SyntaxError
		switch {
		case errors.As(err, &syn):
			return nil, model.BadRequest("request body is not valid JSON: %s: %v", position(raw, syn.Offset-1), err)
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
			return nil, model.BadRequest("request body is not valid JSON: %s: it ends before the JSON value does", position(raw, int64(len(raw))))
		}
		return nil, model.BadRequest("request body is not valid JSON: %v", err)
	}
	if dec.More() {
		end := dec.InputOffset()
		end += int64(len(raw[end:]) - len(bytes.TrimLeft(raw[end:], " \t\r\n")))
		return nil, model.BadRequest("request body has data after the JSON value, at %s", position(raw, end))
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, model.BadRequest("request body must be a JSON object")
	}
	return &requestBody{JSON: obj}, nil
}

// position names the line and column (both from 1, columns in characters)
// of a byte offset in raw.
func position(raw []byte, offset int64) string {
	offset = min(max(offset, 0), int64(len(raw)))
	before := raw[:offset]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("line %d, column %d", line, col)
}

// categoryDocument reads a /-/ request: {"kinds","mixins","actions","providers"}
// in JSON, or Category lines in text.
func categoryDocument(b *requestBody) (*categories.Document, error) {
	doc := &categories.Document{}
	switch {
	case b.JSON != nil:
		for k, v := range b.JSON {
			switch k {
			case "kinds", "mixins", "actions":
				list, err := objectList(k, v)
				if err != nil {
					return nil, err
				}
				switch k {
				case "kinds":
					doc.Kinds = list
				case "mixins":
					doc.Mixins = list
				default:
					doc.Actions = list
				}
			case "providers":
				list, err := objectList(k, v)
				if err != nil {
					return nil, err
				}
				for _, p := range list {
					id, _ := p["OCCI_ID"].(string)
					prov, _ := p["Provider"].(map[string]any)
					if id == "" {
						return nil, model.BadRequest("providers: each binding needs an OCCI_ID string")
					}
					doc.Providers = append(doc.Providers, categories.ProviderBinding{OCCIID: id, Provider: prov})
				}
			default:
				return nil, model.BadRequest("unknown member %q in the category document (want kinds, mixins, actions, providers)", k)
			}
		}
	case b.Text != nil:
		for _, c := range b.Text.Categories {
			desc := textCategoryDescription(c)
			switch c.Class {
			case "kind":
				doc.Kinds = append(doc.Kinds, desc)
			case "mixin":
				doc.Mixins = append(doc.Mixins, desc)
			case "action":
				doc.Actions = append(doc.Actions, desc)
			default:
				return nil, model.BadRequest("category %s needs class=\"kind\", \"mixin\" or \"action\"", c.id())
			}
		}
	}
	return doc, nil
}

// textCategoryDescription builds a category description from its text form.
func textCategoryDescription(c textCategory) map[string]any {
	desc := map[string]any{"term": c.Term, "scheme": c.Scheme}
	if t, ok := c.Params["title"]; ok {
		desc["title"] = t
	}
	if l, ok := c.Params["location"]; ok {
		desc["location"] = l
	}
	if rel := strings.Fields(c.Params["rel"]); len(rel) > 0 {
		if c.Class == "kind" && len(rel) == 1 {
			desc["parent"] = rel[0]
		} else {
			desc["depends"] = toAnyList(rel)
		}
	}
	if acts := strings.Fields(c.Params["actions"]); len(acts) > 0 {
		desc["actions"] = toAnyList(acts)
	}
	if attrs := strings.Fields(c.Params["attributes"]); len(attrs) > 0 {
		defs := map[string]any{}
		for _, a := range attrs {
			name, props, _ := strings.Cut(a, "{")
			props = strings.TrimSuffix(props, "}")
			def := map[string]any{"mutable": true, "required": false}
			for _, p := range strings.Fields(props) {
				switch p {
				case "immutable":
					def["mutable"] = false
				case "required":
					def["required"] = true
				}
			}
			defs[name] = def
		}
		desc["attributes"] = defs
	}
	return desc
}

func toAnyList(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func objectList(key string, v any) ([]map[string]any, error) {
	if v == nil {
		return nil, nil
	}
	if s, ok := v.(string); ok && s == "" {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, model.BadRequest("%q must be an array of objects", key)
	}
	out := make([]map[string]any, 0, len(arr))
	for i, e := range arr {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, model.BadRequest("%s[%d] must be an object", key, i)
		}
		out = append(out, m)
	}
	return out, nil
}

// entityDescriptions reads the entities a create or update request carries:
// {"resources":[…]} and/or {"links":[…]}, a bare OCCI 1.2 entity object, or
// an OCCI text rendering. Each description comes with its type.
type typedDescription struct {
	typ  string
	desc map[string]any
}

func entityDescriptions(b *requestBody) ([]typedDescription, error) {
	var out []typedDescription
	switch {
	case b.JSON != nil:
		_, hasRes := b.JSON["resources"]
		_, hasLinks := b.JSON["links"]
		_, hasKind := b.JSON["kind"]
		_, hasAttrs := b.JSON["attributes"]
		// A bare OCCI 1.2 entity names its kind (and may have "links"); a
		// partial update may give only its attributes. pyOCNI's documents
		// hold only "resources" and "links".
		if (!hasRes && !hasLinks) || hasKind {
			if hasKind || hasAttrs {
				typ := model.TypeResource
				if _, src := b.JSON["source"]; src {
					typ = model.TypeLink
				}
				return []typedDescription{{typ, b.JSON}}, nil
			}
			return nil, nil
		}
		for k := range b.JSON {
			if k != "resources" && k != "links" {
				return nil, model.BadRequest("unknown member %q next to resources/links", k)
			}
		}
		res, err := objectList("resources", b.JSON["resources"])
		if err != nil {
			return nil, err
		}
		for _, d := range res {
			out = append(out, typedDescription{model.TypeResource, d})
		}
		links, err := objectList("links", b.JSON["links"])
		if err != nil {
			return nil, err
		}
		for _, d := range links {
			out = append(out, typedDescription{model.TypeLink, d})
		}
	case b.Text != nil && (len(b.Text.Categories) > 0 || len(b.Text.Attributes) > 0 || len(b.Text.Links) > 0):
		// Only X-OCCI-Location lines describe no entity: they list the
		// members of a mixin collection (see locationList).
		desc := map[string]any{}
		var mixins []any
		for _, c := range b.Text.Categories {
			switch c.Class {
			case "kind":
				desc["kind"] = c.id()
			case "mixin":
				mixins = append(mixins, c.id())
			default:
				return nil, model.BadRequest("category %s: an entity rendering names its kind and mixins (class=\"kind\"/\"mixin\")", c.id())
			}
		}
		if mixins != nil {
			desc["mixins"] = mixins
		}
		attrs := map[string]any{}
		for k, v := range b.Text.Attributes {
			attrs[k] = v
		}
		typ := model.TypeResource
		if _, isLink := attrs["occi.core.source"]; isLink {
			typ = model.TypeLink
		}
		if id, ok := attrs["occi.core.id"].(string); ok {
			desc["id"] = id
			delete(attrs, "occi.core.id")
		}
		if err := liftEndKinds(desc, attrs); err != nil {
			return nil, err
		}
		desc["attributes"] = attrs
		var links []any
		for _, l := range b.Text.Links {
			if strings.Contains(l.Target, "?action=") {
				continue // action links describe what can be invoked; they are not entities
			}
			if l.Self != "" {
				// A rendering of an existing link (a client re-sending what it
				// read, as pOCCI's full update does): links are changed at
				// their own locations, and a full update leaves them intact.
				continue
			}
			// rel is the target's kind: kept, so the service can check it
			// against the target (a contradiction is a 400).
			var target any = l.Target
			if l.Rel != "" {
				target = map[string]any{"location": l.Target, "kind": l.Rel}
			}
			ld := map[string]any{"target": target, "attributes": l.Attributes}
			if l.Category != "" {
				ld["kind"] = l.Category
			}
			links = append(links, ld)
		}
		if links != nil {
			desc["links"] = links
		}
		out = append(out, typedDescription{typ, desc})
	}
	return out, nil
}

// liftEndKinds moves a link's occi.core.source.kind and
// occi.core.target.kind text attributes, with the location they qualify,
// into the description's source and target (as OCCI 1.2 JSON gives them),
// where the service checks them against the linked resources. Left among
// the attributes, "occi.core.target" would be both a value and a namespace.
func liftEndKinds(desc, attrs map[string]any) error {
	for _, end := range []string{"source", "target"} {
		name := "occi.core." + end
		kind, has := attrs[name+".kind"]
		if !has {
			continue
		}
		ks, isStr := kind.(string)
		if !isStr {
			return model.AttributeError(name+".kind", "attribute %s.kind must be a string (a kind's scheme and term)", name)
		}
		loc, hasLoc := attrs[name]
		if !hasLoc {
			return model.AttributeError(name+".kind", "attribute %s.kind needs %s, the location whose kind it names", name, name)
		}
		delete(attrs, name+".kind")
		delete(attrs, name)
		desc[end] = map[string]any{"location": loc, "kind": ks}
	}
	return nil
}

// locationList reads the entity locations of a mixin collection request:
// {"X-OCCI-Location":[…]} (or OCCI 1.2 {"locations":[…]}), a text/uri-list,
// or X-OCCI-Location text lines. ok is false when the body has none.
func locationList(b *requestBody) (locs []string, ok bool, err error) {
	switch {
	case b.JSON != nil:
		for _, key := range []string{"X-OCCI-Location", "x-occi-location", "locations"} {
			v, present := b.JSON[key]
			if !present {
				continue
			}
			arr, isArr := v.([]any)
			if !isArr {
				return nil, false, model.BadRequest("%q must be an array of locations", key)
			}
			for _, e := range arr {
				s, isStr := e.(string)
				if !isStr {
					return nil, false, model.BadRequest("%q must be an array of locations", key)
				}
				locs = append(locs, s)
			}
			return locs, true, nil
		}
	case b.URIs != nil:
		return b.URIs, true, nil
	case b.Text != nil && len(b.Text.Locations) > 0:
		return b.Text.Locations, true, nil
	}
	return nil, false, nil
}

// actionAttributes reads an action invocation: {"attributes":{…}} (pyOCNI;
// other members ignored as pyOCNI did) or OCCI 1.2 {"action":"scheme#term",
// "attributes":{…}}, or X-OCCI-Attribute text. The action id, when given,
// must name the term in the query.
func actionAttributes(b *requestBody, term string) (map[string]any, error) {
	attrs := map[string]any{}
	switch {
	case b.JSON != nil:
		if a, ok := b.JSON["action"]; ok {
			id, isStr := a.(string)
			if !isStr || (!strings.HasSuffix(id, "#"+term) && id != term) {
				return nil, model.BadRequest("the body names action %v but the query asks for %q", a, term)
			}
		}
		switch v := b.JSON["attributes"].(type) {
		case nil:
		case map[string]any:
			attrs = v
		default:
			return nil, model.BadRequest("\"attributes\" must be an object")
		}
	case b.Text != nil:
		for k, v := range b.Text.Attributes {
			attrs[k] = v
		}
	}
	return attrs, nil
}
