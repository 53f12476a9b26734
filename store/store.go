// Package store defines the narrow document-store interface the OCCI server
// persists categories and entities through, in the way kivik's driver package
// does for CouchDB clients. Two implementations satisfy it and pass one
// contract suite (store/storetest): CouchDB through kivik (store/couch) and the
// embedded default on modernc.org/sqlite (store/sqlite).
//
// Documents are JSON objects addressed by an id. Every write of an existing
// document carries the revision it read; a stale or missing revision is a
// conflict, never a silent overwrite. Revisions look like CouchDB's
// ("N-<hash>"), and every write appends to an ordered change sequence.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Errors every implementation returns (wrapped or not; test with errors.Is).
var (
	// ErrNotFound: no live document has that id.
	ErrNotFound = errors.New("store: document not found")
	// ErrConflict: the document exists and the given revision is missing or stale,
	// or a create found the id taken.
	ErrConflict = errors.New("store: document update conflict")
	// ErrInvalid: the request itself is malformed (bad selector, empty id, body not
	// a JSON object, …).
	ErrInvalid = errors.New("store: invalid request")
	// ErrUnavailable: the backing database cannot be reached.
	ErrUnavailable = errors.New("store: unavailable")
)

// Document is one stored JSON object.
type Document struct {
	// ID is the document id (CouchDB's _id). Any non-empty UTF-8 string that
	// does not start with "_".
	ID string
	// Rev is the revision (CouchDB's _rev), "N-<hex>". Empty on a create.
	Rev string
	// Body is the JSON object without _id and _rev. Stores must not keep other
	// underscore fields in it either.
	Body json.RawMessage
}

// SortField orders Find results by a field path (same syntax as selector fields).
type SortField struct {
	Field string
	Desc  bool
}

// Query is a Mango query.
type Query struct {
	// Selector is a CouchDB Mango selector, e.g.
	// {"type":"resource","kind":"http://x#k","attributes.occi.compute.cores":{"$gt":2}}.
	// Field paths are dot-separated; a literal dot inside one path segment is
	// escaped as "\." (e.g. "attributes.cmbs.member.l3\.1_socket"). An empty or
	// nil selector matches every document.
	Selector json.RawMessage
	// Sort: results are ordered by these fields, then by _id ascending. With no
	// sort fields, results are in _id ascending order.
	Sort []SortField
	// Limit: at most this many results; 0 means no limit.
	Limit int
	// Skip this many results first.
	Skip int
}

// Change is one entry of the change sequence.
type Change struct {
	// Seq is the opaque position of this change in the sequence; pass it as
	// ChangesOptions.Since to get the changes after it.
	Seq     string
	ID      string
	Rev     string
	Deleted bool
}

// ChangesOptions selects a window of the change sequence.
type ChangesOptions struct {
	// Since: return changes after this sequence position; "" or "0" = from the start,
	// "now" = only changes made after the call.
	Since string
	// Limit: at most this many changes; 0 means no limit.
	Limit int
	// Wait: when there is no change after Since, wait up to this long for one
	// (long polling). 0 returns at once. The context bounds the wait too.
	Wait time.Duration
}

// Store is what the OCCI server needs from a document database.
// Implementations are safe for concurrent use.
type Store interface {
	// Get returns the live document with that id, or ErrNotFound.
	Get(ctx context.Context, id string) (Document, error)
	// Put creates (doc.Rev == "") or updates (doc.Rev == current rev) a document
	// and returns its new revision. A create of an existing id, or an update
	// with a stale rev, returns ErrConflict. A create may reuse the id of a
	// deleted document.
	Put(ctx context.Context, doc Document) (rev string, err error)
	// Delete removes the document at that revision and returns the tombstone's
	// revision. Missing → ErrNotFound; stale rev → ErrConflict.
	Delete(ctx context.Context, id, rev string) (newRev string, err error)
	// Find returns the live documents matching the query.
	Find(ctx context.Context, q Query) ([]Document, error)
	// EnsureIndex makes sure an index over these field paths exists (idempotent),
	// so Find with selectors on them does not scan everything.
	EnsureIndex(ctx context.Context, name string, fields []string) error
	// Changes returns changes after opts.Since in sequence order, and the
	// position to continue from.
	Changes(ctx context.Context, opts ChangesOptions) (changes []Change, last string, err error)
	// Close releases the store's resources.
	Close() error
}

type backgroundKey struct{}

// InBackground marks the writes made with the returned context as
// background work: nobody waits on them to answer a client, so a store may
// hold them a moment to share one commit with others (the embedded store
// waits up to a few milliseconds for more). Stores that cannot use the
// hint ignore it; the writes keep every other guarantee.
func InBackground(ctx context.Context) context.Context {
	return context.WithValue(ctx, backgroundKey{}, true)
}

// IsBackground reports whether ctx was marked by InBackground.
func IsBackground(ctx context.Context) bool {
	b, _ := ctx.Value(backgroundKey{}).(bool)
	return b
}
