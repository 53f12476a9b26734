package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-zeromq/zmq4"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/loopback"
	"github.com/cmbs/cmbs/internal/procgroup"
)

// smartmobApp serves a zip with Procfile `web: sh -c 'echo started;
// sleep 60'` from a loopback HTTP server and returns its URL.
func smartmobApp(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create("Procfile")
	if err == nil {
		_, err = w.Write([]byte("web: sh -c 'echo started; sleep 60'\n"))
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/zip")
		_, _ = w.Write(b.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/app.zip"
}

// smartmobPid waits (bounded) until the process with slug runs, through
// the OCCI collection, and returns its pid.
func smartmobPid(t *testing.T, base, slug string, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		coll := mustCall(t, "GET", base+"/smartmob/process/", nil, 200)
		locs, _ := coll["X-OCCI-Location"].([]any)
		for _, l := range locs {
			e := mustCall(t, "GET", l.(string), nil, 200)
			a, _ := e["attributes"].(map[string]any)
			sm, _ := a["smartmob"].(map[string]any)
			p, _ := sm["process"].(map[string]any)
			if p["slug"] == slug && p["state"] == "running" {
				if pid, _ := p["pid"].(float64); pid > 0 {
					return int(pid)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not running within %v: %v", slug, within, locs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// consoleLine dials a console and waits (bounded) for a line.
func consoleLine(t *testing.T, url, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer c.CloseNow()
	var seen []string
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %q on %s after %q: %v", want, url, seen, err)
		}
		if string(b) == want {
			return
		}
		seen = append(seen, string(b))
	}
}

func groupEmpty(pgid int) bool {
	deadline := time.Now().Add(10 * time.Second)
	for procgroup.Members(pgid) != 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return syscall.Kill(pgid, 0) != nil
}

// SA-21 on the binary: a process created through /smartmob-agent/ dies
// with cmbsd (SIGTERM: nothing left of its group), and runs again, under
// a new pid and with its console, when cmbsd starts again on the same
// store (the embedded one, then CouchDB).
func TestBinarySmartmobRestartSA21(t *testing.T) {
	app := smartmobApp(t)
	for _, st := range []string{"sqlite", "couchdb"} {
		t.Run(st, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"--listen", "127.0.0.1:0", "--run-dir", t.TempDir()}
			if st == "couchdb" {
				url := couchpeer.URLForTest(t)
				args = append(args, "--store", url, "--db", couchpeer.DBForTest(t, url))
			}
			p := startCmbsd(t, dir, nil, args...)
			base := "http://" + p.waitListening(t)
			body, _ := json.Marshal(map[string]any{"app": "foo", "node": "web.0", "source_url": app, "process_type": "web"})
			created := mustCall(t, "POST", base+"/smartmob-agent/create-process", body, 201)
			if created["state"] != "pending" || created["slug"] != "foo.web.0" {
				t.Fatalf("created %v", created)
			}
			pid1 := smartmobPid(t, base, "foo.web.0", 10*time.Second)
			consoleLine(t, "ws"+strings.TrimPrefix(base, "http")+"/smartmob-agent/attach-console/foo.web.0", "started")

			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := p.waitExit(t); code != 0 {
				t.Fatalf("exit code %d after SIGTERM", code)
			}
			if !groupEmpty(pid1) {
				t.Fatalf("process group %d survived cmbsd", pid1)
			}

			p2 := startCmbsd(t, dir, nil, args...)
			base2 := "http://" + p2.waitListening(t)
			pid2 := smartmobPid(t, base2, "foo.web.0", 10*time.Second)
			if pid2 == pid1 {
				t.Fatalf("the same pid %d after the restart", pid2)
			}
			consoleLine(t, "ws"+strings.TrimPrefix(base2, "http")+"/smartmob-agent/attach-console/foo.web.0", "started")
			if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := p2.waitExit(t); code != 0 {
				t.Fatalf("exit code %d after the second SIGTERM", code)
			}
			if !groupEmpty(pid2) {
				t.Fatalf("process group %d survived the second cmbsd", pid2)
			}
		})
	}
}

// SA-24: with --events-out, a SUB socket subscribed to smartmob.foo.web.0
// receives the console line "started" as a 3-frame envelope. The
// smartmob-agent API is behind --users like everything else.
func TestRunSmartmobEventsSA24(t *testing.T) {
	users, err := filepath.Abs(filepath.Join("testdata", "users"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	out, in := loopback.FreeEndpoint(t), loopback.FreeEndpoint(t)
	base := runInProcess(t, []string{"--listen", "127.0.0.1:0", "--run-dir", t.TempDir(), "--events-out", out, "--events-in", in, "--users", users})
	for _, path := range []string{"/smartmob-agent/", "/smartmob-agent/list-processes", "/smartmob/process/x/console"} {
		if got := get(t, base+path, "", ""); got != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", path, got)
		}
		if got := get(t, base+path, "alice", "wrong"); got != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password: %d, want 401", path, got)
		}
	}
	if got := get(t, base+"/smartmob-agent/list-processes", "alice", "wonderland"); got != http.StatusOK {
		t.Fatalf("list as alice: %d", got)
	}

	sub := zmtpPeer(t, out, zmq4.Sub)
	if err := sub.SendMsg(zmq4.NewMsg(append([]byte{1}, "smartmob."...))); err != nil {
		t.Fatal(err)
	}
	push := zmtpPeer(t, in, zmq4.Push)
	got := make(chan []string, 256)
	go func() {
		defer close(got)
		for {
			m, err := sub.RecvMsg()
			if err != nil {
				return
			}
			f := make([]string, len(m.Frames))
			for i, b := range m.Frames {
				f[i] = string(b)
			}
			got <- f
		}
	}()
	// The subscription is in once a probe pushed to events-in comes back.
	for probed := false; !probed; {
		if err := push.SendMsg(zmq4.NewMsgFrom([]byte("smartmob.probe"), []byte("text/plain"), []byte("p"))); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-got:
			probed = len(f) > 0 && f[0] == "smartmob.probe"
		case <-time.After(50 * time.Millisecond):
		}
	}

	body, _ := json.Marshal(map[string]any{"app": "foo", "node": "web.0", "source_url": smartmobApp(t), "process_type": "web"})
	req, _ := http.NewRequest("POST", base+"/smartmob-agent/create-process", bytes.NewReader(body))
	req.SetBasicAuth("alice", "wonderland")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	want := []string{"smartmob.foo.web.0", "application/json", `{"body":{"data":"started","type":"line"},"type":"output"}`}
	timeout := time.After(10 * time.Second)
	var states []string
	for {
		select {
		case f, ok := <-got:
			if !ok {
				t.Fatal("the SUB socket closed")
			}
			if len(f) == 3 && f[0] == want[0] && f[1] == want[1] {
				var m map[string]any
				if err := json.Unmarshal([]byte(f[2]), &m); err != nil {
					t.Fatalf("body %q: %v", f[2], err)
				}
				if m["type"] == "state" {
					states = append(states, m["body"].(map[string]any)["state"].(string))
				}
				if b, _ := json.Marshal(m); string(b) == want[2] {
					if len(states) == 0 {
						t.Errorf("no state event before the line")
					}
					return // the server's shutdown stops the process
				}
			}
		case <-timeout:
			t.Fatalf("no %q within 10 s (states %v)", want, states)
		}
	}
}
