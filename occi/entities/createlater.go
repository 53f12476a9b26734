package entities

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

// CreateLater creates one resource or link in the kind collection coll
// like Create, but stores it in the background and returns its location at
// once: for a record whose caller answers its client as soon as it knows
// where the record will be, such as a quick process run's execution
// record. in.ID names it (a new id when empty).
//
// The entity is validated here (kind, mixins, attributes, the provider's
// Prepare), so an invalid one is refused, not lost; it may not carry
// inline links (they would be locations nobody waits for). A location
// already taken or queued is 409. Reads of the location through the
// Service (Get, Update, Replace, Delete, Trigger) wait until it is stored,
// listings wait for every write queued before them, and Flush stores it
// before shutdown; these writes share UpdateLater's queue and its bound
// (maxDeferred), which slows callers down to the store's pace. A failure
// in the background (the store or the provider's Create refusing it) is
// logged: the location then holds nothing, never another entity.
//
// The background write keeps ctx's values (a provider may mark its own
// writes in them) but not its cancellation: the caller has answered by
// then. It is bounded by deferredTimeout.
func (s *Service) CreateLater(ctx context.Context, coll *model.Category, typ string, in *model.EntityInput) (string, error) {
	return s.createLater(ctx, coll, typ, in, false)
}

// CreateLaterTrusted is CreateLater for an entity the server built itself,
// such as a provider's own record: its attributes are already the nested
// tree the store keeps, and every value is one its definition accepts.
// What only a client's input needs is skipped (resolving flat names,
// checking each value against its definition, about half the CPU of
// preparing a record); the rest is as for CreateLater (kind, mixins,
// defaults, required attributes, the provider's Prepare, bounds), so the
// stored document is the one CreateLater would store. Values a client
// chose must not come in this way unchecked.
func (s *Service) CreateLaterTrusted(ctx context.Context, coll *model.Category, typ string, in *model.EntityInput) (string, error) {
	return s.createLater(ctx, coll, typ, in, true)
}

func (s *Service) createLater(ctx context.Context, coll *model.Category, typ string, in *model.EntityInput, trusted bool) (string, error) {
	if coll.Class != model.ClassKind {
		return "", model.BadRequest("%s is the collection of mixin %s; entities are created in their kind's collection", coll.Location, coll.ID())
	}
	if in.Kind != "" && in.Kind != coll.ID() {
		return "", model.BadRequest("entity kind %s does not match the collection %s of kind %s", in.Kind, coll.Location, coll.ID())
	}
	if len(in.InlineLinks) > 0 {
		return "", model.BadRequest("an entity created in the background has no inline links")
	}
	in.Kind = coll.ID()
	if in.ID == "" {
		in.ID = uuid.NewString()
	}
	if err := model.CheckEntityID(in.ID); err != nil {
		return "", err
	}
	loc := coll.Location + in.ID
	if s.queued(loc) {
		return "", model.Conflict("an entity already exists at %s", loc)
	}
	e, _, err := s.prepareAs(ctx, loc, typ, in, trusted)
	if err != nil {
		return "", err
	}
	d := &s.deferred
	select {
	case d.slots <- struct{}{}:
	default:
		select {
		case d.slots <- struct{}{}:
		case <-ctx.Done():
			return "", fmt.Errorf("create %s: waiting for the store to catch up: %w", loc, ctx.Err())
		}
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		<-d.slots
		return "", ErrFlushed
	}
	if d.pending[loc] != nil {
		d.mu.Unlock()
		<-d.slots
		return "", model.Conflict("an entity already exists at %s", loc)
	}
	done := make(chan struct{})
	d.pending[loc] = done
	d.wg.Add(1)
	d.mu.Unlock()

	bg := store.InBackground(context.WithoutCancel(ctx))
	d.start(loc, done, func() {
		ctx, cancel := context.WithTimeout(bg, deferredTimeout)
		defer cancel()
		// Flush past its deadline cancels d.ctx: no write outlives it.
		defer context.AfterFunc(d.ctx, cancel)()
		if err := s.createAll(ctx, []*model.Entity{e}); err != nil {
			s.log.Error("an entity created in the background was not stored", "location", loc, "err", err)
		}
	})
	return loc, nil
}

// queued reports whether a write of location is queued and not yet stored.
func (s *Service) queued(location string) bool {
	s.deferred.mu.Lock()
	defer s.deferred.mu.Unlock()
	return s.deferred.pending[location] != nil
}
