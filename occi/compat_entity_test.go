package occi_test

// pyOCNI compatibility cases: single entities.

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func Test_case_65_get_unknown_entity(t *testing.T) {
	e := newCompat(t, "F1")
	expectError(t, e.c.do("GET", "/cmbs/member/nope", nil), 404, "/cmbs/member/nope")
}

func Test_case_66_get_bare_description(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	r := e.c.do("GET", pathM, nil)
	got := expectJSONOK(t, r, 200)
	if want := firstResource(t, "pycmbs/post_member.json"); !reflect.DeepEqual(got, want) {
		t.Fatalf("member differs from what was posted:\n got %v\nwant %v", got, want)
	}
	doc, err := e.srv.Store.Get(context.Background(), pathM)
	if err != nil {
		t.Fatal(err)
	}
	if et := r.header.Get("ETag"); et != strconv.Quote(doc.Rev) {
		t.Fatalf("ETag %q, want %q", et, strconv.Quote(doc.Rev))
	}
	// pyCMBS sends {} with its GETs; the body is ignored.
	got = expectJSONOK(t, e.c.do("GET", pathM, []byte(`{}`)), 200)
	if got["id"] != memberID {
		t.Fatalf("GET with {}: %v", got)
	}
}

func Test_case_67_text_occi_entity(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	r := e.c.expect("GET", pathM, nil, 200, "Accept", "text/occi")
	if string(r.body) != "OK\n" {
		t.Fatalf("body %q", r.body)
	}
	cats := r.header.Values("Category")
	if len(cats) != 1 || !strings.HasPrefix(cats[0], `member; scheme="http://houssem.org/cmbs#"; class="kind"`) {
		t.Fatalf("Category %v", cats)
	}
	attrs := strings.Join(r.header.Values("X-OCCI-Attribute"), "\n")
	for _, want := range []string{`occi.core.id="` + memberID + `"`, `occi.core.title="member of CMBS"`,
		`cmbs.member.local="true"`, `cmbs.member.neighbors_socket=["tcp://127.0.0.1:6010"]`} {
		if !strings.Contains(attrs, want) {
			t.Fatalf("X-OCCI-Attribute lacks %s:\n%s", want, attrs)
		}
	}
	links := strings.Join(r.header.Values("Link"), "\n")
	if want := "<" + e.abs(pathM) + `?action=start_l1>; rel="` + memberAction + `start_l1"`; !strings.Contains(links, want) {
		t.Fatalf("Link lacks %s:\n%s", want, links)
	}
	// The same in text/plain, one header per line.
	r = e.c.expect("GET", pathM, nil, 200, "Accept", "text/plain")
	if !strings.Contains(string(r.body), "X-OCCI-Attribute: cmbs.member.local=\"true\"\n") {
		t.Fatalf("text/plain rendering:\n%s", r.body)
	}
}

func Test_case_68_partial_update_title(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	r := e.c.do("POST", pathM, []byte(`{"resources":[{"title":"renamed"}]}`))
	if body := expectJSONOK(t, r, 201); !reflect.DeepEqual(body, map[string]any{"Location": []any{e.abs(pathM)}}) {
		t.Fatalf("body %v", body)
	}
	if r.header.Get("Location") != e.abs(pathM) {
		t.Fatalf("Location %q", r.header.Get("Location"))
	}
	doc, _ := e.srv.Store.Get(context.Background(), pathM)
	if r.header.Get("ETag") != strconv.Quote(doc.Rev) {
		t.Fatalf("ETag %q, stored rev %q", r.header.Get("ETag"), doc.Rev)
	}
	got := e.c.expect("GET", pathM, nil, 200).json(t)
	want := firstResource(t, "pycmbs/post_member.json")
	want["title"] = "renamed"
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after the update:\n got %v\nwant %v", got, want)
	}
	calls := e.rec.take()
	if len(calls) != 1 || calls[0].Op != "update" || calls[0].Old.Title != "member of CMBS" || calls[0].Entity.Title != "renamed" {
		t.Fatalf("provider calls %+v", calls)
	}
}

func Test_case_69_partial_update_deep_merges(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	e.c.expect("POST", pathM, []byte(`{"resources":[{"attributes":{"cmbs":{"member":{"state":"inactive"}}}}]}`), 201)
	want := firstResource(t, "pycmbs/post_member.json")
	nsAttrs(t, want, "member")["state"] = "inactive"
	if got := e.c.expect("GET", pathM, nil, 200).json(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the update:\n got %v\nwant %v", got, want)
	}
	// Flat OCCI names merge the same way.
	e.c.expect("POST", pathM, []byte(`{"resources":[{"attributes":{"cmbs.member.state":"failed"}}]}`), 201)
	if a := nsAttrs(t, e.c.expect("GET", pathM, nil, 200).json(t), "member"); a["state"] != "failed" || a["l1_socket"] != "tcp://127.0.0.1:5010" {
		t.Fatalf("after the flat update: %v", a)
	}
	// A value the definition refuses changes nothing.
	e.unchanged(func() {
		r := e.c.do("POST", pathM, []byte(`{"resources":[{"attributes":{"cmbs":{"member":{"state":"sleeping"}}}}]}`))
		if a := expectError(t, r, 400, "sleeping")["attribute"]; a != "cmbs.member.state" {
			t.Fatalf("error.attribute %v", a)
		}
	})
}

func Test_case_70_update_unknown_member(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	e.unchanged(func() {
		expectError(t, e.c.do("POST", pathM, []byte(`{"resources":[{"foo":"bar"}]}`)), 400, "foo")
	})
	if calls := e.rec.take(); len(calls) != 0 {
		t.Fatalf("provider calls %+v", calls)
	}
}

func Test_case_71_update_unknown_entity(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	e.unchanged(func() {
		expectError(t, e.c.do("POST", "/cmbs/member/nope", []byte(`{"resources":[{"title":"x"}]}`)), 404, "/cmbs/member/nope")
	})
}

func Test_case_72_update_without_description(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	e.unchanged(func() {
		expectError(t, e.c.do("POST", pathM, []byte(`{}`)), 400, "resources")
	})
	if got := e.c.expect("GET", pathM, nil, 200).json(t); got["title"] != "member of CMBS" {
		t.Fatalf("member changed: %v", got)
	}
}

func Test_case_73_full_replace(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F4")
	desc := firstResource(t, "pycmbs/post_message_l1.json")
	nsAttrs(t, desc, "message")["result"] = map[string]any{"a": 1.0}
	r := e.c.do("PUT", pathL1, mustJSON(t, map[string]any{"resources": []any{desc}}))
	if body := expectJSONOK(t, r, 201); !reflect.DeepEqual(body, map[string]any{"Location": []any{e.abs(pathL1)}}) {
		t.Fatalf("body %v", body)
	}
	if got := e.c.expect("GET", pathL1, nil, 200).json(t); !reflect.DeepEqual(got, desc) {
		t.Fatalf("after the replace:\n got %v\nwant %v", got, desc)
	}
	calls := e.rec.take()
	if len(calls) != 1 || calls[0].Op != "update" || calls[0].Provider != "cmbs_message" {
		t.Fatalf("provider calls %+v", calls)
	}
	oldRes := calls[0].Old.Attributes["cmbs"].(map[string]any)["message"].(map[string]any)["result"]
	newRes := calls[0].Entity.Attributes["cmbs"].(map[string]any)["message"].(map[string]any)["result"]
	if oldRes != "" || !reflect.DeepEqual(newRes, map[string]any{"a": 1.0}) {
		t.Fatalf("update(old result %v, new result %v)", oldRes, newRes)
	}
	// A replace drops what it does not give (no merge).
	e.c.expect("PUT", pathL1, []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#message","mixins":["http://houssem.org/cmbs#l1"],"attributes":{"cmbs":{"message":{"cmbs_layer":"l1"}}}}]}`), 201)
	got := e.c.expect("GET", pathL1, nil, 200).json(t)
	if _, has := got["title"]; has {
		t.Fatalf("title survived a replace without it: %v", got)
	}
	// Declared defaults are applied to what the replace leaves out.
	if a := nsAttrs(t, got, "message"); a["cmbs_layer"] != "l1" || a["sendable"] != "true" {
		t.Fatalf("attributes after the replace: %v", a)
	}
}

func Test_case_74_put_at_custom_url(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	r := e.c.do("PUT", "/foo/bar", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#message","attributes":{},"id":"zz"}]}`))
	if body := expectJSONOK(t, r, 201); !reflect.DeepEqual(body, map[string]any{"Location": []any{e.abs("/foo/bar")}}) {
		t.Fatalf("body %v", body)
	}
	if r.header.Get("Location") != e.abs("/foo/bar") {
		t.Fatalf("Location %q", r.header.Get("Location"))
	}
	e.c.expect("GET", "/foo/bar", nil, 200)
	if got := locations(t, e.c.do("GET", "/cmbs/message/", nil)); !reflect.DeepEqual(got, []string{e.abs("/foo/bar")}) {
		t.Fatalf("message collection %v", got)
	}
	if got := opsOf(e.rec.take()); !reflect.DeepEqual(got, []string{"create /foo/bar"}) {
		t.Fatalf("provider calls %v", got)
	}
}

func Test_case_75_put_unknown_kind(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/foo/baz", []byte(`{"resources":[{"kind":"http://nope#k","id":"q"}]}`)), 400, "http://nope#k")
	})
	// A mixin or an action is not a kind either.
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/foo/baz", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#l1"}]}`)), 400, "http://houssem.org/cmbs#l1")
	})
}

func Test_case_76_put_without_description(t *testing.T) {
	e := newCompat(t, "F1", "F2")
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/foo/baz", []byte(`{}`)), 400, "resources")
	})
}

func Test_case_77_put_text_plain_reply(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	r := e.c.expect("PUT", pathM, mustJSON(t, map[string]any{"resources": []any{firstResource(t, "pycmbs/post_member.json")}}), 201, "Accept", "text/plain")
	if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if r.header.Get("Location") != e.abs(pathM) {
		t.Fatalf("Location %q", r.header.Get("Location"))
	}
	if want := "Location: " + e.abs(pathM) + "\n"; string(r.body) != want {
		t.Fatalf("body %q, want %q", r.body, want)
	}
}

func Test_case_78_delete_entity(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F4")
	expectEmpty(t, e.c.do("DELETE", pathL2, nil), 200)
	expectError(t, e.c.do("GET", pathL2, nil), 404, pathL2)
	calls := e.rec.take()
	if len(calls) != 1 || calls[0].Op != "delete" || calls[0].Location != pathL2 || calls[0].Entity.ID != l2ID {
		t.Fatalf("provider calls %+v", calls)
	}
	if got := locations(t, e.c.do("GET", "/cmbs/message/l2/", nil)); len(got) != 0 {
		t.Fatalf("l2 still lists %v", got)
	}
}

func Test_case_79_delete_unknown_entity(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F4")
	e.unchanged(func() {
		expectError(t, e.c.do("DELETE", "/cmbs/message/nope", nil), 404, "/cmbs/message/nope")
	})
}

// TestIfMatch checks the revision guard every single-entity write honours.
func TestIfMatch(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	etag := e.c.expect("GET", pathM, nil, 200).header.Get("ETag")
	r := e.c.expect("POST", pathM, []byte(`{"resources":[{"title":"one"}]}`), 201, "If-Match", etag)
	fresh := r.header.Get("ETag")
	if fresh == etag || fresh == "" {
		t.Fatalf("ETag after the update %q (before %q)", fresh, etag)
	}
	desc := mustJSON(t, map[string]any{"resources": []any{firstResource(t, "pycmbs/post_member.json")}})
	for _, tc := range []struct {
		method string
		body   []byte
	}{
		{"POST", []byte(`{"resources":[{"title":"two"}]}`)},
		{"PUT", desc},
		{"DELETE", nil},
	} {
		t.Run(tc.method+"_stale", func(t *testing.T) {
			e.unchanged(func() {
				expectError(t, e.c.do(tc.method, pathM, tc.body, "If-Match", etag), 412, pathM)
			})
		})
	}
	e.c.expect("PUT", pathM, desc, 201, "If-Match", fresh)
	expectError(t, e.c.do("PUT", "/cmbs/member/new", desc, "If-Match", fresh), 412, "/cmbs/member/new")
	e.c.expect("DELETE", pathM, nil, 200, "If-Match", "*")
}

// TestEntityLocationsAreURLs: an entity is always reachable at the location
// the server renders for it, so ids and paths that a URL would have to
// percent-encode are refused rather than stored under an unreachable name.
func TestEntityLocationsAreURLs(t *testing.T) {
	e := newCompat(t, "F1")
	for _, id := range []string{"a b", "x%2Fy", "50%", "t<a>b", "q\""} {
		t.Run("post_"+id, func(t *testing.T) {
			e.unchanged(func() {
				body := mustJSON(t, map[string]any{"resources": []any{map[string]any{"kind": memberKind, "id": id}}})
				expectError(t, e.c.do("POST", "/cmbs/member/", body), 400, "id")
			})
		})
	}
	e.unchanged(func() {
		expectError(t, e.c.do("PUT", "/cmbs/member/a%20b", []byte(`{"resources":[{"kind":"`+memberKind+`"}]}`)), 400, "/cmbs/member/a b")
	})
	// Ids made of URL path characters work, and their location leads back.
	for _, id := range []string{"m-1_2.3~x", "a:b@c", "caf\u00e9"} {
		body := mustJSON(t, map[string]any{"resources": []any{map[string]any{"kind": memberKind, "id": id}}})
		loc := expectJSONOK(t, e.c.do("POST", "/cmbs/member/", body), 201)["Location"].([]any)[0].(string)
		if got := e.c.expect("GET", strings.TrimPrefix(loc, e.base), nil, 200).json(t); got["id"] != id {
			t.Fatalf("%s leads to %v", loc, got["id"])
		}
	}
}
