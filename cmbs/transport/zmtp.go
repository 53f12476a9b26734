package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
	zmqtransport "github.com/go-zeromq/zmq4/transport"
)

// scheme is the zmq4 transport name this package registers. Users write
// tcp:// endpoints; Listen and the Client rewrite them to this scheme so
// that every connection goes through zmtpTransport.
const scheme = "cmbs-tcp"

var (
	// zmq4 keeps its transports in one process-wide table and refuses to
	// register a name twice, so the registration has to happen once per
	// process whatever number of Servers and Clients exist. The transport
	// itself is stateless: per-socket settings travel in the socket's
	// context (socketHooks).
	registerOnce sync.Once
	registerErr  error
)

func registerTransport() error {
	registerOnce.Do(func() {
		registerErr = zmq4.RegisterTransport(scheme, zmtpTransport{})
	})
	return registerErr
}

// zmqEndpoint checks a user endpoint ("tcp://host:port") and returns the
// endpoint zmq4 should use.
func zmqEndpoint(endpoint string) (string, error) {
	rest, ok := strings.CutPrefix(endpoint, "tcp://")
	if !ok {
		return "", fmt.Errorf("%w %q: only tcp://host:port is supported", ErrBadEndpoint, endpoint)
	}
	if _, _, err := net.SplitHostPort(rest); err != nil {
		return "", fmt.Errorf("%w %q: %w", ErrBadEndpoint, endpoint, err)
	}
	return scheme + "://" + rest, nil
}

// socketHooks carries one socket's settings into zmtpTransport, and the
// listener or connection the transport made back out. It travels as a
// value of the context the zmq4 socket was created with.
type socketHooks struct {
	opts     *options
	rejected *atomic.Uint64 // server: connections the gate dropped

	mu       sync.Mutex
	listener *gateListener
	conn     *guardedConn // client: the connection, once TCP is up
	dialErr  error        // client: why the last TCP dial failed
}

type hooksKey struct{}

func withHooks(ctx context.Context, h *socketHooks) context.Context {
	return context.WithValue(ctx, hooksKey{}, h)
}

func hooksFrom(ctx context.Context) *socketHooks {
	if h, ok := ctx.Value(hooksKey{}).(*socketHooks); ok {
		return h
	}
	o := defaultOptions()
	return &socketHooks{opts: &o, rejected: new(atomic.Uint64)}
}

func (h *socketHooks) dialedConn() *guardedConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conn
}

// zmtpTransport is TCP with two protections zmq4's own tcp transport lacks:
// a listener that only hands zmq4 connections that have started the ZMTP
// greeting (zmq4 runs the handshake inline in its accept loop, so one
// silent client would stall every other), and guarded connections.
type zmtpTransport struct{}

func (zmtpTransport) Dial(ctx context.Context, dialer zmqtransport.Dialer, addr string) (net.Conn, error) {
	h := hooksFrom(ctx)
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() == nil { // keep "connection refused", not our own cancel
			h.mu.Lock()
			h.dialErr = err
			h.mu.Unlock()
		}
		return nil, err
	}
	gc := newGuardedConn(c, nil, h.opts.maxMessageSize, nil)
	// ctx is the socket's life-line. zmq4 closes the connections it has
	// adopted when the socket closes, but not one still in its handshake:
	// closing it here is what lets a socket Close abort a Dial stuck on a
	// peer that accepted TCP and never answered the greeting.
	context.AfterFunc(ctx, func() { _ = gc.Close() })
	h.mu.Lock()
	h.conn = gc
	h.mu.Unlock()
	return gc, nil
}

func (zmtpTransport) Listen(ctx context.Context, addr string) (net.Listener, error) {
	h := hooksFrom(ctx)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	gl := newGateListener(ln, h.opts, h.rejected)
	h.mu.Lock()
	h.listener = gl
	h.mu.Unlock()
	return gl, nil
}

func (zmtpTransport) Addr(ep string) (string, error) {
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return "", err
	}
	switch port {
	case "", "*":
		port = "0"
	}
	switch host {
	case "", "*":
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, port), nil
}

// gateListener accepts TCP connections in its own goroutine and gives each
// one handshakeTimeout to send the 10-byte ZMTP signature, in a goroutine
// per connection. Only connections that did are handed to zmq4's Accept,
// with the bytes replayed; silent or non-ZMTP ones are closed and counted.
// A client that sends the signature and then stalls can still hold zmq4's
// accept loop, but only for handshakeTimeout: the deadline set in Accept
// covers the whole handshake and is lifted when zmq4 comes back for the
// next connection. (The full 64-byte greeting cannot be awaited: libzmq
// sends only the signature and major version until it hears ours.)
type gateListener struct {
	ln       net.Listener
	opts     *options
	rejected *atomic.Uint64
	log      *slog.Logger

	ready     chan *guardedConn
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // accept loop and gate goroutines
	accepts   *activity      // zmq4's calls to Accept

	mu       sync.Mutex
	pending  map[net.Conn]struct{}     // in the gate
	handed   map[*guardedConn]struct{} // given to zmq4, not yet closed and drained
	inHandsh *guardedConn              // the conn zmq4 is handshaking with
}

func newGateListener(ln net.Listener, opts *options, rejected *atomic.Uint64) *gateListener {
	l := &gateListener{
		ln:       ln,
		opts:     opts,
		rejected: rejected,
		log:      opts.logger.With("listener", ln.Addr().String()),
		ready:    make(chan *guardedConn),
		done:     make(chan struct{}),
		accepts:  newActivity(),
		pending:  make(map[net.Conn]struct{}),
		handed:   make(map[*guardedConn]struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Accept is called by zmq4's accept loop, which runs the ZMTP handshake on
// the returned conn before calling Accept again.
func (l *gateListener) Accept() (net.Conn, error) {
	if !l.accepts.enter() {
		return nil, net.ErrClosed
	}
	defer l.accepts.leave()

	// zmq4 is back, so it is done with the previous connection's handshake:
	// lift its deadline, or close it if the handshake failed (zmq4 does not
	// close connections whose handshake fails).
	l.mu.Lock()
	prev := l.inHandsh
	l.inHandsh = nil
	l.mu.Unlock()
	if prev != nil {
		_ = prev.SetDeadline(time.Time{})
		if prev.failed.Load() {
			_ = prev.Close()
		}
	}

	select {
	case c := <-l.ready:
		_ = c.SetDeadline(time.Now().Add(l.opts.handshakeTimeout))
		l.mu.Lock()
		l.inHandsh = c
		l.mu.Unlock()
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *gateListener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-l.done:
				return
			}
			continue
		}
		backoff = 0
		l.mu.Lock()
		if len(l.pending) >= l.opts.maxPending {
			l.mu.Unlock()
			l.rejected.Add(1)
			l.log.Debug("too many connections waiting for their greeting; dropping", "remote", c.RemoteAddr().String())
			_ = c.Close()
			continue
		}
		l.pending[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.gate(c)
	}
}

// gate waits for c's ZMTP signature, then queues it for zmq4.
func (l *gateListener) gate(c net.Conn) {
	defer l.wg.Done()
	remove := func() {
		l.mu.Lock()
		delete(l.pending, c)
		l.mu.Unlock()
	}
	var sig [10]byte
	_ = c.SetReadDeadline(time.Now().Add(l.opts.handshakeTimeout))
	_, err := io.ReadFull(c, sig[:])
	if err == nil && (sig[0] != 0xFF || sig[9] != 0x7F) {
		err = errors.New("not a ZMTP signature")
	}
	if err != nil {
		remove()
		select {
		case <-l.done:
		default:
			// Counted before closing, so that a peer seeing the close
			// also sees the count.
			l.rejected.Add(1)
			l.log.Debug("dropped a connection that did not start ZMTP", "remote", c.RemoteAddr().String(), "err", err)
		}
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})

	gc := newGuardedConn(c, sig[:], l.opts.maxMessageSize, l.forget)
	l.mu.Lock()
	delete(l.pending, c)
	l.handed[gc] = struct{}{}
	l.mu.Unlock()
	select {
	case l.ready <- gc:
	case <-l.done:
		_ = gc.Close()
	}
}

func (l *gateListener) forget(gc *guardedConn) {
	l.mu.Lock()
	delete(l.handed, gc)
	l.mu.Unlock()
}

// Close stops accepting, closes every connection still waiting in the gate
// or left over from a failed handshake, and returns once every goroutine it
// started has returned and zmq4's readers have left every connection.
// zmq4 calls it from the socket's Close.
func (l *gateListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.closeErr = l.ln.Close()
		l.mu.Lock()
		for c := range l.pending {
			_ = c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()

		l.mu.Lock()
		handed := make([]*guardedConn, 0, len(l.handed))
		for gc := range l.handed {
			handed = append(handed, gc)
		}
		l.mu.Unlock()
		for _, gc := range handed {
			_ = gc.Close()
			<-gc.drained()
		}
		_, _ = l.accepts.close()
		<-l.accepts.drained
	})
	return l.closeErr
}

func (l *gateListener) Addr() net.Addr { return l.ln.Addr() }
