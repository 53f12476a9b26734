package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-zeromq/zmq4"
)

// Handler answers one request. ctx carries the handler deadline
// (WithHandlerTimeout) and is cancelled when the server closes; handlers
// must return promptly then. The returned envelope's Routing is replaced by
// the request's, and an empty ID is set to the request's ID. An error
// becomes an error envelope (ErrorMimeType): return a *RemoteError to choose
// its code.
type Handler func(ctx context.Context, req Envelope) (Envelope, error)

// replySendTimeout bounds one write of replies. A write only blocks when
// the peer's TCP window is full: the peer has stopped reading, and its
// connection is closed.
const replySendTimeout = 5 * time.Second

// malformedID is the id of an error envelope answering a message that had
// no usable id.
const malformedID = "unparsed"

// Server answers requests on one TCP endpoint as a ZeroMQ ROUTER would:
// each request with its Handler, concurrently, up to WithMaxConcurrent at
// once, the reply going back on the connection the request came in on. It
// works with any peer that sends [routing…, "", id, mimetype, body] — this
// package's Client, a zmq4 or libzmq DEALER, or a plain libzmq REQ socket
// sending [id, mimetype, body] (REQ adds the delimiter). A malformed
// message never stops the server: it is counted and answered with an error
// envelope.
//
// Each accepted connection has a goroutine of its own that must see the
// ZMTP signature within the handshake timeout and then runs the handshake
// and the connection's read loop, so a client that connects and sends
// nothing (a port scanner, a health probe) holds up nobody else. What a
// peer can make the server hold is bounded: connections (WithMaxConns,
// WithConnQuota, WithPeerIdleTimeout, and per source address while they
// handshake: admission.go) and memory (WithMaxMessageSize, WithReadBudget,
// WithMessageTimeout).
type Server struct {
	ln      net.Listener
	addr    string
	handler Handler
	opts    options
	log     *slog.Logger

	// ctx is the parent of every handler's context; Close cancels it.
	ctx     context.Context
	cancel  context.CancelFunc
	hbase   context.Context // ctx's values without its cancellation: the values of handler contexts
	dl      deadlines       // the handler calls in progress, for their deadlines (deadline.go)
	slots   chan struct{}   // one token per running handler
	jobs    chan job        // to idle handler goroutines
	workers atomic.Int64    // handler goroutines
	wg      sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	conns   map[*guardedConn]struct{}     // every open connection
	pending map[netip.Addr][]*pendingConn // connections before their handshake is done, by source, oldest first
	waiting int                           // connections in pending
	nextID  uint32                        // for connection identities

	lastRefusal time.Time // when a refused connection was last logged as a warning

	closeOnce sync.Once
	closeErr  error

	connections, requests, replies, malformed, handlerErrors,
	overloaded, sendErrors, rejected, idleClosed, slowClosed atomic.Uint64
}

// ServerStats counts what a Server has seen since Listen.
type ServerStats struct {
	Connections   uint64 `json:"connections"`          // connections that completed the ZMTP handshake
	Requests      uint64 `json:"requests"`             // well-formed requests received, Overloaded ones included
	Replies       uint64 `json:"replies"`              // envelopes sent back, error envelopes included
	Malformed     uint64 `json:"malformed"`            // messages that did not parse as a routable envelope
	HandlerErrors uint64 `json:"handler_errors"`       // handler calls that failed, panicked, timed out or returned an invalid reply
	Overloaded    uint64 `json:"overloaded"`           // requests refused because every handler slot was busy
	SendErrors    uint64 `json:"send_errors"`          // replies that could not be sent (usually: the peer left)
	RejectedConns uint64 `json:"rejected_connections"` // TCP connections dropped before ZMTP: silent, not ZMTP, evicted, or beyond a bound
	IdleClosed    uint64 `json:"idle_closed"`          // connections closed after WithPeerIdleTimeout without a message
	SlowClosed    uint64 `json:"slow_closed"`          // connections closed because a message did not arrive whole within WithMessageTimeout
}

// Listen binds endpoint ("tcp://host:port"; port 0 picks a free port, see
// Addr) and serves h on it until Close. An address in use, or any other
// bind failure, is returned here. Like net.ListenConfig.Listen, ctx only
// bounds the bind: cancelling it later does not stop the server. Its
// values are visible to handlers.
func Listen(ctx context.Context, endpoint string, h Handler, opts ...Option) (*Server, error) {
	if h == nil {
		return nil, errors.New("transport: Listen: nil handler")
	}
	ln, addr, err := listen(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, addr: addr, handler: h, opts: buildOptions(opts), conns: make(map[*guardedConn]struct{}), pending: make(map[netip.Addr][]*pendingConn)}
	s.log = s.opts.logger.With("component", "transport.server", "endpoint", s.addr)
	s.slots = make(chan struct{}, s.opts.maxConcurrent)
	s.jobs = make(chan job)
	s.hbase = context.WithoutCancel(ctx)
	s.ctx, s.cancel = context.WithCancel(s.hbase)
	s.dl.timeout = s.opts.handlerTimeout
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the bound endpoint, with the real port when Listen was
// given port 0, e.g. "tcp://127.0.0.1:41234".
func (s *Server) Addr() string { return s.addr }

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Connections:   s.connections.Load(),
		Requests:      s.requests.Load(),
		Replies:       s.replies.Load(),
		Malformed:     s.malformed.Load(),
		HandlerErrors: s.handlerErrors.Load(),
		Overloaded:    s.overloaded.Load(),
		SendErrors:    s.sendErrors.Load(),
		RejectedConns: s.rejected.Load(),
		IdleClosed:    s.idleClosed.Load(),
		SlowClosed:    s.slowClosed.Load(),
	}
}

// Close closes the listener and every connection at once: handler
// contexts are cancelled and their replies discarded. It returns when
// every goroutine the server started has returned. Calling it again is a
// no-op.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.dl.close()
		s.mu.Lock()
		s.closed = true
		for gc := range s.conns {
			_ = gc.Close()
		}
		s.mu.Unlock()
		s.closeErr = s.ln.Close()
		s.wg.Wait()
	})
	return s.closeErr
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c := accept(s.ctx, s.ln, s.log)
		if c == nil {
			return
		}
		now := time.Now()
		source := sourceOf(c.RemoteAddr())
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			continue
		}
		refused := s.admit(source, now)
		if refused == "" && s.opts.connQuota != nil && !s.opts.connQuota.tryAcquire() {
			refused = fmt.Sprintf("the process's %d ZeroMQ connections are open", s.opts.connQuota.Max())
		}
		if refused != "" {
			// A flood refuses thousands: say so once a minute.
			warn := now.Sub(s.lastRefusal) >= time.Minute
			if warn {
				s.lastRefusal = now
			}
			s.mu.Unlock()
			n := s.rejected.Add(1)
			if warn {
				s.log.Warn(refused+"; dropping new connections (logged once a minute)", "remote", c.RemoteAddr().String(), "rejected_connections", n)
			} else {
				s.log.Debug(refused+"; dropping", "remote", c.RemoteAddr().String())
			}
			_ = c.Close()
			continue
		}
		pc := &pendingConn{gc: newGuardedConn(c, s.opts.maxMessageSize), source: source, accepted: now}
		s.conns[pc.gc] = struct{}{}
		s.pend(pc)
		s.nextID++
		id := s.nextID
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(pc, id)
	}
}

// accept returns ln's next connection, retrying failed accepts (out of
// file descriptors and the like) with a backoff as net/http does; nil once
// ctx ends or ln is closed.
func accept(ctx context.Context, ln net.Listener, log *slog.Logger) net.Conn {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err == nil {
			return c
		}
		if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
			return nil
		}
		backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
		log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
	}
}

// serveConn waits for the connection's ZMTP signature, runs the handshake
// and then reads and dispatches its messages until it ends.
func (s *Server) serveConn(pc *pendingConn, id uint32) {
	defer s.wg.Done()
	gc := pc.gc
	// A connection counts against maxPending until its handshake is done,
	// so peers that start ZMTP and stall cannot pile up either.
	var z *zconn
	err := s.signature(pc)
	if err == nil {
		if z, err = handshake(s.ctx, gc, zmq4.Router, s.opts.handshakeTimeout, replySendTimeout, s.opts.readLimits(true), s.opts.curve.forServer(s.opts.maxMessageSize)); err != nil {
			s.log.Debug("ZMTP handshake failed", "remote", gc.RemoteAddr().String(), "err", err)
		}
	}
	s.mu.Lock()
	if !pc.evicted {
		s.unpend(pc)
	}
	s.mu.Unlock()
	if err != nil {
		s.endConn(gc)
		return
	}
	s.connections.Add(1)
	z.hbase = z.withPeer(s.hbase)
	if s.opts.inlineGrace > 0 {
		gc.beforeFill = z.flushQueued
	}
	// As libzmq's ROUTER: a 5-byte identity, 0 and a counter, which heads
	// the routing of every request from this connection.
	s.readLoop(&serverConn{z: z, identity: binary.BigEndian.AppendUint32([]byte{0}, id)})
}

// serverConn is a connection past its handshake, as its readers see it.
type serverConn struct {
	z        *zconn
	identity []byte
	inline   inlineState // inline.go
}

// readLoop reads and dispatches sc's messages until the connection ends,
// and then closes it; or until a handler it runs inline is overtaken by
// another goroutine reading the connection (inline.go), which then does.
func (s *Server) readLoop(sc *serverConn) {
	z := sc.z
	for {
		frames, err := z.readMsg(append(make([][]byte, 0, envelopeFrames+1), sc.identity))
		if err != nil {
			switch {
			case s.ctx.Err() != nil:
			case errors.Is(err, errIdle):
				s.idleClosed.Add(1)
				s.log.Debug("closing an idle connection", "remote", z.gc.RemoteAddr().String(), "err", err)
			case errors.Is(err, errSlowMessage), errors.Is(err, errBudgetWait):
				s.slowClosed.Add(1)
				s.log.Info("closing a connection whose message did not arrive in time", "remote", z.gc.RemoteAddr().String(), "err", err)
			case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
				s.log.Debug("connection ended", "remote", z.gc.RemoteAddr().String(), "err", err)
			}
			sc.inline.stop()
			s.endConn(z.gc)
			return
		}
		if !s.dispatch(sc, frames) {
			return
		}
	}
}

// endConn forgets and closes a connection, releasing its quota.
func (s *Server) endConn(gc *guardedConn) {
	s.mu.Lock()
	delete(s.conns, gc)
	s.mu.Unlock()
	_ = gc.Close()
	if s.opts.connQuota != nil {
		s.opts.connQuota.release()
	}
}

// signature waits for the 10-byte ZMTP signature within the handshake
// timeout, leaving it buffered for the handshake to read. A connection
// that does not send one is counted, and the error returned.
func (s *Server) signature(pc *pendingConn) error {
	gc := pc.gc
	_ = gc.SetReadDeadline(time.Now().Add(s.opts.handshakeTimeout))
	// Until the peer has sent something it may be evicted (admission.go);
	// noting that it did before reading anything leaves no moment when it
	// looks silent.
	err := waitReadable(gc.Conn)
	s.mu.Lock()
	pc.spoke = true
	s.mu.Unlock()
	var sig []byte
	if err == nil {
		sig, err = gc.rd.Peek(10) // left buffered for the handshake
	}
	if err == nil && (sig[0] != 0xFF || sig[9] != 0x7F) {
		err = errors.New("not a ZMTP signature")
	}
	if err != nil && s.ctx.Err() == nil {
		s.mu.Lock()
		evicted := pc.evicted // and counted then
		s.mu.Unlock()
		if !evicted {
			// Counted before the caller closes, so that a peer seeing the
			// close also sees the count.
			s.rejected.Add(1)
			s.log.Debug("dropped a connection that did not start ZMTP", "remote", gc.RemoteAddr().String(), "err", err)
		}
	}
	return err
}

// errNoDelimiter: a request whose sender left out the empty delimiter.
var errNoDelimiter = fmt.Errorf("%w: no empty delimiter before id, mimetype, body (a DEALER must send it; REQ adds it)", ErrMalformedEnvelope)

// dispatch answers a request read from sc, on a handler goroutine or
// inline (inline.go). It reports whether the caller is still sc's reader:
// false when, while it ran a handler inline, another goroutine took over
// the reading.
func (s *Server) dispatch(sc *serverConn, frames [][]byte) bool {
	z := sc.z
	req, err := Parse(frames)
	if err == nil && len(req.Routing) == 0 {
		// frames[0] is the connection's identity, so a well-formed request
		// always has routing; without it the sender omitted the delimiter
		// and its first frame was read as the id.
		err = errNoDelimiter
	}
	if err != nil {
		// Told in the sender's terms: frames[0] is the identity this end
		// added, so the sender's frames are the rest.
		sent := frames[1:]
		if len(sent) > 0 && len(sent[0]) == 0 && len(sent) < 4 {
			err = malformed("%d frames after the empty delimiter, need 3 (id, mimetype, body)", len(sent)-1)
		} else if _, perr := Parse(sent); perr != nil {
			err = perr
		} else {
			err = errNoDelimiter
		}
		s.malformed.Add(1)
		s.log.Debug("malformed message", "frames", len(frames)-1, "err", err)
		s.send(z, s.errorReply(frames[:1], guessID(frames), CodeMalformed, err.Error()))
		return true
	}
	s.requests.Add(1)
	select {
	case s.slots <- struct{}{}:
	default:
		// Never wait here: the read loop would stop reading the connection.
		s.overloaded.Add(1)
		s.send(z, s.errorReply(req.Routing, req.ID, CodeOverloaded,
			fmt.Sprintf("all %d handler slots are busy", s.opts.maxConcurrent)))
		return true
	}
	// Inline unless a handler of the connection's still runs (one that
	// was overtaken, or on a handler goroutine): requests read behind a
	// slow one then run beside it, not after it (inline.go).
	if z.active.Add(1) == 1 && s.opts.inlineGrace > 0 {
		return s.serveInline(sc, req)
	}
	s.handOver(job{z: z, req: req})
	return true
}

// job is a request for a handler goroutine, and where its reply goes.
type job struct {
	z   *zconn
	req Envelope
}

// workerIdle is how long a handler goroutine waits for another request
// before it exits. Keeping them saves starting one per request, and
// growing its stack again to what a handler needs.
const workerIdle = 2 * time.Second

// handOver gives j, whose handler slot is taken, to an idle handler
// goroutine, or starts one; there are never more than WithMaxConcurrent.
func (s *Server) handOver(j job) {
	for {
		select {
		case s.jobs <- j:
			return
		default:
		}
		if s.workers.Add(1) <= int64(s.opts.maxConcurrent) {
			s.wg.Add(1)
			go s.worker(j)
			return
		}
		s.workers.Add(-1)
		// Every goroutine exists, and as a slot is free one of them is
		// about to wait for a job (or to exit, making room).
		select {
		case s.jobs <- j:
			return
		case <-time.After(time.Millisecond):
		case <-s.ctx.Done():
			j.z.active.Add(-1)
			<-s.slots
			return
		}
	}
}

func (s *Server) worker(j job) {
	defer s.wg.Done()
	defer s.workers.Add(-1)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		s.serve(j.z, j.req)
		<-s.slots
		idle.Reset(workerIdle)
		select {
		case j = <-s.jobs:
		case <-idle.C:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *Server) serve(z *zconn, req Envelope) {
	reply, ok := s.answer(z, req)
	defer z.active.Add(-1)
	if ok {
		s.send(z, reply)
	}
}

// answer runs the handler for req and returns the reply to send, or false
// when the server is closing (the connection is gone).
func (s *Server) answer(z *zconn, req Envelope) (Envelope, bool) {
	ctx := s.dl.start(z.hbase)
	defer s.dl.finish(ctx)
	reply, err := s.call(ctx, req)
	if err == nil {
		reply.Routing = req.Routing
		if reply.ID == "" {
			reply.ID = req.ID
		}
		if verr := reply.Validate(); verr != nil {
			err = &RemoteError{Code: CodeInternal, Message: "handler returned an invalid reply: " + verr.Error()}
		}
	}
	if err != nil {
		s.handlerErrors.Add(1)
		var re *RemoteError
		switch {
		case errors.As(err, &re):
		case errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded):
			re = &RemoteError{Code: CodeTimeout, Message: fmt.Sprintf("handler did not finish within %s", s.opts.handlerTimeout)}
		default:
			re = &RemoteError{Code: CodeHandler, Message: err.Error()}
		}
		s.log.Debug("handler failed", "id", req.ID, "code", re.Code, "err", err)
		reply = s.errorReply(req.Routing, req.ID, re.Code, re.Message)
	}
	return reply, s.ctx.Err() == nil
}

// call runs the handler, turning a panic into an error so that one bad
// request cannot take the server down.
func (s *Server) call(ctx context.Context, req Envelope) (reply Envelope, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("handler panicked", "id", req.ID, "panic", p, "stack", string(debug.Stack()))
			err = &RemoteError{Code: CodeInternal, Message: "handler panicked"}
		}
	}()
	return s.handler(ctx, req)
}

// send writes env to the connection it answers, without the identity
// frame that names that connection.
func (s *Server) send(z *zconn, env Envelope) { s.reply(z, env, false) }

// reply sends env as send does, or with queued, leaves it for the
// reader's next flush (zconn.queue).
func (s *Server) reply(z *zconn, env Envelope, queued bool) {
	frames := env.Frames()[1:]
	var err error
	if queued {
		err = z.queue(frames)
	} else {
		err = z.send(frames)
	}
	if err != nil {
		s.sendErrors.Add(1)
		s.log.Debug("reply not sent", "id", env.ID, "err", err)
		return
	}
	s.replies.Add(1)
}

// guessID picks the id of an error reply to a malformed message: the frame
// where the id would be, if it could be one, else "" (errorReply's default
// envelope then says malformedID).
func guessID(frames [][]byte) string {
	if len(frames) >= 4 {
		id := frames[len(frames)-3]
		if len(id) > 0 && len(id) <= MaxIDSize && utf8.Valid(id) {
			return string(id)
		}
	}
	return ""
}
