package entities_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/model"
)

const computeKind = "http://schemas.ogf.org/occi/infrastructure#compute"

// newComputes starts a server and creates n compute resources, returning
// the entity service and their locations.
func newComputes(t *testing.T, n int) (*entities.Service, []string) {
	t.Helper()
	srv := testserver.Start(t, testserver.Options{})
	svc := srv.OCCI.Entities()
	kind, ok := svc.Categories().Get(computeKind)
	if !ok {
		t.Fatal("no compute kind")
	}
	var inputs []*model.EntityInput
	for i := range n {
		in, err := model.ParseEntityInput(map[string]any{
			"kind": computeKind, "id": fmt.Sprintf("c%03d", i),
			"attributes": map[string]any{"occi": map[string]any{"compute": map[string]any{"hostname": "h0"}}},
		}, model.TypeResource)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, in)
	}
	locs, err := svc.Create(context.Background(), kind, model.TypeResource, inputs)
	if err != nil {
		t.Fatal(err)
	}
	return svc, locs
}

func hostnameInput(h string) *model.EntityInput {
	in := &model.EntityInput{Present: map[string]bool{"attributes": true}}
	in.Attributes = map[string]any{"occi": map[string]any{"compute": map[string]any{"hostname": h}}}
	return in
}

func hostname(e *model.Entity) any {
	return e.Attributes["occi"].(map[string]any)["compute"].(map[string]any)["hostname"]
}

// TestUpdateLaterIsReadBack: whoever reads an entity through the service
// right after UpdateLater returned sees the update (by location or in a
// listing), and updates of one location are stored in the order queued.
func TestUpdateLaterIsReadBack(t *testing.T) {
	svc, locs := newComputes(t, 4)
	ctx := context.Background()
	kind, _ := svc.Categories().Get(computeKind)
	for i := range 200 {
		loc := locs[i%len(locs)]
		cur, err := svc.Get(ctx, loc)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("h%d", i+1)
		if err := svc.UpdateLater(ctx, cur, hostnameInput(want)); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			got, err := svc.Get(ctx, loc)
			if err != nil {
				t.Fatal(err)
			}
			if hostname(got) != want {
				t.Fatalf("round %d: Get right after UpdateLater: hostname %v, want %s", i, hostname(got), want)
			}
			continue
		}
		list, err := svc.List(ctx, entities.ListQuery{Collection: kind})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range list {
			if e.Location == loc {
				found = true
				if hostname(e) != want {
					t.Fatalf("round %d: List right after UpdateLater: hostname %v, want %s", i, hostname(e), want)
				}
			}
		}
		if !found {
			t.Fatalf("%s not listed", loc)
		}
	}

	// Many queued at once for one location: the last one queued wins.
	cur, _ := svc.Get(ctx, locs[0])
	for i := range 50 {
		if err := svc.UpdateLater(ctx, cur, hostnameInput(fmt.Sprintf("seq%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := svc.Get(ctx, locs[0])
	if hostname(got) != "seq49" {
		t.Fatalf("after 50 queued updates: hostname %v, want seq49", hostname(got))
	}
}

// TestUpdateLaterRefusesInvalidAtOnce: an update the entity's kind does not
// allow is refused by UpdateLater itself, with the status Update would
// answer, and nothing is queued.
func TestUpdateLaterRefusesInvalidAtOnce(t *testing.T) {
	svc, locs := newComputes(t, 1)
	ctx := context.Background()
	cur, _ := svc.Get(ctx, locs[0])
	in := &model.EntityInput{Present: map[string]bool{"attributes": true}}
	in.Attributes = map[string]any{"occi": map[string]any{"compute": map[string]any{"cores": "many"}}}
	err := svc.UpdateLater(ctx, cur, in)
	if model.StatusOf(err) != http.StatusBadRequest {
		t.Fatalf("UpdateLater with cores \"many\": %v (status %d), want 400", err, model.StatusOf(err))
	}
	got, _ := svc.Get(ctx, locs[0])
	if got.Rev != cur.Rev {
		t.Fatalf("revision changed from %s to %s", cur.Rev, got.Rev)
	}
}

// TestFlushStoresEverythingQueued: Flush returns once every queued update
// is stored, and later ones are refused.
func TestFlushStoresEverythingQueued(t *testing.T) {
	svc, locs := newComputes(t, 20)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i, loc := range locs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cur, err := svc.Get(ctx, loc)
			if err == nil {
				err = svc.UpdateLater(ctx, cur, hostnameInput(fmt.Sprintf("f%d", i)))
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := svc.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	for i, loc := range locs {
		got, err := svc.Get(ctx, loc)
		if err != nil {
			t.Fatal(err)
		}
		if hostname(got) != fmt.Sprintf("f%d", i) {
			t.Errorf("%s: hostname %v after Flush, want f%d", loc, hostname(got), i)
		}
	}
	cur, _ := svc.Get(ctx, locs[0])
	if err := svc.UpdateLater(ctx, cur, hostnameInput("late")); !errors.Is(err, entities.ErrFlushed) {
		t.Fatalf("UpdateLater after Flush: %v, want ErrFlushed", err)
	}
}

// TestUpdateLaterJoinsQueuedUpdates: updates of one location queued while
// an earlier one is being stored are stored together, in fewer writes than
// updates, and none of them is lost: an attribute only an early one set is
// there beside the last one's.
func TestUpdateLaterJoinsQueuedUpdates(t *testing.T) {
	svc, locs := newComputes(t, 1)
	ctx := context.Background()
	cur, err := svc.Get(ctx, locs[0])
	if err != nil {
		t.Fatal(err)
	}
	const updates = 50
	for i := range updates {
		in := hostnameInput(fmt.Sprintf("seq%02d", i))
		if i == 10 {
			in.Attributes["occi"].(map[string]any)["compute"].(map[string]any)["cores"] = 3.0
		}
		if err := svc.UpdateLater(ctx, cur, in); err != nil {
			t.Fatal(err)
		}
	}
	got, err := svc.Get(ctx, locs[0]) // waits for every update queued
	if err != nil {
		t.Fatal(err)
	}
	compute := got.Attributes["occi"].(map[string]any)["compute"].(map[string]any)
	if compute["hostname"] != "seq49" || compute["cores"] != 3.0 {
		t.Fatalf("after %d queued updates: %v, want hostname seq49 and cores 3", updates, compute)
	}
	// Each write is a new revision, N-…: the create was 1.
	var writes int
	if _, err := fmt.Sscanf(got.Rev, "%d-", &writes); err != nil {
		t.Fatalf("revision %q: %v", got.Rev, err)
	}
	if writes--; writes >= updates {
		t.Fatalf("%d updates queued at once took %d writes", updates, writes)
	}
	t.Logf("%d updates queued at once, %d writes", updates, writes)
}
