package cmbs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/store/sqlite"
)

// A restarted server binds the layers that were running when it stopped,
// and only those.
func TestStartedLayersSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	dbPath, layersFile := filepath.Join(dir, "cmbs.db"), filepath.Join(dir, "layers.json")
	opts := testOptions()
	opts.LayersFile = layersFile
	open := func(t *testing.T) *sqlite.Store {
		st, err := sqlite.Open(context.Background(), dbPath)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	var loc, l1, l2 string
	t.Run("first run", func(t *testing.T) {
		n := startNodeOn(t, "A", "pycmbs", opts, open(t))
		loc = n.createMember("m", withSockets(t, member{}))
		l1 = n.startLayer(loc, "l1")
		l2 = n.startLayer(loc, "l2")
		n.startLayer(loc, "l4")
		if r := n.action(loc, "stop_l4", nil); r.status != 200 {
			t.Fatalf("stop_l4: %d %s", r.status, r.body)
		}
	})
	data, err := os.ReadFile(layersFile)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct{ Layers map[string][]string }
	if err := json.Unmarshal(data, &rec); err != nil || len(rec.Layers[loc]) != 2 {
		t.Fatalf("recorded layers %s (%v), want l1 and l2 of %s", data, err, loc)
	}

	t.Run("after the restart", func(t *testing.T) {
		n := startNodeOn(t, "A", "", opts, open(t))
		// The L1 socket answers without start_l1: it was restored.
		c := transport.NewClient(transport.WithRequestTimeout(5 * time.Second))
		defer c.Close()
		msg := `{"kind":"` + cmbs.MessageKindID + `","attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}}`
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, sock := range []string{l1, l2} {
			if _, err := c.Request(ctx, sock, transport.Envelope{ID: "after-restart", MimeType: cmbs.MessageMimeType, Body: []byte(msg)}); err != nil {
				t.Fatalf("%s after the restart: %v", sock, err)
			}
		}
		for layer, running := range map[string]bool{"l1": true, "l2": true, "l4": false} {
			r := n.action(loc, "start_"+layer, nil)
			if r.status != 200 {
				t.Fatalf("start_%s: %d %s", layer, r.status, r.body)
			}
			if changed := r.json(t)["changed"] == true; changed == running {
				t.Errorf("start_%s after the restart: %s (the layer should %s running)", layer, r.body, map[bool]string{true: "have been", false: "not be"}[running])
			}
		}
	})
}

// A layers file naming a layer in its other spelling ("l3.1") binds it
// under its own name, so that stop_l31 closes it.
func TestRestoredLayerSpellings(t *testing.T) {
	dir := t.TempDir()
	dbPath, layersFile := filepath.Join(dir, "cmbs.db"), filepath.Join(dir, "layers.json")
	st, err := sqlite.Open(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	var loc, l31 string
	t.Run("member", func(t *testing.T) {
		n := startNodeOn(t, "A", "pycmbs", testOptions(), st)
		loc = n.createMember("m", withSockets(t, member{}))
		l31 = fmt.Sprint(attrsOf(n.get(loc), "member")["l31_socket"])
	})
	rec, _ := json.Marshal(map[string]any{"layers": map[string][]string{loc: {"l3.1"}}})
	if err := os.WriteFile(layersFile, rec, 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err = sqlite.Open(context.Background(), dbPath); err != nil {
		t.Fatal(err)
	}
	opts := testOptions()
	opts.LayersFile = layersFile
	n := startNodeOn(t, "A", "", opts, st)
	if !dialable(l31) {
		t.Fatalf("L3.1 on %s not restored", l31)
	}
	if r := n.action(loc, "stop_l31", nil); r.status != 200 || r.json(t)["changed"] != true || dialable(l31) {
		t.Fatalf("stop_l31 of the restored layer: %d %s (still dialable: %v)", r.status, r.body, dialable(l31))
	}
}
