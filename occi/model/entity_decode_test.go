package model

import (
	"encoding/json"
	"reflect"
	"testing"
)

// decodeCases are stored documents and near misses: DecodeEntity must give
// what json.Unmarshal gives for each, whether it decodes them itself or
// leaves them to encoding/json.
var decodeCases = []string{
	`{"type":"resource","id":"1","kind":"http://s#k","mixins":["http://s#m","<&>"],"attributes":{"occi":{"core":{"title":"t"}},"n":1e21,"l":["a",2.5,null,false]},"actions":["http://s#a"],"links":[{"target":"/y"}],"title":"title","summary":"sum\n","source":"/a","target":"/b","target_kind":"http://s#k2","has_title":true,"has_summary":true,"out_links":["/l/1","/l/\u2028"]}`,
	`{}`,
	`null`,
	`[]`,
	`"x"`,
	` { "type" : "link" , "out_links" : [ ] , "mixins":[] , "attributes":{} } `,
	`{"type":null,"mixins":null,"attributes":null,"out_links":null,"has_title":null}`,
	`{"Type":"resource"}`,
	`{"TYPE":"resource","type":"link"}`,
	`{"type":"resource","type":"link"}`,
	`{"attributes":{"a":1},"attributes":{"b":2}}`,
	`{"mixins":["a",null]}`,
	`{"mixins":"a"}`,
	`{"type":5}`,
	`{"has_title":"true"}`,
	`{"out_links":["a",1]}`,
	`{"actions":{}}`,
	`{"attributes":[]}`,
	`{"unknown":{"deep":[1,2,{"x":null}]},"id":"7"}`,
	`{"id":"\ud800"}`,
	`{"id":"caf\u00e9 ☕"}`,
	"{\"id\":\"a\xffb\"}",
	`{"typ\u0065":"resource"}`,
	`{"id":"1",}`,
	`{"id":"1"} x`,
	`{"id":"1"`,
	`{"attributes":{"n":-0.5e-3,"big":123456789012345678901234567890}}`,
}

func checkDecodeLikeUnmarshal(t *testing.T, doc string) {
	t.Helper()
	var want Entity
	wantErr := json.Unmarshal([]byte(doc), &want)
	got, err := DecodeEntity("/x/1", "1-a", []byte(doc))
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("%s: error %v, encoding/json %v", doc, err, wantErr)
	}
	if err != nil {
		return
	}
	want.Location, want.Rev = "/x/1", "1-a"
	want.Normalize()
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("%s:\n got %#v\nwant %#v", doc, *got, want)
	}
}

// DecodeEntity gives what json.Unmarshal into an Entity gives, error
// included, and decodes the usual stored document itself.
func TestDecodeEntityMatchesUnmarshal(t *testing.T) {
	for _, doc := range decodeCases {
		checkDecodeLikeUnmarshal(t, doc)
	}
	var e Entity
	if !e.decodeStored([]byte(decodeCases[0])) {
		t.Error("a full stored document was left to encoding/json")
	}
	// What the server stores decodes itself, and back to the same entity.
	full := Entity{Type: TypeResource, ID: "1", Kind: "k", Mixins: []string{}, Attributes: map[string]any{"a": map[string]any{"b": 1.0}},
		Actions: []any{}, Links: []any{}, OutLinks: &[]string{}}
	body, err := full.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	var back Entity
	if !back.decodeStored(body) || !reflect.DeepEqual(back, full) {
		t.Errorf("AppendJSON's document: decoded %#v, want %#v", back, full)
	}
}

func FuzzDecodeEntity(f *testing.F) {
	for _, doc := range decodeCases {
		f.Add(doc)
	}
	f.Fuzz(checkDecodeLikeUnmarshal)
}
