package engine

import (
	"bytes"
	"io"
)

// ReadFrom reads r to its end into the buffer up to max and drops the
// rest, as Write does. os/exec hands a child's stdout and stderr pipes to
// it directly: without it, every run allocated (and zeroed) a 32 KiB copy
// buffer per stream, half of what a quick run allocated.
func (c *capped) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	for {
		room := c.max - int64(c.buf.Len())
		if room <= 0 {
			// Past the cap: what is left is read and dropped.
			m, err := io.Copy(io.Discard, r)
			if m > 0 {
				c.dropped = true
			}
			return n + m, err
		}
		if c.buf.Available() < bytes.MinRead {
			c.buf.Grow(bytes.MinRead)
		}
		free := c.buf.AvailableBuffer()
		free = free[:min(int64(cap(free)), room)]
		m, err := r.Read(free)
		c.buf.Write(free[:m])
		n += int64(m)
		switch {
		case err == io.EOF:
			return n, nil
		case err != nil:
			return n, err
		}
	}
}
