package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// benchListMemory measures how much the process's resident memory grows
// while the server answers an unpaged GET of the whole collection
// (cfg.filterBig entities) in each rendering, and 8 such GETs at once in
// OCCI 1.2 JSON. The client runs in this process too but keeps nothing: it
// counts the entities as the body goes by. Before each measurement the Go
// heap is handed back to the OS (debug.FreeOSMemory) and the kernel's
// peak-RSS mark is reset to the current RSS (writing 5 to
// /proc/self/clear_refs); the growth is VmHWM after the requests minus
// VmRSS before them, so it includes the store's reads (SQLite's page cache
// is bounded and warm from the filter timings) and the Go heap's slack
// (GOGC).
func benchListMemory(ctx context.Context, cfg config, srv *benchServer, out func(string, ...any), results map[string]any) error {
	if err := resetPeakRSS(); err != nil {
		out("   listing memory: skipped (%v)", err)
		return nil
	}
	renderings := []struct{ key, accept, marker string }{
		{"pyocni", "application/occi+json", "/vm/vm-"},
		{"json12", "application/json", `"kind":"` + benchKindID + `"`},
		{"text_plain", "text/plain", "/vm/vm-"},
		{"uri_list", "text/uri-list", "/vm/vm-"},
	}
	size := fmt.Sprintf("%dk", cfg.filterBig/1000)
	worst := 0.0
	var elapsed time.Duration
	measure := func(concurrent int, accept, marker string) (float64, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		debug.FreeOSMemory()
		if err := resetPeakRSS(); err != nil {
			return 0, err
		}
		before, _, err := rss()
		if err != nil {
			return 0, err
		}
		start := time.Now()
		errs := make(chan error, concurrent)
		var wg sync.WaitGroup
		for range concurrent {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := srv.countListing(ctx, accept, marker)
				if err == nil && n != cfg.filterBig {
					err = fmt.Errorf("GET /vm/ as %s listed %d entities, want %d", accept, n, cfg.filterBig)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return 0, err
			}
		}
		_, peak, err := rss()
		if err != nil {
			return 0, err
		}
		elapsed = time.Since(start)
		return float64(peak-before) / 1024, nil
	}
	for _, r := range renderings {
		mb, err := measure(1, r.accept, r.marker)
		if err != nil {
			return err
		}
		out("   GET of %d entities as %s: RSS grew %.0f MB (goal < 150), in %.1fs", cfg.filterBig, r.accept, mb, elapsed.Seconds())
		results[fmt.Sprintf("list_%s_rss_mb_%s", size, r.key)] = mb
		worst = max(worst, mb)
	}
	results[fmt.Sprintf("list_%s_rss_mb", size)] = worst
	mb, err := measure(8, "application/json", `"kind":"`+benchKindID+`"`)
	if err != nil {
		return err
	}
	out("   8 concurrent GETs of %d entities as application/json: RSS grew %.0f MB, in %.1fs", cfg.filterBig, mb, elapsed.Seconds())
	results[fmt.Sprintf("list_%s_x8_json12_rss_mb", size)] = mb
	return nil
}

// countListing GETs the whole /vm/ collection and counts the occurrences
// of marker in the body without keeping it.
func (b *benchServer) countListing(ctx context.Context, accept, marker string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", b.url+"/vm/", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", accept)
	// No client timeout: 8 listings of 100k entities at once take a while
	// on a small machine; ctx bounds them.
	client := &http.Client{Transport: b.client.Transport}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return 0, fmt.Errorf("GET /vm/ as %s: status %d: %s", accept, resp.StatusCode, body)
	}
	c := &markerCounter{marker: []byte(marker)}
	if _, err := io.Copy(c, resp.Body); err != nil {
		return 0, err
	}
	return c.n, nil
}

// markerCounter counts a marker in what is written to it, across writes.
type markerCounter struct {
	marker []byte
	tail   []byte // the last len(marker)-1 bytes seen
	n      int
}

func (c *markerCounter) Write(p []byte) (int, error) {
	buf := append(c.tail, p...)
	c.n += bytes.Count(buf, c.marker)
	keep := min(len(buf), len(c.marker)-1)
	c.tail = append(c.tail[:0:0], buf[len(buf)-keep:]...)
	return len(p), nil
}

// resetPeakRSS sets the kernel's peak-RSS mark (VmHWM) to the current RSS.
func resetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// rss reads VmRSS and VmHWM (KiB) from /proc/self/status.
func rss() (cur, peak int, err error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(val), " kB"))
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/self/status %s: %w", name, err)
		}
		if name == "VmRSS" {
			cur = kb
		} else {
			peak = kb
		}
	}
	if cur == 0 || peak == 0 {
		return 0, 0, errors.New("/proc/self/status has no VmRSS/VmHWM")
	}
	return cur, peak, sc.Err()
}
