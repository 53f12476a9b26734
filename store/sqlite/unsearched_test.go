package sqlite

import (
	"strings"
	"testing"
)

// Property: with WithUnsearched paths, random selectors over random
// documents (updated and deleted now and then) give exactly what matching
// every document gives, while the index has no row at or below those paths.
// The paths hold values of every JSON type: "b" at the top, "a.a" an
// object's member, "a.b.a" deeper.
func TestUnsearchedSameResults(t *testing.T) {
	paths := []string{"b", "a.a", "a.b.a"}
	same := func(f string) string { return f }
	s := findMatchesScan(t, func(doc map[string]any) map[string]any { return doc }, same, WithUnsearched(paths...))
	checkIndexExact(t, s)
	ctx := testContext(t)
	for _, p := range paths {
		key := pathKey(strings.Split(p, "."))
		var n int
		if err := s.writer.QueryRowContext(ctx, `SELECT count(*) FROM fields f JOIN paths p ON p.pid = f.pid WHERE substr(p.path, 1, ?) = ?`, len(key), []byte(key)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d index rows at or below the unsearched path %s", n, p)
		}
	}
}
