package entities

import (
	"context"
	"fmt"
	"testing"

	"github.com/cmbs/cmbs/occi/model"
)

// A Flush whose deadline has passed cancels the updates still queued and
// waits for them: none runs after it returns, when its caller closes the
// store.
func TestFlushPastItsDeadlineLeavesNoUpdateRunning(t *testing.T) {
	ctx := context.Background()
	svc, kind, _ := newInternalService(t, nil)
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
