package mango

import (
	"cmp"
	"slices"
	"strings"

	"github.com/go-kivik/kivik/v4/x/collate"
)

// typeRank orders JSON types the way CouchDB collates them:
// null < false < true < numbers < strings < arrays < objects.
func typeRank(v any) int {
	switch t := v.(type) {
	case nil:
		return 0
	case bool:
		if !t {
			return 1
		}
		return 2
	case float64:
		return 3
	case string:
		return 4
	case []any:
		return 5
	case map[string]any:
		return 6
	}
	return 7
}

// Compare compares two decoded JSON values in CouchDB collation order
// (strings by the Unicode Collation Algorithm, through kivik's x/collate).
func Compare(a, b any) int {
	ra, rb := typeRank(a), typeRank(b)
	if ra != rb {
		return cmp.Compare(ra, rb)
	}
	switch x := a.(type) {
	case float64:
		return cmp.Compare(x, b.(float64))
	case string:
		y := b.(string)
		if x == y {
			// The common case in equality tests, without the collator's lock.
			return 0
		}
		return collate.CompareString(x, y)
	case []any:
		y := b.([]any)
		for i := range min(len(x), len(y)) {
			if c := Compare(x[i], y[i]); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(x), len(y))
	case map[string]any:
		// CouchDB compares objects member by member in document order;
		// decoded maps have no order, so members are taken in key order.
		y := b.(map[string]any)
		xk, yk := sortedKeys(x), sortedKeys(y)
		for i := range min(len(xk), len(yk)) {
			if c := Compare(xk[i], yk[i]); c != 0 {
				return c
			}
			if c := Compare(x[xk[i]], y[yk[i]]); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(xk), len(yk))
	}
	return 0
}

// CompareRaw is CouchDB's raw collation, used for _id: strings compare
// byte-wise.
func CompareRaw(a, b any) int {
	x, xok := a.(string)
	y, yok := b.(string)
	if xok && yok {
		return strings.Compare(x, y)
	}
	return Compare(a, b)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return Compare(a, b) })
	return keys
}
