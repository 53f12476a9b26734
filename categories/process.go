package categories

import "github.com/cmbs/cmbs/occi/model"

// Process Registry category identifiers.
const (
	ProcessScheme         = "http://cmbs.dev/occi/process#"
	ProcessActions        = "http://cmbs.dev/occi/process/action#"
	ProcessDefinitionKind = ProcessScheme + "definition"
	ProcessExecutionKind  = ProcessScheme + "execution"
	// RunnableMixin lets a CMBS message name a definition its receiver runs.
	RunnableMixin = ProcessScheme + "runnable"
	// CMBSMessageKind is the CMBS message kind the runnable mixin applies to
	// (registered by clients, as pyCMBS's files do).
	CMBSMessageKind = "http://houssem.org/cmbs#message"

	// ProcessProvider is the provider name the process kinds are bound to.
	ProcessProvider = "process_registry"
)

// Process returns the Process Registry's kinds, mixin and actions as
// built-in categories: definitions at /process/definition/ (attributes
// process.definition.* are the registry's field names), the read-only
// execution records at /process/execution/, the actions execute (on a
// definition) and cancel (on a running execution), and the runnable mixin
// of CMBS messages. The kinds are bound to ProcessProvider.
func Process() []*model.Category {
	str := func(mutable, required bool, desc string, extra ...any) map[string]any {
		return attr("string", mutable, required, desc, extra...)
	}
	typed := func(typ, desc string, extra ...any) map[string]any { return attr(typ, true, false, desc, extra...) }
	actions := []map[string]any{
		{"term": "execute", "scheme": ProcessActions, "title": "Run the definition once and return its result",
			"attributes": map[string]any{
				"input":        str(true, false, "input text (UTF-8) fed through the input adapter"),
				"input_base64": str(true, false, "input bytes, base64-encoded (instead of input)"),
				"timeout":      typed("number", "seconds before the process group is killed (overrides the definition's)"),
			}},
		{"term": "cancel", "scheme": ProcessActions, "title": "Stop a running execution"},
	}
	kinds := []map[string]any{
		{"term": "definition", "scheme": ProcessScheme, "title": "Process definition", "parent": ResourceKind,
			"location": "/process/definition/",
			"attributes": map[string]any{
				"process.definition.exec":           str(true, true, "path or name (looked up in PATH) of the executable"),
				"process.definition.argv":           typed("array", "arguments (strings); ${input_file} and ${output_file} are substituted"),
				"process.definition.args":           typed("array", "the registry documentation's spelling of argv; stored as argv"),
				"process.definition.application":    str(true, false, "reference to the application the process runs on (kept, not interpreted)"),
				"process.definition.process_type":   str(true, false, "single (runs once per execute; the default) or service (long-running)", "pattern", enum("single|service")),
				"process.definition.timeout":        typed("number", "seconds an execution may run (positive)"),
				"process.definition.cwd":            str(true, false, "working directory (default: the run's private directory)"),
				"process.definition.environment":    typed("object", "environment variables (strings), added to a minimal base"),
				"process.definition.input_adapter":  typed("object", "how input reaches the process: {input_type: file, input_parameters: {file_path} or {file_type: stream, stream_name: STDIN}}"),
				"process.definition.output_adapter": typed("object", "where the output is read: {output_type: file, output_parameters: {file_path} or {file_type: stream, stream_name: STDOUT|STDERR}}"),
				"process.definition.run_on_message": attr("boolean", true, false, "whether a CMBS message naming this definition may run it (default false)"),
				"process.owner":                     str(true, false, "the user who registered the definition (set by the server)"),
			},
			"actions": []any{ProcessActions + "execute"}},
		{"term": "execution", "scheme": ProcessScheme, "title": "Process execution (a record of one run)", "parent": ResourceKind,
			"location": "/process/execution/",
			"attributes": map[string]any{
				"process.execution.definition":       str(true, false, "location of the definition run"),
				"process.execution.status":           str(true, false, "running, succeeded, failed, timeout, error or cancelled (a service runs until cancelled)"),
				"process.execution.exit_code":        typed("number", "exit status (absent when the process did not exit by itself)"),
				"process.execution.output":           str(true, false, "output, when it is UTF-8 text"),
				"process.execution.output_base64":    str(true, false, "output, base64-encoded, when it is not UTF-8 text"),
				"process.execution.stderr":           str(true, false, "standard error"),
				"process.execution.error":            str(true, false, "why the status is not succeeded"),
				"process.execution.started_at":       str(true, false, "RFC 3339 time the run started"),
				"process.execution.finished_at":      str(true, false, "RFC 3339 time the run finished"),
				"process.execution.duration_ms":      typed("number", "run time in milliseconds"),
				"process.execution.truncated":        attr("boolean", true, false, "whether the output exceeded the cap"),
				"process.execution.stderr_truncated": attr("boolean", true, false, "whether stderr exceeded the cap"),
				"process.execution.input_size":       typed("number", "input size in bytes"),
				"process.execution.record_truncated": attr("boolean", true, false, "whether this record keeps less output or stderr than the run gave (the record's own cap; the execute answer had all of it)"),
				"process.execution.output_size":      typed("number", "output size in bytes, when the record keeps less of it"),
				"process.execution.stderr_size":      typed("number", "stderr size in bytes, when the record keeps less of it"),
				"process.execution.pid":              typed("number", "process (and process group) id of the run"),
				"process.execution.trigger":          str(true, false, "what started the run: an HTTP action or a CMBS message"),
				"process.execution.restarts":         typed("number", "how many times a service was restarted"),
			},
			"actions": []any{ProcessActions + "cancel"}},
	}
	mixins := []map[string]any{
		{"term": "runnable", "scheme": ProcessScheme, "title": "A CMBS message that runs a process definition on its receiver",
			"location": "/process/runnable/", "applies": []any{CMBSMessageKind},
			"attributes": map[string]any{
				"process.definition_ref": str(true, true, "id or location of a definition registered on the receiving server (it runs only when that definition has run_on_message true)"),
			}},
	}
	return parseBuiltin("process", ProcessProvider, actions, kinds, mixins, nil)
}
