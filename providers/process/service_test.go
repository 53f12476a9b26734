package process_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cmbs/cmbs/internal/procgroup"
	"github.com/cmbs/cmbs/store"
)

// consoleClient is a real WebSocket client on a console.
type consoleClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func (n *node) console(t *testing.T, exec, query string) *consoleClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.url, "http")+exec+"/console"+query, nil)
	if err != nil {
		t.Fatalf("dial the console of %s: %v", exec, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &consoleClient{t: t, conn: c}
}

// until reads lines until one contains want, and returns the lines read.
func (c *consoleClient) until(want string) []string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var lines []string
	for {
		typ, b, err := c.conn.Read(ctx)
		if err != nil {
			c.t.Fatalf("waiting for %q after %q: %v", want, lines, err)
		}
		if typ != websocket.MessageText {
			c.t.Fatalf("frame type %v", typ)
		}
		lines = append(lines, string(b))
		if strings.Contains(string(b), want) {
			return lines
		}
	}
}

// closed reads until the connection ends and returns its close status.
func (c *consoleClient) closed() websocket.StatusCode {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if _, _, err := c.conn.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// startService runs execute on a service definition: 202 with Location.
func (n *node) startService(t *testing.T, def string) (exec string, pid func() int) {
	t.Helper()
	r := expect(t, n.do("POST", def+"?action=execute", `{}`, "Content-Type", "application/occi+json"), http.StatusAccepted)
	res := r.json(t)
	exec, _ = res["execution"].(string)
	if exec == "" || res["status"] != "running" || !strings.HasSuffix(r.header.Get("Location"), exec) {
		t.Fatalf("execute a service: %v, Location %q", res, r.header.Get("Location"))
	}
	prov := n.prov
	return exec, func() int {
		p := prov.Supervisor().Get(exec)
		if p == nil {
			return 0
		}
		return p.Status().Pid
	}
}

// waitPid waits (bounded) for a running pid.
func waitPid(t *testing.T, pid func() int) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p := pid(); p != 0 {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatal("the service never ran")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// groupGone waits (bounded) until process group pgid has no live process.
func groupGone(pgid int) bool {
	deadline := time.Now().Add(10 * time.Second)
	for procgroup.Members(pgid) != 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

const tickerService = `{"exec":"sh","argv":["-c","echo started; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.02; done"],"process_type":"service"}`

// PR-E15: a service definition's execute answers 202 with a running
// execution, its console streams the output to several WebSocket clients,
// cancel stops it (no process left) and records it cancelled.
func TestServiceExecuteConsoleCancel(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		n := startNode(t, open(t), nodeOptions{})
		def := n.createDefinition(tickerService)
		exec, pid := n.startService(t, def)
		group := waitPid(t, pid)
		rec := path(n.entity(exec), "attributes", "process", "execution").(map[string]any)
		if rec["status"] != "running" || rec["definition"] != def {
			t.Errorf("running record %v", rec)
		}
		a := n.console(t, exec, "")
		b := n.console(t, exec, "?tail=1000")
		if lines := a.until("tick 3"); !strings.HasPrefix(lines[0], "[supervisor] spawned pid=") {
			t.Errorf("console a began %q", lines)
		}
		if lines := b.until("tick 3"); lines[1] != "started" {
			t.Errorf("console b began %q", lines)
		}
		// ?tail=0 starts with live lines only.
		c := n.console(t, exec, "?tail=0")
		if line := c.until("tick"); strings.Contains(line[0], "[supervisor]") {
			t.Errorf("tail=0 replayed %q", line)
		}
		expect(t, n.do("GET", exec+"/console?tail=x", ""), http.StatusBadRequest)

		res := expect(t, n.do("POST", exec+"?action=cancel", `{}`, "Content-Type", "application/occi+json"), http.StatusOK).json(t)
		if res["status"] != "cancelled" {
			t.Errorf("cancel: %v", res)
		}
		if !groupGone(group) {
			t.Errorf("process group %d survived cancel", group)
		}
		for _, cl := range []*consoleClient{a, b, c} {
			cl.until("[supervisor] stopped")
			if st := cl.closed(); st != websocket.StatusNormalClosure {
				t.Errorf("console closed with %v", st)
			}
		}
		rec = path(n.entity(exec), "attributes", "process", "execution").(map[string]any)
		if rec["status"] != "cancelled" || rec["finished_at"] == nil {
			t.Errorf("cancelled record %v", rec)
		}
		expect(t, n.do("POST", exec+"?action=cancel", `{}`, "Content-Type", "application/occi+json"), http.StatusConflict)
		expect(t, n.do("GET", exec+"/console", ""), http.StatusNotFound)
	})
}

// A crashing service is restarted with backoff, visible on its console;
// deleting its execution stops it; stopping the provider stops the rest.
func TestServiceRestartDeleteShutdown(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	crash := n.createDefinition(`{"exec":"sh","argv":["-c","echo once; exit 7"],"process_type":"service"}`)
	exec, _ := n.startService(t, crash)
	cl := n.console(t, exec, "")
	lines := cl.until("[supervisor] restarting in 200ms")
	joined := strings.Join(lines, "\n")
	for _, want := range []string{"once\n[supervisor] exited status=7\n[supervisor] restarting in 100ms"} {
		if !strings.Contains(joined, want) {
			t.Errorf("console lacks %q: %q", want, joined)
		}
	}
	if r := n.do("DELETE", exec, ""); r.status != http.StatusOK && r.status != http.StatusNoContent {
		t.Fatalf("delete a running service's execution: %d %s", r.status, r.body)
	}
	if n.prov.Supervisor().Get(exec) != nil {
		t.Error("deleted execution still supervised")
	}
	cl.until("[supervisor] stopped")

	// The service left running is stopped, and recorded, by the provider's Stop.
	ticker := n.createDefinition(tickerService)
	exec2, pid := n.startService(t, ticker)
	group := waitPid(t, pid)
	cl2 := n.console(t, exec2, "?tail=0")
	cl2.until("tick")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.prov.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !groupGone(group) {
		t.Errorf("process group %d survived the provider's stop", group)
	}
	if st := cl2.closed(); st != websocket.StatusNormalClosure {
		t.Errorf("console closed with %v", st)
	}
	rec := path(n.entity(exec2), "attributes", "process", "execution").(map[string]any)
	if rec["status"] != "cancelled" || !strings.Contains(rec["error"].(string), "server stopped") {
		t.Errorf("record after stop %v", rec)
	}
	r := n.do("POST", ticker+"?action=execute", `{}`, "Content-Type", "application/occi+json")
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("execute after stop: %d %s", r.status, r.body)
	}
}

// SA-22: a console client that never reads is dropped; a client that reads
// gets every line, and the service writes all of its output regardless.
func TestConsoleSlowClientDropped(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	// 40 bursts of 500 lines of ~1 KiB (20 MiB in all, more than the
	// loopback socket buffers hold), a pause between bursts.
	def := n.createDefinition(`{"exec":"sh","argv":["-c","pad=$(printf '%01000d' 0); b=0; while [ $b -lt 40 ]; do i=0; while [ $i -lt 500 ]; do echo \"$b.$i $pad\"; i=$((i+1)); done; b=$((b+1)); sleep 0.05; done; echo done; exec sleep 300"],"process_type":"service"}`)
	exec, pid := n.startService(t, def)
	waitPid(t, pid)
	slow := n.console(t, exec, "?tail=0") // never reads until the end
	fast := n.console(t, exec, "?tail=0")
	lines := fast.until("done")
	// It subscribed while the service was writing already: from its first
	// line on, it got every line, in order, without a gap.
	var prev = -1
	for _, l := range lines {
		var b, i int
		if _, err := fmt.Sscanf(l, "%d.%d ", &b, &i); err != nil {
			continue // supervisor lines, done
		}
		if seq := b*500 + i; prev >= 0 && seq != prev+1 {
			t.Fatalf("the reading client skipped from line %d to %d", prev, seq)
		} else {
			prev = seq
		}
	}
	if prev != 40*500-1 {
		t.Errorf("the reading client's last line was %d", prev)
	}
	// The slow client was cut off: it reads what the buffers held, then the
	// connection ends without the rest.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	read, sawDone := 0, false
	for {
		_, b, err := slow.conn.Read(ctx)
		if err != nil {
			break
		}
		read++
		sawDone = sawDone || string(b) == "done"
	}
	if sawDone || read >= 40*500 {
		t.Errorf("the slow client was not dropped (read %d lines, done %v)", read, sawDone)
	}
	if p := n.prov.Supervisor().Get(exec); p == nil || p.Log().Lines() < 40*500 {
		t.Error("the service's output was not all logged")
	}
	expect(t, n.do("POST", exec+"?action=cancel", `{}`, "Content-Type", "application/occi+json"), http.StatusOK)
}
