package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/loopback"
	"github.com/cmbs/cmbs/internal/testserver"
)

// threeNodes holds the README's three-node fixtures with every ZeroMQ
// socket moved to a free port (the files use fixed ones), consistently
// across members and messages.
type threeNodes struct {
	files map[string][]byte // by file name
}

var fixedSocket = regexp.MustCompile(`tcp://127\.0\.0\.1:\d+`)

func loadThreeNodes(t *testing.T) threeNodes {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "threenodes")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	moved, used := map[string]string{}, map[string]bool{}
	tn := threeNodes{files: map[string][]byte{}}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		tn.files[e.Name()] = fixedSocket.ReplaceAllFunc(b, func(s []byte) []byte {
			if moved[string(s)] == "" {
				// A port just released can be handed out again: each
				// socket gets one no other socket got.
				ep := loopback.FreeEndpoint(t)
				for used[ep] {
					ep = loopback.FreeEndpoint(t)
				}
				used[ep] = true
				moved[string(s)] = ep
			}
			return []byte(moved[string(s)])
		})
	}
	return tn
}

// occiCall sends an OCCI JSON request and returns the status and the body.
func occiCall(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	return testserver.Request(t, 30*time.Second, method, url, body)
}

func mustCall(t *testing.T, method, url string, body []byte, want int) map[string]any {
	t.Helper()
	status, out := occiCall(t, method, url, body)
	if status != want {
		t.Fatalf("%s %s: %d %s, want %d", method, url, status, out, want)
	}
	var m map[string]any
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s %s: the reply is not a JSON object (%v): %.300s", method, url, err, out)
		}
	}
	return m
}

func messageAttr(e map[string]any, name string) any {
	a, _ := e["attributes"].(map[string]any)
	c, _ := a["cmbs"].(map[string]any)
	m, _ := c["message"].(map[string]any)
	return m[name]
}

// The README's "Three servers brokering messages", step by step, on three
// cmbsd processes, each with its own embedded store: discovery across the
// chain, then every layer's delivery and non-delivery; then the first
// server restarts and its layers are bound again.
func TestBinaryThreeNodesReadme(t *testing.T) {
	pycmbs := filepath.Join("..", "..", "testdata", "pycmbs")
	names := []string{"a", "b", "c"}
	var tn threeNodes
	dirs := map[string]string{}
	urls := map[string]string{}
	procs := map[string]*process{}
	start := func(n string) {
		procs[n] = startCmbsd(t, dirs[n], nil, "--listen", "127.0.0.1:0")
		urls[n] = "http://" + procs[n].waitListening(t)
	}
	// setUp starts the three servers with their members' layers running.
	// A port found free can be taken by another process before cmbsd binds
	// it; then it reports which, and everything starts over on other ports.
	setUp := func() (taken string) {
		tn = loadThreeNodes(t)
		for _, n := range names {
			dirs[n] = t.TempDir()
			start(n)
		}
		for _, n := range names {
			for _, f := range []struct{ method, file string }{
				{"POST", "post_category_cmbs_member.json"}, {"PUT", "put_provider_cmbs_member.json"},
				{"POST", "post_category_cmbs_message.json"}, {"PUT", "put_provider_cmbs_message.json"},
			} {
				body, err := os.ReadFile(filepath.Join(pycmbs, f.file))
				if err != nil {
					t.Fatal(err)
				}
				mustCall(t, f.method, urls[n]+"/-/", body, 200)
			}
			mustCall(t, "POST", urls[n]+"/cmbs/member/", tn.files["member_"+n+".json"], 201)
			for _, l := range []string{"l1", "l2", "l31", "l32", "l4"} {
				url := urls[n] + "/cmbs/member/member-" + n + "?action=start_" + l
				status, body := occiCall(t, "POST", url, []byte("{}"))
				if status == 409 && bytes.Contains(body, []byte("address already in use")) {
					return string(body)
				}
				if status != 200 {
					t.Fatalf("POST %s: %d %s, want 200", url, status, body)
				}
			}
		}
		return ""
	}
	for attempt := 1; ; attempt++ {
		taken := setUp()
		if taken == "" {
			break
		}
		if attempt == 3 {
			t.Fatalf("a layer socket was taken on each of %d attempts; the last: %s", attempt, taken)
		}
		t.Logf("starting over on other ports: %s", taken)
		for _, n := range names {
			_ = procs[n].cmd.Process.Signal(syscall.SIGTERM)
			procs[n].waitExit(t)
		}
	}

	// Discovery from a follows the chain; c learns the asker.
	disc := mustCall(t, "POST", urls["a"]+"/cmbs/member/member-a?action=check_neighbors", []byte("{}"), 200)
	if learned, _ := disc["learned"].([]any); len(learned) != 2 {
		t.Fatalf("a learned %v, want b and c", disc)
	}
	status, listing := occiCall(t, "GET", urls["c"]+"/cmbs/member/", nil)
	if status != 200 || !bytes.Contains(listing, []byte("/cmbs/member/member-a~")) {
		t.Fatalf("c's members (%d): %s; want member-a learned", status, listing)
	}

	send := func(file, id, layer string) map[string]any {
		t.Helper()
		mustCall(t, "POST", urls["a"]+"/cmbs/message/", tn.files[file], 201)
		return mustCall(t, "POST", urls["a"]+"/cmbs/message/"+id+"?action=send_"+layer, []byte("{}"), 200)
	}
	delivered := func(res map[string]any) []string {
		var members []string
		ds, _ := res["deliveries"].([]any)
		for _, d := range ds {
			if d := d.(map[string]any); d["delivered"] == true {
				members = append(members, d["member"].(string))
			}
		}
		slices.Sort(members)
		return members
	}

	// L1: the reply is the result, and is written to the message.
	if r := send("message_l1.json", "hello-l1", "l1"); r["member_description"] == nil {
		t.Fatalf("send_l1: %v", r)
	}
	if res, _ := messageAttr(mustCall(t, "GET", urls["a"]+"/cmbs/message/hello-l1", nil, 200), "result").(map[string]any); res["member_description"] == nil {
		t.Fatalf("hello-l1's result: %v", res)
	}
	// L2: both other members, stored on c with its execution record.
	if got := delivered(send("message_l2.json", "hello-l2", "l2")); len(got) != 2 {
		t.Fatalf("send_l2 delivered to %v, want b and c", got)
	}
	onC := mustCall(t, "GET", urls["c"]+"/cmbs/message/hello-l2", nil, 200)
	if res, _ := messageAttr(onC, "result").(map[string]any); res["executed_by"] == nil {
		t.Fatalf("hello-l2 on c: %v", onC)
	}
	// L3.2: b's topics include weather, c's do not.
	if got := delivered(send("message_l32.json", "weather-1", "l32")); len(got) != 1 || !strings.Contains(got[0], "member-b") {
		t.Fatalf("send_l32 delivered to %v, want member-b only", got)
	}
	mustCall(t, "GET", urls["c"]+"/cmbs/message/weather-1", nil, 404)
	// L3.1: the named provider only.
	if got := delivered(send("message_l31.json", "for-c", "l31")); len(got) != 1 || !strings.Contains(got[0], "member-c") {
		t.Fatalf("send_l31 delivered to %v, want member-c only", got)
	}
	mustCall(t, "GET", urls["b"]+"/cmbs/message/for-c", nil, 404)
	// L4: b crawls too, then routes a's message to c.
	mustCall(t, "POST", urls["b"]+"/cmbs/member/member-b?action=check_neighbors", []byte("{}"), 200)
	send("message_l4.json", "routed-news", "l4")
	// b acknowledges first and forwards after: c has it shortly.
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _ := occiCall(t, "GET", urls["c"]+"/cmbs/message/routed-news", nil)
		if status == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	routed := mustCall(t, "GET", urls["c"]+"/cmbs/message/routed-news", nil, 200)
	if path, _ := messageAttr(routed, "path_history").([]any); len(path) != 3 {
		t.Fatalf("routed-news on c has path_history %v, want a, b, c", path)
	}
	mustCall(t, "GET", urls["b"]+"/cmbs/message/routed-news", nil, 404)

	// c's status lists its running layers and what they received.
	report := mustCall(t, "GET", urls["c"]+"/-/status", nil, 200)
	if report["status"] != "ok" || countLayers(report, "member-c") != 5 {
		t.Fatalf("c's status: %v, want ok and member-c's five layers", report)
	}
	if received, _ := report["broker"].(map[string]any)["received"].(map[string]any); received["l2"] != 1.0 || received["l4"] != 1.0 {
		t.Fatalf("c's status counts received %v, want one L2 and one L4 message", received)
	}

	// a restarts: its layers are bound again, and b reaches it on L1.
	if err := procs["a"].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := procs["a"].waitExit(t); code != 0 {
		t.Fatalf("a exited with %d", code)
	}
	start("a")
	disc = mustCall(t, "POST", urls["b"]+"/cmbs/member/member-b?action=check_neighbors", []byte("{}"), 200)
	if failed, _ := disc["failed"].([]any); len(failed) != 0 {
		t.Fatalf("b's crawl after a restarted: %v", disc)
	}
	if r := mustCall(t, "POST", urls["a"]+"/cmbs/member/member-a?action=start_l1", []byte("{}"), 200); r["changed"] != false {
		t.Fatalf("start_l1 after the restart: %v, want it already running", r)
	}
	if n := countLayers(mustCall(t, "GET", urls["a"]+"/-/status", nil, 200), "member-a"); n != 5 {
		t.Fatalf("a's status after the restart lists %d of member-a's layers, want 5", n)
	}
}

// countLayers counts the running layers a status report lists for the
// member whose location ends in member.
func countLayers(status map[string]any, member string) int {
	n := 0
	layers, _ := status["layers"].([]any)
	for _, l := range layers {
		if m, _ := l.(map[string]any); strings.HasSuffix(fmt.Sprint(m["member"]), "/"+member) {
			n++
		}
	}
	return n
}
