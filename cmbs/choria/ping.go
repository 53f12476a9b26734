package choria

import (
	"context"
	"time"
)

// Ping is the built-in rpcutil agent's ping action, as Choria's rpcutil
// answers it: {"pong": <unix seconds>}. It is also the smallest example of
// a built-in agent: a DDL and a Call.
type Ping struct {
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

var pingDDL = mustDDL(`{
  "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
  "metadata": {"name": "rpcutil", "description": "General helpful actions that expose stats and internals to SimpleRPC clients", "provider": "builtin", "timeout": 2, "version": "1.0.0"},
  "actions": [
    {"action": "ping", "description": "Responds to requests for PING with PONG", "input": {},
     "output": {"pong": {"description": "The local timestamp", "type": "integer", "display_as": "Timestamp"}}}
  ]
}`)

// DDL implements Agent.
func (Ping) DDL() *DDL { return pingDDL }

// Call implements Agent.
func (p Ping) Call(_ context.Context, req *Request) Reply {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	return OK(map[string]any{"pong": now().Unix()})
}

func mustDDL(s string) *DDL {
	d, err := ParseDDL([]byte(s))
	if err != nil {
		panic(err)
	}
	return d
}
