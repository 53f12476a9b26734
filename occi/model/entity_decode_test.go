package model

import (
	"encoding/json"
	"reflect"
	"testing"
)

// decodeEntitySeeds are stored documents as AppendJSON writes them, and
// what else a store may hold: each is read the same by the fast path and
// by encoding/json, or left to encoding/json.
var decodeEntitySeeds = []string{
	`{"type":"resource","id":"1","kind":"http://s#k","mixins":["http://s#m"],"attributes":{"occi":{"core":{"title":"t"}},"n":1e21,"l":["a",2.5,null,false]},"actions":["http://s#a"],"links":[{"target":"/y"}],"title":"title","summary":"sum\n","source":"/a","target":"/b","target_kind":"http://s#k2","has_title":true,"has_summary":true,"out_links":["/l/1","/l/\u2028"]}`,
	`{"type":"resource","id":"2","kind":"k","mixins":[],"attributes":{},"actions":[],"links":[],"out_links":null}`,
	`{"type":"link","id":"3","kind":"k","mixins":null,"attributes":null,"actions":null,"links":null,"title":null,"has_title":null}`,
	`{}`,
	`{"Kind":"k","ID":"x"}`,                   // encoding/json matches names case-insensitively
	`{"kind":"k","extra":1}`,                  // and ignores unknown members
	`{"kind":1}`,                              // a type error
	`{"mixins":["a",null]}`,                   // null in a []string
	`{"out_links":[1]}`,                       // a number in a []string
	`{"attributes":[]}`,                       // not an object
	`{"kind":"k","kind":"l"}`,                 // the last of repeated names
	`{"kind":1,"kind":"k"}`,                   // a type error in a repeated name
	`{"title":"\ud800","summary":"\xff"}`,     // invalid UTF-16 and UTF-8
	`[]`, `null`, `{"kind":"k"} x`, `{"kind"`, // not an object, invalid JSON
}

func TestDecodeEntityFastMatchesUnmarshal(t *testing.T) {
	fast := 0
	for _, doc := range decodeEntitySeeds {
		if checkDecodeEntity(t, []byte(doc)) {
			fast++
		}
	}
	if fast < 4 {
		t.Fatalf("only %d documents took the fast path; the first four must", fast)
	}
}

func FuzzDecodeEntity(f *testing.F) {
	for _, doc := range decodeEntitySeeds {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkDecodeEntity(t, body) })
}

// checkDecodeEntity fails t when the fast path reads body other than
// json.Unmarshal does, or DecodeEntity returns other than it did with
// json.Unmarshal only; it reports whether the fast path read it.
func checkDecodeEntity(t *testing.T, body []byte) bool {
	t.Helper()
	var want Entity
	wantErr := json.Unmarshal(body, &want)
	got, ok := decodeEntityFast(body)
	if ok && (wantErr != nil || !reflect.DeepEqual(*got, want)) {
		t.Fatalf("%s: fast path read\n%#v\nencoding/json: %v\n%#v", body, *got, wantErr, want)
	}
	e, err := DecodeEntity("/l/1", "1-a", body)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%s: DecodeEntity error %v, encoding/json %v", body, err, wantErr)
	}
	if err == nil {
		want.Location, want.Rev = "/l/1", "1-a"
		want.Normalize()
		if !reflect.DeepEqual(*e, want) {
			t.Fatalf("%s: DecodeEntity\n%#v\nwant\n%#v", body, *e, want)
		}
	}
	return ok
}

// BenchmarkDecodeEntity reads a stored document, with the fast path and
// with encoding/json alone.
func BenchmarkDecodeEntity(b *testing.B) {
	body := []byte(`{"type":"resource","id":"0a3e5c1f-2b4d-4e6f-8a9b-1c2d3e4f5a6b","kind":"http://schemas.cmbs.org/occi/cmbs#message","mixins":[],"attributes":{"cmbs":{"message":{"cmbs_layer":"l1","executable":"false","l1_socket_receiver_member":"tcp://127.0.0.1:40001","message_content":{"text":"ping"},"path_history":["a@/cmbs_member/a"],"sendable":"true","storable":"false"}},"occi":{"core":{"id":"0a3e5c1f-2b4d-4e6f-8a9b-1c2d3e4f5a6b","title":"l1 17"}}},"actions":[],"links":[],"title":"l1 17","has_title":true,"out_links":[]}`)
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if e, ok := decodeEntityFast(body); !ok {
				b.Fatal("not read")
			} else {
				e.Normalize()
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var e Entity
			if err := json.Unmarshal(body, &e); err != nil {
				b.Fatal(err)
			}
			e.Normalize()
		}
	})
}
