package httperr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

func TestStatus(t *testing.T) {
	for err, want := range map[error]int{
		model.BadRequest("x"):                          400,
		fmt.Errorf("get: %w", store.ErrNotFound):       404,
		fmt.Errorf("put: %w", store.ErrConflict):       409,
		fmt.Errorf("find: %w", store.ErrInvalid):       400,
		fmt.Errorf("put: %w", store.ErrUnavailable):    503,
		fmt.Errorf("x: %w", context.DeadlineExceeded):  504,
		fmt.Errorf("x: %w", context.Canceled):          ClientGone,
		&http.MaxBytesError{Limit: 10}:                 413,
		errors.New("something broke"):                  500,
		model.Errorf(http.StatusTeapot, "a model one"): 418,
	} {
		if got := Status(err); got != want {
			t.Errorf("Status(%v) = %d, want %d", err, got, want)
		}
	}
}

// A client reads the model error's message and attribute; a server-side
// failure is logged and described generically; a client gone gets nothing.
func TestWriteJSON(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	read := func(err error) (int, Detail, string) {
		w := httptest.NewRecorder()
		WriteJSON(w, httptest.NewRequest("POST", "/x", nil), log, err)
		var body struct{ Error Detail }
		if w.Body.Len() > 0 {
			if e := json.Unmarshal(w.Body.Bytes(), &body); e != nil {
				t.Fatalf("%v: body %q: %v", err, w.Body, e)
			}
		}
		return w.Code, body.Error, w.Body.String()
	}
	code, d, raw := read(model.AttributeError("a.b", "a.b must be <small> & short"))
	if code != 400 || d != (Detail{Status: 400, Message: "a.b must be <small> & short", Attribute: "a.b"}) || !strings.Contains(raw, "<small> &") {
		t.Errorf("model error: %d %+v %s", code, d, raw)
	}
	code, d, _ = read(errors.New("secret internal detail"))
	if code != 500 || d.Message != "Internal Server Error" || !strings.Contains(logged.String(), "secret internal detail") || !strings.Contains(logged.String(), "path=/x") {
		t.Errorf("internal error: %d %+v; log %s", code, d, logged.String())
	}
	code, d, _ = read(fmt.Errorf("put: %w", store.ErrUnavailable))
	if code != 503 || !strings.Contains(d.Message, "store is unavailable") {
		t.Errorf("store unavailable: %d %+v", code, d)
	}
	if code, _, raw := read(context.Canceled); raw != "" || code != 200 {
		t.Errorf("client gone: wrote %d %q", code, raw)
	}
}
