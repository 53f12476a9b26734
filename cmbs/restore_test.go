package cmbs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/couch"
	"github.com/cmbs/cmbs/store/sqlite"
)

// reopenable returns a function that opens the same store each time it is
// called: an embedded database in a temporary directory, or one database of
// a CouchDB (COUCHDB_URL's, or a test peer's).
func reopenable(t *testing.T, kind string) func(t *testing.T) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	var open func() (store.Store, error)
	switch kind {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "cmbs.db")
		open = func() (store.Store, error) { return sqlite.Open(ctx, path) }
	case "couchdb":
		url := couchpeer.URLForTest(t)
		db := couchpeer.DBForTest(t, url)
		open = func() (store.Store, error) { return couch.Open(ctx, url, db) }
	}
	return func(t *testing.T) store.Store {
		t.Helper()
		st, err := open()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
}

// recordedLayers reads the layers record document from a store.
func recordedLayers(t *testing.T, st store.Store) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	doc, err := st.Get(ctx, cmbs.DefaultLayersID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	var rec struct{ Layers map[string][]string }
	if err == nil {
		err = json.Unmarshal(doc.Body, &rec)
	}
	if err != nil {
		t.Fatalf("layers record: %v", err)
	}
	return rec.Layers
}

// A restarted server binds the layers that were running when it stopped,
// and only those; the record is a document of the store, so a server on
// another store neither reads nor overwrites it. On both stores.
func TestStartedLayersSurviveARestart(t *testing.T) {
	for _, kind := range []string{"sqlite", "couchdb"} {
		t.Run(kind, func(t *testing.T) {
			open := reopenable(t, kind)
			opts := func(st store.Store) cmbs.Options {
				o := testOptions()
				o.Layers = st
				return o
			}

			var loc, l1, l2 string
			t.Run("first run", func(t *testing.T) {
				st := open(t)
				n := startNodeOn(t, "A", "pycmbs", opts(st), st)
				loc = n.createMember("m", withSockets(t, member{}))
				l1 = n.startLayer(loc, "l1")
				l2 = n.startLayer(loc, "l2")
				n.startLayer(loc, "l4")
				if r := n.action(loc, "stop_l4", nil); r.status != 200 {
					t.Fatalf("stop_l4: %d %s", r.status, r.body)
				}
				if got := recordedLayers(t, st)[loc]; len(got) != 2 || got[0] != "l1" || got[1] != "l2" {
					t.Fatalf("recorded layers of %s: %v, want l1 and l2", loc, got)
				}
			})

			// Another server, on a store of its own, with layers of its
			// own, started and stopped in between: it has nothing to do
			// with this store's record.
			t.Run("another store", func(t *testing.T) {
				st := reopenable(t, kind)(t)
				n := startNodeOn(t, "B", "pycmbs", opts(st), st)
				n.startLayer(n.createMember("other", withSockets(t, member{})), "l1")
			})

			t.Run("after the restart", func(t *testing.T) {
				st := open(t)
				n := startNodeOn(t, "A", "", opts(st), st)
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
		})
	}
}

// A layers.json of earlier versions is imported when the store has no
// record yet: a layer named in its other spelling ("l3.1") is bound under
// its own name, so that stop_l31 closes it; the record is then in the
// store, and the file renamed so that nothing reads it again.
func TestLayersFileImported(t *testing.T) {
	open := reopenable(t, "sqlite")
	layersFile := filepath.Join(t.TempDir(), "layers.json")
	var loc, l31 string
	t.Run("member", func(t *testing.T) {
		n := startNodeOn(t, "A", "pycmbs", testOptions(), open(t))
		loc = n.createMember("m", withSockets(t, member{}))
		l31 = fmt.Sprint(attrsOf(n.get(loc), "member")["l31_socket"])
	})
	rec, _ := json.Marshal(map[string]any{"layers": map[string][]string{loc: {"l3.1"}}})
	if err := os.WriteFile(layersFile, rec, 0o644); err != nil {
		t.Fatal(err)
	}
	st := open(t)
	opts := testOptions()
	opts.Layers, opts.ImportLayersFile = st, layersFile
	n := startNodeOn(t, "A", "", opts, st)
	if !dialable(l31) {
		t.Fatalf("L3.1 on %s not restored", l31)
	}
	if got := recordedLayers(t, st)[loc]; len(got) != 1 || got[0] != "l31" {
		t.Fatalf("recorded layers after the import: %v", got)
	}
	if _, err := os.Stat(layersFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the imported file is still there: %v", err)
	}
	if _, err := os.Stat(layersFile + ".imported"); err != nil {
		t.Fatal(err)
	}
	if r := n.action(loc, "stop_l31", nil); r.status != 200 || r.json(t)["changed"] != true || dialable(l31) {
		t.Fatalf("stop_l31 of the restored layer: %d %s (still dialable: %v)", r.status, r.body, dialable(l31))
	}
	if got := recordedLayers(t, st)[loc]; len(got) != 0 {
		t.Fatalf("recorded layers after stop_l31: %v", got)
	}
}
