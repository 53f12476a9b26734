package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cmbs/cmbs/store"
)

// fixtureHistory writes a varied history: entities created, updated and
// deleted, a document deleted and created again, values the index caps
// (a long array, a wide object, deep nesting) and a message result under
// the path the fixture's store leaves unindexed.
func fixtureHistory(ctx context.Context, s store.Store) error {
	revs := map[string]string{}
	put := func(id string, body string) error {
		rev, err := s.Put(ctx, store.Document{ID: id, Rev: revs[id], Body: json.RawMessage(body)})
		if err != nil {
			return fmt.Errorf("put %s: %w", id, err)
		}
		revs[id] = rev
		return nil
	}
	del := func(id string) error {
		rev, err := s.Delete(ctx, id, revs[id])
		if err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
		revs[id] = rev
		return nil
	}
	for i := range 60 {
		if err := put(fmt.Sprintf("/e/%03d", i), string(entityBody(i))); err != nil {
			return err
		}
	}
	for i := 0; i < 60; i += 3 {
		if err := put(fmt.Sprintf("/e/%03d", i), string(entityBody(i+1000))); err != nil {
			return err
		}
	}
	for i := 1; i < 60; i += 7 {
		if err := del(fmt.Sprintf("/e/%03d", i)); err != nil {
			return err
		}
	}
	if err := put("/e/008", `{"type":"resource","kind":"http://x#k","title":"again","attributes":{"a":{"b":{"c":"again","n":-1.5,"t":true,"z":null}}}}`); err != nil {
		return err
	}
	long := make([]string, 1500)
	for i := range long {
		long[i] = fmt.Sprintf("t%d", i)
	}
	wide := map[string]int{}
	for i := range 1200 {
		wide[fmt.Sprintf("k%d", i)] = i
	}
	big, _ := json.Marshal(map[string]any{"type": "link", "topics": long, "wide": wide,
		"deep": map[string]any{"a": map[string]any{"b": map[string]any{"c": map[string]any{"d": map[string]any{"e": map[string]any{"f": "deepest"}}}}}}})
	if err := put("/big", string(big)); err != nil {
		return err
	}
	if err := put("/m/1", `{"type":"resource","kind":"http://x#msg","attributes":{"cmbs":{"message":{"result":{"delivered":3,"deliveries":[{"member":"a"},{"member":"b"}]}}}}}`); err != nil {
		return err
	}
	if err := put("/m/1", `{"type":"resource","kind":"http://x#msg","attributes":{"cmbs":{"message":{"result":{"delivered":4,"deliveries":[{"member":"c"}]}}}}}`); err != nil {
		return err
	}
	return del("/e/004")
}

// fixtureSelectors are the queries whose results the migration keeps.
var fixtureSelectors = []string{
	`{}`,
	`{"kind":"http://x#k"}`,
	`{"kind":"http://x#k","attributes.a.b.c":"v7"}`,
	`{"attributes.a.b.n":{"$gt":1005}}`,
	`{"attributes.a.b.n":{"$lt":20},"title":{"$exists":true}}`,
	`{"mixins":{"$elemMatch":{"$eq":"http://x#m3"}}}`,
	`{"title":{"$regex":"^entity 1"}}`,
	`{"attributes.a.b.t":true}`,
	`{"attributes.a.b.z":null}`,
	`{"topics":"t1400"}`,
	`{"topics":{"$elemMatch":{"$eq":"t1400"}}}`,
	`{"attributes.a.b.c":{"$in":["v1","u50","again"]}}`,
	`{"wide.k1100":1100}`,
	`{"deep.a.b.c.d.e.f":"deepest"}`,
	`{"attributes.cmbs.message.result.delivered":4}`,
	`{"attributes.cmbs.message.result.deliveries":{"$elemMatch":{"member":"c"}}}`,
	`{"attributes.cmbs.message.result.deliveries.0.member":"a"}`,
	`{"$or":[{"title":"again"},{"attributes.a.b.c":"v3"}]}`,
}

// fixtureSnapshot is everything a reader can see of a store: each
// document's revision and body, the change sequence, and the ids and
// revisions every fixture selector finds.
type fixtureSnapshot struct {
	Docs    map[string]store.Document
	Changes []store.Change
	Finds   map[string][]string
}

func takeSnapshot(ctx context.Context, s store.Store) (fixtureSnapshot, error) {
	snap := fixtureSnapshot{Docs: map[string]store.Document{}, Finds: map[string][]string{}}
	changes, _, err := s.Changes(ctx, store.ChangesOptions{})
	if err != nil {
		return snap, err
	}
	snap.Changes = changes
	for _, c := range changes {
		if c.Deleted {
			continue
		}
		d, err := s.Get(ctx, c.ID)
		if err != nil {
			return snap, err
		}
		snap.Docs[c.ID] = d
	}
	for _, sel := range fixtureSelectors {
		docs, err := s.Find(ctx, store.Query{Selector: json.RawMessage(sel)})
		if err != nil {
			return snap, fmt.Errorf("find %s: %w", sel, err)
		}
		var found []string
		for _, d := range docs {
			found = append(found, d.ID+" "+d.Rev)
		}
		snap.Finds[sel] = found
	}
	return snap, nil
}

// copyFile copies a fixture database into dir.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// A version 3 file (testdata/v3.sqlite, written by the version 3 code
// with fixtureHistory, its snapshot in testdata/v3.json) opened by this
// code keeps every document, revision, change and selector result, under
// the options it was written with and under others (a rebuild either
// way), and goes on taking writes exactly like a store that had the same
// history from the start.
func TestOpenVersion3File(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "v3.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want fixtureSnapshot
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"same options", []Option{WithUnindexed("attributes.cmbs.message.result")}},
		{"no options", nil},
		{"other options", []Option{WithUnindexed("attributes.a", "topics")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "v3.sqlite")
			copyFile(t, filepath.Join("testdata", "v3.sqlite"), path)
			s, err := Open(ctx, path, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var version int
			if err := s.writer.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != schemaVersion {
				t.Fatalf("user_version %d (%v), want %d", version, err, schemaVersion)
			}
			var n int
			if err := s.writer.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE name = 'fields_by_doc'").Scan(&n); err != nil || n != 0 {
				t.Fatalf("fields_by_doc still there (%d, %v)", n, err)
			}
			got, err := takeSnapshot(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			compareSnapshots(t, got, want)
			checkIndexExact(t, s)
			// An existing file keeps its page size.
			if got := pageSizeOf(t, s); got != 4096 {
				t.Fatalf("page size of the version 3 file %d, want 4096 (kept)", got)
			}

			// The same history in a new store, then the same writes on
			// both: same revisions, same results.
			fresh, err := Open(ctx, filepath.Join(t.TempDir(), "fresh.sqlite"), tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer fresh.Close()
			if err := fixtureHistory(ctx, fresh); err != nil {
				t.Fatal(err)
			}
			if got := pageSizeOf(t, fresh); got != pageSize {
				t.Fatalf("page size of a new file %d, want %d", got, pageSize)
			}
			for _, st := range []*Store{s, fresh} {
				if err := fixtureMoreWrites(ctx, st); err != nil {
					t.Fatal(err)
				}
				checkIndexExact(t, st)
			}
			a, err := takeSnapshot(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			b, err := takeSnapshot(ctx, fresh)
			if err != nil {
				t.Fatal(err)
			}
			compareSnapshots(t, a, b)
		})
	}
}

// fixtureMoreWrites updates, deletes and re-creates documents of the
// fixture, from a fresh cache (so the writer lists old rows itself).
func fixtureMoreWrites(ctx context.Context, s *Store) error {
	s.cache = newDocCache(0)
	for _, id := range []string{"/e/000", "/e/010", "/big", "/m/1", "/e/008"} {
		d, err := s.Get(ctx, id)
		if err != nil {
			return err
		}
		if _, err := s.Put(ctx, store.Document{ID: id, Rev: d.Rev, Body: json.RawMessage(`{"type":"resource","kind":"http://x#k","title":"rewritten","attributes":{"a":{"b":{"c":"v7","n":7}}}}`)}); err != nil {
			return err
		}
	}
	for _, id := range []string{"/e/002", "/e/011"} {
		d, err := s.Get(ctx, id)
		if err != nil {
			return err
		}
		if _, err := s.Delete(ctx, id, d.Rev); err != nil {
			return err
		}
	}
	_, err := s.Put(ctx, store.Document{ID: "/e/004", Body: json.RawMessage(`{"kind":"http://x#k","title":"entity 1 back"}`)})
	return err
}

func compareSnapshots(t *testing.T, got, want fixtureSnapshot) {
	t.Helper()
	if len(got.Docs) != len(want.Docs) {
		t.Errorf("%d documents, want %d", len(got.Docs), len(want.Docs))
	}
	for id, w := range want.Docs {
		g, ok := got.Docs[id]
		if !ok || g.Rev != w.Rev || !jsonEqual(g.Body, w.Body) {
			t.Errorf("document %s: %s %s, want %s %s", id, g.Rev, g.Body, w.Rev, w.Body)
		}
	}
	if fmt.Sprint(got.Changes) != fmt.Sprint(want.Changes) {
		t.Errorf("changes:\n%v\nwant\n%v", got.Changes, want.Changes)
	}
	for _, sel := range fixtureSelectors {
		if fmt.Sprint(got.Finds[sel]) != fmt.Sprint(want.Finds[sel]) {
			t.Errorf("find %s: %v, want %v", sel, got.Finds[sel], want.Finds[sel])
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ra, _ := json.Marshal(x)
	rb, _ := json.Marshal(y)
	return string(ra) == string(rb)
}

// checkIndexExact checks that the fields table holds exactly the rows of
// the live documents' bodies under the store's options: what the writer
// relies on to delete a document's old rows.
func checkIndexExact(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	want := map[string]bool{}
	rows, err := s.writer.QueryContext(ctx, `SELECT d.rid, d.body FROM docs d WHERE d.deleted = 0`)
	if err != nil {
		t.Fatal(err)
	}
	type doc struct {
		rid  int64
		body []byte
	}
	var docs []doc
	for rows.Next() {
		var d doc
		if err := rows.Scan(&d.rid, &d.body); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	rows.Close()
	for _, d := range docs {
		fr, err := bodyRows(d.body, s.unindexed)
		if err != nil {
			t.Fatal(err)
		}
		for r := range fr {
			want[fmt.Sprintf("%q %v %d", r.path, r.val, d.rid)] = true
		}
	}
	rows, err = s.writer.QueryContext(ctx, `SELECT p.path, f.value, f.rid FROM fields f JOIN paths p ON p.pid = f.pid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]bool{}
	for rows.Next() {
		var path []byte
		var v any
		var rid int64
		if err := rows.Scan(&path, &v, &rid); err != nil {
			t.Fatal(err)
		}
		fv, err := storedValue(v)
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("%q %v %d", string(path), fv, rid)
		if !want[key] {
			t.Errorf("index row %s is not a row of its document's body", key)
		}
		got[key] = true
	}
	for key := range want {
		if !got[key] {
			t.Errorf("index row %s missing", key)
		}
	}
}

// A version 4 file reopened with other index options is reindexed: its
// rows are those of the new options, so that later updates delete them.
func TestReopenWithOtherOptions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.sqlite")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := fixtureHistory(ctx, s); err != nil {
		t.Fatal(err)
	}
	want, err := takeSnapshot(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]Option{{WithUnindexed("attributes.a.b", "mixins")}, nil, {WithUnindexed("attributes.cmbs.message.result")}} {
		s, err := Open(ctx, path, opts...)
		if err != nil {
			t.Fatal(err)
		}
		checkIndexExact(t, s)
		got, err := takeSnapshot(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		compareSnapshots(t, got, want)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A rebuild outlives its context's deadline (a start timeout shorter than
// the rebuild must not make the file unopenable), and stops when the
// context is canceled, leaving the file as it was.
func TestReindexDeadlineAndCancel(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v3.sqlite")
	copyFile(t, filepath.Join("testdata", "v3.sqlite"), path)

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Open(canceled, path); err == nil {
		t.Fatal("Open with a canceled context succeeded")
	}
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	// The rebuild itself, on an opened store.
	st, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.reindex(expired, schemaVersion, st.indexOptions()); err != nil {
		t.Fatalf("rebuild with an expired deadline: %v", err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if err := st.reindex(gone, schemaVersion, st.indexOptions()); err == nil {
		t.Fatal("rebuild with a canceled context succeeded")
	}
	checkIndexExact(t, st)
}

// Open of a file whose index must be rebuilt succeeds when its deadline
// passes during the rebuild (cmbsd's start timeout must not make a large
// file unopenable), and fails, leaving the file as it was, when its
// context is canceled during the rebuild.
func TestOpenOutlivesDeadlineDuringRebuild(t *testing.T) {
	t.Cleanup(func() { reindexing = nil })
	path := filepath.Join(t.TempDir(), "v3.sqlite")
	copyFile(t, filepath.Join("testdata", "v3.sqlite"), path)

	stopped, stop := context.WithCancel(context.Background())
	reindexing = stop
	if st, err := Open(stopped, path); err == nil {
		st.Close()
		t.Fatal("Open canceled during the rebuild succeeded")
	}
	reindexing = nil
	st, err := Open(context.Background(), path, WithUnsearched("nothing.here"))
	if err != nil {
		t.Fatal(err)
	}
	checkIndexExact(t, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Other options again: another rebuild, during which the deadline passes.
	short, cancelShort := context.WithDeadline(context.Background(), time.Now().Add(100*time.Millisecond))
	defer cancelShort()
	reindexing = func() { <-short.Done() }
	st, err = Open(short, path)
	if err != nil {
		t.Fatalf("Open whose deadline passed during the rebuild: %v", err)
	}
	defer st.Close()
	checkIndexExact(t, st)
}

// pageSizeOf returns the page size of the store's file.
func pageSizeOf(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.writer.QueryRowContext(context.Background(), "PRAGMA page_size").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
