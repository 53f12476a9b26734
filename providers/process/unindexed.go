package process

// UnindexedPaths are the store paths of an execution record that no code
// path searches (outputs, times, sizes): rewritten with every record and
// never filtered on, so an embedded store opened with
// sqlite.WithUnsearched of them writes no index row for them. A listing
// filter on one of them still gives the exact result, by reading the
// records. The definition, status, exit code, trigger and restarts stay
// indexed.
var UnindexedPaths = []string{
	"attributes.process.execution.output",
	"attributes.process.execution.output_base64",
	"attributes.process.execution.stderr",
	"attributes.process.execution.error",
	"attributes.process.execution.started_at",
	"attributes.process.execution.finished_at",
	"attributes.process.execution.duration_ms",
	"attributes.process.execution.truncated",
	"attributes.process.execution.stderr_truncated",
	"attributes.process.execution.record_truncated",
	"attributes.process.execution.input_size",
	"attributes.process.execution.output_size",
	"attributes.process.execution.stderr_size",
	"attributes.process.execution.pid",
}
