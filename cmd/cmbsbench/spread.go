package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// runs is one measurement repeated: every raw baseline and every broker
// measurement the goals compare is taken -runs times, its best used, and
// its spread printed, because the raw zmq4 figures alone moved 3× between
// machines and runs on a loaded one. lowerIsBetter marks durations.
type runs struct {
	vals          []float64
	lowerIsBetter bool
}

func rateRuns() *runs     { return &runs{} }
func durationRuns() *runs { return &runs{lowerIsBetter: true} }

func (r *runs) add(v float64)               { r.vals = append(r.vals, v) }
func (r *runs) addDuration(d time.Duration) { r.add(d.Seconds() * 1000) }

// best is the highest rate or the lowest duration: what the machine can
// do when others leave it alone.
func (r *runs) best() float64 {
	if len(r.vals) == 0 {
		return 0
	}
	if r.lowerIsBetter {
		return slices.Min(r.vals)
	}
	return slices.Max(r.vals)
}

// spread is min, median and max of the runs, and how many there were.
func (r *runs) spread() map[string]any {
	if len(r.vals) == 0 {
		return nil
	}
	return map[string]any{"min": slices.Min(r.vals), "median": medianOf(r.vals), "max": slices.Max(r.vals), "runs": len(r.vals)}
}

// String is "min/median/max over n runs" with the unit's precision.
func (r *runs) String() string {
	if len(r.vals) == 0 {
		return "no runs"
	}
	f := "%.0f"
	if r.lowerIsBetter || slices.Max(r.vals) < 100 {
		f = "%.3f"
	}
	parts := []string{fmt.Sprintf(f, slices.Min(r.vals)), fmt.Sprintf(f, medianOf(r.vals)), fmt.Sprintf(f, slices.Max(r.vals))}
	return fmt.Sprintf("min/median/max %s over %d runs", strings.Join(parts, "/"), len(r.vals))
}

// record stores r's best under key and its spread under key+"_spread",
// so the JSON line keeps its keys and gains the spread beside each.
func (r *runs) record(results map[string]any, key string) {
	results[key] = r.best()
	results[key+"_spread"] = r.spread()
}

// pairedRatios is num[i]/den[i] for the runs taken side by side (the same
// round of an alternating measurement): how much the ratio itself moved.
func pairedRatios(num, den *runs) *runs {
	out := rateRuns()
	for i := range min(len(num.vals), len(den.vals)) {
		if den.vals[i] != 0 {
			out.add(num.vals[i] / den.vals[i])
		}
	}
	return out
}
