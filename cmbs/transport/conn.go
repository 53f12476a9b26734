package transport

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
)

// guardedConn is the net.Conn under every ZMTP connection of this package.
// It buffers reads (a burst of small messages costs one system call), and
// refuses frames bigger than the message limit before anything allocates
// them.
type guardedConn struct {
	net.Conn
	rd    *bufio.Reader
	guard frameGuard // the incoming stream; Read is never called concurrently

	// beforeFill, if set, runs on the reading goroutine whenever rd is
	// about to read from the network, and before the reader waits for
	// read budget (zconn.readLarge): a server flushes the replies it
	// queued there (zconn.queue). Set by the reader before it reads.
	beforeFill func()

	closeOnce sync.Once
	done      chan struct{} // closed by Close: ends a wait for the read budget
}

// readBufferSize is large enough for a burst of small messages.
const readBufferSize = 16 << 10

func newGuardedConn(c net.Conn, maxMessage int64) *guardedConn {
	gc := &guardedConn{
		Conn:  c,
		guard: frameGuard{max: maxMessage, greeting: zmtpGreetingSize},
		done:  make(chan struct{}),
	}
	gc.rd = bufio.NewReaderSize(fillSource{gc}, readBufferSize)
	return gc
}

// fillSource is what rd reads from: the connection, after beforeFill.
type fillSource struct{ c *guardedConn }

func (s fillSource) Read(p []byte) (int, error) {
	if f := s.c.beforeFill; f != nil {
		f()
	}
	return s.c.Conn.Read(p)
}

// Close closes the connection; a read in progress, or a wait for the read
// budget, returns an error.
func (c *guardedConn) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return c.Conn.Close()
}

func (c *guardedConn) Read(p []byte) (int, error) {
	n, err := c.rd.Read(p)
	if n > 0 {
		if gerr := c.guard.scan(p[:n]); gerr != nil {
			_ = c.Conn.Close()
			return 0, gerr
		}
	}
	return n, err
}

// ZMTP 3 framing, for frameGuard.
const (
	zmtpGreetingSize = 64
	zmtpFlagMore     = 0x01
	zmtpFlagLong     = 0x02
	zmtpFlagCommand  = 0x04
)

// maxCommandSize bounds one ZMTP command (READY with its metadata, PING,
// ERROR…): libzmq's are a few hundred bytes, and a command is read whole,
// during the handshake by zmq4, so a peer must not choose its size.
const maxCommandSize = 16 << 10

// frameTooBigError is returned by Read when the peer announces a frame or
// message over the limit.
type frameTooBigError struct{ size, max uint64 }

func (e *frameTooBigError) Error() string {
	return fmt.Sprintf("transport: peer sent a %d-byte message, limit is %d", e.size, e.max)
}

// frameGuard follows the incoming ZMTP byte stream, so that a frame header
// announcing more than max bytes is refused before anything (zmq4's
// handshake, or zconn.readMsg) allocates a buffer of a peer-chosen size.
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
		if size > maxCommandSize {
			return &frameTooBigError{size: size, max: maxCommandSize}
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
