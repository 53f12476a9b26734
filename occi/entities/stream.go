package entities

import (
	"context"
	"net/http"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
)

// TriggerStream runs the action term on the entity at location with the
// request body as a raw stream (see providers.Streamer): the action must be
// declared by the entity's kind or mixins, and its provider must take
// streams (415 otherwise). The invocation has no attributes; the provider
// reads its parameters from st.Query.
func (s *Service) TriggerStream(ctx context.Context, location, term string, st *providers.Stream) error {
	e, err := s.Get(ctx, location)
	if err != nil {
		return err
	}
	action, err := s.cats.Action(e.Kind, e.Mixins, term)
	if err != nil {
		return err
	}
	p, err := s.provider(e.Kind)
	if err != nil {
		return err
	}
	sp, ok := p.(providers.Streamer)
	if !ok {
		return model.Errorf(http.StatusUnsupportedMediaType, "action %s on %s takes no %s body: send its attributes as application/occi+json", term, e.Location, providers.StreamMediaType)
	}
	inv := providers.Invocation{Term: term, Action: action, Attributes: map[string]any{}}
	if err := sp.StreamAction(ctx, e, inv, st); err != nil {
		return providerError("run action "+term+" on", e.Location, err)
	}
	return nil
}
