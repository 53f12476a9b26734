// Package curve is CurveZMQ as ZMTP 3's CURVE security mechanism
// (rfc.zeromq.org 25/ZMTP-CURVE and 26/CURVEZMQ) on
// golang.org/x/crypto/nacl/box: long-term keys and their Z85 text form,
// the four-command handshake (HELLO, WELCOME, INITIATE, READY) for the
// client and the server side, and the MESSAGE boxes that carry every frame
// after it.
//
// The package is pure: it reads and writes ZMTP command frames on the
// io.Reader and io.Writer it is given, after the 64-byte greeting, which
// the caller exchanges. Every handshake frame is checked against the
// exact or largest size its command can have before its body is read, so
// a peer cannot make it allocate what it announces. A Session is what
// the handshake leaves: it seals outgoing frames and opens incoming ones,
// with the short nonces strictly increasing each way as libzmq requires.
// Its MESSAGE boxes are crypto_box's, computed with the Salsa20 key of
// each direction derived once (message.go).
package curve
