package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cmbs/cmbs/internal/procgroup"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fast is a supervisor whose restarts wait 1 ms, so that tests go quickly.
func fast(t *testing.T, grace time.Duration) *Supervisor {
	t.Helper()
	s := New(Options{KillGrace: grace, backoff: func(prev, up time.Duration) time.Duration { return time.Millisecond }})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

func shell(script string) Spec {
	return Spec{Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"}}
}

// eventually waits (bounded) until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// groupGone waits (bounded) until no live process is left in group pgid
// (zombies waiting for init to reap them count as gone: they run nothing)
// and reports whether that happened.
func groupGone(pgid int) bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if procgroup.Members(pgid) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func contains(lines []string, want string) bool {
	for _, l := range lines {
		if strings.Contains(l, want) {
			return true
		}
	}
	return false
}

func TestBackoff(t *testing.T) {
	cases := []struct {
		prev, up, want time.Duration
	}{
		{0, 0, 100 * time.Millisecond},
		{100 * time.Millisecond, time.Second, 200 * time.Millisecond},
		{200 * time.Millisecond, 0, 400 * time.Millisecond},
		{12800 * time.Millisecond, 0, 25600 * time.Millisecond},
		{25600 * time.Millisecond, 0, 30 * time.Second},
		{30 * time.Second, 0, 30 * time.Second},
		{30 * time.Second, 10 * time.Second, 100 * time.Millisecond},
		{time.Second, 9999 * time.Millisecond, 2 * time.Second},
	}
	for _, c := range cases {
		if got := Backoff(c.prev, c.up); got != c.want {
			t.Errorf("Backoff(%v, %v) = %v, want %v", c.prev, c.up, got, c.want)
		}
	}
	// The sequence from a crash loop: 0.1 0.2 0.4 … 30 30.
	var d time.Duration
	var seq []string
	for i := 0; i < 11; i++ {
		d = Backoff(d, 0)
		seq = append(seq, d.String())
	}
	if got := strings.Join(seq, " "); got != "100ms 200ms 400ms 800ms 1.6s 3.2s 6.4s 12.8s 25.6s 30s 30s" {
		t.Errorf("sequence %s", got)
	}
}

func TestCrashLoopRestartsAndLogs(t *testing.T) {
	s := fast(t, time.Second)
	p, err := s.Start("crash", shell("echo out; echo err >&2; printf tail; exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "three restarts", func() bool { return p.Status().Restarts >= 3 })
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := p.Status()
	if st.State != StateStopped || st.Desired != StateStopped || st.Pid != 0 {
		t.Errorf("status after stop %+v", st)
	}
	// The stop may land while a run is up (it is then killed: a signal, no
	// code) or between runs (the last code is the crash's).
	if (st.LastExitCode == nil && st.LastSignal == "") || (st.LastExitCode != nil && *st.LastExitCode != 3) {
		t.Errorf("last exit code %v, signal %q", st.LastExitCode, st.LastSignal)
	}
	lines := p.Log().Tail(1000)
	for _, want := range []string{"[supervisor] spawned pid=", "[supervisor] exited status=3", "[supervisor] restarting in 1ms", "[supervisor] stopped"} {
		if !contains(lines, want) {
			t.Errorf("log lacks %q: %q", want, lines)
		}
	}
	// Lines in order within a run: out, err, then the unterminated tail.
	joined := strings.Join(lines, "\n")
	if !strings.Contains(joined, "out\nerr\ntail\n[supervisor] exited status=3") {
		t.Errorf("log %q", joined)
	}
	if last := lines[len(lines)-1]; last != "[supervisor] stopped" {
		t.Errorf("last line %q", last)
	}
	if _, err := s.Start("crash", shell("true")); !errors.Is(err, ErrExists) {
		t.Errorf("second start under the same id: %v", err)
	}
}

func TestStopKillsTheWholeGroup(t *testing.T) {
	s := fast(t, 200*time.Millisecond)
	// Children in the background, and a leader that ignores TERM: the
	// grace passes, then KILL takes all of them.
	p, err := s.Start("group", shell(`trap "" TERM; sleep 300 & sleep 300 & echo ready; wait; wait`))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "ready", func() bool { return contains(p.Log().Tail(10), "ready") })
	pid := p.Status().Pid
	if pid == 0 || procgroup.Members(pid) != 3 {
		t.Fatalf("no running group (pid %d)", pid)
	}
	if err := s.Remove(context.Background(), "group"); err != nil {
		t.Fatal(err)
	}
	if !groupGone(pid) {
		t.Errorf("process group %d survived stop", pid)
	}
	if s.Get("group") != nil {
		t.Error("removed process still listed")
	}
	if st := p.Status(); st.LastSignal != "killed" {
		t.Errorf("last signal %q (status %+v)", st.LastSignal, st)
	}
	if err := s.Remove(context.Background(), "group"); !errors.Is(err, ErrUnknown) {
		t.Errorf("second remove: %v", err)
	}
}

func TestExitLeavesNoChildren(t *testing.T) {
	s := fast(t, time.Second)
	// The leader exits at once and leaves a child behind in its group: the
	// supervisor kills the group before restarting.
	p, err := s.Start("orphan", shell(`sleep 300 >/dev/null 2>&1 & echo $$; exit 0`))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a restart", func() bool { return p.Status().Restarts >= 1 })
	var group int // the first run's group, its leader's pid
	for _, l := range p.Log().Tail(100) {
		if _, err := fmt.Sscanf(l, "%d", &group); err == nil {
			break
		}
	}
	if group == 0 {
		t.Fatal("no pid logged")
	}
	if !groupGone(group) {
		t.Errorf("the child in group %d survived its leader", group)
	}
}

func TestRestartIsImmediateAndCounts(t *testing.T) {
	s := New(Options{KillGrace: time.Second}) // the real backoff: Restart skips it
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	p, err := s.Start("svc", shell("echo up; exec sleep 300"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "running", func() bool { return p.Status().State == StateRunning && contains(p.Log().Tail(10), "up") })
	first := p.Status().Pid
	p.Restart()
	eventually(t, "a new pid", func() bool { st := p.Status(); return st.State == StateRunning && st.Pid != 0 && st.Pid != first })
	st := p.Status()
	if st.Restarts != 1 || st.LastSignal != "terminated" {
		t.Errorf("status after restart %+v", st)
	}
	if !groupGone(first) {
		t.Errorf("the first run's group %d survived the restart", first)
	}
	if !contains(p.Log().Tail(100), "[supervisor] restarting now") {
		t.Errorf("log %q", p.Log().Tail(100))
	}
	second := st.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !groupGone(second) {
		t.Errorf("group %d survived Close", second)
	}
	if _, err := s.Start("late", shell("true")); !errors.Is(err, ErrClosed) {
		t.Errorf("start after close: %v", err)
	}
}

func TestStartFailureIsRetried(t *testing.T) {
	s := fast(t, time.Second)
	p, err := s.Start("missing", Spec{Path: "/nonexistent/program"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "two attempts", func() bool { return p.Status().Restarts >= 2 })
	if st := p.Status(); !strings.Contains(st.Error, "no such file") {
		t.Errorf("status %+v", st)
	}
	if !contains(p.Log().Tail(10), "[supervisor] cannot start: ") {
		t.Errorf("log %q", p.Log().Tail(10))
	}
}

func TestEnvAndDir(t *testing.T) {
	s := fast(t, time.Second)
	dir := t.TempDir()
	spec := shell(`echo "$GREETING $(pwd)"; exec sleep 300`)
	spec.Env = append(spec.Env, "GREETING=hello")
	spec.Dir = dir
	p, err := s.Start("env", spec)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the greeting", func() bool { return contains(p.Log().Tail(10), "hello "+dir) })
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
