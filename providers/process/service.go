package process

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process/engine"
	"github.com/cmbs/cmbs/providers/process/supervisor"
)

// service is a service definition's execution: a process the supervisor
// keeps running until its execution is cancelled or deleted, or the
// provider stops.
type service struct {
	proc   *supervisor.Process
	runDir string
}

// Supervisor is the supervisor the provider runs services on.
func (p *Provider) Supervisor() *supervisor.Supervisor { return p.sup }

// Console is the log of the running service execution at location, or nil
// when none runs there.
func (p *Provider) Console(location string) *supervisor.Log {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.services[location]; s != nil {
		return s.proc.Log()
	}
	return nil
}

// startService runs the service definition e on the supervisor: its
// execution record is created running, and the answer is 202 with the
// record's location. Input is not given to services.
func (p *Provider) startService(ctx context.Context, e *model.Entity, def *engine.Definition, input []byte, trigger string) (any, error) {
	kind, err := p.beginRun()
	if err != nil {
		return nil, err
	}
	defer p.runs.Done()

	runDir, err := os.MkdirTemp(p.runner.TempDir, "cmbs-service-")
	if err != nil {
		return nil, fmt.Errorf("create the run directory: %w", err)
	}
	cmd, err := p.runner.Command(def, runDir)
	if err != nil {
		os.RemoveAll(runDir)
		return nil, model.Errorf(http.StatusUnprocessableEntity, "definition %s cannot run: %v", e.Location, err)
	}
	started := time.Now().UTC()
	record := map[string]any{
		"definition": e.Location, "status": engine.StatusRunning, "started_at": started.Format(time.RFC3339Nano),
		"input_size": float64(len(input)), "trigger": trigger, "restarts": float64(0),
	}
	loc, err := p.createRecord(ctx, kind, "", record)
	if err != nil {
		os.RemoveAll(runDir)
		return nil, err
	}
	proc, err := p.sup.Start(loc, supervisor.Spec{Path: cmd.Path, Args: cmd.Args, Dir: cmd.Dir, Env: cmd.Env})
	if err != nil {
		os.RemoveAll(runDir)
		return nil, fmt.Errorf("start the service: %w", err)
	}
	p.mu.Lock()
	p.services[loc] = &service{proc: proc, runDir: runDir}
	p.mu.Unlock()
	p.log.Info("service started", "execution", loc, "definition", e.Location)
	return providers.Accepted{Location: loc, Result: map[string]any{
		"execution": loc, "definition": e.Location, "status": engine.StatusRunning,
		"started_at": record["started_at"], "console": loc + "/console",
	}}, nil
}

// stopService stops the service running as execution loc, if one does,
// and reports whether one did. Its record is completed with status
// cancelled unless the record is being deleted (record false).
func (p *Provider) stopService(ctx context.Context, loc, reason string, record bool) (bool, error) {
	p.mu.Lock()
	s := p.services[loc]
	delete(p.services, loc)
	p.mu.Unlock()
	if s == nil {
		return false, nil
	}
	err := p.sup.Remove(ctx, loc)
	if errors.Is(err, supervisor.ErrUnknown) {
		err = nil
	}
	os.RemoveAll(s.runDir)
	if !record {
		return true, err
	}
	st := s.proc.Status()
	fields := map[string]any{
		"status": engine.StatusCancelled, "error": reason, "restarts": float64(st.Restarts),
		"finished_at": time.Now().UTC().Format(time.RFC3339Nano),
	}
	if st.LastExitCode != nil {
		fields["exit_code"] = float64(*st.LastExitCode)
	}
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	upd := &model.EntityInput{Entity: model.Entity{Attributes: map[string]any{"process": map[string]any{"execution": fields}}},
		Present: map[string]bool{"attributes": true}}
	if _, uerr := p.ents.Update(internal(saveCtx), loc, "", upd); uerr != nil {
		err = errors.Join(err, fmt.Errorf("record the stopped service %s: %w", loc, uerr))
	}
	return true, err
}

// stopServices stops every service (the provider is stopping).
func (p *Provider) stopServices(ctx context.Context) error {
	p.mu.Lock()
	locs := make([]string, 0, len(p.services))
	for loc := range p.services {
		locs = append(locs, loc)
	}
	p.mu.Unlock()
	var errs []error
	for _, loc := range locs {
		if _, err := p.stopService(ctx, loc, "the server stopped", true); err != nil {
			errs = append(errs, err)
		}
	}
	if p.ownSup {
		errs = append(errs, p.sup.Close(ctx))
	}
	return errors.Join(errs...)
}
