package engine

import (
	"bytes"
	"sync"
)

// Streams a Request's Lines callback names.
const (
	StreamStdoutName = "stdout"
	StreamStderrName = "stderr"
)

// MaxLine bounds a line given to Request.Lines: a longer one is given in
// pieces of this size.
const MaxLine = 64 << 10

// lineWriter hands every complete line written to it (without its "\n")
// to fn, and what is left when flushed. Writes never fail: the output is
// captured elsewhere, and a slow fn only slows the copy from the pipe.
type lineWriter struct {
	stream string
	fn     func(stream string, line []byte)
	mu     sync.Mutex
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= MaxLine {
				w.fn(w.stream, w.buf[:MaxLine:MaxLine])
				w.buf = append([]byte(nil), w.buf[MaxLine:]...)
			}
			break
		}
		line := p[:i]
		if len(w.buf) > 0 {
			line = append(w.buf, line...)
			w.buf = nil
		}
		for len(line) > MaxLine {
			w.fn(w.stream, line[:MaxLine:MaxLine])
			line = line[MaxLine:]
		}
		w.fn(w.stream, line)
		p = p[i+1:]
	}
	return n, nil
}

// flush gives the last, unterminated line, if any.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.fn(w.stream, w.buf)
		w.buf = nil
	}
}
