package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/cmbs/cmbs/store"
)

// findFixtures are OCCI-shaped documents. Every document has type, kind,
// title and n, because CouchDB and PouchDB disagree on whether negations
// ($ne, $nin, $not, $nor) match a document that lacks the field.
var findFixtures = []struct{ id, body string }{
	// Inserted out of _id order, to test the default order.
	{"e3", `{"type":"resource","kind":"k#storage","mixins":[],"title":"gamma","n":3,
		"attributes":{"a":{"b":3,"s":"z"},"cmbs":{"member":{"l3":{"1_socket":"tcp://1"}}}},
		"tags":["red"],"links":[{"target":"/e1","w":2},{"target":"/e2","w":3}]}`},
	{"e1", `{"type":"resource","kind":"k#compute","mixins":["m#a","m#b"],"title":"alpha","n":1,
		"attributes":{"a":{"b":1,"s":"x"},"cmbs":{"member":{"l3.1_socket":"tcp://1"}}},
		"tags":["red","green"],"links":[{"target":"/e2","w":1}]}`},
	{"e5", `{"type":"link","kind":"k#net","mixins":["m#c"],"title":"epsilon","n":5.5,
		"attributes":{},"mixin":"m#a","tags":[],"links":[]}`},
	{"e2", `{"type":"resource","kind":"k#compute","mixins":["m#b"],"title":"beta","n":2,
		"attributes":{"a":{"b":2,"s":"y"}},"tags":["blue"],"links":[]}`},
	{"e4", `{"type":"link","kind":"k#net","mixins":["m#a"],"title":"delta","n":4,
		"attributes":{"a":{"b":"1","s":"x"}},"tags":["red","green","blue"],"links":[]}`},
}

// deletedFixture matches many selectors but is deleted before any query.
const deletedFixture = `{"type":"resource","kind":"k#compute","mixins":["m#a","m#b"],"title":"alpha","n":1,
	"attributes":{"a":{"b":1,"s":"x"}},"tags":["red","green","blue"],"links":[{"target":"/e2","w":3}],"mixin":"m#a"}`

// loadFindFixtures stores findFixtures (and deletes "e0") and returns the
// revisions by id.
func loadFindFixtures(t *testing.T, ctx context.Context, s store.Store) map[string]string {
	t.Helper()
	revs := make(map[string]string)
	rev := mustPut(t, ctx, s, "e0", "", deletedFixture)
	for _, f := range findFixtures {
		revs[f.id] = mustPut(t, ctx, s, f.id, "", f.body)
	}
	mustDelete(t, ctx, s, "e0", rev)
	return revs
}

func testFind(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	ctx := testContext(t)
	revs := loadFindFixtures(t, ctx, s)

	all := []string{"e1", "e2", "e3", "e4", "e5"}
	cases := []struct {
		name     string
		selector string
		want     []string
	}{
		{"Empty", `{}`, all},
		{"Null", ``, all},
		{"Equality", `{"type":"resource"}`, []string{"e1", "e2", "e3"}},
		{"TwoFields", `{"type":"resource","kind":"k#compute"}`, []string{"e1", "e2"}},
		{"NestedObject", `{"attributes":{"a":{"b":1}}}`, []string{"e1"}},
		{"DottedPath", `{"attributes.a.b":1}`, []string{"e1"}},
		{"DottedPathString", `{"attributes.a.s":"x"}`, []string{"e1", "e4"}},
		{"NumberIsNotString", `{"attributes.a.b":"1"}`, []string{"e4"}},
		{"EscapedDot", `{"attributes.cmbs.member.l3\\.1_socket":"tcp://1"}`, []string{"e1"}},
		{"UnescapedDot", `{"attributes.cmbs.member.l3.1_socket":"tcp://1"}`, []string{"e3"}},
		{"Eq", `{"n":{"$eq":3}}`, []string{"e3"}},
		{"Ne", `{"type":{"$ne":"resource"}}`, []string{"e4", "e5"}},
		{"Gt", `{"n":{"$gt":3}}`, []string{"e4", "e5"}},
		{"Gte", `{"n":{"$gte":3}}`, []string{"e3", "e4", "e5"}},
		{"Lt", `{"n":{"$lt":2}}`, []string{"e1"}},
		{"Lte", `{"n":{"$lte":2}}`, []string{"e1", "e2"}},
		{"Float", `{"n":5.5}`, []string{"e5"}},
		{"Range", `{"n":{"$gt":1,"$lt":4}}`, []string{"e2", "e3"}},
		{"StringRange", `{"title":{"$gte":"beta","$lt":"epsilon"}}`, []string{"e2", "e4"}},
		// CouchDB collation puts every string after every number.
		{"GtAcrossTypes", `{"attributes.a.b":{"$gt":2}}`, []string{"e3", "e4"}},
		{"In", `{"kind":{"$in":["k#storage","k#net"]}}`, []string{"e3", "e4", "e5"}},
		{"InArrayField", `{"tags":{"$in":["blue"]}}`, []string{"e2", "e4"}},
		{"Nin", `{"kind":{"$nin":["k#compute","k#net"]}}`, []string{"e3"}},
		{"ExistsTrue", `{"mixin":{"$exists":true}}`, []string{"e5"}},
		{"ExistsFalse", `{"mixin":{"$exists":false}}`, []string{"e1", "e2", "e3", "e4"}},
		{"Regex", `{"title":{"$regex":"^(al|ga)"}}`, []string{"e1", "e3"}},
		// Equality with an array field compares the whole array, as in CouchDB.
		{"EqualityIsNotMembership", `{"mixins":"m#a"}`, nil},
		{"EqualityWholeArray", `{"mixins":["m#b"]}`, []string{"e2"}},
		{"ScalarBesideArray", `{"mixin":"m#a"}`, []string{"e5"}},
		{"ElemMatchScalar", `{"mixins":{"$elemMatch":{"$eq":"m#a"}}}`, []string{"e1", "e4"}},
		{"ElemMatchObject", `{"links":{"$elemMatch":{"target":"/e2","w":{"$gte":2}}}}`, []string{"e3"}},
		{"All", `{"tags":{"$all":["red","green"]}}`, []string{"e1", "e4"}},
		{"AllOne", `{"mixins":{"$all":["m#a"]}}`, []string{"e1", "e4"}},
		{"Size", `{"tags":{"$size":1}}`, []string{"e2", "e3"}},
		{"And", `{"$and":[{"type":"resource"},{"n":{"$gt":1}}]}`, []string{"e2", "e3"}},
		{"Or", `{"$or":[{"kind":"k#storage"},{"n":5.5}]}`, []string{"e3", "e5"}},
		{"OrMixed", `{"$or":[{"tags":{"$elemMatch":{"$eq":"blue"}}},{"attributes.a.s":"z"}]}`, []string{"e2", "e3", "e4"}},
		{"Nor", `{"$nor":[{"type":"resource"},{"title":"epsilon"}]}`, []string{"e4"}},
		{"Not", `{"$not":{"type":"resource"}}`, []string{"e4", "e5"}},
		{"Combined", `{"type":"resource","mixins":{"$all":["m#b"]},"n":{"$lt":3}}`, []string{"e1", "e2"}},
		{"NoMatch", `{"kind":"nope"}`, nil},
		{"UnknownField", `{"nosuchfield":1}`, nil},
		{"ID", `{"_id":"e2"}`, []string{"e2"}},
		{"IDRange", `{"_id":{"$gt":"e2","$lte":"e4"}}`, []string{"e3", "e4"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			docs := mustFind(t, ctx, s, store.Query{Selector: json.RawMessage(c.selector)})
			if got := ids(docs); !slices.Equal(got, c.want) && (len(got) > 0 || len(c.want) > 0) {
				t.Fatalf("Find(%s) = %q, want %q", c.selector, got, c.want)
			}
			for _, d := range docs {
				if d.Rev != revs[d.ID] {
					t.Fatalf("Find(%s): %s has rev %q, want %q", c.selector, d.ID, d.Rev, revs[d.ID])
				}
				for _, f := range findFixtures {
					if f.id == d.ID {
						checkBody(t, d.Body, f.body)
					}
				}
			}
		})
	}

	invalid := []struct{ name, selector string }{
		{"UnknownFieldOperator", `{"n":{"$foo":1}}`},
		{"UnknownTopOperator", `{"$foo":[{"n":1}]}`},
		{"InNotArray", `{"n":{"$in":1}}`},
		{"OrNotArray", `{"$or":{"n":1}}`},
		{"NotAnObject", `[{"n":1}]`},
		{"Malformed", `{"n":`},
		// Both stores parse selectors with store/mango: an operator newer
		// than CouchDB 3.3 and PCRE-only regular expressions are refused
		// by each, not only by the one that would evaluate them.
		{"BeginsWith", `{"title":{"$beginsWith":"al"}}`},
		{"RegexLookahead", `{"title":{"$regex":"^(?=a)"}}`},
		{"RegexBackreference", `{"title":{"$regex":"(a)\\1"}}`},
		{"RegexBad", `{"title":{"$regex":"("}}`},
		{"SizeFraction", `{"tags":{"$size":1.5}}`},
		{"EmptyFieldSegment", `{"a..b":1}`},
	}
	for _, c := range invalid {
		t.Run("Invalid"+c.name, func(t *testing.T) {
			_, err := s.Find(ctx, store.Query{Selector: json.RawMessage(c.selector)})
			checkErr(t, fmt.Sprintf("Find(%s)", c.selector), err, store.ErrInvalid)
		})
	}
}

func testFindOrder(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	ctx := testContext(t)
	loadFindFixtures(t, ctx, s)
	// CouchDB can only sort on indexed fields the selector constrains.
	for name, field := range map[string]string{"by-n": "n", "by-title": "title"} {
		if err := s.EnsureIndex(ctx, name, []string{field}); err != nil {
			t.Fatalf("EnsureIndex(%s): %v", name, err)
		}
	}
	byN := `{"n":{"$gt":0}}`
	asc := []store.SortField{{Field: "n"}}
	desc := []store.SortField{{Field: "n", Desc: true}}
	cases := []struct {
		name string
		q    store.Query
		want []string
	}{
		{"DefaultOrderIsID", store.Query{}, []string{"e1", "e2", "e3", "e4", "e5"}},
		{"DefaultOrderLimit", store.Query{Limit: 2}, []string{"e1", "e2"}},
		{"DefaultOrderSkip", store.Query{Skip: 3}, []string{"e4", "e5"}},
		{"DefaultOrderSkipLimit", store.Query{Skip: 1, Limit: 1}, []string{"e2"}},
		{"SkipPastEnd", store.Query{Skip: 10}, nil},
		{"SelectorLimit", store.Query{Selector: json.RawMessage(`{"type":"resource"}`), Limit: 2}, []string{"e1", "e2"}},
		{"SelectorSkip", store.Query{Selector: json.RawMessage(`{"type":"resource"}`), Skip: 1}, []string{"e2", "e3"}},
		{"SortAsc", store.Query{Selector: json.RawMessage(byN), Sort: asc}, []string{"e1", "e2", "e3", "e4", "e5"}},
		{"SortDesc", store.Query{Selector: json.RawMessage(byN), Sort: desc}, []string{"e5", "e4", "e3", "e2", "e1"}},
		{"SortDescLimit", store.Query{Selector: json.RawMessage(byN), Sort: desc, Limit: 2}, []string{"e5", "e4"}},
		{"SortAscSkipLimit", store.Query{Selector: json.RawMessage(byN), Sort: asc, Skip: 1, Limit: 2}, []string{"e2", "e3"}},
		{"SortFiltered", store.Query{Selector: json.RawMessage(`{"n":{"$gt":1},"type":"resource"}`), Sort: desc}, []string{"e3", "e2"}},
		{"SortString", store.Query{Selector: json.RawMessage(`{"title":{"$gt":""}}`), Sort: []store.SortField{{Field: "title"}}},
			[]string{"e1", "e2", "e4", "e5", "e3"}},
		{"SortStringDesc", store.Query{Selector: json.RawMessage(`{"title":{"$gt":""}}`), Sort: []store.SortField{{Field: "title", Desc: true}}},
			[]string{"e3", "e5", "e4", "e2", "e1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ids(mustFind(t, ctx, s, c.q))
			if !slices.Equal(got, c.want) && (len(got) > 0 || len(c.want) > 0) {
				t.Fatalf("Find(%+v) = %q, want %q", c.q, got, c.want)
			}
		})
	}

	t.Run("NoLimitReturnsAll", func(t *testing.T) {
		// More than CouchDB's default _find limit of 25.
		s := open(t)
		ctx := testContext(t)
		var want []string
		for i := 59; i >= 0; i-- {
			id := fmt.Sprintf("doc-%02d", i)
			mustPut(t, ctx, s, id, "", fmt.Sprintf(`{"type":"bulk","i":%d}`, i))
			want = append(want, id)
		}
		slices.Sort(want)
		for _, sel := range []string{`{}`, `{"type":"bulk"}`} {
			got := ids(mustFind(t, ctx, s, store.Query{Selector: json.RawMessage(sel)}))
			if !slices.Equal(got, want) {
				t.Fatalf("Find(%s) returned %d documents %q, want all %d in _id order", sel, len(got), got, len(want))
			}
		}
	})
}

func testEnsureIndex(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	ctx := testContext(t)
	mustPut(t, ctx, s, "a", "", `{"type":"resource","attributes":{"occi.compute.cores":4}}`)
	mustPut(t, ctx, s, "b", "", `{"type":"resource","attributes":{"occi.compute.cores":2}}`)
	steps := []struct {
		name   string
		index  string
		fields []string
	}{
		{"Create", "by-type", []string{"type"}},
		{"SameAgain", "by-type", []string{"type"}},
		{"Another", "by-cores", []string{`attributes.occi\.compute\.cores`}},
		{"AnotherAgain", "by-cores", []string{`attributes.occi\.compute\.cores`}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := s.EnsureIndex(ctx, st.index, st.fields); err != nil {
				t.Fatalf("EnsureIndex(%q, %q): %v", st.index, st.fields, err)
			}
		})
	}
	got := ids(mustFind(t, ctx, s, store.Query{
		Selector: json.RawMessage(`{"attributes.occi\\.compute\\.cores":{"$gt":1}}`),
		Sort:     []store.SortField{{Field: `attributes.occi\.compute\.cores`}},
	}))
	if !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("sorted Find on the indexed field = %q, want [b a]", got)
	}
}
