package occi_test

// pyOCNI compatibility cases: actions, with the recording provider bound to
// the CMBS kinds.

import (
	"context"
	"net/url"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/sqlite"
)

func Test_case_80_entity_action(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	expectEmpty(t, e.c.do("POST", pathM+"?action=start_l1", fixture(t, "pycmbs/action_start_l1_member.json")), 200)
	calls := e.rec.take()
	if len(calls) != 1 {
		t.Fatalf("provider calls %+v", calls)
	}
	c := calls[0]
	if c.Op != "action" || c.Provider != "cmbs_member" || c.Term != "start_l1" || c.Location != pathM || len(c.Attrs) != 0 {
		t.Fatalf("call %+v", c)
	}
	if c.Entity.ID != memberID || c.Entity.Attributes["cmbs"].(map[string]any)["member"].(map[string]any)["local"] != "true" {
		t.Fatalf("the action did not get the member's description: %+v", c.Entity)
	}
	// The full action id works as well as the term.
	expectEmpty(t, e.c.do("POST", pathM+"?action="+url.QueryEscape(memberAction+"start_l2"), []byte(`{}`)), 200)
	if calls := e.rec.take(); len(calls) != 1 || calls[0].Term != memberAction+"start_l2" {
		t.Fatalf("calls %+v", calls)
	}
}

func Test_case_81_action_attributes(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	expectEmpty(t, e.c.do("POST", pathM+"?action=start_l1", []byte(`{"attributes":{"x":1}}`)), 200)
	calls := e.rec.take()
	if len(calls) != 1 || !reflect.DeepEqual(calls[0].Attrs, map[string]any{"x": 1.0}) {
		t.Fatalf("calls %+v", calls)
	}
	// The README's shape, with the action named in the body too.
	expectEmpty(t, e.c.do("POST", pathM+"?action=start_l1", []byte(`{"action":"`+memberAction+`start_l1","attributes":{"y":"z"}}`)), 200)
	if calls := e.rec.take(); len(calls) != 1 || !reflect.DeepEqual(calls[0].Attrs, map[string]any{"y": "z"}) {
		t.Fatalf("calls %+v", calls)
	}
	// A provider result is returned as JSON.
	e.rec.setResult(func(_ *model.Entity, inv providers.Invocation) (any, error) {
		return map[string]any{"term": inv.Term}, nil
	})
	if got := expectJSONOK(t, e.c.do("POST", pathM+"?action=start_l2", []byte(`{}`)), 200); !reflect.DeepEqual(got, map[string]any{"term": "start_l2"}) {
		t.Fatalf("result %v", got)
	}
}

func Test_case_82_undeclared_action(t *testing.T) {
	e := newCompat(t, "F1", "F2", "F3", "F4")
	for name, path := range map[string]string{
		"unknown":             pathM + "?action=does_not_exist",
		"other_kinds_action":  pathM + "?action=send_l1",
		"other_mixins_action": pathL2 + "?action=send_l1",
		"empty":               pathM + "?action=",
	} {
		t.Run(name, func(t *testing.T) {
			e.unchanged(func() {
				expectError(t, e.c.do("POST", path, []byte(`{}`)), 400, "action")
			})
			if calls := e.rec.take(); len(calls) != 0 {
				t.Fatalf("provider called: %+v", calls)
			}
		})
	}
	// A mixin's action is declared for its members.
	expectEmpty(t, e.c.do("POST", pathL1+"?action=send_l1", []byte(`{}`)), 200)
	if calls := e.rec.take(); len(calls) != 1 || calls[0].Provider != "cmbs_message" {
		t.Fatalf("calls %+v", calls)
	}
}

func Test_case_83_action_on_unknown_entity(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	expectError(t, e.c.do("POST", "/cmbs/member/nope?action=start_l1", []byte(`{}`)), 404, "/cmbs/member/nope")
	if calls := e.rec.take(); len(calls) != 0 {
		t.Fatalf("provider called: %+v", calls)
	}
}

func Test_case_84_action_with_empty_body(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	for _, ct := range []string{"application/occi+json", "text/plain", ""} {
		t.Run("type_"+ct, func(t *testing.T) {
			expectEmpty(t, e.c.do("POST", pathM+"?action=start_l1", nil, "Content-Type", ct), 200)
			if calls := e.rec.take(); len(calls) != 1 || len(calls[0].Attrs) != 0 {
				t.Fatalf("calls %+v", calls)
			}
		})
	}
}

func Test_case_85_provider_not_available(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dbPath := filepath.Join(t.TempDir(), "cmbs.db")
	open := func() store.Store {
		st, err := sqlite.Open(ctx, dbPath)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	// A first server binds the kinds to the recording provider and stores a
	// member; its cleanup closes the store when the subtest ends.
	t.Run("bind", func(t *testing.T) {
		rec := &recorder{}
		srv := testserver.Start(t, testserver.Options{Store: open(), Register: rec.register})
		c := newClient(t, srv.URL)
		c.expect("POST", "/-/", fixture(t, "pycmbs/post_category_cmbs_member.json"), 200)
		c.expect("PUT", "/-/", fixture(t, "pycmbs/put_provider_cmbs_member.json"), 200)
		c.expect("POST", "/cmbs/member/", fixture(t, "pycmbs/post_member.json"), 201)
	})

	// The same store, served by a server without that provider.
	srv := testserver.Start(t, testserver.Options{Store: open()})
	e := &compatEnv{t: t, srv: srv, c: newClient(t, srv.URL), rec: &recorder{}, base: srv.URL}
	e.c.expect("GET", pathM, nil, 200) // stored data is still served
	t.Run("action", func(t *testing.T) {
		e.unchanged(func() {
			expectError(t, e.c.do("POST", pathM+"?action=start_l1", []byte(`{}`)), 501, "cmbs_member")
		})
	})
	t.Run("collection_post", func(t *testing.T) {
		e.unchanged(func() {
			expectError(t, e.c.do("POST", "/cmbs/member/", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"n1","attributes":{}},
				{"kind":"http://houssem.org/cmbs#member","id":"n2","attributes":{}}]}`)), 501, "cmbs_member")
		})
	})
	t.Run("update_and_delete", func(t *testing.T) {
		e.unchanged(func() {
			expectError(t, e.c.do("POST", pathM, []byte(`{"resources":[{"title":"x"}]}`)), 501, "cmbs_member")
			expectError(t, e.c.do("DELETE", pathM, nil), 501, "cmbs_member")
		})
	})
	t.Run("rebinding_refused", func(t *testing.T) {
		e.unchanged(func() {
			expectError(t, e.c.do("PUT", "/-/", fixture(t, "pycmbs/put_provider_cmbs_member.json")), 400, "cmbs_member")
		})
	})
}
