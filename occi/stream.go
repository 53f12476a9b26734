package occi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
)

// isStreamAction tells whether a POST is an action on an entity whose body
// is a raw byte stream (providers.StreamMediaType) rather than attributes.
func isStreamAction(r *http.Request) bool {
	if isCollectionPath(r.URL.Path) || !r.URL.Query().Has("action") {
		return false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == providers.StreamMediaType
}

// post serves POST: a streamed action goes to its provider with the body
// and the response writer; anything else is pathPost.
func (s *Server) post(w http.ResponseWriter, r *http.Request) {
	if isStreamAction(r) {
		s.streamAction(w, r)
		return
	}
	s.handle(s.pathPost)(w, r)
}

// streamAction hands the request to the entity's provider as a
// providers.Stream. The body is read without the server's total body
// deadline (the run it feeds bounds it) but with its idle timeout and size
// limit; every write of the answer gets the idle timeout as its deadline,
// replacing the server's total write timeout, so that a client that stops
// reading is cut off while one that keeps up is not.
func (s *Server) streamAction(w http.ResponseWriter, r *http.Request) {
	term := r.URL.Query().Get("action")
	if term == "" {
		writeError(w, r, s.log, model.BadRequest("?action= needs an action term"))
		return
	}
	// The connection is not reused after a streamed action, whatever the
	// answer: the body may be left unread, and the deadlines set below would
	// outlive the request on a server without a write timeout. (Reusing it
	// in full-duplex mode after an early answer also races net/http's
	// draining of the body with its next read.)
	w.Header().Set("Connection", "close")
	rc := http.NewResponseController(w)
	// Reading the body while answering: without it, net/http reads the
	// whole body before the first byte of the answer goes out.
	_ = rc.EnableFullDuplex()
	body := &streamBody{rc: rc, idle: s.opts.BodyIdleTimeout, r: http.NoBody}
	if db, ok := r.Body.(*deadlineBody); ok {
		body.r = db.ReadCloser // the size limit, without the total deadline
	} else if r.Body != nil {
		body.r = r.Body
	}
	out := &streamResponse{ResponseWriter: w, rc: rc, idle: s.opts.BodyIdleTimeout}
	st := &providers.Stream{
		Body: body, ContentLength: r.ContentLength, StopBody: body.stop,
		Header: r.Header, Query: r.URL.Query(), Response: out, Base: s.base(r),
	}
	err := s.entities.TriggerStream(r.Context(), r.URL.Path, term, st)
	body.stop() // nothing reads it after the action: the connection is not reused unless it was read whole
	switch {
	case err == nil:
	case !out.started:
		writeError(w, r, s.log, err)
	default:
		s.log.Warn("streamed action failed after its answer started", "path", r.URL.Path, "action", term, "err", err)
	}
}

// streamBody is a request body read as it arrives: each read gets the idle
// timeout as its deadline, errors are the client's (bodyError), and stop
// ends a read in progress.
type streamBody struct {
	rc   *http.ResponseController
	idle time.Duration
	r    io.Reader

	mu      sync.Mutex
	stopped bool
	done    bool // read to its end (or failed)
}

var errBodyStopped = errors.New("the request body is no longer read")

func (b *streamBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return 0, errBodyStopped
	}
	if b.done {
		b.mu.Unlock()
		return 0, io.EOF
	}
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	b.mu.Unlock()
	n, err := b.r.Read(p)
	if err != nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.done = true
		if b.stopped {
			return n, errBodyStopped
		}
		if errors.Is(err, io.EOF) {
			_ = b.rc.SetReadDeadline(time.Time{})
			return n, io.EOF
		}
		// The rest of a broken body is not worth reading (see deadlineBody).
		_ = b.rc.SetReadDeadline(time.Unix(1, 0))
		return n, bodyError(err)
	}
	return n, nil
}

// stop makes a read in progress return and every later one fail, unless
// the body was read to its end.
func (b *streamBody) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped || b.done {
		return
	}
	b.stopped = true
	_ = b.rc.SetReadDeadline(time.Unix(1, 0))
}

// streamResponse is the answer of a streamed action: each Write has the
// idle timeout as its deadline and is flushed; started tells whether the
// answer has begun.
type streamResponse struct {
	http.ResponseWriter
	rc      *http.ResponseController
	idle    time.Duration
	started bool
}

func (w *streamResponse) WriteHeader(code int) {
	if code >= 200 {
		w.started = true
	}
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
	w.ResponseWriter.WriteHeader(code)
}

func (w *streamResponse) Write(p []byte) (int, error) {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
	n, err := w.ResponseWriter.Write(p)
	if err == nil {
		err = w.rc.Flush()
	}
	return n, err
}

// Flush sends what is buffered to the client.
func (w *streamResponse) Flush() {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *streamResponse) Unwrap() http.ResponseWriter { return w.ResponseWriter }
