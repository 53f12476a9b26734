package providers

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/cmbs/cmbs/occi/model"
)

// StreamMediaType is the Content-Type of an action request whose body is
// not attributes but raw bytes for the action to consume as they arrive
// (POST <entity>?action=term). The server hands such a request to a
// Streamer; for any other provider it answers 415.
const StreamMediaType = "application/octet-stream"

// Streamer is a provider whose actions can take the request body as a raw
// byte stream and answer with one. The server has checked that the action
// is declared by the entity's kind or mixins. StreamAction reads st.Body
// as it arrives and writes its whole answer to st.Response: an error it
// returns before it has written anything is answered like any action
// error (JSON, with the error's status); once it has written, the error is
// only logged, so the provider must have told the client itself (HTTP
// trailers, say).
type Streamer interface {
	StreamAction(ctx context.Context, e *model.Entity, inv Invocation, st *Stream) error
}

// Stream is one streamed action request.
type Stream struct {
	// Body is the request body, read as it arrives. Reading past the
	// server's body limit, or after a pause longer than its idle timeout,
	// fails with a model error (413, 408); there is no total deadline.
	Body io.Reader
	// ContentLength is the body's declared length; -1 when unknown
	// (chunked).
	ContentLength int64
	// StopBody makes a Read of Body in progress, and every later one,
	// return an error at once: for a provider that stops consuming the
	// body while a goroutine still reads it.
	StopBody func()
	// Header is the request's header; Query its URL query parameters.
	Header http.Header
	Query  url.Values
	// Response takes the answer: headers (trailers too), status, body.
	// Reading and writing may interleave (full duplex); a Write that the
	// client does not accept within the server's idle timeout fails.
	// Writes are flushed to the client as they are made.
	Response http.ResponseWriter
	// Base is the URL prefix of absolute locations (scheme and host).
	Base string
}
