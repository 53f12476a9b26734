package cmbs_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cmbs/cmbs/store"
)

// TestMemberChangesFromTheFeed: a member deleted or stored in the database
// by another server (here: written to the store directly, past this
// server's entity service) decides this server's next send once the
// store's changes feed hands the change to Broker.ApplyChanges — not when
// the member list would be read again on its own (an hour here).
func TestMemberChangesFromTheFeed(t *testing.T) {
	opts := testOptions()
	opts.MembersMaxAge = time.Hour
	b := startPeer(t, "b", member{"topics": []any{"x"}}, testOptions(), "l1", "l32")
	a := startPeer(t, "a", member{"topics": []any{"x"}, "neighbors_socket": []any{b.sockets["l1"]}}, opts, "l1")
	a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200)

	n := 0
	delivered := func() int {
		t.Helper()
		n++
		loc := a.createMessage(fmt.Sprintf("m%d", n), "l32", map[string]any{"topics": []any{"x"}, "storable": "false"})
		res := a.c.expect("POST", loc+"?action=send_l32", "{}", 200).json(t)
		count := 0
		for _, d := range res["deliveries"].([]any) {
			if d.(map[string]any)["delivered"] == true {
				count++
			}
		}
		return count
	}
	if got := delivered(); got != 1 {
		t.Fatalf("before: delivered to %d members, want b", got)
	}
	st := a.srv.Store
	ctx := t.Context()
	_, mark, err := st.Changes(ctx, store.ChangesOptions{Since: "now"})
	if err != nil {
		t.Fatal(err)
	}
	feed := func() {
		t.Helper()
		changes, last, err := st.Changes(ctx, store.ChangesOptions{Since: mark})
		if err != nil {
			t.Fatal(err)
		}
		mark = last
		if err := a.broker.ApplyChanges(ctx, changes); err != nil {
			t.Fatal(err)
		}
	}

	bHere := "/cmbs/member/" + a.members()[b.sockets["l1"]]["id"].(string)
	doc, err := st.Get(ctx, bHere)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delete(ctx, bHere, doc.Rev); err != nil {
		t.Fatal(err)
	}
	if got := delivered(); got != 1 {
		t.Fatalf("deleted behind the broker's back, before the feed: delivered to %d, want the cached b", got)
	}
	feed()
	if got := delivered(); got != 0 {
		t.Fatalf("after the feed brought the deletion: delivered to %d, want none", got)
	}
	if _, err := st.Put(ctx, store.Document{ID: bHere, Body: doc.Body}); err != nil {
		t.Fatal(err)
	}
	feed()
	if got := delivered(); got != 1 {
		t.Fatalf("after the feed brought b back: delivered to %d, want b", got)
	}
}
