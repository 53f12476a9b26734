package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Streamed runs: Request.InputStream and Request.OutputStream move the
// input and output as they are produced instead of as whole buffers.

// InputError is returned by Run when a streamed input (Request.InputStream)
// failed before the process started: reading it into the input file
// failed, or the run's timeout or cancellation came first. Err is the
// reader's error, or the context's.
type InputError struct{ Err error }

func (e *InputError) Error() string { return "reading the input: " + e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// StreamError ends a run whose streamed input could not be read or whose
// streamed output could not be written while the process ran: the process
// group is killed and the result's status is error, with this error's text.
type StreamError struct {
	// Side is "input" or "output".
	Side string
	Err  error
}

func (e *StreamError) Error() string {
	if e.Side == "input" {
		return "reading the input: " + e.Err.Error() + "; the process group was killed"
	}
	return "writing the output: " + e.Err.Error() + "; the process group was killed"
}
func (e *StreamError) Unwrap() error { return e.Err }

// streamFailure is the first StreamError of a run.
type streamFailure struct{ err atomic.Pointer[StreamError] }

// fail returns the function that records a StreamError and stops the run
// with cancel.
func (f *streamFailure) fail(cancel context.CancelFunc) func(*StreamError) {
	return func(se *StreamError) {
		f.err.CompareAndSwap(nil, se)
		cancel()
	}
}

func (f *streamFailure) get() *StreamError { return f.err.Load() }

// streamBuffer is the size of the copies between a stream and a pipe: a
// few system calls per MiB rather than thirty-two.
const streamBuffer = 256 << 10

// pipeSize is what a streamed run's pipes are grown to (Linux: the
// default is 64 KiB, the most an unprivileged process may ask for is
// /proc/sys/fs/pipe-max-size, 1 MiB by default). Not more: the pages of a
// user's pipes count against fs.pipe-user-pages-soft (64 MiB by default),
// past which Linux gives every new pipe of that user 8 KiB; at 256 KiB
// each, about 128 streams run at once before that. 1 MiB measured no
// better than 256 KiB within the noise of the loaded machine.
const pipeSize = 256 << 10

// copyInputFile streams req.InputStream into the file at path before the
// process starts; ctx's end (timeout, cancellation) stops it.
func copyInputFile(ctx context.Context, path string, req Request) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("cannot write the input file %s: %w", path, err)
	}
	done := make(chan error, 1)
	go func() { done <- copyStream(f, req.InputStream, nil) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		if req.StopInput != nil {
			req.StopInput()
		}
		<-done // the copy ends once the reader returns
		err = context.Cause(ctx)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return &InputError{Err: err}
	}
	return nil
}

// copyStream copies src to dst with one large buffer. A write error is
// returned as writeErr (when not nil) so that the caller can tell the
// reader's failure from the writer's.
func copyStream(dst io.Writer, src io.Reader, writeErr *error) error {
	buf := make([]byte, streamBuffer)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				if writeErr != nil {
					*writeErr = err
					return nil
				}
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// stdinFeed feeds a streamed input to the process's stdin through a pipe
// it owns: the process gets EOF when the stream ends; a stream that fails
// ends the run through fail.
type stdinFeed struct {
	r, w *os.File
	stop func() // Request.StopInput
	done chan struct{}
}

func newStdinFeed(req Request, fail func(*StreamError)) (*stdinFeed, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	growPipe(w)
	f := &stdinFeed{r: r, w: w, stop: req.StopInput, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		var writeErr error
		if err := copyStream(w, req.InputStream, &writeErr); err != nil {
			// The pipe stays open until the process is gone (end): at
			// EOF it would take the cut input for the whole and might
			// finish with it before it is killed.
			fail(&StreamError{Side: "input", Err: err})
			return
		}
		// EOF for the process. A write error means the process closed its
		// stdin or ended: it takes no more input, which is its business,
		// not an error.
		_ = w.Close()
	}()
	return f, nil
}

// started closes the parent's copy of the read end once the process has
// its own: a process that ends without reading everything makes the feed's
// writes fail instead of filling the pipe.
func (f *stdinFeed) started() { _ = f.r.Close() }

// end stops the feed once the process has ended and waits for it: a read
// of the stream still in progress is interrupted (StopInput).
func (f *stdinFeed) end() {
	defer f.w.Close()
	_ = f.r.Close()
	select {
	case <-f.done:
		return
	default:
	}
	if f.stop != nil {
		f.stop()
	}
	<-f.done
}

// growPipe grows a pipe's buffer (best effort): fewer wake-ups of each
// side per MiB.
func growPipe(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETPIPE_SZ, pipeSize)
		})
	}
}

// streamWriter is a run's streamed output: a write that fails ends the
// run through fail.
type streamWriter struct {
	w    io.Writer
	fail func(*StreamError)
	once sync.Once
}

func (s *streamWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		se := &StreamError{Side: "output", Err: err}
		s.once.Do(func() { s.fail(se) })
		return n, se
	}
	return n, nil
}

// streamOutput sends the process's output (stdout, or stderr for a STDERR
// output adapter) to req.OutputStream as it is written. A file adapter's
// output is sent once the process has ended (streamOutputFile).
func streamOutput(cmd *exec.Cmd, d *Definition, w *streamWriter) {
	switch {
	case d.Output.IsFile():
	case d.Output.Stream == StreamStderr:
		cmd.Stderr = w
	default:
		cmd.Stdout = w
	}
}

// streamOutputFile sends the output file at path to w.
func streamOutputFile(path string, w *streamWriter) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = copyLarge(w, f)
	return err
}

// copyLarge copies src to dst with one streamBuffer, through a plain
// reader so that neither side's WriteTo or ReadFrom (os.File's: 32 KiB)
// replaces it.
func copyLarge(dst io.Writer, src io.Reader) (int64, error) {
	return io.CopyBuffer(dst, struct{ io.Reader }{src}, make([]byte, streamBuffer))
}

// outputFileError is the status and error of a streamed output file that
// could not be sent.
func outputFileError(path string, err error) (status, msg string) {
	var se *StreamError
	switch {
	case errors.As(err, &se):
		return StatusError, se.Error()
	case errors.Is(err, fs.ErrNotExist):
		return StatusFailed, fmt.Sprintf("the output file %s was not produced", path)
	}
	return StatusFailed, fmt.Sprintf("cannot read the output file %s: %v", path, err)
}

// outputPipe carries a streamed stdout (or stderr) through a pipe the
// engine owns, grown like the input's: a process that writes faster than
// the client takes it runs ahead by up to 256 KiB instead of 64 KiB, and
// each copy to the client moves up to 256 KiB (fewer writes, chunks and
// flushes per MiB than exec's own 64 KiB pipe and 32 KiB copies).
type outputPipe struct {
	r, w *os.File
	done chan struct{}
}

func newOutputPipe(cmd *exec.Cmd, stderr bool) (*outputPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	growPipe(w)
	dst := cmd.Stdout
	if stderr {
		dst, cmd.Stderr = cmd.Stderr, w
	} else {
		cmd.Stdout = w
	}
	p := &outputPipe{r: r, w: w, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_, _ = copyLarge(dst, r)
	}()
	return p, nil
}

// started closes the parent's copy of the write end: the copy ends when
// the process (and whatever it left holding the pipe) is gone.
func (p *outputPipe) started() { _ = p.w.Close() }

// end waits up to grace for the copy to reach the end of the output, then
// closes the read end (a process outside the group may hold the pipe) and
// waits for the copy to return (a write to the client in progress is
// bounded by the client's own deadline).
func (p *outputPipe) end(grace time.Duration) {
	_ = p.w.Close()
	if grace > 0 {
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	_ = p.r.Close()
	<-p.done
}
