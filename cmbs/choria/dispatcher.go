package choria

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
)

// Dispatcher answers one Choria request body with one reply body. The
// bus's rpc socket and the agent entities' rpc action both go through
// Handle, so they cannot disagree.
type Dispatcher struct {
	agents  *Registry
	nodes   NodeSource
	schemas *Schemas
	log     *slog.Logger
}

// NewDispatcher returns a dispatcher over agents; nodes answers discovery
// (nil: discovery replies with an error).
func NewDispatcher(agents *Registry, nodes NodeSource, logger *slog.Logger) (*Dispatcher, error) {
	s, err := NewSchemas()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{agents: agents, nodes: nodes, schemas: s, log: logger.With("component", "choria")}, nil
}

// Agents returns the registry the dispatcher serves.
func (d *Dispatcher) Agents() *Registry { return d.agents }

// Handle answers body, a JSON request of one of the request protocols,
// chosen by its protocol field. Whatever body holds, the result is a reply
// that validates against its protocol's reply schema: an rpc_reply with
// statuscode 4 for a body that is not JSON, has an unknown protocol or
// breaks its schema.
func (d *Dispatcher) Handle(ctx context.Context, body []byte) []byte {
	var head struct {
		Protocol string `json:"protocol"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return d.rpcReply(Fail(StatusInvalidData, "Invalid Data: not a JSON object: %v", err))
	}
	switch head.Protocol {
	case ProtocolRPCRequest, ProtocolActivationRequest, ProtocolDiscoveryRequest:
	default:
		return d.rpcReply(Fail(StatusInvalidData, "Invalid Data: unsupported message protocol %q", head.Protocol))
	}
	if err := d.schemas.Validate(head.Protocol, body); err != nil {
		if head.Protocol == ProtocolDiscoveryRequest {
			return d.discoveryReply(DiscoveryReply{Error: "Invalid Data: " + err.Error()})
		}
		return d.rpcReply(Fail(StatusInvalidData, "Invalid Data: %v", err))
	}
	switch head.Protocol {
	case ProtocolActivationRequest:
		return d.activation(ctx, body)
	case ProtocolDiscoveryRequest:
		return d.discoveryReply(d.discover(ctx, body))
	}
	var req Request
	if err := json.Unmarshal(body, &req); err != nil {
		return d.rpcReply(Fail(StatusInvalidData, "Invalid Data: %v", err))
	}
	return d.rpcReply(d.Call(ctx, &req))
}

// Call runs a parsed rpc request: agent and action lookup, the DDL's input
// checks, then the agent. A panicking agent answers 5.
func (d *Dispatcher) Call(ctx context.Context, req *Request) (rep Reply) {
	agent, active := d.agents.lookup(req.Agent)
	if agent == nil {
		return Fail(StatusUnknown, "Unknown agent %s", req.Agent)
	}
	if !active {
		return Fail(StatusUnknown, "Agent %s is not active", req.Agent)
	}
	action := agent.DDL().Action(req.Action)
	if action == nil {
		return Fail(StatusUnknown, "Unknown action %s for agent %s", req.Action, req.Agent)
	}
	if req.Data == nil {
		req.Data = map[string]any{}
	}
	if bad := action.CheckInputs(req.Data); bad != nil {
		return *bad
	}
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("agent panicked", "agent", req.Agent, "action", req.Action, "panic", p, "stack", string(debug.Stack()))
			rep = Fail(StatusUnknownError, "Unknown error: agent %s panicked", req.Agent)
		}
	}()
	return agent.Call(ctx, req)
}

// rpcReply encodes and validates rep; a reply that does not validate is
// replaced by a 5, so no invalid reply leaves the server.
func (d *Dispatcher) rpcReply(rep Reply) []byte {
	b, err := json.Marshal(rep)
	if err == nil {
		err = d.schemas.Validate(ProtocolRPCReply, b)
	}
	if err != nil {
		d.log.Error("invalid rpc reply replaced", "err", err)
		b, _ = json.Marshal(Fail(StatusUnknownError, "Unknown error: invalid reply: %v", err))
	}
	return b
}

func (d *Dispatcher) activation(ctx context.Context, body []byte) []byte {
	var req ActivationRequest
	_ = json.Unmarshal(body, &req) // validated above
	on, err := d.agents.Activate(ctx, req.Agent)
	if err != nil {
		d.log.Info("activation check failed", "agent", req.Agent, "err", err)
	}
	b, _ := json.Marshal(ActivationReply{Activate: on})
	if err := d.schemas.Validate(ProtocolActivationReply, b); err != nil {
		panic(fmt.Sprintf("activation reply %s: %v", b, err)) // a bool cannot break it
	}
	return b
}

func (d *Dispatcher) discoveryReply(rep DiscoveryReply) []byte {
	rep.Protocol = ProtocolDiscoveryReply
	if rep.Error == "" && rep.Nodes == nil {
		rep.Nodes = []string{}
	}
	b, err := json.Marshal(rep)
	if err == nil {
		err = d.schemas.Validate(ProtocolDiscoveryReply, b)
	}
	if err != nil {
		b, _ = json.Marshal(DiscoveryReply{Protocol: ProtocolDiscoveryReply, Error: "invalid discovery reply: " + err.Error()})
	}
	return b
}
