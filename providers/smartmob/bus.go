package smartmob

import (
	"context"
	"net/http"
	"sort"
	"strings"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/model"
)

// The methods in this file serve the processes by slug to callers other
// than HTTP (the smartmob Choria agent, providers/choriaagent): each goes
// through the same path as smartmob-agent's API or the OCCI interface
// (the entity service's create, action and delete), so the bus and HTTP
// share one implementation. Their errors carry the HTTP status the API
// answers.

// createFields are the fields of a create request: the required ones, and
// env.
var createFields = []string{"app", "node", "source_url", "process_type"}

// createInput checks a create request as smartmob-agent's create-process
// does (the four fields non-empty strings, env an object of strings, no
// other field) and returns the process attributes.
func createInput(req map[string]any) (map[string]any, error) {
	fields := map[string]any{}
	for _, f := range createFields {
		v, ok := req[f].(string)
		if !ok || v == "" {
			return nil, model.AttributeError(f, "required field %s is missing or not a non-empty string", f)
		}
		fields[f] = v
	}
	var extra []string
	for k := range req {
		if k != "env" && !contains(createFields, k) {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return nil, model.AttributeError(extra[0], "unknown field(s) %s", strings.Join(extra, ", "))
	}
	if env, ok := req["env"]; ok {
		m, ok := env.(map[string]any)
		if !ok {
			return nil, model.AttributeError("env", "env must be an object of strings")
		}
		for k, v := range m {
			if _, ok := v.(string); !ok {
				return nil, model.AttributeError("env", "env %s must be a string", k)
			}
		}
		fields["env"] = m
	}
	return fields, nil
}

// CreateProcess creates (provisions and starts) a process from a create
// request of smartmob-agent's API ({app, node, source_url, process_type,
// env?}) through the entity service, and returns its slug and location:
// 400 for a bad request (the error names the field), 409 when the slug is
// in use.
func (p *Provider) CreateProcess(ctx context.Context, req map[string]any) (slug, location string, err error) {
	fields, err := createInput(req)
	if err != nil {
		return "", "", err
	}
	kind, err := p.kind()
	if err != nil {
		return "", "", err
	}
	in := &model.EntityInput{Entity: model.Entity{Kind: categories.SmartmobProcessKind,
		Attributes: map[string]any{"smartmob": map[string]any{"process": fields}}}, Present: map[string]bool{"attributes": true}}
	locs, err := p.ents.Create(ctx, kind, model.TypeResource, []*model.EntityInput{in})
	if err != nil {
		return "", "", agentError(err)
	}
	if len(locs) > 0 {
		location = locs[0]
	}
	return fields["app"].(string) + "." + fields["node"].(string), location, nil
}

// entityBySlug returns the entity of the process with slug (404 when
// none).
func (p *Provider) entityBySlug(ctx context.Context, slug string) (*model.Entity, error) {
	loc := p.lookup(ctx, slug)
	if loc == "" {
		return nil, model.NotFound("no process %s", slug)
	}
	e, err := p.ents.Get(ctx, loc)
	if model.StatusOf(err) == http.StatusNotFound {
		return nil, model.NotFound("no process %s", slug)
	}
	return e, err
}

// summary is what a process's entity says about it, without env (which
// may hold secrets), with its location.
func summary(e *model.Entity) map[string]any {
	out := map[string]any{"location": e.Location}
	for k, v := range attrs(e) {
		if k != "env" {
			out[k] = v
		}
	}
	return out
}

// ListProcesses summarises every process as its entity holds it (slug,
// app, node, process_type, source_url, state, desired, pid, restarts,
// last_exit_code and started_at when set, location), ordered by slug.
func (p *Provider) ListProcesses(ctx context.Context) ([]map[string]any, error) {
	kind, err := p.kind()
	if err != nil {
		return nil, err
	}
	ents, err := p.ents.List(ctx, entities.ListQuery{Collection: kind})
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(ents))
	for _, e := range ents {
		out = append(out, summary(e))
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := out[i]["slug"].(string)
		b, _ := out[j]["slug"].(string)
		return a < b
	})
	return out, nil
}

// ProcessStatus summarises the process with slug as ListProcesses does
// (404 when there is none).
func (p *Provider) ProcessStatus(ctx context.Context, slug string) (map[string]any, error) {
	e, err := p.entityBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	return summary(e), nil
}

// ProcessAction runs the OCCI action term (start, stop or restart) on the
// process with slug, as POST <location>?action=<term> does, and returns
// its result (slug, state, desired, pid, restarts, last_exit_code,
// started_at) with the location.
func (p *Provider) ProcessAction(ctx context.Context, slug, term string) (map[string]any, error) {
	e, err := p.entityBySlug(ctx, slug)
	if err != nil {
		return nil, err
	}
	res, err := p.ents.Trigger(ctx, e.Location, term, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"location": e.Location}
	if m, ok := res.(map[string]any); ok {
		for k, v := range m {
			out[k] = v
		}
	}
	return out, nil
}

// DeleteProcess stops and removes the process with slug, as
// delete-process and an OCCI DELETE do (404 when there is none).
func (p *Provider) DeleteProcess(ctx context.Context, slug string) error {
	e, err := p.entityBySlug(ctx, slug)
	if err != nil {
		return err
	}
	if err := p.ents.Delete(ctx, e.Location, ""); err != nil {
		if model.StatusOf(err) == http.StatusNotFound {
			return model.NotFound("no process %s", slug)
		}
		return err
	}
	return nil
}
