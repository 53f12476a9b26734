package occi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/internal/testserver"
)

// fuzzContentTypes are the request types a fuzzed byte picks from.
var fuzzContentTypes = []string{
	"application/occi+json",
	"application/json",
	"",
	"text/plain",
	"text/occi",
	"text/uri-list",
	"application/x-www-form-urlencoded",
	"application/occi+json; charset=utf-8",
	"application/xml",
	"text/plain; charset=utf-8",
	"application/vnd.x+json",
	";;=",
}

// fuzzRequests are the method and target a fuzzed byte picks from.
var fuzzRequests = []struct{ method, target string }{
	{"POST", "/-/"},
	{"PUT", "/-/"},
	{"DELETE", "/-/"},
	{"GET", "/-/"},
	{"POST", "/cmbs/member/"},
	{"GET", "/cmbs/member/"},
	{"PUT", "/cmbs/member/x"},
	{"POST", "/cmbs/member/x"},
	{"POST", "/cmbs/member/x?action=start_l1"},
	{"PUT", "/cmbs/message/l1/"},
	{"DELETE", "/cmbs/message/l1/"},
	{"POST", "/cmbs/message/l2/"},
	{"GET", "/cmbs/"},
}

// fuzzSeeds are bodies every fuzz target starts from: pyCMBS's request
// files, text renderings, and broken JSON.
func fuzzSeeds(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, dir := range []string{"readme", "pycmbs"} {
		files, err := filepath.Glob(filepath.Join("..", "testdata", dir, "*.json"))
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, b)
		}
	}
	for _, s := range []string{
		"", "{", "{bad json", "[]", "null", `{"kinds":1}`, `{"kinds":[1]}`, `{"resources":[null]}`,
		`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"x","attributes":{"cmbs":{"member":{"local":"true"}}}}]}`,
		`{"resources":[{"attributes":{"cmbs":{"member":{"state":{"$gt":""}}}}}]}`,
		`{"X-OCCI-Location":["/cmbs/member/x","http://h/cmbs/member/x"]}`,
		`{"X-OCCI-Location":[1]}`, `{"attributes":{"x":[1,{"y":null}]}}`, `{"action":7}`,
		`{"providers":[{"OCCI_ID":"http://houssem.org/cmbs#member","Provider":{"local":[]}}]}`,
		`{"kinds":[{"term":"k","scheme":"http://x#","location":"/cmbs/member/x/","attributes":{"a.b":{"type":"number","default":"x"}}}]}`,
		`{"kinds":[{"term":"k","scheme":"http://x#","location":"/k/","attributes":{"a":{"b":{"pattern":"("}}}}]}`,
		`{"kinds":[{"term":"k","scheme":"http://x#","location":"/k/","parent":"http://x#k"}]}`,
		`Category: member; scheme="http://houssem.org/cmbs#"; class="kind"`,
		"Category: member; scheme=\"http://houssem.org/cmbs#\"; class=\"kind\";\nX-OCCI-Attribute: cmbs.member.local=\"false\"",
		`Category: start_l1; scheme="http://houssem.org/cmbs/member/action#"; class=action;`,
		`Category: l9; scheme="http://houssem.org/cmbs#"; class="mixin"; location="/cmbs/message/l9/"`,
		"X-OCCI-Attribute: occi.core.id=\"x\", occi.core.title=\"t\"\nLink: </cmbs/member/x>; rel=\"r\"; self=\"/l/1\"; a=1",
		"X-OCCI-Location: /cmbs/member/x\nX-OCCI-Location: http://127.0.0.1:8090/cmbs/member/y",
		"Category: ; scheme=\"\nLink: <\nX-OCCI-Attribute: =",
		"/cmbs/member/x\n# comment\nhttp://h/cmbs/member/y\n",
		// Hostile ids on every way of giving one.
		`{"resources":[{"kind":"http://houssem.org/cmbs#member","attributes":{"occi.core.id":"../cmbs/member/victim"}}]}`,
		`{"resources":[{"kind":"http://houssem.org/cmbs#member","attributes":{"occi":{"core":{"id":".."}}}}]}`,
		`{"kind":"http://houssem.org/cmbs#member","attributes":{"occi.core.id":"a\u0000b"}}`,
		`{"kind":"http://houssem.org/cmbs#member","id":"%2e%2e","attributes":{"occi.core.id":"%2e%2e"}}`,
		`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"a\r\nSet-Cookie: x=y"}]}`,
		"Category: member; scheme=\"http://houssem.org/cmbs#\"; class=\"kind\"\nX-OCCI-Attribute: occi.core.id=\"../../x\"",
		"Category: member; scheme=\"http://houssem.org/cmbs#\"; class=\"kind\"\nX-OCCI-Attribute: occi.core.id=\"http://evil.example/x\"",
	} {
		out = append(out, []byte(s))
	}
	return out
}

// checkReply fails on a server error and on a client error that is not the
// JSON error shape.
func checkReply(t *testing.T, what string, w *httptest.ResponseRecorder) {
	t.Helper()
	status := w.Code
	// 501 is the one server-side status a client can cause on purpose: an
	// action on a kind whose provider binding was removed (PUT /-/ with an
	// empty "local") is not implemented, and says so.
	if status >= 500 && !(status == http.StatusNotImplemented && strings.Contains(w.Body.String(), "provider")) {
		t.Fatalf("%s: status %d: %s", what, status, w.Body.String())
	}
	if loc := w.Header().Get("Location"); loc != "" {
		// A created entity's location is a clean path: no dot segments, no
		// characters a header or a URL path would have to escape.
		u, err := url.Parse(loc)
		if err != nil || u.Path != path.Clean(u.Path) || strings.ContainsAny(loc, "\x00\r\n\t %") {
			t.Fatalf("%s: Location %q is not a clean location", what, loc)
		}
	}
	if status < 400 {
		return
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("%s: error %d with Content-Type %q: %s", what, status, ct, w.Body.String())
	}
	var body struct {
		Error *struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error == nil || body.Error.Status != status || body.Error.Message == "" {
		t.Fatalf("%s: error %d is not {\"error\":{…}} (%v): %s", what, status, err, w.Body.String())
	}
}

// fuzzServer starts one server for a fuzz run, with F1 and F2 registered.
func fuzzServer(f *testing.F) http.Handler {
	f.Helper()
	rec := &recorder{}
	srv := testserver.Start(f, testserver.Options{Register: rec.register})
	h := srv.OCCI.Handler()
	for _, step := range []struct{ method, path, file string }{
		{"POST", "/-/", "post_category_cmbs_member.json"},
		{"PUT", "/-/", "put_provider_cmbs_member.json"},
		{"POST", "/-/", "post_category_cmbs_message.json"},
		{"PUT", "/-/", "put_provider_cmbs_message.json"},
	} {
		req := httptest.NewRequest(step.method, step.path, bytes.NewReader(fixture(f, "pycmbs/"+step.file)))
		req.Header.Set("Content-Type", "application/occi+json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			f.Fatalf("%s %s %s: %d %s", step.method, step.path, step.file, w.Code, w.Body.String())
		}
	}
	return h
}

// FuzzRequest sends arbitrary bodies with a chosen content type to the
// query interface, collections and entities of one server: nothing may
// crash it, answer 5xx, or produce an error that is not the JSON shape.
func FuzzRequest(f *testing.F) {
	h := fuzzServer(f)
	// One request per seed body, the requests and content types taken in
	// turn: every request stores or reads, so the cross product (over 700
	// seeds) took longer to replay than a whole fuzz budget; the fuzzer
	// varies the selectors itself.
	for i, body := range fuzzSeeds(f) {
		f.Add(body, byte(i), byte(i))
	}
	f.Fuzz(func(t *testing.T, body []byte, ctSel, reqSel byte) {
		rq := fuzzRequests[int(reqSel)%len(fuzzRequests)]
		ct := fuzzContentTypes[int(ctSel)%len(fuzzContentTypes)]
		req := httptest.NewRequest(rq.method, rq.target, bytes.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		req.Header.Set("Accept", "application/occi+json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		checkReply(t, rq.method+" "+rq.target+" ("+ct+")", w)
		// Whatever the input did, the server still reads its own state.
		for _, p := range []string{"/-/", "/cmbs/"} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", p, nil))
			var v map[string]any
			if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &v) != nil {
				t.Fatalf("GET %s after %s %s: %d %s", p, rq.method, rq.target, w.Code, w.Body.String())
			}
		}
	})
}

// FuzzTextParser drives the OCCI text parser through both of its inputs: a
// text/plain body and text/occi request headers (Category,
// X-OCCI-Attribute, Link, X-OCCI-Location), on the query interface and on
// entity requests.
func FuzzTextParser(f *testing.F) {
	h := fuzzServer(f)
	for _, s := range fuzzSeeds(f) {
		if len(s) > 0 && s[0] != '{' {
			f.Add(string(s), byte(0))
		}
	}
	for _, s := range []string{
		`member; scheme="http://houssem.org/cmbs#"; class="kind"`,
		`a; scheme="x"; class="mixin", b; scheme="y"; class="kind"`,
		`cmbs.member.local="true", cmbs.member.topics=["a","b"], cmbs.member.x={"y":1}`,
		`</cmbs/member/x?action=start_l1>; rel="http://houssem.org/cmbs/member/action#start_l1"`,
		`"unterminated`, `x="a\"b"`, `<`, `;;;`, `a=`, `Category:`, "\\", `"\`,
	} {
		f.Add(s, byte(0))
	}
	targets := []struct{ method, target string }{
		{"POST", "/-/"}, {"GET", "/-/"}, {"DELETE", "/-/"},
		{"POST", "/cmbs/member/"}, {"GET", "/cmbs/member/"}, {"PUT", "/cmbs/member/t"},
		{"POST", "/cmbs/member/t"}, {"POST", "/cmbs/member/t?action=start_l1"}, {"POST", "/cmbs/message/l1/"},
	}
	f.Fuzz(func(t *testing.T, text string, sel byte) {
		rq := targets[int(sel)%len(targets)]
		// As a text/plain body.
		req := httptest.NewRequest(rq.method, rq.target, strings.NewReader(text))
		req.Header.Set("Content-Type", "text/plain")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		checkReply(t, rq.method+" "+rq.target+" text/plain", w)

		// As text/occi headers: the whole text as each header's value, and
		// its lines as "Name: value" headers.
		req = httptest.NewRequest(rq.method, rq.target, nil)
		req.Header.Set("Content-Type", "text/occi")
		header := []string{"Category", "X-OCCI-Attribute", "Link", "X-OCCI-Location"}[int(sel/16)%4]
		req.Header.Add(header, text)
		for _, line := range strings.Split(text, "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok {
				req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
			}
		}
		w = httptest.NewRecorder()
		h.ServeHTTP(w, req)
		checkReply(t, rq.method+" "+rq.target+" text/occi", w)
	})
}
