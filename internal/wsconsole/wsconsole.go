// Package wsconsole serves a supervised process's log (see
// providers/process/supervisor) as a WebSocket console: one text frame per
// line, the last lines replayed first, then live lines. The Process
// Registry's service executions and smartmob processes share it.
package wsconsole

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

// DefaultTail is how many past lines a console replays without ?tail=.
const DefaultTail = 100

// ClientBuffer is how many lines a client may lag behind the process
// before it is dropped: room for a burst of output (a channel of this many
// lines, 2 MiB of slots, per attached client).
const ClientBuffer = 1 << 17

// ClientBytes is how many bytes of lines a client may lag behind the
// process before it is dropped, whatever their number (lines are up to
// 16 KiB: ClientBuffer of them could hold 2 GiB).
const ClientBytes = 8 << 20

// writeTimeout bounds one frame's write to a client; a client that takes
// longer is disconnected.
const writeTimeout = 10 * time.Second

// Tail reads ?tail=N (DefaultTail when absent); a value that is not a
// whole number is a 400 error.
func Tail(r *http.Request) (int, error) {
	v := r.URL.Query().Get("tail")
	if v == "" {
		return DefaultTail, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, model.BadRequest("tail must be a whole number of lines, not %q", v)
	}
	return n, nil
}

// Suffix ends a console's path: <collection><id>/console.
const Suffix = "/console"

// Entity returns the location of the entity whose console path is path
// (<collection><id>/console, for a collection path such as
// /process/execution/), and whether path is one.
func Entity(path, collection string) (string, bool) {
	rest, ok := strings.CutPrefix(path, collection)
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, Suffix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return collection + id, true
}

// Source returns the log to stream once there is one: it may wait (until
// ctx ends) for a process that is still being prepared. A nil log with a
// nil error means there is nothing to stream any more.
type Source func(ctx context.Context) (*supervisor.Log, error)

// Serve upgrades r to a WebSocket and streams the log source returns: the
// last tail lines, then every new line, until the log closes (the process
// stopped: close 1000), the client goes away, or the client falls too far
// behind (more than ClientBuffer lines or ClientBytes bytes: its
// connection is closed; nobody
// else waits for it). The caller
// answers errors that come before the upgrade (404, 400) itself.
func Serve(w http.ResponseWriter, r *http.Request, tail int, source Source) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept answered the client
	}
	defer c.CloseNow()
	// The client sends nothing; reading only handles its close.
	ctx, cancel := context.WithCancel(c.CloseRead(r.Context()))
	defer cancel()
	log, err := source(ctx)
	if err != nil || log == nil {
		if ctx.Err() == nil {
			_ = c.Close(websocket.StatusNormalClosure, "the process is not running")
		}
		return
	}
	sub := log.SubscribeBytes(tail, ClientBuffer, ClientBytes)
	defer sub.Close()
	// Writes take no context (a cancellable one costs a registration per
	// frame): a write blocked on a client that does not read ends when the
	// connection is closed under it, once the log drops that client, the
	// client goes away, or the write takes longer than writeTimeout.
	stop := context.AfterFunc(evicted{sub.Evicted()}, func() { c.CloseNow() })
	defer stop()
	stopGone := context.AfterFunc(ctx, func() { c.CloseNow() })
	defer stopGone()
	watchdog := time.AfterFunc(writeTimeout, func() { c.CloseNow() })
	watchdog.Stop()
	defer watchdog.Stop()
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
			watchdog.Reset(writeTimeout)
			err := c.Write(context.Background(), websocket.MessageText, []byte(line))
			watchdog.Stop()
			sub.Took(line)
			if err != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// evicted adapts a subscription's Evicted channel to context.Context for
// context.AfterFunc.
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
