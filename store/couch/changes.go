package couch

import (
	"context"
	"fmt"
	"time"

	kivik "github.com/go-kivik/kivik/v4"

	"github.com/cmbs/cmbs/store"
)

// Changes implements store.Store with CouchDB's _changes: a normal feed, or
// a longpoll feed with ?timeout= when opts.Wait > 0. Sequence positions are
// CouchDB's, passed through untouched. Changes of design documents (indexes)
// are left out, so a page may hold fewer than opts.Limit changes while more
// follow; continue from the returned position.
func (s *Store) Changes(ctx context.Context, opts store.ChangesOptions) ([]store.Change, string, error) {
	if opts.Limit < 0 || opts.Wait < 0 {
		return nil, "", fmt.Errorf("couch: changes: %w: negative limit or wait", store.ErrInvalid)
	}
	since := opts.Since
	if since == "" {
		since = "0"
	}
	deadline := time.Now().Add(opts.Wait)
	for {
		wait := time.Until(deadline)
		changes, last, seen, err := s.changes(ctx, since, opts.Limit, opts.Wait > 0 && wait > 0, wait)
		restored, err := s.restoreMissing(ctx, err)
		if restored {
			// Positions of the lost database mean nothing in the new one:
			// read it from the start (not from "since", which could skip
			// some).
			since = "0"
			continue
		}
		if err != nil {
			return nil, "", err
		}
		// Keep waiting only when the feed woke for design documents alone.
		if len(changes) > 0 || seen == 0 || opts.Wait == 0 || time.Until(deadline) <= 0 {
			return changes, last, nil
		}
		since = last
	}
}

// changes reads one _changes response; seen counts the changes CouchDB sent,
// design documents included.
func (s *Store) changes(ctx context.Context, since string, limit int, longpoll bool, wait time.Duration) (changes []store.Change, last string, seen int, err error) {
	params := map[string]any{"since": since}
	if limit > 0 {
		params["limit"] = limit
	}
	if longpoll {
		params["feed"] = "longpoll"
		params["timeout"] = millis(wait)
	}
	feed := s.db.Changes(ctx, kivik.Params(params))
	defer feed.Close()
	for feed.Next() {
		seen++
		id := feed.ID()
		if id == "" || id[0] == '_' {
			continue
		}
		c := store.Change{Seq: feed.Seq(), ID: id, Deleted: feed.Deleted()}
		if revs := feed.Changes(); len(revs) > 0 {
			c.Rev = revs[0]
		}
		changes = append(changes, c)
	}
	if err := feed.Err(); err != nil {
		return nil, "", 0, fmt.Errorf("couch: changes since %q: %w", since, mapError(ctx, err))
	}
	meta, err := feed.Metadata()
	if err != nil {
		return nil, "", 0, fmt.Errorf("couch: changes since %q: %w", since, mapError(ctx, err))
	}
	last = meta.LastSeq
	if last == "" && len(changes) > 0 {
		last = changes[len(changes)-1].Seq
	}
	return changes, last, seen, nil
}
