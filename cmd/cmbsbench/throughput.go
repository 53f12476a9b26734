package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	kivik "github.com/go-kivik/kivik/v4"
	"github.com/go-kivik/kivik/v4/couchdb"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/store/couch"
)

// benchCouch returns the CouchDB a benchmark uses: cfg.couchURL, or else
// a CouchDB-API test peer started for it, which stop stops.
func benchCouch(ctx context.Context, cfg config) (url string, stop func(), err error) {
	if cfg.couchURL != "" {
		return cfg.couchURL, func() {}, nil
	}
	peer, err := couchpeer.Start(ctx, couchpeer.Options{})
	if err != nil {
		return "", nil, fmt.Errorf("start the CouchDB-API test peer (run testdata/couchpeer/install.sh, or pass -couch URL): %w", err)
	}
	return peer.URL(), func() { peer.Stop() }, nil
}

// benchThroughput compares OCCI create/get (HTTP → cmbs → CouchDB) with raw
// kivik Put/Get of the same documents on the same CouchDB, both at
// cfg.clients concurrent clients.
func benchThroughput(ctx context.Context, cfg config, log *slog.Logger, out func(string, ...any), results map[string]any) error {
	url, stopPeer, err := benchCouch(ctx, cfg)
	if err != nil {
		return err
	}
	defer stopPeer()
	if cfg.couchURL == "" {
		out("   CouchDB-API test peer at %s", url)
	} else {
		out("   CouchDB at %s", url)
	}
	suffix := fmt.Sprintf("%d", rand.Int64N(1<<40))

	// Raw kivik, the baseline, with the same client settings the store uses
	// (kivik gzips request bodies by default, which would handicap it).
	client, err := kivik.New("couch", url,
		couchdb.OptionHTTPClient(&http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: cfg.clients * 2, DisableCompression: true},
		}),
		couchdb.OptionNoRequestCompression())
	if err != nil {
		return err
	}
	defer client.Close()
	docs := make([]json.RawMessage, cfg.docs)
	ids := make([]string, cfg.docs)
	bodies := make([][]byte, cfg.docs)
	for i := range docs {
		e := benchEntity(i, fmt.Sprintf("g%d", i%100))
		ids[i] = e.Location
		if docs[i], err = json.Marshal(e); err != nil {
			return err
		}
		bodies[i] = entityBody(e)
	}
	dbName := func(kind string, round int) string { return fmt.Sprintf("bench_%s_%s_%d", kind, suffix, round) }
	defer func() {
		for round := 0; round < 2; round++ {
			_ = client.DestroyDB(context.WithoutCancel(ctx), dbName("raw", round))
			_ = client.DestroyDB(context.WithoutCancel(ctx), dbName("occi", round))
		}
	}()

	// raw runs the baseline on a fresh database: put every document, then get it.
	raw := func(round int) (put, get time.Duration, err error) {
		name := dbName("raw", round)
		if err := client.CreateDB(ctx, name); err != nil {
			return 0, 0, fmt.Errorf("create %s: %w", name, err)
		}
		db := client.DB(name)
		if put, err = runWorkers(ctx, cfg.docs, cfg.clients, func(ctx context.Context, i int) error {
			_, err := db.Put(ctx, ids[i], docs[i])
			return err
		}); err != nil {
			return 0, 0, fmt.Errorf("raw put: %w", err)
		}
		if get, err = runWorkers(ctx, cfg.docs, cfg.clients, func(ctx context.Context, i int) error {
			var doc map[string]any
			return db.Get(ctx, ids[i]).ScanDoc(&doc)
		}); err != nil {
			return 0, 0, fmt.Errorf("raw get: %w", err)
		}
		return put, get, nil
	}
	// viaOCCI does the same through a cmbs server on its own fresh database.
	viaOCCI := func(round int) (create, get time.Duration, err error) {
		st, err := couch.Open(ctx, url, dbName("occi", round), couch.WithLogger(log))
		if err != nil {
			return 0, 0, err
		}
		defer st.Close()
		srv, err := startServer(ctx, st, cfg.clients, log)
		if err != nil {
			return 0, 0, err
		}
		defer srv.close()
		if _, err := srv.do(ctx, "POST", "/-/", []byte(benchKind), 200); err != nil {
			return 0, 0, err
		}
		if create, err = runWorkers(ctx, cfg.docs, cfg.clients, func(ctx context.Context, i int) error {
			_, err := srv.do(ctx, "POST", "/vm/", bodies[i], http.StatusCreated)
			return err
		}); err != nil {
			return 0, 0, fmt.Errorf("OCCI create: %w", err)
		}
		if get, err = runWorkers(ctx, cfg.docs, cfg.clients, func(ctx context.Context, i int) error {
			body, err := srv.do(ctx, "GET", ids[i], nil, http.StatusOK)
			if err != nil {
				return err
			}
			// Decode as the raw side's ScanDoc does, so both pay for it.
			var doc map[string]any
			return json.Unmarshal(body, &doc)
		}); err != nil {
			return 0, 0, fmt.Errorf("OCCI get: %w", err)
		}
		return create, get, nil
	}
	// ABBA order, so drift in the peer (memory growth, load from elsewhere)
	// weighs on both sides alike.
	var rawPut, rawGet, occiCreate, occiGet time.Duration
	for _, step := range []struct {
		occi  bool
		round int
	}{{false, 0}, {true, 0}, {true, 1}, {false, 1}} {
		var a, b time.Duration
		if step.occi {
			a, b, err = viaOCCI(step.round)
			occiCreate, occiGet = occiCreate+a, occiGet+b
		} else {
			a, b, err = raw(step.round)
			rawPut, rawGet = rawPut+a, rawGet+b
		}
		if err != nil {
			return err
		}
	}
	n := 2 * cfg.docs

	report := func(name string, n int, raw, occiD time.Duration) float64 {
		r, o := perSecond(n, raw), perSecond(n, occiD)
		out("   %-6s raw kivik %8.0f/s   OCCI %8.0f/s   ratio %.2f (goal ≥ 0.8)", name, r, o, o/r)
		results["raw_"+name+"_per_s"] = r
		results["occi_"+name+"_per_s"] = o
		return o / r
	}
	results["create_vs_raw"] = report("create", n, rawPut, occiCreate)
	results["get_vs_raw"] = report("get", n, rawGet, occiGet)
	results["throughput_docs"] = cfg.docs
	return nil
}
