package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cmbs/cmbs/store"
)

// Store operation names, the "op" label.
var storeOps = []string{"get", "put", "delete", "find", "ensure_index", "changes"}

// Store operation results, the "result" label: "ok" or the kind of error.
var storeResults = []string{"ok", "not_found", "conflict", "invalid", "unavailable", "canceled", "error"}

// InstrumentStore returns st with every operation counted (by operation and
// result) and timed (by operation) in r. Long-polling Changes calls (Wait >
// 0) are counted but not timed: their duration is the wait asked for.
// Closing the returned store closes st.
func (r *Registry) InstrumentStore(st store.Store) (store.Store, error) {
	ops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "store", Name: "operations_total",
		Help: "Store operations, by operation and result (ok, or the kind of error).",
	}, []string{"op", "result"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "store", Name: "operation_duration_seconds",
		Help:    "Store operation latency, by operation (long-polling changes calls excluded).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	}, []string{"op"})
	if err := r.Register(ops, dur); err != nil {
		return nil, err
	}
	ms := &measuredStore{next: st}
	// Every label combination exists from the start (a scrape shows zeros,
	// not missing series) and costs no lookup per operation.
	for i, op := range storeOps {
		for j, res := range storeResults {
			ms.count[i][j] = ops.WithLabelValues(op, res)
		}
		ms.time[i] = dur.WithLabelValues(op)
	}
	return ms, nil
}

const (
	opGet = iota
	opPut
	opDelete
	opFind
	opEnsureIndex
	opChanges
)

type measuredStore struct {
	next  store.Store
	count [6][7]prometheus.Counter
	time  [6]prometheus.Observer
}

func (s *measuredStore) done(op int, start time.Time, err error) {
	if !start.IsZero() {
		s.time[op].Observe(time.Since(start).Seconds())
	}
	s.count[op][resultIndex(err)].Inc()
}

func resultIndex(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, store.ErrNotFound):
		return 1
	case errors.Is(err, store.ErrConflict):
		return 2
	case errors.Is(err, store.ErrInvalid):
		return 3
	case errors.Is(err, store.ErrUnavailable):
		return 4
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return 5
	}
	return 6
}

func (s *measuredStore) Get(ctx context.Context, id string) (store.Document, error) {
	start := time.Now()
	d, err := s.next.Get(ctx, id)
	s.done(opGet, start, err)
	return d, err
}

func (s *measuredStore) Put(ctx context.Context, doc store.Document) (string, error) {
	start := time.Now()
	rev, err := s.next.Put(ctx, doc)
	s.done(opPut, start, err)
	return rev, err
}

func (s *measuredStore) Delete(ctx context.Context, id, rev string) (string, error) {
	start := time.Now()
	nrev, err := s.next.Delete(ctx, id, rev)
	s.done(opDelete, start, err)
	return nrev, err
}

func (s *measuredStore) Find(ctx context.Context, q store.Query) ([]store.Document, error) {
	start := time.Now()
	docs, err := s.next.Find(ctx, q)
	s.done(opFind, start, err)
	return docs, err
}

func (s *measuredStore) EnsureIndex(ctx context.Context, name string, fields []string) error {
	start := time.Now()
	err := s.next.EnsureIndex(ctx, name, fields)
	s.done(opEnsureIndex, start, err)
	return err
}

func (s *measuredStore) Changes(ctx context.Context, opts store.ChangesOptions) ([]store.Change, string, error) {
	var start time.Time
	if opts.Wait <= 0 {
		start = time.Now()
	}
	ch, last, err := s.next.Changes(ctx, opts)
	s.done(opChanges, start, err)
	return ch, last, err
}

func (s *measuredStore) Close() error { return s.next.Close() }
