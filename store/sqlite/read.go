package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/mango"
)

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, id string) (store.Document, error) {
	if err := s.checkOpen(); err != nil {
		return store.Document{}, fmt.Errorf("get %q: %w", id, err)
	}
	if err := checkID("get", id); err != nil {
		return store.Document{}, err
	}
	rev, body, gen, ok := s.cache.get(id)
	if ok {
		return store.Document{ID: id, Rev: rev, Body: body}, nil
	}
	doc := store.Document{ID: id}
	err := s.rGet.QueryRowContext(ctx, id).Scan(&doc.Rev, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Document{}, fmt.Errorf("get %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Document{}, fmt.Errorf("get %q: %w", id, dbError(ctx, err))
	}
	s.cache.add(id, doc.Rev, body, gen)
	doc.Body = json.RawMessage(body)
	return doc, nil
}

// EnsureIndex implements store.Store. Every field path is already indexed
// (see fields.go), so this only validates and records the definition.
func (s *Store) EnsureIndex(ctx context.Context, name string, fields []string) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("ensure index %q: %w", name, err)
	}
	if name == "" || len(fields) == 0 {
		return fmt.Errorf("ensure index %q: %w: need a name and at least one field", name, store.ErrInvalid)
	}
	for _, f := range fields {
		if _, err := mango.SplitField(f); err != nil {
			return fmt.Errorf("ensure index %q: %w: %w", name, store.ErrInvalid, err)
		}
	}
	def, err := json.Marshal(fields)
	if err != nil {
		return fmt.Errorf("ensure index %q: %w: %w", name, store.ErrInvalid, err)
	}
	_, err = s.writer.ExecContext(ctx,
		`INSERT INTO mango_indexes(name, fields) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET fields = excluded.fields`,
		name, string(def))
	if err != nil {
		return fmt.Errorf("ensure index %q: %w", name, dbError(ctx, err))
	}
	return nil
}

// Changes implements store.Store. Sequence positions are decimal change
// numbers; each document appears once, at its latest change.
func (s *Store) Changes(ctx context.Context, opts store.ChangesOptions) ([]store.Change, string, error) {
	if err := s.checkOpen(); err != nil {
		return nil, "", fmt.Errorf("changes: %w", err)
	}
	if opts.Limit < 0 || opts.Wait < 0 {
		return nil, "", fmt.Errorf("changes: %w: negative limit or wait", store.ErrInvalid)
	}
	var since int64
	switch opts.Since {
	case "", "0":
	case "now":
		if err := s.rMaxSeq.QueryRowContext(ctx).Scan(&since); err != nil {
			return nil, "", fmt.Errorf("changes: %w", dbError(ctx, err))
		}
	default:
		n, err := strconv.ParseInt(opts.Since, 10, 64)
		if err != nil || n < 0 {
			return nil, "", fmt.Errorf("changes: %w: bad since %q", store.ErrInvalid, opts.Since)
		}
		since = n
	}
	limit := int64(opts.Limit)
	if limit == 0 {
		limit = math.MaxInt64
	}

	var deadline <-chan time.Time
	if opts.Wait > 0 {
		t := time.NewTimer(opts.Wait)
		defer t.Stop()
		deadline = t.C
	}
	for {
		// Take the signal before reading, so a commit between the read and
		// the wait is not missed.
		signal := s.commitSignal()
		changes, err := s.readChanges(ctx, since, limit)
		if err != nil {
			return nil, "", err
		}
		if len(changes) > 0 {
			return changes, changes[len(changes)-1].Seq, nil
		}
		if deadline == nil {
			return nil, strconv.FormatInt(since, 10), nil
		}
		select {
		case <-signal:
		case <-deadline:
			return nil, strconv.FormatInt(since, 10), nil
		case <-ctx.Done():
			return nil, "", fmt.Errorf("changes: %w", ctx.Err())
		case <-s.closed:
			return nil, "", fmt.Errorf("changes: %w: store closed", store.ErrUnavailable)
		}
	}
}

func (s *Store) readChanges(ctx context.Context, since, limit int64) ([]store.Change, error) {
	rows, err := s.rChanges.QueryContext(ctx, since, limit)
	if err != nil {
		return nil, fmt.Errorf("changes: %w", dbError(ctx, err))
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		var (
			seq int64
			c   store.Change
		)
		if err := rows.Scan(&seq, &c.ID, &c.Rev, &c.Deleted); err != nil {
			return nil, fmt.Errorf("changes: %w", dbError(ctx, err))
		}
		c.Seq = strconv.FormatInt(seq, 10)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("changes: %w", dbError(ctx, err))
	}
	return out, nil
}
