package console

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// change is one store change as sent to browsers ("change" events).
type change struct {
	Seq     string `json:"seq"`
	ID      string `json:"id"`
	Rev     string `json:"rev,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
}

// Delivery is one message a member hosted on this server received, as the
// events page shows it ("delivery" events).
type Delivery struct {
	// Layer is the layer it came in on (l1, l2, l31, l32, l4).
	Layer string `json:"layer"`
	// Member names the receiving member.
	Member string `json:"member"`
	// Message is the message's id.
	Message string `json:"message"`
	// Stored is where the message was stored here, if it was.
	Stored string `json:"stored,omitempty"`
	// Duplicate: the member had already handled it.
	Duplicate bool `json:"duplicate,omitempty"`
	// Errors says what went wrong on this side.
	Errors []string `json:"errors,omitempty"`
}

// event is one server-sent event, encoded once for every subscriber.
type event struct {
	Name string // the SSE event name
	ID   string // the SSE id (a feed sequence), if any
	Data []byte // JSON
}

// sse is the event in the text/event-stream format.
func (e event) sse() string {
	s := "event: " + e.Name + "\n"
	if e.ID != "" {
		s += "id: " + e.ID + "\n"
	}
	return s + "data: " + string(e.Data) + "\n\n"
}

// hub fans events out to subscribers, each with a bounded buffer; a
// subscriber whose buffer is full is dropped (its channel closed).
//
// The feed is only followed while someone listens: wanted is signalled
// when the first subscriber arrives, and following is closed once the
// follower has its position, so a subscriber sees every change made after
// it was told the stream is open.
type hub struct {
	mu        sync.Mutex
	size      int
	subs      map[chan event]struct{}
	closed    bool
	wanted    chan struct{} // capacity 1: a subscriber is waiting for the follower
	empty     chan struct{} // capacity 1: the last subscriber left
	following chan struct{} // closed while the follower has a position
}

func newHub(size int) *hub {
	return &hub{size: size, subs: map[chan event]struct{}{}, wanted: make(chan struct{}, 1), empty: make(chan struct{}, 1), following: make(chan struct{})}
}

// subscribe returns a channel of events, closed when the subscriber is
// dropped or the hub closes, and a channel closed once the feed is being
// followed; ok is false once the hub is closed.
func (h *hub) subscribe() (ch chan event, following <-chan struct{}, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil, false
	}
	ch = make(chan event, h.size)
	h.subs[ch] = struct{}{}
	select {
	case h.wanted <- struct{}{}:
	default:
	}
	return ch, h.following, true
}

// setFollowing tells waiting subscribers the follower has its position.
func (h *hub) setFollowing() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.following:
	default:
		close(h.following)
	}
}

// idle reports whether nobody listens; if so, the follower stops, and
// later subscribers wait for it to find its position again.
func (h *hub) idle() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) > 0 {
		return false
	}
	select {
	case <-h.following:
		h.following = make(chan struct{})
	default:
	}
	return true
}

func (h *hub) unsubscribe(ch chan event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		h.drop(ch)
	}
}

// drop removes a subscriber (h.mu held) and tells the follower when it was
// the last.
func (h *hub) drop(ch chan event) {
	delete(h.subs, ch)
	close(ch)
	if len(h.subs) == 0 {
		select {
		case h.empty <- struct{}{}:
		default:
		}
	}
}

func (h *hub) publish(e event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- e:
		default: // too slow: drop it rather than wait
			h.drop(ch)
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}

// serveEvents streams events as text/event-stream until the client goes,
// it falls behind, or the feed stops.
func (c *Console) serveEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method "+r.Method+" is not allowed on "+EventsPath, http.StatusMethodNotAllowed)
		return
	}
	ch, following, ok := c.hub.subscribe()
	if !ok {
		http.Error(w, "the server is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer c.hub.unsubscribe(ch)
	// Deliveries may come before the feed's position is marked: they are
	// kept for the stream.
	var pending []event
wait:
	for {
		select {
		case <-following:
			break wait
		case <-r.Context().Done():
			return
		case e, open := <-ch:
			if !open { // the console stopped, or this stream fell behind
				http.Error(w, "the server is shutting down", http.StatusServiceUnavailable)
				return
			}
			pending = append(pending, e)
		}
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The server's write timeout is for ordinary responses: a stream
	// extends its deadline at each write instead.
	write := func(s string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(c.opts.Heartbeat + 30*time.Second))
		if _, err := fmt.Fprint(w, s); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write("retry: 2000\n: cmbs console events\n\n") {
		return
	}
	for _, e := range pending {
		if !write(e.sse()) {
			return
		}
	}
	tick := time.NewTicker(c.opts.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if !write(": keep-alive\n\n") {
				return
			}
		case e, ok := <-ch:
			if !ok {
				return
			}
			if !write(e.sse()) {
				return
			}
		}
	}
}
