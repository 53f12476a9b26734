package couch_test

import (
	"context"
	"encoding/json"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/couch"
)

// A CouchDB that restarts empty (its database gone) is noticed on the next
// call, which recreates the database and the indexes EnsureIndex made, and
// succeeds: no restart of the server needed.
func TestDatabaseGoneIsRecreated(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	peer := couchpeer.StartForTest(t, 0)
	port := peer.Port()
	s := openAt(t, peer.URL(), "cmbs")
	if err := s.EnsureIndex(ctx, "by-n", []string{"n"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, store.Document{ID: "before", Body: json.RawMessage(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}

	// The same CouchDB, restarted empty on the same port.
	if err := peer.Stop(); err != nil {
		t.Fatal(err)
	}
	peer = couchpeer.StartForTest(t, port)

	if _, err := s.Get(ctx, "before"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a document lost with the database: %v, want not found", err)
	}
	rev, err := s.Put(ctx, store.Document{ID: "after", Body: json.RawMessage(`{"n":2}`)})
	if err != nil {
		t.Fatalf("Put after the database was lost: %v", err)
	}
	if d, err := s.Get(ctx, "after"); err != nil || d.Rev != rev {
		t.Fatalf("Get after = %+v, %v", d, err)
	}
	// Sorting on n needs the index by-n: it was recreated too.
	docs, err := s.Find(ctx, store.Query{Selector: json.RawMessage(`{"n":{"$gt":0}}`), Sort: []store.SortField{{Field: "n"}}})
	if err != nil || len(docs) != 1 || docs[0].ID != "after" {
		t.Fatalf("Find sorted on the recreated index = %+v, %v", docs, err)
	}

	// Every kind of call recovers.
	for _, call := range []struct {
		name string
		do   func() error
	}{
		{"Find", func() error { _, err := s.Find(ctx, store.Query{}); return err }},
		{"Changes", func() error { _, _, err := s.Changes(ctx, store.ChangesOptions{Since: "5"}); return err }},
		{"Delete", func() error {
			_, err := s.Delete(ctx, "x", "1-00000000000000000000000000000000")
			if errors.Is(err, store.ErrNotFound) {
				return nil // the database is back; the document is not
			}
			return err
		}},
		{"EnsureIndex", func() error { return s.EnsureIndex(ctx, "by-m", []string{"m"}) }},
	} {
		if err := peer.Stop(); err != nil {
			t.Fatal(err)
		}
		peer = couchpeer.StartForTest(t, port)
		if err := call.do(); err != nil {
			t.Errorf("%s after the database was lost: %v", call.name, err)
		}
		if _, err := s.Put(ctx, store.Document{ID: "after-" + call.name, Body: json.RawMessage(`{}`)}); err != nil {
			t.Errorf("Put after %s restored the database: %v", call.name, err)
		}
	}
}

// A frozen CouchDB (SIGSTOP: connections accepted, nothing answered) fails
// each call after the store timeout, as unavailable and naming the limit,
// instead of holding it; once CouchDB runs again, calls succeed.
func TestFrozenCouchTimesOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	peer := couchpeer.StartForTest(t, 0)
	cs, err := couch.Open(ctx, peer.URL(), "cmbs")
	if err != nil {
		t.Fatal(err)
	}
	s := store.WithTimeout(cs, 300*time.Millisecond)
	defer s.Close()
	if _, err := s.Put(ctx, store.Document{ID: "a", Body: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}

	if err := syscall.Kill(peer.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			if err := syscall.Kill(peer.Pid(), syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer thaw()
	calls := map[string]func() error{
		"Get":  func() error { _, err := s.Get(ctx, "a"); return err },
		"Put":  func() error { _, err := s.Put(ctx, store.Document{ID: "b", Body: json.RawMessage(`{}`)}); return err },
		"Find": func() error { _, err := s.Find(ctx, store.Query{}); return err },
		"Changes": func() error {
			_, _, err := s.Changes(ctx, store.ChangesOptions{Wait: 100 * time.Millisecond})
			return err
		},
	}
	for name, call := range calls {
		err := call()
		var te *store.TimeoutError
		if !errors.Is(err, store.ErrUnavailable) || !errors.As(err, &te) || ctx.Err() != nil {
			t.Fatalf("%s on a frozen CouchDB: %v, want unavailable after the store timeout", name, err)
		}
		t.Logf("%s: %v", name, err)
	}

	thaw()
	// Without the limit (CouchDB first works through what was cut off).
	if d, err := cs.Get(ctx, "a"); err != nil || d.ID != "a" {
		t.Fatalf("Get once CouchDB runs again: %+v, %v", d, err)
	}
}
