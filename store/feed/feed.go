// Package feed follows a store's changes feed for the in-process caches
// that mirror the store (the category registry with its provider bindings,
// the CMBS broker's member list), so that several cmbsd sharing one CouchDB
// see each other's writes: a change made through any server reaches every
// other server's caches as soon as its long poll returns.
//
// A Follower marks its position in the feed when it is created, before the
// caches load; everything written from then on is handed to its handlers,
// in sequence order, batch by batch. A batch a handler fails (the store is
// unreachable, say) is handed again later from the same position, and so is
// a batch the feed itself failed to read: a lost connection resumes from the
// last sequence applied, never skipping a change. Handlers must therefore be
// idempotent, and they are also handed the changes this server made itself.
//
// A new cache that mirrors the store gets a Handler and is added to the
// follower where cmd/cmbsd wires the server, after the caches it depends on.
package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cmbs/cmbs/store"
)

// Handler applies a batch of changes to a cache. An error makes the
// follower hand the same batch (and those after it) again after a backoff.
type Handler func(ctx context.Context, changes []store.Change) error

// Options configures a Follower.
type Options struct {
	// Wait is how long one long poll waits for a change (default 30 s). A
	// change wakes it at once; this only bounds idle requests.
	Wait time.Duration
	// Limit is the most changes read per batch (default 500).
	Limit int
	// Coalesce is the least time between the starts of two reads that
	// follow a batch (default 100 ms; negative: none), so that a burst of
	// writes comes as a few batches rather than one feed request per
	// write, which a busy database would pay for. A change after a quiet
	// spell is still read at once: the long poll in progress returns it.
	Coalesce time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failure, which
	// doubles from one to the other (defaults 100 ms and 5 s).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Wait <= 0 {
		o.Wait = 30 * time.Second
	}
	if o.Limit <= 0 {
		o.Limit = 500
	}
	switch {
	case o.Coalesce == 0:
		o.Coalesce = 100 * time.Millisecond
	case o.Coalesce < 0:
		o.Coalesce = 0
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Source is what a follower reads: a store's changes feed (any
// store.Store).
type Source interface {
	Changes(ctx context.Context, opts store.ChangesOptions) ([]store.Change, string, error)
}

// Follower follows one store's changes feed and hands every change to its
// handlers. Add handlers, then Start; Stop ends the goroutine Start began.
type Follower struct {
	st   Source
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	handlers []namedHandler
	seq      string // last position every handler applied
	applied  uint64 // changes handed to the handlers and applied
	failures uint64 // reads or applications that failed and were retried
	started  bool
	cancel   context.CancelFunc
	done     chan struct{}
}

type namedHandler struct {
	name string
	fn   Handler
}

// New marks the store's current position in its changes feed: the caches
// loaded after New returns miss nothing, since every change from then on
// will be handed to the handlers once the follower starts.
func New(ctx context.Context, st Source, opts Options) (*Follower, error) {
	opts = opts.withDefaults()
	_, last, err := st.Changes(ctx, store.ChangesOptions{Since: "now"})
	if err != nil {
		return nil, fmt.Errorf("feed: read the current position: %w", err)
	}
	return &Follower{st: st, opts: opts, log: opts.Logger.With("component", "feed"), seq: last}, nil
}

// Add registers a handler; name is used in logs. Handlers are called in
// the order they were added, one batch at a time. Add before Start.
func (f *Follower) Add(name string, h Handler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers = append(f.handlers, namedHandler{name, h})
}

// Start begins following in a goroutine of the follower's own (ctx is
// only used for values, not to end it: Stop does). Starting twice is an
// error.
func (f *Follower) Start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started {
		return errors.New("feed: already started")
	}
	f.started = true
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.cancel = cancel
	f.done = make(chan struct{})
	go func() {
		defer close(f.done)
		f.run(runCtx)
	}()
	return nil
}

// Stop ends the long poll in progress and waits for the goroutine to
// return (a handler running is let finish), or for ctx to end first.
func (f *Follower) Stop(ctx context.Context) error {
	f.mu.Lock()
	cancel, done := f.cancel, f.done
	f.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("feed: stop: %w", ctx.Err())
	}
}

// Stats is what a follower has done.
type Stats struct {
	// Seq is the last feed position every handler applied.
	Seq string `json:"seq"`
	// Applied counts the changes applied.
	Applied uint64 `json:"applied"`
	// Failures counts the reads and batches that failed and were retried.
	Failures uint64 `json:"failures"`
}

// Stats returns a snapshot of the follower's progress.
func (f *Follower) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{Seq: f.seq, Applied: f.applied, Failures: f.failures}
}

func (f *Follower) run(ctx context.Context) {
	backoff := f.opts.MinBackoff
	for ctx.Err() == nil {
		f.mu.Lock()
		since, handlers := f.seq, f.handlers
		f.mu.Unlock()
		readAt := time.Now()
		n, err := f.step(ctx, since, handlers)
		if err == nil {
			backoff = f.opts.MinBackoff
			if n > 0 && f.opts.Coalesce > 0 {
				if pause := f.opts.Coalesce - time.Since(readAt); pause > 0 && !sleep(ctx, pause) {
					return
				}
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		f.failures++
		f.mu.Unlock()
		f.log.Warn("changes feed interrupted; resuming from the last sequence applied", "since", since, "retry_in", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, f.opts.MaxBackoff)
	}
}

// sleep waits d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// step reads one batch after since and hands it to every handler; the
// position advances only once all of them applied it.
func (f *Follower) step(ctx context.Context, since string, handlers []namedHandler) (int, error) {
	changes, last, err := f.st.Changes(ctx, store.ChangesOptions{Since: since, Limit: f.opts.Limit, Wait: f.opts.Wait})
	if err != nil {
		return 0, fmt.Errorf("read changes: %w", err)
	}
	if len(changes) > 0 {
		for _, h := range handlers {
			if err := h.fn(ctx, changes); err != nil {
				return 0, fmt.Errorf("apply %d changes to %s: %w", len(changes), h.name, err)
			}
		}
	}
	if last == "" {
		last = since
	}
	f.mu.Lock()
	f.seq = last
	f.applied += uint64(len(changes))
	f.mu.Unlock()
	return len(changes), nil
}
