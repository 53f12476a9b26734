// Package httperr is the one place where an error becomes an HTTP status
// and the error document a client reads: the OCCI server uses it for every
// rendering, and the compatibility APIs mounted beside it (the Process
// Registry's and smartmob-agent's) answer their errors through it too.
package httperr

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

// ClientGone is the status an error gets when the client went away; it is
// for the log only, nothing is written.
const ClientGone = 499

// Status maps any error to the HTTP status it is reported with.
func Status(err error) int {
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
		return ClientGone
	}
	return http.StatusInternalServerError
}

// Detail is what a client is told about an error.
type Detail struct {
	Status    int    `json:"status"`
	Message   string `json:"message"`
	Attribute string `json:"attribute,omitempty"`
}

// Describe says what a client is told about err, and whether anything is
// to be written (not when the client went away). A server-side failure
// (5xx without a *model.Error) is logged and described generically, so no
// internal detail reaches a client. r, when not nil, names the request in
// the log.
func Describe(r *http.Request, log *slog.Logger, err error) (Detail, bool) {
	status := Status(err)
	if status == ClientGone {
		return Detail{}, false
	}
	d := Detail{Status: status, Message: err.Error()}
	var me *model.Error
	if errors.As(err, &me) {
		d.Attribute = me.Attribute
	}
	if status >= 500 && me == nil {
		if log == nil {
			log = slog.Default()
		}
		attrs := []any{"status", status, "err", err}
		if r != nil {
			attrs = append(attrs, "method", r.Method, "path", r.URL.Path)
		}
		log.Error("request failed", attrs...)
		d.Message = http.StatusText(status)
		var te *store.TimeoutError
		switch {
		case errors.As(err, &te):
			d.Message = te.Error() + "; try again later"
		case errors.Is(err, store.ErrUnavailable):
			d.Message = "the store is unavailable; try again later"
		}
	}
	return d, true
}

// WriteJSON answers err as {"error":{"status":…,"message":…,"attribute":…}}
// with its status (see Describe).
func WriteJSON(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if d, ok := Describe(r, log, err); ok {
		WriteDetail(w, d)
	}
}

// WriteDetail answers d as the error document, with its status.
func WriteDetail(w http.ResponseWriter, d Detail) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(d.Status)
	// Messages quote what the client sent; <, > and & stay as they are.
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Error Detail `json:"error"`
	}{d})
}
