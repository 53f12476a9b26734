package cmbs_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs"
)

// dialable reports whether something accepts TCP connections at a socket.
func dialable(socket string) bool {
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(socket, "tcp://"), time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// TestMemberLayers: start binds, starting twice is a no-op, stop closes at
// once and a later start reuses the port; several local members each have
// their own sockets; bad starts are clear errors.
func TestMemberLayers(t *testing.T) {
	n := startNode(t, "N", "pycmbs", testOptions())
	m1 := n.createMember("m1", withSockets(t, member{}))
	l1 := n.startLayer(m1, "l1")
	if !dialable(l1) {
		t.Fatal("started L1 does not accept connections")
	}
	again := n.c.expect("POST", m1+"?action=start_l1", "{}", 200).json(t)
	if again["running"] != true || again["changed"] != false || again["socket"] != l1 {
		t.Fatalf("second start_l1: %v", again)
	}
	for _, l := range []string{"l2", "l31", "l32", "l4"} {
		if s := n.startLayer(m1, l); !dialable(s) {
			t.Fatalf("%s not listening", l)
		}
	}

	stop := n.c.expect("POST", m1+"?action=stop_l1", "{}", 200).json(t)
	if stop["running"] != false || stop["changed"] != true || dialable(l1) {
		t.Fatalf("stop_l1: %v (still dialable: %v)", stop, dialable(l1))
	}
	if again := n.c.expect("POST", m1+"?action=stop_l1", "{}", 200).json(t); again["changed"] != false {
		t.Fatalf("second stop_l1: %v", again)
	}
	if s := n.startLayer(m1, "l1"); s != l1 || !dialable(l1) {
		t.Fatalf("restart on %s, want %s", s, l1)
	}

	// A second local member has sockets of its own.
	m2 := n.createMember("m2", withSockets(t, member{}))
	if s := n.startLayer(m2, "l1"); s == l1 || !dialable(s) {
		t.Fatalf("m2's L1 %s", s)
	}

	// A socket another member holds: 409 with the bind error.
	m3 := n.createMember("m3", withSockets(t, member{"l1_socket": l1}))
	r := n.action(m3, "start_l1", nil)
	if r.status != 409 || !strings.Contains(r.errorMessage(t), "address already in use") {
		t.Fatalf("start_l1 on a taken port: %d %s", r.status, r.body)
	}
	// No socket, or one that cannot be advertised: 400 naming the attribute.
	m4 := n.createMember("m4", withSockets(t, member{"l2_socket": "", "l4_socket": "tcp://127.0.0.1:0", "l31_socket": "ipc:///tmp/x", "l32_socket": "tcp://127.0.0.1:*"}))
	for term, attr := range map[string]string{"start_l2": "cmbs.member.l2_socket", "start_l4": "cmbs.member.l4_socket", "start_l31": "cmbs.member.l31_socket", "start_l32": "cmbs.member.l32_socket"} {
		r := n.action(m4, term, nil)
		if r.status != 400 || r.json(t)["error"].(map[string]any)["attribute"] != attr {
			t.Fatalf("%s: %d %s", term, r.status, r.body)
		}
	}
	// A remote member binds nothing.
	remote := n.createMember("far", withSockets(t, member{"local": "false"}))
	if r := n.action(remote, "start_l1", nil); r.status != 409 || !strings.Contains(r.errorMessage(t), "remote") {
		t.Fatalf("start_l1 on a remote member: %d %s", r.status, r.body)
	}
	// A started layer's socket cannot change under it.
	desc := map[string]any{"attributes": map[string]any{"cmbs": map[string]any{"member": map[string]any{"l1_socket": freeSocket(t)}}}}
	if r := n.c.do("POST", m1, map[string]any{"resources": []any{desc}}); r.status != 409 || !strings.Contains(r.errorMessage(t), "stop_l1") {
		t.Fatalf("changing a started socket: %d %s", r.status, r.body)
	}

	// Deleting a member closes its sockets.
	m1Sockets := attrsOf(n.get(m1), "member")
	n.c.expect("DELETE", m1, nil, 200)
	for _, l := range []string{"l1_socket", "l2_socket", "l31_socket", "l32_socket", "l4_socket"} {
		if dialable(m1Sockets[l].(string)) {
			t.Fatalf("deleted member's %s still listening", l)
		}
	}

	// Shutdown closes every socket; later actions answer 503.
	m2L1 := attrsOf(n.get(m2), "member")["l1_socket"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.srv.Providers.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if dialable(m2L1) {
		t.Fatal("L1 still listening after Stop")
	}
	if r := n.action(m2, "start_l1", nil); r.status != 503 {
		t.Fatalf("start after Stop: %d %s", r.status, r.body)
	}
}

// Layer sockets have no authentication: a non-loopback address is bound
// only when the broker allows it (cmbsd --insecure).
func TestNonLoopbackSocketsNeedInsecure(t *testing.T) {
	const doc = "tcp://192.0.2.1:5999" // TEST-NET-1: never this machine's
	n := startNode(t, "N", "pycmbs", testOptions())
	m := n.createMember("m", withSockets(t, member{"l1_socket": doc, "l2_socket": strings.Replace(freeSocket(t), "127.0.0.1", "localhost", 1)}))
	r := n.action(m, "start_l1", nil)
	if r.status != 403 || !strings.Contains(r.errorMessage(t), "--insecure") || r.json(t)["error"].(map[string]any)["attribute"] != "cmbs.member.l1_socket" {
		t.Fatalf("start_l1 on %s: %d %s", doc, r.status, r.body)
	}
	if s := n.startLayer(m, "l2"); !dialable(s) {
		t.Fatalf("localhost is loopback: L2 on %s not listening", s)
	}

	opts := testOptions()
	opts.AllowNonLoopback = true
	open := startNode(t, "O", "pycmbs", opts)
	m = open.createMember("m", withSockets(t, member{"l1_socket": doc}))
	// Allowed, so the bind itself is tried, and fails: the address is not here.
	if r := open.action(m, "start_l1", nil); r.status != 400 || !strings.Contains(r.errorMessage(t), "cannot bind") {
		t.Fatalf("start_l1 on %s when allowed: %d %s", doc, r.status, r.body)
	}
}

// TestReadmeKind: the README's member kind (l3.1 spellings, no local, no
// stop_*): members are local, start_l3.1 binds l3.1_socket, and discovery
// works without a local attribute: the learned members are remote by their
// id (RemoteMemberID), in both directions and with pyCMBS's kind.
func TestReadmeKind(t *testing.T) {
	n := startNode(t, "R", "readme", testOptions())
	alone := n.createMember("alone", member{"l1_socket": freeSocket(t)})
	if r := n.action(alone, "check_neighbors", nil); r.status != 200 || len(r.json(t)["learned"].([]any)) != 0 {
		t.Fatalf("check_neighbors of a member without neighbours: %d %s", r.status, r.body)
	}
	n.c.expect("DELETE", alone, nil, 200)

	p := startPeer(t, "p", member{}, testOptions(), "l1", "l2")
	loc := n.createMember("r", member{
		"l1_socket": freeSocket(t), "l2_socket": freeSocket(t), "l3.1_socket": freeSocket(t),
		"l3.2_socket": freeSocket(t), "l4_socket": freeSocket(t), "neighbors_socket": []any{p.sockets["l1"]},
	})
	if _, has := attrsOf(n.get(loc), "member")["local"]; has {
		t.Fatal("the README kind has no local attribute")
	}
	for _, l := range []string{"l1", "l3.1", "l3.2"} {
		if s := n.startLayer(loc, l); !dialable(s) {
			t.Fatalf("start_%s: %s not listening", l, s)
		}
	}
	rL1 := attrsOf(n.get(loc), "member")["l1_socket"].(string)
	for range 2 { // a second crawl updates what the first stored
		r := n.action(loc, "check_neighbors", nil)
		if r.status != 200 || len(r.json(t)["learned"].([]any)) != 1 || len(r.json(t)["failed"].([]any)) != 0 {
			t.Fatalf("check_neighbors with the README kind: %d %s", r.status, r.body)
		}
	}
	onR := n.members()
	learned := onR[p.sockets["l1"]]
	if len(onR) != 2 || learned["id"] != cmbs.RemoteMemberID("p", p.sockets["l1"]) {
		t.Fatalf("the README node stores %v", onR)
	}
	if _, has := attrsOf(learned, "member")["local"]; has {
		t.Fatalf("a learned member got an attribute the kind does not declare: %v", learned)
	}
	// Remote by its id: it binds nothing, crawls nothing, and is an L2
	// destination.
	remote := "/cmbs/member/" + learned["id"].(string)
	for _, term := range []string{"start_l1", "check_neighbors"} {
		if r := n.action(remote, term, nil); r.status != 409 || !strings.Contains(r.errorMessage(t), "remote") {
			t.Fatalf("%s on a learned member: %d %s", term, r.status, r.body)
		}
	}
	msg := n.createMessage("to-p", "l2", nil)
	if r := n.action(msg, "send_l2", nil); r.status != 200 || r.json(t)["delivered"] != float64(1) {
		t.Fatalf("send_l2 from the README node: %d %s", r.status, r.body)
	}

	// Two README-kind nodes discover each other: neither kind declares
	// local, and each stores the other remote by its id.
	n2 := startNode(t, "S", "readme", testOptions())
	s := n2.createMember("s", member{"l1_socket": freeSocket(t), "neighbors_socket": []any{rL1}})
	sL1 := n2.startLayer(s, "l1")
	if r := n2.action(s, "check_neighbors", nil); r.status != 200 || len(r.json(t)["learned"].([]any)) != 2 {
		t.Fatalf("check_neighbors between README-kind nodes: %d %s (want r and, through it, p)", r.status, r.body)
	}
	for _, tc := range []struct {
		on       *node
		l1, want string
	}{{n2, rL1, cmbs.RemoteMemberID("r", rL1)}, {n, sL1, cmbs.RemoteMemberID("s", sL1)}} {
		if got := tc.on.members()[tc.l1]; got["id"] != tc.want {
			t.Fatalf("%s stores %v, want it at %s", tc.on.name, got, tc.want)
		}
		if r := tc.on.action("/cmbs/member/"+tc.want, "start_l1", nil); r.status != 409 {
			t.Fatalf("start_l1 of a member %s learned: %d %s", tc.on.name, r.status, r.body)
		}
	}

	// The pyCMBS-kind node learned the asker, local "false" (its kind
	// declares local) and l3.1_socket under its own l31_socket spelling.
	asker := p.members()[rL1]
	if asker["id"] != cmbs.RemoteMemberID("r", rL1) || attrsOf(asker, "member")["local"] != "false" ||
		attrsOf(asker, "member")["l31_socket"] != attrsOf(n.get(loc), "member")["l3.1_socket"] {
		t.Fatalf("the pyCMBS node stores the README member as %v", asker)
	}
}

// TestMessageActionErrors: sends that cannot happen say why.
func TestMessageActionErrors(t *testing.T) {
	n := startNode(t, "N", "pycmbs", testOptions())
	for _, tc := range []struct {
		layer, term string
		attrs       map[string]any
		status      int
		attribute   string
	}{
		{"l1", "send_l1", nil, 400, "cmbs.message.l1_socket_receiver_member"},
		{"l31", "send_l31", nil, 400, "cmbs.message.providers"},
		{"l32", "send_l32", nil, 400, "cmbs.message.topics"},
		{"l4", "send_l4", nil, 409, ""},
		{"l2", "send_l2", map[string]any{"sendable": "false"}, 409, "cmbs.message.sendable"},
		{"l1", "execute", map[string]any{"executable": "False"}, 409, "cmbs.message.executable"},
	} {
		loc := n.createMessage(tc.term+tc.layer, tc.layer, tc.attrs)
		r := n.action(loc, tc.term, nil)
		if r.status != tc.status || r.json(t)["error"].(map[string]any)["attribute"] != map[bool]any{true: tc.attribute, false: nil}[tc.attribute != ""] {
			t.Errorf("%s on an %s message: %d %s", tc.term, tc.layer, r.status, r.body)
		}
	}
	// An l2 message sent with send_l1's layer is refused by the layer check.
	desc := map[string]any{"kind": "http://houssem.org/cmbs#message", "id": "mixed",
		"mixins":     []any{"http://houssem.org/cmbs#l1", "http://houssem.org/cmbs#l2"},
		"attributes": map[string]any{"cmbs": map[string]any{"message": map[string]any{"cmbs_layer": "l2", "l1_socket_receiver_member": freeSocket(t)}}}}
	n.c.expect("POST", "/cmbs/message/", map[string]any{"resources": []any{desc}}, 201)
	if r := n.action("/cmbs/message/mixed", "send_l1", nil); r.status != 400 || r.json(t)["error"].(map[string]any)["attribute"] != "cmbs.message.cmbs_layer" {
		t.Fatalf("layer mismatch: %d %s", r.status, r.body)
	}

	// execute records that it ran, by the local member.
	m := n.createMember("me", withSockets(t, member{}))
	loc := n.createMessage("run-me", "l2", map[string]any{"executable": "True"})
	rec := n.c.expect("POST", loc+"?action=execute", "{}", 200).json(t)
	l1 := attrsOf(n.get(m), "member")["l1_socket"].(string)
	if rec["executed_by"] != l1+m || rec["at"] == nil {
		t.Fatalf("execute: %v", rec)
	}
	if got := attrsOf(n.get(loc), "message")["result"].(map[string]any); got["executed_by"] != l1+m {
		t.Fatalf("stored result: %v", got)
	}

	// With two local members, the sender must be named.
	n.createMember("me2", withSockets(t, member{}))
	if r := n.action(loc, "execute", nil); r.status != 400 || r.json(t)["error"].(map[string]any)["attribute"] != "member" {
		t.Fatalf("ambiguous sender: %d %s", r.status, r.body)
	}
	if r := n.action(loc, "execute", map[string]any{"member": "me2"}); r.status != 200 || !strings.HasSuffix(r.json(t)["executed_by"].(string), "/cmbs/member/me2") {
		t.Fatalf("named sender: %d %s", r.status, r.body)
	}
}
