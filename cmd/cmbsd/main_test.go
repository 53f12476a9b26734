package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cmbs/cmbs/occi"
)

// Bounds for every wait in these tests.
const (
	buildTimeout     = 5 * time.Minute
	testStartTimeout = 30 * time.Second
	exitTimeout      = 15 * time.Second
)

// binDir holds the cmbsd binary built for this test run (see cmbsdBinary).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cmbsd-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildOnce builds the binary the first time a test needs it, so tests
// that do not start processes do not pay for the build.
var buildOnce = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bin := filepath.Join(binDir, "cmbsd")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

// cmbsdBinary returns the path of the freshly built cmbsd.
func cmbsdBinary(t *testing.T) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// listeningLine matches the log line cmbsd prints once it serves.
var listeningLine = regexp.MustCompile(`msg=listening addr=(\S+) url=(\S+)`)

// process is a cmbsd child process.
type process struct {
	cmd    *exec.Cmd
	stderr *stderrWatcher
	exited chan struct{} // closed when Wait has returned
	err    error         // Wait's result, readable after exited is closed
}

// stderrWatcher collects the child's stderr and reports the address from
// the listening line.
type stderrWatcher struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	scanned int
	addr    chan string
	found   bool
}

func (w *stderrWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.found {
		rest := w.buf.Bytes()[w.scanned:]
		if i := bytes.LastIndexByte(rest, '\n'); i >= 0 {
			if m := listeningLine.FindSubmatch(rest[:i]); m != nil {
				w.found = true
				w.addr <- string(m[1])
			}
			w.scanned += i + 1
		}
	}
	return len(p), nil
}

func (w *stderrWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// startCmbsd runs cmbsd in dir with args and the given extra environment
// (the test's own CMBS_* variables are removed). The process is killed and
// reaped at cleanup.
func startCmbsd(t *testing.T, dir string, extraEnv []string, args ...string) *process {
	t.Helper()
	return startCmbsdVia(t, dir, extraEnv, nil, args...)
}

// startCmbsdWith runs cmbsd as startCmbsd does, through a wrapper command
// that gets cmbsd's path and args after its own (e.g. a shell that lowers
// a limit and execs it).
func startCmbsdWith(t *testing.T, dir string, wrapper []string, args ...string) *process {
	t.Helper()
	return startCmbsdVia(t, dir, nil, wrapper, args...)
}

func startCmbsdVia(t *testing.T, dir string, extraEnv, wrapper []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(cmbsdBinary(t), args...)
	if len(wrapper) > 0 {
		cmd = exec.Command(wrapper[0], append(append(wrapper[1:len(wrapper):len(wrapper)], cmbsdBinary(t)), args...)...)
	}
	cmd.Dir = dir
	return runProcess(t, cmd, extraEnv)
}

// runProcess starts cmd (cmbsd, directly or through a wrapper) with the
// test's environment less CMBS_* plus extraEnv, and kills and reaps it at
// cleanup if it is still running.
func runProcess(t *testing.T, cmd *exec.Cmd, extraEnv []string) *process {
	t.Helper()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	w := &stderrWatcher{addr: make(chan string, 1)}
	cmd.Stderr = w
	cmd.WaitDelay = 5 * time.Second // never hang on a leaked stderr descriptor
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stderr: w, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			select {
			case <-p.exited:
			case <-time.After(exitTimeout):
				t.Errorf("cmbsd pid %d not reaped after kill", cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("cmbsd stderr:\n%s", w.String())
		}
	})
	return p
}

// waitListening returns the bound address from the listening line.
func (p *process) waitListening(t *testing.T) string {
	t.Helper()
	select {
	case addr := <-p.stderr.addr:
		return addr
	case <-p.exited:
		t.Fatalf("cmbsd exited before listening (%v):\n%s", p.err, p.stderr.String())
	case <-time.After(testStartTimeout):
		t.Fatalf("no listening line within %v:\n%s", testStartTimeout, p.stderr.String())
	}
	return ""
}

// waitExit returns the exit code, failing the test after exitTimeout.
func (p *process) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(exitTimeout):
		t.Fatalf("cmbsd still running after %v:\n%s", exitTimeout, p.stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("wait: %v", p.err)
		return -1
	}
}

// get sends a GET with optional basic credentials and returns the status.
func get(t *testing.T, url, user, pass string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func TestBinaryDefaultStore(t *testing.T) {
	dir := t.TempDir()
	p := startCmbsd(t, dir, nil, "--listen", "127.0.0.1:0")
	addr := p.waitListening(t)
	if fi, err := os.Stat(filepath.Join(dir, "cmbs-data")); err != nil || !fi.IsDir() {
		t.Fatalf("./cmbs-data not created in the working directory: %v", err)
	}
	if !strings.Contains(p.stderr.String(), "url=http://"+addr+"/") {
		t.Errorf("listening line lacks url=http://%s/:\n%s", addr, p.stderr.String())
	}
	if st := get(t, "http://"+addr+"/-/", "", ""); st != http.StatusOK {
		t.Fatalf("GET /-/: status %d, want 200", st)
	}
}

// TestBinaryKeepsDataAcrossRestart runs the README's first steps against the
// real binary, stops it with SIGTERM, starts it again on the same directory
// and reads the member back.
func TestBinaryKeepsDataAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	send := func(addr, method, path, fixture string, want int) {
		t.Helper()
		body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "readme", fixture))
		if err != nil {
			t.Fatal(err)
		}
		mustCall(t, method, "http://"+addr+path, body, want)
	}
	p := startCmbsd(t, dir, nil, "--listen", "127.0.0.1:0")
	addr := p.waitListening(t)
	send(addr, "POST", "/-/", "post_category_cmbs_member.json", 200)
	send(addr, "PUT", "/-/", "put_provider_cmbs_member.json", 200)
	send(addr, "POST", "/cmbs/member/", "post_member.json", 201)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	p2 := startCmbsd(t, dir, nil, "--listen", "127.0.0.1:0")
	addr2 := p2.waitListening(t)
	if st := get(t, "http://"+addr2+"/cmbs/member/996ad860-2a9a-504f-8861-aeafd0b2ae29", "", ""); st != http.StatusOK {
		t.Fatalf("member after restart: status %d, want 200", st)
	}
	// The provider binding survived too: binding again is an update, not an error.
	send(addr2, "PUT", "/-/", "put_provider_cmbs_member.json", 200)
}

func TestBinarySQLiteStoreFlag(t *testing.T) {
	dir, dataDir := t.TempDir(), t.TempDir()
	db := filepath.Join(dataDir, "nested", "x.db")
	p := startCmbsd(t, dir, nil, "--listen", "127.0.0.1:0", "--store", "sqlite:"+db)
	addr := p.waitListening(t)
	if st := get(t, "http://"+addr+"/-/", "", ""); st != http.StatusOK {
		t.Fatalf("GET /-/: status %d, want 200", st)
	}
	if _, err := os.Stat(db); err != nil {
		t.Errorf("store file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cmbs-data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("./cmbs-data created although --store names another file (stat: %v)", err)
	}
}

func TestBinaryEnvConfig(t *testing.T) {
	dir := t.TempDir()
	p := startCmbsd(t, dir, []string{"CMBS_LISTEN=127.0.0.1:0", "CMBS_STORE=sqlite:env.db", "CMBS_LOG_LEVEL=debug"})
	addr := p.waitListening(t)
	get(t, "http://"+addr+"/", "", "")
	if !strings.Contains(p.stderr.String(), "store=sqlite:env.db") {
		t.Errorf("CMBS_STORE not used:\n%s", p.stderr.String())
	}
}

func TestBinarySignalExitsZero(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startCmbsd(t, t.TempDir(), nil, "--listen", "127.0.0.1:0")
			addr := p.waitListening(t)
			get(t, "http://"+addr+"/", "", "")
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := p.waitExit(t); code != 0 {
				t.Fatalf("exit code %d after %v, want 0:\n%s", code, sig, p.stderr.String())
			}
			if !strings.Contains(p.stderr.String(), "msg=stopped") {
				t.Errorf("no clean-stop log line:\n%s", p.stderr.String())
			}
		})
	}
}

// TestBinarySignalWithIdleConnection: an idle keep-alive connection does not
// hold the shutdown up.
func TestBinarySignalWithIdleConnection(t *testing.T) {
	p := startCmbsd(t, t.TempDir(), nil, "--listen", "127.0.0.1:0")
	addr := p.waitListening(t)
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(exitTimeout)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "GET /-/ HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v with an idle connection open", d)
	}
}

// serveResult is serveHTTP's outcome: err is valid once done is closed.
type serveResult struct {
	done chan struct{}
	err  error
}

// startServeHTTP runs serveHTTP on a loopback port with handler and returns
// the base URL, the cancel that plays the signal, and serveHTTP's result.
func startServeHTTP(t *testing.T, handler http.Handler, shutdownTimeout time.Duration) (string, context.CancelFunc, *serveResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	cfg := config{ShutdownTimeout: shutdownTimeout, StoreKind: storeSQLite, SQLitePath: "test.db"}
	res := &serveResult{done: make(chan struct{})}
	go func() {
		res.err = serveHTTP(ctx, ln, handler, cfg, logger)
		close(res.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-res.done:
		case <-time.After(exitTimeout):
			t.Error("serveHTTP did not return")
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	return "http://" + ln.Addr().String(), cancel, res
}

// TestServeHTTPFinishesInFlight: a request being handled when the signal
// arrives completes, and serveHTTP returns nil only after it did.
func TestServeHTTPFinishesInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	url, cancel, done := startServeHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-release:
			_, _ = io.WriteString(w, "finished")
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusServiceUnavailable)
		}
	}), exitTimeout)

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		ctx, cancelReq := context.WithTimeout(context.Background(), exitTimeout)
		defer cancelReq()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{resp.StatusCode, string(b), err}
	}()
	select {
	case <-entered:
	case <-time.After(exitTimeout):
		t.Fatal("handler not reached")
	}
	cancel()
	select {
	case <-done.done:
		t.Fatalf("serveHTTP returned (%v) with a request in flight", done.err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	r := <-got
	if r.err != nil || r.status != 200 || r.body != "finished" {
		t.Fatalf("in-flight request: %+v", r)
	}
	select {
	case <-done.done:
		if done.err != nil {
			t.Fatalf("serveHTTP = %v, want nil", done.err)
		}
	case <-time.After(exitTimeout):
		t.Fatal("serveHTTP did not return after the request finished")
	}
}

// TestServeHTTPShutdownTimeout: a request that outlives the shutdown timeout
// has its context cancelled, and serveHTTP reports the unclean shutdown.
func TestServeHTTPShutdownTimeout(t *testing.T) {
	entered, handlerCancelled := make(chan struct{}), make(chan struct{})
	url, cancel, done := startServeHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-r.Context().Done():
			close(handlerCancelled)
		case <-time.After(exitTimeout):
		}
	}), 200*time.Millisecond)
	go func() {
		ctx, cancelReq := context.WithTimeout(context.Background(), exitTimeout)
		defer cancelReq()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	select {
	case <-entered:
	case <-time.After(exitTimeout):
		t.Fatal("handler not reached")
	}
	cancel()
	select {
	case <-done.done:
		if done.err == nil || !strings.Contains(done.err.Error(), "still running") {
			t.Fatalf("serveHTTP = %v, want a shutdown timeout error", done.err)
		}
	case <-time.After(exitTimeout):
		t.Fatal("serveHTTP did not return after its shutdown timeout")
	}
	select {
	case <-handlerCancelled:
	case <-time.After(exitTimeout):
		t.Fatal("the overdue request's context was not cancelled")
	}
}

func TestBinaryRefusesPublicWithoutUsers(t *testing.T) {
	p := startCmbsd(t, t.TempDir(), nil, "--listen", "0.0.0.0:0")
	if code := p.waitExit(t); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	out := p.stderr.String()
	for _, w := range []string{"--users", "--insecure", "0.0.0.0:0"} {
		if !strings.Contains(out, w) {
			t.Errorf("stderr does not name %q:\n%s", w, out)
		}
	}
}

func TestBinaryBadConfigExitsTwo(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"store scheme", []string{"--store", "mysql://x"}, "--store"},
		{"users file", []string{"--users", "/nonexistent/users"}, "--users"},
		{"unknown flag", []string{"--nope"}, "-nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startCmbsd(t, t.TempDir(), nil, tt.args...)
			if code := p.waitExit(t); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
			if out := p.stderr.String(); !strings.Contains(out, tt.want) {
				t.Errorf("stderr does not name %q:\n%s", tt.want, out)
			}
		})
	}
}

func TestBinaryUsers(t *testing.T) {
	users, err := filepath.Abs(filepath.Join("testdata", "users"))
	if err != nil {
		t.Fatal(err)
	}
	p := startCmbsd(t, t.TempDir(), nil, "--listen", "127.0.0.1:0", "--users", users)
	url := "http://" + p.waitListening(t) + "/-/"
	tests := []struct {
		user, pass string
		want401    bool
	}{
		{"", "", true},
		{"alice", "wrong", true},
		{"mallory", "wonderland", true},
		{"alice", "wonderland", false},
		{"bob", "builder", false},
	}
	// The console is behind the same authentication as the API.
	base := strings.TrimSuffix(url, "/-/")
	for _, u := range []string{url, url + "status", base + "/console/", base + "/console/app.js"} {
		for _, tt := range tests {
			got := get(t, u, tt.user, tt.pass)
			if (got == http.StatusUnauthorized) != tt.want401 {
				t.Errorf("%s: user %q pass %q: status %d, want 401: %v", u, tt.user, tt.pass, got, tt.want401)
			}
		}
	}
	// The 401 is in the client's rendering, as the server's own errors.
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || string(body) != "Unauthorized: authentication required\n" {
		t.Errorf("text/plain 401: %d %q", resp.StatusCode, body)
	}
	// OPTIONS * (which net/http would answer before any handler) needs
	// credentials too.
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/-/")
	for _, tt := range tests {
		raw := "OPTIONS * HTTP/1.1\r\nHost: " + addr + "\r\n"
		if tt.user != "" {
			raw += "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(tt.user+":"+tt.pass)) + "\r\n"
		}
		got := rawStatus(t, addr, raw+"\r\n")
		if (got == http.StatusUnauthorized) != tt.want401 || !tt.want401 && got != http.StatusNoContent {
			t.Errorf("OPTIONS *: user %q pass %q: status %d, want 401: %v", tt.user, tt.pass, got, tt.want401)
		}
	}
}

// rawStatus sends raw bytes to addr and returns the response's status.
func rawStatus(t *testing.T, addr, raw string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// runInProcess runs run with args in the test's process and returns its
// base URL once it listens; at cleanup its context is cancelled and run
// must return 0 within exitTimeout.
func runInProcess(t *testing.T, args []string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stderr := &stderrWatcher{addr: make(chan string, 1)}
	code := make(chan int, 1)
	go func() { code <- run(ctx, args, env(nil), &bytes.Buffer{}, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case c := <-code:
			if c != 0 {
				t.Errorf("run = %d:\n%s", c, stderr.String())
			}
		case <-time.After(exitTimeout):
			t.Error("run did not return after cancel")
		}
	})
	select {
	case addr := <-stderr.addr:
		return "http://" + addr
	case c := <-code:
		t.Fatalf("run returned %d before listening:\n%s", c, stderr.String())
	case <-time.After(testStartTimeout):
		t.Fatalf("not listening:\n%s", stderr.String())
	}
	return ""
}

// TestRunInProcess drives run directly: a cancelled context is the signal.
func TestRunInProcess(t *testing.T) {
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout bytes.Buffer
	stderr := &stderrWatcher{addr: make(chan string, 1)}
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"--listen", "127.0.0.1:0"}, env(nil), &stdout, stderr) }()
	select {
	case addr := <-stderr.addr:
		get(t, "http://"+addr+"/", "", "")
	case c := <-code:
		t.Fatalf("run returned %d before listening:\n%s", c, stderr.String())
	case <-time.After(testStartTimeout):
		t.Fatalf("not listening:\n%s", stderr.String())
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("run = %d, want 0:\n%s", c, stderr.String())
		}
	case <-time.After(exitTimeout):
		t.Fatal("run did not return after cancel")
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", stdout.String())
	}
}

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{"help", []string{"-h"}, 0, "CMBS_LISTEN", ""},
		{"version", []string{"--version"}, 0, "cmbsd " + occi.Version + " (OCCI 1.2, go", ""},
		{"bad config", []string{"--log-level", "loud"}, 2, "", "cmbsd: invalid configuration: --log-level (CMBS_LOG_LEVEL)"},
		{"non-loopback", []string{"--listen", ":0"}, 2, "", "--insecure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(t.Context(), exitTimeout)
			defer cancel()
			if code := run(ctx, tt.args, env(nil), &stdout, &stderr); code != tt.code {
				t.Fatalf("run = %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("stdout %q / stderr %q, want %q / %q", stdout.String(), stderr.String(), tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

// TestRunListenInUse: a taken port is a start failure (exit 1), reported, and
// the store is closed on the way out.
func TestRunListenInUse(t *testing.T) {
	t.Chdir(t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), exitTimeout)
	defer cancel()
	if code := run(ctx, []string{"--listen", ln.Addr().String()}, env(nil), &stdout, &stderr); code != 1 {
		t.Fatalf("run = %d, want 1:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "listen") || !strings.Contains(stderr.String(), "address already in use") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

// TestRunCouchUnreachable: a CouchDB that cannot be reached fails the start
// (exit 1) promptly, and the password in --store never reaches the logs.
func TestRunCouchUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close() // nothing listens there any more: connections are refused
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), exitTimeout)
	defer cancel()
	args := []string{"--listen", "127.0.0.1:0", "--store", "http://admin:s3cret@" + dead, "--db", "cmbs_test"}
	if code := run(ctx, args, env(nil), &stdout, &stderr); code != 1 {
		t.Fatalf("run = %d, want 1:\n%s", code, stderr.String())
	}
	out := stderr.String()
	if !strings.Contains(out, "CouchDB") || strings.Contains(out, "s3cret") || strings.Contains(out, "msg=listening") {
		t.Errorf("stderr:\n%s", out)
	}
}

// --insecure also lets members bind layer sockets beyond loopback; without
// it start_l1 on such an address is refused before anything is bound.
func TestBinaryInsecureAllowsNonLoopbackSockets(t *testing.T) {
	member := []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"m","attributes":{"cmbs":{"member":{"l1_socket":"tcp://192.0.2.1:5999"}}}}]}`)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, http.StatusForbidden},
		{[]string{"--insecure"}, http.StatusBadRequest}, // tried: 192.0.2.1 is not this machine's
	} {
		p := startCmbsd(t, t.TempDir(), nil, append([]string{"--listen", "127.0.0.1:0"}, tc.args...)...)
		base := "http://" + p.waitListening(t)
		for _, f := range []struct{ method, file string }{
			{"POST", "post_category_cmbs_member.json"}, {"PUT", "put_provider_cmbs_member.json"},
		} {
			body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "readme", f.file))
			if err != nil {
				t.Fatal(err)
			}
			mustCall(t, f.method, base+"/-/", body, 200)
		}
		mustCall(t, "POST", base+"/cmbs/member/", member, 201)
		mustCall(t, "POST", base+"/cmbs/member/m?action=start_l1", []byte("{}"), tc.want)
	}
}
