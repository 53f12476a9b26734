package process

import (
	"encoding/base64"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/cmbs/cmbs/providers/process/engine"
)

// Events is where the provider publishes what executions do: cmd/cmbsd
// gives it the bus's events-out (PublishJSON publishes v as JSON under the
// envelope id, the topic a SUB socket subscribes to).
type Events interface {
	PublishJSON(id string, v any) error
}

// Listener is an Events that can tell whether anyone receives what it
// publishes now. A run that starts with nobody listening prepares no
// events at all: its output is not split into lines, copied and encoded
// for nobody (a subscriber that comes later misses that run's events,
// as a SUB socket that connects late misses what was sent before).
type Listener interface {
	Listening() bool
}

// EventTopic is the events-out topic of the execution with that id (the
// last segment of its location): execution.<uuid>.
func EventTopic(id string) string { return "execution." + id }

// Event bodies are dploy's BroadcastMessage: {"type":"output"|"status",
// "body":…}, with BroadcastOutputData {"type":"line"|"raw","data":…} and
// BroadcastStatusData {"type":"info"|"error"|"completed","data":…}.
type broadcastMessage struct {
	Type string `json:"type"`
	Body any    `json:"body"`
}

type broadcastOutput struct {
	Type string `json:"type"`
	Data string `json:"data"`
	// Stream is "stderr" for stderr lines (stdout lines have none, as in
	// dploy).
	Stream string `json:"stream,omitempty"`
}

type broadcastStatus struct {
	Type string         `json:"type"`
	Data map[string]any `json:"data,omitempty"`
}

// executionEvents publishes one single run's stream on events-out: a
// status info (running) first, every output line, and last a status
// completed (succeeded) or error (any other end). A nil one publishes
// nothing.
type executionEvents struct {
	pub        Events
	topic      string
	location   string
	definition string
	log        *slog.Logger
}

// executionEvents returns the publisher of the execution at location
// (id its last segment), or nil without events.
func (p *Provider) executionEvents(id, location, definition string) *executionEvents {
	if p.events == nil {
		return nil
	}
	if l, ok := p.events.(Listener); ok && !l.Listening() {
		return nil
	}
	return &executionEvents{pub: p.events, topic: EventTopic(id), location: location, definition: definition, log: p.log}
}

func (e *executionEvents) publish(m broadcastMessage) {
	if err := e.pub.PublishJSON(e.topic, m); err != nil {
		e.log.Debug("execution event not published", "topic", e.topic, "err", err)
	}
}

func (e *executionEvents) started(at time.Time) {
	if e == nil {
		return
	}
	e.publish(broadcastMessage{Type: "status", Body: broadcastStatus{Type: "info", Data: map[string]any{
		"status": engine.StatusRunning, "execution": e.location, "definition": e.definition, "started_at": at.Format(time.RFC3339Nano)}}})
}

// lines is the engine's Lines callback (nil without events): a UTF-8
// line is published as type line, any other as type raw, base64.
func (e *executionEvents) lines() func(stream string, line []byte) {
	if e == nil {
		return nil
	}
	return func(stream string, line []byte) {
		out := broadcastOutput{Type: "line", Data: string(line)}
		if !utf8.Valid(line) {
			out = broadcastOutput{Type: "raw", Data: base64.StdEncoding.EncodeToString(line)}
		}
		if stream == engine.StreamStderrName {
			out.Stream = stream
		}
		e.publish(broadcastMessage{Type: "output", Body: out})
	}
}

// finished publishes the end of the run: result is the action's result
// (nil with err, when the run could not be recorded).
func (e *executionEvents) finished(result map[string]any, err error) {
	if e == nil {
		return
	}
	data := map[string]any{"execution": e.location, "definition": e.definition}
	typ := "error"
	if err != nil {
		data["status"], data["error"] = engine.StatusError, err.Error()
	} else {
		for _, k := range []string{"status", "exit_code", "error", "truncated", "finished_at", "duration_ms"} {
			if v, ok := result[k]; ok {
				data[k] = v
			}
		}
		if result["status"] == engine.StatusSucceeded {
			typ = "completed"
		}
	}
	e.publish(broadcastMessage{Type: "status", Body: broadcastStatus{Type: typ, Data: data}})
}
