package transport

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Limits Parse enforces. They bound what one message may make the receiver
// hold; the connection-level limit (WithMaxMessageSize) defaults to slightly
// more than their sum so that a legal envelope always fits.
const (
	// MaxRoutingFrames is the most routing frames an envelope may carry.
	// One is added per ROUTER hop, so this bounds the socket-level path.
	MaxRoutingFrames = 32
	// MaxRoutingFrameSize is libzmq's limit for a routing identity.
	MaxRoutingFrameSize = 255
	// MaxIDSize bounds the envelope id (a message id or a pub/sub topic).
	MaxIDSize = 1024
	// MaxMimeTypeSize bounds the mimetype frame.
	MaxMimeTypeSize = 255
	// MaxBodySize bounds the body frame (16 MiB).
	MaxBodySize = 16 << 20
)

// ErrMalformedEnvelope is wrapped by every error Parse and Validate return.
var ErrMalformedEnvelope = errors.New("malformed envelope")

// Envelope is one dploy-framed ZeroMQ message:
//
//	[routing…, "", id, mimetype, body]   with routing frames
//	[id, mimetype, body]                 without
//
// Routing holds the socket-level return path (ROUTER identities and, for
// this package's client, a correlation frame); handlers normally leave it as
// received, and the server copies it onto their reply.
type Envelope struct {
	// Routing frames, outermost first; nil when the message had none.
	Routing [][]byte
	// ID correlates a reply with its request, or names a pub/sub topic.
	// It must be non-empty UTF-8.
	ID string
	// MimeType says how to read Body, e.g. "application/occi+json".
	MimeType string
	// Body is opaque bytes.
	Body []byte
}

// Parse reads an envelope from the frames of one ZeroMQ message. It accepts
// exactly two shapes: [id, mimetype, body], and [routing…, "", id, mimetype,
// body] where the routing part may be empty (so a 4-frame message must start
// with the empty delimiter). Anything else is an error wrapping
// ErrMalformedEnvelope that says what is wrong. dploy's parser guessed
// instead and silently dropped the routing identity of 4-frame messages.
//
// The envelope shares memory with frames; Parse copies nothing but id and
// mimetype.
func Parse(frames [][]byte) (Envelope, error) {
	n := len(frames)
	var env Envelope
	switch {
	case n < 3:
		return env, malformed("%d frames, need at least 3 (id, mimetype, body)", n)
	case n == 3:
		// The bare form: no routing, no delimiter.
	default:
		if len(frames[n-4]) != 0 {
			if n == 4 {
				return env, malformed("4 frames: expected an empty delimiter before id, mimetype, body")
			}
			return env, malformed("frame %d of %d must be the empty delimiter before id, mimetype, body", n-4, n)
		}
		if r := n - 4; r > 0 {
			env.Routing = frames[:r]
		}
	}
	env.ID = string(frames[n-3])
	env.MimeType = string(frames[n-2])
	env.Body = frames[n-1]
	if err := env.Validate(); err != nil {
		return Envelope{}, err
	}
	return env, nil
}

// Validate reports whether the envelope can be sent and parsed back: a
// non-empty UTF-8 id, a non-empty UTF-8 mimetype without control
// characters, non-empty routing frames, and every part within its limit.
func (e Envelope) Validate() error {
	if len(e.Routing) > MaxRoutingFrames {
		return malformed("%d routing frames, at most %d allowed", len(e.Routing), MaxRoutingFrames)
	}
	for i, r := range e.Routing {
		// An empty routing frame would be read back as the delimiter.
		if len(r) == 0 {
			return malformed("routing frame %d is empty", i)
		}
		if len(r) > MaxRoutingFrameSize {
			return malformed("routing frame %d is %d bytes, at most %d allowed", i, len(r), MaxRoutingFrameSize)
		}
	}
	switch {
	case e.ID == "":
		return malformed("empty id")
	case len(e.ID) > MaxIDSize:
		return malformed("id is %d bytes, at most %d allowed", len(e.ID), MaxIDSize)
	case !utf8.ValidString(e.ID):
		return malformed("id is not valid UTF-8")
	}
	switch {
	case e.MimeType == "":
		return malformed("empty mimetype")
	case len(e.MimeType) > MaxMimeTypeSize:
		return malformed("mimetype is %d bytes, at most %d allowed", len(e.MimeType), MaxMimeTypeSize)
	case !utf8.ValidString(e.MimeType):
		return malformed("mimetype is not valid UTF-8")
	}
	for _, r := range e.MimeType {
		if r < 0x20 || r == 0x7f {
			return malformed("mimetype contains control character %U", r)
		}
	}
	if len(e.Body) > MaxBodySize {
		return malformed("body is %d bytes, at most %d allowed", len(e.Body), MaxBodySize)
	}
	return nil
}

// Frames renders the envelope for sending: routing, the empty delimiter, id,
// mimetype and body, or just the last three when there is no routing. It
// does not validate; Parse(e.Frames()) returns e for every valid e.
func (e Envelope) Frames() [][]byte {
	if len(e.Routing) == 0 {
		return [][]byte{[]byte(e.ID), []byte(e.MimeType), e.Body}
	}
	frames := make([][]byte, 0, len(e.Routing)+4)
	frames = append(frames, e.Routing...)
	return append(frames, nil, []byte(e.ID), []byte(e.MimeType), e.Body)
}

// Reply returns an envelope with the same routing and id carrying mimeType
// and body, as dploy's response_envelope does.
func (e Envelope) Reply(mimeType string, body []byte) Envelope {
	return Envelope{Routing: e.Routing, ID: e.ID, MimeType: mimeType, Body: body}
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedEnvelope, fmt.Sprintf(format, args...))
}
