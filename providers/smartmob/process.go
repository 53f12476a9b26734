package smartmob

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/cmbs/cmbs/internal/requestlog"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers/process/supervisor"
	"github.com/cmbs/cmbs/providers/smartmob/provision"
)

// Desired states.
const (
	desiredRunning = "running"
	desiredStopped = "stopped"
)

// watchBuffer is how many lines the watcher of a process may lag behind
// its log (publishing them on the bus) before it skips ahead.
const watchBuffer = 1 << 14

// restartWait bounds how long the restart action waits for the new pid.
const restartWait = 30 * time.Second

// failed reports whether state is a provisioning failure.
func failed(state string) bool {
	switch state {
	case supervisor.StateDownloadFailure, supervisor.StateUnpackFailure, supervisor.StateNoProcfile, supervisor.StateUnknownProcessType:
		return true
	}
	return false
}

// spec is what a process runs: the entity's client attributes.
type spec struct {
	URL, ProcessType string
	Env              map[string]string
}

// proc is one smartmob process: its entity's identity, what it runs, and
// the supervised process of its current (or last) run.
type proc struct {
	loc, slug, dir string

	mu       sync.Mutex
	spec     spec
	desired  string
	state    string              // the state while no run is live (provisioning, failures, stopped)
	result   *provision.Result   // the last provisioning, reused by the next start
	sp       *supervisor.Process // the current or last run
	live     bool                // sp is the current run
	base     int                 // restarts of earlier runs
	lastExit *int
	running  bool // a run goroutine is active
	cancel   context.CancelFunc
	runDone  chan struct{} // closed when the run goroutine returns
	watched  chan struct{} // closed when the watcher of sp returns
	changed  chan struct{} // closed (and replaced) at every change
	removed  bool          // the entity is being deleted: no more writes

	persistMu sync.Mutex     // one store write at a time
	persisted map[string]any // the last fields written (under persistMu)
}

func newProc(e *model.Entity, dir string) *proc {
	a := attrs(e)
	str := func(k string) string { s, _ := a[k].(string); return s }
	pr := &proc{loc: e.Location, slug: str("slug"), dir: dir, desired: str("desired"), state: str("state"),
		changed: make(chan struct{})}
	if pr.desired == "" {
		pr.desired = desiredRunning
	}
	if n, ok := a["restarts"].(float64); ok {
		pr.base = int(n)
	}
	if n, ok := a["last_exit_code"].(float64); ok {
		c := int(n)
		pr.lastExit = &c
	}
	pr.spec = specOf(a)
	return pr
}

func specOf(a map[string]any) spec {
	s := spec{}
	s.URL, _ = a["source_url"].(string)
	s.ProcessType, _ = a["process_type"].(string)
	if m, ok := a["env"].(map[string]any); ok {
		s.Env = make(map[string]string, len(m))
		for k, v := range m {
			s.Env[k], _ = v.(string)
		}
	}
	return s
}

// refresh takes a stored change: a new source, type or env is provisioned
// again at the next start.
func (pr *proc) refresh(e *model.Entity) {
	s := specOf(attrs(e))
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if !reflect.DeepEqual(s, pr.spec) {
		pr.spec, pr.result = s, nil
	}
}

// notifyLocked wakes whoever waits for a change (consoles).
func (pr *proc) notifyLocked() {
	close(pr.changed)
	pr.changed = make(chan struct{})
}

func (pr *proc) setState(s string) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.state, pr.live = s, false
	pr.notifyLocked()
}

func (pr *proc) setDesired(d string) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.desired = d
}

// current is the supervised process of the current or last run, or nil.
func (pr *proc) current() *supervisor.Process {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.sp
}

// active reports whether a run is being provisioned or is live.
func (pr *proc) active() bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.running {
		return true
	}
	if pr.live && pr.sp != nil {
		select {
		case <-pr.sp.Done():
			return false
		default:
			return true
		}
	}
	return false
}

func (pr *proc) markRemoved() {
	pr.persistMu.Lock()
	defer pr.persistMu.Unlock()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.removed = true
}

// fields are the read-only attributes as they are now.
func (pr *proc) fields() map[string]any {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	f := map[string]any{"slug": pr.slug, "state": pr.state, "desired": pr.desired, "restarts": float64(pr.base), "pid": float64(0)}
	if pr.lastExit != nil {
		f["last_exit_code"] = float64(*pr.lastExit)
	}
	if pr.live && pr.sp != nil {
		st := pr.sp.Status()
		f["state"] = st.State
		f["pid"] = float64(st.Pid)
		f["restarts"] = float64(pr.base + st.Restarts)
		if st.LastExitCode != nil {
			f["last_exit_code"] = float64(*st.LastExitCode)
		}
		if !st.StartedAt.IsZero() {
			f["started_at"] = st.StartedAt.UTC().Format(time.RFC3339Nano)
		}
	}
	return f
}

// launch starts a run of pr in the background, unless one is active:
// provisioning (reusing the last one when the spec did not change), then
// the supervised process.
func (p *Provider) launch(pr *proc, reqID string) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	pr.mu.Lock()
	if pr.running || pr.removed {
		pr.mu.Unlock()
		p.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	done := make(chan struct{})
	pr.running, pr.cancel, pr.runDone = true, cancel, done
	if pr.sp != nil && pr.live {
		pr.base += pr.sp.Status().Restarts
		if st := pr.sp.Status(); st.LastExitCode != nil {
			c := *st.LastExitCode
			pr.lastExit = &c
		}
	}
	pr.state, pr.live = supervisor.StatePending, false
	pr.notifyLocked()
	pr.mu.Unlock()
	p.wg.Add(1)
	p.mu.Unlock()
	if reqID == "" {
		reqID = rand.Text()
	}
	go func() {
		defer p.wg.Done()
		defer close(done)
		defer cancel()
		p.run(ctx, pr, reqID)
		pr.mu.Lock()
		pr.running = false
		pr.notifyLocked()
		pr.mu.Unlock()
	}()
}

// run provisions pr (unless its last provisioning still holds) and starts
// its command on the supervisor, with a watcher that writes its state
// changes to the store.
func (p *Provider) run(ctx context.Context, pr *proc, reqID string) {
	pr.mu.Lock()
	sp, res := pr.spec, pr.result
	pr.mu.Unlock()
	if res == nil {
		r, err := provision.Provision(ctx, p.opts.Fetcher, provision.Request{URL: sp.URL, RequestID: reqID, ProcessType: sp.ProcessType,
			Dir: pr.dir, Env: sp.Env, Base: p.opts.Base}, func(state string) {
			pr.setState(state)
			p.changedState(pr)
		})
		if err != nil {
			if ctx.Err() != nil {
				return // stopped: halt records it
			}
			state := provision.State(err)
			if state == "" {
				state = supervisor.StateDownloadFailure
			}
			p.log.Warn("provisioning failed", "slug", pr.slug, "state", state, "err", err)
			pr.setState(state)
			p.changedState(pr)
			return
		}
		res = &r
		pr.mu.Lock()
		if reflect.DeepEqual(sp, pr.spec) {
			pr.result = res
		}
		pr.mu.Unlock()
	}
	if ctx.Err() != nil {
		return
	}
	proc, err := p.sup.Start(pr.loc, supervisor.Spec{Path: "/bin/sh", Args: []string{"sh", "-c", res.Cmd}, Dir: res.Root, Env: res.Env})
	if err != nil {
		p.log.Error("cannot start a smartmob process", "slug", pr.slug, "err", err)
		pr.setState(supervisor.StateStopped)
		p.changedState(pr)
		return
	}
	watched := make(chan struct{})
	pr.mu.Lock()
	pr.sp, pr.live, pr.watched = proc, true, watched
	pr.notifyLocked()
	pr.mu.Unlock()
	p.wg.Add(1) // run's own count is held: Stop cannot be waiting yet
	go func() {
		defer p.wg.Done()
		defer close(watched)
		p.watch(pr, proc)
	}()
}

// watch follows a run's log until it closes: every line is published, and
// every supervisor event (spawned, exited, restarting, stopped) writes the
// state to the store.
func (p *Provider) watch(pr *proc, sp *supervisor.Process) {
	log := sp.Log()
	// A fresh log: all its lines are this run's. Room for a burst, so that
	// the bus mirror keeps up; past it, lines are skipped for the bus and
	// the state written as it is then.
	sub := log.SubscribeBuffer(supervisor.DefaultLogLines, watchBuffer)
	for {
		line, ok := <-sub.C
		if !ok {
			if sub.Dropped() {
				// Fallen behind (a slow store): continue from now on.
				sub = log.SubscribeBuffer(0, watchBuffer)
				p.changedState(pr)
				continue
			}
			p.changedState(pr)
			return
		}
		p.publish(pr, map[string]any{"type": "output", "body": map[string]any{"type": "line", "data": line}})
		if strings.HasPrefix(line, supervisor.EventPrefix) {
			p.changedState(pr)
		}
	}
}

// halt stops pr's run: provisioning is cancelled, the supervised process
// stopped (TERM to its group, KILL after the grace); it returns once both
// are over and the state is stopped.
func (p *Provider) halt(ctx context.Context, pr *proc) error {
	pr.mu.Lock()
	cancel, runDone := pr.cancel, pr.runDone
	pr.mu.Unlock()
	if cancel != nil {
		cancel()
		select {
		case <-runDone:
		case <-ctx.Done():
			return model.Errorf(http.StatusServiceUnavailable, "process %s still provisioning: %v", pr.slug, ctx.Err())
		}
	}
	pr.mu.Lock()
	sp, live, watched := pr.sp, pr.live, pr.watched
	pr.mu.Unlock()
	if sp != nil && live {
		if err := p.sup.Remove(ctx, pr.loc); err != nil && !errors.Is(err, supervisor.ErrUnknown) {
			return err
		}
		select {
		case <-watched:
		case <-ctx.Done():
			return ctx.Err()
		}
		pr.mu.Lock()
		st := sp.Status()
		pr.base += st.Restarts
		if st.LastExitCode != nil {
			c := *st.LastExitCode
			pr.lastExit = &c
		}
		pr.mu.Unlock()
	}
	pr.setState(supervisor.StateStopped)
	return nil
}

// changedState writes pr's state to the store and publishes it, when it
// changed.
func (p *Provider) changedState(pr *proc) {
	if f, changed := p.persist(pr); changed {
		p.publish(pr, map[string]any{"type": "state", "body": f})
	}
}

// persist writes pr's read-only attributes to its entity, unless they are
// what was written last or the entity is being deleted, and returns them
// and whether they changed.
func (p *Provider) persist(pr *proc) (map[string]any, bool) {
	pr.persistMu.Lock()
	defer pr.persistMu.Unlock()
	pr.mu.Lock()
	removed := pr.removed
	pr.mu.Unlock()
	if removed {
		return nil, false
	}
	f := pr.fields()
	if reflect.DeepEqual(f, pr.persisted) {
		return f, false
	}
	ctx, cancel := context.WithTimeout(internal(context.Background()), 30*time.Second)
	defer cancel()
	in := &model.EntityInput{Entity: model.Entity{Attributes: map[string]any{"smartmob": map[string]any{"process": f}}},
		Present: map[string]bool{"attributes": true}}
	if _, err := p.ents.Update(ctx, pr.loc, "", in); err != nil {
		if model.StatusOf(err) != http.StatusNotFound {
			p.log.Warn("cannot record a smartmob process's state", "slug", pr.slug, "err", err)
		}
		return f, true
	}
	pr.persisted = f
	return f, true
}

func (p *Provider) publish(pr *proc, v any) {
	if p.opts.Events == nil {
		return
	}
	if err := p.opts.Events.PublishJSON("smartmob."+pr.slug, v); err != nil {
		p.log.Debug("cannot publish a smartmob event", "slug", pr.slug, "err", err)
	}
}

// restartAndWait restarts sp and waits (bounded) until it runs again: its
// log shows the new spawn (or the process ended for good).
func restartAndWait(ctx context.Context, sp *supervisor.Process) error {
	ctx, cancel := context.WithTimeout(ctx, restartWait)
	defer cancel()
	before := sp.Status().Pid
	sub := sp.Log().Subscribe(0)
	defer sub.Close()
	sp.Restart()
	for {
		select {
		case line, ok := <-sub.C:
			if !ok {
				return waitNewPid(ctx, sp, before) // dropped, or the log closed
			}
			if strings.HasPrefix(line, supervisor.EventPrefix+"spawned ") {
				return nil
			}
		case <-ctx.Done():
			return model.Errorf(http.StatusGatewayTimeout, "the process did not start again within %v", restartWait)
		}
	}
}

// waitNewPid waits (until ctx ends) until sp runs under a pid other than
// before, or has ended.
func waitNewPid(ctx context.Context, sp *supervisor.Process, before int) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		st := sp.Status()
		if st.Pid != 0 && st.Pid != before {
			return nil
		}
		select {
		case <-sp.Done():
			return nil
		case <-ctx.Done():
			return model.Errorf(http.StatusGatewayTimeout, "the process did not start again within %v", restartWait)
		case <-t.C:
		}
	}
}

// requestKey carries the request id of the smartmob-agent API.
type requestKey struct{}

func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestKey{}, id)
}

// requestID is the id of the request of ctx (passed on to the download).
func requestID(ctx context.Context) string {
	if id, ok := ctx.Value(requestKey{}).(string); ok && id != "" {
		return id
	}
	return requestlog.ID(ctx)
}

// console returns the log of pr's run to stream, waiting (until ctx ends)
// while a run is being provisioned; nil when there is none (never ran, or
// provisioning failed).
func (pr *proc) console(ctx context.Context) (*supervisor.Log, error) {
	for {
		pr.mu.Lock()
		sp, live, running, changed := pr.sp, pr.live, pr.running, pr.changed
		pr.mu.Unlock()
		switch {
		case sp != nil && (live || !running):
			return sp.Log(), nil
		case !running:
			return nil, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
