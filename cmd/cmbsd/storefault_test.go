package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/couchpeer"
)

const faultKind = `{"kinds":[{"term":"thing","scheme":"http://example.org/fault#","title":"Thing","location":"/thing/",
  "attributes":{"t":{"n":{"type":"number","mutable":true}}}}]}`

// call sends one request (see occiCall) and returns the status and the
// decoded JSON body.
func call(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	status, b := occiCall(t, method, url, []byte(body))
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return status, m
}

// cmbsd on CouchDB survives CouchDB faults without a restart: a CouchDB
// that comes back empty gets its database and indexes recreated (creates
// work again, the status says ok), and a frozen one (SIGSTOP) fails
// requests with 503 naming the store timeout and turns the status
// unavailable, until it runs again.
func TestRunSurvivesCouchFaults(t *testing.T) {
	peer := couchpeer.StartForTest(t, 0)
	args := []string{"--listen", "127.0.0.1:0", "--store", peer.URL(), "--store-timeout", "1s", "--layers-file", "none"}
	base := runInProcess(t, args)
	if c, m := call(t, "POST", base+"/-/", faultKind); c != http.StatusOK {
		t.Fatalf("POST /-/: %d %v", c, m)
	}
	if c, m := call(t, "PUT", base+"/thing/a", `{"resources":[{"kind":"http://example.org/fault#thing","attributes":{"t":{"n":1}}}]}`); c != http.StatusCreated {
		t.Fatalf("PUT /thing/a: %d %v", c, m)
	}

	// CouchDB restarts empty on the same port.
	port := peer.Port()
	if err := peer.Stop(); err != nil {
		t.Fatal(err)
	}
	peer = couchpeer.StartForTest(t, port)
	if c, m := call(t, "GET", base+statusPath, ""); c != http.StatusOK || m["status"] != "ok" {
		t.Fatalf("status after CouchDB restarted empty: %d %v", c, m)
	}
	if c, m := call(t, "PUT", base+"/thing/b", `{"resources":[{"kind":"http://example.org/fault#thing","attributes":{"t":{"n":2}}}]}`); c != http.StatusCreated {
		t.Fatalf("PUT /thing/b after CouchDB restarted empty: %d %v", c, m)
	}
	if c, m := call(t, "GET", base+"/thing/b", ""); c != http.StatusOK {
		t.Fatalf("GET /thing/b: %d %v", c, m)
	}

	// CouchDB freezes.
	if err := syscall.Kill(peer.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	c, m := call(t, "GET", base+"/thing/b", "")
	msg, _ := m["error"].(map[string]any)["message"].(string)
	if c != http.StatusServiceUnavailable || !strings.Contains(msg, "store timeout (1s)") {
		t.Errorf("GET on a frozen CouchDB: %d %v, want 503 naming the store timeout", c, m)
	}
	if c, m := call(t, "GET", base+statusPath, ""); c != http.StatusServiceUnavailable || m["status"] != "unavailable" {
		t.Errorf("status on a frozen CouchDB: %d %v", c, m)
	}
	if err := syscall.Kill(peer.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Bounded: CouchDB works through what it was sent while frozen first.
	for i := 0; ; i++ {
		c, m := call(t, "GET", base+statusPath, "")
		if c == http.StatusOK {
			break
		}
		if i == 50 {
			t.Fatalf("status once CouchDB runs again: %d %v", c, m)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
