package process

import (
	"context"
	"net/http"

	"github.com/cmbs/cmbs/internal/wsconsole"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers/process/supervisor"
)

// Console paths: the WebSocket console of a running service execution.
const (
	executionPrefix = "/process/execution/"
	// DefaultConsoleTail is how many past lines a console replays without
	// ?tail=.
	DefaultConsoleTail = wsconsole.DefaultTail
)

// ConsoleExecution returns the execution location a console path
// (/process/execution/<id>/console) belongs to.
func ConsoleExecution(path string) (string, bool) {
	return wsconsole.Entity(path, executionPrefix)
}

// ConsoleHandler serves the WebSocket console of running service
// executions at /process/execution/<id>/console: one text frame per log
// line (the process's stdout and stderr merged, and the supervisor's
// "[supervisor] …" events), the last ?tail=N lines first (default 100),
// then live lines until the service stops (close 1000) or the client falls
// too far behind (it is disconnected; nobody else waits for it).
func (p *Provider) ConsoleHandler() http.Handler {
	return http.HandlerFunc(p.serveConsole)
}

func (p *Provider) serveConsole(w http.ResponseWriter, r *http.Request) {
	loc, ok := ConsoleExecution(r.URL.Path)
	if !ok {
		writeError(w, p.log, model.NotFound("there is no console at %s", r.URL.Path))
		return
	}
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
	console := p.Console(loc)
	if console == nil {
		writeError(w, p.log, model.NotFound("no service is running as execution %s", loc))
		return
	}
	wsconsole.Serve(w, r, tail, func(context.Context) (*supervisor.Log, error) { return console, nil })
}
