package occi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

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

// writeError reports err to the client: JSON in JSON renderings, one plain
// line otherwise. Server-side failures are logged and described generically,
// so no internal detail or stack trace ever reaches a client.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status := errorStatus(err)
	detail := errorDetail{Status: status, Message: err.Error()}
	var me *model.Error
	if errors.As(err, &me) {
		detail.Attribute = me.Attribute
	}
	switch {
	case status == http.StatusRequestEntityTooLarge:
		detail.Message = "request body too large: " + err.Error()
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
	rend, _, nerr := negotiate(r, true)
	if nerr != nil || rend.isJSON() || rend == renderURIList {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(errorBody{Error: detail})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	line := detail.Message
	if detail.Attribute != "" {
		line += " (attribute " + detail.Attribute + ")"
	}
	_, _ = w.Write([]byte(http.StatusText(status) + ": " + line + "\n"))
}
