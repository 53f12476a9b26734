package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process/supervisor"
	"github.com/cmbs/cmbs/providers/smartmob"
	"github.com/cmbs/cmbs/store/sqlite"
)

// The console fan-out workload: a child printing this many lines to this
// many attached WebSocket clients.
const (
	fanoutLines   = 100000
	fanoutClients = 10
)

// benchSmartmob measures a smartmob process's console: a child printing
// 100k lines with 10 WebSocket clients attached, lines/s each client
// receives against the same child writing to /dev/null
// (console_fanout_vs_devnull, reported); and the supervisor's overhead per
// restart: the restart action through HTTP until the new process runs,
// against starting and stopping the same command with os/exec
// (restart_overhead_ms).
func benchSmartmob(ctx context.Context, cfg config, log *slog.Logger, out func(string, ...any), results map[string]any) (err error) {
	dir, err := os.MkdirTemp("", "cmbsbench-smartmob-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "cmbs.db"), sqlite.WithLogger(log))
	if err != nil {
		return err
	}
	defer st.Close()
	reg := providers.NewRegistry()
	srv, err := occi.NewServer(ctx, occi.Options{Store: st, Providers: reg, Logger: log})
	if err != nil {
		return err
	}
	sup := supervisor.New(supervisor.Options{Logger: log})
	apps := smartmob.New(srv.Entities(), smartmob.Options{Supervisor: sup, RunDir: dir, Logger: log})
	if err := apps.Register(reg); err != nil {
		return err
	}
	if err := reg.Start(ctx); err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = errors.Join(err, reg.Stop(stopCtx), sup.Close(stopCtx), srv.Entities().Flush(stopCtx))
	}()

	// The application archive, served from loopback.
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, err := zw.Create("Procfile")
	if err != nil {
		return err
	}
	// fanout waits for $GO to exist, then prints the lines at once.
	fmt.Fprintf(w, "fanout: sh -c 'while [ ! -e \"$GO\" ]; do sleep 0.005; done; seq 1 %d; exec sleep 3600'\nidle: exec sleep 3600\n", fanoutLines)
	if err := zw.Close(); err != nil {
		return err
	}
	agent := smartmob.NewAgent(apps, smartmob.AgentOptions{})
	console := apps.ConsoleHandler()
	mux := http.NewServeMux()
	mux.HandleFunc("/app.zip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/zip")
		_, _ = w.Write(zbuf.Bytes())
	})
	mux.Handle(smartmob.AgentPrefix, agent)
	occiHandler := srv.Handler()
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := smartmob.ConsoleProcess(r.URL.Path); ok {
			console.ServeHTTP(w, r)
			return
		}
		occiHandler.ServeHTTP(w, r)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() { defer close(served); _ = hs.Serve(ln) }()
	tr := &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
	b := &benchServer{url: "http://" + ln.Addr().String(), client: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(shutdownCtx)
		<-served
		tr.CloseIdleConnections()
	}()

	create := func(node, ptype string, env map[string]string) (string, error) {
		req := map[string]any{"app": "bench", "node": node, "source_url": b.url + "/app.zip", "process_type": ptype}
		if env != nil {
			req["env"] = env
		}
		body, _ := json.Marshal(req)
		if _, err := b.do(ctx, "POST", "/smartmob-agent/create-process", body, http.StatusCreated); err != nil {
			return "", err
		}
		return waitRunning(ctx, b, "bench."+node)
	}

	rounds := map[bool]int{true: 2, false: 3}[cfg.quick]
	var fanouts, devnulls []time.Duration
	var dropped int
	for round := 0; round < rounds; round++ {
		goFile := filepath.Join(dir, fmt.Sprintf("go-%d", round))
		node := fmt.Sprintf("fanout%d", round)
		loc, err := create(node, "fanout", map[string]string{"GO": goFile})
		if err != nil {
			return err
		}
		took, lost, err := fanoutRound(ctx, b, loc, goFile)
		if err != nil {
			return err
		}
		fanouts, dropped = append(fanouts, took), dropped+lost
		if _, err := b.do(ctx, "POST", "/smartmob-agent/delete-process/bench."+node, []byte(`{}`), http.StatusOK); err != nil {
			return err
		}
		start := time.Now()
		cmd := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf("seq 1 %d", fanoutLines))
		if err := cmd.Run(); err != nil { // stdout: /dev/null
			return err
		}
		devnulls = append(devnulls, time.Since(start))
	}
	bestFan, bestNull := minDuration(fanouts), minDuration(devnulls)
	ratio := bestNull.Seconds() / bestFan.Seconds()
	results["console_fanout_vs_devnull"] = float64(int(ratio*1e4+0.5)) / 1e4
	results["console_fanout_lines_per_s"] = round2(perSecond(fanoutLines, bestFan))
	results["console_devnull_lines_per_s"] = round2(perSecond(fanoutLines, bestNull))
	results["console_fanout_dropped_clients"] = dropped
	out("   %d lines to %d WebSocket clients: %.0f lines/s per client (best of %d: %s), to /dev/null %.0f lines/s (%s) → %.4f (report); clients dropped: %d",
		fanoutLines, fanoutClients, perSecond(fanoutLines, bestFan), rounds, spread(fanouts), perSecond(fanoutLines, bestNull), spread(devnulls), ratio, dropped)

	// Restart overhead.
	loc, err := create("idle", "idle", nil)
	if err != nil {
		return err
	}
	n := map[bool]int{true: 20, false: 100}[cfg.quick]
	var viaHTTP, direct []time.Duration
	for round := 0; round < rounds; round++ {
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := b.do(ctx, "POST", loc+"?action=restart", []byte(`{}`), http.StatusOK); err != nil {
				return err
			}
		}
		viaHTTP = append(viaHTTP, time.Since(start))
		start = time.Now()
		for i := 0; i < n; i++ {
			if err := rawRestart(ctx); err != nil {
				return err
			}
		}
		direct = append(direct, time.Since(start))
	}
	perHTTP := minDuration(viaHTTP).Seconds() * 1000 / float64(n)
	perRaw := minDuration(direct).Seconds() * 1000 / float64(n)
	results["restart_overhead_ms"] = round2(perHTTP - perRaw)
	results["restart_action_ms"] = round2(perHTTP)
	results["restart_raw_ms"] = round2(perRaw)
	out("   restart × %d: action %.2f ms each (%s), os/exec start+TERM+wait %.2f ms (%s) → overhead %.2f ms per restart",
		n, perHTTP, spread(viaHTTP), perRaw, spread(direct), perHTTP-perRaw)
	return nil
}

// fanoutRound attaches the clients to the console of the waiting process
// at loc, lets it print, and returns how long until every client had the
// last line, and how many clients were dropped on the way.
func fanoutRound(ctx context.Context, b *benchServer, loc, goFile string) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ws := "ws" + strings.TrimPrefix(b.url, "http") + loc + "/console?tail=1"
	conns := make([]*websocket.Conn, 0, fanoutClients)
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	for i := 0; i < fanoutClients; i++ {
		c, _, err := websocket.Dial(ctx, ws, nil)
		if err != nil {
			return 0, 0, err
		}
		conns = append(conns, c)
		// The replayed spawn line: this client is subscribed.
		if _, _, err := c.Read(ctx); err != nil {
			return 0, 0, err
		}
	}
	last := fmt.Sprint(fanoutLines)
	var wg sync.WaitGroup
	var mu sync.Mutex
	dropped := 0
	start := time.Now()
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		return 0, 0, err
	}
	// Reads take no context (a cancellable one costs a registration per
	// frame, on the clients' side of the measurement): the bound closes
	// the connections instead.
	bound := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.CloseNow()
		}
	})
	defer bound()
	for _, c := range conns {
		wg.Go(func() {
			for {
				_, msg, err := c.Read(context.Background())
				if err != nil {
					mu.Lock()
					dropped++
					mu.Unlock()
					return
				}
				if string(msg) == last {
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), dropped, ctx.Err()
}

// waitRunning waits (bounded) until the process with slug runs and returns
// its OCCI location.
func waitRunning(ctx context.Context, b *benchServer, slug string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, err := b.do(ctx, "GET", "/smartmob/process/", nil, http.StatusOK)
		if err != nil {
			return "", err
		}
		var coll struct {
			Locations []string `json:"X-OCCI-Location"`
		}
		if err := json.Unmarshal(body, &coll); err != nil {
			return "", err
		}
		for _, l := range coll.Locations {
			loc := l[strings.Index(l, "/smartmob/"):]
			e, err := b.do(ctx, "GET", loc, nil, http.StatusOK)
			if err != nil {
				return "", err
			}
			if bytes.Contains(e, []byte(`"slug":"`+slug+`"`)) && bytes.Contains(e, []byte(`"state":"running"`)) {
				return loc, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s not running after 30 s", slug)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawRestart is what one restart does without the supervisor: start the
// command in its own group, then stop it with SIGTERM and reap it.
func rawRestart(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", "exec sleep 3600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	_ = cmd.Wait()
	return nil
}

func minDuration(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds[1:] {
		m = min(m, d)
	}
	return m
}

// spread is "min–max" of ds in milliseconds.
func spread(ds []time.Duration) string {
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		lo, hi = min(lo, d), max(hi, d)
	}
	return fmt.Sprintf("%.0f–%.0f ms", lo.Seconds()*1000, hi.Seconds()*1000)
}
