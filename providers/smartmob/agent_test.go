package smartmob_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cmbs/cmbs/providers/smartmob"
)

const startedProcfile = "web: sh -c 'echo started; sleep 60'\n"

// SA-1: the index links create and list, absolute on the request's host.
func TestAgentIndexSA1(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	r := expect(t, n.do("GET", n.agent()+"/", ""), http.StatusOK)
	m := r.json(t)
	if len(m) != 2 {
		t.Fatalf("index %v: want exactly create and list", m)
	}
	if m["create"] != n.agent()+"/create-process" || m["list"] != n.agent()+"/list-processes" {
		t.Fatalf("index %v", m)
	}
	// Another Host header gives links on that host.
	r = expect(t, n.do("GET", n.agent()+"/", "", "Host", "agent.example:8080"), http.StatusOK)
	if m := r.json(t); m["create"] != "http://agent.example:8080/smartmob-agent/create-process" || m["list"] != "http://agent.example:8080/smartmob-agent/list-processes" {
		t.Fatalf("index on another host: %v", m)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
}

// SA-2, SA-3, SA-4, SA-13 (and the OCCI delete of SA-20): the listing
// starts empty; create answers 201 with Location == details, the
// original's shape, state pending; the listing holds the same document; a
// second create of the slug is 409; delete answers 200 {} and leaves no
// process; the slug can be created again.
func TestAgentCreateListDeleteSA2to4SA13(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	f := newFiles(t)
	zipURL := f.serve("/app.zip", "application/zip", procfileApp(t, startedProcfile))

	r := expect(t, n.do("GET", n.agent()+"/list-processes", ""), http.StatusOK)
	if r.body != `{"processes":[]}`+"\n" {
		t.Fatalf("fresh listing %q", r.body)
	}

	body := map[string]any{"app": "foo", "node": "web.0", "source_url": zipURL, "process_type": "web"}
	r = expect(t, n.create(body), http.StatusCreated)
	doc := r.json(t)
	want := map[string]any{
		"app": "foo", "slug": "foo.web.0", "state": "pending",
		"attach":  wsURL(n.agent()) + "/attach-console/foo.web.0",
		"details": n.agent() + "/process-status/foo.web.0",
		"delete":  n.agent() + "/delete-process/foo.web.0",
	}
	if !reflect.DeepEqual(doc, want) {
		t.Fatalf("create answered %v, want %v", doc, want)
	}
	if loc := r.header.Get("Location"); loc != doc["details"] {
		t.Fatalf("Location %q, details %v", loc, doc["details"])
	}

	list := expect(t, n.do("GET", n.agent()+"/list-processes", ""), http.StatusOK).json(t)["processes"].([]any)
	if len(list) != 1 {
		t.Fatalf("listing %v", list)
	}
	got := list[0].(map[string]any)
	delete(got, "state")
	delete(want, "state")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}

	// SA-4
	expect(t, n.create(body), http.StatusConflict)

	a := n.waitState("foo.web.0", "running", 5*time.Second)
	pid := int(a["pid"].(float64))
	status := expect(t, n.do("GET", n.agent()+"/process-status/foo.web.0", ""), http.StatusOK).json(t)
	if status["slug"] != "foo.web.0" || status["state"] != "running" {
		t.Fatalf("status %v", status)
	}

	// SA-13
	r = expect(t, n.do("POST", n.agent()+"/delete-process/foo.web.0", "{}", "Content-Type", "application/json"), http.StatusOK)
	if strings.TrimSpace(r.body) != "{}" {
		t.Fatalf("delete answered %q", r.body)
	}
	if !groupGone(pid) {
		t.Fatalf("process group %d survived the delete", pid)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("pid %d still exists", pid)
	}
	r = expect(t, n.do("GET", n.agent()+"/list-processes", ""), http.StatusOK)
	if r.body != `{"processes":[]}`+"\n" {
		t.Fatalf("listing after delete %q", r.body)
	}
	expect(t, n.do("GET", n.agent()+"/process-status/foo.web.0", ""), http.StatusNotFound)
	expect(t, n.create(body), http.StatusCreated)
	n.waitState("foo.web.0", "running", 5*time.Second)
}

// SA-5: every required field, a non-string env value, and a body that is
// not JSON give 400.
func TestAgentCreateBadRequestsSA5(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	full := map[string]any{"app": "foo", "node": "web.0", "source_url": "http://127.0.0.1:1/x.zip", "process_type": "web"}
	for _, drop := range []string{"app", "node", "source_url", "process_type"} {
		b := map[string]any{}
		for k, v := range full {
			if k != drop {
				b[k] = v
			}
		}
		r := n.create(b)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, drop) {
			t.Errorf("without %s: %d %s", drop, r.status, r.body)
		}
	}
	b := map[string]any{"env": map[string]any{"A": 1}}
	for k, v := range full {
		b[k] = v
	}
	if r := n.create(b); r.status != http.StatusBadRequest || !strings.Contains(r.body, "env") {
		t.Errorf("env {A:1}: %d %s", r.status, r.body)
	}
	for _, body := range []string{"not json", "", "[1,2]", `{"app":`} {
		if r := n.do("POST", n.agent()+"/create-process", body, "Content-Type", "application/json"); r.status != http.StatusBadRequest {
			t.Errorf("body %q: %d %s", body, r.status, r.body)
		}
	}
	r := expect(t, n.do("GET", n.agent()+"/list-processes", ""), http.StatusOK)
	if r.body != `{"processes":[]}`+"\n" {
		t.Fatalf("refused creates left %q", r.body)
	}
}

// SA-6: an unknown slug is 404 on status, delete, and the WebSocket
// handshake.
func TestAgentUnknownSlugSA6(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	expect(t, n.do("GET", n.agent()+"/process-status/unknown", ""), http.StatusNotFound)
	expect(t, n.do("POST", n.agent()+"/delete-process/unknown", "{}"), http.StatusNotFound)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(n.agent())+"/attach-console/unknown", nil)
	if err == nil {
		c.CloseNow()
		t.Fatal("the handshake succeeded for an unknown slug")
	}
	if resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("handshake answer %v (%v), want 404", resp, err)
	}
}

// SA-7, SA-8, SA-9, SA-19: provisioning failures end in their states.
func TestAgentProvisioningFailuresSA7to9SA19(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	f := newFiles(t)
	outside := filepath.Join(filepath.Dir(n.runDir), "evil.txt")
	cases := []struct {
		node, url, ptype, state string
	}{
		{"missing", f.srv.URL + "/nothing.zip", "web", "download failure"},
		{"text", f.serve("/text.zip", "text/plain", procfileApp(t, startedProcfile)), "web", "download failure"},
		{"noprocfile", f.serve("/noproc.zip", "application/zip", zipOf(t, map[string]string{"requirements.txt": "x\n"})), "web", "no procfile"},
		{"badtype", f.serve("/web.zip", "application/zip", procfileApp(t, startedProcfile)), "invalid", "unknown process type"},
		{"zipslip", f.serve("/slip.zip", "application/zip", zipOf(t, map[string]string{"Procfile": startedProcfile, "../evil.txt": "x", "../../evil.txt": "x"})), "web", "unpack failure"},
		{"symlink", f.serve("/link.tar", "application/x-gtar", tarOf(t, false,
			tarEntry{name: "Procfile", body: startedProcfile},
			tarEntry{name: "passwd", typ: '2', link: "/etc/passwd"},
			tarEntry{name: "passwd", body: "overwritten"})), "web", "unpack failure"},
		{"symlinkdir", f.serve("/linkdir.tar", "application/x-gtar", tarOf(t, false,
			tarEntry{name: "Procfile", body: startedProcfile},
			tarEntry{name: "up", typ: '2', link: ".."},
			tarEntry{name: "up/evil.txt", body: "x"})), "web", "unpack failure"},
	}
	for _, c := range cases {
		expect(t, n.create(map[string]any{"app": "bad", "node": c.node, "source_url": c.url, "process_type": c.ptype}), http.StatusCreated)
	}
	for _, c := range cases {
		n.waitState("bad."+c.node, c.state, 5*time.Second)
		status := expect(t, n.do("GET", n.agent()+"/process-status/bad."+c.node, ""), http.StatusOK).json(t)
		if status["state"] != c.state {
			t.Errorf("%s: agent state %v", c.node, status["state"])
		}
	}
	// The console of a process that never ran closes normally at once.
	c := dial(t, wsURL(n.agent())+"/attach-console/bad.missing")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := c.conn.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("console of a failed process: %v", err)
	}
	if b, err := os.ReadFile("/etc/passwd"); err != nil || strings.Contains(string(b), "overwritten") {
		t.Fatalf("/etc/passwd: %v", err)
	}
	for _, p := range []string{outside, filepath.Join(filepath.Dir(filepath.Dir(n.runDir)), "evil.txt"), filepath.Join(n.runDir, "smartmob", "evil.txt")} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s was written outside the source tree", p)
		}
	}
}

// SA-10, SA-11, SA-15, SA-16: a zip and a gzip'ed tar run, the console
// shows their output; the cwd is the source root; the request id is
// echoed and passed to the download.
func TestAgentRunsZipAndTarSA10SA11SA15SA16(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	f := newFiles(t)
	zipURL := f.serve("/app.zip", "application/zip", procfileApp(t, startedProcfile))
	tarURL := f.serve("/app.tar", "application/x-gtar", tarOf(t, false, tarEntry{name: "Procfile", body: startedProcfile}))
	tgzURL := f.serve("/app.tgz", "application/x-gtar", tarOf(t, true, tarEntry{name: "app/Procfile", body: "web: sh -c 'cat data.txt; echo; sleep 60'\n"}, tarEntry{name: "app/data.txt", body: "payload-123"}))

	// SA-16: the request id.
	r := expect(t, n.create(map[string]any{"app": "foo", "node": "web.0", "source_url": zipURL, "process_type": "web"}, "X-Request-Id", "abc-1"), http.StatusCreated)
	if got := r.header.Get("X-Request-Id"); got != "abc-1" {
		t.Errorf("X-Request-Id %q, want abc-1", got)
	}
	doc := r.json(t)
	// SA-10: attach before it runs; the frame "started" arrives.
	c := dial(t, doc["attach"].(string))
	c.until("started", 5*time.Second)
	a := n.waitState("foo.web.0", "running", 5*time.Second)
	if err := syscall.Kill(int(a["pid"].(float64)), 0); err != nil {
		t.Fatalf("pid %v is not alive: %v", a["pid"], err)
	}
	if ids := f.requestIDs("/app.zip"); len(ids) != 1 || ids[0] != "abc-1" {
		t.Errorf("the archive GET carried X-Request-Id %q", ids)
	}
	// SA-11 (tar as application/x-gtar) and SA-16 without a request id.
	r = expect(t, n.create(map[string]any{"app": "foo", "node": "tar", "source_url": tarURL, "process_type": "web"}), http.StatusCreated)
	gen := r.header.Get("X-Request-Id")
	if gen == "" {
		t.Error("no generated X-Request-Id")
	}
	n.waitState("foo.tar", "running", 5*time.Second)
	// Attached after start: the replay has the line.
	dial(t, r.json(t)["attach"].(string)).until("started", 5*time.Second)
	if ids := f.requestIDs("/app.tar"); len(ids) != 1 || ids[0] != gen {
		t.Errorf("the archive GET carried %q, the answer %q", ids, gen)
	}
	// SA-15 in a gzip'ed tar with one top-level folder.
	r = expect(t, n.create(map[string]any{"app": "foo", "node": "cwd", "source_url": tgzURL, "process_type": "web"}), http.StatusCreated)
	dial(t, r.json(t)["attach"].(string)).until("payload-123", 5*time.Second)
	n.waitState("foo.cwd", "running", 5*time.Second)
}

// SA-14: environment precedence base < .env < Procfile < request, in
// both Procfile spellings.
func TestAgentEnvironmentSA14(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	f := newFiles(t)
	dotenv := "BAR=fromenvfile\nFOO=a\n"
	bare := f.serve("/bare.zip", "application/zip", procfileApp(t, `web: FOO=b sh -c 'echo "$FOO $BAR $ONLYREQ"; sleep 60'`+"\n", ".env", dotenv))
	envForm := f.serve("/env.zip", "application/zip", procfileApp(t, `web: env FOO=b sh -c 'echo "$FOO $BAR $ONLYREQ"; sleep 60'`+"\n", ".env", dotenv))
	for i, u := range []string{bare, envForm} {
		node := []string{"bare", "env"}[i]
		r := expect(t, n.create(map[string]any{"app": "envs", "node": node, "source_url": u, "process_type": "web",
			"env": map[string]any{"FOO": "c", "ONLYREQ": "r"}}), http.StatusCreated)
		dial(t, r.json(t)["attach"].(string)).until("c fromenvfile r", 5*time.Second)
		n.waitState("envs."+node, "running", 5*time.Second)
	}
}

// SA-12: a crashing process is restarted with a backoff: 3 to 20 ticks in
// 5 s, restarts increasing, state running or restarting, exit lines.
func TestAgentRestartBackoffSA12(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	f := newFiles(t)
	u := f.serve("/crash.zip", "application/zip", procfileApp(t, "worker: sh -c 'echo tick; exit 1'\n"))
	r := expect(t, n.create(map[string]any{"app": "crash", "node": "w", "source_url": u, "process_type": "worker"}), http.StatusCreated)
	c := dial(t, r.json(t)["attach"].(string))
	c.until("tick", 5*time.Second)
	lines := append([]string{"tick"}, c.read(5*time.Second)...)
	ticks, exits := 0, 0
	for _, l := range lines {
		switch l {
		case "tick":
			ticks++
		case "[supervisor] exited status=1":
			exits++
		}
	}
	if ticks < 3 || ticks > 20 {
		t.Errorf("%d ticks in 5 s, want 3..20 (a backoff): %q", ticks, lines)
	}
	if exits < 2 {
		t.Errorf("%d '[supervisor] exited status=1' lines: %q", exits, lines)
	}
	prev := -1.0
	for i := 0; i < 5; i++ {
		_, a := n.occiProcess("crash.w")
		if a["state"] != "running" && a["state"] != "restarting" {
			t.Errorf("state %v", a["state"])
		}
		rs := a["restarts"].(float64)
		if rs < prev {
			t.Errorf("restarts went from %v to %v", prev, rs)
		}
		prev = rs
		time.Sleep(200 * time.Millisecond)
	}
	if prev < 2 {
		t.Errorf("restarts %v after 5 s of crashes", prev)
	}
}

// SA-22: two clients get every line in order; a third that never reads
// does not delay them.
func TestAgentConsoleFanOutSA22(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	f := newFiles(t)
	u := f.serve("/five.zip", "application/zip", procfileApp(t, "web: sh -c 'for i in 1 2 3 4 5; do echo $i; done; sleep 60'\n"))
	r := expect(t, n.create(map[string]any{"app": "five", "node": "w", "source_url": u, "process_type": "web"}), http.StatusCreated)
	attach := r.json(t)["attach"].(string)
	slow := dial(t, attach) // never reads
	_ = slow
	a, b := dial(t, attach), dial(t, attach)
	for _, c := range []*consoleClient{a, b} {
		lines := c.until("5", 2*time.Second+5*time.Second) // provisioning included
		var got []string
		for _, l := range lines {
			if !strings.HasPrefix(l, "[supervisor] ") {
				got = append(got, l)
			}
		}
		if strings.Join(got, ",") != "1,2,3,4,5" {
			t.Errorf("lines %q", lines)
		}
	}
	n.waitState("five.w", "running", 5*time.Second)
	// With the process running, new clients get the replay within 2 s
	// while the non-reading one stays attached.
	for i := 0; i < 2; i++ {
		c := dial(t, attach)
		lines := c.until("5", 2*time.Second)
		if len(lines) < 5 {
			t.Errorf("replay %q", lines)
		}
	}
}

// SA-23: a final line without a newline comes before the exit line.
func TestAgentFinalLineSA23(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	f := newFiles(t)
	u := f.serve("/partial.zip", "application/zip", procfileApp(t, "web: sh -c 'printf partial; exit 0'\n"))
	r := expect(t, n.create(map[string]any{"app": "partial", "node": "w", "source_url": u, "process_type": "web"}), http.StatusCreated)
	lines := dial(t, r.json(t)["attach"].(string)).until("[supervisor] exited status=0", 5*time.Second)
	if len(lines) < 2 || lines[len(lines)-2] != "partial" {
		t.Fatalf("lines %q: want partial right before the exit line", lines)
	}
}

// The original client only follows links: from the index to create, from
// the created status to its details, console and delete, and to the list.
func TestAgentFollowsLinks(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	f := newFiles(t)
	u := f.serve("/app.zip", "application/zip", procfileApp(t, startedProcfile))
	index := expect(t, n.do("GET", n.agent()+"/", ""), http.StatusOK).json(t)
	created := expect(t, n.do("POST", index["create"].(string), `{"app":"links","node":"w","source_url":"`+u+`","process_type":"web"}`), http.StatusCreated).json(t)
	details := expect(t, n.do("GET", created["details"].(string), ""), http.StatusOK).json(t)
	if details["slug"] != "links.w" || details["details"] != created["details"] {
		t.Fatalf("details %v", details)
	}
	dial(t, created["attach"].(string)).until("started", 5*time.Second)
	list := expect(t, n.do("GET", index["list"].(string), ""), http.StatusOK).json(t)["processes"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["slug"] != "links.w" {
		t.Fatalf("list %v", list)
	}
	expect(t, n.do("POST", created["delete"].(string), "{}"), http.StatusOK)
	expect(t, n.do("GET", created["details"].(string), ""), http.StatusNotFound)
	// Wrong methods are 405 with Allow; unknown routes 404.
	for _, c := range []struct{ method, path, allow string }{
		{"POST", "/", "GET"}, {"GET", "/create-process", "POST"}, {"POST", "/list-processes", "GET"},
		{"DELETE", "/process-status/links.w", "GET"}, {"GET", "/delete-process/links.w", "POST"},
	} {
		r := n.do(c.method, n.agent()+c.path, "")
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d, Allow %q", c.method, c.path, r.status, r.header.Get("Allow"))
		}
	}
	expect(t, n.do("GET", n.agent()+"/nothing-here", ""), http.StatusNotFound)
}

// With a public URL, the links are built on it rather than on the Host.
func TestAgentPublicURL(t *testing.T) {
	a := smartmob.NewAgent(nil, smartmob.AgentOptions{PublicURL: "https://apps.example/base/"})
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:9/smartmob-agent/", nil))
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if m["create"] != "https://apps.example/base/smartmob-agent/create-process" || m["list"] != "https://apps.example/base/smartmob-agent/list-processes" {
		t.Fatalf("index %v", m)
	}
	if rec.Header().Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
}
