package occi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cmbs/cmbs/internal/testserver"
)

const counterCategories = `{"kinds":[{"term":"counter","scheme":"http://example.org/test#","title":"Counter",
  "location":"/counter/",
  "attributes":{"test":{"counter":{
    "value":{"type":"number","mutable":true,"required":true,"default":0},
    "label":{"type":"string","mutable":true},
    "tags":{"type":"array","mutable":true}}}}}]}`

// send is client.do for goroutines: it reports failures instead of
// stopping the test.
func send(c *client, method, path string, body []byte, headers ...string) (reply, error) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Content-Type", "application/occi+json")
	req.Header.Set("Accept", "application/occi+json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// counterValue reads attributes.test.counter.value.
func counterValue(desc map[string]any) (float64, error) {
	a, _ := desc["attributes"].(map[string]any)
	tc, _ := a["test"].(map[string]any)
	ct, _ := tc["counter"].(map[string]any)
	v, ok := ct["value"].(float64)
	if !ok {
		return 0, fmt.Errorf("no numeric attributes.test.counter.value in %v", desc)
	}
	return v, nil
}

func startCounter(t *testing.T, opts testserver.Options) *client {
	srv := testserver.Start(t, opts)
	c := newClient(t, srv.URL)
	c.expect("POST", "/-/", []byte(counterCategories), 200)
	c.expect("PUT", "/counter/c", []byte(`{"resources":[{"kind":"http://example.org/test#counter","attributes":{"test":{"counter":{"value":0}}}}]}`), 201)
	return c
}

// TestConcurrentIncrements: read-modify-write with If-Match never loses an
// update; conflicts are reported (412, or 409 when the race is lost inside
// the store) and retried.
func TestConcurrentIncrements(t *testing.T) {
	c := startCounter(t, testserver.Options{})
	const workers, each = 16, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	retries := 0
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := increment(c, &mu, &retries); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	v, err := counterValue(c.expect("GET", "/counter/c", nil, 200).json(t))
	if err != nil || v != workers*each {
		t.Fatalf("counter %v after %d increments (%d retries)", v, workers*each, retries)
	}
	t.Logf("%d retries", retries)
}

// increment adds one to the counter, retrying when another writer got there
// first.
func increment(c *client, mu *sync.Mutex, retries *int) error {
	for {
		r, err := send(c, "GET", "/counter/c", nil)
		if err != nil || r.status != 200 {
			return fmt.Errorf("GET: %d %s %v", r.status, r.body, err)
		}
		var desc map[string]any
		if err := json.Unmarshal(r.body, &desc); err != nil {
			return err
		}
		v, err := counterValue(desc)
		if err != nil {
			return err
		}
		body := fmt.Sprintf(`{"resources":[{"attributes":{"test":{"counter":{"value":%v}}}}]}`, v+1)
		u, err := send(c, "POST", "/counter/c", []byte(body), "If-Match", r.header.Get("ETag"))
		if err != nil {
			return err
		}
		switch u.status {
		case http.StatusCreated:
			return nil
		case http.StatusPreconditionFailed, http.StatusConflict:
			mu.Lock()
			*retries++
			mu.Unlock()
		default:
			return fmt.Errorf("POST: %d %s", u.status, u.body)
		}
	}
}

// TestConcurrentReplaces: PUTs without If-Match race; each one either wins
// (201) or is told it lost (409), and what is stored is exactly one of the
// submitted versions.
func TestConcurrentReplaces(t *testing.T) {
	c := startCounter(t, testserver.Options{})
	const writers = 8
	versions := make([]map[string]any, writers)
	for i := range versions {
		versions[i] = map[string]any{
			"kind":    "http://example.org/test#counter",
			"mixins":  []any{},
			"actions": []any{},
			"links":   []any{},
			"id":      "c",
			"title":   fmt.Sprintf("title %d", i),
			"summary": fmt.Sprintf("summary %d", i),
			"attributes": map[string]any{"test": map[string]any{"counter": map[string]any{
				"value": float64(i * 100), "label": fmt.Sprintf("label %d", i),
				"tags": []any{fmt.Sprintf("t%d", i), fmt.Sprintf("u%d", i)},
			}}},
		}
	}
	replies := make([]reply, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < writers; i++ {
		body := mustJSON(t, map[string]any{"resources": []any{versions[i]}})
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			replies[i], errs[i] = send(c, "PUT", "/counter/c", body)
		}(i)
	}
	close(start)
	wg.Wait()
	statuses := make([]int, writers)
	for i, r := range replies {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		statuses[i] = r.status
		if r.status == http.StatusConflict {
			expectError(t, r, 409, "/counter/c")
		}
	}
	won := 0
	for i, s := range statuses {
		switch s {
		case 201:
			won++
		case 409:
		default:
			t.Fatalf("writer %d: status %d", i, s)
		}
	}
	if won == 0 {
		t.Fatal("no writer won")
	}
	got := c.expect("GET", "/counter/c", nil, 200).json(t)
	for i, v := range versions {
		if reflect.DeepEqual(got, v) {
			if statuses[i] != 201 {
				t.Fatalf("stored version %d, whose writer got %d", i, statuses[i])
			}
			return
		}
	}
	t.Fatalf("stored entity is none of the submitted versions: %v", got)
}

// TestConcurrentCreates: distinct creates do not interfere.
func TestConcurrentCreates(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv.URL)
	c.expect("POST", "/-/", []byte(counterCategories), 200)
	const n = 50
	var wg sync.WaitGroup
	want := make([]string, n)
	for i := 0; i < n; i++ {
		want[i] = srv.URL + fmt.Sprintf("/counter/n%02d", i)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := fmt.Sprintf(`{"resources":[{"kind":"http://example.org/test#counter","id":"n%02d","attributes":{"test":{"counter":{"value":%d}}}}]}`, i, i)
			if r, err := send(c, "POST", "/counter/", []byte(body)); err != nil || r.status != 201 {
				t.Errorf("create n%02d: %d %s %v", i, r.status, r.body, err)
			}
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	got := locations(t, c.do("GET", "/counter/", nil))
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("listed %d entities, want %d:\n%v", len(got), n, got)
	}
	for i := 0; i < n; i++ {
		v, err := counterValue(c.expect("GET", fmt.Sprintf("/counter/n%02d", i), nil, 200).json(t))
		if err != nil || v != float64(i) {
			t.Fatalf("n%02d has value %v", i, v)
		}
	}
}

// TestConcurrentDuplicateCreates: of many creates of the same id exactly
// one succeeds and the rest get 409.
func TestConcurrentDuplicateCreates(t *testing.T) {
	rec := &recorder{}
	srv := testserver.Start(t, testserver.Options{Register: rec.register})
	c := newClient(t, srv.URL)
	c.expect("POST", "/-/", fixture(t, "pycmbs/post_category_cmbs_member.json"), 200)
	c.expect("PUT", "/-/", fixture(t, "pycmbs/put_provider_cmbs_member.json"), 200)
	rec.take()
	const n = 16
	statuses := make([]int, n)
	body := fixture(t, "pycmbs/post_member.json")
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := send(c, "POST", "/cmbs/member/", body)
			if err != nil {
				t.Error(err)
			}
			statuses[i] = r.status
		}(i)
	}
	wg.Wait()
	sort.Ints(statuses)
	if statuses[0] != 201 || statuses[1] != 409 || statuses[n-1] != 409 {
		t.Fatalf("statuses %v, want one 201 and the rest 409", statuses)
	}
	c.expect("GET", pathM, nil, 200)
	// Every provider Create was either the one that was stored or undone.
	creates, deletes := 0, 0
	for _, call := range rec.take() {
		switch call.Op {
		case "create":
			creates++
		case "delete":
			deletes++
		}
	}
	if creates-deletes != 1 {
		t.Fatalf("%d provider creates and %d undoing deletes for one stored member", creates, deletes)
	}
}

// TestBodyTooLarge: a body over the limit is refused with 413 and stores
// nothing.
func TestBodyTooLarge(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{MaxBodyBytes: 1024})
	e := &compatEnv{t: t, srv: srv, c: newClient(t, srv.URL), rec: &recorder{}, base: srv.URL}
	e.c.expect("POST", "/-/", []byte(counterCategories), 200)
	big := fmt.Sprintf(`{"resources":[{"kind":"http://example.org/test#counter","id":"big","title":%q}]}`, strings.Repeat("x", 2000))
	for _, rq := range []struct{ method, path string }{
		{"POST", "/counter/"}, {"PUT", "/counter/big"}, {"POST", "/-/"}, {"GET", "/counter/"},
	} {
		t.Run(rq.method+strings.ReplaceAll(rq.path, "/", "_"), func(t *testing.T) {
			e.unchanged(func() {
				expectError(t, e.c.do(rq.method, rq.path, []byte(big)), http.StatusRequestEntityTooLarge, "too large")
			})
		})
	}
	// Just under the limit is fine.
	e.c.expect("POST", "/counter/", []byte(`{"resources":[{"kind":"http://example.org/test#counter","id":"small","title":"`+strings.Repeat("x", 900)+`"}]}`), 201)
}

// TestConcurrentCategoryDeletes: deleting a kind or a mixin while entities
// are created or tagged with it never leaves an entity naming a category
// that no longer exists.
func TestConcurrentCategoryDeletes(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv.URL)
	const rounds = 60
	race := func(a, b func() (reply, error)) (reply, reply) {
		var wg sync.WaitGroup
		var ra, rb reply
		var ea, eb error
		wg.Add(2)
		go func() { defer wg.Done(); ra, ea = a() }()
		go func() { defer wg.Done(); rb, eb = b() }()
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatal(ea, eb)
		}
		return ra, rb
	}
	t.Run("kind", func(t *testing.T) {
		for i := 0; i < rounds; i++ {
			c.expect("POST", "/-/", []byte(fmt.Sprintf(`{"kinds":[{"term":"k%d","scheme":"http://x#","location":"/k%d/"}]}`, i, i)), 200)
			del, cr := race(
				func() (reply, error) {
					return send(c, "DELETE", "/-/", []byte(fmt.Sprintf(`{"kinds":[{"term":"k%d","scheme":"http://x#"}]}`, i)))
				},
				func() (reply, error) {
					return send(c, "POST", fmt.Sprintf("/k%d/", i), []byte(fmt.Sprintf(`{"resources":[{"kind":"http://x#k%d","id":"e"}]}`, i)))
				})
			switch {
			case del.status == 200 && cr.status == 201:
				t.Fatalf("round %d: kind deleted and an entity of it created", i)
			case del.status == 200:
				c.expect("GET", fmt.Sprintf("/k%d/e", i), nil, 404)
			case del.status == 409 && cr.status == 201:
				c.expect("GET", fmt.Sprintf("/k%d/e", i), nil, 200)
			default:
				t.Fatalf("round %d: delete %d %s, create %d %s", i, del.status, del.body, cr.status, cr.body)
			}
		}
	})
	t.Run("mixin", func(t *testing.T) {
		c.expect("POST", "/-/", []byte(`{"kinds":[{"term":"host","scheme":"http://x#","location":"/host/"}]}`), 200)
		c.expect("PUT", "/host/h", []byte(`{"resources":[{"kind":"http://x#host"}]}`), 201)
		for i := 0; i < rounds; i++ {
			c.expect("POST", "/-/", []byte(fmt.Sprintf(`{"mixins":[{"term":"m%d","scheme":"http://x#","location":"/m%d/"}]}`, i, i)), 200)
			del, tag := race(
				func() (reply, error) {
					return send(c, "DELETE", "/-/", []byte(fmt.Sprintf(`{"mixins":[{"term":"m%d","scheme":"http://x#"}]}`, i)))
				},
				func() (reply, error) {
					return send(c, "POST", fmt.Sprintf("/m%d/", i), []byte(`{"X-OCCI-Location":["/host/h"]}`))
				})
			if del.status != 200 {
				t.Fatalf("round %d: delete %d %s", i, del.status, del.body)
			}
			if tag.status != 200 && tag.status != 409 && tag.status != 404 && tag.status != 400 {
				t.Fatalf("round %d: tag %d %s", i, tag.status, tag.body)
			}
			if ms := mixinsOf(t, c, "/host/h"); len(ms) != 0 {
				t.Fatalf("round %d: /host/h keeps mixins %v (tag %d)", i, ms, tag.status)
			}
		}
	})
}
