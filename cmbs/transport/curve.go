package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"github.com/go-zeromq/zmq4"

	"github.com/cmbs/cmbs/cmbs/transport/curve"
)

// ErrNoServerKey is returned by a CURVE Client asked to reach an endpoint
// whose server key it does not know: it cannot prove who it talks to, so
// it does not connect.
var ErrNoServerKey = errors.New("transport: no CURVE server key known for the endpoint")

// ErrNotCurve is returned by a CURVE Server's handshake with a peer that
// offered another security mechanism (NULL, PLAIN).
var ErrNotCurve = errors.New("transport: peer does not speak CURVE")

// WithCurveServer makes a Server (and a ListenPub or ListenPull socket)
// speak ZMTP-CURVE as the CURVE server with
// cfg's keys: peers offering NULL or PLAIN are refused, and so are clients
// cfg.Authorize turns down; cfg counts both (ServerConfig.Refused).
func WithCurveServer(cfg *curve.ServerConfig) Option {
	return func(o *options) { o.curve.server = cfg }
}

// WithCurveClient makes a Client speak ZMTP-CURVE with keys to every
// endpoint. serverKey returns the long-term key the server at an endpoint
// ("tcp://host:port") must present; an endpoint without one fails with
// ErrNoServerKey, never falls back to NULL.
func WithCurveClient(keys curve.KeyPair, serverKey func(endpoint string) (curve.Key, bool)) Option {
	return func(o *options) {
		o.curve.client = &keys
		o.curve.serverKey = serverKey
	}
}

// curveOptions is the CURVE configuration of a Server or Client; its zero
// value is the NULL mechanism.
type curveOptions struct {
	server    *curve.ServerConfig
	client    *curve.KeyPair
	serverKey func(endpoint string) (curve.Key, bool)
}

// curveMech is the mechanism of one connection's handshake; nil is NULL.
type curveMech struct {
	server    *curve.ServerConfig // the accepting side
	client    *curve.KeyPair      // the connecting side, with serverKey
	serverKey curve.Key
	maxMsg    int64
}

// forServer is the mechanism of a Server's connections.
func (c curveOptions) forServer(maxMsg int64) *curveMech {
	if c.server == nil {
		return nil
	}
	return &curveMech{server: c.server, maxMsg: maxMsg}
}

// forEndpoint is the mechanism of a Client's connection to addr (host:port).
func (c curveOptions) forEndpoint(addr string, maxMsg int64) (*curveMech, error) {
	if c.client == nil {
		return nil, nil
	}
	endpoint := "tcp://" + addr
	var key curve.Key
	ok := false
	if c.serverKey != nil {
		key, ok = c.serverKey(endpoint)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoServerKey, endpoint)
	}
	return &curveMech{client: c.client, serverKey: key, maxMsg: maxMsg}, nil
}

// greeting is a ZMTP 3.0 greeting offering CURVE.
func curveGreeting(asServer bool) []byte {
	g := make([]byte, zmtpGreetingSize)
	g[0], g[9] = 0xFF, 0x7F
	g[10], g[11] = 3, 0
	copy(g[12:32], "CURVE")
	if asServer {
		g[32] = 1
	}
	return g
}

// ErrCurveClosed is returned by a CURVE Client whose server closed the
// connection during the CURVE handshake proper, after both greetings: a
// CURVE server does that when the HELLO does not open with its key (the
// client was given another server key for the endpoint) or it refuses the
// client without an ERROR. A Server's connection limits close connections
// only before the peer has spoken, so unlike a connection closed earlier
// in the handshake this one is not retried.
var ErrCurveClosed = errors.New("transport: the CURVE server closed the connection during the handshake (is the server key configured for the endpoint its key?)")

// compatible is ZMTP's socket-type rule for the types this package
// uses: a ROUTER takes DEALER, REQ and ROUTER peers; a DEALER takes
// ROUTER, REP and DEALER; the bus's PUB takes SUB and XSUB, its PULL
// takes PUSH.
func compatible(own zmq4.SocketType, peer string) bool {
	switch own {
	case zmq4.Router:
		return peer == "DEALER" || peer == "REQ" || peer == "ROUTER"
	case zmq4.Dealer:
		return peer == "ROUTER" || peer == "REP" || peer == "DEALER"
	case zmq4.Pub:
		return peer == "SUB" || peer == "XSUB"
	case zmq4.Pull:
		return peer == "PUSH"
	}
	return false
}

// handshake runs the greeting and the CURVE handshake on gc, whose
// deadline the caller has set. On the server side every failure is
// counted as a refusal: curve.Server counts its own, this the rest (a
// peer offering another mechanism, or leaving when it sees CURVE offered,
// as libzmq's NULL sockets do; an incompatible socket type).
func (m *curveMech) handshake(gc *guardedConn, typ zmq4.SocketType) (*curveConn, error) {
	sess, counted, err := m.run(gc, typ)
	if err != nil {
		if m.server != nil && !counted {
			m.server.CountRefused()
		}
		return nil, err
	}
	return &curveConn{s: sess, max: m.maxMsg}, nil
}

var errIncompatible = errors.New("transport: incompatible ZeroMQ socket type")

// run is handshake; counted says whether curve.Server ran (and counted a
// failure).
func (m *curveMech) run(gc *guardedConn, typ zmq4.SocketType) (sess *curve.Session, counted bool, err error) {
	if _, err := gc.Conn.Write(curveGreeting(m.server != nil)); err != nil {
		return nil, false, err
	}
	var peer [zmtpGreetingSize]byte
	if _, err := io.ReadFull(gc, peer[:]); err != nil {
		return nil, false, fmt.Errorf("%w: no ZMTP greeting with CURVE (%w)", ErrNotCurve, err)
	}
	if peer[0] != 0xFF || peer[9]&1 != 1 || peer[10] < 3 {
		return nil, false, fmt.Errorf("%w: not a ZMTP 3 greeting", ErrNotCurve)
	}
	if mech := string(bytes.TrimRight(peer[12:32], "\x00")); mech != "CURVE" {
		return nil, false, fmt.Errorf("%w: it offers %q", ErrNotCurve, mech)
	}
	// The greeting's as-server byte is not checked: libzmq's CURVE server
	// sockets send 0 there too; the handshake itself tells the roles apart.
	md := curve.AppendMetadata(nil, [2]string{"Socket-Type", string(typ)})
	if m.server != nil {
		md = curve.AppendMetadata(md, [2]string{"Identity", ""})
		sess, err = curve.Server(gc, gc.Conn, m.server, md)
		counted = true
	} else {
		sess, err = curve.Client(gc, gc.Conn, *m.client, m.serverKey, md)
		if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)) {
			// Not wrapped: Client.dial retries a connection closed
			// during the handshake, which here would only be refused
			// again (and counted again by the server).
			err = fmt.Errorf("%w (server key %s): %v", ErrCurveClosed, m.serverKey, err)
		}
	}
	if err != nil {
		return nil, counted, err
	}
	if pt := sess.PeerMetadata["Socket-Type"]; !compatible(typ, pt) {
		return nil, false, fmt.Errorf("%w: %s cannot talk to %q", errIncompatible, typ, pt)
	}
	return sess, false, nil
}

// curveConn is a zconn's CURVE state: the session, and the plaintext size
// of the message being read, which the frame guard cannot see (on the wire
// every frame is a MESSAGE of its own).
type curveConn struct {
	s     *curve.Session
	max   int64
	total int64
}

// open turns a received MESSAGE frame into the ZMTP flags and body the
// peer sealed.
func (c *curveConn) open(body []byte) (byte, []byte, error) {
	flags, payload, err := c.s.Open(body)
	if err != nil {
		return 0, nil, err
	}
	var zflags byte
	if flags&curve.FlagMore != 0 {
		zflags |= zmtpFlagMore
	}
	if flags&curve.FlagCommand != 0 {
		zflags |= zmtpFlagCommand
	} else {
		c.total += int64(len(payload))
		if c.total > c.max {
			return 0, nil, &frameTooBigError{size: uint64(c.total), max: uint64(c.max)}
		}
		if zflags&zmtpFlagMore == 0 {
			c.total = 0
		}
	}
	return zflags, payload, nil
}

// frame appends one frame to buf: plain ZMTP, or sealed in a MESSAGE when
// the connection speaks CURVE. It runs under the writer's lock, so MESSAGE
// nonces follow the order of the bytes on the wire.
func (z *zconn) frame(buf []byte, flags byte, body []byte) []byte {
	if z.sec == nil {
		return appendFrame(buf, flags, body)
	}
	var cflags byte
	if flags&zmtpFlagMore != 0 {
		cflags |= curve.FlagMore
	}
	if flags&zmtpFlagCommand != 0 {
		cflags |= curve.FlagCommand
	}
	return z.sec.s.AppendMessage(buf, cflags, body)
}

// peerKeyCtx is the context key of a request's CURVE client key.
type peerKeyCtx struct{}

// withPeer gives a handler's ctx the connection's CURVE client key.
func (z *zconn) withPeer(ctx context.Context) context.Context {
	if z.sec == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKeyCtx{}, z.sec.s.PeerKey)
}

// PeerKey returns, in a Handler, the long-term public key the client of
// the request proved in its CURVE handshake; false when the connection
// does not speak CURVE.
func PeerKey(ctx context.Context) (curve.Key, bool) {
	k, ok := ctx.Value(peerKeyCtx{}).(curve.Key)
	return k, ok
}
