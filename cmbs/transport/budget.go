package transport

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ReadBudget bounds the memory held by incoming messages still being
// received, across every connection that shares it. A frame's buffer
// grows as its bytes arrive, never to the size its header announces at
// once, and each growth is taken from the budget; a connection that finds
// the budget spent stops reading (its peer's TCP window fills) until other
// messages complete, or its own message deadline passes and it is closed.
// A message's bytes return to the budget when it has been read whole, or
// its connection ends.
//
// The first few KiB of each message are not counted (most messages are
// that small, and each connection may hold at most that much); see
// docs/limits.md. A ReadBudget may be shared by several Servers and
// Clients (WithReadBudget), so that one process has one bound.
type ReadBudget struct {
	size int64

	mu      sync.Mutex
	used    int64
	waiting int           // connections waiting for bytes
	wake    chan struct{} // closed, and replaced, when bytes are released
}

// DefaultReadBudget is the budget of a Server or Client not given one.
const DefaultReadBudget = 32 << 20

// NewReadBudget returns a budget of size bytes (DefaultReadBudget when
// size is not positive).
func NewReadBudget(size int64) *ReadBudget {
	if size <= 0 {
		size = DefaultReadBudget
	}
	return &ReadBudget{size: size, wake: make(chan struct{})}
}

// Size returns the budget's bound in bytes.
func (b *ReadBudget) Size() int64 { return b.size }

// InUse returns the bytes currently held by messages being received.
func (b *ReadBudget) InUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// errBudgetWait ends a connection whose message could not get buffer
// space before its deadline.
var errBudgetWait = errors.New("no read buffer space freed up before the message deadline")

// goneCheck is how often a connection waiting for the budget asks whether
// its peer has left: it reads nothing meanwhile, so would not see it, and
// would keep what it holds until its message deadline.
const goneCheck = 100 * time.Millisecond

// acquire takes n bytes, waiting until they are free, deadline passes
// (errBudgetWait, wrapping os.ErrDeadlineExceeded), done is closed or gone
// reports the peer left. n is at most Size (callers cap messages to it).
func (b *ReadBudget) acquire(n int64, deadline time.Time, done <-chan struct{}, gone func() bool) error {
	var timer *time.Timer
	var tick *time.Ticker
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		b.mu.Lock()
		if b.used+n <= b.size {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.waiting++
		b.mu.Unlock()
		var expired <-chan time.Time
		if !deadline.IsZero() {
			if timer == nil {
				timer = time.NewTimer(time.Until(deadline))
			}
			expired = timer.C
		}
		if tick == nil {
			tick = time.NewTicker(goneCheck)
		}
		if err := b.wait(wake, tick.C, expired, done, gone); err != nil {
			return err
		}
	}
}

// wait is one wait of acquire, counted in b.waiting.
func (b *ReadBudget) wait(wake <-chan struct{}, tick, expired <-chan time.Time, done <-chan struct{}, gone func() bool) error {
	defer func() {
		b.mu.Lock()
		b.waiting--
		b.mu.Unlock()
	}()
	select {
	case <-wake:
	case <-tick:
		if gone() {
			return errConnClosed
		}
	case <-expired:
		return fmt.Errorf("%w (%d of %d bytes in use): %w", errBudgetWait, b.InUse(), b.size, os.ErrDeadlineExceeded)
	case <-done:
		return errConnClosed
	}
	return nil
}

// waiters returns how many connections wait for bytes.
func (b *ReadBudget) waiters() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting
}

// errConnClosed ends a budget wait on a connection closed meanwhile.
var errConnClosed = errors.New("connection closed")

// release returns n bytes and wakes the connections waiting for some.
func (b *ReadBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}
