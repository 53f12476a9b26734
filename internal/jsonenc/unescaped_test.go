package jsonenc

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// referenceJSON is what AppendUnescaped must give: encoding/json's encoder
// without HTML escaping (and its newline).
func referenceJSON(t testing.TB, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func checkJSON(t testing.TB, v any) {
	t.Helper()
	out, err := AppendUnescaped(nil, v)
	if err != nil {
		t.Fatalf("%#v: %v", v, err)
	}
	out = append(out, '\n')
	if want := referenceJSON(t, v); !bytes.Equal(out, want) {
		t.Fatalf("%#v:\n got %s\nwant %s", v, out, want)
	}
}

// AppendUnescaped encodes what encoding/json's Encoder without HTML
// escaping encodes, byte for byte.
func TestAppendUnescapedMatchesEncoder(t *testing.T) {
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 1e-6, 9.99e-7, 1e-7, 1.5e-9, 1e20, 1e21, 1.2345e22, -3e-300, 123456789012, 0.1 + 0.2, math.MaxFloat64, math.SmallestNonzeroFloat64, 5000000}
	strs := []string{"", "plain", `"quoted" \back\`, "<html> & 'x'", "\x00\x01\x1f\x7f", "\b\f\n\r\t", "é ✓ 😀", "\u2028\u2029", "bad \xff\xfe utf8 \xe2\x82", "\ufffd", strings.Repeat("the quick brown fox x\n", 1000)}
	for _, f := range floats {
		checkJSON(t, f)
	}
	for _, s := range strs {
		checkJSON(t, s)
		checkJSON(t, map[string]any{s: s})
	}
	checkJSON(t, map[string]any{"b": []any{1.0, "x", nil, true, false, map[string]any{}, []any{}}, "a": map[string]any{"z": nil, "y": 2.5}, "é": "✓"})
	checkJSON(t, map[string]any(nil))
	checkJSON(t, []any(nil))
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		checkJSON(t, string(b))
		checkJSON(t, math.Float64frombits(r.Uint64()&^(0x7ff<<52)|uint64(r.IntN(0x7ff))<<52))
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	if _, err := AppendUnescaped(nil, cyclic); err == nil {
		t.Error("a map that contains itself was encoded")
	}
	deep := any("x")
	for range 1500 {
		deep = []any{deep}
	}
	if got, err := AppendUnescaped(nil, deep); err != nil || !bytes.Equal(append(got, '\n'), referenceJSON(t, deep)) {
		t.Errorf("1500 nested arrays: %v", err)
	}
	// What encoding/json refuses is refused with its error; what it
	// encodes by reflection is encoded by it.
	for _, v := range []any{math.NaN(), math.Inf(1), map[string]any{"a": []any{math.Inf(-1)}}} {
		if _, err := AppendUnescaped(nil, v); err == nil {
			t.Errorf("%#v: encoded, want encoding/json's error", v)
		}
	}
	for _, v := range []any{1, []string{"<x>"}, map[string]string{"<": ">"}, json.Number("1"), json.RawMessage(`{"a": "<&>"}`)} {
		checkJSON(t, v)
	}
}

func FuzzAppendUnescaped(f *testing.F) {
	f.Add("x\n\"é\xff\u2028", 1.5)
	f.Fuzz(func(t *testing.T, s string, x float64) {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return
		}
		checkJSON(t, map[string]any{s: []any{s, x}})
	})
}
