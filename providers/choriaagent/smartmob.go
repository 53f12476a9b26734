package choriaagent

import (
	"context"

	"github.com/cmbs/cmbs/cmbs/choria"
)

// SmartmobProcesses is what the smartmob agent needs from the smartmob
// provider; *smartmob.Provider (providers/smartmob) satisfies it, and
// cmd/cmbsd passes it in. Each method goes through the path
// smartmob-agent's API and the OCCI interface use (the entity service's
// create, action and delete), and its errors carry the HTTP status they
// answer.
type SmartmobProcesses interface {
	// ListProcesses summarises every process (slug, state, pid, restarts,
	// …, location), ordered by slug.
	ListProcesses(ctx context.Context) ([]map[string]any, error)
	// ProcessStatus summarises the process with slug (404 when none).
	ProcessStatus(ctx context.Context, slug string) (map[string]any, error)
	// CreateProcess creates a process from smartmob-agent's create fields
	// (app, node, source_url, process_type, env), with the API's checks.
	CreateProcess(ctx context.Context, req map[string]any) (slug, location string, err error)
	// ProcessAction runs the OCCI action term (start, stop, restart) on
	// the process with slug and returns the action's result.
	ProcessAction(ctx context.Context, slug, term string) (map[string]any, error)
	// DeleteProcess stops and removes the process with slug.
	DeleteProcess(ctx context.Context, slug string) error
}

// SmartmobAgent is the built-in Choria agent "smartmob": the supervised
// smartmob processes over the bus, by slug. list and status read the
// processes as their entities hold them; create, start, stop, restart and
// delete run smartmob-agent's create-process, the OCCI actions and the
// OCCI delete (no second implementation).
//
// Codes follow the process agent: what HTTP answers 400, 404 or 422 (bad
// input, an unknown slug) is 4 (InvalidData), since the request names
// something this server does not hold, as an unknown definition does;
// anything else that failed (409 for a slug in use, 503 while the server
// stops) is 1 (Aborted) with the error's message. A missing required
// input is 3 and an input of the wrong type 4, from the DDL, as for every
// agent.
type SmartmobAgent struct {
	Processes SmartmobProcesses
}

var _ choria.Agent = SmartmobAgent{}

// The outputs an action on one process answers (status adds app, node,
// process_type and source_url).
const smartmobProcessOutputs = `
       "slug": {"description": "app.node", "type": "string", "display_as": "Slug"},
       "state": {"description": "pending, downloading, …, running, restarting, stopping or stopped", "type": "string", "display_as": "State"},
       "desired": {"description": "running or stopped", "type": "string", "display_as": "Desired"},
       "pid": {"description": "Process (group) id while running, else 0", "type": "integer", "display_as": "Pid", "default": 0},
       "restarts": {"description": "How many times the process was restarted", "type": "integer", "display_as": "Restarts", "default": 0},
       "last_exit_code": {"description": "Exit status of the last run that exited by itself, -1 when none did", "type": "integer", "display_as": "Last exit code", "default": -1},
       "started_at": {"description": "RFC 3339 time the running process was spawned, empty when none", "type": "string", "display_as": "Started", "default": ""},
       "location": {"description": "The process entity's location", "type": "string", "display_as": "Location"}`

const smartmobSlugInput = `
       "slug": {"prompt": "Slug", "description": "The process's slug (app.node)", "type": "string", "optional": false, "validation": "^\\S+$", "maxlength": 512}`

var smartmobDDL = func() *choria.DDL {
	d, err := choria.ParseDDL([]byte(`{
  "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
  "metadata": {"name": "smartmob", "description": "Supervised Procfile processes (smartmob-agent): create, list, inspect, start, stop, restart and delete them by slug", "author": "cmbs", "license": "Apache-2.0", "url": "https://cmbs.dev", "provider": "builtin", "timeout": 60, "version": "1.0.0"},
  "actions": [
    {"action": "list", "description": "List the processes, ordered by slug", "display": "always",
     "input": {},
     "output": {
       "processes": {"description": "slug, app, node, process_type, source_url, state, desired, pid, restarts, last_exit_code, started_at (when set) and location of each; env is not shown", "type": "array", "display_as": "Processes", "default": []},
       "count": {"description": "How many are listed", "type": "integer", "display_as": "Count", "default": 0}
     }},
    {"action": "status", "description": "Show one process", "display": "always",
     "input": {` + smartmobSlugInput + `},
     "output": {` + smartmobProcessOutputs + `,
       "app": {"description": "Application", "type": "string", "display_as": "App"},
       "node": {"description": "Node within the application", "type": "string", "display_as": "Node"},
       "process_type": {"description": "Procfile process type", "type": "string", "display_as": "Process type"},
       "source_url": {"description": "Archive URL", "type": "string", "display_as": "Source"}
     }},
    {"action": "create", "description": "Create a process: provision the archive and run its process type (as smartmob-agent's create-process)", "display": "always",
     "input": {
       "app": {"prompt": "App", "description": "Application name (letters, digits, _ . -)", "type": "string", "optional": false},
       "node": {"prompt": "Node", "description": "Node within the application, e.g. web.0 (letters, digits, _ . -)", "type": "string", "optional": false},
       "process_type": {"prompt": "Process type", "description": "The Procfile process type to run, e.g. web", "type": "string", "optional": false},
       "source_url": {"prompt": "Source URL", "description": "http(s) URL of the archive (zip or tar, optionally gzip-compressed)", "type": "string", "optional": false},
       "env": {"prompt": "Environment", "description": "Environment variables (strings); they win over .env and the Procfile's", "type": "hash", "optional": true}
     },
     "output": {
       "slug": {"description": "app.node", "type": "string", "display_as": "Slug"},
       "state": {"description": "pending: provisioning runs in the background", "type": "string", "display_as": "State", "default": "pending"},
       "location": {"description": "The process entity's location", "type": "string", "display_as": "Location"}
     }},
    {"action": "start", "description": "Provision (when needed) and run the process; desired becomes running", "display": "always",
     "input": {` + smartmobSlugInput + `},
     "output": {` + smartmobProcessOutputs + `}},
    {"action": "stop", "description": "Stop the process (SIGTERM to its group, SIGKILL after the grace); desired becomes stopped", "display": "always",
     "input": {` + smartmobSlugInput + `},
     "output": {` + smartmobProcessOutputs + `}},
    {"action": "restart", "description": "Stop the running process and start it again at once", "display": "always",
     "input": {` + smartmobSlugInput + `},
     "output": {` + smartmobProcessOutputs + `}},
    {"action": "delete", "description": "Stop the process and remove it", "display": "always",
     "input": {` + smartmobSlugInput + `},
     "output": {
       "slug": {"description": "The slug removed", "type": "string", "display_as": "Slug"},
       "deleted": {"description": "true", "type": "boolean", "display_as": "Deleted", "default": true}
     }}
  ]
}`))
	if err != nil {
		panic(err)
	}
	return d
}()

// DDL implements choria.Agent.
func (SmartmobAgent) DDL() *choria.DDL { return smartmobDDL }

// Call implements choria.Agent; the inputs were checked against the DDL.
func (a SmartmobAgent) Call(ctx context.Context, req *choria.Request) choria.Reply {
	slug, _ := req.Data["slug"].(string)
	var (
		data map[string]any
		err  error
	)
	switch req.Action {
	case "list":
		var list []map[string]any
		if list, err = a.Processes.ListProcesses(ctx); err == nil {
			out := make([]any, len(list))
			for i, p := range list {
				out[i] = p
			}
			data = map[string]any{"processes": out, "count": len(list)}
		}
	case "status":
		data, err = a.Processes.ProcessStatus(ctx, slug)
	case "create":
		var loc string
		if slug, loc, err = a.Processes.CreateProcess(ctx, req.Data); err == nil {
			data = map[string]any{"slug": slug, "location": loc}
		}
	case "start", "stop", "restart":
		data, err = a.Processes.ProcessAction(ctx, slug, req.Action)
	case "delete":
		if err = a.Processes.DeleteProcess(ctx, slug); err == nil {
			data = map[string]any{"slug": slug}
		}
	default:
		return choria.Fail(choria.StatusUnknown, "Unknown action %s for agent smartmob", req.Action)
	}
	if err != nil {
		return processFailure(err)
	}
	if data == nil {
		data = map[string]any{}
	}
	smartmobDDL.Action(req.Action).ApplyOutputDefaults(data)
	return choria.OK(data)
}
