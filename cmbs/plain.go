package cmbs

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/internal/jsonscan"
)

// A plain delivery is a message on L2, L3.1 or L3.2 that is neither
// storable nor executable: its receiver does nothing with it but count it,
// answer, and tell an OnDelivery hook (see plainReceipt). Its receipt
// names the member and the layer only, the same for every such message,
// so the layer handler answers it without decoding the message into a
// map: plainFlags scans the body for what decides it, and the receipt is
// the one the member listing holds ready (members.receipts). Anything
// else, and any body the scan is unsure of, takes the full path, whose
// receipt is then the same.

// plainMessage reports whether body, a message's JSON description, is a
// CMBS message whose storable and executable flags are both given and
// false: an object whose kind, if present, is the message kind, whose id,
// if present, is a string, and whose attributes, attributes.cmbs and
// attributes.cmbs.message, where present, are objects (what decodeMessage
// checks). The whole body is checked to be valid JSON. A key of interest
// given twice, a flag given in another form, or anything else unusual
// answers false: the caller decodes the message fully.
//
// id is the message's id as given (nil when absent); an id with an escape
// answers false too.
func plainMessage(body []byte) (plain bool, id []byte) {
	s := jsonscan.Scanner{Data: body}
	var storable, executable int // 0 absent, 1 false, 2 anything else
	var seen [3]bool             // kind, id, attributes
	ok := object(&s, func(key []byte) bool {
		switch string(key) {
		case "kind":
			if seen[0] {
				return false
			}
			seen[0] = true
			v, ok := rawString(&s)
			return ok && string(v) == MessageKindID
		case "id":
			if seen[1] {
				return false
			}
			seen[1] = true
			var ok bool
			id, ok = rawString(&s)
			return ok
		case "attributes":
			if seen[2] {
				return false
			}
			seen[2] = true
			return plainAttributes(&s, &storable, &executable)
		}
		return s.Skip()
	})
	return ok && s.AtEnd() && storable == 1 && executable == 1, id
}

// plainAttributes scans a message's attributes object for
// cmbs.message.storable and executable (see plainMessage).
func plainAttributes(s *jsonscan.Scanner, storable, executable *int) bool {
	return onlyMember(s, "cmbs", func() bool {
		return onlyMember(s, "message", func() bool {
			return object(s, func(key []byte) bool {
				var flag *int
				switch string(key) {
				case "storable":
					flag = storable
				case "executable":
					flag = executable
				default:
					return s.Skip()
				}
				if *flag != 0 {
					return false
				}
				*flag = 2
				c, ok := s.Next()
				if !ok {
					return false
				}
				switch c {
				case '"':
					start := s.Pos
					raw, plain := rawString(s)
					if raw == nil {
						return false
					}
					v := string(raw)
					if !plain { // escaped: rare, unquoted as the full path does
						var err error
						if v, err = unquoteJSON(s.Data[start:s.Pos]); err != nil {
							return false
						}
					}
					// parseFlag's rule, without boxing v.
					if strings.ToLower(strings.TrimSpace(v)) == "false" {
						*flag = 1
					}
					return true
				case 'f':
					if !s.Literal("false") {
						return false
					}
					*flag = 1
					return true
				}
				return s.Skip()
			})
		})
	})
}

// onlyMember scans an object, skipping every member but name, whose value
// value consumes; name given twice answers false.
func onlyMember(s *jsonscan.Scanner, name string, value func() bool) bool {
	seen := false
	return object(s, func(key []byte) bool {
		if string(key) != name {
			return s.Skip()
		}
		if seen {
			return false
		}
		seen = true
		return value()
	})
}

// object scans an object at the scanner's position, calling member with
// each key; member consumes the value. Not an object, a key with an
// escape, or member returning false answers false.
func object(s *jsonscan.Scanner, member func(key []byte) bool) bool {
	if c, ok := s.Next(); !ok || c != '{' || !s.Enter() {
		return false
	}
	defer s.Leave()
	if s.Consume('}') {
		return true
	}
	for {
		key, ok := rawString(s)
		if !ok || !s.Consume(':') || !member(key) {
			return false
		}
		if more, ok := s.More('}'); !more {
			return ok
		}
	}
}

// rawString consumes a string value without escapes and returns its
// bytes, which are then its value as far as comparing it with ASCII goes
// (a byte that is not UTF-8 decodes to U+FFFD, which no ASCII string
// holds). A string with an escape answers false, as anything else does.
//
// The bytes are not nil when a string was consumed, escaped or not.
func rawString(s *jsonscan.Scanner) ([]byte, bool) {
	if c, ok := s.Next(); !ok || c != '"' {
		return nil, false
	}
	start := s.Pos
	if _, ok := s.String(false); !ok {
		return nil, false
	}
	raw := s.Data[start+1 : s.Pos-1 : s.Pos-1]
	return raw, bytes.IndexByte(raw, '\\') < 0
}

// unquoteJSON is the value of a JSON string, quotes included.
func unquoteJSON(quoted []byte) (string, error) {
	var v string
	err := json.Unmarshal(quoted, &v)
	return v, err
}

// plainReceipt answers req at once when it is a plain delivery to the
// local member at loc on layer l (see above): ok is false when it is not,
// or when the member listing does not hold the member. An OnDelivery hook
// is told about it with the message's id only, unless
// Options.DeliveryMessage says it needs the whole message, which the full
// path then decodes.
func (b *Broker) plainReceipt(snap *members, loc string, l Layer, req transport.Envelope) (transport.Envelope, bool) {
	hook := b.opts.OnDelivery
	if l == L1 || l == L4 || req.MimeType != MessageMimeType ||
		hook != nil && (b.opts.DeliveryMessage == nil || b.opts.DeliveryMessage()) {
		return transport.Envelope{}, false
	}
	r := snap.receipts[loc]
	if r == nil {
		return transport.Envelope{}, false
	}
	plain, id := plainMessage(req.Body)
	if !plain {
		return transport.Envelope{}, false
	}
	if hook != nil {
		msgID := string(id)
		if msgID == "" {
			msgID = req.ID // as decodeMessage takes it
		}
		hook(ReceivedMessage{Receipt: &Receipt{Member: snap.refs[loc], Layer: l}, Message: map[string]any{"id": msgID}})
	}
	return req.Reply(ReplyMimeType, r[layerIndex(l)]), true
}
