package engine_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/cmbs/cmbs/providers/process/engine"
	"github.com/cmbs/cmbs/providers/process/internal/processtest"
)

// BenchmarkRunTrue runs /bin/true once per iteration, as an execute's
// engine part does, with this process's CPU per run (not the child's) as
// cpu-µs/op.
func BenchmarkRunTrue(b *testing.B) {
	var m map[string]any = map[string]any{"exec": "/bin/true"}
	d, _, err := engine.Parse(m)
	if err != nil {
		b.Fatal(err)
	}
	r := &engine.Runner{}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		r.TempDir = "/dev/shm"
	}
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	b.ReportAllocs()
	cpu0 := processtest.CPUTime()
	for b.Loop() {
		res, err := r.Run(ctx, d, engine.Request{})
		if err != nil || res.Status != engine.StatusSucceeded {
			b.Fatalf("run: %v %+v", err, res)
		}
	}
	b.ReportMetric(float64((processtest.CPUTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}
