package choriaagent

import (
	"context"
	"math"
	"net/http"

	"github.com/cmbs/cmbs/cmbs/choria"
	"github.com/cmbs/cmbs/occi/model"
)

// Processes is what the process agent needs from the Process Registry;
// *process.Provider (providers/process) satisfies it, and cmd/cmbsd passes
// it in.
type Processes interface {
	// ExecuteRef runs the definition ref names as the OCCI execute action
	// does with attrs (input or input_base64, timeout) and returns the
	// action's result. Its errors carry the HTTP status the action answers.
	ExecuteRef(ctx context.Context, ref string, attrs map[string]any, trigger string) (map[string]any, error)
	// Definitions lists the registered definitions, limit after skip.
	Definitions(ctx context.Context, limit, skip int) ([]map[string]any, error)
}

// ProcessAgent is the built-in Choria agent "process": the Process
// Registry over the bus. execute runs a registered definition through the
// same code path as POST <definition>?action=execute, and answers its
// result as the reply data; list lists the definitions.
//
// A run that was attempted answers statuscode 0 whatever its status
// (succeeded, failed, timeout, error), as the HTTP action answers 200; an
// unknown definition or bad input answers 4 (InvalidData), anything else
// that kept the run from being attempted 1 (Aborted).
type ProcessAgent struct {
	Processes Processes
}

var _ choria.Agent = ProcessAgent{}

// ProcessTrigger is the trigger execution records of bus runs carry.
const ProcessTrigger = "bus"

var processDDL = func() *choria.DDL {
	d, err := choria.ParseDDL([]byte(`{
  "$schema": "https://choria.io/schemas/mcorpc/ddl/v1/agent.json",
  "metadata": {"name": "process", "description": "The Process Registry: run registered process definitions, list them", "author": "cmbs", "license": "Apache-2.0", "url": "https://cmbs.dev", "provider": "builtin", "timeout": 120, "version": "1.0.0"},
  "actions": [
    {"action": "execute", "description": "Run a registered definition once (a service definition is started) and answer its result", "display": "always",
     "input": {
       "definition": {"prompt": "Definition", "description": "The definition's id, location (/process/definition/<id>) or URL", "type": "string", "optional": false, "validation": "^\\S+$", "maxlength": 1024},
       "input": {"prompt": "Input", "description": "Input text (UTF-8) given through the definition's input adapter", "type": "string", "optional": true},
       "input_base64": {"prompt": "Input (base64)", "description": "Input bytes, base64; instead of input", "type": "string", "optional": true},
       "timeout": {"prompt": "Timeout", "description": "Seconds; overrides the definition's timeout", "type": "number", "optional": true}
     },
     "output": {
       "status": {"description": "succeeded, failed, timeout, error (or running for a service)", "type": "string", "display_as": "Status"},
       "exit_code": {"description": "The exit code, null when the process did not exit by itself", "type": "integer", "display_as": "Exit code"},
       "output": {"description": "The output, when it is UTF-8", "type": "string", "display_as": "Output"},
       "output_base64": {"description": "The output, base64, when it is not UTF-8", "type": "string", "display_as": "Output (base64)"},
       "stderr": {"description": "Captured stderr", "type": "string", "display_as": "Stderr"},
       "error": {"description": "Why the status is not succeeded", "type": "string", "display_as": "Error"},
       "truncated": {"description": "The output exceeded the cap", "type": "boolean", "display_as": "Truncated"},
       "started_at": {"description": "RFC 3339", "type": "string", "display_as": "Started"},
       "finished_at": {"description": "RFC 3339", "type": "string", "display_as": "Finished"},
       "duration_ms": {"description": "Run time in milliseconds", "type": "number", "display_as": "Duration (ms)"},
       "execution": {"description": "The execution record's location", "type": "string", "display_as": "Execution"},
       "definition": {"description": "The definition's location", "type": "string", "display_as": "Definition"}
     }},
    {"action": "list", "description": "List the registered definitions, ordered by location", "display": "always",
     "input": {
       "limit": {"prompt": "Limit", "description": "At most this many", "type": "integer", "optional": true, "default": 100},
       "offset": {"prompt": "Offset", "description": "Skip this many first", "type": "integer", "optional": true, "default": 0}
     },
     "output": {
       "definitions": {"description": "id, location, exec, argv, process_type (application, owner when set) of each", "type": "array", "display_as": "Definitions"},
       "count": {"description": "How many are listed", "type": "integer", "display_as": "Count"}
     }}
  ]
}`))
	if err != nil {
		panic(err)
	}
	return d
}()

// DDL implements choria.Agent.
func (ProcessAgent) DDL() *choria.DDL { return processDDL }

// Call implements choria.Agent; the inputs were checked against the DDL.
func (a ProcessAgent) Call(ctx context.Context, req *choria.Request) choria.Reply {
	switch req.Action {
	case "execute":
		ref, _ := req.Data["definition"].(string)
		attrs := map[string]any{}
		for _, k := range []string{"input", "input_base64", "timeout"} {
			if v, ok := req.Data[k]; ok {
				attrs[k] = v
			}
		}
		res, err := a.Processes.ExecuteRef(ctx, ref, attrs, ProcessTrigger)
		if err != nil {
			return processFailure(err)
		}
		return choria.OK(res)
	case "list":
		limit, offset := intInput(req.Data["limit"]), intInput(req.Data["offset"])
		if limit < 0 || offset < 0 {
			return choria.Fail(choria.StatusInvalidData, "Validation failed: limit and offset must not be negative")
		}
		defs, err := a.Processes.Definitions(ctx, limit, offset)
		if err != nil {
			return processFailure(err)
		}
		list := make([]any, len(defs))
		for i, d := range defs {
			list[i] = d
		}
		return choria.OK(map[string]any{"definitions": list, "count": len(defs)})
	}
	return choria.Fail(choria.StatusUnknown, "Unknown action %s for agent process", req.Action)
}

func intInput(v any) int {
	f, _ := v.(float64)
	if f > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(f)
}

// processFailure maps an error of the Process Registry to a reply: what
// HTTP answers 400, 404 or 422 (bad input, unknown definition, a
// definition that cannot run) is 4, anything else 1.
func processFailure(err error) choria.Reply {
	switch model.StatusOf(err) {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusUnprocessableEntity:
		return choria.Fail(choria.StatusInvalidData, "Invalid Data: %v", err.Error())
	}
	return choria.Fail(choria.StatusAborted, "%v", err.Error())
}
