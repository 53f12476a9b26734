package sqlite

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/store"
)

// Background writes that arrive a little apart share commits; each is
// stored, and a foreground write among them is too.
func TestBackgroundWritesShareCommits(t *testing.T) {
	const n = 40
	s := openTest(t, filepath.Join(t.TempDir(), "cmbs.sqlite"))
	// Far longer than gatherTest's writes are apart, however slow the
	// machine; the foreground write at the end ends the wait (a background
	// write whose goroutine is scheduled after it waits this long alone).
	s.backgroundWait, s.backgroundMax = time.Second, time.Minute
	// Without gathering, nearly every write commits alone.
	if c := gatherTest(t, s, n, true); c > n/2 {
		t.Fatalf("%d writes took %d commits", n+1, c)
	}
}

// Get never returns an older version than the last Put returned, while
// other goroutines keep reading (and refilling the cache with) the same
// documents; deleted ones are gone at once.
func TestCachedGetIsCurrent(t *testing.T) {
	ctx := testContext(t)
	for _, size := range []int{32 << 20, 600} { // 600 bytes: constant eviction
		s, err := Open(ctx, filepath.Join(t.TempDir(), "cmbs.sqlite"), WithCacheSize(size))
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{"a", "b", "c"}
		revs := map[string]string{}
		for _, id := range ids {
			if revs[id], err = s.Put(ctx, store.Document{ID: id, Body: []byte(`{"v":0}`)}); err != nil {
				t.Fatal(err)
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 { // more only starve the writer under -race on a loaded machine
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					for _, id := range ids {
						_, _ = s.Get(ctx, id)
					}
				}
			}()
		}
		for i := 1; i <= 300; i++ {
			id := ids[i%len(ids)]
			body := fmt.Sprintf(`{"v":%d,"pad":"%0100d"}`, i, i)
			rev, err := s.Put(ctx, store.Document{ID: id, Rev: revs[id], Body: []byte(body)})
			if err != nil {
				t.Fatal(err)
			}
			revs[id] = rev
			got, err := s.Get(ctx, id)
			if err != nil || got.Rev != rev || string(got.Body) != body {
				close(stop)
				wg.Wait()
				t.Fatalf("cache %d: after put %d Get = %q %s, %v; want %q", size, i, got.Rev, got.Body, err, rev)
			}
			got.Body[0] = 'X' // the caller's copy: must not reach the cache
		}
		if _, err := s.Delete(ctx, "a", revs["a"]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get after delete: %v", err)
		}
		close(stop)
		wg.Wait()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A second Store on the same file is refused while the first is open.
func TestSecondOpenIsRefused(t *testing.T) {
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "cmbs.sqlite")
	s := openTest(t, path)
	if s2, err := Open(ctx, path); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "in use") {
		if s2 != nil {
			_ = s2.Close()
		}
		t.Fatalf("second Open: %v, want ErrUnavailable saying it is in use", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	_ = s3.Close()
}

// A version a reader got before a commit never replaces what the commit
// wrote, and eviction keeps the cache within its size.
func TestDocCacheOrdering(t *testing.T) {
	c := newDocCache(100)
	_, _, gen, ok := c.get("d")
	if ok {
		t.Fatal("hit in an empty cache")
	}
	c.committed([]cachedDoc{{id: "d", rev: "2-new", body: []byte(`{"v":2}`)}})
	c.add("d", "1-old", []byte(`{"v":1}`), gen) // the reader's late, stale copy
	if rev, body, _, ok := c.get("d"); !ok || rev != "2-new" || string(body) != `{"v":2}` {
		t.Fatalf("get = %q %s %v, want the committed version", rev, body, ok)
	}
	_, _, gen, _ = c.get("e")
	c.add("e", "1-e", []byte(`{"e":1}`), gen)
	if rev, _, _, ok := c.get("e"); !ok || rev != "1-e" {
		t.Fatalf("a read with no commit since was not kept: %q %v", rev, ok)
	}
	for i := range 20 {
		c.committed([]cachedDoc{{id: fmt.Sprint("f", i), rev: "1-f", body: []byte(`{"f":"0123456789"}`)}})
	}
	if c.size > c.max || len(c.items) != c.lru.Len() {
		t.Fatalf("size %d over max %d, or %d items vs %d in the list", c.size, c.max, len(c.items), c.lru.Len())
	}
	c.committed([]cachedDoc{{id: "f19"}}) // deleted
	if _, _, _, ok := c.get("f19"); ok {
		t.Fatal("a deleted document is still cached")
	}
}
