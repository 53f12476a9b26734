package sqlite

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/store"
)

// Background writes that arrive a little apart share commits; each is
// stored, and a foreground write among them is too.
func TestBackgroundWritesShareCommits(t *testing.T) {
	const n = 40
	ctx := testContext(t)
	s := openTest(t, filepath.Join(t.TempDir(), "cmbs.sqlite"))
	before := s.commits.Load()
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for i := range n {
		// Apart enough that the writer, alone, would have committed the
		// previous write before the next arrives.
		time.Sleep(300 * time.Microsecond)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Put(store.InBackground(ctx), store.Document{ID: fmt.Sprint("bg-", i), Body: []byte(`{"n":1}`)})
			errs <- err
		}()
	}
	_, err := s.Put(ctx, store.Document{ID: "fg", Body: []byte(`{"n":2}`)})
	errs <- err
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if _, err := s.Get(ctx, fmt.Sprint("bg-", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Without gathering, nearly every write commits alone.
	if c := s.commits.Load() - before; c > n/2 {
		t.Fatalf("%d writes took %d commits", n+1, c)
	}
}
