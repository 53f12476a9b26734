// Package infra is the built-in provider of OCCI Infrastructure 1.2: it
// serves compute, storage, network, networkinterface and storagelink
// entities without a cloud behind them, keeping their states honest. Actions
// move the state attribute along the specification's state diagrams and
// refuse transitions that make no sense (starting an active compute is a
// 409); link creation fills in what a real provider would assign (a MAC
// address, a dynamic IP address).
package infra

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"slices"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
)

// Provider is the infrastructure provider. The zero value is ready to use.
type Provider struct{}

var (
	_ providers.Provider   = Provider{}
	_ providers.Preparer   = Provider{}
	_ providers.StateActor = Provider{}
)

// transition is one action's effect on a kind's state attribute.
type transition struct {
	// from lists the states the action may start from; empty means any.
	from []string
	to   string
}

// machines maps kind → action term → transition (OCCI Infrastructure 1.2,
// figures 2–4).
var machines = map[string]struct {
	state   []string // path of the state attribute
	actions map[string]transition
}{
	categories.ComputeKind: {[]string{"occi", "compute", "state"}, map[string]transition{
		"start":   {from: []string{"inactive", "suspended", "error"}, to: "active"},
		"stop":    {from: []string{"active", "suspended"}, to: "inactive"},
		"restart": {to: "active"},
		"suspend": {from: []string{"active"}, to: "suspended"},
	}},
	categories.NetworkKind: {[]string{"occi", "network", "state"}, map[string]transition{
		"up":   {from: []string{"inactive", "error"}, to: "active"},
		"down": {from: []string{"active"}, to: "inactive"},
	}},
	categories.StorageKind: {[]string{"occi", "storage", "state"}, map[string]transition{
		"online":  {from: []string{"offline", "error"}, to: "online"},
		"offline": {from: []string{"online"}, to: "offline"},
	}},
}

// Create accepts the entity.
func (Provider) Create(context.Context, *model.Entity) error { return nil }

// Update accepts the change; the model has already refused changes to
// immutable attributes such as the state.
func (Provider) Update(context.Context, *model.Entity, *model.Entity) error { return nil }

// Delete accepts the deletion.
func (Provider) Delete(context.Context, *model.Entity) error { return nil }

// Action is not used: the server calls Act for a StateActor.
func (p Provider) Action(ctx context.Context, e *model.Entity, inv providers.Invocation) (any, error) {
	_, err := p.Act(ctx, e, inv)
	return nil, err
}

// Act runs an action: it moves the state attribute, or reports why it cannot.
func (Provider) Act(_ context.Context, e *model.Entity, inv providers.Invocation) (*model.Entity, error) {
	m, ok := machines[e.Kind]
	if !ok {
		return nil, model.Errorf(http.StatusNotImplemented, "action %s: kind %s has no actions in this provider", inv.Term, e.Kind)
	}
	t, ok := m.actions[inv.Term]
	if !ok {
		return nil, model.Errorf(http.StatusNotImplemented,
			"action %s on %s needs a real cloud behind the server (the built-in infrastructure provider only tracks states)", inv.Term, e.Location)
	}
	cur, _ := model.Lookup(e.Attributes, m.state)
	curS, _ := cur.(string)
	if len(t.from) > 0 && !slices.Contains(t.from, curS) {
		return nil, model.Conflict("action %s cannot run on %s while its state is %q (it needs one of %v)", inv.Term, e.Location, curS, t.from)
	}
	if e.Attributes == nil {
		e.Attributes = map[string]any{}
	}
	model.SetPath(e.Attributes, m.state, t.to)
	msgPath := append(append([]string{}, m.state[:len(m.state)-1]...), "state.message")
	msg := fmt.Sprintf("%s: %s -> %s", inv.Term, curS, t.to)
	if method, ok := inv.Attributes["method"].(string); ok && method != "" {
		msg += " (" + method + ")"
	}
	model.SetPath(e.Attributes, msgPath, msg)
	return e, nil
}

// Prepare fills in a new storage link's device id, a new network
// interface's MAC address and, for a dynamic IP network interface, its
// address.
func (Provider) Prepare(_ context.Context, e *model.Entity) error {
	sum := sha256.Sum256([]byte(e.Location))
	if e.Kind == categories.StorageLinkKind {
		devPath := []string{"occi", "storagelink", "deviceid"}
		if v, ok := model.Lookup(e.Attributes, devPath); !ok || v == nil || v == "" {
			model.SetPath(e.Attributes, devPath, "/dev/vd"+string(rune('b'+sum[0]%25)))
		}
		return nil
	}
	if e.Kind != categories.NetworkInterfaceKind {
		return nil
	}
	macPath := []string{"occi", "networkinterface", "mac"}
	if v, ok := model.Lookup(e.Attributes, macPath); !ok || v == nil || v == "" {
		// A locally administered unicast address derived from the location.
		model.SetPath(e.Attributes, macPath, fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", sum[0], sum[1], sum[2], sum[3], sum[4]))
	}
	if !e.HasMixin(categories.IPNetworkInterface) {
		return nil
	}
	addrPath := []string{"occi", "networkinterface", "address"}
	if v, ok := model.Lookup(e.Attributes, addrPath); ok && v != nil && v != "" {
		return nil
	}
	if alloc, _ := model.Lookup(e.Attributes, []string{"occi", "networkinterface", "allocation"}); alloc == "static" {
		return model.AttributeError("occi.networkinterface.address", "a static IP network interface needs occi.networkinterface.address")
	}
	model.SetPath(e.Attributes, addrPath, fmt.Sprintf("10.%d.%d.%d", sum[5], sum[6], 1+sum[7]%254))
	return nil
}
