package transport

// ErrorReplyFunc renders the reply a Server sends when it cannot answer
// with its handler's: a malformed request (CodeMalformed), no free handler
// slot (CodeOverloaded), or a handler that failed, timed out or panicked.
// id is the request's id, or for a malformed request the frame where the
// id would be when it can be one, else "". The Server sends [routing…, "",
// id, mimeType, body].
type ErrorReplyFunc func(id string, e *RemoteError) (mimeType string, body []byte)

// WithErrorReply (Server) replaces the error envelope (ErrorMimeType,
// {"error":{"code","message"}}) by what fn renders, for a protocol that
// has its own error replies (the bus's rpc socket answers an rpc_reply).
func WithErrorReply(fn ErrorReplyFunc) Option {
	return func(o *options) { o.errorReply = fn }
}

// errorReply is the reply to a request the handler does not answer.
func (s *Server) errorReply(routing [][]byte, id, code, message string) Envelope {
	if fn := s.opts.errorReply; fn != nil {
		mt, body := fn(id, &RemoteError{Code: code, Message: message})
		return Envelope{Routing: routing, ID: id, MimeType: mt, Body: body}
	}
	if id == "" {
		id = malformedID
	}
	return errorEnvelope(routing, id, code, message)
}
