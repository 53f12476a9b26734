package smartmob_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/procgroup"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process/supervisor"
	"github.com/cmbs/cmbs/providers/smartmob"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/feed"
)

// couchServer is this test binary's CouchDB (the peer, or COUCHDB_URL).
var couchServer *couchpeer.Server

func TestMain(m *testing.M) { os.Exit(testserver.RunWithPeer(m, &couchServer)) }

// storeKinds are the stores the end-to-end tests run on; each returns an
// opener that opens the same store again (for restarts).
func storeKinds() []testserver.ReopenableStore {
	return testserver.ReopenableStores(couchServer.URL)
}

// eachStore runs fn once per store as subtests (only the one
// CMBS_TEST_STORE names, when set).
func eachStore(t *testing.T, fn func(t *testing.T, open func(t *testing.T) store.Store)) {
	testserver.EachReopenableStore(t, couchServer.URL, fn)
}

// files is a loopback HTTP server for archives; it records the
// X-Request-Id of every GET.
type files struct {
	srv *httptest.Server
	mu  sync.Mutex
	ct  map[string]string
	raw map[string][]byte
	ids map[string][]string
}

func newFiles(t *testing.T) *files {
	f := &files{ct: map[string]string{}, raw: map[string][]byte{}, ids: map[string][]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.ids[r.URL.Path] = append(f.ids[r.URL.Path], r.Header.Get("X-Request-Id"))
		body, ok := f.raw[r.URL.Path]
		ct := f.ct[r.URL.Path]
		f.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write(body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// serve publishes body at path with content type ct and returns its URL.
func (f *files) serve(path, ct string, body []byte) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.raw[path], f.ct[path] = body, ct
	return f.srv.URL + path
}

func (f *files) requestIDs(path string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ids[path]...)
}

// zipOf builds a zip archive of files (name → content).
func zipOf(t testing.TB, files map[string]string) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, name := range sortedKeys(files) {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// tarEntry is one member of a test tar.
type tarEntry struct {
	name, body, link string
	typ              byte
}

// tarOf builds a tar (gzip-compressed when gz) of entries.
func tarOf(t testing.TB, gz bool, entries ...tarEntry) []byte {
	var b bytes.Buffer
	var w io.Writer = &b
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&b)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// node is a running server with the smartmob provider, its console and
// the smartmob-agent API, on one supervisor; it records every pid it saw
// so that the test can check no process survives it.
type node struct {
	t      *testing.T
	url    string
	prov   *smartmob.Provider
	sup    *supervisor.Supervisor
	runDir string
	srv    *testserver.Server

	mu   sync.Mutex
	pids map[int]bool
}

type nodeOptions struct {
	runDir string
	events smartmob.Publisher
	// server names the node (smartmob.Options.Server); "" = the default.
	server string
	// follow: the provider follows the store's changes feed, as cmbsd
	// does on CouchDB.
	follow bool
}

// startNode starts a node on st (nil: a fresh embedded store). Its
// processes are stopped by the server's teardown, then the test checks
// that no process group it saw has a live member.
func startNode(t *testing.T, st store.Store, o nodeOptions) *node {
	t.Helper()
	if o.runDir == "" {
		o.runDir = t.TempDir()
	}
	n := &node{t: t, runDir: o.runDir, pids: map[int]bool{}}
	n.sup = supervisor.New(supervisor.Options{KillGrace: 2 * time.Second})
	// Registered first, so it runs last: after the server stopped.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.sup.Close(ctx); err != nil {
			t.Errorf("close the supervisor: %v", err)
		}
		n.noneLeft()
	})
	if st == nil {
		st = testserver.OpenDefault(t)
	}
	var follower *feed.Follower
	if o.follow {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		f, err := feed.New(ctx, st, feed.Options{})
		if err != nil {
			_ = st.Close()
			t.Fatal(err)
		}
		follower = f
	}
	n.srv = testserver.Start(t, testserver.Options{
		Store: st,
		Register: func(reg *providers.Registry, srv *occi.Server) error {
			n.prov = smartmob.New(srv.Entities(), smartmob.Options{Supervisor: n.sup, RunDir: o.runDir, Events: o.events,
				Server: o.server, Slugs: st})
			return n.prov.Register(reg)
		},
		Wrap: func(srv *occi.Server, next http.Handler) http.Handler {
			agent := smartmob.NewAgent(n.prov, smartmob.AgentOptions{})
			console := n.prov.ConsoleHandler()
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, smartmob.AgentPrefix) {
					agent.ServeHTTP(w, r)
					return
				}
				if _, ok := smartmob.ConsoleProcess(r.URL.Path); ok {
					console.ServeHTTP(w, r)
					return
				}
				next.ServeHTTP(w, r)
			})
		},
	})
	n.url = n.srv.URL
	if follower != nil {
		follower.Add("smartmob", n.prov.ApplyChanges)
		if err := follower.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		// Registered after the server: stopped before it.
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := follower.Stop(ctx); err != nil {
				t.Errorf("stop the follower: %v", err)
			}
		})
	}
	return n
}

// saw records a pid the test observed.
func (n *node) saw(pid int) {
	if pid <= 0 {
		return
	}
	n.mu.Lock()
	n.pids[pid] = true
	n.mu.Unlock()
}

// noneLeft checks that no process group the test saw has a live member,
// and that no process runs in the node's run directory (every smartmob
// process's working directory is inside it).
func (n *node) noneLeft() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	for pid := range n.pids {
		if !groupGone(pid) {
			n.t.Errorf("process group %d still has %d live processes", pid, procgroup.Members(pid))
		}
	}
	deadline := time.Now().Add(7 * time.Second)
	for {
		left := inDir(n.runDir)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			n.t.Errorf("processes still running in %s: %v", n.runDir, left)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inDir lists the live processes whose working directory is in dir.
func inDir(dir string) []string {
	cwds, _ := filepath.Glob("/proc/[0-9]*/cwd")
	var out []string
	for _, c := range cwds {
		target, err := os.Readlink(c)
		if err != nil || (target != dir && !strings.HasPrefix(target, dir+"/")) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(filepath.Dir(c), "stat"))
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			continue // a zombie, waiting for its parent
		}
		out = append(out, filepath.Base(filepath.Dir(c))+" in "+target)
	}
	return out
}

// groupGone waits (bounded: the kill grace and a margin) until process
// group pgid has no live process.
func groupGone(pgid int) bool {
	deadline := time.Now().Add(7 * time.Second)
	for procgroup.Members(pgid) != 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %s", r.status, err, r.body)
	}
	return m
}

// do sends a request (header: name, value pairs).
func (n *node) do(method, path, body string, header ...string) reply {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := path
	if !strings.HasPrefix(path, "http") {
		url = n.url + path
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		n.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func expect(t testing.TB, r reply, status int) reply {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// agent is the smartmob-agent API's base URL.
func (n *node) agent() string { return n.url + "/smartmob-agent" }

// create posts a create-process request and returns the reply.
func (n *node) create(body map[string]any, header ...string) reply {
	b, _ := json.Marshal(body)
	return n.do("POST", n.agent()+"/create-process", string(b), append([]string{"Content-Type", "application/json"}, header...)...)
}

// occiProcess returns the OCCI entity of the process with slug (its
// smartmob.process attributes and location), failing when there is none.
func (n *node) occiProcess(slug string) (string, map[string]any) {
	n.t.Helper()
	loc := n.prov.Lookup(slug)
	if loc == "" {
		n.t.Fatalf("no process %s", slug)
	}
	r := expect(n.t, n.do("GET", loc, "", "Accept", "application/occi+json"), http.StatusOK)
	a := attrsOf(r.json(n.t))
	if pid, ok := a["pid"].(float64); ok {
		n.saw(int(pid))
	}
	return loc, a
}

func attrsOf(e map[string]any) map[string]any {
	a, _ := e["attributes"].(map[string]any)
	sm, _ := a["smartmob"].(map[string]any)
	p, _ := sm["process"].(map[string]any)
	return p
}

// waitState waits (bounded by within) until the process's state is want,
// and returns its attributes.
func (n *node) waitState(slug, want string, within time.Duration) map[string]any {
	n.t.Helper()
	deadline := time.Now().Add(within)
	var a map[string]any
	for {
		_, a = n.occiProcess(slug)
		if a["state"] == want && (want != "running" || a["pid"].(float64) > 0) {
			return a
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("process %s: state %v after %v, want %q (%v)", slug, a["state"], within, want, a)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consoleClient is a real WebSocket client on a console.
type consoleClient struct {
	t    *testing.T
	conn *websocket.Conn
}

// dial opens a WebSocket on url (ws://…).
func dial(t *testing.T, url string) *consoleClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &consoleClient{t: t, conn: c}
}

// until reads lines (for at most within) until one equals want, and
// returns the lines read.
func (c *consoleClient) until(want string, within time.Duration) []string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
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
		if string(b) == want {
			return lines
		}
	}
}

// read reads lines for d (or until the connection ends).
func (c *consoleClient) read(d time.Duration) []string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var lines []string
	for {
		_, b, err := c.conn.Read(ctx)
		if err != nil {
			return lines
		}
		lines = append(lines, string(b))
	}
}

// wsURL turns an http URL into a ws one.
func wsURL(u string) string { return "ws" + strings.TrimPrefix(u, "http") }

// procfileApp is a zip with a Procfile and optional other files.
func procfileApp(t testing.TB, procfile string, more ...string) []byte {
	files := map[string]string{"Procfile": procfile, "requirements.txt": ""}
	for i := 0; i+1 < len(more); i += 2 {
		files[more[i]] = more[i+1]
	}
	return zipOf(t, files)
}
