package entities

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/store/sqlite"
)

// A Flush whose deadline has passed cancels the updates still queued and
// waits for them: none runs after it returns, when its caller closes the
// store.
func TestFlushPastItsDeadlineLeavesNoUpdateRunning(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cats, err := categories.New(ctx, st, categories.Options{Builtin: categories.Builtin()})
	if err != nil {
		t.Fatal(err)
	}
	provs := providers.NewRegistry()
	if err := provs.Register("occi_infrastructure", providers.Storage{}); err != nil {
		t.Fatal(err)
	}
	svc, err := New(ctx, st, cats, provs, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	kind, _ := cats.Get("http://schemas.ogf.org/occi/infrastructure#compute")
	var inputs []*model.EntityInput
	for i := range 50 {
		in, err := model.ParseEntityInput(map[string]any{"kind": kind.ID(), "id": fmt.Sprintf("c%02d", i)}, model.TypeResource)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, in)
	}
	locs, err := svc.Create(ctx, kind, model.TypeResource, inputs)
	if err != nil {
		t.Fatal(err)
	}
	for _, loc := range locs {
		cur, err := svc.Get(ctx, loc)
		if err != nil {
			t.Fatal(err)
		}
		in := &model.EntityInput{Present: map[string]bool{"title": true}, Entity: model.Entity{Title: "later"}}
		if err := svc.UpdateLater(ctx, cur, in); err != nil {
			t.Fatal(err)
		}
	}
	expired, cancel := context.WithCancel(ctx)
	cancel()
	_ = svc.Flush(expired)
	svc.deferred.mu.Lock()
	running := len(svc.deferred.pending)
	svc.deferred.mu.Unlock()
	if running != 0 {
		t.Fatalf("%d deferred updates still running after Flush returned", running)
	}
}
