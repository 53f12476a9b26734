package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/go-zeromq/zmq4"
)

// Client sends requests to Servers (or any ROUTER or REP peer that speaks
// the envelope) and waits for their replies.
//
// It keeps a small pool of DEALER sockets per endpoint, each carrying one
// request at a time, so concurrent requests to one endpoint run in
// parallel (up to WithMaxConnsPerEndpoint) and a failure only affects its
// own request. It follows ZeroMQ's Lazy Pirate pattern: after any error or
// timeout the socket is closed and the next request dials a fresh one, so a
// restarted peer is picked up without zmq4's auto-reconnect (which
// deadlocks REQ and gives up silently on DEALER). A Client is safe for
// concurrent use.
type Client struct {
	opts    options
	log     *slog.Logger
	regErr  error
	zmqLog  *log.Logger // zmq4's log lines, into log at debug level
	nextTok atomic.Uint64

	// base is the parent of every socket's context; Close cancels it, which
	// unblocks every Recv and Dial in progress.
	base   context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	pools  map[string]*endpointPool
	calls  sync.WaitGroup // Request calls in progress

	closeOnce sync.Once
}

type endpointPool struct {
	zep   string        // the endpoint as zmq4 is given it
	slots chan struct{} // one token per socket in use or being dialled

	mu   sync.Mutex
	idle []*clientSocket
}

// clientSocket is one DEALER connected to one endpoint.
type clientSocket struct {
	sock  zmq4.Socket
	hooks *socketHooks
}

// close closes the socket and waits until zmq4's reader has left its
// connection.
func (cs *clientSocket) close() {
	_ = cs.sock.Close()
	if gc := cs.hooks.dialedConn(); gc != nil {
		_ = gc.Close()
		<-gc.drained()
	}
}

func (cs *clientSocket) usable() bool {
	gc := cs.hooks.dialedConn()
	return gc != nil && gc.usable()
}

// NewClient returns a Client; it opens nothing until the first request.
func NewClient(opts ...Option) *Client {
	c := &Client{
		opts:   buildOptions(opts),
		regErr: registerTransport(),
		pools:  make(map[string]*endpointPool),
	}
	c.log = c.opts.logger.With("component", "transport.client")
	c.zmqLog = slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)
	c.base, c.cancel = context.WithCancel(context.Background())
	return c
}

// Request sends req to the Server at endpoint ("tcp://host:port") and
// returns its reply. The deadline is the earlier of ctx's and the client's
// request timeout (WithRequestTimeout), and covers waiting for a free
// socket, connecting, sending and receiving. req.Routing is ignored: the
// client sets its own routing frame, which correlates the reply, so
// concurrent requests may share an id and a late reply to an abandoned
// request is never mistaken for another's.
//
// Errors: ErrNoAnswer (also wrapping ctx's error) when the peer did not
// answer in time; ErrConnectionLost when the connection broke; a
// *RemoteError, together with the error envelope, when the server answered
// with one; ErrClosed after Close; ErrBadEndpoint or ErrMalformedEnvelope
// for bad arguments.
func (c *Client) Request(ctx context.Context, endpoint string, req Envelope) (Envelope, error) {
	fail := func(err error) (Envelope, error) {
		return Envelope{}, fmt.Errorf("transport: request %q to %s: %w", req.ID, endpoint, err)
	}
	req.Routing = nil
	if err := req.Validate(); err != nil {
		return fail(err)
	}
	pool, err := c.enter(endpoint)
	if err != nil {
		return fail(err)
	}
	defer c.calls.Done()

	ctx, cancel := context.WithTimeout(ctx, c.opts.requestTimeout)
	defer cancel()

	select {
	case pool.slots <- struct{}{}:
	case <-ctx.Done():
		return fail(fmt.Errorf("%w: still waiting for a free connection: %w", ErrNoAnswer, ctx.Err()))
	case <-c.base.Done():
		return fail(ErrClosed)
	}
	defer func() { <-pool.slots }()

	cs := pool.takeIdle()
	if cs == nil {
		if cs, err = c.dial(ctx, pool); err != nil {
			return fail(err)
		}
	}
	reply, reusable, err := c.roundTrip(ctx, cs, req)
	if err != nil || !reusable {
		cs.close()
	} else {
		pool.putIdle(cs)
	}
	if err != nil {
		return fail(err)
	}
	if reply.MimeType == ErrorMimeType {
		return reply, fmt.Errorf("transport: request %q to %s: %w", req.ID, endpoint, decodeRemoteError(reply.Body))
	}
	return reply, nil
}

// enter registers a Request call and returns the endpoint's pool.
func (c *Client) enter(endpoint string) (*endpointPool, error) {
	if c.regErr != nil {
		return nil, c.regErr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	pool, ok := c.pools[endpoint]
	if !ok {
		zep, err := zmqEndpoint(endpoint)
		if err != nil {
			return nil, err
		}
		pool = &endpointPool{zep: zep, slots: make(chan struct{}, c.opts.maxConnsPerEndpoint)}
		c.pools[endpoint] = pool
	}
	c.calls.Add(1)
	return pool, nil
}

// takeIdle returns a cached socket that still looks connected, closing the
// ones whose peer went away while they sat idle, or nil.
func (p *endpointPool) takeIdle() *clientSocket {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		cs := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if cs.usable() {
			return cs
		}
		cs.close()
	}
}

func (p *endpointPool) putIdle(cs *clientSocket) {
	p.mu.Lock()
	p.idle = append(p.idle, cs)
	p.mu.Unlock()
}

// dial opens a DEALER to the pool's endpoint. zmq4's Dial is synchronous
// and, with unbounded retries, returns only once connected or once the
// socket is closed; it runs in a goroutine that is always waited for, and
// the socket is closed when ctx ends first.
func (c *Client) dial(ctx context.Context, pool *endpointPool) (*clientSocket, error) {
	hooks := &socketHooks{opts: &c.opts}
	sock := zmq4.NewDealer(withHooks(c.base, hooks),
		zmq4.WithLogger(c.zmqLog),
		// Retry until the socket is closed: giving up is the context's job,
		// not zmq4's fixed 10 × 250 ms.
		zmq4.WithDialerMaxRetries(-1),
		zmq4.WithDialerRetry(c.opts.dialRetry),
		zmq4.WithDialerTimeout(c.opts.handshakeTimeout),
		zmq4.WithTimeout(c.opts.requestTimeout),
	)
	cs := &clientSocket{sock: sock, hooks: hooks}
	done := make(chan error, 1)
	go func() { done <- sock.Dial(pool.zep) }()
	abort := func() {
		// Closing the socket ends Dial's retry loop and, through the
		// transport, any handshake in progress. Only once Dial has returned
		// is its connection (if it got one) known, to be closed and waited
		// for.
		_ = sock.Close()
		<-done
		cs.close()
	}
	select {
	case err := <-done:
		if err != nil {
			// Not a timeout (retries are unbounded): the ZMTP handshake
			// failed, e.g. the peer is not a compatible ZeroMQ socket.
			cs.close()
			return nil, fmt.Errorf("could not connect: %w", err)
		}
		return cs, nil
	case <-ctx.Done():
		abort()
		return nil, fmt.Errorf("%w: could not connect%s: %w", ErrNoAnswer, lastDialError(hooks), ctx.Err())
	case <-c.base.Done():
		abort()
		return nil, ErrClosed
	}
}

func lastDialError(h *socketHooks) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil {
		return " (connected, but no ZMTP handshake)"
	}
	if h.dialErr != nil {
		return " (last attempt: " + h.dialErr.Error() + ")"
	}
	return ""
}

// roundTrip sends req on cs and waits for the reply carrying its
// correlation frame. reusable is false when cs must not be used again.
func (c *Client) roundTrip(ctx context.Context, cs *clientSocket, req Envelope) (reply Envelope, reusable bool, err error) {
	var token [8]byte
	binary.BigEndian.PutUint64(token[:], c.nextTok.Add(1))
	msg := zmq4.NewMsgFrom(token[:], nil, []byte(req.ID), []byte(req.MimeType), req.Body)

	// zmq4's Recv takes no context; closing the socket is the only way to
	// end it, and a timed-out socket is discarded anyway (Lazy Pirate).
	aborted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(aborted)
		_ = cs.sock.Close()
	})
	defer func() {
		if !stop() {
			<-aborted
			reusable = false
		}
	}()

	// SendMulti writes all frames with one writev instead of one write each.
	if err := cs.sock.SendMulti(msg); err != nil {
		return Envelope{}, false, c.ioError(ctx, "sending", err)
	}
	for {
		m, err := cs.sock.Recv()
		if err != nil {
			return Envelope{}, false, c.ioError(ctx, "waiting for the reply", err)
		}
		if m.Type == zmq4.CmdMsg {
			continue
		}
		env, err := Parse(m.Frames)
		if err != nil {
			return Envelope{}, false, fmt.Errorf("peer sent a malformed reply: %w", err)
		}
		if len(env.Routing) != 1 || !bytes.Equal(env.Routing[0], token[:]) {
			c.log.Debug("dropped a reply to another request", "id", env.ID)
			continue
		}
		env.Routing = nil
		return env, true, nil
	}
}

// ioError classifies a Send or Recv failure.
func (c *Client) ioError(ctx context.Context, doing string, err error) error {
	switch {
	case c.base.Err() != nil:
		return ErrClosed
	case ctx.Err() != nil:
		return fmt.Errorf("%w (%s): %w", ErrNoAnswer, doing, ctx.Err())
	default:
		return fmt.Errorf("%w (%s): %w", ErrConnectionLost, doing, err)
	}
}

// Close closes every socket, failing requests in progress with ErrClosed,
// and returns when they have returned. Calling it again is a no-op.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancel()
		c.calls.Wait()
		for _, pool := range c.pools {
			for _, cs := range pool.idle {
				cs.close()
			}
			pool.idle = nil
		}
	})
	return nil
}

// Result is the outcome of delivering to one endpoint.
type Result struct {
	Endpoint string
	Reply    Envelope // the acknowledgement; meaningful when Err is nil
	Err      error
}

// Deliver sends env to every endpoint as a request, at most WithFanOut at
// once, each with its own deadline (as Request), and returns one Result per
// endpoint in the same order once all have finished. A nil Err means the
// endpoint's server acknowledged the envelope; this is how broadcast (L2)
// and topic (L3.2) deliveries are confirmed without PUB/SUB's slow-joiner
// loss. Endpoints are not deduplicated.
func (c *Client) Deliver(ctx context.Context, endpoints []string, env Envelope) []Result {
	results := make([]Result, len(endpoints))
	sem := make(chan struct{}, c.opts.fanOut)
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		results[i].Endpoint = ep
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i].Err = fmt.Errorf("transport: deliver %q to %s: %w: not attempted: %w", env.ID, ep, ErrNoAnswer, ctx.Err())
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i].Reply, results[i].Err = c.Request(ctx, ep, env)
		}()
	}
	wg.Wait()
	return results
}
