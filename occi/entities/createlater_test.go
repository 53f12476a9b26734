package entities_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/model"
)

// computeInput is a compute resource with that id and hostname.
// computeServer starts a real server and returns its entity service and
// the compute kind.
func computeServer(t *testing.T) (*testserver.Server, *entities.Service, *model.Category) {
	t.Helper()
	srv := testserver.Start(t, testserver.Options{})
	svc := srv.OCCI.Entities()
	kind, ok := svc.Categories().Get(computeKind)
	if !ok {
		t.Fatal("no compute kind")
	}
	return srv, svc, kind
}

func computeInput(t *testing.T, id, host string) *model.EntityInput {
	t.Helper()
	in, err := model.ParseEntityInput(map[string]any{
		"kind": computeKind, "id": id,
		"attributes": map[string]any{"occi": map[string]any{"compute": map[string]any{"hostname": host}}},
	}, model.TypeResource)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestCreateLaterIsReadBack: an entity CreateLater queued is found by a Get
// of the location it returned, right after it returned, from 8 goroutines
// at once; a listing right after finds every one queued before it.
func TestCreateLaterIsReadBack(t *testing.T) {
	_, svc, kind := computeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				host := fmt.Sprintf("h%d-%d", w, i)
				loc, err := svc.CreateLater(ctx, kind, model.TypeResource, computeInput(t, fmt.Sprintf("w%d-%02d", w, i), host))
				if err != nil {
					t.Error(err)
					return
				}
				if want := kind.Location + fmt.Sprintf("w%d-%02d", w, i); loc != want {
					t.Errorf("location %s, want %s", loc, want)
				}
				got, err := svc.Get(ctx, loc)
				if err != nil {
					t.Errorf("Get right after CreateLater: %v", err)
					return
				}
				if hostname(got) != host {
					t.Errorf("%s: hostname %v, want %s", loc, hostname(got), host)
				}
			}
		}()
	}
	wg.Wait()
	// Queued without reading back: the listing waits for them.
	for i := range 20 {
		if _, err := svc.CreateLater(ctx, kind, model.TypeResource, computeInput(t, fmt.Sprintf("l%02d", i), "l")); err != nil {
			t.Fatal(err)
		}
	}
	list, err := svc.List(ctx, entities.ListQuery{Collection: kind})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != workers*each+20 {
		t.Fatalf("listed %d entities right after CreateLater, want %d", len(list), workers*each+20)
	}
}

// TestCreateLaterRefusesAtOnce: an entity its kind does not allow is
// refused by CreateLater itself with the status Create would answer, and a
// location taken or already queued is 409; nothing is queued for them.
func TestCreateLaterRefusesAtOnce(t *testing.T) {
	svc, locs := newComputes(t, 1)
	kind, _ := svc.Categories().Get(computeKind)
	ctx := context.Background()
	bad := computeInput(t, "bad", "h")
	bad.Attributes["occi"].(map[string]any)["compute"].(map[string]any)["cores"] = "many"
	if _, err := svc.CreateLater(ctx, kind, model.TypeResource, bad); model.StatusOf(err) != http.StatusBadRequest {
		t.Fatalf("CreateLater with cores \"many\": %v (status %d), want 400", err, model.StatusOf(err))
	}
	if _, err := svc.Get(ctx, kind.Location+"bad"); model.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("Get of the refused entity: %v, want 404", err)
	}
	if _, err := svc.CreateLater(ctx, kind, model.TypeResource, computeInput(t, "twice", "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateLater(ctx, kind, model.TypeResource, computeInput(t, "twice", "b")); model.StatusOf(err) != http.StatusConflict {
		t.Fatalf("CreateLater of a location already queued or stored: %v, want 409", err)
	}
	// A synchronous Create of a queued location waits for it, then is refused.
	if _, err := svc.Create(ctx, kind, model.TypeResource, []*model.EntityInput{computeInput(t, "twice", "c")}); model.StatusOf(err) != http.StatusConflict {
		t.Fatalf("Create at a queued location: %v, want 409", err)
	}
	got, err := svc.Get(ctx, kind.Location+"twice")
	if err != nil || hostname(got) != "a" {
		t.Fatalf("twice: %v, %v; want the first one queued", got, err)
	}
	id := locs[0][len(kind.Location):]
	// Taken in the store, not in the queue: the background write finds it
	// (a conflict, logged) and leaves it as it is.
	if _, err := svc.CreateLater(ctx, kind, model.TypeResource, computeInput(t, id, "x")); err != nil {
		t.Fatal(err)
	}
	got, err = svc.Get(ctx, locs[0])
	if err != nil || hostname(got) != "h0" {
		t.Fatalf("%s after a CreateLater over it: %v, %v; want it unchanged", locs[0], got, err)
	}
}

// TestFlushStoresEverythingCreatedLater: once Flush returns, the store
// itself (not only reads through the Service, which wait) holds every
// entity CreateLater queued; later ones are refused.
func TestFlushStoresEverythingCreatedLater(t *testing.T) {
	srv, svc, kind := computeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var locs []string
	for i := range 40 {
		loc, err := svc.CreateLater(ctx, kind, model.TypeResource, computeInput(t, fmt.Sprintf("f%02d", i), "f"))
		if err != nil {
			t.Fatal(err)
		}
		locs = append(locs, loc)
	}
	if err := svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, loc := range locs {
		if _, err := srv.Store.Get(ctx, loc); err != nil {
			t.Errorf("%s not in the store after Flush: %v", loc, err)
		}
	}
	if _, err := svc.CreateLater(ctx, kind, model.TypeResource, computeInput(t, "late", "l")); !errors.Is(err, entities.ErrFlushed) {
		t.Fatalf("CreateLater after Flush: %v, want ErrFlushed", err)
	}
}

// TestCreateLaterTrustedStoresTheSame: an entity the server built itself,
// nested and valid, is stored by CreateLaterTrusted as the same document
// CreateLater stores (defaults filled in, the core attributes taken out).
func TestCreateLaterTrustedStoresTheSame(t *testing.T) {
	_, svc, kind := computeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	input := func(id string) *model.EntityInput {
		in := computeInput(t, id, "h1")
		in.Attributes["occi"].(map[string]any)["core"] = map[string]any{"title": "t1"}
		in.Attributes["occi"].(map[string]any)["compute"].(map[string]any)["cores"] = float64(2)
		return in
	}
	checked, err := svc.CreateLater(ctx, kind, model.TypeResource, input("checked"))
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := svc.CreateLaterTrusted(ctx, kind, model.TypeResource, input("trusted"))
	if err != nil {
		t.Fatal(err)
	}
	var docs [2]string
	for i, loc := range []string{checked, trusted} {
		e, err := svc.Get(ctx, loc)
		if err != nil {
			t.Fatal(err)
		}
		e.ID, e.Location, e.Rev = "", "", ""
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		docs[i] = string(b)
	}
	if docs[0] != docs[1] {
		t.Errorf("CreateLater stored\n%s\nCreateLaterTrusted stored\n%s", docs[0], docs[1])
	}
	if !strings.Contains(docs[1], `"title":"t1"`) {
		t.Errorf("the title given as occi.core.title is not the entity's: %s", docs[1])
	}
}
