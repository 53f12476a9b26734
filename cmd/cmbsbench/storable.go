package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// benchStorable times L2 fan-out of storable messages from one member to
// 10 members on nodes of their own: every delivery is stored as a message
// entity in its receiver's embedded store before it is acknowledged, and
// the sender stores each send's result. It reports the best of -runs
// rounds (l2_storable_per_s, with its spread) and the CPU the process
// spent per delivery, which, unlike the rate, does not depend on what
// else the machine runs.
func benchStorable(ctx context.Context, cfg config, log *slog.Logger, out func(string, ...any), results map[string]any) (err error) {
	const receivers = 10
	sender, recv, closeMesh, err := startFanoutMesh(ctx, log, receivers, nil, "l1", "l2")
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeMesh(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	stored := func() int {
		total := 0
		for _, n := range recv {
			total += int(n.broker.Stats().Stored)
		}
		return total
	}
	attrs := map[string]any{"message_content": map[string]any{"text": strings.Repeat("x", 64)}, "storable": "true", "executable": "false", "sendable": "true"}
	round := func(prefix string, count int) (rate, cpuPerDelivery float64, err error) {
		locs, err := sender.createMessages(ctx, prefix, "l2", count, attrs)
		if err != nil {
			return 0, 0, err
		}
		before := stored()
		cpuBefore := processCPU()
		start := time.Now()
		// The clock runs until every send's result is stored too.
		failed, err := sender.sendEach(ctx, locs, "send_l2", cfg.fanoutWindow)
		if err != nil {
			return 0, 0, err
		}
		elapsed := time.Since(start)
		cpu := processCPU() - cpuBefore
		if failed > 0 {
			return 0, 0, fmt.Errorf("%d storable deliveries failed", failed)
		}
		n := stored() - before
		if n != count*receivers {
			return 0, 0, fmt.Errorf("%d messages stored by the receivers, want %d", n, count*receivers)
		}
		return perSecond(n, elapsed), float64(cpu.Microseconds()) / float64(n), nil
	}
	// Untimed first: connections dialled, goroutines started.
	if _, _, err := round("sw", max(cfg.storableMsgs/10, 10)); err != nil {
		return err
	}
	rates, cpus := rateRuns(), durationRuns()
	for r := 0; r < cfg.runs; r++ {
		rate, cpu, err := round(fmt.Sprintf("s%d", r), cfg.storableMsgs)
		if err != nil {
			return err
		}
		rates.add(rate)
		cpus.add(cpu)
	}
	out("   L2 fan-out of storable messages, 1 member → %d members on nodes of their own (embedded stores), %d messages a run, %d send actions in flight", receivers, cfg.storableMsgs, cfg.fanoutWindow)
	out("   stored and acknowledged: best %.0f deliveries/s (%s)", rates.best(), rates)
	out("   CPU of the whole process per delivery (all 11 nodes): best %.1f µs (%s)", cpus.best(), cpus)
	rates.record(results, "l2_storable_per_s")
	cpus.record(results, "l2_storable_cpu_us_per_delivery")
	return nil
}
