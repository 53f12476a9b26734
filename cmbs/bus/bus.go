// Package bus is cmbsd's opt-in message bus on ZeroMQ: an rpc socket
// (ROUTER) that answers Choria-style RPC, activation and discovery
// requests, an events-out socket (PUB) on which the server publishes what
// it does, and an events-in socket (PULL) whose every envelope is
// published unchanged on events-out (dploy's PubServer). Every message is
// a dploy envelope [routing…, "", id, mimetype, body]; replies keep the
// request's routing frames and id, so concurrent DEALER clients each get
// exactly their own replies.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/cmbs/transport/curve"
	"github.com/cmbs/cmbs/internal/netaddr"
)

// JSONMimeType is the mimetype of Choria requests and replies on the bus.
const JSONMimeType = "application/json"

// Dispatcher answers one JSON request body with one JSON reply body
// (choria.Dispatcher).
type Dispatcher interface {
	Handle(ctx context.Context, body []byte) []byte
}

// Options configures a Bus. Each endpoint is "tcp://host:port"; an empty
// one leaves its socket closed.
type Options struct {
	RPC       string
	EventsOut string
	EventsIn  string
	// Dispatcher answers rpc requests (required with RPC).
	Dispatcher Dispatcher
	// AllowNonLoopback lets the sockets bind other than loopback addresses
	// (without Curve they do not authenticate peers).
	AllowNonLoopback bool
	// Curve, when set, makes every bus socket a CURVE server with its keys
	// (NULL peers and clients it does not authorise are refused and
	// counted); the sockets may then bind any address.
	Curve *curve.ServerConfig
	// RequestTimeout bounds one rpc request (default 2 minutes: an
	// external agent may run for its DDL's timeout).
	RequestTimeout time.Duration
	// MaxConcurrent bounds the rpc requests handled at once (default 512);
	// more are answered with the transport's "overloaded" error envelope.
	MaxConcurrent int
	Logger        *slog.Logger
}

// Stats counts what the bus has done.
type Stats struct {
	RPC       *transport.ServerStats    `json:"rpc,omitempty"`
	EventsOut *transport.PublisherStats `json:"events_out,omitempty"`
	EventsIn  *transport.PullStats      `json:"events_in,omitempty"`
	// InvalidRequests are rpc requests answered with statuscode 4 before
	// dispatch (wrong mimetype).
	InvalidRequests uint64 `json:"invalid_requests"`
	// MalformedEvents are events-in messages dropped as not an envelope.
	MalformedEvents uint64 `json:"malformed_events"`
	// Rebroadcast are events-in envelopes published on events-out.
	Rebroadcast uint64 `json:"rebroadcast"`
	// CurveRefused are connections the bus sockets refused in the CURVE
	// handshake (NULL peers, unauthorised keys); absent without CURVE.
	CurveRefused *uint64 `json:"curve_refused,omitempty"`
}

// Bus owns the bus sockets; Close closes them all.
type Bus struct {
	opts Options
	log  *slog.Logger
	rpc  *transport.Server
	pub  *transport.Publisher
	pull *transport.Puller

	invalid, malformedEvents, rebroadcast atomic.Uint64
}

// Start binds the configured sockets. ctx only bounds the binding. On an
// error nothing stays open.
func Start(ctx context.Context, opts Options) (b *Bus, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 2 * time.Minute
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 512
	}
	b = &Bus{opts: opts, log: opts.Logger.With("component", "bus")}
	for name, ep := range map[string]string{"rpc": opts.RPC, "events-out": opts.EventsOut, "events-in": opts.EventsIn} {
		if err := CheckEndpoint(ep, opts.AllowNonLoopback || opts.Curve != nil); err != nil {
			return nil, fmt.Errorf("bus %s: %w", name, err)
		}
	}
	if opts.RPC != "" && opts.Dispatcher == nil {
		return nil, errors.New("bus: an rpc socket needs a dispatcher")
	}
	defer func() {
		if err != nil {
			_ = b.Close()
			b = nil
		}
	}()
	topts := []transport.Option{transport.WithLogger(opts.Logger)}
	if opts.Curve != nil {
		topts = append(topts, transport.WithCurveServer(opts.Curve))
	}
	if opts.EventsOut != "" {
		if b.pub, err = transport.ListenPub(ctx, opts.EventsOut, topts...); err != nil {
			return nil, fmt.Errorf("bus events-out: %w", err)
		}
	}
	if opts.EventsIn != "" {
		if b.pull, err = transport.ListenPull(ctx, opts.EventsIn, b.eventIn, topts...); err != nil {
			return nil, fmt.Errorf("bus events-in: %w", err)
		}
	}
	if opts.RPC != "" {
		if b.rpc, err = transport.Listen(ctx, opts.RPC, b.handle, append(topts, transport.WithHandlerTimeout(opts.RequestTimeout), transport.WithMaxConcurrent(opts.MaxConcurrent), transport.WithErrorReply(rpcErrorReply))...); err != nil {
			return nil, fmt.Errorf("bus rpc: %w", err)
		}
	}
	b.log.Info("bus started", "rpc", b.RPCAddr(), "events_out", b.EventsOutAddr(), "events_in", b.EventsInAddr(), "curve", opts.Curve != nil)
	return b, nil
}

// CheckEndpoint reports whether endpoint (empty: none) is a tcp endpoint
// the bus may bind: a loopback host unless allowNonLoopback (--insecure, or
// CURVE).
func CheckEndpoint(endpoint string, allowNonLoopback bool) error {
	if endpoint == "" {
		return nil
	}
	rest, ok := strings.CutPrefix(endpoint, "tcp://")
	if !ok {
		return fmt.Errorf("endpoint %q: only tcp://host:port is supported", endpoint)
	}
	host, _, err := net.SplitHostPort(rest)
	if err != nil {
		return fmt.Errorf("endpoint %q: %v", endpoint, err)
	}
	if !allowNonLoopback && !netaddr.LoopbackHost(host) {
		return fmt.Errorf("endpoint %q is not a loopback address; without --curve-key bus sockets do not authenticate peers, so this needs --insecure", endpoint)
	}
	return nil
}

// RPCAddr is the bound rpc endpoint, or "".
func (b *Bus) RPCAddr() string {
	if b.rpc == nil {
		return ""
	}
	return b.rpc.Addr()
}

// EventsOutAddr is the bound events-out endpoint, or "".
func (b *Bus) EventsOutAddr() string {
	if b.pub == nil {
		return ""
	}
	return b.pub.Addr()
}

// EventsInAddr is the bound events-in endpoint, or "".
func (b *Bus) EventsInAddr() string {
	if b.pull == nil {
		return ""
	}
	return b.pull.Addr()
}

// Publish sends env on events-out (a no-op without one). It never blocks
// on subscribers.
func (b *Bus) Publish(env transport.Envelope) {
	if b == nil || b.pub == nil {
		return
	}
	env.Routing = nil
	b.pub.Publish(env.Frames())
}

// PublishJSON publishes v as JSON under id on events-out.
func (b *Bus) PublishJSON(id string, v any) error {
	if b == nil || b.pub == nil {
		return nil
	}
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b.Publish(transport.Envelope{ID: id, MimeType: JSONMimeType, Body: body})
	return nil
}

// Stats returns the bus's counters.
func (b *Bus) Stats() Stats {
	s := Stats{InvalidRequests: b.invalid.Load(), MalformedEvents: b.malformedEvents.Load(), Rebroadcast: b.rebroadcast.Load()}
	if b.opts.Curve != nil {
		n := b.opts.Curve.Refused()
		s.CurveRefused = &n
	}
	if b.rpc != nil {
		st := b.rpc.Stats()
		s.RPC = &st
	}
	if b.pub != nil {
		st := b.pub.Stats()
		s.EventsOut = &st
	}
	if b.pull != nil {
		st := b.pull.Stats()
		s.EventsIn = &st
	}
	return s
}

// Close closes every socket; it returns once their goroutines have ended.
func (b *Bus) Close() error {
	var errs []error
	if b.rpc != nil {
		errs = append(errs, b.rpc.Close())
	}
	if b.pull != nil {
		errs = append(errs, b.pull.Close())
	}
	if b.pub != nil {
		errs = append(errs, b.pub.Close())
	}
	return errors.Join(errs...)
}

// handle answers one rpc envelope: a JSON body goes to the dispatcher,
// anything else is answered with statuscode 4.
func (b *Bus) handle(ctx context.Context, req transport.Envelope) (transport.Envelope, error) {
	mt, _, err := mime.ParseMediaType(req.MimeType)
	if err != nil || mt != JSONMimeType {
		b.invalid.Add(1)
		body, _ := json.Marshal(map[string]any{
			"statuscode": 4,
			"statusmsg":  fmt.Sprintf("Invalid Data: mimetype %q: the rpc socket takes %s", req.MimeType, JSONMimeType),
			"data":       map[string]any{},
		})
		return req.Reply(JSONMimeType, body), nil
	}
	return req.Reply(JSONMimeType, b.opts.Dispatcher.Handle(ctx, req.Body)), nil
}

// rpcErrorReply answers what the handler does not (DP-13) with an
// rpc_reply, so that an rpc client reads every answer the same way: a
// malformed envelope is 4 with statusmsg "malformed envelope: …" (dploy's
// REP-style error reply), no free handler slot or a request past its
// deadline 1 (Aborted), a failed handler 5 (Unknown error).
func rpcErrorReply(_ string, e *transport.RemoteError) (string, []byte) {
	code, msg := 5, "Unknown error: "+e.Message
	switch e.Code {
	case transport.CodeMalformed:
		code, msg = 4, e.Message // already "malformed envelope: …"
	case transport.CodeOverloaded:
		code, msg = 1, "Aborted: server overloaded: "+e.Message
	case transport.CodeTimeout:
		code, msg = 1, "Aborted: "+e.Message
	}
	body, _ := json.Marshal(map[string]any{"statuscode": code, "statusmsg": msg, "data": map[string]any{}})
	return JSONMimeType, body
}

// eventIn republishes an events-in message unchanged, if it is an envelope.
func (b *Bus) eventIn(_ context.Context, frames [][]byte) {
	if _, err := transport.Parse(frames); err != nil {
		b.malformedEvents.Add(1)
		b.log.Debug("events-in: dropped a malformed envelope", "err", err)
		return
	}
	b.rebroadcast.Add(1)
	if b.pub != nil {
		b.pub.Publish(frames)
	}
}
