package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cmbs/cmbs/providers/process/engine"
	"github.com/cmbs/cmbs/providers/process/internal/processtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func parse(t *testing.T, doc string) *engine.Definition {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("test definition %s: %v", doc, err)
	}
	d, _, err := engine.Parse(m)
	if err != nil {
		t.Fatalf("Parse(%s): %v", doc, err)
	}
	return d
}

func run(t *testing.T, r *engine.Runner, d *engine.Definition, req engine.Request) *engine.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := r.Run(ctx, d, req)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func wantStatus(t *testing.T, res *engine.Result, status string, code int) {
	t.Helper()
	if res.Status != status {
		t.Fatalf("status %q (error %q, stderr %q), want %q", res.Status, res.Error, res.Stderr, status)
	}
	switch {
	case code < 0 && res.ExitCode != nil:
		t.Errorf("exit code %d, want none", *res.ExitCode)
	case code >= 0 && (res.ExitCode == nil || *res.ExitCode != code):
		t.Errorf("exit code %v, want %d", res.ExitCode, code)
	}
}

func TestParseValidation(t *testing.T) {
	for _, tc := range []struct{ name, doc, field string }{
		{"PR-V1 no exec", `{}`, "exec"},
		{"exec not a string", `{"exec":3}`, "exec"},
		{"PR-V2 argv not an array", `{"exec":"cat","argv":"-n"}`, "argv"},
		{"argv element not a string", `{"exec":"cat","argv":["-n",1]}`, "argv"},
		{"PR-V3 environment value", `{"exec":"cat","environment":{"A":1}}`, "environment"},
		{"environment not an object", `{"exec":"cat","environment":["A"]}`, "environment"},
		{"PR-V4 unsupported input type", `{"exec":"cat","input_adapter":{"input_type":"tcp"}}`, "input_adapter.input_type"},
		{"unsupported output type", `{"exec":"cat","output_adapter":{"output_type":"pipe","output_parameters":{}}}`, "output_adapter.output_type"},
		{"PR-V5 STDOUT as input", `{"exec":"cat","input_adapter":{"input_type":"file","input_parameters":{"file_type":"stream","stream_name":"STDOUT"}}}`, "input_adapter.input_parameters.stream_name"},
		{"STDIN as output", `{"exec":"cat","output_adapter":{"output_type":"file","output_parameters":{"file_type":"stream","stream_name":"STDIN"}}}`, "output_adapter.output_parameters.stream_name"},
		{"PR-V6 input_file without a file adapter", `{"exec":"cat","argv":["${input_file}"],"input_adapter":` + processtest.StdinIn + `}`, "argv"},
		{"PR-V6 input_file without any adapter", `{"exec":"cat","argv":["--in=${input_file}"]}`, "argv"},
		{"output_file without a file adapter", `{"exec":"cp","argv":["a","${output_file}"]}`, "argv"},
		{"PR-V7 timeout 0", `{"exec":"cat","timeout":0}`, "timeout"},
		{"PR-V7 timeout -5", `{"exec":"cat","timeout":-5}`, "timeout"},
		{"timeout a string", `{"exec":"cat","timeout":"60"}`, "timeout"},
		{"process_type", `{"exec":"cat","process_type":"daemon"}`, "process_type"},
		{"unknown field", `{"exec":"cat","user":"root"}`, "user"},
		{"args and argv", `{"exec":"cat","args":[],"argv":[]}`, "args"},
		{"adapter without parameters", `{"exec":"cat","input_adapter":{"input_type":"file"}}`, "input_adapter.input_parameters"},
		{"run_on_message", `{"exec":"cat","run_on_message":"yes"}`, "run_on_message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal([]byte(tc.doc), &m); err != nil {
				t.Fatal(err)
			}
			_, _, err := engine.Parse(m)
			fe, ok := engine.IsFieldError(err)
			if !ok {
				t.Fatalf("Parse(%s) = %v, want a field error", tc.doc, err)
			}
			if fe.Field != tc.field || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("field %q (%v), want %q", fe.Field, err, tc.field)
			}
		})
	}
}

// PR-V9: the registry documentation's own spellings are accepted and made
// canonical.
func TestParseCanonicalSpellings(t *testing.T) {
	var m map[string]any
	doc := `{"exec":"someproc","args":["--quiet","--input","${input_file}"],
		"input_adapter":{"input_type":"file","input_params":{"file_path":"${input_file}"}},
		"output_adapter":{"output_type":"file","output_params":{"file_type":"stream","stream_name":"STDOUT"}}}`
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	d, canon, err := engine.Parse(m)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(canon)
	want := `{"argv":["--quiet","--input","${input_file}"],"exec":"someproc",` +
		`"input_adapter":{"input_parameters":{"file_path":"${input_file}"},"input_type":"file"},` +
		`"output_adapter":{"output_parameters":{"file_type":"stream","stream_name":"STDOUT"},"output_type":"file"}}`
	if string(got) != want {
		t.Errorf("canonical\n got %s\nwant %s", got, want)
	}
	if d.Input.Path != "${input_file}" || d.Output.Stream != "STDOUT" || len(d.Argv) != 3 {
		t.Errorf("definition %+v", d)
	}
}

// PR-E1: the registry's tr example, verbatim.
func TestRunTr(t *testing.T) {
	res := run(t, &engine.Runner{}, parse(t, processtest.TrDefinition), engine.Request{Input: []byte("xaxbxcx\n")})
	wantStatus(t, res, engine.StatusSucceeded, 0)
	if string(res.Output) != "abc\n" {
		t.Errorf("output %q", res.Output)
	}
	if res.Pid == 0 || res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) {
		t.Errorf("pid %d, started %v, finished %v", res.Pid, res.StartedAt, res.FinishedAt)
	}
}

// PR-E2 and PR-E11: file in, file out, binary, and the run directory is
// gone afterwards.
func TestRunFileInFileOut(t *testing.T) {
	in := make([]byte, 256)
	for i := range in {
		in[i] = byte(i)
	}
	d := parse(t, `{"exec":"cp","argv":["${input_file}","${output_file}"],"input_adapter":`+processtest.FileIn+`,"output_adapter":`+processtest.FileOut+`}`)
	res := run(t, &engine.Runner{}, d, engine.Request{Input: in})
	wantStatus(t, res, engine.StatusSucceeded, 0)
	if !bytes.Equal(res.Output, in) {
		t.Errorf("output %x", res.Output)
	}
	if _, err := os.Stat(res.RunDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run directory %s still there: %v", res.RunDir, err)
	}
}

func TestRunAdapters(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, doc, input, output string
	}{
		{"PR-E3 stdin in, file out", `{"exec":"sh","argv":["-c","tr a-z A-Z > \"$0\"","${output_file}"],"input_adapter":` + processtest.StdinIn + `,"output_adapter":` + processtest.FileOut + `}`, "hello", "HELLO"},
		{"PR-E4 file in, stdout out", `{"exec":"cat","argv":["${input_file}"],"input_adapter":` + processtest.FileIn + `,"output_adapter":` + processtest.StdoutOut + `}`, "abc", "abc"},
		{"PR-E5 environment and cwd", `{"exec":"sh","argv":["-c","printf '%s|%s' \"$FOO\" \"$(pwd)\""],"environment":{"FOO":"bar"},"cwd":"` + dir + `","output_adapter":` + processtest.StdoutOut + `}`, "", "bar|" + dir},
		{"no input adapter: stdin is empty", `{"exec":"cat"}`, "ignored", ""},
		{"no input adapter: stdin is /dev/null", `{"exec":"readlink","argv":["/proc/self/fd/0"]}`, "ignored", "/dev/null\n"},
		{"file in: stdin is /dev/null", `{"exec":"sh","argv":["-c","cat; readlink /proc/self/fd/0; cat \"$0\"","${input_file}"],"input_adapter":` + processtest.FileIn + `}`, "abc", "/dev/null\nabc"},
		{"stderr as output", `{"exec":"sh","argv":["-c","echo out; echo err >&2"],"output_adapter":{"output_type":"file","output_parameters":{"file_type":"stream","stream_name":"STDERR"}}}`, "", "err\n"},
		{"minimal environment", `{"exec":"sh","argv":["-c","env | cut -d= -f1 | sort | tr '\\n' ' '"]}`, "", "HOME PATH PWD TMPDIR "},
		{"exec through PATH from the environment", `{"exec":"mytool","environment":{"PATH":"` + dir + `"}}`, "", "mine\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.doc, "mytool") {
				if err := os.WriteFile(filepath.Join(dir, "mytool"), []byte("#!/bin/sh\necho mine\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			res := run(t, &engine.Runner{}, parse(t, tc.doc), engine.Request{Input: []byte(tc.input)})
			wantStatus(t, res, engine.StatusSucceeded, 0)
			if string(res.Output) != tc.output {
				t.Errorf("output %q, want %q", res.Output, tc.output)
			}
		})
	}
}

// PR-E6: a timeout kills the whole process group and says so, promptly.
func TestRunTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	// The shell starts a background sleep that ignores TERM: only KILL on
	// the group ends it.
	d := parse(t, `{"exec":"sh","argv":["-c","(trap '' TERM; exec sleep 30) & echo $! > `+pidFile+`; exec sleep 30"],"timeout":1}`)
	start := time.Now()
	res := run(t, &engine.Runner{KillGrace: 500 * time.Millisecond}, d, engine.Request{})
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v, want ≤ 3s", took)
	}
	wantStatus(t, res, engine.StatusTimeout, -1)
	if !strings.Contains(res.Error, "timed out") {
		t.Errorf("error %q", res.Error)
	}
	wantGone(t, res.Pid, pidFile)
}

// The request's timeout wins over the definition's.
func TestRunRequestTimeout(t *testing.T) {
	res := run(t, &engine.Runner{}, parse(t, `{"exec":"sleep","argv":["30"],"timeout":60}`), engine.Request{Timeout: 200 * time.Millisecond})
	wantStatus(t, res, engine.StatusTimeout, -1)
	if alive(res.Pid) {
		t.Errorf("process %d still alive", res.Pid)
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan int, 1)
	go func() { <-started; cancel() }()
	res, err := (&engine.Runner{}).Run(ctx, parse(t, `{"exec":"sleep","argv":["30"]}`), engine.Request{Started: func(pid int) { started <- pid }})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, engine.StatusCancelled, -1)
	if alive(res.Pid) {
		t.Errorf("process %d still alive", res.Pid)
	}
}

// alive reports whether pid is still a running (not zombie) process a
// second after a kill was sent (the kernel takes a moment to end it).
func alive(pid int) bool {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !running(pid) {
			return false
		}
	}
	return true
}

func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z")
}

func TestRunFailures(t *testing.T) {
	t.Run("PR-E7 non-zero exit", func(t *testing.T) {
		res := run(t, &engine.Runner{}, parse(t, `{"exec":"sh","argv":["-c","echo oops >&2; exit 3"]}`), engine.Request{})
		wantStatus(t, res, engine.StatusFailed, 3)
		if string(res.Stderr) != "oops\n" {
			t.Errorf("stderr %q", res.Stderr)
		}
	})
	t.Run("PR-E8 missing exec", func(t *testing.T) {
		res := run(t, &engine.Runner{}, parse(t, `{"exec":"definitely-not-a-binary"}`), engine.Request{})
		wantStatus(t, res, engine.StatusError, -1)
		if !strings.Contains(res.Error, "not found") {
			t.Errorf("error %q", res.Error)
		}
	})
	t.Run("missing exec path", func(t *testing.T) {
		res := run(t, &engine.Runner{}, parse(t, `{"exec":"/no/such/bin"}`), engine.Request{})
		wantStatus(t, res, engine.StatusError, -1)
		if !strings.Contains(res.Error, "no such file") {
			t.Errorf("error %q", res.Error)
		}
	})
	t.Run("missing cwd", func(t *testing.T) {
		res := run(t, &engine.Runner{}, parse(t, `{"exec":"true","cwd":"/no/such/dir"}`), engine.Request{})
		wantStatus(t, res, engine.StatusError, -1)
		if !strings.Contains(res.Error, "cwd") {
			t.Errorf("error %q", res.Error)
		}
	})
	t.Run("PR-E10 output file never produced", func(t *testing.T) {
		res := run(t, &engine.Runner{}, parse(t, `{"exec":"true","output_adapter":`+processtest.FileOut+`}`), engine.Request{})
		wantStatus(t, res, engine.StatusFailed, 0)
		if !strings.Contains(res.Error, "output file") {
			t.Errorf("error %q", res.Error)
		}
	})
	t.Run("killed by a signal", func(t *testing.T) {
		res := run(t, &engine.Runner{}, parse(t, `{"exec":"sh","argv":["-c","kill -9 $$"]}`), engine.Request{})
		wantStatus(t, res, engine.StatusFailed, -1)
		if !strings.Contains(res.Error, "signal") {
			t.Errorf("error %q", res.Error)
		}
	})
	t.Run("service", func(t *testing.T) {
		_, err := (&engine.Runner{}).Run(context.Background(), parse(t, `{"exec":"sleep","process_type":"service"}`), engine.Request{})
		if !errors.Is(err, engine.ErrService) {
			t.Errorf("err %v", err)
		}
	})
}

// PR-E9: no shell, and substitution inside a string.
func TestRunNoShell(t *testing.T) {
	d := parse(t, `{"exec":"echo","argv":["$(id)",";","${input_file}x"],"input_adapter":`+processtest.FileIn+`}`)
	res := run(t, &engine.Runner{}, d, engine.Request{Input: []byte("in")})
	wantStatus(t, res, engine.StatusSucceeded, 0)
	want := "$(id) ; " + filepath.Join(res.RunDir, "input") + "x\n"
	if string(res.Output) != want {
		t.Errorf("output %q, want %q", res.Output, want)
	}
}

// PR-E14: output beyond the cap is dropped and flagged; the run still
// succeeds (the process was not held up).
func TestRunOutputCap(t *testing.T) {
	d := parse(t, `{"exec":"head","argv":["-c","5000000","/dev/zero"],"output_adapter":`+processtest.StdoutOut+`}`)
	res := run(t, &engine.Runner{}, d, engine.Request{})
	wantStatus(t, res, engine.StatusSucceeded, 0)
	if !res.Truncated || len(res.Output) != engine.DefaultMaxOutput {
		t.Errorf("truncated %v, %d bytes", res.Truncated, len(res.Output))
	}
	small := run(t, &engine.Runner{MaxOutput: 10}, parse(t, `{"exec":"sh","argv":["-c","echo 0123456789abc; echo 0123456789abc >&2"]}`), engine.Request{})
	if string(small.Output) != "0123456789" || !small.Truncated || string(small.Stderr) != "0123456789" || !small.StderrTruncated {
		t.Errorf("output %q (%v), stderr %q (%v)", small.Output, small.Truncated, small.Stderr, small.StderrTruncated)
	}
}

// PR-E12: concurrent runs each get their own output.
func TestRunConcurrent(t *testing.T) {
	d := parse(t, `{"exec":"cat","argv":["${input_file}"],"input_adapter":`+processtest.FileIn+`,"output_adapter":`+processtest.StdoutOut+`}`)
	r := &engine.Runner{}
	var wg sync.WaitGroup
	outs := make([]string, 10)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := r.Run(context.Background(), d, engine.Request{Input: fmt.Appendf(nil, "n=%d", i)})
			if err == nil {
				outs[i] = string(res.Output)
			}
		}()
	}
	wg.Wait()
	for i, o := range outs {
		if o != fmt.Sprintf("n=%d", i) {
			t.Errorf("run %d: output %q", i, o)
		}
	}
}

// A leftover child holding the output open does not hold the run beyond
// the grace, and does not survive it.
func TestRunLeftoverChild(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	d := parse(t, `{"exec":"sh","argv":["-c","sleep 30 & echo $! > `+pidFile+`; echo done"]}`)
	start := time.Now()
	res := run(t, &engine.Runner{KillGrace: 300 * time.Millisecond}, d, engine.Request{})
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v", took)
	}
	wantStatus(t, res, engine.StatusSucceeded, 0)
	if string(res.Output) != "done\n" {
		t.Errorf("output %q", res.Output)
	}
	b, _ := os.ReadFile(pidFile)
	var child int
	fmt.Sscan(string(b), &child)
	if child == 0 || alive(child) {
		t.Errorf("child %d alive or unknown", child)
	}
}

// A leader that ignores TERM, and the child it waits for, are killed a
// grace after the timeout: the run ends and nothing of it survives.
func TestRunTimeoutEscalatesToKill(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	d := parse(t, `{"exec":"sh","argv":["-c","trap '' TERM; sleep 30 & echo $! > `+pidFile+`; wait; wait"],"timeout":0.3}`)
	res := run(t, &engine.Runner{KillGrace: 200 * time.Millisecond}, d, engine.Request{})
	wantStatus(t, res, engine.StatusTimeout, -1)
	wantGone(t, res.Pid, pidFile)
}

// A run whose context ended before it started does not start: status
// error, no process.
func TestRunCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := (&engine.Runner{}).Run(ctx, parse(t, `{"exec":"/bin/true"}`), engine.Request{})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, res, engine.StatusError, -1)
	if res.Pid != 0 {
		t.Errorf("pid %d: a process was started", res.Pid)
	}
}

// A timed-out process that exits 0 on the TERM did not end by itself: the
// status is timeout and there is no exit code.
func TestRunTimeoutExitZeroOnTerm(t *testing.T) {
	d := parse(t, `{"exec":"sh","argv":["-c","trap 'exit 0' TERM; sleep 30 & wait"],"timeout":0.3}`)
	res := run(t, &engine.Runner{KillGrace: 2 * time.Second}, d, engine.Request{})
	wantStatus(t, res, engine.StatusTimeout, -1)
}

// The run directory goes whatever the run left in it: nothing (one
// rmdir), files, or a tree of directories.
func TestRunDirRemoved(t *testing.T) {
	for name, doc := range map[string]string{
		"empty": `{"exec":"/bin/true"}`,
		"file":  `{"exec":"sh","argv":["-c","echo x > \"$HOME/f\""]}`,
		"tree":  `{"exec":"sh","argv":["-c","mkdir -p \"$HOME/a/b\" && echo x > \"$HOME/a/b/f\" && mkdir \"$HOME/c\""]}`,
	} {
		t.Run(name, func(t *testing.T) {
			res := run(t, &engine.Runner{}, parse(t, doc), engine.Request{})
			wantStatus(t, res, engine.StatusSucceeded, 0)
			if res.RunDir == "" {
				t.Fatal("no run directory")
			}
			if _, err := os.Stat(res.RunDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("run directory %s still there: %v", res.RunDir, err)
			}
		})
	}
}

// The /dev/null every run without an input adapter shares as stdin is
// read-only: a child writing to its stdin fails, concurrent runs all read
// it empty, and it stays usable after them.
func TestSharedStdinReadOnly(t *testing.T) {
	d := parse(t, `{"exec":"sh","argv":["-c","if (echo x >&0) 2>/dev/null; then echo wrote; else echo refused; fi; cat"]}`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	results, errs := make([]*engine.Result, 8), make([]error, 8)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = (&engine.Runner{}).Run(ctx, d, engine.Request{}) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	results = append(results, run(t, &engine.Runner{}, d, engine.Request{}))
	for i, res := range results {
		wantStatus(t, res, engine.StatusSucceeded, 0)
		if string(res.Output) != "refused\n" {
			t.Errorf("run %d: output %q, want %q", i, res.Output, "refused\n")
		}
	}
}

// wantGone fails unless the run's leader and the child whose pid it wrote
// to pidFile are both known and gone.
func wantGone(t *testing.T, leader int, pidFile string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	fmt.Sscan(string(b), &child)
	for _, pid := range []int{leader, child} {
		if pid == 0 || alive(pid) {
			t.Errorf("process %d alive or unknown", pid)
		}
	}
}
