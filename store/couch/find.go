package couch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/mango"
)

// allRows is the _find limit that means "no limit": CouchDB's _find returns
// at most 25 documents when the request has none.
const allRows = math.MaxInt32

// findQuery is the body of POST /db/_find.
type findQuery struct {
	Selector json.RawMessage     `json:"selector"`
	Sort     []map[string]string `json:"sort,omitempty"`
	Limit    int                 `json:"limit"`
	Skip     int                 `json:"skip,omitempty"`
}

// Find implements store.Store with CouchDB's _find. Sorting on fields needs
// an index over them (EnsureIndex) whose fields the selector constrains, as
// CouchDB requires; without one the error wraps store.ErrInvalid.
func (s *Store) Find(ctx context.Context, q store.Query) ([]store.Document, error) {
	if q.Limit < 0 || q.Skip < 0 {
		return nil, fmt.Errorf("couch: find: %w: negative limit or skip", store.ErrInvalid)
	}
	sel := bytes.TrimSpace(q.Selector)
	if len(sel) == 0 || string(sel) == "null" {
		sel = []byte("{}")
	}
	// CouchDB and its PouchDB test peer accept selectors the embedded store
	// refuses ($beginsWith, PCRE-only regexps), and the peer notices some
	// mistakes only when it meets a document with the field: one parser
	// decides for both stores.
	if _, err := mango.Parse(sel); err != nil {
		return nil, fmt.Errorf("couch: find: %w: %w", store.ErrInvalid, err)
	}
	limit := q.Limit
	if limit == 0 {
		limit = allRows
	}

	if len(q.Sort) == 0 {
		if q.Limit == 0 && q.Skip == 0 {
			// Everything matches anyway: let CouchDB pick the best index for
			// the selector and put the result in _id order here.
			docs, err := s.find(ctx, findQuery{Selector: sel, Limit: allRows})
			slices.SortFunc(docs, func(a, b store.Document) int { return strings.Compare(a.ID, b.ID) })
			return docs, err
		}
		// A page in _id order: only the primary index can give it. CouchDB
		// leaves design documents out of it, the PouchDB peer counts them
		// for skip: say it in the selector, which costs CouchDB nothing.
		sel = slices.Concat([]byte(`{"$and":[`), sel, []byte(`,{"_id":{"$regex":"^[^_]"}}]}`))
		return s.find(ctx, findQuery{Selector: sel, Sort: []map[string]string{{"_id": "asc"}}, Limit: limit, Skip: q.Skip})
	}

	sortSpec := make([]map[string]string, len(q.Sort))
	desc := q.Sort[0].Desc
	for i, f := range q.Sort {
		if f.Field == "" {
			return nil, fmt.Errorf("couch: find: %w: empty sort field", store.ErrInvalid)
		}
		if f.Desc != desc {
			return nil, fmt.Errorf("couch: find: %w: CouchDB sorts all fields in one direction", store.ErrInvalid)
		}
		dir := "asc"
		if f.Desc {
			dir = "desc"
		}
		sortSpec[i] = map[string]string{f.Field: dir}
	}
	if !desc {
		// A json index orders equal keys by _id: CouchDB's order is ours.
		return s.find(ctx, findQuery{Selector: sel, Sort: sortSpec, Limit: limit, Skip: q.Skip})
	}
	return s.findDesc(ctx, sel, sortSpec, q)
}

// findDesc serves a descending sort. CouchDB walks the index backwards, so
// documents with equal sort keys come in descending _id order, and the store
// promises ascending: each run of equal keys is reversed here. That needs
// the whole run at the end of the page, so the page is fetched from the
// start with one document more, and everything if that one ties.
func (s *Store) findDesc(ctx context.Context, sel json.RawMessage, sortSpec []map[string]string, q store.Query) ([]store.Document, error) {
	paths := make([][]string, len(q.Sort))
	for i, f := range q.Sort {
		p, err := mango.SplitField(f.Field)
		if err != nil {
			return nil, fmt.Errorf("couch: find: %w: sort: %w", store.ErrInvalid, err)
		}
		paths[i] = p
	}
	fetch := allRows
	if q.Limit > 0 && q.Skip+q.Limit < allRows-1 {
		fetch = q.Skip + q.Limit + 1
	}
	docs, err := s.find(ctx, findQuery{Selector: sel, Sort: sortSpec, Limit: fetch})
	if err != nil {
		return nil, err
	}
	keys := make([][]any, len(docs))
	for i, d := range docs {
		keys[i] = sortKey(d.Body, paths)
	}
	if fetch < allRows && len(docs) == fetch && reflect.DeepEqual(keys[fetch-1], keys[fetch-2]) {
		if docs, err = s.find(ctx, findQuery{Selector: sel, Sort: sortSpec, Limit: allRows}); err != nil {
			return nil, err
		}
		keys = keys[:0]
		for _, d := range docs {
			keys = append(keys, sortKey(d.Body, paths))
		}
	}
	for start := 0; start < len(docs); {
		end := start + 1
		for end < len(docs) && reflect.DeepEqual(keys[end], keys[start]) {
			end++
		}
		slices.Reverse(docs[start:end])
		start = end
	}
	if q.Skip >= len(docs) {
		return nil, nil
	}
	docs = docs[q.Skip:]
	if q.Limit > 0 && q.Limit < len(docs) {
		docs = docs[:q.Limit]
	}
	return docs, nil
}

// find runs one _find and returns the documents, design documents left out.
func (s *Store) find(ctx context.Context, q findQuery) (docs []store.Document, err error) {
	err = s.retry(ctx, func() error {
		var err error
		docs, err = s.find1(ctx, q)
		return err
	})
	return docs, err
}

func (s *Store) find1(ctx context.Context, q findQuery) ([]store.Document, error) {
	rs := s.db.Find(ctx, q)
	defer rs.Close()
	var docs []store.Document
	for rs.Next() {
		var raw json.RawMessage
		if err := rs.ScanDoc(&raw); err != nil {
			return nil, fmt.Errorf("couch: find: %w", mapError(ctx, err))
		}
		body, id, rev, err := stripUnderscore(raw)
		if err != nil {
			return nil, fmt.Errorf("couch: find: document: %w", err)
		}
		if id == "" || id[0] == '_' {
			continue
		}
		docs = append(docs, store.Document{ID: id, Rev: rev, Body: body})
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("couch: find %s: %w", q.Selector, mapError(ctx, err))
	}
	if meta, err := rs.Metadata(); err == nil && meta.Warning != "" {
		s.log.Debug("couch: find warning", "selector", string(q.Selector), "warning", meta.Warning)
	}
	return docs, nil
}

// EnsureIndex implements store.Store: a json index named name in the design
// document _design/<name>. CouchDB answers "exists" for an identical one.
func (s *Store) EnsureIndex(ctx context.Context, name string, fields []string) error {
	if name == "" || len(fields) == 0 || slices.Contains(fields, "") {
		return fmt.Errorf("couch: ensure index %q: %w: need a name and non-empty fields", name, store.ErrInvalid)
	}
	s.restoreMu.Lock()
	i := slices.IndexFunc(s.indexes, func(ix index) bool { return ix.name == name })
	if i < 0 {
		s.indexes = append(s.indexes, index{name: name, fields: slices.Clone(fields)})
	} else {
		s.indexes[i].fields = slices.Clone(fields)
	}
	s.restoreMu.Unlock()
	err := s.retry(ctx, func() error {
		return s.db.CreateIndex(ctx, name, name, map[string]any{"fields": fields})
	})
	if err != nil {
		return fmt.Errorf("couch: ensure index %q: %w", name, mapError(ctx, err))
	}
	return nil
}

// sortKey extracts the values at paths from a JSON object body; a missing
// value is nil. Numbers decode as float64, so 1 and 1.0 tie as in CouchDB.
func sortKey(body []byte, paths [][]string) []any {
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil
	}
	key := make([]any, len(paths))
	for i, path := range paths {
		v := doc
		for _, seg := range path {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[seg]
		}
		key[i] = v
	}
	return key
}
