package choria

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cmbs/cmbs/internal/procgroup"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Timeouts of Choria's external-agent contract: an action may run for the
// DDL's timeout plus actionGrace; an activation check for activationTimeout.
const (
	actionGrace       = 1500 * time.Millisecond
	activationTimeout = 2 * time.Second
	// killWait bounds how long output pipes are drained after the agent was
	// killed (a grandchild may still hold them).
	killWait = time.Second
)

// ExternalOptions is what external agents need from the server.
type ExternalOptions struct {
	// ConfigDir is where CHORIA_EXTERNAL_CONFIG points into:
	// <ConfigDir>/plugin.d/<agent> (a file path, as go-choria passes it).
	ConfigDir string
	// Facts returns the facts written to CHORIA_EXTERNAL_FACTS (a JSON
	// object); nil writes {}.
	Facts func(ctx context.Context) map[string]any
	// Logger receives the agents' stdout lines at info and stderr lines at
	// error.
	Logger *slog.Logger
}

// External is an agent implemented by an executable, run once per request
// under Choria's external-agent contract: argv <request file> <reply file>
// <protocol>, the environment CHORIA_EXTERNAL_{REQUEST,REPLY,PROTOCOL,
// CONFIG,FACTS} and PATH only, the OS temp dir as working directory, the
// DDL timeout plus 1.5 s (2 s for the activation check), temp files removed
// afterwards. Unlike go-choria, argument 3 is the real protocol (go-choria
// always passes rpc_request).
type External struct {
	ddl        *DDL
	executable string
	opts       ExternalOptions
	schemas    *Schemas
}

// LoadExternal reads every <agent>.json DDL in dir and returns the external
// agents they declare. The executable is <dir>/<agent> when that is a
// regular file, else <dir>/<agent>/<agent>-<GOOS>_<GOARCH> (go-choria's
// lookup); a missing executable is reported when the agent is called. A
// DDL that does not parse is an error naming its file.
func LoadExternal(dir string, opts ExternalOptions) ([]*External, error) {
	schemas, err := NewSchemas()
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Agents run in the temp dir: a relative path would resolve there.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if opts.ConfigDir == "" {
		opts.ConfigDir = dir
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var agents []*External
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		ddl, err := ParseDDL(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if name := strings.TrimSuffix(filepath.Base(f), ".json"); name != ddl.Metadata.Name {
			return nil, fmt.Errorf("%s: DDL names agent %q; the file must be %s.json", f, ddl.Metadata.Name, ddl.Metadata.Name)
		}
		agents = append(agents, &External{ddl: ddl, executable: executablePath(dir, ddl.Metadata.Name), opts: opts, schemas: schemas})
	}
	return agents, nil
}

func executablePath(dir, name string) string {
	p := filepath.Join(dir, name)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
		return p
	}
	return filepath.Join(dir, name, fmt.Sprintf("%s-%s_%s", name, runtime.GOOS, runtime.GOARCH))
}

// DDL implements Agent.
func (x *External) DDL() *DDL { return x.ddl }

// Executable is the path the agent runs.
func (x *External) Executable() string { return x.executable }

// Activate runs the activation check: the agent is active when it exits 0
// with a valid {"activate": true}.
func (x *External) Activate(ctx context.Context) (bool, error) {
	req, err := json.Marshal(ActivationRequest{Schema: ActivationSchemaURL, Protocol: ProtocolActivationRequest, Agent: x.ddl.Metadata.Name})
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, activationTimeout)
	defer cancel()
	out, err := x.run(ctx, ProtocolActivationRequest, req)
	if err != nil {
		x.opts.Logger.Warn("external agent not activating: its activation check failed", "agent", x.ddl.Metadata.Name, "err", err)
		return false, err
	}
	if err := x.schemas.Validate(ProtocolActivationReply, out); err != nil {
		return false, fmt.Errorf("invalid activation reply: %w", err)
	}
	var rep ActivationReply
	if err := json.Unmarshal(out, &rep); err != nil {
		return false, err
	}
	return rep.Activate, nil
}

// Call implements Agent.
func (x *External) Call(ctx context.Context, req *Request) Reply {
	action := req.Agent + "#" + req.Action
	if fi, err := os.Stat(x.executable); err != nil || fi.IsDir() {
		return x.abort("Cannot call external agent %s: agent executable was not found", action)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return x.abort("Could not call external agent %s: json request creation failed: %v", action, err)
	}
	timeout := time.Duration(x.ddl.Metadata.Timeout*float64(time.Second)) + actionGrace
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := x.run(ctx, ProtocolRPCRequest, body)
	if err != nil {
		return x.abort("Could not call external agent %s: %v", action, err)
	}
	if err := x.schemas.Validate(ProtocolRPCReply, out); err != nil {
		return Fail(StatusUnknownError, "Invalid reply from agent %s: %v", req.Agent, err)
	}
	var rep Reply
	if err := json.Unmarshal(out, &rep); err != nil {
		return Fail(StatusUnknownError, "Invalid reply from agent %s: %v", req.Agent, err)
	}
	if rep.Data == nil {
		rep.Data = map[string]any{}
	}
	if a := x.ddl.Action(req.Action); a != nil {
		a.ApplyOutputDefaults(rep.Data)
	}
	return rep
}

func (x *External) abort(format string, args ...any) Reply {
	r := Fail(StatusAborted, format, args...)
	x.opts.Logger.Error(r.StatusMsg, "agent", x.ddl.Metadata.Name)
	return r
}

// run executes the agent once for protocol with request and returns the
// reply file's contents.
func (x *External) run(ctx context.Context, protocol string, request []byte) ([]byte, error) {
	name := x.ddl.Metadata.Name
	reqFile, err := tempFile("request", request)
	if err != nil {
		return nil, err
	}
	defer os.Remove(reqFile)
	repFile, err := tempFile("reply", nil)
	if err != nil {
		return nil, err
	}
	defer os.Remove(repFile)
	facts := map[string]any{}
	if x.opts.Facts != nil {
		if f := x.opts.Facts(ctx); f != nil {
			facts = f
		}
	}
	factsJSON, err := json.Marshal(facts)
	if err != nil {
		return nil, fmt.Errorf("could not encode facts: %w", err)
	}
	factsFile, err := tempFile("facts", factsJSON)
	if err != nil {
		return nil, err
	}
	defer os.Remove(factsFile)
	config, err := filepath.Abs(filepath.Join(x.opts.ConfigDir, "plugin.d", name))
	if err != nil {
		return nil, fmt.Errorf("could not determine agent config file: %w", err)
	}

	cmd := exec.CommandContext(ctx, x.executable, reqFile, repFile, protocol)
	cmd.Dir = os.TempDir()
	cmd.Env = []string{
		"CHORIA_EXTERNAL_REQUEST=" + reqFile,
		"CHORIA_EXTERNAL_REPLY=" + repFile,
		"CHORIA_EXTERNAL_PROTOCOL=" + protocol,
		"CHORIA_EXTERNAL_CONFIG=" + config,
		"CHORIA_EXTERNAL_FACTS=" + factsFile,
		"PATH=" + os.Getenv("PATH"),
	}
	// Its own process group, killed whole on timeout: a shell agent's
	// children must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return procgroup.Signal(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = killWait
	log := x.opts.Logger.With("agent", name, "protocol", protocol)
	stdout := &lineLogger{emit: func(l string) { log.Info(l) }}
	stderr := &lineLogger{emit: func(l string) { log.Error(l) }}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	runErr := cmd.Run()
	stdout.flush()
	stderr.flush()
	// Whatever ran in the group is gone too.
	if cmd.Process != nil {
		_ = procgroup.Signal(cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("executing %s failed: %w", filepath.Base(x.executable), ctx.Err())
	}
	if runErr != nil {
		var ee *exec.ExitError
		if errors.As(runErr, &ee) {
			return nil, fmt.Errorf("executing %s failed: exit status %d", filepath.Base(x.executable), ee.ExitCode())
		}
		return nil, fmt.Errorf("executing %s failed: %w", filepath.Base(x.executable), runErr)
	}
	out, err := os.ReadFile(repFile)
	if err != nil {
		return nil, fmt.Errorf("failed to read reply json: %w", err)
	}
	if !json.Valid(out) {
		return nil, fmt.Errorf("failed to decode reply json: %q", truncate(out, 200))
	}
	return out, nil
}

func tempFile(kind string, content []byte) (string, error) {
	f, err := os.CreateTemp("", "choria-"+kind+"-*.json")
	if err != nil {
		return "", fmt.Errorf("could not create %s temp file: %w", kind, err)
	}
	_, werr := f.Write(content)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("could not write %s temp file: %w", kind, err)
	}
	return f.Name(), nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// lineLogger is an io.Writer that emits each complete line (and the last
// partial one on flush).
type lineLogger struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64<<10 { // a runaway line is logged in pieces
		l.emit(string(l.buf))
		l.buf = nil
	}
	return len(p), nil
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(string(l.buf))
		l.buf = nil
	}
}
