package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cmbs/cmbs/store"
)

func testConcurrency(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("NoLostUpdate", func(t *testing.T) {
		const workers, increments = 8, 20
		s := open(t)
		ctx := testContext(t)
		mustPut(t, ctx, s, "counter", "", `{"n":0}`)

		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range increments {
					if err := increment(ctx, s, "counter"); err != nil {
						t.Errorf("worker %d, increment %d: %v", w, i, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		doc := mustGet(t, ctx, s, "counter")
		var got struct{ N int }
		if err := json.Unmarshal(doc.Body, &got); err != nil {
			t.Fatal(err)
		}
		if got.N != workers*increments {
			t.Fatalf("counter = %d, want %d (lost updates)", got.N, workers*increments)
		}
		checkRev(t, doc.Rev, 1+workers*increments)
	})

	t.Run("CreateRace", func(t *testing.T) {
		const racers = 8
		s := open(t)
		ctx := testContext(t)
		var (
			wg        sync.WaitGroup
			start     = make(chan struct{})
			wins      atomic.Int32
			conflicts atomic.Int32
		)
		for r := range racers {
			wg.Go(func() {
				<-start
				_, err := s.Put(ctx, store.Document{ID: "contested", Body: json.RawMessage(fmt.Sprintf(`{"racer":%d}`, r))})
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, store.ErrConflict):
					conflicts.Add(1)
				default:
					t.Errorf("racer %d: %v", r, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != racers-1 {
			t.Fatalf("%d creates succeeded and %d conflicted, want 1 and %d", wins.Load(), conflicts.Load(), racers-1)
		}
		checkRev(t, mustGet(t, ctx, s, "contested").Rev, 1)
	})
}

// increment is a read-modify-write of {"n":…} that retries on conflict.
func increment(ctx context.Context, s store.Store, id string) error {
	for attempt := 0; attempt < 10000; attempt++ {
		doc, err := s.Get(ctx, id)
		if err != nil {
			return err
		}
		var body struct {
			N int `json:"n"`
		}
		if err := json.Unmarshal(doc.Body, &body); err != nil {
			return err
		}
		body.N++
		raw, _ := json.Marshal(body)
		_, err = s.Put(ctx, store.Document{ID: id, Rev: doc.Rev, Body: raw})
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return errors.New("gave up after 10000 conflicts")
}
