// Package categories is the registry of kinds, mixins and actions: the model
// the query interface (/-/) manages. Categories are persisted one document per
// category (id "category:" + scheme + term) and cached in memory, so every
// entity request resolves its kind, mixins, attribute definitions, actions
// and provider without a store round trip.
//
// Registration, update and deletion follow pyOCNI's semantics with its bugs
// fixed: everything in a request is checked before anything is written;
// identifiers and locations are unique across stored and in-request
// categories; a kind that still has entities cannot be deleted; deleting a
// mixin detaches it from every entity.
package categories

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

// DocPrefix starts the document id of every stored category.
const DocPrefix = "category:"

// storedCategory is a category's document body.
type storedCategory struct {
	Type        string          `json:"type"` // always "category"
	Class       model.Class     `json:"class"`
	Description map[string]any  `json:"description"`
	Provider    *model.Provider `json:"provider,omitempty"`
}

// Registry is the cached, persisted set of categories. Safe for concurrent use.
type Registry struct {
	store         store.Store
	knownProvider func(name string) bool
	providerNames func() []string
	maxAttrs      int
	log           *slog.Logger

	// changeMu serialises the category requests (register, update,
	// delete) so that the checks of one see the outcome of the previous
	// one. Taken before writeMu.
	changeMu sync.Mutex
	// writeMu orders category changes and entity writes. Entity writes
	// hold it shared (WithRegistered), so a kind cannot be deleted between
	// the check that it has no entities and the deletion, nor a mixin
	// between its detachment from every entity and the deletion. Update
	// and Delete hold it throughout; Register only while it makes the
	// categories it has stored visible, all at once (see saveNew).
	writeMu sync.RWMutex

	mu         sync.RWMutex
	byID       map[string]*model.Category
	byLocation map[string]*model.Category
	revs       map[string]string
	// attrSets keeps the attribute sets built from the categories as they
	// are (every validation needs one); any change to a category drops them.
	attrSets map[string]*model.AttrSet
	gen      uint64 // bumped by every change to a category
	// builtin keeps the built-in categories, to serve one again when a
	// stored category that shadowed it is deleted by another server.
	builtin map[string]*model.Category
}

// Options configures a Registry.
type Options struct {
	// KnownProvider reports whether a provider name can be bound to a kind.
	KnownProvider func(name string) bool
	// ProviderNames lists the provider names that can be bound, for the
	// error that refuses an unknown one. Nil lists none.
	ProviderNames func() []string
	// MaxAttributes bounds an entity's attribute count and the length of
	// every array and member count of every object in its attribute values,
	// in every attribute set the registry builds (413 beyond). 0 means
	// model.DefaultMaxAttributes; negative means no bound.
	MaxAttributes int
	// Builtin categories (OCCI core, …) are served but neither stored nor
	// changeable by clients. Nil means Core().
	Builtin []*model.Category
	Logger  *slog.Logger
}

// New loads every stored category.
func New(ctx context.Context, st store.Store, opts Options) (*Registry, error) {
	r := &Registry{
		store:         st,
		knownProvider: opts.KnownProvider,
		providerNames: opts.ProviderNames,
		maxAttrs:      opts.MaxAttributes,
		log:           opts.Logger,
		byID:          map[string]*model.Category{},
		byLocation:    map[string]*model.Category{},
		revs:          map[string]string{},
		builtin:       map[string]*model.Category{},
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.knownProvider == nil {
		r.knownProvider = func(string) bool { return false }
	}
	if r.providerNames == nil {
		r.providerNames = func() []string { return nil }
	}
	switch {
	case r.maxAttrs == 0:
		r.maxAttrs = model.DefaultMaxAttributes
	case r.maxAttrs < 0:
		r.maxAttrs = 0
	}
	builtin := opts.Builtin
	if builtin == nil {
		builtin = Core()
	}
	for _, c := range builtin {
		r.index(c, "")
		r.builtin[c.ID()] = c
	}
	if err := st.EnsureIndex(ctx, "type-class", []string{"type", "class"}); err != nil {
		return nil, fmt.Errorf("category index: %w", err)
	}
	docs, err := st.Find(ctx, store.Query{Selector: json.RawMessage(`{"type":"category"}`)})
	if err != nil {
		return nil, fmt.Errorf("load categories: %w", err)
	}
	for _, d := range docs {
		c, err := decode(d)
		if err != nil {
			// A document we cannot read must not stop the server; say which.
			r.log.Error("skipping unreadable category document", "id", d.ID, "err", err)
			continue
		}
		if b, ok := r.Get(c.ID()); ok && b.Builtin {
			// Registered before the category became built in (e.g. an
			// infrastructure kind of its own): the stored one keeps serving
			// its entities.
			r.log.Warn("a stored category shadows the built-in one", "id", c.ID())
		} else if b, ok := r.ByLocation(c.Location); ok && b.Builtin && c.Location != "" {
			r.log.Warn("a stored category takes a built-in category's location", "id", c.ID(), "location", c.Location, "builtin", b.ID())
		}
		other, clash := r.ByLocation(c.Location)
		r.index(c, d.Rev)
		if clash && other.ID() != c.ID() && !other.Builtin {
			r.settleLocation(c.Location)
		}
	}
	return r, nil
}

// settleLocation decides which category serves a location that several
// stored categories claim — possible only when servers sharing one
// database registered them at nearly the same time, each checking against
// its own view — the same way on every server: the stored one with the
// smallest id. Whichever a server saw last would make servers disagree.
func (r *Registry) settleLocation(loc string) {
	if loc == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *model.Category
	for _, c := range r.byID {
		if c.Location != loc {
			continue
		}
		if best == nil || (best.Builtin && !c.Builtin) || (best.Builtin == c.Builtin && c.ID() < best.ID()) {
			best = c
		}
	}
	if cur := r.byLocation[loc]; best != nil && cur != best {
		if cur != nil {
			r.log.Warn("several categories claim one location; the one with the smallest id serves it", "location", loc, "serving", best.ID(), "other", cur.ID())
		}
		r.byLocation[loc] = best
		r.changed()
	} else if best == nil && cur != nil {
		delete(r.byLocation, loc)
	}
}

func decode(d store.Document) (*model.Category, error) {
	var sc storedCategory
	if err := json.Unmarshal(d.Body, &sc); err != nil {
		return nil, err
	}
	c, err := model.ParseCategory(sc.Class, sc.Description)
	if err != nil {
		return nil, err
	}
	if sc.Provider != nil {
		c.Provider = *sc.Provider
	}
	return c, nil
}

func (r *Registry) index(c *model.Category, rev string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changed()
	if old := r.byID[c.ID()]; old != nil && old.Location != "" {
		delete(r.byLocation, old.Location)
	}
	r.byID[c.ID()] = c
	if c.Location != "" {
		r.byLocation[c.Location] = c
	}
	r.revs[c.ID()] = rev
}

func (r *Registry) unindex(c *model.Category) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changed()
	delete(r.byID, c.ID())
	delete(r.revs, c.ID())
	if c.Location != "" && r.byLocation[c.Location] == c {
		delete(r.byLocation, c.Location)
	}
}

// ApplyChanges brings the cache up to date with changes of the store's
// changes feed (see store/feed): a category stored, changed or deleted by
// another server sharing the database — a registration, an update, a
// provider binding, a deletion — is in force here once its change is
// applied. Changes this registry made itself are recognised by their
// revision and cost nothing. It runs while no model change of this server
// is in progress, so the revision it reads is never older than one this
// server wrote. An error (the store unreachable) leaves the rest of the
// batch for the caller to hand again.
func (r *Registry) ApplyChanges(ctx context.Context, changes []store.Change) error {
	latest := map[string]store.Change{}
	var order []string
	for _, c := range changes {
		if !strings.HasPrefix(c.ID, DocPrefix) {
			continue
		}
		if _, dup := latest[c.ID]; !dup {
			order = append(order, c.ID)
		}
		latest[c.ID] = c
	}
	if len(order) == 0 {
		return nil
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	for _, docID := range order {
		c := latest[docID]
		id := strings.TrimPrefix(docID, DocPrefix)
		r.mu.RLock()
		cached, known := r.byID[id]
		rev := r.revs[id]
		r.mu.RUnlock()
		if known && !cached.Builtin && !c.Deleted && c.Rev != "" && c.Rev == rev {
			continue // this server's own write, or one applied already
		}
		if c.Deleted && (!known || cached.Builtin) {
			continue
		}
		d, err := r.store.Get(ctx, docID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if known && !cached.Builtin {
				r.unindex(cached)
				if b := r.builtin[id]; b != nil {
					r.index(b, "")
				}
				r.settleLocation(cached.Location)
				r.log.Debug("category deleted by another server", "id", id)
			}
			continue
		case err != nil:
			return fmt.Errorf("read changed category %s: %w", id, err)
		}
		if known && !cached.Builtin && d.Rev == rev {
			continue
		}
		cat, err := decode(d)
		if err != nil {
			r.log.Error("skipping unreadable category document", "id", d.ID, "err", err)
			continue
		}
		if cat.ID() != id {
			r.log.Error("skipping category document stored under another id", "id", d.ID, "category", cat.ID())
			continue
		}
		r.index(cat, d.Rev)
		r.settleLocation(cat.Location)
		r.log.Debug("category changed by another server", "id", id, "rev", d.Rev)
	}
	return nil
}

// Get returns the category with that id (scheme+term).
func (r *Registry) Get(id string) (*model.Category, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.byID[id]
	return c, ok
}

// ByLocation returns the kind or mixin whose collection is at that path.
func (r *Registry) ByLocation(path string) (*model.Category, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.byLocation[path]
	return c, ok
}

// All returns every category of a class ("" = all), ordered by id.
func (r *Registry) All(class model.Class) []*model.Category {
	r.mu.RLock()
	out := make([]*model.Category, 0, len(r.byID))
	for _, c := range r.byID {
		if class == "" || c.Class == class {
			out = append(out, c)
		}
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

// MixinsDefining returns the ids of the mixins that define the attribute
// with that flat dotted name, ordered by id.
func (r *Registry) MixinsDefining(attr string) []string {
	var ids []string
	for _, m := range r.All(model.ClassMixin) {
		for i := range m.Attributes {
			if m.Attributes[i].Name() == attr {
				ids = append(ids, m.ID())
				break
			}
		}
	}
	return ids
}

// Filter returns the categories of a class whose description matches any of
// the filter objects (model.Match), each once, ordered by id.
func (r *Registry) Filter(class model.Class, filters []map[string]any) []*model.Category {
	var out []*model.Category
	for _, c := range r.All(class) {
		for _, f := range filters {
			if model.Match(c.Description, f) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// KindChain returns the kind and its ancestors (by parent, or for pyOCNI kinds
// without one, the first related kind), nearest first, without cycles.
func (r *Registry) KindChain(kindID string) []*model.Category {
	var chain []*model.Category
	seen := map[string]bool{}
	for id := kindID; id != "" && !seen[id]; {
		seen[id] = true
		c, ok := r.Get(id)
		if !ok || c.Class != model.ClassKind {
			break
		}
		chain = append(chain, c)
		next := c.Parent
		if next == "" {
			for _, rel := range c.Related {
				if rc, ok := r.Get(rel); ok && rc.Class == model.ClassKind {
					next = rel
					break
				}
			}
		}
		id = next
	}
	return chain
}

// IsLinkKind reports whether the kind derives from OCCI core's link kind.
func (r *Registry) IsLinkKind(kindID string) bool { return r.IsKindOf(kindID, LinkKind) }

// IsKindOf reports whether the kind is ancestorID or derives from it
// (false when the kind is not registered).
func (r *Registry) IsKindOf(kindID, ancestorID string) bool {
	for _, c := range r.KindChain(kindID) {
		if c.ID() == ancestorID {
			return true
		}
	}
	return false
}

// AttrSet collects the attribute definitions that apply to an entity of the
// kind with those mixins (and the mixins' dependencies). Unknown mixins are
// an error naming them. Sets are kept until a category changes and shared
// between callers, who must not change them.
func (r *Registry) AttrSet(kindID string, mixins []string) (*model.AttrSet, error) {
	key := kindID + "\x00" + strings.Join(mixins, "\x00")
	r.mu.RLock()
	set, gen := r.attrSets[key], r.gen
	r.mu.RUnlock()
	if set != nil {
		return set, nil
	}
	set, err := r.buildAttrSet(kindID, mixins)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	// Built from categories changed meanwhile: good for this call only.
	if r.gen == gen {
		if r.attrSets == nil || len(r.attrSets) >= maxAttrSets {
			// Bounded: clients choose the mixin combinations.
			r.attrSets = map[string]*model.AttrSet{}
		}
		r.attrSets[key] = set
	}
	r.mu.Unlock()
	return set, nil
}

// maxAttrSets bounds the attribute sets kept.
const maxAttrSets = 1024

// changed drops what was derived from the categories. r.mu must be held.
func (r *Registry) changed() {
	r.gen++
	r.attrSets = nil
}

func (r *Registry) buildAttrSet(kindID string, mixins []string) (*model.AttrSet, error) {
	var groups [][]model.AttrDef
	chain := r.KindChain(kindID)
	for i := len(chain) - 1; i >= 0; i-- {
		// OCCI core's attributes are the entity's own members (id, title,
		// summary, source, target), not part of its attribute tree.
		if chain[i].Builtin && chain[i].Scheme == CoreScheme {
			continue
		}
		groups = append(groups, chain[i].Attributes)
	}
	ms, err := r.mixinClosure(mixins)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		groups = append(groups, m.Attributes)
	}
	set := model.NewAttrSet(groups...)
	set.SetMaxValues(r.maxAttrs)
	return set, nil
}

// mixinClosure resolves mixin ids and what they depend on.
func (r *Registry) mixinClosure(ids []string) ([]*model.Category, error) {
	var out []*model.Category
	seen := map[string]bool{}
	var visit func(id string) error
	visit = func(id string) error {
		if seen[id] {
			return nil
		}
		seen[id] = true
		c, ok := r.Get(id)
		if !ok || c.Class != model.ClassMixin {
			return model.BadRequest("mixin %s is not registered", id)
		}
		for _, dep := range c.Depends {
			if err := visit(dep); err != nil {
				return err
			}
		}
		out = append(out, c)
		return nil
	}
	for _, id := range ids {
		if err := visit(id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Action finds the action with that term (or full id) among the actions the
// kind (with its ancestors) and the mixins declare. A term shared by several
// declared actions is resolved in declaration order: kind first.
func (r *Registry) Action(kindID string, mixins []string, term string) (*model.Category, error) {
	var declared []string
	for _, k := range r.KindChain(kindID) {
		declared = append(declared, k.Actions...)
	}
	ms, err := r.mixinClosure(mixins)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		declared = append(declared, m.Actions...)
	}
	var terms []string
	for _, id := range declared {
		c, ok := r.Get(id)
		if !ok || c.Class != model.ClassAction {
			continue
		}
		if c.Term == term || c.ID() == term {
			return c, nil
		}
		if !slices.Contains(terms, c.Term) {
			terms = append(terms, c.Term)
		}
	}
	if len(terms) == 0 {
		return nil, model.BadRequest("action %q is not declared by kind %s or its mixins, which declare no actions", term, kindID)
	}
	return nil, model.BadRequest("action %q is not declared by kind %s or its mixins; declared: %s", term, kindID, strings.Join(terms, ", "))
}

// ProviderName returns the provider bound to a kind (Local[0], searching up
// the kind's ancestry), or "" when none is bound.
func (r *Registry) ProviderName(kindID string) string {
	for _, k := range r.KindChain(kindID) {
		if len(k.Provider.Local) > 0 {
			return k.Provider.Local[0]
		}
	}
	return ""
}

// WithRegistered runs fn, which stores an entity of the kind with those
// mixins, while no category change is in progress, after checking that they
// are all still registered. Without it an entity stored while its kind or
// one of its mixins is being deleted would name a category that no longer
// exists. fn must not change categories.
func (r *Registry) WithRegistered(kindID string, mixins []string, fn func() error) error {
	r.writeMu.RLock()
	defer r.writeMu.RUnlock()
	if k, ok := r.Get(kindID); !ok || k.Class != model.ClassKind {
		return model.Conflict("kind %s was deleted by another request", kindID)
	}
	for _, id := range mixins {
		if m, ok := r.Get(id); !ok || m.Class != model.ClassMixin {
			return model.Conflict("mixin %s was deleted by another request", id)
		}
	}
	return fn()
}

// Document is the query interface's category document:
// {"kinds":[…],"mixins":[…],"actions":[…],"providers":[…]}.
type Document struct {
	Kinds     []map[string]any  `json:"kinds,omitempty"`
	Mixins    []map[string]any  `json:"mixins,omitempty"`
	Actions   []map[string]any  `json:"actions,omitempty"`
	Providers []ProviderBinding `json:"providers,omitempty"`
}

// ProviderBinding binds a kind to providers (pyOCNI's shape).
type ProviderBinding struct {
	OCCIID   string         `json:"OCCI_ID"`
	Provider map[string]any `json:"Provider"`
}

func (d *Document) each(fn func(model.Class, map[string]any) error) error {
	for _, group := range []struct {
		class model.Class
		items []map[string]any
	}{{model.ClassAction, d.Actions}, {model.ClassKind, d.Kinds}, {model.ClassMixin, d.Mixins}} {
		for _, it := range group.items {
			if it == nil {
				return model.BadRequest("%s: each element must be an object", group.class.Plural())
			}
			if err := fn(group.class, it); err != nil {
				return err
			}
		}
	}
	return nil
}

// Register adds the document's categories, all or nothing. A category
// identical to the one registered under its id is left as it is (so a
// client's setup can run twice); a different one under a taken id is 409.
func (r *Registry) Register(ctx context.Context, doc *Document) error {
	if len(doc.Providers) > 0 {
		return model.BadRequest("providers are bound with PUT, not POST")
	}
	if len(doc.Kinds)+len(doc.Mixins)+len(doc.Actions) == 0 {
		return model.BadRequest("nothing to register: the category document needs kinds, mixins or actions")
	}
	if err := checkCount(doc); err != nil {
		return err
	}
	r.changeMu.Lock()
	defer r.changeMu.Unlock()

	var added []*model.Category
	newIDs := map[string]*model.Category{}
	newLocs := map[string]*model.Category{}
	seen := map[string]bool{}
	err := doc.each(func(class model.Class, desc map[string]any) error {
		c, err := r.parseNew(class, desc)
		if err != nil {
			return err
		}
		if seen[c.ID()] {
			return model.BadRequest("category %s appears twice in the request", c.ID())
		}
		seen[c.ID()] = true
		if existing, exists := r.Get(c.ID()); exists {
			if sameDefinition(existing, c) {
				return nil // registered already, exactly so
			}
			return model.Conflict("%s %s is already registered (as a %s) with a different definition", class, c.ID(), existing.Class)
		}
		if c.Location != "" {
			if other, taken := r.ByLocation(c.Location); taken {
				return model.Conflict("%s %s: location %s is already used by %s", class, c.ID(), c.Location, other.ID())
			}
			if other, dup := newLocs[c.Location]; dup {
				return model.BadRequest("location %s is given to both %s and %s", c.Location, other.ID(), c.ID())
			}
			newLocs[c.Location] = c
		}
		newIDs[c.ID()] = c
		added = append(added, c)
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range added {
		if err := r.checkReferences(c, newIDs); err != nil {
			return err
		}
	}
	if err := r.checkCycles(added, newIDs); err != nil {
		return err
	}
	return r.saveNew(ctx, added)
}

// saveNew stores new categories, then makes them all visible at once. The
// store writes (up to model.MaxCategoriesPerRequest of them, seconds on a
// slow store) run without writeMu, so entity writes go on meanwhile: no
// entity can use a category that is not yet visible, and the ones they
// use do not change. On a failure the documents written are deleted, and
// nothing was ever visible.
func (r *Registry) saveNew(ctx context.Context, cats []*model.Category) error {
	revs := make([]string, 0, len(cats))
	for _, c := range cats {
		rev, err := r.putDoc(ctx, c)
		if err != nil {
			for i := len(revs) - 1; i >= 0; i-- {
				if _, derr := r.store.Delete(ctx, DocPrefix+cats[i].ID(), revs[i]); derr != nil {
					r.log.Error("could not roll back category", "id", cats[i].ID(), "err", derr)
				}
			}
			return fmt.Errorf("save category %s: %w", c.ID(), err)
		}
		revs = append(revs, rev)
	}
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	for i, c := range cats {
		r.index(c, revs[i])
	}
	return nil
}

// checkCount bounds the categories one request names.
func checkCount(doc *Document) error {
	if n := len(doc.Kinds) + len(doc.Mixins) + len(doc.Actions) + len(doc.Providers); n > model.MaxCategoriesPerRequest {
		return model.TooLarge("the category document names %d categories; the limit is %d per request", n, model.MaxCategoriesPerRequest)
	}
	return nil
}

// parseNew reads a category being registered or updated and applies the
// checks that stored categories are spared (so they keep loading): bounds,
// attribute names, defaults. A kind's or mixin's location is normalised to
// the path the server uses (a full URL's path, ending in "/"), in its
// description too. Every error names the category.
func (r *Registry) parseNew(class model.Class, desc map[string]any) (*model.Category, error) {
	c, err := model.ParseCategory(class, desc)
	if err != nil {
		return nil, inCategory(class, desc, err)
	}
	if err := model.CheckBounds(c); err != nil {
		return nil, err
	}
	if c.Location != "" {
		desc["location"] = c.Location
	}
	if err := checkAttrNames(c); err != nil {
		return nil, err
	}
	if err := checkDefaults(c); err != nil {
		return nil, err
	}
	return c, nil
}

// inCategory makes an error about a category description name the category.
func inCategory(class model.Class, desc map[string]any, err error) error {
	var me *model.Error
	if !errors.As(err, &me) {
		return err
	}
	term, _ := desc["term"].(string)
	scheme, _ := desc["scheme"].(string)
	id := scheme + term
	if len(id) > 128 {
		id = id[:128] + "…"
	}
	if id == "" || strings.Contains(me.Message, id) {
		return err
	}
	out := *me
	out.Message = fmt.Sprintf("%s %s: %s", class, id, me.Message)
	return &out
}

// sameDefinition reports whether a category being registered is the one
// already registered: same class, same description (as JSON).
func sameDefinition(old, c *model.Category) bool {
	if old.Class != c.Class {
		return false
	}
	a, err1 := json.Marshal(old.Description)
	b, err2 := json.Marshal(c.Description)
	return err1 == nil && err2 == nil && string(a) == string(b)
}

// checkDefaults refuses a declared default that fails its own definition's
// type or pattern: it would never be applied. Two placeholders pyOCNI's
// files use are kept (and, failing, not applied): "" for "no default", and
// the words true/false where they fail the pattern (pyCMBS's cmbs_layer
// declares the default "true" with the pattern l1|l2|l31|l32|l4).
func checkDefaults(c *model.Category) error {
	for i := range c.Attributes {
		d := &c.Attributes[i]
		if d.Default == nil || d.Default == "" {
			continue
		}
		if err := d.Check(d.Default); err != nil {
			if s, isStr := d.Default.(string); isStr && (strings.EqualFold(s, "true") || strings.EqualFold(s, "false")) &&
				(d.Type == model.TypeString || d.Type == model.TypeAny) {
				continue
			}
			return model.AttributeError(d.Name(), "%s %s: the default of attribute %s fails its own definition: %s", c.Class, c.ID(), d.Name(), err.Error())
		}
	}
	return nil
}

// checkCycles refuses categories that close a cycle: a kind that is its own
// ancestor (parent) or a mixin that depends on itself, directly or not.
// pending holds the categories of the request, which take precedence. The
// stored model has no cycle, so one depth-first walk from the request's
// categories finds any: linear in what they reach.
func (r *Registry) checkCycles(cats []*model.Category, pending map[string]*model.Category) error {
	lookup := func(id string) (*model.Category, bool) {
		if p, ok := pending[id]; ok {
			return p, true
		}
		return r.Get(id)
	}
	for _, rel := range []struct {
		class model.Class
		name  string
		edges func(*model.Category) []string
	}{
		{model.ClassKind, "parent", func(x *model.Category) []string {
			if x.Parent == "" {
				return nil
			}
			return []string{x.Parent}
		}},
		{model.ClassMixin, "depends", func(x *model.Category) []string { return x.Depends }},
	} {
		const onPath, done = 1, 2
		state := map[string]int{}
		var path []string
		var walk func(id string) []string
		walk = func(id string) []string {
			state[id] = onPath
			path = append(path, id)
			if x, ok := lookup(id); ok && x.Class == rel.class {
				for _, next := range rel.edges(x) {
					switch state[next] {
					case onPath:
						i := slices.Index(path, next)
						return append(append([]string{}, path[i:]...), next)
					case 0:
						if cycle := walk(next); cycle != nil {
							return cycle
						}
					}
				}
			}
			path = path[:len(path)-1]
			state[id] = done
			return nil
		}
		for _, c := range cats {
			if c.Class != rel.class || state[c.ID()] != 0 {
				continue
			}
			if cycle := walk(c.ID()); cycle != nil {
				return model.BadRequest("%s %s: its %s closes a cycle: %s", rel.class, cycle[0], rel.name, strings.Join(cycle, " → "))
			}
		}
	}
	return nil
}

// checkAttrNames refuses attribute names that an entity filter could not
// address: filters become Mango selectors, whose field paths have no empty
// segments and from which CouchDB drops every backslash. It also refuses
// names that the text renderings could not carry: "X-OCCI-Attribute:
// name=value" ends a name at "=", separates attributes with ",", and a
// header holds no control characters; quotes and white space would make
// the line ambiguous. Only categories being registered or updated are
// checked, so stored ones keep loading.
func checkAttrNames(c *model.Category) error {
	for _, d := range c.Attributes {
		name := d.Name()
		for _, seg := range d.Path {
			if seg == "" {
				return model.AttributeError(name, "%s %s: attribute %q has an empty name segment", c.Class, c.ID(), name)
			}
			if strings.Contains(seg, `\`) {
				return model.AttributeError(name, "%s %s: attribute %q has a backslash in its name, which entity filters cannot address", c.Class, c.ID(), name)
			}
			if i := strings.IndexFunc(seg, notInTextName); i >= 0 {
				ch, _ := utf8.DecodeRuneInString(seg[i:])
				return model.AttributeError(name, "%s %s: attribute %q has %q in its name, which the text renderings (X-OCCI-Attribute: name=value) cannot carry; names have no control characters, white space, '\"', ',' or '='", c.Class, c.ID(), name, ch)
			}
		}
	}
	return nil
}

// notInTextName tells the characters an attribute name cannot hold.
func notInTextName(r rune) bool {
	return unicode.IsControl(r) || unicode.IsSpace(r) || r == '"' || r == ',' || r == '='
}

// checkReferences makes sure the actions, parent and mixin dependencies a
// category names exist (stored or in the same request) and are of the right class.
func (r *Registry) checkReferences(c *model.Category, pending map[string]*model.Category) error {
	lookup := func(id string) (*model.Category, bool) {
		if p, ok := pending[id]; ok {
			return p, true
		}
		return r.Get(id)
	}
	for _, a := range c.Actions {
		if ac, ok := lookup(a); !ok || ac.Class != model.ClassAction {
			return model.BadRequest("%s %s lists action %s, which is not a registered action", c.Class, c.ID(), a)
		}
	}
	if c.Parent != "" {
		if p, ok := lookup(c.Parent); !ok || p.Class != model.ClassKind {
			return model.BadRequest("kind %s has parent %s, which is not a registered kind", c.ID(), c.Parent)
		}
	}
	for _, dep := range c.Depends {
		if d, ok := lookup(dep); !ok || d.Class != model.ClassMixin {
			return model.BadRequest("mixin %s depends on %s, which is not a registered mixin", c.ID(), dep)
		}
	}
	for _, ap := range c.Applies {
		if a, ok := lookup(ap); !ok || a.Class != model.ClassKind {
			return model.BadRequest("mixin %s applies to %s, which is not a registered kind", c.ID(), ap)
		}
	}
	return nil
}

// saveAll writes the categories; on a failure it restores what it changed so
// the model is never half-registered. previous holds, for updates, the
// category each one replaces.
func (r *Registry) saveAll(ctx context.Context, cats []*model.Category, previous map[string]*model.Category) error {
	type done struct {
		c   *model.Category
		rev string
	}
	var written []done
	for _, c := range cats {
		rev, err := r.put(ctx, c)
		if err != nil {
			for i := len(written) - 1; i >= 0; i-- {
				w := written[i]
				if prev := previous[w.c.ID()]; prev != nil {
					r.mu.Lock()
					r.revs[prev.ID()] = w.rev
					r.mu.Unlock()
					if _, rerr := r.put(ctx, prev); rerr != nil {
						r.log.Error("could not restore category after a failed update", "id", prev.ID(), "err", rerr)
					}
					continue
				}
				if _, derr := r.store.Delete(ctx, DocPrefix+w.c.ID(), w.rev); derr != nil {
					r.log.Error("could not roll back category", "id", w.c.ID(), "err", derr)
				}
				r.unindex(w.c)
			}
			return fmt.Errorf("save category %s: %w", c.ID(), err)
		}
		written = append(written, done{c, rev})
	}
	return nil
}

// put writes one category with the revision the registry holds for it and
// indexes it on success.
func (r *Registry) put(ctx context.Context, c *model.Category) (string, error) {
	newRev, err := r.putDoc(ctx, c)
	if err != nil {
		return "", err
	}
	r.index(c, newRev)
	return newRev, nil
}

// putDoc writes one category's document with the revision the registry
// holds for it.
func (r *Registry) putDoc(ctx context.Context, c *model.Category) (string, error) {
	sc := storedCategory{Type: "category", Class: c.Class, Description: c.Description}
	if c.Class == model.ClassKind {
		p := c.Provider
		if p.Local == nil {
			p.Local = []string{}
		}
		if p.Remote == nil {
			p.Remote = []string{}
		}
		sc.Provider = &p
	}
	body, err := json.Marshal(sc)
	if err != nil {
		return "", err
	}
	r.mu.RLock()
	rev := r.revs[c.ID()]
	r.mu.RUnlock()
	return r.store.Put(ctx, store.Document{ID: DocPrefix + c.ID(), Rev: rev, Body: body})
}

// immutableKeys cannot change on update.
var immutableKeys = map[string]bool{"term": true, "scheme": true, "location": true}

// Update changes existing categories (pyOCNI's PUT /-/): each item names a
// category by scheme and term; term, scheme and location cannot change; other
// members it gives must already exist and are replaced whole. Provider
// bindings are replaced too. All or nothing.
func (r *Registry) Update(ctx context.Context, doc *Document) error {
	if len(doc.Kinds)+len(doc.Mixins)+len(doc.Actions)+len(doc.Providers) == 0 {
		return model.BadRequest("nothing to update: the category document needs kinds, mixins, actions or providers")
	}
	if err := checkCount(doc); err != nil {
		return err
	}
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	r.writeMu.Lock()
	defer r.writeMu.Unlock()

	var changed []*model.Category
	previous := map[string]*model.Category{}
	pending := map[string]*model.Category{}
	stage := func(c *model.Category, prev *model.Category) {
		if _, again := pending[c.ID()]; !again {
			changed = append(changed, c)
			previous[c.ID()] = prev
		} else {
			for i := range changed {
				if changed[i].ID() == c.ID() {
					changed[i] = c
				}
			}
		}
		pending[c.ID()] = c
	}
	current := func(id string) (*model.Category, bool) {
		if c, ok := pending[id]; ok {
			return c, true
		}
		return r.Get(id)
	}

	err := doc.each(func(class model.Class, desc map[string]any) error {
		term, _ := desc["term"].(string)
		scheme, _ := desc["scheme"].(string)
		if term == "" || scheme == "" {
			return model.BadRequest("%s to update must give term and scheme", class)
		}
		old, ok := current(scheme + term)
		if !ok || old.Class != class {
			return model.BadRequest("%s %s%s is not registered", class, scheme, term)
		}
		if old.Builtin {
			return model.Errorf(http.StatusForbidden, "%s %s is built in and cannot be changed", class, old.ID())
		}
		merged := make(map[string]any, len(old.Description))
		for k, v := range old.Description {
			merged[k] = v
		}
		for k, v := range desc {
			ov, had := old.Description[k]
			if immutableKeys[k] {
				same := had && model.Match(map[string]any{k: ov}, map[string]any{k: v})
				if k == "location" && had {
					// Compared as the server uses it: "/a" is "/a/".
					vs, _ := v.(string)
					p, err := model.CollectionPath(vs)
					same = err == nil && p == old.Location
				}
				if !same {
					return model.BadRequest("%s %s: %s cannot be changed", class, old.ID(), k)
				}
				continue
			}
			if !had {
				return model.BadRequest("%s %s has no member %q to update", class, old.ID(), k)
			}
			merged[k] = v
		}
		c, err := r.parseNew(class, merged)
		if err != nil {
			return err
		}
		if sameDefinition(old, c) {
			return nil // nothing changes: nothing to write
		}
		c.Provider = old.Provider
		if err := r.checkReferences(c, pending); err != nil {
			return err
		}
		stage(c, old)
		return nil
	})
	if err != nil {
		return err
	}
	for _, b := range doc.Providers {
		old, ok := current(b.OCCIID)
		if !ok {
			return model.BadRequest("providers: %s is not a registered kind", b.OCCIID)
		}
		if old.Class != model.ClassKind {
			return model.BadRequest("providers: %s is a %s; only kinds have providers", b.OCCIID, old.Class)
		}
		p, err := r.parseProvider(b)
		if err != nil {
			return err
		}
		if slices.Equal(p.Local, old.Provider.Local) && slices.Equal(p.Remote, old.Provider.Remote) {
			continue // bound so already: nothing to write
		}
		if old.Builtin {
			return model.Errorf(http.StatusForbidden, "providers: kind %s is built in and cannot be rebound", old.ID())
		}
		c := *old
		c.Provider = p
		stage(&c, previousOr(previous, old))
	}
	if err := r.checkCycles(changed, pending); err != nil {
		return err
	}
	return r.saveAll(ctx, changed, previous)
}

func previousOr(prev map[string]*model.Category, c *model.Category) *model.Category {
	if p, ok := prev[c.ID()]; ok {
		return p
	}
	return c
}

func (r *Registry) parseProvider(b ProviderBinding) (model.Provider, error) {
	var p model.Provider
	if b.Provider == nil {
		return p, model.BadRequest("providers: %s needs a Provider object", b.OCCIID)
	}
	for k, v := range b.Provider {
		list, ok := v.([]any)
		if !ok {
			return p, model.BadRequest("providers: %s: Provider.%s must be an array of names", b.OCCIID, k)
		}
		var names []string
		for _, e := range list {
			s, ok := e.(string)
			if !ok || s == "" {
				return p, model.BadRequest("providers: %s: Provider.%s must be an array of names", b.OCCIID, k)
			}
			names = append(names, s)
		}
		switch k {
		case "local":
			for _, n := range names {
				if !r.knownProvider(n) {
					names := r.providerNames()
					if len(names) == 0 {
						return p, model.BadRequest("providers: %s: no provider named %q is available; none is registered", b.OCCIID, n)
					}
					return p, model.BadRequest("providers: %s: no provider named %q is available; registered: %s", b.OCCIID, n, strings.Join(names, ", "))
				}
			}
			p.Local = names
		case "remote":
			for _, n := range names {
				if _, err := model.PathOf(n); err != nil || len(n) < 8 {
					return p, model.BadRequest("providers: %s: remote provider %q must be an http(s) URL", b.OCCIID, n)
				}
			}
			p.Remote = names
		default:
			return p, model.BadRequest("providers: %s: unknown Provider member %q (want local, remote)", b.OCCIID, k)
		}
	}
	return p, nil
}

// Delete removes the document's categories (each identified by scheme and
// term). A kind that still has entities is refused with 409; a mixin is first
// detached from every entity that has it. All checks run before any change.
func (r *Registry) Delete(ctx context.Context, doc *Document) error {
	if len(doc.Providers) > 0 {
		return model.BadRequest("providers cannot be deleted; bind others with PUT")
	}
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	r.writeMu.Lock()
	defer r.writeMu.Unlock()

	var targets []*model.Category
	seen := map[string]bool{}
	err := doc.each(func(class model.Class, desc map[string]any) error {
		term, _ := desc["term"].(string)
		scheme, _ := desc["scheme"].(string)
		c, ok := r.Get(scheme + term)
		if !ok || c.Class != class {
			return model.BadRequest("%s %s%s is not registered", class, scheme, term)
		}
		if c.Builtin {
			return model.Errorf(http.StatusForbidden, "%s %s is built in and cannot be deleted", class, c.ID())
		}
		if !seen[c.ID()] {
			seen[c.ID()] = true
			targets = append(targets, c)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return model.BadRequest("nothing to delete: give kinds, mixins or actions")
	}
	if err := checkCount(doc); err != nil {
		return err
	}
	if err := r.checkUndeclared(targets, seen); err != nil {
		return err
	}
	for _, c := range targets {
		if c.Class != model.ClassKind {
			continue
		}
		sel, _ := json.Marshal(map[string]any{"type": map[string]any{"$in": []string{model.TypeResource, model.TypeLink}}, "kind": c.ID()})
		found, err := r.store.Find(ctx, store.Query{Selector: sel, Limit: 1})
		if err != nil {
			return fmt.Errorf("check entities of %s: %w", c.ID(), err)
		}
		if len(found) > 0 {
			return model.Conflict("kind %s still has entities (e.g. %s); delete them first", c.ID(), found[0].ID)
		}
	}
	for _, c := range targets {
		if c.Class == model.ClassMixin {
			if err := r.detachMixin(ctx, c); err != nil {
				return err
			}
		}
		r.mu.RLock()
		rev := r.revs[c.ID()]
		r.mu.RUnlock()
		if _, err := r.store.Delete(ctx, DocPrefix+c.ID(), rev); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete category %s: %w", c.ID(), err)
		}
		r.unindex(c)
		r.settleLocation(c.Location)
	}
	return nil
}

// checkUndeclared refuses to delete a category that one not deleted in the
// same request still names: an action a kind or mixin declares (the kind
// would keep listing an action that no longer exists), a mixin another
// depends on (entities tagged with that one could no longer be validated),
// a kind another has as parent (its entities would lose the parent's
// attributes and actions).
func (r *Registry) checkUndeclared(targets []*model.Category, deleted map[string]bool) error {
	byTarget := map[string][]string{} // target id → the categories naming it
	for _, c := range r.All("") {     // once: a request may name 1,000 targets
		if deleted[c.ID()] {
			continue
		}
		name := func(id string) {
			if deleted[id] {
				byTarget[id] = append(byTarget[id], string(c.Class)+" "+c.ID())
			}
		}
		for _, a := range c.Actions {
			name(a)
		}
		switch c.Class {
		case model.ClassMixin:
			for _, d := range c.Depends {
				name(d)
			}
		case model.ClassKind:
			if c.Parent != "" {
				name(c.Parent)
			}
		}
	}
	for _, t := range targets {
		var by []string
		for _, b := range byTarget[t.ID()] {
			// Only the relation that fits the target's class counts (a kind
			// listing a mixin id as its parent names no mixin).
			if t.Class == model.ClassAction || strings.HasPrefix(b, string(t.Class)+" ") {
				by = append(by, b)
			}
		}
		if len(by) == 0 {
			continue
		}
		by = slices.Compact(by)
		switch t.Class {
		case model.ClassKind:
			return model.Conflict("kind %s is still the parent of %s; change their parent (PUT /-/) or delete them in the same request", t.ID(), strings.Join(by, ", "))
		case model.ClassMixin:
			return model.Conflict("mixin %s is still depended on by %s; remove it from their depends (PUT /-/) or delete them in the same request", t.ID(), strings.Join(by, ", "))
		default:
			return model.Conflict("action %s is still declared by %s; remove it from their actions (PUT /-/) or delete them in the same request", t.ID(), strings.Join(by, ", "))
		}
	}
	return nil
}

// detachMixin removes a mixin from every entity tagged with it, with the
// attribute values only that mixin defined (left behind, they would make
// every later update of the entity fail validation), retrying an entity
// whose revision changed under it.
func (r *Registry) detachMixin(ctx context.Context, mixin *model.Category) error {
	mixinID := mixin.ID()
	sel, _ := json.Marshal(map[string]any{"mixins": map[string]any{"$elemMatch": map[string]any{"$eq": mixinID}}})
	docs, err := r.store.Find(ctx, store.Query{Selector: sel})
	if err != nil {
		return fmt.Errorf("find entities with mixin %s: %w", mixinID, err)
	}
	for _, d := range docs {
		for attempt := 0; ; attempt++ {
			e, err := model.DecodeEntity(d.ID, d.Rev, d.Body)
			if err != nil {
				return fmt.Errorf("read %s: %w", d.ID, err)
			}
			kept := e.Mixins[:0]
			for _, m := range e.Mixins {
				if m != mixinID {
					kept = append(kept, m)
				}
			}
			e.Mixins = kept
			attrs, err := r.AttrSet(e.Kind, e.Mixins)
			if err != nil {
				attrs, _ = r.AttrSet(e.Kind, nil)
			}
			for _, d := range mixin.Attributes {
				if attrs.ByPath(d.Path) == nil {
					model.DeletePath(e.Attributes, d.Path)
				}
			}
			body, err := json.Marshal(e)
			if err != nil {
				return err
			}
			_, err = r.store.Put(ctx, store.Document{ID: d.ID, Rev: d.Rev, Body: body})
			if err == nil || errors.Is(err, store.ErrNotFound) {
				break
			}
			if !errors.Is(err, store.ErrConflict) || attempt >= 5 {
				return fmt.Errorf("detach mixin %s from %s: %w", mixinID, d.ID, err)
			}
			if d, err = r.store.Get(ctx, d.ID); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					break
				}
				return err
			}
		}
	}
	return nil
}

// templateMixins are the mixins of which an entity may have at most one
// descendant (OCCI 1.2 Infrastructure: a compute has at most one OS
// template and one resource template).
var templateMixins = []string{OSTemplateMixin, ResourceTemplateMixin}

// CheckMixins checks that the mixins may tag an entity of the kind: a mixin
// that names kinds in applies must apply to the kind or one of its
// ancestors, and at most one of them may be an os_tpl or a resource_tpl
// template (the template itself or a mixin depending on it). Mixins listed in
// already (the entity's before a change) are not checked against applies, so
// an entity tagged before a mixin's applies changed can still be updated.
// Unknown mixins are left to AttrSet to report.
func (r *Registry) CheckMixins(kindID string, mixins, already []string) error {
	var chain []string
	for _, k := range r.KindChain(kindID) {
		chain = append(chain, k.ID())
	}
	for _, id := range mixins {
		if slices.Contains(already, id) {
			continue
		}
		m, ok := r.Get(id)
		if !ok || m.Class != model.ClassMixin || len(m.Applies) == 0 {
			continue
		}
		applies := false
		for _, k := range chain {
			if slices.Contains(m.Applies, k) {
				applies = true
				break
			}
		}
		if !applies {
			return model.BadRequest("mixin %s applies to %s; it cannot tag an entity of kind %s", id, strings.Join(m.Applies, ", "), kindID)
		}
	}
	for _, tpl := range templateMixins {
		var found []string
		for _, id := range mixins {
			if r.isTemplate(id, tpl) {
				found = append(found, id)
			}
		}
		if len(found) > 1 {
			_, term, _ := strings.Cut(tpl, "#")
			return model.BadRequest("mixins %s are each a %s template; an entity has at most one %s: untag the other first", strings.Join(found, " and "), term, term)
		}
	}
	return nil
}

// isTemplate reports whether the mixin is tpl or depends on it.
func (r *Registry) isTemplate(mixinID, tpl string) bool {
	if mixinID == tpl {
		return true
	}
	ms, err := r.mixinClosure([]string{mixinID})
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.ID() == tpl {
			return true
		}
	}
	return false
}

// HasLocationUnder reports whether a kind or mixin has its location at or
// below the path prefix (which ends in "/").
func (r *Registry) HasLocationUnder(prefix string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for loc := range r.byLocation {
		if strings.HasPrefix(loc, prefix) {
			return true
		}
	}
	return false
}

// MaxAttributes is the bound on entity attribute values the attribute sets
// enforce (Options.MaxAttributes); 0 means none. The entity service bounds
// an entity's mixins, actions and links lists with it too.
func (r *Registry) MaxAttributes() int { return r.maxAttrs }
