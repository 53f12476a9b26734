package categories

import "github.com/cmbs/cmbs/occi/model"

// smartmob category identifiers.
const (
	SmartmobScheme      = "http://cmbs.dev/occi/smartmob#"
	SmartmobActions     = "http://cmbs.dev/occi/smartmob/action#"
	SmartmobProcessKind = SmartmobScheme + "process"

	// SmartmobProvider is the provider name the smartmob kind is bound to.
	SmartmobProvider = "smartmob"
)

// SmartmobReadOnly are the smartmob process attributes (under
// smartmob.process.) the server writes; a client giving one on create or
// changing one on update gets 400.
var SmartmobReadOnly = []string{"slug", "state", "pid", "restarts", "last_exit_code", "started_at", "desired"}

// Smartmob returns the smartmob kind and its actions as built-in
// categories: supervised Procfile processes at /smartmob/process/ (the
// attributes smartmob.process.* are smartmob-agent's field names; slug,
// state, pid, restarts, last_exit_code, started_at and desired are
// written by the server), with the actions start, stop and restart. The
// kind is bound to SmartmobProvider.
func Smartmob() []*model.Category {
	str := func(required bool, desc string, extra ...any) map[string]any {
		return attr("string", true, required, desc, extra...)
	}
	name := "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
	actions := []map[string]any{
		{"term": "start", "scheme": SmartmobActions, "title": "Provision and run the process (desired running)"},
		{"term": "stop", "scheme": SmartmobActions, "title": "Stop the process: SIGTERM to its group, SIGKILL after the grace (desired stopped)"},
		{"term": "restart", "scheme": SmartmobActions, "title": "Stop the running process and start it again at once"},
	}
	kinds := []map[string]any{
		{"term": "process", "scheme": SmartmobScheme, "title": "Supervised Procfile process (smartmob-agent)", "parent": ResourceKind,
			"location": "/smartmob/process/",
			"attributes": map[string]any{
				"smartmob.process.app":            str(true, "application name (letters, digits, _ . -)", "pattern", name),
				"smartmob.process.node":           str(true, "node name within the application, e.g. web.0 (letters, digits, _ . -)", "pattern", name),
				"smartmob.process.process_type":   str(true, "Procfile process type to run, e.g. web"),
				"smartmob.process.source_url":     str(true, "http(s) URL of the application archive (zip or tar, optionally gzip-compressed)", "pattern", "^https?://.+$"),
				"smartmob.process.env":            attr("object", true, false, "environment variables (strings); they win over .env and the Procfile's"),
				"smartmob.process.slug":           str(false, "app.node, unique on this server (read-only)"),
				"smartmob.process.state":          str(false, "pending, downloading, download failure, unpacking, unpack failure, processing, no procfile, unknown process type, running, restarting, stopping or stopped (read-only)"),
				"smartmob.process.pid":            attr("number", true, false, "process (and process group) id while running (read-only)"),
				"smartmob.process.restarts":       attr("number", true, false, "how many times the process was restarted (read-only)"),
				"smartmob.process.last_exit_code": attr("number", true, false, "exit status of the last run that exited by itself (read-only)"),
				"smartmob.process.started_at":     str(false, "RFC 3339 time the running process was spawned (read-only)"),
				"smartmob.process.desired":        str(false, "running or stopped: what the server keeps the process at, also across restarts (read-only; set by start and stop)"),
			},
			"actions": []any{SmartmobActions + "start", SmartmobActions + "stop", SmartmobActions + "restart"}},
	}
	return parseBuiltin("smartmob", SmartmobProvider, actions, kinds, nil, nil)
}
