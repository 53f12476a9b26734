package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/store"
)

// unsearchedTestPaths are the WithUnsearched paths of the property test:
// a scalar, an object's member, an array and an object.
var unsearchedTestPaths = []string{"n", "o.x", "arr", "deep.a"}

// unsearchedValue is a random JSON value, nested up to depth levels.
func unsearchedValue(r *rand.Rand, depth int) any {
	switch k := r.IntN(8); {
	case k == 0:
		return nil
	case k == 1:
		return r.IntN(2) == 0
	case k == 2 || k == 3:
		return float64(r.IntN(7) - 2)
	case k == 4 || depth == 0:
		return []string{"a", "b", "c", "ab", ""}[r.IntN(5)]
	case k == 5 || k == 6:
		a := make([]any, r.IntN(4))
		for i := range a {
			a[i] = unsearchedValue(r, depth-1)
		}
		return a
	default:
		o := map[string]any{}
		for _, name := range []string{"t", "x", "y"} {
			if r.IntN(2) == 0 {
				o[name] = unsearchedValue(r, depth-1)
			}
		}
		return o
	}
}

func unsearchedDoc(r *rand.Rand) []byte {
	doc := map[string]any{"type": []string{"resource", "link"}[r.IntN(2)]}
	for _, name := range []string{"s", "n", "o", "arr", "deep"} {
		if r.IntN(4) != 0 {
			doc[name] = unsearchedValue(r, 3)
		}
	}
	if r.IntN(2) == 0 {
		doc["o"] = map[string]any{"x": unsearchedValue(r, 2), "y": unsearchedValue(r, 1)}
	}
	if r.IntN(2) == 0 {
		doc["deep"] = map[string]any{"a": map[string]any{"b": unsearchedValue(r, 1)}, "c": unsearchedValue(r, 1)}
	}
	raw, _ := json.Marshal(doc)
	return raw
}

var unsearchedPaths = []string{"s", "n", "o", "o.x", "o.y", "o.x.t", "arr", "arr.t", "arr.x", "deep", "deep.a", "deep.a.b", "deep.c", "missing", "type"}

// unsearchedCondition is a random Mango condition.
func unsearchedCondition(r *rand.Rand) any {
	v := unsearchedValue(r, 1)
	switch r.IntN(12) {
	case 0:
		return v
	case 1:
		return map[string]any{"$eq": v}
	case 2:
		return map[string]any{"$gt": v}
	case 3:
		return map[string]any{"$lte": v}
	case 4:
		return map[string]any{"$exists": r.IntN(2) == 0}
	case 5:
		return map[string]any{"$in": []any{unsearchedValue(r, 0), unsearchedValue(r, 0)}}
	case 6:
		return map[string]any{"$ne": unsearchedValue(r, 0)}
	case 7:
		return map[string]any{"$elemMatch": map[string]any{"$eq": unsearchedValue(r, 0)}}
	case 8:
		return map[string]any{"$elemMatch": map[string]any{"t": unsearchedValue(r, 0)}}
	case 9:
		return map[string]any{"$regex": "^a"}
	case 10:
		return map[string]any{"$size": float64(r.IntN(3))}
	default:
		return map[string]any{"$type": []string{"string", "number", "array", "object", "null", "boolean"}[r.IntN(6)]}
	}
}

func unsearchedSelector(r *rand.Rand, depth int) map[string]any {
	if depth > 0 && r.IntN(4) == 0 {
		kids := []any{unsearchedSelector(r, depth-1), unsearchedSelector(r, depth-1)}
		return map[string]any{[]string{"$or", "$and", "$nor"}[r.IntN(3)]: kids}
	}
	sel := map[string]any{}
	for range 1 + r.IntN(2) {
		sel[unsearchedPaths[r.IntN(len(unsearchedPaths))]] = unsearchedCondition(r)
	}
	return sel
}

// Property: random selectors over random documents give the same results
// from a store with WithUnsearched paths as from one indexing everything,
// while the first has no index row at or below those paths.
func TestUnsearchedSameResults(t *testing.T) {
	ctx := context.Background()
	plain, err := Open(ctx, filepath.Join(t.TempDir(), "plain.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	omitting, err := Open(ctx, filepath.Join(t.TempDir(), "omitting.sqlite"), WithUnsearched(unsearchedTestPaths...))
	if err != nil {
		t.Fatal(err)
	}
	defer omitting.Close()
	r := rand.New(rand.NewPCG(1, 2))
	revs := map[string]string{}
	for i := range 300 {
		id := fmt.Sprintf("d%03d", r.IntN(200)) // some documents are updated
		body := unsearchedDoc(r)
		for _, s := range []*Store{plain, omitting} {
			rev, err := s.Put(ctx, store.Document{ID: id, Rev: revs[id], Body: body})
			if err != nil {
				t.Fatalf("put %d %s: %v", i, body, err)
			}
			if s == omitting {
				revs[id] = rev
			}
		}
	}
	checkIndexExact(t, omitting)
	for _, p := range unsearchedTestPaths {
		key := pathKey(strings.Split(p, "."))
		var n int
		if err := omitting.writer.QueryRowContext(ctx, `SELECT count(*) FROM fields f JOIN paths p ON p.pid = f.pid WHERE substr(p.path, 1, ?) = ?`, len(key), []byte(key)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d index rows at or below the unsearched path %s", n, p)
		}
	}
	matched := 0
	for i := range 1500 {
		sel, _ := json.Marshal(unsearchedSelector(r, 2))
		q := store.Query{Selector: sel}
		if i%3 == 0 {
			q.Limit = 1 + r.IntN(5)
		}
		want, werr := plain.Find(ctx, q)
		got, gerr := omitting.Find(ctx, q)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%s: error %v, without unsearched paths %v", sel, gerr, werr)
		}
		ids := func(docs []store.Document) []string {
			var out []string
			for _, d := range docs {
				out = append(out, d.ID+" "+d.Rev)
			}
			return out
		}
		if !slices.Equal(ids(got), ids(want)) {
			t.Fatalf("%s (limit %d): %v, without unsearched paths %v", sel, q.Limit, ids(got), ids(want))
		}
		if len(want) > 0 {
			matched++
		}
	}
	if matched < 150 {
		t.Errorf("only %d of the selectors matched anything: the test tests little", matched)
	}
}
