package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cmbs/cmbs/store"
)

// executionRecord returns the process provider's record of a finished
// /bin/true run (testdata/execution_record.json, read from a real run),
// with its id, pid and times made unique by i as in real records.
func executionRecord(tb testing.TB, i int) []byte {
	tb.Helper()
	raw, err := executionRecordFile()
	if err != nil {
		tb.Fatal(err)
	}
	raw = bytes.TrimSpace(raw)
	n := strconv.Itoa(i)
	raw = bytes.Replace(raw, []byte(`"80e9f095-62d1-4fdd-9c49-683cd7df605a"`), []byte(`"x-`+n+`"`), 1)
	raw = bytes.Replace(raw, []byte(`"pid":18589`), []byte(`"pid":`+n), 1)
	raw = bytes.Replace(raw, []byte(`19.689`), []byte(`19.`+n), 1)
	raw = bytes.Replace(raw, []byte(`56.099942232Z`), []byte(fmt.Sprintf("56.%09dZ", i)), 1)
	return raw
}

// executionRecordFile reads testdata/execution_record.json once (a
// benchmark makes a record per iteration).
var executionRecordFile = sync.OnceValues(func() ([]byte, error) {
	return os.ReadFile(filepath.Join("testdata", "execution_record.json"))
})

// runWriters calls write(i) for i in [0, b.N) from n goroutines and
// reports the process CPU and the commits per write.
func runWriters(b *testing.B, s *Store, n int, write func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu, commits := processCPU(), s.commits.Load()
	b.ResetTimer()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				if err := write(i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(s.commits.Load()-commits)/float64(b.N), "commits/op")
}

// recordUnsearched is process.UnindexedPaths (which this package cannot
// import), as cmbsd opens its store with them.
var recordUnsearched = []string{
	"attributes.process.execution.output", "attributes.process.execution.output_base64",
	"attributes.process.execution.stderr", "attributes.process.execution.error",
	"attributes.process.execution.started_at", "attributes.process.execution.finished_at",
	"attributes.process.execution.duration_ms", "attributes.process.execution.truncated",
	"attributes.process.execution.stderr_truncated", "attributes.process.execution.record_truncated",
	"attributes.process.execution.input_size", "attributes.process.execution.output_size",
	"attributes.process.execution.stderr_size", "attributes.process.execution.pid",
}

// BenchmarkExecutionRecord is the create of a process execution record:
// "serial" one foreground Put at a time, "background8" eight writers of
// background (store.InBackground) creates, as the process provider
// stores the records of eight executes in flight; "unsearched" opens the
// store as cmbsd does (WithUnsearched of the record's unsearched paths).
func BenchmarkExecutionRecord(b *testing.B) {
	for _, mode := range []struct {
		name    string
		writers int
		bg      bool
		opts    []Option
	}{
		{"serial", 1, false, nil}, {"background8", 8, true, nil},
		{"serial/unsearched", 1, false, []Option{WithUnsearched(recordUnsearched...)}},
		{"background8/unsearched", 8, true, []Option{WithUnsearched(recordUnsearched...)}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.sqlite"), mode.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			bodies := make([][]byte, b.N)
			for i := range bodies {
				bodies[i] = executionRecord(b, i)
			}
			putCtx := ctx
			if mode.bg {
				putCtx = store.InBackground(ctx)
			}
			runWriters(b, s, mode.writers, func(i int) error {
				_, err := s.Put(putCtx, store.Document{ID: fmt.Sprintf("/process/execution/x-%d", i), Body: bodies[i]})
				return err
			})
		})
	}
}

// BenchmarkMessageResultBatch is the sender's result update of a stored
// message (see BenchmarkMessageResult): "serial" one foreground update at
// a time, "background20" twenty background writers, whose updates the
// writer commits in batches of about twenty. Run with -benchtime of at
// most 5000x.
func BenchmarkMessageResultBatch(b *testing.B) {
	for _, mode := range []struct {
		name    string
		writers int
		bg      bool
	}{{"serial", 1, false}, {"background20", 20, true}} {
		b.Run(mode.name, func(b *testing.B) {
			s, result, revs := messageResultFixture(b, WithUnindexed("attributes.cmbs.message.result"))
			putCtx := context.Background()
			if mode.bg {
				putCtx = store.InBackground(putCtx)
			}
			runWriters(b, s, mode.writers, func(i int) error {
				_, err := s.Put(putCtx, store.Document{ID: fmt.Sprintf("/m/%06d", i), Rev: revs[i], Body: result})
				return err
			})
		})
	}
}
