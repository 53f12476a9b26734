package cmbs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Storable L2 messages sent many at a time (each send keeps its deliveries
// in flight on the sender's one connection per receiver): every receiver
// stores each message once, a repeat is acknowledged as a duplicate and
// not stored again, and a receiver whose layer stops in the middle has
// every delivery it did not acknowledge reported failed — none it
// acknowledged is missing from its store. On both stores.
func TestStorableFanOutUnderWindow(t *testing.T) {
	for _, kind := range []string{"sqlite", "couchdb"} {
		t.Run(kind, func(t *testing.T) {
			startOn := func(id string, layers ...string) *peer {
				// Every node its own store (a database each on CouchDB).
				n := startNodeOn(t, strings.ToUpper(id), "pycmbs", testOptions(), reopenable(t, kind)(t))
				p := &peer{node: n, id: id, sockets: map[string]string{}}
				p.loc = n.createMember(id, withSockets(t, member{}))
				for _, l := range layers {
					p.sockets[l] = n.startLayer(p.loc, l)
				}
				return p
			}
			var receivers []*peer
			var neighbours []any
			for i := range 3 {
				r := startOn(fmt.Sprintf("r%d", i), "l1", "l2")
				receivers = append(receivers, r)
				neighbours = append(neighbours, r.sockets["l1"])
			}
			s := startOn("s", "l1")
			s.updateMember(s.loc, member{"neighbors_socket": neighbours})
			s.c.expect("POST", s.loc+"?action=check_neighbors", "{}", 200)

			const msgs, workers, stopAfter = 40, 8, 12
			locs := make([]string, msgs)
			for i := range locs {
				locs[i] = s.createMessage(fmt.Sprintf("w-%02d", i), "l2", map[string]any{"storable": "true", "executable": "false"})
			}
			// Receiver r2's layer stops once stopAfter sends have returned,
			// while others are in flight; the last ones wait for the stop.
			dying := receivers[2]
			var done atomic.Int64
			stopped := make(chan struct{})
			results := make([]map[string]any, msgs)
			var next atomic.Int64
			abort, cancel := context.WithCancel(t.Context())
			defer cancel()
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for {
						i := int(next.Add(1) - 1)
						if i >= msgs {
							return
						}
						if i >= stopAfter+workers {
							// The sends around the stop race with it;
							// the later ones go after it.
							select {
							case <-stopped:
							case <-abort.Done():
								return
							}
						}
						r, err := s.c.try("POST", locs[i]+"?action=send_l2", "{}")
						if err == nil && r.status == 200 {
							err = json.Unmarshal(r.body, &results[i])
						}
						if err != nil || r.status != 200 {
							t.Errorf("send_l2 %s: %v %d %s", locs[i], err, r.status, r.body)
							cancel() // the others must not wait for a stop that will not come
							return
						}
						if done.Add(1) == stopAfter {
							go func() {
								defer close(stopped)
								if r, err := dying.c.try("POST", dying.loc+"?action=stop_l2", "{}"); err != nil || r.status != 200 {
									t.Errorf("stop_l2: %v %d %s", err, r.status, r.body)
								}
							}()
						}
					}
				})
			}
			wg.Wait()
			if done.Load() >= stopAfter {
				<-stopped // the stop has returned
			}
			if t.Failed() {
				return
			}

			lost := 0
			for i, res := range results {
				if int(res["delivered"].(float64))+int(res["failed"].(float64)) != len(receivers) {
					t.Fatalf("send %d: %v", i, res)
				}
				for _, d := range res["deliveries"].([]any) {
					d := d.(map[string]any)
					socket, _ := d["socket"].(string)
					delivered, _ := d["delivered"].(bool)
					if socket != dying.sockets["l2"] {
						if !delivered {
							t.Fatalf("send %d: a live receiver's delivery failed: %v", i, d)
						}
						continue
					}
					if !delivered {
						lost++
						if d["error"] == "" {
							t.Fatalf("send %d: a failed delivery says no why: %v", i, d)
						}
					} else if !dying.hasMessage(fmt.Sprintf("w-%02d", i)) {
						t.Fatalf("send %d: r2 acknowledged w-%02d but has not stored it", i, i)
					}
				}
			}
			if lost < msgs-stopAfter-workers || lost > msgs-stopAfter {
				t.Fatalf("%d of %d deliveries to the stopped receiver failed, want those sent after the stop (%d) and at most those around it", lost, msgs, msgs-stopAfter-workers)
			}
			for _, r := range receivers[:2] {
				for i := range msgs {
					if !r.hasMessage(fmt.Sprintf("w-%02d", i)) {
						t.Fatalf("%s has not stored w-%02d", r.id, i)
					}
				}
				if got := r.broker.Stats().Received["l2"]; got != msgs {
					t.Fatalf("%s received %d messages, want %d", r.id, got, msgs)
				}
			}
			t.Logf("%s: %d of %d deliveries to the receiver stopped mid-way failed", kind, lost, msgs)

			// A repeat is acknowledged as a duplicate and not stored twice.
			res := s.action(locs[0], "send_l2", nil).json(t)
			for _, d := range res["deliveries"].([]any) {
				d := d.(map[string]any)
				if d["socket"] == dying.sockets["l2"] {
					continue
				}
				ack, _ := d["ack"].(map[string]any)
				if d["delivered"] != true || ack["duplicate"] != true {
					t.Fatalf("repeat of w-00: %v, want delivered as a duplicate", d)
				}
			}
			for _, r := range receivers[:2] {
				if n := len(r.list("/cmbs/message/")); n != msgs {
					t.Fatalf("%s stores %d messages after a repeat, want %d", r.id, n, msgs)
				}
			}
		})
	}
}
