package categories_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/feed"
	"github.com/cmbs/cmbs/store/sqlite"
)

// follow gives reg a follower of st's changes feed, stopped at cleanup.
func follow(t *testing.T, st store.Store, reg func() *categories.Registry) {
	t.Helper()
	f, err := feed.New(t.Context(), st, feed.Options{Wait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := reg()
	f.Add("categories", r.ApplyChanges)
	if err := f.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
}

// eventually polls cond (bounded) until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen by the other registry", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Two registries on one store, as two servers on one CouchDB: what one
// registers, binds, updates and deletes is in force in the other once the
// feed has it, and each can then change what the other wrote.
func TestRegistryFollowsChanges(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "cmbs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	opts := categories.Options{KnownProvider: func(n string) bool { return n == "p1" || n == "p2" }}
	newReg := func() *categories.Registry {
		r, err := categories.New(t.Context(), st, opts)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a := newReg()
	var b *categories.Registry
	follow(t, st, func() *categories.Registry { b = newReg(); return b })

	const scheme = "http://example.org/feed#"
	doc := &categories.Document{
		Actions: []map[string]any{{"term": "go", "scheme": scheme}},
		Kinds: []map[string]any{{"term": "thing", "scheme": scheme, "location": "/thing/", "actions": []any{scheme + "go"},
			"attributes": map[string]any{"thing": map[string]any{"size": map[string]any{"type": "number"}}}}},
		Mixins: []map[string]any{{"term": "tag", "scheme": scheme, "location": "/tag/"}},
	}
	if err := a.Register(t.Context(), doc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "registration", func() bool {
		_, k := b.ByLocation("/thing/")
		_, m := b.Get(scheme + "tag")
		_, ac := b.Get(scheme + "go")
		return k && m && ac
	})

	// A binding made on a is b's binding too.
	bind := &categories.Document{Providers: []categories.ProviderBinding{{OCCIID: scheme + "thing", Provider: map[string]any{"local": []any{"p1"}}}}}
	if err := a.Update(t.Context(), bind); err != nil {
		t.Fatal(err)
	}
	eventually(t, "binding", func() bool { return b.ProviderName(scheme+"thing") == "p1" })

	// b changes what a wrote (it holds a's revision), and a follows b only
	// through its own feed, which it has not: b's write must not conflict.
	rebind := &categories.Document{Providers: []categories.ProviderBinding{{OCCIID: scheme + "thing", Provider: map[string]any{"local": []any{"p2"}}}}}
	if err := b.Update(t.Context(), rebind); err != nil {
		t.Fatalf("b rebinding a's kind: %v", err)
	}

	// An attribute set built before a change is dropped with it.
	if _, err := b.AttrSet(scheme+"thing", []string{scheme + "tag"}); err != nil {
		t.Fatal(err)
	}
	// A deletion on a (after a has b's rebinding, through a follower of
	// its own) is a deletion on b.
	follow(t, st, func() *categories.Registry { a = newReg(); return a })
	if err := a.Delete(t.Context(), &categories.Document{Mixins: []map[string]any{{"term": "tag", "scheme": scheme}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deletion", func() bool {
		_, m := b.Get(scheme + "tag")
		_, loc := b.ByLocation("/tag/")
		return !m && !loc
	})
	if _, err := b.AttrSet(scheme+"thing", []string{scheme + "tag"}); err == nil {
		t.Fatal("b still builds attribute sets with the deleted mixin")
	}
	if got := b.All(model.ClassMixin); slices.ContainsFunc(got, func(c *model.Category) bool { return c.ID() == scheme+"tag" }) {
		t.Fatalf("b still lists the deleted mixin: %v", got)
	}
	if b.ProviderName(scheme+"thing") != "p2" || a.ProviderName(scheme+"thing") != "p2" {
		t.Fatalf("bindings: a %q, b %q, want p2 on both", a.ProviderName(scheme+"thing"), b.ProviderName(scheme+"thing"))
	}
}

// Two servers that register two categories with one location at nearly
// the same time (each checks against its own view) agree on which one
// serves it — the smallest id — and on the other once it is deleted; a
// server started afterwards agrees too.
func TestRegistrySettlesLocationClaimedTwice(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "cmbs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	newReg := func() *categories.Registry {
		r, err := categories.New(t.Context(), st, categories.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// a and b register before either follows the feed: neither sees the
	// other's claim when it checks.
	a, b := newReg(), newReg()
	mixin := func(term string) *categories.Document {
		return &categories.Document{Mixins: []map[string]any{{"term": term, "scheme": "http://example.org/clash#", "location": "/clash/"}}}
	}
	if err := b.Register(t.Context(), mixin("zeta")); err != nil {
		t.Fatal(err)
	}
	if err := a.Register(t.Context(), mixin("alpha")); err != nil {
		t.Fatal(err)
	}
	serving := func(r *categories.Registry) string {
		if c, ok := r.ByLocation("/clash/"); ok {
			return c.ID()
		}
		return ""
	}
	// Replay the whole feed to both, as their followers would have.
	all, _, err := st.Changes(t.Context(), store.ChangesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*categories.Registry{a, b} {
		if err := r.ApplyChanges(t.Context(), all); err != nil {
			t.Fatal(err)
		}
	}
	const alpha, zeta = "http://example.org/clash#alpha", "http://example.org/clash#zeta"
	if sa, sb, sc := serving(a), serving(b), serving(newReg()); sa != alpha || sb != alpha || sc != alpha {
		t.Fatalf("/clash/ served by %q on a, %q on b, %q on a new server; want %s on all", sa, sb, sc, alpha)
	}
	if err := a.Delete(t.Context(), mixin("alpha")); err != nil {
		t.Fatal(err)
	}
	more, _, err := st.Changes(t.Context(), store.ChangesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ApplyChanges(t.Context(), more); err != nil {
		t.Fatal(err)
	}
	if sa, sb := serving(a), serving(b); sa != zeta || sb != zeta {
		t.Fatalf("after alpha's deletion /clash/ is served by %q on a, %q on b; want %s", sa, sb, zeta)
	}
}
