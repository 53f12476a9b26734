package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Since schema version 4 the index has no copy of its rows ordered by
// document: when a document changes, its old rows are listed again from
// its old body (Store.knownRows from the cache, txWriter.storedRows
// otherwise). That holds only if every stored row is a row of its
// document's body under the options in force, so the options that decide
// the rows are recorded in the database (table index_options), and Open
// rebuilds the fields table from the bodies whenever they differ from the
// recorded ones, and when it upgrades a file of an older version (whose
// rows may come from other options or older code).

// indexOptions describes everything that decides a body's index rows
// besides the body: compared with the recorded description at Open. A
// change of indexRows or scan that changes rows must change it too (or
// the schema version).
func (s *Store) indexOptions() string {
	var skip, omit []string
	for k, unsearched := range s.unindexed {
		if unsearched {
			omit = append(omit, k)
		} else {
			skip = append(skip, k)
		}
	}
	slices.Sort(skip)
	slices.Sort(omit)
	raw, _ := json.Marshal(struct {
		Depth    int      `json:"depth"`
		Elements int      `json:"elements"`
		Members  int      `json:"members"`
		DocRows  int      `json:"doc_rows"`
		Skip     []string `json:"unindexed"`
		Omit     []string `json:"unsearched,omitempty"`
	}{maxIndexDepth, maxIndexedElements, maxIndexedMembers, maxDocRows, skip, omit})
	return string(raw)
}

// reindexing, when set (by tests), is called once a rebuild has begun.
var reindexing func()

// reindexIfNeeded rebuilds the index when the file is older than version
// 4 or was indexed under other options, and says whether it did.
func (s *Store) reindexIfNeeded(ctx context.Context, version int) (bool, error) {
	want := s.indexOptions()
	var have string
	err := s.writer.QueryRowContext(ctx, `SELECT options FROM index_options WHERE id = 1`).Scan(&have)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, dbError(ctx, err)
	}
	if version == schemaVersion && have == want {
		return false, nil
	}
	return true, s.reindex(ctx, version, want)
}

// reindex replaces every index row by the rows of the live documents'
// bodies under the current options, in one transaction that also records
// the options and the schema version: an interrupted rebuild leaves the
// file as it was.
//
// The rebuild outlives ctx's deadline, and stops only when ctx is
// canceled: it rolls back when stopped, so a deadline shorter than the
// rebuild (cmbsd's start timeout) would make a large database unopenable
// at every start. Once the deadline has passed, ctx can no longer say it
// was canceled: a caller that wants a signal to stop a long rebuild passes
// a context without a deadline (cmbsd does).
func (s *Store) reindex(parent context.Context, version int, options string) error {
	start := time.Now()
	if errors.Is(parent.Err(), context.Canceled) {
		return parent.Err()
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	defer cancel()
	stop := context.AfterFunc(parent, func() {
		if errors.Is(parent.Err(), context.Canceled) {
			cancel()
		}
	})
	defer stop()
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return dbError(ctx, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	// Version 0 is a new file: nothing to rebuild worth a word.
	if version != 0 {
		var docs int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM docs WHERE deleted = 0`).Scan(&docs); err != nil {
			return dbError(ctx, err)
		}
		reason := "index options changed"
		if version != schemaVersion {
			reason = fmt.Sprintf("upgrade from schema version %d to %d", version, schemaVersion)
		}
		s.log.Info("rebuilding the index", "reason", reason, "docs", docs)
	}
	if reindexing != nil {
		reindexing()
	}
	for _, q := range []string{`DROP INDEX IF EXISTS fields_by_doc`, `DELETE FROM fields`, `DELETE FROM partial_paths`} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return dbError(ctx, err)
		}
	}
	w := txWriter{
		s: s, ctx: ctx, stmts: &txStmts{ctx: ctx, tx: tx, m: make(map[*sql.Stmt]*sql.Stmt)},
		paths: map[string]int64{}, newPaths: map[string]int64{}, partial: map[string]int64{}, newPartial: map[string]int64{},
	}
	type doc struct {
		rid  int64
		body []byte
	}
	n := 0
	for last := int64(-1 << 63); ; {
		rows, err := tx.QueryContext(ctx, `SELECT rid, body FROM docs WHERE deleted = 0 AND rid > ? ORDER BY rid LIMIT 512`, last)
		if err != nil {
			return dbError(ctx, err)
		}
		var docs []doc
		for rows.Next() {
			var d doc
			if err := rows.Scan(&d.rid, &d.body); err != nil {
				rows.Close()
				return dbError(ctx, err)
			}
			docs = append(docs, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return dbError(ctx, err)
		}
		if len(docs) == 0 {
			break
		}
		for _, d := range docs {
			fr, err := bodyRows(d.body, s.unindexed)
			if err != nil {
				return fmt.Errorf("reindex document %d: %w", d.rid, err)
			}
			pr, err := w.internRows(fr)
			if err != nil {
				return fmt.Errorf("reindex document %d: %w", d.rid, err)
			}
			if err := w.changeRows(s.wInsertFields, rowList(pr), d.rid); err != nil {
				return fmt.Errorf("reindex document %d: %w", d.rid, err)
			}
			last = d.rid
		}
		n += len(docs)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO index_options(id, options) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET options = excluded.options`, options); err != nil {
		return dbError(ctx, err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return dbError(ctx, err)
	}
	if err := tx.Commit(); err != nil {
		return dbError(ctx, err)
	}
	s.cachePaths(w.newPaths)
	if n > 0 || version != 0 {
		s.log.Info("index rebuilt", "from_version", version, "docs", n, "took", time.Since(start))
	}
	return nil
}

// bodyRows lists the index rows of a stored body.
func bodyRows(body []byte, skip unindexedPaths) (map[fieldRow]struct{}, error) {
	if sc, ok := scan(body, skip); ok {
		return sc.rowSet(), nil
	}
	obj, err := decodeBody(body)
	if err != nil {
		return nil, err
	}
	return indexRows(obj, skip)
}

func rowList(rows map[pidRow]struct{}) []pidRow {
	out := make([]pidRow, 0, len(rows))
	for r := range rows {
		out = append(out, r)
	}
	return out
}
