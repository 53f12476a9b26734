package transport

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/go-zeromq/zmq4"
)

// This file holds the two one-way socket types the bus needs: a bound PUB
// (Publisher) and a bound PULL (Puller). They share the ROUTER server's
// connection guard and ZMTP handshake but nothing else, so they stay out of
// server.go's way.

// subscriberQueue is how many messages a Publisher holds for one slow
// subscriber before it drops new ones for it, as libzmq's PUB does at its
// high-water mark (1000 by default).
const subscriberQueue = 1000

// maxOneWayConns bounds the connections a Publisher or Puller holds; more
// are closed on accept and counted (Rejected).
const maxOneWayConns = 1024

// PublisherStats counts what a Publisher has done since ListenPub.
type PublisherStats struct {
	Subscribers   uint64 `json:"subscribers"`          // connections open now
	Subscriptions uint64 `json:"subscriptions"`        // their subscribed prefixes, summed
	Published     uint64 `json:"published"`            // Publish calls
	Sent          uint64 `json:"sent"`                 // messages queued to a subscriber
	Dropped       uint64 `json:"dropped"`              // messages dropped for a subscriber whose queue was full
	Rejected      uint64 `json:"rejected_connections"` // connections closed on accept: too many open
}

// Publisher is a bound ZeroMQ PUB socket: libzmq, pyzmq and zmq4 SUB
// sockets connect to it, subscribe to prefixes of the first frame (for a
// dploy envelope: its id) and receive every published message that
// matches. As with libzmq, a subscriber that does not keep up loses
// messages rather than slowing the publisher.
type Publisher struct {
	acc  *acceptor
	mu   sync.Mutex
	subs map[*subscriber]struct{}

	published, sent, dropped atomic.Uint64
}

type subscriber struct {
	z      *zconn
	mu     sync.Mutex
	topics [][]byte // subscribed prefixes; an empty one matches everything
	queue  chan [][]byte
}

func (s *subscriber) wants(topic []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.topics {
		if bytes.HasPrefix(topic, t) {
			return true
		}
	}
	return false
}

// subscription applies a ZMTP 3.0 subscription message: its first byte is
// 1 (subscribe) or 0 (cancel), the rest the prefix.
func (s *subscriber) subscription(frames [][]byte) {
	if len(frames) != 1 || len(frames[0]) == 0 {
		return
	}
	on, prefix := frames[0][0] == 1, bytes.Clone(frames[0][1:])
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, t := range s.topics {
		if bytes.Equal(t, prefix) {
			if !on {
				s.topics = append(s.topics[:i], s.topics[i+1:]...)
			}
			return
		}
	}
	if on {
		s.topics = append(s.topics, prefix)
	}
}

// ListenPub binds endpoint ("tcp://host:port"; port 0 picks one, see Addr)
// as a PUB socket until Close. ctx only bounds the bind. WithLogger,
// WithMaxMessageSize and WithHandshakeTimeout apply.
func ListenPub(ctx context.Context, endpoint string, opts ...Option) (*Publisher, error) {
	p := &Publisher{subs: make(map[*subscriber]struct{})}
	acc, err := listenOneWay(ctx, endpoint, zmq4.Pub, "transport.pub", p.serveSubscriber, opts)
	if err != nil {
		return nil, err
	}
	p.acc = acc
	return p, nil
}

// Addr returns the bound endpoint, e.g. "tcp://127.0.0.1:41234".
func (p *Publisher) Addr() string { return p.acc.addr }

// Publish sends frames to every subscriber whose subscription is a prefix
// of frames[0]. It never blocks on a subscriber. The frames must not be
// modified afterwards.
func (p *Publisher) Publish(frames [][]byte) {
	if len(frames) == 0 {
		return
	}
	p.published.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.subs {
		if !s.wants(frames[0]) {
			continue
		}
		select {
		case s.queue <- frames:
			p.sent.Add(1)
		default:
			p.dropped.Add(1)
		}
	}
}

// Stats returns the publisher's counters.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	n, topics := len(p.subs), 0
	for s := range p.subs {
		s.mu.Lock()
		topics += len(s.topics)
		s.mu.Unlock()
	}
	p.mu.Unlock()
	return PublisherStats{Subscribers: uint64(n), Subscriptions: uint64(topics), Published: p.published.Load(), Sent: p.sent.Load(), Dropped: p.dropped.Load(), Rejected: p.acc.rejected.Load()}
}

// Close closes the socket and every connection; it returns when every
// goroutine the publisher started has returned.
func (p *Publisher) Close() error { return p.acc.close() }

// serveSubscriber runs one subscriber: its writer, and its reader taking
// subscriptions until the connection ends.
func (p *Publisher) serveSubscriber(ctx context.Context, z *zconn) {
	s := &subscriber{z: z, queue: make(chan [][]byte, subscriberQueue)}
	p.mu.Lock()
	p.subs[s] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case frames := <-s.queue:
				if err := s.sendQueued(frames); err != nil {
					z.close()
					return
				}
			}
		}
	}()
	for {
		frames, err := z.readMsg(nil)
		if err != nil {
			break
		}
		s.subscription(frames)
	}
	p.mu.Lock()
	delete(p.subs, s)
	p.mu.Unlock()
	close(done)
	wg.Wait()
}

// maxBatch bounds the bytes one write to a subscriber combines.
const maxBatch = 64 << 10

// sendQueued writes frames and whatever else is queued for the subscriber
// by then (up to maxBatch bytes) in one write: a burst costs one system
// call per batch rather than per message, which is what lets one
// subscriber keep up with a PULL socket's rebroadcast.
func (s *subscriber) sendQueued(frames [][]byte) error {
	return s.z.write(func(buf []byte) []byte {
		buf = s.z.appendMsg(buf, frames)
		for len(buf) < maxBatch {
			select {
			case more := <-s.queue:
				buf = s.z.appendMsg(buf, more)
			default:
				return buf
			}
		}
		return buf
	})
}

// PullStats counts what a Puller has received since ListenPull.
type PullStats struct {
	Received uint64 `json:"received"`             // messages handed to the handler
	Rejected uint64 `json:"rejected_connections"` // connections closed on accept: too many open
}

// Puller is a bound ZeroMQ PULL socket: PUSH sockets connect to it and
// every message they send is handed to its handler, one connection at a
// time in the order sent.
type Puller struct {
	acc      *acceptor
	handle   func(ctx context.Context, frames [][]byte)
	received atomic.Uint64
}

// ListenPull binds endpoint as a PULL socket until Close and calls handle
// with every message received. handle runs on the connection's reader and
// must return promptly; its context ends when the puller closes.
// WithLogger, WithMaxMessageSize and WithHandshakeTimeout apply.
func ListenPull(ctx context.Context, endpoint string, handle func(ctx context.Context, frames [][]byte), opts ...Option) (*Puller, error) {
	if handle == nil {
		return nil, errors.New("transport: ListenPull: nil handler")
	}
	p := &Puller{handle: handle}
	acc, err := listenOneWay(ctx, endpoint, zmq4.Pull, "transport.pull", p.serve, opts)
	if err != nil {
		return nil, err
	}
	p.acc = acc
	return p, nil
}

// Addr returns the bound endpoint.
func (p *Puller) Addr() string { return p.acc.addr }

// Stats returns the puller's counters.
func (p *Puller) Stats() PullStats {
	return PullStats{Received: p.received.Load(), Rejected: p.acc.rejected.Load()}
}

// Close closes the socket and every connection; it returns when every
// goroutine the puller started has returned.
func (p *Puller) Close() error { return p.acc.close() }

func (p *Puller) serve(ctx context.Context, z *zconn) {
	for {
		frames, err := z.readMsg(nil)
		if err != nil {
			return
		}
		p.received.Add(1)
		p.handle(ctx, frames)
	}
}

// acceptor is the accept loop of a one-way socket: each connection gets a
// goroutine that runs the handshake as typ and then serve.
type acceptor struct {
	ln     net.Listener
	addr   string
	typ    zmq4.SocketType
	opts   options
	log    *slog.Logger
	serve  func(ctx context.Context, z *zconn)
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	conns    map[*guardedConn]struct{}
	rejected atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

func listenOneWay(ctx context.Context, endpoint string, typ zmq4.SocketType, component string, serve func(context.Context, *zconn), opts []Option) (*acceptor, error) {
	ln, addr, err := listen(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	a := &acceptor{ln: ln, addr: addr, typ: typ, opts: buildOptions(opts), serve: serve, conns: make(map[*guardedConn]struct{})}
	a.log = a.opts.logger.With("component", component, "endpoint", a.addr)
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	a.wg.Add(1)
	go a.loop()
	return a, nil
}

func (a *acceptor) loop() {
	defer a.wg.Done()
	for {
		c := accept(a.ctx, a.ln, a.log)
		if c == nil {
			return
		}
		gc := newGuardedConn(c, a.opts.maxMessageSize)
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			_ = c.Close()
			return
		}
		if len(a.conns) >= maxOneWayConns {
			a.mu.Unlock()
			a.rejected.Add(1)
			_ = c.Close()
			continue
		}
		a.conns[gc] = struct{}{}
		a.wg.Add(1)
		a.mu.Unlock()
		go a.conn(gc)
	}
}

func (a *acceptor) conn(gc *guardedConn) {
	defer a.wg.Done()
	defer func() {
		a.mu.Lock()
		delete(a.conns, gc)
		a.mu.Unlock()
		_ = gc.Close()
	}()
	// A subscriber sends nothing after subscribing, so only a PULL
	// socket's peers are closed for idleness.
	z, err := handshake(a.ctx, gc, a.typ, a.opts.handshakeTimeout, replySendTimeout, a.opts.readLimits(a.typ != zmq4.Pub), a.opts.curve.forServer(a.opts.maxMessageSize))
	if err != nil {
		a.log.Debug("ZMTP handshake failed", "remote", gc.RemoteAddr().String(), "err", err)
		return
	}
	a.serve(a.ctx, z)
	if a.ctx.Err() == nil {
		a.log.Debug("connection ended", "remote", gc.RemoteAddr().String())
	}
}

func (a *acceptor) close() error {
	a.closeOnce.Do(func() {
		a.cancel()
		a.mu.Lock()
		a.closed = true
		for gc := range a.conns {
			_ = gc.Close()
		}
		a.mu.Unlock()
		a.closeErr = a.ln.Close()
		if errors.Is(a.closeErr, net.ErrClosed) {
			a.closeErr = nil
		}
		a.wg.Wait()
	})
	return a.closeErr
}

// appendMsg appends one message's frames to buf, as send writes them.
func (z *zconn) appendMsg(buf []byte, frames [][]byte) []byte {
	for i, f := range frames {
		var flags byte
		if i < len(frames)-1 {
			flags = zmtpFlagMore
		}
		buf = z.frame(buf, flags, f)
	}
	return buf
}
