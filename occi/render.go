package occi

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/cmbs/cmbs/internal/jsonenc"
	"github.com/cmbs/cmbs/occi/model"
)

// response is what a handler produces; write renders it.
type response struct {
	status int
	rend   rendering
	ctype  string
	header http.Header
	// json is marshalled for JSON renderings; text lines go to the body
	// (text/plain) or to headers (text/occi).
	json    any
	lines   []textLine
	uriList []string
	noBody  bool
	// stream, when set, writes the body (a collection listing, as it is
	// read from the store), flushing it to the client after each batch;
	// an error means the body is incomplete.
	stream func(w flushWriter) error
	// head: the request was HEAD, whose body is never sent.
	head bool
}

type textLine struct{ name, value string }

// encodedJSON is a response's JSON already encoded by marshalJSON, written
// as it is (an action's result of megabytes is encoded once).
type encodedJSON []byte

// marshalJSON is how JSON responses are encoded: unescaped HTML, a newline
// at the end.
func marshalJSON(v any) ([]byte, error) {
	out, err := jsonenc.AppendUnescaped(nil, v)
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func (s *Server) write(w http.ResponseWriter, resp *response) {
	h := w.Header()
	for k, vs := range resp.header {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	if resp.noBody {
		w.WriteHeader(resp.status)
		return
	}
	if resp.stream != nil {
		h.Set("Content-Type", resp.rend.contentType(resp.ctype))
		w.WriteHeader(resp.status)
		if resp.head {
			return
		}
		bw := &bufferedResponse{Writer: bufio.NewWriterSize(w, 32<<10), rc: http.NewResponseController(w)}
		err := bw.extend()
		if err == nil {
			err = resp.stream(bw)
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			// The status is sent: end the response without its proper
			// end, so the client cannot take a part for the whole.
			s.log.Warn("collection listing aborted after its status was sent", "err", err)
			panic(http.ErrAbortHandler)
		}
		return
	}
	switch resp.rend {
	case renderPyOCNI, renderJSON12:
		if resp.json == nil {
			h.Set("Content-Type", resp.rend.contentType(resp.ctype))
			w.WriteHeader(resp.status)
			return
		}
		if raw, ok := resp.json.(encodedJSON); ok {
			h.Set("Content-Type", resp.rend.contentType(resp.ctype))
			w.WriteHeader(resp.status)
			_, _ = w.Write(raw)
			return
		}
		body, err := marshalJSON(resp.json)
		if err != nil {
			s.log.Error("render JSON", "err", err)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", resp.rend.contentType(resp.ctype))
		w.WriteHeader(resp.status)
		_, _ = w.Write(body)
	case renderTextOCCI:
		for _, l := range resp.lines {
			h.Add(l.name, l.value)
		}
		h.Set("Content-Type", resp.rend.contentType(resp.ctype))
		w.WriteHeader(resp.status)
		_, _ = w.Write([]byte("OK\n"))
	case renderURIList:
		h.Set("Content-Type", resp.rend.contentType(resp.ctype))
		w.WriteHeader(resp.status)
		var b strings.Builder
		for _, u := range resp.uriList {
			b.WriteString(u)
			b.WriteString("\n")
		}
		_, _ = w.Write([]byte(b.String()))
	default:
		h.Set("Content-Type", resp.rend.contentType(resp.ctype))
		w.WriteHeader(resp.status)
		var b strings.Builder
		for _, l := range resp.lines {
			b.WriteString(l.name)
			b.WriteString(": ")
			b.WriteString(l.value)
			b.WriteString("\n")
		}
		_, _ = w.Write([]byte(b.String()))
	}
}

// flushWriter is a buffered body that can be sent on to the client.
type flushWriter interface {
	io.Writer
	Flush() error
}

// bufferedResponse buffers a streamed body; Flush sends what it holds.
type bufferedResponse struct {
	*bufio.Writer
	rc *http.ResponseController
}

func (b *bufferedResponse) Flush() error {
	if err := b.Writer.Flush(); err != nil {
		return err
	}
	if err := b.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return b.extend()
}

// extend gives the next batch streamBatchTimeout to be written: a long
// listing outlasts the server's write timeout, but not a stalled client.
func (b *bufferedResponse) extend() error {
	if err := b.rc.SetWriteDeadline(time.Now().Add(streamBatchTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// streamBatchTimeout is how long a streamed listing may take to read,
// render and send its next batch.
const streamBatchTimeout = time.Minute

// categoryLists renders categories grouped by class. absent marks classes
// the client's filter did not ask for; they render as empty lists.
func (s *Server) categoryResponse(rend rendering, ctype, base string, cats []*model.Category) *response {
	resp := &response{status: http.StatusOK, rend: rend, ctype: ctype}
	sort.SliceStable(cats, func(i, j int) bool { return cats[i].ID() < cats[j].ID() })
	switch rend {
	case renderPyOCNI, renderJSON12:
		out := map[string][]any{"kinds": {}, "mixins": {}, "actions": {}}
		for _, c := range cats {
			if rend == renderPyOCNI {
				out[c.Class.Plural()] = append(out[c.Class.Plural()], c.Description)
			} else {
				out[c.Class.Plural()] = append(out[c.Class.Plural()], category12(c))
			}
		}
		resp.json = out
	default:
		for _, c := range cats {
			resp.lines = append(resp.lines, textLine{"Category", categoryText(c, true)})
		}
	}
	return resp
}

// category12 renders a category in OCCI 1.2 JSON.
func category12(c *model.Category) map[string]any {
	out := map[string]any{"term": c.Term, "scheme": c.Scheme}
	if c.Title != "" {
		out["title"] = c.Title
	}
	if len(c.Attributes) > 0 {
		attrs := map[string]any{}
		for i := range c.Attributes {
			d := &c.Attributes[i]
			ad := map[string]any{"mutable": d.Mutable, "required": d.Required}
			t := d.Type
			if t == model.TypeAny {
				t = model.TypeString
			}
			ad["type"] = t
			if d.HasDefault {
				ad["default"] = d.Default
			}
			if d.Description != "" {
				ad["description"] = d.Description
			}
			if d.Pattern != nil {
				ad["pattern"] = map[string]any{"$schema": "http://json-schema.org/draft-04/schema#", "type": "string", "pattern": d.Pattern.String()}
			}
			attrs[d.Name()] = ad
		}
		out["attributes"] = attrs
	}
	if len(c.Actions) > 0 {
		out["actions"] = c.Actions
	}
	switch c.Class {
	case model.ClassKind:
		if c.Parent != "" {
			out["parent"] = c.Parent
		}
		if c.Location != "" {
			out["location"] = c.Location
		}
	case model.ClassMixin:
		if len(c.Depends) > 0 {
			out["depends"] = c.Depends
		}
		if len(c.Applies) > 0 {
			out["applies"] = c.Applies
		}
		out["location"] = c.Location
	}
	return out
}

// categoryText renders a category as an OCCI text Category value.
func categoryText(c *model.Category, full bool) string {
	var b strings.Builder
	b.WriteString(c.Term)
	b.WriteString("; scheme=" + quote(c.Scheme))
	b.WriteString("; class=" + quote(string(c.Class)))
	if !full {
		return b.String()
	}
	if c.Title != "" {
		b.WriteString("; title=" + quote(c.Title))
	}
	// OCCI 1.2 text: a kind's rel is its parent, a mixin's its first
	// dependency only (pOCCI matches rel exactly).
	rel := c.Parent
	if c.Class == model.ClassMixin && len(c.Depends) > 0 {
		rel = c.Depends[0]
	}
	if rel == "" && len(c.Related) > 0 {
		rel = c.Related[0]
	}
	if rel != "" {
		b.WriteString("; rel=" + quote(rel))
	}
	// Locations are paths: clients (pOCCI) resolve them against the
	// server URL they were given.
	if c.Location != "" {
		b.WriteString("; location=" + quote(c.Location))
	}
	if len(c.Attributes) > 0 {
		names := make([]string, 0, len(c.Attributes))
		for i := range c.Attributes {
			d := &c.Attributes[i]
			n := d.Name()
			var props []string
			// A default stands in for a value the client does not give,
			// so the attribute is not required of clients.
			if d.Required && !d.HasDefault {
				props = append(props, "required")
			}
			if !d.Mutable {
				props = append(props, "immutable")
			}
			if len(props) > 0 {
				n += "{" + strings.Join(props, " ") + "}"
			}
			names = append(names, n)
		}
		b.WriteString("; attributes=" + quote(strings.Join(names, " ")))
	}
	if len(c.Actions) > 0 {
		b.WriteString("; actions=" + quote(strings.Join(c.Actions, " ")))
	}
	return b.String()
}

// locationsResponse renders a listing of entity locations.
func locationsResponse(rend rendering, ctype, base string, locs []string) *response {
	abs := make([]string, len(locs))
	for i, l := range locs {
		abs[i] = base + l
	}
	resp := &response{status: http.StatusOK, rend: rend, ctype: ctype, uriList: abs}
	switch rend {
	case renderPyOCNI:
		resp.json = map[string]any{"X-OCCI-Location": abs}
	case renderJSON12:
		resp.json = map[string]any{"locations": abs}
	case renderTextOCCI:
		if len(abs) > 0 {
			resp.lines = []textLine{{"X-OCCI-Location", strings.Join(abs, ", ")}}
		}
	default:
		for _, a := range abs {
			resp.lines = append(resp.lines, textLine{"X-OCCI-Location", a})
		}
	}
	return resp
}

// createdResponse answers a create or update: 201, a Location header per
// entity, and pyOCNI's {"Location":[…]} body.
func createdResponse(rend rendering, ctype, base string, locs []string) *response {
	resp := locationsResponse(rend, ctype, base, locs)
	resp.status = http.StatusCreated
	resp.header = http.Header{}
	for _, l := range resp.uriList {
		resp.header.Add("Location", l)
	}
	switch rend {
	case renderPyOCNI, renderJSON12:
		resp.json = map[string]any{"Location": resp.uriList}
	case renderTextOCCI:
		resp.lines = nil // the Location headers carry it
	default:
		resp.lines = nil
		for _, a := range resp.uriList {
			resp.lines = append(resp.lines, textLine{"Location", a})
		}
	}
	return resp
}

// occiCreated turns a created answer into OCCI 1.2's: its text renderings
// name the new locations X-OCCI-Location (in the body for text/plain, as a
// header beside Location for text/occi), where pyOCNI's said Location.
func occiCreated(resp *response) {
	switch resp.rend {
	case renderTextPlain:
		resp.lines = nil
		for _, a := range resp.uriList {
			resp.lines = append(resp.lines, textLine{"X-OCCI-Location", a})
		}
	case renderTextOCCI:
		resp.lines = nil
		if len(resp.uriList) > 0 {
			resp.lines = []textLine{{"X-OCCI-Location", strings.Join(resp.uriList, ", ")}}
		}
	}
}

// pyocniEntity renders an entity as pyOCNI's bare description; links are
// a resource's "links" as pyocniLinks makes them.
func pyocniEntity(e *model.Entity, base string, links []any) map[string]any {
	out := map[string]any{
		"kind":       e.Kind,
		"mixins":     e.Mixins,
		"attributes": e.Attributes,
		"actions":    e.Actions,
		"id":         e.ID,
		"links":      links,
	}
	if e.HasTitle || e.Title != "" {
		out["title"] = e.Title
	}
	if e.HasSummary || e.Summary != "" {
		out["summary"] = e.Summary
	}
	if e.Type == model.TypeLink {
		out["source"] = base + e.Source
		out["target"] = base + e.Target
	}
	return out
}

// pyocniLinks lists a resource's links in pyOCNI's rendering: the absolute
// locations of the link entities whose source it is, wherever they were
// created (inline, or at their own collection, in any rendering). What the
// client stored in "links" is kept verbatim, except references to link
// entities (isLinkPath): those come from live, in the order stored, so a
// deleted link no longer shows.
func pyocniLinks(stored []any, live []*model.Entity, base string, isLinkPath func(string) bool) []any {
	out := make([]any, 0, len(stored)+len(live))
	current := make(map[string]bool, len(live))
	for _, l := range live {
		current[l.Location] = true
	}
	listed := map[string]bool{}
	for _, v := range stored {
		str, ok := v.(string)
		if !ok {
			out = append(out, v)
			continue
		}
		p := str
		if strings.HasPrefix(p, base+"/") {
			p = strings.TrimPrefix(p, base)
		}
		switch {
		case !strings.HasPrefix(p, "/"):
			out = append(out, v)
		case current[p]:
			if !listed[p] {
				listed[p] = true
				out = append(out, base+p)
			}
		case !isLinkPath(p):
			out = append(out, base+p)
		}
	}
	for _, l := range live {
		if !listed[l.Location] {
			listed[l.Location] = true
			out = append(out, base+l.Location)
		}
	}
	return out
}

// entityView is what the 1.2 and text renderings of an entity need beyond
// the entity itself.
type entityView struct {
	e       *model.Entity
	kind    *model.Category
	mixins  []*model.Category
	actions []*model.Category
	attrs   *model.AttrSet
	links   []*model.Entity // a resource's links
}

// entity12 renders an entity in OCCI 1.2 JSON.
func entity12(v *entityView, base string) map[string]any {
	e := v.e
	attrs := v.attrs.Flatten(e.Attributes)
	attrs["occi.core.id"] = e.ID
	if e.HasTitle || e.Title != "" {
		attrs["occi.core.title"] = e.Title
	}
	out := map[string]any{
		"kind":       e.Kind,
		"id":         e.ID,
		"attributes": attrs,
	}
	if len(e.Mixins) > 0 {
		out["mixins"] = e.Mixins
	}
	if e.HasTitle || e.Title != "" {
		out["title"] = e.Title
	}
	var acts []string
	for _, a := range v.actions {
		acts = append(acts, a.ID())
	}
	if len(acts) > 0 {
		out["actions"] = acts
	}
	if e.Type == model.TypeLink {
		src := map[string]any{"location": base + e.Source}
		tgt := map[string]any{"location": base + e.Target}
		if e.TargetKind != "" {
			tgt["kind"] = e.TargetKind
		}
		out["source"], out["target"] = src, tgt
		attrs["occi.core.source"] = base + e.Source
		attrs["occi.core.target"] = base + e.Target
		return out
	}
	if e.HasSummary || e.Summary != "" {
		out["summary"] = e.Summary
		attrs["occi.core.summary"] = e.Summary
	}
	if len(v.links) > 0 {
		var ls []any
		for _, l := range v.links {
			ls = append(ls, entity12(&entityView{e: l, attrs: model.NewAttrSet()}, base))
		}
		out["links"] = ls
	}
	return out
}

// entityText renders an entity as OCCI text lines, in the order of the
// text grammar: Category lines (kind, then mixins), Link lines (a
// resource's links, then action links), X-OCCI-Attribute lines.
func entityText(v *entityView, base string) []textLine {
	e := v.e
	var lines []textLine
	if v.kind != nil {
		lines = append(lines, textLine{"Category", categoryText(v.kind, false)})
	}
	for _, m := range v.mixins {
		lines = append(lines, textLine{"Category", categoryText(m, false)})
	}
	for _, l := range v.links {
		lines = append(lines, textLine{"Link", "<" + base + l.Target + ">; rel=" + quote(l.TargetKind) +
			"; self=" + quote(base+l.Location) + "; category=" + quote(l.Kind)})
	}
	for _, a := range v.actions {
		lines = append(lines, textLine{"Link", "<" + base + e.Location + "?action=" + a.Term + ">; rel=" + quote(a.ID())})
	}
	attr := func(name string, val any) {
		lines = append(lines, textLine{"X-OCCI-Attribute", name + "=" + textValue(val)})
	}
	attr("occi.core.id", e.ID)
	if e.HasTitle || e.Title != "" {
		attr("occi.core.title", e.Title)
	}
	if e.Type == model.TypeLink {
		attr("occi.core.source", base+e.Source)
		attr("occi.core.target", base+e.Target)
		if e.TargetKind != "" {
			attr("occi.core.target.kind", e.TargetKind)
		}
	} else if e.HasSummary || e.Summary != "" {
		attr("occi.core.summary", e.Summary)
	}
	for _, l := range v.attrs.Leaves(e.Attributes) {
		attr(strings.Join(l.Path, "."), l.Value)
	}
	return lines
}
