package sqlite

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/cmbs/cmbs/store"
)

// tombstoneBody is what a deleted document's row holds.
var tombstoneBody = []byte("{}")

// writeOp is one document write, validated and ready for a transaction.
type writeOp struct {
	verb   string // "put" or "delete", for error messages
	id     string
	rev    string // the revision the caller read ("" for a create)
	delete bool
	body   []byte                // canonical body (put only)
	rows   map[fieldRow]struct{} // index rows of body (put only)
	// known, if not nil, are the index rows of revision knownRev of the
	// document, as this store wrote them (see Store.knownRows).
	knownRev string
	known    map[pidRow]struct{}
}

func checkID(verb, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s: %w: empty document id", verb, store.ErrInvalid)
	case strings.HasPrefix(id, "_"):
		return fmt.Errorf("%s %q: %w: document ids must not start with '_'", verb, id, store.ErrInvalid)
	case !utf8.ValidString(id):
		return fmt.Errorf("%s %q: %w: document id is not UTF-8", verb, id, store.ErrInvalid)
	}
	return nil
}

func putOp(doc store.Document, skip unindexedPaths) (writeOp, error) {
	if err := checkID("put", doc.ID); err != nil {
		return writeOp{}, err
	}
	if body, rows, ok := scanBody(doc.Body, skip); ok {
		return writeOp{verb: "put", id: doc.ID, rev: doc.Rev, body: body, rows: rows}, nil
	}
	body, obj, err := canonicalBody(doc.Body)
	if err != nil {
		return writeOp{}, fmt.Errorf("put %q: %w: %w", doc.ID, store.ErrInvalid, err)
	}
	rows, err := indexRows(obj, skip)
	if err != nil {
		return writeOp{}, fmt.Errorf("put %q: %w: %w", doc.ID, store.ErrInvalid, err)
	}
	return writeOp{verb: "put", id: doc.ID, rev: doc.Rev, body: body, rows: rows}, nil
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, doc store.Document) (string, error) {
	if err := s.checkOpen(); err != nil {
		return "", fmt.Errorf("put %q: %w", doc.ID, err)
	}
	op, err := putOp(doc, s.unindexed)
	if err != nil {
		return "", err
	}
	if doc.Rev != "" {
		op.knownRev, op.known = doc.Rev, s.knownRows(doc.ID, doc.Rev)
	}
	revs, err := s.write(ctx, []writeOp{op})
	if err != nil {
		return "", err
	}
	return revs[0], nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, id, rev string) (string, error) {
	if err := s.checkOpen(); err != nil {
		return "", fmt.Errorf("delete %q: %w", id, err)
	}
	if err := checkID("delete", id); err != nil {
		return "", err
	}
	revs, err := s.write(ctx, []writeOp{{verb: "delete", id: id, rev: rev, delete: true}})
	if err != nil {
		return "", err
	}
	return revs[0], nil
}

// knownRows lists the index rows of revision rev of a document if this
// store wrote that revision and it is still cached: the rows the writer
// cached with it (no listing at all), else the rows of its body, listed
// here in the caller's goroutine instead of by the single writer. nil if
// unknown.
func (s *Store) knownRows(id, rev string) map[pidRow]struct{} {
	d, ok := s.cache.written(id)
	if !ok || d.rev != rev {
		return nil
	}
	if d.rows != nil {
		return d.rows
	}
	rows, err := bodyRows(d.body, s.unindexed)
	if err != nil {
		return nil
	}
	// The paths of a committed document's rows are interned, and their
	// ids cached, by the commit that wrote them.
	out := make(map[pidRow]struct{}, len(rows))
	s.pathsMu.RLock()
	defer s.pathsMu.RUnlock()
	for r := range rows {
		pid, ok := s.paths[r.path]
		if !ok {
			return nil
		}
		out[pidRow{pid, r.val}] = struct{}{}
	}
	return out
}

// Writes are group-committed. Every Put and Delete becomes a request to the
// store's writer goroutine, which takes all requests queued at that moment
// and applies them in one transaction, each inside its own savepoint, so a
// conflict fails its request alone. A commit costs a write of every page it
// dirtied (about a dozen for an entity, mostly index leaves), so sharing one
// commit between concurrent writers multiplies throughput; a lone writer
// pays nothing extra.

// maxBatch bounds the requests of one transaction, to bound its latency.
const maxBatch = 128

// writeRequest is a group of ops applied atomically.
type writeRequest struct {
	ctx  context.Context
	ops  []writeOp
	revs []string
	rids []int64               // the documents' row ids, for the cache
	rows []map[pidRow]struct{} // the documents' index rows, for the cache
	err  error
	done chan struct{} // closed when revs/err are set
}

// write applies ops atomically and returns their new revisions.
func (s *Store) write(ctx context.Context, ops []writeOp) ([]string, error) {
	req := &writeRequest{ctx: ctx, ops: ops, done: make(chan struct{})}
	select {
	case s.writeQueue <- req:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s %q: %w", ops[0].verb, ops[0].id, ctx.Err())
	case <-s.writerDone:
		return nil, fmt.Errorf("%s %q: %w: store closed", ops[0].verb, ops[0].id, store.ErrUnavailable)
	}
	select {
	case <-req.done:
	case <-ctx.Done():
		// The write may still happen; like a CouchDB request whose client
		// gave up, the caller cannot know.
		return nil, fmt.Errorf("%s %q: %w", ops[0].verb, ops[0].id, ctx.Err())
	case <-s.writerDone:
		select {
		case <-req.done:
		default:
			return nil, fmt.Errorf("%s %q: %w: store closed", ops[0].verb, ops[0].id, store.ErrUnavailable)
		}
	}
	return req.revs, req.err
}

// runWriter is the writer goroutine; it returns when the store is closed.
func (s *Store) runWriter() {
	defer close(s.writerDone)
	for {
		var batch []*writeRequest
		select {
		case req := <-s.writeQueue:
			batch = append(batch, req)
		case <-s.closed:
			return
		}
		// Take every writer already waiting, without waiting for more.
	collect:
		for len(batch) < maxBatch {
			select {
			case req := <-s.writeQueue:
				batch = append(batch, req)
			default:
				break collect
			}
		}
		if background(batch) {
			batch = s.gatherBackground(batch)
		}
		s.commitBatch(batch)
	}
}

// A batch of background writes only (store.InBackground) waits for more
// writes to share its commit: a commit costs a write of every page it
// dirtied whatever it holds, and documents written together share most of
// their pages (the last leaves of the tables and of the index), so a
// write in a batch of 30 costs about half of one alone. Background writes
// (results stored after the client got its answer) come in streams, so
// the batch keeps gathering as long as they keep coming, each within
// defaultBackgroundWait of the one before, for at most
// defaultBackgroundMax in all; a foreground write, a full batch and the
// store closing end the wait at once.
const (
	defaultBackgroundWait = 2 * time.Millisecond
	defaultBackgroundMax  = 10 * time.Millisecond
)

func background(batch []*writeRequest) bool {
	for _, req := range batch {
		if !store.IsBackground(req.ctx) {
			return false
		}
	}
	return true
}

// gatherBackground adds the background writes that keep arriving to a
// batch of background writes (see defaultBackgroundWait).
func (s *Store) gatherBackground(batch []*writeRequest) []*writeRequest {
	deadline := time.Now().Add(s.backgroundMax)
	timer := time.NewTimer(min(s.backgroundWait, s.backgroundMax))
	defer timer.Stop()
	for len(batch) < maxBatch {
		select {
		case req := <-s.writeQueue:
			batch = append(batch, req)
			if !store.IsBackground(req.ctx) {
				return batch
			}
			left := time.Until(deadline)
			if left <= 0 {
				return batch
			}
			timer.Reset(min(s.backgroundWait, left))
		case <-timer.C:
			return batch
		case <-s.closed:
			return batch
		}
	}
	return batch
}

// commitBatch applies a batch in one transaction and answers its requests.
// Statements run without the requests' contexts: SQLite rolls back the whole
// transaction when a statement is interrupted, which would fail the other
// requests. A request whose context is done before its turn is skipped.
func (s *Store) commitBatch(batch []*writeRequest) {
	defer func() {
		for _, req := range batch {
			close(req.done)
		}
	}()
	if s.tryBatch(batch, false) {
		for _, req := range batch {
			req.revs, req.rids, req.rows, req.err = nil, nil, nil, nil
		}
		s.tryBatch(batch, true)
	}
}

// tryBatch applies a batch in one transaction. A request of several ops
// runs inside a savepoint, so that it can fail alone after it wrote; a
// request of one op needs none (two statements, each parsed anew, on
// every write), because it fails before writing (a conflict) or with a
// database error. After such an error tryBatch returns retry, having
// rolled everything back, and the batch is tried again with a savepoint
// around every request (careful).
func (s *Store) tryBatch(batch []*writeRequest, careful bool) (retry bool) {
	ctx := context.Background()
	var applied []*writeRequest
	failAll := func(err error) {
		for _, req := range batch {
			if req.err == nil {
				req.revs, req.err = nil, fmt.Errorf("%s %q: %w", req.ops[0].verb, req.ops[0].id, err)
			}
		}
	}

	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		failAll(dbError(ctx, err))
		return false
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	stmts := &txStmts{ctx: ctx, tx: tx, m: make(map[*sql.Stmt]*sql.Stmt)}

	// The writer is the only one writing docs (Open's lock), so the last
	// change number is known after the first commit.
	seq := s.lastSeq
	if seq < 0 {
		if err := stmts.get(s.wMaxSeq).QueryRowContext(ctx).Scan(&seq); err != nil {
			failAll(dbError(ctx, err))
			return false
		}
	}
	newPaths := make(map[string]int64)
	newPartial := make(map[string]int64)
	touched := make(map[string]struct{})
	single := len(batch) == 1
	for _, req := range batch {
		err = nil
		if err := req.ctx.Err(); err != nil {
			req.err = fmt.Errorf("%s %q: %w", req.ops[0].verb, req.ops[0].id, err)
			continue
		}
		savepoint := !single && (careful || len(req.ops) > 1)
		if savepoint {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT request"); err != nil {
				failAll(dbError(ctx, err))
				return false
			}
		}
		w := txWriter{s: s, ctx: ctx, stmts: stmts, touched: touched, paths: newPaths, newPaths: make(map[string]int64), partial: newPartial, newPartial: make(map[string]int64)}
		revs := make([]string, len(req.ops))
		rids := make([]int64, len(req.ops))
		rows := make([]map[pidRow]struct{}, len(req.ops))
		reqSeq := seq
		for i, op := range req.ops {
			reqSeq++
			if revs[i], rids[i], err = w.apply(op, reqSeq); err != nil {
				break
			}
			rows[i] = w.rows
		}
		if err != nil {
			req.err = err
			switch {
			case single:
				return false
			case !savepoint && w.wrote:
				return true
			case !savepoint:
				continue
			}
			// Undo this request only; its interned paths are undone too.
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO request"); err != nil {
				failAll(dbError(ctx, err))
				return false
			}
			if _, err := tx.ExecContext(ctx, "RELEASE request"); err != nil {
				failAll(dbError(ctx, err))
				return false
			}
			continue
		}
		if savepoint {
			if _, err := tx.ExecContext(ctx, "RELEASE request"); err != nil {
				failAll(dbError(ctx, err))
				return false
			}
		}
		seq = reqSeq
		req.revs, req.rids, req.rows = revs, rids, rows
		maps.Copy(newPaths, w.newPaths)
		maps.Copy(newPartial, w.newPartial)
		applied = append(applied, req)
	}
	if len(applied) == 0 {
		return false
	}
	if err := tx.Commit(); err != nil {
		failAll(fmt.Errorf("commit: %w", dbError(ctx, err)))
		s.lastSeq = -1
		return false
	}
	s.lastSeq = seq
	s.commits.Add(1)
	var docs []cachedDoc
	for _, req := range applied {
		for i, op := range req.ops {
			d := cachedDoc{id: op.id, rev: req.revs[i], rid: req.rids[i]}
			if !op.delete {
				d.body, d.rows = op.body, req.rows[i]
			}
			docs = append(docs, d)
		}
	}
	s.cache.committed(docs)
	s.cachePaths(newPaths)
	s.cachePartial(newPartial)
	s.notifyCommit()
	return false
}

// txStmts are a transaction's handles of the writer's prepared
// statements, made once per transaction instead of once per use.
type txStmts struct {
	ctx context.Context
	tx  *sql.Tx
	m   map[*sql.Stmt]*sql.Stmt
}

func (t *txStmts) get(st *sql.Stmt) *sql.Stmt {
	if ts, ok := t.m[st]; ok {
		return ts
	}
	ts := t.tx.StmtContext(t.ctx, st)
	t.m[st] = ts
	return ts
}

// txWriter holds the state of one request in a write transaction.
type txWriter struct {
	s        *Store
	ctx      context.Context
	stmts    *txStmts
	touched  map[string]struct{} // ids written (or tried) in the transaction
	paths    map[string]int64    // paths interned by earlier requests of the transaction
	newPaths map[string]int64    // paths interned by this request
	// partial and newPartial: the same for partial_paths entries.
	partial, newPartial map[string]int64
	// wrote is set before the request's first statement that changes the
	// database: a failure after it leaves the request half done.
	wrote bool
	// rows are the index rows of the document apply wrote last.
	rows map[pidRow]struct{}
}

// pidRow is an index row with its path interned: what the fields table
// holds for a document.
type pidRow struct {
	pid int64
	val fieldValue
}

// apply writes one document at change number seq and returns its new
// revision and row id.
func (w *txWriter) apply(op writeOp, seq int64) (string, int64, error) {
	return w.applyAs(op, seq, true)
}

// applyAs is apply; guessNew lets a create the cache knows nothing about
// go straight to its insert: the unique index on the id refuses it if
// the id is taken (by a live document or a tombstone), before anything is
// written, and then it is applied again after reading the document.
func (w *txWriter) applyAs(op writeOp, seq int64, guessNew bool) (string, int64, error) {
	ctx, s := w.ctx, w.s
	fail := func(err error) (string, int64, error) {
		return "", 0, fmt.Errorf("%s %q: %w", op.verb, op.id, err)
	}

	var (
		rid     int64
		curRev  string
		deleted bool
		exists  bool
	)
	// The cache holds the state of the last commit of a document this
	// store wrote (the writer updates it right after each commit), unless
	// this transaction wrote the document since.
	if _, ok := w.touched[op.id]; !ok {
		if d, ok := s.cache.written(op.id); ok {
			rid, curRev, exists = d.rid, d.rev, true
		}
	}
	w.touched[op.id] = struct{}{}
	guessNew = guessNew && !exists && op.rev == "" && !op.delete
	if !exists && !guessNew {
		err := w.stmts.get(s.wSelectDoc).QueryRowContext(ctx, op.id).Scan(&rid, &curRev, &deleted)
		exists = err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fail(dbError(ctx, err))
		}
	}

	switch {
	case op.delete && (!exists || deleted):
		return fail(store.ErrNotFound)
	case op.delete && op.rev != curRev:
		return fail(fmt.Errorf("%w: revision %q is not the current one", store.ErrConflict, op.rev))
	case !exists && op.rev != "":
		return fail(fmt.Errorf("%w: revision %q given for a new document", store.ErrConflict, op.rev))
	case exists && deleted && op.rev != "" && op.rev != curRev:
		// Re-creating a deleted document needs no revision, or the tombstone's.
		return fail(fmt.Errorf("%w: revision %q is not the current one", store.ErrConflict, op.rev))
	case exists && !deleted && op.rev == "":
		return fail(fmt.Errorf("%w: document exists", store.ErrConflict))
	case exists && !deleted && op.rev != curRev:
		return fail(fmt.Errorf("%w: revision %q is not the current one", store.ErrConflict, op.rev))
	}

	body := op.body
	if op.delete {
		body = tombstoneBody
	}
	// Like CouchDB, a write after a tombstone continues its revision history.
	rev := nextRev(curRev, op.delete, body)

	// The document's current rows are the rows of its stored body
	// (reindex.go): listed by the caller from the cached body (op.known),
	// else from the body read here.
	var oldRows map[pidRow]struct{}
	if exists && !deleted {
		if op.known != nil && op.knownRev == curRev {
			oldRows = op.known
		} else {
			var err error
			if oldRows, err = w.storedRows(rid); err != nil {
				return fail(err)
			}
		}
	}
	newRows, err := w.internRows(op.rows)
	if err != nil {
		return fail(err)
	}

	wrote := w.wrote
	w.wrote = true
	if exists {
		_, err = w.stmts.get(s.wUpdateDoc).ExecContext(ctx, rev, op.delete, seq, body, rid)
	} else {
		var res sql.Result
		res, err = w.stmts.get(s.wInsertDoc).ExecContext(ctx, op.id, rev, op.delete, seq, body)
		if err == nil {
			rid, err = res.LastInsertId()
		}
		var se *msqlite.Error
		if guessNew && errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
			w.wrote = wrote
			return w.applyAs(op, seq, false)
		}
	}
	if err != nil {
		return fail(dbError(ctx, err))
	}

	// Only the difference between the old and the new index rows is written:
	// an update usually changes a few attributes of a document.
	var gone, added []pidRow
	for r := range oldRows {
		if _, keep := newRows[r]; !keep {
			gone = append(gone, r)
		}
	}
	for r := range newRows {
		if _, had := oldRows[r]; !had {
			added = append(added, r)
		}
	}
	if err := w.changeRows(w.s.wDeleteFields, gone, rid); err != nil {
		return fail(err)
	}
	if err := w.changeRows(w.s.wInsertFields, added, rid); err != nil {
		return fail(err)
	}
	w.rows = newRows
	return rev, rid, nil
}

// fieldChunks are the row counts of the multi-row index statements,
// largest first; any number of rows is a sum of them.
var fieldChunks = [...]int{32, 16, 8, 4, 2, 1}

// changeRows inserts or deletes (stmts: wInsertFields or wDeleteFields)
// the index rows of document rid, as few statements as the chunk sizes
// allow.
func (w *txWriter) changeRows(stmts [len(fieldChunks)]*sql.Stmt, rows []pidRow, rid int64) error {
	args := make([]any, 0, 3*len(rows))
	for _, r := range rows {
		args = append(args, r.pid, r.val.sqlValue(), rid)
	}
	for i, n := range fieldChunks {
		var st *sql.Stmt
		for len(args) >= 3*n {
			if st == nil {
				st = w.stmts.get(stmts[i])
			}
			if _, err := st.ExecContext(w.ctx, args[:3*n]...); err != nil {
				return dbError(w.ctx, err)
			}
			args = args[3*n:]
		}
	}
	return nil
}

// storedRows lists the index rows of document rid, which are the rows
// of its stored body (see reindex.go). A row whose path was never
// interned cannot be stored, and is left out.
func (w *txWriter) storedRows(rid int64) (map[pidRow]struct{}, error) {
	var body []byte
	if err := w.stmts.get(w.s.wSelectBody).QueryRowContext(w.ctx, rid).Scan(&body); err != nil {
		return nil, dbError(w.ctx, err)
	}
	rows, err := bodyRows(body, w.s.unindexed)
	if err != nil {
		return nil, fmt.Errorf("%w: stored body of document %d: %w", store.ErrUnavailable, rid, err)
	}
	out := make(map[pidRow]struct{}, len(rows))
	for r := range rows {
		pid, ok, err := w.knownPathID(r.path)
		if err != nil {
			return nil, err
		}
		if ok {
			out[pidRow{pid, r.val}] = struct{}{}
		}
	}
	return out, nil
}

// knownPathID returns the id of a path key without interning it.
func (w *txWriter) knownPathID(key string) (int64, bool, error) {
	if pid, ok := w.s.cachedPath(key); ok {
		return pid, true, nil
	}
	if pid, ok := w.newPaths[key]; ok {
		return pid, true, nil
	}
	if pid, ok := w.paths[key]; ok {
		return pid, true, nil
	}
	var pid int64
	err := w.stmts.get(w.s.wSelectPath).QueryRowContext(w.ctx, []byte(key)).Scan(&pid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, dbError(w.ctx, err)
	}
	return pid, true, nil
}

// internRows interns the paths of rows (recording partial rows' paths).
func (w *txWriter) internRows(rows map[fieldRow]struct{}) (map[pidRow]struct{}, error) {
	out := make(map[pidRow]struct{}, len(rows))
	// Most paths are cached: map them under one lock.
	var rest []fieldRow
	w.s.pathsMu.RLock()
	for r := range rows {
		pid, ok := w.s.paths[r.path]
		if ok && (r.val.kind != kindTag || r.val.str != string(tagPartial)) {
			out[pidRow{pid, r.val}] = struct{}{}
		} else {
			rest = append(rest, r)
		}
	}
	w.s.pathsMu.RUnlock()
	for _, r := range rest {
		pid, err := w.pathID(r.path)
		if err != nil {
			return nil, err
		}
		if r.val.kind == kindTag && r.val.str == string(tagPartial) {
			if err := w.markPartial(r.path, pid); err != nil {
				return nil, err
			}
		}
		out[pidRow{pid, r.val}] = struct{}{}
	}
	return out, nil
}

// storedValue is the fieldValue of a value read from the fields table.
func storedValue(v any) (fieldValue, error) {
	switch t := v.(type) {
	case float64:
		return fieldValue{kind: kindNumber, num: t}, nil
	case int64:
		return fieldValue{kind: kindNumber, num: float64(t)}, nil
	case string:
		return fieldValue{kind: kindString, str: t}, nil
	case []byte:
		return tagValue(t), nil
	}
	return fieldValue{}, fmt.Errorf("%w: index row of type %T", store.ErrUnavailable, v)
}

// markPartial records in partial_paths that path pid has a partial row.
func (w *txWriter) markPartial(key string, pid int64) error {
	if _, ok := w.partial[key]; ok {
		return nil
	}
	if _, ok := w.newPartial[key]; ok {
		return nil
	}
	if _, ok := w.s.partialPath(key); ok {
		return nil
	}
	w.wrote = true
	if _, err := w.stmts.get(w.s.wInsertPartial).ExecContext(w.ctx, pid); err != nil {
		return dbError(w.ctx, err)
	}
	w.newPartial[key] = pid
	return nil
}

// pathID interns a path key within the transaction.
func (w *txWriter) pathID(key string) (int64, error) {
	if pid, ok := w.s.cachedPath(key); ok {
		return pid, nil
	}
	if pid, ok := w.newPaths[key]; ok {
		return pid, nil
	}
	if pid, ok := w.paths[key]; ok {
		return pid, nil
	}
	var pid int64
	err := w.stmts.get(w.s.wSelectPath).QueryRowContext(w.ctx, []byte(key)).Scan(&pid)
	if errors.Is(err, sql.ErrNoRows) {
		var res sql.Result
		w.wrote = true
		res, err = w.stmts.get(w.s.wInsertPath).ExecContext(w.ctx, []byte(key))
		if err == nil {
			pid, err = res.LastInsertId()
		}
	}
	if err != nil {
		return 0, dbError(w.ctx, err)
	}
	w.newPaths[key] = pid
	return pid, nil
}

// nextRev computes the revision after prev: generation + 1, and the MD5 of
// the previous revision and the new content (CouchDB hashes similar inputs).
func nextRev(prev string, deleted bool, body []byte) string {
	gen := 0
	if i := strings.IndexByte(prev, '-'); i > 0 {
		gen, _ = strconv.Atoi(prev[:i])
	}
	h := md5.New()
	h.Write([]byte(prev))
	if deleted {
		h.Write([]byte{0, 'd'})
	} else {
		h.Write([]byte{0, 'b'})
	}
	h.Write(body)
	return strconv.Itoa(gen+1) + "-" + hex.EncodeToString(h.Sum(nil))
}
