package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
)

// maxFramesPerMessage bounds the frames of one incoming message: an
// envelope has at most MaxRoutingFrames routing frames, the delimiter and
// three more. Without a bound, a peer sending endless empty frames with
// the MORE flag would grow one message forever within the size limit.
const maxFramesPerMessage = MaxRoutingFrames + 4

// envelopeFrames is the frames of a usual envelope: one routing frame, the
// delimiter, id, mimetype and body.
const envelopeFrames = 5

// errTooManyFrames ends a connection whose peer sent a message with more
// frames than any envelope has.
var errTooManyFrames = fmt.Errorf("peer sent a message of more than %d frames", maxFramesPerMessage)

// zconn is one ZMTP 3 connection past its handshake. zmq4 runs the
// handshake (greeting, security mechanism, READY and the socket-type
// rules); the data path is this package's own, because zmq4's sockets put
// every message through several goroutines and channels and one system
// call each way, which measured as most of the broker's cost (see
// docs/decisions.md). Frames are read from the guarded connection, so the
// message size limit still applies before a body is allocated; messages
// are written whole, and writers that arrive while one is writing leave
// their message for it to send in the same system call.
type zconn struct {
	gc           *guardedConn
	writeTimeout time.Duration
	rhdr         [8]byte // readMsg's frame header, kept off the heap per message

	// sec is the connection's CURVE state (curve.go); nil: NULL.
	sec *curveConn

	// hbase supplies the values of a server's handler contexts: the
	// server's, and the peer's key on CURVE (withPeer). Nil on a client.
	hbase context.Context

	// What readMsg enforces; see readLimits.
	readLimits
	lastStart time.Time // when the last message (or the connection) started
	deadline  time.Time // the read deadline set on gc; zero: none

	// active counts the exchanges in progress on the connection (requests
	// awaiting replies on a client, handlers running on a server), kept
	// by the owner; write uses it to guess whether more messages follow.
	active atomic.Int32

	wmu      sync.Mutex
	pending  []byte // encoded messages waiting for the writer
	spare    []byte // the previous write's buffer, reused
	flushing bool   // a sender is writing; others only append
	werr     error  // the first write error; later sends fail with it
}

// readLimits bound what a peer can make a connection hold while reading.
type readLimits struct {
	// budget is where frame buffers beyond a message's first
	// freeMessageBytes are taken from; nil counts nothing (tests).
	budget *ReadBudget
	// messageTimeout bounds a message's arrival once its first byte is
	// in; zero sets no read deadlines at all (tests).
	messageTimeout time.Duration
	// idleTimeout closes a connection on which no message has started
	// for that long, unless exchanges are active on it; zero never does.
	idleTimeout time.Duration
}

// freeMessageBytes of each message are allocated as their frames announce
// them, without the read budget: most messages are that small, and a
// connection can hold no more than that without sending it.
const freeMessageBytes = 16 << 10

// Growing a large frame's buffer: from largeFrameStart bytes, doubling,
// by at most maxFrameGrowth bytes at a time, so that the buffer is never
// much more than twice what the peer has sent.
const (
	largeFrameStart = 64 << 10
	maxFrameGrowth  = 4 << 20
)

// errIdle ends a connection on which no message started within the idle
// timeout.
var errIdle = errors.New("connection idle")

// handshake runs the ZMTP handshake on gc as a socket of type typ (a
// ROUTER is the side that accepted the connection), bounded by ctx and by
// timeout, with the CURVE mechanism mech or, when it is nil, NULL. rl is
// what readMsg enforces on the connection, CURVE or not.
func handshake(ctx context.Context, gc *guardedConn, typ zmq4.SocketType, timeout, writeTimeout time.Duration, rl readLimits, mech *curveMech) (*zconn, error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = gc.SetDeadline(deadline)
	// Closing the connection is the only way to end a read in progress.
	stop := context.AfterFunc(ctx, func() { _ = gc.Close() })
	var sec *curveConn
	var err error
	if mech != nil {
		sec, err = mech.handshake(gc, typ)
	} else {
		_, err = zmq4.Open(gc, null.Security(), typ, nil, typ == zmq4.Router, nil)
	}
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		return nil, err
	}
	_ = gc.SetDeadline(time.Time{})
	z := &zconn{gc: gc, writeTimeout: writeTimeout, sec: sec, readLimits: rl, lastStart: time.Now()}
	if rl.messageTimeout > 0 {
		// The first wait for a message; awaitMessage extends it to the
		// idle timeout.
		z.setReadDeadline(z.lastStart.Add(z.firstWait()))
	}
	return z, nil
}

// readMsg appends the next message's frames to frames (so that a caller
// can put its own first, with room for an envelope's). ZMTP commands are
// handled here (PING is answered) and not returned. It must not be called
// concurrently.
//
// Once a message's first byte is in, the whole message must arrive within
// the message timeout (up to a sixteenth more); waiting for that first
// byte is bounded by the idle timeout instead. While the peer sends a
// message at least every message timeout, the idle timeout costs nothing
// more.
func (z *zconn) readMsg(frames [][]byte) (_ [][]byte, err error) {
	var held int64 // budget bytes this message's buffers hold
	defer func() {
		if held > 0 {
			z.budget.release(held)
		}
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, errBudgetWait) {
			err = fmt.Errorf("%w: message not complete within %s: %w", errSlowMessage, z.messageTimeout, err)
		}
	}()
	start := len(frames)
	hdr := z.rhdr[:]
message:
	for {
		var started, deadline time.Time
		if z.messageTimeout > 0 {
			if err := z.awaitMessage(); err != nil {
				return nil, err
			}
			started = time.Now()
			// Moving the deadline costs a timer update: it is moved
			// ahead by a sixteenth more than needed, and left alone
			// while it leaves the message its whole timeout and no more
			// than that sixteenth beyond (a wait for the message may
			// have moved it to the idle timeout), so that a busy
			// connection moves it a few times a second, not once per
			// message.
			need := started.Add(z.messageTimeout)
			if slack := z.messageTimeout / 16; z.deadline.Before(need) || z.deadline.After(need.Add(slack)) {
				z.setReadDeadline(need.Add(slack))
			}
			deadline = z.deadline
		}
		free := uint64(freeMessageBytes)
		for {
			if _, err := io.ReadFull(z.gc, hdr[:2]); err != nil {
				return nil, err
			}
			flags := hdr[0]
			size := uint64(hdr[1])
			if flags&zmtpFlagLong != 0 {
				hdr[0] = hdr[1]
				if _, err := io.ReadFull(z.gc, hdr[1:8]); err != nil {
					return nil, err
				}
				size = binary.BigEndian.Uint64(hdr[:8])
			}
			// The guarded connection has refused sizes over the limit by now.
			var body []byte
			if flags&zmtpFlagCommand != 0 {
				// At most maxCommandSize, and garbage once handled: not
				// kept with the message, whatever a peer interleaves.
				body = make([]byte, size)
				if _, err := io.ReadFull(z.gc, body); err != nil {
					return nil, err
				}
			} else if size <= free {
				free -= size
				body = make([]byte, size)
				if _, err := io.ReadFull(z.gc, body); err != nil {
					return nil, err
				}
			} else if body, err = z.readLarge(int(size), deadline, &held); err != nil {
				return nil, err
			}
			if z.sec != nil {
				// On CURVE every frame is a MESSAGE (flags 0 on the wire,
				// read and counted above like any frame): its box holds
				// the frame's flags, its payload the frame's body, and
				// open checks the message's plaintext size.
				if flags, body, err = z.sec.open(body); err != nil {
					return nil, err
				}
			}
			if flags&zmtpFlagCommand != 0 {
				if err := z.command(body); err != nil {
					return nil, err
				}
				if len(frames) == start {
					// A command (a heartbeat) is no message: the wait for
					// one goes on, and the connection stays as idle as it
					// was, which heartbeats more frequent than the read
					// deadline would otherwise hide.
					if z.idleTimeout > 0 && time.Since(z.lastStart) >= z.idleTimeout && z.active.Load() == 0 {
						return nil, fmt.Errorf("%w: no message for %s, only ZMTP commands", errIdle, z.idleTimeout)
					}
					continue message
				}
				continue
			}
			if len(frames)-start == maxFramesPerMessage {
				return nil, errTooManyFrames
			}
			frames = append(frames, body)
			if flags&zmtpFlagMore == 0 {
				if !started.IsZero() {
					z.lastStart = started
					if w := z.firstWait(); w < z.messageTimeout {
						// An idle timeout shorter than the message
						// timeout: wait for the next message no longer.
						z.setReadDeadline(started.Add(w))
					}
				}
				return frames, nil
			}
		}
	}
}

// firstWait is how long a wait for the next message goes before
// awaitMessage looks at the idle timeout: the message timeout, or the idle
// timeout when that is shorter.
func (z *zconn) firstWait() time.Duration {
	if z.idleTimeout > 0 {
		return min(z.messageTimeout, z.idleTimeout)
	}
	return z.messageTimeout
}

// errSlowMessage ends a connection whose peer started a message and did
// not finish it within the message timeout.
var errSlowMessage = errors.New("peer too slow")

// awaitMessage waits until the next message's first byte is in. The read
// deadline is the one set for the previous message; when it passes first,
// the wait goes on up to the idle timeout since that message started, and
// beyond it while exchanges are active on the connection (a server's
// handlers still running).
func (z *zconn) awaitMessage() error {
	for {
		if z.gc.rd.Buffered() > 0 {
			return nil
		}
		_, err := z.gc.rd.Peek(1)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		var next time.Time // no idle timeout: wait on
		if z.idleTimeout > 0 {
			now := time.Now()
			next = z.lastStart.Add(z.idleTimeout)
			if !now.Before(next) {
				if z.active.Load() == 0 {
					return fmt.Errorf("%w: no message for %s", errIdle, z.idleTimeout)
				}
				next = now.Add(z.idleTimeout)
			}
		}
		z.setReadDeadline(next)
	}
}

// setReadDeadline sets gc's read deadline to t, remembering it.
func (z *zconn) setReadDeadline(t time.Time) {
	z.deadline = t
	_ = z.gc.SetReadDeadline(t)
}

// peerGone reports whether the peer has closed its side.
func (z *zconn) peerGone() bool { return peerClosed(z.gc.Conn) }

// readLarge reads a frame body of size bytes into a buffer that grows as
// the bytes arrive, each growth taken from the read budget (held counts
// what this message holds). A peer announcing a large frame and sending
// little of it holds little.
func (z *zconn) readLarge(size int, deadline time.Time, held *int64) ([]byte, error) {
	var body []byte
	for len(body) < size {
		c := cap(body)
		newCap := min(size, max(2*c, largeFrameStart), c+maxFrameGrowth)
		if z.budget != nil {
			if f := z.gc.beforeFill; f != nil {
				// The wait for budget is no wait for the peer either:
				// queued replies go out first (zconn.queue).
				f()
			}
			if err := z.budget.acquire(int64(newCap-c), deadline, z.gc.done, z.peerGone); err != nil {
				return nil, err
			}
			*held += int64(newCap - c)
		}
		grown := make([]byte, len(body), newCap)
		copy(grown, body)
		body = grown
		n, err := io.ReadFull(z.gc, body[len(body):newCap])
		body = body[:len(body)+n]
		if err != nil {
			return nil, err
		}
	}
	return body, nil
}

// command handles a ZMTP command received after the handshake: PING is
// answered with PONG (libzmq sends them when heartbeats are on), ERROR
// ends the connection, anything else is ignored.
func (z *zconn) command(body []byte) error {
	if len(body) == 0 || int(body[0]) > len(body)-1 {
		return errors.New("peer sent a malformed ZMTP command")
	}
	name, data := string(body[1:1+body[0]]), body[1+body[0]:]
	switch name {
	case "PING":
		// PING carries a 2-byte TTL and then a context PONG echoes.
		var ctx []byte
		if len(data) > 2 {
			ctx = data[2:]
		}
		return z.sendCommand("PONG", ctx)
	case "ERROR":
		return fmt.Errorf("peer sent ZMTP ERROR: %q", data)
	}
	return nil
}

func (z *zconn) sendCommand(name string, data []byte) error {
	body := append([]byte{byte(len(name))}, name...)
	body = append(body, data...)
	return z.write(func(buf []byte) []byte { return z.frame(buf, zmtpFlagCommand, body) })
}

// send writes one message. It returns once the message is written or left
// to the sender writing now, which writes it next; a failure of that write
// ends the connection, which the reader reports.
func (z *zconn) send(frames [][]byte) error {
	return z.write(z.encoder(frames))
}

// queue leaves one message for the next write: the connection's reader
// queues the replies of requests it answered inline while more requests
// are buffered behind them, and the queue goes out in one system call
// when the reader is about to wait for the network (flushQueued), or
// with any message sent before that.
func (z *zconn) queue(frames [][]byte) error {
	z.wmu.Lock()
	defer z.wmu.Unlock()
	if z.werr != nil {
		return z.werr
	}
	z.pending = z.encoder(frames)(z.pending)
	return nil
}

// flushQueued writes what queue left, if anything, unless a sender is
// writing (it writes the queue too). A server's reader calls it before it
// waits for the network (guardedConn.beforeFill), so that a queued reply
// never waits for the peer; Client.Deliver once it has queued its
// message on every connection.
func (z *zconn) flushQueued() {
	z.wmu.Lock()
	idle := len(z.pending) == 0 || z.flushing // the writing sender takes it
	z.wmu.Unlock()
	if !idle {
		_ = z.write(nil)
	}
}

func (z *zconn) encoder(frames [][]byte) func([]byte) []byte {
	return func(buf []byte) []byte {
		for i, f := range frames {
			var flags byte
			if i < len(frames)-1 {
				flags = zmtpFlagMore
			}
			buf = z.frame(buf, flags, f)
		}
		return buf
	}
}

// maxSpare is the largest write buffer kept for reuse.
const maxSpare = 64 << 10

func (z *zconn) write(encode func([]byte) []byte) error {
	z.wmu.Lock()
	if z.werr != nil {
		err := z.werr
		z.wmu.Unlock()
		return err
	}
	if encode != nil {
		z.pending = encode(z.pending)
	}
	if z.flushing {
		z.wmu.Unlock()
		return nil
	}
	z.flushing = true
	if encode != nil && z.active.Load() > 1 {
		// Other exchanges are in progress on this connection, so more
		// messages are likely on their way: let their goroutines run
		// first, so that their messages join this write instead of each
		// costing a system call. A connection carrying one exchange at a
		// time (an L1 round trip) never waits here.
		z.wmu.Unlock()
		runtime.Gosched()
		z.wmu.Lock()
	}
	for len(z.pending) > 0 && z.werr == nil {
		buf := z.pending
		z.pending = z.spare[:0]
		z.spare = nil
		z.wmu.Unlock()
		// A peer that stops reading fills its TCP window; the deadline
		// keeps that from holding every sender on this connection.
		_ = z.gc.Conn.SetWriteDeadline(time.Now().Add(z.writeTimeout))
		_, err := z.gc.Conn.Write(buf)
		z.wmu.Lock()
		if cap(buf) <= maxSpare {
			z.spare = buf[:0]
		}
		if err != nil {
			z.werr = err
			z.pending = nil
		}
	}
	z.flushing = false
	err := z.werr
	z.wmu.Unlock()
	if err != nil {
		_ = z.gc.Close()
	}
	return err
}

func appendFrame(buf []byte, flags byte, body []byte) []byte {
	if len(body) > 255 {
		buf = append(buf, flags|zmtpFlagLong)
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(body)))
	} else {
		buf = append(buf, flags, byte(len(body)))
	}
	return append(buf, body...)
}

// close closes the connection; a read in progress returns an error.
func (z *zconn) close() { _ = z.gc.Close() }
