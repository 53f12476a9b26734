package sqlite

// benchOptions are the options the write benchmarks open their stores
// with (the options cmbsd's wiring gives that matter to them).
func benchOptions() []Option { return nil }
