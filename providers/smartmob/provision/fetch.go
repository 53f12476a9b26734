package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	neturl "net/url"
	"strings"
	"time"
)

// Default caps for a Fetcher whose fields are zero.
const (
	DefaultFetchTimeout  = 60 * time.Second
	DefaultFetchMaxBytes = 256 << 20
)

// Fetcher downloads app archives. The zero value is ready to use.
type Fetcher struct {
	Client   *http.Client  // nil: a default client (follows redirects)
	Timeout  time.Duration // whole download; 0: 60 s
	MaxBytes int64         // 0: 256 MiB
}

// Fetch GETs url into w, sending X-Request-Id: requestID when non-empty. Non-2xx, a text/* or
// HTML content type (SA-7: "200 with Content-Type: text/plain" is a download failure), over
// MaxBytes, or the timeout → an error wrapping ErrDownload that names the cause. It returns the
// number of bytes written to w, never more than MaxBytes. Redirects are followed (by the default
// client: up to 10), keeping X-Request-Id. Error texts omit the URL's user info and query.
func (f *Fetcher) Fetch(ctx context.Context, url, requestID string, w io.Writer) (int64, error) {
	timeout, maxBytes, client := DefaultFetchTimeout, int64(DefaultFetchMaxBytes), http.DefaultClient
	if f != nil {
		if f.Timeout > 0 {
			timeout = f.Timeout
		}
		if f.MaxBytes > 0 {
			maxBytes = f.MaxBytes
		}
		if f.Client != nil {
			client = f.Client
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("%w: bad source URL: %v", ErrDownload, err)
	}
	if requestID != "" {
		req.Header.Set("X-Request-Id", requestID)
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *neturl.Error // its text holds the whole URL; name the redacted one instead
		if errors.As(err, &ue) {
			err = fmt.Errorf("GET %s: %w", redact(url), ue.Err)
		}
		return 0, downloadErr(ctx, timeout, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 0, fmt.Errorf("%w: GET %s: HTTP %s", ErrDownload, redact(url), resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		mt, _, perr := mime.ParseMediaType(ct)
		if perr != nil {
			mt = strings.ToLower(strings.TrimSpace(ct))
		}
		if strings.HasPrefix(mt, "text/") || strings.Contains(mt, "html") {
			return 0, fmt.Errorf("%w: GET %s: content type %q is not an archive", ErrDownload, redact(url), ct)
		}
	}
	if resp.ContentLength > maxBytes {
		return 0, fmt.Errorf("%w: GET %s: %d bytes announced, over the %d-byte cap", ErrDownload, redact(url), resp.ContentLength, maxBytes)
	}
	n, err := io.Copy(markWrites{w}, io.LimitReader(resp.Body, maxBytes))
	if err == nil && n == maxBytes { // at the cap: one more byte means over it
		var one [1]byte
		if k, rerr := io.ReadFull(resp.Body, one[:]); k > 0 {
			return n, fmt.Errorf("%w: GET %s: body over the %d-byte cap", ErrDownload, redact(url), maxBytes)
		} else if !errors.Is(rerr, io.EOF) {
			err = rerr
		}
	}
	if err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return n, fmt.Errorf("%w: writing the archive: %v", ErrDownload, we.err)
		}
		return n, downloadErr(ctx, timeout, err)
	}
	return n, nil
}

// writeError marks an error from the destination writer, so that it is not mistaken for a
// network failure.
type writeError struct{ err error }

type markWrites struct{ w io.Writer }

func (m markWrites) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

func (e *writeError) Error() string { return e.err.Error() }

func downloadErr(ctx context.Context, timeout time.Duration, err error) error {
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: timed out after %s: %w", ErrDownload, timeout, ctx.Err())
		}
		return fmt.Errorf("%w: %w", ErrDownload, ctx.Err())
	}
	return fmt.Errorf("%w: %v", ErrDownload, err)
}

// redact drops a URL's user info and query from error texts (they may carry tokens).
func redact(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if at := strings.Index(rest, "@"); at >= 0 && !strings.Contains(rest[:at], "/") {
			u = u[:i+3] + rest[at+1:]
		}
	}
	return u
}
