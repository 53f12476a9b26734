package occi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/store"
)

const computeKindID = "http://schemas.ogf.org/occi/infrastructure#compute"

// createComputes creates n compute resources /compute/c000… with hostname
// h<i> and cores i%4.
func createComputes(t *testing.T, c *client, n int) {
	t.Helper()
	for i := 0; i < n; i += 50 {
		var res []string
		for j := i; j < min(n, i+50); j++ {
			res = append(res, fmt.Sprintf(`{"kind":%q,"id":"c%03d","attributes":{"occi":{"compute":{"hostname":"h%d","cores":%d}}}}`, computeKindID, j, j, j%4))
		}
		if r := c.do("POST", "/compute/", []byte(`{"resources":[`+strings.Join(res, ",")+`]}`)); r.status != 201 {
			t.Fatalf("create computes: %d %s", r.status, r.body)
		}
	}
}

func idFilter(n int) []byte {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"id":"c%03d"}`, i%10)
	}
	return []byte(`{"resources":[` + strings.Join(parts, ",") + `]}`)
}

// TestFilterSizeBounded: a filter past the documented bounds is a 400 that
// names the bound, on both stores, never a 503 "store unavailable"; at the
// bound it is served.
func TestFilterSizeBounded(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		srv := testserver.Start(t, testserver.Options{Store: open(t)})
		c := newClient(t, srv.URL)
		createComputes(t, c, 12)
		if got := locations(t, c.do("GET", "/compute/", idFilter(100))); len(got) != 10 {
			t.Fatalf("100 alternatives: %d entities, want 10", len(got))
		}
		for _, path := range []string{"/compute/", "/"} {
			expectError(t, c.do("GET", path, idFilter(101)), 400, "101", "at most 100")
			expectError(t, c.do("GET", path, idFilter(1000)), 400, "at most 100")
		}
		attrs := make([]string, 501)
		for i := range attrs {
			attrs[i] = fmt.Sprintf(`"a%d":"x"`, i)
		}
		expectError(t, c.do("GET", "/compute/", []byte(`{"resources":[{"attributes":{`+strings.Join(attrs, ",")+`}}]}`)), 400, "501 conditions", "at most 500")
		var cats []string
		for i := 0; i < 101; i++ {
			cats = append(cats, "category="+url.QueryEscape(fmt.Sprintf("http://x.example/s%d#", i)))
		}
		expectError(t, c.do("GET", "/compute/?"+strings.Join(cats, "&"), nil), 400, "at most 100")
		words := strings.Repeat("w ", 501)
		expectError(t, c.do("GET", "/compute/?q="+url.QueryEscape(words), nil), 400, "at most 500")
	})
}

// countingStore is a real store that counts what Find returns, so a test
// can tell a filter the store applied from one applied after loading the
// whole collection; failFind, when set, can fail a call.
type countingStore struct {
	store.Store
	mu       sync.Mutex
	on       bool
	calls    int
	docs     int
	maxDocs  int
	failFind func(call int) error
}

func (s *countingStore) Find(ctx context.Context, q store.Query) ([]store.Document, error) {
	s.mu.Lock()
	on, fail := s.on, s.failFind
	if on {
		s.calls++
	}
	call := s.calls
	s.mu.Unlock()
	if on && fail != nil {
		if err := fail(call); err != nil {
			return nil, err
		}
	}
	docs, err := s.Store.Find(ctx, q)
	if on {
		s.mu.Lock()
		s.docs += len(docs)
		s.maxDocs = max(s.maxDocs, len(docs))
		s.mu.Unlock()
	}
	return docs, err
}

// start counts from now on, from zero.
func (s *countingStore) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on, s.calls, s.docs, s.maxDocs = true, 0, 0, 0
}

func (s *countingStore) counts() (calls, docs, maxDocs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, s.docs, s.maxDocs
}

func bodyLines(r reply) []string {
	var out []string
	for _, l := range strings.Split(string(r.body), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func computeLocs(base string, from, to int, keep func(i int) bool) []string {
	out := []string{}
	for i := from; i < to; i++ {
		if keep == nil || keep(i) {
			out = append(out, fmt.Sprintf("%s/compute/c%04d", base, i))
		}
	}
	return out
}

// TestListingAcrossBatches: listings larger than one store batch come out
// whole and in order in every rendering, and pages and filters cut them
// where they should; a text-header filter is applied by the store (it
// returns a handful of documents, not the collection).
func TestListingAcrossBatches(t *testing.T) {
	const batch = 40
	const n = batch*6 + 10
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		st := &countingStore{Store: open(t)}
		srv := testserver.Start(t, testserver.Options{Store: st, ListBatch: batch})
		c := newClient(t, srv.URL)
		for i := 0; i < n; i += 100 {
			var res []string
			for j := i; j < min(n, i+100); j++ {
				res = append(res, fmt.Sprintf(`{"kind":%q,"id":"c%04d","attributes":{"occi":{"compute":{"hostname":"h%d","cores":%d}}}}`, computeKindID, j, j, j%4))
			}
			c.expect("POST", "/compute/", []byte(`{"resources":[`+strings.Join(res, ",")+`]}`), 201)
		}
		base := srv.URL
		all := computeLocs(base, 0, n, nil)
		check := func(what string, got, want []string) {
			t.Helper()
			if !slices.Equal(got, want) {
				t.Fatalf("%s: %d locations (first %v), want %d (first %v)", what, len(got), got[:min(3, len(got))], len(want), want[:min(3, len(want))])
			}
		}
		pyocni := func(r reply) []string {
			t.Helper()
			var body struct {
				L []string `json:"X-OCCI-Location"`
			}
			if r.status != 200 || json.Unmarshal(r.body, &body) != nil {
				t.Fatalf("pyOCNI listing: %d %.200s", r.status, r.body)
			}
			return body.L
		}

		st.start()
		check("pyOCNI JSON", pyocni(c.do("GET", "/compute/", nil)), all)
		if _, _, maxDocs := st.counts(); maxDocs > batch {
			t.Fatalf("one store query returned %d documents; listings read at most %d at a time", maxDocs, batch)
		}
		check("uri-list", bodyLines(c.expect("GET", "/compute/", nil, 200, "Accept", "text/uri-list")), all)
		var plain []string
		for _, l := range bodyLines(c.expect("GET", "/compute/", nil, 200, "Accept", "text/plain")) {
			plain = append(plain, strings.TrimPrefix(l, "X-OCCI-Location: "))
		}
		check("text/plain", plain, all)
		var j12 struct {
			Resources []struct {
				ID         string         `json:"id"`
				Attributes map[string]any `json:"attributes"`
			} `json:"resources"`
		}
		r := c.expect("GET", "/compute/", nil, 200, "Accept", "application/json")
		if err := json.Unmarshal(r.body, &j12); err != nil || len(j12.Resources) != n {
			t.Fatalf("1.2 JSON listing: %d resources (%v)", len(j12.Resources), err)
		}
		if last := j12.Resources[n-1]; last.ID != fmt.Sprintf("c%04d", n-1) || last.Attributes["occi.compute.hostname"] != fmt.Sprintf("h%d", n-1) {
			t.Fatalf("1.2 JSON listing: last resource %+v", last)
		}
		occiHdr := c.expect("GET", "/compute/", nil, 200, "Accept", "text/occi").header.Get("X-OCCI-Location")
		check("text/occi", strings.Split(occiHdr, ", "), all)

		if r := c.do("HEAD", "/compute/", nil, "Accept", "text/uri-list"); r.status != 200 || len(r.body) != 0 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/uri-list") {
			t.Fatalf("HEAD: %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
		}

		// Pages cut across the store's batches.
		check("page 2", pyocni(c.do("GET", "/compute/?page=2&number=70", nil)), all[70:140])
		check("last page", pyocni(c.do("GET", "/compute/?page=3&number=100", nil)), all[200:])
		check("past the end", pyocni(c.do("GET", "/compute/?page=9&number=100", nil)), []string{})

		// Text filters: in the headers, in a text/plain body, as ?q=.
		threes := computeLocs(base, 0, n, func(i int) bool { return i%4 == 3 })
		check("X-OCCI-Attribute", pyocni(c.do("GET", "/compute/", nil, "X-OCCI-Attribute", "occi.compute.cores=3")), threes)
		check("filtered page", pyocni(c.do("GET", "/compute/?page=2&number=20", nil, "X-OCCI-Attribute", "occi.compute.cores=3")), threes[20:40])
		check("?q=", pyocni(c.do("GET", "/compute/?q=occi.compute.cores=3", nil)), threes)
		check("text body", bodyLines(c.expect("GET", "/compute/", []byte("X-OCCI-Attribute: occi.compute.cores=3\n"), 200,
			"Content-Type", "text/plain", "Accept", "text/uri-list")), threes)
		check("?q= word", pyocni(c.do("GET", "/compute/?q=H207", nil)), computeLocs(base, 207, 208, nil))
		for _, odd := range []string{`$or=1`, `a..b=1`, `a.$x="1"`, `occi.core.title=""`, `x=[1]`} {
			check("attribute "+odd, pyocni(c.do("GET", "/compute/", nil, "X-OCCI-Attribute", odd)), []string{})
		}

		st.start()
		check("one hostname", pyocni(c.do("GET", "/compute/", nil, "X-OCCI-Attribute", `occi.compute.hostname="h177"`)), computeLocs(base, 177, 178, nil))
		check("one id", pyocni(c.do("GET", "/", nil, "X-OCCI-Attribute", `occi.core.id="c0042"`)), computeLocs(base, 42, 43, nil))
		if _, docs, _ := st.counts(); docs > 10 {
			t.Fatalf("two filters that each match one entity read %d documents from the store: the filter was not pushed down", docs)
		}
	})
}

// TestListingStreams: a listing is written while it is read from the
// store — the client has the first entities before the store is asked for
// the third batch — and a store failure before anything is written is
// answered with its status, while one after the status was sent cuts the
// response short (the client gets an error, not a short listing that looks
// whole).
func TestListingStreams(t *testing.T) {
	const batch = 100
	st := &countingStore{Store: testserver.OpenSQLite(t)}
	srv := testserver.Start(t, testserver.Options{Store: st, ListBatch: batch})
	c := newClient(t, srv.URL)
	const n = batch*3 + 10
	for i := 0; i < n; i += 100 {
		var res []string
		for j := i; j < min(n, i+100); j++ {
			res = append(res, fmt.Sprintf(`{"kind":%q,"id":"c%04d"}`, computeKindID, j))
		}
		c.expect("POST", "/compute/", []byte(`{"resources":[`+strings.Join(res, ",")+`]}`), 201)
	}

	// The third batch waits until the client has read the first entities.
	gotFirst := make(chan struct{})
	st.failFind = func(call int) error {
		if call == 3 {
			select {
			case <-gotFirst:
			case <-time.After(20 * time.Second):
				return fmt.Errorf("%w: the client never got the first batch", store.ErrUnavailable)
			}
		}
		return nil
	}
	st.start()
	resp, err := testHTTP.Get(srv.URL + "/compute/")
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 100)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("first bytes of the listing: %v", err)
	}
	if _, docs, _ := st.counts(); docs >= n {
		t.Fatalf("the store had returned all %d entities before the client got the first bytes of the listing", docs)
	}
	close(gotFirst)
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("rest of the listing: %v", err)
	}
	var body struct {
		L []string `json:"X-OCCI-Location"`
	}
	if err := json.Unmarshal(append(first, rest...), &body); err != nil || len(body.L) != n {
		t.Fatalf("streamed listing: %d locations (%v)", len(body.L), err)
	}

	// A store failure on the first batch: its status.
	st.failFind = func(call int) error { return fmt.Errorf("%w: test", store.ErrUnavailable) }
	st.start()
	expectError(t, c.do("GET", "/compute/", nil), 503, "unavailable")
	// On a later batch: the response is cut short, in every streamed
	// rendering. (Call 3: in 1.2 JSON call 2 reads the first batch's links,
	// before the status.)
	st.failFind = func(call int) error {
		if call == 3 {
			return fmt.Errorf("%w: test", store.ErrUnavailable)
		}
		return nil
	}
	for _, accept := range []string{"application/occi+json", "application/json", "text/plain", "text/uri-list"} {
		st.start()
		req, _ := http.NewRequest("GET", srv.URL+"/compute/", nil)
		req.Header.Set("Accept", accept)
		resp, err := testHTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || err == nil {
			t.Fatalf("%s: a store failure after the first batch: status %d, body error %v; want 200 and a cut body", accept, resp.StatusCode, err)
		}
	}
	st.failFind = nil
}

// TestListingKindInheritance: a Category filter on a kind (in the headers,
// in a text body, or as ?category=) selects the entities of the kinds
// derived from it too, and a kind's collection lists them; a mixin filter
// selects its tagged entities.
func TestListingKindInheritance(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		srv := testserver.Start(t, testserver.Options{Store: open(t)})
		c := newClient(t, srv.URL)
		const scheme = "http://inherit.example/occi#"
		c.expect("POST", "/-/", []byte(`{"kinds":[{"term":"bigvm","scheme":"`+scheme+`","title":"big VM","location":"/bigvm/","related":["`+computeKindID+`"]}],
			"mixins":[{"term":"gold","scheme":"`+scheme+`","title":"gold","location":"/gold/"}]}`), 200)
		createComputes(t, c, 3)
		c.expect("POST", "/bigvm/", []byte(`{"resources":[{"kind":"`+scheme+`bigvm","id":"b1","attributes":{"occi":{"compute":{"hostname":"h1"}}}},{"kind":"`+scheme+`bigvm","id":"b2","mixins":["`+scheme+`gold"]}]}`), 201)
		base := srv.URL
		locs := func(ls ...string) []string {
			out := []string{}
			for _, l := range ls {
				out = append(out, base+l)
			}
			sort.Strings(out)
			return out
		}
		computes := locs("/bigvm/b1", "/bigvm/b2", "/compute/c000", "/compute/c001", "/compute/c002")
		kindCat := `compute; scheme="http://schemas.ogf.org/occi/infrastructure#"; class="kind"`
		cases := []struct {
			name    string
			path    string
			body    []byte
			headers []string
			want    []string
		}{
			{"kind collection", "/compute/", nil, nil, computes},
			{"derived kind's collection", "/bigvm/", nil, nil, locs("/bigvm/b1", "/bigvm/b2")},
			{"Category header", "/", nil, []string{"Category", kindCat}, computes},
			{"Category in a text body", "/", []byte("Category: " + kindCat + "\n"), []string{"Content-Type", "text/plain"}, computes},
			{"Category without class", "/", nil, []string{"Category", `compute; scheme="http://schemas.ogf.org/occi/infrastructure#"`}, computes},
			{"derived Category", "/", nil, []string{"Category", `bigvm; scheme="` + scheme + `"; class="kind"`}, locs("/bigvm/b1", "/bigvm/b2")},
			{"mixin Category", "/", nil, []string{"Category", `gold; scheme="` + scheme + `"; class="mixin"`}, locs("/bigvm/b2")},
			{"resource kind", "/", nil, []string{"Category", `resource; scheme="http://schemas.ogf.org/occi/core#"; class="kind"`}, computes},
			{"?category=kind", "/?category=" + url.QueryEscape(computeKindID), nil, nil, computes},
			{"?category=scheme", "/?category=" + url.QueryEscape(scheme), nil, nil, locs("/bigvm/b1", "/bigvm/b2")},
			{"kind and attribute", "/", nil, []string{"Category", kindCat, "X-OCCI-Attribute", `occi.compute.hostname="h1"`}, locs("/bigvm/b1", "/compute/c001")},
		}
		for _, tc := range cases {
			r := c.do("GET", tc.path, tc.body, tc.headers...)
			if got := locations(t, r); !slices.Equal(got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
	})
}

// TestListingOutlastsWriteTimeout: a listing that takes longer than the
// HTTP server's WriteTimeout is still sent whole, since each batch sent
// extends the deadline for the next.
func TestListingOutlastsWriteTimeout(t *testing.T) {
	const batch, n = 10, 45
	st := &countingStore{Store: testserver.OpenSQLite(t)}
	srv := testserver.Start(t, testserver.Options{Store: st, ListBatch: batch})
	c := newClient(t, srv.URL)
	createComputes(t, c, n)
	const writeTimeout = 300 * time.Millisecond
	// Each batch takes longer than the write timeout to read, and there
	// are five: without the extension the response is cut after the first.
	st.failFind = func(int) error { time.Sleep(writeTimeout + 50*time.Millisecond); return nil }
	st.start()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.OCCI.Handler(), WriteTimeout: writeTimeout}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close(); <-done })
	r := newClient(t, "http://"+ln.Addr().String()).do("GET", "/compute/", nil)
	if got := locations(t, r); len(got) != n {
		t.Fatalf("listing: %d locations, want %d", len(got), n)
	}
}
