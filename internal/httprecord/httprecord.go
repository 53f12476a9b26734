// Package httprecord wraps an http.ResponseWriter to remember the status
// code and body size of the response written through it, so that request
// logging and request metrics share one wrapper per request.
package httprecord

import "net/http"

// Recorder is a ResponseWriter that knows the status and size of the
// response written through it, so that request logging and metrics share
// one wrapper.
type Recorder interface {
	http.ResponseWriter
	// Status is the status code written, 0 while none is.
	Status() int
	// Bytes is the number of body bytes written.
	Bytes() int64
}

// Wrap wraps w (unless it already is a Recorder).
func Wrap(w http.ResponseWriter) Recorder {
	if sr, ok := w.(Recorder); ok {
		return sr
	}
	return &statusWriter{ResponseWriter: w}
}

// statusWriter records the status and size. Unwrap lets
// http.ResponseController reach the underlying writer (Flush, deadlines).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Status() int  { return w.status }
func (w *statusWriter) Bytes() int64 { return w.bytes }
