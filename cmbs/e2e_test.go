package cmbs_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/internal/loopback"
)

// The broker's pyOCNI compatibility cases (90–96), at their target behaviour,
// on two in-process servers A and B with stores of their own.

// Case 90: pyCMBS's run_test.sh sequence with its own request files (fixed
// ports moved to free ones; the neighbour at "6010" is dead).
func TestCase90RunTestSequence(t *testing.T) {
	n := startNode(t, "A", "pycmbs", testOptions()) // 200 ×4 for the categories and providers
	l1, l2, dead := freeSocket(t), freeSocket(t), freeSocket(t)
	body := strings.NewReplacer(
		"tcp://127.0.0.1:5010", l1, "tcp://127.0.0.1:5020", l2,
		"tcp://127.0.0.1:5031", freeSocket(t), "tcp://127.0.0.1:5032", freeSocket(t), "tcp://127.0.0.1:5040", freeSocket(t),
		"tcp://127.0.0.1:6010", dead,
	).Replace(string(fixture(t, "pycmbs/post_member.json")))
	n.c.expect("POST", "/cmbs/member/", body, 201)
	loc := "/cmbs/member/016ad860-2a9a-504f-8861-aeafd0b2ae29"

	d := n.c.expect("POST", loc+"?action=check_neighbors", fixture(t, "pycmbs/action_check_neighbors_member.json"), 200).json(t)
	if failed := d["failed"].([]any); len(failed) != 1 || failed[0].(map[string]any)["socket"] != dead {
		t.Fatalf("check_neighbors with a dead neighbour: %v", d)
	}
	n.c.expect("POST", loc+"?action=start_l1", fixture(t, "pycmbs/action_start_l1_member.json"), 200)
	n.c.expect("POST", loc+"?action=start_l2", fixture(t, "pycmbs/action_start_l2_member.json"), 200)

	// The optional messages: the L1 one is addressed to 5010, this
	// server's own L1 socket, which answers.
	n.c.expect("POST", "/cmbs/message/", strings.ReplaceAll(string(fixture(t, "pycmbs/post_message_l1.json")), "tcp://127.0.0.1:5010", l1), 201)
	res := n.c.expect("POST", "/cmbs/message/0101d860-2a9a-504f-8861-aeafd0b20101?action=send_l1", fixture(t, "pycmbs/action_send_l1_message.json"), 200).json(t)
	if desc := res["member_description"].(map[string]any); desc["id"] != "016ad860-2a9a-504f-8861-aeafd0b2ae29" {
		t.Fatalf("send_l1 to itself: %v", res)
	}
	n.c.expect("POST", "/cmbs/message/", fixture(t, "pycmbs/post_message_l2.json"), 201)
	res = n.c.expect("POST", "/cmbs/message/0102d860-2a9a-504f-8861-aeafd0a10201?action=send_l2", fixture(t, "pycmbs/action_send_l2_message.json"), 200).json(t)
	if res["delivered"] != 0.0 || res["failed"] != 0.0 {
		t.Fatalf("send_l2 with no remote member: %v", res)
	}
}

// twoNodes starts A and B, each with one local member ("a", "b") with
// free sockets; B's L1 is started and A's neighbour is B.
func twoNodes(t *testing.T, aID, bID string) (a, b *node, aLoc, bLoc, aL1, bL1 string) {
	t.Helper()
	b = startNode(t, "B", "pycmbs", testOptions())
	bLoc = b.createMember(bID, withSockets(t, member{"neighbors_socket": []any{}}))
	bL1 = b.startLayer(bLoc, "l1")
	a = startNode(t, "A", "pycmbs", testOptions())
	aLoc = a.createMember(aID, withSockets(t, member{"neighbors_socket": []any{bL1}}))
	aL1 = fmt.Sprint(attrsOf(a.get(aLoc), "member")["l1_socket"])
	return
}

// Case 91: check_neighbors between two nodes: each stores the other as
// remote, and A keeps the probe message with B's reply as its result.
func TestCase91Discovery(t *testing.T) {
	a, b, aLoc, _, aL1, bL1 := twoNodes(t, "a", "b")
	d := a.action(aLoc, "check_neighbors", nil)
	if d.status != 200 {
		t.Fatalf("check_neighbors: %d %s", d.status, d.body)
	}
	learned := d.json(t)["learned"].([]any)
	if len(learned) != 1 || learned[0].(map[string]any)["socket"] != bL1 || learned[0].(map[string]any)["id"] != "b" {
		t.Fatalf("learned: %s", d.body)
	}

	onB := b.members()
	if len(onB) != 2 || attrsOf(onB[aL1], "member")["local"] != "false" || onB[aL1]["id"] != cmbs.RemoteMemberID("a", aL1) {
		t.Fatalf("B's members: %v", onB)
	}
	if attrsOf(onB[bL1], "member")["local"] != "true" {
		t.Fatalf("B's own member is no longer local: %v", onB[bL1])
	}
	onA := a.members()
	if len(onA) != 2 || attrsOf(onA[bL1], "member")["local"] != "false" || onA[bL1]["id"] != cmbs.RemoteMemberID("b", bL1) {
		t.Fatalf("A's members: %v", onA)
	}

	msgs := a.list("/cmbs/message/")
	if len(msgs) != 1 {
		t.Fatalf("A has %d messages, want the one probe", len(msgs))
	}
	m := attrsOf(msgs[0], "message")
	if m["cmbs_layer"] != "l1" {
		t.Fatalf("probe layer: %v", m)
	}
	result := m["result"].(map[string]any)
	desc := result["member_description"].(map[string]any)
	if desc["id"] != "b" || attrsOf(desc, "member")["local"] != "false" || attrsOf(desc, "member")["l1_socket"] != bL1 {
		t.Fatalf("result.member_description: %v", desc)
	}
	if got := toStrings(result["sockets_l1"]); !sameSet(got, []string{aL1, bL1}) || len(result) != 2 {
		t.Fatalf("result: %v", result)
	}
	content := m["message_content"].(map[string]any)
	if content["id"] != "a" || attrsOf(content, "member")["local"] != "false" {
		t.Fatalf("message_content: %v", content)
	}
	if ph := toStrings(m["path_history"]); len(ph) != 1 || ph[0] != aL1+"/cmbs/member/a" {
		t.Fatalf("path_history: %v", ph)
	}
}

// Case 92: send_l1 with sendable "true" in lower case is sent, and its
// result is written to the message; sendable "false" sends nothing.
func TestCase92SendL1(t *testing.T) {
	a, b, _, bLoc, _, bL1 := twoNodes(t, "a", "b")
	loc := a.createMessage("m92", "l1", map[string]any{"sendable": "true", "storable": "True", "executable": "TRUE", "l1_socket_receiver_member": bL1})
	res := a.action(loc, "send_l1", nil)
	if res.status != 200 {
		t.Fatalf("send_l1: %d %s", res.status, res.body)
	}
	result := attrsOf(a.get(loc), "message")["result"].(map[string]any)
	if result["member_description"].(map[string]any)["id"] != "b" || result["executed"] == nil {
		t.Fatalf("result: %v", result)
	}
	// B stored it, with the record of its execution.
	stored := attrsOf(b.get("/cmbs/message/m92"), "message")
	if rec := stored["result"].(map[string]any); rec["executed_by"] != bL1+bLoc {
		t.Fatalf("B's copy: %v", stored)
	}

	before := b.broker.Stats().Received["l1"]
	loc = a.createMessage("m92-unsendable", "l1", map[string]any{"sendable": "False", "l1_socket_receiver_member": bL1})
	r := a.action(loc, "send_l1", nil)
	if r.status != 409 || !strings.Contains(r.errorMessage(t), "sendable") {
		t.Fatalf("unsendable send_l1: %d %s", r.status, r.body)
	}
	if got := b.broker.Stats().Received["l1"]; got != before {
		t.Fatalf("B received an unsendable message (%d → %d)", before, got)
	}
}

// Case 93: send_l2 reaches a member that started L2 (no slow-joiner loss).
func TestCase93SendL2(t *testing.T) {
	a, b, aLoc, bLoc, _, bL1 := twoNodes(t, "a", "b")
	b.startLayer(bLoc, "l2")
	a.c.expect("POST", aLoc+"?action=check_neighbors", "{}", 200)
	loc := a.createMessage("m93", "l2", map[string]any{"storable": "True", "executable": "True", "sendable": "True"})
	res := a.c.expect("POST", loc+"?action=send_l2", "{}", 200).json(t)
	deliveries := res["deliveries"].([]any)
	if res["delivered"] != 1.0 || len(deliveries) != 1 || deliveries[0].(map[string]any)["member"] != "/cmbs/member/"+cmbs.RemoteMemberID("b", bL1) {
		t.Fatalf("send_l2: %v", res)
	}
	got := attrsOf(b.get("/cmbs/message/m93"), "message")
	if got["message_content"].(map[string]any)["text"] != "hello l2" || got["result"].(map[string]any)["executed_by"] == nil {
		t.Fatalf("B's copy: %v", got)
	}
	if written := attrsOf(a.get(loc), "message")["result"].(map[string]any); written["delivered"] != 1.0 {
		t.Fatalf("A's result: %v", written)
	}
}

// Case 94: two nodes using pyCMBS's example member id still discover each
// other: each stores the other at an id derived from id and L1 socket, and
// learning again updates rather than duplicates.
func TestCase94SameMemberID(t *testing.T) {
	const id = "016ad860-2a9a-504f-8861-aeafd0b2ae29"
	a, b, aLoc, _, aL1, bL1 := twoNodes(t, id, id)
	for range 2 {
		a.c.expect("POST", aLoc+"?action=check_neighbors", "{}", 200)
	}
	onA, onB := a.members(), b.members()
	if len(onA) != 2 || len(onB) != 2 {
		t.Fatalf("members: A %v, B %v", onA, onB)
	}
	if onA[aL1]["id"] != id || onA[bL1]["id"] != cmbs.RemoteMemberID(id, bL1) || attrsOf(onA[bL1], "member")["local"] != "false" {
		t.Fatalf("A's members: %v", onA)
	}
	if onB[bL1]["id"] != id || onB[aL1]["id"] != cmbs.RemoteMemberID(id, aL1) || attrsOf(onB[aL1], "member")["local"] != "false" {
		t.Fatalf("B's members: %v", onB)
	}
	if cmbs.RemoteMemberID(id, aL1) == cmbs.RemoteMemberID(id, bL1) || !strings.HasPrefix(cmbs.RemoteMemberID(id, aL1), id+"~") {
		t.Fatalf("remote ids: %s %s", cmbs.RemoteMemberID(id, aL1), cmbs.RemoteMemberID(id, bL1))
	}
}

// Case 95: stop_l1 on B, then an L1 request from A times out (no hang);
// start_l1 again on the same port and the next request works.
func TestCase95StopAndRestart(t *testing.T) {
	a, b, _, bLoc, _, bL1 := twoNodes(t, "a", "b")
	loc := a.createMessage("m95", "l1", map[string]any{"l1_socket_receiver_member": bL1, "storable": "false"})
	a.c.expect("POST", loc+"?action=send_l1", "{}", 200)

	stop := b.c.expect("POST", bLoc+"?action=stop_l1", "{}", 200).json(t)
	if stop["running"] != false || stop["changed"] != true {
		t.Fatalf("stop_l1: %v", stop)
	}
	r := a.action(loc, "send_l1", nil)
	if r.status != 504 || !strings.Contains(r.errorMessage(t), bL1) {
		t.Fatalf("send_l1 to a stopped L1: %d %s", r.status, r.body)
	}
	if again := b.c.expect("POST", bLoc+"?action=start_l1", "{}", 200).json(t); again["socket"] != bL1 {
		t.Fatalf("restart moved the socket: %v", again)
	}
	res := a.c.expect("POST", loc+"?action=send_l1", "{}", 200).json(t)
	if res["member_description"].(map[string]any)["id"] != "b" {
		t.Fatalf("send_l1 after restart: %v", res)
	}
}

// Case 96: check_neighbors with a dead neighbour, one that accepts TCP
// and never speaks (slow), and one that answers something other than an
// L1 reply: each is listed with its error within the request timeout,
// and the crawl goes on with the live one.
func TestCase96DeadNeighbour(t *testing.T) {
	b := startNode(t, "B", "pycmbs", testOptions())
	bLoc := b.createMember("b", withSockets(t, member{}))
	bL1 := b.startLayer(bLoc, "l1")
	a := startNode(t, "A", "pycmbs", testOptions())
	dead, silent, junk := freeSocket(t), loopback.SilentPeer(t), junkPeer(t)
	aLoc := a.createMember("a", withSockets(t, member{"neighbors_socket": []any{dead, silent, junk, bL1}}))
	d := a.c.expect("POST", aLoc+"?action=check_neighbors", "{}", 200).json(t)
	failed, learned := map[string]string{}, d["learned"].([]any)
	for _, f := range d["failed"].([]any) {
		failed[f.(map[string]any)["socket"].(string)] = f.(map[string]any)["error"].(string)
	}
	if len(failed) != 3 || !strings.Contains(failed[dead], "did not answer") || !strings.Contains(failed[silent], "did not answer") || !strings.Contains(failed[junk], "not an L1 reply") {
		t.Fatalf("failed: %v", d)
	}
	if len(learned) != 1 || learned[0].(map[string]any)["socket"] != bL1 {
		t.Fatalf("learned: %v", d)
	}
}

// junkPeer is a ZeroMQ server that answers every request with text.
func junkPeer(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := transport.Listen(ctx, "tcp://127.0.0.1:0", func(_ context.Context, req transport.Envelope) (transport.Envelope, error) {
		return req.Reply("text/plain", []byte("hello, I am not a CMBS member")), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv.Addr()
}

func toStrings(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
