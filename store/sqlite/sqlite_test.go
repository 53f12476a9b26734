package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openTest(t testing.TB, path string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(testContext(t), path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "db", "cmbs.sqlite"))
	})
}

func TestReopen(t *testing.T) {
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "nested", "dir", "cmbs.sqlite")

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	ra, err := s.Put(ctx, store.Document{ID: "a", Body: json.RawMessage(`{"kind":"k","tags":["x"]}`)})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := s.Put(ctx, store.Document{ID: "b", Body: json.RawMessage(`{"kind":"k"}`)})
	if err != nil {
		t.Fatal(err)
	}
	tomb, err := s.Delete(ctx, "b", rb)
	if err != nil {
		t.Fatal(err)
	}
	before, last, err := s.Changes(ctx, store.ChangesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "a"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Get after Close: %v, want ErrUnavailable", err)
	}

	s = openTest(t, path)
	doc, err := s.Get(ctx, "a")
	if err != nil || doc.Rev != ra {
		t.Fatalf("Get after reopen = %+v, %v; want rev %s", doc, err, ra)
	}
	if _, err := s.Get(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get deleted after reopen: %v", err)
	}
	found, err := s.Find(ctx, store.Query{Selector: json.RawMessage(`{"tags":{"$elemMatch":{"$eq":"x"}}}`)})
	if err != nil || len(found) != 1 || found[0].ID != "a" {
		t.Fatalf("Find after reopen = %+v, %v", found, err)
	}
	after, last2, err := s.Changes(ctx, store.ChangesOptions{})
	if err != nil || len(after) != len(before) || last2 != last {
		t.Fatalf("changes after reopen = %+v (last %s), %v; want %+v (last %s)", after, last2, err, before, last)
	}
	if after[1].ID != "b" || !after[1].Deleted || after[1].Rev != tomb {
		t.Fatalf("tombstone after reopen = %+v", after[1])
	}

	// New writes continue the sequence and the revision history.
	rc, err := s.Put(ctx, store.Document{ID: "c", Body: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	rb2, err := s.Put(ctx, store.Document{ID: "b", Body: json.RawMessage(`{"kind":"k"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if rb2[:2] != "3-" {
		t.Fatalf("re-created b has rev %s, want generation 3 after tombstone %s", rb2, tomb)
	}
	next, _, err := s.Changes(ctx, store.ChangesOptions{Since: last})
	if err != nil || len(next) != 2 || next[0].ID != "c" || next[0].Rev != rc || next[1].ID != "b" {
		t.Fatalf("changes since %s after reopen = %+v, %v", last, next, err)
	}
	lastN, _ := strconv.Atoi(last)
	if n, _ := strconv.Atoi(next[0].Seq); n != lastN+1 {
		t.Fatalf("sequence after reopen = %s, want %d", next[0].Seq, lastN+1)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := testContext(t)
	for _, p := range []string{"", ":memory:", "file:x.db", filepath.Join(t.TempDir(), "a?b")} {
		if s, err := Open(ctx, p); !errors.Is(err, store.ErrInvalid) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(%q): %v, want ErrInvalid", p, err)
		}
	}
}

func TestCloseWakesLongPoll(t *testing.T) {
	ctx := testContext(t)
	s, err := Open(ctx, filepath.Join(t.TempDir(), "x.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := s.Changes(ctx, store.ChangesOptions{Since: "now", Wait: time.Minute})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("long poll after Close: %v, want ErrUnavailable", err)
		}
	case <-ctx.Done():
		t.Fatal("long poll did not return after Close")
	}
}

// TestUpgradeDropsDeepRows: a version 1 database indexed every depth; on
// opening it, the rows below maxIndexDepth go and the others stay.
func TestUpgradeDropsDeepRows(t *testing.T) {
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "v1.sqlite")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"a":{"b":{"c":{"d":{"e":{"f":{"g":"deep"}},"é":"shallow"}}}}}`
	if _, err := s.Put(ctx, store.Document{ID: "x", Body: json.RawMessage(body)}); err != nil {
		t.Fatal(err)
	}
	// What version 1 wrote besides: the rows below depth 5.
	for _, segs := range [][]string{{"a", "b", "c", "d", "e", "f"}, {"a", "b", "c", "d", "e", "f", "g"}} {
		res, err := s.writer.ExecContext(ctx, `INSERT INTO paths(path) VALUES (?)`, []byte(pathKey(segs)))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := res.LastInsertId()
		if _, err := s.writer.ExecContext(ctx, `INSERT INTO fields(pid, value, rid) SELECT ?, 'deep', rid FROM docs WHERE id = 'x'`, pid); err != nil {
			t.Fatal(err)
		}
	}
	count := func(s *Store) (n int) {
		if err := s.writer.QueryRowContext(ctx, `SELECT count(*) FROM fields`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count(s)
	if _, err := s.writer.ExecContext(ctx, `PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	if after := count(s); after != before-2 {
		t.Fatalf("%d index rows before the upgrade, %d after; want 2 fewer", before, after)
	}
	docs, err := s.Find(ctx, store.Query{Selector: json.RawMessage(`{"a.b.c.d.é":"shallow","a.b.c.d.e.f.g":"deep"}`)})
	if err != nil || len(docs) != 1 {
		t.Fatalf("Find after the upgrade: %v, %d documents", err, len(docs))
	}
}
