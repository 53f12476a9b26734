package choria

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"regexp"
	"strings"
)

// DDL is the part of a Choria JSON agent DDL the server uses; the document
// itself is kept as read (Raw) for the agent's OCCI entity.
type DDL struct {
	Metadata Metadata        `json:"metadata"`
	Actions  []ActionDDL     `json:"actions"`
	Raw      json.RawMessage `json:"-"`
}

// Metadata is a DDL's metadata block.
type Metadata struct {
	Name        string  `json:"name"`
	Description string  `json:"description,omitempty"`
	Provider    string  `json:"provider,omitempty"`
	Timeout     float64 `json:"timeout"`
	Version     string  `json:"version,omitempty"`
}

// ActionDDL declares one action: its inputs and outputs.
type ActionDDL struct {
	Action string               `json:"action"`
	Input  map[string]InputDDL  `json:"input"`
	Output map[string]OutputDDL `json:"output"`
}

// InputDDL declares one input.
type InputDDL struct {
	Type       string `json:"type"`
	Optional   bool   `json:"optional"`
	Validation string `json:"validation,omitempty"`
	MaxLength  int    `json:"maxlength,omitempty"`
	Default    any    `json:"default,omitempty"`
}

// OutputDDL declares one output; Default fills a reply that lacks it.
type OutputDDL struct {
	Type    string `json:"type,omitempty"`
	Default any    `json:"default,omitempty"`
}

var namePattern = regexp.MustCompile(`^[a-z0-9_]+$`)

// ParseDDL reads a JSON DDL and checks what the server relies on: a name
// and action names in Choria's alphabet.
func ParseDDL(raw []byte) (*DDL, error) {
	var d DDL
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("DDL: %w", err)
	}
	if !namePattern.MatchString(d.Metadata.Name) {
		return nil, fmt.Errorf("DDL: metadata.name %q must match %s", d.Metadata.Name, namePattern)
	}
	for _, a := range d.Actions {
		if !namePattern.MatchString(a.Action) {
			return nil, fmt.Errorf("DDL: action %q must match %s", a.Action, namePattern)
		}
	}
	d.Raw = append(json.RawMessage(nil), raw...)
	return &d, nil
}

// ActionDDL returns the declaration of action, or nil.
func (d *DDL) Action(name string) *ActionDDL {
	for i := range d.Actions {
		if d.Actions[i].Action == name {
			return &d.Actions[i]
		}
	}
	return nil
}

// CheckInputs validates data against the action's inputs, filling in
// defaults of absent optional inputs. It returns a failed reply, or nil.
// A missing required input is 3, an invalid one 4 (go-choria answers 1 for
// both; MCollective used 3 and 4).
func (a *ActionDDL) CheckInputs(data map[string]any) *Reply {
	for name, in := range a.Input {
		v, ok := data[name]
		if !ok || v == nil {
			if in.Default != nil {
				data[name] = in.Default
				continue
			}
			if !in.Optional {
				r := Fail(StatusMissingData, "Missing data: validation failed for input '%s': is required", name)
				return &r
			}
			continue
		}
		if err := in.check(v); err != nil {
			r := Fail(StatusInvalidData, "Validation failed: validation failed for input '%s': %v", name, err)
			return &r
		}
	}
	return nil
}

var shellUnsafe = []string{"`", "$", ";", "|", "&&", ">", "<"}

func (in InputDDL) check(v any) error {
	switch strings.ToLower(in.Type) {
	case "string":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("is not a string")
		}
		if in.MaxLength > 0 && len([]rune(s)) > in.MaxLength {
			return fmt.Errorf("is longer than %d characters", in.MaxLength)
		}
		return checkValidation(in.Validation, s)
	case "integer":
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) {
			return fmt.Errorf("is not an integer")
		}
	case "float", "number":
		if _, ok := v.(float64); !ok {
			return fmt.Errorf("is not a number")
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("is not a boolean")
		}
	case "list", "array":
		if _, ok := v.([]any); !ok {
			return fmt.Errorf("is not an array")
		}
	case "hash":
		if _, ok := v.(map[string]any); !ok {
			return fmt.Errorf("is not a hash")
		}
	}
	return nil
}

func checkValidation(validation, s string) error {
	switch validation {
	case "", "any":
		return nil
	case "shellsafe":
		for _, bad := range shellUnsafe {
			if strings.Contains(s, bad) {
				return fmt.Errorf("is not shell safe")
			}
		}
	case "ipv4address":
		if ip := net.ParseIP(s); ip == nil || ip.To4() == nil {
			return fmt.Errorf("is not an IPv4 address")
		}
	case "ipv6address":
		if ip := net.ParseIP(s); ip == nil || ip.To4() != nil {
			return fmt.Errorf("is not an IPv6 address")
		}
	case "ipaddress":
		if net.ParseIP(s) == nil {
			return fmt.Errorf("is not an IP address")
		}
	default:
		re, err := regexp.Compile(validation)
		if err != nil {
			return fmt.Errorf("has an invalid validation %q in the DDL", validation)
		}
		if !re.MatchString(s) {
			return fmt.Errorf("does not match %s", validation)
		}
	}
	return nil
}

// ApplyOutputDefaults fills absent outputs of data with the DDL's defaults.
func (a *ActionDDL) ApplyOutputDefaults(data map[string]any) {
	for name, out := range a.Output {
		if _, ok := data[name]; !ok && out.Default != nil {
			data[name] = out.Default
		}
	}
}
