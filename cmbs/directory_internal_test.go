package cmbs

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmbs/cmbs/occi/model"
)

// TestDirectoryKeepsOnlyWhatIsCurrent: a listing is reused until a change
// or maxAge, and a listing read while a change was committed answers its
// caller but is not kept.
func TestDirectoryKeepsOnlyWhatIsCurrent(t *testing.T) {
	ctx := context.Background()
	reads := 0
	var during func()
	d := newDirectory(func(context.Context) ([]*model.Entity, error) {
		reads++
		if during != nil {
			during()
		}
		return []*model.Entity{{Location: "/m/b"}, {Location: "/m/a"}}, nil
	}, time.Hour)

	m, err := d.get(ctx)
	if err != nil || reads != 1 || m.all[0].Location != "/m/a" || m.byLoc["/m/b"] == nil {
		t.Fatalf("first get: %v, %d reads, %+v", err, reads, m)
	}
	if _, _ = d.get(ctx); reads != 1 {
		t.Fatalf("second get read the store again (%d reads)", reads)
	}
	d.changed()
	if _, _ = d.get(ctx); reads != 2 {
		t.Fatalf("get after a change: %d reads, want 2", reads)
	}

	// A change committed while the list is being read.
	d.changed()
	during = func() { d.changed() }
	_, _ = d.get(ctx) // read 3
	during = nil
	if _, _ = d.get(ctx); reads != 4 {
		t.Fatalf("a list read during a change was kept (%d reads, want 4)", reads)
	}

	d.maxAge = time.Nanosecond
	time.Sleep(time.Millisecond)
	if _, _ = d.get(ctx); reads != 5 {
		t.Fatalf("an old list was kept (%d reads, want 5)", reads)
	}
}

// Callers that find no current listing while one is being read wait for
// that read instead of each reading the store.
func TestDirectoryReadsOnceForConcurrentCallers(t *testing.T) {
	var reads atomic.Int32
	release := make(chan struct{})
	d := newDirectory(func(context.Context) ([]*model.Entity, error) {
		reads.Add(1)
		<-release
		return []*model.Entity{{Location: "/m/a"}}, nil
	}, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			m, err := d.get(ctx)
			if err == nil && (m == nil || len(m.all) != 1) {
				err = fmt.Errorf("listing %+v", m)
			}
			errs <- err
		})
	}
	// Every caller is in get before the read ends: the one reading, the
	// others waiting for it.
	for reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads for 10 concurrent callers, want 1", n)
	}
}
