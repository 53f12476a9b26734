package curve

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/nacl/box"
)

// Frame flags inside a MESSAGE box (libzmq's msg_t flags).
const (
	FlagMore    = 0x01
	FlagCommand = 0x02
)

// MessageOverhead is what a MESSAGE adds to a frame's payload: the command
// name, the short nonce, the flags byte and the box's authenticator.
const MessageOverhead = 8 + 8 + 1 + box.Overhead

// AppendMessage appends one ZMTP frame to dst: payload and its flags
// (FlagMore, FlagCommand) sealed in a MESSAGE command. Like libzmq, the
// frame itself carries no flags; the peer learns them from the box.
func (s *Session) AppendMessage(dst []byte, flags byte, payload []byte) []byte {
	n := s.nextNonce()
	dst = appendFrameHeader(dst, 0, MessageOverhead+len(payload))
	dst = append(dst, "\x07MESSAGE"...)
	dst = binary.BigEndian.AppendUint64(dst, n)
	s.plain = append(append(s.plain[:0], flags&(FlagMore|FlagCommand)), payload...)
	dst = box.SealAfterPrecomputation(dst, s.plain, shortNonce(s.sendPrefix, n), &s.shared)
	if cap(s.plain) > 64<<10 {
		s.plain = nil
	}
	return dst
}

// Open opens the body of a received MESSAGE frame, returning the flags and
// payload the peer sealed. Nonces must increase; a replayed, reordered or
// forged frame is an error, after which the connection must end.
func (s *Session) Open(body []byte) (flags byte, payload []byte, err error) {
	if len(body) < MessageOverhead || string(body[:8]) != "\x07MESSAGE" {
		return 0, nil, fmt.Errorf("%w: expected a MESSAGE command", ErrMalformed)
	}
	n := binary.BigEndian.Uint64(body[8:16])
	if n <= s.recvNonce {
		return 0, nil, fmt.Errorf("%w: MESSAGE nonce does not increase", ErrMalformed)
	}
	plain, ok := box.OpenAfterPrecomputation(make([]byte, 0, len(body)-16-box.Overhead), body[16:], shortNonce(s.recvPrefix, n), &s.shared)
	if !ok {
		return 0, nil, fmt.Errorf("%w: MESSAGE does not open", ErrMalformed)
	}
	s.recvNonce = n
	return plain[0] & (FlagMore | FlagCommand), plain[1:], nil
}
