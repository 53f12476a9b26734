package process

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers/process/supervisor"
)

// Console paths: the WebSocket console of a running service execution.
const (
	executionPrefix = "/process/execution/"
	consoleSuffix   = "/console"
	// DefaultConsoleTail is how many past lines a console replays without
	// ?tail=.
	DefaultConsoleTail = 100
	// consoleWriteTimeout bounds one frame's write to a client; a client
	// that takes longer is disconnected.
	consoleWriteTimeout = 10 * time.Second
)

// ConsoleExecution returns the execution location a console path
// (/process/execution/<id>/console) belongs to.
func ConsoleExecution(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, executionPrefix)
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, consoleSuffix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return executionPrefix + id, true
}

// ConsoleHandler serves the WebSocket console of running service
// executions at /process/execution/<id>/console: one text frame per log
// line (the process's stdout and stderr merged, and the supervisor's
// "[supervisor] …" events), the last ?tail=N lines first (default 100),
// then live lines until the service stops (close 1000) or the client falls
// too far behind (close 1008: it is dropped, nobody else waits for it).
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
	tail := DefaultConsoleTail
	if v := r.URL.Query().Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, p.log, model.BadRequest("tail must be a whole number of lines, not %q", v))
			return
		}
		tail = n
	}
	console := p.Console(loc)
	if console == nil {
		writeError(w, p.log, model.NotFound("no service is running as execution %s", loc))
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept answered the client
	}
	defer c.CloseNow()
	sub := console.Subscribe(tail)
	defer sub.Close()
	// The client sends nothing; reading only handles its close.
	ctx, cancel := context.WithCancel(c.CloseRead(r.Context()))
	defer cancel()
	// A write blocked on a client that does not read ends when the log
	// drops that client (or after the write timeout).
	stop := context.AfterFunc(evictedContext(sub), cancel)
	defer stop()
	for {
		select {
		case line, ok := <-sub.C:
			if !ok {
				if sub.Dropped() {
					_ = c.Close(websocket.StatusPolicyViolation, "dropped: the client did not keep up with the log")
				} else {
					_ = c.Close(websocket.StatusNormalClosure, "the process stopped")
				}
				return
			}
			wctx, cancel := context.WithTimeout(ctx, consoleWriteTimeout)
			err := c.Write(wctx, websocket.MessageText, []byte(line))
			cancel()
			if err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// evictedContext is a context cancelled when sub is dropped.
func evictedContext(sub *supervisor.Subscription) context.Context {
	return evicted{sub.Evicted()}
}

// evicted adapts a channel to context.Context for context.AfterFunc.
type evicted struct{ c <-chan struct{} }

func (e evicted) Deadline() (time.Time, bool) { return time.Time{}, false }
func (e evicted) Done() <-chan struct{}       { return e.c }
func (e evicted) Err() error {
	select {
	case <-e.c:
		return context.Canceled
	default:
		return nil
	}
}
func (e evicted) Value(any) any { return nil }
