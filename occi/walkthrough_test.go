package occi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/store"
)

// client is a small HTTP helper speaking application/occi+json by default.
type client struct {
	t    testing.TB
	base string
	http *http.Client
}

func newClient(t testing.TB, base string) *client {
	return &client{t: t, base: base, http: &http.Client{Timeout: 30 * time.Second}}
}

type reply struct {
	status int
	header http.Header
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

// do sends a request; headers are name/value pairs that replace the JSON defaults.
func (c *client) do(method, path string, body []byte, headers ...string) reply {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/occi+json")
	req.Header.Set("Accept", "application/occi+json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (c *client) expect(method, path string, body []byte, want int, headers ...string) reply {
	c.t.Helper()
	r := c.do(method, path, body, headers...)
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

// registerCMBS registers the CMBS providers pyCMBS's put_provider files bind.
// The walk-throughs use pyCMBS's files as written, so they bind its fixed
// ports (5010, 5020, 5031); the neighbour they name (6010) answers nothing,
// and a short timeout keeps check_neighbors from waiting long for it.
func registerCMBS(reg *providers.Registry, srv *occi.Server) error {
	return cmbs.NewBroker(srv.Entities(), cmbs.Options{RequestTimeout: 500 * time.Millisecond}).Register(reg)
}

// TestReadmeWalkthrough replays section 4 of the pyCMBS README with its
// request bodies exactly as the README prints them.
func TestReadmeWalkthrough(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) { readmeWalkthrough(t, open(t)) })
}

func readmeWalkthrough(t *testing.T, st store.Store) {
	srv := testserver.Start(t, testserver.Options{Store: st, Register: registerCMBS})
	c := newClient(t, srv.URL)

	c.expect("POST", "/-/", fixture(t, "readme/post_category_cmbs_member.json"), 200)
	c.expect("PUT", "/-/", fixture(t, "readme/put_provider_cmbs_member.json"), 200)
	c.expect("POST", "/-/", fixture(t, "readme/post_category_cmbs_message.json"), 200)
	c.expect("PUT", "/-/", fixture(t, "readme/put_provider_cmbs_message.json"), 200)

	r := c.expect("POST", "/cmbs/member/", fixture(t, "readme/post_member.json"), 201)
	loc := srv.URL + "/cmbs/member/996ad860-2a9a-504f-8861-aeafd0b2ae29"
	if got := r.json(t); !reflect.DeepEqual(got, map[string]any{"Location": []any{loc}}) {
		t.Fatalf("create member: body %v", got)
	}
	if r.header.Get("Location") != loc {
		t.Fatalf("Location header %q, want %q", r.header.Get("Location"), loc)
	}

	// The member reads back exactly as posted.
	got := c.expect("GET", "/cmbs/member/996ad860-2a9a-504f-8861-aeafd0b2ae29", nil, 200).json(t)
	var posted map[string]any
	if err := json.Unmarshal(fixture(t, "readme/post_member.json"), &posted); err != nil {
		t.Fatal(err)
	}
	want := posted["resources"].([]any)[0]
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("member read back differs:\n got %v\nwant %v", got, want)
	}

	// The README's action URLs name member 016ad860-…, which it never
	// created (its member is 996ad860-…): a clear 404, not a crash.
	for _, action := range []string{"check_neighbors", "start_l1", "stop_l1", "start_l2", "stop_l2"} {
		r := c.expect("POST", "/cmbs/member/016ad860-2a9a-504f-8861-aeafd0b2ae29?action="+action, []byte("{}"), 404)
		if msg := r.json(t)["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "016ad860") {
			t.Fatalf("404 does not name the entity: %s", msg)
		}
	}

	// Without its #l1 mixin the message's receiver attribute is undefined:
	// the error says which mixin defines it, and nothing is stored.
	noMixin := strings.Replace(string(fixture(t, "readme/post_message_l1.json")), `"http://houssem.org/cmbs#l1"`, "", 1)
	r = c.expect("POST", "/cmbs/message/", []byte(noMixin), 400)
	e := r.json(t)["error"].(map[string]any)
	if msg, _ := e["message"].(string); e["attribute"] != "cmbs.message.l1_socket_receiver_member" ||
		!strings.Contains(msg, "mixin http://houssem.org/cmbs#l1 defines it") {
		t.Fatalf("undefined attribute error does not point at the #l1 mixin: %v", e)
	}
	c.expect("GET", "/cmbs/message/0101d860-2a9a-504f-8861-aeafd0b20101", nil, 404)

	c.expect("POST", "/cmbs/message/", fixture(t, "readme/post_message_l1.json"), 201)
	msg := c.expect("GET", "/cmbs/message/0101d860-2a9a-504f-8861-aeafd0b20101", nil, 200).json(t)
	attrs := msg["attributes"].(map[string]any)["cmbs"].(map[string]any)["message"].(map[string]any)
	if attrs["l1_socket_receiver_member"] != "tcp://127.0.0.1:5010" || attrs["executable"] != "True" {
		t.Fatalf("message attributes: %v", attrs)
	}
	// The member's L1 socket is the message's receiver (tcp://127.0.0.1:5010):
	// start it, and send_l1 (declared by the l1 mixin) gets the member's reply,
	// which is also written to the message's result.
	started := c.expect("POST", "/cmbs/member/996ad860-2a9a-504f-8861-aeafd0b2ae29?action=start_l1", []byte("{}"), 200).json(t)
	if started["running"] != true || started["socket"] != "tcp://127.0.0.1:5010" {
		t.Fatalf("start_l1: %v", started)
	}
	reply := c.expect("POST", "/cmbs/message/0101d860-2a9a-504f-8861-aeafd0b20101?action=send_l1", []byte("{}"), 200).json(t)
	if d, _ := reply["member_description"].(map[string]any); d == nil || d["id"] != "996ad860-2a9a-504f-8861-aeafd0b2ae29" {
		t.Fatalf("send_l1 reply: %v", reply)
	}
	msg = c.expect("GET", "/cmbs/message/0101d860-2a9a-504f-8861-aeafd0b20101", nil, 200).json(t)
	result, _ := msg["attributes"].(map[string]any)["cmbs"].(map[string]any)["message"].(map[string]any)["result"].(map[string]any)
	if result["member_description"] == nil {
		t.Fatalf("send_l1 did not write the reply to result: %v", msg["attributes"])
	}
	// stop_l1 is not declared by the README's member kind.
	c.expect("POST", "/cmbs/member/996ad860-2a9a-504f-8861-aeafd0b2ae29?action=stop_l1", []byte("{}"), 400)
}

// TestOriginalFilesWalkthrough replays pyCMBS's run_test.sh with the original
// request files (l31_socket spelling, a required local attribute, stop_*
// actions, l2/l31/l32/l4 messages).
func TestOriginalFilesWalkthrough(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) { originalFilesWalkthrough(t, open(t)) })
}

func originalFilesWalkthrough(t *testing.T, st store.Store) {
	srv := testserver.Start(t, testserver.Options{Store: st, Register: registerCMBS})
	c := newClient(t, srv.URL)
	c.expect("POST", "/-/", fixture(t, "pycmbs/post_category_cmbs_member.json"), 200)
	c.expect("PUT", "/-/", fixture(t, "pycmbs/put_provider_cmbs_member.json"), 200)
	c.expect("POST", "/-/", fixture(t, "pycmbs/post_category_cmbs_message.json"), 200)
	c.expect("PUT", "/-/", fixture(t, "pycmbs/put_provider_cmbs_message.json"), 200)
	c.expect("POST", "/cmbs/member/", fixture(t, "pycmbs/post_member.json"), 201)
	for _, f := range []string{"post_message_l1.json", "post_message_l2.json", "post_message_l31.json", "post_message_l32.json", "post_message_l4.json"} {
		c.expect("POST", "/cmbs/message/", fixture(t, "pycmbs/"+f), 201)
	}
	list := c.expect("GET", "/cmbs/message/", nil, 200).json(t)["X-OCCI-Location"].([]any)
	if len(list) != 5 {
		t.Fatalf("messages listed: %v", list)
	}
	l2 := c.expect("GET", "/cmbs/message/l2/", nil, 200).json(t)["X-OCCI-Location"].([]any)
	if len(l2) != 1 || !strings.HasSuffix(l2[0].(string), "/cmbs/message/0102d860-2a9a-504f-8861-aeafd0a10201") {
		t.Fatalf("l2 mixin collection: %v", l2)
	}
	// The member's neighbour, tcp://127.0.0.1:6010, is not running: discovery
	// says so instead of hanging.
	const member = "/cmbs/member/016ad860-2a9a-504f-8861-aeafd0b2ae29"
	disc := c.expect("POST", member+"?action=check_neighbors", fixture(t, "pycmbs/action_check_neighbors_member.json"), 200).json(t)
	if failed, _ := disc["failed"].([]any); len(failed) != 1 || failed[0].(map[string]any)["socket"] != "tcp://127.0.0.1:6010" {
		t.Fatalf("check_neighbors with a dead neighbour: %v", disc)
	}
	for _, step := range []struct {
		action  string
		running bool
	}{{"start_l1", true}, {"start_l2", true}, {"start_l31", true}, {"stop_l1", false}} {
		got := c.expect("POST", member+"?action="+step.action, fixture(t, "pycmbs/action_"+step.action+"_member.json"), 200).json(t)
		if got["running"] != step.running {
			t.Fatalf("%s: %v", step.action, got)
		}
	}
	// post_message_l2.json gives no result: it stays absent rather than
	// pyOCNI's "None".
	m := c.expect("GET", "/cmbs/message/0102d860-2a9a-504f-8861-aeafd0a10201", nil, 200).json(t)
	if _, has := m["attributes"].(map[string]any)["cmbs"].(map[string]any)["message"].(map[string]any)["result"]; has {
		t.Fatalf("absent result got a value: %v", m["attributes"])
	}
}
