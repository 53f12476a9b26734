package console

import "testing"

// TestSlowSubscriberDropped: a subscriber whose buffer is full is dropped
// (its channel closed) while others keep receiving.
func TestSlowSubscriberDropped(t *testing.T) {
	h := newHub(2)
	slow, _, _ := h.subscribe()
	fast, _, _ := h.subscribe()
	for i := range 3 {
		h.publish(event{ID: string(rune('a' + i))})
		<-fast
	}
	n := 0
	for range slow {
		n++
	}
	if n != 2 {
		t.Fatalf("slow subscriber got %d events before being dropped, want 2", n)
	}
	h.publish(event{ID: "d"})
	if e := <-fast; e.ID != "d" {
		t.Fatalf("fast subscriber got %q", e.ID)
	}
	h.close()
	if _, ok := <-fast; ok {
		t.Fatal("channel open after close")
	}
	if _, _, ok := h.subscribe(); ok {
		t.Fatal("subscribe after close succeeded")
	}
}
