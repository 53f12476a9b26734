// Package entities is the OCCI entity service: creating, reading, listing,
// updating and deleting resources and links, tagging them with mixins and
// triggering their actions. It validates every change against the category
// registry, keeps the provider bound to the entity's kind in step with the
// store, and never overwrites a concurrent change (every write carries the
// revision it read).
//
// The HTTP edge and in-process callers (the CMBS broker) use the same Service.
package entities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/store"
)

// Service manages entities.
type Service struct {
	store     store.Store
	cats      *categories.Registry
	providers *providers.Registry
	log       *slog.Logger
	deferred  deferred
	// outLinkLocks: see outlinks.go.
	outLinkLocks outLinkLocks
}

// New returns a Service and makes sure the store has the indexes entity
// queries use.
func New(ctx context.Context, st store.Store, cats *categories.Registry, provs *providers.Registry, logger *slog.Logger) (*Service, error) {
	if logger == nil {
		logger = slog.Default()
	}
	for name, fields := range map[string][]string{
		"type-kind": {"type", "kind"},
		"mixins":    {"mixins"},
		"source":    {"source"},
		"target":    {"target"},
	} {
		if err := st.EnsureIndex(ctx, name, fields); err != nil {
			return nil, fmt.Errorf("entity index %s: %w", name, err)
		}
	}
	s := &Service{store: st, cats: cats, providers: provs, log: logger}
	s.deferred.slots = make(chan struct{}, maxDeferred)
	s.deferred.pending = map[string]chan struct{}{}
	s.deferred.ctx, s.deferred.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Categories returns the registry the service validates against.
func (s *Service) Categories() *categories.Registry { return s.cats }

// provider returns the provider serving a kind; kinds with none bound get
// providers.Storage, whose actions answer 501.
func (s *Service) provider(kindID string) (providers.Provider, error) {
	name := s.cats.ProviderName(kindID)
	if name == "" {
		return providers.Storage{}, nil
	}
	p, err := s.providers.Get(name)
	if err != nil {
		return nil, model.Errorf(http.StatusNotImplemented, "kind %s is bound to provider %q, which this server does not have", kindID, name)
	}
	return p, nil
}

// Get returns the entity at a location, once the updates UpdateLater
// queued for it are stored.
func (s *Service) Get(ctx context.Context, location string) (*model.Entity, error) {
	if err := s.settle(ctx, location); err != nil {
		return nil, err
	}
	return s.get(ctx, location)
}

// get reads the entity at a location as stored.
func (s *Service) get(ctx context.Context, location string) (*model.Entity, error) {
	doc, err := s.store.Get(ctx, location)
	if errors.Is(err, store.ErrNotFound) {
		return nil, model.NotFound("no entity at %s", location)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", location, err)
	}
	e, err := model.DecodeEntity(doc.ID, doc.Rev, doc.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", location, err)
	}
	if e.Type != model.TypeResource && e.Type != model.TypeLink {
		return nil, model.NotFound("no entity at %s", location)
	}
	return e, nil
}

// Create creates the entities described by inputs in the kind collection
// coll, all or nothing, and returns their locations in input order. typ is
// the body member they came in (resources or links).
func (s *Service) Create(ctx context.Context, coll *model.Category, typ string, inputs []*model.EntityInput) ([]string, error) {
	if coll.Class != model.ClassKind {
		return nil, model.BadRequest("%s is the collection of mixin %s; entities are created in their kind's collection", coll.Location, coll.ID())
	}
	var prepared []*model.Entity
	seen := map[string]bool{}
	for _, in := range inputs {
		if in.Kind != "" && in.Kind != coll.ID() {
			return nil, model.BadRequest("entity kind %s does not match the collection %s of kind %s", in.Kind, coll.Location, coll.ID())
		}
		in.Kind = coll.ID()
		if in.ID == "" {
			in.ID = uuid.NewString()
		}
		if err := model.CheckEntityID(in.ID); err != nil {
			return nil, err
		}
		loc := coll.Location + in.ID
		if seen[loc] {
			return nil, model.BadRequest("entity id %s appears twice in the request", in.ID)
		}
		seen[loc] = true
		e, links, err := s.prepare(ctx, loc, typ, in)
		if err != nil {
			return nil, err
		}
		prepared = append(prepared, e)
		prepared = append(prepared, links...)
	}
	if err := s.createAll(ctx, prepared); err != nil {
		return nil, err
	}
	locs := make([]string, 0, len(inputs))
	for _, e := range prepared {
		if seen[e.Location] {
			locs = append(locs, e.Location)
		}
	}
	return locs, nil
}

// CreateAt creates an entity at a location the client chose (PUT on a new
// URL). The kind is taken from the description and must be registered.
func (s *Service) CreateAt(ctx context.Context, location, typ string, in *model.EntityInput) (*model.Entity, error) {
	if in.Kind == "" {
		return nil, model.BadRequest("an entity created with PUT must name its kind")
	}
	if k, ok := s.cats.Get(in.Kind); !ok || k.Class != model.ClassKind {
		return nil, model.BadRequest("kind %s is not registered", in.Kind)
	}
	if in.ID == "" {
		in.ID = location[strings.LastIndex(location, "/")+1:]
	}
	if err := model.CheckEntityID(in.ID); err != nil {
		return nil, err
	}
	e, links, err := s.prepare(ctx, location, typ, in)
	if err != nil {
		return nil, err
	}
	if err := s.createAll(ctx, append([]*model.Entity{e}, links...)); err != nil {
		return nil, err
	}
	return e, nil
}

// prepare builds and validates a new entity (and its inline links).
func (s *Service) prepare(ctx context.Context, loc, typ string, in *model.EntityInput) (*model.Entity, []*model.Entity, error) {
	return s.prepareAs(ctx, loc, typ, in, false)
}

// prepareAs is prepare; trusted skips what only a client's input needs
// (see CreateLaterTrusted): nesting flat names and checking each value.
func (s *Service) prepareAs(ctx context.Context, loc, typ string, in *model.EntityInput, trusted bool) (*model.Entity, []*model.Entity, error) {
	// An entity CreateLater queued there is stored first: this one is then refused.
	if err := s.settle(ctx, loc); err != nil {
		return nil, nil, err
	}
	if s.cats.IsLinkKind(in.Kind) {
		typ = model.TypeLink
	} else if isResourceKind(s.cats, in.Kind) && typ == model.TypeLink {
		return nil, nil, model.BadRequest("kind %s is a resource kind; give it under \"resources\"", in.Kind)
	}
	e := in.Entity
	e.Type = typ
	e.Location = loc
	e.Rev = ""
	e.Mixins = dedupe(e.Mixins)
	attrs, err := s.cats.AttrSet(e.Kind, e.Mixins)
	if err != nil {
		return nil, nil, err
	}
	if err := s.cats.CheckMixins(e.Kind, e.Mixins, nil); err != nil {
		return nil, nil, err
	}
	if !trusted {
		e.Attributes = attrs.Nest(e.Attributes)
	}
	if err := takeCoreAttributes(&e); err != nil {
		return nil, nil, err
	}
	if err := s.providerPrepare(ctx, &e); err != nil {
		return nil, nil, err
	}
	prepareAttrs := attrs.Prepare
	if trusted {
		prepareAttrs = attrs.Complete
	}
	if err := prepareAttrs(e.Attributes); err != nil {
		return nil, nil, s.explainAttr(err)
	}
	if typ == model.TypeLink {
		if err := s.checkEndpoints(ctx, &e, in.SourceKind); err != nil {
			return nil, nil, err
		}
	} else if e.Source != "" || e.Target != "" {
		return nil, nil, model.BadRequest("a resource has no source or target; give links under \"links\"")
	}
	var links []*model.Entity
	e.OutLinks = nil
	if typ == model.TypeResource {
		out := []string{}
		e.OutLinks = &out
	}
	if len(in.InlineLinks) > 0 {
		e.Links = nil
		for i, ld := range in.InlineLinks {
			l, err := s.inlineLink(ctx, &e, ld)
			if err != nil {
				return nil, nil, fmt.Errorf("links[%d]: %w", i, err)
			}
			links = append(links, l)
			e.Links = append(e.Links, l.Location)
			*e.OutLinks = append(*e.OutLinks, l.Location)
		}
	}
	e.Normalize()
	if err := model.CheckEntityBounds(&e, s.cats.MaxAttributes()); err != nil {
		return nil, nil, err
	}
	return &e, links, nil
}

// inlineLink prepares a link given inside a resource's description; its
// source is the resource.
func (s *Service) inlineLink(ctx context.Context, src *model.Entity, desc map[string]any) (*model.Entity, error) {
	in, err := model.ParseEntityInput(desc, model.TypeLink)
	if err != nil {
		return nil, err
	}
	if in.Kind == "" {
		in.Kind = categories.LinkKind
	}
	kind, ok := s.cats.Get(in.Kind)
	if !ok || kind.Class != model.ClassKind {
		return nil, model.BadRequest("link kind %s is not registered", in.Kind)
	}
	if in.Source != "" && in.Source != src.Location {
		return nil, model.BadRequest("an inline link's source must be its resource %s", src.Location)
	}
	if in.SourceKind != "" && !s.isKindOf(in.SourceKind, src.Kind) {
		return nil, model.BadRequest("link source kind %s contradicts its resource %s, whose kind is %s", in.SourceKind, src.Location, src.Kind)
	}
	in.Source = src.Location
	if in.ID == "" {
		in.ID = uuid.NewString()
	}
	if err := model.CheckEntityID(in.ID); err != nil {
		return nil, err
	}
	l := in.Entity
	l.Type = model.TypeLink
	l.Location = kind.Location + in.ID
	l.Mixins = dedupe(l.Mixins)
	attrs, err := s.cats.AttrSet(l.Kind, l.Mixins)
	if err != nil {
		return nil, err
	}
	if err := s.cats.CheckMixins(l.Kind, l.Mixins, nil); err != nil {
		return nil, err
	}
	l.Attributes = attrs.Nest(l.Attributes)
	if err := takeCoreAttributes(&l); err != nil {
		return nil, err
	}
	if err := s.providerPrepare(ctx, &l); err != nil {
		return nil, err
	}
	if err := attrs.Prepare(l.Attributes); err != nil {
		return nil, s.explainAttr(err)
	}
	// The source is being created in the same request; only the target must exist.
	if l.Target == "" {
		return nil, model.BadRequest("a link needs a target")
	}
	targetKind := src.Kind
	if l.Target != src.Location {
		target, err := s.Get(ctx, l.Target)
		if err != nil {
			return nil, linkEndError("target", l.Target, err)
		}
		targetKind = target.Kind
	}
	if err := s.setTargetKind(&l, targetKind); err != nil {
		return nil, err
	}
	l.Normalize()
	if err := model.CheckEntityBounds(&l, s.cats.MaxAttributes()); err != nil {
		return nil, err
	}
	return &l, nil
}

// providerPrepare lets the kind's provider complete a new entity (see
// providers.Preparer).
func (s *Service) providerPrepare(ctx context.Context, e *model.Entity) error {
	p, err := s.provider(e.Kind)
	if err != nil {
		return err
	}
	if pp, ok := p.(providers.Preparer); ok {
		if e.Attributes == nil {
			e.Attributes = map[string]any{}
		}
		if err := pp.Prepare(ctx, e); err != nil {
			return providerError("prepare", e.Location, err)
		}
	}
	return nil
}

// checkEndpoints checks that a link's source and target exist, and that
// the kinds the client gave them (sourceKind; e.TargetKind) are theirs.
func (s *Service) checkEndpoints(ctx context.Context, e *model.Entity, sourceKind string) error {
	if e.Source == "" || e.Target == "" {
		return model.BadRequest("a link needs a source and a target")
	}
	source, err := s.Get(ctx, e.Source)
	if err != nil {
		return linkEndError("source", e.Source, err)
	}
	if sourceKind != "" && !s.isKindOf(sourceKind, source.Kind) {
		return model.BadRequest("link source kind %s contradicts source %s, whose kind is %s", sourceKind, e.Source, source.Kind)
	}
	target, err := s.Get(ctx, e.Target)
	if err != nil {
		return linkEndError("target", e.Target, err)
	}
	return s.setTargetKind(e, target.Kind)
}

// setTargetKind records the kind of a link's target, which the renderings
// show as the link's rel (OCCI 1.2 text) or target.kind (OCCI 1.2 JSON). A
// kind the client gave (text rel, JSON target.kind) must be the target's
// kind or one of its ancestors: anything else contradicts the target.
func (s *Service) setTargetKind(l *model.Entity, kind string) error {
	if given := l.TargetKind; given != "" && !s.isKindOf(given, kind) {
		return model.BadRequest("link rel (target kind) %s contradicts target %s, whose kind is %s", given, l.Target, kind)
	}
	l.TargetKind = kind
	return nil
}

// isKindOf tells whether id names kind or one of its ancestors.
func (s *Service) isKindOf(id, kind string) bool {
	return id == kind || s.cats.IsKindOf(kind, id)
}

func linkEndError(end, loc string, err error) error {
	if model.StatusOf(err) == http.StatusNotFound {
		return model.BadRequest("link %s %s does not exist", end, loc)
	}
	return err
}

func isResourceKind(cats *categories.Registry, kindID string) bool {
	return cats.IsKindOf(kindID, categories.ResourceKind)
}

// takeCoreAttributes moves occi.core.* attributes (as text renderings and
// OCCI 1.2 clients send them) into the entity's own members.
func takeCoreAttributes(e *model.Entity) error {
	core, ok := e.Attributes["occi"].(map[string]any)
	if !ok {
		return nil
	}
	cm, ok := core["core"].(map[string]any)
	if !ok {
		return nil
	}
	for k, v := range cm {
		s, isStr := v.(string)
		if !isStr {
			return model.AttributeError("occi.core."+k, "attribute occi.core.%s must be a string", k)
		}
		switch k {
		case "id":
			if e.ID != "" && s != e.ID {
				return model.AttributeError("occi.core.id", "occi.core.id %q does not match the entity id %q", s, e.ID)
			}
		case "title":
			e.Title, e.HasTitle = s, true
		case "summary":
			e.Summary, e.HasSummary = s, true
		case "source", "target":
			p, err := model.EntityPath(s)
			if err != nil {
				return err
			}
			if k == "source" {
				e.Source = p
			} else {
				e.Target = p
			}
		default:
			return model.AttributeError("occi.core."+k, "attribute occi.core.%s is not an OCCI core attribute", k)
		}
	}
	delete(core, "core")
	if len(core) == 0 {
		delete(e.Attributes, "occi")
	}
	return nil
}

func dedupe(ids []string) []string {
	out := make([]string, 0, len(ids))
	seen := map[string]bool{}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// createOne runs the provider's Create and stores the entity; a store
// failure undoes the provider's work.
func (s *Service) createOne(ctx context.Context, e *model.Entity) error {
	p, err := s.provider(e.Kind)
	if err != nil {
		return err
	}
	// The store write comes first: it reserves the location in one round
	// trip, so a duplicate is refused before the provider sees anything (a
	// provider's compensating Delete must never touch an existing entity,
	// e.g. a CMBS member's sockets). A provider that refuses the entity gets
	// it deleted again.
	var rev string
	err = s.cats.WithRegistered(e.Kind, e.Mixins, func() (err error) {
		rev, err = s.put(ctx, e, "")
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return model.Conflict("an entity already exists at %s", e.Location)
		}
		return err
	}
	e.Rev = rev
	if err := p.Create(ctx, e); err != nil {
		// Stored for a moment, so a concurrent reader may have seen it.
		if _, derr := s.store.Delete(context.WithoutCancel(ctx), e.Location, rev); derr != nil {
			s.log.Error("could not remove an entity its provider refused", "location", e.Location, "err", derr)
			committed(p, e.Location, e)
		} else {
			committed(p, e.Location, nil)
		}
		return providerError("create", e.Location, err)
	}
	committed(p, e.Location, e)
	return nil
}

// committed tells an Observer provider about a stored change.
func committed(p providers.Provider, loc string, e *model.Entity) {
	if o, ok := p.(providers.Observer); ok {
		o.Committed(loc, e)
	}
}

// rollback deletes entities created earlier in a request that failed.
func (s *Service) rollback(ctx context.Context, created []*model.Entity) {
	for i := len(created) - 1; i >= 0; i-- {
		e := created[i]
		p, perr := s.provider(e.Kind)
		if perr == nil {
			if err := p.Delete(ctx, e); err != nil {
				s.log.Error("provider could not undo a create", "location", e.Location, "err", err)
			}
		}
		still := e // what is stored at the location afterwards
		if _, err := s.store.Delete(ctx, e.Location, e.Rev); err != nil {
			s.log.Error("could not roll back a create", "location", e.Location, "err", err)
		} else {
			still = nil
		}
		if perr == nil {
			committed(p, e.Location, still)
		}
	}
}

func (s *Service) put(ctx context.Context, e *model.Entity, rev string) (string, error) {
	body, err := e.AppendJSON(nil) // json.Marshal's bytes, without its reflection
	if err != nil {
		return "", err
	}
	return s.store.Put(ctx, store.Document{ID: e.Location, Rev: rev, Body: body})
}

// providerError keeps a provider's *model.Error as it is and reports any
// other failure as 502: the provider, not the request, failed.
func providerError(op, loc string, err error) error {
	if model.StatusOf(err) != 0 || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return model.Errorf(http.StatusBadGateway, "provider failed to %s %s: %w", op, loc, err)
}

// Update applies a partial update (pyOCNI's POST on an entity): members the
// input gives replace the stored ones, attributes are deep-merged. ifMatch,
// when not empty, must be the current revision.
func (s *Service) Update(ctx context.Context, location, ifMatch string, in *model.EntityInput) (*model.Entity, error) {
	if err := s.settle(ctx, location); err != nil {
		return nil, err
	}
	return s.update(ctx, location, ifMatch, in)
}

// update is Update without waiting for deferred updates (it is how they
// are stored).
func (s *Service) update(ctx context.Context, location, ifMatch string, in *model.EntityInput) (*model.Entity, error) {
	return s.modify(ctx, location, ifMatch, s.patch(ctx, location, in))
}

// patch returns the change a partial update makes to an entity.
func (s *Service) patch(ctx context.Context, location string, in *model.EntityInput) func(old *model.Entity) (*model.Entity, error) {
	return s.patchChecked(ctx, location, in, false)
}

// patchChecked is patch; onlyChanges checks, when the update changes
// attributes only, the values it brings rather than every value of the
// entity (model.AttrSet.CheckPatch), for an old entity read from the store.
func (s *Service) patchChecked(ctx context.Context, location string, in *model.EntityInput, onlyChanges bool) func(old *model.Entity) (*model.Entity, error) {
	return func(old *model.Entity) (*model.Entity, error) {
		e := cloneEntity(old)
		if in.Present["kind"] && in.Kind != old.Kind {
			return nil, model.BadRequest("the kind of %s cannot change", location)
		}
		if in.Present["id"] && in.ID != old.ID {
			return nil, model.BadRequest("the id of %s cannot change", location)
		}
		if in.Present["mixins"] {
			e.Mixins = dedupe(in.Mixins)
		}
		if in.Present["title"] {
			e.Title, e.HasTitle = in.Title, true
		}
		if in.Present["summary"] {
			e.Summary, e.HasSummary = in.Summary, true
		}
		if in.Present["actions"] {
			e.Actions = in.Actions
		}
		if in.Present["links"] {
			e.Links = in.Links
		}
		if in.Present["source"] {
			e.Source = in.Source
		}
		if in.Present["target"] {
			e.Target, e.TargetKind = in.Target, in.TargetKind
		}
		attrs, err := s.cats.AttrSet(e.Kind, e.Mixins)
		if err != nil {
			return nil, err
		}
		if in.Present["mixins"] {
			if err := s.cats.CheckMixins(e.Kind, e.Mixins, old.Mixins); err != nil {
				return nil, err
			}
		}
		if in.Present["attributes"] {
			patch := attrs.Nest(in.Attributes)
			tmp := &model.Entity{Attributes: patch}
			if err := takeCoreAttributes(tmp); err != nil {
				return nil, err
			}
			if tmp.HasTitle {
				e.Title, e.HasTitle = tmp.Title, true
			}
			if tmp.HasSummary {
				e.Summary, e.HasSummary = tmp.Summary, true
			}
			attrs.MergeAttributes(e.Attributes, tmp.Attributes)
			if onlyChanges && !in.Present["mixins"] {
				return e, s.checkChanged(ctx, attrs, old, e, in.SourceKind, tmp.Attributes)
			}
		}
		return e, s.checkChanged(ctx, attrs, old, e, in.SourceKind, nil)
	}
}

// Replace replaces an entity whole (PUT on an existing URL) or creates it
// when the location is free. created tells which happened.
func (s *Service) Replace(ctx context.Context, location, ifMatch, typ string, in *model.EntityInput) (e *model.Entity, created bool, err error) {
	current, err := s.Get(ctx, location)
	if model.StatusOf(err) == http.StatusNotFound {
		if ifMatch != "" && ifMatch != "*" {
			return nil, false, model.Errorf(http.StatusPreconditionFailed, "no entity at %s to match %s", location, ifMatch)
		}
		e, err := s.CreateAt(ctx, location, typ, in)
		return e, true, err
	} else if err != nil {
		return nil, false, err
	}
	e, err = s.modifyEntity(ctx, current, ifMatch, func(old *model.Entity) (*model.Entity, error) {
		if in.Kind != "" && in.Kind != old.Kind {
			return nil, model.BadRequest("the kind of %s cannot change", location)
		}
		if in.ID != "" && in.ID != old.ID {
			return nil, model.BadRequest("the id of %s cannot change", location)
		}
		e := in.Entity
		e.Kind, e.ID, e.Type, e.Location, e.Rev = old.Kind, old.ID, old.Type, old.Location, old.Rev
		e.OutLinks = copyOutLinks(old.OutLinks)
		e.Mixins = dedupe(e.Mixins)
		if len(in.InlineLinks) > 0 {
			// A full OCCI rendering re-sent: OCCI 1.2 leaves existing links
			// intact on replace (they change at their own locations).
			e.Links = old.Links
		}
		if e.Type == model.TypeLink {
			if e.Source == "" {
				e.Source = old.Source
			}
			if e.Target == "" {
				e.Target, e.TargetKind = old.Target, old.TargetKind
			}
		}
		attrs, err := s.cats.AttrSet(e.Kind, e.Mixins)
		if err != nil {
			return nil, err
		}
		if err := s.cats.CheckMixins(e.Kind, e.Mixins, old.Mixins); err != nil {
			return nil, err
		}
		e.Attributes = attrs.Nest(e.Attributes)
		if err := takeCoreAttributes(&e); err != nil {
			return nil, err
		}
		if err := attrs.Prepare(e.Attributes); err != nil {
			return nil, s.explainAttr(err)
		}
		e.Normalize()
		return &e, s.checkChanged(ctx, attrs, old, &e, in.SourceKind, nil)
	})
	return e, false, err
}

// explainAttr adds to the error for an attribute the entity's categories
// do not define which mixins define it: the usual mistake is a message
// posted without the mixin (#l1, #l31, …) that declares its address.
func (s *Service) explainAttr(err error) error {
	var me *model.Error
	if !errors.Is(err, model.ErrUndefinedAttribute) || !errors.As(err, &me) {
		return err
	}
	ids := s.cats.MixinsDefining(me.Attribute)
	if len(ids) == 0 {
		return err
	}
	explained := *me
	explained.Message = fmt.Sprintf("%s; mixin %s defines it: list it in the entity's mixins", me.Message, strings.Join(ids, " or "))
	return &explained
}

// checkChanged validates an updated entity against its stored state.
func (s *Service) checkChanged(ctx context.Context, attrs *model.AttrSet, old, e *model.Entity, sourceKind string, patch map[string]any) error {
	if err := model.CheckEntityBounds(e, s.cats.MaxAttributes()); err != nil {
		return err
	}
	check := attrs.CheckUpdate
	if patch != nil { // only patch's values changed (patchChecked)
		check = func(old, updated map[string]any) error { return attrs.CheckPatch(old, updated, patch) }
	}
	if err := check(old.Attributes, e.Attributes); err != nil {
		return err
	}
	if e.Type == model.TypeLink && (e.Source != old.Source || e.Target != old.Target || e.TargetKind != old.TargetKind || sourceKind != "") {
		return s.checkEndpoints(ctx, e, sourceKind)
	}
	return nil
}

// modify reads an entity, lets change build its new state, runs the
// provider's Update and stores the result with the revision it read.
func (s *Service) modify(ctx context.Context, location, ifMatch string, change func(old *model.Entity) (*model.Entity, error)) (*model.Entity, error) {
	old, err := s.get(ctx, location)
	if err != nil {
		return nil, err
	}
	return s.modifyEntity(ctx, old, ifMatch, change)
}

// modifyEntity is modify for a caller that has just read the entity; the
// write still carries old's revision, so a change made since is a conflict.
func (s *Service) modifyEntity(ctx context.Context, old *model.Entity, ifMatch string, change func(old *model.Entity) (*model.Entity, error)) (*model.Entity, error) {
	if ifMatch != "" && ifMatch != "*" && ifMatch != old.Rev {
		return nil, model.Errorf(http.StatusPreconditionFailed, "%s has changed: its revision is %s, not %s", old.Location, old.Rev, ifMatch)
	}
	e, err := change(old)
	if err != nil {
		return nil, err
	}
	if e == old {
		return old, nil // nothing changed: no new revision, no provider call
	}
	return s.commitUpdate(ctx, old, e)
}

func (s *Service) commitUpdate(ctx context.Context, old, e *model.Entity) (*model.Entity, error) {
	p, err := s.provider(e.Kind)
	if err != nil {
		return nil, err
	}
	if e.Type == model.TypeLink && e.Source != old.Source {
		// A link moved to another source: listed there before it is stored
		// there, unlisted at the old one once it is not.
		added, err := s.addOutLink(ctx, e.Source, e.Location)
		if err != nil {
			return nil, err
		}
		u, err := s.storeUpdate(ctx, p, old, e)
		if err != nil {
			if added {
				s.dropOutLink(context.WithoutCancel(ctx), e.Source, e.Location)
			}
			return nil, err
		}
		s.dropOutLink(ctx, old.Source, e.Location)
		return u, nil
	}
	return s.storeUpdate(ctx, p, old, e)
}

// storeUpdate runs the provider's Update and stores the new state.
func (s *Service) storeUpdate(ctx context.Context, p providers.Provider, old, e *model.Entity) (*model.Entity, error) {
	if err := p.Update(ctx, old, e); err != nil {
		return nil, providerError("update", e.Location, err)
	}
	var rev string
	err := s.cats.WithRegistered(e.Kind, e.Mixins, func() (err error) {
		rev, err = s.put(ctx, e, old.Rev)
		return err
	})
	if err != nil {
		if uerr := p.Update(ctx, e, old); uerr != nil {
			s.log.Error("provider could not undo an update the store refused", "location", e.Location, "err", uerr)
		}
		if errors.Is(err, store.ErrConflict) {
			return nil, model.Conflict("%s was changed by another request; read it again and retry", e.Location)
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil, model.NotFound("no entity at %s", e.Location)
		}
		return nil, err
	}
	e.Rev = rev
	committed(p, e.Location, e)
	return e, nil
}

func cloneEntity(e *model.Entity) *model.Entity {
	c := *e
	c.Mixins = append([]string{}, e.Mixins...)
	c.Attributes, _ = model.DeepCopy(e.Attributes).(map[string]any)
	c.Actions, _ = model.DeepCopy(e.Actions).([]any)
	c.Links, _ = model.DeepCopy(e.Links).([]any)
	c.OutLinks = copyOutLinks(e.OutLinks)
	c.Normalize()
	return &c
}

// Delete deletes an entity, and the links that start or end at it.
func (s *Service) Delete(ctx context.Context, location, ifMatch string) error {
	e, err := s.Get(ctx, location)
	if err != nil {
		return err
	}
	if ifMatch != "" && ifMatch != "*" && ifMatch != e.Rev {
		return model.Errorf(http.StatusPreconditionFailed, "%s has changed: its revision is %s, not %s", location, e.Rev, ifMatch)
	}
	if e.Type == model.TypeResource {
		for _, field := range []string{"source", "target"} {
			links, err := s.find(ctx, map[string]any{"type": model.TypeLink, field: location}, 0, 0)
			if err != nil {
				return err
			}
			for _, l := range links {
				if err := s.deleteOne(ctx, l); err != nil && model.StatusOf(err) != http.StatusNotFound {
					return err
				}
				if l.Source != location {
					s.dropOutLink(ctx, l.Source, l.Location)
				}
			}
		}
		return s.deleteOne(ctx, e)
	}
	if err := s.deleteOne(ctx, e); err != nil {
		return err
	}
	if e.Type == model.TypeLink {
		s.dropOutLink(ctx, e.Source, e.Location)
	}
	return nil
}

func (s *Service) deleteOne(ctx context.Context, e *model.Entity) error {
	p, err := s.provider(e.Kind)
	if err != nil {
		return err
	}
	if err := p.Delete(ctx, e); err != nil {
		return providerError("delete", e.Location, err)
	}
	if _, err := s.store.Delete(ctx, e.Location, e.Rev); err != nil {
		if cerr := p.Create(ctx, e); cerr != nil {
			s.log.Error("provider could not undo a delete the store refused", "location", e.Location, "err", cerr)
		}
		switch {
		case errors.Is(err, store.ErrConflict):
			return model.Conflict("%s was changed by another request; read it again and retry", e.Location)
		case errors.Is(err, store.ErrNotFound):
			return model.NotFound("no entity at %s", e.Location)
		}
		return err
	}
	committed(p, e.Location, nil)
	return nil
}

// ListQuery selects entities.
type ListQuery struct {
	// Collection is the kind or mixin whose collection is listed; nil lists by
	// path prefix.
	Collection *model.Category
	// PathPrefix, when Collection is nil, lists entities whose location starts with it.
	PathPrefix string
	// Filters are description filters (OR-ed); nil means no filtering, an
	// empty non-nil list matches nothing.
	Filters []map[string]any
	// Where are further Mango selectors over the stored entity documents
	// that every entity listed must match.
	Where []map[string]any
	// Limit and Skip page through the results, which are ordered by location.
	Limit, Skip int
	// Batch is how many entities Pages reads per store query; 0 means
	// ListBatch.
	Batch int
}

// List returns the entities matching the query, ordered by location.
func (s *Service) List(ctx context.Context, q ListQuery) ([]*model.Entity, error) {
	sel := s.selector(q)
	if sel == nil {
		return nil, nil
	}
	if err := s.Settle(ctx); err != nil {
		return nil, err
	}
	return s.find(ctx, sel, q.Limit, q.Skip)
}

// LinksFrom returns the links whose source is one of sources, ordered by
// location: one query that the stores answer from their source index, a
// plain selector so that CouchDB picks that index (a range over every
// entity's _id, as List adds, had CouchDB-API peers scan the database on
// every rendering of a resource).
func (s *Service) LinksFrom(ctx context.Context, sources ...string) ([]*model.Entity, error) {
	if len(sources) == 0 {
		return nil, nil
	}
	var source any = sources[0]
	if len(sources) > 1 {
		source = map[string]any{"$in": sources}
	}
	return s.find(ctx, map[string]any{"source": source, "type": model.TypeLink}, 0, 0)
}

// ListBatch is how many entities Pages reads from the store at a time,
// unless the query says.
const ListBatch = 1000

// Pages reads the entities matching a query in location order, ListBatch
// at a time, so that a listing of any size holds one batch in memory: each
// batch is a store query for the entities after the last one read (a
// keyset on _id), so no batch re-reads the ones before it.
type Pages struct {
	s         *Service
	sel       map[string]any
	last      string
	batch     int
	skip      int
	remaining int // with a limit: how many more to return
	limited   bool
	done      bool
}

// Pages starts reading the entities matching q; the first batch is read by
// the first Next. Entities updated later with UpdateLater before the call
// are stored first, as for List.
func (s *Service) Pages(ctx context.Context, q ListQuery) (*Pages, error) {
	p := &Pages{s: s, sel: s.selector(q), batch: q.Batch, skip: q.Skip, remaining: q.Limit, limited: q.Limit > 0}
	if p.batch <= 0 {
		p.batch = ListBatch
	}
	if p.sel == nil {
		p.done = true
		return p, nil
	}
	if err := s.Settle(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Next returns the next batch of entities, or none (and no error) once all
// are read.
func (p *Pages) Next(ctx context.Context) ([]*model.Entity, error) {
	for !p.done {
		n := p.batch
		if p.limited {
			n = min(n, p.remaining)
		}
		sel := p.sel
		if p.last != "" {
			sel = and(sel, map[string]any{"_id": map[string]any{"$gt": p.last}})
		}
		docs, err := p.s.findDocs(ctx, sel, n, p.skip)
		if err != nil {
			return nil, err
		}
		p.skip = 0
		if len(docs) < n {
			p.done = true
		}
		if len(docs) > 0 {
			p.last = docs[len(docs)-1].ID
		}
		if p.limited {
			p.remaining -= len(docs)
			p.done = p.done || p.remaining <= 0
		}
		if out := p.s.decode(docs); len(out) > 0 {
			return out, nil
		}
	}
	return nil, nil
}

// selector is the Mango selector of a query; nil when it matches nothing.
func (s *Service) selector(q ListQuery) map[string]any {
	if q.Filters != nil && len(q.Filters) == 0 {
		return nil
	}
	sel := map[string]any{}
	var attrs *model.AttrSet
	switch c := q.Collection; {
	case c == nil:
		prefix := q.PathPrefix
		if prefix == "" {
			prefix = "/"
		}
		sel["_id"] = map[string]any{"$gte": prefix, "$lt": prefix + "\ufff0"}
		sel["type"] = map[string]any{"$in": []string{model.TypeResource, model.TypeLink}}
	case c.Class == model.ClassMixin:
		sel["mixins"] = map[string]any{"$elemMatch": map[string]any{"$eq": c.ID()}}
		attrs, _ = s.cats.AttrSet("", []string{c.ID()})
	default:
		sel = s.KindSelector(c.ID())
		attrs, _ = s.cats.AttrSet(c.ID(), nil)
	}
	if len(q.Filters) > 0 {
		if attrs == nil {
			attrs = model.NewAttrSet()
		}
		var ors []any
		for _, f := range q.Filters {
			ors = append(ors, model.Selector("", normalizeFilter(attrs, f)))
		}
		if len(ors) == 1 {
			sel = and(sel, ors[0].(map[string]any))
		} else {
			sel = and(sel, map[string]any{"$or": ors})
		}
	}
	return and(append([]map[string]any{sel}, q.Where...)...)
}

// and is the conjunction of selectors, as one flat $and: nested ones are
// the same to CouchDB, but the PouchDB-based test peer fails on them.
func and(sels ...map[string]any) map[string]any {
	if len(sels) == 1 {
		return sels[0]
	}
	var all []any
	for _, s := range sels {
		if kids, ok := s["$and"].([]any); ok && len(s) == 1 {
			all = append(all, kids...)
			continue
		}
		all = append(all, s)
	}
	return map[string]any{"$and": all}
}

// KindSelector is the Mango selector of the entities of a kind and of the
// kinds derived from it.
func (s *Service) KindSelector(kindID string) map[string]any {
	switch kindID {
	case categories.ResourceKind:
		return map[string]any{"type": model.TypeResource}
	case categories.LinkKind:
		return map[string]any{"type": model.TypeLink}
	case categories.EntityKind:
		return map[string]any{"type": map[string]any{"$in": []string{model.TypeResource, model.TypeLink}}}
	}
	kinds := s.descendants(kindID)
	if len(kinds) == 1 {
		return map[string]any{"kind": kinds[0]}
	}
	return map[string]any{"kind": map[string]any{"$in": kinds}}
}

// normalizeFilter brings a filter's attributes into the stored (nested) form
// and its link ends into paths.
func normalizeFilter(attrs *model.AttrSet, f map[string]any) map[string]any {
	out := make(map[string]any, len(f))
	for k, v := range f {
		switch k {
		case "attributes":
			if m, ok := v.(map[string]any); ok {
				out[k] = attrs.Nest(m)
				continue
			}
		case "source", "target":
			if str, ok := v.(string); ok {
				if p, err := model.EntityPath(str); err == nil {
					out[k] = p
					continue
				}
			}
		}
		out[k] = v
	}
	return out
}

// descendants lists a kind and every registered kind derived from it.
func (s *Service) descendants(kindID string) []string {
	out := []string{kindID}
	for _, k := range s.cats.All(model.ClassKind) {
		if k.ID() == kindID {
			continue
		}
		for _, anc := range s.cats.KindChain(k.ID())[1:] {
			if anc.ID() == kindID {
				out = append(out, k.ID())
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

func (s *Service) find(ctx context.Context, sel map[string]any, limit, skip int) ([]*model.Entity, error) {
	if err := s.Settle(ctx); err != nil {
		return nil, err
	}
	docs, err := s.findDocs(ctx, sel, limit, skip)
	if err != nil {
		return nil, err
	}
	return s.decode(docs), nil
}

// findDocs runs a store query; a query the store refuses is the request's
// fault (400).
func (s *Service) findDocs(ctx context.Context, sel map[string]any, limit, skip int) ([]store.Document, error) {
	raw, err := json.Marshal(sel)
	if err != nil {
		return nil, err
	}
	docs, err := s.store.Find(ctx, store.Query{Selector: raw, Limit: limit, Skip: skip})
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return nil, model.BadRequest("invalid filter: %v", err)
		}
		return nil, fmt.Errorf("find entities: %w", err)
	}
	return docs, nil
}

// decode reads entity documents; unreadable ones are logged and left out.
func (s *Service) decode(docs []store.Document) []*model.Entity {
	out := make([]*model.Entity, 0, len(docs))
	for _, d := range docs {
		e, err := model.DecodeEntity(d.ID, d.Rev, d.Body)
		if err != nil {
			s.log.Error("skipping unreadable entity document", "id", d.ID, "err", err)
			continue
		}
		out = append(out, e)
	}
	return out
}

// Associate tags the entities at the locations with a mixin (idempotent).
func (s *Service) Associate(ctx context.Context, mixin *model.Category, locations []string) error {
	return s.eachLocation(ctx, locations, func(current *model.Entity) error {
		_, err := s.modifyEntity(ctx, current, "", func(old *model.Entity) (*model.Entity, error) {
			if old.HasMixin(mixin.ID()) {
				return old, nil
			}
			e := cloneEntity(old)
			e.Mixins = append(e.Mixins, mixin.ID())
			attrs, err := s.cats.AttrSet(e.Kind, e.Mixins)
			if err != nil {
				return nil, err
			}
			if err := s.cats.CheckMixins(e.Kind, e.Mixins, old.Mixins); err != nil {
				return nil, fmt.Errorf("%s: %w", e.Location, err)
			}
			if err := attrs.Prepare(e.Attributes); err != nil {
				return nil, err
			}
			return e, nil
		})
		return err
	})
}

// Dissociate removes a mixin from the entities at the locations.
func (s *Service) Dissociate(ctx context.Context, mixin *model.Category, locations []string) error {
	return s.eachLocation(ctx, locations, func(current *model.Entity) error {
		_, err := s.modifyEntity(ctx, current, "", func(old *model.Entity) (*model.Entity, error) {
			e := cloneEntity(old)
			kept := e.Mixins[:0]
			for _, m := range e.Mixins {
				if m != mixin.ID() {
					kept = append(kept, m)
				}
			}
			e.Mixins = kept
			for _, d := range mixin.Attributes {
				if attrs, err := s.cats.AttrSet(e.Kind, e.Mixins); err == nil && attrs.ByPath(d.Path) == nil {
					model.DeletePath(e.Attributes, d.Path)
				}
			}
			return e, nil
		})
		return err
	})
}

// ReplaceMembership makes exactly the entities at the locations members of
// the mixin collection.
func (s *Service) ReplaceMembership(ctx context.Context, mixin *model.Category, locations []string) error {
	want := map[string]bool{}
	for _, l := range locations {
		p, err := model.EntityPath(l)
		if err != nil {
			return err
		}
		want[p] = true
	}
	// Check every new member exists before changing anything.
	for p := range want {
		if _, err := s.Get(ctx, p); err != nil {
			return err
		}
	}
	current, err := s.List(ctx, ListQuery{Collection: mixin})
	if err != nil {
		return err
	}
	var drop []string
	for _, e := range current {
		if !want[e.Location] {
			drop = append(drop, e.Location)
		}
	}
	if err := s.Dissociate(ctx, mixin, drop); err != nil {
		return err
	}
	return s.Associate(ctx, mixin, locations)
}

func (s *Service) eachLocation(ctx context.Context, locations []string, fn func(e *model.Entity) error) error {
	var paths []string
	seen := map[string]bool{}
	for _, l := range locations {
		p, err := model.EntityPath(l)
		if err != nil {
			return err
		}
		if !seen[p] {
			seen[p] = true
			paths = append(paths, p)
		}
	}
	// Read them all first: a missing one fails the request before anything
	// changes. The writes carry these revisions, so a change in between is
	// a conflict, not a lost update.
	ents := make([]*model.Entity, 0, len(paths))
	for _, p := range paths {
		e, err := s.Get(ctx, p)
		if err != nil {
			return err
		}
		ents = append(ents, e)
	}
	for _, e := range ents {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Trigger runs an action on the entity at location and returns the
// provider's result.
func (s *Service) Trigger(ctx context.Context, location, term string, attrs map[string]any) (any, error) {
	e, err := s.Get(ctx, location)
	if err != nil {
		return nil, err
	}
	return s.trigger(ctx, e, term, attrs)
}

func (s *Service) trigger(ctx context.Context, e *model.Entity, term string, attrs map[string]any) (any, error) {
	action, err := s.cats.Action(e.Kind, e.Mixins, term)
	if err != nil {
		return nil, err
	}
	defs := model.NewAttrSet(action.Attributes)
	nested := defs.Nest(attrs)
	if len(action.Attributes) > 0 {
		if err := defs.Prepare(nested); err != nil {
			return nil, err
		}
	}
	p, err := s.provider(e.Kind)
	if err != nil {
		return nil, err
	}
	inv := providers.Invocation{Term: term, Action: action, Attributes: nested}
	if sa, ok := p.(providers.StateActor); ok {
		_, err := s.modify(ctx, e.Location, "", func(old *model.Entity) (*model.Entity, error) {
			changed, err := sa.Act(ctx, cloneEntity(old), inv)
			if err != nil || changed == nil {
				return old, err
			}
			changed.Kind, changed.ID, changed.Type, changed.Location, changed.Rev = old.Kind, old.ID, old.Type, old.Location, old.Rev
			return changed, nil
		})
		if err != nil {
			return nil, providerError("run action "+term+" on", e.Location, err)
		}
		return nil, nil
	}
	res, err := p.Action(ctx, e, inv)
	if err != nil {
		return nil, providerError("run action "+term+" on", e.Location, err)
	}
	return res, nil
}

// TriggerCollection runs an action on every entity of a kind or mixin
// collection and returns each one's result by location. The action must be
// declared by every entity it runs on.
func (s *Service) TriggerCollection(ctx context.Context, coll *model.Category, term string, attrs map[string]any) (map[string]any, error) {
	list, err := s.List(ctx, ListQuery{Collection: coll})
	if err != nil {
		return nil, err
	}
	var kindID string
	var mixins []string
	if coll.Class == model.ClassMixin {
		mixins = []string{coll.ID()}
	} else {
		kindID = coll.ID()
	}
	if _, err := s.cats.Action(kindID, mixins, term); err != nil {
		return nil, err
	}
	results := make(map[string]any, len(list))
	for _, e := range list {
		res, err := s.trigger(ctx, e, term, attrs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Location, err)
		}
		results[e.Location] = res
	}
	return results, nil
}

// DeleteCollection deletes every entity of a kind collection.
func (s *Service) DeleteCollection(ctx context.Context, coll *model.Category) (int, error) {
	list, err := s.List(ctx, ListQuery{Collection: coll})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range list {
		if err := s.Delete(ctx, e.Location, ""); err != nil {
			if model.StatusOf(err) == http.StatusNotFound {
				continue // removed already, e.g. a link deleted with its source
			}
			return n, err
		}
		n++
	}
	return n, nil
}
