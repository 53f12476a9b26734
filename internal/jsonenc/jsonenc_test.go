package jsonenc

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

// same fails t unless Append writes what json.Marshal does, error
// included.
func same(t *testing.T, v any) {
	t.Helper()
	want, werr := json.Marshal(v)
	got, gerr := Append([]byte("prefix"), v)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%#v: error %v, encoding/json's %v", v, gerr, werr)
	}
	if werr != nil {
		if gerr.Error() != werr.Error() {
			t.Fatalf("%#v: error %q, encoding/json's %q", v, gerr, werr)
		}
		return
	}
	if !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("%#v:\n got %s\nwant prefix%s", v, got, want)
	}
}

func TestAppendMatchesMarshal(t *testing.T) {
	for _, v := range []any{
		nil, true, false, "", "plain", `q"uo\te`, "<a href='x'>&amp;</a>", "\b\f\n\r\t\x00\x1f\x7f",
		"é ü 日本 😀", "bad \xff utf-8 \xc3", "line\u2028sep\u2029", "\u00e9",
		0.0, math.Copysign(0, -1), 1.0, -1.5, 1e20, 1e21, 1e-6, 1e-7, 123456789.125, 5e-324, math.MaxFloat64,
		math.NaN(), math.Inf(1), math.Inf(-1),
		3, -7, int64(1) << 60,
		map[string]any{}, map[string]any(nil), []any{}, []any(nil), []string{}, []string(nil), []string{"a", "<b>"},
		map[string]any{"b": 1.0, "a": []any{"x", nil, true, map[string]any{"z": "y", "": 0.5}}, "é": "\xff"},
		map[string]any{"nested": map[string]any{"deep": []any{[]any{1.0, 2.0}, []string{"s"}}}},
		map[string]any{"n": json.Number("12.50"), "raw": json.RawMessage(`{"b": 1, "a" : [ 2 ]}`), "struct": struct{ A int }{3}},
		map[string]any{"bad": math.NaN()},
		[]any{1.0, math.Inf(1)},
		map[string]any{"ch": make(chan int)},
	} {
		same(t, v)
	}
	// More keys than the sort buffer on the stack.
	big := map[string]any{}
	for i := 0; i < 40; i++ {
		big[string(rune('a'+i%26))+string(rune('A'+i))] = float64(i)
	}
	same(t, big)
}

// Any JSON document, decoded as encoding/json decodes it, is written back
// as encoding/json writes it.
func FuzzAppendMatchesMarshal(f *testing.F) {
	for _, s := range []string{
		`{"kind":"http://schemas/cmbs#message","attributes":{"cmbs":{"message":{"topics":["bench"],"result":{"delivered":10,"deliveries":[{"ack":{"layer":"l32"}}]}}}}}`,
		`[1e-7, 1e21, -0, 0.1, "<&>", "\u2028", "\ud800"]`,
		`"\u0000\u001f\"\\"`, `null`, `true`, `123456789012345678901234567890`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			// Not JSON: still a string to encode.
			same(t, string(data))
			return
		}
		same(t, v)
	})
}

func BenchmarkAppend(b *testing.B) {
	var v any
	doc := `{"kind":"http://schemas/cmbs#message","id":"m1","mixins":[],"attributes":{"cmbs":{"message":{"message_content":{"text":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"topics":["bench"],"storable":"false","executable":"false","sendable":"true","path_history":["s@tcp://127.0.0.1:4000"],"result":{"message":"/cmbs/message/m1","layer":"l32","delivered":10,"failed":0,"deliveries":[{"delivered":true,"member":"/cmbs/member/r00~0123456789ab","socket":"tcp://127.0.0.1:40001","ack":{"member":"r00@tcp://127.0.0.1:40000","layer":"l32"}},{"delivered":true,"member":"/cmbs/member/r01~0123456789ab","socket":"tcp://127.0.0.1:40002","ack":{"member":"r01@tcp://127.0.0.1:40000","layer":"l32"}}]}}}}}`
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		b.Fatal(err)
	}
	b.Run("jsonenc", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = Append(buf[:0], v)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(v)
		}
	})
}
