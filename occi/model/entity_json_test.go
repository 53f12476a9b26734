package model

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

// AppendJSON writes what json.Marshal does, for every field set or not.
func TestEntityAppendJSONMatchesMarshal(t *testing.T) {
	full := Entity{
		Location: "/x/1", Rev: "1-a",
		Type: TypeLink, ID: "1", Kind: "http://s#k", Mixins: []string{"http://s#m", "<&>"},
		Attributes: map[string]any{"occi": map[string]any{"core": map[string]any{"title": "t"}}, "n": 1e21, "l": []any{"a", 2.5, nil, false}},
		Actions:    []any{"http://s#a"}, Links: []any{map[string]any{"target": "/y"}},
		Title: "title", Summary: "sum\n", Source: "/a", Target: "/b", TargetKind: "http://s#k2",
		HasTitle: true, HasSummary: true, OutLinks: &[]string{"/l/1", "/l/\u2028"},
	}
	noOut, emptyOut := []string(nil), []string{}
	normalized := Entity{Type: TypeResource, ID: "2", Kind: "k"}
	normalized.Normalize()
	for name, e := range map[string]*Entity{
		"full":                      &full,
		"zero":                      {},
		"normalized":                &normalized,
		"empty strings kept by Has": {Type: TypeResource, HasTitle: true, Mixins: []string{}},
		"nil out-links list":        {Type: TypeResource, OutLinks: &noOut},
		"empty out-links list":      {Type: TypeResource, OutLinks: &emptyOut},
	} {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.AppendJSON([]byte("x"))
		if err != nil || !bytes.Equal(got, append([]byte("x"), want...)) {
			t.Errorf("%s: %v\n got %s\nwant x%s", name, err, got, want)
		}
	}
	// "full" sets every field json.Marshal writes: a field added to Entity
	// and not to AppendJSON (or to "full") fails here.
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if f.Tag.Get("json") == "-" {
			continue
		}
		if v.Field(i).IsZero() {
			t.Errorf("the test's full entity leaves %s unset: set it, and write it in AppendJSON", f.Name)
		}
	}
	bad := Entity{Attributes: map[string]any{"nan": math.NaN()}}
	if _, err := bad.AppendJSON(nil); err == nil {
		t.Error("NaN attribute: no error")
	}
}
