package couch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cmbs/cmbs/internal/jsonscan"
)

// Documents pass through this package as raw JSON: CouchDB adds _id and _rev
// to every body it returns and the store must hand back the body without
// them, and bodies going in must not carry underscore members. Decoding each
// body into a map and encoding it again would double the CPU cost of a Get or
// Put, so the functions here walk the top level of an object in place.

var errNotObject = errors.New("body is not a JSON object")

// member is one top-level member of a JSON object: raw[start:end] spans
// `"key":value`, and key is the decoded key.
type member struct {
	key        string
	start, end int
	valueStart int
}

// walkObject calls fn for each top-level member of raw, which must be valid
// JSON (json.Valid); fn returning false stops the walk. It fails if raw is not
// an object.
func walkObject(raw []byte, fn func(m member) bool) error {
	s := jsonscan.Scanner{Data: raw}
	if !s.Consume('{') {
		return errNotObject
	}
	if s.Consume('}') {
		return nil
	}
	for {
		if c, ok := s.Next(); !ok || c != '"' {
			return errNotObject
		}
		m := member{start: s.Pos}
		key, ok := s.String(true)
		if !ok || !s.Consume(':') {
			return fmt.Errorf("member key at byte %d: %w", m.start, errNotObject)
		}
		m.key = key
		s.Space()
		m.valueStart = s.Pos
		if !s.Skip() {
			return fmt.Errorf("member %q: %w", key, errNotObject)
		}
		m.end = s.Pos
		if !fn(m) {
			return nil
		}
		if more, ok := s.More('}'); !more {
			if !ok {
				return errNotObject
			}
			return nil
		}
	}
}

// checkBody validates a body for Put: a JSON object whose members do not
// start with "_", except _id and _rev, which it strips (the document's ID and
// Rev say where and what to write). The common case returns body itself.
func checkBody(body []byte) ([]byte, error) {
	if len(body) == 0 {
		return nil, errors.New("empty body")
	}
	if !json.Valid(body) {
		return nil, errors.New("body is not valid JSON")
	}
	var strip bool
	var bad string
	err := walkObject(body, func(m member) bool {
		if len(m.key) == 0 || m.key[0] != '_' {
			return true
		}
		if m.key == "_id" || m.key == "_rev" {
			strip = true
			return true
		}
		bad = m.key
		return false
	})
	switch {
	case err != nil:
		return nil, err
	case bad != "":
		return nil, fmt.Errorf("reserved member %q in body", bad)
	case strip:
		out, _, _, err := stripUnderscore(bytes.Clone(body))
		return out, err
	}
	return body, nil
}

// stripUnderscore removes every top-level member whose key starts with "_"
// from the JSON object raw, in place, and returns the shortened slice and the
// string values of _id and _rev, if present. raw must be valid JSON.
func stripUnderscore(raw []byte) (out []byte, id, rev string, err error) {
	// Members are copied towards the start as the walk passes them; the
	// write cursor never overtakes the read position, and a member is read
	// (its _id or _rev decoded) before anything is written over it.
	w, kept := 1, 0
	err = walkObject(raw, func(m member) bool {
		if len(m.key) > 0 && m.key[0] == '_' {
			// CouchDB's _id and _rev are strings; anything else is no id.
			switch m.key {
			case "_id":
				_ = json.Unmarshal(raw[m.valueStart:m.end], &id)
			case "_rev":
				_ = json.Unmarshal(raw[m.valueStart:m.end], &rev)
			}
			return true
		}
		if kept > 0 {
			raw[w] = ','
			w++
		}
		kept++
		w += copy(raw[w:], raw[m.start:m.end])
		return true
	})
	if err != nil {
		return nil, "", "", err
	}
	raw[0] = '{'
	raw[w] = '}'
	return raw[:w+1], id, rev, nil
}
