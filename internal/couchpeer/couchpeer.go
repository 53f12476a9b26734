// Package couchpeer starts the project's CouchDB-API test peer for tests.
//
// Apache CouchDB is not packaged for the project's machines, so tests that
// need a CouchDB talk to testdata/couchpeer/couch-peer.js: express-pouchdb over
// in-memory PouchDB with the fixes couch-peer.js lists (Fix 1–4), run
// with Node (install its npm dependencies with testdata/couchpeer/install.sh).
//
// Where the server comes from, in order:
//
//   - COUCHDB_URL set (e.g. http://admin:secret@127.0.0.1:5984/): that
//     server is used and nothing is started;
//   - otherwise, if node is on PATH and testdata/couchpeer/node_modules
//     exists, a peer is started on a free loopback port;
//   - otherwise the test is skipped, except with CI=true, where it fails:
//     CI must never pass by skipping the CouchDB tests.
//
// A package whose tests share one server per test binary starts it in
// TestMain (Run does StartServer, m.Run and Close) and keeps the *Server in
// a test-only variable:
//
//	var couch *couchpeer.Server
//
//	func TestMain(m *testing.M) { os.Exit(couchpeer.Run(m, &couch)) }
//
//	func TestSomething(t *testing.T) {
//		url := couch.URL(t)               // skips or fails when there is none
//		db := couchpeer.DBForTest(t, url) // a fresh database name, deleted after t
//		…
//	}
//
// A package with a single CouchDB test can instead call URLForTest, which
// starts a peer for that test alone and stops it in t.Cleanup.
package couchpeer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled means the peer cannot be started on this machine: node is
// not on PATH, or the peer's npm dependencies are not installed.
var ErrNotInstalled = errors.New("couchpeer: test peer not installed")

// Default timeouts, used when Options leaves them zero.
const (
	DefaultStartTimeout = 20 * time.Second
	DefaultStopGrace    = 5 * time.Second
)

// Options configure Start. The zero value starts the peer of the enclosing
// module on a free port.
type Options struct {
	// Dir is the peer's directory (holding couch-peer.js and node_modules).
	// Empty: testdata/couchpeer in the module that contains the working
	// directory.
	Dir string
	// Port to listen on, on 127.0.0.1; 0 picks a free one.
	Port int
	// Node is the node executable; empty looks up "node" on PATH.
	Node string
	// StartTimeout bounds the wait for the peer's "listening" line.
	StartTimeout time.Duration
	// StopGrace is how long Stop waits after SIGTERM before killing.
	StopGrace time.Duration
	// Stderr receives the peer's standard error and any stdout lines after
	// the first; nil discards them (the last few KB still end up in errors).
	Stderr io.Writer
	// Logger logs start and stop; nil discards.
	Logger *slog.Logger
}

// Peer is a running couch-peer process. Stop it exactly once it is no longer
// needed; Stop is safe to call more than once.
type Peer struct {
	url    string
	cmd    *exec.Cmd
	log    *slog.Logger
	grace  time.Duration
	stderr *tailBuffer

	exited  chan struct{} // closed when the process has been waited for
	waitErr error         // set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Dir returns the peer's directory: testdata/couchpeer in the module that
// contains the working directory (found by walking up to go.mod).
func Dir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("couchpeer: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "couchpeer"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("couchpeer: no go.mod above %s", wd)
		}
		dir = parent
	}
}

// Start runs couch-peer.js and returns once it accepts connections. ctx
// bounds the start only; the peer runs until Stop. An error wrapping
// ErrNotInstalled means node or the npm dependencies are missing.
func Start(ctx context.Context, opts Options) (*Peer, error) {
	dir := opts.Dir
	if dir == "" {
		var err error
		if dir, err = Dir(); err != nil {
			return nil, err
		}
	}
	node := opts.Node
	if node == "" {
		var err error
		if node, err = exec.LookPath("node"); err != nil {
			return nil, fmt.Errorf("%w: node not found on PATH (install Node.js >= 18)", ErrNotInstalled)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "express-pouchdb")); err != nil {
		return nil, fmt.Errorf("%w: %s/node_modules is missing (run sh %s/install.sh)", ErrNotInstalled, dir, dir)
	}
	startTimeout := cmp(opts.StartTimeout, DefaultStartTimeout)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	p := &Peer{
		log:    log,
		grace:  cmp(opts.StopGrace, DefaultStopGrace),
		stderr: &tailBuffer{max: 4096, w: opts.Stderr},
		exited: make(chan struct{}),
	}
	ready := make(chan string, 1)
	// exec.Command, not CommandContext: ctx bounds the start, not the life
	// of the peer.
	cmd := exec.Command(node, "couch-peer.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), fmt.Sprintf("COUCH_PEER_PORT=%d", opts.Port))
	cmd.Stdout = &readyWriter{ready: ready, rest: p.stderr}
	cmd.Stderr = p.stderr
	cmd.SysProcAttr = sysProcAttr()
	// Output copying ends when the pipes close; WaitDelay stops Wait from
	// hanging should the peer ever leave a child holding them.
	cmd.WaitDelay = time.Second
	p.cmd = cmd

	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("couchpeer: starting %s: %w", node, err)
	}
	go func() { // owned by the Peer: ends when the process does, which Stop ensures
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	var why error
	select {
	case p.url = <-ready:
		log.Info("couch peer started", "url", p.url, "pid", cmd.Process.Pid, "startup", time.Since(begin))
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("couchpeer: peer exited before listening (%v): %s", p.waitErr, p.stderr.String())
	case <-timer.C:
		why = fmt.Errorf("not listening after %v", startTimeout)
	case <-ctx.Done():
		why = ctx.Err()
	}
	stopErr := p.Stop()
	return nil, errors.Join(fmt.Errorf("couchpeer: start: %w: %s", why, p.stderr.String()), stopErr)
}

// URL is the peer's base URL, "http://127.0.0.1:<port>/".
func (p *Peer) URL() string { return p.url }

// Pid is the peer's process id (for leak checks).
func (p *Peer) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM, kills the peer if it has not exited after the grace
// period, and waits for the process. It returns an error only if the peer
// had to be killed or had already died on its own.
func (p *Peer) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *Peer) stop() error {
	select {
	case <-p.exited:
		return fmt.Errorf("couchpeer: peer had exited by itself (%v): %s", p.waitErr, p.stderr.String())
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.log.Warn("couch peer: SIGTERM failed", "err", err)
	}
	timer := time.NewTimer(p.grace)
	defer timer.Stop()
	select {
	case <-p.exited:
		p.log.Info("couch peer stopped", "pid", p.cmd.Process.Pid)
		return nil
	case <-timer.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return fmt.Errorf("couchpeer: peer ignored SIGTERM for %v and was killed: %s", p.grace, p.stderr.String())
}

func cmp(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// readyWriter is the peer's stdout: it reports the URL of the first
// "listening <url>" line and passes every other line on.
type readyWriter struct {
	mu    sync.Mutex
	buf   []byte
	ready chan<- string // nil once reported
	rest  io.Writer
}

func (w *readyWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ready == nil {
		return w.rest.Write(b)
	}
	w.buf = append(w.buf, b...)
	for w.ready != nil {
		line, after, ok := bytes.Cut(w.buf, []byte("\n"))
		if !ok {
			break
		}
		if url, found := strings.CutPrefix(string(line), "listening "); found {
			w.ready <- strings.TrimSpace(url)
			w.ready = nil
		} else {
			_, _ = w.rest.Write(line)
			_, _ = w.rest.Write([]byte("\n"))
		}
		w.buf = after
	}
	if w.ready == nil && len(w.buf) > 0 {
		_, _ = w.rest.Write(w.buf)
		w.buf = nil
	}
	return len(b), nil
}

// tailBuffer keeps the last max bytes written (for error messages) and copies
// everything to w when w is set.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
	w   io.Writer
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.w != nil {
		_, _ = t.w.Write(b)
	}
	t.b = append(t.b, b...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return "(no output)"
	}
	return s
}

// Port is the TCP port the peer listens on, for a restart on the same one.
func (p *Peer) Port() int {
	u, err := url.Parse(p.url)
	if err != nil {
		return 0
	}
	port, _ := strconv.Atoi(u.Port())
	return port
}
