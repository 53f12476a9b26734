package curve

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ZMTP 3 frame flags.
const (
	zmtpMore    = 0x01
	zmtpLong    = 0x02
	zmtpCommand = 0x04
)

// ErrMalformed is returned (wrapped) for a handshake or MESSAGE frame that
// does not have its command's shape, size or cryptographic seal.
var ErrMalformed = errors.New("curve: malformed frame")

// PeerError is the reason in a ZMTP ERROR command the peer sent instead of
// the next handshake command (libzmq sends one when it refuses a client).
type PeerError struct{ Reason string }

func (e *PeerError) Error() string { return "curve: peer refused the handshake: " + e.Reason }

// maxErrorCommand is the largest ERROR command: its name and a reason of up
// to 255 bytes.
const maxErrorCommand = 1 + 5 + 1 + 255

// readCommand reads one ZMTP command frame named name whose body has at
// least lo and at most hi bytes, checked before the body is allocated.
// An ERROR command in its place becomes a *PeerError.
func readCommand(r io.Reader, name string, lo, hi int) ([]byte, error) {
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		return nil, err
	}
	flags := hdr[0]
	if flags&zmtpCommand == 0 || flags&zmtpMore != 0 || flags&^(zmtpCommand|zmtpLong) != 0 {
		return nil, fmt.Errorf("%w: expected the %s command, got frame flags %#x", ErrMalformed, name, flags)
	}
	size := uint64(hdr[1])
	if flags&zmtpLong != 0 {
		if _, err := io.ReadFull(r, hdr[2:9]); err != nil {
			return nil, err
		}
		size = binary.BigEndian.Uint64(hdr[1:9])
	}
	limit := uint64(max(hi, maxErrorCommand))
	if size > limit {
		return nil, fmt.Errorf("%w: %d-byte command where %s has at most %d", ErrMalformed, size, name, hi)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	if len(body) >= 6 && string(body[:6]) == "\x05ERROR" {
		reason := ""
		if len(body) > 6 && int(body[6]) <= len(body)-7 {
			reason = string(body[7 : 7+int(body[6])])
		}
		return nil, &PeerError{Reason: reason}
	}
	prefix := string(rune(len(name))) + name
	if len(body) < len(prefix) || string(body[:len(prefix)]) != prefix {
		return nil, fmt.Errorf("%w: expected the %s command", ErrMalformed, name)
	}
	if len(body) < lo || len(body) > hi {
		return nil, fmt.Errorf("%w: %d-byte %s, want %d to %d", ErrMalformed, len(body), name, lo, hi)
	}
	return body, nil
}

// appendFrameHeader appends a ZMTP frame header for a body of size bytes.
func appendFrameHeader(dst []byte, flags byte, size int) []byte {
	if size > 255 {
		dst = append(dst, flags|zmtpLong)
		return binary.BigEndian.AppendUint64(dst, uint64(size))
	}
	return append(dst, flags, byte(size))
}

// writeCommand writes body as one ZMTP command frame.
func writeCommand(w io.Writer, body []byte) error {
	buf := appendFrameHeader(make([]byte, 0, 9+len(body)), zmtpCommand, len(body))
	_, err := w.Write(append(buf, body...))
	return err
}

// ErrorCommand is a ZMTP ERROR command body with reason (cut to 255 bytes).
func ErrorCommand(reason string) []byte {
	if len(reason) > 255 {
		reason = reason[:255]
	}
	return append([]byte{5, 'E', 'R', 'R', 'O', 'R', byte(len(reason))}, reason...)
}

// Metadata is the ZMTP properties a peer sends in INITIATE or READY
// (Socket-Type, Identity…).
type Metadata map[string]string

// AppendMetadata encodes properties as ZMTP metadata, in the given order.
func AppendMetadata(dst []byte, props ...[2]string) []byte {
	for _, p := range props {
		dst = append(dst, byte(len(p[0])))
		dst = append(dst, p[0]...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(p[1])))
		dst = append(dst, p[1]...)
	}
	return dst
}

// ParseMetadata decodes ZMTP metadata.
func ParseMetadata(b []byte) (Metadata, error) {
	md := make(Metadata)
	for len(b) > 0 {
		n := int(b[0])
		if n == 0 || len(b) < 1+n+4 {
			return nil, fmt.Errorf("%w: metadata property", ErrMalformed)
		}
		name := string(b[1 : 1+n])
		b = b[1+n:]
		vlen := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(vlen) > uint64(len(b)) {
			return nil, fmt.Errorf("%w: metadata value of %q", ErrMalformed, name)
		}
		md[name] = string(b[:vlen])
		b = b[vlen:]
	}
	return md, nil
}
