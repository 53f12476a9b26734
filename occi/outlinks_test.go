package occi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/couch"
)

// findCounter is a real store that counts its Find queries.
type findCounter struct {
	store.Store
	finds atomic.Int64
}

func (f *findCounter) Find(ctx context.Context, q store.Query) ([]store.Document, error) {
	f.finds.Add(1)
	return f.Store.Find(ctx, q)
}

// postLink creates a network interface from source to /network/n through
// the server at base (safe to call from any goroutine).
func postLink(base, id, source string) error {
	resp, err := http.Post(base+"/networkinterface/", "application/occi+json",
		strings.NewReader(`{"links":[{"kind":"`+categories.NetworkInterfaceKind+`","id":"`+id+`","source":"`+source+`","target":"/network/n"}]}`))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create %s through %s: %d %s", id, base, resp.StatusCode, body)
	}
	return nil
}

// pyocniLinks reads a resource's pyOCNI "links" as sorted paths.
func pyocniLinks(t *testing.T, c *client, base, loc string) []string {
	t.Helper()
	var got []string
	for _, v := range asList(c.expect("GET", loc, nil, 200).json(t)["links"]) {
		got = append(got, strings.TrimPrefix(v, base))
	}
	sort.Strings(got)
	return got
}

// TestResourceListsItsLinks: a resource's document lists the links that
// start at it, so a resource without links renders with one store read and
// no query, while every way a link comes, moves or goes keeps what the
// renderings show right — also with many links created at once.
func TestResourceListsItsLinks(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		st := &findCounter{Store: open(t)}
		srv := testserver.Start(t, testserver.Options{Store: st})
		c, base := newClient(t, srv.URL), srv.URL
		for _, loc := range []string{"/compute/a", "/compute/b", "/network/n"} {
			kind := categories.ComputeKind
			if strings.HasPrefix(loc, "/network/") {
				kind = categories.NetworkKind
			}
			c.expect("PUT", loc, []byte(`{"resources":[{"kind":"`+kind+`"}]}`), 201)
		}

		// No links: no query, in any rendering.
		for _, accept := range []string{"application/occi+json", "application/json", "text/plain", "text/occi"} {
			before := st.finds.Load()
			c.expect("GET", "/compute/a", nil, 200, "Accept", accept)
			if n := st.finds.Load() - before; n != 0 {
				t.Fatalf("GET of a resource without links (%s) ran %d queries, want 0", accept, n)
			}
		}

		// A link created at its collection shows at its source.
		c.expect("POST", "/networkinterface/", []byte(`{"links":[{"kind":"`+categories.NetworkInterfaceKind+`","id":"l1","source":"/compute/a","target":"/network/n"}]}`), 201)
		if got := pyocniLinks(t, c, base, "/compute/a"); !slices.Equal(got, []string{"/networkinterface/l1"}) {
			t.Fatalf("links of /compute/a after a create: %v", got)
		}
		// Moved to another source: gone at the old one, shown at the new.
		c.expect("POST", "/networkinterface/l1", []byte(`{"links":[{"source":"/compute/b"}]}`), 201)
		if got := pyocniLinks(t, c, base, "/compute/a"); len(got) != 0 {
			t.Fatalf("links of /compute/a after the link moved away: %v", got)
		}
		if got := pyocniLinks(t, c, base, "/compute/b"); !slices.Equal(got, []string{"/networkinterface/l1"}) {
			t.Fatalf("links of /compute/b after the link moved there: %v", got)
		}
		before := st.finds.Load()
		c.expect("GET", "/compute/a", nil, 200)
		if n := st.finds.Load() - before; n != 0 {
			t.Fatalf("GET of a resource whose only link moved away ran %d queries, want 0", n)
		}
		// Deleted: gone.
		c.expect("DELETE", "/networkinterface/l1", nil, 200)
		if got := pyocniLinks(t, c, base, "/compute/b"); len(got) != 0 {
			t.Fatalf("links of /compute/b after the delete: %v", got)
		}

		// A link refused (no such target) leaves nothing shown.
		c.expect("POST", "/networkinterface/", []byte(`{"links":[{"kind":"`+categories.NetworkInterfaceKind+`","id":"bad","source":"/compute/a","target":"/network/none"}]}`), 400)
		if got := pyocniLinks(t, c, base, "/compute/a"); len(got) != 0 {
			t.Fatalf("links of /compute/a after a refused create: %v", got)
		}

		// Twenty links created at once on one source, each in its own
		// request: every one is listed (writes of the list that collide are
		// read again, not lost).
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		var want []string
		for i := range 20 {
			id := fmt.Sprintf("p%02d", i)
			want = append(want, "/networkinterface/"+id)
			wg.Go(func() {
				if err := postLink(base, id, "/compute/b"); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := pyocniLinks(t, c, base, "/compute/b"); !slices.Equal(got, want) {
			t.Fatalf("links of /compute/b after 20 concurrent creates: %v", got)
		}

		// Past MaxOutLinks the list is given up: all links still show, and
		// a further link no longer rewrites its source.
		for i := 20; i < entities.MaxOutLinks+5; i++ {
			id := fmt.Sprintf("p%02d", i)
			want = append(want, "/networkinterface/"+id)
			c.expect("POST", "/networkinterface/", []byte(`{"links":[{"kind":"`+categories.NetworkInterfaceKind+`","id":"`+id+`","source":"/compute/b","target":"/network/n"}]}`), 201)
		}
		if got := pyocniLinks(t, c, base, "/compute/b"); !slices.Equal(got, want) {
			t.Fatalf("links of /compute/b past the list's limit: %v", got)
		}
		etag := c.expect("GET", "/compute/b", nil, 200).header.Get("ETag")
		c.expect("POST", "/networkinterface/", []byte(`{"links":[{"kind":"`+categories.NetworkInterfaceKind+`","id":"q","source":"/compute/b","target":"/network/n"}]}`), 201)
		if now := c.expect("GET", "/compute/b", nil, 200).header.Get("ETag"); etag == "" || now != etag {
			t.Fatalf("a link past the limit rewrote its source: ETag %q, then %q", etag, now)
		}

		// Deleting the target deletes its links and unlists them at their
		// source; deleting the source then needs no query for links it
		// no longer has.
		c.expect("DELETE", "/network/n", nil, 200)
		if got := pyocniLinks(t, c, base, "/compute/b"); len(got) != 0 {
			t.Fatalf("links of /compute/b after its links' target was deleted: %v", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		docs, err := st.Store.Find(ctx, store.Query{Selector: json.RawMessage(`{"type":"link"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != 0 {
			t.Fatalf("%d links left after their target was deleted", len(docs))
		}
	})
}

// TestOutLinksAcrossServers: two servers on one CouchDB database create
// links on one source at the same time; their writes of its list collide
// across servers (no shared lock) and are read again, so every link shows
// through either server.
func TestOutLinksAcrossServers(t *testing.T) {
	if only := os.Getenv(testserver.EnvStore); only != "" && only != "couchdb" {
		t.Skip("CouchDB only")
	}
	url := couchServer.URL(t)
	db := couchpeer.DBForTest(t, url)
	var bases []string
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		st, err := couch.Open(ctx, url, db)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		bases = append(bases, testserver.Start(t, testserver.Options{Store: st}).URL)
	}
	c := newClient(t, bases[0])
	c.expect("PUT", "/compute/s", []byte(`{"resources":[{"kind":"`+categories.ComputeKind+`"}]}`), 201)
	c.expect("PUT", "/network/n", []byte(`{"resources":[{"kind":"`+categories.NetworkKind+`"}]}`), 201)
	var wg sync.WaitGroup
	errs := make(chan error, 24)
	var want []string
	for i := range 24 {
		id := fmt.Sprintf("x%02d", i)
		want = append(want, "/networkinterface/"+id)
		base := bases[i%2]
		wg.Go(func() {
			if err := postLink(base, id, "/compute/s"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, base := range bases {
		if got := pyocniLinks(t, newClient(t, base), base, "/compute/s"); !slices.Equal(got, want) {
			t.Fatalf("links of /compute/s through %s: %v", base, got)
		}
	}
}
