package occi

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cmbs/cmbs/occi/model"
)

// Defaults for reading request bodies.
const (
	defaultBodyIdleTimeout = 10 * time.Second
	defaultBodyTimeout     = time.Minute
)

// limitBody bounds the request body: a declared Content-Length over the
// limit is refused before a byte is read, a body that grows past it is cut
// off, and reading it is bounded by deadlines on the connection (a pause
// longer than the idle timeout, or the whole body taking longer than the
// body timeout, ends the read with a timeout). It returns a non-nil error
// when the request must be refused at once.
func (s *Server) limitBody(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength > s.opts.MaxBodyBytes {
		// The client may already be sending it: tell it to stop, and close
		// the connection rather than read what follows.
		w.Header().Set("Connection", "close")
		return tooLarge(s.opts.MaxBodyBytes)
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	r.Body = &deadlineBody{
		ReadCloser: http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes),
		rc:         http.NewResponseController(w),
		idle:       s.opts.BodyIdleTimeout,
		end:        time.Now().Add(s.opts.BodyTimeout),
	}
	return nil
}

func tooLarge(limit int64) error {
	return model.Errorf(http.StatusRequestEntityTooLarge,
		"the request body is too large: this server's limit is %d bytes (cmbsd --max-body sets it)", limit)
}

// deadlineBody sets the connection's read deadline before each read of
// the body, and clears it once the body is read, so that it bounds reading
// the body and nothing after it.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	end  time.Time
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	dl := time.Now().Add(b.idle)
	if dl.After(b.end) {
		dl = b.end
	}
	// Not every ResponseWriter has a connection (httptest's recorder).
	supported := b.rc.SetReadDeadline(dl) == nil
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.done = true
		if supported {
			if errors.Is(err, io.EOF) {
				_ = b.rc.SetReadDeadline(time.Time{})
			} else {
				// The rest of a broken body is not worth reading: the
				// server's attempt to drain it for the next request fails
				// at once, and it closes the connection after the answer.
				_ = b.rc.SetReadDeadline(time.Unix(1, 0))
			}
		}
	}
	return n, err
}

// bodyError says what went wrong reading a request body, as the client's
// fault: 413 past the limit, 408 when the body stopped arriving, 400 for a
// malformed chunked encoding or a body cut short.
func bodyError(err error) error {
	var maxErr *http.MaxBytesError
	var netErr net.Error
	switch {
	case model.StatusOf(err) != 0:
		return err
	case errors.As(err, &maxErr):
		return tooLarge(maxErr.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return model.Errorf(http.StatusRequestTimeout, "the request body stopped arriving before it was complete")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return model.BadRequest("the request body ended before its declared length (or before the last chunk)")
	}
	return model.BadRequest("the request body could not be read: %v", err)
}
