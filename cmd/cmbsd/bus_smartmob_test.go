package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"go.uber.org/goleak"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/loopback"
	"github.com/cmbs/cmbs/internal/pyzmqtest"
)

// smartmobBusStatus polls the smartmob agent's status over the bus
// (bounded) until the process with slug has state want (and a pid when
// running), and returns the reply's data.
func smartmobBusStatus(t *testing.T, d *zmq4.Conn, slug, want string, within time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := busCall(t, d, "status-poll", rpcBody("smartmob", "status", map[string]any{"slug": slug}))
		data := replyData(r)
		if r["statuscode"] == 0.0 && data["state"] == want && (want != "running" || data["pid"].(float64) > 0) {
			return data
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not %s within %v: %v", slug, want, within, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Issue 13 item 5: the built-in smartmob agent over --rpc (a DEALER) runs
// a real process from an archive served on loopback: create, status,
// list, restart (a new pid, the old group gone), stop, start, delete,
// each through the code path of smartmob-agent's API or the OCCI action;
// bad input answers 3 or 4 as the DDL and the API decide, an unknown slug
// 4, a slug in use 1; the rpc action over HTTP and a pyzmq REQ client get
// the same reply as the DEALER. No process group and no goroutine is left.
// On the embedded store and on CouchDB.
func TestBusSmartmobAgent(t *testing.T) {
	t.Cleanup(func() {
		if err := goleak.Find(goleak.IgnoreCurrent(),
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			t.Error(err)
		}
	})
	for _, st := range []string{"sqlite", "couchdb"} {
		t.Run(st, func(t *testing.T) {
			args := []string{"--listen", "127.0.0.1:0", "--run-dir", t.TempDir()}
			if st == "couchdb" {
				url := couchpeer.URLForTest(t) // before Chdir: it finds the peer from the repository
				args = append(args, "--store", url, "--db", couchpeer.DBForTest(t, url))
			}
			t.Chdir(t.TempDir())
			testBusSmartmobAgent(t, args)
		})
	}
}

func testBusSmartmobAgent(t *testing.T, args []string) {
	app := smartmobApp(t)
	rpc := loopback.FreeEndpoint(t)
	base := runInProcess(t, append(args, "--rpc", rpc))
	d := zmtpPeer(t, rpc, zmq4.Dealer)
	call := func(action string, data map[string]any) map[string]any {
		t.Helper()
		return busCall(t, d, "sm-"+action, rpcBody("smartmob", action, data))
	}
	var pids []int
	t.Cleanup(func() {
		for _, pid := range pids {
			if !groupEmpty(pid) {
				t.Errorf("process group %d left", pid)
			}
		}
	})

	create := map[string]any{"app": "foo", "node": "web.0", "source_url": app, "process_type": "web", "env": map[string]any{"GREETING": "hi"}}
	r := call("create", create)
	data := replyData(r)
	loc, _ := data["location"].(string)
	if r["statuscode"] != 0.0 || data["slug"] != "foo.web.0" || data["state"] != "pending" || !strings.HasPrefix(loc, "/smartmob/process/") {
		t.Fatalf("create: %v", r)
	}
	st := smartmobBusStatus(t, d, "foo.web.0", "running", 10*time.Second)
	pid1 := int(st["pid"].(float64))
	pids = append(pids, pid1)
	if st["app"] != "foo" || st["node"] != "web.0" || st["process_type"] != "web" || st["source_url"] != app || st["desired"] != "running" ||
		st["location"] != loc || st["restarts"] != 0.0 || st["last_exit_code"] != -1.0 || st["env"] != nil {
		t.Fatalf("status: %v", st)
	}
	// The entity says the same (the bus reads it, it keeps no state).
	e := mustCall(t, "GET", base+loc, nil, 200)
	if p := e["attributes"].(map[string]any)["smartmob"].(map[string]any)["process"].(map[string]any); p["pid"] != st["pid"] || p["slug"] != "foo.web.0" {
		t.Fatalf("entity %v, bus %v", p, st)
	}

	r = call("list", map[string]any{})
	list, _ := replyData(r)["processes"].([]any)
	if r["statuscode"] != 0.0 || replyData(r)["count"] != 1.0 || len(list) != 1 {
		t.Fatalf("list: %v", r)
	}
	if p := list[0].(map[string]any); p["slug"] != "foo.web.0" || p["state"] != "running" || p["pid"] != st["pid"] || p["restarts"] != 0.0 {
		t.Fatalf("list entry: %v", p)
	}

	// The rpc action over HTTP and a pyzmq REQ client answer the same.
	httpR := mustCall(t, "POST", base+"/choria/agent/smartmob?action=rpc", []byte(`{"attributes":{"action":"status","data":{"slug":"foo.web.0"}}}`), 200)
	if httpR["statuscode"] != 0.0 || !reflect.DeepEqual(replyData(httpR), st) {
		t.Fatalf("rpc action %v, bus %v", httpR, st)
	}
	t.Run("pyzmq", func(t *testing.T) {
		py := pyzmqtest.Python(t)
		reply := pyzmqtest.REQ(t, t.Context(), py, rpc, 1, "py-1", "application/json", string(rpcBody("smartmob", "status", map[string]any{"slug": "foo.web.0"})))
		var pr map[string]any
		if len(reply) != 3 || reply[0] != "py-1" || json.Unmarshal([]byte(reply[2]), &pr) != nil || pr["statuscode"] != 0.0 || !reflect.DeepEqual(replyData(pr), st) {
			t.Fatalf("pyzmq: %q, bus %v", reply, st)
		}
	})

	// Bad requests: the DDL's 3 and 4, the API's checks as 4 (HTTP 400
	// there), an unknown slug 4, a slug in use 1.
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range create {
			m[kk] = vv
		}
		m["node"] = "web.9"
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		name   string
		action string
		data   map[string]any
		code   float64
		msg    string
		api    int // the API's answer to the same create, 0: not a create
	}{
		{"missing app", "create", with("app", nil), 3, "validation failed for input 'app'", 400},
		{"app not a string", "create", with("app", 7), 4, "validation failed for input 'app'", 400},
		{"empty app", "create", with("app", ""), 4, "app", 400},
		{"app pattern", "create", with("app", "bad app"), 4, "app", 400},
		{"source_url pattern", "create", with("source_url", "ftp://x"), 4, "source_url", 400},
		{"unknown field", "create", with("colour", "red"), 4, "colour", 400},
		{"env not strings", "create", with("env", map[string]any{"N": 1}), 4, "env", 400},
		{"env not a hash", "create", with("env", "A=1"), 4, "validation failed for input 'env'", 400},
		{"slug in use", "create", with("node", "web.0"), 1, "exists already", 409},
		{"status of an unknown slug", "status", map[string]any{"slug": "nosuch"}, 4, "no process nosuch", 0},
		{"stop of an unknown slug", "stop", map[string]any{"slug": "nosuch"}, 4, "no process nosuch", 0},
		{"delete of an unknown slug", "delete", map[string]any{"slug": "nosuch"}, 4, "no process nosuch", 0},
		{"missing slug", "restart", map[string]any{}, 3, "validation failed for input 'slug'", 0},
		{"unknown action", "scale", map[string]any{}, 2, "Unknown action scale for agent smartmob", 0},
	} {
		r := call(c.action, c.data)
		if r["statuscode"] != c.code || !strings.Contains(r["statusmsg"].(string), c.msg) {
			t.Errorf("%s: %v", c.name, r)
		}
		if c.api != 0 {
			body, _ := json.Marshal(c.data)
			mustCall(t, "POST", base+"/smartmob-agent/create-process", body, c.api)
		}
	}

	// restart: a new pid at once, the old group gone.
	r = call("restart", map[string]any{"slug": "foo.web.0"})
	data = replyData(r)
	pid2 := int(data["pid"].(float64))
	pids = append(pids, pid2)
	if r["statuscode"] != 0.0 || data["state"] != "running" || pid2 <= 0 || pid2 == pid1 || data["location"] != loc || data["started_at"] == "" {
		t.Fatalf("restart: %v (pid before %d)", r, pid1)
	}
	if !groupEmpty(pid1) {
		t.Fatalf("process group %d survived the restart", pid1)
	}

	// stop: stopped, desired stopped (also on the entity), group gone.
	r = call("stop", map[string]any{"slug": "foo.web.0"})
	if data := replyData(r); r["statuscode"] != 0.0 || data["state"] != "stopped" || data["desired"] != "stopped" || data["pid"] != 0.0 || data["started_at"] != "" {
		t.Fatalf("stop: %v", r)
	}
	if !groupEmpty(pid2) {
		t.Fatalf("process group %d survived stop", pid2)
	}
	e = mustCall(t, "GET", base+loc, nil, 200)
	if p := e["attributes"].(map[string]any)["smartmob"].(map[string]any)["process"].(map[string]any); p["desired"] != "stopped" || p["state"] != "stopped" {
		t.Fatalf("entity after stop: %v", p)
	}

	// start: running again under a new pid.
	r = call("start", map[string]any{"slug": "foo.web.0"})
	if data := replyData(r); r["statuscode"] != 0.0 || data["desired"] != "running" {
		t.Fatalf("start: %v", r)
	}
	st = smartmobBusStatus(t, d, "foo.web.0", "running", 10*time.Second)
	pid3 := int(st["pid"].(float64))
	pids = append(pids, pid3)
	if pid3 == pid2 {
		t.Fatalf("the same pid %d after stop and start", pid3)
	}

	// delete: gone from the bus, the API and the OCCI interface.
	r = call("delete", map[string]any{"slug": "foo.web.0"})
	if data := replyData(r); r["statuscode"] != 0.0 || data["slug"] != "foo.web.0" || data["deleted"] != true {
		t.Fatalf("delete: %v", r)
	}
	if !groupEmpty(pid3) {
		t.Fatalf("process group %d survived delete", pid3)
	}
	if r := call("status", map[string]any{"slug": "foo.web.0"}); r["statuscode"] != 4.0 {
		t.Fatalf("status after delete: %v", r)
	}
	if r := call("list", map[string]any{}); replyData(r)["count"] != 0.0 || len(replyData(r)["processes"].([]any)) != 0 {
		t.Fatalf("list after delete: %v", r)
	}
	mustCall(t, "GET", base+loc, nil, 404)
	if l := mustCall(t, "GET", base+"/smartmob-agent/list-processes", nil, 200); len(l["processes"].([]any)) != 0 {
		t.Fatalf("API list after delete: %v", l)
	}
}
