// Package process is the provider of the Process Registry's kinds: process
// definitions (/process/definition/), whose execute action runs them once
// through the engine and answers the result, and execution records
// (/process/execution/), which the server writes and a client may cancel
// while running. It also serves the registry's own HTTP API
// (/api/process_definition/, tastypie shapes) over the same entities (see
// Facade), and runs a definition a CMBS message names (see RunForMessage).
package process

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/basicauth"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process/engine"
	"github.com/cmbs/cmbs/providers/process/supervisor"
)

// Entities is what the provider needs from the OCCI entity service: it
// stores execution records and reads definitions through it, so validation
// and this provider's hooks apply to them as to any client's.
// *entities.Service satisfies it.
type Entities interface {
	Get(ctx context.Context, location string) (*model.Entity, error)
	Create(ctx context.Context, kind *model.Category, typ string, inputs []*model.EntityInput) ([]string, error)
	CreateLaterTrusted(ctx context.Context, kind *model.Category, typ string, in *model.EntityInput) (string, error)
	Update(ctx context.Context, location, ifMatch string, in *model.EntityInput) (*model.Entity, error)
	Replace(ctx context.Context, location, ifMatch, typ string, in *model.EntityInput) (*model.Entity, bool, error)
	Delete(ctx context.Context, location, ifMatch string) error
	List(ctx context.Context, q entities.ListQuery) ([]*model.Entity, error)
	Categories() *categories.Registry
}

var _ Entities = (*entities.Service)(nil)

// Options configures a Provider. Zero values take the defaults.
type Options struct {
	// MaxOutput caps an execution's output and stderr, each, in bytes
	// (default 1 MiB); beyond it they are truncated and flagged.
	MaxOutput int64
	// KillGrace is the time between SIGTERM and SIGKILL on timeout or
	// cancel (default 2s).
	KillGrace time.Duration
	// MaxRecordOutput caps the output and stderr an execution record
	// stores, each, in bytes (default DefaultMaxRecordOutput); the action's
	// answer still carries them up to MaxOutput. A record that keeps less
	// says record_truncated, with output_size and stderr_size the full
	// lengths. Negative: the record keeps what the answer has.
	MaxRecordOutput int64
	// TempDir holds the private run directories ("" = the system's).
	TempDir string
	// Logger receives the provider's logs; nil discards them.
	Logger *slog.Logger
	// Supervisor runs service definitions; nil makes the provider its own
	// (closed by Stop). Stop stops the services it started either way.
	Supervisor *supervisor.Supervisor
	// Events, when set, receives every single run's status and output
	// lines under execution.<uuid> (see EventTopic).
	Events Events
}

// Provider serves the definition and execution kinds.
type Provider struct {
	ents      Entities
	runner    engine.Runner
	log       *slog.Logger
	maxRecord int64 // see Options.MaxRecordOutput; < 0: no cap
	events    Events

	// ctx is cancelled by Stop: every run in flight ends with it.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	stopped bool
	running map[string]*run // by execution location
	runs    sync.WaitGroup

	sup      *supervisor.Supervisor
	ownSup   bool
	services map[string]*service // running service executions by location
}

// run is an execution in flight.
type run struct {
	cancel context.CancelFunc
	done   chan struct{}
}

var (
	_ providers.Provider = (*Provider)(nil)
	_ providers.Preparer = (*Provider)(nil)
	_ providers.Stopper  = (*Provider)(nil)
)

// New returns the provider, storing through ents.
func New(ents Entities, opts Options) *Provider {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{
		ents:      ents,
		runner:    engine.Runner{MaxOutput: opts.MaxOutput, KillGrace: opts.KillGrace, TempDir: opts.TempDir},
		log:       opts.Logger.With("component", "process"),
		running:   map[string]*run{},
		sup:       opts.Supervisor,
		services:  map[string]*service{},
		maxRecord: opts.MaxRecordOutput,
		events:    opts.Events,
	}
	if p.maxRecord == 0 {
		p.maxRecord = DefaultMaxRecordOutput
	}
	if p.sup == nil {
		grace := opts.KillGrace
		if grace <= 0 {
			grace = engine.DefaultKillGrace
		}
		p.sup = supervisor.New(supervisor.Options{KillGrace: grace, Logger: opts.Logger})
		p.ownSup = true
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// Register registers the provider under categories.ProcessProvider, the
// name the built-in process kinds are bound to.
func (p *Provider) Register(reg *providers.Registry) error {
	return reg.Register(categories.ProcessProvider, p)
}

// Stop cancels every execution in flight (their process groups are
// killed), stops every service (recorded cancelled), and returns once
// they have ended and been recorded.
func (p *Provider) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cancel()
	done := make(chan struct{})
	go func() { p.runs.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("process executions still running: %w", ctx.Err())
	}
	return p.stopServices(ctx)
}

// beginRun looks up the execution kind and counts a run (or a service
// start) in flight, which Stop waits for; unless it fails, the caller
// calls p.runs.Done once the run is recorded.
func (p *Provider) beginRun() (*model.Category, error) {
	kind, ok := p.ents.Categories().Get(categories.ProcessExecutionKind)
	if !ok {
		return nil, model.Errorf(http.StatusInternalServerError, "kind %s is not registered", categories.ProcessExecutionKind)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil, model.Errorf(http.StatusServiceUnavailable, "the server is shutting down")
	}
	p.runs.Add(1)
	return kind, nil
}

// internalKey marks the provider's own writes of execution records.
type internalKey struct{}

func internal(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalKey{}, true)
}

func isInternal(ctx context.Context) bool { v, _ := ctx.Value(internalKey{}).(bool); return v }

func errReadOnly() error {
	return model.Errorf(http.StatusForbidden, "executions are records the server writes; run a definition with POST <definition location>?action=execute")
}

// Prepare validates a new definition and stores it canonical (argv,
// input_parameters, output_parameters), owned by the authenticated user if
// there is one. Executions are written only by the provider.
func (p *Provider) Prepare(ctx context.Context, e *model.Entity) error {
	switch e.Kind {
	case categories.ProcessDefinitionKind:
		if err := canonicalize(e.Attributes); err != nil {
			return err
		}
		proc := subMap(e.Attributes, "process")
		delete(proc, "owner")
		if user, ok := basicauth.User(ctx); ok {
			proc["owner"] = user
		}
		return nil
	case categories.ProcessExecutionKind:
		if !isInternal(ctx) {
			return errReadOnly()
		}
	}
	return nil
}

// Create accepts what Prepare accepted.
func (p *Provider) Create(ctx context.Context, e *model.Entity) error {
	if e.Kind == categories.ProcessExecutionKind && !isInternal(ctx) {
		return errReadOnly()
	}
	return nil
}

// Update validates a changed definition (made canonical like a new one; its
// owner never changes) and refuses changes to executions from clients.
func (p *Provider) Update(ctx context.Context, old, updated *model.Entity) error {
	switch updated.Kind {
	case categories.ProcessDefinitionKind:
		def := subMap(subMap(updated.Attributes, "process"), "definition")
		if args, ok := def["args"]; ok {
			// A partial update in the documentation's spelling replaces argv.
			def["argv"] = args
			delete(def, "args")
		}
		if err := canonicalize(updated.Attributes); err != nil {
			return err
		}
		proc := subMap(updated.Attributes, "process")
		delete(proc, "owner")
		if owner := Owner(old); owner != "" {
			proc["owner"] = owner
		}
	case categories.ProcessExecutionKind:
		if !isInternal(ctx) {
			return errReadOnly()
		}
	}
	return nil
}

// Delete allows deleting definitions and executions; a running execution
// is cancelled first (a service is stopped before the record goes).
func (p *Provider) Delete(ctx context.Context, e *model.Entity) error {
	if e.Kind == categories.ProcessExecutionKind {
		if _, err := p.stopService(ctx, e.Location, "", false); err != nil {
			return err
		}
		p.mu.Lock()
		r := p.running[e.Location]
		p.mu.Unlock()
		if r != nil {
			r.cancel()
		}
	}
	return nil
}

// Action runs execute on a definition and cancel on an execution.
func (p *Provider) Action(ctx context.Context, e *model.Entity, inv providers.Invocation) (any, error) {
	switch term := inv.ActionTerm(); {
	case term == "execute" && e.Kind == categories.ProcessDefinitionKind:
		return p.executeAction(ctx, e, inv.Attributes, "http")
	case term == "cancel" && e.Kind == categories.ProcessExecutionKind:
		return p.cancelRun(ctx, e)
	default:
		return nil, model.BadRequest("action %q is not an action of %s", term, e.Kind)
	}
}

// executeAction is the execute action on the definition e with its
// attributes: a single definition runs once (the result), a service starts
// (providers.Accepted). The bus's process agent runs it too.
func (p *Provider) executeAction(ctx context.Context, e *model.Entity, attrs map[string]any, trigger string) (any, error) {
	input, timeout, err := executeInputs(attrs)
	if err != nil {
		return nil, err
	}
	def, err := Definition(e)
	if err != nil {
		return nil, err
	}
	if def.ProcessType == engine.TypeService {
		return p.startService(ctx, e, def, input, trigger)
	}
	return p.execute(ctx, e, def, input, timeout, trigger)
}

// executeInputs reads execute's attributes: input or input_base64, and
// timeout.
func executeInputs(attrs map[string]any) (input []byte, timeout time.Duration, err error) {
	text, hasText := attrs["input"]
	b64, hasB64 := attrs["input_base64"]
	switch {
	case hasText && hasB64 && text != nil && b64 != nil:
		return nil, 0, model.AttributeError("input_base64", "give input or input_base64, not both")
	case hasText && text != nil:
		s, ok := text.(string)
		if !ok {
			return nil, 0, model.AttributeError("input", "input must be a string")
		}
		input = []byte(s)
	case hasB64 && b64 != nil:
		s, ok := b64.(string)
		if !ok {
			return nil, 0, model.AttributeError("input_base64", "input_base64 must be a string")
		}
		if input, err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, 0, model.AttributeError("input_base64", "input_base64 is not valid base64: %v", err)
		}
	}
	if v, ok := attrs["timeout"]; ok && v != nil {
		f, ok := v.(float64)
		if !ok || !(f > 0) {
			return nil, 0, model.AttributeError("timeout", "timeout must be a positive number of seconds")
		}
		timeout = time.Duration(f * float64(time.Second))
	}
	return input, timeout, nil
}

// Definition parses a stored definition entity.
func Definition(e *model.Entity) (*engine.Definition, error) {
	d, _, err := engine.Parse(subMapOrNil(subMapOrNil(e.Attributes, "process"), "definition"))
	if err != nil {
		return nil, fieldError(err)
	}
	return d, nil
}

// Owner is the user who registered a definition ("" without --users).
func Owner(e *model.Entity) string {
	s, _ := subMapOrNil(e.Attributes, "process")["owner"].(string)
	return s
}

// Execute runs the definition e once with input, records the run as an
// execution entity (created as running, completed with the result) and
// returns the result. trigger says what asked for the run. A run that
// could not start is a result with status error; a service definition is
// 409: services start with the execute action (see Action), which
// answers 202 at once.
func (p *Provider) Execute(ctx context.Context, e *model.Entity, input []byte, timeout time.Duration, trigger string) (map[string]any, error) {
	def, err := Definition(e)
	if err != nil {
		return nil, err
	}
	return p.execute(ctx, e, def, input, timeout, trigger)
}

// execute is Execute with the definition parsed.
func (p *Provider) execute(ctx context.Context, e *model.Entity, def *engine.Definition, input []byte, timeout time.Duration, trigger string) (map[string]any, error) {
	if def.ProcessType == engine.TypeService {
		err := model.Conflict("definition %s has process_type service: a service is started by POST %s?action=execute and runs until its execution is cancelled", e.Location, e.Location)
		err.Attribute = "process.definition.process_type"
		return nil, err
	}
	kind, err := p.beginRun()
	if err != nil {
		return nil, err
	}
	defer p.runs.Done()

	// The process starts at once, in this goroutine. A run still going
	// after runningRecordAfter gets a running record (which cancel and GET
	// find), written by a timer while it runs and completed with the
	// result before the result is answered. A quicker run's record is
	// created with its result in the background (CreateLater): the answer
	// names its location at once, and reads through the entity service
	// wait until it is stored.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopAfter := context.AfterFunc(p.ctx, cancel)
	defer stopAfter()
	started := time.Now().UTC()
	// The record's id is chosen now, so that the run's events carry it
	// from the first line on.
	id := uuid.NewString()
	ev := p.executionEvents(id, kind.Location+id, e.Location)
	ev.started(started)
	// Room for the result too (storeFields): the map does not grow.
	record := make(map[string]any, 16)
	record["definition"], record["status"], record["started_at"] = e.Location, engine.StatusRunning, started.Format(time.RFC3339Nano)
	record["input_size"], record["trigger"] = float64(len(input)), trigger
	r := &run{cancel: cancel, done: make(chan struct{})}
	recorded := make(chan runningRecord, 1)
	timer := time.AfterFunc(runningRecordAfter, func() {
		recorded <- p.recordRunning(r, func() (string, error) { return p.createRecord(ctx, kind, id, record) })
	})
	res, err := p.runner.Run(runCtx, def, engine.Request{Input: input, Timeout: timeout, Lines: ev.lines()})
	if timer.Stop() {
		// A run that ended quickly is recorded once, with its result:
		// nobody could have cancelled it anyway.
		if err != nil {
			ev.finished(nil, err)
			return nil, err
		}
		result := resultFields(res)
		p.storeFields(record, result, res)
		loc, err := p.createRecordLater(ctx, kind, id, record)
		if err != nil {
			ev.finished(nil, err)
			return nil, err
		}
		result["execution"] = loc
		result["definition"] = e.Location
		ev.finished(result, nil)
		return result, nil
	}
	rec := <-recorded
	if rec.err != nil {
		ev.finished(nil, rec.err)
		return nil, rec.err
	}
	loc := rec.loc
	defer p.runEnded(loc, r)
	if err != nil {
		ev.finished(nil, err)
		return nil, err
	}
	result := resultFields(res)
	stored := p.storedFields(result, res)
	// The record is completed even when the caller has gone away.
	saveCtx, cancelSave := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancelSave()
	if err := p.complete(saveCtx, loc, stored); err != nil {
		p.log.Error("could not record an execution's result", "execution", loc, "err", err)
		result["record_error"] = err.Error()
	}
	result["execution"] = loc
	result["definition"] = e.Location
	ev.finished(result, nil)
	return result, nil
}

// runningRecordAfter is how long a run may take before it gets a running
// execution record; a quicker one is recorded once, with its result.
const runningRecordAfter = 50 * time.Millisecond

// runningRecord is the record a long run got, or why it got none.
type runningRecord struct {
	loc string
	err error
}

// recordRunning writes a running run's record with create and makes the
// run cancellable at the record's location; a run that got no record is
// cancelled: a run nobody could find or cancel does not go on.
func (p *Provider) recordRunning(r *run, create func() (string, error)) runningRecord {
	loc, err := create()
	if err != nil {
		r.cancel()
		return runningRecord{loc, err}
	}
	p.mu.Lock()
	p.running[loc] = r
	p.mu.Unlock()
	return runningRecord{loc, nil}
}

// runEnded undoes recordRunning once the run at loc has ended.
func (p *Provider) runEnded(loc string, r *run) {
	p.mu.Lock()
	delete(p.running, loc)
	p.mu.Unlock()
	close(r.done)
}

// DefaultMaxRecordOutput is the default of Options.MaxRecordOutput.
const DefaultMaxRecordOutput = 64 << 10

// storedFields is a result as its execution record stores it: without
// null values, with the pid, and with output and stderr capped at
// p.maxRecord (a document of megabytes costs every store far more than
// the run, and CouchDB refuses one over its max_document_size).
func (p *Provider) storedFields(result map[string]any, res *engine.Result) map[string]any {
	stored := make(map[string]any, len(result)+1)
	p.storeFields(stored, result, res)
	return stored
}

// storeFields adds storedFields to the record stored.
func (p *Provider) storeFields(stored, result map[string]any, res *engine.Result) {
	for k, v := range result {
		if v != nil {
			stored[k] = v
		}
	}
	stored["pid"] = float64(res.Pid)
	if p.maxRecord < 0 || (int64(len(res.Output)) <= p.maxRecord && int64(len(res.Stderr)) <= p.maxRecord) {
		return
	}
	stored["record_truncated"] = true
	stored["output_size"] = float64(len(res.Output))
	stored["stderr_size"] = float64(len(res.Stderr))
	if int64(len(res.Output)) > p.maxRecord {
		out := res.Output[:p.maxRecord]
		if _, text := stored["output"]; text {
			stored["output"] = string(runePrefix(out))
		} else {
			stored["output_base64"] = base64.StdEncoding.EncodeToString(out)
		}
	}
	if int64(len(res.Stderr)) > p.maxRecord {
		stored["stderr"] = strings.ToValidUTF8(string(runePrefix(res.Stderr[:p.maxRecord])), "\uFFFD")
	}
}

// runePrefix drops an incomplete UTF-8 sequence a cut left at the end of b.
func runePrefix(b []byte) []byte {
	for i := 0; i < utf8.UTFMax && i < len(b); i++ {
		r, size := utf8.DecodeLastRune(b[:len(b)-i])
		if r != utf8.RuneError || size > 1 {
			return b[:len(b)-i]
		}
	}
	return b
}

// createRecord stores a new execution record with that id ("": a new
// one).
func (p *Provider) createRecord(ctx context.Context, kind *model.Category, id string, record map[string]any) (string, error) {
	in := &model.EntityInput{Entity: model.Entity{ID: id, Kind: kind.ID(), Attributes: map[string]any{"process": map[string]any{"execution": record}}},
		Present: map[string]bool{"kind": true, "attributes": true}}
	// The record is stored even when the caller has gone away.
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	locs, err := p.ents.Create(internal(saveCtx), kind, model.TypeResource, []*model.EntityInput{in})
	if err != nil {
		return "", fmt.Errorf("record the execution: %w", err)
	}
	return locs[0], nil
}

// createRecordLater queues a quick run's execution record, complete with
// its result, to be stored in the background, and returns its location.
func (p *Provider) createRecordLater(ctx context.Context, kind *model.Category, id string, record map[string]any) (string, error) {
	in := &model.EntityInput{Entity: model.Entity{ID: id, Kind: kind.ID(), Attributes: map[string]any{"process": map[string]any{"execution": record}}},
		Present: map[string]bool{"kind": true, "attributes": true}}
	// The run has happened: its record is queued even when the caller has
	// gone away (waiting only while the queue is full).
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	// The record is built here from the run's result, every value of the
	// type its attribute declares (recordMatchesValidated checks it): the
	// trusted path skips checking each value again.
	loc, err := p.ents.CreateLaterTrusted(internal(saveCtx), kind, model.TypeResource, in)
	if err != nil {
		return "", fmt.Errorf("record the execution: %w", err)
	}
	return loc, nil
}

// complete stores a run's result in its record, before the result is
// answered: once answered, it is stored.
func (p *Provider) complete(ctx context.Context, loc string, stored map[string]any) error {
	upd := &model.EntityInput{Entity: model.Entity{Attributes: map[string]any{"process": map[string]any{"execution": stored}}},
		Present: map[string]bool{"attributes": true}}
	_, err := p.ents.Update(internal(ctx), loc, "", upd)
	return err
}

// resultFields is a run's result as the action answers it.
func resultFields(res *engine.Result) map[string]any {
	out := map[string]any{
		"status":      res.Status,
		"exit_code":   nil,
		"stderr":      strings.ToValidUTF8(string(res.Stderr), "\uFFFD"),
		"started_at":  res.StartedAt.Format(time.RFC3339Nano),
		"finished_at": res.FinishedAt.Format(time.RFC3339Nano),
		"duration_ms": float64(res.Duration.Microseconds()) / 1000,
		"truncated":   res.Truncated,
	}
	if res.ExitCode != nil {
		out["exit_code"] = float64(*res.ExitCode)
	}
	if utf8.Valid(res.Output) {
		out["output"] = string(res.Output)
	} else {
		out["output_base64"] = base64.StdEncoding.EncodeToString(res.Output)
	}
	if res.StderrTruncated {
		out["stderr_truncated"] = true
	}
	if res.Error != "" {
		out["error"] = res.Error
	}
	return out
}

// cancelRun stops a running execution and waits (within ctx) until its
// result is recorded.
func (p *Provider) cancelRun(ctx context.Context, e *model.Entity) (any, error) {
	if ok, err := p.stopService(ctx, e.Location, "cancelled", true); ok {
		if err != nil {
			return nil, err
		}
		return map[string]any{"execution": e.Location, "status": engine.StatusCancelled}, nil
	}
	p.mu.Lock()
	r := p.running[e.Location]
	p.mu.Unlock()
	if r == nil {
		status, _ := subMapOrNil(subMapOrNil(e.Attributes, "process"), "execution")["status"].(string)
		err := model.Conflict("execution %s is not running (status %s)", e.Location, status)
		err.Attribute = "process.execution.status"
		return nil, err
	}
	r.cancel()
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return map[string]any{"execution": e.Location, "status": engine.StatusCancelled}, nil
}

// canonicalize validates the definition in an entity's nested attributes
// and replaces it by its canonical form.
func canonicalize(attrs map[string]any) error {
	proc := subMap(attrs, "process")
	raw, present := proc["definition"]
	def, ok := raw.(map[string]any)
	if present && !ok {
		return model.AttributeError("process.definition", "process.definition must be an object")
	}
	_, canon, err := engine.Parse(def)
	if err != nil {
		return fieldError(err)
	}
	proc["definition"] = canon
	return nil
}

// fieldError turns an engine.FieldError into a 400 naming the attribute.
func fieldError(err error) error {
	if fe, ok := engine.IsFieldError(err); ok {
		name := "process.definition." + fe.Field
		return model.AttributeError(name, "%s: %s", name, fe.Message)
	}
	return err
}

// subMap returns m[key] as an object, creating it when absent.
func subMap(m map[string]any, key string) map[string]any {
	if s, ok := m[key].(map[string]any); ok {
		return s
	}
	s := map[string]any{}
	m[key] = s
	return s
}

func subMapOrNil(m map[string]any, key string) map[string]any {
	s, _ := m[key].(map[string]any)
	return s
}

// DefinitionLocation turns a definition reference (an id, a location, or a
// URL ending in one) into a location under /process/definition/.
func DefinitionLocation(ref string) (string, error) {
	const prefix = "/process/definition/"
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return "", errors.New("empty definition reference")
	}
	if strings.Contains(ref, "/") {
		p, err := model.PathOf(ref)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(p, prefix) || len(p) == len(prefix) {
			return "", fmt.Errorf("%q is not a location under %s", ref, prefix)
		}
		return p, nil
	}
	return prefix + ref, nil
}

// RunForMessage runs the definition a CMBS message names (an id or a
// location on this server) with input, only when that definition allows it
// (run_on_message true): a message never supplies a command, it names one
// this server's operator registered. An error says why it did not run.
func (p *Provider) RunForMessage(ctx context.Context, ref string, input []byte, trigger string) (map[string]any, error) {
	loc, err := DefinitionLocation(ref)
	if err != nil {
		return nil, fmt.Errorf("process.definition_ref: %w", err)
	}
	e, err := p.ents.Get(ctx, loc)
	if err != nil || e.Kind != categories.ProcessDefinitionKind {
		return nil, fmt.Errorf("process.definition_ref %q: no process definition at %s on this server", ref, loc)
	}
	def, err := Definition(e)
	if err != nil {
		return nil, fmt.Errorf("definition %s: %w", loc, err)
	}
	if !def.RunOnMessage {
		return nil, fmt.Errorf("definition %s does not allow running on a message (run_on_message is not true)", loc)
	}
	return p.execute(ctx, e, def, input, 0, trigger)
}
