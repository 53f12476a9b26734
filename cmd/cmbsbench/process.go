package main

import (
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
	"syscall"
	"time"

	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/couch"
)

// trBenchDefinition is the Process Registry README's tr example.
const trBenchDefinition = `{"exec":"/usr/bin/tr","argv":["-d","x"],
 "input_adapter":{"input_type":"file","input_parameters":{"file_type":"stream","stream_name":"STDIN"}},
 "output_adapter":{"output_type":"file","output_parameters":{"file_type":"stream","stream_name":"STDOUT"}}}`

// benchProcess measures execute through HTTP against the same process run
// with os/exec directly: /bin/true sequentially and with 8 in flight
// (exec_vs_raw, goal ≥ 0.7: process start dominates, our overhead must
// not), and tr over 10 MiB of input (benchTr: tr_throughput_vs_raw, goal
// ≥ 0.8).
func benchProcess(ctx context.Context, cfg config, log *slog.Logger, out func(string, ...any), results map[string]any) (err error) {
	dir, err := os.MkdirTemp("", "cmbsbench-process-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var st store.Store
	switch cfg.processStore {
	case "sqlite":
		st, err = openEmbedded(ctx, filepath.Join(dir, "cmbs.db"), log)
	case "couch":
		url, stopPeer, cerr := benchCouch(ctx, cfg)
		if cerr != nil {
			return cerr
		}
		defer stopPeer()
		st, err = couch.Open(ctx, url, fmt.Sprintf("bench_process_%d", time.Now().UnixNano()), couch.WithLogger(log))
	default:
		return fmt.Errorf("-process-store %q: sqlite or couch", cfg.processStore)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	results["process_store"] = cfg.processStore
	reg := providers.NewRegistry()
	srv, err := occi.NewServer(ctx, occi.Options{Store: st, Providers: reg, Logger: log, MaxBodyBytes: 4 * trInput})
	if err != nil {
		return err
	}
	// Run directories on a tmpfs when there is one (cmbsd --run-dir): on
	// ext4, creating and removing one costs about as much as starting
	// /bin/true.
	runDir := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		runDir = "/dev/shm"
	}
	results["process_run_dir"] = runDir
	procs := process.New(srv.Entities(), process.Options{MaxOutput: 2 * trInput, TempDir: runDir, Logger: log})
	if err := procs.Register(reg); err != nil {
		return err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = errors.Join(err, reg.Stop(stopCtx), srv.Entities().Flush(stopCtx))
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	tr := &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
	b := &benchServer{url: "http://" + ln.Addr().String(), client: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(shutdownCtx)
		<-done
		tr.CloseIdleConnections()
	}()

	define := func(def string) (string, error) {
		body := []byte(`{"kind":"http://cmbs.dev/occi/process#definition","attributes":{"process":{"definition":` + def + `}}}`)
		resp, err := b.do(ctx, "POST", "/process/definition/", body, http.StatusCreated)
		if err != nil {
			return "", err
		}
		var created struct{ Location []string }
		if err := json.Unmarshal(resp, &created); err != nil || len(created.Location) != 1 {
			return "", fmt.Errorf("create definition: %s", resp)
		}
		loc := created.Location[0]
		return loc[strings.Index(loc, "/process/"):], nil
	}
	execute := func(ctx context.Context, loc string, body []byte) error {
		resp, err := b.doSized(ctx, "POST", loc+"?action=execute", body, http.StatusOK)
		if err != nil {
			return err
		}
		if !bytes.Contains(resp, []byte(`"status":"succeeded"`)) {
			return fmt.Errorf("execute %s: %.300s", loc, resp)
		}
		return nil
	}
	raw := func(ctx context.Context, input []byte, name string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if input != nil {
			cmd.Stdin = bytes.NewReader(input)
		}
		err := cmd.Run()
		return stdout.Bytes(), err
	}

	trueLoc, err := define(`{"exec":"/bin/true"}`)
	if err != nil {
		return err
	}
	n := map[bool]int{true: 200, false: 1000}[cfg.quick]
	empty := []byte(`{}`)
	for _, inFlight := range []int{1, 8} {
		// -runs rounds, each an execute pass then a raw pass, so that load
		// from elsewhere on the machine reaches both; the goal compares the
		// best rates (as the broker's keys do), the spreads say how much
		// each side and the paired ratio moved.
		viaRuns, rawRuns := rateRuns(), rateRuns()
		viaCPU, rawCPU := durationRuns(), durationRuns()
		for range cfg.runs {
			cpu0 := processCPU()
			viaHTTP, err := runWorkers(ctx, n, inFlight, func(ctx context.Context, _ int) error { return execute(ctx, trueLoc, empty) })
			if err != nil {
				return err
			}
			cpu1 := processCPU()
			direct, err := runWorkers(ctx, n, inFlight, func(ctx context.Context, _ int) error { _, err := raw(ctx, nil, "/bin/true"); return err })
			if err != nil {
				return err
			}
			cpu2 := processCPU()
			viaRuns.add(perSecond(n, viaHTTP))
			rawRuns.add(perSecond(n, direct))
			if cpu0 > 0 { // measured (processCPU reads /proc)
				viaCPU.add(float64((cpu1 - cpu0).Microseconds()) / float64(n))
				rawCPU.add(float64((cpu2 - cpu1).Microseconds()) / float64(n))
			}
		}
		ratio := viaRuns.best() / rawRuns.best()
		key := map[int]string{1: "exec_vs_raw_sequential", 8: "exec_vs_raw_8_in_flight"}[inFlight]
		results[key] = round2(ratio)
		results[key+"_spread"] = pairedRatios(viaRuns, rawRuns).spread()
		results[key+"_execs_per_s"] = round2(viaRuns.best())
		results[key+"_raw_per_s"] = round2(rawRuns.best())
		results[key+"_execs_per_s_spread"] = viaRuns.spread()
		results[key+"_raw_per_s_spread"] = rawRuns.spread()
		out("   /bin/true × %d, %d in flight, %d alternating rounds: execute best %.0f/s (%s), os/exec best %.0f/s (%s) → %.2f best over best (goal ≥ 0.7; per round %s)",
			n, inFlight, cfg.runs, viaRuns.best(), viaRuns, rawRuns.best(), rawRuns, ratio, pairedRatios(viaRuns, rawRuns))
		// The CPU this process (server, its store and the client; not the
		// children) spends per run does not depend on the machine's load as
		// the rates do: for information.
		results[key+"_cpu_us"] = viaCPU.best()
		results[key+"_raw_cpu_us"] = rawCPU.best()
		out("   CPU of this process per run (server, store, client; not the child): execute best %.1f µs (%s), os/exec best %.1f µs (%s)", viaCPU.best(), viaCPU, rawCPU.best(), rawCPU)
	}
	results["exec_vs_raw"] = min(results["exec_vs_raw_sequential"].(float64), results["exec_vs_raw_8_in_flight"].(float64))

	trLoc, err := define(trBenchDefinition)
	if err != nil {
		return err
	}
	return benchTr(ctx, cfg, b, trLoc, execute, raw, out, results)
}

// doSized is benchServer.do reading the answer into one buffer of its
// Content-Length, as a client that knows it does (the raw baseline's
// output buffer is not handicapped either: both sides read 10 MiB).
func (b *benchServer) doSized(ctx context.Context, method, path string, body []byte, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/occi+json")
	req.Header.Set("Accept", "application/occi+json")
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := bytes.NewBuffer(make([]byte, 0, max(resp.ContentLength, 0)+bytes.MinRead))
	if _, err := out.ReadFrom(resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, out.Bytes())
	}
	return out.Bytes(), nil
}

func round2(f float64) float64 { return float64(int(f*100+0.5)) / 100 }
