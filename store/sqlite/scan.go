package sqlite

import (
	"bytes"
	"encoding/json"
	"strconv"
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
func scanBody(raw []byte) (body []byte, rows map[fieldRow]struct{}, ok bool) {
	s := bodyScanner{data: raw, rows: make(map[fieldRow]struct{}, 32)}
	if !s.root() {
		return nil, nil, false
	}
	if s.spaced {
		var buf bytes.Buffer
		buf.Grow(len(raw))
		if json.Compact(&buf, raw) != nil {
			return nil, nil, false
		}
		return buf.Bytes(), s.rows, true
	}
	return bytes.Clone(raw), s.rows, true
}

// scanRows is scanBody's rows alone, for a stored (already compact) body.
func scanRows(raw []byte) (map[fieldRow]struct{}, bool) {
	s := bodyScanner{data: raw, rows: make(map[fieldRow]struct{}, 32)}
	if !s.root() {
		return nil, false
	}
	return s.rows, true
}

// maxScanNesting is encoding/json's nesting limit; deeper bodies go to it
// for its error.
const maxScanNesting = 10000

// maxScanKeys bounds the members of one indexed object checked for
// repeats one by one; bigger objects go to the decoding path.
const maxScanKeys = 64

type bodyScanner struct {
	data    []byte
	i       int
	nesting int
	spaced  bool   // insignificant whitespace seen: the body needs compacting
	path    []byte // pathKey of the value being scanned
	keys    [][]string
	rows    map[fieldRow]struct{}
}

// root scans the top-level object, whose members are at depth 1.
func (s *bodyScanner) root() bool {
	s.space()
	if s.i >= len(s.data) || s.data[s.i] != '{' {
		return false
	}
	if !s.object(0, true, true) {
		return false
	}
	s.space()
	return s.i == len(s.data)
}

func (s *bodyScanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.spaced = true
			s.i++
		default:
			return
		}
	}
}

func (s *bodyScanner) row(v fieldValue) {
	s.rows[fieldRow{path: string(s.path), val: v}] = struct{}{}
}

// value scans one value at the current path; depth counts its path
// segments, and indexed says whether it gets rows.
func (s *bodyScanner) value(depth int, indexed bool) bool {
	s.space()
	if s.i >= len(s.data) {
		return false
	}
	switch c := s.data[s.i]; {
	case c == '{':
		if indexed {
			s.row(tagValue(tagObject))
		}
		return s.object(depth, indexed && depth < maxIndexDepth, false)
	case c == '[':
		if indexed {
			s.row(tagValue(tagArray))
		}
		return s.array(depth, indexed)
	case c == '"':
		str, ok := s.str(indexed)
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
		return s.number(indexed)
	}
	return false
}

func (s *bodyScanner) literal(word string, indexed bool, tag []byte) bool {
	if !bytes.HasPrefix(s.data[s.i:], []byte(word)) {
		return false
	}
	s.i += len(word)
	if indexed {
		s.row(tagValue(tag))
	}
	return true
}

// object scans an object whose members are at depth+1; members says
// whether they are indexed, top whether this is the document itself.
func (s *bodyScanner) object(depth int, members, top bool) bool {
	if s.nesting++; s.nesting > maxScanNesting {
		return false
	}
	defer func() { s.nesting-- }()
	s.i++ // '{'
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
	s.space()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		return true
	}
	for {
		s.space()
		if s.i >= len(s.data) || s.data[s.i] != '"' {
			return false
		}
		key, ok := s.str(members)
		if !ok {
			return false
		}
		s.space()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return false
		}
		s.i++
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
			s.path = appendPathSegment(s.path, key)
		}
		if !s.value(depth+1, members) {
			return false
		}
		s.path = s.path[:mark]
		s.space()
		if s.i >= len(s.data) {
			return false
		}
		switch s.data[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// array scans an array; its elements are indexed under its own path.
func (s *bodyScanner) array(depth int, indexed bool) bool {
	if s.nesting++; s.nesting > maxScanNesting {
		return false
	}
	defer func() { s.nesting-- }()
	s.i++ // '['
	s.space()
	if s.i < len(s.data) && s.data[s.i] == ']' {
		s.i++
		return true
	}
	for {
		if !s.value(depth, indexed) {
			return false
		}
		s.space()
		if s.i >= len(s.data) {
			return false
		}
		switch s.data[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// str scans a string and, when want is set, returns its value. Strings
// with escapes or bytes outside ASCII are decoded by encoding/json, so
// that escapes and invalid UTF-8 come out exactly as decoding gives them.
func (s *bodyScanner) str(want bool) (string, bool) {
	start := s.i
	s.i++ // '"'
	plain := true
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			if !want {
				return "", true
			}
			if plain {
				return string(s.data[start+1 : s.i-1]), true
			}
			var v string
			if json.Unmarshal(s.data[start:s.i], &v) != nil {
				return "", false
			}
			return v, true
		case c == '\\':
			plain = false
			if !s.escape() {
				return "", false
			}
		case c < 0x20:
			return "", false
		default:
			if c >= 0x80 {
				plain = false
			}
			s.i++
		}
	}
	return "", false
}

// escape checks the escape sequence at s.i and moves past it.
func (s *bodyScanner) escape() bool {
	if s.i+1 >= len(s.data) {
		return false
	}
	switch s.data[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return true
	case 'u':
		if s.i+6 > len(s.data) {
			return false
		}
		for _, h := range s.data[s.i+2 : s.i+6] {
			if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
				return false
			}
		}
		s.i += 6
		return true
	}
	return false
}

// number scans a number by JSON's grammar.
func (s *bodyScanner) number(indexed bool) bool {
	start := s.i
	if s.data[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	switch {
	case s.i < len(s.data) && s.data[s.i] == '0':
		s.i++
	case digits() == 0:
		return false
	}
	if s.i < len(s.data) && s.data[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return false
		}
	}
	if s.i < len(s.data) && (s.data[s.i] == 'e' || s.data[s.i] == 'E') {
		s.i++
		if s.i < len(s.data) && (s.data[s.i] == '+' || s.data[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return false
		}
	}
	if !indexed {
		return true
	}
	f, err := strconv.ParseFloat(string(s.data[start:s.i]), 64)
	if err != nil {
		return false
	}
	s.row(fieldValue{kind: kindNumber, num: f})
	return true
}

// appendPathSegment appends one segment to a pathKey, as appendSegment.
func appendPathSegment(b []byte, seg string) []byte {
	for i := 0; i < len(seg); i++ {
		switch seg[i] {
		case 0:
			b = append(b, 1, 1)
		case 1:
			b = append(b, 1, 2)
		default:
			b = append(b, seg[i])
		}
	}
	return append(b, 0)
}
