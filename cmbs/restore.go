package cmbs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

// DefaultLayersID is the id of the layers record document when
// Options.LayersID is empty.
const DefaultLayersID = "cmbs-layers"

// layersRecordType is the record document's type, which no category or
// entity query selects.
const layersRecordType = "cmbs-layers"

// layersSaveTimeout bounds one write of the layers record.
const layersSaveTimeout = 10 * time.Second

// DocumentStore is what the broker needs to keep its layers record: one
// document read and written whole. store.Store has it.
type DocumentStore interface {
	Get(ctx context.Context, id string) (store.Document, error)
	Put(ctx context.Context, doc store.Document) (rev string, err error)
}

// layersRecord is the record of the layers running on each local member,
// so that a restarted cmbsd binds them again. It is stored in the store
// that holds those members (Options.Layers), so a server started on
// another store neither reads nor overwrites it.
type layersRecord struct {
	Type   string             `json:"type"`
	Layers map[string][]Layer `json:"layers"` // by member location
}

// Start binds the layers the record (Options.Layers) says were running
// when the broker last changed them, so that a restart leaves the members
// as they were. A layer that cannot be bound again (its port taken, its
// member deleted or made remote meanwhile) is logged and dropped from the
// record; the server starts all the same. When the store holds no record
// yet, Options.ImportLayersFile (a layers.json of earlier versions) is read
// instead, stored, and renamed to <file>.imported.
func (p *MemberProvider) Start(ctx context.Context) error { return p.b.restoreLayers(ctx) }

func (b *Broker) restoreLayers(ctx context.Context) error {
	if b.opts.Layers == nil {
		return nil
	}
	rec, found, err := b.readLayers(ctx)
	if err != nil {
		// Not rewritten either: the next start_lN or stop_lN writes it.
		b.log.Error("could not read the started layers; none are restored", "record", b.opts.LayersID, "err", err)
		return nil
	}
	from, imported := "store document "+b.opts.LayersID, false
	if !found && b.opts.ImportLayersFile != "" {
		if rec, imported, err = readLayersFile(b.opts.ImportLayersFile); err != nil {
			b.log.Error("could not read the started layers of an earlier version; none are restored", "file", b.opts.ImportLayersFile, "err", err)
			return nil
		}
		if imported {
			from = b.opts.ImportLayersFile
		}
	}
	restored := 0
	for _, loc := range slices.Sorted(maps.Keys(rec.Layers)) {
		e, err := b.member(ctx, loc)
		if err != nil {
			if model.StatusOf(err) == http.StatusNotFound {
				b.log.Info("a member with started layers is gone; not restored", "member", loc)
			} else {
				b.log.Warn("could not read a member to restore its layers", "member", loc, "err", err)
			}
			continue
		}
		for _, name := range rec.Layers[loc] {
			// Bound under its canonical name ("l3.1" is l31), which stop_*
			// and the counters use.
			l, ok := ParseLayer(string(name))
			if !ok {
				b.log.Warn("unknown layer in the started layers; skipped", "member", loc, "layer", name)
				continue
			}
			if _, err := b.bindLayer(e, l); err != nil {
				b.log.Warn("could not restore a started layer", "member", loc, "layer", l, "err", err)
				continue
			}
			restored++
		}
	}
	b.log.Info("started layers restored", "from", from, "layers", restored)
	if err := b.writeLayers(); err != nil {
		b.log.Error("could not record the started layers; a restart will not restore them", "record", b.opts.LayersID, "err", err)
		return nil
	}
	if imported {
		// Stored now: the file would only mislead.
		if err := os.Rename(b.opts.ImportLayersFile, b.opts.ImportLayersFile+".imported"); err != nil {
			b.log.Warn("the started layers were imported into the store, but their file could not be renamed", "file", b.opts.ImportLayersFile, "err", err)
		} else {
			b.log.Info("started layers imported into the store", "file", b.opts.ImportLayersFile, "renamed", b.opts.ImportLayersFile+".imported")
		}
	}
	return nil
}

// readLayers reads the record from the store; found is false when there is
// none.
func (b *Broker) readLayers(ctx context.Context) (rec layersRecord, found bool, err error) {
	doc, err := b.opts.Layers.Get(ctx, b.opts.LayersID)
	if errors.Is(err, store.ErrNotFound) {
		return rec, false, nil
	}
	if err == nil {
		err = json.Unmarshal(doc.Body, &rec)
	}
	if err == nil && rec.Type != layersRecordType {
		err = fmt.Errorf("document %s is not a layers record (type %q)", b.opts.LayersID, rec.Type)
	}
	return rec, err == nil, err
}

// readLayersFile reads a layers.json of earlier versions; found is false
// when there is no such file.
func readLayersFile(path string) (rec layersRecord, found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return rec, false, nil
	}
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	return rec, err == nil, err
}

// saveLayers records the layers running now, after every start, stop or
// member deletion. Broker.Stop does not call it: the layers running at
// shutdown are the ones to restore. A failure is logged; the layer itself
// stays as the action left it.
func (b *Broker) saveLayers() {
	if err := b.writeLayers(); err != nil {
		b.log.Error("could not record the started layers; a restart will not restore them", "record", b.opts.LayersID, "err", err)
	}
}

// writeLayers writes the record whole, over the stored one.
func (b *Broker) writeLayers() error {
	if b.opts.Layers == nil {
		return nil
	}
	b.saveMu.Lock()
	defer b.saveMu.Unlock()
	rec := layersRecord{Type: layersRecordType, Layers: map[string][]Layer{}}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return nil
	}
	for loc, m := range b.members {
		for l := range m.layers {
			rec.Layers[loc] = append(rec.Layers[loc], l)
		}
	}
	b.mu.Unlock()
	for _, ls := range rec.Layers {
		slices.Sort(ls)
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(b.ctx, layersSaveTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		doc := store.Document{ID: b.opts.LayersID, Body: body}
		old, err := b.opts.Layers.Get(ctx, doc.ID)
		switch {
		case err == nil:
			doc.Rev = old.Rev
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		_, err = b.opts.Layers.Put(ctx, doc)
		// Another cmbsd on the same database wrote it in between (each
		// should have its own record): the last write wins, as with a file.
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue
		}
		return err
	}
}
