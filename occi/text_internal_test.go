package occi

import (
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// FuzzQuoteRoundTrip: any string survives quote then unquote, also as one
// value among others in a comma-joined text/occi header and as a text/plain
// line, and its quoted form has no raw control character but tab (a line
// break would end a text/plain line or a header; Go clients refuse headers
// with the others).
func FuzzQuoteRoundTrip(f *testing.F) {
	for _, s := range []string{"", "a\nb", `say "hi"`, `back\slash`, `\`, `\"`, "\r\n", `a, b=1; c="d"`, "<x>", "tab\tnul\x00", "é ∑ 😀", `\n`, `\u0041`, "\x01\x7f\x1f", `\u00zz`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := quote(s)
		for i := 0; i < len(q); i++ {
			if c := q[i]; (c < 0x20 && c != '\t') || c == 0x7f {
				t.Fatalf("quote(%q) = %q has a raw control character", s, q)
			}
		}
		got, err := unquote(q)
		if err != nil || got != s {
			t.Fatalf("unquote(quote(%q)) = %q, %v", s, got, err)
		}
		doc := &textDoc{Attributes: map[string]any{}}
		if err := doc.add("X-OCCI-Attribute", "a.b="+q+", c.d=1"); err != nil {
			t.Fatalf("header with %q: %v", q, err)
		}
		if doc.Attributes["a.b"] != s || doc.Attributes["c.d"] != 1.0 || len(doc.Attributes) != 2 {
			t.Fatalf("header with %q read back as %v", q, doc.Attributes)
		}
		body, err := parseTextBody([]byte("X-OCCI-Attribute: a.b=" + q + "\n"))
		if err != nil || body.Attributes["a.b"] != s {
			t.Fatalf("text/plain line with %q: %v, %v", q, body, err)
		}
	})
}

// pocciNumber is how strict text clients (pOCCI) read a number: no exponent.
var pocciNumber = regexp.MustCompile(`^[0-9.+-]+$`)

func TestTextNumbersArePlainDecimals(t *testing.T) {
	nums := []float64{0, 1, -1, 2, 0.1, 3.6, 1e-7, 1e21, -1e21, 1e300, 5e-324, math.MaxFloat64, -math.SmallestNonzeroFloat64, 123456789012345678}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		nums = append(nums, math.Float64frombits(r.Uint64()))
	}
	for _, n := range nums {
		if math.IsNaN(n) || math.IsInf(n, 0) {
			continue // JSON cannot hold them, so no entity has them
		}
		s := textValue(n)
		if !pocciNumber.MatchString(s) {
			t.Fatalf("textValue(%g) = %q: not a plain decimal", n, s)
		}
		got, err := parseTextValue(s)
		if err != nil || got != n {
			t.Fatalf("parseTextValue(textValue(%g) = %q) = %v, %v", n, s, got, err)
		}
	}
}

func TestTextValueRefusesWhatJSONCannotHold(t *testing.T) {
	for _, v := range []string{"1e999", "-1e400"} {
		if _, err := parseTextValue(v); err == nil || !strings.Contains(err.Error(), v) {
			t.Fatalf("parseTextValue(%s): %v, want an error naming it", v, err)
		}
	}
	// Not numbers: read as the unquoted words they are, never as NaN or Inf.
	for _, v := range []string{"NaN", "Inf", "-Infinity", "0x1p-2", "1_000"} {
		if got, err := parseTextValue(v); err != nil || got != v {
			t.Fatalf("parseTextValue(%s) = %v, %v; want the word", v, got, err)
		}
	}
}

func TestTextValueOfJSONKeepsHTMLCharacters(t *testing.T) {
	if got := textValue([]any{"<a>&", 1e-7}); got != `["<a>&",1e-7]` {
		t.Fatalf("textValue of an array = %s", got)
	}
}
