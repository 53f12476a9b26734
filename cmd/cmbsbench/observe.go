package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	kivik "github.com/go-kivik/kivik/v4"
	_ "github.com/go-kivik/kivik/v4/couchdb" // the "couch" driver

	"github.com/cmbs/cmbs/internal/metrics"
	"github.com/cmbs/cmbs/internal/requestlog"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/couch"
	"github.com/cmbs/cmbs/store/sqlite"
)

// benchObserve measures what Prometheus metrics and request logging cost
// on the throughput phase's OCCI create/get workload (same clients), on
// CouchDB (the throughput phase's store, which dominates the time) and on
// the embedded store (where cmbsd's own work does, so the overhead shows
// most). Two servers run side by side, one with them (the chain cmbsd
// serves with: request log at info as JSON lines into a pipe, HTTP metrics, the
// instrumented store) and one without, and the workload alternates between
// them batch by batch in ABBA order. Each side's best round counts, and the
// spread of its rounds is printed, because on a shared machine a single
// round says little. metrics_overhead is the embedded store's ratio: on
// CouchDB the test peer takes nearly all the time (cmbsbench itself uses a
// few per cent of a core there), so that ratio mostly measures the peer's
// variation; it is printed too.
func benchObserve(ctx context.Context, cfg config, log *slog.Logger, out func(string, ...any), results map[string]any) error {
	// The request log goes where cmbsd's goes: stderr, a pipe to journald
	// or a container runtime, here one that a goroutine drains. (A file
	// beside the embedded store's would also charge the log's writeback
	// to the store's fsyncs.)
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	drained := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, pr)
		drained <- n
	}()
	defer func() {
		_ = pw.Close()
		<-drained
		_ = pr.Close()
	}()
	reqLog := slog.New(slog.NewJSONHandler(pw, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// The embedded store is fast enough for five times the documents,
	// which the short rounds need to rise above the machine's noise.
	embeddedDocs := 5 * cfg.docs
	w := &observeWorkload{cfg: cfg, log: log, reqLog: reqLog, ids: make([]string, embeddedDocs), bodies: make([][]byte, embeddedDocs)}
	for i := range w.ids {
		e := benchEntity(i, fmt.Sprintf("g%d", i%100))
		w.ids[i] = e.Location
		w.bodies[i] = entityBody(e)
	}

	// CouchDB: a fresh database per server.
	url, stopPeer, err := benchCouch(ctx, cfg)
	if err != nil {
		return err
	}
	defer stopPeer()
	client, err := kivik.New("couch", url)
	if err != nil {
		return err
	}
	defer client.Close()
	suffix := fmt.Sprintf("%d", rand.Int64N(1<<40))
	var dbs []string
	defer func() {
		for _, name := range dbs {
			_ = client.DestroyDB(context.WithoutCancel(ctx), name)
		}
	}()
	openCouch := func() (store.Store, error) {
		name := fmt.Sprintf("bench_observe_%s_%d", suffix, len(dbs))
		dbs = append(dbs, name)
		return couch.Open(ctx, url, name, couch.WithLogger(log))
	}

	// Embedded: a fresh file per server.
	dir, err := os.MkdirTemp("", "cmbsbench-observe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	files := 0
	openSQLite := func() (store.Store, error) {
		files++
		return sqlite.Open(ctx, filepath.Join(dir, fmt.Sprintf("bench-%d.db", files)), sqlite.WithLogger(log))
	}

	for _, s := range []struct {
		name, key string
		docs      int
		open      func() (store.Store, error)
	}{{"embedded", "embedded", embeddedDocs, openSQLite}, {"CouchDB", "couch", cfg.docs, openCouch}} {
		start := time.Now()
		w.docs = s.docs
		on, off, err := w.compare(ctx, s.open)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		out("   %s store: %d rounds of %d creates and %d gets per side at %d clients (%.1fs)", s.name, cfg.observeRounds, s.docs, s.docs, cfg.clients, time.Since(start).Seconds())
		results["metrics_overhead_"+s.key+"_create"] = ratio(out, "create", off.create, on.create)
		results["metrics_overhead_"+s.key+"_get"] = ratio(out, "get", off.get, on.get)
		results["metrics_overhead_"+s.key] = ratio(out, "both", off.both, on.both)
		// Each round ran both sides interleaved: its own on/off ratio
		// cancels what loaded the machine during that round.
		paired := make([]float64, len(on.both))
		for i := range paired {
			paired[i] = on.both[i] / off.both[i]
		}
		results["metrics_overhead_"+s.key+"_paired_median"] = medianOf(paired)
		out("   both, round by round: on/off %s, median %.3f", formatRatios(paired), medianOf(paired))
	}
	results["metrics_overhead"] = results["metrics_overhead_embedded"]
	results["metrics_overhead_rounds"] = cfg.observeRounds
	out("   metrics_overhead %.3f (embedded store; goal ≥ 0.95)", results["metrics_overhead"])
	return nil
}

// observeWorkload is the create/get workload of benchObserve.
type observeWorkload struct {
	cfg         config
	docs        int // per phase and side; ids and bodies hold at least this many
	log, reqLog *slog.Logger
	ids         []string
	bodies      [][]byte
}

// rates are one side's create and get rates in one round.
type rates struct{ create, get float64 }

// observeSide collects one side's rates over the rounds.
type observeSide struct{ create, get, both []float64 }

func (s *observeSide) add(r rates) {
	s.create = append(s.create, r.create)
	s.get = append(s.get, r.get)
	// Both phases' documents over both phases' time.
	s.both = append(s.both, 2/(1/r.create+1/r.get))
}

// compare runs cfg.observeRounds rounds on stores open returns.
func (w *observeWorkload) compare(ctx context.Context, open func() (store.Store, error)) (on, off observeSide, err error) {
	for i := 0; i < w.cfg.observeRounds; i++ {
		offR, onR, err := w.round(ctx, open)
		if err != nil {
			return on, off, err
		}
		off.add(offR)
		on.add(onR)
	}
	return on, off, nil
}

// server starts a fresh server, observed or not, on a fresh store.
func (w *observeWorkload) server(ctx context.Context, open func() (store.Store, error), observed bool) (*benchServer, func(), error) {
	st, err := open()
	if err != nil {
		return nil, nil, err
	}
	var wrap func(*occi.Server, http.Handler) http.Handler
	if observed {
		reg := metrics.New()
		measured, err := reg.InstrumentStore(st)
		if err != nil {
			_ = st.Close()
			return nil, nil, err
		}
		st = measured
		wrap = func(srv *occi.Server, h http.Handler) http.Handler {
			return requestlog.Middleware(w.reqLog, srv.Route, reg.Middleware(srv.Route, h))
		}
	}
	srv, err := startServerWrapped(ctx, st, w.cfg.clients, w.log, wrap)
	if err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	closeAll := func() { srv.close(); _ = st.Close() }
	if _, err := srv.do(ctx, "POST", "/-/", []byte(benchKind), 200); err != nil {
		closeAll()
		return nil, nil, err
	}
	return srv, closeAll, nil
}

// round runs the workload on two fresh servers, one observed and one not,
// in alternating batches (ABBA), so that whatever else loads the machine
// meanwhile weighs on both alike. It returns each side's rates.
func (w *observeWorkload) round(ctx context.Context, open func() (store.Store, error)) (off, on rates, err error) {
	var srvs [2]*benchServer
	for k, observed := range []bool{false, true} {
		srv, closeSrv, err := w.server(ctx, open, observed)
		if err != nil {
			return off, on, err
		}
		defer closeSrv()
		srvs[k] = srv
	}
	docs, clients := w.docs, w.cfg.clients
	batch := max(clients*4, docs/20)
	phase := func(fn func(srv *benchServer, ctx context.Context, i int) error) (d [2]time.Duration, err error) {
		for b, lo := 0, 0; lo < docs; b, lo = b+1, lo+batch {
			n := min(batch, docs-lo)
			for _, k := range [][]int{{0, 1}, {1, 0}}[b%2] {
				took, err := runWorkers(ctx, n, clients, func(ctx context.Context, i int) error { return fn(srvs[k], ctx, lo+i) })
				if err != nil {
					return d, err
				}
				d[k] += took
			}
		}
		return d, nil
	}
	c, err := phase(func(srv *benchServer, ctx context.Context, i int) error {
		_, err := srv.do(ctx, "POST", "/vm/", w.bodies[i], http.StatusCreated)
		return err
	})
	if err != nil {
		return off, on, fmt.Errorf("create: %w", err)
	}
	g, err := phase(func(srv *benchServer, ctx context.Context, i int) error {
		_, err := srv.do(ctx, "GET", w.ids[i], nil, http.StatusOK)
		return err
	})
	if err != nil {
		return off, on, fmt.Errorf("get: %w", err)
	}
	return rates{perSecond(docs, c[0]), perSecond(docs, g[0])}, rates{perSecond(docs, c[1]), perSecond(docs, g[1])}, nil
}

// ratio prints both sides' best rate and spread and returns best on / best
// off.
func ratio(out func(string, ...any), name string, off, on []float64) float64 {
	spread := func(xs []float64) string {
		lo, hi := slices.Min(xs), slices.Max(xs)
		return fmt.Sprintf("best %7.0f/s, rounds %.0f…%.0f (spread %.0f%%)", hi, lo, hi, 100*(hi-lo)/hi)
	}
	r := slices.Max(on) / slices.Max(off)
	out("   %-6s off: %s", name, spread(off))
	out("   %-6s on:  %s   ratio %.3f", "", spread(on), r)
	return r
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func formatRatios(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.3f", x)
	}
	return strings.Join(parts, " ")
}
