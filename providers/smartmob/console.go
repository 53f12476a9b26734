package smartmob

import (
	"net/http"

	"github.com/cmbs/cmbs/internal/wsconsole"
	"github.com/cmbs/cmbs/occi/model"
)

const processPrefix = "/smartmob/process/"

// ConsoleProcess returns the process location a console path
// (/smartmob/process/<id>/console) belongs to.
func ConsoleProcess(path string) (string, bool) {
	return wsconsole.Entity(path, processPrefix)
}

// ConsoleHandler serves the WebSocket consoles of smartmob processes at
// /smartmob/process/<id>/console: one text frame per line (stdout and
// stderr merged, and the supervisor's "[supervisor] …" events), the last
// ?tail=N lines first (default 100), then live lines. A client attached
// while the process is being provisioned waits for it to start; the
// console closes (1000) when the process stops, and a client that falls
// too far behind is disconnected without slowing the others.
func (p *Provider) ConsoleHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		loc, ok := ConsoleProcess(r.URL.Path)
		if !ok {
			writeError(w, p.log, model.NotFound("there is no console at %s", r.URL.Path))
			return
		}
		p.serveConsole(w, r, loc)
	})
}

func (p *Provider) serveConsole(w http.ResponseWriter, r *http.Request, loc string) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, p.log, model.Errorf(http.StatusMethodNotAllowed, "a console is read with GET (a WebSocket upgrade)"))
		return
	}
	tail, err := wsconsole.Tail(r)
	if err != nil {
		writeError(w, p.log, err)
		return
	}
	pr := p.proc(loc)
	if pr == nil {
		var err error = model.NotFound("no smartmob process at %s", loc)
		if e, gerr := p.ents.Get(r.Context(), loc); gerr == nil && p.serverOf(e) != p.opts.Server {
			err = misdirected(e, p.serverOf(e))
		}
		writeError(w, p.log, err)
		return
	}
	wsconsole.Serve(w, r, tail, pr.console)
}
