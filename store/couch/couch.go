// Package couch is the store.Store on Apache CouchDB (2.x or later), through
// kivik v4's CouchDB driver. All documents live in one database, created by
// Open if it is missing.
//
// Get and Put are one HTTP request each, and bodies go through as raw JSON:
// the OCCI server's latency budget is measured against plain kivik calls on
// the same server. Requests are neither compressed nor asked to be
// compressed (gzip costs more CPU than it saves on loopback and LAN, and the
// project's CouchDB test peer buffers compressed _changes feeds).
//
// Differences from CouchDB's own API that callers rely on:
//   - Find's default order is _id ascending, and ties of Sort fields are
//     broken by _id ascending in both directions;
//   - Find without a Limit returns every match (CouchDB's _find stops at 25);
//   - design documents never show up, in Find or in Changes;
//   - a database that disappears while the store is open (CouchDB restarted
//     empty, the database deleted) is recreated, with the indexes
//     EnsureIndex made, by the first call that finds it missing; if it
//     cannot be, calls fail with store.ErrUnavailable, never ErrNotFound;
//   - selectors are parsed with store/mango before they are sent, so the
//     ones the embedded store refuses are refused here too.
package couch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	kivik "github.com/go-kivik/kivik/v4"
	"github.com/go-kivik/kivik/v4/couchdb"
	"github.com/go-kivik/kivik/v4/couchdb/chttp"

	"github.com/cmbs/cmbs/store"
)

// validDBName is CouchDB's rule for database names (the PouchDB peer takes
// any name, so it is checked here).
var validDBName = regexp.MustCompile(`^[a-z][a-z0-9_$()+/-]*$`)

// Store is a store.Store on one CouchDB database. It is safe for concurrent
// use.
type Store struct {
	client    *kivik.Client
	db        *kivik.DB
	name      string
	transport *http.Transport
	log       *slog.Logger

	// restoreMu serialises restoring a database that disappeared;
	// indexes (guarded by it) are the EnsureIndex calls to repeat then.
	restoreMu sync.Mutex
	indexes   []index
}

type index struct {
	name   string
	fields []string
}

var _ store.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	log         *slog.Logger
	maxIdleConn int
}

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

// WithMaxIdleConns sets how many idle keep-alive connections to CouchDB the
// store keeps for reuse (default 64). Concurrent requests beyond it open new
// connections, which costs a TCP handshake each.
func WithMaxIdleConns(n int) Option {
	return func(o *options) { o.maxIdleConn = n }
}

// Open connects to the CouchDB server at serverURL, e.g.
// "http://user:pass@host:5984/" (credentials in the URL are sent as HTTP
// basic auth), and opens the database db, creating it if it does not exist.
// An unreachable server is an error wrapping store.ErrUnavailable; a bad URL
// or database name wraps store.ErrInvalid.
func Open(ctx context.Context, serverURL, db string, opts ...Option) (*Store, error) {
	o := options{log: slog.Default(), maxIdleConn: 64}
	for _, opt := range opts {
		opt(&o)
	}
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("couch: open: %w: server URL %q is not an http(s) URL", store.ErrInvalid, redact(serverURL))
	}
	if !validDBName.MatchString(db) {
		return nil, fmt.Errorf("couch: open: %w: database name %q is not ^[a-z][a-z0-9_$()+/-]*$", store.ErrInvalid, db)
	}

	// A transport of our own: DisableCompression because the test peer's
	// compressed continuous feeds never flush (and gzip does not pay on a
	// LAN); more idle connections than net/http's 2 per host because the
	// server issues many concurrent requests; and Close can release them.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableCompression = true
	tr.MaxIdleConns = o.maxIdleConn
	tr.MaxIdleConnsPerHost = o.maxIdleConn
	kopts := []kivik.Option{
		couchdb.OptionHTTPClient(&http.Client{Transport: tr}),
		couchdb.OptionNoRequestCompression(),
		couchdb.OptionUserAgent("cmbs"),
	}
	// kivik would turn URL credentials into cookie auth, which costs a
	// /_session round trip and expires; basic auth is stateless.
	if u.User != nil {
		pass, _ := u.User.Password()
		kopts = append(kopts, couchdb.BasicAuth(u.User.Username(), pass))
		u.User = nil
	}
	client, err := kivik.New("couch", u.String(), kopts...)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("couch: open %s: %w", u.Redacted(), mapError(ctx, err))
	}
	s := &Store{client: client, name: db, transport: tr, log: o.log}
	if err := s.ensureDB(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("couch: open %s/%s: %w", u.Redacted(), db, err)
	}
	s.db = client.DB(db)
	if err := s.db.Err(); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("couch: open %s/%s: %w", u.Redacted(), db, mapError(ctx, err))
	}
	o.log.Debug("couch store open", "server", u.Redacted(), "db", db)
	return s, nil
}

// ensureDB checks connectivity and creates the database if needed; two
// servers starting at once may both try, and the loser's 412 is fine.
func (s *Store) ensureDB(ctx context.Context) error {
	exists, err := s.client.DBExists(ctx, s.name)
	if err != nil {
		return mapError(ctx, err)
	}
	if exists {
		return nil
	}
	// q=1: one shard, so the changes feed is in write order (CouchDB 3
	// defaults to 2 shards, whose feeds it interleaves).
	err = s.client.CreateDB(ctx, s.name, kivik.Param("q", 1))
	if err != nil && kivik.HTTPStatus(err) != http.StatusPreconditionFailed {
		return fmt.Errorf("creating database: %w", mapError(ctx, err))
	}
	if err == nil {
		s.log.Debug("couch: created database", "db", s.name)
	}
	return nil
}

// missingDB reports whether err is CouchDB saying the database itself does
// not exist (CouchDB 2 and later: "Database does not exist."; CouchDB 1
// and the PouchDB test peer: "no_db_file"), as opposed to a missing
// document. A HEAD request carries no reason and is never recognised.
func missingDB(err error) bool {
	var he *chttp.HTTPError
	if !errors.As(err, &he) || he.Response == nil || he.HTTPStatus() != http.StatusNotFound {
		return false
	}
	return he.Reason == "no_db_file" || he.Reason == "Database does not exist."
}

// retry runs op, and once more after restoring the database if op found it
// missing (the CouchDB server restarted empty, or someone deleted it).
func (s *Store) retry(ctx context.Context, op func() error) error {
	restored, err := s.restoreMissing(ctx, op())
	if restored {
		return op()
	}
	return err
}

// restoreMissing restores the database if err says it is missing, and
// reports whether it did; otherwise (or if restoring fails) it returns err.
func (s *Store) restoreMissing(ctx context.Context, err error) (restored bool, _ error) {
	if err == nil || !missingDB(err) {
		return false, err
	}
	if rerr := s.restore(ctx); rerr != nil {
		return false, fmt.Errorf("%w (restoring it: %w)", err, rerr)
	}
	return true, nil
}

// restore recreates the missing database and the indexes EnsureIndex made,
// once for all the calls that found it missing at the same time.
func (s *Store) restore(ctx context.Context) error {
	s.restoreMu.Lock()
	defer s.restoreMu.Unlock()
	exists, err := s.client.DBExists(ctx, s.name)
	if err != nil {
		return mapError(ctx, err)
	}
	if exists {
		return nil // restored by a call that got here first (or by someone else)
	}
	s.log.Warn("couch: the database is gone (CouchDB restarted empty or it was deleted): recreating it and its indexes; documents stored before are lost",
		"db", s.name, "indexes", len(s.indexes))
	if err := s.ensureDB(ctx); err != nil {
		return err
	}
	for _, ix := range s.indexes {
		if err := s.db.CreateIndex(ctx, ix.name, ix.name, map[string]any{"fields": ix.fields}); err != nil {
			return fmt.Errorf("recreating index %q: %w", ix.name, mapError(ctx, err))
		}
	}
	return nil
}

// Close releases the store's connections. In-flight calls fail.
func (s *Store) Close() error {
	err := s.client.Close()
	s.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("couch: close: %w", err)
	}
	return nil
}

// mapError translates a kivik error into the store's errors, keeping the
// original in the chain. Context errors stay context errors: the caller gave
// up, the database did not fail.
func mapError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	var sentinel error
	switch status := kivik.HTTPStatus(err); {
	case missingDB(err):
		// Not a missing document: the store itself cannot serve.
		return fmt.Errorf("%w: the CouchDB database does not exist: %w", store.ErrUnavailable, err)
	case status == http.StatusNotFound:
		sentinel = store.ErrNotFound
	case status == http.StatusConflict || status == http.StatusPreconditionFailed:
		sentinel = store.ErrConflict
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
		sentinel = store.ErrInvalid
	case status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout:
		sentinel = store.ErrUnavailable
	case status == http.StatusBadGateway:
		// kivik's status for a failed round trip (refused, reset, DNS);
		// also used for a malformed answer, which is not unavailability.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			sentinel = store.ErrUnavailable
		}
	}
	if sentinel == nil {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// checkID applies the store's id rule: non-empty, and not starting with "_"
// (CouchDB reserves those for design and local documents).
func checkID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty document id", store.ErrInvalid)
	case strings.HasPrefix(id, "_"):
		return fmt.Errorf("%w: document id %q starts with '_'", store.ErrInvalid, id)
	}
	return nil
}

// redact hides the password of a URL that may not parse.
func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if at := strings.LastIndexByte(raw, '@'); at >= 0 {
		return "…" + raw[at:]
	}
	return raw
}

// millis renders a duration as CouchDB's integer milliseconds, at least 1 so
// a tiny wait does not become "no timeout".
func millis(d time.Duration) int64 {
	return max(d.Milliseconds(), 1)
}
