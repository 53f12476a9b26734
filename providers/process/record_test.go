package process_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/store"
)

// A quick run's record is read back right after the answer: a GET of the
// answer's execution finds it complete, from 8 concurrent executes, and a
// listing right after them lists every one. Both stores.
func TestExecuteRecordReadBackAfterAnswer(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		n := startNode(t, open(t), nodeOptions{})
		loc := n.createDefinition(`{"exec":"echo","argv":["hi"]}`)
		const workers, each = 8, 6
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					r := n.do("POST", loc+"?action=execute", fmt.Sprintf(`{"attributes":{"input":"%d-%d"}}`, w, i), "Content-Type", "application/occi+json")
					if r.status != http.StatusOK {
						t.Errorf("execute: %d %s", r.status, r.body)
						return
					}
					res, err := jsonObject(r.body)
					if err != nil {
						t.Error(err)
						return
					}
					exec, _ := res["execution"].(string)
					g := n.do("GET", exec, "", "Accept", "application/occi+json")
					if g.status != http.StatusOK {
						t.Errorf("GET %s right after the answer: %d %s", exec, g.status, g.body)
						return
					}
					body, _ := jsonObject(g.body)
					rec, _ := path(body, "attributes", "process", "execution").(map[string]any)
					if rec["status"] != "succeeded" || rec["output"] != "hi\n" || rec["input_size"] != float64(len(fmt.Sprintf("%d-%d", w, i))) || rec["definition"] != loc {
						t.Errorf("record %s: %v", exec, rec)
					}
				}
			}()
		}
		wg.Wait()
		// Executes answered without reading back: the listing waits for
		// their records.
		for range 10 {
			n.execute(loc, nil)
		}
		list := expect(t, n.do("GET", "/process/execution/", "", "Accept", "application/occi+json"), http.StatusOK).json(t)
		if got, _ := list["X-OCCI-Location"].([]any); len(got) != workers*each+10 {
			t.Fatalf("%d executions listed right after the answers, want %d", len(got), workers*each+10)
		}
	})
}

// gatedStore holds the creation of completed execution records (a quick
// run's only write) until open is closed, counting those waiting.
type gatedStore struct {
	store.Store
	open    chan struct{}
	mu      sync.Mutex
	waiting int
}

func (g *gatedStore) Put(ctx context.Context, doc store.Document) (string, error) {
	if doc.Rev == "" && strings.HasPrefix(doc.ID, "/process/execution/") && bytes.Contains(doc.Body, []byte(`"status":"succeeded"`)) {
		g.mu.Lock()
		g.waiting++
		g.mu.Unlock()
		select {
		case <-g.open:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return g.Store.Put(ctx, doc)
}

func (g *gatedStore) held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

// A quick run is answered before its record is stored: the answer arrives
// while the store holds the record's write back, and a GET of it waits
// until the write is let through, then finds it.
func TestExecuteAnswersBeforeRecordStored(t *testing.T) {
	g := &gatedStore{Store: testserver.OpenSQLite(t), open: make(chan struct{})}
	n := startNode(t, g, nodeOptions{})
	loc := n.createDefinition(`{"exec":"echo","argv":["quick"]}`)
	answered := make(chan map[string]any, 1)
	go func() {
		r := n.do("POST", loc+"?action=execute", `{}`, "Content-Type", "application/occi+json")
		m, _ := jsonObject(r.body)
		answered <- m
	}()
	var res map[string]any
	select {
	case res = <-answered:
	case <-time.After(20 * time.Second):
		close(g.open)
		<-answered
		t.Fatal("no answer while the record's write was held")
	}
	held := g.held()
	got := make(chan reply, 1)
	exec, _ := res["execution"].(string)
	go func() { got <- n.do("GET", exec, "", "Accept", "application/occi+json") }()
	close(g.open)
	if held == 0 {
		// The run took long enough to get a running record (stored before
		// the answer); nothing to show here then.
		<-got
		t.Skipf("the run outlasted the running record's delay; answer %v", res)
	}
	r := expect(t, <-got, http.StatusOK).json(t)
	if rec, _ := path(r, "attributes", "process", "execution").(map[string]any); rec["status"] != "succeeded" || rec["output"] != "quick\n" {
		t.Fatalf("record %v", rec)
	}
}
