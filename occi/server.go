// Package occi is the HTTP edge of the OCCI server: routing, content
// negotiation, the renderings (pyOCNI JSON, OCCI 1.2 JSON, text/plain,
// text/occi, text/uri-list), and the mapping of errors to HTTP statuses. It
// wires the category registry, the entity service and the providers.
package occi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/infra"
	"github.com/cmbs/cmbs/store"
)

// Version is the server version: the one source for the Server header,
// cmbsd --version and cmbsd's /-/status.
const Version = "0.1.0"

// ServerHeader is sent with every response.
const ServerHeader = "cmbs/" + Version + " OCCI/1.2"

const defaultMaxBody = 4 << 20

// Options configures a Server.
type Options struct {
	// Store persists categories and entities. Required.
	Store store.Store
	// Providers names the provider plug-ins kinds can be bound to. Required.
	Providers *providers.Registry
	// PublicURL is the base for absolute locations (e.g. "https://occi.example.org");
	// empty means: from each request's scheme and Host header.
	PublicURL string
	// MaxBodyBytes limits request bodies (413 beyond); 0 means 4 MiB.
	MaxBodyBytes int64
	// BodyIdleTimeout is how long a request body may pause before the
	// request is answered 408; 0 means 10 s.
	BodyIdleTimeout time.Duration
	// BodyTimeout bounds reading a whole request body (408 beyond); 0
	// means 1 minute.
	BodyTimeout time.Duration
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// MaxAttributes bounds an entity's attribute count and the length of
	// every array and member count of every object in its attribute values
	// (413 beyond); 0 means model.DefaultMaxAttributes (10,000).
	MaxAttributes int
	// ListBatch is how many entities a collection listing reads from the
	// store at a time (and about how many it holds in memory); 0 means
	// entities.ListBatch (1,000).
	ListBatch int
}

// Server serves the OCCI interface.
type Server struct {
	opts     Options
	log      *slog.Logger
	cats     *categories.Registry
	entities *entities.Service
	handler  http.Handler
}

// NewServer loads the category registry from the store (the built-in OCCI
// core kinds are always present), ensures the store's indexes, and returns a
// server ready to serve.
func NewServer(ctx context.Context, opts Options) (*Server, error) {
	if opts.Store == nil || opts.Providers == nil {
		return nil, errors.New("occi: Store and Providers are required")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = defaultMaxBody
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = defaultBodyTimeout
	}
	if opts.BodyIdleTimeout <= 0 || opts.BodyIdleTimeout > opts.BodyTimeout {
		opts.BodyIdleTimeout = min(defaultBodyIdleTimeout, opts.BodyTimeout)
	}
	opts.PublicURL = strings.TrimSuffix(opts.PublicURL, "/")
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	provs := opts.Providers
	// The infrastructure kinds are built in and bound to the built-in
	// provider; a deployment may register its own under the same name first.
	if _, err := provs.Get(categories.InfrastructureProvider); err != nil {
		if err := provs.Register(categories.InfrastructureProvider, infra.Provider{}); err != nil {
			return nil, err
		}
	}
	cats, err := categories.New(ctx, opts.Store, categories.Options{
		KnownProvider: func(name string) bool { _, err := provs.Get(name); return err == nil },
		ProviderNames: provs.Names,
		MaxAttributes: opts.MaxAttributes,
		Builtin:       categories.Builtin(),
		Logger:        log,
	})
	if err != nil {
		return nil, err
	}
	ents, err := entities.New(ctx, opts.Store, cats, provs, log)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, log: log, cats: cats, entities: ents}
	s.handler = s.routes()
	return s, nil
}

// Entities returns the entity service, for in-process callers such as the
// CMBS providers.
func (s *Server) Entities() *entities.Service { return s.entities }

// Categories returns the category registry.
func (s *Server) Categories() *categories.Registry { return s.cats }

// Handler returns the HTTP handler for the whole OCCI interface.
func (s *Server) Handler() http.Handler { return s.handler }

var allowedMethods = "GET, HEAD, POST, PUT, DELETE, OPTIONS"

func (s *Server) routes() http.Handler {
	r := mux.NewRouter()
	// Flat method routes: gorilla/mux subrouters answer a wrong method with
	// 404 (mux #751), so every route is registered at the top.
	for _, p := range []string{"/-/", "/.well-known/org/ogf/occi/-/"} {
		r.HandleFunc(p, s.handle(s.queryGet)).Methods(http.MethodGet, http.MethodHead)
		r.HandleFunc(p, s.handle(s.queryPost)).Methods(http.MethodPost)
		r.HandleFunc(p, s.handle(s.queryPut)).Methods(http.MethodPut)
		r.HandleFunc(p, s.handle(s.queryDelete)).Methods(http.MethodDelete)
		r.HandleFunc(p, s.options).Methods(http.MethodOptions)
	}
	r.PathPrefix("/").HandlerFunc(s.handle(s.pathGet)).Methods(http.MethodGet, http.MethodHead)
	r.PathPrefix("/").HandlerFunc(s.post).Methods(http.MethodPost) // streamed actions, else pathPost
	r.PathPrefix("/").HandlerFunc(s.handle(s.pathPut)).Methods(http.MethodPut)
	r.PathPrefix("/").HandlerFunc(s.handle(s.pathDelete)).Methods(http.MethodDelete)
	r.PathPrefix("/").HandlerFunc(s.options).Methods(http.MethodOptions)
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Allow", allowedMethods)
		writeError(w, req, s.log, model.Errorf(http.StatusMethodNotAllowed, "method %s is not allowed here; allowed: %s", req.Method, allowedMethods))
	})
	return s.common(r)
}

// common sets the Server header, checks the Host header and the path, and
// bounds the body (size and read deadlines) on every request.
func (s *Server) common(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", ServerHeader)
		if v, tooNew := tooNewOCCI(r.Header.Get("User-Agent")); tooNew {
			writeError(w, r, s.log, model.Errorf(http.StatusNotImplemented, "this server implements OCCI 1.2; the client asks for OCCI %s", v))
			return
		}
		if err := checkHost(r.Host); err != nil {
			writeError(w, r, s.log, err)
			return
		}
		if !utf8.ValidString(r.URL.Path) {
			// Locations are stored as text; neither store could keep it.
			writeError(w, r, s.log, model.BadRequest("the path %s is not valid UTF-8 once decoded", r.URL.EscapedPath()))
			return
		}
		if strings.Contains(strings.ToLower(r.URL.RawPath), "%2f") {
			// Decoded, it would be a separator: /compute/a%2Fb is not the
			// entity a/b of /compute/, nor b of /compute/a/.
			writeError(w, r, s.log, model.BadRequest("the path %s has an escaped '/' (%%2F); a location segment cannot contain '/'", r.URL.EscapedPath()))
			return
		}
		if r.Method == http.MethodOptions && r.RequestURI == "*" {
			// OPTIONS * asks about the server as a whole.
			s.options(w, r)
			return
		}
		if err := s.limitBody(w, r); err != nil {
			writeError(w, r, s.log, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) options(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", allowedMethods)
	w.WriteHeader(http.StatusNoContent)
}

// handle adapts a handler that returns a response or an error.
func (s *Server) handle(fn func(*http.Request) (*response, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		resp, err := fn(r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		resp.head = r.Method == http.MethodHead
		if resp.noBody && resp.ctype == "" {
			// OCCI clients expect the Content-Type they asked for even on an
			// empty answer (text/occi's body is "OK"); pyOCNI's and 1.2
			// JSON's empty answers stay without one.
			if rend, ctype, err := negotiate(r, true); err == nil && (rend == renderTextPlain || rend == renderTextOCCI) {
				resp.noBody, resp.rend, resp.ctype = false, rend, ctype
			}
		}
		s.write(w, resp)
	}
}

// base is the URL prefix of absolute locations.
func (s *Server) base(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return s.opts.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host // checked by common: bounded, host[:port]
	if host == "" {
		// HTTP/1.0 without Host: the address the client connected to.
		if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			host = addr.String()
		}
	}
	return scheme + "://" + host
}

// maxHostBytes bounds the Host header: a DNS name (255 bytes) and a port.
// Absolute locations are built from it, so an unbounded Host would make
// every location in a listing that much longer.
const maxHostBytes = 255 + len(":65535")

// checkHost accepts an empty Host (HTTP/1.0) and host[:port], where host is
// a DNS name, an IPv4 address or a bracketed IPv6 address.
func checkHost(h string) error {
	if h == "" {
		return nil
	}
	if len(h) > maxHostBytes {
		return model.BadRequest("the Host header is %d bytes; at most %d (a host name and a port) are accepted", len(h), maxHostBytes)
	}
	bad := func(why string) error {
		return model.BadRequest("the Host header %q is not host[:port]: %s", h, why)
	}
	host, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return bad("unclosed '['")
		}
		if ip, err := netip.ParseAddr(h[1:end]); err != nil || !ip.Is6() || ip.Zone() != "" {
			return bad("not an IPv6 address in brackets")
		}
		host, port = h[:end+1], h[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return bad("junk after ']'")
		}
		port = strings.TrimPrefix(port, ":")
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
	}
	if port != "" || strings.HasSuffix(h, ":") {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || len(port) > 5 || n == 0 && port != "0" {
			return bad("the port must be a number from 0 to 65535")
		}
	}
	if !strings.HasPrefix(host, "[") {
		if host == "" {
			return bad("no host name")
		}
		if len(host) > 255 {
			return model.BadRequest("the Host header's host name is %d bytes; at most 255 are accepted", len(host))
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				return bad(fmt.Sprintf("character %q is not allowed in a host name", c))
			}
		}
	}
	return nil
}

func ok() *response { return &response{status: http.StatusOK, noBody: true} }

// --- query interface ---

func (s *Server) queryGet(r *http.Request) (*response, error) {
	rend, ctype, err := negotiate(r, false)
	if err != nil {
		return nil, err
	}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	hdr, err := headerDoc(r, body)
	if err != nil {
		return nil, err
	}
	if hdr != nil && len(hdr.Categories) > 0 {
		body = &requestBody{Text: hdr}
	}
	var cats []*model.Category
	if body.empty() && r.URL.Query().Get("category") == "" {
		cats = s.cats.All("")
	} else {
		filter, err := categoryFilter(body, r)
		if err != nil {
			return nil, err
		}
		for _, class := range []model.Class{model.ClassKind, model.ClassMixin, model.ClassAction} {
			if fs, asked := filter[class]; asked {
				cats = append(cats, s.cats.Filter(class, fs)...)
			}
		}
	}
	return s.categoryResponse(rend, ctype, s.base(r), cats), nil
}

// categoryFilter reads a GET /-/ filter: a category document whose objects
// are matched as subsets, Category lines in text, or ?category=scheme#term.
func categoryFilter(body *requestBody, r *http.Request) (map[model.Class][]map[string]any, error) {
	out := map[model.Class][]map[string]any{}
	if id := r.URL.Query().Get("category"); id != "" {
		scheme, term, found := strings.Cut(id, "#")
		if !found {
			return nil, model.BadRequest("category %q must be scheme#term, or a scheme ending in #", id)
		}
		f := map[string]any{"scheme": scheme + "#", "term": term}
		if term == "" {
			f = map[string]any{"scheme": scheme + "#"} // erocci: a scheme alone
		}
		for _, c := range []model.Class{model.ClassKind, model.ClassMixin, model.ClassAction} {
			out[c] = append(out[c], f)
		}
		return out, nil
	}
	switch {
	case body.JSON != nil:
		for k, v := range body.JSON {
			class := model.Class(strings.TrimSuffix(k, "s"))
			if class != model.ClassKind && class != model.ClassMixin && class != model.ClassAction {
				return nil, model.BadRequest("unknown member %q in the category filter (want kinds, mixins, actions)", k)
			}
			list, err := objectList(k, v)
			if err != nil {
				return nil, err
			}
			out[class] = list
		}
	case body.Text != nil:
		for _, c := range body.Text.Categories {
			f := map[string]any{"term": c.Term, "scheme": c.Scheme}
			if c.Class != "" {
				cl := model.Class(c.Class)
				out[cl] = append(out[cl], f)
				continue
			}
			for _, cl := range []model.Class{model.ClassKind, model.ClassMixin, model.ClassAction} {
				out[cl] = append(out[cl], f)
			}
		}
	}
	return out, nil
}

func (s *Server) queryPost(r *http.Request) (*response, error) {
	doc, err := s.readCategoryDoc(r)
	if err != nil {
		return nil, err
	}
	if err := s.cats.Register(r.Context(), doc); err != nil {
		return nil, err
	}
	return ok(), nil
}

func (s *Server) queryPut(r *http.Request) (*response, error) {
	doc, err := s.readCategoryDoc(r)
	if err != nil {
		return nil, err
	}
	if err := s.cats.Update(r.Context(), doc); err != nil {
		return nil, err
	}
	return ok(), nil
}

func (s *Server) queryDelete(r *http.Request) (*response, error) {
	doc, err := s.readCategoryDoc(r)
	if err != nil {
		return nil, err
	}
	if err := s.cats.Delete(r.Context(), doc); err != nil {
		return nil, err
	}
	return ok(), nil
}

func (s *Server) readCategoryDoc(r *http.Request) (*categories.Document, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if body.empty() {
		return nil, model.BadRequest("the request needs a category document: {\"kinds\":[…],\"mixins\":[…],\"actions\":[…]}")
	}
	return categoryDocument(body)
}

// --- paths: collections (ending in /) and entities ---

func isCollectionPath(p string) bool { return strings.HasSuffix(p, "/") }

func (s *Server) pathGet(r *http.Request) (*response, error) {
	p := r.URL.Path
	if !isCollectionPath(p) {
		return s.entityGet(r, p)
	}
	return s.collectionGet(r, p)
}

// checkListable answers 404 for a path ending in "/" that is no collection:
// the root and a prefix of a kind's or mixin's location or of an entity's
// location list the entities under it; anything else is most likely a typo.
func (s *Server) checkListable(ctx context.Context, p string) error {
	if p == "/" || s.cats.HasLocationUnder(p) {
		return nil
	}
	some, err := s.entities.List(ctx, entities.ListQuery{PathPrefix: p, Limit: 1})
	if err != nil {
		return err
	}
	if len(some) == 0 {
		return model.NotFound("%s is not a collection: no kind or mixin has its location there or below, and no entity lives under it", p)
	}
	return nil
}

// entityFilters reads pyOCNI's collection GET filter, a JSON body
// {"resources":[…],"links":[…]} (a body without them matches nothing, as in
// pyOCNI). Text filters are entityMatchers.
func entityFilters(body *requestBody) ([]map[string]any, error) {
	filters := []map[string]any{}
	for _, key := range []string{"resources", "links"} {
		list, err := objectList(key, body.JSON[key])
		if err != nil {
			return nil, err
		}
		filters = append(filters, list...)
	}
	if len(filters) > maxFilterAlternatives {
		return nil, model.BadRequest("the filter has %d objects; at most %d alternatives are allowed in one request", len(filters), maxFilterAlternatives)
	}
	conds := 0
	for _, f := range filters {
		conds += countConditions(f)
	}
	if conds > maxFilterConditions {
		return nil, model.BadRequest("the filter has %d conditions; at most %d are allowed in one request", conds, maxFilterConditions)
	}
	return filters, nil
}

// Bounds on one request's collection filter: each alternative and each
// condition becomes part of the store query, and the stores' query planners
// have limits of their own (docs/limits.md).
const (
	maxFilterAlternatives = 100
	maxFilterConditions   = 500
)

// countConditions counts the values a filter object compares: its leaves,
// an empty object counting as one.
func countConditions(v any) int {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return 1
	}
	n := 0
	for _, x := range m {
		n += countConditions(x)
	}
	return n
}

// filterEntities keeps the entities the matcher accepts.
func (s *Server) filterEntities(list []*model.Entity, m *entityMatcher) []*model.Entity {
	kept := list[:0]
	chains := map[string][]string{} // kind → it and its ancestors
	for _, e := range list {
		chain, ok := chains[e.Kind]
		if !ok {
			for _, k := range s.cats.KindChain(e.Kind) {
				chain = append(chain, k.ID())
			}
			chains[e.Kind] = chain
		}
		var flat map[string]any
		if m.needsAttributes() {
			attrs, err := s.cats.AttrSet(e.Kind, e.Mixins)
			if err != nil {
				attrs = model.NewAttrSet()
			}
			flat = flatAttributes(e, attrs)
		}
		if m.match(e, chain, flat) {
			kept = append(kept, e)
		}
	}
	return kept
}

// maxPageSize is the largest ?number= served; OCCI 1.2 answers a larger
// one with 413.
const maxPageSize = 10000

// pagination reads OCCI 1.2's ?page=&number= (1-based pages).
func pagination(r *http.Request) (limit, skip int, err error) {
	q := r.URL.Query()
	if q.Get("page") == "" && q.Get("number") == "" {
		return 0, 0, nil
	}
	page, number := 1, 0
	if v := q.Get("page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 1 {
			return 0, 0, model.BadRequest("page must be a whole number from 1, got %q", v)
		}
	}
	if v := q.Get("number"); v != "" {
		if number, err = strconv.Atoi(v); err != nil || number < 1 {
			return 0, 0, model.BadRequest("number must be a whole number from 1, got %q", v)
		}
		if number > maxPageSize {
			return 0, 0, model.Errorf(http.StatusRequestEntityTooLarge, "number %d is larger than the largest page this server serves (%d)", number, maxPageSize)
		}
	} else {
		return 0, 0, model.BadRequest("page needs number (how many entities per page)")
	}
	return number, (page - 1) * number, nil
}

func (s *Server) entityGet(r *http.Request, p string) (*response, error) {
	rend, ctype, err := negotiate(r, false)
	if err != nil {
		return nil, err
	}
	e, err := s.entities.Get(r.Context(), p)
	if err != nil {
		return nil, err
	}
	return s.entityResponse(r, e, rend, ctype, http.StatusOK)
}

// entityResponse renders one entity (with its revision as ETag).
func (s *Server) entityResponse(r *http.Request, e *model.Entity, rend rendering, ctype string, status int) (*response, error) {
	resp := &response{status: status, rend: rend, ctype: ctype, header: http.Header{}}
	resp.header.Set("ETag", strconv.Quote(e.Rev))
	base := s.base(r)
	if rend == renderPyOCNI {
		links, err := s.linksFrom(r.Context(), e)
		if err != nil {
			return nil, err
		}
		resp.json = pyocniEntity(e, base, pyocniLinks(e.Links, links, base, s.isLinkPath))
		return resp, nil
	}
	v, err := s.view(r.Context(), e, true)
	if err != nil {
		return nil, err
	}
	if rend == renderJSON12 {
		resp.json = entity12(v, base)
	} else {
		resp.lines = entityText(v, base)
	}
	return resp, nil
}

// isOCCIRendering tells the OCCI 1.2 renderings (1.2 JSON and text), whose
// write answers carry the entity, from pyOCNI's JSON and uri-lists, whose
// answers list locations.
func isOCCIRendering(rend rendering) bool {
	return rend == renderJSON12 || rend == renderTextPlain || rend == renderTextOCCI
}

// occiDialect tells whether a write is answered the OCCI 1.2 way (200 and
// the entity) or pyOCNI's (201 and its Location): 1.2 JSON always, text
// renderings unless the request itself was pyOCNI's {"resources":[…]}
// document (pyOCNI clients ask for text/plain replies to those).
func occiDialect(rend rendering, body *requestBody) bool {
	if rend == renderJSON12 {
		return true
	}
	if !isOCCIRendering(rend) {
		return false
	}
	if body.JSON != nil {
		_, res := body.JSON["resources"]
		_, links := body.JSON["links"]
		return !res && !links
	}
	return true
}

// view gathers what the 1.2 and text renderings show of an entity; with
// withLinks, a resource's links are read from the store.
func (s *Server) view(ctx context.Context, e *model.Entity, withLinks bool) (*entityView, error) {
	var links []*model.Entity
	if withLinks {
		var err error
		if links, err = s.linksFrom(ctx, e); err != nil {
			return nil, err
		}
	}
	return s.viewOf(ctx, e, links)
}

// viewOf is view with a resource's links already read.
func (s *Server) viewOf(ctx context.Context, e *model.Entity, links []*model.Entity) (*entityView, error) {
	v := &entityView{e: e, links: links}
	v.kind, _ = s.cats.Get(e.Kind)
	for _, m := range e.Mixins {
		if mc, ok := s.cats.Get(m); ok {
			v.mixins = append(v.mixins, mc)
		}
	}
	attrs, err := s.cats.AttrSet(e.Kind, e.Mixins)
	if err != nil {
		// A mixin deleted since: render with the kind's definitions.
		if attrs, err = s.cats.AttrSet(e.Kind, nil); err != nil {
			return nil, err
		}
	}
	v.attrs = attrs
	seen := map[string]bool{}
	collect := func(ids []string) {
		for _, id := range ids {
			if a, ok := s.cats.Get(id); ok && a.Class == model.ClassAction && !seen[id] {
				seen[id] = true
				v.actions = append(v.actions, a)
			}
		}
	}
	for _, k := range s.cats.KindChain(e.Kind) {
		collect(k.Actions)
	}
	for _, m := range v.mixins {
		collect(m.Actions)
	}
	for _, l := range append([]*model.Entity{e}, v.links...) {
		s.fillTargetKind(ctx, l)
	}
	return v, nil
}

// linksFrom lists the links whose source is a resource (none for a link,
// and no query for a resource whose stored list of links is empty).
func (s *Server) linksFrom(ctx context.Context, e *model.Entity) ([]*model.Entity, error) {
	if !e.LinksUnknown() {
		return nil, nil
	}
	return s.entities.LinksFrom(ctx, e.Location)
}

// linksBySource lists the links whose source is one of the resources, by
// source location, in one store query: a listing's batch of resources
// gets its links without a query per resource.
func (s *Server) linksBySource(ctx context.Context, batch []*model.Entity) (map[string][]*model.Entity, error) {
	var srcs []string
	for _, e := range batch {
		if e.LinksUnknown() {
			srcs = append(srcs, e.Location)
		}
	}
	if len(srcs) == 0 {
		return nil, nil
	}
	links, err := s.entities.LinksFrom(ctx, srcs...)
	if err != nil {
		return nil, err
	}
	by := make(map[string][]*model.Entity, len(srcs))
	for _, l := range links {
		by[l.Source] = append(by[l.Source], l)
	}
	return by, nil
}

// isLinkPath tells whether a path is in the collection of a link kind.
func (s *Server) isLinkPath(p string) bool {
	c, ok := s.cats.ByLocation(p[:strings.LastIndex(p, "/")+1])
	return ok && c.Class == model.ClassKind && s.cats.IsLinkKind(c.ID())
}

// fillTargetKind gives a link stored without its target's kind (links
// written before the service recorded it) the kind the renderings show
// as its rel.
func (s *Server) fillTargetKind(ctx context.Context, l *model.Entity) {
	if l.Type != model.TypeLink || l.TargetKind != "" || l.Target == "" {
		return
	}
	if t, err := s.entities.Get(ctx, l.Target); err == nil {
		l.TargetKind = t.Kind
	}
}

func (s *Server) pathPost(r *http.Request) (*response, error) {
	p := r.URL.Path
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	_, isAction := r.URL.Query()["action"]
	if !isCollectionPath(p) {
		if isAction {
			return s.entityAction(r, p, body)
		}
		return s.entityUpdate(r, p, body)
	}
	var descs []typedDescription
	var descsErr error
	if !isAction {
		descs, descsErr = entityDescriptions(body)
	}
	coll, found := s.cats.ByLocation(p)
	if !found && p == "/" && !isAction {
		// OCCI 1.1 clients (the OCCI-WG tests) create at the root, naming
		// the kind: the entity goes to that kind's collection.
		if descsErr == nil && len(descs) == 1 {
			if k, _ := descs[0].desc["kind"].(string); k != "" {
				if c, ok := s.cats.Get(k); ok && c.Class == model.ClassKind && c.Location != "" {
					coll, found = c, true
				}
			}
		}
	}
	if !found {
		return nil, model.NotFound("there is no kind or mixin collection at %s", p)
	}
	if isAction {
		term := r.URL.Query().Get("action")
		attrs, err := actionAttributes(body, term)
		if err != nil {
			return nil, err
		}
		results, err := s.entities.TriggerCollection(r.Context(), coll, term, attrs)
		if err != nil {
			return nil, err
		}
		if rend, _, err := negotiate(r, true); err == nil && isOCCIRendering(rend) {
			return ok(), nil // OCCI 1.2: 200; the members show their new state
		}
		base := s.base(r)
		abs := make(map[string]any, len(results))
		for loc, res := range results {
			abs[base+loc] = res
		}
		return &response{status: http.StatusOK, rend: renderPyOCNI, json: map[string]any{"results": abs}}, nil
	}
	if descsErr != nil {
		return nil, descsErr
	}
	if len(descs) > 0 || (body.JSON != nil && (body.JSON["resources"] != nil || body.JSON["links"] != nil)) {
		rend, ctype, err := negotiate(r, true)
		if err != nil {
			return nil, err
		}
		if coll.Class != model.ClassKind {
			return nil, model.BadRequest("%s is the collection of mixin %s; create entities in their kind's collection and tag them by POSTing X-OCCI-Location here", p, coll.ID())
		}
		resp, err := s.create(r, coll, descs, rend, ctype)
		if err == nil && occiDialect(rend, body) {
			occiCreated(resp)
		}
		return resp, err
	}
	locs, has, err := locationList(body)
	if err != nil {
		return nil, err
	}
	if has {
		if coll.Class != model.ClassMixin {
			return nil, model.NotFound("%s is not a mixin collection; X-OCCI-Location lists tag entities with a mixin", p)
		}
		rend, ctype, err := negotiate(r, true)
		if err != nil {
			return nil, err
		}
		if err := s.entities.Associate(r.Context(), coll, locs); err != nil {
			return nil, err
		}
		return s.membersResponse(r, coll, rend, ctype)
	}
	return nil, model.BadRequest("POST to %s needs \"resources\" or \"links\" to create, or \"X-OCCI-Location\" to tag", p)
}

func (s *Server) create(r *http.Request, coll *model.Category, descs []typedDescription, rend rendering, ctype string) (*response, error) {
	if len(descs) == 0 {
		return createdResponse(rend, ctype, s.base(r), []string{}), nil
	}
	typ := descs[0].typ
	inputs := make([]*model.EntityInput, 0, len(descs))
	for i, d := range descs {
		if d.typ != typ {
			return nil, model.BadRequest("create resources and links in separate requests: a kind's entities are either resources or links")
		}
		in, err := model.ParseEntityInput(d.desc, d.typ)
		if err != nil {
			return nil, fmt.Errorf("%ss[%d]: %w", d.typ, i, err)
		}
		inputs = append(inputs, in)
	}
	locs, err := s.entities.Create(r.Context(), coll, typ, inputs)
	if err != nil {
		return nil, err
	}
	resp := createdResponse(rend, ctype, s.base(r), locs)
	if rend == renderJSON12 {
		// OCCI 1.2 JSON: the created entity, or a collection of them.
		var rendered []any
		for _, l := range locs {
			e, err := s.entities.Get(r.Context(), l)
			if err != nil {
				return nil, err
			}
			v, err := s.view(r.Context(), e, true)
			if err != nil {
				return nil, err
			}
			rendered = append(rendered, entity12(v, s.base(r)))
		}
		if len(rendered) == 1 {
			resp.json = rendered[0]
		} else {
			resp.json = map[string]any{typ + "s": rendered}
		}
	}
	return resp, nil
}

func (s *Server) singleInput(body *requestBody) (*model.EntityInput, string, error) {
	descs, err := entityDescriptions(body)
	if err != nil {
		return nil, "", err
	}
	if len(descs) == 0 {
		return nil, "", model.BadRequest("the request needs an entity description: {\"resources\":[{…}]} or {\"links\":[{…}]}")
	}
	if len(descs) > 1 {
		return nil, "", model.BadRequest("an entity location takes one description, got %d", len(descs))
	}
	in, err := model.ParseEntityInput(descs[0].desc, descs[0].typ)
	if err != nil {
		return nil, "", err
	}
	return in, descs[0].typ, nil
}

func (s *Server) entityUpdate(r *http.Request, p string, body *requestBody) (*response, error) {
	rend, ctype, err := negotiate(r, true)
	if err != nil {
		return nil, err
	}
	in, _, err := s.singleInput(body)
	if err != nil {
		return nil, err
	}
	e, err := s.entities.Update(r.Context(), p, ifMatch(r), in)
	if err != nil {
		return nil, err
	}
	if occiDialect(rend, body) {
		// OCCI 1.2: a partial update answers 200 with the entity.
		return s.entityResponse(r, e, rend, ctype, http.StatusOK)
	}
	resp := createdResponse(rend, ctype, s.base(r), []string{e.Location})
	resp.header.Set("ETag", strconv.Quote(e.Rev))
	return resp, nil
}

func (s *Server) entityAction(r *http.Request, p string, body *requestBody) (*response, error) {
	term := r.URL.Query().Get("action")
	if term == "" {
		return nil, model.BadRequest("?action= needs an action term")
	}
	attrs, err := actionAttributes(body, term)
	if err != nil {
		return nil, err
	}
	res, err := s.entities.Trigger(r.Context(), p, term, attrs)
	if err != nil {
		return nil, err
	}
	if res == nil {
		// OCCI 1.2 renderings get the entity as the action left it.
		if rend, ctype, err := negotiate(r, false); err == nil && isOCCIRendering(rend) {
			e, err := s.entities.Get(r.Context(), p)
			if err != nil {
				return nil, err
			}
			return s.entityResponse(r, e, rend, ctype, http.StatusOK)
		}
		return &response{status: http.StatusOK, noBody: true}, nil
	}
	status := http.StatusOK
	var location string
	if acc, ok := res.(providers.Accepted); ok {
		status, location, res = http.StatusAccepted, acc.Location, acc.Result
	}
	encoded, err := marshalJSON(res)
	if err != nil {
		return nil, fmt.Errorf("action %s result: %w", term, err)
	}
	resp := &response{status: status, rend: renderPyOCNI, ctype: "application/json", json: encodedJSON(encoded)}
	if location != "" {
		resp.header = http.Header{"Location": {s.base(r) + location}}
	}
	return resp, nil
}

func (s *Server) pathPut(r *http.Request) (*response, error) {
	p := r.URL.Path
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if isCollectionPath(p) {
		coll, found := s.cats.ByLocation(p)
		if !found {
			return nil, model.NotFound("there is no kind or mixin collection at %s", p)
		}
		if coll.Class != model.ClassMixin {
			return nil, model.Errorf(http.StatusMethodNotAllowed, "PUT on the kind collection %s is not supported; PUT each entity at its own location", p)
		}
		locs, has, err := locationList(body)
		if err != nil {
			return nil, err
		}
		if !has {
			return nil, model.BadRequest("PUT on a mixin collection needs the full member list as X-OCCI-Location")
		}
		rend, ctype, err := negotiate(r, true)
		if err != nil {
			return nil, err
		}
		if err := s.entities.ReplaceMembership(r.Context(), coll, locs); err != nil {
			return nil, err
		}
		return s.membersResponse(r, coll, rend, ctype)
	}
	rend, ctype, err := negotiate(r, true)
	if err != nil {
		return nil, err
	}
	loc, err := model.EntityPath(p)
	if err != nil {
		return nil, err
	}
	if err := model.CheckEntityID(loc[strings.LastIndexByte(loc, '/')+1:]); err != nil {
		return nil, err
	}
	if _, isColl := s.cats.ByLocation(loc + "/"); isColl {
		return nil, model.BadRequest("%s is a collection; entities live below it", loc)
	}
	in, typ, err := s.singleInput(body)
	if err != nil {
		return nil, err
	}
	e, created, err := s.entities.Replace(r.Context(), loc, ifMatch(r), typ, in)
	if err != nil {
		return nil, err
	}
	if occiDialect(rend, body) {
		// OCCI 1.2: a replace answers 200 with the entity; a create 201
		// with its Location and the entity.
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		resp, err := s.entityResponse(r, e, rend, ctype, status)
		if err == nil && created {
			resp.header.Set("Location", s.base(r)+e.Location)
		}
		return resp, err
	}
	resp := createdResponse(rend, ctype, s.base(r), []string{e.Location})
	resp.header.Set("ETag", strconv.Quote(e.Rev))
	return resp, nil
}

func (s *Server) pathDelete(r *http.Request) (*response, error) {
	p := r.URL.Path
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if !isCollectionPath(p) {
		if err := s.entities.Delete(r.Context(), p, ifMatch(r)); err != nil {
			return nil, err
		}
		return ok(), nil
	}
	coll, found := s.cats.ByLocation(p)
	if !found {
		return nil, model.NotFound("there is no kind or mixin collection at %s", p)
	}
	locs, has, err := locationList(body)
	if err != nil {
		return nil, err
	}
	switch {
	case coll.Class == model.ClassMixin && has:
		err = s.entities.Dissociate(r.Context(), coll, locs)
	case coll.Class == model.ClassMixin:
		err = s.entities.ReplaceMembership(r.Context(), coll, nil)
	case has:
		return nil, model.BadRequest("DELETE on the kind collection %s deletes all its entities and takes no list; delete single entities at their locations", p)
	case coll.Builtin && coll.Scheme == categories.CoreScheme:
		return nil, model.Errorf(http.StatusForbidden, "deleting every entity of %s at once is not allowed", coll.ID())
	default:
		_, err = s.entities.DeleteCollection(r.Context(), coll)
	}
	if err != nil {
		return nil, err
	}
	return ok(), nil
}

// membersResponse answers a change to a mixin collection's members: OCCI
// 1.2 renders the collection (its locations; the entities in 1.2 JSON);
// pyOCNI answers 200 with no body.
func (s *Server) membersResponse(r *http.Request, coll *model.Category, rend rendering, ctype string) (*response, error) {
	if !isOCCIRendering(rend) && rend != renderURIList {
		return ok(), nil
	}
	list, err := s.entities.List(r.Context(), entities.ListQuery{Collection: coll})
	if err != nil {
		return nil, err
	}
	base := s.base(r)
	if rend != renderJSON12 {
		locs := make([]string, len(list))
		for i, e := range list {
			locs[i] = e.Location
		}
		return locationsResponse(rend, ctype, base, locs), nil
	}
	// The 1.2 JSON listing's rendering, resources first.
	sort.SliceStable(list, func(i, j int) bool {
		return list[i].Type != model.TypeLink && list[j].Type == model.TypeLink
	})
	links, err := s.listingLinks(r.Context(), rend, list)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := newCollectionEncoder(s, &buf, rend, base)
	if err := enc.batch(r.Context(), list, links); err != nil {
		return nil, err
	}
	if err := enc.end(); err != nil {
		return nil, err
	}
	return &response{status: http.StatusOK, rend: rend, ctype: ctype, json: json.RawMessage(buf.Bytes())}, nil
}

// ifMatch reads the revision an If-Match header names ("" when absent).
func ifMatch(r *http.Request) string {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	v = strings.TrimPrefix(v, "W/")
	return strings.Trim(v, `"`)
}
