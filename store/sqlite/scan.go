package sqlite

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/cmbs/cmbs/internal/jsonscan"
)

// scanBody does what canonicalBody and indexRows do together, in one pass
// over the bytes and without building the document as maps: decoding a
// body only to list its index rows was the largest part of a write's CPU.
// It handles the bodies a client or this project normally writes; for
// anything unusual (a syntax error, a top-level "_" member, a repeated
// member name where it would be indexed, a number out of float64 range,
// very deep nesting) it reports ok=false, and the caller uses the decoding
// path, which gives the exact result or error. Where it reports ok, its
// body and rows equal theirs (FuzzScanBodyAgrees).
func scanBody(raw []byte, skip unindexedPaths) (body []byte, rows map[fieldRow]struct{}, ok bool) {
	s, ok := scan(raw, skip)
	if !ok {
		return nil, nil, false
	}
	rows = s.rowSet()
	if s.Spaced {
		var buf bytes.Buffer
		buf.Grow(len(raw))
		if json.Compact(&buf, raw) != nil {
			return nil, nil, false
		}
		return buf.Bytes(), rows, true
	}
	return bytes.Clone(raw), rows, true
}

// scan reads a whole body, listing its rows.
func scan(raw []byte, skip unindexedPaths) (*bodyScanner, bool) {
	s := &bodyScanner{Scanner: jsonscan.Scanner{Data: raw}, rows: make([]fieldRow, 0, 32), skip: skip}
	return s, s.root()
}

// rowSet is the scanned rows as a set, with the document cap applied.
func (s *bodyScanner) rowSet() map[fieldRow]struct{} {
	set := make(map[fieldRow]struct{}, len(s.rows))
	for _, r := range s.rows {
		set[r] = struct{}{}
	}
	return capRows(set)
}

// maxScanKeys bounds the members of one indexed object checked for
// repeats one by one; bigger objects go to the decoding path.
const maxScanKeys = 64

type bodyScanner struct {
	jsonscan.Scanner
	path []byte // pathKey of the value being scanned
	keys [][]string
	// rows in scan order, repeats included: an array found too long
	// drops the rows of its elements by truncating.
	rows []fieldRow
	skip unindexedPaths
}

// root scans the top-level object, whose members are at depth 1.
func (s *bodyScanner) root() bool {
	if c, ok := s.Next(); !ok || c != '{' {
		return false
	}
	return s.object(0, true, true) && s.AtEnd()
}

func (s *bodyScanner) row(v fieldValue) {
	s.rows = append(s.rows, fieldRow{path: string(s.path), val: v})
}

// value scans one value at the current path; depth counts its path
// segments, and indexed says whether it gets rows.
func (s *bodyScanner) value(depth int, indexed bool) bool {
	c, ok := s.Next()
	if !ok {
		return false
	}
	switch {
	case c == '{':
		if indexed {
			s.row(tagValue(tagObject))
			if s.skip.has(s.path) {
				s.row(tagValue(tagPartial))
				indexed = false
			}
		}
		return s.object(depth, indexed && depth < maxIndexDepth, false)
	case c == '[':
		if indexed {
			s.row(tagValue(tagArray))
			if s.skip.has(s.path) {
				s.row(tagValue(tagPartial))
				indexed = false
			}
		}
		return s.array(depth, indexed)
	case c == '"':
		str, ok := s.String(indexed)
		if ok && indexed {
			s.row(fieldValue{kind: kindString, str: str})
		}
		return ok
	case c == 't':
		return s.literal("true", indexed, tagTrue)
	case c == 'f':
		return s.literal("false", indexed, tagFalse)
	case c == 'n':
		return s.literal("null", indexed, tagNull)
	case c == '-' || c >= '0' && c <= '9':
		text, ok := s.Number()
		if !ok {
			return false
		}
		if indexed {
			f, err := strconv.ParseFloat(string(text), 64)
			if err != nil {
				return false // out of range: decoding refuses it
			}
			s.row(fieldValue{kind: kindNumber, num: f})
		}
		return true
	}
	return false
}

func (s *bodyScanner) literal(word string, indexed bool, tag []byte) bool {
	if !s.Literal(word) {
		return false
	}
	if indexed {
		s.row(tagValue(tag))
	}
	return true
}

// object scans an object whose members are at depth+1; members says
// whether they are indexed, top whether this is the document itself.
func (s *bodyScanner) object(depth int, members, top bool) bool {
	defer s.Leave()
	if !s.Enter() {
		return false
	}
	level := -1
	if members {
		// Each indexed object keeps its member names to catch repeats,
		// where decoding keeps only the last value.
		level = len(s.keys)
		if level < cap(s.keys) {
			s.keys = s.keys[:level+1]
			s.keys[level] = s.keys[level][:0]
		} else {
			s.keys = append(s.keys, nil)
		}
		defer func() { s.keys = s.keys[:level] }()
	}
	if s.Consume('}') {
		return true
	}
	for {
		if c, ok := s.Next(); !ok || c != '"' {
			return false
		}
		key, ok := s.String(members)
		if !ok || !s.Consume(':') {
			return false
		}
		mark := len(s.path)
		if members {
			if top && len(key) > 0 && key[0] == '_' {
				return false // _id and _rev are stripped, others refused
			}
			seen := s.keys[level]
			if len(seen) == maxScanKeys {
				return false
			}
			for _, k := range seen {
				if k == key {
					return false
				}
			}
			s.keys[level] = append(seen, key)
			s.path = appendSegment(s.path, key)
		}
		if !s.value(depth+1, members && !s.skip.omits(s.path)) {
			return false
		}
		s.path = s.path[:mark]
		if more, ok := s.More('}'); !more {
			return ok
		}
	}
}

// array scans an array; its elements are indexed under its own path.
func (s *bodyScanner) array(depth int, indexed bool) bool {
	defer s.Leave()
	if !s.Enter() {
		return false
	}
	if s.Consume(']') {
		return true
	}
	mark, n := len(s.rows), 0
	for {
		if n++; indexed && n > maxIndexedElements {
			// Too long to index: what its elements added goes, a
			// partial row stands for them, and the rest is only read.
			s.rows = s.rows[:mark]
			s.row(tagValue(tagPartial))
			indexed = false
		}
		if !s.value(depth, indexed) {
			return false
		}
		if more, ok := s.More(']'); !more {
			return ok
		}
	}
}
