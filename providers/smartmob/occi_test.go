package smartmob_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cmbs/cmbs/store"
)

// occiCreate creates a process through the OCCI interface and returns its
// location.
func (n *node) occiCreate(t *testing.T, attrs map[string]any) reply {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"resources": []any{map[string]any{
		"kind": "http://cmbs.dev/occi/smartmob#process", "attributes": map[string]any{"smartmob": map[string]any{"process": attrs}}}}})
	return n.do("POST", "/smartmob/process/", string(b), "Content-Type", "application/occi+json", "Accept", "application/occi+json")
}

func (n *node) action(t *testing.T, loc, term string) map[string]any {
	t.Helper()
	r := expect(t, n.do("POST", loc+"?action="+term, `{}`, "Content-Type", "application/occi+json", "Accept", "application/occi+json"), http.StatusOK)
	m := r.json(t)
	if pid, ok := m["pid"].(float64); ok {
		n.saw(int(pid))
	}
	return m
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// SA-20: the OCCI view of a running process; stop, start and restart;
// OCCI DELETE is the compatibility delete.
func TestOCCIViewAndActionsSA20(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	f := newFiles(t)
	u := f.serve("/app.zip", "application/zip", procfileApp(t, startedProcfile))
	expect(t, n.create(map[string]any{"app": "foo", "node": "web.0", "source_url": u, "process_type": "web"}), http.StatusCreated)
	a := n.waitState("foo.web.0", "running", 5*time.Second)

	r := expect(t, n.do("GET", "/smartmob/process/", "", "Accept", "application/occi+json"), http.StatusOK)
	locs, _ := r.json(t)["X-OCCI-Location"].([]any)
	if len(locs) != 1 {
		t.Fatalf("collection %s", r.body)
	}
	loc := n.prov.Lookup("foo.web.0")
	if !strings.HasSuffix(locs[0].(string), loc) {
		t.Fatalf("listed %v, want %s", locs, loc)
	}
	if a["slug"] != "foo.web.0" || a["state"] != "running" || a["desired"] != "running" || a["app"] != "foo" || a["node"] != "web.0" {
		t.Fatalf("attributes %v", a)
	}
	if _, err := time.Parse(time.RFC3339Nano, a["started_at"].(string)); err != nil {
		t.Fatalf("started_at %v", a["started_at"])
	}
	pid1 := int(a["pid"].(float64))

	st := n.action(t, loc, "stop")
	if st["state"] != "stopped" || st["desired"] != "stopped" {
		t.Fatalf("stop answered %v", st)
	}
	if !groupGone(pid1) || alive(pid1) {
		t.Fatalf("pid %d survived stop", pid1)
	}
	if a := n.waitState("foo.web.0", "stopped", 5*time.Second); a["pid"].(float64) != 0 || a["desired"] != "stopped" {
		t.Fatalf("after stop %v", a)
	}

	n.action(t, loc, "start")
	a = n.waitState("foo.web.0", "running", 5*time.Second)
	pid2 := int(a["pid"].(float64))
	if pid2 == pid1 || !alive(pid2) || a["desired"] != "running" {
		t.Fatalf("start: pid %d (was %d), %v", pid2, pid1, a)
	}
	restarts := a["restarts"].(float64)

	st = n.action(t, loc, "restart")
	pid3 := int(st["pid"].(float64))
	if pid3 == pid2 || pid3 == 0 || st["restarts"].(float64) != restarts+1 {
		t.Fatalf("restart answered %v (pid was %d, restarts %v)", st, pid2, restarts)
	}
	if !groupGone(pid2) {
		t.Fatalf("the old group %d survived restart", pid2)
	}
	a = n.waitState("foo.web.0", "running", 5*time.Second)
	if int(a["pid"].(float64)) != pid3 || a["restarts"].(float64) != restarts+1 {
		t.Fatalf("after restart %v", a)
	}

	expect(t, n.do("DELETE", loc, ""), http.StatusOK)
	if !groupGone(pid3) || alive(pid3) {
		t.Fatalf("pid %d survived DELETE", pid3)
	}
	expect(t, n.do("GET", n.agent()+"/process-status/foo.web.0", ""), http.StatusNotFound)
	expect(t, n.do("GET", loc, ""), http.StatusNotFound)
}

// The server writes the read-only attributes: a client giving them on
// create, or changing them (or app and node) on update, gets 400 naming
// them; a duplicate slug over OCCI is 409.
func TestOCCIReadOnlyAttributes(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	f := newFiles(t)
	u := f.serve("/app.zip", "application/zip", procfileApp(t, startedProcfile))
	base := map[string]any{"app": "ro", "node": "w", "source_url": u, "process_type": "web"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range base {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, k := range []string{"slug", "state", "pid", "restarts", "last_exit_code", "started_at", "desired"} {
		var v any = "x"
		if k == "pid" || k == "restarts" || k == "last_exit_code" {
			v = 1.0
		}
		r := n.occiCreate(t, with(k, v))
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "smartmob.process."+k) {
			t.Errorf("create with %s: %d %s", k, r.status, r.body)
		}
	}
	if r := n.occiCreate(t, with("env", map[string]any{"A": 1.0})); r.status != http.StatusBadRequest || !strings.Contains(r.body, "env") {
		t.Errorf("env {A:1}: %d %s", r.status, r.body)
	}
	r := expect(t, n.occiCreate(t, base), http.StatusCreated)
	loc := n.prov.Lookup("ro.w")
	if loc == "" || !strings.Contains(r.body, loc) {
		t.Fatalf("created %s, lookup %q", r.body, loc)
	}
	n.waitState("ro.w", "running", 5*time.Second)
	for k, v := range map[string]any{"state": "stopped", "pid": 1.0, "desired": "stopped", "slug": "x.y", "app": "other", "node": "n"} {
		b, _ := json.Marshal(map[string]any{"attributes": map[string]any{"smartmob": map[string]any{"process": map[string]any{k: v}}}})
		r := n.do("POST", loc, string(b), "Content-Type", "application/occi+json")
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, k) {
			t.Errorf("update %s: %d %s", k, r.status, r.body)
		}
	}
	// A change to a client attribute is accepted; the read-only ones stay.
	b, _ := json.Marshal(map[string]any{"attributes": map[string]any{"smartmob": map[string]any{"process": map[string]any{"env": map[string]any{"X": "1"}}}}})
	expect(t, n.do("POST", loc, string(b), "Content-Type", "application/occi+json"), http.StatusCreated)
	if _, a := n.occiProcess("ro.w"); a["slug"] != "ro.w" || a["desired"] != "running" {
		t.Fatalf("after an env update %v", a)
	}
	if r := n.occiCreate(t, base); r.status != http.StatusConflict {
		t.Errorf("a second ro.w over OCCI: %d %s", r.status, r.body)
	}
}

// SA-21 (in process, both stores): a desired-running process runs again,
// under a new pid, when the provider starts on the same store; a stopped
// one stays stopped; the first server's stop left no process.
func TestRestoreSA21(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		f := newFiles(t)
		u := f.serve("/app.zip", "application/zip", procfileApp(t, startedProcfile))
		runDir := t.TempDir()
		var pid1 int
		t.Run("first", func(t *testing.T) {
			n := startNode(t, open(t), nodeOptions{runDir: runDir})
			expect(t, n.create(map[string]any{"app": "foo", "node": "web.0", "source_url": u, "process_type": "web"}), http.StatusCreated)
			expect(t, n.create(map[string]any{"app": "foo", "node": "off", "source_url": u, "process_type": "web"}), http.StatusCreated)
			pid1 = int(n.waitState("foo.web.0", "running", 5*time.Second)["pid"].(float64))
			n.waitState("foo.off", "running", 5*time.Second)
			loc, _ := n.occiProcess("foo.off")
			n.action(t, loc, "stop")
		})
		if t.Failed() {
			return
		}
		if !groupGone(pid1) {
			t.Fatalf("process group %d survived the server", pid1)
		}
		n := startNode(t, open(t), nodeOptions{runDir: runDir})
		a := n.waitState("foo.web.0", "running", 10*time.Second)
		if pid := int(a["pid"].(float64)); pid == pid1 || !alive(pid) {
			t.Fatalf("pid %d after the restart (was %d)", pid, pid1)
		}
		dial(t, wsURL(n.agent())+"/attach-console/foo.web.0").until("started", 5*time.Second)
		if _, a := n.occiProcess("foo.off"); a["state"] != "stopped" || a["desired"] != "stopped" {
			t.Fatalf("the stopped process after the restart: %v", a)
		}
		// The slug is still taken.
		expect(t, n.create(map[string]any{"app": "foo", "node": "web.0", "source_url": u, "process_type": "web"}), http.StatusConflict)
	})
}

// recorder is an events publisher that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []recorded
}

type recorded struct {
	id   string
	body map[string]any
}

func (r *recorder) PublishJSON(id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	r.mu.Lock()
	r.events = append(r.events, recorded{id, m})
	r.mu.Unlock()
	return nil
}

func (r *recorder) snapshot() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.events...)
}

// SA-24 (the provider's part): console lines are published as
// smartmob.<slug> output events, state changes as state events.
func TestEventsSA24(t *testing.T) {
	rec := &recorder{}
	n := startNode(t, nil, nodeOptions{events: rec})
	f := newFiles(t)
	u := f.serve("/app.zip", "application/zip", procfileApp(t, startedProcfile))
	expect(t, n.create(map[string]any{"app": "foo", "node": "web.0", "source_url": u, "process_type": "web"}), http.StatusCreated)
	n.waitState("foo.web.0", "running", 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var line, running, downloading bool
		var order []string // the states in the order published, without repeats
		for _, e := range rec.snapshot() {
			if e.id != "smartmob.foo.web.0" {
				t.Fatalf("event id %q", e.id)
			}
			body, _ := e.body["body"].(map[string]any)
			switch e.body["type"] {
			case "output":
				if body["type"] == "line" && body["data"] == "started" {
					line = true
				}
			case "state":
				running = running || body["state"] == "running"
				downloading = downloading || body["state"] == "downloading"
				if st, _ := body["state"].(string); len(order) == 0 || order[len(order)-1] != st {
					order = append(order, st)
				}
			}
		}
		if line && running && downloading {
			if got := strings.Join(order, ","); !strings.HasPrefix(got, "downloading,unpacking,processing,running") {
				t.Fatalf("states published in the order %s", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %v: line %v, running %v, downloading %v", rec.snapshot(), line, running, downloading)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
