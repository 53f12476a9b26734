package smartmob_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/store"
)

// couchOpener returns an opener of one fresh CouchDB-API database.
func couchOpener(t *testing.T) func(t *testing.T) store.Store {
	for _, s := range storeKinds() {
		if s.Name == "couchdb" {
			return s.Fresh(t)
		}
	}
	t.Fatal("no couchdb store kind")
	return nil
}

// waitLoc waits (bounded) until the process at loc, read through n, is in
// state want (with a pid other than not, when running), and returns its
// attributes.
func (n *node) waitLoc(loc, want string, not int) map[string]any {
	n.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := expect(n.t, n.do("GET", loc, "", "Accept", "application/occi+json"), http.StatusOK)
		a := attrsOf(r.json(n.t))
		pid, _ := a["pid"].(float64)
		if a["server"] == n.prov.Server() {
			n.saw(int(pid)) // another server's process is its to check
		}
		if a["state"] == want && (want != "running" || (pid > 0 && int(pid) != not)) {
			return a
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: %v, want state %q (pid other than %d)", loc, a, want, not)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inRunDir reports whether a live process has its working directory in
// the private directory of the process at loc under runDir.
func inRunDir(runDir, loc string) bool {
	return len(inDir(filepath.Join(runDir, "smartmob", filepath.Base(loc)))) > 0
}

// until polls cond (bounded well beyond the feed's delay: the machine is
// shared).
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two servers on one CouchDB-API database, each following its changes
// feed: a process runs on the server that created it, and only there; its
// slug is taken on both; stop, start, restart and DELETE through the other
// server are carried out by the one running it; after a restart of both,
// each runs only its own.
func TestSharedStoreOneServerPerProcess(t *testing.T) {
	if only := os.Getenv(testserver.EnvStore); only != "" && only != "couchdb" {
		t.Skip("several servers share a CouchDB database only")
	}
	open := couchOpener(t)
	f := newFiles(t)
	u := f.serve("/app.zip", "application/zip", procfileApp(t, startedProcfile))
	dirA, dirB := t.TempDir(), t.TempDir()
	body := func(node string) map[string]any {
		return map[string]any{"app": "shared", "node": node, "source_url": u, "process_type": "web"}
	}
	var locA, locB string
	var pids []int
	t.Run("first", func(t *testing.T) {
		a := startNode(t, open(t), nodeOptions{runDir: dirA, server: "a", follow: true})
		b := startNode(t, open(t), nodeOptions{runDir: dirB, server: "b", follow: true})
		expect(t, a.create(body("web.0")), http.StatusCreated)
		locA = a.prov.Lookup("shared.web.0")
		at := a.waitLoc(locA, "running", 0)
		pid := int(at["pid"].(float64))
		pids = append(pids, pid)
		if at["server"] != "a" || !inRunDir(dirA, locA) {
			t.Fatalf("created through a: %v (running in a's directory: %v)", at, inRunDir(dirA, locA))
		}
		if len(b.prov.Slugs()) != 0 || len(inDir(dirB)) != 0 {
			t.Fatalf("b runs %v: %v", b.prov.Slugs(), inDir(dirB))
		}

		// The slug is taken on b too, over the agent API and OCCI.
		if r := b.create(body("web.0")); r.status != http.StatusConflict || !strings.Contains(r.body, "shared.web.0") {
			t.Fatalf("the same slug through b: %d %s", r.status, r.body)
		}
		if r := b.occiCreate(t, body("web.0")); r.status != http.StatusConflict {
			t.Fatalf("the same slug through b over OCCI: %d %s", r.status, r.body)
		}
		// b answers for it, but its console is a's.
		st := expect(t, b.do("GET", b.agent()+"/process-status/shared.web.0", ""), http.StatusOK).json(t)
		if st["slug"] != "shared.web.0" {
			t.Fatalf("status through b: %v", st)
		}
		if r := b.do("GET", locA+"/console", ""); r.status != http.StatusMisdirectedRequest || !strings.Contains(r.body, "server a") {
			t.Fatalf("console through b: %d %s", r.status, r.body)
		}
		if r := b.do("GET", b.agent()+"/attach-console/shared.web.0", ""); r.status != http.StatusMisdirectedRequest {
			t.Fatalf("attach-console through b: %d %s", r.status, r.body)
		}

		// The bus agent's view through b (smartmob Choria agent).
		if st, err := b.prov.ProcessStatus(context.Background(), "shared.web.0"); err != nil || st["location"] != locA || st["server"] != "a" {
			t.Fatalf("ProcessStatus through b: %v, %v", st, err)
		}

		// stop through b: a stops it.
		if st := b.action(t, locA, "stop"); st["desired"] != "stopped" || st["server"] != "a" || st["env"] != nil || st["source_url"] != nil {
			t.Fatalf("stop through b answered %v", st)
		}
		asked := time.Now()
		if !groupGone(pid) {
			t.Fatalf("process group %d survived a stop through b", pid)
		}
		t.Logf("stop through b: a's process group gone %v after the answer (for information)", time.Since(asked))
		if at := b.waitLoc(locA, "stopped", 0); at["desired"] != "stopped" {
			t.Fatalf("after a stop through b: %v", at)
		}
		// start through b: a runs it again.
		if st := b.action(t, locA, "start"); st["desired"] != "running" {
			t.Fatalf("start through b answered %v", st)
		}
		asked = time.Now()
		pid2 := int(b.waitLoc(locA, "running", pid)["pid"].(float64))
		t.Logf("start through b: running on a, seen through b, %v after the answer (for information)", time.Since(asked))
		pids = append(pids, pid2)
		if !alive(pid2) || !inRunDir(dirA, locA) || len(inDir(dirB)) != 0 {
			t.Fatalf("after a start through b: pid %d alive %v, in a's directory %v, in b's %v", pid2, alive(pid2), inRunDir(dirA, locA), inDir(dirB))
		}
		// restart through b: a restarts it.
		b.action(t, locA, "restart")
		pid3 := int(b.waitLoc(locA, "running", pid2)["pid"].(float64))
		pids = append(pids, pid3)
		if !groupGone(pid2) || !inRunDir(dirA, locA) {
			t.Fatalf("after a restart through b: old group %d gone %v, new pid %d in a's directory %v", pid2, groupGone(pid2), pid3, inRunDir(dirA, locA))
		}
		// b's own process runs on b.
		expect(t, b.create(body("web.1")), http.StatusCreated)
		locB = b.prov.Lookup("shared.web.1")
		if at := b.waitLoc(locB, "running", 0); at["server"] != "b" || !inRunDir(dirB, locB) {
			t.Fatalf("created through b: %v", at)
		}
		if got := a.prov.Slugs(); !slices.Equal(got, []string{"shared.web.0"}) {
			t.Fatalf("a runs %v", got)
		}
	})
	if t.Failed() {
		return
	}
	for _, pid := range pids {
		if !groupGone(pid) {
			t.Fatalf("process group %d survived its server", pid)
		}
	}

	// a is down: b restores its own process only, and a stop through b
	// is written for a to find when it starts.
	t.Run("a down", func(t *testing.T) {
		b := startNode(t, open(t), nodeOptions{runDir: dirB, server: "b", follow: true})
		if gb := b.prov.Slugs(); !slices.Equal(gb, []string{"shared.web.1"}) {
			t.Fatalf("b alone runs %v", gb)
		}
		b.waitLoc(locB, "running", 0)
		if st := b.action(t, locA, "stop"); st["desired"] != "stopped" {
			t.Fatalf("stop through b while a is down answered %v", st)
		}
		if inRunDir(dirB, locA) {
			t.Fatalf("b runs a's process: %v", inDir(dirB))
		}
	})
	if t.Failed() {
		return
	}

	// Both restarted: each restores its own process, and only it; a's
	// stays stopped, as asked while a was down.
	a := startNode(t, open(t), nodeOptions{runDir: dirA, server: "a", follow: true})
	b := startNode(t, open(t), nodeOptions{runDir: dirB, server: "b", follow: true})
	if ga, gb := a.prov.Slugs(), b.prov.Slugs(); !slices.Equal(ga, []string{"shared.web.0"}) || !slices.Equal(gb, []string{"shared.web.1"}) {
		t.Fatalf("after the restart a runs %v, b runs %v", ga, gb)
	}
	b.waitLoc(locB, "running", 0)
	if at := a.waitLoc(locA, "stopped", 0); at["desired"] != "stopped" || inRunDir(dirA, locA) {
		t.Fatalf("a's process stopped while a was down, after a's restart: %v (running: %v)", at, inRunDir(dirA, locA))
	}
	b.action(t, locA, "start")
	pidA := int(b.waitLoc(locA, "running", 0)["pid"].(float64))
	if !inRunDir(dirA, locA) || !inRunDir(dirB, locB) || inRunDir(dirB, locA) || inRunDir(dirA, locB) {
		t.Fatalf("after the restart: %v in a's directory, %v in b's", inDir(dirA), inDir(dirB))
	}

	// DELETE through b: a stops the process and removes its directory,
	// and the slug is free again.
	if r := b.do("DELETE", locA, ""); r.status >= 300 {
		t.Fatalf("DELETE through b: %d %s", r.status, r.body)
	}
	if !groupGone(pidA) {
		t.Fatalf("process group %d survived a DELETE through b", pidA)
	}
	until(t, "a forgets the deleted process", func() bool {
		_, err := os.Stat(filepath.Join(dirA, "smartmob", filepath.Base(locA)))
		return a.prov.Lookup("shared.web.0") == "" && os.IsNotExist(err)
	})
	expect(t, b.create(body("web.0")), http.StatusCreated)
	loc := b.prov.Lookup("shared.web.0")
	if at := b.waitLoc(loc, "running", 0); at["server"] != "b" || !inRunDir(dirB, loc) {
		t.Fatalf("the freed slug created through b: %v", at)
	}
}

// A slug reservation left behind by a server stopped between deleting a
// process and freeing its slug names a location that no longer exists:
// the next create of the slug takes it over. One naming a live process
// is a 409.
func TestSlugReservationLeftBehind(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		st := open(t)
		f := newFiles(t)
		u := f.serve("/app.zip", "application/zip", procfileApp(t, startedProcfile))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := st.Put(ctx, store.Document{ID: "smartmob-slug:left.web", Body: json.RawMessage(`{"location":"/smartmob/process/gone","server":"x"}`)}); err != nil {
			t.Fatal(err)
		}
		n := startNode(t, st, nodeOptions{})
		expect(t, n.create(map[string]any{"app": "left", "node": "web", "source_url": u, "process_type": "web"}), http.StatusCreated)
		loc := n.prov.Lookup("left.web")
		n.waitLoc(loc, "running", 0)
		doc, err := st.Get(ctx, "smartmob-slug:left.web")
		if err != nil || !strings.Contains(string(doc.Body), loc) {
			t.Fatalf("the reservation after the create: %s, %v", doc.Body, err)
		}
		// Held by a live process: 409, and the reservation is untouched.
		if _, err := st.Put(ctx, store.Document{ID: "smartmob-slug:taken.web", Body: json.RawMessage(`{"location":"` + loc + `","server":"x"}`)}); err != nil {
			t.Fatal(err)
		}
		if r := n.create(map[string]any{"app": "taken", "node": "web", "source_url": u, "process_type": "web"}); r.status != http.StatusConflict || !strings.Contains(r.body, loc) {
			t.Fatalf("a slug held by a live process: %d %s", r.status, r.body)
		}
		// Deleted: the reservation goes with the process.
		expect(t, n.do("POST", n.agent()+"/delete-process/left.web", ""), http.StatusOK)
		if _, err := st.Get(ctx, "smartmob-slug:left.web"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the reservation after the deletion: %v", err)
		}
	})
}
