package couch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	kivik "github.com/go-kivik/kivik/v4"

	"github.com/cmbs/cmbs/store"
)

// Get implements store.Store: one GET of the document.
func (s *Store) Get(ctx context.Context, id string) (store.Document, error) {
	if err := checkID(id); err != nil {
		return store.Document{}, fmt.Errorf("couch: get: %w", err)
	}
	var rev string
	var raw json.RawMessage
	err := s.retry(ctx, func() error {
		doc := s.db.Get(ctx, id)
		defer doc.Close()
		var err error
		if rev, err = doc.Rev(); err != nil {
			return fmt.Errorf("couch: get %q: %w", id, mapError(ctx, err))
		}
		if err := doc.ScanDoc(&raw); err != nil {
			return fmt.Errorf("couch: get %q: reading body: %w", id, mapError(ctx, err))
		}
		return nil
	})
	if err != nil {
		return store.Document{}, err
	}
	body, _, bodyRev, err := stripUnderscore(raw)
	if err != nil {
		return store.Document{}, fmt.Errorf("couch: get %q: %w", id, err)
	}
	if bodyRev != "" {
		rev = bodyRev // the body is authoritative over a proxy's ETag
	}
	return store.Document{ID: id, Rev: rev, Body: body}, nil
}

// Put implements store.Store: one PUT, with ?rev= for an update. The body is
// sent as it came, unless it carries _id or _rev, which are stripped.
func (s *Store) Put(ctx context.Context, doc store.Document) (string, error) {
	if err := checkID(doc.ID); err != nil {
		return "", fmt.Errorf("couch: put: %w", err)
	}
	body, err := checkBody(doc.Body)
	if err != nil {
		return "", fmt.Errorf("couch: put %q: %w: %w", doc.ID, store.ErrInvalid, err)
	}
	var opts []kivik.Option
	if doc.Rev != "" {
		opts = append(opts, kivik.Rev(doc.Rev))
	}
	var rev string
	err = s.retry(ctx, func() error {
		var err error
		rev, err = s.db.Put(ctx, doc.ID, json.RawMessage(body), opts...)
		return err
	})
	if err != nil {
		// A rev for a document that does not exist is a stale rev to us;
		// CouchDB says 409, the PouchDB peer 404.
		if doc.Rev != "" && kivik.HTTPStatus(err) == http.StatusNotFound && !missingDB(err) {
			return "", fmt.Errorf("couch: put %q: %w: %w", doc.ID, store.ErrConflict, err)
		}
		return "", fmt.Errorf("couch: put %q: %w", doc.ID, mapError(ctx, err))
	}
	return rev, nil
}

// Delete implements store.Store: one DELETE with ?rev=.
func (s *Store) Delete(ctx context.Context, id, rev string) (string, error) {
	if err := checkID(id); err != nil {
		return "", fmt.Errorf("couch: delete: %w", err)
	}
	if rev == "" {
		// kivik refuses a DELETE without rev; CouchDB would answer 409 for
		// an existing document, so only a missing one needs asking.
		if _, err := s.db.GetRev(ctx, id); err != nil {
			return "", fmt.Errorf("couch: delete %q: %w", id, mapError(ctx, err))
		}
		return "", fmt.Errorf("couch: delete %q: %w: no revision given", id, store.ErrConflict)
	}
	var newRev string
	err := s.retry(ctx, func() error {
		var err error
		newRev, err = s.db.Delete(ctx, id, rev)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("couch: delete %q: %w", id, mapError(ctx, err))
	}
	return newRev, nil
}
