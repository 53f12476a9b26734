package occi

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/cmbs/cmbs/occi/httperr"
	"github.com/cmbs/cmbs/occi/model"
)

// errorStatus maps any error to the HTTP status it is reported with (see
// httperr, the one place that decides).
func errorStatus(err error) int { return httperr.Status(err) }

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
	var me *model.Error
	if errorStatus(err) == http.StatusRequestEntityTooLarge && !errors.As(err, &me) {
		err = bodyError(err)
	}
	detail, ok := httperr.Describe(r, log, err)
	if !ok {
		return
	}
	status := detail.Status
	rend, ctype := errorRendering(r)
	if rend.isJSON() {
		httperr.WriteDetail(w, detail)
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
