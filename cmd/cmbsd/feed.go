package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/feed"
)

// membersMaxAgeExact is how long the broker keeps its member list when it
// is kept exact otherwise (the changes feed on CouchDB; on the embedded
// store, the broker seeing every change): only a safety net then.
const membersMaxAgeExact = time.Minute

// newFollower marks the store's position in its changes feed, before the
// caches load, when the store can be shared: with CouchDB several cmbsd may
// serve one database, and every cache that mirrors the store follows the
// feed. The embedded store is single-process (its lock says so): nil.
func newFollower(ctx context.Context, cfg config, st store.Store, logger *slog.Logger) (*feed.Follower, error) {
	if cfg.StoreKind != storeCouch {
		return nil, nil
	}
	f, err := feed.New(ctx, st, feed.Options{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("follow the store's changes: %w", err)
	}
	return f, nil
}

// feedStatus is the follower's part of /-/status; nil without one.
func feedStatus(f *feed.Follower) *feed.Stats {
	if f == nil {
		return nil
	}
	s := f.Stats()
	return &s
}
