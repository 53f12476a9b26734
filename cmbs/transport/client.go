package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-zeromq/zmq4"
)

// Client sends requests to Servers (or any ROUTER or REP peer that speaks
// the envelope) and waits for their replies.
//
// It keeps one connection per endpoint, a DEALER in ZeroMQ's terms, and
// pipelines every request to that endpoint on it: each request carries a
// correlation frame of its own, and one reader per connection hands each
// reply to the request it answers. Messages sent while another is being
// written go out in the same system call. At most WithMaxInFlight
// requests to one endpoint are outstanding at once.
//
// It follows ZeroMQ's Lazy Pirate pattern: a connection that breaks, or
// that stays silent through a request's whole deadline, is closed and the
// next request dials a fresh one, so a restarted peer is picked up and a
// hung one costs each request at most its deadline. A connection no request
// has used for WithIdleTimeout is closed, and an endpoint not contacted
// since is forgotten, so a long-running client holds only the connections
// it uses. A Client is safe for concurrent use.
type Client struct {
	opts    options
	log     *slog.Logger
	nextTok atomic.Uint64

	// base ends when Close is called; every wait selects on it.
	base   context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	peers   map[string]*peer
	reaping bool           // the idle reaper runs
	calls   sync.WaitGroup // Request calls in progress
	bg      sync.WaitGroup // one reader per open connection, and the idle reaper

	closeOnce sync.Once
}

// peer is one endpoint: its connection, if any, and the dial in progress.
type peer struct {
	addr  string        // host:port
	slots chan struct{} // one token per request in flight
	users atomic.Int64  // calls holding this peer; it is forgotten only at 0

	mu      sync.Mutex
	conn    *clientConn
	dialing chan struct{} // closed when the dial in progress ends
}

// clientConn is one connection and the requests waiting for replies on it.
type clientConn struct {
	z        *zconn
	received atomic.Uint64 // messages read, to tell a silent peer from a slow handler

	mu       sync.Mutex
	waiting  map[uint64]*waiter
	lastUsed time.Time     // when a request was last sent or answered
	err      error         // why the connection ended
	dead     chan struct{} // closed when it ended
}

// NewClient returns a Client; it opens nothing until the first request.
func NewClient(opts ...Option) *Client {
	c := &Client{
		opts:  buildOptions(opts),
		peers: make(map[string]*peer),
	}
	c.log = c.opts.logger.With("component", "transport.client")
	c.base, c.cancel = context.WithCancel(context.Background())
	return c
}

// Request sends req to the Server at endpoint ("tcp://host:port") and
// returns its reply. The deadline is the earlier of ctx's and the client's
// request timeout (WithRequestTimeout), and covers waiting for a slot,
// connecting, sending and receiving. req.Routing is ignored: the client
// sets its own routing frame, which correlates the reply, so concurrent
// requests may share an id and a late reply to an abandoned request is
// never mistaken for another's.
//
// Errors: ErrNoAnswer (also wrapping ctx's error) when the peer did not
// answer in time; ErrConnectionLost when the connection broke; a
// *RemoteError, together with the error envelope, when the server answered
// with one; ErrClosed after Close; ErrBadEndpoint or ErrMalformedEnvelope
// for bad arguments.
func (c *Client) Request(ctx context.Context, endpoint string, req Envelope) (Envelope, error) {
	fail := func(err error) (Envelope, error) { return outcome(req.ID, endpoint, Envelope{}, err) }
	req.Routing = nil
	if err := req.Validate(); err != nil {
		return fail(err)
	}
	p, err := c.enter(endpoint)
	if err != nil {
		return fail(err)
	}
	defer c.calls.Done()
	defer p.users.Add(-1)

	ctx, cancel := c.requestContext(ctx)
	defer cancel()

	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return fail(c.ended(ctx, "still waiting for a free slot"))
	}
	defer func() { <-p.slots }()

	for {
		cc, err := c.connect(ctx, p)
		if err != nil {
			return fail(err)
		}
		reply, err := c.roundTrip(ctx, cc, req)
		if errors.Is(err, errNotSent) {
			// The connection ended between connect and send (reaped as
			// idle, failed by another request): nothing went out.
			continue
		}
		return outcome(req.ID, endpoint, reply, err)
	}
}

// outcome is the result of a request to endpoint: an error envelope as a
// reply becomes a *RemoteError, and errors name the request.
func outcome(id, endpoint string, reply Envelope, err error) (Envelope, error) {
	if err == nil && reply.MimeType == ErrorMimeType {
		err = decodeRemoteError(reply.Body)
	} else if err != nil {
		reply = Envelope{}
	}
	if err != nil {
		return reply, fmt.Errorf("transport: request %q to %s: %w", id, endpoint, err)
	}
	return reply, nil
}

// requestContext bounds a request by the client's request timeout and
// ends it when the client closes, so that Close also interrupts a dial or
// handshake in progress.
func (c *Client) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.requestTimeout)
	stop := context.AfterFunc(c.base, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// enter registers a Request call and returns the endpoint's peer, whose
// users count includes the call.
func (c *Client) enter(endpoint string) (*peer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	p, ok := c.peers[endpoint]
	if !ok {
		addr, err := hostPort(endpoint)
		if err != nil {
			return nil, err
		}
		p = &peer{addr: addr, slots: make(chan struct{}, c.opts.maxInFlight)}
		c.peers[endpoint] = p
		if !c.reaping {
			c.reaping = true
			c.bg.Add(1)
			go c.reapIdle()
		}
	}
	p.users.Add(1)
	c.calls.Add(1)
	return p, nil
}

// connect returns the peer's live connection, dialling one if there is
// none. One dial runs at a time per peer; other requests wait for it.
func (c *Client) connect(ctx context.Context, p *peer) (*clientConn, error) {
	for {
		p.mu.Lock()
		if cc := p.conn; cc != nil {
			p.mu.Unlock()
			if !cc.usable() {
				cc.fail(ErrConnectionLost)
				p.drop(cc)
				continue
			}
			return cc, nil
		}
		if wait := p.dialing; wait != nil {
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, c.ended(ctx, "could not connect")
			}
		}
		done := make(chan struct{})
		p.dialing = done
		p.mu.Unlock()

		cc, err := c.dial(ctx, p)
		p.mu.Lock()
		p.dialing = nil
		if err == nil {
			p.conn = cc
			c.bg.Add(1)
			go c.readLoop(p, cc)
		}
		p.mu.Unlock()
		close(done)
		return cc, err
	}
}

// dial connects to the peer and runs the ZMTP handshake, retrying every
// dialRetry until ctx ends when the connection is refused or closed during
// the handshake.
func (c *Client) dial(ctx context.Context, p *peer) (*clientConn, error) {
	mech, err := c.opts.curve.forEndpoint(p.addr, c.opts.maxMessageSize)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	var lastErr error
	for {
		nc, err := d.DialContext(ctx, "tcp", p.addr)
		if err == nil {
			gc := newGuardedConn(nc, c.opts.maxMessageSize)
			z, err := handshake(ctx, gc, zmq4.Dealer, c.opts.handshakeTimeout, c.opts.requestTimeout, c.opts.readLimits(false), mech)
			if err == nil {
				return &clientConn{z: z, waiting: make(map[uint64]*waiter), lastUsed: time.Now(), dead: make(chan struct{})}, nil
			}
			_ = gc.Close()
			switch {
			case ctx.Err() != nil:
				return nil, c.ended(ctx, "could not connect (connected, but no ZMTP handshake)")
			case errors.Is(err, os.ErrDeadlineExceeded):
				return nil, fmt.Errorf("%w: could not connect (connected, but no ZMTP handshake within %s)", ErrNoAnswer, c.opts.handshakeTimeout)
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
				// Closed before the handshake ended: a Server at one of
				// its connection bounds does that (or evicted this
				// connection to make room for another); retry as for a
				// refused connection, as libzmq reconnects.
				lastErr = fmt.Errorf("connection closed during the ZMTP handshake (the server may be at a connection limit): %w", err)
			default:
				// The peer is not a compatible ZeroMQ socket.
				return nil, fmt.Errorf("could not connect: %w", err)
			}
		} else if ctx.Err() == nil {
			lastErr = err // keep "connection refused", not our own cancel
		}
		select {
		case <-time.After(c.opts.dialRetry):
		case <-ctx.Done():
			doing := "could not connect"
			if lastErr != nil {
				doing += " (last attempt: " + lastErr.Error() + ")"
			}
			return nil, c.ended(ctx, doing)
		}
	}
}

// roundTrip sends req on cc and waits for the reply carrying its
// correlation frame.
func (c *Client) roundTrip(ctx context.Context, cc *clientConn, req Envelope) (Envelope, error) {
	out, err := c.send(ctx, cc, req, nil)
	if err != nil {
		return Envelope{}, err
	}
	return c.wait(ctx, out)
}

// outstanding is a request sent and not yet answered.
type outstanding struct {
	cc    *clientConn
	tok   uint64
	w     *waiter
	heard uint64 // cc's messages read when it was sent
}

// waiter is a request waiting for its reply on a connection: alone (a
// Request), woken by its reply on ch; or one of a Deliver call's, whose
// reply is kept here while the call sleeps until the last of its group
// is in, so that a fan-out to n endpoints wakes its caller once, not n
// times.
type waiter struct {
	ch    chan Envelope // alone: the reply; nil in a group
	group *replyGroup

	// A group's waiter, once its reply is in or its connection ended;
	// under the connection's mu.
	state waiterState
	reply Envelope
	err   error
}

type waiterState uint8

const (
	waiting waiterState = iota
	answered
	failed
)

// replyGroup is the requests of one Deliver call still waiting.
type replyGroup struct {
	left atomic.Int64  // waiting requests, plus 1 while the call still sends
	done chan struct{} // gets a value when left reaches 0
}

func newReplyGroup() *replyGroup {
	g := &replyGroup{done: make(chan struct{}, 1)}
	g.left.Store(1)
	return g
}

// one counts one request of the group as done.
func (g *replyGroup) one() {
	if g.left.Add(-1) == 0 {
		g.done <- struct{}{}
	}
}

// send sends req on cc with a correlation frame of its own; its reply
// goes to group if it is not nil (collect), else to wait. With a group
// the message is only queued (zconn.queue): the caller flushes cc once
// it has queued its message on every connection, so that the messages
// other Deliver calls queue meanwhile go out in the same system call.
func (c *Client) send(ctx context.Context, cc *clientConn, req Envelope, group *replyGroup) (outstanding, error) {
	var token [8]byte
	w := &waiter{group: group}
	if group == nil {
		w.ch = make(chan Envelope, 1)
	} else {
		group.left.Add(1)
	}
	out := outstanding{cc: cc, tok: c.nextTok.Add(1), w: w}
	binary.BigEndian.PutUint64(token[:], out.tok)
	if err := cc.await(out.tok, w); err != nil {
		if group != nil {
			group.left.Add(-1) // never below 1: the caller's own count
		}
		return out, fmt.Errorf("%w: %w", errNotSent, err)
	}
	out.heard = cc.received.Load()
	cc.z.active.Add(1)
	frames := [][]byte{token[:], nil, []byte(req.ID), []byte(req.MimeType), req.Body}
	var err error
	if group != nil {
		err = cc.z.queue(frames)
	} else {
		err = cc.z.send(frames)
	}
	if err != nil {
		cc.z.active.Add(-1)
		if cc.forget(out.tok) && group != nil {
			// Else the connection's end counted it.
			group.left.Add(-1)
		}
		return out, c.ioError(ctx, "sending", err)
	}
	return out, nil
}

// collect returns the outcome of out, a request of a group whose wait has
// ended: with every reply in, or with ctx.
func (c *Client) collect(ctx context.Context, out outstanding) (Envelope, error) {
	cc := out.cc
	defer cc.z.active.Add(-1)
	cc.mu.Lock()
	w := out.w
	state, reply, err := w.state, w.reply, w.err
	if state == waiting && cc.waiting != nil {
		delete(cc.waiting, out.tok)
	}
	cc.mu.Unlock()
	switch state {
	case answered:
		return reply, nil
	case failed:
		return Envelope{}, c.ioError(ctx, "waiting for the reply", err)
	}
	c.silent(out)
	return Envelope{}, c.ioError(ctx, "waiting for the reply", ctx.Err())
}

// silent ends out's connection if the peer has said nothing since out was
// sent, whose deadline passed: it may be hung or gone without a FIN, so
// the next request dials afresh. A peer that answered others is only slow
// on this one.
func (c *Client) silent(out outstanding) {
	if c.base.Err() == nil && out.cc.received.Load() == out.heard {
		out.cc.fail(errSilentPeer)
	}
}

// wait waits for the reply to out, a request alone, until ctx ends.
func (c *Client) wait(ctx context.Context, out outstanding) (Envelope, error) {
	cc := out.cc
	defer cc.z.active.Add(-1)
	select {
	case reply := <-out.w.ch:
		return reply, nil
	case <-cc.dead:
		select {
		case reply := <-out.w.ch:
			// Answered before the connection ended (the peer closed it
			// after replying, or it was reaped as idle since).
			return reply, nil
		default:
		}
		return Envelope{}, c.ioError(ctx, "waiting for the reply", cc.err)
	case <-ctx.Done():
		cc.forget(out.tok)
		c.silent(out)
		return Envelope{}, c.ioError(ctx, "waiting for the reply", ctx.Err())
	}
}

var errSilentPeer = errors.New("the peer answered nothing within a request's deadline")

// readLoop hands each reply on cc to the request it answers, until the
// connection ends.
func (c *Client) readLoop(p *peer, cc *clientConn) {
	defer c.bg.Done()
	for {
		frames, err := cc.z.readMsg(make([][]byte, 0, envelopeFrames))
		if err != nil {
			cc.fail(err)
			break
		}
		cc.received.Add(1)
		env, err := Parse(frames)
		if err != nil {
			cc.fail(fmt.Errorf("peer sent a malformed reply: %w", err))
			break
		}
		if len(env.Routing) != 1 || len(env.Routing[0]) != 8 {
			c.log.Debug("dropped a reply without this client's correlation frame", "id", env.ID)
			continue
		}
		env.Routing = nil
		cc.reply(binary.BigEndian.Uint64(frames[0]), env, c.log)
	}
	p.drop(cc)
}

// drop forgets cc if it is the peer's connection.
func (p *peer) drop(cc *clientConn) {
	p.mu.Lock()
	if p.conn == cc {
		p.conn = nil
	}
	p.mu.Unlock()
}

// errNotSent is the cause of a send on a connection that had already
// ended: nothing was written, so the request may go out on another.
var errNotSent = errors.New("the connection ended before the request was sent")

// usable reports whether a request may be sent on cc: it has not ended,
// and if it is idle, the kernel does not know the peer to have closed it
// (a restart the reader has not noticed yet, which would lose the
// request).
func (cc *clientConn) usable() bool {
	select {
	case <-cc.dead:
		return false
	default:
	}
	return !cc.idle() || !peerClosed(cc.z.gc.Conn)
}

// idle reports whether no request is waiting on cc. A busy connection's
// replies show it alive; only an idle one is worth asking the kernel
// about before use.
func (cc *clientConn) idle() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.waiting) == 0
}

// await registers a request waiting for the reply with token tok.
func (cc *clientConn) await(tok uint64, w *waiter) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err != nil {
		return cc.err
	}
	cc.waiting[tok] = w
	cc.lastUsed = time.Now()
	return nil
}

// forget stops waiting for tok's reply, reporting whether it was waited
// for still.
func (cc *clientConn) forget(tok uint64) bool {
	cc.mu.Lock()
	_, ok := cc.waiting[tok]
	delete(cc.waiting, tok)
	cc.mu.Unlock()
	return ok
}

func (cc *clientConn) reply(tok uint64, env Envelope, log *slog.Logger) {
	cc.mu.Lock()
	w, ok := cc.waiting[tok]
	delete(cc.waiting, tok)
	if ok {
		cc.lastUsed = time.Now()
		if w.group != nil {
			w.state, w.reply = answered, env
		}
	}
	cc.mu.Unlock()
	switch {
	case !ok:
		log.Debug("dropped a reply to a request no longer waiting", "id", env.ID)
	case w.group != nil:
		w.group.one()
	default:
		w.ch <- env // buffered, and only one reply per token is handed over
	}
}

// fail ends the connection: waiting requests see ErrConnectionLost (with
// err), and the peer's next request dials a new one.
func (cc *clientConn) fail(err error) { cc.end(err, nil) }

// end ends the connection with err unless it has ended, or unless, asked
// with cc.mu held, it does not agree. It reports whether it ended it.
func (cc *clientConn) end(err error, agree func() bool) bool {
	var grouped []*waiter
	cc.mu.Lock()
	ended := cc.err == nil && (agree == nil || agree())
	if ended {
		cc.err = err
		for _, w := range cc.waiting {
			if w.group != nil {
				w.state, w.err = failed, err
				grouped = append(grouped, w)
			}
		}
		cc.waiting = nil
		close(cc.dead)
	}
	cc.mu.Unlock()
	if ended {
		cc.z.close()
	}
	for _, w := range grouped {
		w.group.one()
	}
	return ended
}

// ended says why ctx, a request's context, ended while doing something:
// the client closed, or the deadline passed with no answer.
func (c *Client) ended(ctx context.Context, doing string) error {
	if c.base.Err() != nil {
		return ErrClosed
	}
	return fmt.Errorf("%w: %s: %w", ErrNoAnswer, doing, ctx.Err())
}

// ioError classifies a failure to send or to get the reply.
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

// Close closes every connection, failing requests in progress with
// ErrClosed, and returns when they and every reader have returned. Calling
// it again is a no-op.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancel()
		c.calls.Wait()
		// The idle reaper may still be deleting peers until it sees the
		// cancel: read them under c.mu.
		c.mu.Lock()
		peers := slices.Collect(maps.Values(c.peers))
		c.mu.Unlock()
		for _, p := range peers {
			p.mu.Lock()
			cc := p.conn
			p.mu.Unlock()
			if cc != nil {
				cc.fail(ErrClosed)
			}
		}
		c.bg.Wait()
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
//
// Endpoints with a connection up and a free slot are sent to at once from
// the calling goroutine; only the others (to be dialled, or busy) get a
// goroutine each.
func (c *Client) Deliver(ctx context.Context, endpoints []string, env Envelope) []Result {
	results := make([]Result, len(endpoints))
	fail := func(i int, err error) { _, results[i].Err = outcome(env.ID, endpoints[i], Envelope{}, err) }
	env.Routing = nil
	if err := env.Validate(); err != nil {
		for i := range endpoints {
			results[i].Endpoint = endpoints[i]
			fail(i, err)
		}
		return results
	}
	rctx, cancel := c.requestContext(ctx)
	defer cancel()
	group := newReplyGroup()
	type sent struct {
		i   int
		p   *peer
		out outstanding
	}
	var fast []sent
	flushed := 0 // fast[:flushed] are written
	flush := func() {
		for _, f := range fast[flushed:] {
			f.out.cc.z.flushQueued()
		}
		flushed = len(fast)
	}
	sem := make(chan struct{}, c.opts.fanOut)
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		results[i].Endpoint = ep
		if p, cc := c.ready(ep); cc != nil {
			out, err := c.send(rctx, cc, env, group)
			if err == nil {
				fast = append(fast, sent{i, p, out})
				continue
			}
			c.leave(p)
			if !errors.Is(err, errNotSent) {
				fail(i, err)
				continue
			}
			// The connection ended meanwhile: Request dials afresh.
		}
		if len(sem) == cap(sem) {
			// Every fan-out slot is taken (endpoints being dialled or
			// busy): what is queued goes out before waiting for one.
			flush()
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			fail(i, fmt.Errorf("%w: not attempted: %w", ErrNoAnswer, ctx.Err()))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i].Reply, results[i].Err = c.Request(ctx, ep, env)
		}()
	}
	// Queued on every connection that was up: written now, each with
	// what other calls queued on it meanwhile. A failed write ends its
	// connection, which fails its requests.
	if len(fast) > flushed {
		runtime.Gosched() // let other calls queue theirs first
	}
	flush()
	// One wake-up for all the replies on connections that were up.
	group.one()
	select {
	case <-group.done:
	case <-rctx.Done():
	}
	for _, f := range fast {
		reply, err := c.collect(rctx, f.out)
		c.leave(f.p)
		results[f.i].Reply, results[f.i].Err = outcome(env.ID, endpoints[f.i], reply, err)
	}
	wg.Wait()
	return results
}

// ready returns the endpoint's connection when it is up and a slot is
// free, with the slot taken and the call registered (leave releases
// both), or nil.
func (c *Client) ready(endpoint string) (*peer, *clientConn) {
	c.mu.Lock()
	p := c.peers[endpoint]
	if c.closed || p == nil {
		c.mu.Unlock()
		return nil, nil
	}
	p.users.Add(1)
	c.calls.Add(1)
	c.mu.Unlock()
	p.mu.Lock()
	cc := p.conn
	p.mu.Unlock()
	if cc != nil && cc.usable() {
		select {
		case p.slots <- struct{}{}:
			return p, cc
		default:
		}
	}
	p.users.Add(-1)
	c.calls.Done()
	return nil, nil
}

// leave ends a call that ready let in.
func (c *Client) leave(p *peer) {
	<-p.slots
	p.users.Add(-1)
	c.calls.Done()
}

// errIdleClosed ends a connection the idle reaper closed (only ever one
// no request waits on).
var errIdleClosed = errors.New("closed after standing idle")

// reapIdle closes connections no request has used for the idle timeout,
// and forgets endpoints that have no connection and no caller, until the
// client closes.
func (c *Client) reapIdle() {
	defer c.bg.Done()
	tick := time.NewTicker(max(c.opts.idleTimeout/2, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-c.base.Done():
			return
		case now := <-tick.C:
			c.mu.Lock()
			for ep, p := range c.peers {
				p.mu.Lock()
				cc := p.conn
				if cc != nil && cc.expire(now.Add(-c.opts.idleTimeout)) {
					p.conn = nil
					cc = nil
				}
				// enter and ready count a caller under c.mu, so none can
				// start using p while it is deleted here.
				if cc == nil && p.dialing == nil && p.users.Load() == 0 {
					delete(c.peers, ep)
				}
				p.mu.Unlock()
			}
			c.mu.Unlock()
		}
	}
}

// expire closes cc if no request waits on it and none was sent or
// answered after since.
func (cc *clientConn) expire(since time.Time) bool {
	return cc.end(errIdleClosed, func() bool { return len(cc.waiting) == 0 && cc.lastUsed.Before(since) })
}
