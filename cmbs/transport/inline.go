package transport

import (
	"sync"
	"time"
)

// Handlers run inline (WithInlineHandlers): a connection's reader runs
// the handler of each request it reads itself and writes the reply,
// instead of handing the request to a handler goroutine and going back to
// read. On a round trip at a time that saves a handoff between goroutines
// each way, which costs a futex wake-up and a read system call that finds
// nothing (the reader's) before the handler runs.
//
// Pipelined requests (many in flight on one connection, as a fan-out
// sends them) are answered one after the other by the reader, as long as
// no handler of the connection runs elsewhere: one that overran the grace
// and was overtaken, or one on a handler goroutine, makes the requests
// read meanwhile go to handler goroutines, so that a slow handler (a
// receiver storing its message) holds those behind it up by the grace
// once, and they run beside it rather than one after the other. While more
// of the peer's bytes are buffered, a reply is queued (zconn.queue), and
// the queue is written in one system call when the reader is about to
// wait for the network (guardedConn.beforeFill), so that a burst of
// requests read in one system call is acknowledged in one more. No reply
// waits for anything but the requests already read behind it.
//
// While the handler runs nobody reads the connection, so a timer of grace
// hands the reading to a new goroutine when the handler is slow; the
// goroutine that ran it then answers and ends, and the new reader owns
// the connection from then on.

// inlineState is a connection's inline handler, if one runs.
//
// Arming a timer per request would cost a wake-up of the network poller
// each (a new timer earlier than the one it sleeps for): the timer is
// armed when an inline handler starts and none is armed, and when it
// fires it takes the reading over if the handler running then has run for
// the grace, re-arms itself for the rest of the grace if a handler that
// started later runs, and else disarms. A stream of quick requests so
// costs one timer per grace, not one per request.
type inlineState struct {
	mu      sync.Mutex
	running bool        // a handler runs inline, and its goroutine is still the reader
	started time.Time   // when it started
	armed   bool        // the timer is set
	timer   *time.Timer // made once
}

// serveInline runs req's handler on the calling reader, whose slot and
// exchange are taken, and reports whether the caller is still the
// connection's reader once the reply is sent.
func (s *Server) serveInline(sc *serverConn, req Envelope) bool {
	in := &sc.inline
	in.mu.Lock()
	in.running = true
	in.started = time.Now()
	if !in.armed {
		in.armed = true
		if in.timer == nil {
			in.timer = time.AfterFunc(s.opts.inlineGrace, func() { s.inlineTimer(sc) })
		} else {
			in.timer.Reset(s.opts.inlineGrace)
		}
	}
	in.mu.Unlock()

	z := sc.z
	reply, ok := s.answer(z, req)
	<-s.slots

	in.mu.Lock()
	reader := in.running
	in.running = false
	in.mu.Unlock()
	if ok {
		// Still the reader, with more of the peer's bytes buffered: the
		// reply joins those of the requests behind it, written when the
		// reader next waits for the network. Else it goes out now.
		s.reply(z, reply, reader && z.gc.rd.Buffered() > 0)
	}
	z.active.Add(-1)
	return reader
}

// inlineTimer starts a new reader for sc if its inline handler has run for
// the grace. The goroutine running the handler counts in s.wg until it
// has seen the takeover (under in.mu), so the new reader is added to s.wg
// before that can reach zero.
func (s *Server) inlineTimer(sc *serverConn) {
	in := &sc.inline
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.armed {
		return // stopped: the connection ended
	}
	if !in.running {
		in.armed = false
		return
	}
	if ran := time.Since(in.started); ran < s.opts.inlineGrace {
		in.timer.Reset(s.opts.inlineGrace - ran) // a later handler than the one it was armed for
		return
	}
	in.armed = false
	in.running = false
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.readLoop(sc)
	}()
}

// stop stops the timer of a connection whose reading ended.
func (in *inlineState) stop() {
	in.mu.Lock()
	if in.timer != nil {
		in.timer.Stop()
	}
	in.armed = false
	in.mu.Unlock()
}
