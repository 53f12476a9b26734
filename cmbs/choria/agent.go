package choria

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Agent answers the actions its DDL declares. Call receives a request
// whose inputs have already been checked against the DDL (defaults
// applied) and returns the reply; the dispatcher validates it.
type Agent interface {
	DDL() *DDL
	Call(ctx context.Context, req *Request) Reply
}

// Activator is implemented by agents that decide whether they are active
// (external agents run their activation check). Agents without it are
// always active.
type Activator interface {
	Activate(ctx context.Context) (bool, error)
}

// Kind of agent, as the OCCI entity's provider attribute says.
const (
	ProviderBuiltin  = "builtin"
	ProviderExternal = "external"
)

// Info describes a registered agent.
type Info struct {
	Name       string
	Provider   string // ProviderBuiltin or ProviderExternal
	Executable string // external agents only
	Active     bool
	DDL        *DDL
}

type registered struct {
	agent  Agent
	active bool
}

// Registry holds the agents a server offers, by name. It is safe for
// concurrent use.
type Registry struct {
	mu       sync.RWMutex
	agents   map[string]*registered
	watchers []func(ctx context.Context, name string)
}

// OnActivate registers fn to be called, under the caller's ctx, after every
// Activate (from the bus or the agent entity's action), e.g. to keep the
// agent's entity in step. It must not call Activate.
func (r *Registry) OnActivate(fn func(ctx context.Context, name string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watchers = append(r.watchers, fn)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{agents: map[string]*registered{}} }

// Add registers a, named by its DDL, and runs its activation check (when it
// has one) under ctx. Adding a name twice is an error.
func (r *Registry) Add(ctx context.Context, a Agent) error {
	name := a.DDL().Metadata.Name
	active := activate(ctx, a)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.agents[name]; dup {
		return fmt.Errorf("agent %q is registered twice", name)
	}
	r.agents[name] = &registered{agent: a, active: active}
	return nil
}

func activate(ctx context.Context, a Agent) bool {
	act, ok := a.(Activator)
	if !ok {
		return true
	}
	on, err := act.Activate(ctx)
	return err == nil && on
}

// Activate re-runs name's activation check and returns the result.
func (r *Registry) Activate(ctx context.Context, name string) (bool, error) {
	r.mu.RLock()
	reg := r.agents[name]
	r.mu.RUnlock()
	if reg == nil {
		return false, fmt.Errorf("unknown agent %s", name)
	}
	on := activate(ctx, reg.agent)
	r.mu.Lock()
	reg.active = on
	watchers := r.watchers
	r.mu.Unlock()
	for _, w := range watchers {
		w(ctx, name)
	}
	return on, nil
}

// lookup returns the agent and whether it is active.
func (r *Registry) lookup(name string) (Agent, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	reg := r.agents[name]
	if reg == nil {
		return nil, false
	}
	return reg.agent, reg.active
}

// Names lists the registered agents' names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.agents))
	for n := range r.agents {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Info describes the agent name, if registered.
func (r *Registry) Info(name string) (Info, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	reg := r.agents[name]
	if reg == nil {
		return Info{}, false
	}
	info := Info{Name: name, Provider: ProviderBuiltin, Active: reg.active, DDL: reg.agent.DDL()}
	if x, ok := reg.agent.(*External); ok {
		info.Provider = ProviderExternal
		info.Executable = x.executable
	}
	return info, true
}
