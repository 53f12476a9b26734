package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const crashKind = `{"kinds":[{"term":"counter","scheme":"http://example.org/crash#","title":"Counter","location":"/counter/",
  "attributes":{"test":{"counter":{"value":{"type":"number","mutable":true,"required":true}}}}}]}`

// TestBinaryKill9KeepsAcknowledgedWrites: 16 clients create and update
// entities on the embedded store while cmbsd is killed with SIGKILL; after
// a restart on the same database every write that was answered with
// success is there (an update may be followed by the one in flight at the
// kill, never preceded by an older value).
func TestBinaryKill9KeepsAcknowledgedWrites(t *testing.T) {
	const writers = 16
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "data", "cmbs.db")
	p := startCmbsd(t, dir, nil, "--listen", "127.0.0.1:0", "--store", db, "--layers-file", "none")
	base := "http://" + p.waitListening(t)
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, url, body string) (int, []byte, error) {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/occi+json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	if c, b, err := do("POST", base+"/-/", crashKind); err != nil || c != http.StatusOK {
		t.Fatalf("POST /-/: %d %s %v", c, b, err)
	}
	entity := func(v int) string {
		return fmt.Sprintf(`{"resources":[{"kind":"http://example.org/crash#counter","attributes":{"test":{"counter":{"value":%d}}}}]}`, v)
	}

	// Each writer owns one counter it updates and a series of entities it
	// creates; what was acknowledged is recorded before the next request.
	type acked struct {
		counter int      // last value acknowledged for /counter/w<i>
		created []string // paths whose create was acknowledged
	}
	var (
		acks  [writers]acked
		total atomic.Int64
		wg    sync.WaitGroup
	)
	enough := make(chan struct{})
	var enoughOnce sync.Once
	for i := range writers {
		counter := fmt.Sprintf("/counter/w%d", i)
		if c, b, err := do("PUT", base+counter, entity(0)); err != nil || c != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s %v", counter, c, b, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := &acks[i]
			for j := 1; ; j++ {
				path := fmt.Sprintf("/counter/w%d-%d", i, j)
				if c, _, err := do("PUT", base+path, entity(j)); err != nil || c != http.StatusCreated {
					return // killed (or failing: the check below tells)
				}
				a.created = append(a.created, path)
				body := fmt.Sprintf(`{"resources":[{"attributes":{"test":{"counter":{"value":%d}}}}]}`, j)
				if c, _, err := do("POST", base+counter, body); err != nil || c/100 != 2 {
					return
				}
				a.counter = j
				if total.Add(2) >= 800 {
					enoughOnce.Do(func() { close(enough) })
				}
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(60 * time.Second):
		t.Error("fewer than 800 writes acknowledged in 60 s")
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	wg.Wait()
	t.Logf("%d writes acknowledged before SIGKILL", total.Load())

	p2 := startCmbsd(t, dir, nil, "--listen", "127.0.0.1:0", "--store", db, "--layers-file", "none")
	base = "http://" + p2.waitListening(t)
	lost := 0
	for i := range writers {
		for _, path := range acks[i].created {
			if c, b, err := do("GET", base+path, ""); err != nil || c != http.StatusOK {
				lost++
				t.Errorf("acknowledged create %s: %d %s %v after restart", path, c, b, err)
			}
		}
		counter := fmt.Sprintf("/counter/w%d", i)
		c, b, err := do("GET", base+counter, "")
		if err != nil || c != http.StatusOK {
			t.Fatalf("GET %s: %d %s %v", counter, c, b, err)
		}
		var e struct {
			Attributes struct {
				Test struct {
					Counter struct {
						Value int `json:"value"`
					} `json:"counter"`
				} `json:"test"`
			} `json:"attributes"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("GET %s: %v: %s", counter, err, b)
		}
		// The update in flight at the kill may have landed too.
		if v := e.Attributes.Test.Counter.Value; v != acks[i].counter && v != acks[i].counter+1 {
			lost++
			t.Errorf("%s = %d after restart, last acknowledged %d", counter, v, acks[i].counter)
		}
	}
	if lost > 0 {
		t.Fatalf("%d acknowledged writes lost", lost)
	}
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p2.waitExit(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
