package engine_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/cmbs/cmbs/providers/process/engine"
)

// Lines sees every stdout and stderr line as written, in order per
// stream, the unterminated last one too, and long lines in MaxLine pieces;
// the captured output is unchanged.
func TestRunLines(t *testing.T) {
	d := parse(t, `{"exec":"sh","argv":["-c","echo one; echo err1 >&2; printf 'two\\n\\nthree'; head -c 70000 /dev/zero | tr '\\0' a; echo; printf last >&2"]}`)
	var mu sync.Mutex
	got := map[string][]string{}
	res := run(t, &engine.Runner{}, d, engine.Request{Lines: func(stream string, line []byte) {
		mu.Lock()
		defer mu.Unlock()
		got[stream] = append(got[stream], string(line))
	}})
	wantStatus(t, res, engine.StatusSucceeded, 0)
	long := strings.Repeat("a", 70000)
	want := []string{"one", "two", "", "three" + long[:engine.MaxLine-5], long[engine.MaxLine-5:]}
	if out := got[engine.StreamStdoutName]; strings.Join(out, "|") != strings.Join(want, "|") {
		t.Errorf("stdout lines %d: %.80q…", len(out), out)
	}
	if e := got[engine.StreamStderrName]; strings.Join(e, "|") != "err1|last" {
		t.Errorf("stderr lines %q", e)
	}
	if string(res.Output) != "one\ntwo\n\nthree"+long+"\n" {
		t.Errorf("output changed: %d bytes", len(res.Output))
	}
}
