package cmbs_test

import (
	"fmt"
	"testing"
	"time"
)

// TestMemberChangesTakeEffectAtOnce: the broker keeps the known members
// between messages, yet a change to a member (through the API, by a
// crawl, or a deletion) decides the very next send, long before the list
// would be read again on its own.
func TestMemberChangesTakeEffectAtOnce(t *testing.T) {
	opts := testOptions()
	opts.MembersMaxAge = time.Hour
	b := startPeer(t, "b", member{"topics": []any{"x"}}, testOptions(), "l1", "l32")
	c := startPeer(t, "c", member{"topics": []any{"x"}}, testOptions(), "l1", "l32")
	a := startPeer(t, "a", member{"topics": []any{"x"}, "neighbors_socket": []any{b.sockets["l1"]}}, opts, "l1")
	a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200)

	n := 0
	send := func() map[string]any {
		t.Helper()
		n++
		loc := a.createMessage(fmt.Sprintf("m%d", n), "l32", map[string]any{"topics": []any{"x"}, "storable": "false"})
		return a.c.expect("POST", loc+"?action=send_l32", "{}", 200).json(t)
	}
	delivered := func(res map[string]any) []string {
		var out []string
		for _, d := range res["deliveries"].([]any) {
			d := d.(map[string]any)
			if d["delivered"] == true {
				out = append(out, fmt.Sprint(d["socket"]))
			}
		}
		return out
	}
	if got := delivered(send()); len(got) != 1 || got[0] != b.sockets["l32"] {
		t.Fatalf("before c is known: delivered to %v, want b only", got)
	}

	// A crawl learns c: the next send reaches it too.
	a.updateMember(a.loc, member{"neighbors_socket": []any{b.sockets["l1"], c.sockets["l1"]}})
	a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200)
	if got := delivered(send()); len(got) != 2 {
		t.Fatalf("after the crawl learned c: delivered to %v, want b and c", got)
	}

	// b's stored copy changes its topics through the API.
	bHere := "/cmbs/member/" + a.members()[b.sockets["l1"]]["id"].(string)
	a.updateMember(bHere, member{"topics": []any{"z"}})
	if got := delivered(send()); len(got) != 1 || got[0] != c.sockets["l32"] {
		t.Fatalf("after b's topics changed here: delivered to %v, want c only", got)
	}

	// c's stored copy is deleted.
	cHere := "/cmbs/member/" + a.members()[c.sockets["l1"]]["id"].(string)
	a.c.expect("DELETE", cHere, nil, 200)
	if got := delivered(send()); len(got) != 0 {
		t.Fatalf("after c was deleted here: delivered to %v, want none", got)
	}
}
