package occi_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/store"
)

// categoryGate is a real store whose category writes can be held at the
// n-th one (counting from arm), or failed there.
type categoryGate struct {
	store.Store
	mu      sync.Mutex
	n, seen int
	fail    bool
	reached chan struct{} // closed when the n-th category write starts
	release chan struct{} // the held write goes on once this is closed
}

func (g *categoryGate) arm(n int, fail bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n, g.seen, g.fail = n, 0, fail
	g.reached, g.release = make(chan struct{}), make(chan struct{})
}

func (g *categoryGate) Put(ctx context.Context, doc store.Document) (string, error) {
	if strings.HasPrefix(doc.ID, categories.DocPrefix) {
		g.mu.Lock()
		g.seen++
		hit := g.n > 0 && g.seen == g.n
		fail, reached, release := g.fail, g.reached, g.release
		g.mu.Unlock()
		if hit {
			close(reached)
			if fail {
				return "", fmt.Errorf("%w: test", store.ErrUnavailable)
			}
			select {
			case <-release:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
	}
	return g.Store.Put(ctx, doc)
}

// TestCategoryWritesDoNotStallEntityWrites: while one POST /-/ is storing
// its categories, entity writes go on (they finish while a category write
// is held), and none of that request's categories is visible until all
// are stored; a request whose store write fails leaves none behind.
func TestCategoryWritesDoNotStallEntityWrites(t *testing.T) {
	const n = 50
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		g := &categoryGate{Store: open(t)}
		srv := testserver.Start(t, testserver.Options{Store: g})
		c := newClient(t, srv.URL)
		var ms []any
		for i := range n {
			ms = append(ms, map[string]any{"term": fmt.Sprintf("m%d", i), "scheme": "http://gate#", "location": fmt.Sprintf("/gate/%d/", i)})
		}
		body := mustJSON(t, map[string]any{"mixins": ms})

		// A failed store write: nothing registered, nothing left stored.
		g.arm(n/2, true)
		expectError(t, c.do("POST", "/-/", body), 503)
		c.expect("GET", "/gate/0/", nil, 404)

		g.arm(n/2, false)
		var once sync.Once
		release := func() { once.Do(func() { close(g.release) }) }
		t.Cleanup(release) // a failed check must not leave the request held
		done := make(chan reply, 1)
		go func() { done <- c.do("POST", "/-/", body) }()
		select {
		case <-g.reached:
		case <-time.After(30 * time.Second):
			t.Fatal("the category request never reached its held write")
		}
		// Entity writes go on while the category request is held …
		wrote := make(chan reply, 1)
		go func() {
			wrote <- c.do("PUT", "/compute/w", []byte(`{"resources":[{"kind":"`+categories.ComputeKind+`"}]}`))
		}()
		select {
		case r := <-wrote:
			if r.status != 201 {
				t.Errorf("entity write during a category request: %d %s", r.status, r.body)
			}
		case <-time.After(30 * time.Second):
			t.Error("an entity write waited for the whole category request")
		}
		// … and see none of its categories: the first ones are stored but
		// not yet visible.
		expectError(t, c.do("POST", "/compute/w", []byte(`{"resources":[{"mixins":["http://gate#m0"]}]}`)), 400, "http://gate#m0")
		c.expect("GET", "/gate/0/", nil, 404)
		release()
		if r := <-done; r.status != 200 {
			t.Fatalf("category request: %d %s", r.status, r.body)
		}
		c.expect("POST", "/compute/w", []byte(`{"resources":[{"mixins":["http://gate#m0"]}]}`), 201)
		c.expect("GET", fmt.Sprintf("/gate/%d/", n-1), nil, 200)
	})
}
