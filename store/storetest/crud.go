package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/cmbs/cmbs/store"
)

func testCRUD(t *testing.T, open func(t *testing.T) store.Store) {
	cases := []struct {
		name string
		run  func(t *testing.T, ctx context.Context, s store.Store)
	}{
		{"CreateThenGet", func(t *testing.T, ctx context.Context, s store.Store) {
			body := `{"type":"resource","kind":"http://x#k","attributes":{"a":{"b":1.5,"c":[1,"x",null,true]}},"title":"t"}`
			rev := mustPut(t, ctx, s, "/cmbs/member/1", "", body)
			checkRev(t, rev, 1)
			doc := mustGet(t, ctx, s, "/cmbs/member/1")
			if doc.ID != "/cmbs/member/1" || doc.Rev != rev {
				t.Fatalf("Get = {%q, %q}, want {%q, %q}", doc.ID, doc.Rev, "/cmbs/member/1", rev)
			}
			checkBody(t, doc.Body, body)
		}},
		{"UpdateWithCurrentRev", func(t *testing.T, ctx context.Context, s store.Store) {
			rev1 := mustPut(t, ctx, s, "a", "", `{"n":1}`)
			rev2 := mustPut(t, ctx, s, "a", rev1, `{"n":2}`)
			checkRev(t, rev2, 2)
			if rev2 == rev1 {
				t.Fatalf("update kept revision %q", rev1)
			}
			doc := mustGet(t, ctx, s, "a")
			if doc.Rev != rev2 {
				t.Fatalf("Get rev = %q, want %q", doc.Rev, rev2)
			}
			checkBody(t, doc.Body, `{"n":2}`)
			rev3 := mustPut(t, ctx, s, "a", rev2, `{"n":3}`)
			checkRev(t, rev3, 3)
		}},
		{"UpdateWithStaleRev", func(t *testing.T, ctx context.Context, s store.Store) {
			rev1 := mustPut(t, ctx, s, "a", "", `{"n":1}`)
			rev2 := mustPut(t, ctx, s, "a", rev1, `{"n":2}`)
			_, err := s.Put(ctx, store.Document{ID: "a", Rev: rev1, Body: json.RawMessage(`{"n":3}`)})
			checkErr(t, "Put with stale rev", err, store.ErrConflict)
			doc := mustGet(t, ctx, s, "a")
			if doc.Rev != rev2 {
				t.Fatalf("after conflict rev = %q, want %q", doc.Rev, rev2)
			}
			checkBody(t, doc.Body, `{"n":2}`)
		}},
		{"UpdateWithoutRev", func(t *testing.T, ctx context.Context, s store.Store) {
			mustPut(t, ctx, s, "a", "", `{"n":1}`)
			_, err := s.Put(ctx, store.Document{ID: "a", Body: json.RawMessage(`{"n":2}`)})
			checkErr(t, "Put without rev on an existing document", err, store.ErrConflict)
			checkBody(t, mustGet(t, ctx, s, "a").Body, `{"n":1}`)
		}},
		{"CreateExistingID", func(t *testing.T, ctx context.Context, s store.Store) {
			mustPut(t, ctx, s, "a", "", `{"n":1}`)
			_, err := s.Put(ctx, store.Document{ID: "a", Rev: "", Body: json.RawMessage(`{"other":true}`)})
			checkErr(t, "second create", err, store.ErrConflict)
		}},
		{"UpdateMissingWithRev", func(t *testing.T, ctx context.Context, s store.Store) {
			rev := mustPut(t, ctx, s, "a", "", `{"n":1}`)
			_, err := s.Put(ctx, store.Document{ID: "never", Rev: rev, Body: json.RawMessage(`{"n":1}`)})
			checkErr(t, "Put with a rev on a missing document", err, store.ErrConflict)
		}},
		{"GetMissing", func(t *testing.T, ctx context.Context, s store.Store) {
			_, err := s.Get(ctx, "missing")
			checkErr(t, "Get missing", err, store.ErrNotFound)
		}},
		{"DeleteMissing", func(t *testing.T, ctx context.Context, s store.Store) {
			rev := mustPut(t, ctx, s, "a", "", `{"n":1}`)
			_, err := s.Delete(ctx, "missing", rev)
			checkErr(t, "Delete missing", err, store.ErrNotFound)
		}},
		{"DeleteStaleRev", func(t *testing.T, ctx context.Context, s store.Store) {
			rev1 := mustPut(t, ctx, s, "a", "", `{"n":1}`)
			mustPut(t, ctx, s, "a", rev1, `{"n":2}`)
			_, err := s.Delete(ctx, "a", rev1)
			checkErr(t, "Delete with stale rev", err, store.ErrConflict)
			checkBody(t, mustGet(t, ctx, s, "a").Body, `{"n":2}`)
		}},
		{"Delete", func(t *testing.T, ctx context.Context, s store.Store) {
			rev := mustPut(t, ctx, s, "a", "", `{"type":"resource"}`)
			mustPut(t, ctx, s, "b", "", `{"type":"resource"}`)
			tomb := mustDelete(t, ctx, s, "a", rev)
			checkRev(t, tomb, 2)
			_, err := s.Get(ctx, "a")
			checkErr(t, "Get after Delete", err, store.ErrNotFound)
			// Deleting again: the embedded store answers ErrNotFound, PouchDB
			// extends the tombstone; either way the document stays deleted.
			if _, err := s.Delete(ctx, "a", tomb); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
				t.Fatalf("Delete of a deleted document: %v", err)
			}
			_, err = s.Get(ctx, "a")
			checkErr(t, "Get after a second Delete", err, store.ErrNotFound)
			for _, sel := range []string{`{}`, `{"type":"resource"}`} {
				got := ids(mustFind(t, ctx, s, store.Query{Selector: json.RawMessage(sel)}))
				if len(got) != 1 || got[0] != "b" {
					t.Fatalf("Find(%s) after Delete = %q, want [b]", sel, got)
				}
			}
		}},
		{"RecreateAfterDelete", func(t *testing.T, ctx context.Context, s store.Store) {
			rev1 := mustPut(t, ctx, s, "a", "", `{"v":1}`)
			tomb := mustDelete(t, ctx, s, "a", rev1)
			// CouchDB continues the revision history (3-…); only require a new revision.
			rev := mustPut(t, ctx, s, "a", "", `{"v":2}`)
			checkRev(t, rev, 0)
			if rev == rev1 || rev == tomb {
				t.Fatalf("re-created revision %q repeats an earlier one (%q, %q)", rev, rev1, tomb)
			}
			doc := mustGet(t, ctx, s, "a")
			if doc.Rev != rev {
				t.Fatalf("Get rev = %q, want %q", doc.Rev, rev)
			}
			checkBody(t, doc.Body, `{"v":2}`)
			got := ids(mustFind(t, ctx, s, store.Query{Selector: json.RawMessage(`{"v":2}`)}))
			if len(got) != 1 || got[0] != "a" {
				t.Fatalf("Find after re-create = %q, want [a]", got)
			}
			rev2 := mustPut(t, ctx, s, "a", rev, `{"v":3}`)
			checkRev(t, rev2, revGen(rev)+1)
		}},
		{"UnicodeAndLargeBody", func(t *testing.T, ctx context.Context, s store.Store) {
			big := make([]int, 5000)
			for i := range big {
				big[i] = i
			}
			raw, _ := json.Marshal(map[string]any{"name": "grüße, 世界 \u2028 \"q\" <&>", "list": big, "nested": map[string]any{"x.y": map[string]any{"z": nil}}})
			id := "/cmbs/mémbre/ü"
			mustPut(t, ctx, s, id, "", string(raw))
			checkBody(t, mustGet(t, ctx, s, id).Body, string(raw))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			c.run(t, testContext(t), s)
		})
	}
}

func testErrors(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	ctx := testContext(t)
	rev := mustPut(t, ctx, s, "exists", "", `{"n":1}`)
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"PutArrayBody", func() error {
			_, err := s.Put(ctx, store.Document{ID: "x", Body: json.RawMessage(`[1,2]`)})
			return err
		}, store.ErrInvalid},
		{"PutStringBody", func() error { _, err := s.Put(ctx, store.Document{ID: "x", Body: json.RawMessage(`"x"`)}); return err }, store.ErrInvalid},
		{"PutNullBody", func() error { _, err := s.Put(ctx, store.Document{ID: "x", Body: json.RawMessage(`null`)}); return err }, store.ErrInvalid},
		{"PutEmptyBody", func() error { _, err := s.Put(ctx, store.Document{ID: "x"}); return err }, store.ErrInvalid},
		{"PutMalformedBody", func() error {
			_, err := s.Put(ctx, store.Document{ID: "x", Body: json.RawMessage(`{"a":`)})
			return err
		}, store.ErrInvalid},
		{"PutUpdateNonObject", func() error {
			_, err := s.Put(ctx, store.Document{ID: "exists", Rev: rev, Body: json.RawMessage(`[]`)})
			return err
		}, store.ErrInvalid},
		{"PutEmptyID", func() error { _, err := s.Put(ctx, store.Document{Body: json.RawMessage(`{}`)}); return err }, store.ErrInvalid},
		{"PutUnderscoreID", func() error {
			_, err := s.Put(ctx, store.Document{ID: "_reserved", Body: json.RawMessage(`{}`)})
			return err
		}, store.ErrInvalid},
		{"GetEmptyID", func() error { _, err := s.Get(ctx, ""); return err }, store.ErrInvalid},
		{"DeleteEmptyID", func() error { _, err := s.Delete(ctx, "", rev); return err }, store.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkErr(t, c.name, c.call(), c.want)
		})
	}
	// None of the failed calls changed anything.
	doc := mustGet(t, ctx, s, "exists")
	if doc.Rev != rev {
		t.Fatalf("rev after invalid calls = %q, want %q", doc.Rev, rev)
	}
	_, err := s.Get(ctx, "x")
	checkErr(t, "Get(x) after invalid puts", err, store.ErrNotFound)
}
