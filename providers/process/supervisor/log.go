package supervisor

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"sync"
)

// Defaults of a process log.
const (
	DefaultLogLines      = 1000
	DefaultMaxLine       = 16 << 10
	DefaultSubscriberBuf = 1024
)

// EventPrefix starts the lines the supervisor writes into a process's log.
const EventPrefix = "[supervisor] "

// Log is a process's console: its merged stdout and stderr as lines, and
// the supervisor's event lines, kept in a ring of the last lines and fanned
// out to subscribers. Publishing never blocks: a subscriber whose buffer is
// full is dropped (its channel closed, Dropped true), so a client that does
// not read slows neither the others nor the child.
type Log struct {
	mu      sync.Mutex
	ring    []string
	next    int // index of the next write in ring
	full    bool
	maxLine int
	subBuf  int
	subs    map[*Subscription]struct{}
	closed  bool
	total   uint64
}

// NewLog returns a log keeping the last lines lines (DefaultLogLines when
// 0), cutting lines at maxLine bytes (DefaultMaxLine when 0).
func NewLog(lines, maxLine int) *Log {
	if lines <= 0 {
		lines = DefaultLogLines
	}
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &Log{ring: make([]string, lines), maxLine: maxLine, subBuf: DefaultSubscriberBuf, subs: map[*Subscription]struct{}{}}
}

// Subscription receives a log's lines from the moment it subscribed (after
// the tail it asked for). C is closed when the subscription ends: Close,
// the log closed, or the subscriber dropped for not reading.
type Subscription struct {
	C       <-chan string
	c       chan string
	log     *Log
	dropped bool          // under log.mu
	evicted chan struct{} // closed when dropped
}

// Evicted is closed when the subscription is dropped for not reading, at
// once, even while lines are still buffered in C: a reader blocked
// elsewhere (writing to a slow network client) can give up then.
func (s *Subscription) Evicted() <-chan struct{} { return s.evicted }

// Dropped reports whether the subscription ended because its reader fell
// behind.
func (s *Subscription) Dropped() bool {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.dropped
}

// Close ends the subscription; C is closed.
func (s *Subscription) Close() {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	if _, ok := s.log.subs[s]; ok {
		delete(s.log.subs, s)
		close(s.c)
	}
}

// Subscribe returns a subscription whose channel first carries the last
// tail lines kept (all kept when tail exceeds them; none when tail <= 0),
// then every new line. On a closed log the channel carries the tail and
// is closed.
func (l *Log) Subscribe(tail int) *Subscription {
	return l.SubscribeBuffer(tail, l.subBuf)
}

// SubscribeBuffer is Subscribe with room for buf lines (DefaultSubscriberBuf
// when buf <= 0) beyond the tail: a subscriber that falls more than buf
// lines behind is dropped. A WebSocket console, whose writes can lag a
// burst of output by many lines, asks for more than the default.
func (l *Log) SubscribeBuffer(tail, buf int) *Subscription {
	if buf <= 0 {
		buf = DefaultSubscriberBuf
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	past := l.tailLocked(tail)
	c := make(chan string, len(past)+buf)
	for _, line := range past {
		c <- line
	}
	s := &Subscription{C: c, c: c, log: l, evicted: make(chan struct{})}
	if l.closed {
		close(c)
		return s
	}
	l.subs[s] = struct{}{}
	return s
}

// Tail returns the last n lines kept, oldest first.
func (l *Log) Tail(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tailLocked(n)
}

// Lines is how many lines were ever written to the log.
func (l *Log) Lines() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *Log) tailLocked(n int) []string {
	kept := l.next
	if l.full {
		kept = len(l.ring)
	}
	if n > kept {
		n = kept
	}
	if n <= 0 {
		return nil
	}
	out := make([]string, 0, n)
	start := l.next - n
	for i := 0; i < n; i++ {
		out = append(out, l.ring[(start+i+len(l.ring))%len(l.ring)])
	}
	return out
}

// Write adds one line (without its newline): invalid UTF-8 replaced, cut
// at the maximum line length.
func (l *Log) Write(line string) {
	line = strings.ToValidUTF8(line, "\uFFFD")
	if len(line) > l.maxLine {
		cut := l.maxLine
		for cut > 0 && !utf8Start(line[cut]) {
			cut--
		}
		line = line[:cut]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.total++
	l.ring[l.next] = line
	l.next++
	if l.next == len(l.ring) {
		l.next, l.full = 0, true
	}
	for s := range l.subs {
		select {
		case s.c <- line:
		default:
			s.dropped = true
			delete(l.subs, s)
			close(s.c)
			close(s.evicted)
		}
	}
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// Event writes a supervisor event line.
func (l *Log) Event(text string) { l.Write(EventPrefix + text) }

// Close ends every subscription; later lines are ignored, the tail stays
// readable.
func (l *Log) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	for s := range l.subs {
		delete(l.subs, s)
		close(s.c)
	}
}

// readLines copies r into l line by line until r ends: a final line
// without a newline is written too, a line longer than the maximum is cut
// (its rest discarded up to the next newline).
func (l *Log) readLines(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf bytes.Buffer
	over := false
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			end := len(chunk) > 0 && chunk[len(chunk)-1] == '\n'
			if end {
				chunk = chunk[:len(chunk)-1]
			}
			if !over {
				room := l.maxLine - buf.Len()
				if len(chunk) > room {
					buf.Write(chunk[:room])
					over = true
				} else {
					buf.Write(chunk)
				}
			}
			if end {
				l.Write(strings.TrimSuffix(buf.String(), "\r"))
				buf.Reset()
				over = false
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if buf.Len() > 0 || over {
				l.Write(buf.String())
			}
			return
		}
	}
}
