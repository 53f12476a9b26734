package transport

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrorMimeType marks an error envelope: the server sends one instead of a
// reply when a request is malformed, the handler fails, or it is too busy.
// The body is JSON: {"error":{"code":"…","message":"…"}}.
const ErrorMimeType = "application/vnd.cmbs.error+json"

// Codes the server puts in error envelopes. A Handler may return a
// *RemoteError with a code of its own.
const (
	CodeMalformed  = "malformed_envelope" // the request did not parse
	CodeHandler    = "handler_error"      // the handler returned an error
	CodeTimeout    = "handler_timeout"    // the handler ran past its deadline
	CodeOverloaded = "overloaded"         // every handler slot was busy; retry later
	CodeInternal   = "internal_error"     // the handler panicked or returned an invalid reply
)

var (
	// ErrNoAnswer means the peer did not answer before the deadline: it is
	// down, unreachable, or too slow. The error also wraps the context's
	// error (context.DeadlineExceeded or context.Canceled).
	ErrNoAnswer = errors.New("peer did not answer")
	// ErrConnectionLost means the connection broke while a request was
	// outstanding; the request may or may not have been handled.
	ErrConnectionLost = errors.New("connection to peer lost")
	// ErrClosed is returned by a Client or Server that has been closed.
	ErrClosed = errors.New("transport closed")
	// ErrBadEndpoint is wrapped by errors about an endpoint string.
	ErrBadEndpoint = errors.New("bad endpoint")
)

// RemoteError is an error carried in an error envelope (ErrorMimeType).
// Client.Request returns one, together with the error envelope itself, when
// the server answered with an error; a Handler returns one to choose the
// code the requester sees.
type RemoteError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("remote error %s: %s", e.Code, e.Message)
}

type errorBody struct {
	Error *RemoteError `json:"error"`
}

// errorEnvelope builds the error reply for req.
func errorEnvelope(routing [][]byte, id, code, message string) Envelope {
	body, err := json.Marshal(errorBody{Error: &RemoteError{Code: code, Message: message}})
	if err != nil {
		// Marshalling two strings cannot fail; keep a valid body regardless.
		body = []byte(`{"error":{"code":"internal_error","message":""}}`)
	}
	return Envelope{Routing: routing, ID: id, MimeType: ErrorMimeType, Body: body}
}

// decodeRemoteError reads the body of an error envelope. A body that is not
// the expected JSON still yields an error, carrying the raw text.
func decodeRemoteError(body []byte) *RemoteError {
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil {
		return &RemoteError{Code: CodeInternal, Message: string(body)}
	}
	return eb.Error
}
