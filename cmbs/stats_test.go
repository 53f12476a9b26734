package cmbs_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/cmbs/cmbs/cmbs"
)

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDeliveryStats: the broker counts deliveries sent, failed and
// repeated per layer, and discovery runs, and logs every failed delivery
// with its peer and cause.
func TestDeliveryStats(t *testing.T) {
	var logs lockedBuffer
	aOpts := testOptions()
	aOpts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b := startPeer(t, "b", member{}, testOptions(), "l1", "l31")
	dead := freeSocket(t)
	a := startPeer(t, "a", member{"neighbors_socket": []any{b.sockets["l1"], dead}}, aOpts, "l1")
	a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200)

	loc := a.createMessage("s31", "l31", map[string]any{"providers": []any{"b", "nobody"}, "storable": "true"})
	a.c.expect("POST", loc+"?action=send_l31", "{}", 200)
	a.c.expect("POST", loc+"?action=send_l31", "{}", 200) // b has it already: a duplicate there

	l1 := a.createMessage("s1", "l1", map[string]any{"l1_socket_receiver_member": dead})
	a.c.expect("POST", l1+"?action=send_l1", "{}", 504)

	as, bs := a.broker.Stats(), b.broker.Stats()
	if as.Sent["l31"] != 2 || as.Failed["l31"] != 2 || as.Failed["l1"] != 1 || as.Sent["l1"] != 0 {
		t.Errorf("a sent %v failed %v, want l31 2 sent and 2 failed, l1 1 failed", as.Sent, as.Failed)
	}
	if as.Discoveries != 1 || as.DiscoveryFailures != 1 {
		t.Errorf("a discoveries %d (failures %d), want 1 (1)", as.Discoveries, as.DiscoveryFailures)
	}
	if bs.Received["l31"] != 2 || bs.DuplicatesByLayer["l31"] != 1 || bs.Duplicates != 1 {
		t.Errorf("b received %v duplicates %v (total %d), want l31 2 received and 1 duplicate", bs.Received, bs.DuplicatesByLayer, bs.Duplicates)
	}
	for _, s := range []cmbs.Stats{as, bs} {
		for l, n := range s.InFlight {
			if n != 0 {
				t.Errorf("%d deliveries on %s still in flight", n, l)
			}
		}
	}

	// One warning per failed delivery, naming the peer and the cause.
	var failures []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "msg=\"delivery failed\"") {
			failures = append(failures, line)
		}
	}
	if len(failures) != 3 {
		t.Fatalf("%d delivery failures logged, want 3:\n%s", len(failures), logs.String())
	}
	for _, want := range []string{"layer=l31 id=s31 peer=nobody cause=", "layer=l1 id=s1 peer=" + dead + " cause=",
		"msg=\"discovery probe failed\" component=cmbs member=" + a.loc + " peer=" + dead + " cause="} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no failure logged with %q:\n%s", want, logs.String())
		}
	}
}
