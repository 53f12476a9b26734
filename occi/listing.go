package occi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/model"
)

// A collection GET is streamed: the entities are read from the store
// entities.ListBatch at a time and each batch is rendered and written before
// the next is read, so a listing of any size holds about one batch in
// memory. The first batch is read before the status line is written, so a
// bad filter or a store that is down still gets its 4xx/5xx; a store error
// after that can no longer change the status and aborts the response (the
// client sees a truncated body, never a complete-looking short listing).
// text/occi carries a listing in one response header, which cannot be
// streamed: its locations are gathered first.

// collectionGet answers GET on a collection path.
func (s *Server) collectionGet(r *http.Request, p string) (*response, error) {
	rend, ctype, err := negotiate(r, true)
	if err != nil {
		return nil, err
	}
	q := entities.ListQuery{PathPrefix: p, Batch: s.opts.ListBatch}
	if coll, found := s.cats.ByLocation(p); found {
		q.Collection = coll
	} else if err := s.checkListable(r.Context(), p); err != nil {
		return nil, err
	}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if body.JSON != nil {
		if q.Filters, err = entityFilters(body); err != nil {
			return nil, err
		}
	}
	matcher, err := collectionMatcher(r, body)
	if err != nil {
		return nil, err
	}
	if err := matcher.normalizeLinkEnds(); err != nil {
		return nil, err
	}
	limit, skip, err := pagination(r)
	if err != nil {
		return nil, err
	}
	st := &entityStream{srv: s, skip: skip, limit: limit}
	if !matcher.empty() {
		st.matcher = matcher
		q.Where = matcher.selectors(s.cats, s.entities.KindSelector)
	} else if limit > 0 {
		// Nothing is dropped after the store: it need not read further
		// than the page's end.
		q.Limit = skip + limit
	}
	ctx := r.Context()
	// OCCI 1.2 JSON lists resources and links in two arrays: two passes,
	// resources first.
	passes := []entities.ListQuery{q}
	if rend == renderJSON12 {
		res, links := q, q
		res.Where = append(append([]map[string]any{}, q.Where...), map[string]any{"type": model.TypeResource})
		links.Where = append(append([]map[string]any{}, q.Where...), map[string]any{"type": model.TypeLink})
		passes = []entities.ListQuery{res, links}
	}
	for _, pq := range passes {
		pages, err := s.entities.Pages(ctx, pq)
		if err != nil {
			return nil, err
		}
		st.passes = append(st.passes, pages)
	}
	first, err := st.next(ctx)
	if err != nil {
		return nil, err
	}
	firstLinks, err := s.listingLinks(ctx, rend, first)
	if err != nil {
		return nil, err
	}
	base := s.base(r)
	if rend == renderTextOCCI {
		var locs []string
		for batch := first; len(batch) > 0; {
			for _, e := range batch {
				locs = append(locs, e.Location)
			}
			if batch, err = st.next(ctx); err != nil {
				return nil, err
			}
		}
		return locationsResponse(rend, ctype, base, locs), nil
	}
	resp := &response{status: http.StatusOK, rend: rend, ctype: ctype}
	resp.stream = func(w flushWriter) error {
		enc := newCollectionEncoder(s, w, rend, base)
		for batch, links := first, firstLinks; len(batch) > 0; {
			if err := enc.batch(ctx, batch, links); err != nil {
				return err
			}
			first, firstLinks = nil, nil // let the first batch be collected
			// The client has each batch before the next is read.
			if err := w.Flush(); err != nil {
				return err
			}
			var err error
			if batch, err = st.next(ctx); err != nil {
				return err
			}
			if links, err = s.listingLinks(ctx, rend, batch); err != nil {
				return err
			}
		}
		return enc.end()
	}
	return resp, nil
}

// entityStream reads a listing's batches: the store's, then the filter's
// exact match and the page applied.
type entityStream struct {
	srv     *Server
	passes  []*entities.Pages
	matcher *entityMatcher // nil: the store query is exact
	// skip and limit are the page; sent counts the entities returned.
	skip, limit, sent int
}

// next returns the next non-empty batch, or none at the end.
func (st *entityStream) next(ctx context.Context) ([]*model.Entity, error) {
	for len(st.passes) > 0 {
		if st.limit > 0 && st.sent >= st.limit {
			return nil, nil
		}
		batch, err := st.passes[0].Next(ctx)
		if err != nil {
			return nil, err
		}
		if len(batch) == 0 {
			st.passes = st.passes[1:]
			continue
		}
		if st.matcher != nil {
			batch = st.srv.filterEntities(batch, st.matcher)
		}
		if st.skip > 0 {
			k := min(st.skip, len(batch))
			batch, st.skip = batch[k:], st.skip-k
		}
		if st.limit > 0 && len(batch) > st.limit-st.sent {
			batch = batch[:st.limit-st.sent]
		}
		st.sent += len(batch)
		if len(batch) > 0 {
			return batch, nil
		}
	}
	return nil, nil
}

// collectionEncoder writes a collection rendering one entity at a time.
type collectionEncoder struct {
	srv  *Server
	w    io.Writer
	rend rendering
	base string
	// open is the JSON array being written ("" before the first entity).
	open  string
	count int
	buf   bytes.Buffer
	enc   *json.Encoder
}

func newCollectionEncoder(s *Server, w io.Writer, rend rendering, base string) *collectionEncoder {
	c := &collectionEncoder{srv: s, w: w, rend: rend, base: base}
	c.enc = json.NewEncoder(&c.buf)
	c.enc.SetEscapeHTML(false)
	return c
}

// listingLinks reads the links of a listing's batch of resources, in one
// store query, for the renderings that show them (1.2 JSON).
func (s *Server) listingLinks(ctx context.Context, rend rendering, batch []*model.Entity) (map[string][]*model.Entity, error) {
	if rend != renderJSON12 {
		return nil, nil
	}
	return s.linksBySource(ctx, batch)
}

// batch writes a batch of the listing; links are its resources' links by
// source (listingLinks). In 1.2 JSON the batch's resources come before its
// links.
func (c *collectionEncoder) batch(ctx context.Context, batch []*model.Entity, links map[string][]*model.Entity) error {
	for _, e := range batch {
		if err := c.entity(ctx, e, links[e.Location]); err != nil {
			return err
		}
	}
	return nil
}

// entity writes one entity of the listing; links are a resource's links.
func (c *collectionEncoder) entity(ctx context.Context, e *model.Entity, links []*model.Entity) error {
	c.buf.Reset()
	abs := c.base + e.Location
	switch c.rend {
	case renderPyOCNI:
		if c.count == 0 {
			c.buf.WriteString(`{"X-OCCI-Location":[`)
		} else {
			c.buf.WriteByte(',')
		}
		if err := c.encode(abs); err != nil {
			return err
		}
	case renderJSON12:
		key := "resources"
		if e.Type == model.TypeLink {
			key = "links"
		}
		switch c.open {
		case key:
			c.buf.WriteByte(',')
		case "":
			c.buf.WriteString(`{"` + key + `":[`)
		default:
			c.buf.WriteString(`],"` + key + `":[`)
		}
		c.open = key
		v, err := c.srv.viewOf(ctx, e, links)
		if err != nil {
			return err
		}
		if err := c.encode(entity12(v, c.base)); err != nil {
			return err
		}
	case renderURIList:
		c.buf.WriteString(abs + "\n")
	default:
		c.buf.WriteString("X-OCCI-Location: " + abs + "\n")
	}
	c.count++
	_, err := c.w.Write(c.buf.Bytes())
	return err
}

// encode appends v's JSON, without the encoder's newline.
func (c *collectionEncoder) encode(v any) error {
	if err := c.enc.Encode(v); err != nil {
		return err
	}
	c.buf.Truncate(c.buf.Len() - 1)
	return nil
}

// end closes the rendering.
func (c *collectionEncoder) end() error {
	var tail string
	switch c.rend {
	case renderPyOCNI:
		tail = "]}\n"
		if c.count == 0 {
			tail = `{"X-OCCI-Location":[]}` + "\n"
		}
	case renderJSON12:
		tail = "]}\n"
		if c.open == "" {
			tail = `{"resources":[]}` + "\n"
		}
	}
	_, err := io.WriteString(c.w, tail)
	return err
}
