package process

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process/engine"
)

// Streamed execute: POST <definition>?action=execute with Content-Type
// application/octet-stream. The body is the input, fed to the process as
// it arrives (into the input file first, for a file_path input adapter);
// the answer's body is the output, sent as the process writes it. What
// the JSON result says comes in headers known up front and in trailers.

// Headers of a streamed execute's answer.
const (
	// HeaderExecution is the execution record's URL (also in Location).
	HeaderExecution = "X-Process-Execution"
	// HeaderDefinition is the definition's URL.
	HeaderDefinition = "X-Process-Definition"
)

// Trailers of a streamed execute's answer, sent after the output once the
// run has ended and its record is stored.
const (
	// TrailerStatus is succeeded, failed, timeout, error or cancelled.
	TrailerStatus = "X-Process-Status"
	// TrailerExitCode is the exit code; absent when the process did not
	// exit by itself (not started, killed by a signal).
	TrailerExitCode = "X-Process-Exit-Code"
	// TrailerError says why the status is not succeeded (one line).
	TrailerError = "X-Process-Error"
	// TrailerDuration is the run's duration in milliseconds.
	TrailerDuration = "X-Process-Duration-Ms"
	// TrailerInputSize and TrailerOutputSize are the bytes the process was
	// given and the bytes of output sent.
	TrailerInputSize  = "X-Process-Input-Size"
	TrailerOutputSize = "X-Process-Output-Size"
	// TrailerTruncated is "true" when the output sent is not all the
	// process wrote: writing it to the client failed.
	TrailerTruncated = "X-Process-Truncated"
	// TrailerRecordError says the execution record could not be stored.
	TrailerRecordError = "X-Process-Record-Error"
)

var streamTrailers = strings.Join([]string{TrailerStatus, TrailerExitCode, TrailerError, TrailerDuration,
	TrailerInputSize, TrailerOutputSize, TrailerTruncated, TrailerRecordError}, ", ")

var _ providers.Streamer = (*Provider)(nil)

// StreamAction runs execute on a definition with the request body as its
// input and the answer's body as its output (see the package's README
// section). Errors before the run starts are returned (answered as JSON):
// 415 for another action, 406 when the client does not accept
// application/octet-stream, 400 for a body given to a definition without
// an input adapter or a bad timeout, 409 for a service, and the body's own
// errors (413, 408) while a file input is read. Once the process runs,
// the answer is 200 and the trailers say how it ended.
func (p *Provider) StreamAction(ctx context.Context, e *model.Entity, inv providers.Invocation, st *providers.Stream) error {
	if inv.ActionTerm() != "execute" || e.Kind != categories.ProcessDefinitionKind {
		return model.Errorf(http.StatusUnsupportedMediaType, "action %s on %s takes no %s body; send its attributes as application/occi+json", inv.ActionTerm(), e.Location, providers.StreamMediaType)
	}
	if !acceptsStream(st.Header) {
		return model.Errorf(http.StatusNotAcceptable, "a streamed execute answers the output as %s: accept it (or */*)", providers.StreamMediaType)
	}
	def, err := Definition(e)
	if err != nil {
		return err
	}
	if def.ProcessType == engine.TypeService {
		err := model.Conflict("definition %s has process_type service: a service is started by POST %s?action=execute with JSON attributes and runs until its execution is cancelled", e.Location, e.Location)
		err.Attribute = "process.definition.process_type"
		return err
	}
	var timeout time.Duration
	if v := st.Query.Get("timeout"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) || f > 1e9 {
			return model.AttributeError("timeout", "timeout must be a positive number of seconds, not %q", v)
		}
		timeout = time.Duration(f * float64(time.Second))
	}
	body := &countingReader{r: st.Body}
	if !def.Input.IsFile() && def.Input.Stream != engine.StreamStdin {
		if err := noBody(st); err != nil {
			return err
		}
		body = nil
	}
	kind, err := p.beginRun()
	if err != nil {
		return err
	}
	defer p.runs.Done()
	return p.stream(ctx, e, def, kind, body, timeout, st)
}

// acceptsStream tells whether an Accept header allows
// application/octet-stream (no header does).
func acceptsStream(h http.Header) bool {
	values := h.Values("Accept")
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f <= 0 {
					continue
				}
			}
			if mt == providers.StreamMediaType || mt == "application/*" || mt == "*/*" {
				return true
			}
		}
	}
	return false
}

// noBody refuses a non-empty body for a definition that takes no input:
// silently dropping what the client sends would hide its mistake.
func noBody(st *providers.Stream) error {
	refuse := func() error {
		return model.AttributeError("process.definition.input_adapter",
			"this definition has no input adapter, so it takes no input; send the request without a body (or define an input_adapter)")
	}
	switch {
	case st.ContentLength > 0:
		return refuse()
	case st.ContentLength == 0:
		return nil
	}
	var one [1]byte
	n, err := io.ReadFull(st.Body, one[:])
	switch {
	case n > 0:
		return refuse()
	case errors.Is(err, io.EOF):
		return nil
	}
	return err
}

// stream runs def with the body as its input and st.Response as its
// output, records the run, and ends the answer with the trailers. body is
// nil for a definition without input.
//
// The running record is created as the process starts, queued to the
// store in the background (createRecordLater: its location is known at
// once, and reads of it wait until it is stored); the answer's headers,
// which name it, wait only for that, and the process's first output waits
// in memory meanwhile. The record is completed with the result before the
// trailers go out.
func (p *Provider) stream(ctx context.Context, e *model.Entity, def *engine.Definition, kind *model.Category, body *countingReader, timeout time.Duration, st *providers.Stream) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopAfter := context.AfterFunc(p.ctx, cancel)
	defer stopAfter()
	started := time.Now().UTC()
	id := uuid.NewString()
	loc := kind.Location + id
	ev := p.executionEvents(id, loc, e.Location)
	ev.started(started)
	record := map[string]any{
		"definition": e.Location, "status": engine.StatusRunning, "started_at": started.Format(time.RFC3339Nano),
		"trigger": "http",
	}

	w := st.Response
	h := w.Header()
	h.Set("Content-Type", providers.StreamMediaType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Location", st.Base+loc)
	h.Set(HeaderExecution, st.Base+loc)
	h.Set(HeaderDefinition, st.Base+e.Location)
	h.Set("Trailer", streamTrailers)
	keep := p.maxRecord
	if keep < 0 {
		keep = p.runner.MaxOutput
		if keep <= 0 {
			keep = engine.DefaultMaxOutput
		}
	}
	r := &run{cancel: cancel, done: make(chan struct{})}
	out := newStreamOutput(w, keep)
	req := engine.Request{Timeout: timeout, OutputStream: out, Lines: ev.lines(),
		Started: func(int) {
			out.began.Store(true)
			go func() {
				out.recorded(p.recordRunning(r, func() (string, error) { return p.createRecordLater(ctx, kind, id, record) }))
			}()
		}}
	if body != nil {
		req.InputStream, req.StopInput = body, st.StopBody
	}
	res, runErr := p.runner.Run(runCtx, def, req)
	out.close()
	rec := out.record()
	if rec.loc != "" {
		defer p.runEnded(rec.loc, r)
	}
	switch {
	case runErr != nil:
		// The input file could not be read before the process started:
		// nothing was answered yet, the error is (408, 413, 400 from the
		// body; 408 for a timeout).
		var ie *engine.InputError
		if errors.As(runErr, &ie) && model.StatusOf(runErr) == 0 && errors.Is(runErr, context.DeadlineExceeded) {
			runErr = model.Errorf(http.StatusRequestTimeout, "the input did not arrive within the run's timeout (%v)", timeout)
		}
		ev.finished(nil, runErr)
		return runErr
	case rec.err != nil:
		// No record could be written, so the run was cancelled and nothing
		// answered: the error is.
		ev.finished(nil, rec.err)
		return rec.err
	}

	result := resultFields(res)
	delete(result, "output")
	delete(result, "output_base64")
	result["truncated"] = out.failed
	if body != nil {
		result["input_size"] = float64(body.n)
	}
	stored := p.storedFields(result, res)
	out.keepFields(stored)
	var recordErr error
	if rec.loc == "" {
		// The process did not start: one record, with the result.
		maps.Copy(record, stored)
		if _, recordErr = p.createRecord(ctx, kind, id, record); recordErr != nil {
			ev.finished(nil, recordErr)
			return recordErr
		}
	} else {
		saveCtx, cancelSave := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		recordErr = p.complete(saveCtx, rec.loc, stored)
		cancelSave()
		if recordErr != nil {
			p.log.Error("could not record an execution's result", "execution", loc, "err", recordErr)
		}
	}

	out.start()
	h.Set(TrailerStatus, res.Status)
	if res.ExitCode != nil {
		h.Set(TrailerExitCode, strconv.Itoa(*res.ExitCode))
	}
	if res.Error != "" {
		h.Set(TrailerError, oneLine(res.Error))
	}
	h.Set(TrailerDuration, strconv.FormatFloat(float64(res.Duration.Microseconds())/1000, 'f', -1, 64))
	if body != nil {
		h.Set(TrailerInputSize, strconv.FormatInt(body.n, 10))
	}
	h.Set(TrailerOutputSize, strconv.FormatInt(out.n, 10))
	h.Set(TrailerTruncated, strconv.FormatBool(out.failed))
	if recordErr != nil {
		h.Set(TrailerRecordError, oneLine(recordErr.Error()))
	}
	result["execution"], result["definition"] = loc, e.Location
	ev.finished(result, nil)
	return nil
}

// oneLine makes an error text a header value: one line, at most 1 KiB.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 1024 {
		s = string(runePrefix([]byte(s[:1024])))
	}
	return s
}

// countingReader counts the bytes read.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// maxPending bounds the output a streamed run holds while its running
// record is being queued (the answer's headers name it, so they wait for
// it; queueing waits when the store's queue is full): the process is not
// stalled unless it writes more than this meanwhile.
const maxPending = 4 << 20

// streamOutput is a streamed run's output: it goes to the answer, counted,
// its first keep bytes kept for the execution record. The answer starts
// (status 200, headers flushed) once the running record exists; output
// that comes before waits in pending. With no running record (the process
// did not start), start begins the answer.
type streamOutput struct {
	w    http.ResponseWriter
	keep int64
	// began is set by the engine's Started, which starts the goroutine
	// creating the running record: it sets rec, closes recordDone, sends
	// what is pending and closes flushed.
	began      atomic.Bool
	rec        runningRecord
	recordDone chan struct{}
	flushed    chan struct{}

	mu      sync.Mutex
	started bool   // the answer has begun
	pending []byte // output before the record
	n       int64  // output bytes taken
	kept    []byte
	failed  bool // a write failed: the client did not get all of it
	closed  bool // the run has ended: no more writes
}

func newStreamOutput(w http.ResponseWriter, keep int64) *streamOutput {
	return &streamOutput{w: w, keep: keep, recordDone: make(chan struct{}), flushed: make(chan struct{})}
}

// recorded is called by the goroutine creating the running record, with
// its outcome: the answer begins with what output is pending.
func (o *streamOutput) recorded(rec runningRecord) {
	defer close(o.flushed)
	o.rec = rec
	close(o.recordDone)
	if rec.err != nil {
		return // nothing is answered: the run is cancelled, the error answered
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.beginLocked()
}

// record is the running record, once the run has ended and the goroutine
// creating it is done ({} when the process did not start).
func (o *streamOutput) record() runningRecord {
	if !o.began.Load() {
		return runningRecord{}
	}
	<-o.flushed
	return o.rec
}

var errOutputClosed = errors.New("the run's answer is complete")

// close refuses later writes, once a write in progress is done (bounded by
// the answer's write deadline): the process's output pipe may still be
// copied by a goroutine the engine stopped waiting for (exec's
// WaitDelay), and the answer must not be written once the action returns.
func (o *streamOutput) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
}

// start begins the answer if it has not begun (a run with no running
// record: the process did not start).
func (o *streamOutput) start() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.beginLocked()
}

// beginLocked sends the status, the headers and what is pending.
func (o *streamOutput) beginLocked() {
	if o.started {
		return
	}
	o.started = true
	o.w.WriteHeader(http.StatusOK)
	if len(o.pending) > 0 {
		if _, err := o.w.Write(o.pending); err != nil {
			o.failed = true
		}
		o.pending = nil
		return // the write flushed it
	}
	if f, ok := o.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (o *streamOutput) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		o.failed = true
		return 0, errOutputClosed
	}
	if !o.started {
		select {
		case <-o.recordDone:
		default:
			if len(o.pending)+len(b) <= maxPending {
				o.take(b)
				o.pending = append(o.pending, b...)
				return len(b), nil
			}
			<-o.recordDone // recorded needs no lock to close it
		}
		if o.rec.err != nil {
			o.failed = true
			return 0, o.rec.err
		}
		o.beginLocked()
	}
	if o.failed {
		return 0, errors.New("the answer could not be written")
	}
	o.take(b)
	n, err := o.w.Write(b)
	if err != nil {
		o.failed = true
	}
	return n, err
}

// take counts output and keeps its first bytes for the record.
func (o *streamOutput) take(b []byte) {
	o.n += int64(len(b))
	if room := o.keep - int64(len(o.kept)); room > 0 {
		o.kept = append(o.kept, b[:min(int64(len(b)), room)]...)
	}
}

// keepFields puts what the record keeps of the output into its fields:
// the kept prefix as text (or base64), and record_truncated with the full
// sizes when it is not all.
func (o *streamOutput) keepFields(stored map[string]any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	kept := o.kept
	whole := o.n <= int64(len(kept))
	if !whole {
		kept = runePrefix(kept)
	}
	if utf8.Valid(kept) {
		stored["output"] = string(kept)
	} else {
		stored["output_base64"] = base64.StdEncoding.EncodeToString(kept)
	}
	if rt, _ := stored["record_truncated"].(bool); rt {
		stored["output_size"] = float64(o.n) // storedFields saw no output
	}
	if !whole {
		stored["record_truncated"] = true
		stored["output_size"] = float64(o.n)
		if _, ok := stored["stderr_size"]; !ok {
			if s, ok := stored["stderr"].(string); ok {
				stored["stderr_size"] = float64(len(s))
			}
		}
	}
}
