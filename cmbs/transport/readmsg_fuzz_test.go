package transport

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// streamConn is a net.Conn reading a fixed byte stream and discarding
// writes (PONGs).
type streamConn struct {
	net.Conn // nil: methods not overridden are never called
	r        *bytes.Reader
}

func (c *streamConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// Whatever a peer sends after its handshake, readMsg returns messages
// within the size and frame limits or an error, never panics, and every
// byte of the read budget comes back.
func FuzzReadMsg(f *testing.F) {
	frame := func(flags byte, body []byte) []byte {
		if len(body) > 255 {
			return append(binary.BigEndian.AppendUint64([]byte{flags | zmtpFlagLong}, uint64(len(body))), body...)
		}
		return append([]byte{flags, byte(len(body))}, body...)
	}
	f.Add(append(append(frame(zmtpFlagMore, nil), frame(zmtpFlagMore, []byte("id"))...), frame(0, []byte("body"))...))
	f.Add(frame(zmtpFlagCommand, []byte("\x04PING\x00\x0actx")))
	f.Add(frame(0, bytes.Repeat([]byte("x"), 20<<10)))
	f.Add(append(frame(zmtpFlagMore, bytes.Repeat([]byte("y"), 17<<10)), frame(zmtpFlagCommand|zmtpFlagMore, []byte("\x04PING"))...))
	f.Add(binary.BigEndian.AppendUint64([]byte{zmtpFlagLong}, 1<<40))
	const maxMessage = 256 << 10
	f.Fuzz(func(t *testing.T, stream []byte) {
		budget := NewReadBudget(maxMessage)
		gc := newGuardedConn(&streamConn{r: bytes.NewReader(stream)}, maxMessage)
		gc.guard.greeting = 0
		z := &zconn{gc: gc, writeTimeout: time.Second, readLimits: readLimits{budget: budget}}
		for {
			frames, err := z.readMsg(nil)
			if err != nil {
				break // the stream's end, or a peer error: the connection would end
			}
			total := 0
			for _, fr := range frames {
				total += len(fr)
			}
			if len(frames) == 0 || len(frames) > maxFramesPerMessage || total > maxMessage {
				t.Fatalf("message of %d frames, %d bytes", len(frames), total)
			}
		}
		if n := budget.InUse(); n != 0 {
			t.Fatalf("%d bytes of the budget kept after the stream ended", n)
		}
	})
}
