package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/store"
)

// runWorkers calls fn(i) for i in [0,n) from `clients` goroutines and
// returns the wall time; the first error stops the run.
func runWorkers(ctx context.Context, n, clients int, fn func(ctx context.Context, i int) error) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// benchServer is an OCCI server on a loopback port, as a client sees it.
type benchServer struct {
	url    string
	client *http.Client
	close  func()
}

func startServer(ctx context.Context, st store.Store, clients int, log *slog.Logger) (*benchServer, error) {
	b, _, err := startServerWith(ctx, st, clients, log, nil)
	return b, err
}

// startServerWrapped is startServer with the OCCI handler wrapped by wrap
// (nil: served as is), e.g. in cmbsd's metrics and request log middleware.
func startServerWrapped(ctx context.Context, st store.Store, clients int, log *slog.Logger, wrap func(*occi.Server, http.Handler) http.Handler) (*benchServer, error) {
	b, _, err := startServerWith(ctx, st, clients, log, wrap)
	return b, err
}

// startServerWith is startServerWrapped, also returning the OCCI server behind it.
func startServerWith(ctx context.Context, st store.Store, clients int, log *slog.Logger, wrap func(*occi.Server, http.Handler) http.Handler) (*benchServer, *occi.Server, error) {
	reg := providers.NewRegistry()
	srv, err := occi.NewServer(ctx, occi.Options{Store: st, Providers: reg, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	handler := srv.Handler()
	if wrap != nil {
		handler = wrap(srv, handler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	tr := &http.Transport{MaxIdleConnsPerHost: clients * 2, MaxConnsPerHost: clients * 2, DisableCompression: true}
	return &benchServer{
		url:    "http://" + ln.Addr().String(),
		client: &http.Client{Transport: tr, Timeout: 60 * time.Second},
		close: func() {
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = hs.Shutdown(shutdownCtx)
			<-done
			tr.CloseIdleConnections()
		},
	}, srv, nil
}

// do sends one OCCI JSON request and checks the status; header holds
// name/value pairs to add.
func (b *benchServer) do(ctx context.Context, method, path string, body []byte, want int, header ...string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/occi+json")
	req.Header.Set("Accept", "application/occi+json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, out)
	}
	return out, nil
}

// entityBody is the pyOCNI JSON create request for e.
func entityBody(e *model.Entity) []byte {
	b, _ := json.Marshal(map[string]any{"resources": []any{map[string]any{
		"kind": e.Kind, "id": e.ID, "title": e.Title, "attributes": e.Attributes,
	}}})
	return b
}

// benchKind is the category the benchmarks create entities of.
const benchKind = `{"kinds":[{"term":"vm","scheme":"http://bench.cmbs.example#","title":"bench VM","location":"/vm/",
 "attributes":{"bench":{"vm":{
   "group":{"type":"String","mutable":true,"required":false},
   "n":{"type":"Number","mutable":true,"required":false},
   "state":{"type":"String","mutable":true,"pattern":"^(on|off)$","default":"off"}}}}}]}`

const benchKindID = "http://bench.cmbs.example#vm"

func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

func perSecond(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
