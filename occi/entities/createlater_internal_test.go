package entities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/sqlite"
)

// heldStore holds every Put until release is closed.
type heldStore struct {
	store.Store
	release chan struct{}
}

func (h *heldStore) Put(ctx context.Context, doc store.Document) (string, error) {
	select {
	case <-h.release:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return h.Store.Put(ctx, doc)
}

// newInternalService is a Service over a new SQLite store, as wrap (when
// set) makes the store look to it, the compute kind, and the store.
func newInternalService(t *testing.T, wrap func(store.Store) store.Store) (*Service, *model.Category, store.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cats, err := categories.New(ctx, st, categories.Options{Builtin: categories.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	provs := providers.NewRegistry()
	if err := provs.Register("occi_infrastructure", providers.Storage{}); err != nil {
		t.Fatal(err)
	}
	var seen store.Store = st
	if wrap != nil {
		seen = wrap(st)
	}
	svc, err := New(ctx, seen, cats, provs, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	kind, _ := cats.Get("http://schemas.ogf.org/occi/infrastructure#compute")
	return svc, kind, st
}

// While the store holds every write, CreateLater queues maxDeferred
// entities and then waits for a slot (here until its context ends): the
// queue never grows past its bound. Once the store goes on, Flush stores
// every one queued.
func TestCreateLaterWaitsWhenTheQueueIsFull(t *testing.T) {
	ctx := context.Background()
	var held *heldStore
	svc, kind, st := newInternalService(t, func(st store.Store) store.Store {
		held = &heldStore{Store: st, release: make(chan struct{})}
		return held
	})
	input := func(i int) *model.EntityInput {
		in, err := model.ParseEntityInput(map[string]any{"kind": kind.ID(), "id": fmt.Sprintf("q%03d", i)}, model.TypeResource)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	for i := range maxDeferred {
		if _, err := svc.CreateLater(ctx, kind, model.TypeResource, input(i)); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := svc.CreateLater(short, kind, model.TypeResource, input(maxDeferred))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CreateLater with %d writes queued and none stored: %v, want to wait until its context ended", maxDeferred, err)
	}
	close(held.release)
	flushCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := svc.Flush(flushCtx); err != nil {
		t.Fatal(err)
	}
	for i := range maxDeferred {
		if _, err := st.Get(ctx, kind.Location+fmt.Sprintf("q%03d", i)); err != nil {
			t.Fatalf("q%03d not stored after Flush: %v", i, err)
		}
	}
	if _, err := st.Get(ctx, kind.Location+fmt.Sprintf("q%03d", maxDeferred)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused entity: %v, want not found", err)
	}
}
