// Package testserver starts real cmbs OCCI servers for tests, the way
// nats-server's tests start real servers: on 127.0.0.1 with a random port and
// a store of their own, torn down by t.Cleanup.
package testserver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/couch"
	"github.com/cmbs/cmbs/store/sqlite"
)

// Options configures a test server.
type Options struct {
	// Store to serve from; nil opens the store EnvStore selects (by default
	// a fresh embedded store in t.TempDir()).
	// The server closes it on cleanup either way.
	Store store.Store
	// Register adds providers before the server starts serving.
	Register func(reg *providers.Registry, srv *occi.Server) error
	// PublicURL is passed to the server.
	PublicURL string
	// MaxBodyBytes is passed to the server.
	MaxBodyBytes int64
	// BodyIdleTimeout is passed to the server.
	BodyIdleTimeout time.Duration
	// ListBatch is passed to the server.
	ListBatch int
	// Wrap, when set, builds the handler served from the OCCI server's
	// (to mount other handlers beside it, or add middleware).
	Wrap func(srv *occi.Server, next http.Handler) http.Handler
}

// Server is a running test server.
type Server struct {
	// URL is the base URL, e.g. "http://127.0.0.1:41234".
	URL       string
	OCCI      *occi.Server
	Store     store.Store
	Providers *providers.Registry
}

// EnvStore selects the store servers get when Options.Store is nil:
// "sqlite" (the default) or "couchdb" (a fresh database on COUCHDB_URL's
// server, or on a CouchDB-API test peer started for the test). The test
// script runs the OCCI suite once with each.
const EnvStore = "CMBS_TEST_STORE"

// OpenDefault opens the store EnvStore selects.
func OpenDefault(t testing.TB) store.Store {
	t.Helper()
	switch kind := os.Getenv(EnvStore); kind {
	case "", "sqlite":
		return OpenSQLite(t)
	case "couchdb":
		return OpenCouch(t, couchpeer.URLForTest(t))
	default:
		t.Fatalf("%s=%q: want sqlite or couchdb", EnvStore, kind)
		return nil
	}
}

// OpenCouch opens a store on a fresh database of the CouchDB at url; the
// database is deleted when t ends.
func OpenCouch(t testing.TB, url string) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := couch.Open(ctx, url, couchpeer.DBForTest(t, url))
	if err != nil {
		t.Fatalf("open CouchDB store: %v", err)
	}
	return st
}

// OpenSQLite opens a fresh embedded store in a temporary directory.
func OpenSQLite(t testing.TB) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "cmbs.db"), sqlite.WithUnindexed(cmbs.UnindexedPaths...), sqlite.WithUnsearched(process.UnindexedPaths...))
	if err != nil {
		t.Fatalf("open embedded store: %v", err)
	}
	return st
}

// Start starts a server and registers its teardown with t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := opts.Store
	if st == nil {
		st = OpenDefault(t)
	}
	reg := providers.NewRegistry()
	srv, err := occi.NewServer(ctx, occi.Options{Store: st, Providers: reg, PublicURL: opts.PublicURL, MaxBodyBytes: opts.MaxBodyBytes, BodyIdleTimeout: opts.BodyIdleTimeout, ListBatch: opts.ListBatch})
	if err != nil {
		_ = st.Close()
		t.Fatalf("new server: %v", err)
	}
	if opts.Register != nil {
		if err := opts.Register(reg, srv); err != nil {
			_ = st.Close()
			t.Fatalf("register providers: %v", err)
		}
	}
	if err := reg.Start(ctx); err != nil {
		_ = st.Close()
		t.Fatalf("start providers: %v", err)
	}
	handler := srv.Handler()
	if opts.Wrap != nil {
		handler = opts.Wrap(srv, handler)
	}
	hs := httptest.NewServer(handler)
	t.Cleanup(func() {
		hs.Close()
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := reg.Stop(stopCtx); err != nil {
			t.Errorf("stop providers: %v", err)
		}
		if err := srv.Entities().Flush(stopCtx); err != nil {
			t.Errorf("flush deferred updates: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return &Server{URL: hs.URL, OCCI: srv, Store: st, Providers: reg}
}

// ReopenableStore is a store tests run on by name; Fresh makes a new one
// and returns an opener that opens that same store again, for tests that
// restart a server on what an earlier one stored.
type ReopenableStore struct {
	Name  string
	Fresh func(t *testing.T) func(t *testing.T) store.Store
}

// ReopenableStores are the embedded store and a CouchDB database on the
// server couchURL names (a test binary's CouchDB-API peer).
func ReopenableStores(couchURL func(t testing.TB) string) []ReopenableStore {
	return []ReopenableStore{
		{"sqlite", func(t *testing.T) func(t *testing.T) store.Store {
			path := filepath.Join(t.TempDir(), "cmbs.db")
			return func(t *testing.T) store.Store {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				st, err := sqlite.Open(ctx, path, sqlite.WithUnindexed(cmbs.UnindexedPaths...), sqlite.WithUnsearched(process.UnindexedPaths...))
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
		}},
		{"couchdb", func(t *testing.T) func(t *testing.T) store.Store {
			url := couchURL(t)
			db := couchpeer.DBForTest(t, url)
			return func(t *testing.T) store.Store {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				st, err := couch.Open(ctx, url, db)
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
		}},
	}
}

// EachReopenableStore runs fn once per ReopenableStores entry, as subtests
// (only the one EnvStore names, when set).
func EachReopenableStore(t *testing.T, couchURL func(t testing.TB) string, fn func(t *testing.T, open func(t *testing.T) store.Store)) {
	only := os.Getenv(EnvStore)
	for _, s := range ReopenableStores(couchURL) {
		if only != "" && s.Name != only {
			continue
		}
		t.Run(s.Name, func(t *testing.T) { fn(t, s.Fresh(t)) })
	}
}

// RunWithPeer runs a test binary's tests with a CouchDB-API peer for it
// (couchpeer.Run, which sets *srv), then, when they passed, fails the
// binary if any goroutine is left (HTTP keep-alive connections aside).
func RunWithPeer(m *testing.M, srv **couchpeer.Server) int {
	code := couchpeer.Run(m, srv)
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	return code
}
