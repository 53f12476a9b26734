//go:build race

package sqlite

// raceEnabled scales down the slowest tests: SQLite's transpiled C runs
// many times slower under the race detector.
const raceEnabled = true
