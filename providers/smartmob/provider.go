package smartmob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process/supervisor"
	"github.com/cmbs/cmbs/providers/smartmob/provision"
	"github.com/cmbs/cmbs/store"
)

// Entities is what the provider needs from the OCCI entity service: it
// writes the live state of its processes and lists them through it.
// *entities.Service satisfies it.
type Entities interface {
	Get(ctx context.Context, location string) (*model.Entity, error)
	Create(ctx context.Context, kind *model.Category, typ string, inputs []*model.EntityInput) ([]string, error)
	Update(ctx context.Context, location, ifMatch string, in *model.EntityInput) (*model.Entity, error)
	Delete(ctx context.Context, location, ifMatch string) error
	Trigger(ctx context.Context, location, term string, attrs map[string]any) (any, error)
	List(ctx context.Context, q entities.ListQuery) ([]*model.Entity, error)
	Categories() *categories.Registry
}

var _ Entities = (*entities.Service)(nil)

// Publisher publishes events on the bus (cmbsd's --events-out): each
// console line and state change of a process under smartmob.<slug>.
type Publisher interface {
	PublishJSON(id string, v any) error
}

// Options configures a Provider.
type Options struct {
	// Supervisor runs the processes; it is shared with the Process
	// Registry's services and closed by its owner, not by the provider.
	Supervisor *supervisor.Supervisor
	// RunDir holds a private directory per process (RunDir/smartmob/<id>:
	// the archive and the unpacked source); "" = the system's temporary
	// directory.
	RunDir string
	// Fetcher downloads archives (timeout, size cap); nil = the defaults.
	Fetcher *provision.Fetcher
	// Base is the processes' base environment; nil = a minimal one (PATH,
	// HOME, LANG).
	Base []string
	// Events, when set, receives each console line and state change.
	Events Publisher
	// Logger receives the provider's logs; nil discards them.
	Logger *slog.Logger
	// Server names this server among those sharing the store: it is
	// written to every process it creates (smartmob.process.server), and
	// only the processes named so are run here. "" = "local".
	Server string
	// Slugs, when set, is the store the slugs are reserved in, one
	// document per slug (smartmob-slug:<slug>), so that a slug is unique
	// across every server sharing it; nil = the provider's own index only.
	Slugs SlugStore
}

// SlugStore is what the provider needs from the store to reserve slugs;
// store.Store satisfies it.
type SlugStore interface {
	Get(ctx context.Context, id string) (store.Document, error)
	Put(ctx context.Context, doc store.Document) (string, error)
	Delete(ctx context.Context, id, rev string) (string, error)
}

// Provider serves the smartmob process kind.
type Provider struct {
	ents Entities
	opts Options
	sup  *supervisor.Supervisor
	log  *slog.Logger

	// ctx is cancelled by Stop: provisioning in flight ends with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // run and watch goroutines

	mu      sync.Mutex
	stopped bool
	procs   map[string]*proc  // by location: the processes this server runs
	slugs   map[string]string // slug → location, of procs
	// released are the slugs of processes another server runs that this
	// one is deleting (by location): freed once the deletion is stored.
	released map[string]string
}

var (
	_ providers.Provider = (*Provider)(nil)
	_ providers.Preparer = (*Provider)(nil)
	_ providers.Starter  = (*Provider)(nil)
	_ providers.Stopper  = (*Provider)(nil)
	_ providers.Observer = (*Provider)(nil)
)

// New returns the provider, storing through ents and running processes
// on opts.Supervisor (one of its own, closed by Stop, when nil).
func New(ents Entities, opts Options) *Provider {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RunDir == "" {
		opts.RunDir = os.TempDir()
	}
	if opts.Fetcher == nil {
		opts.Fetcher = &provision.Fetcher{}
	}
	if opts.Server == "" {
		opts.Server = "local"
	}
	p := &Provider{ents: ents, opts: opts, sup: opts.Supervisor, log: opts.Logger.With("component", "smartmob"),
		procs: map[string]*proc{}, slugs: map[string]string{}, released: map[string]string{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// Register registers the provider under categories.SmartmobProvider, the
// name the smartmob kind is bound to.
func (p *Provider) Register(reg *providers.Registry) error {
	return reg.Register(categories.SmartmobProvider, p)
}

// Supervisor is the supervisor the processes run on.
func (p *Provider) Supervisor() *supervisor.Supervisor { return p.sup }

// Server is the name of this server (Options.Server).
func (p *Provider) Server() string { return p.opts.Server }

// serverOf is the server that runs the process of e: the one named in it,
// or, for a process stored before servers were named, this one.
func (p *Provider) serverOf(e *model.Entity) string {
	if s, _ := attrs(e)["server"].(string); s != "" {
		return s
	}
	return p.opts.Server
}

// Start takes over the stored processes this server runs (see serverOf):
// their slugs are reserved again, and each one whose desired state is
// running is provisioned and started again (in the background: Start
// returns at once). The processes of other servers are left to them.
func (p *Provider) Start(ctx context.Context) error {
	if p.sup == nil {
		p.sup = supervisor.New(supervisor.Options{Logger: p.opts.Logger})
		p.opts.Supervisor = nil // ours: closed by Stop
	}
	kind, err := p.kind()
	if err != nil {
		return err
	}
	list, err := p.ents.List(ctx, entities.ListQuery{Collection: kind})
	if err != nil {
		return fmt.Errorf("list smartmob processes: %w", err)
	}
	own := 0
	for _, e := range list {
		if p.serverOf(e) != p.opts.Server {
			continue
		}
		own++
		pr := newProc(e, p.dirOf(e))
		if err := p.reserveSlug(ctx, pr.slug, pr.loc); err != nil {
			p.log.Warn("a restored process's slug is taken", "slug", pr.slug, "location", pr.loc, "err", err)
		}
		p.mu.Lock()
		p.procs[pr.loc] = pr
		p.slugs[pr.slug] = pr.loc
		p.mu.Unlock()
		if pr.desired == desiredRunning {
			p.launch(pr, "")
			continue
		}
		// What the store says ran before the restart runs no more.
		if pr.state != supervisor.StateStopped && !failed(pr.state) {
			pr.setState(supervisor.StateStopped)
			p.persist(pr, false)
		}
	}
	p.log.Info("smartmob processes restored", "count", own, "server", p.opts.Server, "others", len(list)-own)
	return nil
}

// Stop stops every process (their desired state stays as stored, so that
// the next start runs them again) and returns once they are gone.
func (p *Provider) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.stopped = true
	procs := make([]*proc, 0, len(p.procs))
	for _, pr := range p.procs {
		procs = append(procs, pr)
	}
	p.mu.Unlock()
	p.cancel()
	// All at once: each may take the kill grace.
	var (
		errs   []error
		errsMu sync.Mutex
		halts  sync.WaitGroup
	)
	for _, pr := range procs {
		halts.Go(func() {
			if err := p.halt(ctx, pr); err != nil {
				errsMu.Lock()
				errs = append(errs, err)
				errsMu.Unlock()
			}
		})
	}
	halts.Wait()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("smartmob processes still stopping: %w", ctx.Err()))
	}
	if p.opts.Supervisor == nil && p.sup != nil {
		errs = append(errs, p.sup.Close(ctx))
	}
	return errors.Join(errs...)
}

func (p *Provider) kind() (*model.Category, error) {
	k, ok := p.ents.Categories().Get(categories.SmartmobProcessKind)
	if !ok {
		return nil, model.Errorf(http.StatusInternalServerError, "kind %s is not registered", categories.SmartmobProcessKind)
	}
	return k, nil
}

// dirOf is the private directory of a process.
func (p *Provider) dirOf(e *model.Entity) string {
	return filepath.Join(p.opts.RunDir, "smartmob", e.ID)
}

// internalKey marks the provider's own writes of the read-only attributes.
type internalKey struct{}

func internal(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalKey{}, true)
}

func isInternal(ctx context.Context) bool { v, _ := ctx.Value(internalKey{}).(bool); return v }

// attrs is the smartmob.process object of an entity (created when absent).
func attrs(e *model.Entity) map[string]any {
	if e.Attributes == nil {
		e.Attributes = map[string]any{}
	}
	sm, ok := e.Attributes["smartmob"].(map[string]any)
	if !ok {
		sm = map[string]any{}
		e.Attributes["smartmob"] = sm
	}
	pr, ok := sm["process"].(map[string]any)
	if !ok {
		pr = map[string]any{}
		sm["process"] = pr
	}
	return pr
}

func readOnlyError(names []string) error {
	full := make([]string, len(names))
	for i, n := range names {
		full[i] = "smartmob.process." + n
	}
	err := model.BadRequest("%s %s written by the server; start, stop and restart change the process", strings.Join(full, ", "), map[bool]string{true: "is", false: "are"}[len(full) == 1])
	err.Attribute = full[0]
	return err
}

// Prepare refuses the read-only attributes on a new process, checks env
// (strings only) and fills in slug, state pending and desired running.
func (p *Provider) Prepare(ctx context.Context, e *model.Entity) error {
	a := attrs(e)
	if !isInternal(ctx) {
		var given []string
		for _, n := range categories.SmartmobReadOnly {
			if _, ok := a[n]; ok {
				given = append(given, n)
			}
		}
		if len(given) > 0 {
			return readOnlyError(given)
		}
	}
	if err := checkEnv(a["env"]); err != nil {
		return err
	}
	app, _ := a["app"].(string)
	node, _ := a["node"].(string)
	if app != "" && node != "" {
		a["slug"] = app + "." + node
	}
	a["state"] = supervisor.StatePending
	a["desired"] = desiredRunning
	a["server"] = p.opts.Server
	a["restarts"] = float64(0)
	a["pid"] = float64(0)
	return nil
}

func checkEnv(v any) error {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return model.AttributeError("smartmob.process.env", "env must be an object of strings")
	}
	for k, val := range m {
		if _, ok := val.(string); !ok {
			return model.AttributeError("smartmob.process.env", "env %s must be a string, not %v", k, val)
		}
	}
	return nil
}

// Create reserves the new process's slug (409 when another process has
// it) and provisions and starts it.
func (p *Provider) Create(ctx context.Context, e *model.Entity) error {
	pr := newProc(e, p.dirOf(e))
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return model.Errorf(http.StatusServiceUnavailable, "the server is shutting down")
	}
	if other, ok := p.slugs[pr.slug]; ok && other != pr.loc {
		p.mu.Unlock()
		return slugConflict(pr.slug, other)
	}
	p.mu.Unlock()
	if err := p.reserveSlug(ctx, pr.slug, pr.loc); err != nil {
		return err
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		p.releaseSlug(pr.slug, pr.loc)
		return model.Errorf(http.StatusServiceUnavailable, "the server is shutting down")
	}
	if other, ok := p.slugs[pr.slug]; ok && other != pr.loc {
		p.mu.Unlock()
		return slugConflict(pr.slug, other)
	}
	p.slugs[pr.slug] = pr.loc
	p.procs[pr.loc] = pr
	p.mu.Unlock()
	if pr.desired == desiredRunning {
		p.launch(pr, requestID(ctx))
	}
	return nil
}

// Update refuses client changes to the read-only attributes and to app and
// node (the slug); a change to source_url, process_type or env applies
// from the next start. A read-only attribute the client left out keeps
// its value.
func (p *Provider) Update(ctx context.Context, old, updated *model.Entity) error {
	if isInternal(ctx) {
		return nil
	}
	oa, ua := attrs(old), attrs(updated)
	var changed []string
	for _, n := range append([]string{"app", "node"}, categories.SmartmobReadOnly...) {
		v, ok := ua[n]
		if !ok {
			if ov, had := oa[n]; had {
				ua[n] = ov
			}
			continue
		}
		if !reflect.DeepEqual(v, oa[n]) {
			changed = append(changed, n)
		}
	}
	if len(changed) > 0 {
		return readOnlyError(changed)
	}
	return checkEnv(ua["env"])
}

// Delete stops the process (TERM to its group, KILL after the grace) and
// removes its directory before the entity goes. A process another server
// runs is stopped there, when that server sees the deletion in the
// changes feed (ApplyChanges); its slug is freed here once the deletion
// is stored.
func (p *Provider) Delete(ctx context.Context, e *model.Entity) error {
	p.mu.Lock()
	pr := p.procs[e.Location]
	if pr == nil {
		if slug, _ := attrs(e)["slug"].(string); slug != "" {
			p.released[e.Location] = slug
		}
	}
	p.mu.Unlock()
	if pr == nil {
		return nil
	}
	pr.markRemoved()
	if err := p.halt(ctx, pr); err != nil {
		return err
	}
	// The state was written as the process ran and stopped, after the
	// deletion read the entity: it goes ahead on the revision now stored.
	if cur, err := p.ents.Get(ctx, e.Location); err == nil {
		e.Rev = cur.Rev
	}
	if err := os.RemoveAll(pr.dir); err != nil {
		p.log.Warn("cannot remove a process directory", "dir", pr.dir, "err", err)
	}
	return nil
}

// Committed keeps the provider's view in step with the store: a deleted
// process (or a create undone) frees its slug; a changed one takes its new
// source, process type and env for its next start.
func (p *Provider) Committed(location string, e *model.Entity) {
	p.mu.Lock()
	slug, releasing := p.released[location]
	delete(p.released, location)
	pr := p.procs[location]
	if pr == nil {
		p.mu.Unlock()
		if e == nil && releasing {
			p.releaseSlug(slug, location)
		}
		return
	}
	if e == nil {
		delete(p.procs, location)
		if p.slugs[pr.slug] == location {
			delete(p.slugs, pr.slug)
		}
		p.mu.Unlock()
		p.releaseSlug(pr.slug, location)
		return
	}
	p.mu.Unlock()
	pr.refresh(e)
}

// Action runs start, stop and restart and answers the process's status.
//
// On a server that does not run the process, the action is written to
// the entity (its desired state; a restart request) for the server that
// runs it to apply from the changes feed, and the answer is the process's
// read-only attributes as written.
func (p *Provider) Action(ctx context.Context, e *model.Entity, inv providers.Invocation) (any, error) {
	term := inv.ActionTerm()
	if term != "start" && term != "stop" && term != "restart" {
		return nil, model.BadRequest("action %q is not an action of %s", inv.Term, e.Kind)
	}
	p.mu.Lock()
	pr := p.procs[e.Location]
	p.mu.Unlock()
	if pr == nil {
		if owner := p.serverOf(e); owner != p.opts.Server {
			return p.remoteAction(ctx, e, term)
		}
		return nil, model.NotFound("no smartmob process at %s", e.Location)
	}
	pr.actMu.Lock()
	defer pr.actMu.Unlock()
	if err := p.act(ctx, pr, term, requestID(ctx)); err != nil {
		p.persist(pr, true)
		return nil, err
	}
	p.persist(pr, true)
	return pr.fields(), nil
}

// act runs an action on a process of this server (under pr.actMu).
func (p *Provider) act(ctx context.Context, pr *proc, term, reqID string) error {
	switch term {
	case "start":
		pr.setDesired(desiredRunning)
		if !pr.active() {
			p.launch(pr, reqID)
		}
	case "stop":
		pr.setDesired(desiredStopped)
		if err := p.halt(ctx, pr); err != nil {
			return err
		}
	case "restart":
		pr.setDesired(desiredRunning)
		if sp := pr.current(); sp != nil && pr.active() {
			if err := restartAndWait(ctx, sp); err != nil {
				return err
			}
		} else {
			p.launch(pr, reqID)
		}
	}
	return nil
}

// Lookup returns the location of the process with slug this server runs,
// or "".
func (p *Provider) Lookup(slug string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.slugs[slug]
}

// Slugs lists the slugs of the processes this server runs, sorted.
func (p *Provider) Slugs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.slugs))
	for s := range p.slugs {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func (p *Provider) proc(location string) *proc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.procs[location]
}
