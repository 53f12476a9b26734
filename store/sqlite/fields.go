package sqlite

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The fields table is the secondary index that answers selectors without
// reading documents: one row (path, value, doc) per scalar leaf of a document,
// plus a marker row for every nested object and array. Arrays are transparent:
// their elements are indexed under the array's own path, so {"mixins":["a"]}
// yields (mixins, "a") and (mixins, <array>), and {"links":[{"t":"x"}]} yields
// (links.t, "x"). Index lookups only ever produce a superset of the matches;
// the selector matcher decides.
//
// The index stops at maxIndexDepth path segments: an object there gets its
// marker row but nothing below it. A condition on a deeper path narrows to
// the documents with an object at its first maxIndexDepth segments (the
// only place such a value can be), and the matcher decides. Free-form
// values, such as a message's content or an action's result, would
// otherwise add a row per leaf to every write, and the rows, not the
// document, were most of the cost of storing one.
//
// A document's rows are capped, so that one huge document (an array of
// 300,000 topics, a result with 150,000 members) cannot hold the single
// writer for seconds: an array of more than maxIndexedElements elements and
// an object of more than maxIndexedMembers members get their marker row and
// a "partial" row at their path, and nothing for what is inside them; a
// document with more than maxDocRows rows even so gets only one partial row,
// at the empty path. A condition on a path also admits the documents with a
// partial row at that path or any of its prefixes (the empty one included),
// so lookups still give a superset, and the matcher decides. Paths that ever
// had a partial row are listed in the partial_paths table, so queries look
// for partial rows only where there can be some.
//
// Values keep their JSON type through SQLite's storage classes: numbers are
// REAL, strings TEXT, and null, booleans and the container markers small
// BLOBs. SQLite orders NULL < numbers < TEXT < BLOB, which agrees with CouchDB
// collation (… numbers < strings < arrays < objects) everywhere except for
// null and booleans, which CouchDB puts first; range conditions add those back
// explicitly.
var (
	tagNull   = []byte{0x00}
	tagFalse  = []byte{0x01}
	tagTrue   = []byte{0x02}
	tagArray  = []byte{0x10}
	tagObject = []byte{0x11}
	// tagPartial: the values at or below this path are not all indexed.
	tagPartial = []byte{0x20}
)

// Row caps; see above.
const (
	maxIndexedElements = 1000
	maxIndexedMembers  = 1000
	maxDocRows         = 10000
)

// capRows applies the document cap to a finished set of rows.
func capRows(rows map[fieldRow]struct{}) map[fieldRow]struct{} {
	if len(rows) <= maxDocRows {
		return rows
	}
	return map[fieldRow]struct{}{{path: "", val: tagValue(tagPartial)}: {}}
}

// Value kinds of an index row.
const (
	kindNumber = iota
	kindString
	kindTag
)

// fieldValue is one indexed value; comparable, so rows can be diffed in maps.
type fieldValue struct {
	kind byte
	num  float64
	str  string // the string, or the tag bytes
}

func (v fieldValue) sqlValue() any {
	switch v.kind {
	case kindNumber:
		return v.num
	case kindString:
		return v.str
	}
	return []byte(v.str)
}

func tagValue(tag []byte) fieldValue { return fieldValue{kind: kindTag, str: string(tag)} }

// fieldRow is an index row before its path is interned.
type fieldRow struct {
	path string // pathKey of the segments
	val  fieldValue
}

// pathKey encodes path segments unambiguously: each segment is followed by a
// NUL byte, and NUL and 0x01 inside a segment are escaped.
func pathKey(segs []string) string {
	var b []byte
	for _, s := range segs {
		b = appendSegment(b, s)
	}
	return string(b)
}

// appendSegment appends one segment, escaped and terminated, to a pathKey.
func appendSegment(b []byte, s string) []byte {
	if strings.IndexByte(s, 0) < 0 && strings.IndexByte(s, 1) < 0 {
		b = append(b, s...)
	} else {
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case 0:
				b = append(b, 1, 1)
			case 1:
				b = append(b, 1, 2)
			default:
				b = append(b, s[i])
			}
		}
	}
	return append(b, 0)
}

// scalarValue returns the index value of a JSON scalar (float64 or
// json.Number numbers), and false for arrays and objects.
func scalarValue(v any) (fieldValue, bool, error) {
	switch t := v.(type) {
	case nil:
		return tagValue(tagNull), true, nil
	case bool:
		if t {
			return tagValue(tagTrue), true, nil
		}
		return tagValue(tagFalse), true, nil
	case float64:
		return fieldValue{kind: kindNumber, num: t}, true, nil
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil {
			return fieldValue{}, false, fmt.Errorf("number %s: %w", t, err)
		}
		return fieldValue{kind: kindNumber, num: f}, true, nil
	case string:
		return fieldValue{kind: kindString, str: t}, true, nil
	}
	return fieldValue{}, false, nil
}

// maxIndexDepth is the number of path segments the index reaches: deep
// enough for every entity attribute (attributes.<scheme>.<kind>.<name>
// and one more level).
const maxIndexDepth = 5

// unindexedPaths are the pathKeys of WithUnindexed (false) and
// WithUnsearched (true). At a WithUnindexed path a value gets its own row
// (an object's or array's marker, and then a partial row), and nothing
// inside it is indexed; at a WithUnsearched path nothing is, and Find
// does not look the path up (see narrow). nil indexes everything.
type unindexedPaths map[string]bool

// has reports whether the pathKey path is a WithUnindexed path.
func (u unindexedPaths) has(path []byte) bool {
	if len(u) == 0 {
		return false
	}
	unsearched, ok := u[string(path)]
	return ok && !unsearched
}

// omits reports whether the pathKey path is a WithUnsearched path.
func (u unindexedPaths) omits(path []byte) bool {
	return len(u) > 0 && u[string(path)]
}

// omitsAny reports whether a WithUnsearched path is path or one of its
// prefixes: the index has no row for a value there.
func (u unindexedPaths) omitsAny(path []string) bool {
	if len(u) == 0 {
		return false
	}
	var key []byte
	for _, seg := range path {
		key = appendSegment(key, seg)
		if u[string(key)] {
			return true
		}
	}
	return false
}

// indexRows lists the index rows of a document body.
func indexRows(body map[string]any, skip unindexedPaths) (map[fieldRow]struct{}, error) {
	rows := make(map[fieldRow]struct{}, 2*len(body))
	var walk func(prefix string, depth int, v any) error
	walk = func(prefix string, depth int, v any) error {
		if skip[prefix] { // a WithUnsearched path (omits, without a conversion)
			return nil
		}
		switch t := v.(type) {
		case map[string]any:
			rows[fieldRow{prefix, tagValue(tagObject)}] = struct{}{}
			if skip.has([]byte(prefix)) {
				rows[fieldRow{prefix, tagValue(tagPartial)}] = struct{}{}
				return nil
			}
			if depth == maxIndexDepth {
				return nil
			}
			if len(t) > maxIndexedMembers {
				rows[fieldRow{prefix, tagValue(tagPartial)}] = struct{}{}
				return nil
			}
			for k, c := range t {
				if err := walk(string(appendSegment([]byte(prefix), k)), depth+1, c); err != nil {
					return err
				}
			}
		case []any:
			rows[fieldRow{prefix, tagValue(tagArray)}] = struct{}{}
			if len(t) > maxIndexedElements || skip.has([]byte(prefix)) {
				rows[fieldRow{prefix, tagValue(tagPartial)}] = struct{}{}
				return nil
			}
			for _, e := range t {
				if err := walk(prefix, depth, e); err != nil {
					return err
				}
			}
		default:
			fv, _, err := scalarValue(v)
			if err != nil {
				return err
			}
			rows[fieldRow{prefix, fv}] = struct{}{}
		}
		return nil
	}
	for k, v := range body {
		if err := walk(string(appendSegment(nil, k)), 1, v); err != nil {
			return nil, err
		}
	}
	return capRows(rows), nil
}

// errBody marks a document body that is not a JSON object; callers wrap it
// with ErrInvalid.
var errBody = errors.New("body must be a JSON object")

// decodeBody parses a body, keeping numbers exact (json.Number).
func decodeBody(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", errBody, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the object", errBody)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errBody
	}
	return obj, nil
}

// canonicalBody validates a body for storage and returns it compacted,
// without _id and _rev (which callers coming from CouchDB may leave in).
// Other top-level names starting with "_" are reserved, as in CouchDB.
func canonicalBody(raw []byte) ([]byte, map[string]any, error) {
	obj, err := decodeBody(raw)
	if err != nil {
		return nil, nil, err
	}
	stripped := false
	for k := range obj {
		if !strings.HasPrefix(k, "_") {
			continue
		}
		if k != "_id" && k != "_rev" {
			return nil, nil, fmt.Errorf("%w: reserved member %q", errBody, k)
		}
		delete(obj, k)
		stripped = true
	}
	if stripped {
		out, err := json.Marshal(obj)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", errBody, err)
		}
		return out, obj, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errBody, err)
	}
	return buf.Bytes(), obj, nil
}
