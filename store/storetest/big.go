package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/store"
)

// bigBody is a document with an array of n elements, an object of n
// members and, when spread, 120 arrays of 100 numbers each: more than a
// store may index of one document (the embedded store caps the
// rows of long arrays, big objects and whole documents).
func bigBody(kind string, n int, spread bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"type":"resource","kind":%q,"n":%d,"topics":[`, kind, n)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"t%d"`, i)
	}
	b.WriteString(`],"result":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":{"v":%d}`, i, i)
	}
	b.WriteString(`}`)
	if spread {
		b.WriteString(`,"many":{`)
		for i := range 120 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"g%d":[`, i)
			for j := range 100 {
				if j > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `%d`, i*100+j)
			}
			b.WriteString(`]`)
		}
		b.WriteString(`}`)
	}
	b.WriteString(`}`)
	return b.String()
}

// testBigDocuments: whatever a store leaves out of its index for a big
// document, Find still finds it by any of its values, and no longer by
// values an update removed.
func testBigDocuments(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	ctx := testContext(t)
	const n = 2500
	mustPut(t, ctx, s, "small", "", `{"type":"resource","kind":"k#small","n":1,"topics":["t1"],"result":{"k1":{"v":1}}}`)
	bigRev := mustPut(t, ctx, s, "big", "", bigBody("k#big", n, false))
	mustPut(t, ctx, s, "spread", "", bigBody("k#spread", n, true))

	find := func(sel string) []string {
		t.Helper()
		docs, err := s.Find(ctx, store.Query{Selector: json.RawMessage(sel)})
		if err != nil {
			t.Fatalf("Find(%s): %v", sel, err)
		}
		ids := make([]string, len(docs))
		for i, d := range docs {
			ids[i] = d.ID
		}
		return ids
	}
	cases := []struct {
		selector string
		want     []string
	}{
		{`{"kind":"k#big"}`, []string{"big"}},
		{`{"kind":{"$in":["k#big","k#spread"]}}`, []string{"big", "spread"}},
		{`{"topics":{"$elemMatch":{"$eq":"t2499"}}}`, []string{"big", "spread"}},
		{`{"topics":{"$all":["t1","t2400"]}}`, []string{"big", "spread"}},
		{`{"topics":{"$all":["t1"]}}`, []string{"big", "small", "spread"}},
		{`{"topics":{"$elemMatch":{"$eq":"t2500"}}}`, nil},
		{`{"result.k2400.v":2400}`, []string{"big", "spread"}},
		{`{"result.k2400.v":{"$gt":2400}}`, nil},
		{`{"result.k1.v":1}`, []string{"big", "small", "spread"}},
		{`{"many.g24":{"$elemMatch":{"$eq":2499}}}`, []string{"spread"}},
		{`{"many.g24":{"$elemMatch":{"$eq":2498}},"kind":"k#big"}`, nil},
		{`{"many.g119":{"$elemMatch":{"$eq":11999}}}`, []string{"spread"}},
		{`{"many.g119":{"$elemMatch":{"$eq":12000}}}`, nil},
		{`{"n":{"$gte":2500}}`, []string{"big", "spread"}},
	}
	for _, c := range cases {
		if got := find(c.selector); !slices.Equal(got, c.want) {
			t.Errorf("Find(%s) = %q, want %q", c.selector, got, c.want)
		}
	}
	// An update to a small document: the values of the big one are gone
	// from the index too.
	mustPut(t, ctx, s, "big", bigRev, `{"type":"resource","kind":"k#big","n":0,"topics":["t2499"]}`)
	for _, c := range []struct {
		selector string
		want     []string
	}{
		{`{"topics":{"$elemMatch":{"$eq":"t2499"}}}`, []string{"big", "spread"}},
		{`{"topics":{"$elemMatch":{"$eq":"t2400"}}}`, []string{"spread"}},
		{`{"result.k2400.v":2400}`, []string{"spread"}},
		{`{"n":{"$gte":2500}}`, []string{"spread"}},
	} {
		if got := find(c.selector); !slices.Equal(got, c.want) {
			t.Errorf("after the update, Find(%s) = %q, want %q", c.selector, got, c.want)
		}
	}
}

// BigBody is the spread document of the big-document test, for tests of a
// store's own index: 2500 topics, 2500 result members, 120 arrays of 100
// numbers.
func BigBody() string { return bigBody("k#spread", 2500, true) }
