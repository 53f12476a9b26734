// Package requestlog writes one structured log/slog line per HTTP request
// (method, route pattern, path, status, bytes, duration, request id) and
// gives every request an id: the client's X-Request-Id when it is a
// reasonable token, else a fresh random one, echoed in the response's
// X-Request-Id and available to handlers through ID.
package requestlog

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"time"

	"github.com/cmbs/cmbs/internal/httprecord"
)

// Header is the request and response header carrying the request id.
const Header = "X-Request-Id"

// MaxIDLength bounds an accepted X-Request-Id; a longer one is replaced.
const MaxIDLength = 128

type idKey struct{}

// ID returns the request id Middleware gave the request of ctx, or "".
func ID(ctx context.Context) string {
	id, _ := ctx.Value(idKey{}).(string)
	return id
}

// validID reports whether a client's request id is kept: 1 to MaxIDLength
// characters of letters, digits and -_.:/+= (what UUIDs, trace ids and
// common load balancers' ids use). Anything else (control characters,
// spaces, quotes) could forge or break log lines.
func validID(id string) bool {
	if id == "" || len(id) > MaxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '+' || c == '=':
		default:
			return false
		}
	}
	return true
}

// Middleware gives every request an id and, once next has served it, logs
// one line at info on log. route names the request's route pattern (see
// occi.Server.Route). The line is skipped, and so is its cost, when log
// does not log info.
func Middleware(log *slog.Logger, route func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(Header)
		if !validID(id) {
			id = rand.Text()
		}
		w.Header().Set(Header, id)
		r = r.WithContext(context.WithValue(r.Context(), idKey{}, id))
		rec := httprecord.Wrap(w)
		// Deferred, so that an aborted response (a handler panicking with
		// http.ErrAbortHandler) is logged too.
		defer func() {
			if !log.Enabled(r.Context(), slog.LevelInfo) {
				return
			}
			status := rec.Status()
			if status == 0 {
				status = http.StatusOK
			}
			log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("method", r.Method),
				slog.String("route", route(r)),
				slog.String("path", r.URL.Path),
				slog.Int("status", status),
				slog.Int64("bytes", rec.Bytes()),
				slog.Duration("duration", time.Since(start)),
				slog.String("request_id", id),
				slog.String("remote", r.RemoteAddr),
			)
		}()
		next.ServeHTTP(rec, r)
	})
}
