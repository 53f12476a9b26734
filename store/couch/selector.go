package couch

import (
	"encoding/json"
	"fmt"
	"math"
)

// validateSelector rejects what CouchDB rejects when it parses a selector
// (unknown operators, operators with arguments of the wrong kind). The PouchDB
// test peer only notices such mistakes when it evaluates them against a
// document that has the field, so an empty or unrelated database would
// accept them; checking here gives one answer everywhere.
func validateSelector(raw []byte) error {
	var sel any
	if err := json.Unmarshal(raw, &sel); err != nil {
		return fmt.Errorf("selector: %w", err)
	}
	obj, ok := sel.(map[string]any)
	if !ok {
		return fmt.Errorf("selector is not a JSON object")
	}
	return checkSelector(obj)
}

// checkSelector checks an object in selector position: field names and
// combination operators as keys.
func checkSelector(obj map[string]any) error {
	for k, v := range obj {
		if len(k) == 0 || k[0] != '$' {
			if err := checkCondition(k, v); err != nil {
				return err
			}
			continue
		}
		switch k {
		case "$and", "$or", "$nor":
			list, ok := v.([]any)
			if !ok {
				return fmt.Errorf("%s needs an array of selectors", k)
			}
			for _, e := range list {
				sub, ok := e.(map[string]any)
				if !ok {
					return fmt.Errorf("%s needs an array of selectors", k)
				}
				if err := checkSelector(sub); err != nil {
					return err
				}
			}
		case "$not":
			sub, ok := v.(map[string]any)
			if !ok {
				return fmt.Errorf("$not needs a selector")
			}
			if err := checkSelector(sub); err != nil {
				return err
			}
		default:
			if err := checkOperator(k, k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkCondition checks the value of a field: a literal (implicit $eq), or an
// object of operators, or a nested object of fields.
func checkCondition(field string, v any) error {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	for k, arg := range obj {
		if len(k) > 0 && k[0] == '$' {
			if err := checkOperator(field, k, arg); err != nil {
				return err
			}
		} else if err := checkCondition(field+"."+k, arg); err != nil {
			return err
		}
	}
	return nil
}

// checkOperator checks one condition operator and its argument.
func checkOperator(field, op string, arg any) error {
	bad := func(want string) error { return fmt.Errorf("%s on %q needs %s", op, field, want) }
	switch op {
	case "$eq", "$ne", "$lt", "$lte", "$gt", "$gte":
	case "$in", "$nin", "$all":
		if _, ok := arg.([]any); !ok {
			return bad("an array")
		}
	case "$exists":
		if _, ok := arg.(bool); !ok {
			return bad("a boolean")
		}
	case "$type", "$regex", "$beginsWith":
		if _, ok := arg.(string); !ok {
			return bad("a string")
		}
	case "$size":
		if n, ok := arg.(float64); !ok || n < 0 || n != math.Trunc(n) {
			return bad("a non-negative integer")
		}
	case "$mod":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return bad("[divisor, remainder]")
		}
		for _, x := range a {
			if n, ok := x.(float64); !ok || n != math.Trunc(n) {
				return bad("integers")
			}
		}
		if a[0].(float64) == 0 {
			return bad("a non-zero divisor")
		}
	case "$elemMatch", "$allMatch", "$keyMapMatch":
		sub, ok := arg.(map[string]any)
		if !ok {
			return bad("a selector")
		}
		return checkSelector(sub)
	case "$not":
		sub, ok := arg.(map[string]any)
		if !ok {
			return bad("a selector")
		}
		return checkCondition(field, sub)
	case "$and", "$or", "$nor":
		list, ok := arg.([]any)
		if !ok {
			return bad("an array")
		}
		for _, e := range list {
			if err := checkCondition(field, e); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unknown operator %s", op)
	}
	return nil
}
