package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmbs/cmbs/console"
	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/store"
	"go.uber.org/goleak"
)

// couchServer is this test binary's CouchDB (the peer, or COUCHDB_URL).
var couchServer *couchpeer.Server

func TestMain(m *testing.M) {
	code := couchpeer.Run(m, &couchServer)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// stores are the stores the event tests run on; only the one
// CMBS_TEST_STORE names when it is set.
func eachStore(t *testing.T, fn func(t *testing.T, st store.Store)) {
	only := os.Getenv(testserver.EnvStore)
	for _, s := range []struct {
		name string
		open func(t *testing.T) store.Store
	}{
		{"sqlite", func(t *testing.T) store.Store { return testserver.OpenSQLite(t) }},
		{"couchdb", func(t *testing.T) store.Store { return testserver.OpenCouch(t, couchServer.URL(t)) }},
	} {
		if only != "" && s.name != only {
			continue
		}
		t.Run(s.name, func(t *testing.T) { fn(t, s.open(t)) })
	}
}

// startConsole starts a test server with the console mounted and
// following st; the console stops before the server closes.
func startConsole(t *testing.T, st store.Store) *testserver.Server {
	t.Helper()
	var c *console.Console
	srv := testserver.Start(t, testserver.Options{Store: st, Wrap: func(_ *occi.Server, next http.Handler) http.Handler {
		c = console.New(console.Options{Feed: st, PollWait: 2 * time.Second})
		return c.Mount(next)
	}})
	c.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop console: %v", err)
		}
	})
	return srv
}

// openEvents opens the console's event stream on the server at base;
// the caller closes the body.
func openEvents(t *testing.T, ctx context.Context, base string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+console.EventsPath, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

const counterKind = `{"kinds":[{"term":"counter","scheme":"http://example.org/console#","title":"Counter","location":"/counter/",
  "attributes":{"test":{"counter":{"value":{"type":"number","mutable":true,"required":true}}}}}]}`

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	c, b := testserver.Request(t, 10*time.Second, method, url, []byte(body))
	return c, string(b)
}

func createCounter(t *testing.T, base, path string) {
	t.Helper()
	if c, b := do(t, "POST", base+"/-/", counterKind); c != http.StatusOK {
		t.Fatalf("POST /-/: %d %s", c, b)
	}
	if c, b := do(t, "PUT", base+path, `{"resources":[{"kind":"http://example.org/console#counter","attributes":{"test":{"counter":{"value":1}}}}]}`); c != http.StatusCreated {
		t.Fatalf("PUT %s: %d %s", path, c, b)
	}
}

// TestEventsStreamEntityChanges: a client of /console/events gets the
// creation and deletion of an entity as "change" events, on both stores.
func TestEventsStreamEntityChanges(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		srv := startConsole(t, st)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		resp := openEvents(t, ctx, srv.URL)
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
			t.Fatalf("GET %s: %d %s", console.EventsPath, resp.StatusCode, ct)
		}
		lines := bufio.NewScanner(resp.Body)
		if !lines.Scan() { // "retry: …": the stream is subscribed once the first bytes arrive
			t.Fatalf("stream ended before its first line: %v", lines.Err())
		}

		// The store's changes feed gives each document once, in its latest
		// state: a create and a delete made between two reads of the feed
		// come as the delete alone. So the delete waits for the create's
		// event.
		next := func() (id string, deleted bool) {
			for lines.Scan() {
				data, ok := strings.CutPrefix(lines.Text(), "data: ")
				if !ok {
					continue
				}
				var e struct {
					ID      string `json:"id"`
					Deleted bool   `json:"deleted"`
				}
				if err := json.Unmarshal([]byte(data), &e); err != nil {
					t.Fatalf("event %q: %v", data, err)
				}
				return e.ID, e.Deleted
			}
			t.Fatalf("the event stream ended: %v", lines.Err())
			return "", false
		}
		createCounter(t, srv.URL, "/counter/c1")
		for id, deleted := next(); id != "/counter/c1" || deleted; id, deleted = next() {
		}
		if c, b := do(t, "DELETE", srv.URL+"/counter/c1", ""); c/100 != 2 {
			t.Fatalf("DELETE: %d %s", c, b)
		}
		for id, deleted := next(); id != "/counter/c1" || !deleted; id, deleted = next() {
		}
	})
}

// TestStaticPages: the pages are served from the binary, refer to nothing
// outside this server, and the console refuses writes.
func TestStaticPages(t *testing.T) {
	srv := startConsole(t, testserver.OpenSQLite(t))
	for _, p := range []string{"/console/", "/console/app.js", "/console/style.css"} {
		c, b := do(t, "GET", srv.URL+p, "")
		if c != http.StatusOK || len(b) < 100 {
			t.Errorf("GET %s: %d (%d bytes)", p, c, len(b))
		}
		for _, ext := range []string{`src="http`, `href="http`, `url(http`, "cdn", `fetch("http`} {
			if strings.Contains(strings.ToLower(b), strings.ToLower(ext)) {
				t.Errorf("%s refers outside the server (%s)", p, ext)
			}
		}
	}
	if c, _ := do(t, "POST", srv.URL+"/console/", "x"); c != http.StatusMethodNotAllowed {
		t.Errorf("POST /console/: %d, want 405", c)
	}
	// The API is still there beside it.
	if c, b := do(t, "GET", srv.URL+"/-/", ""); c != http.StatusOK {
		t.Errorf("GET /-/: %d %s", c, b)
	}
}

// TestEventsEndWhenConsoleStops: an open stream ends when the console
// stops, so a server shutting down is not held by browsers.
func TestEventsEndWhenConsoleStops(t *testing.T) {
	st := testserver.OpenSQLite(t)
	c := console.New(console.Options{Feed: st, PollWait: time.Second})
	srv := testserver.Start(t, testserver.Options{Store: st, Wrap: func(_ *occi.Server, next http.Handler) http.Handler { return c.Mount(next) }})
	c.Start(context.Background())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp := openEvents(t, ctx, srv.URL)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", console.EventsPath, resp.StatusCode)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("stream before Stop: %v", err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("stream after Stop: %v", err)
	}
	if c, _ := do(t, "GET", srv.URL+console.EventsPath, ""); c != http.StatusServiceUnavailable {
		t.Errorf("GET events after Stop: %d, want 503", c)
	}
}

// countingFeed counts the changes requests made of a store.
type countingFeed struct {
	store.Store
	mu    sync.Mutex
	calls int
}

func (f *countingFeed) Changes(ctx context.Context, opts store.ChangesOptions) ([]store.Change, string, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	return f.Store.Changes(ctx, opts)
}

func (f *countingFeed) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestNoFeedWithoutListeners: the console asks the store nothing while no
// browser follows the events, and does once one does.
func TestNoFeedWithoutListeners(t *testing.T) {
	st := testserver.OpenSQLite(t)
	feed := &countingFeed{Store: st}
	c := console.New(console.Options{Feed: feed, PollWait: time.Second})
	srv := testserver.Start(t, testserver.Options{Store: st, Wrap: func(_ *occi.Server, next http.Handler) http.Handler { return c.Mount(next) }})
	c.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop console: %v", err)
		}
	})
	createCounter(t, srv.URL, "/counter/unwatched")
	if n := feed.count(); n != 0 {
		t.Fatalf("%d changes requests with nobody listening", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp := openEvents(t, ctx, srv.URL)
	defer resp.Body.Close()
	// The stream opens once the console has its position in the feed.
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if n := feed.count(); n == 0 {
		t.Fatal("no changes request with a listener")
	}
}

// flakyFeed is a real store whose changes feed can be lost, as a broken
// connection to CouchDB would be: while down, every changes request fails,
// the one in progress too (with what it had read).
type flakyFeed struct {
	store.Store
	down   atomic.Bool
	failed atomic.Int64
}

func (f *flakyFeed) Changes(ctx context.Context, opts store.ChangesOptions) ([]store.Change, string, error) {
	if !f.down.Load() {
		changes, last, err := f.Store.Changes(ctx, opts)
		if !f.down.Load() {
			return changes, last, err
		}
	}
	f.failed.Add(1)
	return nil, "", fmt.Errorf("console test: feed lost: %w", store.ErrUnavailable)
}

// TestEventsResumeAfterLostFeed: a change made while the changes feed is
// lost reaches an open event stream once the feed is back: the console
// reads again from the last sequence it had, on both stores.
func TestEventsResumeAfterLostFeed(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		flaky := &flakyFeed{Store: st}
		c := console.New(console.Options{Feed: flaky, PollWait: 2 * time.Second})
		srv := testserver.Start(t, testserver.Options{Store: st, Wrap: func(_ *occi.Server, next http.Handler) http.Handler { return c.Mount(next) }})
		c.Start(context.Background())
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Stop(ctx); err != nil {
				t.Errorf("stop console: %v", err)
			}
		})
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		resp := openEvents(t, ctx, srv.URL)
		defer resp.Body.Close()
		lines := bufio.NewScanner(resp.Body)
		if !lines.Scan() {
			t.Fatalf("stream ended before its first line: %v", lines.Err())
		}

		flaky.down.Store(true)
		createCounter(t, srv.URL, "/counter/while-lost")
		// The feed is down until the console has failed to read it (the
		// long poll in progress, then a retry).
		for flaky.failed.Load() < 2 {
			select {
			case <-ctx.Done():
				t.Fatal("the console never read the feed while it was down")
			case <-time.After(10 * time.Millisecond):
			}
		}
		flaky.down.Store(false)
		for lines.Scan() {
			if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok && strings.Contains(data, `"/counter/while-lost"`) {
				return
			}
		}
		t.Fatalf("no event for /counter/while-lost after the feed came back (%v; %d failed reads)", lines.Err(), flaky.failed.Load())
	})
}
