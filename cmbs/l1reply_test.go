package cmbs_test

import (
	"slices"
	"testing"
)

// TestL1ReplyFollowsMembers: the answer to an L1 message, which the
// receiver keeps encoded between messages, changes as soon as the
// receiver's members do: a member created there, and a change of the
// receiving member itself, show in the next answer.
func TestL1ReplyFollowsMembers(t *testing.T) {
	a, b, _, bLoc, _, bL1 := twoNodes(t, "a", "b")
	send := func(id string) map[string]any {
		t.Helper()
		loc := a.createMessage(id, "l1", map[string]any{"storable": "false", "executable": "false", "l1_socket_receiver_member": bL1})
		return a.c.expect("POST", loc+"?action=send_l1", "{}", 200).json(t)
	}
	first, again := send("r1"), send("r2")
	if !slices.Equal(toStrings(first["sockets_l1"]), toStrings(again["sockets_l1"])) {
		t.Fatalf("two answers with no change between them differ: %v, then %v", first, again)
	}

	other := freeSocket(t)
	b.createMember("b2", withSockets(t, member{"l1_socket": other}))
	if got := toStrings(send("r3")["sockets_l1"]); !slices.Contains(got, other) {
		t.Fatalf("sockets_l1 after B created a member with L1 socket %s: %v", other, got)
	}

	neighbour := freeSocket(t)
	b.updateMember(bLoc, member{"neighbors_socket": []any{neighbour}})
	res := send("r4")
	if got := toStrings(res["sockets_l1"]); !slices.Contains(got, neighbour) {
		t.Fatalf("sockets_l1 after B's member got the neighbour %s: %v", neighbour, got)
	}
	desc := res["member_description"].(map[string]any)
	if ns := toStrings(attrsOf(desc, "member")["neighbors_socket"]); !slices.Equal(ns, []string{neighbour}) {
		t.Fatalf("member_description after the change: %v", desc)
	}
}
