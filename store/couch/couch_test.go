package couch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/couch"
	"github.com/cmbs/cmbs/store/storetest"
)

// couchServer is the CouchDB of this test binary (see internal/couchpeer).
var couchServer *couchpeer.Server

func TestMain(m *testing.M) {
	couchServer = couchpeer.StartServer(context.Background())
	code := m.Run()
	if err := couchServer.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	if p := couchServer.Peer(); p != nil {
		if err := syscall.Kill(p.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
			fmt.Fprintf(os.Stderr, "couch peer %d outlived the tests (kill -0: %v)\n", p.Pid(), err)
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// openFresh opens a store on a database of its own, removed after t.
func openFresh(t testing.TB) *couch.Store {
	t.Helper()
	base := couchServer.URL(t)
	return openAt(t, base, couchpeer.DBForTest(t, base))
}

func openAt(t testing.TB, base, db string) *couch.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := couch.Open(ctx, base, db)
	if err != nil {
		t.Fatalf("Open(%s, %s): %v", base, db, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	couchServer.URL(t) // skip (or fail) once, not in every case
	storetest.Run(t, func(t *testing.T) store.Store { return openFresh(t) })
}

func TestOpen(t *testing.T) {
	base := couchServer.URL(t)
	db := couchpeer.DBForTest(t, base)
	ctx := t.Context()
	s1 := openAt(t, base, db)
	if _, err := s1.Put(ctx, store.Document{ID: "a", Body: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	// Opening an existing database keeps its documents.
	s2 := openAt(t, base, db)
	if _, err := s2.Get(ctx, "a"); err != nil {
		t.Fatalf("Get through a second Open: %v", err)
	}

	t.Run("ConcurrentCreate", func(t *testing.T) {
		db := couchpeer.DBForTest(t, base)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				s, err := couch.Open(ctx, base, db)
				if err == nil {
					err = s.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("concurrent Opens of a new database: %v", err)
		}
	})

	t.Run("Unreachable", func(t *testing.T) {
		l := httptest.NewServer(http.NotFoundHandler())
		dead := l.URL
		l.Close()
		begin := time.Now()
		_, err := couch.Open(ctx, dead, "x")
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Open of a closed port: %v, want ErrUnavailable", err)
		}
		t.Logf("error after %v: %v", time.Since(begin), err)
	})

	t.Run("BadArguments", func(t *testing.T) {
		for _, c := range []struct{ url, db string }{{"://x", "db"}, {"ftp://h/", "db"}, {base, ""}, {base, "Bad Name!"}} {
			if _, err := couch.Open(ctx, c.url, c.db); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("Open(%q, %q): %v, want ErrInvalid", c.url, c.db, err)
			}
		}
	})

	t.Run("BasicAuthFromURL", func(t *testing.T) {
		var (
			mu   sync.Mutex
			seen []string
		)
		fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			user, pass, ok := r.BasicAuth()
			mu.Lock()
			seen = append(seen, fmt.Sprintf("%s %s %s:%s:%v", r.Method, r.URL.Path, user, pass, ok))
			mu.Unlock()
			w.WriteHeader(http.StatusOK)
		}))
		defer fake.Close()
		u, _ := url.Parse(fake.URL)
		u.User = url.UserPassword("admin", "s3cret")
		s, err := couch.Open(ctx, u.String(), "db")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != 1 || seen[0] != "HEAD /db admin:s3cret:true" {
			t.Fatalf("requests = %q, want one HEAD /db with basic auth", seen)
		}
	})
}

// TestRoundTrips checks the promise behind the latency budget: Get and Put
// are one HTTP request each.
func TestRoundTrips(t *testing.T) {
	base := couchServer.URL(t)
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		reqs []string
	)
	var conns atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(target)
	counting := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, r.Method)
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	counting.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			conns.Add(1)
		}
	}
	counting.Start()
	t.Cleanup(counting.Close)
	t.Cleanup(func() { proxy.Transport.(*http.Transport).CloseIdleConnections() })
	proxy.Transport = &http.Transport{}
	s := openAt(t, counting.URL, couchpeer.DBForTest(t, base))
	ctx := t.Context()

	count := func(what string, f func() error) {
		t.Helper()
		mu.Lock()
		reqs = nil
		mu.Unlock()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(reqs) != 1 {
			t.Fatalf("%s made requests %q, want exactly one", what, reqs)
		}
	}
	var rev string
	count("create", func() (err error) {
		rev, err = s.Put(ctx, store.Document{ID: "/cmbs/x", Body: json.RawMessage(`{"k":1}`)})
		return err
	})
	count("update", func() (err error) {
		rev, err = s.Put(ctx, store.Document{ID: "/cmbs/x", Rev: rev, Body: json.RawMessage(`{"k":2}`)})
		return err
	})
	count("get", func() error { _, err := s.Get(ctx, "/cmbs/x"); return err })
	count("delete", func() error { _, err := s.Delete(ctx, "/cmbs/x", rev); return err })
	// Every response was read to the end, so one connection served them all.
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for sequential calls, want 1 kept alive", n)
	}
}

// TestBodies covers what the contract does not: _id/_rev in a Put body are
// stripped, other underscore members rejected, and Get never returns any.
func TestBodies(t *testing.T) {
	s := openFresh(t)
	ctx := t.Context()
	rev, err := s.Put(ctx, store.Document{ID: "a", Body: json.RawMessage(` { "_id" : "zzz", "x" : [1, {"_y": 2}], "_rev": "9-abc", "s": "}\",{" } `)})
	if err != nil {
		t.Fatalf("Put with _id and _rev in the body: %v", err)
	}
	doc, err := s.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(doc.Body, &got); err != nil {
		t.Fatalf("body %s: %v", doc.Body, err)
	}
	if doc.Rev != rev || len(got) != 2 || got["s"] != `}",{` {
		t.Fatalf("Get = %s at %s, want x and s at %s", doc.Body, doc.Rev, rev)
	}
	if _, err := s.Get(ctx, "zzz"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the body's _id was used: Get(zzz) = %v", err)
	}
	for _, body := range []string{`{"_attachments":{}}`, `{"_deleted":true}`, `{"a":1,"_conflicts":[]}`} {
		if _, err := s.Put(ctx, store.Document{ID: "b", Body: json.RawMessage(body)}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Put(%s): %v, want ErrInvalid", body, err)
		}
	}
	if _, err := s.Delete(ctx, "a", ""); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Delete without rev: %v, want ErrConflict", err)
	}
	if _, err := s.Delete(ctx, "nope", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete of a missing document without rev: %v, want ErrNotFound", err)
	}
}

// TestHiddenDesignDocs: indexes are design documents, which must not show in
// Find or Changes.
func TestHiddenDesignDocs(t *testing.T) {
	s := openFresh(t)
	ctx := t.Context()
	if _, err := s.Put(ctx, store.Document{ID: "a", Body: json.RawMessage(`{"type":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureIndex(ctx, "by-type", []string{"type"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []store.Query{{}, {Limit: 5}, {Selector: json.RawMessage(`{"_id":{"$gt":null}}`)}} {
		docs, err := s.Find(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != 1 || docs[0].ID != "a" {
			t.Fatalf("Find(%+v) = %+v, want only a", q, docs)
		}
	}
	changes, last, err := s.Changes(ctx, store.ChangesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].ID != "a" {
		t.Fatalf("Changes = %+v, want only a", changes)
	}
	// A longpoll woken by an index alone keeps waiting for a document.
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		time.Sleep(50 * time.Millisecond)
		_ = s.EnsureIndex(ctx, "by-n", []string{"n"})
		time.Sleep(100 * time.Millisecond)
		_, _ = s.Put(ctx, store.Document{ID: "b", Body: json.RawMessage(`{}`)})
	})
	changes, _, err = s.Changes(ctx, store.ChangesOptions{Since: last, Wait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].ID != "b" {
		t.Fatalf("Changes with Wait = %+v, want b", changes)
	}
}

func TestFindDescTies(t *testing.T) {
	s := openFresh(t)
	ctx := t.Context()
	for i, id := range []string{"d", "a", "c", "e", "b", "f"} {
		n := []int{2, 1, 2, 2, 1, 3}[i]
		if _, err := s.Put(ctx, store.Document{ID: id, Body: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EnsureIndex(ctx, "by-n", []string{"n"}); err != nil {
		t.Fatal(err)
	}
	sel := json.RawMessage(`{"n":{"$gt":0}}`)
	for _, c := range []struct {
		desc        bool
		skip, limit int
		want        string
	}{
		{false, 0, 0, "abcdef"},
		{true, 0, 0, "fcdeab"},
		{true, 0, 2, "fc"},
		{true, 1, 2, "cd"},
		{true, 2, 3, "dea"},
		{true, 4, 0, "ab"},
		{true, 6, 0, ""},
		{false, 1, 3, "bcd"},
	} {
		docs, err := s.Find(ctx, store.Query{Selector: sel, Sort: []store.SortField{{Field: "n", Desc: c.desc}}, Skip: c.skip, Limit: c.limit})
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, d := range docs {
			got += d.ID
		}
		if got != c.want {
			t.Errorf("Find(desc %v, skip %d, limit %d) = %q, want %q", c.desc, c.skip, c.limit, got, c.want)
		}
	}
}
