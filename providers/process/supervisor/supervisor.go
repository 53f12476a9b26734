package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/cmbs/cmbs/internal/procgroup"
)

// States of a process. The provisioning states (pending to unknown process
// type) belong to callers that fetch and unpack an application before
// starting it; the supervisor itself moves through running, restarting,
// stopping and stopped.
const (
	StatePending            = "pending"
	StateDownloading        = "downloading"
	StateDownloadFailure    = "download failure"
	StateUnpacking          = "unpacking"
	StateUnpackFailure      = "unpack failure"
	StateProcessing         = "processing"
	StateNoProcfile         = "no procfile"
	StateUnknownProcessType = "unknown process type"
	StateRunning            = "running"
	StateRestarting         = "restarting"
	StateStopping           = "stopping"
	StateStopped            = "stopped"
)

// The restart rule: the first restart waits MinBackoff, each following one
// twice as long up to MaxBackoff; a run that stayed up ResetAfter resets
// the delay to MinBackoff.
const (
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 30 * time.Second
	ResetAfter = 10 * time.Second
)

// DefaultKillGrace is the time between SIGTERM and SIGKILL on stop.
const DefaultKillGrace = 5 * time.Second

// Backoff is the delay before the next restart, given the previous delay
// (0 for none yet) and how long the run that just ended was up.
func Backoff(prev, up time.Duration) time.Duration {
	if prev <= 0 || up >= ResetAfter {
		return MinBackoff
	}
	if next := prev * 2; next < MaxBackoff {
		return next
	}
	return MaxBackoff
}

// Errors of a Supervisor.
var (
	ErrExists  = errors.New("a process with this id is supervised already")
	ErrUnknown = errors.New("no process with this id is supervised")
	ErrClosed  = errors.New("the supervisor is closed")
)

// Spec is what to run.
type Spec struct {
	// Path is the program, Args its argv (Args[0] included); a Procfile
	// command is Path "/bin/sh", Args {"sh", "-c", command}.
	Path string
	Args []string
	// Dir is the working directory ("" = the server's).
	Dir string
	// Env is the whole environment (KEY=value).
	Env []string
}

// Options configures a Supervisor. Zero values take the defaults.
type Options struct {
	// KillGrace is the time between SIGTERM and SIGKILL (DefaultKillGrace).
	KillGrace time.Duration
	// LogLines is the ring size of each process's log (DefaultLogLines).
	LogLines int
	// MaxLine is the length at which log lines are cut (DefaultMaxLine).
	MaxLine int
	// Logger receives the supervisor's logs; nil discards them.
	Logger *slog.Logger
	// backoff replaces Backoff in tests.
	backoff func(prev, up time.Duration) time.Duration
}

// Supervisor runs processes by id. It is safe for concurrent use; Close
// stops everything it runs.
type Supervisor struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	closed bool
	procs  map[string]*Process
	wg     sync.WaitGroup
}

// New returns a supervisor.
func New(opts Options) *Supervisor {
	if opts.KillGrace <= 0 {
		opts.KillGrace = DefaultKillGrace
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.backoff == nil {
		opts.backoff = Backoff
	}
	return &Supervisor{opts: opts, log: opts.Logger.With("component", "supervisor"), procs: map[string]*Process{}}
}

// Status is a snapshot of a process.
type Status struct {
	ID    string
	State string
	// Pid is the running process's id (and process group id), 0 when none.
	Pid      int
	Restarts int
	// LastExitCode is the last run's exit code; nil before any exit or when
	// the last run was killed by a signal.
	LastExitCode *int
	// LastSignal names the signal that ended the last run, if one did.
	LastSignal string
	StartedAt  time.Time
	// Desired is StateRunning or StateStopped: what the supervisor aims for.
	Desired string
	// Error says why the last start failed, if it did.
	Error string
}

// Process is one supervised process.
type Process struct {
	id   string
	spec Spec
	sup  *Supervisor
	log  *Log

	mu       sync.Mutex
	st       Status
	stop     chan struct{} // closed by Stop
	restart  chan struct{} // a restart request (buffered 1)
	done     chan struct{} // closed when the loop has returned
	stopOnce sync.Once
}

// Start starts supervising spec under id; the process is spawned at once.
func (s *Supervisor) Start(id string, spec Spec) (*Process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if _, ok := s.procs[id]; ok {
		return nil, fmt.Errorf("%s: %w", id, ErrExists)
	}
	p := &Process{id: id, spec: spec, sup: s, log: NewLog(s.opts.LogLines, s.opts.MaxLine),
		stop: make(chan struct{}), restart: make(chan struct{}, 1), done: make(chan struct{})}
	p.st = Status{ID: id, State: StatePending, Desired: StateRunning}
	s.procs[id] = p
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(p.done)
		p.loop()
	}()
	return p, nil
}

// Get returns the process supervised under id, or nil.
func (s *Supervisor) Get(id string) *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[id]
}

// Remove stops the process under id (see Process.Stop) and forgets it.
func (s *Supervisor) Remove(ctx context.Context, id string) error {
	p := s.Get(id)
	if p == nil {
		return fmt.Errorf("%s: %w", id, ErrUnknown)
	}
	err := p.Stop(ctx)
	s.mu.Lock()
	if s.procs[id] == p {
		delete(s.procs, id)
	}
	s.mu.Unlock()
	return err
}

// Close stops every process and returns once all have ended (or ctx is
// done). Start fails afterwards.
func (s *Supervisor) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	procs := make([]*Process, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	for _, p := range procs {
		p.requestStop()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("supervised processes still stopping: %w", ctx.Err())
	}
}

// ID is the process's id.
func (p *Process) ID() string { return p.id }

// Log is the process's console.
func (p *Process) Log() *Log { return p.log }

// Status returns a snapshot of the process.
func (p *Process) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.st
	if st.LastExitCode != nil {
		c := *st.LastExitCode
		st.LastExitCode = &c
	}
	return st
}

// Done is closed once the process is stopped for good.
func (p *Process) Done() <-chan struct{} { return p.done }

func (p *Process) requestStop() {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.st.Desired = StateStopped
		p.mu.Unlock()
		close(p.stop)
	})
}

// Stop stops the process: SIGTERM to its group, SIGKILL after the grace,
// no restart. It returns once the process and its group are gone (or ctx
// is done).
func (p *Process) Stop(ctx context.Context) error {
	p.requestStop()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("process %s still stopping: %w", p.id, ctx.Err())
	}
}

// Restart stops the running process (TERM, then KILL after the grace) and
// starts it again at once, without backoff. It is a no-op on a process
// being stopped.
func (p *Process) Restart() {
	select {
	case p.restart <- struct{}{}:
	default:
	}
}

func (p *Process) set(f func(st *Status)) {
	p.mu.Lock()
	f(&p.st)
	p.mu.Unlock()
}

// loop runs the process until stopped.
func (p *Process) loop() {
	defer p.log.Close()
	defer p.log.Event("stopped")
	defer p.set(func(st *Status) { st.State, st.Pid = StateStopped, 0 })
	var delay time.Duration
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		// A restart requested while not running means nothing more.
		select {
		case <-p.restart:
		default:
		}
		up, requested := p.runOnce()
		select {
		case <-p.stop:
			return
		default:
		}
		p.set(func(st *Status) { st.Restarts, st.State = st.Restarts+1, StateRestarting })
		if requested {
			delay = 0
			p.log.Event("restarting now")
			continue
		}
		delay = p.sup.opts.backoff(delay, up)
		p.log.Event("restarting in " + delay.String())
		t := time.NewTimer(delay)
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-p.restart:
			t.Stop()
			delay = 0
		case <-t.C:
		}
	}
}

// runOnce spawns the process and waits until it ends (by itself, or by a
// stop or restart request, which terminate its group). It returns how long
// it was up and whether a restart request ended it. Its group is killed
// before it returns.
func (p *Process) runOnce() (up time.Duration, requested bool) {
	pr, pw, err := os.Pipe()
	if err != nil {
		p.failed(err)
		return 0, false
	}
	cmd := &exec.Cmd{Path: p.spec.Path, Args: p.spec.Args, Dir: p.spec.Dir, Env: p.spec.Env,
		Stdout: pw, Stderr: pw, SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	if len(cmd.Args) == 0 {
		cmd.Args = []string{p.spec.Path}
	}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		p.failed(err)
		return 0, false
	}
	pid := cmd.Process.Pid
	started := time.Now()
	p.set(func(st *Status) {
		st.State, st.Pid, st.StartedAt, st.Error = StateRunning, pid, started.UTC(), ""
	})
	p.log.Event(fmt.Sprintf("spawned pid=%d", pid))
	p.sup.log.Debug("spawned", "id", p.id, "pid", pid)

	read := make(chan struct{})
	go func() {
		defer close(read)
		p.log.readLines(pr)
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	var werr error
	select {
	case werr = <-waited:
	case <-p.stop:
		werr = p.terminate(pid, waited, StateStopping)
	case <-p.restart:
		requested = true
		werr = p.terminate(pid, waited, StateRestarting)
	}
	up = time.Since(started)
	// Nothing of the run survives it: leftover children in the group too.
	_ = procgroup.Signal(pid, syscall.SIGKILL)
	// Leftovers outside the group may hold the pipe: give them the grace,
	// then stop reading.
	select {
	case <-read:
	case <-time.After(p.sup.opts.KillGrace):
		pr.Close()
		<-read
	}
	pr.Close()

	var code *int
	var sig string
	var exitErr *exec.ExitError
	switch {
	case werr == nil:
		c := 0
		code = &c
	case errors.As(werr, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			sig = ws.Signal().String()
		} else {
			c := exitErr.ExitCode()
			code = &c
		}
	}
	p.set(func(st *Status) { st.Pid, st.LastExitCode, st.LastSignal = 0, code, sig })
	switch {
	case code != nil:
		p.log.Event(fmt.Sprintf("exited status=%d", *code))
	case sig != "":
		p.log.Event("exited signal=" + sig)
	default:
		p.log.Event(fmt.Sprintf("exited: %v", werr))
	}
	return up, requested
}

// terminate sends SIGTERM to the group, SIGKILL after the grace, and
// returns the leader's wait result.
func (p *Process) terminate(pid int, waited <-chan error, state string) error {
	p.set(func(st *Status) { st.State = state })
	_ = procgroup.Signal(pid, syscall.SIGTERM)
	t := time.NewTimer(p.sup.opts.KillGrace)
	defer t.Stop()
	select {
	case err := <-waited:
		return err
	case <-t.C:
		_ = procgroup.Signal(pid, syscall.SIGKILL)
		return <-waited
	}
}

// failed records a start that did not happen (the restart rule applies).
func (p *Process) failed(err error) {
	p.set(func(st *Status) { st.Error, st.LastExitCode, st.LastSignal = err.Error(), nil, "" })
	p.log.Event("cannot start: " + err.Error())
	p.sup.log.Warn("cannot start", "id", p.id, "err", err)
}
