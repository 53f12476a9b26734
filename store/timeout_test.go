package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/sqlite"
)

// WithTimeout cuts off a call that outlives its limit, but not a long poll
// within its own wait, and leaves the caller's own deadline its own error.
// (A store that stops answering is tested in store/couch: a frozen CouchDB.)
func TestWithTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := store.WithTimeout(db, 100*time.Millisecond)
	defer s.Close()

	// A long poll of 300 ms is three limits long and still not cut off.
	if _, _, err := s.Changes(ctx, store.ChangesOptions{Since: "now", Wait: 300 * time.Millisecond}); err != nil {
		t.Fatalf("Changes waiting longer than the limit: %v", err)
	}
	// The caller's deadline, shorter than the limit: its own error.
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	_, _, err = s.Changes(short, store.ChangesOptions{Since: "now", Wait: time.Hour})
	var te *store.TimeoutError
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("the caller's deadline reported as the store's: %v", err)
	}
	// A limit of 0 leaves the store as it is.
	if store.WithTimeout(db, 0) != store.Store(db) {
		t.Fatal("WithTimeout(s, 0) wrapped s")
	}
}
