package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/store"
)

func mustChanges(t *testing.T, ctx context.Context, s store.Store, opts store.ChangesOptions) ([]store.Change, string) {
	t.Helper()
	changes, last, err := s.Changes(ctx, opts)
	if err != nil {
		t.Fatalf("Changes(%+v): %v", opts, err)
	}
	if last == "" {
		t.Fatalf("Changes(%+v) returned an empty position", opts)
	}
	for _, c := range changes {
		if c.Seq == "" || c.ID == "" || c.Rev == "" {
			t.Fatalf("Changes(%+v): incomplete change %+v", opts, c)
		}
	}
	return changes, last
}

// checkChanges compares ids, revisions and deleted flags, in order.
func checkChanges(t *testing.T, got []store.Change, want []store.Change) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].ID == want[i].ID && got[i].Rev == want[i].Rev && got[i].Deleted == want[i].Deleted
	}
	if !ok {
		t.Fatalf("changes = %+v, want (ignoring Seq) %+v", got, want)
	}
}

func testChanges(t *testing.T, open func(t *testing.T) store.Store) {
	cases := []struct {
		name string
		run  func(t *testing.T, ctx context.Context, s store.Store)
	}{
		{"Empty", func(t *testing.T, ctx context.Context, s store.Store) {
			changes, _ := mustChanges(t, ctx, s, store.ChangesOptions{})
			if len(changes) != 0 {
				t.Fatalf("changes of an empty store = %+v", changes)
			}
		}},
		{"WriteOrder", func(t *testing.T, ctx context.Context, s store.Store) {
			ra := mustPut(t, ctx, s, "a", "", `{}`)
			rc := mustPut(t, ctx, s, "c", "", `{}`)
			rb := mustPut(t, ctx, s, "b", "", `{}`)
			for _, since := range []string{"", "0"} {
				changes, last := mustChanges(t, ctx, s, store.ChangesOptions{Since: since})
				checkChanges(t, changes, []store.Change{{ID: "a", Rev: ra}, {ID: "c", Rev: rc}, {ID: "b", Rev: rb}})
				if last != changes[2].Seq {
					t.Fatalf("last = %q, want the last change's Seq %q", last, changes[2].Seq)
				}
			}
		}},
		{"UpdateMovesToEnd", func(t *testing.T, ctx context.Context, s store.Store) {
			ra := mustPut(t, ctx, s, "a", "", `{"v":1}`)
			rb := mustPut(t, ctx, s, "b", "", `{}`)
			ra2 := mustPut(t, ctx, s, "a", ra, `{"v":2}`)
			changes, _ := mustChanges(t, ctx, s, store.ChangesOptions{})
			// CouchDB lists a document once, at its latest change; a store may
			// also list earlier ones, but never after the latest.
			if len(changes) < 2 {
				t.Fatalf("changes = %+v, want b then a", changes)
			}
			lastA := changes[len(changes)-1]
			if lastA.ID != "a" || lastA.Rev != ra2 {
				t.Fatalf("last change = %+v, want a at %s", lastA, ra2)
			}
			iB := slices.IndexFunc(changes, func(c store.Change) bool { return c.ID == "b" })
			if iB < 0 || changes[iB].Rev != rb {
				t.Fatalf("changes = %+v, want b at %s before the last", changes, rb)
			}
			for _, c := range changes[:len(changes)-1] {
				if c.ID == "a" && c.Rev == ra2 {
					t.Fatalf("changes = %+v: a's latest revision listed before the end", changes)
				}
			}
		}},
		{"SinceContinues", func(t *testing.T, ctx context.Context, s store.Store) {
			ra := mustPut(t, ctx, s, "a", "", `{}`)
			first, last := mustChanges(t, ctx, s, store.ChangesOptions{})
			checkChanges(t, first, []store.Change{{ID: "a", Rev: ra}})
			rb := mustPut(t, ctx, s, "b", "", `{}`)
			rc := mustPut(t, ctx, s, "c", "", `{}`)
			next, last2 := mustChanges(t, ctx, s, store.ChangesOptions{Since: last})
			checkChanges(t, next, []store.Change{{ID: "b", Rev: rb}, {ID: "c", Rev: rc}})
			// Any change's Seq is a position too.
			fromB, _ := mustChanges(t, ctx, s, store.ChangesOptions{Since: next[0].Seq})
			checkChanges(t, fromB, []store.Change{{ID: "c", Rev: rc}})
			none, last3 := mustChanges(t, ctx, s, store.ChangesOptions{Since: last2})
			if len(none) != 0 || last3 == "" {
				t.Fatalf("changes since the end = %+v (last %q), want none", none, last3)
			}
		}},
		{"Limit", func(t *testing.T, ctx context.Context, s store.Store) {
			ra := mustPut(t, ctx, s, "a", "", `{}`)
			rb := mustPut(t, ctx, s, "b", "", `{}`)
			rc := mustPut(t, ctx, s, "c", "", `{}`)
			page1, last := mustChanges(t, ctx, s, store.ChangesOptions{Limit: 2})
			checkChanges(t, page1, []store.Change{{ID: "a", Rev: ra}, {ID: "b", Rev: rb}})
			if last != page1[1].Seq {
				t.Fatalf("last = %q, want %q", last, page1[1].Seq)
			}
			page2, _ := mustChanges(t, ctx, s, store.ChangesOptions{Since: last, Limit: 2})
			checkChanges(t, page2, []store.Change{{ID: "c", Rev: rc}})
		}},
		{"Delete", func(t *testing.T, ctx context.Context, s store.Store) {
			ra := mustPut(t, ctx, s, "a", "", `{}`)
			rb := mustPut(t, ctx, s, "b", "", `{}`)
			_, last := mustChanges(t, ctx, s, store.ChangesOptions{})
			tomb := mustDelete(t, ctx, s, "a", ra)
			changes, _ := mustChanges(t, ctx, s, store.ChangesOptions{Since: last})
			checkChanges(t, changes, []store.Change{{ID: "a", Rev: tomb, Deleted: true}})
			all, _ := mustChanges(t, ctx, s, store.ChangesOptions{})
			end := all[len(all)-1]
			if end.ID != "a" || !end.Deleted || end.Rev != tomb {
				t.Fatalf("last change = %+v, want a deleted at %s", end, tomb)
			}
			if !slices.ContainsFunc(all, func(c store.Change) bool { return c.ID == "b" && c.Rev == rb && !c.Deleted }) {
				t.Fatalf("changes = %+v, want b at %s", all, rb)
			}
		}},
		{"SinceNow", func(t *testing.T, ctx context.Context, s store.Store) {
			mustPut(t, ctx, s, "a", "", `{}`)
			changes, last := mustChanges(t, ctx, s, store.ChangesOptions{Since: "now"})
			if len(changes) != 0 {
				t.Fatalf("changes since now = %+v, want none", changes)
			}
			rb := mustPut(t, ctx, s, "b", "", `{}`)
			after, _ := mustChanges(t, ctx, s, store.ChangesOptions{Since: last})
			checkChanges(t, after, []store.Change{{ID: "b", Rev: rb}})
		}},
		{"WaitWakesOnWrite", func(t *testing.T, ctx context.Context, s store.Store) {
			mustPut(t, ctx, s, "a", "", `{}`)
			_, last := mustChanges(t, ctx, s, store.ChangesOptions{})
			var (
				wg  sync.WaitGroup
				rev string
				err error
			)
			wg.Go(func() {
				select {
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
					return
				}
				rev, err = s.Put(ctx, store.Document{ID: "b", Body: []byte(`{}`)})
			})
			const wait = 5 * time.Second
			start := time.Now()
			changes, _, cerr := s.Changes(ctx, store.ChangesOptions{Since: last, Wait: wait})
			elapsed := time.Since(start)
			wg.Wait()
			if err != nil {
				t.Fatalf("concurrent Put: %v", err)
			}
			if cerr != nil {
				t.Fatalf("Changes with Wait: %v", cerr)
			}
			checkChanges(t, changes, []store.Change{{ID: "b", Rev: rev}})
			if elapsed >= wait-time.Second {
				t.Fatalf("Changes with Wait returned after %v: it slept instead of waking on the write", elapsed)
			}
		}},
		{"WaitTimesOut", func(t *testing.T, ctx context.Context, s store.Store) {
			mustPut(t, ctx, s, "a", "", `{}`)
			changes, last := mustChanges(t, ctx, s, store.ChangesOptions{Since: "now", Wait: 200 * time.Millisecond})
			if len(changes) != 0 {
				t.Fatalf("changes = %+v, want none", changes)
			}
			rb := mustPut(t, ctx, s, "b", "", `{}`)
			after, _ := mustChanges(t, ctx, s, store.ChangesOptions{Since: last})
			checkChanges(t, after, []store.Change{{ID: "b", Rev: rb}})
		}},
		{"WaitRespectsContext", func(t *testing.T, ctx context.Context, s store.Store) {
			mustPut(t, ctx, s, "a", "", `{}`)
			_, last := mustChanges(t, ctx, s, store.ChangesOptions{})
			short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			changes, _, err := s.Changes(short, store.ChangesOptions{Since: last, Wait: time.Minute})
			if elapsed := time.Since(start); elapsed > 20*time.Second {
				t.Fatalf("Changes ignored its context for %v", elapsed)
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				t.Fatalf("Changes after the context expired: %v, want a context error or no changes", err)
			}
			if len(changes) != 0 {
				t.Fatalf("changes = %+v, want none", changes)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			c.run(t, testContext(t), s)
		})
	}
}
