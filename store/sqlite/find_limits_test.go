package sqlite

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cmbs/cmbs/store"
)

// TestFindLargeSelectors: selectors past SQLite's own limits (expression
// depth 1000, 500 compound SELECT terms, many variables) are answered, and
// exactly, instead of failing as if the store were down.
func TestFindLargeSelectors(t *testing.T) {
	ctx := testContext(t)
	s := openTest(t, filepath.Join(t.TempDir(), "x.sqlite"))
	for i := range 50 {
		body := fmt.Sprintf(`{"n":%d,"g":"g%d","attributes":{"a":{"b":"v%d"}}}`, i, i%5, i)
		if _, err := s.Put(ctx, store.Document{ID: fmt.Sprintf("d%03d", i), Body: json.RawMessage(body)}); err != nil {
			t.Fatal(err)
		}
	}
	alternatives := func(n int, mk func(i int) any) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = mk(i)
		}
		return out
	}
	cases := []struct {
		name string
		sel  any
		want int
	}{
		{"or of 1000 attribute objects", map[string]any{"$or": alternatives(1000, func(i int) any {
			return map[string]any{"attributes.a.b": fmt.Sprintf("v%d", i%100)}
		})}, 50},
		{"or of 5000 ids", map[string]any{"$or": alternatives(5000, func(i int) any {
			return map[string]any{"_id": fmt.Sprintf("d%03d", i%60)}
		})}, 50},
		{"and with an or of 2000", map[string]any{"g": "g1", "$or": alternatives(2000, func(i int) any {
			return map[string]any{"n": float64(i % 40), "attributes.a.b": fmt.Sprintf("v%d", i%40)}
		})}, 8},
		{"$in of 40000 ids", map[string]any{"_id": map[string]any{"$in": alternatives(40000, func(i int) any { return fmt.Sprintf("d%03d", i) })}}, 50},
		{"$in of 3000 values", map[string]any{"n": map[string]any{"$in": alternatives(3000, func(i int) any { return float64(i) })}}, 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, _ := json.Marshal(tc.sel)
			docs, err := s.Find(ctx, store.Query{Selector: raw})
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			if len(docs) != tc.want {
				t.Fatalf("Find: %d documents, want %d", len(docs), tc.want)
			}
			docs, err = s.Find(ctx, store.Query{Selector: raw, Limit: 3, Skip: 1})
			if err != nil || len(docs) != min(3, tc.want-1) {
				t.Fatalf("Find with a limit: %d documents, %v", len(docs), err)
			}
		})
	}
}

// TestQueryErrorTooLarge: should a query still exceed one of SQLite's
// limits, the error says the request is invalid, not that the store is
// unavailable.
func TestQueryErrorTooLarge(t *testing.T) {
	ctx := testContext(t)
	for _, msg := range []string{
		"SQL logic error: Expression tree is too large (maximum depth 1000) (1)",
		"SQL logic error: too many terms in compound SELECT (1)",
		"SQL logic error: too many SQL variables (1)",
	} {
		if err := queryError(ctx, errors.New(msg)); !errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("queryError(%q) = %v, want ErrInvalid", msg, err)
		}
	}
	if err := queryError(ctx, errors.New("disk I/O error")); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("queryError(disk I/O error) = %v, want ErrUnavailable", err)
	}
}
