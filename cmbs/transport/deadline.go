package transport

import (
	"context"
	"slices"
	"sync"
	"time"
)

// A Server gives each handler call a context whose deadline is
// WithHandlerTimeout after the call started, without a timer per call:
// context.WithTimeout costs a timer in the runtime's heap, a timerCtx and
// an entry in the parent's children map per request, which measured as a
// twentieth of a delivery's CPU. Every call of a server has the same
// timeout, so the calls in progress, kept in the order they started, are
// also in the order of their deadlines: one timer per server, armed for
// the first of them, cancels every call whose deadline has passed and is
// re-armed for the next. A call that ends leaves the list at once; the
// timer is not moved for it, so a stream of quick calls costs a timer
// update about once per handler timeout, not one per call.

// deadlines is a Server's handler calls in progress, oldest first.
type deadlines struct {
	timeout time.Duration

	mu         sync.Mutex
	head, tail *handlerCtx
	timer      *time.Timer // made on first use
	armed      bool        // the timer is set
	closed     bool        // Close: every call is cancelled, new ones start cancelled
}

// start returns the context of a handler call starting now, whose values
// are base's (which must not be cancellable: see handlerCtx). finish must
// be called when the call ends.
func (d *deadlines) start(base context.Context) *handlerCtx {
	c := &handlerCtx{Context: base}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		c.deadline = time.Now()
		c.cancel(context.Canceled)
		return c
	}
	c.deadline = time.Now().Add(d.timeout)
	c.listed = true
	c.prev = d.tail
	if d.tail != nil {
		d.tail.next = c
	} else {
		d.head = c
	}
	d.tail = c
	if !d.armed {
		d.armed = true
		if d.timer == nil {
			d.timer = time.AfterFunc(d.timeout, d.expire)
		} else {
			d.timer.Reset(time.Until(d.head.deadline))
		}
	}
	d.mu.Unlock()
	return c
}

// finish ends c's call: it leaves the list, and c is cancelled (as the
// cancel function of context.WithTimeout would), unless it was already.
func (d *deadlines) finish(c *handlerCtx) {
	d.mu.Lock()
	d.unlink(c)
	d.mu.Unlock()
	c.cancel(context.Canceled)
}

// unlink removes c from the list if it is listed; d.mu is held.
func (d *deadlines) unlink(c *handlerCtx) {
	if !c.listed {
		return
	}
	c.listed = false
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		d.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		d.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

// expire cancels the calls whose deadline has passed and re-arms the
// timer for the next one.
func (d *deadlines) expire() {
	var late []*handlerCtx
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	now := time.Now()
	for d.head != nil && !now.Before(d.head.deadline) {
		c := d.head
		d.unlink(c)
		late = append(late, c)
	}
	d.armed = d.head != nil
	if d.armed {
		d.timer.Reset(d.head.deadline.Sub(now))
	}
	d.mu.Unlock()
	for _, c := range late {
		c.cancel(context.DeadlineExceeded)
	}
}

// close cancels every call in progress and every later one (the server
// is closing), and stops the timer.
func (d *deadlines) close() {
	var all []*handlerCtx
	d.mu.Lock()
	d.closed = true
	for d.head != nil {
		c := d.head
		d.unlink(c)
		all = append(all, c)
	}
	if d.timer != nil {
		d.timer.Stop()
	}
	d.armed = false
	d.mu.Unlock()
	for _, c := range all {
		c.cancel(context.Canceled)
	}
}

// handlerCtx is a handler call's context. Its embedded Context only
// supplies values, and must not be cancellable (context.WithoutCancel):
// then context.Cause, and contexts derived from this one, find no
// cancelCtx among its values and go by Done, Err and AfterFunc here,
// as for any context of a type of its own.
type handlerCtx struct {
	context.Context
	deadline time.Time

	// The deadlines list, under its mu.
	prev, next *handlerCtx
	listed     bool

	mu     sync.Mutex
	done   chan struct{} // made on first Done
	err    error
	afters []*afterFunc // AfterFunc's, until the context ends
}

type afterFunc struct {
	once sync.Once
	f    func()
}

// closedChan is Done's channel of a context that ended before anyone asked.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *handlerCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *handlerCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			c.done = closedChan
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

func (c *handlerCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// AfterFunc is context.AfterFunc for this context: contexts derived from
// it use it to learn that it ended, instead of a goroutine each.
func (c *handlerCtx) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		a.run()
	} else {
		c.afters = append(c.afters, a)
		c.mu.Unlock()
	}
	return func() bool {
		stopped := false
		a.once.Do(func() { stopped = true })
		if stopped {
			// Forgotten at once: a handler deriving a context per call
			// it makes would otherwise keep one entry for each.
			c.mu.Lock()
			if i := slices.Index(c.afters, a); i >= 0 {
				c.afters = slices.Delete(c.afters, i, i+1)
			}
			c.mu.Unlock()
		}
		return stopped
	}
}

func (a *afterFunc) run() { a.once.Do(func() { go a.f() }) }

func (c *handlerCtx) String() string { return "transport.handlerContext" }

// cancel ends c with err unless it has ended.
func (c *handlerCtx) cancel(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for _, a := range afters {
		a.run()
	}
}
