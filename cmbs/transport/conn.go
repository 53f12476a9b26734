package transport

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
)

// activity counts calls in progress on something that can be closed, so
// that whoever closes it can wait until no goroutine is inside any more.
// zmq4 starts goroutines per connection that it never waits for; waiting
// until their blocking calls into our conns and listener have returned is
// how Close keeps its promise that nothing is left running.
type activity struct {
	mu      sync.Mutex
	n       int
	closed  bool
	drained chan struct{} // closed once closed && n == 0
}

func newActivity() *activity { return &activity{drained: make(chan struct{})} }

// enter reports false when the thing is closed; otherwise the caller must
// call leave.
func (a *activity) enter() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.n++
	return true
}

// leave reports whether this call drained a closed thing.
func (a *activity) leave() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n--
	if a.closed && a.n == 0 {
		close(a.drained)
		return true
	}
	return false
}

// close marks the thing closed. It reports whether this was the first call
// and whether it drained the thing (nothing was in progress).
func (a *activity) close() (first, drained bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false, false
	}
	a.closed = true
	if a.n == 0 {
		close(a.drained)
		return true, true
	}
	return true, false
}

// guardedConn is the net.Conn zmq4 gets from this package's transport. It
// replays the greeting bytes the gate already read, refuses frames bigger
// than the message limit before zmq4 allocates them, remembers read
// failures (so a cached client socket whose peer went away is not reused),
// and lets Close wait for zmq4's reader to leave.
//
// It also saves most of zmq4's system calls, which dominate its cost: zmq4
// reads each frame header and body with its own read, and its ROUTER
// writes each header and body with its own write (and net.Buffers loses
// writev behind any wrapper conn). Reads are buffered; writes are held
// until a whole ZMTP message, command or greeting has been written and
// then sent at once, which is safe because zmq4 never waits for the peer
// in the middle of one.
type guardedConn struct {
	net.Conn
	rd     *bufio.Reader
	prefix []byte     // bytes already consumed by the gate, replayed first
	guard  frameGuard // incoming stream; touched only by Read, which zmq4 never calls concurrently
	act    *activity
	failed atomic.Bool
	onEnd  func(*guardedConn) // called once, when closed and drained

	wmu  sync.Mutex
	out  frameGuard // outgoing stream, to find message boundaries
	wbuf []byte
}

// Buffer sizes: reads large enough for a burst of small messages; writes
// coalesced up to maxCoalesce, beyond which a message goes out with writev.
const (
	readBufferSize = 16 << 10
	maxCoalesce    = 64 << 10
)

func newGuardedConn(c net.Conn, prefix []byte, maxMessage int64, onEnd func(*guardedConn)) *guardedConn {
	return &guardedConn{
		Conn:   c,
		rd:     bufio.NewReaderSize(c, readBufferSize),
		prefix: prefix,
		guard:  frameGuard{max: maxMessage, greeting: zmtpGreetingSize},
		out:    frameGuard{max: math.MaxInt64, greeting: zmtpGreetingSize},
		act:    newActivity(),
		onEnd:  onEnd,
	}
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if !c.act.enter() {
		return 0, net.ErrClosed
	}
	defer c.leave()
	var n int
	var err error
	if len(c.prefix) > 0 {
		n = copy(p, c.prefix)
		c.prefix = c.prefix[n:]
	} else {
		n, err = c.rd.Read(p)
	}
	if n > 0 {
		if gerr := c.guard.scan(p[:n]); gerr != nil {
			c.failed.Store(true)
			_ = c.Conn.Close()
			return 0, gerr
		}
	}
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

func (c *guardedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.out.scan(p) // no limit on what we send
	boundary := c.out.atBoundary()
	var err error
	switch {
	case len(c.wbuf) == 0 && boundary:
		_, err = c.Conn.Write(p)
	case len(c.wbuf)+len(p) > maxCoalesce:
		bufs := net.Buffers{c.wbuf, p}
		_, err = bufs.WriteTo(c.Conn)
		c.wbuf = c.wbuf[:0]
	default:
		c.wbuf = append(c.wbuf, p...)
		if boundary {
			_, err = c.Conn.Write(c.wbuf)
			c.wbuf = c.wbuf[:0]
		}
	}
	if err != nil {
		c.failed.Store(true)
		return 0, err
	}
	return len(p), nil
}

func (c *guardedConn) leave() {
	if c.act.leave() && c.onEnd != nil {
		c.onEnd(c)
	}
}

// Close closes the connection; it may be called any number of times.
func (c *guardedConn) Close() error {
	c.failed.Store(true)
	first, drained := c.act.close()
	if !first {
		return nil
	}
	err := c.Conn.Close()
	if drained && c.onEnd != nil {
		c.onEnd(c)
	}
	return err
}

// drained is closed once the conn is closed and no Read is in progress.
func (c *guardedConn) drained() <-chan struct{} { return c.act.drained }

// usable reports whether the connection still looks alive: no read or
// write has failed, and the peer has not shut its side down.
func (c *guardedConn) usable() bool {
	return !c.failed.Load() && !peerClosed(c.Conn)
}

// ZMTP 3 framing, for frameGuard.
const (
	zmtpGreetingSize = 64
	zmtpFlagMore     = 0x01
	zmtpFlagLong     = 0x02
	zmtpFlagCommand  = 0x04
)

// frameTooBigError is returned by Read when the peer announces a frame or
// message over the limit. It is a net.Error so that zmq4 marks the
// connection dead.
type frameTooBigError struct{ size, max uint64 }

func (e *frameTooBigError) Error() string {
	return fmt.Sprintf("transport: peer sent a %d-byte message, limit is %d", e.size, e.max)
}
func (e *frameTooBigError) Timeout() bool   { return false }
func (e *frameTooBigError) Temporary() bool { return false }

var _ net.Error = (*frameTooBigError)(nil)

// frameGuard follows the ZMTP byte stream as zmq4 reads it, so that a frame
// header announcing more than max bytes is refused before zmq4 calls
// make([]byte, size) with a peer-chosen size.
type frameGuard struct {
	max      int64
	greeting int // greeting bytes still to skip
	hdr      [9]byte
	hdrLen   int // header bytes seen so far
	hdrNeed  int // header length once the flags byte is known
	bodyLeft uint64
	msgTotal uint64 // bytes of the message's earlier frames
	more     bool   // the last frame header had the MORE flag
}

// atBoundary reports whether the bytes scanned so far end exactly after the
// greeting or after the last frame of a message or command.
func (g *frameGuard) atBoundary() bool {
	return g.greeting == 0 && g.hdrLen == 0 && g.bodyLeft == 0 && !g.more
}

func (g *frameGuard) scan(b []byte) error {
	for len(b) > 0 {
		switch {
		case g.greeting > 0:
			k := min(g.greeting, len(b))
			g.greeting -= k
			b = b[k:]
		case g.bodyLeft > 0:
			k := min(g.bodyLeft, uint64(len(b)))
			g.bodyLeft -= k
			b = b[k:]
		case g.hdrLen == 0:
			g.hdr[0] = b[0]
			g.hdrLen = 1
			g.hdrNeed = 2
			if b[0]&zmtpFlagLong != 0 {
				g.hdrNeed = 9
			}
			b = b[1:]
		default:
			k := copy(g.hdr[g.hdrLen:g.hdrNeed], b)
			g.hdrLen += k
			b = b[k:]
			if g.hdrLen < g.hdrNeed {
				continue
			}
			if err := g.frameHeader(); err != nil {
				return err
			}
		}
	}
	return nil
}

// frameHeader checks a complete frame header and starts skipping its body.
func (g *frameGuard) frameHeader() error {
	flags := g.hdr[0]
	size := uint64(g.hdr[1])
	if g.hdrNeed == 9 {
		size = binary.BigEndian.Uint64(g.hdr[1:9])
	}
	g.hdrLen = 0
	g.more = flags&zmtpFlagMore != 0 && flags&zmtpFlagCommand == 0
	max := uint64(g.max)
	if flags&zmtpFlagCommand != 0 {
		// Commands (READY, PING…) are single frames outside messages.
		if size > max {
			return &frameTooBigError{size: size, max: max}
		}
	} else {
		if size > max || g.msgTotal+size > max {
			return &frameTooBigError{size: g.msgTotal + size, max: max}
		}
		if flags&zmtpFlagMore != 0 {
			g.msgTotal += size
		} else {
			g.msgTotal = 0
		}
	}
	g.bodyLeft = size
	return nil
}
