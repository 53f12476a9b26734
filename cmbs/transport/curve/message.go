package curve

import (
	"encoding/binary"
	"fmt"
	"slices"

	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/poly1305"
	"golang.org/x/crypto/salsa20/salsa"
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
	s.messageKeys()
	dst = appendFrameHeader(dst, 0, MessageOverhead+len(payload))
	dst = append(dst, "\x07MESSAGE"...)
	dst = binary.BigEndian.AppendUint64(dst, n)
	s.plain = append(append(s.plain[:0], flags&(FlagMore|FlagCommand)), payload...)
	dst = sealMessage(dst, s.plain, n, &s.sendKey)
	if cap(s.plain) > 64<<10 {
		s.plain = nil
	}
	return dst
}

// Open opens the body of a received MESSAGE frame, returning the flags and
// payload the peer sealed. The payload is decrypted in place: it shares
// body's memory, whose bytes are overwritten. Nonces must increase; a
// replayed, reordered or forged frame is an error, after which the
// connection must end.
func (s *Session) Open(body []byte) (flags byte, payload []byte, err error) {
	if len(body) < MessageOverhead || string(body[:8]) != "\x07MESSAGE" {
		return 0, nil, fmt.Errorf("%w: expected a MESSAGE command", ErrMalformed)
	}
	n := binary.BigEndian.Uint64(body[8:16])
	if n <= s.recvNonce {
		return 0, nil, fmt.Errorf("%w: MESSAGE nonce does not increase", ErrMalformed)
	}
	s.messageKeys()
	plain, ok := openMessage(body[16:], n, &s.recvKey)
	if !ok {
		return 0, nil, fmt.Errorf("%w: MESSAGE does not open", ErrMalformed)
	}
	s.recvNonce = n
	return plain[0] & (FlagMore | FlagCommand), plain[1:], nil
}

// A MESSAGE box is NaCl's crypto_box with the precomputed key: XSalsa20
// and Poly1305 (secretbox) under a 24-byte nonce, the session's prefix
// for the direction and the 8-byte short nonce. XSalsa20 derives each
// box's Salsa20 key from the key and the nonce's first 16 bytes
// (HSalsa20), which for every MESSAGE of one direction are that prefix:
// the two keys are derived once per session here, and sealMessage and
// openMessage are secretbox's Seal and Open from there on (checked
// against box.SealAfterPrecomputation and OpenAfterPrecomputation by
// TestMessageBoxesMatchNaCl). HSalsa20 was about a third of a small
// frame's sealing.
func (s *Session) messageKeys() {
	if s.keyed {
		return
	}
	var prefix [16]byte
	copy(prefix[:], s.sendPrefix)
	salsa.HSalsa20(&s.sendKey, &prefix, &s.shared, &salsa.Sigma)
	copy(prefix[:], s.recvPrefix)
	salsa.HSalsa20(&s.recvKey, &prefix, &s.shared, &salsa.Sigma)
	s.keyed = true
}

// boxKeys returns Salsa20's counter for short nonce n and the first
// block of keystream, whose first 32 bytes are the Poly1305 key.
func boxKeys(n uint64, key *[32]byte) (counter [16]byte, first [64]byte) {
	binary.BigEndian.PutUint64(counter[:8], n)
	salsa.XORKeyStream(first[:], first[:], &counter, key)
	counter[8] = 1 // the message's own blocks
	return counter, first
}

// sealMessage appends the box of plain to dst: the tag, then the
// ciphertext.
func sealMessage(dst, plain []byte, n uint64, key *[32]byte) []byte {
	counter, first := boxKeys(n, key)
	start := len(dst)
	dst = slices.Grow(dst, box.Overhead+len(plain))[:start+box.Overhead+len(plain)]
	out := dst[start+box.Overhead:]
	k := min(32, len(plain))
	for i := range k {
		out[i] = first[32+i] ^ plain[i]
	}
	salsa.XORKeyStream(out[k:], plain[k:], &counter, key)
	var tag [poly1305.TagSize]byte
	polyKey := [32]byte(first[:32])
	poly1305.Sum(&tag, out, &polyKey)
	copy(dst[start:], tag[:])
	return dst
}

// openMessage checks and decrypts boxed (tag, then ciphertext) in place,
// returning the plaintext, which shares boxed's memory.
func openMessage(boxed []byte, n uint64, key *[32]byte) ([]byte, bool) {
	if len(boxed) < box.Overhead {
		return nil, false
	}
	counter, first := boxKeys(n, key)
	tag := [poly1305.TagSize]byte(boxed[:poly1305.TagSize])
	polyKey := [32]byte(first[:32])
	ct := boxed[box.Overhead:]
	if !poly1305.Verify(&tag, ct, &polyKey) {
		return nil, false
	}
	k := min(32, len(ct))
	for i := range k {
		ct[i] ^= first[32+i]
	}
	salsa.XORKeyStream(ct[k:], ct[k:], &counter, key)
	return ct, true
}
