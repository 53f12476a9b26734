// Package engine runs Process Registry definitions: it validates a
// definition document (the registry's field names, with the spellings its
// own documentation uses accepted and made canonical) and runs a "single"
// definition once — no shell, exec resolved like execvp, ${input_file} and
// ${output_file} substituted inside argv and adapter parameters, input by
// STDIN or a file, output from STDOUT, STDERR or a file, a private run
// directory removed afterwards, a minimal environment, the process in its
// own process group, killed whole on timeout (TERM, then KILL after a
// grace), and output capped.
//
// The package knows nothing of OCCI or HTTP: the process provider maps
// entities onto it, and its errors name the offending field so that the
// caller can answer 400 with it.
package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Process types.
const (
	TypeSingle  = "single"
	TypeService = "service"
)

// Placeholders substituted in argv and adapter parameters.
const (
	InputFile  = "${input_file}"
	OutputFile = "${output_file}"
)

// Stream names an adapter may use.
const (
	StreamStdin  = "STDIN"
	StreamStdout = "STDOUT"
	StreamStderr = "STDERR"
)

// Definition is a validated process definition.
type Definition struct {
	Exec        string
	Argv        []string
	Application string
	// ProcessType is TypeSingle or TypeService.
	ProcessType string
	// Timeout in seconds; 0 means none given.
	Timeout     float64
	Cwd         string
	Environment map[string]string
	Input       Adapter
	Output      Adapter
	// RunOnMessage allows a CMBS message naming this definition to run it.
	RunOnMessage bool
}

// Adapter is one side's adapter. The zero value means "no adapter".
type Adapter struct {
	// Type is "file" or "" (none).
	Type string
	// Stream is STDIN (input) or STDOUT/STDERR (output) for a stream adapter.
	Stream string
	// Path is the file_path parameter, placeholders not yet substituted.
	Path string
	// Params are the parameters as given (canonical key), placeholders not
	// yet substituted.
	Params map[string]any
}

// IsFile reports whether the adapter moves data through a file path.
func (a Adapter) IsFile() bool { return a.Type == "file" && a.Path != "" }

// FieldError is a definition that is not valid; Field names the field
// (dotted below the definition, e.g. "input_adapter.input_type").
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// fields lists the definition's fields, in canonical spelling.
var fields = map[string]bool{
	"exec": true, "argv": true, "application": true, "process_type": true, "timeout": true,
	"cwd": true, "environment": true, "input_adapter": true, "output_adapter": true, "run_on_message": true,
}

// Parse validates a definition document (decoded JSON) and returns it with
// the canonical document to store: "args" becomes "argv", and "input_params"
// and "output_params" become "input_parameters" and "output_parameters".
// Every other value is kept as given (defaults are not added, so what is
// stored is what was given). A null field counts as absent.
func Parse(doc map[string]any) (*Definition, map[string]any, error) {
	if doc == nil {
		return nil, nil, fieldErr("exec", "is required (the path or name of the executable)")
	}
	canon := make(map[string]any, len(doc))
	for k, v := range doc {
		if v == nil {
			continue
		}
		key := k
		if k == "args" {
			key = "argv"
			if doc["argv"] != nil {
				return nil, nil, fieldErr("args", "give argv or its other spelling args, not both")
			}
		}
		if !fields[key] {
			return nil, nil, fieldErr(k, "is not a field of a process definition (exec, argv, application, process_type, timeout, cwd, environment, input_adapter, output_adapter, run_on_message)")
		}
		canon[key] = v
	}
	d := &Definition{ProcessType: TypeSingle}
	var err error
	if d.Exec, err = str(canon, "exec"); err != nil {
		return nil, nil, err
	}
	if d.Exec == "" {
		return nil, nil, fieldErr("exec", "is required (the path or name of the executable)")
	}
	if strings.ContainsRune(d.Exec, 0) {
		return nil, nil, fieldErr("exec", "must not contain a NUL byte")
	}
	if v, ok := canon["argv"]; ok {
		list, ok := v.([]any)
		if !ok {
			return nil, nil, fieldErr("argv", "must be an array of strings, not %s", typeName(v))
		}
		for i, a := range list {
			s, ok := a.(string)
			if !ok {
				return nil, nil, fieldErr("argv", "element %d must be a string, not %s", i, typeName(a))
			}
			if strings.ContainsRune(s, 0) {
				return nil, nil, fieldErr("argv", "element %d contains a NUL byte", i)
			}
			d.Argv = append(d.Argv, s)
		}
	}
	if d.Application, err = str(canon, "application"); err != nil {
		return nil, nil, err
	}
	if pt, err := str(canon, "process_type"); err != nil {
		return nil, nil, err
	} else if pt != "" {
		if pt != TypeSingle && pt != TypeService {
			return nil, nil, fieldErr("process_type", "%q: want single or service", pt)
		}
		d.ProcessType = pt
	}
	if v, ok := canon["timeout"]; ok {
		t, ok := number(v)
		if !ok {
			return nil, nil, fieldErr("timeout", "must be a number of seconds, not %s", typeName(v))
		}
		if !(t > 0) || math.IsInf(t, 0) {
			return nil, nil, fieldErr("timeout", "%v: must be a positive number of seconds", v)
		}
		d.Timeout = t
	}
	if d.Cwd, err = str(canon, "cwd"); err != nil {
		return nil, nil, err
	}
	if v, ok := canon["environment"]; ok {
		env, ok := v.(map[string]any)
		if !ok {
			return nil, nil, fieldErr("environment", "must be an object of strings, not %s", typeName(v))
		}
		d.Environment = make(map[string]string, len(env))
		for name, val := range env {
			s, ok := val.(string)
			if !ok {
				return nil, nil, fieldErr("environment", "%s must be a string, not %s", name, typeName(val))
			}
			if name == "" || strings.ContainsAny(name, "=\x00") || strings.ContainsRune(s, 0) {
				return nil, nil, fieldErr("environment", "%q is not a valid variable name (non-empty, no '=' or NUL)", name)
			}
			d.Environment[name] = s
		}
	}
	if v, ok := canon["run_on_message"]; ok {
		b, ok := boolean(v)
		if !ok {
			return nil, nil, fieldErr("run_on_message", "must be true or false, not %v", v)
		}
		d.RunOnMessage = b
		canon["run_on_message"] = b
	}
	for _, side := range []string{"input", "output"} {
		v, ok := canon[side+"_adapter"]
		if !ok {
			continue
		}
		a, c, err := parseAdapter(side, v)
		if err != nil {
			return nil, nil, err
		}
		canon[side+"_adapter"] = c
		if side == "input" {
			d.Input = a
		} else {
			d.Output = a
		}
	}
	if err := checkPlaceholders(d); err != nil {
		return nil, nil, err
	}
	return d, canon, nil
}

// parseAdapter validates one adapter and returns its canonical document.
func parseAdapter(side string, v any) (Adapter, map[string]any, error) {
	field := side + "_adapter"
	m, ok := v.(map[string]any)
	if !ok {
		return Adapter{}, nil, fieldErr(field, "must be an object, not %s", typeName(v))
	}
	typeKey, paramsKey, shortKey := side+"_type", side+"_parameters", side+"_params"
	canon := map[string]any{}
	var params map[string]any
	for k, val := range m {
		switch k {
		case typeKey:
			canon[k] = val
		case paramsKey, shortKey:
			if val == nil {
				continue
			}
			if params != nil {
				return Adapter{}, nil, fieldErr(field+"."+paramsKey, "give %s or its other spelling %s, not both", paramsKey, shortKey)
			}
			p, ok := val.(map[string]any)
			if !ok {
				return Adapter{}, nil, fieldErr(field+"."+paramsKey, "must be an object, not %s", typeName(val))
			}
			params = p
		default:
			return Adapter{}, nil, fieldErr(field+"."+k, "is not a field of an %s adapter (%s, %s)", side, typeKey, paramsKey)
		}
	}
	t, ok := canon[typeKey].(string)
	if !ok {
		return Adapter{}, nil, fieldErr(field+"."+typeKey, "is required: the only adapter type is \"file\"")
	}
	if t != "file" {
		return Adapter{}, nil, fieldErr(field+"."+typeKey, "%q is not supported: the only adapter type is \"file\"", t)
	}
	a := Adapter{Type: t, Params: params}
	if params == nil {
		return Adapter{}, nil, fieldErr(field+"."+paramsKey, "is required: a file_path, or file_type \"stream\" with a stream_name")
	}
	canon[paramsKey] = params
	pfield := field + "." + paramsKey
	path, hasPath := params["file_path"]
	ft, hasType := params["file_type"]
	stream, hasStream := params["stream_name"]
	if hasPath {
		s, ok := path.(string)
		if !ok || s == "" {
			return Adapter{}, nil, fieldErr(pfield+".file_path", "must be a non-empty string")
		}
		if hasStream || (hasType && ft != "file") {
			return Adapter{}, nil, fieldErr(pfield, "give a file_path or a stream (file_type \"stream\", stream_name), not both")
		}
		a.Path = s
		return a, canon, nil
	}
	if ft != "stream" {
		return Adapter{}, nil, fieldErr(pfield, "needs a file_path, or file_type \"stream\" with a stream_name")
	}
	name, _ := stream.(string)
	switch {
	case side == "input" && name == StreamStdin:
	case side == "output" && (name == StreamStdout || name == StreamStderr):
	case side == "input":
		return Adapter{}, nil, fieldErr(pfield+".stream_name", "%v: an input stream can only be STDIN", stream)
	default:
		return Adapter{}, nil, fieldErr(pfield+".stream_name", "%v: an output stream is STDOUT or STDERR", stream)
	}
	a.Stream = name
	return a, canon, nil
}

// checkPlaceholders refuses ${input_file} or ${output_file} used where no
// file adapter gives them a meaning: the process would receive the literal
// text instead of a path.
func checkPlaceholders(d *Definition) error {
	uses := func(ph string) string {
		for _, a := range d.Argv {
			if strings.Contains(a, ph) {
				return "argv"
			}
		}
		if paramsUse(d.Input.Params, ph) {
			return "input_adapter"
		}
		if paramsUse(d.Output.Params, ph) {
			return "output_adapter"
		}
		return ""
	}
	if f := uses(InputFile); f != "" && !d.Input.IsFile() {
		return fieldErr(f, "uses %s but the input adapter is not a file adapter with a file_path (e.g. {\"input_type\":\"file\",\"input_parameters\":{\"file_path\":\"%s\"}})", InputFile, InputFile)
	}
	if f := uses(OutputFile); f != "" && !d.Output.IsFile() {
		return fieldErr(f, "uses %s but the output adapter is not a file adapter with a file_path (e.g. {\"output_type\":\"file\",\"output_parameters\":{\"file_path\":\"%s\"}})", OutputFile, OutputFile)
	}
	return nil
}

func paramsUse(v any, ph string) bool {
	switch t := v.(type) {
	case string:
		return strings.Contains(t, ph)
	case map[string]any:
		for _, x := range t {
			if paramsUse(x, ph) {
				return true
			}
		}
	case []any:
		for _, x := range t {
			if paramsUse(x, ph) {
				return true
			}
		}
	}
	return false
}

func str(m map[string]any, field string) (string, error) {
	v, ok := m[field]
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fieldErr(field, "must be a string, not %s", typeName(v))
	}
	return s, nil
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func boolean(v any) (bool, bool) {
	switch b := v.(type) {
	case bool:
		return b, true
	case string:
		switch strings.ToLower(b) {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case float64, int, int64, json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// IsFieldError reports whether err is a *FieldError and returns it.
func IsFieldError(err error) (*FieldError, bool) {
	var fe *FieldError
	ok := errors.As(err, &fe)
	return fe, ok
}
