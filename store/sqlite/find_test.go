package sqlite

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/mango"
)

// randomValue draws from a small vocabulary, so that random selectors and
// documents meet often, across JSON types.
func randomValue(r *rand.Rand, depth int) any {
	switch n := r.IntN(14); {
	case n < 2:
		return []any{"x", "y", "abc", "B", ""}[r.IntN(5)]
	case n < 4:
		return []any{-1.0, 0.0, 1.0, 2.5, 3.0}[r.IntN(5)]
	case n < 5:
		return nil
	case n < 6:
		return r.IntN(2) == 0
	case n < 9 && depth < 2:
		arr := make([]any, r.IntN(4))
		for i := range arr {
			arr[i] = randomValue(r, depth+1)
		}
		return arr
	case n < 12 && depth < 2:
		return randomObject(r, depth+1)
	}
	return "x"
}

func randomObject(r *rand.Rand, depth int) map[string]any {
	obj := map[string]any{}
	for _, k := range []string{"a", "b", "c.d"} {
		if r.IntN(3) > 0 {
			obj[k] = randomValue(r, depth)
		}
	}
	return obj
}

var randomFields = []string{"a", "b", "a.a", "a.b", "b.a", "a.c\\.d", "c\\.d", "a.0", "a.a.b", "_id"}

var randomOps = []string{mango.OpEq, mango.OpNe, mango.OpGt, mango.OpGte, mango.OpLt, mango.OpLte, mango.OpIn, mango.OpNin, mango.OpExists, mango.OpRegex, mango.OpAll, mango.OpSize, mango.OpElemMatch, mango.OpType, ""}

func randomCondition(r *rand.Rand) map[string]any {
	field := randomFields[r.IntN(len(randomFields))]
	val := randomValue(r, 1)
	switch op := randomOps[r.IntN(len(randomOps))]; op {
	case "":
		return map[string]any{field: val}
	case mango.OpIn, mango.OpNin, mango.OpAll:
		return map[string]any{field: map[string]any{op: []any{val, randomValue(r, 2)}}}
	case mango.OpExists:
		return map[string]any{field: map[string]any{op: r.IntN(2) == 0}}
	case mango.OpRegex:
		return map[string]any{field: map[string]any{op: "^[ab]"}}
	case mango.OpSize:
		return map[string]any{field: map[string]any{op: r.IntN(3)}}
	case mango.OpType:
		return map[string]any{field: map[string]any{op: []string{"string", "number", "array", "object", "null"}[r.IntN(5)]}}
	case mango.OpElemMatch:
		inner := map[string]any{[]string{"$eq", "$gt", "$lt"}[r.IntN(3)]: val}
		if r.IntN(2) == 0 {
			inner = map[string]any{"a": val}
		}
		return map[string]any{field: map[string]any{op: inner}}
	default:
		return map[string]any{field: map[string]any{op: val}}
	}
}

func randomSelector(r *rand.Rand, depth int) map[string]any {
	n := r.IntN(6)
	if depth > 1 || n < 3 {
		return randomCondition(r)
	}
	kids := []any{randomSelector(r, depth+1), randomSelector(r, depth+1)}
	switch n {
	case 3:
		return map[string]any{mango.OpOr: kids}
	case 4:
		return map[string]any{mango.OpNor: kids}
	}
	return map[string]any{mango.OpNot: kids[0]}
}

// renameFields renames the top-level fields of a random selector
// (operators' arguments are selectors or conditions on the field).
func renameFields(sel map[string]any, field func(string) string) map[string]any {
	out := map[string]any{}
	for k, v := range sel {
		switch k {
		case mango.OpOr, mango.OpNor:
			var kids []any
			for _, c := range v.([]any) {
				kids = append(kids, renameFields(c.(map[string]any), field))
			}
			out[k] = kids
		case mango.OpNot:
			out[k] = renameFields(v.(map[string]any), field)
		default:
			out[field(k)] = v
		}
	}
	return out
}

// TestFindMatchesScan checks that the index narrowing never loses a match:
// Find must return exactly what matching every document returns.
func TestFindMatchesScan(t *testing.T) {
	_ = findMatchesScan(t, func(doc map[string]any) map[string]any { return doc }, func(f string) string { return f })
}

// TestFindMatchesScanDeep: the same below the depth where the index stops
// (maxIndexDepth), with documents nested under p.q.r.s.
func TestFindMatchesScanDeep(t *testing.T) {
	_ = findMatchesScan(t, func(doc map[string]any) map[string]any {
		return map[string]any{"p": map[string]any{"q": map[string]any{"r": map[string]any{"s": doc}}}, "b": doc["b"]}
	}, func(f string) string {
		if f == "_id" || f == "b" {
			return f
		}
		return "p.q.r.s." + f
	})
}

// TestFindMatchesScanCapped: the same with documents over the index's row
// caps (see fields.go): long arrays and big objects at "a", and now and
// then a document over the row cap as a whole.
func TestFindMatchesScanCapped(t *testing.T) {
	n := 0
	// Fewer selectors: every capped document is a candidate of most.
	_ = findMatchesScanN(t, 300, 400, func(doc map[string]any) map[string]any {
		n++
		switch a := doc["a"].(type) {
		case []any:
			if n%3 == 0 {
				for i := range maxIndexedElements {
					a = append(a, []any{"y", 1.0, "B", 2.5}[i%4])
				}
				doc["a"] = a
			}
		case map[string]any:
			if n%3 == 0 {
				for i := range maxIndexedMembers {
					a[fmt.Sprint("f", i)] = float64(i % 4)
				}
			}
		}
		if n%60 == 0 {
			var z []any
			for i := range maxDocRows/1000 + 1 {
				inner := make([]any, 1000)
				for j := range inner {
					inner[j] = float64(i*1000 + j)
				}
				z = append(z, inner)
			}
			doc["z"] = z
		}
		return doc
	}, func(f string) string { return f })
}

func findMatchesScan(t *testing.T, wrap func(map[string]any) map[string]any, field func(string) string, opts ...Option) *Store {
	return findMatchesScanN(t, 300, 3000, wrap, field, opts...)
}

// findMatchesScanN stores ndocs random documents (wrapped) in a store
// opened with opts, checks Find against matching every document for
// random selectors (fields renamed by field; every third also with a
// limit), and returns the store.
func findMatchesScanN(t *testing.T, ndocs, selectors int, wrap func(map[string]any) map[string]any, field func(string) string, opts ...Option) *Store {
	ctx := testContext(t)
	s := openTest(t, filepath.Join(t.TempDir(), "x.sqlite"), opts...)
	r := rand.New(rand.NewPCG(1, 2))

	bodies := map[string]map[string]any{}
	revs := map[string]string{}
	if raceEnabled {
		ndocs, selectors = ndocs/3, selectors/10
	}
	for i := range ndocs {
		id := fmt.Sprintf("d%03d", i)
		body := wrap(randomObject(r, 0))
		raw, _ := json.Marshal(body)
		rev, err := s.Put(ctx, store.Document{ID: id, Body: raw})
		if err != nil {
			t.Fatal(err)
		}
		bodies[id], revs[id] = body, rev
		// Rewrite or delete some, so stale index rows would show.
		if i%7 == 0 {
			body = wrap(randomObject(r, 0))
			raw, _ = json.Marshal(body)
			if rev, err = s.Put(ctx, store.Document{ID: id, Rev: rev, Body: raw}); err != nil {
				t.Fatal(err)
			}
			bodies[id], revs[id] = body, rev
		}
		if i%11 == 0 {
			if _, err := s.Delete(ctx, id, rev); err != nil {
				t.Fatal(err)
			}
			delete(bodies, id)
		}
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range bodies {
			if !yield(id) {
				return
			}
		}
	})

	// Round-trip so numbers are float64, as the matcher sees them.
	decoded := make(map[string]map[string]any, len(ids))
	for _, id := range ids {
		b, _ := json.Marshal(bodies[id])
		var doc map[string]any
		_ = json.Unmarshal(b, &doc)
		doc["_id"], doc["_rev"] = id, revs[id]
		decoded[id] = doc
	}

	nonEmpty := 0
	for i := range selectors {
		raw, _ := json.Marshal(renameFields(randomSelector(r, 0), field))
		sel, err := mango.Parse(raw)
		if err != nil {
			continue // e.g. a regex or $size drawn with a bad argument
		}
		var want []string
		for _, id := range ids {
			if sel.Match(decoded[id]) {
				want = append(want, id)
			}
		}
		docs, err := s.Find(ctx, store.Query{Selector: raw})
		if err != nil {
			t.Fatalf("Find(%s): %v", raw, err)
		}
		got := make([]string, len(docs))
		for j, d := range docs {
			got[j] = d.ID
		}
		if !slices.Equal(got, want) {
			t.Fatalf("selector %d %s:\n Find %q\n scan %q", i, raw, got, want)
		}
		if i%3 == 0 {
			limit := 1 + r.IntN(5)
			docs, err := s.Find(ctx, store.Query{Selector: raw, Limit: limit})
			if err != nil {
				t.Fatalf("Find(%s, limit %d): %v", raw, limit, err)
			}
			got = got[:0]
			for _, d := range docs {
				got = append(got, d.ID)
			}
			if w := want[:min(limit, len(want))]; !slices.Equal(got, w) {
				t.Fatalf("selector %d %s limit %d:\n Find %q\n scan %q", i, raw, limit, got, w)
			}
		}
		if len(want) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < selectors/6 {
		t.Fatalf("only %d of the random selectors matched anything; the test is too weak", nonEmpty)
	}
	return s
}

// TestFindPlan checks that selective selectors are driven from the index and
// that SQLite really searches (not scans) for them.
func TestFindPlan(t *testing.T) {
	ctx := testContext(t)
	s := openTest(t, filepath.Join(t.TempDir(), "x.sqlite"))
	// More documents than driveLimit, so that an unselective lookup is
	// not worth driving from.
	s.driveLimit = 512
	if err := loadEntities(ctx, s, 2*s.driveLimit); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		selector string
		driven   bool
	}{
		{`{"kind":"http://x#k","attributes.a.b.c":"v7"}`, true},
		{`{"attributes.a.b.c":{"$in":["v1","v2"]}}`, true},
		{`{"mixins":{"$elemMatch":{"$eq":"http://x#m3"}},"type":"resource"}`, true},
		{`{"mixins":{"$all":["http://x#m3"]}}`, true},
		{`{"$or":[{"title":"entity 17"},{"attributes.a.b.c":"v3"}]}`, true},
		{`{"_id":{"$gte":"/e/0000010","$lt":"/e/0000020"}}`, true},
		{`{"kind":"http://x#k"}`, false}, // matches everything: read in _id order
		{`{}`, false},
	}
	for _, c := range cases {
		sel, err := mango.Parse(json.RawMessage(c.selector))
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.plan(ctx, sel, sortOrder{byID: true}, 20)
		if err != nil {
			t.Fatal(err)
		}
		if p.driven != c.driven {
			t.Errorf("%s: driven = %v, want %v", c.selector, p.driven, c.driven)
		}
		rows, err := s.reader.QueryContext(ctx, "EXPLAIN QUERY PLAN "+p.sql, p.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		if c.driven && strings.Contains(joined, "SCAN d") {
			t.Errorf("%s: query plan scans documents: %s", c.selector, joined)
		}
		if !c.driven && strings.Contains(joined, "TEMP B-TREE FOR ORDER BY") {
			t.Errorf("%s: query plan sorts: %s", c.selector, joined)
		}
		t.Logf("%s: %s", c.selector, joined)
	}
}

// A selector on a path inside a WithUnindexed path matches exactly as
// without it, though the index holds nothing there, also after an update
// that adds the unindexed value to a document.
func TestUnindexedPathsStillMatch(t *testing.T) {
	ctx := testContext(t)
	s := openTest(t, filepath.Join(t.TempDir(), "cmbs.sqlite"), WithUnindexed("attributes.r"))
	put := func(id, rev, body string) string {
		t.Helper()
		rev, err := s.Put(ctx, store.Document{ID: id, Rev: rev, Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	put("a", "", `{"kind":"m","attributes":{"r":{"n":1,"who":["x","y"]}}}`)
	rev := put("b", "", `{"kind":"m","attributes":{}}`)
	put("b", rev, `{"kind":"m","attributes":{"r":{"n":2,"who":["y"]}}}`)
	put("c", "", `{"kind":"m","attributes":{"s":{"n":2}}}`)
	for sel, want := range map[string][]string{
		`{"attributes.r.n":2}`:                            {"b"},
		`{"attributes.r.n":{"$gt":0}}`:                    {"a", "b"},
		`{"attributes.r.who":{"$elemMatch":{"$eq":"x"}}}`: {"a"},
		`{"attributes.r":{"$exists":true}}`:               {"a", "b"},
		`{"kind":"m","attributes.s.n":2}`:                 {"c"},
		`{"attributes.r.n":{"$exists":false}}`:            {"c"},
	} {
		docs, err := s.Find(ctx, store.Query{Selector: json.RawMessage(sel)})
		if err != nil {
			t.Fatalf("Find(%s): %v", sel, err)
		}
		var got []string
		for _, d := range docs {
			got = append(got, d.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("Find(%s) = %q, want %q", sel, got, want)
		}
	}
	var inside int
	key := pathKey([]string{"attributes", "r"})
	if err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM fields JOIN paths USING (pid) WHERE substr(path, 1, ?) = ? AND length(path) > ?`,
		len(key), []byte(key), len(key)).Scan(&inside); err != nil {
		t.Fatal(err)
	}
	if inside != 0 {
		t.Fatalf("%d index rows inside the unindexed path, want none", inside)
	}
}
