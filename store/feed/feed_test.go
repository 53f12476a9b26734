package feed_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/feed"
	"github.com/cmbs/cmbs/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "cmbs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// flaky is a real store whose changes feed can be cut, as a lost
// connection to CouchDB would.
type flaky struct {
	store.Store
	down atomic.Bool
}

func (f *flaky) Changes(ctx context.Context, opts store.ChangesOptions) ([]store.Change, string, error) {
	if f.down.Load() {
		return nil, "", fmt.Errorf("feed test: %w", store.ErrUnavailable)
	}
	return f.Store.Changes(ctx, opts)
}

// seen collects the ids handed to a handler.
type seen struct {
	mu  sync.Mutex
	ids []string
	ch  chan struct{}
}

func newSeen() *seen { return &seen{ch: make(chan struct{}, 1024)} }

func (s *seen) handle(_ context.Context, changes []store.Change) error {
	s.mu.Lock()
	for _, c := range changes {
		s.ids = append(s.ids, c.ID)
	}
	s.mu.Unlock()
	s.ch <- struct{}{}
	return nil
}

// waitFor waits (bounded) until id has been handed over.
func (s *seen) waitFor(t *testing.T, id string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		for _, x := range s.ids {
			if x == id {
				s.mu.Unlock()
				return
			}
		}
		s.mu.Unlock()
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("%s never reached the handler; saw %v", id, s.ids)
		}
	}
}

// eventually polls cond until it holds, for at most 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func put(t *testing.T, st store.Store, id string) {
	t.Helper()
	if _, err := st.Put(t.Context(), store.Document{ID: id, Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
}

func start(t *testing.T, f *feed.Follower) {
	t.Helper()
	if err := f.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
}

// Changes made after New — even before Start — reach every handler, and
// changes made before New do not.
func TestFollowerHandsOverChangesAfterNew(t *testing.T) {
	st := openStore(t)
	put(t, st, "before")
	f, err := feed.New(t.Context(), st, feed.Options{Wait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, "between")
	a, b := newSeen(), newSeen()
	f.Add("a", a.handle)
	f.Add("b", b.handle)
	start(t, f)
	put(t, st, "after")
	a.waitFor(t, "after")
	b.waitFor(t, "after")
	a.mu.Lock()
	defer a.mu.Unlock()
	if fmt.Sprint(a.ids) != "[between after]" {
		t.Fatalf("handed over %v, want [between after]", a.ids)
	}
	// The position advances just after the handler returns.
	eventually(t, "two changes applied", func() bool { return f.Stats().Applied >= 2 })
	if s := f.Stats(); s.Applied != 2 || s.Seq == "" {
		t.Fatalf("stats = %+v", s)
	}
}

// A feed that is lost resumes from the last sequence applied: the changes
// made while it was down are handed over once it is back, none skipped.
func TestFollowerResumesAfterLostFeed(t *testing.T) {
	st := &flaky{Store: openStore(t)}
	f, err := feed.New(t.Context(), st, feed.Options{Wait: 50 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s := newSeen()
	f.Add("cache", s.handle)
	start(t, f)
	put(t, st, "one")
	s.waitFor(t, "one")
	st.down.Store(true)
	put(t, st, "two")
	put(t, st, "three")
	eventually(t, "a failed read", func() bool { return f.Stats().Failures > 0 })
	st.down.Store(false)
	s.waitFor(t, "three")
	s.mu.Lock()
	defer s.mu.Unlock()
	if fmt.Sprint(s.ids) != "[one two three]" {
		t.Fatalf("handed over %v, want [one two three]", s.ids)
	}
}

// A handler that fails gets the same batch again: a cache that could not
// read the store misses nothing.
func TestFollowerRetriesFailedBatch(t *testing.T) {
	st := openStore(t)
	f, err := feed.New(t.Context(), st, feed.Options{Wait: time.Second, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	s := newSeen()
	f.Add("cache", func(ctx context.Context, changes []store.Change) error {
		if calls.Add(1) == 1 {
			return errors.New("store unreachable")
		}
		return s.handle(ctx, changes)
	})
	start(t, f)
	put(t, st, "x")
	s.waitFor(t, "x")
	// The position advances just after the handler returns.
	eventually(t, "a change applied", func() bool { return f.Stats().Applied > 0 })
	if got := f.Stats(); got.Failures != 1 || got.Applied != 1 {
		t.Fatalf("stats = %+v, want one failure then one change applied", got)
	}
}

// Stop ends an idle long poll at once and leaves no goroutine (TestMain
// checks); a second Start is refused.
func TestFollowerStop(t *testing.T) {
	st := openStore(t)
	f, err := feed.New(t.Context(), st, feed.Options{Wait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(t.Context()); err == nil {
		t.Fatal("second Start accepted")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := f.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
