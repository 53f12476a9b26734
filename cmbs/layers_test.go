package cmbs_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs"
)

// peer is a node with one local member whose layers are started.
type peer struct {
	*node
	id, loc string
	sockets map[string]string // layer → socket
}

// startPeer starts a node with one local member and starts the layers.
func startPeer(t *testing.T, id string, attrs member, opts cmbs.Options, layers ...string) *peer {
	t.Helper()
	n := startNode(t, strings.ToUpper(id), "pycmbs", opts)
	p := &peer{node: n, id: id, sockets: map[string]string{}}
	p.loc = n.createMember(id, withSockets(t, attrs))
	for _, l := range layers {
		p.sockets[l] = n.startLayer(p.loc, l)
	}
	ma := attrsOf(n.get(p.loc), "member")
	for _, l := range []string{"l1", "l2", "l31", "l32", "l4"} {
		p.sockets[l] = fmt.Sprint(ma[l+"_socket"])
	}
	return p
}

func (p *peer) received(layer string) uint64 { return p.broker.Stats().Received[layer] }

// hasMessage reports whether the peer stored the message.
func (p *peer) hasMessage(id string) bool {
	return p.c.do("GET", "/cmbs/message/"+id, nil).status == 200
}

// TestDiscoveryTransitive: a crawl learns members its neighbours know,
// across four nodes, and every probed node learns the asker.
func TestDiscoveryTransitive(t *testing.T) {
	d := startPeer(t, "d", member{}, testOptions(), "l1")
	c := startPeer(t, "c", member{"neighbors_socket": []any{d.sockets["l1"]}}, testOptions(), "l1")
	b := startPeer(t, "b", member{"neighbors_socket": []any{c.sockets["l1"]}}, testOptions(), "l1")
	a := startPeer(t, "a", member{"neighbors_socket": []any{b.sockets["l1"]}}, testOptions(), "l1")

	c.c.expect("POST", c.loc+"?action=check_neighbors", "{}", 200) // c ↔ d
	b.c.expect("POST", b.loc+"?action=check_neighbors", "{}", 200) // b ↔ c, d
	res := a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200).json(t)
	if n := len(res["learned"].([]any)); n != 3 || len(res["failed"].([]any)) != 0 {
		t.Fatalf("a learned %d: %v", n, res)
	}
	all := []*peer{a, b, c, d}
	for _, p := range all {
		known := p.members()
		for _, q := range all {
			m, ok := known[q.sockets["l1"]]
			if !ok {
				t.Fatalf("%s does not know %s: %v", p.id, q.id, known)
			}
			wantLocal := map[bool]string{true: "true", false: "false"}[p == q]
			if attrsOf(m, "member")["local"] != wantLocal {
				t.Fatalf("%s stores %s with local %v", p.id, q.id, attrsOf(m, "member")["local"])
			}
		}
		if len(known) != 4 {
			t.Fatalf("%s knows %d members", p.id, len(known))
		}
	}
}

// TestDiscoveryFollowsAChain: one crawl from the head of a chain whose
// members never crawled themselves learns every member, because each reply
// names the replying member's own neighbours.
func TestDiscoveryFollowsAChain(t *testing.T) {
	d := startPeer(t, "d", member{}, testOptions(), "l1")
	c := startPeer(t, "c", member{"neighbors_socket": []any{d.sockets["l1"]}}, testOptions(), "l1")
	b := startPeer(t, "b", member{"neighbors_socket": []any{c.sockets["l1"]}}, testOptions(), "l1")
	a := startPeer(t, "a", member{"neighbors_socket": []any{b.sockets["l1"]}}, testOptions(), "l1")
	res := a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200).json(t)
	if n := len(res["learned"].([]any)); n != 3 || len(res["failed"].([]any)) != 0 {
		t.Fatalf("a learned %d: %v", n, res)
	}
	known := a.members()
	for _, q := range []*peer{b, c, d} {
		if _, ok := known[q.sockets["l1"]]; !ok {
			t.Fatalf("a does not know %s: %v", q.id, known)
		}
	}
}

// TestL31Providers: delivered to the named providers (by id or L1
// socket), each with its outcome; an unknown name is reported; a member
// not named receives nothing.
func TestL31Providers(t *testing.T) {
	b := startPeer(t, "b", member{}, testOptions(), "l1", "l31")
	c := startPeer(t, "c", member{}, testOptions(), "l1", "l31")
	d := startPeer(t, "d", member{}, testOptions(), "l1", "l31")
	a := startPeer(t, "a", member{"neighbors_socket": []any{b.sockets["l1"], c.sockets["l1"], d.sockets["l1"]}}, testOptions(), "l1")
	a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200)

	// b is named twice (id and reference): one delivery, reported for both.
	bRef := b.sockets["l1"] + b.loc
	loc := a.createMessage("m31", "l31", map[string]any{"providers": []any{"b", c.sockets["l1"], "nobody", bRef}, "storable": "true"})
	res := a.c.expect("POST", loc+"?action=send_l31", "{}", 200).json(t)
	if res["delivered"] != 3.0 || res["failed"] != 1.0 || b.received("l31") != 1 {
		t.Fatalf("send_l31: %v (b received %d)", res, b.received("l31"))
	}
	for _, x := range res["deliveries"].([]any) {
		dl := x.(map[string]any)
		switch dl["provider"] {
		case "b", c.sockets["l1"], bRef:
			if dl["delivered"] != true {
				t.Fatalf("delivery to %v: %v", dl["provider"], dl)
			}
		case "nobody":
			if dl["delivered"] != false || !strings.Contains(fmt.Sprint(dl["error"]), "no member known") {
				t.Fatalf("unknown provider: %v", dl)
			}
		default:
			t.Fatalf("unexpected delivery: %v", dl)
		}
	}
	if !b.hasMessage("m31") || !c.hasMessage("m31") || d.hasMessage("m31") || d.received("l31") != 0 {
		t.Fatalf("stored: b %v c %v d %v (d received %d)", b.hasMessage("m31"), c.hasMessage("m31"), d.hasMessage("m31"), d.received("l31"))
	}
}

// TestL32Topics: delivered to every member sharing a topic, once each even
// when several topics match; the others receive nothing.
func TestL32Topics(t *testing.T) {
	b := startPeer(t, "b", member{"topics": []any{"x", "y"}}, testOptions(), "l1", "l32")
	c := startPeer(t, "c", member{"topics": []any{"z"}}, testOptions(), "l1", "l32")
	d := startPeer(t, "d", member{"topics": []any{"y"}}, testOptions(), "l1", "l32")
	a := startPeer(t, "a", member{"topics": []any{"x"}, "neighbors_socket": []any{b.sockets["l1"], c.sockets["l1"], d.sockets["l1"]}}, testOptions(), "l1")
	a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200)

	loc := a.createMessage("m32", "l32", map[string]any{"topics": []any{"x", "y"}})
	res := a.c.expect("POST", loc+"?action=send_l32", "{}", 200).json(t)
	if res["delivered"] != 2.0 || res["failed"] != 0.0 || len(res["deliveries"].([]any)) != 2 {
		t.Fatalf("send_l32: %v", res)
	}
	if b.received("l32") != 1 || d.received("l32") != 1 || c.received("l32") != 0 {
		t.Fatalf("received: b %d c %d d %d", b.received("l32"), c.received("l32"), d.received("l32"))
	}
	if !b.hasMessage("m32") || !d.hasMessage("m32") || c.hasMessage("m32") || a.received("l32") != 0 {
		t.Fatal("stored copies do not match the topics")
	}
}

// l4Line builds a — b — c where a's neighbour is b and b's is c, with L1
// and L4 started; a discovers while b has no neighbour yet (a crawl follows
// the neighbours a reply names), so a does not know c.
func l4Line(t *testing.T, bOpts cmbs.Options, cTopics ...any) (a, b, c *peer) {
	t.Helper()
	c = startPeer(t, "c", member{"topics": cTopics}, testOptions(), "l1", "l4")
	b = startPeer(t, "b", member{}, bOpts, "l1", "l4")
	a = startPeer(t, "a", member{"neighbors_socket": []any{b.sockets["l1"]}}, testOptions(), "l1", "l4")
	a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200)
	b.updateMember(b.loc, member{"neighbors_socket": []any{c.sockets["l1"]}})
	b.c.expect("POST", b.loc+"?action=check_neighbors", "{}", 200)
	if _, knows := a.members()[c.sockets["l1"]]; knows {
		t.Fatal("a knows c: the line is not a line")
	}
	return a, b, c
}

// TestL4Line: a message from a reaches c through b, with the path it took;
// providers × topics decide where it is delivered; sendable false stops it
// at the first hop.
func TestL4Line(t *testing.T) {
	a, b, c := l4Line(t, testOptions(), "news")

	loc := a.createMessage("m4", "l4", nil)
	res := a.c.expect("POST", loc+"?action=send_l4", "{}", 200).json(t)
	first := res["deliveries"].([]any)
	if res["delivered"] != 1.0 || len(first) != 1 {
		t.Fatalf("send_l4: %v", res)
	}
	if ack := first[0].(map[string]any)["ack"].(map[string]any); ack["matched"] != true || fmt.Sprint(ack["forwarding_to"]) != fmt.Sprint([]any{c.sockets["l4"]}) {
		t.Fatalf("b's ack: %v", ack)
	}
	eventually(t, 10*time.Second, "c stores m4", func() bool { return c.hasMessage("m4") })
	path := toStrings(attrsOf(c.get("/cmbs/message/m4"), "message")["path_history"])
	want := []string{a.sockets["l1"] + a.loc, b.sockets["l1"] + b.loc, c.sockets["l1"] + c.loc}
	if fmt.Sprint(path) != fmt.Sprint(want) {
		t.Fatalf("path_history at c: %v, want %v", path, want)
	}
	if !b.hasMessage("m4") || a.received("l4") != 0 {
		t.Fatal("b did not store m4, or it came back to a")
	}

	// Only c is a destination: b routes without storing.
	loc = a.createMessage("m4-c", "l4", map[string]any{"providers": []any{"c"}, "topics": []any{"news"}})
	a.c.expect("POST", loc+"?action=send_l4", "{}", 200)
	eventually(t, 10*time.Second, "c stores m4-c", func() bool { return c.hasMessage("m4-c") })
	if b.hasMessage("m4-c") {
		t.Fatal("b stored a message naming only c")
	}
	// A topic c does not have: routed everywhere, stored nowhere.
	loc = a.createMessage("m4-none", "l4", map[string]any{"topics": []any{"sports"}})
	before := c.received("l4")
	a.c.expect("POST", loc+"?action=send_l4", "{}", 200)
	eventually(t, 10*time.Second, "c receives m4-none", func() bool { return c.received("l4") == before+1 })
	if b.hasMessage("m4-none") || c.hasMessage("m4-none") {
		t.Fatal("a message matching no member was stored")
	}

	// sendable:false: b gets it and does not forward.
	before = c.received("l4")
	loc = a.createMessage("m4-stop", "l4", map[string]any{"sendable": "False"})
	res = a.c.expect("POST", loc+"?action=send_l4", "{}", 200).json(t)
	ack := res["deliveries"].([]any)[0].(map[string]any)["ack"].(map[string]any)
	if ack["not_forwarded"] != "sendable is false" || ack["forwarding_to"] != nil {
		t.Fatalf("b's ack for an unsendable message: %v", ack)
	}
	if !b.hasMessage("m4-stop") || c.received("l4") != before || c.hasMessage("m4-stop") {
		t.Fatal("sendable:false did not stop at b")
	}
}

// TestL4HopLimit: b's hop limit of 1 keeps it from forwarding to c.
func TestL4HopLimit(t *testing.T) {
	opts := testOptions()
	opts.MaxHops = 1
	a, b, c := l4Line(t, opts)
	loc := a.createMessage("m4-hops", "l4", nil)
	res := a.c.expect("POST", loc+"?action=send_l4", "{}", 200).json(t)
	ack := res["deliveries"].([]any)[0].(map[string]any)["ack"].(map[string]any)
	if !strings.Contains(fmt.Sprint(ack["not_forwarded"]), "hops") || !b.hasMessage("m4-hops") || c.received("l4") != 0 {
		t.Fatalf("b's ack: %v (c received %d)", ack, c.received("l4"))
	}
}

// TestL4NoLoops: in a triangle where everyone neighbours everyone, a
// message reaches each member once and never returns to its sender.
func TestL4NoLoops(t *testing.T) {
	var ps []*peer
	for _, id := range []string{"a", "b", "c"} {
		ps = append(ps, startPeer(t, id, member{}, testOptions(), "l1", "l4"))
	}
	for _, p := range ps {
		var neighbours []any
		for _, q := range ps {
			if q != p {
				neighbours = append(neighbours, q.sockets["l1"])
			}
		}
		p.updateMember(p.loc, member{"neighbors_socket": neighbours})
		p.c.expect("POST", p.loc+"?action=check_neighbors", "{}", 200)
	}
	a, b, c := ps[0], ps[1], ps[2]
	loc := a.createMessage("m-loop", "l4", nil)
	res := a.c.expect("POST", loc+"?action=send_l4", "{}", 200).json(t)
	if res["delivered"] != 2.0 {
		t.Fatalf("send_l4: %v", res)
	}
	// b and c each forward to the other (a is on the path). Whichever
	// copy reaches a member second is dropped; if b's forward reaches c
	// before a's copy does, c has no one left to forward to.
	eventually(t, 10*time.Second, "the forwards settle", func() bool {
		return b.broker.Stats().ForwardsInFlight == 0 && c.broker.Stats().ForwardsInFlight == 0
	})
	recv := b.received("l4") + c.received("l4")
	dups := b.broker.Stats().Duplicates + c.broker.Stats().Duplicates
	if recv < 3 || recv > 4 || dups != recv-2 {
		t.Fatalf("b and c received %d copies, %d dropped as repeats", recv, dups)
	}
	if a.received("l4") != 0 || b.broker.Stats().Stored != 1 || c.broker.Stats().Stored != 1 {
		t.Fatalf("a received %d; stored b %d c %d", a.received("l4"), b.broker.Stats().Stored, c.broker.Stats().Stored)
	}
}

// TestL2ThousandBroadcasts: 1000 L2 broadcasts to 5 members are 5000
// deliveries, every one acknowledged and counted by its receiver.
func TestL2ThousandBroadcasts(t *testing.T) {
	var receivers []*peer
	var neighbours []any
	for i := range 5 {
		r := startPeer(t, fmt.Sprintf("r%d", i), member{}, testOptions(), "l1", "l2")
		receivers = append(receivers, r)
		neighbours = append(neighbours, r.sockets["l1"])
	}
	// No peer here is dead or slow on purpose: under -race on a loaded
	// machine a delivery can take longer than testOptions' 1 s, which
	// failed this test while it tests counts, not timeouts.
	opts := testOptions()
	opts.RequestTimeout = 15 * time.Second
	s := startPeer(t, "s", member{"neighbors_socket": neighbours}, opts, "l1")
	s.c.expect("POST", s.loc+"?action=check_neighbors", "{}", 200)

	const workers, each = 4, 250
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	for w := range workers {
		// One message per worker: concurrent sends of one message would
		// contend for its result.
		loc := s.createMessage(fmt.Sprintf("bcast-%d", w), "l2", map[string]any{"storable": "false", "executable": "false"})
		wg.Go(func() {
			for range each {
				r, err := s.c.try("POST", loc+"?action=send_l2", "{}")
				if err != nil || r.status != 200 || !strings.Contains(string(r.body), `"delivered":5,`) {
					errs <- fmt.Sprintf("send_l2: %v %d %s", err, r.status, r.body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	var total uint64
	for _, r := range receivers {
		if got := r.received("l2"); got != workers*each {
			t.Errorf("%s received %d broadcasts, want %d", r.id, got, workers*each)
		}
		total += r.received("l2")
	}
	t.Logf("%d deliveries in %v", total, time.Since(start))
	if total != 5*workers*each {
		t.Fatalf("%d deliveries, want %d", total, 5*workers*each)
	}
}

// TestFlags: storable and executable are read case-insensitively.
func TestFlags(t *testing.T) {
	b := startPeer(t, "b", member{}, testOptions(), "l1", "l2")
	a := startPeer(t, "a", member{"neighbors_socket": []any{b.sockets["l1"]}}, testOptions(), "l1")
	a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200)
	for _, tc := range []struct {
		id                   string
		storable, executable string
		stored, executed     bool
	}{
		{"f1", "True", "False", true, false},
		{"f2", "FALSE", "true", false, true},
		{"f3", "false", "FALSE", false, false},
		{"f4", "true", "TRUE", true, true},
	} {
		ex := b.broker.Stats().Executed
		loc := a.createMessage(tc.id, "l2", map[string]any{"storable": tc.storable, "executable": tc.executable})
		res := a.c.expect("POST", loc+"?action=send_l2", "{}", 200).json(t)
		ack := res["deliveries"].([]any)[0].(map[string]any)["ack"].(map[string]any)
		if got := b.hasMessage(tc.id); got != tc.stored || (ack["stored"] != nil) != tc.stored {
			t.Errorf("%s: stored %v, want %v (ack %v)", tc.id, got, tc.stored, ack)
		}
		if got := b.broker.Stats().Executed > ex; got != tc.executed || (ack["executed"] != nil) != tc.executed {
			t.Errorf("%s: executed %v, want %v (ack %v)", tc.id, got, tc.executed, ack)
		}
	}
	// Sending a stored message again is a repeat: not stored or run twice.
	res := a.c.expect("POST", "/cmbs/message/f4?action=send_l2", "{}", 200).json(t)
	if ack := res["deliveries"].([]any)[0].(map[string]any)["ack"].(map[string]any); ack["duplicate"] != true || ack["executed"] != nil {
		t.Fatalf("repeat: %v", ack)
	}
}

// TestRepeatedCrawlsKeepOneProbeEach: every crawl stores its probes at
// the same ids (one per crawling member and socket), each with the latest
// reply as its result.
func TestRepeatedCrawlsKeepOneProbeEach(t *testing.T) {
	c := startPeer(t, "c", member{}, testOptions(), "l1")
	b := startPeer(t, "b", member{"neighbors_socket": []any{c.sockets["l1"]}}, testOptions(), "l1")
	a := startPeer(t, "a", member{"neighbors_socket": []any{b.sockets["l1"]}}, testOptions(), "l1")
	crawl := func(want int) map[string]any {
		res := a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200).json(t)
		if n := len(res["learned"].([]any)); n != want {
			t.Fatalf("a learned %d, want %d: %v", n, want, res)
		}
		return res
	}
	crawl(2) // b, and c through b
	if n := len(a.list("/cmbs/message/")); n != 2 {
		t.Fatalf("%d probe messages after the first crawl, want 2", n)
	}
	// b forgets c between the crawls: its probe's result must say so.
	b.updateMember(b.loc, member{"neighbors_socket": []any{}})
	for range 3 {
		crawl(1)
	}
	if n := len(a.list("/cmbs/message/")); n != 2 {
		t.Fatalf("%d probe messages after four crawls, want still 2", n)
	}
	res := crawl(1)
	probe := a.get(res["learned"].([]any)[0].(map[string]any)["message"].(string))
	result, _ := attrsOf(probe, "message")["result"].(map[string]any)
	if result == nil || slices.Contains(result["sockets_l1"].([]any), any(c.sockets["l1"])) {
		t.Fatalf("b's probe result %v: want the latest reply, without c's socket %s", result, c.sockets["l1"])
	}
}
