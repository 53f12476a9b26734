package couch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	kivik "github.com/go-kivik/kivik/v4"
	"github.com/go-kivik/kivik/v4/couchdb"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/couch"
)

// benchBody is an OCCI entity of typical size.
const benchBody = `{"type":"resource","kind":"http://schemas.ogf.org/occi/infrastructure#compute",` +
	`"mixins":["http://cmbs/occi#member"],"title":"node 1","summary":"",` +
	`"attributes":{"occi":{"compute":{"cores":4,"memory":8.5,"hostname":"n1"}},` +
	`"cmbs":{"member":{"l1_socket":"tcp://10.0.0.1:5555","l3.1_socket":"tcp://10.0.0.1:5556"}}},"links":[]}`

// BenchmarkStore compares the store's Put and Get with plain kivik calls on
// the same server, the way the OCCI benchmark does (goal: ≥ 0.8× kivik).
func BenchmarkStore(b *testing.B) {
	base := couchServer.URL(b)
	ctx := context.Background()

	b.Run("store", func(b *testing.B) {
		s := openFresh(b)
		b.Run("Put", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := s.Put(ctx, store.Document{ID: fmt.Sprintf("/cmbs/p/%d", i), Body: json.RawMessage(benchBody)}); err != nil {
					b.Fatal(err)
				}
			}
		})
		if _, err := s.Put(ctx, store.Document{ID: "/cmbs/g", Body: json.RawMessage(benchBody)}); err != nil {
			b.Fatal(err)
		}
		b.Run("Get", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Get(ctx, "/cmbs/g"); err != nil {
					b.Fatal(err)
				}
			}
		})
	})

	raw := func(name string, opts ...kivik.Option) {
		b.Run(name, func(b *testing.B) {
			client, err := kivik.New("couch", base, opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			dbName := couchpeer.DBForTest(b, base)
			if err := client.CreateDB(ctx, dbName); err != nil {
				b.Fatal(err)
			}
			db := client.DB(dbName)
			b.Run("Put", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					if _, err := db.Put(ctx, fmt.Sprintf("/cmbs/p/%d", i), json.RawMessage(benchBody)); err != nil {
						b.Fatal(err)
					}
				}
			})
			if _, err := db.Put(ctx, "/cmbs/g", json.RawMessage(benchBody)); err != nil {
				b.Fatal(err)
			}
			b.Run("Get", func(b *testing.B) {
				for b.Loop() {
					var doc map[string]any
					if err := db.Get(ctx, "/cmbs/g").ScanDoc(&doc); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
	defaultTransport := http.DefaultTransport.(*http.Transport)
	b.Cleanup(defaultTransport.CloseIdleConnections)
	raw("kivik-defaults")
	tr := defaultTransport.Clone()
	tr.DisableCompression = true
	b.Cleanup(tr.CloseIdleConnections)
	raw("kivik-nogzip", couchdb.OptionHTTPClient(&http.Client{Transport: tr}), couchdb.OptionNoRequestCompression())
}

// BenchmarkClientOverhead measures the Go side alone, against a server that
// answers at once: what the store adds to kivik, and what kivik's default
// request gzip costs.
func BenchmarkClientOverhead(b *testing.B) {
	doc := []byte(`{"_id":"/cmbs/g","_rev":"1-abc",` + benchBody[1:])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("ETag", `"1-abc"`)
			_, _ = w.Write(doc)
		case http.MethodPut:
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"ok":true,"id":"/cmbs/g","rev":"1-abc"}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	s, err := couch.Open(ctx, srv.URL, "db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.Run("store/Get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Get(ctx, "/cmbs/g"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store/Put", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Put(ctx, store.Document{ID: "/cmbs/g", Body: json.RawMessage(benchBody)}); err != nil {
				b.Fatal(err)
			}
		}
	})

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableCompression = true
	defer tr.CloseIdleConnections()
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	for _, c := range []struct {
		name string
		opts []kivik.Option
	}{
		{"kivik-defaults", nil},
		{"kivik-nogzip", []kivik.Option{couchdb.OptionHTTPClient(&http.Client{Transport: tr}), couchdb.OptionNoRequestCompression()}},
	} {
		client, err := kivik.New("couch", srv.URL, c.opts...)
		if err != nil {
			b.Fatal(err)
		}
		db := client.DB("db")
		b.Run(c.name+"/Get", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var raw json.RawMessage
				if err := db.Get(ctx, "/cmbs/g").ScanDoc(&raw); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/Put", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := db.Put(ctx, "/cmbs/g", json.RawMessage(benchBody)); err != nil {
					b.Fatal(err)
				}
			}
		})
		_ = client.Close()
	}
}
