package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cmbs/cmbs/cmbs"
)

// quietFlags: the bench messages are neither stored nor executed on the
// receivers, so the broker is compared with raw transports on moving a
// message, not on writing it to a database.
var quietFlags = map[string]any{"storable": "false", "executable": "false", "sendable": "true"}

// benchL1 times send_l1 between two nodes, triggered in-process
// (Entities().Trigger: the provider path without HTTP), against a raw zmq4
// REQ/REP round trip with the same request and reply bodies, -runs times
// each, alternating. Each round trip sends a message of its own, as L1 traffic does (an L1 message is
// one request); its reply is stored in the background, and the time until
// every one is stored is reported too.
func benchL1(ctx context.Context, cfg config, log *slog.Logger, out func(string, ...any), results map[string]any) (err error) {
	nodes, err := startNodes(ctx, 2, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeNodes(nodes); cerr != nil && err == nil {
			err = cerr
		}
	}()
	a, b := nodes[0], nodes[1]
	_, bs, err := b.createMember(ctx, "b", nil, "l1")
	if err != nil {
		return err
	}
	if _, _, err := a.createMember(ctx, "a", nil); err != nil {
		return err
	}
	attrs := map[string]any{"l1_socket_receiver_member": bs["l1"], "message_content": map[string]any{"text": "ping"}}
	for k, v := range quietFlags {
		attrs[k] = v
	}
	warm := cfg.l1Count / 10
	locs, err := a.createMessages(ctx, "l1", "l1", warm+cfg.runs*cfg.l1Count, attrs)
	if err != nil {
		return err
	}
	loc := locs[0]
	send := func(loc string) (any, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return a.srv.Entities().Trigger(ctx, loc, "send_l1", nil)
	}
	var reply any
	sendAll := func(locs []string) ([]time.Duration, error) {
		ds := make([]time.Duration, 0, len(locs))
		for _, loc := range locs {
			start := time.Now()
			r, err := send(loc)
			if err != nil {
				return nil, fmt.Errorf("send_l1: %w", err)
			}
			ds = append(ds, time.Since(start))
			reply = r
		}
		return ds, nil
	}
	if _, err := sendAll(locs[:warm]); err != nil {
		return err
	}
	// The raw baseline carries the same bytes: the message as the broker
	// puts it on the wire (its entity description) and the reply it got.
	body, err := a.do(ctx, "GET", loc, nil, 200)
	if err != nil {
		return err
	}
	replyBody, err := json.Marshal(reply)
	if err != nil {
		return err
	}
	// Broker and raw runs alternate, so that load from elsewhere on the
	// machine reaches both; each is a median over l1Count round trips.
	broker, raw := durationRuns(), durationRuns()
	brokerCPU, rawCPU := durationRuns(), durationRuns() // µs per round trip
	var replied, stored time.Duration
	for r := 0; r < cfg.runs; r++ {
		round := locs[warm+r*cfg.l1Count : warm+(r+1)*cfg.l1Count]
		cpuBefore := processCPU()
		all := time.Now()
		ds, err := sendAll(round)
		if err != nil {
			return err
		}
		replied = time.Since(all)
		if err := a.srv.Entities().Settle(ctx); err != nil {
			return err
		}
		stored = time.Since(all)
		broker.addDuration(median(ds))
		brokerCPU.add(float64((processCPU() - cpuBefore).Nanoseconds()) / 1000 / float64(cfg.l1Count))
		cpuBefore = processCPU()
		rawRTT, err := rawReqRep(ctx, cfg.l1Count, body, replyBody)
		if err != nil {
			return fmt.Errorf("raw zmq4 REQ/REP: %w", err)
		}
		raw.addDuration(rawRTT)
		rawCPU.add(float64((processCPU() - cpuBefore).Nanoseconds()) / 1000 / float64(cfg.l1Count))
	}
	// Settled: the last message sent has its reply stored as its result.
	last, err := a.do(ctx, "GET", locs[len(locs)-1], nil, 200)
	if err != nil {
		return err
	}
	var settled struct {
		Attributes struct {
			Cmbs struct {
				Message struct {
					Result struct {
						Member map[string]any `json:"member_description"`
					} `json:"result"`
				} `json:"message"`
			} `json:"cmbs"`
		} `json:"attributes"`
	}
	if err := json.Unmarshal(last, &settled); err != nil || settled.Attributes.Cmbs.Message.Result.Member == nil {
		return fmt.Errorf("the last message's result was not stored (%v): %.300s", err, last)
	}
	ratio := broker.best() / raw.best()
	out("   send_l1 node A → node B, in-process Trigger (no HTTP), storable/executable false, median of %d round trips a run, %d runs alternating with the raw baseline", cfg.l1Count, cfg.runs)
	out("   broker: best %.3f ms (%s)", broker.best(), broker)
	out("   last run: %d replies in %v, all stored in results %v after its first send", cfg.l1Count, replied.Round(time.Millisecond), stored.Round(time.Millisecond))
	out("   raw zmq4 REQ/REP, same %d-byte request / %d-byte reply: best %.3f ms (%s)", len(body), len(replyBody), raw.best(), raw)
	out("   ratio of the bests %.2f (goal ≤ 1.5); per run %s", ratio, pairedRatios(broker, raw))
	broker.record(results, "l1_rtt_ms")
	raw.record(results, "l1_raw_zmq_rtt_ms")
	results["l1_rtt_vs_zmq"] = ratio
	results["l1_rtt_vs_zmq_spread"] = pairedRatios(broker, raw).spread()
	// CPU per round trip (both ends, and for the broker the stored
	// result), which the machine's load does not move as it moves
	// latencies.
	out("   CPU of the whole process per round trip: send_l1 best %.1f µs (%s), raw best %.1f µs (%s)", brokerCPU.best(), brokerCPU, rawCPU.best(), rawCPU)
	brokerCPU.record(results, "l1_cpu_us_per_rtt")
	rawCPU.record(results, "l1_raw_zmq_cpu_us_per_rtt")
	return nil
}

// benchFanout sends cfg.fanoutMsgs messages on L2 and then on L3.2 from one
// member to 10 receiving members, each on a node of its own (11 nodes),
// and counts deliveries with the receivers' broker Stats; the same number
// of messages of the same size goes through raw zmq4 PUB → 10 SUB, through
// NATS JetStream to 10 durable consumers (l32_fanout_vs_jetstream, the
// goal) and through core nats-server to 10 subscribers (information).
func benchFanout(ctx context.Context, cfg config, log *slog.Logger, out func(string, ...any), results map[string]any) (err error) {
	const receivers = 10
	sender, recv, closeMesh, err := startFanoutMesh(ctx, log, receivers, []any{"bench"}, "l1", "l2", "l32")
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeMesh(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	received := func(layer string) int {
		total := 0
		for _, n := range recv {
			total += int(n.broker.Stats().Received[layer])
		}
		return total
	}
	cpu := map[string]time.Duration{} // by layer, what its timed sends cost the process (the last run)
	runLayer := func(prefix, layer string, extra map[string]any) (fanoutResult, []byte, error) {
		attrs := map[string]any{"message_content": map[string]any{"text": strings.Repeat("x", 64)}}
		for k, v := range quietFlags {
			attrs[k] = v
		}
		for k, v := range extra {
			attrs[k] = v
		}
		// A tenth more messages go first, untimed: the connections to the
		// receivers are dialled and their handler goroutines started, as
		// the L1 phase and the raw baselines also leave setup untimed.
		warm := cfg.fanoutMsgs / 10
		all, err := sender.createMessages(ctx, prefix, layer, warm+cfg.fanoutMsgs, attrs)
		if err != nil {
			return fanoutResult{}, nil, err
		}
		body, err := sender.do(ctx, "GET", all[0], nil, 200)
		if err != nil {
			return fanoutResult{}, nil, err
		}
		failed := 0
		sendAll := func(locs []string) error {
			f, err := sender.sendEach(ctx, locs, "send_"+layer, cfg.fanoutWindow)
			failed += f
			return err
		}
		if err := sendAll(all[:warm]); err != nil {
			return fanoutResult{}, nil, err
		}
		before := received(layer)
		cpuBefore := processCPU()
		start := time.Now()
		if err := sendAll(all[warm:]); err != nil {
			return fanoutResult{}, nil, err
		}
		elapsed := time.Since(start)
		cpu[layer] = processCPU() - cpuBefore
		if failed > 0 {
			out("   %s: %d deliveries failed", layer, failed)
		}
		// Deliveries are acknowledged: every one counted has happened
		// when its send returned.
		return fanoutResult{delivered: received(layer) - before, elapsed: elapsed, cpu: cpu[layer]}, body, nil
	}
	// L2 and the raw PUB/SUB baseline run -runs times each, alternating,
	// so that load from elsewhere on the machine reaches both.
	var l2, zmq fanoutResult
	var body []byte
	l2Runs, zmqRuns := rateRuns(), rateRuns()
	l2CPU, zmqCPU := durationRuns(), durationRuns()
	for r := 0; r < cfg.runs; r++ {
		res, b, err := runLayer(fmt.Sprintf("l2r%d", r), "l2", nil)
		if err != nil {
			return err
		}
		body = b
		l2Runs.add(res.rate())
		l2CPU.add(res.cpuPerDelivery())
		if res.beats(l2) {
			l2 = res
		}
		cpuBefore := processCPU()
		z, err := rawPubSub(ctx, receivers, cfg.fanoutMsgs, body)
		z.cpu = processCPU() - cpuBefore
		if err != nil {
			return fmt.Errorf("raw zmq4 PUB/SUB: %w", err)
		}
		zmqRuns.add(z.rate())
		zmqCPU.add(z.cpuPerDelivery())
		if z.beats(zmq) {
			zmq = z
		}
	}
	// L3.2 runs -runs times as well: its best rate is compared with
	// JetStream's, its least CPU per delivery printed beside JetStream's.
	var l32, l32Least fanoutResult
	var l32Body []byte
	l32Runs, l32CPU := rateRuns(), durationRuns()
	for r := 0; r < cfg.runs; r++ {
		res, b, err := runLayer(fmt.Sprintf("l32r%d", r), "l32", map[string]any{"topics": []any{"bench"}})
		if err != nil {
			return err
		}
		l32Body = b
		l32Runs.add(res.rate())
		l32CPU.add(res.cpuPerDelivery())
		if res.beats(l32) {
			l32 = res
		}
		if r == 0 || res.cpuPerDelivery() < l32Least.cpuPerDelivery() {
			l32Least = res
		}
	}
	out("   broker: 1 sending member → %d members on %d nodes of their own, %d messages, storable/executable false, %d send actions in flight (in-process Trigger)", receivers, receivers, cfg.fanoutMsgs, cfg.fanoutWindow)
	out("   L2:   best run %d deliveries in %v: %.0f deliveries/s (%s)", l2.delivered, l2.elapsed.Round(time.Millisecond), l2.rate(), l2Runs)
	out("   L3.2: best run %d deliveries in %v: %.0f deliveries/s (%s); CPU per delivery best %.1f µs (%s)", l32.delivered, l32.elapsed.Round(time.Millisecond), l32.rate(), l32Runs, l32CPU.best(), l32CPU)
	results["l32_fanout_per_s_spread"] = l32Runs.spread()
	results["l32_cpu_us_per_delivery_spread"] = l32CPU.spread()

	out("   raw zmq4 PUB → %d SUB, %d × %d bytes: best run %d deliveries in %v: %.0f deliveries/s (%s)", receivers, cfg.fanoutMsgs, len(body), zmq.delivered, zmq.elapsed.Round(time.Millisecond), zmq.rate(), zmqRuns)
	results["fanout_messages"] = cfg.fanoutMsgs
	results["l2_fanout_per_s"] = l2.rate()
	results["l32_fanout_per_s"] = l32.rate()
	results["zmq_pubsub_fanout_per_s"] = zmq.rate()
	results["l2_fanout_vs_zmq"] = l2.rate() / zmq.rate()
	results["l2_fanout_per_s_spread"] = l2Runs.spread()
	results["zmq_pubsub_fanout_per_s_spread"] = zmqRuns.spread()
	results["l2_fanout_vs_zmq_spread"] = pairedRatios(l2Runs, zmqRuns).spread()
	// CPU per delivery does not depend on the machine's other load as the
	// rates do: on a saturated machine the rates' ratio tends to its
	// inverse ratio (zmq's over the broker's).
	out("   CPU of the whole process per delivery: L2 best %.1f µs (%s), raw zmq4 PUB/SUB best %.1f µs (%s)", l2CPU.best(), l2CPU, zmqCPU.best(), zmqCPU)
	l2CPU.record(results, "l2_cpu_us_per_delivery")
	zmqCPU.record(results, "zmq_pubsub_cpu_us_per_delivery")
	results["l32_fanout_vs_zmq"] = l32.rate() / zmq.rate()
	out("   L2 / zmq %.3f, best over best (goal ≥ 0.5; per run %s); L3.2 / zmq %.3f", l2.rate()/zmq.rate(), pairedRatios(l2Runs, zmqRuns), l32.rate()/zmq.rate())
	jetstreamColumn(ctx, natsServerPath, cfg.jetstreamRuns, receivers, cfg.fanoutMsgs, l32Body, l32.rate(), l32Least.cpu, l32Least.delivered, out, results)

	results["nats_fanout_per_s"] = nil
	results["l2_fanout_vs_nats"] = nil
	results["l32_fanout_vs_nats"] = nil
	bin, err := natsServerPath()
	if err != nil {
		out("   NATS column skipped: %v", err)
		results["nats_skipped"] = err.Error()
		return nil
	}
	nr, err := natsFanout(ctx, bin, receivers, cfg.fanoutMsgs, body)
	if err != nil {
		out("   NATS column skipped: %v", err)
		results["nats_skipped"] = err.Error()
		return nil
	}
	out("   %s (%s) → %d subscribers (own connections): %d deliveries in %v: %.0f deliveries/s", bin, natsVersion(ctx, bin), receivers, nr.delivered, nr.elapsed.Round(time.Millisecond), nr.rate())
	results["nats_fanout_per_s"] = nr.rate()
	results["l2_fanout_vs_nats"] = l2.rate() / nr.rate()
	results["l32_fanout_vs_nats"] = l32.rate() / nr.rate()
	out("   L3.2 / core NATS %.3f, L2 / core NATS %.3f (information: core NATS neither stores nor acknowledges)", l32.rate()/nr.rate(), l2.rate()/nr.rate())
	// The broker acknowledges every delivery; NATS core above does not.
	// The same with acknowledgements, for comparison (not a goal).
	na, err := natsAckedFanout(ctx, bin, receivers, cfg.fanoutMsgs, body)
	if err != nil {
		out("   NATS acknowledged column skipped: %v", err)
		return nil
	}
	out("   NATS, every delivery acknowledged to the publisher: %d acks in %v: %.0f deliveries/s; L3.2 / acked NATS %.3f",
		na.delivered, na.elapsed.Round(time.Millisecond), na.rate(), l32.rate()/na.rate())
	results["nats_acked_fanout_per_s"] = na.rate()
	results["l32_fanout_vs_nats_acked"] = l32.rate() / na.rate()
	return nil
}

// benchDiscovery builds a chain of 50 members, one per node (a crawl skips
// its own server's members, so a chain through several members of one
// node would not be crawled), member i's neighbors_socket being member
// i+1's L1 socket, and times one check_neighbors from the first.
func benchDiscovery(ctx context.Context, cfg config, log *slog.Logger, out func(string, ...any), results map[string]any) (err error) {
	const chain = 50
	setup := time.Now()
	nodes, err := startNodes(ctx, chain, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := closeNodes(nodes); cerr != nil && err == nil {
			err = cerr
		}
	}()
	next := ""
	var first string
	for i := chain - 1; i >= 0; i-- {
		extra := map[string]any{"neighbors_socket": []any{}}
		if next != "" {
			extra["neighbors_socket"] = []any{next}
		}
		loc, s, err := nodes[i].createMember(ctx, fmt.Sprintf("m%02d", i), extra, "l1")
		if err != nil {
			return err
		}
		next, first = s["l1"], loc
	}
	out("   %d nodes with one member each started in %.1fs", chain, time.Since(setup).Seconds())
	start := time.Now()
	d, err := nodes[0].do(ctx, "POST", first+"?action=check_neighbors", map[string]any{}, 200)
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	var disc cmbs.Discovery
	if err := json.Unmarshal(d, &disc); err != nil {
		return err
	}
	if len(disc.Learned) != chain-1 || len(disc.Failed) != 0 {
		return fmt.Errorf("check_neighbors learned %d of %d members, %d failed: %.500s", len(disc.Learned), chain-1, len(disc.Failed), d)
	}
	out("   check_neighbors from member 0 learned all %d others (49 BFS levels, one probe each) in %v (goal < 1s)", len(disc.Learned), elapsed.Round(time.Millisecond))
	results["discovery_50_s"] = elapsed.Seconds()
	return nil
}

// beats reports whether r is to replace best as the best run so far: a
// rate at least as high, or best not taken yet.
func (r fanoutResult) beats(best fanoutResult) bool {
	return r.rate() >= best.rate() || best.delivered == 0
}
