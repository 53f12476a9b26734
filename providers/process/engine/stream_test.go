package engine_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/providers/process/engine"
	"github.com/cmbs/cmbs/providers/process/internal/processtest"
)

// A streamed input that never ends: the process that stops reading ends
// the run, and Run interrupts the read still in progress (StopInput)
// before it returns.
func TestStreamInputOutlivesTheProcess(t *testing.T) {
	d := parse(t, `{"exec":"head","argv":["-c","5"],"input_adapter":`+processtest.StdinIn+`}`)
	pr, pw := io.Pipe()
	go func() { _, _ = pw.Write([]byte("hello, and more")) }() // then nothing, never EOF
	stopped := false
	var out bytes.Buffer
	res := run(t, &engine.Runner{}, d, engine.Request{InputStream: pr, OutputStream: &out,
		StopInput: func() { stopped = true; _ = pr.CloseWithError(errors.New("stopped")) }})
	wantStatus(t, res, engine.StatusSucceeded, 0)
	if out.String() != "hello" || len(res.Output) != 0 || !stopped {
		t.Errorf("output %q, result output %q, input stopped %v", out.String(), res.Output, stopped)
	}
}

// A streamed input that fails mid-run kills the run: status error, with
// the reader's error.
func TestStreamInputFails(t *testing.T) {
	d := parse(t, `{"exec":"cat","input_adapter":`+processtest.StdinIn+`}`)
	in := io.MultiReader(strings.NewReader("part"), iotestErrReader{errors.New("the client went away")})
	res := run(t, &engine.Runner{}, d, engine.Request{InputStream: in, OutputStream: io.Discard})
	wantStatus(t, res, engine.StatusError, -1)
	if !strings.Contains(res.Error, "the client went away") {
		t.Errorf("error %q", res.Error)
	}
}

// A streamed input into a file that fails before the start: Run returns
// an InputError, and runs nothing.
func TestStreamInputFileFails(t *testing.T) {
	d := parse(t, `{"exec":"cat","argv":["${input_file}"],"input_adapter":`+processtest.FileIn+`}`)
	in := io.MultiReader(strings.NewReader("part"), iotestErrReader{errors.New("too large")})
	_, err := (&engine.Runner{}).Run(t.Context(), d, engine.Request{InputStream: in, OutputStream: io.Discard})
	var ie *engine.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "too large") {
		t.Errorf("err %v", err)
	}
}

// An output stream that fails ends the run: status error.
func TestStreamOutputFails(t *testing.T) {
	d := parse(t, `{"exec":"yes"}`)
	res := run(t, &engine.Runner{}, d, engine.Request{OutputStream: failingWriter{}})
	wantStatus(t, res, engine.StatusError, -1)
	if !strings.Contains(res.Error, "writing the output") {
		t.Errorf("error %q", res.Error)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("the client stopped reading") }
