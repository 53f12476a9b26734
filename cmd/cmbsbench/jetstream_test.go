package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The JetStream baseline moves every message to every durable consumer and
// counts only acknowledged deliveries, and leaves no goroutine or child
// behind.
func TestJetStreamFanoutCountsEveryAckedDelivery(t *testing.T) {
	bin, err := natsServerPath()
	if err != nil {
		t.Skip(err)
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const subs, count = 3, 50
	r, cpu, err := jetstreamFanout(ctx, bin, subs, count, []byte(strings.Repeat("x", 300)))
	if err != nil {
		t.Fatal(err)
	}
	if r.delivered != subs*count {
		t.Fatalf("delivered %d, want %d", r.delivered, subs*count)
	}
	if r.elapsed <= 0 || cpu < 0 {
		t.Fatalf("elapsed %v, cpu %v", r.elapsed, cpu)
	}
}

// The column records its keys from the best run, or null keys and the
// reason when nats-server cannot be found.
func TestJetStreamColumn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var lines []string
	out := func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }

	results := map[string]any{}
	missing := func() (string, error) { return "", errors.New("nats-server is not installed") }
	jetstreamColumn(ctx, missing, 2, 2, 10, []byte("body"), 1000, time.Second, 100, out, results)
	for _, k := range []string{"jetstream_fanout_per_s", "l32_fanout_vs_jetstream", "jetstream_fanout_spread"} {
		if v, ok := results[k]; !ok || v != nil {
			t.Errorf("without nats-server %s = %v (present %v), want null", k, v, ok)
		}
	}
	if results["l32_cpu_us_per_delivery"] != 10000.0 {
		t.Errorf("l32_cpu_us_per_delivery = %v, want 10000 (1 s over 100)", results["l32_cpu_us_per_delivery"])
	}
	if results["jetstream_skipped"] != "nats-server is not installed" || !strings.Contains(strings.Join(lines, "\n"), "JetStream column skipped") {
		t.Errorf("skip not reported: %v %q", results["jetstream_skipped"], lines)
	}

	if _, err := natsServerPath(); err != nil {
		t.Skip(err)
	}
	results = map[string]any{}
	jetstreamColumn(ctx, natsServerPath, 2, 2, 20, []byte("body"), 1000, time.Second, 100, out, results)
	best, ok := results["jetstream_fanout_per_s"].(float64)
	runs, _ := results["jetstream_fanout_runs"].([]float64)
	if !ok || best <= 0 || len(runs) != 2 || best != max(runs[0], runs[1]) {
		t.Fatalf("best %v of runs %v; output %q", results["jetstream_fanout_per_s"], runs, lines)
	}
	if got, want := results["l32_fanout_vs_jetstream"], 1000/best; got != want {
		t.Errorf("l32_fanout_vs_jetstream = %v, want %v", got, want)
	}
}

// childCPU reads a live process's CPU time; a process that is gone is an
// error.
func TestChildCPU(t *testing.T) {
	if _, err := childCPU(os.Getpid()); err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	// Spend some CPU (as getrusage counts it), then /proc must show at
	// least a tick of it.
	for deadline := time.Now().Add(10 * time.Second); processCPU() < 5*clockTick && time.Now().Before(deadline); {
	}
	cpu, err := childCPU(os.Getpid())
	if err != nil || cpu < clockTick {
		t.Fatalf("childCPU(self) = %v, %v", cpu, err)
	}
	if _, err := childCPU(1 << 30); err == nil {
		t.Error("childCPU of a process that does not exist: no error")
	}
	if processCPU() <= 0 {
		t.Error("processCPU = 0")
	}
}
