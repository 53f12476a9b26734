package engine

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// ReadFrom keeps what Write keeps, and flags the same drops, whatever
// sizes the reader hands out.
func TestCappedReadFromMatchesWrite(t *testing.T) {
	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"halves":   func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
		"data+EOF": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	}
	for _, max := range []int64{0, 1, 10, 511, 512, 513, 4096} {
		for _, size := range []int{0, 1, 9, 10, 11, 512, 1000, 5000} {
			in := strings.Repeat("0123456789", size/10+1)[:size]
			var want capped
			want.max = max
			_, _ = want.Write([]byte(in))
			for name, reader := range readers {
				got := capped{max: max}
				n, err := got.ReadFrom(reader(in))
				if err != nil || n != int64(size) || !bytes.Equal(got.buf.Bytes(), want.buf.Bytes()) || got.dropped != want.dropped {
					t.Errorf("max %d, %d bytes, %s: read %d (%v), kept %d bytes (dropped %v), want %d bytes (dropped %v)",
						max, size, name, n, err, got.buf.Len(), got.dropped, want.buf.Len(), want.dropped)
				}
			}
		}
	}
	// A read error ends it, with what was read kept.
	got := capped{max: 100}
	if _, err := got.ReadFrom(iotest.TimeoutReader(iotest.OneByteReader(strings.NewReader("ab")))); err != iotest.ErrTimeout || got.buf.String() != "a" {
		t.Errorf("read error: %v, kept %q", err, got.buf.String())
	}
}
