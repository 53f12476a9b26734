package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/cmbs/bus"
	"github.com/cmbs/cmbs/cmbs/choria"
	"github.com/cmbs/cmbs/cmbs/transport/curve"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/choriaagent"
)

// busEvents publishes the broker's deliveries on the bus once it runs (the
// broker is built before the bus, which needs it for discovery).
type busEvents struct{ bus atomic.Pointer[bus.Bus] }

// PublishJSON publishes v as JSON under id on --events-out, once the bus
// runs (a no-op before, and without --events-out). Providers that report
// what they do (execution.<uuid>, smartmob.<slug>) are given this.
func (e *busEvents) PublishJSON(id string, v any) error {
	if b := e.bus.Load(); b != nil {
		return b.PublishJSON(id, v)
	}
	return nil
}

// Listening tells whether anyone receives what is published now: the bus
// runs with --events-out and has a subscriber. The process provider
// prepares a run's events only then.
func (e *busEvents) Listening() bool {
	b := e.bus.Load()
	if b == nil {
		return false
	}
	out := b.Stats().EventsOut
	return out != nil && out.Subscribers > 0
}

// publishing reports whether delivered messages may be published (the
// bus runs): only then does the broker's delivery hook need each message
// whole (cmbs.Options.DeliveryMessage); the console needs its id.
func (e *busEvents) publishing() bool { return e.bus.Load() != nil }

// delivered publishes a received CMBS message as cmbs.<layer>.
func (e *busEvents) delivered(m cmbs.ReceivedMessage) {
	if b := e.bus.Load(); b != nil {
		_ = b.PublishJSON("cmbs."+string(m.Layer), m)
	}
}

// startBus loads the agents and binds the bus sockets cfg names; nil, nil
// when none is configured.
//
// The agents are also entities at /choria/agent/ (their rpc action and the
// rpc socket share the dispatcher); those are installed with --rpc only.
func startBus(ctx context.Context, cfg busConfig, insecure bool, curveOpts *cmbs.CurveOptions, srv *occi.Server, reg *providers.Registry, broker *cmbs.Broker, procs choriaagent.Processes, apps choriaagent.SmartmobProcesses, events *busEvents, logger *slog.Logger) (*bus.Bus, *choria.Dispatcher, error) {
	if !cfg.enabled() {
		return nil, nil, nil
	}
	agents := choria.NewRegistry()
	for _, a := range []choria.Agent{choria.Ping{}, choriaagent.ProcessAgent{Processes: procs}, choriaagent.SmartmobAgent{Processes: apps}} {
		if err := agents.Add(ctx, a); err != nil {
			return nil, nil, err
		}
	}
	if cfg.AgentsDir != "" {
		external, err := choria.LoadExternal(cfg.AgentsDir, choria.ExternalOptions{Facts: broker.LocalFacts, Logger: logger.With("component", "choria.external")})
		if err != nil {
			return nil, nil, fmt.Errorf("load agents: %w", err)
		}
		for _, a := range external {
			if err := agents.Add(ctx, a); err != nil {
				return nil, nil, fmt.Errorf("load agents: %w", err)
			}
		}
	}
	nodes := choria.NodeSourceFunc(func(ctx context.Context) ([]choria.Node, error) {
		return broker.DiscoveryNodes(ctx, agents.Names())
	})
	dispatcher, err := choria.NewDispatcher(agents, nodes, logger)
	if err != nil {
		return nil, nil, err
	}
	if cfg.RPC != "" {
		if _, err := choriaagent.Install(ctx, reg, srv.Categories(), srv.Entities(), dispatcher, logger); err != nil {
			return nil, nil, fmt.Errorf("agent entities: %w", err)
		}
	}
	b, err := bus.Start(ctx, bus.Options{RPC: cfg.RPC, EventsOut: cfg.EventsOut, EventsIn: cfg.EventsIn, Dispatcher: dispatcher, AllowNonLoopback: insecure,
		Curve: busCurve(curveOpts), Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	events.bus.Store(b)
	return b, dispatcher, nil
}

// busCurve is the CURVE server configuration of the bus sockets (nil
// without --curve-key): this server's keys, and --curve-clients' keys
// authorised as on the layer sockets (none listed: any CURVE client).
func busCurve(o *cmbs.CurveOptions) *curve.ServerConfig {
	if o == nil {
		return nil
	}
	cfg := &curve.ServerConfig{Keys: o.Keys}
	if len(o.Clients) > 0 {
		allowed := make(map[curve.Key]bool, len(o.Clients))
		for _, c := range o.Clients {
			allowed[c] = true
		}
		cfg.Authorize = func(c curve.Key) bool { return allowed[c] }
	}
	return cfg
}
