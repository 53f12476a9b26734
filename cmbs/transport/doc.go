// Package transport owns all of cmbs's ZeroMQ use: request/reply between
// cmbsd servers over TCP, framed as dploy envelopes
// ([routing…, "", id, mimetype, body]) and spoken as plain ZMTP 3 with the
// NULL mechanism, so libzmq (pyzmq) and zmq4 sockets are peers.
//
// A Server (Listen) behaves as a ROUTER that answers each request with a
// Handler, concurrently and under a deadline; plain libzmq REQ clients can
// talk to it. A Client behaves as a DEALER: one connection per endpoint
// carries any number of requests at once, each with its own correlation
// frame and deadline, with Lazy Pirate recovery; Deliver fans one envelope
// out to many servers and collects their acknowledgements, which is how
// the CMBS layers deliver broadcasts (L2) and topic messages (L3.2)
// without PUB/SUB's losses. A client connection no request has used for
// WithIdleTimeout (90 s) is closed, so a server that once talked to many
// peers does not keep a connection to each of them. docs/limits.md lists
// every bound a peer meets.
//
// The ZMTP handshake (greeting, security mechanism, READY, socket-type
// rules) is github.com/go-zeromq/zmq4's; the sockets around it are this
// package's, built for the edges measured with zmq4's own
// (docs/decisions.md, "CMBS transport"):
//   - REQ ignores context cancellation and deadlocks with auto-reconnect;
//     zmq4's Dial gives up after 2.5 s: every wait here selects on the
//     request's context, and dialling retries until its deadline.
//   - A TCP client that never sends the ZMTP greeting stalls zmq4's accept
//     loop: here each connection has its own goroutine and must send the
//     signature within the handshake timeout, so port scanners and health
//     probes cannot lock other peers out.
//   - zmq4 allocates whatever frame size a peer announces: connections
//     refuse messages over WithMaxMessageSize before the allocation, grow
//     a frame's buffer only as its bytes arrive, from a ReadBudget shared
//     by every connection, and give a message WithMessageTimeout (10 s)
//     to arrive once started.
//   - Nothing bounded a server's connections: a Server keeps at most
//     WithMaxConns (512) and those of a ConnQuota it shares with others,
//     closes peers idle for WithPeerIdleTimeout (5 min), and admits
//     connections per source address, so that a flood of silent
//     connections from one address locks out no one (admission.go).
//   - zmq4's sockets move each message through several goroutines and one
//     system call each way: here a connection's reader hands replies
//     straight to their requests, and messages queued while another is
//     written go out in the same system call. With WithInlineHandlers a
//     server's reader answers requests itself, without handing them to a
//     handler goroutine, and the replies to requests read together go out
//     together; Deliver wakes its caller once for all its replies.
//
// With WithCurveServer and WithCurveClient the connections speak
// ZMTP-CURVE instead of NULL (package curve has the mechanism): the
// handshake is then this package's own, every frame travels sealed in a
// MESSAGE command, NULL peers are refused, and so are clients the server's
// Authorize turns down; libzmq's CURVE sockets are peers as before.
//
// Endpoints are written "tcp://host:port"; only TCP is supported. The
// package has no global state.
package transport
