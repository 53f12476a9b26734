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

	// Server.
	handlerTimeout time.Duration
	maxConcurrent  int
	maxPending     int

	// Client.
	requestTimeout time.Duration
	maxInFlight    int
	fanOut         int
	dialRetry      time.Duration
	idleTimeout    time.Duration
}

func defaultOptions() options {
	return options{
		logger:           slog.New(slog.DiscardHandler),
		maxMessageSize:   MaxBodySize + 64<<10,
		handshakeTimeout: 5 * time.Second,
		handlerTimeout:   10 * time.Second,
		maxConcurrent:    64,
		maxPending:       128,
		requestTimeout:   5 * time.Second,
		maxInFlight:      64,
		fanOut:           16,
		dialRetry:        50 * time.Millisecond,
		idleTimeout:      90 * time.Second,
	}
}

func buildOptions(opts []Option) options {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return o
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
// MaxBodySize + 64 KiB). A peer that announces a bigger frame is
// disconnected before the frame is read.
func WithMaxMessageSize(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.maxMessageSize = n
		}
	}
}

// WithHandshakeTimeout bounds how long a new connection may take to start
// and finish the ZMTP handshake (default 5s). On the Server, a connection
// that sends nothing within it is dropped.
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
// the ZMTP handshake (default 128); more are closed at once. Tests lower it.
func withMaxPending(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxPending = n
		}
	}
}
