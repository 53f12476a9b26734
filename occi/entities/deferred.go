package entities

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

// deferredTimeout bounds one deferred update, retries included.
const deferredTimeout = 30 * time.Second

// maxDeferred bounds the deferred updates not yet stored; UpdateLater
// waits for a slot beyond it, which slows a caller down to the store's pace
// instead of queueing without limit.
const maxDeferred = 256

// deferredRetries is how often a deferred update is tried when a
// concurrent change got there first.
const deferredRetries = 3

// deferred tracks the updates UpdateLater queued and not yet stored. Per
// location they form a chain, each waiting for the one before, so they are
// stored in the order they were queued.
type deferred struct {
	slots chan struct{}
	// ctx is the parent of every update's context; Flush cancels it when
	// its own deadline passes, so that no update outlives Flush.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	pending map[string]chan struct{} // the last queued update per location, closed once stored or failed
	// waiting is, per location, the last queued update that has not
	// started: a later update of the location joins it (see laterBatch).
	waiting map[string]*laterBatch
	wg      sync.WaitGroup
}

// laterBatch is the deferred updates of one location stored by one write:
// those queued while the write before them on the location was running
// (a second write would only replace the first), applied in the order
// queued. It takes at most maxDeferred of them.
type laterBatch struct {
	ins []*model.EntityInput
}

// UpdateLater applies a partial update like Update (ifMatch empty), but
// stores it in the background: for a write whose caller has already
// answered its client, such as the result of a message that has been
// delivered. The update is checked against current (the entity as the
// caller read it from the service, whose values passed when stored) first:
// the values it brings, and the entity's bounds, required and immutable
// attributes (model.AttrSet.CheckPatch), so an invalid one is refused
// here, not lost. Updates of one location are stored in the order
// they were queued, those queued while an earlier one of the location is
// being stored in one write after it; a concurrent change is retried. Every read or change
// of the location through the Service waits for it first, and listings
// wait for every update queued before them, so nobody reading through the
// Service sees the entity without it. A failure is logged. Flush waits for
// all of them; after it, updates are refused (ErrFlushed).
//
// It waits only when maxDeferred updates are already queued, until one is
// stored or ctx ends.
func (s *Service) UpdateLater(ctx context.Context, current *model.Entity, in *model.EntityInput) error {
	location := current.Location
	// current was read from the store and its values passed when stored:
	// what the update brings is checked, not every value again.
	patched, err := s.patchChecked(ctx, location, in, true)(current)
	if err != nil {
		return err
	}
	d := &s.deferred
	if d.join(location, in) {
		return nil
	}
	select {
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("update %s: waiting for the store to catch up: %w", location, ctx.Err())
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		<-d.slots
		return ErrFlushed
	}
	prev := d.pending[location]
	done := make(chan struct{})
	d.pending[location] = done
	batch := &laterBatch{ins: []*model.EntityInput{in}}
	if d.waiting == nil {
		d.waiting = map[string]*laterBatch{}
	}
	d.waiting[location] = batch
	d.wg.Add(1)
	d.mu.Unlock()

	d.start(location, done, func() {
		if prev != nil {
			<-prev
		}
		d.mu.Lock()
		if d.waiting[location] == batch {
			delete(d.waiting, location) // started: later updates queue anew
		}
		ins := batch.ins
		d.mu.Unlock()
		ctx, cancel := context.WithTimeout(store.InBackground(d.ctx), deferredTimeout)
		defer cancel()
		// The first try stores the entity as checked above, over
		// current's revision, without reading or checking it again,
		// unless an update queued before this one has changed it since or
		// others joined it; a conflict means someone else did, and the
		// retries read it again.
		var err error
		if prev == nil && len(ins) == 1 {
			_, err = s.modifyEntity(ctx, current, "", func(*model.Entity) (*model.Entity, error) { return patched, nil })
			if model.StatusOf(err) == http.StatusConflict {
				err = s.updateLater(ctx, location, ins)
			}
		} else {
			err = s.updateLater(ctx, location, ins)
		}
		if err != nil && len(ins) > 1 && model.StatusOf(err) != http.StatusNotFound {
			// One of them no longer applies where the others were
			// stacked on it: each is stored alone, as if none had
			// joined another.
			for _, in := range ins {
				if err := s.updateLater(ctx, location, []*model.EntityInput{in}); err != nil {
					s.log.Error("a deferred update was not stored", "location", location, "err", err)
				}
			}
			return
		}
		switch {
		case model.StatusOf(err) == http.StatusNotFound:
			s.log.Debug("a deferred update found its entity deleted", "location", location)
		case err != nil:
			s.log.Error("a deferred update was not stored", "location", location, "err", err)
		}
	})
	return nil
}

// start runs write in the background as the queued write of location
// (CreateLater's or UpdateLater's): once it returns, done is closed,
// location leaves pending unless a later write took its place, and the
// slot and the wait group's count the caller took (d.wg.Add under d.mu)
// are given back.
func (d *deferred) start(location string, done chan struct{}, write func()) {
	go func() {
		defer d.wg.Done()
		defer func() { <-d.slots }()
		defer func() {
			d.mu.Lock()
			if d.pending[location] == done {
				delete(d.pending, location)
			}
			d.mu.Unlock()
			close(done)
		}()
		write()
	}()
}

// join adds in to the update of location queued and not started yet, if
// there is one with room left, and reports whether it did.
func (d *deferred) join(location string, in *model.EntityInput) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.waiting[location]
	if d.closed || b == nil || len(b.ins) >= maxDeferred {
		return false
	}
	b.ins = append(b.ins, in)
	return true
}

// updateLater stores deferred updates of location in one write, reading
// the entity first, retrying when a concurrent change got there first.
func (s *Service) updateLater(ctx context.Context, location string, ins []*model.EntityInput) error {
	var err error
	for try := 0; try < deferredRetries; try++ {
		_, err = s.modify(ctx, location, "", func(old *model.Entity) (*model.Entity, error) {
			e := old
			for _, in := range ins {
				var err error
				// As UpdateLater checked it: what each brings (the
				// entity read back passed when stored), so an update
				// accepted there is not refused here for a value it
				// does not touch.
				if e, err = s.patchChecked(ctx, location, in, true)(e); err != nil {
					return nil, err
				}
			}
			return e, nil
		})
		if model.StatusOf(err) != http.StatusConflict {
			break
		}
	}
	return err
}

// ErrFlushed is UpdateLater's answer after Flush: the service is shutting
// down.
var ErrFlushed = model.Errorf(http.StatusServiceUnavailable, "the server is shutting down: no more deferred updates")

// Flush waits until every update UpdateLater queued is stored (or has
// failed), and refuses later ones. If ctx ends first, the updates still
// running are cancelled and waited for, and ctx's error is returned: none
// runs after Flush, whose caller may close the store.
func (s *Service) Flush(ctx context.Context) error {
	d := &s.deferred
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	defer d.cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		d.cancel()
		<-done
		return fmt.Errorf("entities: deferred updates cancelled, not all stored: %w", ctx.Err())
	}
}

// settle waits for the deferred updates of location.
func (s *Service) settle(ctx context.Context, location string) error {
	d := &s.deferred
	d.mu.Lock()
	p := d.pending[location]
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for a deferred update of %s: %w", location, ctx.Err())
	}
}

// Settle waits until the updates UpdateLater queued before the call are
// stored (or have failed), or ctx ends.
func (s *Service) Settle(ctx context.Context) error {
	d := &s.deferred
	d.mu.Lock()
	if len(d.pending) == 0 {
		d.mu.Unlock()
		return nil
	}
	waits := slices.Collect(maps.Values(d.pending))
	d.mu.Unlock()
	for _, p := range waits {
		select {
		case <-p:
		case <-ctx.Done():
			return fmt.Errorf("waiting for deferred updates: %w", ctx.Err())
		}
	}
	return nil
}
