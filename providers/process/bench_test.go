package process_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process"
	"github.com/cmbs/cmbs/providers/process/internal/processtest"
)

// BenchmarkExecuteTrue is cmbsbench's exec_vs_raw seen from the inside: a
// /bin/true definition executed over HTTP on the embedded store, one at a
// time and 8 in flight, with this process's CPU per execute (server,
// store, client; not the child) as cpu-µs/op beside the allocations.
// Profile it with -cpuprofile to see where an execute's CPU goes.
func BenchmarkExecuteTrue(b *testing.B) {
	runDir := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		runDir = "/dev/shm"
	}
	srv := testserver.Start(b, testserver.Options{
		Register: func(reg *providers.Registry, srv *occi.Server) error {
			return process.New(srv.Entities(), process.Options{TempDir: runDir}).Register(reg)
		},
	})
	status, body := testserver.Request(b, 30*time.Second, "POST", srv.URL+"/process/definition/",
		[]byte(`{"kind":"http://cmbs.dev/occi/process#definition","attributes":{"process":{"definition":{"exec":"/bin/true"}}}}`))
	if status != http.StatusCreated {
		b.Fatalf("create definition: %d %s", status, body)
	}
	m, err := jsonObject(body)
	if err != nil {
		b.Fatal(err)
	}
	locs, _ := m["Location"].([]any)
	if len(locs) != 1 {
		b.Fatalf("create definition: %s", body)
	}
	url := locs[0].(string) + "?action=execute"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}}
	b.Cleanup(client.CloseIdleConnections)
	execute := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader([]byte(`{}`)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/occi+json")
		req.Header.Set("Accept", "application/occi+json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"status":"succeeded"`)) {
			b.Errorf("execute: %d %.300s", resp.StatusCode, out)
		}
		return nil
	}
	for _, inFlight := range []int{1, 8} {
		b.Run(map[int]string{1: "sequential", 8: "8_in_flight"}[inFlight], func(b *testing.B) {
			ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
			defer cancel()
			b.ReportAllocs()
			cpu0 := processtest.CPUTime()
			var n atomic.Int64
			n.Store(int64(b.N))
			done := make(chan error, inFlight)
			for range inFlight {
				go func() {
					for n.Add(-1) >= 0 {
						if err := execute(ctx); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
			}
			for range inFlight {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((processtest.CPUTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
