package cmbs_test

import (
	"github.com/cmbs/cmbs/internal/loopback"
	"github.com/cmbs/cmbs/internal/pyzmqtest"

	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/store"
)

func TestMain(m *testing.M) {
	// Every test stops its servers and brokers: no goroutine may remain.
	goleak.VerifyTestMain(m)
}

// testOptions keeps dead peers cheap in tests.
func testOptions() cmbs.Options {
	return cmbs.Options{RequestTimeout: time.Second, DiscoveryTimeout: 15 * time.Second}
}

// client is a small HTTP helper speaking application/occi+json.
type client struct {
	t    testing.TB
	base string
	http *http.Client
}

func newClient(t testing.TB, base string) *client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, base: base, http: &http.Client{Timeout: 60 * time.Second, Transport: tr}}
}

type reply struct {
	status int
	body   []byte
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("reply body is not a JSON object (%v): %q", err, r.body)
	}
	return m
}

// errorMessage returns the message of a JSON error reply.
func (r reply) errorMessage(t testing.TB) string {
	t.Helper()
	e, ok := r.json(t)["error"].(map[string]any)
	if !ok {
		t.Fatalf("not an error reply: %s", r.body)
	}
	return fmt.Sprint(e["message"])
}

func (c *client) do(method, path string, body any) reply {
	c.t.Helper()
	r, err := c.try(method, path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// try is do for goroutines other than the test's: it reports what went
// wrong instead of ending the test.
func (c *client) try(method, path string, body any) (reply, error) {
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			return reply{}, err
		}
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = c.base + path
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(raw))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Content-Type", "application/occi+json")
	req.Header.Set("Accept", "application/occi+json")
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: reading the reply: %w", method, path, err)
	}
	return reply{status: resp.StatusCode, body: b}, nil
}

func (c *client) expect(method, path string, body any, want int) reply {
	c.t.Helper()
	r := c.do(method, path, body)
	if r.status != want {
		c.t.Fatalf("%s %s: status %d, want %d; body: %s", method, path, r.status, want, r.body)
	}
	return r
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// node is one cmbsd server: an OCCI server on 127.0.0.1 with its own
// store and a real broker.
type node struct {
	t      testing.TB
	name   string
	srv    *testserver.Server
	broker *cmbs.Broker
	c      *client
}

// startNode starts a server with the CMBS kinds of the fixture set
// ("pycmbs" or "readme") registered and bound to the broker.
func startNode(t testing.TB, name, fixtures string, opts cmbs.Options) *node {
	t.Helper()
	return startNodeOn(t, name, fixtures, opts, nil)
}

// startNodeOn is startNode on a given store (nil: a fresh one), which the
// node closes when t ends.
func startNodeOn(t testing.TB, name, fixtures string, opts cmbs.Options, st store.Store) *node {
	t.Helper()
	n := &node{t: t, name: name}
	n.srv = testserver.Start(t, testserver.Options{Store: st, Register: func(reg *providers.Registry, srv *occi.Server) error {
		n.broker = cmbs.NewBroker(srv.Entities(), opts)
		return n.broker.Register(reg)
	}})
	n.c = newClient(t, n.srv.URL)
	if fixtures != "" {
		n.c.expect("POST", "/-/", fixture(t, fixtures+"/post_category_cmbs_member.json"), 200)
		n.c.expect("PUT", "/-/", fixture(t, fixtures+"/put_provider_cmbs_member.json"), 200)
		n.c.expect("POST", "/-/", fixture(t, fixtures+"/post_category_cmbs_message.json"), 200)
		n.c.expect("PUT", "/-/", fixture(t, fixtures+"/put_provider_cmbs_message.json"), 200)
	}
	return n
}

// freeSocket returns a loopback endpoint nobody listens on (yet).
func freeSocket(t testing.TB) string { return loopback.FreeEndpoint(t) }

// member describes a member to create: attributes under cmbs.member.
type member map[string]any

// withSockets gives the member a free socket for every layer (pyCMBS
// spelling).
func withSockets(t testing.TB, m member) member {
	for _, name := range []string{"l1_socket", "l2_socket", "l31_socket", "l32_socket", "l4_socket"} {
		if _, ok := m[name]; !ok {
			m[name] = freeSocket(t)
		}
	}
	return m
}

// createMember creates a member with that id and returns its path.
func (n *node) createMember(id string, attrs member) string {
	n.t.Helper()
	desc := map[string]any{
		"kind":       "http://houssem.org/cmbs#member",
		"mixins":     []any{},
		"attributes": map[string]any{"cmbs": map[string]any{"member": map[string]any(attrs)}},
		"id":         id,
		"title":      "member " + id,
	}
	n.c.expect("POST", "/cmbs/member/", map[string]any{"resources": []any{desc}}, 201)
	return "/cmbs/member/" + id
}

// action runs an action and returns the reply.
func (n *node) action(loc, term string, attrs map[string]any) reply {
	n.t.Helper()
	body := map[string]any{}
	if attrs != nil {
		body["attributes"] = attrs
	}
	return n.c.do("POST", loc+"?action="+term, body)
}

// startLayer starts a layer; when its port was taken meanwhile, it moves
// the layer to another free port and tries again. It returns the socket.
func (n *node) startLayer(loc string, layer string) string {
	n.t.Helper()
	attr := strings.ReplaceAll(layer, ".", "") + "_socket"
	for attempt := 0; ; attempt++ {
		r := n.action(loc, "start_"+layer, nil)
		if r.status == 200 {
			return fmt.Sprint(r.json(n.t)["socket"])
		}
		if r.status != 409 || !strings.Contains(string(r.body), "in use") || attempt == 5 {
			n.t.Fatalf("%s start_%s on %s: %d %s", n.name, layer, loc, r.status, r.body)
		}
		n.updateMember(loc, member{attr: freeSocket(n.t)})
	}
}

// updateMember changes a member's attributes (a partial update).
func (n *node) updateMember(loc string, attrs member) reply {
	n.t.Helper()
	desc := map[string]any{"attributes": map[string]any{"cmbs": map[string]any{"member": map[string]any(attrs)}}}
	r := n.c.do("POST", loc, map[string]any{"resources": []any{desc}})
	if r.status != 200 && r.status != 201 {
		n.t.Fatalf("update %s: %d %s", loc, r.status, r.body)
	}
	return r
}

// get returns the entity at a path.
func (n *node) get(loc string) map[string]any {
	n.t.Helper()
	return n.c.expect("GET", loc, nil, 200).json(n.t)
}

// attrs returns the entity's attributes under cmbs.<ns>.
func attrsOf(e map[string]any, ns string) map[string]any {
	a, _ := e["attributes"].(map[string]any)
	c, _ := a["cmbs"].(map[string]any)
	m, _ := c[ns].(map[string]any)
	return m
}

// list returns every entity of a collection.
func (n *node) list(coll string) []map[string]any {
	n.t.Helper()
	locs, _ := n.c.expect("GET", coll, nil, 200).json(n.t)["X-OCCI-Location"].([]any)
	var out []map[string]any
	for _, l := range locs {
		out = append(out, n.get(l.(string)))
	}
	return out
}

// members returns the members by their L1 socket.
func (n *node) members() map[string]map[string]any {
	n.t.Helper()
	out := map[string]map[string]any{}
	for _, m := range n.list("/cmbs/member/") {
		out[fmt.Sprint(attrsOf(m, "member")["l1_socket"])] = m
	}
	return out
}

// createMessage creates a message with the layer's mixin and returns its path.
func (n *node) createMessage(id, layer string, attrs map[string]any) string {
	n.t.Helper()
	a := map[string]any{"cmbs_layer": layer, "path_history": []any{}, "message_content": map[string]any{"text": "hello " + layer}}
	for k, v := range attrs {
		a[k] = v
	}
	desc := map[string]any{
		"kind":       "http://houssem.org/cmbs#message",
		"mixins":     []any{"http://houssem.org/cmbs#" + layer},
		"attributes": map[string]any{"cmbs": map[string]any{"message": a}},
		"id":         id,
		"title":      layer + " CMBS message",
	}
	n.c.expect("POST", "/cmbs/message/", map[string]any{"resources": []any{desc}}, 201)
	return "/cmbs/message/" + id
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pyREQ sends frames once from a pyzmq REQ socket and returns the reply
// frames.
func pyREQ(t *testing.T, py, endpoint string, frames ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return pyzmqtest.REQ(t, ctx, py, endpoint, 1, frames...)
}
