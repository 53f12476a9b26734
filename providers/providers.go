// Package providers defines the plug-in interface through which a kind's
// entities get behaviour beyond storage (pyOCNI's "backends"), and the
// registry that names them. A kind is bound to a provider by name with
// PUT /-/ {"providers":[{"OCCI_ID":…,"Provider":{"local":["name"]}}]}.
//
// The server calls a provider after validating a change, and undoes the
// change when the provider fails, so an error leaves nothing half-written:
// Create runs right after the new entity is stored (the write reserves its
// location; a provider error deletes it again); Update and Delete run before
// the store write, which is skipped when they fail (and a failed store write
// is compensated with the inverse call). Optional capabilities (Starter, Stopper) are
// found by type assertion, the way kivik finds optional driver interfaces.
package providers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/cmbs/cmbs/occi/model"
)

// Provider is the behaviour of a kind's entities.
type Provider interface {
	// Create is called for a new entity just stored. An error removes it
	// again; changes Create makes to e are not stored.
	Create(ctx context.Context, e *model.Entity) error
	// Update is called with the stored and the new state before the new state
	// is stored. An error aborts the update.
	Update(ctx context.Context, old, updated *model.Entity) error
	// Delete is called for an entity about to be deleted. An error aborts the
	// deletion.
	Delete(ctx context.Context, e *model.Entity) error
	// Action runs an action the entity's kind or mixins declare. The result is
	// returned to the client as JSON (nil → an empty body).
	Action(ctx context.Context, e *model.Entity, inv Invocation) (any, error)
}

// Invocation is one action call.
type Invocation struct {
	// Term is the action's term as given in ?action=term.
	Term string
	// Action is the action category (its ID is scheme+term).
	Action *model.Category
	// Attributes are the invocation's attributes (nested), possibly empty.
	Attributes map[string]any
}

// ActionTerm is the term of the action invoked: the action category's
// when known, else the term as given.
func (inv Invocation) ActionTerm() string {
	if inv.Action != nil {
		return inv.Action.Term
	}
	return inv.Term
}

// Preparer is a provider that completes a new entity before it is validated
// and stored: it may fill in values it generates (a network interface's MAC
// address). Changes it makes to e are stored.
type Preparer interface {
	Prepare(ctx context.Context, e *model.Entity) error
}

// StateActor is a provider whose actions change the entity they run on (a
// compute's start moves occi.compute.state to active). The server hands Act
// a copy of the stored entity and stores the copy it returns with the
// revision it read, through the provider's Update like any other change, so
// a concurrent change makes the action fail with 409 rather than be lost.
// A nil entity means the action changed nothing.
type StateActor interface {
	Act(ctx context.Context, e *model.Entity, inv Invocation) (*model.Entity, error)
}

// Observer is a provider told about every stored change to its kind's
// entities once the store has it: a create (after Create succeeded), an
// update, a delete, and a create undone because Create refused it. State a
// provider derives from its entities, such as a cache, stays exact this
// way, where Update and Delete alone would be told of changes the store
// may still refuse. e is the stored entity, nil when location is gone.
// Committed must return promptly: it runs inside the client's request.
type Observer interface {
	Committed(location string, e *model.Entity)
}

// Starter is a provider with something to start when the server starts
// (listeners, background workers). Start must return promptly.
type Starter interface {
	Start(ctx context.Context) error
}

// Stopper is a provider that holds resources; Stop releases them and waits
// until every goroutine it started has returned.
type Stopper interface {
	Stop(ctx context.Context) error
}

// ErrUnknown is returned for a provider name nobody registered.
var ErrUnknown = errors.New("unknown provider")

// Registry names providers. Built-ins are registered by main before the
// server starts; lookups are safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	providers map[string]Provider
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{providers: map[string]Provider{}} }

// Register adds a provider under a name; registering a name twice is an error.
func (r *Registry) Register(name string, p Provider) error {
	if name == "" || p == nil {
		return fmt.Errorf("register provider %q: name and provider are required", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.providers[name]; dup {
		return fmt.Errorf("register provider %q: already registered", name)
	}
	r.providers[name] = p
	return nil
}

// Get returns the provider with that name, or an error wrapping ErrUnknown.
func (r *Registry) Get(name string) (Provider, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	p, ok := r.providers[name]
	if !ok {
		return nil, fmt.Errorf("provider %q: %w", name, ErrUnknown)
	}
	return p, nil
}

// Names lists the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.providers))
	for n := range r.providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Start starts every Starter in name order; on failure it stops the ones
// already started and returns the error.
func (r *Registry) Start(ctx context.Context) error {
	var started []Stopper
	for _, name := range r.Names() {
		p, _ := r.Get(name)
		s, ok := p.(Starter)
		if !ok {
			continue
		}
		if err := s.Start(ctx); err != nil {
			for i := len(started) - 1; i >= 0; i-- {
				_ = started[i].Stop(ctx)
			}
			return fmt.Errorf("start provider %q: %w", name, err)
		}
		if st, ok := p.(Stopper); ok {
			started = append(started, st)
		}
	}
	return nil
}

// Stop stops every Stopper (in reverse name order) and returns the errors joined.
func (r *Registry) Stop(ctx context.Context) error {
	names := r.Names()
	var errs []error
	for i := len(names) - 1; i >= 0; i-- {
		p, _ := r.Get(names[i])
		if s, ok := p.(Stopper); ok {
			if err := s.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop provider %q: %w", names[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// Storage is the provider for kinds with nothing bound: entities are stored
// and served, and every action answers 501 naming the missing binding.
type Storage struct{}

// Create accepts the entity.
func (Storage) Create(context.Context, *model.Entity) error { return nil }

// Update accepts the change.
func (Storage) Update(context.Context, *model.Entity, *model.Entity) error { return nil }

// Delete accepts the deletion.
func (Storage) Delete(context.Context, *model.Entity) error { return nil }

// Action refuses: a kind without a provider has no behaviour to run.
func (Storage) Action(_ context.Context, e *model.Entity, inv Invocation) (any, error) {
	return nil, model.Errorf(501, "action %s on %s: kind %s has no provider bound (PUT /-/ with a \"providers\" document binds one)", inv.Term, e.Location, e.Kind)
}

// Accepted is an action result answered 202 Accepted (with Location when
// set) instead of 200: the action started something that goes on, such as
// a supervised service, whose state Location shows.
type Accepted struct {
	Location string
	Result   any
}
