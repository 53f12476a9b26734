package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/jsonscan"
	"github.com/cmbs/cmbs/occi/basicauth"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/httperr"
	"github.com/cmbs/cmbs/occi/model"
)

// APIPrefix is where the Process Registry's own API is served.
const APIPrefix = "/api/process_definition/"

const (
	defaultPageLimit = 20
	maxPageLimit     = 1000
	definitionPrefix = "/process/definition/"
)

// FacadeOptions configures the registry API.
type FacadeOptions struct {
	// PublicURL is the base of absolute Location headers; "" means from
	// the request's Host.
	PublicURL string
	// MaxBodyBytes bounds a request body (default 4 MiB).
	MaxBodyBytes int64
	Logger       *slog.Logger
}

// Facade serves the Process Registry's API (django-tastypie shapes) over
// the definition entities: GET/POST on /api/process_definition/ (list with
// meta/objects, limit/offset paging; create → 201 + Location), and
// GET/PUT/PATCH/DELETE on /api/process_definition/<id>/. Behind the
// server's --users authentication each user sees and changes only their
// own definitions (another user's answers 404). Deleting is allowed (204);
// PUT or DELETE on the list answers 405, so nobody replaces a whole
// collection by accident.
type Facade struct {
	ents Entities
	opts FacadeOptions
}

// NewFacade returns the registry API over ents.
func NewFacade(ents Entities, opts FacadeOptions) *Facade {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 4 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.PublicURL = strings.TrimSuffix(opts.PublicURL, "/")
	return &Facade{ents: ents, opts: opts}
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)

// ServeHTTP routes the registry API.
func (f *Facade) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, APIPrefix)
	if !ok {
		f.fail(w, model.NotFound("no such resource %s", r.URL.Path))
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, f.opts.MaxBodyBytes)
	}
	var err error
	if rest == "" {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			err = f.list(w, r)
		case http.MethodPost:
			err = f.create(w, r)
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			err = model.Errorf(http.StatusMethodNotAllowed, "%s on the definition list is not allowed (a list is not replaced or deleted whole); allowed: GET, HEAD, POST", r.Method)
		}
	} else {
		id := strings.TrimSuffix(rest, "/")
		if !idPattern.MatchString(id) {
			f.fail(w, model.NotFound("no definition %q", rest))
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			err = f.get(w, r, id)
		case http.MethodPut:
			err = f.put(w, r, id)
		case http.MethodPatch:
			err = f.patch(w, r, id)
		case http.MethodDelete:
			err = f.delete(w, r, id)
		default:
			w.Header().Set("Allow", "GET, HEAD, PUT, PATCH, DELETE")
			err = model.Errorf(http.StatusMethodNotAllowed, "%s is not allowed on a definition; allowed: GET, HEAD, PUT, PATCH, DELETE", r.Method)
		}
	}
	if err != nil {
		f.fail(w, err)
	}
}

// object is a definition as the registry API shows it.
func object(e *model.Entity) map[string]any {
	id := strings.TrimPrefix(e.Location, definitionPrefix)
	def := subMapOrNil(subMapOrNil(e.Attributes, "process"), "definition")
	if def == nil {
		def = map[string]any{}
	}
	return map[string]any{"definition": def, "id": id, "resource_uri": APIPrefix + id + "/"}
}

func (f *Facade) list(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, offset := defaultPageLimit, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return model.AttributeError("limit", "limit %q: want a count (0 = as many as allowed)", v)
		}
		limit = n
	}
	if limit == 0 || limit > maxPageLimit {
		limit = maxPageLimit
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return model.AttributeError("offset", "offset %q: want a count", v)
		}
		offset = n
	}
	kind, err := f.kind()
	if err != nil {
		return err
	}
	lq := entities.ListQuery{Collection: kind}
	if user, ok := basicauth.User(r.Context()); ok {
		lq.Filters = []map[string]any{{"attributes": map[string]any{"process.owner": user}}}
	}
	all, err := f.ents.List(r.Context(), lq)
	if err != nil {
		return err
	}
	objects := []any{}
	for i := offset; i < len(all) && i < offset+limit; i++ {
		objects = append(objects, object(all[i]))
	}
	page := func(off int) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("limit", strconv.Itoa(limit))
		v.Set("offset", strconv.Itoa(off))
		return APIPrefix + "?" + v.Encode()
	}
	meta := map[string]any{"limit": limit, "offset": offset, "total_count": len(all), "next": nil, "previous": nil}
	if offset+limit < len(all) {
		meta["next"] = page(offset + limit)
	}
	if offset > 0 {
		meta["previous"] = page(max(offset-limit, 0))
	}
	return writeJSON(w, r, http.StatusOK, map[string]any{"meta": meta, "objects": objects})
}

// readDefinition reads a body {"definition": {...}} (other members, such
// as the id and resource_uri a client sends back, are ignored).
func readDefinition(r *http.Request, required bool) (map[string]any, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, model.Errorf(http.StatusRequestEntityTooLarge, "the body exceeds %d bytes", mbe.Limit)
		}
		return nil, model.BadRequest("cannot read the body: %v", err)
	}
	v, err := jsonscan.Decode(data)
	if err != nil {
		return nil, model.BadRequest("invalid JSON: %v", err)
	}
	body, ok := v.(map[string]any)
	if !ok {
		return nil, model.BadRequest("the body must be a JSON object {\"definition\": {...}}")
	}
	raw, present := body["definition"]
	if !present && !required {
		return nil, nil
	}
	def, ok := raw.(map[string]any)
	if !ok {
		return nil, model.AttributeError("definition", "definition must be a JSON object (the process definition), not %s", kindOf(raw))
	}
	return def, nil
}

func kindOf(v any) string {
	if v == nil {
		return "missing or null"
	}
	return fmt.Sprintf("%T", v)
}

func definitionInput(kind string, def map[string]any) *model.EntityInput {
	return &model.EntityInput{
		Entity:  model.Entity{Kind: kind, Attributes: map[string]any{"process": map[string]any{"definition": def}}},
		Present: map[string]bool{"kind": true, "attributes": true},
	}
}

func (f *Facade) create(w http.ResponseWriter, r *http.Request) error {
	def, err := readDefinition(r, true)
	if err != nil {
		return err
	}
	kind, err := f.kind()
	if err != nil {
		return err
	}
	locs, err := f.ents.Create(r.Context(), kind, model.TypeResource, []*model.EntityInput{definitionInput(kind.ID(), def)})
	if err != nil {
		return err
	}
	id := strings.TrimPrefix(locs[0], definitionPrefix)
	w.Header().Set("Location", f.base(r)+APIPrefix+id+"/")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// owned returns the definition id when the caller may see it; another
// user's is not found, as an unknown id is.
func (f *Facade) owned(ctx context.Context, id string) (*model.Entity, error) {
	e, err := f.ents.Get(ctx, definitionPrefix+id)
	if err == nil && e.Kind != categories.ProcessDefinitionKind {
		err = model.NotFound("no definition %s", id)
	}
	if err != nil {
		if model.StatusOf(err) == http.StatusNotFound {
			return nil, model.NotFound("no definition %s", id)
		}
		return nil, err
	}
	if user, ok := basicauth.User(ctx); ok && Owner(e) != user {
		return nil, model.NotFound("no definition %s", id)
	}
	return e, nil
}

func (f *Facade) get(w http.ResponseWriter, r *http.Request, id string) error {
	e, err := f.owned(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, r, http.StatusOK, object(e))
}

func (f *Facade) put(w http.ResponseWriter, r *http.Request, id string) error {
	def, err := readDefinition(r, true)
	if err != nil {
		return err
	}
	if _, err := f.owned(r.Context(), id); err != nil && model.StatusOf(err) != http.StatusNotFound {
		return err
	} else if err != nil {
		// Absent, or another user's: PUT creates it (tastypie), unless the
		// id is taken by someone else.
		if _, gerr := f.ents.Get(r.Context(), definitionPrefix+id); gerr == nil {
			return err
		}
	}
	_, created, err := f.ents.Replace(r.Context(), definitionPrefix+id, "", model.TypeResource, definitionInput(categories.ProcessDefinitionKind, def))
	if err != nil {
		return err
	}
	if created {
		w.Header().Set("Location", f.base(r)+APIPrefix+id+"/")
		w.WriteHeader(http.StatusCreated)
		return nil
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (f *Facade) patch(w http.ResponseWriter, r *http.Request, id string) error {
	def, err := readDefinition(r, false)
	if err != nil {
		return err
	}
	if _, err := f.owned(r.Context(), id); err != nil {
		return err
	}
	if def != nil {
		in := &model.EntityInput{Entity: model.Entity{Attributes: map[string]any{"process": map[string]any{"definition": def}}},
			Present: map[string]bool{"attributes": true}}
		if _, err := f.ents.Update(r.Context(), definitionPrefix+id, "", in); err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (f *Facade) delete(w http.ResponseWriter, r *http.Request, id string) error {
	if _, err := f.owned(r.Context(), id); err != nil {
		return err
	}
	if err := f.ents.Delete(r.Context(), definitionPrefix+id, ""); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (f *Facade) kind() (*model.Category, error) {
	k, ok := f.ents.Categories().Get(categories.ProcessDefinitionKind)
	if !ok {
		return nil, model.Errorf(http.StatusInternalServerError, "kind %s is not registered", categories.ProcessDefinitionKind)
	}
	return k, nil
}

func (f *Facade) base(r *http.Request) string {
	if f.opts.PublicURL != "" {
		return f.opts.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Vary", "Accept")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(b, '\n'))
	}
	return nil
}

// fail answers an error in the server's JSON error shape.
func (f *Facade) fail(w http.ResponseWriter, err error) { writeError(w, f.opts.Logger, err) }

// writeError answers err in the server's JSON error shape, with the status
// the server gives it (httperr: the one mapping).
func writeError(w http.ResponseWriter, logger *slog.Logger, err error) {
	httperr.WriteJSON(w, nil, logger, err)
}
