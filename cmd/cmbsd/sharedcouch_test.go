package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	neturl "net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/loopback"
)

// sharedCouch is a group of cmbsd processes serving one CouchDB database.
type sharedCouch struct {
	t     *testing.T
	store string
	db    string
	dirs  map[string]string
	urls  map[string]string
	procs map[string]*process
	// slowest is the longest a change took to be seen by another server.
	slowest time.Duration
}

func newSharedCouch(t *testing.T, names ...string) *sharedCouch {
	t.Helper()
	url := couchpeer.URLForTest(t)
	g := &sharedCouch{t: t, store: url, db: couchpeer.DBForTest(t, url),
		dirs: map[string]string{}, urls: map[string]string{}, procs: map[string]*process{}}
	for _, n := range names {
		g.dirs[n] = t.TempDir()
		g.start(n)
	}
	return g
}

func (g *sharedCouch) start(n string) {
	g.t.Helper()
	g.procs[n] = startCmbsd(g.t, g.dirs[n], nil, "--listen", "127.0.0.1:0", "--store", g.store, "--db", g.db)
	g.urls[n] = "http://" + g.procs[n].waitListening(g.t)
}

func (g *sharedCouch) stop(n string) {
	g.t.Helper()
	if err := g.procs[n].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		g.t.Fatal(err)
	}
	if code := g.procs[n].waitExit(g.t); code != 0 {
		g.t.Fatalf("%s exited with %d", n, code)
	}
}

// until polls cond until it holds (bounded well beyond the 1 s the feed
// is meant to take: the machine is shared) and records how long it took.
func (g *sharedCouch) until(what string, cond func() bool) {
	g.t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			g.t.Fatalf("%s: not seen within 30 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.slowest = max(g.slowest, time.Since(start))
}

func (g *sharedCouch) status(n, method, path string, body []byte) int {
	g.t.Helper()
	code, _ := occiCall(g.t, method, g.urls[n]+path, body)
	return code
}

func (g *sharedCouch) registerCMBS(n string) {
	g.t.Helper()
	for _, f := range []string{"post_category_cmbs_member.json", "post_category_cmbs_message.json"} {
		body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "pycmbs", f))
		if err != nil {
			g.t.Fatal(err)
		}
		mustCall(g.t, "POST", g.urls[n]+"/-/", body, 200)
	}
}

func (g *sharedCouch) bindCMBS(n string) {
	g.t.Helper()
	for _, f := range []string{"put_provider_cmbs_member.json", "put_provider_cmbs_message.json"} {
		body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "pycmbs", f))
		if err != nil {
			g.t.Fatal(err)
		}
		mustCall(g.t, "PUT", g.urls[n]+"/-/", body, 200)
	}
}

// l2Targets sends a new L2 message from server n and returns the members
// it was delivered to: every remote member with an L2 socket n knows.
func (g *sharedCouch) l2Targets(n string, seq *int) []string {
	g.t.Helper()
	members, bound := g.tryL2Targets(n, seq)
	if !bound {
		g.t.Fatalf("%s: send_l2 answers 501: the message kind is not bound there", n)
	}
	return members
}

// tryL2Targets is l2Targets, reporting false while the message kind has
// no provider bound on n (send_l2 answers 501).
func (g *sharedCouch) tryL2Targets(n string, seq *int) ([]string, bool) {
	g.t.Helper()
	*seq++
	id := fmt.Sprintf("probe-%s-%d", n, *seq)
	msg := fmt.Sprintf(`{"resources":[{"kind":"http://houssem.org/cmbs#message","mixins":["http://houssem.org/cmbs#l2"],"id":%q,
		"attributes":{"cmbs":{"message":{"cmbs_layer":"l2","executable":"false","sendable":"true","storable":"false","message_content":{"n":%d}}}}}]}`, id, *seq)
	mustCall(g.t, "POST", g.urls[n]+"/cmbs/message/", []byte(msg), 201)
	if code, _ := occiCall(g.t, "POST", g.urls[n]+"/cmbs/message/"+id+"?action=send_l2", []byte("{}")); code == 501 {
		return nil, false
	}
	res := mustCall(g.t, "POST", g.urls[n]+"/cmbs/message/"+id+"?action=send_l2", []byte("{}"), 200)
	var members []string
	ds, _ := res["deliveries"].([]any)
	for _, d := range ds {
		if d, ok := d.(map[string]any); ok && d["delivered"] == true {
			members = append(members, fmt.Sprint(d["member"]))
		}
	}
	slices.Sort(members)
	return members, true
}

// Three cmbsd on one CouchDB behave as one: categories, provider bindings,
// members, mixin membership and deletions made through any of them are in
// force on the others once the changes feed has them — the broker's member
// list included, which without the feed it would keep for a minute — and a
// server restarted while changes were made has them all.
func TestBinarySharedCouchThreeServers(t *testing.T) {
	g := newSharedCouch(t, "a", "b", "c")

	// Categories registered on a, bound on b: c serves and runs them.
	g.registerCMBS("a")
	for _, n := range []string{"b", "c"} {
		g.until("the CMBS kinds on "+n, func() bool {
			return g.status(n, "GET", "/cmbs/member/", nil) == 200 && g.status(n, "GET", "/cmbs/message/", nil) == 200
		})
	}
	l1, l2 := loopback.FreeEndpoint(t), loopback.FreeEndpoint(t)
	member := fmt.Sprintf(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"member-c","attributes":{"cmbs":{"member":{
		"state":"active","local":"true","l1_socket":%q,"l2_socket":%q,"neighbors_socket":[],"topics":["news"]}}}}]}`, l1, l2)
	mustCall(t, "POST", g.urls["c"]+"/cmbs/member/", []byte(member), 201)
	g.bindCMBS("b")
	// Before the binding reaches c, its actions answer 501 (no provider).
	for _, l := range []string{"l1", "l2"} {
		g.until("the member binding on c", func() bool {
			return g.status("c", "POST", "/cmbs/member/member-c?action=start_"+l, []byte("{}")) == 200
		})
	}

	// Members: c learns the remote member a stores, and forgets it when b
	// deletes it. The member points at c's own L2 socket, so c's L2
	// broadcast reaches it.
	var seq int
	g.until("the message binding on c", func() bool {
		got, bound := g.tryL2Targets("c", &seq)
		if len(got) != 0 {
			t.Fatalf("c's L2 broadcast reached %v before any remote member exists", got)
		}
		return bound
	})
	relay := fmt.Sprintf(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"relay","attributes":{"cmbs":{"member":{
		"state":"active","local":"false","l1_socket":%q,"l2_socket":%q,"neighbors_socket":[]}}}}]}`, loopback.FreeEndpoint(t), l2)
	mustCall(t, "POST", g.urls["a"]+"/cmbs/member/", []byte(relay), 201)
	g.until("the remote member on c", func() bool {
		got := g.l2Targets("c", &seq)
		return len(got) == 1 && strings.HasSuffix(got[0], "/cmbs/member/relay")
	})

	// Mixin membership: a mixin registered on a, tagged on b, listed on c.
	mixin := []byte(`{"mixins":[{"term":"watched","scheme":"http://example.org/ops#","location":"/watched/"}]}`)
	mustCall(t, "POST", g.urls["a"]+"/-/", mixin, 200)
	g.until("the mixin on b", func() bool { return g.status("b", "GET", "/watched/", nil) == 200 })
	mustCall(t, "POST", g.urls["b"]+"/watched/", []byte(`{"X-OCCI-Location":["/cmbs/member/relay"]}`), 200)
	g.until("the mixin's members on c", func() bool {
		code, body := occiCall(t, "GET", g.urls["c"]+"/watched/", nil)
		return code == 200 && bytes.Contains(body, []byte("/cmbs/member/relay"))
	})
	// Deleted on c: gone from a and b, and from the member it tagged.
	mustCall(t, "DELETE", g.urls["c"]+"/-/", mixin, 200)
	for _, n := range []string{"a", "b"} {
		g.until("the mixin's deletion on "+n, func() bool { return g.status(n, "GET", "/watched/", nil) == 404 })
	}
	if e := mustCall(t, "GET", g.urls["a"]+"/cmbs/member/relay", nil, 200); e["mixins"] != nil && len(e["mixins"].([]any)) > 0 {
		t.Fatalf("relay still has mixins %v", e["mixins"])
	}

	// A server restarted while categories change has them all, and then
	// follows the others again.
	g.stop("b")
	mustCall(t, "POST", g.urls["a"]+"/-/", []byte(`{"mixins":[{"term":"late","scheme":"http://example.org/ops#","location":"/late/"}]}`), 200)
	g.start("b")
	if code := g.status("b", "GET", "/late/", nil); code != 200 {
		t.Fatalf("restarted b: GET /late/ = %d, want 200", code)
	}
	mustCall(t, "DELETE", g.urls["b"]+"/cmbs/member/relay", nil, 200)
	g.until("the member's deletion on c", func() bool { return len(g.l2Targets("c", &seq)) == 0 })
	mustCall(t, "POST", g.urls["c"]+"/-/", []byte(`{"mixins":[{"term":"later","scheme":"http://example.org/ops#","location":"/later/"}]}`), 200)
	g.until("c's mixin on the restarted b", func() bool { return g.status("b", "GET", "/later/", nil) == 200 })

	// Every server reports how far it follows the feed.
	for _, n := range []string{"a", "b", "c"} {
		rep := mustCall(t, "GET", g.urls[n]+"/-/status", nil, 200)
		if f, _ := rep["feed"].(map[string]any); f == nil || f["seq"] == "" {
			t.Fatalf("%s's status has no feed: %v", n, rep)
		}
	}
	t.Logf("slowest propagation between servers (polled every 10 ms): %v", g.slowest)
}

// Two cmbsd on one CouchDB: a kind registered on one and deleted on the
// other is deleted on both, and one updated (its definition and binding)
// on either is the same on both.
func TestBinarySharedCouchTwoServers(t *testing.T) {
	g := newSharedCouch(t, "a", "b")
	kind := `{"kinds":[{"term":"box","scheme":"http://example.org/ops#","location":"/box/","title":"%s"}]}`
	mustCall(t, "POST", g.urls["a"]+"/-/", []byte(fmt.Sprintf(kind, "one")), 200)
	g.until("the kind on b", func() bool { return g.status("b", "GET", "/box/", nil) == 200 })
	mustCall(t, "PUT", g.urls["b"]+"/-/", []byte(fmt.Sprintf(kind, "two")), 200)
	g.until("b's update on a", func() bool {
		code, body := occiCall(t, "GET", g.urls["a"]+"/-/", nil)
		return code == 200 && bytes.Contains(body, []byte(`"two"`))
	})
	// a holds b's revision now: its own update goes through.
	mustCall(t, "PUT", g.urls["a"]+"/-/", []byte(fmt.Sprintf(kind, "three")), 200)
	g.until("a's update on b", func() bool {
		code, body := occiCall(t, "GET", g.urls["b"]+"/-/", nil)
		return code == 200 && bytes.Contains(body, []byte(`"three"`))
	})
	mustCall(t, "DELETE", g.urls["b"]+"/-/", []byte(`{"kinds":[{"term":"box","scheme":"http://example.org/ops#"}]}`), 200)
	g.until("the kind's deletion on a", func() bool { return g.status("a", "GET", "/box/", nil) == 404 })
	t.Logf("slowest propagation between servers (polled every 10 ms): %v", g.slowest)
}

// cutProxy forwards TCP connections to a target until cut: then it drops
// every connection and refuses new ones until restored, as a network
// partition between one cmbsd and CouchDB would.
type cutProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(u, c)
		go pipe(c, u)
	}
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// A server that loses CouchDB for a while resumes its feed from the last
// change it applied: what another server changed meanwhile is in force
// on it once the connection is back, without a restart.
func TestBinarySharedCouchLostFeed(t *testing.T) {
	couchURL := couchpeer.URLForTest(t)
	u, err := neturl.Parse(couchURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startCutProxy(t, u.Host)
	behind := *u
	behind.Host = proxy.ln.Addr().String()

	g := &sharedCouch{t: t, store: couchURL, db: couchpeer.DBForTest(t, couchURL),
		dirs: map[string]string{}, urls: map[string]string{}, procs: map[string]*process{}}
	g.dirs["a"] = t.TempDir()
	g.start("a")
	g.dirs["b"] = t.TempDir()
	g.procs["b"] = startCmbsd(t, g.dirs["b"], nil, "--listen", "127.0.0.1:0", "--store", behind.String(), "--db", g.db)
	g.urls["b"] = "http://" + g.procs["b"].waitListening(t)

	mixin := `{"mixins":[{"term":"%s","scheme":"http://example.org/ops#","location":"/%s/"}]}`
	mustCall(t, "POST", g.urls["a"]+"/-/", []byte(fmt.Sprintf(mixin, "before", "before")), 200)
	g.until("a's mixin on b", func() bool { return g.status("b", "GET", "/before/", nil) == 200 })

	// feedFailures reads b's status, which answers 503 while b cannot
	// reach its store but still says how its feed fares.
	feedFailures := func() float64 {
		_, body := occiCall(t, "GET", g.urls["b"]+"/-/status", nil)
		var rep struct {
			Feed struct{ Failures float64 } `json:"feed"`
		}
		_ = json.Unmarshal(body, &rep)
		return rep.Feed.Failures
	}
	proxy.cut()
	g.until("b's feed failing", func() bool { return feedFailures() > 0 })
	mustCall(t, "POST", g.urls["a"]+"/-/", []byte(fmt.Sprintf(mixin, "during", "during")), 200)
	mustCall(t, "DELETE", g.urls["a"]+"/-/", []byte(fmt.Sprintf(mixin, "before", "before")), 200)
	proxy.restore()
	g.until("the changes made while b was cut off", func() bool {
		return g.status("b", "GET", "/during/", nil) == 200 && g.status("b", "GET", "/before/", nil) == 404
	})
	if rep := mustCall(t, "GET", g.urls["b"]+"/-/status", nil, 200); rep["status"] != "ok" {
		t.Fatalf("b's status after the connection came back: %v", rep)
	}
}
