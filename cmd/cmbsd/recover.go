package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
)

// internalErrorBody is the only thing a client learns about a panic.
const internalErrorBody = `{"error":{"status":500,"message":"internal error"}}` + "\n"

// recoverPanics turns a panic in next into a logged error and a JSON 500, so
// one bad request neither kills the connection silently nor leaks a stack
// trace to the client. If the response had already started, the 500 cannot
// be sent any more; the connection is aborted instead, so the client sees a
// broken response rather than a truncated one that looks complete.
func recoverPanics(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &trackingWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v) // a deliberate abort: net/http handles it quietly
			}
			logger.Error("panic serving request",
				"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if tw.wroteHeader {
				panic(http.ErrAbortHandler)
			}
			h := w.Header()
			for k := range h {
				delete(h, k) // drop whatever the handler had prepared
			}
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(internalErrorBody))
		}()
		next.ServeHTTP(tw, r)
	})
}

// trackingWriter records whether the response has started. Unwrap lets
// http.ResponseController reach the underlying writer (Flush, deadlines).
type trackingWriter struct {
	http.ResponseWriter
	wroteHeader bool
}

func (w *trackingWriter) WriteHeader(code int) {
	// 1xx responses are informational; the real header is still to come.
	if code >= 200 {
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *trackingWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

func (w *trackingWriter) Flush() {
	w.wroteHeader = true
	_ = http.NewResponseController(w.ResponseWriter).Flush() // nothing to tell the handler: Flush has no error result
}

func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
