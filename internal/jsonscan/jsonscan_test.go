package jsonscan

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

var seeds = []string{
	`{}`, `[]`, `null`, `true`, ` false `, `0`, `-0`, `-0.5e-3`, `1E+2`, `1e400`, `01`, `-`, `1.`, `.5`,
	`"x"`, `"\u00e9\n\"\\\/"`, `"\ud800"`, "\"\xff\"", "\"\t\"", `"\x"`, `"\u12"`,
	`{"a":1,"a":2}`, `{"a":[1,{"b":null}],"c":{"d":"e"}}`, ` { "a" : [ 1 , 2 ] } `,
	`{"a":1}x`, `{"a":}`, `{"a" 1}`, `{1:2}`, `[1,]`, `[1 2]`, `tru`, `nul`, `{"a":1e400,"b":2}`,
	`"a\nb\tc\r\b\f\/\\\"d"`, `"\u0041\u00e9\u20ac\uFFFD\u0000x"`, `"é\n✓\u2028"`, `"\ud83d\ude00"`, `"x\udc00y"`, "\"\\n\xff\"", `{"a\nb":"c\u0022"}`,
	`{"id":"m1","kind":"http://houssem.org/cmbs#message","attributes":{"cmbs":{"message":{"storable":"False","message_content":{"text":"hé"}}}}}`,
}

// Decode, and Skip over a whole document, agree with encoding/json.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range seeds {
		check(t, []byte(s))
	}
	check(t, []byte(strings.Repeat("[", 10001)+strings.Repeat("]", 10001)))
	check(t, []byte(strings.Repeat("[", 9999)+strings.Repeat("]", 9999)))
}

func FuzzDecodeAgreesWithEncodingJSON(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { check(t, data) })
}

func check(t *testing.T, data []byte) {
	t.Helper()
	s := Scanner{Data: data}
	if got, want := s.Skip() && s.AtEnd(), json.Valid(data); got != want {
		t.Fatalf("%q: Skip accepts it %v, json.Valid %v", data, got, want)
	}
	got, gotErr := Decode(data)
	var want any
	wantErr := json.Unmarshal(data, &want)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("%q: error %v, encoding/json says %v", data, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: %#v, encoding/json gives %#v", data, got, want)
	}
	if v, ok := DecodeValue(data); ok && (wantErr != nil || !reflect.DeepEqual(v, want)) {
		t.Fatalf("%q: DecodeValue gives %#v, encoding/json %#v, %v", data, v, want, wantErr)
	}
}

// A text of a megabyte with escapes throughout decodes as encoding/json
// decodes it, without being left to it.
func TestDecodeLongEscapedText(t *testing.T) {
	text := strings.Repeat("the quick brown fox \"jumps\"\tover the lazy dog é ✓\n", 20000)
	data, _ := json.Marshal(map[string]any{"attributes": map[string]any{"input": text}})
	v, ok := DecodeValue(data)
	if !ok {
		t.Fatal("DecodeValue left it to encoding/json")
	}
	if got := v.(map[string]any)["attributes"].(map[string]any)["input"]; got != text {
		t.Fatalf("decoded %d bytes, want %d", len(got.(string)), len(text))
	}
	check(t, data)
}

func BenchmarkDecode(b *testing.B) {
	msg := []byte(`{"actions":[],"attributes":{"cmbs":{"message":{"cmbs_layer":"l2","executable":"false","message_content":{"text":"` + strings.Repeat("x", 64) + `"},"path_history":["tcp://127.0.0.1:40000/cmbs/member/s"],"sendable":"true","storable":"false"}}},"id":"m-000123","kind":"http://houssem.org/cmbs#message","links":[],"mixins":["http://houssem.org/cmbs#l2"],"summary":"","title":""}`)
	b.SetBytes(int64(len(msg)))
	b.Run("jsonscan", func(b *testing.B) {
		for b.Loop() {
			if _, err := Decode(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var v any
			if err := json.Unmarshal(msg, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecodeLongText(b *testing.B) {
	text := strings.Repeat("the quick brown fox jumps over the lazy dog x\n", 1<<16)
	data, _ := json.Marshal(map[string]any{"attributes": map[string]any{"input": text}})
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, ok := DecodeValue(data); !ok {
			b.Fatal("left to encoding/json")
		}
	}
}
