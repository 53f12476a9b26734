package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/cmbs/cmbs/cmbs/bus"
)

// busConfig is the bus part of the configuration (all off by default).
type busConfig struct {
	// RPC, EventsOut and EventsIn are the bus endpoints ("" = closed).
	RPC, EventsOut, EventsIn string
	// AgentsDir holds external Choria agents (<agent>.json + <agent>).
	AgentsDir string
}

// enabled reports whether any bus socket is configured.
func (c busConfig) enabled() bool { return c.RPC != "" || c.EventsOut != "" || c.EventsIn != "" }

type rawBus struct{ rpc, eventsOut, eventsIn, agents string }

func (r *rawBus) register(fs *flag.FlagSet) {
	fs.StringVar(&r.rpc, "rpc", "", "bus `endpoint` (tcp://host:port) of the ROUTER socket answering Choria RPC, activation and discovery requests (default: off)")
	fs.StringVar(&r.eventsOut, "events-out", "", "bus `endpoint` of the PUB socket the server publishes events on (default: off)")
	fs.StringVar(&r.eventsIn, "events-in", "", "bus `endpoint` of the PULL socket whose every envelope is republished on --events-out (default: off)")
	fs.StringVar(&r.agents, "agents", "", "`directory` of external Choria agents (<agent>.json DDL and executable <agent>), served on --rpc")
}

func (r rawBus) validate(insecure bool) (busConfig, error) {
	for _, f := range []struct{ name, ep string }{{"rpc", r.rpc}, {"events-out", r.eventsOut}, {"events-in", r.eventsIn}} {
		if err := bus.CheckEndpoint(f.ep, insecure); err != nil {
			return busConfig{}, badConfig(f.name, "%v", err)
		}
	}
	if r.eventsIn != "" && r.eventsOut == "" {
		return busConfig{}, badConfig("events-in", "needs --events-out: what it receives is republished there")
	}
	if r.agents != "" {
		if fi, err := os.Stat(r.agents); err != nil || !fi.IsDir() {
			return busConfig{}, badConfig("agents", "%q is not a directory", r.agents)
		}
		if r.rpc == "" {
			return busConfig{}, badConfig("agents", "needs --rpc: agents are called there")
		}
	}
	if r.rpc != "" && (r.rpc == r.eventsOut || r.rpc == r.eventsIn) || (r.eventsIn != "" && r.eventsIn == r.eventsOut) {
		return busConfig{}, &configError{msg: fmt.Sprintf("--rpc, --events-out and --events-in need different endpoints (got %q, %q, %q)", r.rpc, r.eventsOut, r.eventsIn)}
	}
	return busConfig{RPC: r.rpc, EventsOut: r.eventsOut, EventsIn: r.eventsIn, AgentsDir: r.agents}, nil
}
