package occi

import (
	"mime"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/cmbs/cmbs/occi/model"
)

// rendering is a response format.
type rendering int

const (
	// renderPyOCNI is pyOCNI's application/occi+json: nested attributes,
	// bare entity descriptions, {"X-OCCI-Location":[…]} listings.
	renderPyOCNI rendering = iota
	// renderJSON12 is OCCI 1.2's JSON rendering: flat dotted attributes.
	renderJSON12
	renderTextPlain
	renderTextOCCI
	renderURIList
)

func (r rendering) contentType(asked string) string {
	switch r {
	case renderJSON12:
		if asked == "application/json" {
			return "application/json; charset=utf-8"
		}
		return "application/occi+json; charset=utf-8"
	case renderTextPlain:
		if asked == "text/occi+plain" {
			return "text/occi+plain; charset=utf-8"
		}
		return "text/plain; charset=utf-8"
	case renderTextOCCI:
		return "text/occi; charset=utf-8"
	case renderURIList:
		return "text/uri-list; charset=utf-8"
	}
	return "application/occi+json; charset=utf-8"
}

func (r rendering) isJSON() bool { return r == renderPyOCNI || r == renderJSON12 }

type acceptEntry struct {
	mediaType string
	params    map[string]string
	q         float64
	order     int
}

// acceptEntries parses the Accept header, most preferred first; present
// is false when the request has none.
func acceptEntries(r *http.Request) (entries []acceptEntry, present bool) {
	header := strings.Join(r.Header.Values("Accept"), ",")
	if strings.TrimSpace(header) == "" {
		return nil, false
	}
	for i, part := range strings.Split(header, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		mt, params, err := mime.ParseMediaType(part)
		if err != nil {
			// Some clients send "application/occi+json;charset=utf-8;" and the
			// like; take the media type before the first ';'.
			mt = strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
			params = map[string]string{}
		}
		q := 1.0
		if qs, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(qs, 64); err == nil {
				q = v
			}
		}
		entries = append(entries, acceptEntry{mediaType: mt, params: params, q: q, order: i})
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].q > entries[j].q })
	return entries, true
}

// mediaRendering is the rendering an accepted media type asks for, and
// the media type to answer with.
func mediaRendering(e acceptEntry) (rendering, string, bool) {
	switch e.mediaType {
	case "application/occi+json":
		if e.params["version"] == "1.2" {
			return renderJSON12, e.mediaType, true
		}
		return renderPyOCNI, e.mediaType, true
	case "application/json":
		return renderJSON12, e.mediaType, true
	case "text/plain", "text/occi+plain":
		return renderTextPlain, e.mediaType, true
	case "text/occi":
		return renderTextOCCI, e.mediaType, true
	case "text/uri-list":
		return renderURIList, e.mediaType, true
	case "*/*", "application/*":
		return renderPyOCNI, "application/occi+json", true
	case "text/*":
		return renderTextPlain, "text/plain", true
	}
	return 0, "", false
}

// negotiate picks the response rendering from the Accept header. listing
// says whether text/uri-list can serve this response.
func negotiate(r *http.Request, listing bool) (rendering, string, error) {
	entries, present := acceptEntries(r)
	if !present {
		return renderPyOCNI, "application/occi+json", nil
	}
	uriListOnly := false
	for _, e := range entries {
		if e.q <= 0 {
			continue
		}
		rend, ctype, ok := mediaRendering(e)
		if !ok {
			continue
		}
		if rend == renderURIList && !listing {
			uriListOnly = true
			continue
		}
		return rend, ctype, nil
	}
	if uriListOnly {
		// OCCI text rendering 1.2: text/uri-list is for listings only, and
		// asking for it elsewhere is a bad request.
		return 0, "", model.BadRequest("text/uri-list renders entity listings only; ask for text/plain, text/occi or application/occi+json here")
	}
	return 0, "", model.Errorf(http.StatusNotAcceptable,
		"cannot render %q: this resource is available as application/occi+json, application/json, text/plain, text/occi%s",
		strings.Join(r.Header.Values("Accept"), ","), map[bool]string{true: ", text/uri-list", false: ""}[listing])
}

// errorRendering picks how an error is rendered: in the rendering the
// client prefers, even where the answer it asked for could not be given
// (406, or text/uri-list where no listing is served). A uri-list carries
// no message, so it yields to any other rendering the client accepts; a
// client that accepts only it, or only text types this server does not
// render, reads text best and gets text/plain; JSON otherwise.
func errorRendering(r *http.Request) (rendering, string) {
	entries, _ := acceptEntries(r)
	for _, e := range entries {
		if e.q <= 0 {
			continue
		}
		if rend, ctype, ok := mediaRendering(e); ok && rend != renderURIList {
			return rend, ctype
		}
	}
	for _, e := range entries {
		if e.q > 0 && strings.HasPrefix(e.mediaType, "text/") {
			return renderTextPlain, "text/plain"
		}
	}
	return renderPyOCNI, "application/occi+json"
}

// occiVersionRE finds "OCCI/x.y" as a word of a User-Agent.
var occiVersionRE = regexp.MustCompile(`(?:^|\s)OCCI/(\d+)\.(\d+)(?:\s|$)`)

// tooNewOCCI reports whether a User-Agent names an OCCI version above 1.2,
// which OCCI 1.2 says a server must answer with 501.
func tooNewOCCI(userAgent string) (string, bool) {
	if !strings.Contains(userAgent, "OCCI/") {
		return "", false // most requests: no regular expression to run
	}
	for _, m := range occiVersionRE.FindAllStringSubmatch(userAgent, -1) {
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		if major > 1 || (major == 1 && minor > 2) {
			return m[1] + "." + m[2], true
		}
	}
	return "", false
}
