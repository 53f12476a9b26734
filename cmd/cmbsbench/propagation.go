package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"time"

	kivik "github.com/go-kivik/kivik/v4"
	_ "github.com/go-kivik/kivik/v4/couchdb" // the "couch" driver

	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/store/couch"
	"github.com/cmbs/cmbs/store/feed"
)

// benchPropagation measures how long a category registered through one
// server takes to be in force in another server's registry when both serve
// one CouchDB database and follow its changes feed, wired as cmbsd wires
// them. Goal: p99 ≤ 1000 ms.
func benchPropagation(ctx context.Context, cfg config, log *slog.Logger, out func(string, ...any), results map[string]any) error {
	url, stopPeer, err := benchCouch(ctx, cfg)
	if err != nil {
		return err
	}
	defer stopPeer()
	db := fmt.Sprintf("bench_feed_%d", rand.Int64N(1<<40))
	defer func() {
		if client, err := kivik.New("couch", url); err == nil {
			_ = client.DestroyDB(context.WithoutCancel(ctx), db)
			_ = client.Close()
		}
	}()

	type server struct {
		srv  *benchServer
		occi *occi.Server
	}
	var servers []server
	for range 2 {
		st, err := couch.Open(ctx, url, db, couch.WithLogger(log))
		if err != nil {
			return err
		}
		defer st.Close()
		f, err := feed.New(ctx, st, feed.Options{Logger: log})
		if err != nil {
			return err
		}
		srv, o, err := startServerWith(ctx, st, cfg.clients, log, nil)
		if err != nil {
			return err
		}
		defer srv.close()
		f.Add("categories", o.Categories().ApplyChanges)
		if err := f.Start(ctx); err != nil {
			return err
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = f.Stop(stopCtx)
		}()
		servers = append(servers, server{srv, o})
	}

	n := map[bool]int{true: 30, false: 200}[cfg.quick]
	delays := make([]time.Duration, 0, n)
	for i := range n {
		// Alternate the writer, so both directions are measured.
		from, to := servers[i%2], servers[(i+1)%2]
		term := fmt.Sprintf("m%d", i)
		body := fmt.Sprintf(`{"mixins":[{"term":%q,"scheme":"http://bench.cmbs.example/feed#","location":"/feed/%s/"}]}`, term, term)
		if _, err := from.srv.do(ctx, "POST", "/-/", []byte(body), 200); err != nil {
			return err
		}
		// The registration is answered once stored: the delay is counted
		// from the answer, when the writer's client knows it is done.
		start := time.Now()
		id := "http://bench.cmbs.example/feed#" + term
		deadline := start.Add(30 * time.Second)
		for {
			if _, ok := to.occi.Categories().Get(id); ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not seen by the other server within 30 s", id)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Microsecond):
			}
		}
		delays = append(delays, time.Since(start))
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	p50, p99 := delays[len(delays)/2], delays[(len(delays)*99)/100]
	out("   %d categories, registered alternately on two servers: seen by the other p50 %.1f ms, p99 %.1f ms, max %.1f ms (goal p99 ≤ 1000)",
		n, ms(p50), ms(p99), ms(delays[len(delays)-1]))
	results["cache_propagation_ms"] = ms(p99)
	results["cache_propagation_p50_ms"] = ms(p50)
	results["cache_propagation_samples"] = n

	// What following costs writers: entity creates through a server whose
	// database two followers read (the two above), against creates on a
	// database nobody follows, alternately (ABBA) against the same CouchDB.
	plainSt, err := couch.Open(ctx, url, db+"_plain", couch.WithLogger(log))
	if err != nil {
		return err
	}
	defer func() {
		_ = plainSt.Close()
		if client, err := kivik.New("couch", url); err == nil {
			_ = client.DestroyDB(context.WithoutCancel(ctx), db+"_plain")
			_ = client.Close()
		}
	}()
	plain, err := startServer(ctx, plainSt, cfg.clients, log)
	if err != nil {
		return err
	}
	defer plain.close()
	followed := servers[0].srv
	for _, s := range []*benchServer{plain, followed} {
		if _, err := s.do(ctx, "POST", "/-/", []byte(benchKind), 200); err != nil {
			return err
		}
	}
	docs := cfg.docs / 2
	var plainD, followedD time.Duration
	for round, s := range []*benchServer{plain, followed, followed, plain} {
		d, err := runWorkers(ctx, docs, cfg.clients, func(ctx context.Context, i int) error {
			e := benchEntity(round*docs+i, "feed")
			body := fmt.Sprintf(`{"resources":[{"kind":%q,"id":%q,"attributes":{"bench":{"vm":{"group":"feed","n":%d}}}}]}`, e.Kind, e.ID, i)
			_, err := s.do(ctx, "POST", "/vm/", []byte(body), 201)
			return err
		})
		if err != nil {
			return fmt.Errorf("creates: %w", err)
		}
		if s == plain {
			plainD += d
		} else {
			followedD += d
		}
	}
	ratio := perSecond(2*docs, followedD) / perSecond(2*docs, plainD)
	out("   creates with two servers following the database %.0f/s, with none %.0f/s: ratio %.2f",
		perSecond(2*docs, followedD), perSecond(2*docs, plainD), ratio)
	results["feed_create_overhead"] = ratio
	return nil
}
