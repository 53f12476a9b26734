package smartmob

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

// Several servers on one store: each process is run by the server that
// received its create (smartmob.process.server); its slug is reserved in
// the store (a document per slug, created only if absent); an action or a
// deletion received by another server is written to the store, and the
// server running the process applies it from the changes feed.

// slugDocPrefix starts the id of a slug's reservation document.
const slugDocPrefix = "smartmob-slug:"

// storeTimeout bounds the provider's own store requests outside a
// client's request (the feed, releases).
const storeTimeout = 30 * time.Second

// releaseTimeout bounds the freeing of a slug, done while a deletion is
// answered.
const releaseTimeout = 5 * time.Second

// slugDoc is the body of a slug's reservation.
type slugDoc struct {
	Location string `json:"location"`
	Server   string `json:"server"`
}

func slugConflict(slug, other string) error {
	err := model.Conflict("a process with slug %s exists already (%s)", slug, other)
	err.Attribute = "smartmob.process.slug"
	return err
}

// slugHolder reads the reservation of slug: the location holding it and
// the document's revision (store.ErrNotFound when free).
func (p *Provider) slugHolder(ctx context.Context, slug string) (slugDoc, string, error) {
	doc, err := p.opts.Slugs.Get(ctx, slugDocPrefix+slug)
	if err != nil {
		return slugDoc{}, "", err
	}
	var d slugDoc
	if err := json.Unmarshal(doc.Body, &d); err != nil {
		return slugDoc{}, "", fmt.Errorf("slug %s: %w", slug, err)
	}
	return d, doc.Rev, nil
}

// reserveSlug reserves slug for the process at loc in the store (nothing
// without Options.Slugs): a create of its document, which fails on every
// server once one holds it (409). A reservation whose process is gone (a
// server stopped between deleting the entity and freeing the slug) is
// taken over.
func (p *Provider) reserveSlug(ctx context.Context, slug, loc string) error {
	if p.opts.Slugs == nil || slug == "" {
		return nil
	}
	body, err := json.Marshal(slugDoc{Location: loc, Server: p.opts.Server})
	if err != nil {
		return err
	}
	for range 3 {
		_, err := p.opts.Slugs.Put(ctx, store.Document{ID: slugDocPrefix + slug, Body: body})
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("reserve slug %s: %w", slug, err)
		}
		held, rev, err := p.slugHolder(ctx, slug)
		if errors.Is(err, store.ErrNotFound) {
			continue // freed meanwhile
		}
		if err != nil {
			return fmt.Errorf("reserve slug %s: %w", slug, err)
		}
		if held.Location == loc {
			return nil
		}
		if _, gerr := p.ents.Get(ctx, held.Location); model.StatusOf(gerr) != http.StatusNotFound {
			return slugConflict(slug, held.Location)
		}
		if _, err := p.opts.Slugs.Delete(ctx, slugDocPrefix+slug, rev); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("reserve slug %s: %w", slug, err)
		}
	}
	return slugConflict(slug, "reserved meanwhile")
}

// releaseSlug frees slug if the process at loc holds it. A failure only
// leaves a reservation that the next create of the slug takes over.
func (p *Provider) releaseSlug(slug, loc string) {
	if p.opts.Slugs == nil || slug == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	held, rev, err := p.slugHolder(ctx, slug)
	if err == nil && held.Location == loc {
		_, err = p.opts.Slugs.Delete(ctx, slugDocPrefix+slug, rev)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
		p.log.Warn("cannot free a smartmob slug", "slug", slug, "err", err)
	}
}

// lookup returns the location of the process with slug, whichever server
// runs it, or "".
func (p *Provider) lookup(ctx context.Context, slug string) string {
	if loc := p.Lookup(slug); loc != "" || p.opts.Slugs == nil {
		return loc
	}
	held, _, err := p.slugHolder(ctx, slug)
	if err != nil {
		return ""
	}
	return held.Location
}

// misdirected is the answer to a request only the server running a
// process can serve (its console).
func misdirected(e *model.Entity, server string) error {
	return model.Errorf(http.StatusMisdirectedRequest, "process %s runs on server %s: its console is served there", e.Location, server)
}

// remoteAction writes an action on a process another server runs to its
// entity: the desired state, and for restart a new request id; that server
// applies it from the changes feed.
func (p *Provider) remoteAction(ctx context.Context, e *model.Entity, term string) (any, error) {
	f := map[string]any{"desired": desiredRunning}
	switch term {
	case "stop":
		f["desired"] = desiredStopped
	case "restart":
		f["restart_request"] = rand.Text()
	}
	in := &model.EntityInput{Entity: model.Entity{Attributes: map[string]any{"smartmob": map[string]any{"process": f}}},
		Present: map[string]bool{"attributes": true}}
	cur, err := updateRetrying(internal(ctx), p.ents, e.Location, in)
	if err != nil {
		return nil, err
	}
	// The read-only attributes, as the server running it answers.
	out := map[string]any{}
	a := attrs(cur)
	for _, k := range categories.SmartmobReadOnly {
		if v, ok := a[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

// updateRetrying is a partial update of the provider's attributes that
// reads the entity again when another write came in between (409): the
// server running a process and the others write to it concurrently, and
// neither overwrites what the other wrote.
func updateRetrying(ctx context.Context, ents Entities, loc string, in *model.EntityInput) (*model.Entity, error) {
	var err error
	for range 10 {
		var e *model.Entity
		if e, err = ents.Update(ctx, loc, "", in); model.StatusOf(err) != http.StatusConflict {
			return e, err
		}
	}
	return nil, err
}

// ApplyChanges is the provider's handler of the store's changes feed
// (store/feed): a change to a process this server runs is applied in the
// background (an action another server wrote, a new source, a
// deletion), one at a time per process, from the entity as stored then.
func (p *Provider) ApplyChanges(_ context.Context, changes []store.Change) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	for _, c := range changes {
		pr := p.procs[c.ID]
		if pr == nil {
			continue
		}
		// Its own writes too: the feed may show only the latest revision
		// of a document, one of this server's written over another's.
		pr.mu.Lock()
		queued := pr.following
		pr.following = true
		pr.mu.Unlock()
		if queued {
			continue // the follow queued will read it
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.follow(pr)
		}()
	}
	return nil
}

// follow applies the stored entity of pr: what its desired state or
// restart request says, when this server's view differs.
func (p *Provider) follow(pr *proc) {
	pr.actMu.Lock()
	defer pr.actMu.Unlock()
	pr.mu.Lock()
	pr.following = false
	pr.mu.Unlock()
	ctx, cancel := context.WithTimeout(p.ctx, storeTimeout)
	defer cancel()
	e, err := p.ents.Get(ctx, pr.loc)
	if model.StatusOf(err) == http.StatusNotFound {
		p.gone(ctx, pr)
		return
	}
	if err != nil {
		if p.ctx.Err() == nil {
			p.log.Warn("cannot read a changed smartmob process", "slug", pr.slug, "err", err)
		}
		return
	}
	pr.refresh(e)
	a := attrs(e)
	desired, _ := a["desired"].(string)
	req, _ := a["restart_request"].(string)
	pr.mu.Lock()
	cur, lastReq := pr.desired, pr.restartReq
	pr.restartReq = req
	pr.mu.Unlock()
	term := ""
	switch {
	case desired == desiredStopped && cur != desiredStopped:
		term = "stop"
	case desired == desiredRunning && req != lastReq:
		term = "restart"
	case desired == desiredRunning && cur != desiredRunning:
		term = "start"
	}
	if term == "" {
		return
	}
	p.log.Info("applying an action written by another server", "slug", pr.slug, "action", term)
	pr.persistMu.Lock()
	pr.persistedDesired = desired
	pr.persistMu.Unlock()
	if err := p.act(ctx, pr, term, ""); err != nil {
		p.log.Warn("cannot apply an action written by another server", "slug", pr.slug, "action", term, "err", err)
	}
	// The state only: the desired state is the other server's to write, and
	// writing this server's view of it back (retried over a newer revision)
	// would undo an action written while this one was being applied.
	p.persist(pr, false)
}

// gone stops and forgets a process whose entity another server deleted.
func (p *Provider) gone(ctx context.Context, pr *proc) {
	pr.markRemoved()
	if err := p.halt(ctx, pr); err != nil {
		p.log.Warn("cannot stop a deleted smartmob process", "slug", pr.slug, "err", err)
	}
	if err := os.RemoveAll(pr.dir); err != nil {
		p.log.Warn("cannot remove a process directory", "dir", pr.dir, "err", err)
	}
	p.mu.Lock()
	if p.procs[pr.loc] == pr {
		delete(p.procs, pr.loc)
	}
	if p.slugs[pr.slug] == pr.loc {
		delete(p.slugs, pr.slug)
	}
	p.mu.Unlock()
	p.releaseSlug(pr.slug, pr.loc)
}
