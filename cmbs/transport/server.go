package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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

// replySendTimeout bounds one reply send. A send only blocks when the
// peer's TCP window is full; zmq4 serialises router sends, so this is also
// how long one stuck peer can delay every other reply.
const replySendTimeout = 5 * time.Second

// malformedID is the id of an error envelope answering a message that had
// no usable id.
const malformedID = "unparsed"

// Server is a ZeroMQ ROUTER bound to one endpoint that answers each request
// with its Handler. Requests are served concurrently, up to
// WithMaxConcurrent at once. It works with any peer that sends
// [routing…, "", id, mimetype, body] — this package's Client, or a plain
// libzmq REQ socket sending [id, mimetype, body] (REQ adds the delimiter).
// A malformed message never stops the server: it is counted and, since a
// ROUTER always knows the sender, answered with an error envelope.
type Server struct {
	sock    zmq4.Socket
	addr    string
	handler Handler
	opts    options
	log     *slog.Logger

	// ctx is the parent of every handler's context; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{} // one token per running handler
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	requests, replies, malformed, handlerErrors,
	overloaded, sendErrors, rejected atomic.Uint64
}

// ServerStats counts what a Server has seen since Listen.
type ServerStats struct {
	Requests      uint64 // well-formed requests received, Overloaded ones included
	Replies       uint64 // envelopes sent back, error envelopes included
	Malformed     uint64 // messages that did not parse as a routable envelope
	HandlerErrors uint64 // handler calls that failed, panicked, timed out or returned an invalid reply
	Overloaded    uint64 // requests refused because every handler slot was busy
	SendErrors    uint64 // replies that could not be sent (usually: the peer left)
	RejectedConns uint64 // TCP connections dropped before ZMTP: silent, not ZMTP, or too many waiting
}

// Listen binds a ROUTER to endpoint ("tcp://host:port"; port 0 picks a free
// port, see Addr) and serves h on it until Close. An address in use, or any
// other bind failure, is returned here. Like net.ListenConfig.Listen, ctx
// only bounds the bind: cancelling it later does not stop the server. Its
// values are visible to handlers.
func Listen(ctx context.Context, endpoint string, h Handler, opts ...Option) (*Server, error) {
	if h == nil {
		return nil, errors.New("transport: Listen: nil handler")
	}
	if err := registerTransport(); err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	zep, err := zmqEndpoint(endpoint)
	if err != nil {
		return nil, fmt.Errorf("transport: listen: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", endpoint, err)
	}
	s := &Server{handler: h, opts: buildOptions(opts)}
	s.log = s.opts.logger.With("component", "transport.server")
	s.slots = make(chan struct{}, s.opts.maxConcurrent)
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))

	hooks := &socketHooks{opts: &s.opts, rejected: &s.rejected}
	s.sock = zmq4.NewRouter(withHooks(context.Background(), hooks),
		zmq4.WithLogger(slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)),
		zmq4.WithTimeout(replySendTimeout),
	)
	if err := s.sock.Listen(zep); err != nil {
		s.cancel()
		_ = s.sock.Close()
		// zmq4's message names our internal scheme; the net error says it all.
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			err = opErr
		}
		return nil, fmt.Errorf("transport: listen %s: %w", endpoint, err)
	}
	s.addr = "tcp://" + s.sock.Addr().String()
	s.log = s.log.With("endpoint", s.addr)

	s.wg.Add(1)
	go s.receive()
	return s, nil
}

// Addr returns the bound endpoint, with the real port when Listen was
// given port 0, e.g. "tcp://127.0.0.1:41234".
func (s *Server) Addr() string { return s.addr }

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Requests:      s.requests.Load(),
		Replies:       s.replies.Load(),
		Malformed:     s.malformed.Load(),
		HandlerErrors: s.handlerErrors.Load(),
		Overloaded:    s.overloaded.Load(),
		SendErrors:    s.sendErrors.Load(),
		RejectedConns: s.rejected.Load(),
	}
}

// Close closes the socket at once: connections are dropped, handler
// contexts are cancelled and their replies discarded. It returns when every
// goroutine the server started has returned. Calling it again is a no-op.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		// zmq4 closes the connections and then our gate listener, whose
		// Close waits for its goroutines and for zmq4's readers to leave.
		s.closeErr = s.sock.Close()
		s.wg.Wait()
	})
	return s.closeErr
}

func (s *Server) receive() {
	defer s.wg.Done()
	for {
		msg, err := s.sock.Recv()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			// A ROUTER's Recv only fails when its socket is closed; anything
			// else is logged and survived (deps.md §3.6 rule 2).
			s.log.Warn("receive failed", "err", err)
			continue
		}
		if msg.Type == zmq4.CmdMsg {
			continue // a ZMTP command (PING…) zmq4 passed up; not ours
		}
		s.dispatch(msg.Frames)
	}
}

func (s *Server) dispatch(frames [][]byte) {
	req, err := Parse(frames)
	if err == nil && len(req.Routing) == 0 {
		// frames[0] is the ROUTER's peer identity, so a well-formed request
		// always has routing; without it the sender omitted the delimiter
		// and its first frame was read as the id.
		err = fmt.Errorf("%w: no empty delimiter before id, mimetype, body (a DEALER must send it; REQ adds it)", ErrMalformedEnvelope)
	}
	if err != nil {
		s.malformed.Add(1)
		s.log.Debug("malformed message", "frames", len(frames), "err", err)
		if len(frames) > 0 && len(frames[0]) > 0 && len(frames[0]) <= MaxRoutingFrameSize {
			s.send(errorEnvelope([][]byte{frames[0]}, guessID(frames), CodeMalformed, err.Error()))
		}
		return
	}
	s.requests.Add(1)
	select {
	case s.slots <- struct{}{}:
	default:
		// Never wait here: a blocked receive loop lets zmq4's per-connection
		// queue fill, and its readers then block forever on close.
		s.overloaded.Add(1)
		s.send(errorEnvelope(req.Routing, req.ID, CodeOverloaded,
			fmt.Sprintf("all %d handler slots are busy", s.opts.maxConcurrent)))
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.slots }()
		s.serve(req)
	}()
}

func (s *Server) serve(req Envelope) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.handlerTimeout)
	defer cancel()
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
		reply = errorEnvelope(req.Routing, req.ID, re.Code, re.Message)
	}
	if s.ctx.Err() != nil {
		return // closing: the socket is gone
	}
	s.send(reply)
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

func (s *Server) send(env Envelope) {
	if err := s.sock.Send(zmq4.NewMsgFrom(env.Frames()...)); err != nil {
		s.sendErrors.Add(1)
		s.log.Debug("reply not sent", "id", env.ID, "err", err)
		return
	}
	s.replies.Add(1)
}

// guessID picks the id of an error reply to a malformed message: the frame
// where the id would be, if it could be one.
func guessID(frames [][]byte) string {
	if len(frames) >= 4 {
		id := frames[len(frames)-3]
		if len(id) > 0 && len(id) <= MaxIDSize && utf8.Valid(id) {
			return string(id)
		}
	}
	return malformedID
}
