package model

import (
	"reflect"
	"testing"
)

// CheckPatch, given an old tree whose values are valid, answers as
// CheckUpdate does on the merged tree: the same error (naming the same
// attribute) or none.
func TestCheckPatchAgreesWithCheckUpdate(t *testing.T) {
	defs, err := ParseAttrDefs(map[string]any{
		"x.y.mode":   map[string]any{"type": "string", "default": "on", "pattern": "^(on|off)$", "mutable": true},
		"x.y.id":     map[string]any{"type": "string", "required": true, "mutable": false},
		"x.y.list":   map[string]any{"type": "Array", "mutable": true},
		"x.y.result": map[string]any{"type": "Object", "mutable": true},
		"x.y.name":   map[string]any{"type": "string", "required": true, "mutable": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	set := NewAttrSet(defs)
	set.SetMaxValues(6)
	base := func() map[string]any {
		return map[string]any{"x": map[string]any{"y": map[string]any{"id": "a", "mode": "on", "name": "n"}},
			"occi": map[string]any{"core": map[string]any{"title": "t"}}}
	}
	y := func(m map[string]any) map[string]any { return map[string]any{"x": map[string]any{"y": m}} }
	cases := []struct {
		name    string
		patch   map[string]any
		wantErr string // the attribute the error names; "" for none, "-" for an error naming none
	}{
		{"valid values", y(map[string]any{"mode": "off", "list": []any{"a"}, "result": map[string]any{"deliveries": []any{map[string]any{"ok": true}}}}), ""},
		{"an empty namespace merged into the existing one", map[string]any{"x": map[string]any{"y": map[string]any{}}}, ""},
		{"a new empty namespace", map[string]any{"z": map[string]any{}}, "z"},
		{"pattern", y(map[string]any{"mode": "maybe"}), "x.y.mode"},
		{"type", y(map[string]any{"list": 3.0}), "x.y.list"},
		{"undefined", y(map[string]any{"other": "v"}), "x.y.other"},
		{"undefined under a new namespace", map[string]any{"w": map[string]any{"v": 1.0}}, "w.v"},
		{"immutable", y(map[string]any{"id": "b"}), "x.y.id"},
		{"required cleared", y(map[string]any{"name": nil}), "x.y.name"},
		{"a namespace replaced by a value", map[string]any{"x": "flat"}, "x"},
		{"occi.core replaced by a value", map[string]any{"occi": map[string]any{"core": 5.0}}, ""},
		{"an object too large", y(map[string]any{"result": map[string]any{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0, "f": 6.0, "g": 7.0}}), "x.y.result"},
		{"too many values", map[string]any{"occi": map[string]any{"core": map[string]any{"a": 1.0, "b": 2.0, "c": 3.0}}}, "-"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := base()
			if err := set.CheckUpdate(old, old); err != nil {
				t.Fatalf("the old tree is invalid: %v", err)
			}
			updated := DeepCopy(old).(map[string]any)
			set.MergeAttributes(updated, DeepCopy(tc.patch).(map[string]any))
			full, patched := set.CheckUpdate(old, updated), set.CheckPatch(old, updated, tc.patch)
			if attrOf(full) != tc.wantErr {
				t.Fatalf("CheckUpdate: %v, want an error naming %q", full, tc.wantErr)
			}
			if attrOf(patched) != tc.wantErr {
				t.Fatalf("CheckPatch: %v, CheckUpdate: %v", patched, full)
			}
		})
	}
}

func attrOf(err error) string {
	if err == nil {
		return ""
	}
	e, ok := err.(*Error)
	if !ok || e.Attribute == "" {
		return "-"
	}
	return e.Attribute
}

// BenchmarkCheckMessageResult: the check UpdateLater makes of a message's
// send result, by CheckUpdate (every value of the entity) and CheckPatch
// (the result and path_history the update brings).
func BenchmarkCheckMessageResult(b *testing.B) {
	spec := map[string]any{}
	for _, n := range []string{"message_content", "result"} {
		spec["cmbs.message."+n] = map[string]any{"type": "Object", "mutable": true, "pattern": "(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\\-]*[a-zA-Z0-9])\\.)*"}
	}
	for _, n := range []string{"path_history", "topics", "providers"} {
		spec["cmbs.message."+n] = map[string]any{"type": "Array", "mutable": true}
	}
	for _, n := range []string{"cmbs_layer", "storable", "executable", "sendable", "l1_socket_receiver_member", "neighbors_socket"} {
		spec["cmbs.message."+n] = map[string]any{"type": "string", "mutable": true, "pattern": "(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\\-]*[a-zA-Z0-9])\\.)*"}
	}
	defs, err := ParseAttrDefs(spec)
	if err != nil {
		b.Fatal(err)
	}
	set := NewAttrSet(defs)
	set.SetMaxValues(1000)
	old := map[string]any{"cmbs": map[string]any{"message": map[string]any{
		"cmbs_layer": "l32", "storable": "false", "executable": "false", "sendable": "true", "topics": []any{"bench"},
		"message_content": map[string]any{"text": "xxxxxxxxxxxxxxxxxxxx"}, "path_history": []any{}, "result": ""}},
		"occi": map[string]any{"core": map[string]any{"id": "m1", "title": "t"}}}
	deliveries := make([]any, 10)
	for i := range deliveries {
		deliveries[i] = map[string]any{"delivered": true, "member": "/cmbs/member/r", "socket": "tcp://127.0.0.1:4000",
			"ack": map[string]any{"member": "tcp://127.0.0.1:4000/cmbs/member/r", "layer": "l32"}}
	}
	patch := map[string]any{"cmbs": map[string]any{"message": map[string]any{"path_history": []any{"tcp://127.0.0.1:1/cmbs/member/s"},
		"result": map[string]any{"message": "/cmbs/message/m1", "layer": "l32", "deliveries": deliveries, "delivered": 10.0, "failed": 0.0}}}}
	updated := DeepCopy(old).(map[string]any)
	set.MergeAttributes(updated, patch)
	b.Run("CheckUpdate", func(b *testing.B) {
		for b.Loop() {
			if err := set.CheckUpdate(old, updated); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CheckPatch", func(b *testing.B) {
		for b.Loop() {
			if err := set.CheckPatch(old, updated, patch); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Complete, which skips checking each value, still refuses what Prepare
// refuses for its number of values, and fills in defaults as Prepare does.
func TestCompleteBoundsValuesAsPrepare(t *testing.T) {
	defs, err := ParseAttrDefs(map[string]any{
		"x.a": map[string]any{"type": "string", "required": true},
		"x.b": map[string]any{"type": "string", "default": "d"},
		"x.c": map[string]any{"type": "string"},
	})
	if err != nil {
		t.Fatal(err)
	}
	set := NewAttrSet(defs)
	set.SetMaxValues(2)
	for _, tc := range []struct {
		name string
		tree map[string]any
	}{
		{"within the bound", map[string]any{"x": map[string]any{"a": "1", "c": "3"}}},
		{"over the bound", map[string]any{"x": map[string]any{"a": "1", "b": "2", "c": "3"}}},
		{"over the bound with core values", map[string]any{"x": map[string]any{"a": "1"}, "occi": map[string]any{"core": map[string]any{"title": "t", "summary": "s"}}}},
		{"required missing", map[string]any{"x": map[string]any{"c": "3"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prepared, completed := DeepCopy(tc.tree).(map[string]any), DeepCopy(tc.tree).(map[string]any)
			want, got := set.Prepare(prepared), set.Complete(completed)
			if (want == nil) != (got == nil) || (want != nil && want.Error() != got.Error()) {
				t.Fatalf("Complete: %v, Prepare: %v", got, want)
			}
			if want == nil && !reflect.DeepEqual(prepared, completed) {
				t.Fatalf("Complete made %v, Prepare %v", completed, prepared)
			}
		})
	}
}
