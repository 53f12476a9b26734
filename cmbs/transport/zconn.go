package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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

// handshake runs the ZMTP handshake on gc as a socket of type typ (a
// ROUTER is the side that accepted the connection), bounded by ctx and by
// timeout, with the CURVE mechanism mech or, when it is nil, NULL.
func handshake(ctx context.Context, gc *guardedConn, typ zmq4.SocketType, timeout, writeTimeout time.Duration, mech *curveMech) (*zconn, error) {
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
	return &zconn{gc: gc, writeTimeout: writeTimeout, sec: sec}, nil
}

// readMsg appends the next message's frames to frames (so that a caller
// can put its own first, with room for an envelope's). ZMTP commands are
// handled here (PING is answered) and not returned. It must not be called
// concurrently.
func (z *zconn) readMsg(frames [][]byte) ([][]byte, error) {
	start := len(frames)
	hdr := z.rhdr[:]
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
		body := make([]byte, size)
		if _, err := io.ReadFull(z.gc, body); err != nil {
			return nil, err
		}
		if z.sec != nil {
			var err error
			if flags, body, err = z.sec.open(body); err != nil {
				return nil, err
			}
		}
		if flags&zmtpFlagCommand != 0 {
			if err := z.command(body); err != nil {
				return nil, err
			}
			continue
		}
		if len(frames)-start == maxFramesPerMessage {
			return nil, errTooManyFrames
		}
		frames = append(frames, body)
		if flags&zmtpFlagMore == 0 {
			return frames, nil
		}
	}
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
	return z.write(func(buf []byte) []byte {
		for i, f := range frames {
			var flags byte
			if i < len(frames)-1 {
				flags = zmtpFlagMore
			}
			buf = z.frame(buf, flags, f)
		}
		return buf
	})
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
	z.pending = encode(z.pending)
	if z.flushing {
		z.wmu.Unlock()
		return nil
	}
	z.flushing = true
	if z.active.Load() > 1 {
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
