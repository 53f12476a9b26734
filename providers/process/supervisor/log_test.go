package supervisor

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func TestLogLines(t *testing.T) {
	l := NewLog(4, 8)
	l.readLines(strings.NewReader("one\r\ntwo\n" + strings.Repeat("x", 20) + "\nbad\xffutf8\nlast"))
	got := l.Tail(10)
	want := []string{"two", "xxxxxxxx", "bad\uFFFDut", "last"} // the replacement counts in the cut
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tail %q, want %q", got, want)
	}
	if l.Lines() != 5 {
		t.Errorf("lines %d", l.Lines())
	}
	if got := l.Tail(2); fmt.Sprint(got) != fmt.Sprint(want[2:]) {
		t.Errorf("tail 2 %q", got)
	}
	if got := l.Tail(0); len(got) != 0 {
		t.Errorf("tail 0 %q", got)
	}
}

func TestLogCutsAtRuneBoundary(t *testing.T) {
	l := NewLog(2, 5)
	l.Write("abcdé") // é is 2 bytes: 6 bytes, cut before it
	if got := l.Tail(1)[0]; got != "abcd" {
		t.Errorf("%q", got)
	}
}

func TestSubscribeTailThenLive(t *testing.T) {
	l := NewLog(10, 0)
	l.Write("a")
	l.Write("b")
	l.Write("c")
	sub := l.Subscribe(2)
	l.Write("d")
	l.Close()
	var got []string
	for line := range sub.C {
		got = append(got, line)
	}
	if fmt.Sprint(got) != "[b c d]" || sub.Dropped() {
		t.Errorf("got %q dropped %v", got, sub.Dropped())
	}
	// A subscription on a closed log gets the tail and ends.
	late := l.Subscribe(1)
	if line, ok := <-late.C; !ok || line != "d" {
		t.Errorf("late %q %v", line, ok)
	}
	if _, ok := <-late.C; ok {
		t.Error("late subscription not closed")
	}
}

// A subscriber that never reads is dropped; the others get every line and
// the writer never waits.
func TestSlowSubscriberDropped(t *testing.T) {
	l := NewLog(10, 0)
	slow := l.Subscribe(0)
	fast := l.Subscribe(0)
	const batch, batches = DefaultSubscriberBuf / 2, 20
	read := make(chan int)
	go func() {
		c := 0
		for range fast.C {
			if c++; c%batch == 0 {
				read <- c
			}
		}
		close(read)
	}()
	total := 0
	for b := 0; b < batches; b++ {
		for i := 0; i < batch; i++ {
			l.Write(fmt.Sprint(i))
		}
		total = <-read // the reader kept up with this batch
	}
	l.Close()
	if _, open := <-read; open || total != batch*batches {
		t.Errorf("fast subscriber got %d of %d lines", total, batch*batches)
	}
	select {
	case <-slow.Evicted():
	default:
		t.Error("the slow subscriber's Evicted is not closed")
	}
	if !slow.Dropped() || fast.Dropped() {
		t.Errorf("dropped: slow %v fast %v", slow.Dropped(), fast.Dropped())
	}
	c := 0
	for range slow.C {
		c++
	}
	if c != DefaultSubscriberBuf {
		t.Errorf("slow subscriber had %d lines buffered", c)
	}
	slow.Close() // closing twice is harmless
}

// A process's output reaches a live subscriber, ending with the stop event.
func TestProcessLogFanOut(t *testing.T) {
	s := fast(t, 0)
	p, err := s.Start("fan", shell(`for i in 1 2 3; do echo line $i; done; exec sleep 300`))
	if err != nil {
		t.Fatal(err)
	}
	subs := []*Subscription{p.Log().Subscribe(100), p.Log().Subscribe(100)}
	eventually(t, "three lines", func() bool { return contains(p.Log().Tail(10), "line 3") })
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs {
		var got []string
		for line := range sub.C {
			got = append(got, line)
		}
		j := strings.Join(got, "\n")
		if !strings.Contains(j, "line 1\nline 2\nline 3") || got[len(got)-1] != "[supervisor] stopped" {
			t.Errorf("subscriber %d got %q", i, got)
		}
	}
}

// A subscriber with a byte bound is dropped once the lines it holds and
// has not marked Took pass the bound, however few they are; lines it took
// no longer count.
func TestSubscriberByteBound(t *testing.T) {
	l := NewLog(10, 1000)
	line := strings.Repeat("x", 100)
	l.Write(line)
	reader := l.SubscribeBytes(1, 1<<10, 350) // the tail line counts: 100
	idle := l.SubscribeBytes(0, 1<<10, 350)
	for range 3 {
		l.Write(line)
		got := <-reader.C
		reader.Took(got)
	}
	// reader took every line as it came; idle holds 300 bytes.
	l.Write(line) // idle: 400 > 350
	if !idle.Dropped() {
		t.Fatal("a subscriber holding more bytes than its bound was not dropped")
	}
	select {
	case <-idle.Evicted():
	default:
		t.Fatal("Evicted not closed")
	}
	if reader.Dropped() {
		t.Fatal("a subscriber that took its lines was dropped")
	}
	n := 0
	for range idle.C {
		n++
	}
	if n != 3 {
		t.Fatalf("the dropped subscriber's channel held %d lines, want the 3 sent before the bound", n)
	}
	reader.Close()
}
