package curve

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
)

// Command sizes (rfc 26/CURVEZMQ), names included.
const (
	helloSize       = 200 // name 6, version 2, padding 72, C' 32, nonce 8, box 80
	welcomeSize     = 168 // name 8, nonce 16, box 144
	initiateMinSize = 257 // name 9, cookie 96, nonce 8, box 144 (+ metadata)
	readyMinSize    = 30  // name 6, nonce 8, box 16 (+ metadata)
	// MaxMetadata bounds the metadata of INITIATE and READY; ZMTP's own
	// properties (Socket-Type, Identity of up to 255 bytes) fit easily.
	MaxMetadata = 4096
)

// ErrUnauthorized is returned by Server when the client's long-term key is
// not one it accepts.
var ErrUnauthorized = errors.New("curve: client key not authorised")

// ServerConfig is the server side of CURVE: its long-term key pair and
// which clients it accepts. It is safe for concurrent handshakes and
// counts the ones it refused.
type ServerConfig struct {
	Keys KeyPair
	// Authorize says whether a client's long-term public key is accepted;
	// nil accepts any client that completes the handshake (encryption
	// without authentication).
	Authorize func(client Key) bool

	refused atomic.Uint64
}

// Refused counts handshakes this configuration refused: unauthorised
// keys, malformed or failed handshakes, and peers without CURVE (counted
// by the caller through CountRefused).
func (c *ServerConfig) Refused() uint64 { return c.refused.Load() }

// CountRefused counts a connection refused before the CURVE handshake
// (e.g. a NULL client).
func (c *ServerConfig) CountRefused() { c.refused.Add(1) }

// Session is an established CURVE connection: it seals outgoing frames
// into MESSAGE commands and opens incoming ones. Seal and Open may run at
// the same time, but each must not be called concurrently with itself.
type Session struct {
	// PeerKey is the peer's long-term public key (the client's, on the
	// server side; the server's, on the client side).
	PeerKey Key
	// PeerMetadata is what the peer sent in INITIATE or READY.
	PeerMetadata Metadata

	shared     [32]byte // Precompute(peer transient, own transient secret)
	sendPrefix string
	recvPrefix string
	sendNonce  uint64   // the last short nonce used
	sendKey    [32]byte // MESSAGE boxes' Salsa20 keys (messageKeys)
	recvKey    [32]byte
	keyed      bool
	recvNonce  uint64 // the last short nonce seen
	plain      []byte // Seal's plaintext buffer, reused
}

func (s *Session) nextNonce() uint64 {
	s.sendNonce++
	return s.sendNonce
}

func shortNonce(prefix string, n uint64) *[24]byte {
	var nonce [24]byte
	copy(nonce[:], prefix)
	binary.BigEndian.PutUint64(nonce[16:], n)
	return &nonce
}

func longNonce(prefix string, random []byte) *[24]byte {
	var nonce [24]byte
	copy(nonce[:], prefix)
	copy(nonce[8:], random)
	return &nonce
}

// Client runs the client side of the handshake on r and w, after the
// greeting: HELLO, WELCOME, INITIATE (with metadata), READY. serverKey is
// the long-term key the server must prove it holds.
func Client(r io.Reader, w io.Writer, keys KeyPair, serverKey Key, metadata []byte) (*Session, error) {
	if len(metadata) > MaxMetadata {
		return nil, fmt.Errorf("curve: %d bytes of metadata, limit %d", len(metadata), MaxMetadata)
	}
	eph, err := GenerateKeyPair(nil)
	if err != nil {
		return nil, err
	}
	s := &Session{PeerKey: serverKey, sendPrefix: "CurveZMQMESSAGEC", recvPrefix: "CurveZMQMESSAGES"}
	S := [32]byte(serverKey)
	cs := [32]byte(eph.Secret)

	// HELLO: Box[64 zero bytes](C'->S) proves C' to a server holding s.
	n := s.nextNonce()
	hello := make([]byte, 0, helloSize)
	hello = append(hello, "\x05HELLO\x01\x00"...)
	hello = append(hello, make([]byte, 72)...)
	hello = append(hello, eph.Public[:]...)
	hello = binary.BigEndian.AppendUint64(hello, n)
	hello = box.Seal(hello, make([]byte, 64), shortNonce("CurveZMQHELLO---", n), &S, &cs)
	if err := writeCommand(w, hello); err != nil {
		return nil, err
	}

	// WELCOME: Box[S' + cookie](S->C').
	welcome, err := readCommand(r, "WELCOME", welcomeSize, welcomeSize)
	if err != nil {
		return nil, err
	}
	plain, ok := box.Open(nil, welcome[24:], longNonce("WELCOME-", welcome[8:24]), &S, &cs)
	if !ok {
		return nil, fmt.Errorf("%w: WELCOME does not open with the server key %s (wrong server key?)", ErrMalformed, serverKey)
	}
	serverEph := [32]byte(plain[:32])
	cookie := plain[32:128]
	box.Precompute(&s.shared, &serverEph, &cs)

	// INITIATE: Box[C + vouch + metadata](C'->S'), vouch = Box[C' + S](C->S').
	var vn [16]byte
	if _, err := rand.Read(vn[:]); err != nil {
		return nil, err
	}
	ls := [32]byte(keys.Secret)
	vouch := box.Seal(vn[:], append(eph.Public[:], S[:]...), longNonce("VOUCH---", vn[:]), &serverEph, &ls)
	inner := make([]byte, 0, 128+len(metadata))
	inner = append(inner, keys.Public[:]...)
	inner = append(inner, vouch...)
	inner = append(inner, metadata...)
	n = s.nextNonce()
	initiate := make([]byte, 0, initiateMinSize+len(metadata))
	initiate = append(initiate, "\x08INITIATE"...)
	initiate = append(initiate, cookie...)
	initiate = binary.BigEndian.AppendUint64(initiate, n)
	initiate = box.SealAfterPrecomputation(initiate, inner, shortNonce("CurveZMQINITIATE", n), &s.shared)
	if err := writeCommand(w, initiate); err != nil {
		return nil, err
	}

	// READY: Box[metadata](S'->C').
	ready, err := readCommand(r, "READY", readyMinSize, readyMinSize+MaxMetadata)
	if err != nil {
		return nil, err
	}
	rn := binary.BigEndian.Uint64(ready[6:14])
	md, ok := box.OpenAfterPrecomputation(nil, ready[14:], shortNonce("CurveZMQREADY---", rn), &s.shared)
	if !ok {
		return nil, fmt.Errorf("%w: READY does not open", ErrMalformed)
	}
	s.recvNonce = rn
	if s.PeerMetadata, err = ParseMetadata(md); err != nil {
		return nil, err
	}
	return s, nil
}

// Server runs the server side of the handshake on r and w, after the
// greeting. metadata is sent in READY; the client's is in the Session. A
// client whose key cfg does not accept gets an ERROR command and
// ErrUnauthorized is returned. Every refusal is counted in cfg.
func Server(r io.Reader, w io.Writer, cfg *ServerConfig, metadata []byte) (*Session, error) {
	s, err := server(r, w, cfg, metadata)
	if err != nil {
		cfg.refused.Add(1)
	}
	return s, err
}

func server(r io.Reader, w io.Writer, cfg *ServerConfig, metadata []byte) (*Session, error) {
	if len(metadata) > MaxMetadata {
		return nil, fmt.Errorf("curve: %d bytes of metadata, limit %d", len(metadata), MaxMetadata)
	}
	s := &Session{sendPrefix: "CurveZMQMESSAGES", recvPrefix: "CurveZMQMESSAGEC"}
	ls := [32]byte(cfg.Keys.Secret)

	// HELLO.
	hello, err := readCommand(r, "HELLO", helloSize, helloSize)
	if err != nil {
		return nil, err
	}
	if hello[6] != 1 || hello[7] != 0 {
		return nil, fmt.Errorf("%w: CurveZMQ version %d.%d, want 1.0", ErrMalformed, hello[6], hello[7])
	}
	clientEph := [32]byte(hello[80:112])
	hn := binary.BigEndian.Uint64(hello[112:120])
	sig, ok := box.Open(nil, hello[120:200], shortNonce("CurveZMQHELLO---", hn), &clientEph, &ls)
	if !ok || subtle.ConstantTimeCompare(sig, make([]byte, 64)) != 1 {
		return nil, fmt.Errorf("%w: HELLO does not open with this server's key (the client expects another server key)", ErrMalformed)
	}
	s.recvNonce = hn

	// WELCOME, with a cookie only this connection can open; the handshake
	// runs on one connection, so the cookie key lives as long as it.
	eph, err := GenerateKeyPair(nil)
	if err != nil {
		return nil, err
	}
	var random [16 + 16 + 32]byte // welcome nonce, cookie nonce, cookie key
	if _, err := rand.Read(random[:]); err != nil {
		return nil, err
	}
	cookieKey := [32]byte(random[32:])
	cookie := secretbox.Seal(append([]byte(nil), random[16:32]...), append(clientEph[:], eph.Secret[:]...),
		longNonce("COOKIE--", random[16:32]), &cookieKey)
	welcome := make([]byte, 0, welcomeSize)
	welcome = append(welcome, "\x07WELCOME"...)
	welcome = append(welcome, random[:16]...)
	welcome = box.Seal(welcome, append(eph.Public[:], cookie...), longNonce("WELCOME-", random[:16]), &clientEph, &ls)
	if err := writeCommand(w, welcome); err != nil {
		return nil, err
	}
	es := [32]byte(eph.Secret)
	box.Precompute(&s.shared, &clientEph, &es)

	// INITIATE.
	initiate, err := readCommand(r, "INITIATE", initiateMinSize, initiateMinSize+MaxMetadata)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(initiate[9:105], cookie) != 1 {
		return nil, fmt.Errorf("%w: INITIATE carries another cookie", ErrMalformed)
	}
	in := binary.BigEndian.Uint64(initiate[105:113])
	if in <= s.recvNonce {
		return nil, fmt.Errorf("%w: INITIATE nonce does not increase", ErrMalformed)
	}
	inner, ok := box.OpenAfterPrecomputation(nil, initiate[113:], shortNonce("CurveZMQINITIATE", in), &s.shared)
	if !ok {
		return nil, fmt.Errorf("%w: INITIATE does not open", ErrMalformed)
	}
	s.recvNonce = in
	clientKey := [32]byte(inner[:32])
	vouch, ok := box.Open(nil, inner[48:128], longNonce("VOUCH---", inner[32:48]), &clientKey, &es)
	if !ok || subtle.ConstantTimeCompare(vouch[:32], clientEph[:]) != 1 ||
		subtle.ConstantTimeCompare(vouch[32:64], cfg.Keys.Public[:]) != 1 {
		return nil, fmt.Errorf("%w: the client's vouch does not hold", ErrMalformed)
	}
	s.PeerKey = clientKey
	if s.PeerMetadata, err = ParseMetadata(inner[128:]); err != nil {
		return nil, err
	}
	if cfg.Authorize != nil && !cfg.Authorize(s.PeerKey) {
		_ = writeCommand(w, ErrorCommand("client key not authorised"))
		return nil, fmt.Errorf("%w: %s", ErrUnauthorized, s.PeerKey)
	}

	// READY.
	n := s.nextNonce()
	ready := make([]byte, 0, readyMinSize+len(metadata))
	ready = append(ready, "\x05READY"...)
	ready = binary.BigEndian.AppendUint64(ready, n)
	ready = box.SealAfterPrecomputation(ready, metadata, shortNonce("CurveZMQREADY---", n), &s.shared)
	if err := writeCommand(w, ready); err != nil {
		return nil, err
	}
	return s, nil
}
