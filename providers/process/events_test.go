package process_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cmbs/cmbs/providers/process/internal/processtest"
)

// countingEvents counts what is published, and listens when told to.
type countingEvents struct {
	listening atomic.Bool
	mu        sync.Mutex
	topics    []string
}

func (e *countingEvents) Listening() bool { return e.listening.Load() }

func (e *countingEvents) PublishJSON(id string, _ any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.topics = append(e.topics, id)
	return nil
}

func (e *countingEvents) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.topics
	e.topics = nil
	return t
}

// A run's events are prepared only when someone listens (JSON and
// streamed execute alike).
func TestEventsOnlyWhenListening(t *testing.T) {
	ev := &countingEvents{}
	n := startNode(t, nil, nodeOptions{events: ev})
	loc := n.createDefinition(`{"exec":"cat","input_adapter":` + processtest.StdinIn + `}`)
	for _, listening := range []bool{false, true} {
		ev.listening.Store(listening)
		n.execute(loc, map[string]any{"input": "one\ntwo\n"})
		n.mustStream(loc, "", nil)
		got := ev.take()
		// Listening: running, two lines, completed for the JSON run;
		// running and completed for the streamed one (no output).
		if want := map[bool]int{false: 0, true: 6}[listening]; len(got) != want {
			t.Errorf("listening %v: %d events %v, want %d", listening, len(got), got, want)
		}
	}
}
