package process

import (
	"context"
	"strings"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
)

// ExecuteRef runs the definition ref names (an id, a location or a URL
// ending in one) exactly as POST <definition>?action=execute does with
// attrs (input or input_base64, timeout): a single definition runs once
// and the result is returned; a service starts and its running execution
// is returned. The bus's process agent calls it. An unknown definition is
// a 404 error, bad attributes a 400, as over HTTP.
func (p *Provider) ExecuteRef(ctx context.Context, ref string, attrs map[string]any, trigger string) (map[string]any, error) {
	loc, err := DefinitionLocation(ref)
	if err != nil {
		return nil, model.AttributeError("definition", "definition: %v", err)
	}
	e, err := p.ents.Get(ctx, loc)
	if err != nil || e.Kind != categories.ProcessDefinitionKind {
		return nil, model.NotFound("no process definition %s on this server", loc)
	}
	res, err := p.execute(ctx, e, attrs, trigger)
	if err != nil {
		return nil, err
	}
	switch r := res.(type) {
	case map[string]any:
		return r, nil
	case providers.Accepted:
		if m, ok := r.Result.(map[string]any); ok {
			return m, nil
		}
		return map[string]any{"execution": r.Location}, nil
	}
	return nil, model.Errorf(500, "unexpected execute result %T", res)
}

// Definitions lists the registered definitions, ordered by location: at
// most limit (0: no limit) after skipping skip. Each is summarised as
// id, location, exec, argv, process_type, and application and owner when
// set.
func (p *Provider) Definitions(ctx context.Context, limit, skip int) ([]map[string]any, error) {
	kind, ok := p.ents.Categories().Get(categories.ProcessDefinitionKind)
	if !ok {
		return nil, model.Errorf(500, "kind %s is not registered", categories.ProcessDefinitionKind)
	}
	all, err := p.ents.List(ctx, entities.ListQuery{Collection: kind, Limit: limit, Skip: skip})
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(all))
	for _, e := range all {
		s := map[string]any{"id": e.Location[strings.LastIndex(e.Location, "/")+1:], "location": e.Location}
		if d, err := Definition(e); err == nil {
			argv := d.Argv
			if argv == nil {
				argv = []string{}
			}
			s["exec"], s["argv"], s["process_type"] = d.Exec, argv, d.ProcessType
			if d.Application != "" {
				s["application"] = d.Application
			}
		}
		if owner := Owner(e); owner != "" {
			s["owner"] = owner
		}
		out = append(out, s)
	}
	return out, nil
}
