package cmbs

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/occi/model"
)

// TestPlainMessage: the bodies whose receiver may answer without decoding
// them are exactly those that decode as a CMBS message with storable and
// executable given and false; anything else goes the full way.
func TestPlainMessage(t *testing.T) {
	// A message as send puts it on the wire (describe, then encoded).
	e := &model.Entity{ID: "m1", Kind: MessageKindID, Mixins: []string{mixinScheme + "l32"}, Title: "t", HasTitle: true,
		Attributes: map[string]any{"cmbs": map[string]any{"message": map[string]any{
			"cmbs_layer": "l32", "storable": "false", "executable": "False", "sendable": "true", "topics": []any{"bench"},
			"message_content": map[string]any{"text": "x"}, "path_history": []any{"tcp://127.0.0.1:1/cmbs/member/s"}}}}}
	wire, err := json.Marshal(describe(e))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body  string
		plain bool
	}{
		{string(wire), true},
		{`{"attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}}`, true},
		{`{"id":"","attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}}`, true},
		{`{"id":"a\u0062","attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}}`, false},
		{`{"kind":"http://houssem.org/cmbs#message","id":"x","attributes":{"cmbs":{"message":{"storable":false,"executable":" FALSE "}}},"x":[1,{"a":null}]}`, true},
		{`{"attributes":{"cmbs":{"message":{"storable":"\u0066alse","executable":"false"}}}}`, true},
		{`{"attributes":{"cmbs":{"message":{"storable":"true","executable":"false"}}}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"falſe","executable":"false"}}}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"fal\u017fe","executable":"false"}}}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"","executable":"false"}}}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"false","executable":"false","st\u006frable":"true"}}}}`, false},
		{`{"k\u0069nd":"x","attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}}`, false},
		{`{"kind":"http://houssem.org/cmbs#m\u0065ssage","attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"false","executable":true}}}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"false"}}}}`, false}, // executable: the kind's default
		{`{"attributes":{"cmbs":{"message":{"storable":"false","executable":null}}}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"false","executable":"no"}}}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"false","executable":"false","storable":"true"}}}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}},"attributes":{}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}},"cmbs":{}}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"false","executable":"false"},"message":{}}}}`, false},
		{`{"kind":"http://houssem.org/cmbs#member","attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}}`, false},
		{`{"kind":null,"attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}}`, false},
		{`{"id":7,"attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}}`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}} x`, false},
		{`{"attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}`, false},
		{`{"attributes":{"cmbs":{"message":[]}}}`, false},
		{`{"attributes":{"cmbs":"x"}}`, false},
		{`{"attributes":[]}`, false},
		{`[]`, false},
		{``, false},
	} {
		if got, _ := plainMessage([]byte(tc.body)); got != tc.plain {
			t.Errorf("plainMessage(%s) = %v, want %v", tc.body, got, tc.plain)
		}
		checkPlain(t, []byte(tc.body))
	}
}

// checkPlain fails when plainMessage accepts a body that the full path
// would not treat as a plain delivery.
func checkPlain(t *testing.T, body []byte) {
	t.Helper()
	plain, id := plainMessage(body)
	if !plain {
		return
	}
	msg, err := decodeMessage(transport.Envelope{ID: "env", MimeType: MessageMimeType, Body: body})
	if err != nil {
		t.Fatalf("plainMessage accepted %q, which decodeMessage refuses: %v", body, err)
	}
	got := string(id)
	if got == "" {
		got = "env" // the envelope's, as the receiver takes it
	}
	if want, _ := msg["id"].(string); got != want {
		t.Fatalf("plainMessage read the id of %q as %q, want %q", body, got, want)
	}
	attrs := messageAttrs(msg["attributes"].(map[string]any))
	for _, name := range []string{"storable", "executable"} {
		v, present := attrs[name]
		if f, err := parseFlag(v); !present || err != nil || f {
			t.Fatalf("plainMessage accepted %q, whose %s is %v (present %v)", body, name, v, present)
		}
	}
}

// FuzzPlainMessage: whatever plainMessage accepts, the full path decodes
// as a message that is neither stored nor executed.
func FuzzPlainMessage(f *testing.F) {
	for _, seed := range []string{
		`{"attributes":{"cmbs":{"message":{"storable":"false","executable":"false"}}}}`,
		`{"kind":"http://houssem.org/cmbs#message","id":"x","attributes":{"cmbs":{"message":{"storable":false,"executable":"False"}}}}`,
		`{"attributes":{"cmbs":{"message":{"storable":"fal\u0073e","executable":"false","x":{"y":[1,2,"\ud800"]}}}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkPlain(t, body) })
}

// TestDescribeMessageCopiesWhatSendChanges: send changes the description's
// cmbs.message attributes (layer, path, result, content); the entity it
// was made from keeps its own.
func TestDescribeMessageCopiesWhatSendChanges(t *testing.T) {
	for _, attrs := range []map[string]any{
		{"cmbs": map[string]any{"message": map[string]any{"result": "r", "path_history": []any{"p"}}, "other": 1.0}, "x": 2.0},
		{"cmbs": map[string]any{"member": map[string]any{}}},
		{"cmbs": "not an object"},
		nil,
	} {
		e := &model.Entity{ID: "m", Kind: MessageKindID, Attributes: attrs}
		before, _ := json.Marshal(e.Attributes)
		d := describeMessage(e)
		if got, _ := json.Marshal(d["attributes"]); string(got) != string(before) && attrs != nil {
			t.Fatalf("described attributes %s, want %s", got, before)
		}
		wattrs := ensureMessageAttrs(d["attributes"].(map[string]any))
		wattrs["cmbs_layer"] = "l2"
		wattrs["path_history"] = []any{"p", "q"}
		wattrs["message_content"] = "c"
		delete(wattrs, "result")
		if after, _ := json.Marshal(e.Attributes); string(after) != string(before) {
			t.Fatalf("the entity's attributes changed from %s to %s", before, after)
		}
	}
}

// benchMessage is a bench L3.2 message as send puts it on the wire.
func benchMessage(b *testing.B) []byte {
	e := &model.Entity{ID: "l32r0-000123", Kind: MessageKindID, Mixins: []string{mixinScheme + "l32"}, Title: "l32 bench message", HasTitle: true,
		Attributes: map[string]any{"cmbs": map[string]any{"message": map[string]any{
			"cmbs_layer": "l32", "storable": "false", "executable": "false", "sendable": "true", "topics": []any{"bench"},
			"message_content": map[string]any{"text": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}, "path_history": []any{"tcp://127.0.0.1:40000/cmbs/member/s"}}}}}
	wire, err := json.Marshal(describe(e))
	if err != nil {
		b.Fatal(err)
	}
	return wire
}

// BenchmarkPlainMessage is a layer socket's check of a plain delivery.
func BenchmarkPlainMessage(b *testing.B) {
	wire := benchMessage(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	for b.Loop() {
		if plain, _ := plainMessage(wire); !plain {
			b.Fatal("not plain")
		}
	}
}

// BenchmarkDecodeMessage is the full path's decoding of the same message,
// for comparison.
func BenchmarkDecodeMessage(b *testing.B) {
	wire := benchMessage(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeMessage(transport.Envelope{ID: "x", MimeType: MessageMimeType, Body: wire}); err != nil {
			b.Fatal(err)
		}
	}
}

// socketSet finds each socket at the index it was added at, before and
// after it switches from scanning to a map.
func TestSocketSet(t *testing.T) {
	var s socketSet
	for i := range 3 * socketSetScan {
		socket := fmt.Sprintf("tcp://127.0.0.1:%d", 4000+i)
		if s.index(socket) != -1 {
			t.Fatalf("%s found before it was added", socket)
		}
		s.add(socket)
		for j := 0; j <= i; j++ {
			if got := s.index(fmt.Sprintf("tcp://127.0.0.1:%d", 4000+j)); got != j {
				t.Fatalf("after %d adds: socket %d at %d", i+1, j, got)
			}
		}
	}
	if len(s.list) != 3*socketSetScan || s.pos == nil {
		t.Fatalf("%d sockets listed, map %v", len(s.list), s.pos != nil)
	}
}
