// Package sqlite is the embedded default store.Store, on modernc.org/sqlite
// (pure Go, no cgo).
//
// Documents live in one table with CouchDB-like revisions ("N-<md5>") and a
// per-document change sequence number; a deleted document stays as a
// tombstone, so the changes feed reports deletes and a re-created document
// continues its revision history. Every scalar leaf of every document is also
// written to an index table (path, value, doc) in the same transaction, so a
// Mango selector is answered from that index on any field path, then checked
// exactly by a CouchDB-compatible matcher over the few documents it selects.
//
// The database runs in WAL mode with synchronous=NORMAL: readers never block
// the writer, and a commit does not wait for fsync (a power loss may lose the
// last transactions, never corrupt the file). All writes go through one
// connection, owned by a writer goroutine that group-commits the writes
// queued at the same time (write.go): concurrent writers queue in Go instead
// of failing with SQLITE_BUSY, and share the cost of a commit.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cmbs/cmbs/store"

	// The database/sql driver "sqlite".
	_ "modernc.org/sqlite"
)

// Store is a store.Store in one SQLite database file. It is safe for
// concurrent use; Close it when done.
type Store struct {
	log    *slog.Logger
	path   string
	writer *sql.DB // exactly one connection: writes are serialised here
	reader *sql.DB // a pool of read-only connections

	// Prepared statements, on writer (w*) or reader (r*).
	wSelectDoc, wMaxSeq, wInsertDoc, wUpdateDoc, wSelectPath, wInsertPath *sql.Stmt
	wSelectBody, wInsertPartial                                           *sql.Stmt
	rGet, rChanges, rMaxSeq, rMaxRID, rSelectPath                         *sql.Stmt
	// wInsertFields[i] and wDeleteFields[i] insert or delete
	// fieldChunks[i] index rows in one statement: a document has dozens of
	// rows, and one statement per row cost more than the rows themselves.
	wInsertFields, wDeleteFields [len(fieldChunks)]*sql.Stmt

	// paths caches the ids of interned field paths (pathKey → pid). Ids are
	// added only after the transaction that created them committed.
	pathsMu sync.RWMutex
	paths   map[string]int64
	// partial maps the keys of the paths that ever had a partial row
	// (table partial_paths) to their pids, added after the transaction
	// committed.
	partial map[string]int64

	// unindexed is WithUnindexed's paths.
	unindexed unindexedPaths

	// changed is closed and replaced after every commit, to wake long polls.
	changedMu sync.Mutex
	changed   chan struct{}

	// writeQueue feeds the writer goroutine (see write.go), which closes
	// writerDone when it returns.
	writeQueue chan *writeRequest
	commits    atomic.Uint64 // transactions committed, for tests
	writerDone chan struct{}
	// lastSeq is the change number of the last commit, -1 until the
	// writer read it; used by the writer goroutine only.
	lastSeq int64

	// stmts caches prepared Find queries by text (see queryStmt).
	stmtsMu sync.Mutex
	stmts   map[string]*sql.Stmt

	// cache keeps hot documents for Get (cache.go); lock is the exclusive
	// lock on the database that keeps the cache exact.
	cache *docCache
	lock  *os.File

	// driveLimit: see find.go; a field so tests can lower it.
	driveLimit int
	// backgroundWait and backgroundMax: see write.go; fields so tests
	// can change them.
	backgroundWait, backgroundMax time.Duration

	closeOnce sync.Once
	closed    chan struct{}
}

var _ store.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options)

type options struct {
	logger      *slog.Logger
	readConns   int
	busyTimeout time.Duration
	cacheBytes  int
	unindexed   unindexedPaths
}

// WithUnindexed names paths (dotted: "attributes.cmbs.message.result")
// whose values the index does not look into: such a value gets its own row
// (for an object or array, its marker and a partial row) and nothing
// inside it gets one. Selectors on paths inside still match exactly (the
// documents with the partial row are read and matched), only without the
// index's help: meant for free-form values that are written often and
// never searched, whose rows would be most of a write's cost.
func WithUnindexed(paths ...string) Option {
	return func(o *options) { o.addUnindexed(paths, false) }
}

// WithUnsearched names paths (dotted, as WithUnindexed) whose values get
// no index row at all, nor anything inside them: meant for the fields of
// a document written often and never searched (a run's output, its
// times). A selector condition on such a path, or below it, still gives
// the exact result: it narrows nothing, and the documents the rest of the
// selector admits are read and matched. Changing the paths of an existing
// database rebuilds its index at Open. A path named both here and in
// WithUnindexed, in either order, is unsearched.
func WithUnsearched(paths ...string) Option {
	return func(o *options) { o.addUnindexed(paths, true) }
}

// addUnindexed records paths (dotted) as unindexed, or unsearched when
// unsearched is true; unsearched wins over unindexed whatever the order.
func (o *options) addUnindexed(paths []string, unsearched bool) {
	if o.unindexed == nil {
		o.unindexed = unindexedPaths{}
	}
	for _, p := range paths {
		if p != "" {
			k := pathKey(strings.Split(p, "."))
			o.unindexed[k] = o.unindexed[k] || unsearched
		}
	}
}

// WithCacheSize sets how many bytes of document bodies Get keeps in memory
// (default 32 MiB; 0 or less disables the cache), counting the index rows
// kept beside each written body (so that its next update need not scan the
// old body). Bodies over 64 KiB are never kept.
func WithCacheSize(bytes int) Option {
	return func(o *options) { o.cacheBytes = max(bytes, 0) }
}

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithReadConns sets the size of the read connection pool (default: the
// number of CPUs, at least 4).
func WithReadConns(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.readConns = n
		}
	}
}

// WithBusyTimeout sets how long a connection waits for a lock held by another
// process before failing (default 5s). Within one process writers queue on
// the writer connection and never wait here.
func WithBusyTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.busyTimeout = d
		}
	}
}

// schemaVersion is stored in PRAGMA user_version.
// 2: the index stops at maxIndexDepth segments.
// 3: partial rows (capped documents) and partial_paths; a version 2
// database needs nothing done, and older programs must not read version 3
// (they would miss the documents partial rows stand for).
// 4: no fields_by_doc index: a document's index rows are always the rows
// of its stored body under the index options recorded in index_options
// (see reindex), so the writer derives the rows to delete from the old
// body instead of keeping a second copy of every row ordered by document.
// Open rebuilds the fields table from the bodies when it upgrades an
// older file or when the options changed.
const schemaVersion = 4

// schema: see the package comment and fields.go. docs.rid is the internal
// document number the index refers to; it never changes for an id, because
// deletes keep a tombstone row. docs.seq is the document's latest change,
// so the change sequence is collapsed to one entry per document, as in
// CouchDB.
const schema = `
CREATE TABLE IF NOT EXISTS docs (
	rid     INTEGER PRIMARY KEY,
	id      TEXT    NOT NULL,
	rev     TEXT    NOT NULL,
	deleted INTEGER NOT NULL DEFAULT 0,
	seq     INTEGER NOT NULL,
	body    BLOB    NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS docs_by_id  ON docs(id);
CREATE UNIQUE INDEX IF NOT EXISTS docs_by_seq ON docs(seq);
CREATE TABLE IF NOT EXISTS paths (
	pid  INTEGER PRIMARY KEY,
	path BLOB NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS fields (
	pid   INTEGER NOT NULL,
	value         NOT NULL,
	rid   INTEGER NOT NULL,
	PRIMARY KEY (pid, value, rid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partial_paths (
	pid INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS index_options (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	options TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mango_indexes (
	name   TEXT PRIMARY KEY,
	fields TEXT NOT NULL
);
`

// Open opens (creating if needed) the store in the SQLite file at path,
// creating the parent directory if it is missing.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := options{logger: slog.Default(), readConns: max(4, runtime.NumCPU()), busyTimeout: 5 * time.Second, cacheBytes: 32 << 20}
	for _, opt := range opts {
		opt(&o)
	}
	// The driver ends the file name at the first '?' (query parameters follow).
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: open %q: %w: need a plain file path without '?'", path, store.ErrInvalid)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("sqlite: open %q: %w: %w", path, store.ErrUnavailable, err)
		}
	}
	s := &Store{
		log:            o.logger.With("store", "sqlite", "path", path),
		path:           path,
		paths:          make(map[string]int64),
		partial:        make(map[string]int64),
		changed:        make(chan struct{}),
		closed:         make(chan struct{}),
		writeQueue:     make(chan *writeRequest),
		writerDone:     make(chan struct{}),
		lastSeq:        -1,
		driveLimit:     defaultDriveLimit,
		backgroundWait: defaultBackgroundWait,
		backgroundMax:  defaultBackgroundMax,
		stmts:          make(map[string]*sql.Stmt),
		cache:          newDocCache(o.cacheBytes),
		unindexed:      o.unindexed,
	}
	lock, err := lockFile(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w: %w", path, store.ErrUnavailable, err)
	}
	s.lock = lock
	if err := s.open(ctx, o); err != nil {
		s.closeDBs()
		_ = s.lock.Close()
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	go s.runWriter()
	s.log.Debug("store opened")
	return s, nil
}

// pageSize is the page size of a new database file. A stored message or
// execution record is a 2–3 KB row: with SQLite's default 4 KiB pages
// nearly every document of a batch dirties a table leaf of its own, and a
// commit writes every dirty page to the WAL as a frame (two system calls
// each). With 16 KiB pages consecutive documents share leaves, so a batch
// writes fewer frames; see docs/decisions.md. An existing file keeps the
// page size it was created with.
const pageSize = 16384

func dsn(path string, o options, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.busyTimeout.Milliseconds()))
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(OFF)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		// A new file gets pageSize pages (see pageSize); the pragma must
		// come before journal_mode, which writes the file's first page,
		// and does nothing on an existing file. The driver runs the
		// _pragma list sorted by name, and _journal_mode after it.
		q.Add("_pragma", fmt.Sprintf("page_size(%d)", pageSize))
		q.Set("_journal_mode", "WAL")
		// Each request of a group commit runs in a savepoint, whose
		// sub-journal (the first copy of every page it changes) would
		// otherwise be a temporary file written with a system call per
		// page; in memory it costs a copy.
		q.Add("_pragma", "temp_store(MEMORY)")
		// Take the write lock at BEGIN, so a transaction never has to upgrade
		// a read lock (which can fail with SQLITE_BUSY).
		q.Set("_txlock", "immediate")
	}
	return path + "?" + q.Encode()
}

func (s *Store) open(ctx context.Context, o options) error {
	var err error
	if s.writer, err = sql.Open("sqlite", dsn(s.path, o, false)); err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	s.writer.SetMaxOpenConns(1)
	s.writer.SetMaxIdleConns(1)
	s.writer.SetConnMaxLifetime(0)
	s.writer.SetConnMaxIdleTime(0)

	var version int
	if err := s.writer.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return dbError(ctx, err)
	}
	if version > schemaVersion {
		return fmt.Errorf("%w: schema version %d is newer than this program's %d", store.ErrUnavailable, version, schemaVersion)
	}
	if _, err := s.writer.ExecContext(ctx, schema); err != nil {
		return dbError(ctx, err)
	}

	if s.reader, err = sql.Open("sqlite", dsn(s.path, o, true)); err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	s.reader.SetMaxOpenConns(o.readConns)
	s.reader.SetMaxIdleConns(o.readConns)
	s.reader.SetConnMaxIdleTime(0)
	s.reader.SetConnMaxLifetime(0)

	prepare := func(db *sql.DB, dst **sql.Stmt, query string) {
		if err != nil {
			return
		}
		*dst, err = db.PrepareContext(ctx, query)
	}
	prepare(s.writer, &s.wSelectDoc, `SELECT rid, rev, deleted FROM docs WHERE id = ?`)
	prepare(s.writer, &s.wMaxSeq, `SELECT coalesce(max(seq), 0) FROM docs`)
	prepare(s.writer, &s.wInsertDoc, `INSERT INTO docs(id, rev, deleted, seq, body) VALUES (?, ?, ?, ?, ?)`)
	prepare(s.writer, &s.wUpdateDoc, `UPDATE docs SET rev = ?, deleted = ?, seq = ?, body = ? WHERE rid = ?`)
	for i, n := range fieldChunks {
		values := strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", n), ", ")
		prepare(s.writer, &s.wInsertFields[i], `INSERT OR IGNORE INTO fields(pid, value, rid) VALUES `+values)
		prepare(s.writer, &s.wDeleteFields[i], `DELETE FROM fields WHERE (pid, value, rid) IN (VALUES `+values+`)`)
	}
	prepare(s.writer, &s.wSelectPath, `SELECT pid FROM paths WHERE path = ?`)
	prepare(s.writer, &s.wInsertPath, `INSERT INTO paths(path) VALUES (?)`)
	prepare(s.writer, &s.wSelectBody, `SELECT body FROM docs WHERE rid = ?`)
	prepare(s.writer, &s.wInsertPartial, `INSERT OR IGNORE INTO partial_paths(pid) VALUES (?)`)
	prepare(s.reader, &s.rGet, `SELECT rev, body FROM docs WHERE id = ? AND deleted = 0`)
	prepare(s.reader, &s.rChanges, `SELECT seq, id, rev, deleted FROM docs WHERE seq > ? ORDER BY seq LIMIT ?`)
	prepare(s.reader, &s.rMaxSeq, `SELECT coalesce(max(seq), 0) FROM docs`)
	prepare(s.reader, &s.rMaxRID, `SELECT coalesce(max(rid), 0) FROM docs`)
	prepare(s.reader, &s.rSelectPath, `SELECT pid FROM paths WHERE path = ?`)
	if err != nil {
		return dbError(ctx, err)
	}
	rebuilt, err := s.reindexIfNeeded(ctx, version)
	if err != nil {
		return err
	}
	if rebuilt {
		// The rebuild outlived ctx's deadline (see reindex); what is
		// left of opening is one short read, not to be refused for it.
		ctx = context.WithoutCancel(ctx)
	}
	return s.loadPartial(ctx)
}

func (s *Store) loadPartial(ctx context.Context) error {
	rows, err := s.writer.QueryContext(ctx, `SELECT p.path, p.pid FROM partial_paths pp JOIN paths p ON p.pid = pp.pid`)
	if err != nil {
		return dbError(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var key []byte
		var pid int64
		if err := rows.Scan(&key, &pid); err != nil {
			return dbError(ctx, err)
		}
		s.partial[string(key)] = pid
	}
	if err := rows.Err(); err != nil {
		return dbError(ctx, err)
	}
	return nil
}

// Close closes the database. Long polls in Changes return at once; calls
// after Close fail with store.ErrUnavailable.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		// The writer finishes the batch it is committing, if any.
		<-s.writerDone
		err = s.closeDBs()
		// Closing the file releases the lock.
		err = errors.Join(err, s.lock.Close())
		s.log.Debug("store closed")
	})
	return err
}

func (s *Store) closeDBs() error {
	var errs []error
	s.stmtsMu.Lock()
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	clear(s.stmts)
	s.stmtsMu.Unlock()
	for _, st := range slices.Concat([]*sql.Stmt{
		s.wSelectDoc, s.wMaxSeq, s.wInsertDoc, s.wUpdateDoc, s.wSelectPath, s.wInsertPath,
		s.wSelectBody, s.wInsertPartial,
		s.rGet, s.rChanges, s.rMaxSeq, s.rMaxRID, s.rSelectPath,
	}, s.wInsertFields[:], s.wDeleteFields[:]) {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	// The reader first: closing the writer's last connection checkpoints the
	// WAL into the database file, which is cheaper without readers attached.
	if s.reader != nil {
		errs = append(errs, s.reader.Close())
	}
	if s.writer != nil {
		errs = append(errs, s.writer.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// checkOpen fails once Close has been called.
func (s *Store) checkOpen() error {
	select {
	case <-s.closed:
		return fmt.Errorf("%w: store is closed", store.ErrUnavailable)
	default:
		return nil
	}
}

// dbError wraps an error from database/sql: context errors stay as they are
// (callers test them with errors.Is), everything else is ErrUnavailable.
func dbError(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		// SQLite reports an interrupted statement without the context's error.
		return fmt.Errorf("%w (%w)", ctxErr, err)
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// notifyCommit wakes every long poll waiting in Changes.
func (s *Store) notifyCommit() {
	s.changedMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.changedMu.Unlock()
}

// commitSignal returns the channel the next commit closes.
func (s *Store) commitSignal() <-chan struct{} {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	return s.changed
}

// cachedPath returns the interned id of a path key, if known.
func (s *Store) cachedPath(key string) (int64, bool) {
	s.pathsMu.RLock()
	defer s.pathsMu.RUnlock()
	pid, ok := s.paths[key]
	return pid, ok
}

// partialPath returns the pid of a path key that ever had a partial row.
func (s *Store) partialPath(key string) (int64, bool) {
	s.pathsMu.RLock()
	defer s.pathsMu.RUnlock()
	pid, ok := s.partial[key]
	return pid, ok
}

func (s *Store) cachePartial(m map[string]int64) {
	if len(m) == 0 {
		return
	}
	s.pathsMu.Lock()
	defer s.pathsMu.Unlock()
	maps.Copy(s.partial, m)
}

func (s *Store) cachePaths(m map[string]int64) {
	if len(m) == 0 {
		return
	}
	s.pathsMu.Lock()
	defer s.pathsMu.Unlock()
	for k, v := range m {
		s.paths[k] = v
	}
}

// lookupPath returns the id of a path for a query; ok is false when no
// document ever had that path.
func (s *Store) lookupPath(ctx context.Context, key string) (int64, bool, error) {
	if pid, ok := s.cachedPath(key); ok {
		return pid, true, nil
	}
	var pid int64
	err := s.rSelectPath.QueryRowContext(ctx, []byte(key)).Scan(&pid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, dbError(ctx, err)
	}
	s.cachePaths(map[string]int64{key: pid})
	return pid, true, nil
}
