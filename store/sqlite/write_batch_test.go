package sqlite

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/store"
)

// indexOf is the index rows the fields table holds for document id.
func indexOf(t *testing.T, s *Store, id string) map[pidRow]struct{} {
	t.Helper()
	rows, err := s.reader.Query(`SELECT f.pid, f.value FROM fields f JOIN docs d ON d.rid = f.rid WHERE d.id = ?`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[pidRow]struct{}{}
	for rows.Next() {
		var r pidRow
		var v any
		if err := rows.Scan(&r.pid, &v); err != nil {
			t.Fatal(err)
		}
		if r.val, err = storedValue(v); err != nil {
			t.Fatal(err)
		}
		out[r] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantIndex is the index rows a body should have under s's options.
func wantIndex(t *testing.T, s *Store, id string, body []byte) map[pidRow]struct{} {
	t.Helper()
	op, err := putOp(store.Document{ID: id, Body: body}, s.unindexed)
	if err != nil {
		t.Fatal(err)
	}
	out := map[pidRow]struct{}{}
	for r := range op.rows {
		pid, ok, err := s.lookupPath(t.Context(), r.path)
		if err != nil || !ok {
			t.Fatalf("path %q of %s not interned: %v", r.path, id, err)
		}
		out[pidRow{pid, r.val}] = struct{}{}
	}
	return out
}

func checkIndex(t *testing.T, s *Store, id string) {
	t.Helper()
	doc, err := s.Get(t.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		if got := indexOf(t, s, id); len(got) != 0 {
			t.Fatalf("deleted %s has %d index rows", id, len(got))
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	got, want := indexOf(t, s, id), wantIndex(t, s, id, doc.Body)
	if !maps.Equal(got, want) {
		t.Fatalf("%s %s: index rows %v, want %v", id, doc.Body, got, want)
	}
}

// Updates take the stored rows of a document this store wrote from its
// cached body instead of the index (knownRows): after creates, updates
// (many in one commit, several of one document), deletes and re-creates,
// with values inside and outside an unindexed path, every document's index
// rows are exactly those of its body.
func TestIndexRowsExactAfterUpdates(t *testing.T) {
	ctx := testContext(t)
	s := openTest(t, filepath.Join(t.TempDir(), "cmbs.sqlite"), WithUnindexed("attributes.r"))
	r := rand.New(rand.NewPCG(7, 11))
	body := func() []byte {
		raw, err := json.Marshal(map[string]any{
			"kind":       []string{"m", "n"}[r.IntN(2)],
			"attributes": map[string]any{"r": randomValue(r, 0), "s": randomValue(r, 0)},
			"x":          randomObject(r, 0),
		})
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	const docs = 12
	var mu sync.Mutex
	revs := map[string]string{}
	for round := range 25 {
		var wg sync.WaitGroup
		for d := range docs {
			wg.Add(1)
			bodies := [][]byte{body(), body()}
			del := r.IntN(6) == 0
			go func() {
				defer wg.Done()
				id := fmt.Sprint("d", d)
				// Background writes share commits: a document's two
				// updates often land in one transaction.
				wctx := store.InBackground(ctx)
				for _, b := range bodies {
					mu.Lock()
					rev := revs[id]
					mu.Unlock()
					var err error
					if del && rev != "" {
						rev, err = s.Delete(wctx, id, rev)
						rev = ""
					} else {
						rev, err = s.Put(wctx, store.Document{ID: id, Rev: rev, Body: b})
					}
					if err != nil {
						t.Errorf("round %d %s: %v", round, id, err)
						return
					}
					mu.Lock()
					revs[id] = rev
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for d := range docs {
			checkIndex(t, s, fmt.Sprint("d", d))
		}
	}
}

// A document whose rows an older program (here: another indexing of
// attributes.r) wrote, and that a reader put in the cache, gets its rows
// from the index when updated, so the old rows go.
func TestUpdateDropsRowsOfOlderIndexing(t *testing.T) {
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "cmbs.sqlite")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := s.Put(ctx, store.Document{ID: "m", Body: []byte(`{"attributes":{"r":{"n":1,"who":["x","y"]}}}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path, WithUnindexed("attributes.r"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(ctx, "m"); err != nil { // cached by the reader
		t.Fatal(err)
	}
	// Its paths interned and cached, as they would be in a running store.
	if _, err := s.Put(ctx, store.Document{ID: "other", Body: []byte(`{"attributes":{"r":{"n":1}}}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, store.Document{ID: "m", Rev: rev, Body: []byte(`{"attributes":{"r":{"n":1,"who":["x","y","z"]}}}`)}); err != nil {
		t.Fatal(err)
	}
	checkIndex(t, s, "m")
}

// gatherTest starts n background writes about 300 µs apart, each in its
// own goroutine, then one foreground write if fg, and returns the number
// of commits they took once all are stored.
func gatherTest(t *testing.T, s *Store, n int, fg bool) uint64 {
	t.Helper()
	ctx := testContext(t)
	before := s.commits.Load()
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for i := range n {
		time.Sleep(300 * time.Microsecond)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Put(store.InBackground(ctx), store.Document{ID: fmt.Sprint("bg-", i), Body: []byte(`{"n":1}`)})
			errs <- err
		}()
	}
	if fg {
		_, err := s.Put(ctx, store.Document{ID: "fg", Body: []byte(`{"n":2}`)})
		errs <- err
	}
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
	return s.commits.Load() - before
}

// A background batch keeps gathering while writes keep coming, each
// within backgroundWait of the one before, without a foreground write to
// end it; it ends at backgroundMax even if they keep coming.
func TestBackgroundBatchWindow(t *testing.T) {
	const n = 40
	t.Run("gap", func(t *testing.T) {
		s := openTest(t, filepath.Join(t.TempDir(), "cmbs.sqlite"))
		// Far longer than the writes are apart, however slow the machine.
		s.backgroundWait, s.backgroundMax = time.Second, time.Minute
		if c := gatherTest(t, s, n, false); c > n/2 {
			t.Fatalf("%d writes took %d commits", n, c)
		}
	})
	t.Run("max", func(t *testing.T) {
		s := openTest(t, filepath.Join(t.TempDir(), "cmbs.sqlite"))
		// The writes are started over at least 12 ms: more than one
		// batch of at most 4 ms.
		s.backgroundWait, s.backgroundMax = time.Minute, 4*time.Millisecond
		if c := gatherTest(t, s, n, false); c < 2 {
			t.Fatalf("%d writes 300 µs apart took %d commit, with batches of at most 4 ms", n, c)
		}
	})
}

// A request that fails with a database error after it has written (here
// the database is full in the middle of a document) fails alone: the
// batch it was in is applied again with a savepoint around every request,
// and the others are stored, while nothing of the failed one is.
func TestDatabaseErrorFailsOnlyItsRequest(t *testing.T) {
	ctx := testContext(t)
	s := openTest(t, filepath.Join(t.TempDir(), "cmbs.sqlite"))
	if _, err := s.Put(ctx, store.Document{ID: "first", Body: []byte(`{"n":0}`)}); err != nil {
		t.Fatal(err)
	}
	var pages int
	if err := s.writer.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	// Room for the small documents, not for the big one's 500 index rows
	// (each on a path of its own) and 400 KB body.
	if _, err := s.writer.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages+40)); err != nil {
		t.Fatal(err)
	}
	big := map[string]any{"pad": strings.Repeat("p", 400<<10)}
	for i := range 500 {
		big[fmt.Sprint("f", i)] = i
	}
	bigBody, err := json.Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	s.backgroundWait, s.backgroundMax = time.Second, time.Minute
	before := s.commits.Load()
	const small = 10
	var wg sync.WaitGroup
	errs := make([]error, small+1)
	for i := range small + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doc := store.Document{ID: fmt.Sprint("small-", i), Body: []byte(`{"kind":"s"}`)}
			if i == small/2 {
				doc = store.Document{ID: "big", Body: bigBody}
			}
			_, errs[i] = s.Put(store.InBackground(ctx), doc)
		}()
		time.Sleep(time.Millisecond)
	}
	// The foreground write ends the batch all the others are in.
	_, err = s.Put(ctx, store.Document{ID: "fg", Body: []byte(`{"kind":"s"}`)})
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		switch {
		case i == small/2 && !errors.Is(err, store.ErrUnavailable):
			t.Errorf("big document: %v, want ErrUnavailable (database full)", err)
		case i != small/2 && err != nil:
			t.Errorf("small-%d: %v", i, err)
		}
	}
	if c := s.commits.Load() - before; c > 2 {
		t.Errorf("%d commits, want the writes gathered in one batch (and the foreground one)", c)
	}
	if _, err := s.Get(ctx, "big"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(big) = %v, want not found", err)
	}
	var rows int
	if err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM fields WHERE rid NOT IN (SELECT rid FROM docs)`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Errorf("%d index rows of no document", rows)
	}
	docs, err := s.Find(ctx, store.Query{Selector: json.RawMessage(`{"kind":"s"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != small+1 {
		t.Errorf("found %d small documents, want %d", len(docs), small+1)
	}
}

// killChildEnv names the database of the writing child process of
// TestKillDuringBackgroundWrites.
const killChildEnv = "CMBS_SQLITE_KILL_CHILD"

// A process killed (SIGKILL) while background writes are being gathered
// and committed loses none that it acknowledged: after reopening, every
// acknowledged revision, or a later one, is there. The child process (this
// test binary again) creates and updates documents from 16 goroutines
// with store.InBackground, printing each acknowledged revision.
func TestKillDuringBackgroundWrites(t *testing.T) {
	if path := os.Getenv(killChildEnv); path != "" {
		killChild(path)
		return
	}
	ctx := testContext(t)
	path := filepath.Join(t.TempDir(), "cmbs.sqlite")
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestKillDuringBackgroundWrites$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{} // id → last acknowledged revision
	lines := bufio.NewScanner(out)
	for n := 0; n < 1500 && lines.Scan(); n++ {
		id, rev, ok := strings.Cut(lines.Text(), " ")
		if !ok {
			t.Fatalf("child wrote %q", lines.Text())
		}
		acked[id] = rev
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acked) == 0 {
		t.Fatal("the child acknowledged no write")
	}
	s, err := Open(ctx, path, WithUnindexed("attributes.r"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gen := func(rev string) int {
		n, _ := strconv.Atoi(rev[:strings.IndexByte(rev, '-')])
		return n
	}
	for id, rev := range acked {
		doc, err := s.Get(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged %s %s: %v", id, rev, err)
		}
		if g := gen(doc.Rev); g < gen(rev) || g == gen(rev) && doc.Rev != rev {
			t.Fatalf("%s: stored revision %s, acknowledged %s", id, doc.Rev, rev)
		}
		checkIndex(t, s, id)
	}
	t.Logf("%d documents acknowledged before the kill, all there", len(acked))
}

// killChild writes until it is killed (or a minute has passed).
func killChild(path string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, path, WithUnindexed("attributes.r"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx := store.InBackground(ctx)
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				rev := ""
				for u := range 4 { // a create and three updates
					body := fmt.Sprintf(`{"kind":"m","attributes":{"r":{"u":%d,"w":%d}},"n":%d}`, u, w, i)
					var err error
					if rev, err = s.Put(wctx, store.Document{ID: id, Rev: rev, Body: []byte(body)}); err != nil {
						return
					}
					mu.Lock()
					fmt.Printf("%s %s\n", id, rev)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	_ = s.Close()
}

// Writers racing to update one document over the same revision, their
// writes gathered in one transaction: one wins, the others conflict, as
// when they commit apart (the writer knows the first changed the
// document though the cache does not yet).
func TestRacingUpdatesInOneBatch(t *testing.T) {
	ctx := testContext(t)
	s := openTest(t, filepath.Join(t.TempDir(), "cmbs.sqlite"))
	rev, err := s.Put(ctx, store.Document{ID: "d", Body: []byte(`{"n":0}`)})
	if err != nil {
		t.Fatal(err)
	}
	s.backgroundWait, s.backgroundMax = time.Second, time.Minute
	before := s.commits.Load()
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Put(store.InBackground(ctx), store.Document{ID: "d", Rev: rev, Body: []byte(fmt.Sprintf(`{"n":%d}`, i+1))})
		})
	}
	time.Sleep(50 * time.Millisecond) // all queued, most likely
	if _, err := s.Put(ctx, store.Document{ID: "end", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Fatal(err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d updates over one revision stored (%d commits)", won, n, s.commits.Load()-before)
	}
	checkIndex(t, s, "d")
}
