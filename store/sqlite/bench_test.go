package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cmbs/cmbs/store"
)

// entityBody is an OCCI-entity-shaped document; attributes.a.b.c takes 10
// values only for i < 100 (v0…v9, ten documents each), so that the selector
// {"kind":…,"attributes.a.b.c":"v7"} matches 10 documents whatever the size.
func entityBody(i int) []byte {
	c := fmt.Sprintf("u%d", i)
	if i < 100 {
		c = fmt.Sprintf("v%d", i%10)
	}
	body := map[string]any{
		"type":   "resource",
		"kind":   "http://x#k",
		"mixins": []string{fmt.Sprintf("http://x#m%d", i%10), "http://x#common"},
		"attributes": map[string]any{"a": map[string]any{"b": map[string]any{
			"c": c, "d": "x", "n": i,
		}}},
		"title": fmt.Sprintf("entity %d", i),
	}
	raw, _ := json.Marshal(body)
	return raw
}

// loadEntities writes n entities in batches (one transaction each).
func loadEntities(ctx context.Context, s *Store, n int) error {
	const batch = 1000
	for start := 0; start < n; start += batch {
		ops := make([]writeOp, 0, batch)
		for i := start; i < min(n, start+batch); i++ {
			op, err := putOp(store.Document{ID: fmt.Sprintf("/e/%07d", i), Body: entityBody(i)}, nil)
			if err != nil {
				return err
			}
			ops = append(ops, op)
		}
		if _, err := s.write(ctx, ops); err != nil {
			return err
		}
	}
	return nil
}

func BenchmarkFind(b *testing.B) {
	queries := []struct {
		name string
		q    store.Query
		want int
	}{
		{"KindAndAttr", store.Query{Selector: json.RawMessage(`{"kind":"http://x#k","attributes.a.b.c":"v7"}`)}, 10},
		{"MixinElemMatch", store.Query{Selector: json.RawMessage(`{"type":"resource","mixins":{"$elemMatch":{"$eq":"http://x#m3"}}}`), Limit: 20}, 20},
		{"KindLimit20", store.Query{Selector: json.RawMessage(`{"kind":"http://x#k"}`), Limit: 20}, 20},
	}
	for _, size := range []int{1000, 100000} {
		ctx := context.Background()
		s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.sqlite"))
		if err != nil {
			b.Fatal(err)
		}
		if err := loadEntities(ctx, s, size); err != nil {
			b.Fatal(err)
		}
		for _, q := range queries {
			b.Run(fmt.Sprintf("%s/docs=%d", q.name, size), func(b *testing.B) {
				for b.Loop() {
					docs, err := s.Find(ctx, q.q)
					if err != nil {
						b.Fatal(err)
					}
					if len(docs) != q.want {
						b.Fatalf("%d results, want %d", len(docs), q.want)
					}
				}
			})
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPut(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.sqlite"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1))
			if _, err := s.Put(ctx, store.Document{ID: fmt.Sprintf("/e/%d", i), Body: entityBody(i)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkUpdate(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.sqlite"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rev, err := s.Put(ctx, store.Document{ID: "doc", Body: entityBody(0)})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		if rev, err = s.Put(ctx, store.Document{ID: "doc", Rev: rev, Body: entityBody(i % 200)}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.sqlite"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const docs = 1000
	if err := loadEntities(ctx, s, docs); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1)) % docs
			if _, err := s.Get(ctx, fmt.Sprintf("/e/%07d", i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkPutSerial(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.sqlite"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Put(ctx, store.Document{ID: fmt.Sprintf("/e/%d", i), Body: entityBody(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMessageResult is the sender's result write of the broker's
// fan-out: a stored message (no result yet) updated with its ten-delivery
// send result, from eight writers at once; "unindexed" opens the store as
// cmbsd does (WithUnindexed of the result), and "background" writes as the
// deferred updates do (store.InBackground, 32 writers: UpdateLater's
// goroutines). It reports CPU and commits per update.
func BenchmarkMessageResult(b *testing.B) {
	for _, mode := range []string{"indexed", "unindexed", "background"} {
		b.Run(mode, func(b *testing.B) {
			var opts []Option
			if mode != "indexed" {
				opts = append(opts, WithUnindexed("attributes.cmbs.message.result"))
			}
			s, result, revs := messageResultFixture(b, opts...)
			ctx := context.Background()
			b.SetParallelism(4) // 8 writers on 2 CPUs
			putCtx := ctx
			if mode == "background" {
				putCtx = store.InBackground(ctx)
				b.SetParallelism(16)
			}
			var n atomic.Int64
			cpu, commits := processCPU(), s.commits.Load()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(n.Add(1)-1) % len(revs)
					rev, err := s.Put(putCtx, store.Document{ID: fmt.Sprintf("/m/%06d", i), Rev: revs[i], Body: result})
					if err != nil {
						b.Error(err)
						return
					}
					revs[i] = rev
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(s.commits.Load()-commits)/float64(b.N), "commits/op")
		})
	}
}

// messageResultFixture opens a store with opts (closed at the end of b)
// holding 5000 stored messages /m/000000… without their send result, and
// returns it, the body with the result, and the messages' revisions. Every
// update has a message of its own: it skips b when b.N is larger (run with
// -benchtime of at most 5000x).
func messageResultFixture(b *testing.B, opts ...Option) (*Store, []byte, []string) {
	b.Helper()
	result := benchBody()
	var doc map[string]any
	if err := json.Unmarshal(result, &doc); err != nil {
		b.Fatal(err)
	}
	delete(doc["attributes"].(map[string]any)["cmbs"].(map[string]any)["message"].(map[string]any), "result")
	before, err := json.Marshal(doc)
	if err != nil {
		b.Fatal(err)
	}
	const docs = 5000
	if b.N > docs {
		b.Skipf("%d iterations, more than the %d messages", b.N, docs)
	}
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.sqlite"), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ops := make([]writeOp, docs)
	for i := range ops {
		if ops[i], err = putOp(store.Document{ID: fmt.Sprintf("/m/%06d", i), Body: before}, s.unindexed); err != nil {
			b.Fatal(err)
		}
	}
	revs, err := s.write(ctx, ops)
	if err != nil {
		b.Fatal(err)
	}
	return s, result, revs
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
