package occi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

// errorStatus maps any error to the HTTP status it is reported with. It is
// the one place where that decision is made.
func errorStatus(err error) int {
	if s := model.StatusOf(err); s != 0 {
		return s
	}
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, store.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		// The client went away; the status is for the log only.
		return 499
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Status    int    `json:"status"`
	Message   string `json:"message"`
	Attribute string `json:"attribute,omitempty"`
}

// WriteError reports err to the client as the server's own errors are
// (see writeError): for middleware in front of the server, such as Basic
// authentication's 401 and 429.
func (s *Server) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, r, s.log, err)
}

// writeError reports err to the client in the rendering it asked for (see
// errorRendering): JSON in JSON renderings, one plain line in text ones.
// Server-side failures are logged and described generically, so no
// internal detail or stack trace ever reaches a client.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status := errorStatus(err)
	detail := errorDetail{Status: status, Message: err.Error()}
	var me *model.Error
	if errors.As(err, &me) {
		detail.Attribute = me.Attribute
	}
	switch {
	case status == http.StatusRequestEntityTooLarge && me == nil:
		detail.Message = bodyError(err).Error()
	case status == 499:
		return
	case status >= 500 && me == nil:
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		detail.Message = http.StatusText(status)
		var te *store.TimeoutError
		switch {
		case errors.As(err, &te):
			detail.Message = te.Error() + "; try again later"
		case errors.Is(err, store.ErrUnavailable):
			detail.Message = "the store is unavailable; try again later"
		}
	}
	rend, ctype := errorRendering(r)
	if rend.isJSON() {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		// Messages quote what the client sent; <, > and & stay as they are.
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(errorBody{Error: detail})
		return
	}
	// text/plain and text/occi: one line in the body (text/occi's body is
	// "OK" only on success).
	w.Header().Set("Content-Type", rend.contentType(ctype))
	w.WriteHeader(status)
	line := detail.Message
	if detail.Attribute != "" {
		line += " (attribute " + detail.Attribute + ")"
	}
	// A message quoting the client's input stays one line.
	line = strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(line)
	_, _ = w.Write([]byte(http.StatusText(status) + ": " + line + "\n"))
}
