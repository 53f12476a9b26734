package entities_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/cmbs/cmbs/occi/model"
)

// TestUpdateLaterStoresWhatItAccepted: UpdateLater's first check looks at
// what the update brings only (the entity's values passed when stored);
// the background write, its first try or a retry after a conflict, must
// not refuse, and so lose, an update that check accepted because a value
// the update does not touch no longer passes.
func TestUpdateLaterStoresWhatItAccepted(t *testing.T) {
	srv, svc, kind := computeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	locs, err := svc.Create(ctx, kind, model.TypeResource, []*model.EntityInput{computeInput(t, "old", "h0")})
	if err != nil {
		t.Fatal(err)
	}
	// A value that no longer passes its definition (as after a category
	// changed), written under the service.
	doc, err := srv.Store.Get(ctx, locs[0])
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(doc.Body, &body); err != nil {
		t.Fatal(err)
	}
	body["attributes"].(map[string]any)["occi"].(map[string]any)["compute"].(map[string]any)["cores"] = "many"
	doc.Body, _ = json.Marshal(body)
	if _, err := srv.Store.Put(ctx, doc); err != nil {
		t.Fatal(err)
	}
	var cur *model.Entity
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if cur, err = svc.Get(ctx, locs[0]); err != nil {
			t.Fatal(err)
		}
		if cur.Rev != "" && cur.Attributes["occi"].(map[string]any)["compute"].(map[string]any)["cores"] == "many" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the service never read the changed document")
		}
	}
	// A change since cur was read: the background write conflicts and
	// reads the entity again.
	if doc, err = srv.Store.Get(ctx, locs[0]); err != nil {
		t.Fatal(err)
	}
	doc.Body, _ = json.Marshal(body)
	if _, err := srv.Store.Put(ctx, doc); err != nil {
		t.Fatal(err)
	}
	if err := svc.UpdateLater(ctx, cur, hostnameInput("h1")); err != nil {
		t.Fatalf("UpdateLater: %v", err)
	}
	if err := svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := svc.Get(ctx, locs[0])
	if err != nil {
		t.Fatal(err)
	}
	if hostname(got) != "h1" {
		t.Fatalf("hostname %v after Flush: the accepted update was lost", hostname(got))
	}
}
