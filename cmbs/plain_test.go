package cmbs_test

import (
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/cmbs/cmbs/cmbs"
)

// TestPlainDeliveryReceipt: a message neither storable nor executable is
// acknowledged with the same receipt whether its receiver answers it at
// once (b) or decodes it in full because an OnDelivery hook wants it (c),
// and the receipt names the receiving member and the layer only.
func TestPlainDeliveryReceipt(t *testing.T) {
	var hooked atomic.Int64
	withHook := testOptions()
	withHook.OnDelivery = func(cmbs.ReceivedMessage) { hooked.Add(1) }
	b := startPeer(t, "b", member{"topics": []any{"t"}}, testOptions(), "l1", "l2", "l32")
	c := startPeer(t, "c", member{"topics": []any{"t"}}, withHook, "l1", "l2", "l32")
	a := startPeer(t, "a", member{"neighbors_socket": []any{b.sockets["l1"], c.sockets["l1"]}}, testOptions(), "l1")
	a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200)

	for _, layer := range []string{"l2", "l32"} {
		for _, flags := range []map[string]any{
			{"storable": "false", "executable": "False"},
			{"storable": "FALSE", "executable": " false "},
		} {
			attrs := map[string]any{}
			if layer == "l32" {
				attrs["topics"] = []any{"t"}
			}
			for k, v := range flags {
				attrs[k] = v
			}
			id := layer + "-" + flags["storable"].(string)
			loc := a.createMessage(id, layer, attrs)
			before := hooked.Load()
			res := a.c.expect("POST", loc+"?action=send_"+layer, "{}", 200).json(t)
			if res["delivered"] != 2.0 {
				t.Fatalf("%s: %v", id, res)
			}
			acks := map[string]any{}
			for _, d := range res["deliveries"].([]any) {
				d := d.(map[string]any)
				acks[d["socket"].(string)] = d["ack"]
			}
			for _, p := range []*peer{b, c} {
				want := map[string]any{"member": p.sockets["l1"] + p.loc, "layer": layer}
				if got := acks[p.sockets[layer]]; !reflect.DeepEqual(got, want) {
					t.Errorf("%s: %s acknowledged %v, want %v", id, p.id, got, want)
				}
			}
			if hooked.Load() != before+1 {
				t.Errorf("%s: c's OnDelivery called %d times, want once", id, hooked.Load()-before)
			}
			if b.hasMessage(id) || c.hasMessage(id) {
				t.Errorf("%s: stored by a receiver", id)
			}
		}
	}
	if b.received("l2") != 2 || b.received("l32") != 2 {
		t.Errorf("b received %d on l2, %d on l32, want 2 each", b.received("l2"), b.received("l32"))
	}
}

// TestL32FollowsTopicChanges: send_l32 chooses its receivers from the
// member list the broker keeps; a change to a member's topics counts for
// the next send.
func TestL32FollowsTopicChanges(t *testing.T) {
	b := startPeer(t, "b", member{"topics": []any{"x"}}, testOptions(), "l1", "l32")
	a := startPeer(t, "a", member{"neighbors_socket": []any{b.sockets["l1"]}}, testOptions(), "l1")
	a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200)
	bHere := "/cmbs/member/" + cmbs.RemoteMemberID("b", b.sockets["l1"]) // a's copy of b

	send := func(id string) float64 {
		t.Helper()
		loc := a.createMessage(id, "l32", map[string]any{"topics": []any{"z"}, "storable": "false", "executable": "false"})
		return a.c.expect("POST", loc+"?action=send_l32", "{}", 200).json(t)["delivered"].(float64)
	}
	for i, step := range []struct {
		topics []any
		want   float64
	}{{[]any{"x"}, 0}, {[]any{"y", "z"}, 1}, {[]any{}, 0}, {[]any{"z"}, 1}} {
		a.updateMember(bHere, member{"topics": step.topics})
		if got := send(fmt.Sprintf("t%d", i)); got != step.want {
			t.Fatalf("b's topics %v, a message on z: delivered %v, want %v", step.topics, got, step.want)
		}
	}
}
