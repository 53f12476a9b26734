package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/cmbs/transport/curve"
)

// benchCurve times L2 fan-out from one member to 10 on nodes of their own,
// once on nodes speaking NULL and once on nodes speaking CURVE (every node
// its own key, every receiver's key configured on the sender, clients
// authorised by list), alternating rounds so that both see the same
// machine (-runs rounds each), and reports the ratio of the best rates
// (goal ≥ 0.7) with the spread of each side and of the per-round ratio.
func benchCurve(ctx context.Context, cfg config, log *slog.Logger, out func(string, ...any), results map[string]any) (err error) {
	const receivers = 10
	keys := make([]curve.KeyPair, receivers+1)
	var public []curve.Key
	for i := range keys {
		if keys[i], err = curve.GenerateKeyPair(nil); err != nil {
			return err
		}
		public = append(public, keys[i].Public)
	}
	// The receivers' sockets are chosen first: the sender must know the
	// key behind each before it connects.
	sockets := make([]map[string]any, receivers)
	servers := map[string]curve.Key{}
	for i := range sockets {
		sockets[i] = map[string]any{}
		for _, l := range []string{"l1", "l2"} {
			s, err := freeSocket()
			if err != nil {
				return err
			}
			sockets[i][l+"_socket"] = s
			servers[s] = keys[i+1].Public
		}
	}
	type side struct {
		name   string
		sender *cmbsNode
		loc    string
		nodes  []*cmbsNode
		rates  []float64
		cpu    *runs // µs of process CPU per delivery, each timed round
	}
	setup := func(name string, withCurve bool) (*side, error) {
		sd := &side{name: name}
		for i := 0; i <= receivers; i++ {
			opts := brokerOptions(log)
			if withCurve {
				opts.Curve = &cmbs.CurveOptions{Keys: keys[i], Clients: public}
				if i == 0 {
					opts.Curve.Servers = servers
				}
			}
			n, err := startNodeWith(ctx, log, opts)
			if err != nil {
				return sd, err
			}
			sd.nodes = append(sd.nodes, n)
		}
		sd.sender = sd.nodes[0]
		var l1s []any
		for i, n := range sd.nodes[1:] {
			extra := map[string]any{}
			if withCurve {
				extra = sockets[i]
			}
			_, s, err := n.createMember(ctx, fmt.Sprintf("r%02d", i), extra, "l1", "l2")
			if err != nil {
				return sd, err
			}
			if withCurve && (s["l1"] != sockets[i]["l1_socket"] || s["l2"] != sockets[i]["l2_socket"]) {
				return sd, fmt.Errorf("receiver %d's sockets moved (ports taken): its CURVE key is configured for others", i)
			}
			l1s = append(l1s, s["l1"])
		}
		loc, _, err := sd.sender.createMember(ctx, "s", map[string]any{"neighbors_socket": l1s})
		if err != nil {
			return sd, err
		}
		sd.loc = loc
		if _, err := sd.sender.do(ctx, "POST", loc+"?action=check_neighbors", map[string]any{}, 200); err != nil {
			return sd, err
		}
		return sd, nil
	}
	var sides []*side
	defer func() {
		for _, sd := range sides {
			if cerr := closeNodes(sd.nodes); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	for _, c := range []bool{false, true} {
		name := map[bool]string{false: "NULL", true: "CURVE"}[c]
		sd, err := setup(name, c)
		sides = append(sides, sd)
		if err != nil {
			return fmt.Errorf("%s nodes: %w", name, err)
		}
	}

	attrs := map[string]any{"message_content": map[string]any{"text": strings.Repeat("x", 64)}}
	for k, v := range quietFlags {
		attrs[k] = v
	}
	round := func(sd *side, r, count int, timed bool) error {
		locs, err := sd.sender.createMessages(ctx, fmt.Sprintf("c%d-%t", r, timed), "l2", count, attrs)
		if err != nil {
			return err
		}
		before := 0
		for _, n := range sd.nodes[1:] {
			before += int(n.broker.Stats().Received["l2"])
		}
		cpuBefore := processCPU()
		start := time.Now()
		failed, err := sd.sender.sendEach(ctx, locs, "send_l2", cfg.fanoutWindow)
		if err != nil {
			return fmt.Errorf("%s %w", sd.name, err)
		}
		elapsed := time.Since(start)
		cpu := processCPU() - cpuBefore
		if failed > 0 {
			return fmt.Errorf("%s: %d deliveries failed", sd.name, failed)
		}
		after := 0
		for _, n := range sd.nodes[1:] {
			after += int(n.broker.Stats().Received["l2"])
		}
		if timed {
			sd.rates = append(sd.rates, float64(after-before)/elapsed.Seconds())
			if sd.cpu == nil {
				sd.cpu = durationRuns()
			}
			sd.cpu.add(float64(cpu.Nanoseconds()) / 1000 / float64(max(after-before, 1)))
		}
		return nil
	}
	// Untimed first: connections dialled (handshakes done), goroutines
	// started, as the other phases leave setup untimed.
	for _, sd := range sides {
		if err := round(sd, 0, max(cfg.fanoutMsgs/10, 10), false); err != nil {
			return err
		}
	}
	for r := 1; r <= cfg.runs; r++ {
		for _, sd := range sides {
			if err := round(sd, r, cfg.fanoutMsgs, true); err != nil {
				return err
			}
		}
	}
	best := func(sd *side) float64 { return slices.Max(sd.rates) }
	spread := func(sd *side) float64 { return (slices.Max(sd.rates) - slices.Min(sd.rates)) / slices.Max(sd.rates) }
	null, cv := sides[0], sides[1]
	if best(null) == 0 {
		return errors.New("no NULL deliveries measured")
	}
	out("   L2 fan-out, 1 member → %d members on nodes of their own, %d messages a round, best of %d rounds each, alternating", receivers, cfg.fanoutMsgs, cfg.runs)
	perSide := map[string]*runs{}
	for _, sd := range sides {
		perSide[sd.name] = &runs{vals: sd.rates}
		out("   %-5s %.0f deliveries/s best (rounds %s; %s; spread %.0f%%)", sd.name, best(sd), fmtRates(sd.rates), perSide[sd.name], 100*spread(sd))
	}
	ratio := best(cv) / best(null)
	perRound := pairedRatios(perSide["CURVE"], perSide["NULL"])
	out("   CURVE / NULL %.3f, best over best (goal ≥ 0.7); per round %s", ratio, perRound)
	results["l2_null_fanout_per_s"] = best(null)
	results["l2_curve_fanout_per_s"] = best(cv)
	results["l2_curve_vs_null"] = ratio
	results["l2_curve_rounds_spread"] = map[string]float64{"null": spread(null), "curve": spread(cv)}
	results["l2_null_fanout_per_s_spread"] = perSide["NULL"].spread()
	results["l2_curve_fanout_per_s_spread"] = perSide["CURVE"].spread()
	results["l2_curve_vs_null_spread"] = perRound.spread()
	// The CPU each delivery costs does not move with the machine's load
	// as the rates do: NULL's over CURVE's is the same goal measured
	// without the noise (what the rates' ratio tends to on a saturated
	// machine).
	cpuRatio := null.cpu.best() / cv.cpu.best()
	out("   CPU of the whole process per delivery: NULL best %.1f µs (%s), CURVE best %.1f µs (%s); NULL / CURVE %.3f", null.cpu.best(), null.cpu, cv.cpu.best(), cv.cpu, cpuRatio)
	null.cpu.record(results, "l2_null_cpu_us_per_delivery")
	cv.cpu.record(results, "l2_curve_cpu_us_per_delivery")
	results["l2_curve_vs_null_cpu"] = cpuRatio
	return nil
}

func fmtRates(rates []float64) string {
	var parts []string
	for _, r := range rates {
		parts = append(parts, fmt.Sprintf("%.0f", r))
	}
	return strings.Join(parts, ", ")
}
