package process_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/occi/basicauth"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process"
	"github.com/cmbs/cmbs/store"
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

// node is a running server with the process provider and the registry
// API, and a client for it.
type node struct {
	t    testing.TB
	url  string
	user string
	pass string
	prov *process.Provider
}

type nodeOptions struct {
	users     string // users file content; "" = no authentication
	maxOutput int64
	maxRecord int64         // Options.MaxRecordOutput
	maxBody   int64         // testserver.Options.MaxBodyBytes
	idle      time.Duration // testserver.Options.BodyIdleTimeout
	events    process.Events
}

func startNode(t *testing.T, st store.Store, o nodeOptions) *node {
	t.Helper()
	n := &node{t: t}
	var users *basicauth.Users
	if o.users != "" {
		path := filepath.Join(t.TempDir(), "users")
		if err := os.WriteFile(path, []byte(o.users), 0o600); err != nil {
			t.Fatal(err)
		}
		var err error
		if users, err = basicauth.Load(path); err != nil {
			t.Fatal(err)
		}
	}
	srv := testserver.Start(t, testserver.Options{
		Store: st, MaxBodyBytes: o.maxBody, BodyIdleTimeout: o.idle,
		Register: func(reg *providers.Registry, srv *occi.Server) error {
			n.prov = process.New(srv.Entities(), process.Options{MaxOutput: o.maxOutput, MaxRecordOutput: o.maxRecord, KillGrace: 500 * time.Millisecond, Events: o.events})
			return n.prov.Register(reg)
		},
		Wrap: func(srv *occi.Server, next http.Handler) http.Handler {
			mux := http.NewServeMux()
			mux.Handle(process.APIPrefix, process.NewFacade(srv.Entities(), process.FacadeOptions{}))
			console := n.prov.ConsoleHandler()
			mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, ok := process.ConsoleExecution(r.URL.Path); ok {
					console.ServeHTTP(w, r)
					return
				}
				next.ServeHTTP(w, r)
			}))
			if users != nil {
				return users.Middleware(mux)
			}
			return mux
		},
	})
	n.url = srv.URL
	return n
}

func (n *node) as(user, pass string) *node {
	c := *n
	c.user, c.pass = user, pass
	return &c
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
		t.Fatalf("reply %d %q is not a JSON object: %v", r.status, r.body, err)
	}
	return m
}

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
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if n.user != "" {
		req.SetBasicAuth(n.user, n.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

// expect checks the status of a reply.
func expect(t testing.TB, r reply, status int) reply {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	return r
}

// createDefinition posts a definition document to /process/definition/ and
// returns its location (a path).
func (n *node) createDefinition(def string) string {
	n.t.Helper()
	r := expect(n.t, n.do("POST", "/process/definition/", `{"kind":"http://cmbs.dev/occi/process#definition","attributes":{"process":{"definition":`+def+`}}}`,
		"Accept", "application/occi+json", "Content-Type", "application/occi+json"), http.StatusCreated)
	loc := r.header.Get("Location")
	if i := strings.Index(loc, "/process/"); i >= 0 {
		return loc[i:]
	}
	n.t.Fatalf("location %q", loc)
	return ""
}

// execute runs execute on a definition with those action attributes and
// returns the result.
func (n *node) execute(loc string, attrs map[string]any) map[string]any {
	n.t.Helper()
	b, _ := json.Marshal(map[string]any{"attributes": attrs})
	r := expect(n.t, n.do("POST", loc+"?action=execute", string(b), "Accept", "application/occi+json", "Content-Type", "application/occi+json"), http.StatusOK)
	return r.json(n.t)
}

// entity GETs an entity in pyOCNI JSON.
func (n *node) entity(loc string) map[string]any {
	n.t.Helper()
	return expect(n.t, n.do("GET", loc, "", "Accept", "application/occi+json"), http.StatusOK).json(n.t)
}

// path walks nested objects.
func path(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func jsonObject(b []byte) (map[string]any, error) {
	var m map[string]any
	err := json.Unmarshal(b, &m)
	return m, err
}
