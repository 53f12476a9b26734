package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/sqlite"
)

// benchFilter times a collection filter that returns 10 entities, first
// among 1,000 entities and then among cfg.filterBig, on the embedded store.
func benchFilter(ctx context.Context, cfg config, log *slog.Logger, out func(string, ...any), results map[string]any) error {
	dir, err := os.MkdirTemp("", "cmbsbench-filter-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "bench.db"), sqlite.WithLogger(log))
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := startServer(ctx, st, 4, log)
	if err != nil {
		return err
	}
	defer srv.close()
	if _, err := srv.do(ctx, "POST", "/-/", []byte(benchKind), 200); err != nil {
		return err
	}
	filter := []byte(`{"resources":[{"attributes":{"bench":{"vm":{"group":"target"}}}}]}`)
	timeFilter := func(hdr ...string) (time.Duration, error) {
		var ds []time.Duration
		for r := 0; r < cfg.repeats; r++ {
			start := time.Now()
			var body []byte
			var err error
			if len(hdr) > 0 {
				body, err = srv.do(ctx, "GET", "/vm/", nil, 200, hdr...)
			} else {
				body, err = srv.do(ctx, "GET", "/vm/", filter, 200)
			}
			if err != nil {
				return 0, err
			}
			ds = append(ds, time.Since(start))
			var got struct {
				Locations []string `json:"X-OCCI-Location"`
			}
			if err := json.Unmarshal(body, &got); err != nil || len(got.Locations) != 10 {
				return 0, fmt.Errorf("filter returned %d entities, want 10 (%v)", len(got.Locations), err)
			}
		}
		return median(ds), nil
	}
	// 10 entities in group "target", the rest spread over 1,000 other groups.
	load := func(from, to int) error {
		_, err := runWorkers(ctx, to-from, 4, func(ctx context.Context, i int) error {
			n := from + i
			group := fmt.Sprintf("g%d", n%1000)
			if n < 10 {
				group = "target"
			}
			return putEntity(ctx, st, n, group)
		})
		return err
	}
	if err := load(0, 1000); err != nil {
		return err
	}
	small, err := timeFilter()
	if err != nil {
		return err
	}
	smallText, err := timeFilter(textFilter...)
	if err != nil {
		return err
	}
	loadStart := time.Now()
	if err := load(1000, cfg.filterBig); err != nil {
		return err
	}
	out("   loaded %d entities in %.1fs", cfg.filterBig, time.Since(loadStart).Seconds())
	big, err := timeFilter()
	if err != nil {
		return err
	}
	bigText, err := timeFilter(textFilter...)
	if err != nil {
		return err
	}
	ratio := big.Seconds() / small.Seconds()
	out("   filter → 10 of 1000: %v (median of %d); 10 of %d: %v; ratio %.2f (goal ≤ 2)", small, cfg.repeats, cfg.filterBig, big, ratio)
	results["filter_1k_ms"] = small.Seconds() * 1000
	results[fmt.Sprintf("filter_%dk_ms", cfg.filterBig/1000)] = big.Seconds() * 1000
	results["filter_big_entities"] = cfg.filterBig
	results["filter_100k_vs_1k"] = ratio
	textRatio := bigText.Seconds() / smallText.Seconds()
	out("   text filter (X-OCCI-Attribute header) → 10 of 1000: %v; 10 of %d: %v; ratio %.2f (goal ≤ 2)", smallText, cfg.filterBig, bigText, textRatio)
	results["filter_text_1k_ms"] = smallText.Seconds() * 1000
	results[fmt.Sprintf("filter_text_%dk_ms", cfg.filterBig/1000)] = bigText.Seconds() * 1000
	results["filter_text_100k_vs_1k"] = textRatio
	return benchListMemory(ctx, cfg, srv, out, results)
}

// textFilter is the OCCI text rendering of the JSON filter above.
var textFilter = []string{"X-OCCI-Attribute", `bench.vm.group="target"`}

// putEntity stores an entity document exactly as the entity service writes it.
func putEntity(ctx context.Context, st store.Store, n int, group string) error {
	e := benchEntity(n, group)
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = st.Put(ctx, store.Document{ID: e.Location, Body: body})
	return err
}

func benchEntity(n int, group string) *model.Entity {
	id := fmt.Sprintf("vm-%07d", n)
	e := &model.Entity{
		Location: "/vm/" + id, Type: model.TypeResource, ID: id, Kind: benchKindID,
		Attributes: map[string]any{"bench": map[string]any{"vm": map[string]any{"group": group, "n": float64(n), "state": "off"}}},
		Title:      "bench vm " + id, HasTitle: true,
	}
	e.Normalize()
	return e
}
