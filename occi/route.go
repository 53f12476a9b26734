package occi

import (
	"net/http"
	"strings"
)

// Route patterns Route returns besides category locations.
const (
	// RouteQuery is the query interface, at /-/ and its .well-known alias.
	RouteQuery = "/-/"
	// RouteOtherCollection is a collection path that is no kind's or
	// mixin's location (e.g. a prefix of several).
	RouteOtherCollection = "{collection}/"
	// RouteOtherEntity is any other path: an entity outside every
	// category location, or nothing at all.
	RouteOtherEntity = "{collection}/{id}"
)

// Route names the route pattern that serves r, for metrics and logs: the
// query interface, a kind's or mixin's collection location ("/compute/"),
// an entity in one ("/compute/{id}"), or one of the two catch-alls. The set
// of values is bounded by the categories registered, never by the
// entities: a raw path must not become a metric label.
func (s *Server) Route(r *http.Request) string {
	p := r.URL.Path
	if p == "/-/" || p == "/.well-known/org/ogf/occi/-/" {
		return RouteQuery
	}
	if isCollectionPath(p) {
		if c, ok := s.cats.ByLocation(p); ok {
			return c.Location
		}
		return RouteOtherCollection
	}
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		if c, ok := s.cats.ByLocation(p[:i+1]); ok {
			return c.Location + "{id}"
		}
	}
	return RouteOtherEntity
}
