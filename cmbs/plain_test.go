package cmbs_test

import (
	"fmt"
	"maps"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cmbs/cmbs/cmbs"
)

// TestPlainDeliveryReceipt: a message neither storable nor executable is
// acknowledged with the same receipt whether its receiver answers it at
// once (b; d, whose OnDelivery hook asks for the id only) or decodes it in
// full because its OnDelivery hook wants the message (c), and the receipt
// names the receiving member and the layer only.
func TestPlainDeliveryReceipt(t *testing.T) {
	var hooked atomic.Int64
	var mu sync.Mutex
	told := map[string]cmbs.ReceivedMessage{} // by receiver
	hook := func(who string) func(cmbs.ReceivedMessage) {
		return func(m cmbs.ReceivedMessage) {
			hooked.Add(1)
			mu.Lock()
			told[who] = cmbs.ReceivedMessage{Receipt: &cmbs.Receipt{Member: m.Member, Layer: m.Layer}, Message: maps.Clone(m.Message)}
			mu.Unlock()
		}
	}
	withHook, idOnly := testOptions(), testOptions()
	withHook.OnDelivery = hook("c")
	idOnly.OnDelivery, idOnly.DeliveryMessage = hook("d"), func() bool { return false }
	b := startPeer(t, "b", member{"topics": []any{"t"}}, testOptions(), "l1", "l2", "l32")
	c := startPeer(t, "c", member{"topics": []any{"t"}}, withHook, "l1", "l2", "l32")
	d := startPeer(t, "d", member{"topics": []any{"t"}}, idOnly, "l1", "l2", "l32")
	a := startPeer(t, "a", member{"neighbors_socket": []any{b.sockets["l1"], c.sockets["l1"], d.sockets["l1"]}}, testOptions(), "l1")
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
			if res["delivered"] != 3.0 {
				t.Fatalf("%s: %v", id, res)
			}
			acks := map[string]any{}
			for _, d := range res["deliveries"].([]any) {
				d := d.(map[string]any)
				acks[d["socket"].(string)] = d["ack"]
			}
			for _, p := range []*peer{b, c, d} {
				want := map[string]any{"member": p.sockets["l1"] + p.loc, "layer": layer}
				if got := acks[p.sockets[layer]]; !reflect.DeepEqual(got, want) {
					t.Errorf("%s: %s acknowledged %v, want %v", id, p.id, got, want)
				}
				if p.hasMessage(id) {
					t.Errorf("%s: stored by %s", id, p.id)
				}
			}
			if hooked.Load() != before+2 {
				t.Errorf("%s: OnDelivery called %d times, want once on c and once on d", id, hooked.Load()-before)
			}
			mu.Lock()
			for who, p := range map[string]*peer{"c": c, "d": d} {
				m := told[who]
				if m.Receipt == nil || m.Member != p.sockets["l1"]+p.loc || string(m.Layer) != layer || m.Message["id"] != id {
					t.Errorf("%s: %s's OnDelivery was told %+v (receipt %+v)", id, who, m.Message, m.Receipt)
				}
			}
			if told["c"].Message["attributes"] == nil || len(told["d"].Message) != 1 {
				t.Errorf("%s: c's hook got %v (want the whole message), d's %v (want the id only)", id, told["c"].Message, told["d"].Message)
			}
			mu.Unlock()
		}
	}
	for _, p := range []*peer{b, c, d} {
		if p.received("l2") != 2 || p.received("l32") != 2 {
			t.Errorf("%s received %d on l2, %d on l32, want 2 each", p.id, p.received("l2"), p.received("l32"))
		}
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
