// Package choriaagent serves the Choria agents a cmbsd offers as OCCI
// entities of kind http://cmbs.dev/occi/choria#agent at /choria/agent/<name>,
// with two actions: rpc, which runs exactly what the bus's rpc socket runs
// (one choria.Dispatcher) and returns the rpc_reply, and activate, which
// re-runs the agent's activation check.
//
// The entities mirror the agent registry: the server writes them at start,
// and a client may neither create an agent that is not registered nor
// change what the registry says about one (name, ddl, provider,
// executable, active); a deleted agent entity comes back at the next start.
//
// The package also holds the built-in agents over cmbsd's providers:
// process (ProcessAgent, the Process Registry) and smartmob
// (SmartmobAgent, the supervised smartmob processes), each reaching its
// provider through a small interface cmd/cmbsd passes in.
package choriaagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/google/uuid"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/cmbs/choria"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
)

// Category identifiers, location and provider name.
const (
	Scheme       = "http://cmbs.dev/occi/choria#"
	KindID       = Scheme + "agent"
	ActionScheme = "http://cmbs.dev/occi/choria/action#"
	Location     = "/choria/agent/"
	ProviderName = "choria_agent"
)

// Provider is the agent kind's provider.
type Provider struct {
	d    *choria.Dispatcher
	ents *entities.Service
	log  *slog.Logger
}

var _ providers.Provider = (*Provider)(nil)

// Install registers the provider, the kind and its actions (once: a second
// start finds them registered), binds the kind to the provider and writes
// one entity per registered agent.
func Install(ctx context.Context, reg *providers.Registry, cats *categories.Registry, ents *entities.Service, d *choria.Dispatcher, logger *slog.Logger) (*Provider, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{d: d, ents: ents, log: logger}
	if err := reg.Register(ProviderName, p); err != nil {
		return nil, err
	}
	if err := cats.Register(ctx, categoryDocument()); err != nil {
		return nil, fmt.Errorf("register %s: %w", KindID, err)
	}
	bind := &categories.Document{Providers: []categories.ProviderBinding{{OCCIID: KindID, Provider: map[string]any{"local": []any{ProviderName}, "remote": []any{}}}}}
	if err := cats.Update(ctx, bind); err != nil {
		return nil, fmt.Errorf("bind %s: %w", KindID, err)
	}
	for _, name := range d.Agents().Names() {
		if err := p.sync(ctx, name); err != nil {
			return nil, err
		}
	}
	// An activation check run from the bus updates the entity too.
	d.Agents().OnActivate(func(ctx context.Context, name string) {
		if err := p.sync(ctx, name); err != nil {
			p.log.Warn("could not update the agent's entity after its activation check", "agent", name, "err", err)
		}
	})
	return p, nil
}

func categoryDocument() *categories.Document {
	str := func(required bool) map[string]any {
		return map[string]any{"type": "String", "required": required, "mutable": true}
	}
	return &categories.Document{
		Actions: []map[string]any{
			{"term": "rpc", "scheme": ActionScheme, "title": "call an action of the agent; the result is the rpc_reply",
				"attributes": map[string]any{"action": str(true), "data": map[string]any{"type": "Object", "required": false, "mutable": true}}},
			{"term": "activate", "scheme": ActionScheme, "title": "run the agent's activation check again", "attributes": map[string]any{}},
		},
		Kinds: []map[string]any{{
			"term": "agent", "scheme": Scheme, "title": "Choria agent", "location": Location,
			"attributes": map[string]any{"choria": map[string]any{"agent": map[string]any{
				"name":       map[string]any{"type": "String", "required": true, "mutable": false, "pattern": "[a-z0-9_]+"},
				"ddl":        map[string]any{"type": "Object", "required": false, "mutable": true},
				"provider":   map[string]any{"type": "String", "required": false, "mutable": true, "pattern": "builtin|external"},
				"executable": str(false),
				"active":     map[string]any{"type": "Boolean", "required": false, "mutable": true},
			}}},
			"actions": []any{ActionScheme + "rpc", ActionScheme + "activate"},
		}},
	}
}

// attributes are what the registry says about name, as entity attributes.
func (p *Provider) attributes(name string) (map[string]any, bool) {
	info, ok := p.d.Agents().Info(name)
	if !ok {
		return nil, false
	}
	var ddl map[string]any
	if len(info.DDL.Raw) > 0 {
		_ = json.Unmarshal(info.DDL.Raw, &ddl)
	}
	a := map[string]any{"name": name, "provider": info.Provider, "active": info.Active}
	if ddl != nil {
		a["ddl"] = ddl
	}
	if info.Executable != "" {
		a["executable"] = info.Executable
	}
	return map[string]any{"choria": map[string]any{"agent": a}}, true
}

// sync writes name's entity from the registry.
func (p *Provider) sync(ctx context.Context, name string) error {
	attrs, ok := p.attributes(name)
	if !ok {
		return fmt.Errorf("unknown agent %s", name)
	}
	in, err := model.ParseEntityInput(map[string]any{"kind": KindID, "id": name, "title": "Choria agent " + name, "attributes": attrs}, model.TypeResource)
	if err != nil {
		return err
	}
	loc := Location + name
	if _, err := p.ents.Get(ctx, loc); model.StatusOf(err) == 404 {
		_, err = p.ents.CreateAt(ctx, loc, model.TypeResource, in)
		return err
	} else if err != nil {
		return err
	}
	_, err = p.ents.Update(ctx, loc, "", in)
	return err
}

func agentAttrs(e *model.Entity) map[string]any {
	v, _ := model.Lookup(e.Attributes, []string{"choria", "agent"})
	m, _ := v.(map[string]any)
	return m
}

// matches refuses an entity whose agent attributes differ from the
// registry's.
func (p *Provider) matches(e *model.Entity) error {
	got := agentAttrs(e)
	name, _ := got["name"].(string)
	want, ok := p.attributes(name)
	if !ok {
		return model.BadRequest("choria.agent.name %q: no such agent on this server (agents come from --agents and the built-ins)", name)
	}
	w := want["choria"].(map[string]any)["agent"].(map[string]any)
	for k, v := range got {
		if !reflect.DeepEqual(normalise(v), normalise(w[k])) {
			return model.Errorf(409, "choria.agent.%s is read-only: it says what the agent registry holds", k)
		}
	}
	return nil
}

// normalise makes JSON-decoded and Go-built values comparable.
func normalise(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// Create accepts an agent entity only as the registry describes it.
func (p *Provider) Create(_ context.Context, e *model.Entity) error { return p.matches(e) }

// Update accepts changes that keep the agent attributes as the registry
// describes them (title, summary).
func (p *Provider) Update(_ context.Context, _, updated *model.Entity) error {
	return p.matches(updated)
}

// Delete removes the entity; the agent stays registered.
func (p *Provider) Delete(context.Context, *model.Entity) error { return nil }

// Action runs rpc or activate.
func (p *Provider) Action(ctx context.Context, e *model.Entity, inv providers.Invocation) (any, error) {
	name, _ := agentAttrs(e)["name"].(string)
	switch inv.ActionTerm() {
	case "rpc":
		action, _ := inv.Attributes["action"].(string)
		data, _ := inv.Attributes["data"].(map[string]any)
		if data == nil {
			data = map[string]any{}
		}
		return json.RawMessage(p.RPC(ctx, name, action, data)), nil
	case "activate":
		// A failed check leaves the agent inactive; that is the result.
		// The entity is updated by the OnActivate hook.
		on, err := p.d.Agents().Activate(ctx, name)
		if err != nil && !errors.Is(err, context.Canceled) {
			on = false
		}
		return map[string]any{"activate": on}, nil
	}
	return nil, model.BadRequest("unknown action %s", inv.ActionTerm())
}

// RPC builds the rpc_request an HTTP caller means and answers it through
// the dispatcher, exactly as the bus would.
func (p *Provider) RPC(ctx context.Context, agent, action string, data map[string]any) []byte {
	req := choria.Request{
		Schema: choria.RequestSchemaURL, Protocol: choria.ProtocolRPCRequest,
		Agent: agent, Action: action, RequestID: uuid.NewString(),
		SenderID: "cmbsd", CallerID: "http", Collective: "mcollective",
		TTL: 60, MsgTime: time.Now().Unix(), Data: data,
	}
	body, err := json.Marshal(req)
	if err != nil {
		body = []byte("{}")
	}
	return p.d.Handle(ctx, body)
}
