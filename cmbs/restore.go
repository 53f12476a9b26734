package cmbs

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"

	"github.com/cmbs/cmbs/occi/model"
)

// layersRecord is the file Options.LayersFile names: the layers running on
// each local member, so that a restarted cmbsd binds them again.
type layersRecord struct {
	Layers map[string][]Layer `json:"layers"` // by member location
}

// Start binds the layers Options.LayersFile records as running when the
// broker last changed them, so that a restart leaves the members as they
// were. A layer that cannot be bound again (its port taken, its member
// deleted or made remote meanwhile) is logged and dropped from the record;
// the server starts all the same.
func (p *MemberProvider) Start(ctx context.Context) error { return p.b.restoreLayers(ctx) }

func (b *Broker) restoreLayers(ctx context.Context) error {
	path := b.opts.LayersFile
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var rec layersRecord
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err != nil {
		b.log.Error("could not read the started layers; none are restored", "file", path, "err", err)
		return nil
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
	b.log.Info("started layers restored", "file", path, "layers", restored)
	b.saveLayers()
	return nil
}

// saveLayers writes the layers running now to Options.LayersFile, whole
// (a temporary file renamed over it), after every start, stop or member
// deletion. Broker.Stop does not call it: the layers running at shutdown
// are the ones to restore. A failure is logged; the layer itself stays as
// the action left it.
func (b *Broker) saveLayers() {
	path := b.opts.LayersFile
	if path == "" {
		return
	}
	b.saveMu.Lock()
	defer b.saveMu.Unlock()
	rec := layersRecord{Layers: map[string][]Layer{}}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
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
	data, err := json.MarshalIndent(rec, "", "  ")
	if err == nil {
		err = writeFileAtomic(path, append(data, '\n'))
	}
	if err != nil {
		b.log.Error("could not record the started layers; a restart will not restore them", "file", path, "err", err)
	}
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}
