package couch

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestStripUnderscore(t *testing.T) {
	cases := []struct {
		in, want, id, rev string
	}{
		{`{}`, `{}`, "", ""},
		{` { } `, `{}`, "", ""},
		{`{"a":1}`, `{"a":1}`, "", ""},
		{`{"_id":"x","_rev":"1-a","a":1}`, `{"a":1}`, "x", "1-a"},
		{`{"a":1,"_id":"x","_rev":"1-a"}`, `{"a":1}`, "x", "1-a"},
		{`{"a":{"_id":1},"_id":"x","b":[{"_c":"}"}],"_deleted":true}`, `{"a":{"_id":1},"b":[{"_c":"}"}]}`, "x", ""},
		{"{\n  \"_id\" : \"a\\\"b\",\n  \"s\" : \"x\\\\\",\n  \"n\" : -1.5e3 , \"t\":true,\"z\":null\n}", `{"s" : "x\\","n" : -1.5e3,"t":true,"z":null}`, `a"b`, ""},
		{`{"\u005fid":"esc","k":"v"}`, `{"k":"v"}`, "esc", ""},
		{`{"_conflicts":["1-a"],"_rev":"2-b"}`, `{}`, "", "2-b"},
	}
	for _, c := range cases {
		out, id, rev, err := stripUnderscore([]byte(c.in))
		if err != nil {
			t.Errorf("stripUnderscore(%s): %v", c.in, err)
			continue
		}
		if string(out) != c.want || id != c.id || rev != c.rev {
			t.Errorf("stripUnderscore(%s) = %s, %q, %q; want %s, %q, %q", c.in, out, id, rev, c.want, c.id, c.rev)
		}
	}
	for _, in := range []string{`[]`, `"x"`, `1`, `null`, ` `} {
		if _, _, _, err := stripUnderscore([]byte(in)); err == nil {
			t.Errorf("stripUnderscore(%s) accepted a non-object", in)
		}
	}
}

func TestCheckBody(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{`{"a":1}`, `{"a":1}`, true},
		{` {"a" : [1, {"_x":1}]} `, ` {"a" : [1, {"_x":1}]} `, true}, // untouched, not even compacted
		{`{"_id":"x","a":1,"_rev":"1-a"}`, `{"a":1}`, true},
		{`{"_attachments":{}}`, "", false},
		{`{"a":1,"_deleted":true}`, "", false},
		{`[1]`, "", false},
		{`{"a":`, "", false},
		{``, "", false},
		{`null`, "", false},
	} {
		got, err := checkBody([]byte(c.in))
		if (err == nil) != c.ok || (c.ok && string(got) != c.want) {
			t.Errorf("checkBody(%s) = %s, %v; want %s, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
	// Stripping must not write into the caller's body.
	in := []byte(`{"_id":"x","a":1}`)
	if _, err := checkBody(in); err != nil || string(in) != `{"_id":"x","a":1}` {
		t.Fatalf("checkBody modified its input: %s, %v", in, err)
	}
}

// FuzzStripUnderscore checks the hand-written scanner against encoding/json:
// the result is the input object without its underscore members.
func FuzzStripUnderscore(f *testing.F) {
	for _, s := range []string{`{}`, `{"_id":"a","x":[1,{"y":"}"}]}`, `{"a":"\"","_rev":"1-x"}`, " {\"a\" : { } , \"_b\":[ ] } "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var want map[string]any
		if json.Unmarshal([]byte(in), &want) != nil || want == nil {
			return // not an object: covered by the unit tests
		}
		wantID, _ := want["_id"].(string)
		wantRev, _ := want["_rev"].(string)
		_, idIsString := want["_id"].(string)
		_, revIsString := want["_rev"].(string)
		for k := range want {
			if strings.HasPrefix(k, "_") {
				delete(want, k)
			}
		}
		out, id, rev, err := stripUnderscore([]byte(in))
		if err != nil {
			t.Fatalf("stripUnderscore(%q): %v", in, err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("stripUnderscore(%q) = %q: invalid JSON: %v", in, out, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("stripUnderscore(%q) = %q, want %v", in, out, want)
		}
		if (idIsString && id != wantID) || (revIsString && rev != wantRev) {
			t.Fatalf("stripUnderscore(%q): id %q rev %q, want %q %q", in, id, rev, wantID, wantRev)
		}
	})
}
