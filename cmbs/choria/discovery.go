package choria

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Node is one discoverable node: for cmbsd, a CMBS member it knows.
type Node struct {
	Identity string
	// Facts are flat: dotted names to scalar values.
	Facts   map[string]any
	Classes []string
	Agents  []string
	// Collectives the node is in; empty means every collective.
	Collectives []string
}

// NodeSource lists the nodes discovery chooses from.
type NodeSource interface {
	Nodes(ctx context.Context) ([]Node, error)
}

// NodeSourceFunc adapts a function to NodeSource.
type NodeSourceFunc func(ctx context.Context) ([]Node, error)

// Nodes implements NodeSource.
func (f NodeSourceFunc) Nodes(ctx context.Context) ([]Node, error) { return f(ctx) }

// DiscoveryRequest is an io.choria.choria.discovery.v1.external_request.
type DiscoveryRequest struct {
	Protocol   string          `json:"protocol"`
	Collective string          `json:"collective"`
	Timeout    float64         `json:"timeout"`
	Options    map[string]any  `json:"options"`
	Filter     DiscoveryFilter `json:"filter"`
}

// DiscoveryFilter is a discovery request's filter.
type DiscoveryFilter struct {
	Fact     []FactFilter `json:"fact"`
	Class    []string     `json:"cf_class"`
	Identity []string     `json:"identity"`
	Compound []string     `json:"compound"`
	Agent    []string     `json:"agent"`
}

// FactFilter compares one fact.
type FactFilter struct {
	Fact     string `json:"fact"`
	Operator string `json:"operator"`
	Value    string `json:"value"`
}

// DiscoveryReply is an io.choria.choria.discovery.v1.external_reply.
type DiscoveryReply struct {
	Protocol string   `json:"protocol"`
	Nodes    []string `json:"nodes,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// discover filters the nodes. Unsupported filters (any compound filter, a
// comparison on a fact that is not a scalar) answer with error.
func (d *Dispatcher) discover(ctx context.Context, body []byte) DiscoveryReply {
	var req DiscoveryRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return DiscoveryReply{Error: err.Error()}
	}
	if len(req.Filter.Compound) > 0 {
		return DiscoveryReply{Error: "compound filters are not supported"}
	}
	if d.nodes == nil {
		return DiscoveryReply{Error: "discovery is not available on this server"}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(req.Timeout*float64(time.Second)))
	defer cancel()
	nodes, err := d.nodes.Nodes(ctx)
	if err != nil {
		return DiscoveryReply{Error: "listing nodes: " + err.Error()}
	}
	limit := 0
	if l, ok := req.Options["limit"].(float64); ok && l > 0 {
		limit = int(l)
	}
	found := []string{}
	for _, n := range nodes {
		ok, err := req.Filter.matches(n, req.Collective)
		if err != nil {
			return DiscoveryReply{Error: err.Error()}
		}
		if ok && !slices.Contains(found, n.Identity) {
			found = append(found, n.Identity)
		}
	}
	sort.Strings(found)
	if limit > 0 && len(found) > limit {
		found = found[:limit]
	}
	return DiscoveryReply{Nodes: found}
}

func (f DiscoveryFilter) matches(n Node, collective string) (bool, error) {
	if len(n.Collectives) > 0 && !slices.Contains(n.Collectives, collective) {
		return false, nil
	}
	if len(f.Identity) > 0 {
		any := false
		for _, id := range f.Identity {
			ok, err := matchName(id, n.Identity)
			if err != nil {
				return false, err
			}
			any = any || ok
		}
		if !any {
			return false, nil
		}
	}
	for _, c := range f.Class {
		if ok, err := matchAny(c, n.Classes); err != nil || !ok {
			return false, err
		}
	}
	for _, a := range f.Agent {
		if ok, err := matchAny(a, n.Agents); err != nil || !ok {
			return false, err
		}
	}
	for _, ff := range f.Fact {
		ok, err := ff.matches(n.Facts)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// matchName matches a filter value against a name: /regexp/ or exact.
func matchName(pattern, name string) (bool, error) {
	if len(pattern) >= 2 && strings.HasPrefix(pattern, "/") && strings.HasSuffix(pattern, "/") {
		re, err := regexp.Compile(pattern[1 : len(pattern)-1])
		if err != nil {
			return false, fmt.Errorf("invalid regular expression %s: %v", pattern, err)
		}
		return re.MatchString(name), nil
	}
	return pattern == name, nil
}

func matchAny(pattern string, names []string) (bool, error) {
	for _, n := range names {
		ok, err := matchName(pattern, n)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

func (ff FactFilter) matches(facts map[string]any) (bool, error) {
	v, ok := facts[ff.Fact]
	if !ok {
		return false, nil
	}
	var s string
	var num float64
	isNum := false
	switch x := v.(type) {
	case string:
		s = x
		if f, err := strconv.ParseFloat(x, 64); err == nil {
			num, isNum = f, true
		}
	case float64:
		s, num, isNum = strconv.FormatFloat(x, 'f', -1, 64), x, true
	case int64:
		s, num, isNum = strconv.FormatInt(x, 10), float64(x), true
	case bool:
		s = strconv.FormatBool(x)
	default:
		return false, fmt.Errorf("fact %s is a %T: only string, number and boolean facts can be compared", ff.Fact, v)
	}
	switch ff.Operator {
	case "==":
		return s == ff.Value, nil
	case "!=":
		return s != ff.Value, nil
	case "=~":
		if _, isStr := v.(string); !isStr {
			return false, fmt.Errorf("operator =~ needs a string fact; %s is a %T", ff.Fact, v)
		}
		re, err := regexp.Compile(strings.TrimSuffix(strings.TrimPrefix(ff.Value, "/"), "/"))
		if err != nil {
			return false, fmt.Errorf("invalid regular expression %s: %v", ff.Value, err)
		}
		return re.MatchString(s), nil
	}
	want, err := strconv.ParseFloat(ff.Value, 64)
	if err != nil || !isNum {
		return false, fmt.Errorf("operator %s needs numbers; fact %s is %q, value %q", ff.Operator, ff.Fact, s, ff.Value)
	}
	switch ff.Operator {
	case "<":
		return num < want, nil
	case ">":
		return num > want, nil
	case "<=":
		return num <= want, nil
	case ">=":
		return num >= want, nil
	}
	return false, fmt.Errorf("unsupported operator %s", ff.Operator)
}

// FlattenFacts flattens nested attributes into dotted names, keeping
// scalars and arrays as they are.
func FlattenFacts(attrs map[string]any) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			if sub, ok := v.(map[string]any); ok {
				walk(name, sub)
				continue
			}
			out[name] = v
		}
	}
	walk("", attrs)
	return out
}
