package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cmbs/cmbs/internal/procgroup"
)

// Statuses of a run.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusTimeout   = "timeout"
	StatusError     = "error"
	StatusCancelled = "cancelled"
	StatusRunning   = "running"
)

// Defaults of a Runner.
const (
	DefaultMaxOutput = 1 << 20
	DefaultKillGrace = 2 * time.Second
	defaultPath      = "/usr/local/bin:/usr/bin:/bin"
)

// ErrService is returned by Run for a definition of process_type service:
// a service is supervised, not run once.
var ErrService = errors.New("a service definition is run by the process supervisor, not once")

// Runner runs definitions once. Its zero value is ready to use; it is safe
// for concurrent use (it holds only configuration).
type Runner struct {
	// MaxOutput caps the output and, separately, stderr, in bytes; what is
	// beyond is read and dropped, and the result says truncated. 0 means
	// DefaultMaxOutput.
	MaxOutput int64
	// KillGrace is how long a process group has between SIGTERM and
	// SIGKILL on timeout or cancellation, and how long the run waits for
	// output pipes held open by leftover children. 0 means DefaultKillGrace.
	KillGrace time.Duration
	// TempDir is where run directories are made; "" means os.TempDir().
	TempDir string
	// Path is the PATH of the base environment; "" means the server's own
	// PATH (or /usr/local/bin:/usr/bin:/bin without one).
	Path string
}

// Request is one run's input.
type Request struct {
	// Input is fed through the input adapter; ignored without one.
	Input []byte
	// Timeout overrides the definition's timeout when positive.
	Timeout time.Duration
	// Started, when set, is called with the pid once the process runs.
	Started func(pid int)
	// InputStream, when set, is the input instead of Input, read as the
	// run goes: into stdin while the process runs (it gets EOF when the
	// stream ends), or into the input file before it starts. A read error
	// ends the run: before the start Run returns an *InputError, after it
	// the process group is killed and the status is error.
	InputStream io.Reader
	// StopInput, when set, is called when the run ends while InputStream
	// is still being read: it must make that Read return (an HTTP server
	// sets a read deadline in the past). Run waits for the read.
	StopInput func()
	// OutputStream, when set, receives the output (as the output adapter
	// says: stdout, stderr, or the output file once the process has ended)
	// as it is written, instead of Result.Output; it is not capped. A write
	// error ends the run (status error).
	OutputStream io.Writer
	// Lines, when set, is called with every line the process writes to
	// stdout and stderr (stream StreamStdoutName or StreamStderrName), as it
	// is written, before Run returns; the line must not be kept. Calls for
	// one stream are in order; the two streams' calls may interleave.
	Lines func(stream string, line []byte)
}

// Result is the outcome of a run.
type Result struct {
	Status string
	// ExitCode is nil when the process did not exit by itself (not
	// started, killed by a signal).
	ExitCode *int
	Output   []byte
	Stderr   []byte
	// Error says why the status is not succeeded, when the exit code
	// alone does not.
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	Duration   time.Duration
	// Truncated is true when the output exceeded the cap;
	// StderrTruncated likewise for stderr.
	Truncated       bool
	StderrTruncated bool
	// Pid is the process id (and process group id) the run had; 0 when
	// the process was not started.
	Pid int
	// RunDir is the private run directory (removed when Run returns).
	RunDir string
}

func (r *Runner) maxOutput() int64 {
	if r.MaxOutput > 0 {
		return r.MaxOutput
	}
	return DefaultMaxOutput
}

func (r *Runner) grace() time.Duration {
	if r.KillGrace > 0 {
		return r.KillGrace
	}
	return DefaultKillGrace
}

// Run runs a single definition once and returns its result. A run that
// cannot start (exec not found, cwd missing) is a result with status
// error, not an error; Run returns an error only for a definition it does
// not run (ErrService). Cancelling ctx stops the run like a timeout, with
// status cancelled. Nothing the run started survives its return: the
// process group is killed, and the run directory removed.
func (r *Runner) Run(ctx context.Context, d *Definition, req Request) (*Result, error) {
	if d.ProcessType == TypeService {
		return nil, ErrService
	}
	res := &Result{StartedAt: time.Now().UTC()}
	defer func() {
		res.FinishedAt = time.Now().UTC()
		res.Duration = res.FinishedAt.Sub(res.StartedAt)
	}()
	fail := func(format string, args ...any) (*Result, error) {
		res.Status, res.Error = StatusError, fmt.Sprintf(format, args...)
		return res, nil
	}

	runDir, err := os.MkdirTemp(r.TempDir, "cmbs-run-")
	if err != nil {
		return fail("cannot create the run directory: %v", err)
	}
	res.RunDir = runDir
	defer removeRunDir(runDir)

	subst := substitutions(runDir)
	c, err := r.Command(d, runDir)
	if err != nil {
		return fail("%v", err)
	}
	cwd := c.Dir

	timeout := req.Timeout
	if timeout <= 0 && d.Timeout > 0 {
		timeout = time.Duration(d.Timeout * float64(time.Second))
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var streamErr streamFailure // a streamed input or output failed
	if timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(runCtx, timeout)
		defer cancel()
	}

	cmd := exec.CommandContext(runCtx, c.Path)
	cmd.Args, cmd.Dir, cmd.Env = c.Args, c.Dir, c.Env // Args[0] as given in exec, as execvp passes it
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var interrupted atomic.Bool // the run was stopped (timeout or cancellation)
	cmd.Cancel = func() error {
		interrupted.Store(true)
		return procgroup.Signal(cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = r.grace()

	var feed *stdinFeed // a streamed stdin
	switch {
	case d.Input.IsFile():
		p := absIn(cwd, subst.Replace(d.Input.Path))
		if req.InputStream != nil {
			if err := copyInputFile(runCtx, p, req); err != nil {
				return nil, err
			}
		} else if err := os.WriteFile(p, req.Input, 0o600); err != nil {
			return fail("cannot write the input file %s: %v", p, err)
		}
	case d.Input.Stream == StreamStdin && req.InputStream != nil:
		if feed, err = newStdinFeed(req, streamErr.fail(cancelRun)); err != nil {
			return fail("cannot make the input pipe: %v", err)
		}
		defer feed.end()
		cmd.Stdin = feed.r
	case d.Input.Stream == StreamStdin:
		cmd.Stdin = bytes.NewReader(req.Input)
	}
	stdout := &capped{max: r.maxOutput()}
	stderr := &capped{max: r.maxOutput()}
	if cmd.Stdin != nil && !d.Output.IsFile() && d.Output.Stream != StreamStderr {
		// A filter's output is about as long as its input: one buffer of
		// that size (within the cap) instead of doubling through it.
		stdout.buf.Grow(int(min(int64(len(req.Input)), r.maxOutput())))
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	var streamOut *streamWriter
	if req.OutputStream != nil {
		streamOut = &streamWriter{w: req.OutputStream, fail: streamErr.fail(cancelRun)}
		streamOutput(cmd, d, streamOut)
	}
	if req.Lines != nil {
		outLines := &lineWriter{stream: StreamStdoutName, fn: req.Lines}
		errLines := &lineWriter{stream: StreamStderrName, fn: req.Lines}
		cmd.Stdout, cmd.Stderr = io.MultiWriter(cmd.Stdout, outLines), io.MultiWriter(cmd.Stderr, errLines)
		defer errLines.flush()
		defer outLines.flush()
	}
	var outPipe *outputPipe // a streamed stdout or stderr
	if streamOut != nil && !d.Output.IsFile() {
		if outPipe, err = newOutputPipe(cmd, d.Output.Stream == StreamStderr); err != nil {
			return fail("cannot make the output pipe: %v", err)
		}
		defer outPipe.end(0)
	}

	if cmd.Stdin == nil {
		// Without an input adapter stdin is /dev/null: the one this
		// process keeps open, not one opened (and closed) per run.
		if f := devNull(); f != nil {
			cmd.Stdin = f
		}
	}
	if err := cmd.Start(); err != nil {
		if se := streamErr.get(); se != nil {
			return fail("%v", se) // the input failed at once
		}
		return fail("cannot start %s: %v", d.Exec, err)
	}
	res.Pid = cmd.Process.Pid
	if feed != nil {
		feed.started()
	}
	if outPipe != nil {
		outPipe.started()
	}
	if req.Started != nil {
		req.Started(res.Pid)
	}
	// SIGKILL escalation: the TERM sent on timeout gets a grace, then the
	// whole group is killed even if the leader left already.
	waited, killed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(killed)
		select {
		case <-runCtx.Done():
		case <-waited:
			return
		}
		select {
		case <-time.After(r.grace()):
			_ = procgroup.Signal(res.Pid, syscall.SIGKILL)
		case <-waited:
		}
	}()
	waitErr := cmd.Wait()
	close(waited)
	<-killed
	// Nothing of the run survives it: leftover children in the group too.
	_ = procgroup.Signal(res.Pid, syscall.SIGKILL)
	if outPipe != nil {
		outPipe.end(r.grace()) // all of the output, unless something outside the group holds the pipe
	}

	res.Stderr, res.StderrTruncated = stderr.buf.Bytes(), stderr.dropped
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
		code := 0
		res.ExitCode = &code
	case errors.As(waitErr, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Error = "killed by signal " + ws.Signal().String()
		} else {
			code := exitErr.ExitCode()
			res.ExitCode = &code
		}
	case errors.Is(waitErr, exec.ErrWaitDelay):
		// The process exited but a child it left kept its output open.
		code := cmd.ProcessState.ExitCode()
		if code >= 0 {
			res.ExitCode = &code
		}
	default:
		res.Error = waitErr.Error()
	}

	switch {
	case streamErr.get() != nil: // even when the request ended too (a client gone)
		res.Status, res.Error = StatusError, streamErr.get().Error()
		return res, nil
	case interrupted.Load() && ctx.Err() != nil:
		res.Status, res.Error = StatusCancelled, "cancelled"
		return res, nil
	case interrupted.Load():
		res.Status, res.Error = StatusTimeout, fmt.Sprintf("timed out after %v; the process group was killed", timeout)
		return res, nil
	}

	switch {
	case d.Output.IsFile():
		p := absIn(cwd, subst.Replace(d.Output.Path))
		if streamOut != nil {
			if err := streamOutputFile(p, streamOut); err != nil {
				res.Status, res.Error = outputFileError(p, err)
			}
			break
		}
		out, trunc, err := readCapped(p, r.maxOutput())
		if err != nil {
			res.Status = StatusFailed
			if errors.Is(err, fs.ErrNotExist) {
				res.Error = fmt.Sprintf("the output file %s was not produced", p)
			} else {
				res.Error = fmt.Sprintf("cannot read the output file %s: %v", p, err)
			}
		}
		res.Output, res.Truncated = out, trunc
	case d.Output.Stream == StreamStderr:
		res.Output, res.Truncated = res.Stderr, res.StderrTruncated
	default:
		res.Output, res.Truncated = stdout.buf.Bytes(), stdout.dropped
	}
	switch {
	case res.Status != "":
	case res.ExitCode == nil:
		res.Status = StatusFailed
	case *res.ExitCode != 0:
		res.Status = StatusFailed
		if res.Error == "" {
			res.Error = fmt.Sprintf("exit status %d", *res.ExitCode)
		}
	default:
		res.Status = StatusSucceeded
	}
	return res, nil
}

// Command is how a definition runs: the program resolved like execvp,
// its argv (Args[0] as given in exec, placeholders substituted), working
// directory and environment.
type Command struct {
	Path string
	Args []string
	Dir  string
	Env  []string
}

// Command resolves how d runs with runDir as its run directory (the
// default working directory, HOME and TMPDIR). The supervisor runs service
// definitions with it; Run uses it too.
func (r *Runner) Command(d *Definition, runDir string) (Command, error) {
	subst := substitutions(runDir)
	cwd := runDir
	if d.Cwd != "" {
		cwd = d.Cwd
		if !filepath.IsAbs(cwd) {
			cwd = filepath.Join(runDir, cwd)
		}
		if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
			return Command{}, fmt.Errorf("cwd %q is not a directory", d.Cwd)
		}
	}
	env := r.environment(d, runDir)
	path, err := lookPath(d.Exec, envValue(env, "PATH"), cwd)
	if err != nil {
		return Command{}, err
	}
	args := make([]string, 0, len(d.Argv)+1)
	args = append(args, d.Exec) // argv[0] as given, as execvp passes it
	for _, a := range d.Argv {
		args = append(args, subst.Replace(a))
	}
	return Command{Path: path, Args: args, Dir: cwd, Env: env}, nil
}

// substituter replaces the placeholders of a run directory in the strings
// of a definition; most hold none, and cost it nothing.
type substituter struct {
	runDir string
	r      *strings.Replacer // made at the first string with a placeholder
}

func substitutions(runDir string) *substituter { return &substituter{runDir: runDir} }

// Replace substitutes InputFile and OutputFile in s.
func (s *substituter) Replace(v string) string {
	if !strings.Contains(v, "${") {
		return v
	}
	if s.r == nil {
		s.r = strings.NewReplacer(InputFile, filepath.Join(s.runDir, "input"), OutputFile, filepath.Join(s.runDir, "output"))
	}
	return s.r.Replace(v)
}

// environment is the minimal base (PATH, HOME and TMPDIR set to the run
// directory) plus the definition's variables, which win.
func (r *Runner) environment(d *Definition, runDir string) []string {
	path := r.Path
	if path == "" {
		path = os.Getenv("PATH")
	}
	if path == "" {
		path = defaultPath
	}
	env := make([]string, 0, 3+len(d.Environment))
	for _, kv := range [...][2]string{{"PATH", path}, {"HOME", runDir}, {"TMPDIR", runDir}} {
		if _, over := d.Environment[kv[0]]; !over {
			env = append(env, kv[0]+"="+kv[1])
		}
	}
	for k, v := range d.Environment {
		env = append(env, k+"="+v)
	}
	return env
}

// devNull is /dev/null opened once for reading, shared by every run's
// stdin (nil if it cannot be opened: os/exec then opens it per run).
var devNull = sync.OnceValue(func() *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return nil
	}
	return f
})

// removeRunDir removes a run directory: one rmdir when the run left it
// empty, as most do, else the walk of os.RemoveAll.
func removeRunDir(dir string) {
	if syscall.Rmdir(dir) != nil {
		_ = os.RemoveAll(dir)
	}
}

func envValue(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// lookPath resolves exec like execvp: a name with a slash is used as is
// (relative to the process's working directory), any other is looked up in
// PATH, the first executable regular file winning.
func lookPath(name, path, cwd string) (string, error) {
	if strings.Contains(name, "/") {
		p := absIn(cwd, name)
		if err := executable(p); err != nil {
			return "", fmt.Errorf("exec %q: %w", name, err)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := absIn(cwd, filepath.Join(dir, name))
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %q: not found in PATH (%s): no such file", name, path)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("not found: no such file")
	case err != nil:
		return err
	case fi.IsDir():
		return errors.New("is a directory")
	case fi.Mode()&0o111 == 0:
		return errors.New("is not executable")
	}
	return nil
}

func absIn(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// capped keeps the first max bytes written and drops the rest, still
// accepting it so that the writer is never blocked.
type capped struct {
	buf     bytes.Buffer
	max     int64
	dropped bool
}

func (c *capped) Write(p []byte) (int, error) {
	room := c.max - int64(c.buf.Len())
	if int64(len(p)) > room {
		if room > 0 {
			c.buf.Write(p[:room])
		}
		c.dropped = true
		return len(p), nil
	}
	c.buf.Write(p)
	return len(p), nil
}

// readCapped reads at most max bytes of a file; trunc says there was more.
func readCapped(p string, max int64) (data []byte, trunc bool, err error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(data)) > max {
		return data[:max], true, nil
	}
	return data, false, nil
}
