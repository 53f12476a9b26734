package cmbs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/cmbs/transport/curve"
	"github.com/cmbs/cmbs/internal/pyzmqtest"
)

func curvePair(t *testing.T) curve.KeyPair {
	t.Helper()
	kp, err := curve.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func curveOptions(keys curve.KeyPair, clients []curve.Key, servers map[string]curve.Key) cmbs.Options {
	o := testOptions()
	o.Curve = &cmbs.CurveOptions{Keys: keys, Clients: clients, Servers: servers}
	return o
}

// TestCurveThreeNodeMesh: three nodes over CURVE, C's key missing from A's
// authorised clients, and only B's and A's keys configured anywhere. C
// crawls B first: B learns C's key from C's handshake. A then crawls
// through B and learns C's socket and key from B's reply, so A reaches
// C. C reaches B, and B reaches C; everything C sends to A is refused
// and counted, while A and B talk both ways.
func TestCurveThreeNodeMesh(t *testing.T) {
	kA, kB, kC := curvePair(t), curvePair(t), curvePair(t)
	aL1, bL1, cL1 := freeSocket(t), freeSocket(t), freeSocket(t)
	all := []curve.Key{kA.Public, kB.Public, kC.Public}

	b := startNode(t, "B", "pycmbs", curveOptions(kB, all, map[string]curve.Key{aL1: kA.Public}))
	bLoc := b.createMember("b", withSockets(t, member{"l1_socket": bL1, "neighbors_socket": []any{}}))
	if got := b.startLayer(bLoc, "l1"); got != bL1 {
		t.Skipf("B's L1 socket moved to %s (port taken); keys were configured for %s", got, bL1)
	}
	a := startNode(t, "A", "pycmbs", curveOptions(kA, []curve.Key{kA.Public, kB.Public}, map[string]curve.Key{bL1: kB.Public}))
	aLoc := a.createMember("a", withSockets(t, member{"l1_socket": aL1, "neighbors_socket": []any{bL1}}))
	if got := a.startLayer(aLoc, "l1"); got != aL1 {
		t.Skipf("A's L1 socket moved (port taken)")
	}
	c := startNode(t, "C", "pycmbs", curveOptions(kC, all, map[string]curve.Key{bL1: kB.Public}))
	cLoc := c.createMember("c", withSockets(t, member{"l1_socket": cL1, "neighbors_socket": []any{bL1}}))
	c.startLayer(cLoc, "l1") // nobody has C's key configured: wherever it is, it is learned

	crawl := func(n *node, loc string) (learned, failed []string) {
		t.Helper()
		d := n.action(loc, "check_neighbors", nil).json(t)
		for _, key := range []string{"learned", "failed"} {
			list, _ := d[key].([]any)
			for _, e := range list {
				s := e.(map[string]any)["socket"].(string)
				if key == "learned" {
					learned = append(learned, s)
				} else {
					failed = append(failed, s)
				}
			}
		}
		return learned, failed
	}
	// C crawls: B answers (B knows nobody else yet) and learns C's key.
	if learned, failed := crawl(c, cLoc); len(learned) != 1 || learned[0] != bL1 || len(failed) != 0 {
		t.Fatalf("C's first crawl: learned %v, failed %v", learned, failed)
	}
	// A crawls: B's reply names C's socket and key; A reaches C.
	cL1 = fmt.Sprint(attrsOf(c.get(cLoc), "member")["l1_socket"])
	if learned, failed := crawl(a, aLoc); !sameSet(learned, []string{bL1, cL1}) || len(failed) != 0 {
		t.Fatalf("A's crawl: learned %v, failed %v", learned, failed)
	}
	// C crawls again: B's reply now names A, which refuses C.
	if learned, failed := crawl(c, cLoc); len(failed) != 1 || failed[0] != aL1 || len(learned) != 1 {
		t.Fatalf("C's second crawl should fail at A only: learned %v, failed %v", learned, failed)
	}
	// A counts the refusal as it closes the connection, which may be just
	// after C has seen the close.
	eventually(t, 10*time.Second, "A counts C's refused connection", func() bool { return a.broker.CurveStatus().Refused > 0 })
	refusedAtA := a.broker.CurveStatus().Refused

	send := func(n *node, id, to string) reply {
		loc := n.createMessage(id, "l1", map[string]any{"sendable": "true", "storable": "true", "l1_socket_receiver_member": to})
		return n.action(loc, "send_l1", nil)
	}
	if r := send(a, "a-to-c", cL1); r.status != 200 {
		t.Fatalf("A → C with the key learned from B: %d %s", r.status, r.body)
	}
	if r := send(a, "a-to-b", bL1); r.status != 200 {
		t.Fatalf("A → B: %d %s", r.status, r.body)
	}
	if r := send(b, "b-to-a", aL1); r.status != 200 {
		t.Fatalf("B → A: %d %s", r.status, r.body)
	}
	if r := send(c, "c-to-b", bL1); r.status != 200 {
		t.Fatalf("C → B: %d %s", r.status, r.body)
	}
	if r := send(b, "b-to-c", cL1); r.status != 200 {
		t.Fatalf("B → C with the key C proved when it asked: %d %s", r.status, r.body)
	}
	if r := send(c, "c-to-a", aL1); r.status == 200 {
		t.Fatalf("C → A was delivered: %s", r.body)
	}
	// Counted as A closes the connection, which may follow C's error.
	eventually(t, 10*time.Second, "A counts C → A's refusal", func() bool { return a.broker.CurveStatus().Refused > refusedAtA })
	if a.c.do("GET", "/cmbs/message/c-to-a", nil).status == 200 {
		t.Fatal("A stored C's refused message")
	}
	st := a.broker.CurveStatus()
	if st.PublicKey != kA.Public.String() || st.AuthorisedClients != 2 || st.ConfiguredServers != 1 || st.LearnedServers == 0 {
		t.Fatalf("A's CURVE status: %+v", st)
	}
	// A node without a key for an endpoint does not connect at all.
	if r := send(c, "c-to-nowhere", freeSocket(t)); r.status == 200 || !strings.Contains(string(r.body), "CURVE") {
		t.Fatalf("C → an endpoint without a known key: %d %s", r.status, r.body)
	}
}

// TestCurvePyzmqToL1: a libzmq CURVE REQ client (pyzmq) talks to a cmbsd L1
// socket; a NULL client and a client expecting another server key get
// nothing.
func TestCurvePyzmqToL1(t *testing.T) {
	py := pyzmqtest.Python(t)
	kB, kPy, other := curvePair(t), curvePair(t), curvePair(t)
	b := startPeer(t, "b", member{}, curveOptions(kB, nil, nil), "l1")
	msg := map[string]any{
		"kind":   "http://houssem.org/cmbs#message",
		"mixins": []any{"http://houssem.org/cmbs#l1"},
		"attributes": map[string]any{"cmbs": map[string]any{"message": map[string]any{
			"cmbs_layer": "l1", "sendable": "True", "storable": "True", "executable": "False",
			"path_history": []any{}, "l1_socket_receiver_member": b.sockets["l1"],
		}}},
		"id": "from-python-curve", "title": "l1 CMBS message",
	}
	body, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	keys := pyzmqtest.CurveKeys{Public: kPy.Public.String(), Secret: kPy.Secret.String(), ServerKey: kB.Public.String()}
	frames, err := pyzmqtest.CurveREQ(t, ctx, py, b.sockets["l1"], keys, 10*time.Second, 1, "from-python-curve", cmbs.MessageMimeType, string(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 3 || frames[0] != "from-python-curve" || !strings.Contains(frames[2], `"member_description"`) {
		t.Fatalf("reply frames: %q", frames)
	}
	if !b.hasMessage("from-python-curve") {
		t.Fatal("the message was not stored")
	}
	for name, k := range map[string]pyzmqtest.CurveKeys{
		"NULL":             {},
		"wrong server key": {Public: kPy.Public.String(), Secret: kPy.Secret.String(), ServerKey: other.Public.String()},
	} {
		if _, err := pyzmqtest.CurveREQ(t, ctx, py, b.sockets["l1"], k, 1500*time.Millisecond, 1, "x", cmbs.MessageMimeType, string(body)); err == nil {
			t.Errorf("%s client was answered", name)
		}
	}
	if b.broker.CurveStatus().Refused < 2 {
		t.Errorf("refusals counted: %d, want at least 2", b.broker.CurveStatus().Refused)
	}
}
