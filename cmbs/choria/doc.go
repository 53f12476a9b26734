// Package choria answers Choria-style RPC, agent activation and discovery
// requests (the JSON messages of choria-io/schemas' mcorpc/external/v1 and
// choria/discovery/v1) for cmbsd's bus.
//
// A Dispatcher takes one request body, validates it against its protocol's
// JSON Schema, runs it and returns the reply body, which is validated
// before it is returned: a client never sees a reply that breaks the
// schema. Agents live in a Registry; a built-in agent is one small type
// implementing Agent (see Ping), an external agent is an executable run
// under Choria's external-agent contract (see LoadExternal). Discovery
// filters the nodes a NodeSource lists.
//
// Status codes of rpc replies:
//
//	0 OK           the request worked
//	1 Aborted      the action failed (an external agent's exit status, timeout, missing executable, the agent's own failure)
//	2 Unknown      unknown or inactive agent, unknown action
//	3 MissingData  an input the DDL requires is missing
//	4 InvalidData  not JSON, unknown protocol, a schema violation, an input the DDL rejects
//	5 UnknownError an agent's reply that breaks rpc_reply, a panic
package choria
