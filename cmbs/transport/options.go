package transport

import (
	"log/slog"
	"time"
)

// Option configures a Server (Listen) or a Client (NewClient). Each option
// says which of the two it affects; the other ignores it.
type Option func(*options)

type options struct {
	logger           *slog.Logger
	maxMessageSize   int64
	handshakeTimeout time.Duration
	curve            curveOptions // CURVE (curve.go); zero: NULL
	messageTimeout   time.Duration
	readBudget       *ReadBudget // nil: one of DefaultReadBudget per Server or Client

	// Server.
	handlerTimeout      time.Duration
	maxConcurrent       int
	maxPending          int
	maxPendingPerSource int
	evictAfter          time.Duration
	maxConns            int
	connQuota           *ConnQuota // nil: none
	peerIdle            time.Duration
	errorReply          ErrorReplyFunc // nil: error envelopes (errorreply.go)
	inlineGrace         time.Duration  // zero: every handler on a handler goroutine (inline.go)

	// Client.
	requestTimeout time.Duration
	maxInFlight    int
	fanOut         int
	dialRetry      time.Duration
	idleTimeout    time.Duration
}

func defaultOptions() options {
	return options{
		logger:              slog.New(slog.DiscardHandler),
		maxMessageSize:      MaxBodySize + 64<<10,
		handshakeTimeout:    5 * time.Second,
		messageTimeout:      10 * time.Second,
		handlerTimeout:      10 * time.Second,
		maxConcurrent:       64,
		maxPending:          128,
		maxPendingPerSource: 16,
		evictAfter:          time.Second,
		maxConns:            512,
		peerIdle:            5 * time.Minute,
		requestTimeout:      5 * time.Second,
		maxInFlight:         64,
		fanOut:              16,
		dialRetry:           50 * time.Millisecond,
		idleTimeout:         90 * time.Second,
	}
}

func buildOptions(opts []Option) options {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.readBudget == nil {
		o.readBudget = NewReadBudget(DefaultReadBudget)
	}
	// A message bigger than the whole budget could never be read.
	o.maxMessageSize = min(o.maxMessageSize, o.readBudget.Size())
	return o
}

// readLimits returns what the connections of a Server (server true) or a
// Client enforce while reading.
func (o *options) readLimits(server bool) readLimits {
	rl := readLimits{budget: o.readBudget, messageTimeout: o.messageTimeout}
	if server {
		rl.idleTimeout = o.peerIdle
	}
	return rl
}

// WithLogger sets where the Server or Client logs (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithMaxMessageSize bounds the bytes of one incoming ZeroMQ message, all
// frames together, on the Server's and the Client's connections (default:
// MaxBodySize + 64 KiB; never more than the read budget, WithReadBudget).
// A peer that announces a bigger frame is disconnected before the frame is
// read.
func WithMaxMessageSize(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.maxMessageSize = n
		}
	}
}

// WithMessageTimeout bounds how long one incoming message may take to
// arrive once its first byte is in, on the Server's and the Client's
// connections (default 10s). A peer that starts a message and trickles it
// is disconnected then, and the memory its message held is released. At
// the default, a message of the largest size must arrive at 1.7 MB/s or
// better.
func WithMessageTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.messageTimeout = d
		}
	}
}

// WithReadBudget makes the Server's or Client's connections take the
// buffers of large incoming messages from b, which other Servers and
// Clients may share (default: a budget of DefaultReadBudget bytes of its
// own). WithMaxMessageSize is lowered to b's size if it is larger.
func WithReadBudget(b *ReadBudget) Option {
	return func(o *options) {
		if b != nil {
			o.readBudget = b
		}
	}
}

// WithMaxConns bounds the Server's open connections, the ones still in
// their handshake included (default 512). A connection accepted beyond it
// is closed at once, so that idle peers cannot use up the process's file
// descriptors.
func WithMaxConns(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxConns = n
		}
	}
}

// WithConnQuota makes the Server count its connections against q too,
// which other Servers may share (default: none, only WithMaxConns).
func WithConnQuota(q *ConnQuota) Option {
	return func(o *options) { o.connQuota = q }
}

// WithPeerIdleTimeout sets how long the Server keeps a connection on which
// no message arrives and no handler runs (default 5m); it is then closed.
// A peer's ZMTP heartbeats do not count as messages. Peers of this
// package's Client close their idle connections first (WithIdleTimeout).
func WithPeerIdleTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.peerIdle = d
		}
	}
}

// WithHandshakeTimeout bounds how long a new connection may take to start
// and finish the ZMTP handshake (default 5s). On the Server, a connection
// that sends nothing within it is dropped; one that sends nothing, or
// takes over a second, may be evicted sooner to make room for another
// (see docs/limits.md).
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.handshakeTimeout = d
		}
	}
}

// WithHandlerTimeout sets the deadline of each Server handler call
// (default 10s). A handler that overruns it gets an error reply sent for
// it (CodeTimeout) once it returns; handlers must honour their ctx.
func WithHandlerTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.handlerTimeout = d
		}
	}
}

// WithInlineHandlers makes a Server run a request's handler on the
// goroutine that read it: the reply then goes out without a handoff
// between goroutines, which on a round trip at a time (an L1 request) is
// a wake-up less each way, and the replies to requests read together
// (pipelined on one connection) go out together, in one system call. A
// handler still running after grace hands the connection's reading to a
// new goroutine, so that requests behind a slow handler wait at most
// grace longer than they would have. Zero or less (the default) runs every handler on a handler
// goroutine of its own.
func WithInlineHandlers(grace time.Duration) Option {
	return func(o *options) { o.inlineGrace = max(grace, 0) }
}

// WithMaxConcurrent bounds how many Server handler calls run at once
// (default 64). A request arriving when all are busy is answered at once
// with an error envelope (CodeOverloaded) rather than queued, so that one
// slow handler cannot stall the receive loop.
func WithMaxConcurrent(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxConcurrent = n
		}
	}
}

// WithRequestTimeout sets the Client's default deadline for one request,
// including connecting (default 5s). A context with an earlier deadline
// wins.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.requestTimeout = d
		}
	}
}

// WithMaxInFlight bounds how many of the Client's requests to one endpoint
// are outstanding at once (default 64, the Server's default
// WithMaxConcurrent). Further requests wait for one to finish, within
// their deadline.
func WithMaxInFlight(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxInFlight = n
		}
	}
}

// WithFanOut bounds how many endpoints Client.Deliver contacts at once
// (default 16).
func WithFanOut(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.fanOut = n
		}
	}
}

// WithIdleTimeout sets how long the Client keeps a connection that no
// request uses (default 90s). The connection is then closed, and the next
// request to its endpoint dials a new one.
func WithIdleTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.idleTimeout = d
		}
	}
}

// withMaxPending bounds the Server's connections that have not finished
// the ZMTP handshake (default 128); beyond it, a new connection evicts the
// oldest evictable one, or is closed (see admission.go). Tests lower it.
func withMaxPending(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxPending = n
		}
	}
}

// withMaxPendingPerSource bounds the Server's connections from one address
// that have not finished the ZMTP handshake (default 16), as
// withMaxPending does for all. Tests change it.
func withMaxPendingPerSource(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxPendingPerSource = n
		}
	}
}

// withEvictAfter sets how long a pending connection that has sent bytes is
// safe from eviction (default 1s). Tests that hold handshakes raise it.
func withEvictAfter(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.evictAfter = d
		}
	}
}
