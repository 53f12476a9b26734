package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jetstreamRuns is how many times the JetStream baseline runs by default;
// the best run is the baseline, and the spread between the runs is
// printed.
const jetstreamRuns = 3

// jetstreamColumn compares the L3.2 fan-out rate with NATS JetStream, the
// system a user picks for acknowledged pub/sub: the best of runs JetStream
// fan-outs of count messages of body to subs durable consumers. With no
// nats-server (lookup fails) or a baseline that cannot run, the keys are
// null and the reason is printed and recorded: the bench goes on.
//
// For information it also compares the CPU each spends per delivery
// (l32CPU is what the L3.2 fan-out of l32Delivered deliveries cost the
// bench process, every node being in it), which the machine's load does
// not change as much as the rates.
func jetstreamColumn(ctx context.Context, lookup func() (string, error), runs, subs, count int, body []byte, l32Rate float64, l32CPU time.Duration, l32Delivered int, out func(string, ...any), results map[string]any) {
	results["jetstream_fanout_per_s"] = nil
	results["jetstream_fanout_runs"] = nil
	results["jetstream_fanout_spread"] = nil
	results["l32_fanout_vs_jetstream"] = nil
	results["l32_cpu_us_per_delivery"] = perDelivery(l32CPU, l32Delivered)
	results["jetstream_cpu_us_per_delivery"] = nil
	skip := func(err error) {
		out("   JetStream column skipped: %v", err)
		results["jetstream_skipped"] = err.Error()
	}
	bin, err := lookup()
	if err != nil {
		skip(err)
		return
	}
	rates := make([]float64, 0, runs)
	var last fanoutResult
	var leastCPU time.Duration
	for range runs {
		r, cpu, err := jetstreamFanout(ctx, bin, subs, count, body)
		if err != nil {
			skip(fmt.Errorf("nats-server -js: %w", err))
			return
		}
		if r.delivered != subs*count {
			skip(fmt.Errorf("nats-server -js: %d of %d deliveries acknowledged", r.delivered, subs*count))
			return
		}
		rates = append(rates, r.rate())
		last = r
		if cpu > 0 && (leastCPU == 0 || cpu < leastCPU) {
			leastCPU = cpu
		}
	}
	best := slices.Max(rates)
	spread := (best - slices.Min(rates)) / best
	out("   %s -js, file storage, 1 publisher (async, acked by the server) → %d durable pull consumers (own connections), explicit acks; %d × %d bytes, %d deliveries a run, counted once the server has every ack",
		natsVersion(ctx, bin), subs, count, len(body), last.delivered)
	out("   JetStream %.0f deliveries/s best of %d (runs %s; spread %.0f%%)", best, runs, fmtRates(rates), 100*spread)
	out("   L3.2 / JetStream %.3f (goal ≥ 0.5)", l32Rate/best)
	cmbsCPU, jsCPU := perDelivery(l32CPU, l32Delivered), perDelivery(leastCPU, last.delivered)
	if c, ok := cmbsCPU.(float64); ok {
		if j, ok := jsCPU.(float64); ok {
			out("   CPU per delivery (all processes, timed part; information): L3.2 %.1f µs (sender, receivers and their stores), JetStream %.1f µs (nats-server and its clients, least of the runs): %.1f×", c, j, c/j)
		}
	}
	results["jetstream_cpu_us_per_delivery"] = jsCPU
	results["jetstream_fanout_per_s"] = best
	results["jetstream_fanout_runs"] = rates
	results["jetstream_fanout_spread"] = spread
	results["l32_fanout_vs_jetstream"] = l32Rate / best
}

// jetstreamFanout runs nats-server -js on a free loopback port with a
// store directory of its own (file storage), creates a stream over one
// subject and one durable pull consumer with explicit acks per subscriber,
// each subscriber on a connection of its own, and publishes a tenth of
// count messages untimed (connections and consumers warm) and then count
// messages, asynchronously, each acknowledged by the server once stored.
// A delivery counts when its subscriber has acked it; the clock runs from
// the first timed publish until the server reports every consumer's acks
// complete.
//
// It also returns the CPU the timed part cost nats-server and this process
// (its clients) together, or 0 when that cannot be read.
func jetstreamFanout(ctx context.Context, bin string, subs, count int, body []byte) (res fanoutResult, cpu time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	url, server, stop, err := startNATS(ctx, bin, "-js")
	if err != nil {
		return fanoutResult{}, 0, err
	}
	defer stop()

	const stream, subject = "BENCH", "bench"
	pubConn, err := connectNATS(ctx, url)
	if err != nil {
		return fanoutResult{}, 0, err
	}
	defer pubConn.Close()
	js, err := jetstream.New(pubConn)
	if err != nil {
		return fanoutResult{}, 0, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject}, Storage: jetstream.FileStorage}); err != nil {
		return fanoutResult{}, 0, fmt.Errorf("create stream: %w", err)
	}

	var acked atomic.Int64
	consumers := make([]jetstream.Consumer, subs)
	for i := range subs {
		nc, err := connectNATS(ctx, url)
		if err != nil {
			return fanoutResult{}, 0, err
		}
		defer nc.Close()
		sjs, err := jetstream.New(nc)
		if err != nil {
			return fanoutResult{}, 0, err
		}
		c, err := sjs.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable:       fmt.Sprintf("sub%02d", i),
			AckPolicy:     jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err != nil {
			return fanoutResult{}, 0, fmt.Errorf("create consumer: %w", err)
		}
		consumers[i] = c
		cc, err := c.Consume(func(m jetstream.Msg) {
			if m.Ack() == nil {
				acked.Add(1)
			}
		})
		if err != nil {
			return fanoutResult{}, 0, fmt.Errorf("consume: %w", err)
		}
		defer cc.Stop()
	}

	publish := func(n int) error {
		for range n {
			// With the client's bound on publishes in flight reached, a
			// publish waits for acks (the default 200 ms stall wait fails
			// on a loaded machine).
			if _, err := js.PublishAsync(subject, body, jetstream.WithStallWait(30*time.Second)); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
			return nil
		case <-ctx.Done():
			return fmt.Errorf("publish acks: %w", ctx.Err())
		}
	}
	// acksSent waits until the subscribers have acked want deliveries.
	acksSent := func(want int64) error {
		for acked.Load() < want {
			if ctx.Err() != nil {
				return fmt.Errorf("%d of %d deliveries acked: %w", acked.Load(), want, ctx.Err())
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	}
	// acksStored waits until the server has every consumer's acks up to
	// stream sequence last.
	acksStored := func(last uint64) error {
		for _, c := range consumers {
			for {
				info, err := c.Info(ctx)
				if err != nil {
					return fmt.Errorf("consumer info: %w", err)
				}
				if info.AckFloor.Stream >= last && info.NumAckPending == 0 {
					break
				}
				if ctx.Err() != nil {
					return fmt.Errorf("consumer %s acked up to %d of %d: %w", info.Name, info.AckFloor.Stream, last, ctx.Err())
				}
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	}

	warm := max(count/10, 1)
	if err := publish(warm); err != nil {
		return fanoutResult{}, 0, err
	}
	if err := acksSent(int64(warm * subs)); err != nil {
		return fanoutResult{}, 0, err
	}
	if err := acksStored(uint64(warm)); err != nil {
		return fanoutResult{}, 0, err
	}
	serverCPU0, cpuErr := childCPU(server.Pid)
	selfCPU0 := processCPU()
	start := time.Now()
	if err := publish(count); err != nil {
		return fanoutResult{}, 0, err
	}
	if err := acksSent(int64((warm + count) * subs)); err != nil {
		return fanoutResult{}, 0, err
	}
	if err := acksStored(uint64(warm + count)); err != nil {
		return fanoutResult{}, 0, err
	}
	elapsed := time.Since(start)
	selfCPU := processCPU() - selfCPU0
	serverCPU, err := childCPU(server.Pid)
	if cpuErr == nil && err == nil && selfCPU0 > 0 {
		cpu = selfCPU + serverCPU - serverCPU0
	}
	return fanoutResult{delivered: int(acked.Load()) - warm*subs, elapsed: elapsed}, cpu, nil
}

// startNATS runs nats-server (with extra arguments) as a child process on
// a free loopback port, with a store directory of its own, and returns its
// URL, its process and the function that stops it and removes the
// directory.
func startNATS(ctx context.Context, bin string, extra ...string) (string, *os.Process, func(), error) {
	endpoint, err := freeSocket()
	if err != nil {
		return "", nil, nil, err
	}
	_, port, err := net.SplitHostPort(strings.TrimPrefix(endpoint, "tcp://"))
	if err != nil {
		return "", nil, nil, err
	}
	dir, err := os.MkdirTemp("", "cmbsbench-nats-")
	if err != nil {
		return "", nil, nil, err
	}
	args := append([]string{"-a", "127.0.0.1", "-p", port, "-m", "0", "-sd", dir}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, nil, err
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
	return "nats://127.0.0.1:" + port, cmd.Process, stop, nil
}

// connectNATS connects to the nats-server at url, retrying for up to 10 s
// while it starts.
func connectNATS(ctx context.Context, url string) (*nats.Conn, error) {
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(20 * time.Millisecond) {
		var nc *nats.Conn
		if nc, err = nats.Connect(url, nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
			return nc, nil
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return nil, errors.Join(fmt.Errorf("connect to nats-server at %s", url), err)
}
