// Command cmbsbench measures cmbs against the raw parts it is built on, in
// one run, and prints the ratios the project's goals are stated in:
//
//   - OCCI create and get throughput at 16 concurrent clients against raw
//     kivik Put/Get of the same documents on the same CouchDB (goal ≥ 0.8×);
//   - the same create/get workload with cmbsd's Prometheus metrics and
//     request logging on against off (metrics_overhead, goal ≥ 0.95×; best
//     of several alternating rounds per side, spread printed);
//   - a filter returning 10 entities out of 1k and out of 100k entities on
//     the embedded store, as a JSON body and as an X-OCCI-Attribute header
//     (goal: ≤ 2× apart); then the memory an unpaged listing of the 100k
//     takes in each rendering (goal < 150 MB);
//   - the CMBS broker between cmbsd nodes on 127.0.0.1, each with its own
//     embedded store: send_l1 round trip against a raw zmq4 REQ/REP round
//     trip (goal ≤ 1.5×); L2 and L3.2 fan-out from one member to 10,
//     deliveries/s: L2 against raw zmq4 PUB → 10 SUB (goal ≥ 0.5×), L3.2
//     against Debian's nats-server -js, JetStream with file storage, one
//     durable consumer per subscriber and explicit acks, best of
//     -jetstream-runs runs (l32_fanout_vs_jetstream, goal ≥ 0.5×; core
//     NATS for information; skipped with a message and null keys when
//     nats-server is not installed); check_neighbors over a chain of 50
//     members (goal < 1s);
//     L2 fan-out with CURVE on every socket against the same without it
//     (goal ≥ 0.7×, best of -runs alternating rounds each); L2 fan-out of
//     storable messages, each stored by its receiver before it is
//     acknowledged (l2_storable_per_s, reported, with the CPU per delivery).
//     Every raw baseline and the broker measurement compared with it run
//     -runs times (default 5), alternating; the bests are compared and
//     min/median/max printed (<key>_spread in the JSON line).
//   - process execute of a /bin/true definition through HTTP against the
//     same os/exec run, sequential and 8 in flight (exec_vs_raw, goal ≥ 0.7),
//     and the tr definition over 10 MiB of input against piping it through tr
//     (tr_throughput_vs_raw, goal ≥ 0.8).
//   - two servers on one CouchDB following its changes feed: how long a
//     category registered on one takes to be in force on the other
//     (cache_propagation_ms, the p99; goal ≤ 1000 ms), and entity creates
//     on a database two servers follow against one nobody follows
//     (feed_create_overhead).
//   - a smartmob process printing 100k lines to 10 WebSocket console
//     clients, lines/s per client against the same child writing to
//     /dev/null (console_fanout_vs_devnull, reported), and the restart
//     action's overhead over os/exec start+stop (restart_overhead_ms).
//
// The last line printed is one JSON object with every measured number.
// -quick finishes in under a minute with smaller sizes (it says which).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"
	"time"
)

type config struct {
	quick     bool
	clients   int
	docs      int
	couchURL  string
	filterBig int
	repeats   int

	observeRounds int

	l1Count      int
	fanoutMsgs   int
	fanoutWindow int
	storableMsgs int

	// runs is how many times each raw baseline and each broker
	// measurement a goal compares is taken (best used, spread printed).
	runs int

	jetstreamRuns int
	processStore  string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cmbsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.BoolVar(&cfg.quick, "quick", false, "small sizes; finishes in under a minute")
	fs.IntVar(&cfg.clients, "clients", 16, "concurrent clients for the throughput phases")
	fs.IntVar(&cfg.docs, "docs", 0, "documents per throughput phase (default 3000, quick 600)")
	fs.StringVar(&cfg.couchURL, "couch", os.Getenv("COUCHDB_URL"), "CouchDB URL to measure against (default: start the project's CouchDB-API test peer)")
	fs.IntVar(&cfg.filterBig, "filter-big", 0, "entities in the large filter phase (default 100000, quick 10000)")
	fs.IntVar(&cfg.observeRounds, "observe-rounds", 0, "rounds per side (with and without metrics and request logging) in the overhead phase (default 5, quick 3)")
	fs.IntVar(&cfg.repeats, "repeats", 0, "timed repetitions per filter query (default 50, quick 20)")
	fs.IntVar(&cfg.l1Count, "l1-rtts", 0, "timed send_l1 round trips per run (default 2000, quick 300); the raw baseline does as many")
	fs.IntVar(&cfg.fanoutMsgs, "fanout-msgs", 0, "messages per fan-out measurement, each to 10 members (default 5000, quick 300; the raw baselines send as many)")
	fs.IntVar(&cfg.storableMsgs, "storable-msgs", 0, "messages per run of the storable fan-out, each to 10 members (default 500, quick 100)")
	fs.IntVar(&cfg.fanoutWindow, "fanout-window", 8, "concurrent send actions of the one sending member in the fan-out phase")
	fs.IntVar(&cfg.runs, "runs", 5, "times each raw baseline and each broker measurement compared with one is taken, alternating; the best is used and min/median/max printed")
	fs.IntVar(&cfg.jetstreamRuns, "jetstream-runs", jetstreamRuns, "NATS JetStream fan-out baseline runs; the best is the baseline, the spread is printed")
	fs.StringVar(&cfg.processStore, "process-store", "sqlite", "store of the process phase: sqlite (embedded) or couch (-couch, or the CouchDB-API test peer)")
	only := fs.String("phases", "", "run only the phases whose names contain one of these comma-separated words (e.g. L1,fan-out)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	traceFile := fs.String("trace", "", "write a runtime/trace execution trace of the run to this file (goroutine handoffs and wakeups; large: pair it with -phases and small counts)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cfg.runs < 1 {
		fmt.Fprintln(stderr, "-runs must be at least 1")
		return 2
	}
	if cfg.jetstreamRuns < 1 {
		fmt.Fprintln(stderr, "-jetstream-runs must be at least 1")
		return 2
	}
	if cfg.docs == 0 {
		cfg.docs = map[bool]int{true: 600, false: 3000}[cfg.quick]
	}
	if cfg.filterBig == 0 {
		cfg.filterBig = map[bool]int{true: 10000, false: 100000}[cfg.quick]
	}
	if cfg.observeRounds == 0 {
		cfg.observeRounds = map[bool]int{true: 3, false: 5}[cfg.quick]
	}
	if cfg.repeats == 0 {
		cfg.repeats = map[bool]int{true: 20, false: 50}[cfg.quick]
	}
	if cfg.l1Count == 0 {
		cfg.l1Count = map[bool]int{true: 300, false: 2000}[cfg.quick]
	}
	if cfg.storableMsgs == 0 {
		cfg.storableMsgs = map[bool]int{true: 100, false: 500}[cfg.quick]
	}
	if cfg.fanoutMsgs == 0 {
		cfg.fanoutMsgs = map[bool]int{true: 300, false: 5000}[cfg.quick]
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	results := map[string]any{"quick": cfg.quick, "clients": cfg.clients}
	if cfg.quick {
		results["note"] = fmt.Sprintf("quick mode: %d docs per throughput phase, filter over 1000 vs %d entities, %d send_l1 round trips, %d messages per fan-out", cfg.docs, cfg.filterBig, cfg.l1Count, cfg.fanoutMsgs)
	}
	out := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	phases := []struct {
		name string
		fn   func(context.Context, config, *slog.Logger, func(string, ...any), map[string]any) error
	}{
		{"throughput (CouchDB)", benchThroughput},
		{"metrics and request log overhead on create/get (CouchDB, embedded)", benchObserve},
		{"filter scaling (embedded store)", benchFilter},
		{"CMBS L1 round trip vs zmq4 REQ/REP", benchL1},
		{"CMBS L2/L3.2 fan-out to 10 members vs zmq4 PUB/SUB and NATS", benchFanout},
		{"CMBS discovery of a 50-member chain", benchDiscovery},
		{"CMBS L2 fan-out with CURVE vs NULL", benchCurve},
		{"CMBS L2 fan-out of storable messages", benchStorable},
		{"process execute vs os/exec", benchProcess},
		{"bus rpc and events vs zmq4", benchBus},
		{"cache propagation between two servers on one CouchDB", benchPropagation},
		{"smartmob console fan-out and restart", benchSmartmob},
	}
	for _, rec := range []struct {
		path  string
		start func(io.Writer) error
		stop  func()
	}{{*cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile}, {*traceFile, trace.Start, trace.Stop}} {
		if rec.path == "" {
			continue
		}
		stop, err := record(rec.path, rec.start, rec.stop)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		defer stop()
	}
	failed := false
	for _, p := range phases {
		if !selected(p.name, *only) {
			continue
		}
		// What an earlier phase left on the heap (100k entities) must not
		// be collected during this one's timings, nor its files written
		// back to disk by the kernel meanwhile.
		debug.FreeOSMemory()
		syscall.Sync()
		out("== %s", p.name)
		start := time.Now()
		if err := p.fn(ctx, cfg, log, out, results); err != nil {
			out("   failed: %v", err)
			results[p.name+" error"] = err.Error()
			failed = true
		}
		out("   (%.1fs)", time.Since(start).Seconds())
	}
	// Everything the phases started is closed by now; what remains beyond
	// the runtime's own is reported (zmq4 v0.17.0 leaks one goroutine per
	// closed PUB socket, (*pubMWriter).run: one per PUB/SUB baseline run).
	time.Sleep(100 * time.Millisecond)
	results["goroutines_at_end"] = runtime.NumGoroutine()
	line, _ := json.Marshal(results)
	fmt.Fprintln(stdout, string(line))
	if failed {
		return 1
	}
	return 0
}

// selected reports whether a phase runs under -phases: all do when it is
// empty.
func selected(phase, only string) bool {
	if only == "" {
		return true
	}
	for _, w := range strings.Split(only, ",") {
		if w = strings.TrimSpace(w); w != "" && strings.Contains(strings.ToLower(phase), strings.ToLower(w)) {
			return true
		}
	}
	return false
}

// record starts writing a CPU profile or an execution trace to path; the
// function returned stops it and closes the file.
func record(path string, start func(io.Writer) error, stop func()) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		stop()
		f.Close()
	}, nil
}
