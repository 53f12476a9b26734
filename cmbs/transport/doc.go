// Package transport owns all of cmbs's ZeroMQ use: request/reply between
// cmbsd servers over TCP, framed as dploy envelopes
// ([routing…, "", id, mimetype, body]), on the pure-Go
// github.com/go-zeromq/zmq4.
//
// A Server (Listen) is a ROUTER that answers each request with a Handler,
// concurrently and under a deadline; plain libzmq REQ clients (pyzmq) can
// talk to it. A Client sends requests over pooled DEALER sockets with
// deadlines and Lazy Pirate recovery, and Deliver fans one envelope out to
// many servers and collects their acknowledgements, which is how the CMBS
// layers deliver broadcasts (L2) and topic messages (L3.2) without
// PUB/SUB's losses.
//
// The package exists to contain zmq4's sharp edges (reference/deps.md §3):
//   - REQ ignores context cancellation and deadlocks with auto-reconnect:
//     the Client uses DEALER and closes the socket to end a wait.
//   - Dial is synchronous and gives up after 2.5 s: it runs in a goroutine
//     the Client owns, retries until the request's deadline, and is aborted
//     by closing its socket.
//   - A TCP client that never sends the ZMTP greeting stalls zmq4's accept
//     loop: the Server's listener only hands zmq4 connections that have
//     started the greeting (see zmtpTransport), so port scanners and
//     health probes cannot lock other peers out.
//   - zmq4 allocates whatever frame size a peer announces: connections
//     refuse messages over WithMaxMessageSize before the allocation.
//   - Recv reports a peer's disconnect as an error: a Client socket that
//     saw one is discarded, never reused.
//
// Endpoints are written "tcp://host:port"; only TCP is supported. The
// package has no global state other than the one-time registration of its
// zmq4 transport.
package transport
