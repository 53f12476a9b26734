package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TimeoutError is the cause of a store call that WithTimeout cut off: the
// store took longer than Limit to answer. It comes wrapped with
// ErrUnavailable, so the caller reports the store as unavailable (503), and
// its message names the limit.
type TimeoutError struct {
	Limit time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("the store did not answer within the store timeout (%v)", e.Limit)
}

// WithTimeout bounds every call of s by limit, on top of the caller's own
// context: a store that stops answering (a frozen CouchDB, a disk that hangs)
// then fails each call after limit with an error wrapping ErrUnavailable and
// a *TimeoutError, instead of holding the caller until its own deadline, if
// it has one. Changes gets limit on top of its Wait. A limit <= 0 returns s
// unchanged. Close is not bounded.
func WithTimeout(s Store, limit time.Duration) Store {
	if limit <= 0 {
		return s
	}
	return &timeoutStore{s: s, limit: limit}
}

type timeoutStore struct {
	s     Store
	limit time.Duration
}

// bound derives the context of one call.
func (t *timeoutStore) bound(ctx context.Context, extra time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, t.limit+extra, &TimeoutError{Limit: t.limit})
}

// check turns an error caused by the call's own deadline into ErrUnavailable
// with the TimeoutError; the caller's cancellation or deadline stays what it
// is.
func check(parent, ctx context.Context, err error) error {
	if err == nil || parent.Err() != nil {
		return err
	}
	var te *TimeoutError
	if !errors.As(context.Cause(ctx), &te) || ctx.Err() == nil {
		return err
	}
	if errors.As(err, &te) {
		// The store passed the cause on (net/http does).
		if errors.Is(err, ErrUnavailable) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %w: %w", ErrUnavailable, te, err)
}

func (t *timeoutStore) Get(ctx context.Context, id string) (Document, error) {
	c, cancel := t.bound(ctx, 0)
	defer cancel()
	d, err := t.s.Get(c, id)
	return d, check(ctx, c, err)
}

func (t *timeoutStore) Put(ctx context.Context, doc Document) (string, error) {
	c, cancel := t.bound(ctx, 0)
	defer cancel()
	rev, err := t.s.Put(c, doc)
	return rev, check(ctx, c, err)
}

func (t *timeoutStore) Delete(ctx context.Context, id, rev string) (string, error) {
	c, cancel := t.bound(ctx, 0)
	defer cancel()
	newRev, err := t.s.Delete(c, id, rev)
	return newRev, check(ctx, c, err)
}

func (t *timeoutStore) Find(ctx context.Context, q Query) ([]Document, error) {
	c, cancel := t.bound(ctx, 0)
	defer cancel()
	docs, err := t.s.Find(c, q)
	return docs, check(ctx, c, err)
}

func (t *timeoutStore) EnsureIndex(ctx context.Context, name string, fields []string) error {
	c, cancel := t.bound(ctx, 0)
	defer cancel()
	return check(ctx, c, t.s.EnsureIndex(c, name, fields))
}

func (t *timeoutStore) Changes(ctx context.Context, opts ChangesOptions) ([]Change, string, error) {
	c, cancel := t.bound(ctx, max(opts.Wait, 0))
	defer cancel()
	changes, last, err := t.s.Changes(c, opts)
	return changes, last, check(ctx, c, err)
}

func (t *timeoutStore) Close() error { return t.s.Close() }

// Unwrap returns the store WithTimeout wrapped.
func (t *timeoutStore) Unwrap() Store { return t.s }
