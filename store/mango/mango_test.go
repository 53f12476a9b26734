package mango

import (
	"encoding/json"
	"errors"
	"testing"
)

// The expectations follow CouchDB's mango_selector.erl.
func TestSelectorMatch(t *testing.T) {
	cases := []struct {
		selector, doc string
		want          bool
	}{
		{`{}`, `{"a":1}`, true},
		{`{"a":1}`, `{"a":1}`, true},
		{`{"a":1}`, `{"a":1.0}`, true},
		{`{"a":1.5}`, `{"a":1.2}`, false},
		{`{"a":"1"}`, `{"a":1}`, false},
		{`{"a":{"b":1}}`, `{"a":{"b":1}}`, true},
		{`{"a":{"b":1}}`, `{"a":{"b":1,"c":2}}`, true}, // a path, not object equality
		{`{"a":{"$eq":{"b":1}}}`, `{"a":{"b":1,"c":2}}`, false},
		{`{"a":{"$eq":{"b":1}}}`, `{"a":{"b":1}}`, true},
		{`{"a":{}}`, `{"a":{}}`, true},
		{`{"a":{"$gt":1,"$lt":5}}`, `{"a":3}`, true},
		{`{"a":{"$gt":1,"$lt":5}}`, `{"a":5}`, false},
		{`{"a.b\\.c":1}`, `{"a":{"b.c":1}}`, true},
		{`{"a.b\\.c":1}`, `{"a":{"b":{"c":1}}}`, false},
		{`{"a.b.c":1}`, `{"a":{"b":{"c":1}}}`, true},
		// Field names outside ASCII (kivik's x/mango matches none of these).
		{`{"é":"s"}`, `{"é":"s"}`, true},
		{`{"attributes.l3\\.1_sécket":"s"}`, `{"attributes":{"l3.1_sécket":"s"}}`, true},
		{`{"attributes.l3\\.1_s\ufffdcket":"s"}`, `{"attributes":{"l3.1_s\ufffdcket":"s"}}`, true},
		{`{"ü.ß":1}`, `{"ü":{"ß":1}}`, true},
		{`{"ü.ß":1}`, `{"ü":{"ss":1}}`, false},
		{`{"a.1":"y"}`, `{"a":["x","y"]}`, true},
		{`{"a.b":1}`, `{"a":[{"b":1}]}`, false},
		// Missing fields match nothing but $exists:false, even through negation.
		{`{"a":{"$ne":1}}`, `{}`, false},
		{`{"a":{"$lt":1}}`, `{}`, false},
		{`{"a":{"$nin":[1]}}`, `{}`, false},
		{`{"$not":{"a":1}}`, `{}`, false},
		{`{"$not":{"a":1}}`, `{"a":2}`, true},
		{`{"$nor":[{"a":1},{"b":1}]}`, `{"a":2,"b":2}`, true},
		{`{"$nor":[{"a":1},{"b":1}]}`, `{"a":2}`, false},
		{`{"a":{"$not":{"$gt":2}}}`, `{"a":1}`, true},
		{`{"a":{"$not":{"$gt":2}}}`, `{"a":3}`, false},
		{`{"a":{"$not":{"$regex":"^x"}}}`, `{"a":"y"}`, true},
		{`{"a":{"$exists":false}}`, `{}`, true},
		{`{"a":{"$exists":true}}`, `{"a":null}`, true},
		{`{"a":{"$exists":false}}`, `{"a":null}`, false},
		{`{"a":null}`, `{}`, false},
		{`{"a":null}`, `{"a":null}`, true},
		// Collation across types.
		{`{"a":{"$gt":5}}`, `{"a":"x"}`, true},
		{`{"a":{"$gt":5}}`, `{"a":[1]}`, true},
		{`{"a":{"$lt":0}}`, `{"a":true}`, true},
		{`{"a":{"$lt":"a"}}`, `{"a":"B"}`, false}, // UCA: a < B
		// Arrays.
		{`{"a":"x"}`, `{"a":["x"]}`, false},
		{`{"a":["x"]}`, `{"a":["x"]}`, true},
		{`{"a":{"$in":["x","z"]}}`, `{"a":["y","x"]}`, true},
		{`{"a":{"$in":["z"]}}`, `{"a":["y","x"]}`, false},
		{`{"a":{"$in":[]}}`, `{"a":1}`, false},
		{`{"a":{"$nin":["z"]}}`, `{"a":["y","x"]}`, true},
		{`{"a":{"$nin":["x"]}}`, `{"a":["y","x"]}`, false},
		{`{"a":{"$all":["x","y"]}}`, `{"a":["y","x","z"]}`, true},
		{`{"a":{"$all":["x","q"]}}`, `{"a":["y","x","z"]}`, false},
		{`{"a":{"$all":[["x","y"]]}}`, `{"a":["x","y"]}`, true},
		{`{"a":{"$all":[]}}`, `{"a":["x"]}`, false},
		{`{"a":{"$all":["x"]}}`, `{"a":"x"}`, false},
		{`{"a":{"$size":2}}`, `{"a":[1,2]}`, true},
		{`{"a":{"$size":2}}`, `{"a":"ab"}`, false},
		{`{"a":{"$elemMatch":{"$gt":2,"$lt":4}}}`, `{"a":[1,3]}`, true},
		{`{"a":{"$elemMatch":{"$gt":2,"$lt":4}}}`, `{"a":[1,5]}`, false},
		{`{"a":{"$elemMatch":{"b":1,"c":{"$exists":true}}}}`, `{"a":[{"b":1},{"b":2,"c":0}]}`, false},
		{`{"a":{"$elemMatch":{"b":1,"c":{"$exists":true}}}}`, `{"a":[{"b":1,"c":0}]}`, true},
		{`{"a":{"$elemMatch":{"$not":{"$eq":1}}}}`, `{"a":[1,2]}`, true},
		{`{"a":{"$allMatch":{"$gt":0}}}`, `{"a":[1,2]}`, true},
		{`{"a":{"$allMatch":{"$gt":0}}}`, `{"a":[]}`, false},
		{`{"a":{"$keyMapMatch":{"$eq":"k"}}}`, `{"a":{"k":1}}`, true},
		// Other operators.
		{`{"a":{"$regex":"b+"}}`, `{"a":"abbc"}`, true},
		{`{"a":{"$regex":"1"}}`, `{"a":1}`, false},
		{`{"a":{"$type":"array"}}`, `{"a":[]}`, true},
		{`{"a":{"$type":"null"}}`, `{"a":null}`, true},
		{`{"a":{"$mod":[3,1]}}`, `{"a":7}`, true},
		{`{"a":{"$mod":[3,1]}}`, `{"a":7.5}`, false},
		{`{"$or":[]}`, `{"a":1}`, true},
		{`{"$and":[]}`, `{"a":1}`, true},
		{`{"$or":[{"a":1},{"b":{"$exists":true}}]}`, `{"b":null}`, true},
		{`{"_id":{"$gt":"B"}}`, `{"_id":"a"}`, true}, // raw comparison for _id
	}
	for _, c := range cases {
		sel, err := Parse(json.RawMessage(c.selector))
		if err != nil {
			t.Errorf("parse %s: %v", c.selector, err)
			continue
		}
		var doc any
		if err := json.Unmarshal([]byte(c.doc), &doc); err != nil {
			t.Fatal(err)
		}
		if got := sel.Match(doc); got != c.want {
			t.Errorf("%s on %s = %v, want %v", c.selector, c.doc, got, c.want)
		}
	}
}

func TestSelectorInvalid(t *testing.T) {
	for _, s := range []string{
		`[]`, `1`, `"x"`, `{`,
		`{"$foo":1}`, `{"a":{"$foo":1}}`, `{"$where":"x"}`, `{"$text":"x"}`,
		`{"$and":{}}`, `{"$or":1}`, `{"$not":[]}`, `{"a":{"$in":1}}`, `{"a":{"$nin":{}}}`,
		`{"a":{"$exists":1}}`, `{"a":{"$type":1}}`, `{"a":{"$size":-1}}`, `{"a":{"$size":1.5}}`,
		`{"a":{"$mod":[0,1]}}`, `{"a":{"$mod":[2]}}`, `{"a":{"$regex":"("}}`, `{"a":{"$regex":1}}`,
		`{"a":{"$all":1}}`, `{"a":{"$elemMatch":1}}`, `{"a..b":1}`, `{"$gt":1}`,
		// CouchDB 3.4's $beginsWith, and PCRE constructs RE2 lacks.
		`{"a":{"$beginsWith":"x"}}`, `{"a":{"$regex":"^(?=x)"}}`, `{"a":{"$regex":"(x)\\1"}}`,
		`{"a":{"$regex":"(?<!x)y"}}`, `{"$and":[1]}`, `{"a":{"b":{"$lt":1,"$x":2}}}`,
	} {
		if _, err := Parse(json.RawMessage(s)); !errors.Is(err, ErrSelector) {
			t.Errorf("parse %s: %v, want an invalid-selector error", s, err)
		}
	}
}
