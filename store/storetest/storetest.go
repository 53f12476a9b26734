// Package storetest is the contract test suite every store.Store
// implementation runs, the way kivik's kiviktest runs against every driver:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s := openFresh(t)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The assertions hold for CouchDB (and the PouchDB-based test peer) as well
// as for the embedded store, so they stay within what CouchDB really does:
// revisions are only compared for their generation and for being different,
// sequence positions are opaque, a document appears in the changes feed at
// least at its latest change, and sorted queries constrain the sort field in
// the selector and have an index on it.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/store"
)

// Run runs the contract suite. open must return a new, empty store on each
// call and register its cleanup with t.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	t.Run("CRUD", func(t *testing.T) { testCRUD(t, open) })
	t.Run("Errors", func(t *testing.T) { testErrors(t, open) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, open) })
	t.Run("Find", func(t *testing.T) { testFind(t, open) })
	t.Run("FindOrder", func(t *testing.T) { testFindOrder(t, open) })
	t.Run("BigDocuments", func(t *testing.T) { testBigDocuments(t, open) })
	t.Run("EnsureIndex", func(t *testing.T) { testEnsureIndex(t, open) })
	t.Run("Changes", func(t *testing.T) { testChanges(t, open) })
}

// timeout bounds every blocking call of a test, so a hang fails instead of
// stalling the run.
const timeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

var revPattern = regexp.MustCompile(`^[1-9][0-9]*-[0-9a-f]+$`)

// revGen returns the generation of a "N-hash" revision, or 0.
func revGen(rev string) int {
	i := strings.IndexByte(rev, '-')
	if i <= 0 {
		return 0
	}
	n, _ := strconv.Atoi(rev[:i])
	return n
}

func checkRev(t *testing.T, rev string, gen int) {
	t.Helper()
	if !revPattern.MatchString(rev) {
		t.Fatalf("revision %q does not look like N-<hex>", rev)
	}
	if gen > 0 && revGen(rev) != gen {
		t.Fatalf("revision %q: generation %d, want %d", rev, revGen(rev), gen)
	}
}

func mustPut(t *testing.T, ctx context.Context, s store.Store, id, rev, body string) string {
	t.Helper()
	newRev, err := s.Put(ctx, store.Document{ID: id, Rev: rev, Body: json.RawMessage(body)})
	if err != nil {
		t.Fatalf("Put(%q, rev %q): %v", id, rev, err)
	}
	return newRev
}

func mustDelete(t *testing.T, ctx context.Context, s store.Store, id, rev string) string {
	t.Helper()
	newRev, err := s.Delete(ctx, id, rev)
	if err != nil {
		t.Fatalf("Delete(%q, rev %q): %v", id, rev, err)
	}
	return newRev
}

func mustGet(t *testing.T, ctx context.Context, s store.Store, id string) store.Document {
	t.Helper()
	doc, err := s.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return doc
}

func mustFind(t *testing.T, ctx context.Context, s store.Store, q store.Query) []store.Document {
	t.Helper()
	docs, err := s.Find(ctx, q)
	if err != nil {
		t.Fatalf("Find(%s): %v", q.Selector, err)
	}
	return docs
}

func decode(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("invalid JSON %q: %v", raw, err)
	}
	return v
}

// checkBody compares JSON semantically and checks that the store did not
// leave CouchDB's _id/_rev in the body.
func checkBody(t *testing.T, got json.RawMessage, want string) {
	t.Helper()
	g, w := decode(t, got), decode(t, []byte(want))
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("body = %s, want %s", got, want)
	}
	if m, ok := g.(map[string]any); ok {
		for k := range m {
			if strings.HasPrefix(k, "_") {
				t.Fatalf("body %s has the member %q; stores must strip underscore members", got, k)
			}
		}
	}
}

func checkErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error = %v, want %v", what, err, want)
	}
}

func ids(docs []store.Document) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.ID
	}
	return out
}

func changeIDs(changes []store.Change) []string {
	out := make([]string, len(changes))
	for i, c := range changes {
		out[i] = c.ID
	}
	return out
}
