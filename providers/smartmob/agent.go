package smartmob

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/cmbs/cmbs/internal/requestlog"
	"github.com/cmbs/cmbs/internal/wsconsole"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/httperr"
	"github.com/cmbs/cmbs/occi/model"
)

// AgentPrefix is where smartmob-agent's own API is served.
const AgentPrefix = "/smartmob-agent/"

// AgentOptions configures the smartmob-agent API.
type AgentOptions struct {
	// PublicURL is the base of the absolute URLs in answers; "" means from
	// the request's scheme and Host.
	PublicURL string
	// MaxBodyBytes bounds a request body (default 1 MiB).
	MaxBodyBytes int64
	Logger       *slog.Logger
}

// Agent serves smartmob-agent's HTTP API over the smartmob process
// entities, with the original's routes, JSON shapes and status codes:
// GET / (the create and list links), POST /create-process (201 with
// Location, 400 for a bad body, 409 for a slug in use), GET
// /list-processes, GET /process-status/{slug}, POST /delete-process/{slug}
// (200 {} once the process is gone) and GET /attach-console/{slug} (the
// process's WebSocket console; 404 before the handshake when unknown).
// Every answer carries X-Request-Id (the client's, or a new one), and the
// id goes with the archive's download.
type Agent struct {
	p    *Provider
	opts AgentOptions
}

// NewAgent returns the smartmob-agent API over p's processes.
func NewAgent(p *Provider, opts AgentOptions) *Agent {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.PublicURL = strings.TrimSuffix(opts.PublicURL, "/")
	return &Agent{p: p, opts: opts}
}

// ServeHTTP routes the smartmob-agent API.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := requestID(r.Context())
	if id == "" {
		if id = r.Header.Get(requestlog.Header); id == "" || len(id) > requestlog.MaxIDLength {
			id = rand.Text()
		}
	}
	w.Header().Set(requestlog.Header, id)
	r = r.WithContext(withRequestID(r.Context(), id))
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, a.opts.MaxBodyBytes)
	}
	rest, _ := strings.CutPrefix(r.URL.Path, AgentPrefix)
	route, slug, _ := strings.Cut(rest, "/")
	var err error
	switch {
	case rest == "":
		err = a.method(w, r, http.MethodGet, a.index)
	case rest == "create-process":
		err = a.method(w, r, http.MethodPost, a.create)
	case rest == "list-processes":
		err = a.method(w, r, http.MethodGet, a.list)
	case route == "process-status" && slug != "":
		err = a.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) error { return a.status(w, r, slug) })
	case route == "delete-process" && slug != "":
		err = a.method(w, r, http.MethodPost, func(w http.ResponseWriter, r *http.Request) error { return a.delete(w, r, slug) })
	case route == "attach-console" && slug != "":
		err = a.method(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) error { return a.attach(w, r, slug) })
	default:
		err = model.NotFound("no such resource %s", r.URL.Path)
	}
	if err != nil {
		writeError(w, a.opts.Logger, err)
	}
}

func (a *Agent) method(w http.ResponseWriter, r *http.Request, method string, h func(http.ResponseWriter, *http.Request) error) error {
	if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", method)
		return model.Errorf(http.StatusMethodNotAllowed, "%s answers %s only", r.URL.Path, method)
	}
	return h(w, r)
}

// base is the absolute URL of the API's root, without the trailing slash.
func (a *Agent) base(r *http.Request) string {
	if a.opts.PublicURL != "" {
		return a.opts.PublicURL + strings.TrimSuffix(AgentPrefix, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + strings.TrimSuffix(AgentPrefix, "/")
}

func (a *Agent) index(w http.ResponseWriter, r *http.Request) error {
	b := a.base(r)
	return writeJSON(w, r, http.StatusOK, map[string]any{"create": b + "/create-process", "list": b + "/list-processes"})
}

// statusOf is the original's process status document.
func (a *Agent) statusOf(r *http.Request, app, slug, state string) map[string]any {
	b := a.base(r)
	ws := "ws" + strings.TrimPrefix(b, "http")
	return map[string]any{
		"app": app, "slug": slug, "state": state,
		"attach":  ws + "/attach-console/" + slug,
		"details": b + "/process-status/" + slug,
		"delete":  b + "/delete-process/" + slug,
	}
}

func (a *Agent) entityStatus(r *http.Request, e *model.Entity) map[string]any {
	at := attrs(e)
	app, _ := at["app"].(string)
	slug, _ := at["slug"].(string)
	state, _ := at["state"].(string)
	return a.statusOf(r, app, slug, state)
}

func (a *Agent) create(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return model.Errorf(http.StatusRequestEntityTooLarge, "the request body exceeds %d bytes", mbe.Limit)
		}
		return model.BadRequest("cannot read the request body: %v", err)
	}
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		return model.BadRequest("the body must be a JSON object: {\"app\", \"node\", \"source_url\", \"process_type\", \"env\"?}")
	}
	slug, _, err := a.p.CreateProcess(r.Context(), req)
	if err != nil {
		return err
	}
	st := a.statusOf(r, req["app"].(string), slug, "pending")
	w.Header().Set("Location", st["details"].(string))
	return writeJSON(w, r, http.StatusCreated, st)
}

// agentError maps an attribute error of the entity service to the field
// name of the original API.
func agentError(err error) error {
	var me *model.Error
	if errors.As(err, &me) && strings.HasPrefix(me.Attribute, "smartmob.process.") {
		c := *me
		c.Attribute = strings.TrimPrefix(me.Attribute, "smartmob.process.")
		return &c
	}
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (a *Agent) list(w http.ResponseWriter, r *http.Request) error {
	kind, err := a.p.kind()
	if err != nil {
		return err
	}
	ents, err := a.p.ents.List(r.Context(), entities.ListQuery{Collection: kind})
	if err != nil {
		return err
	}
	out := make([]any, 0, len(ents))
	for _, e := range ents {
		out = append(out, a.entityStatus(r, e))
	}
	return writeJSON(w, r, http.StatusOK, map[string]any{"processes": out})
}

// bySlug returns the entity of the process with slug (404 when none).
func (a *Agent) bySlug(r *http.Request, slug string) (*model.Entity, error) {
	return a.p.entityBySlug(r.Context(), slug)
}

func (a *Agent) status(w http.ResponseWriter, r *http.Request, slug string) error {
	e, err := a.bySlug(r, slug)
	if err != nil {
		return err
	}
	return writeJSON(w, r, http.StatusOK, a.entityStatus(r, e))
}

func (a *Agent) delete(w http.ResponseWriter, r *http.Request, slug string) error {
	if err := a.p.DeleteProcess(r.Context(), slug); err != nil {
		return err
	}
	return writeJSON(w, r, http.StatusOK, map[string]any{})
}

func (a *Agent) attach(w http.ResponseWriter, r *http.Request, slug string) error {
	loc := a.p.lookup(r.Context(), slug)
	if loc == "" {
		return model.NotFound("no process %s", slug)
	}
	pr := a.p.proc(loc)
	if pr == nil {
		e, err := a.p.ents.Get(r.Context(), loc)
		if err == nil && a.p.serverOf(e) != a.p.opts.Server {
			return misdirected(e, a.p.serverOf(e))
		}
		return model.NotFound("no process %s", slug)
	}
	tail, err := wsconsole.Tail(r)
	if err != nil {
		return err
	}
	a.opts.Logger.Info("process.attach", "slug", slug)
	wsconsole.Serve(w, r, tail, pr.console)
	return nil
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(b, '\n'))
	}
	return nil
}

// writeError answers err in the server's JSON error shape, with the status
// the server gives it (httperr: the one mapping).
func writeError(w http.ResponseWriter, logger *slog.Logger, err error) {
	httperr.WriteJSON(w, nil, logger, err)
}
