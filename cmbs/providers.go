package cmbs

import (
	"context"
	"net/http"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
)

// Provider names, as pyCMBS's put_provider files bind them.
const (
	MemberProviderName  = "cmbs_member"
	MessageProviderName = "cmbs_message"
)

// MemberProvider serves the member kind. Until the broker is built, members
// are stored and served, and their layer actions answer 501.
type MemberProvider struct{}

// MessageProvider serves the message kind. Until the broker is built,
// messages are stored and served, and their send actions answer 501.
type MessageProvider struct{}

var (
	_ providers.Provider = MemberProvider{}
	_ providers.Provider = MessageProvider{}
)

// Create accepts the member.
func (MemberProvider) Create(context.Context, *model.Entity) error { return nil }

// Update accepts the change.
func (MemberProvider) Update(context.Context, *model.Entity, *model.Entity) error { return nil }

// Delete accepts the deletion.
func (MemberProvider) Delete(context.Context, *model.Entity) error { return nil }

// Action reports that the broker is not available in this build.
func (MemberProvider) Action(_ context.Context, e *model.Entity, inv providers.Invocation) (any, error) {
	return nil, notYet(e, inv)
}

// Create accepts the message.
func (MessageProvider) Create(context.Context, *model.Entity) error { return nil }

// Update accepts the change.
func (MessageProvider) Update(context.Context, *model.Entity, *model.Entity) error { return nil }

// Delete accepts the deletion.
func (MessageProvider) Delete(context.Context, *model.Entity) error { return nil }

// Action reports that the broker is not available in this build.
func (MessageProvider) Action(_ context.Context, e *model.Entity, inv providers.Invocation) (any, error) {
	return nil, notYet(e, inv)
}

func notYet(e *model.Entity, inv providers.Invocation) error {
	return model.Errorf(http.StatusNotImplemented, "action %s on %s: the CMBS broker (ZeroMQ layers L1–L4) is not part of this build yet", inv.Term, e.Location)
}
