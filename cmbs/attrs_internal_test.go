package cmbs

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/cmbs/cmbs/occi/model"
)

func TestParseLayer(t *testing.T) {
	for in, want := range map[string]Layer{"l1": L1, "L2": L2, "l31": L31, "l3.1": L31, "l32": L32, "L3.2": L32, "l4": L4} {
		if got, ok := ParseLayer(in); !ok || got != want {
			t.Errorf("ParseLayer(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "l3", "l5", "true", "l3..1x"} {
		if _, ok := ParseLayer(in); ok {
			t.Errorf("ParseLayer(%q) accepted", in)
		}
	}
}

func TestParseFlag(t *testing.T) {
	for in, want := range map[any]bool{"true": true, "True": true, "TRUE": true, " false ": false, "False": false, true: true, false: false} {
		if got, err := parseFlag(in); err != nil || got != want {
			t.Errorf("parseFlag(%v) = %v, %v", in, got, err)
		}
	}
	for _, in := range []any{"yes", "1", 1.0, nil, ""} {
		if _, err := parseFlag(in); err == nil {
			t.Errorf("parseFlag(%v) accepted", in)
		}
	}
}

func remoteMember(id, l1 string) *model.Entity {
	return &model.Entity{ID: id, Location: "/cmbs/member/" + id, Attributes: map[string]any{
		"cmbs": map[string]any{"member": map[string]any{"local": "false", "l1_socket": l1}}}}
}

func TestRemoteMemberIDs(t *testing.T) {
	const id = "016ad860-2a9a-504f-8861-aeafd0b2ae29"
	a, b := RemoteMemberID(id, "tcp://127.0.0.1:5010"), RemoteMemberID(id, "tcp://127.0.0.1:6010")
	if a == b || a != RemoteMemberID(id, "tcp://127.0.0.1:5010") || a == id {
		t.Fatalf("ids %s %s", a, b)
	}
	if got := peerID(remoteMember(a, "tcp://127.0.0.1:5010")); got != id {
		t.Fatalf("peerID = %s", got)
	}
	// The suffix must match the socket to count as ours.
	if got := peerID(remoteMember(a, "tcp://127.0.0.1:6010")); got != a {
		t.Fatalf("peerID with another socket = %s", got)
	}
	if got := RemoteMemberID("a/b c", "tcp://x:1"); got[:len("member~")] != "member~" {
		t.Fatalf("unusable id kept: %s", got)
	}
	m := remoteMember(a, "tcp://127.0.0.1:5010")
	if ref := memberRef(m); ref != "tcp://127.0.0.1:5010/cmbs/member/"+id {
		t.Fatalf("memberRef = %s", ref)
	}
	if !refMatches("tcp://127.0.0.1:5010/cmbs/member/"+id, m) || refMatches("tcp://127.0.0.1:6010/cmbs/member/"+id, m) || refMatches("http://host/cmbs/member/"+id, m) {
		t.Fatal("refMatches")
	}
	for _, name := range []string{id, a, "/cmbs/member/" + a, "http://h:1/cmbs/member/" + a, "tcp://127.0.0.1:5010", memberRef(m)} {
		if !namesMember(name, m) {
			t.Errorf("%q does not name the member", name)
		}
	}
	if namesMember("other", m) {
		t.Error("other names the member")
	}
}

func TestSeenSet(t *testing.T) {
	s := newSeenSet(3)
	for _, id := range []string{"a", "b", "c"} {
		if !s.add(id) {
			t.Fatalf("%s not new", id)
		}
	}
	if s.add("a") {
		t.Fatal("a repeated")
	}
	s.add("d") // forgets a, the oldest
	if !s.add("a") || s.add("c") || s.add("d") {
		t.Fatal("eviction order")
	}
}

func TestL4Matches(t *testing.T) {
	m := remoteMember(RemoteMemberID("c", "tcp://h:1"), "tcp://h:1")
	memberAttrs(m.Attributes)["topics"] = []any{"news"}
	for _, tc := range []struct {
		providers, topics []any
		want              bool
	}{
		{nil, nil, true},
		{[]any{"c"}, nil, true},
		{[]any{"b"}, nil, false},
		{nil, []any{"news", "x"}, true},
		{nil, []any{"sports"}, false},
		{[]any{"c"}, []any{"sports"}, false},
		{[]any{"tcp://h:1"}, []any{"news"}, true},
	} {
		attrs := map[string]any{"providers": tc.providers, "topics": tc.topics}
		if got := l4Matches(m, attrs); got != tc.want {
			t.Errorf("providers %v topics %v: %v", tc.providers, tc.topics, got)
		}
	}
}

// jsonObject turns a Go value into decoded JSON (map[string]any), the only
// form the attribute validation accepts for Object attributes.
func jsonObject(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return map[string]any{"error": err.Error()}
	}
	return m
}

// The result written after a send is exactly Sent's JSON.
func TestSentObjectIsItsJSON(t *testing.T) {
	s := &Sent{Message: "/cmbs/message/m", Layer: L31, Sender: "/cmbs/member/a", Delivered: 1, Failed: 2,
		Deliveries: []Delivery{
			{Provider: "p", Member: "/cmbs/member/b", Socket: "tcp://127.0.0.1:1", Delivered: true, Ack: map[string]any{"member": "b", "layer": "l3.1"}},
			{Neighbor: "tcp://127.0.0.1:2", Error: "no answer"},
			{Provider: "q", Member: "/cmbs/member/c", Error: "no socket"},
		}}
	if got, want := s.object(), jsonObject(s); !reflect.DeepEqual(got, want) {
		t.Fatalf("object() = %#v\nJSON      %#v", got, want)
	}
	empty := &Sent{Message: "/cmbs/message/m", Layer: L2, Deliveries: []Delivery{}}
	if got, want := empty.object(), jsonObject(empty); !reflect.DeepEqual(got, want) {
		t.Fatalf("object() = %#v\nJSON      %#v", got, want)
	}
}

// TestLocalWithoutAttribute: without a local attribute, a member is remote
// exactly when its id has the RemoteMemberID form; the attribute, where
// present, decides.
func TestLocalWithoutAttribute(t *testing.T) {
	member := func(id string, local any) *model.Entity {
		m := map[string]any{"l1_socket": "tcp://127.0.0.1:5010"}
		if local != nil {
			m["local"] = local
		}
		return &model.Entity{ID: id, Attributes: map[string]any{"cmbs": map[string]any{"member": m}}}
	}
	learned := RemoteMemberID("p", "tcp://127.0.0.1:6010")
	for _, tc := range []struct {
		id    string
		local any
		want  bool
	}{
		{"996ad860-2a9a-504f-8861-aeafd0b2ae29", nil, true},
		{learned, nil, false},
		{RemoteMemberID("a/b", "tcp://x:1"), nil, false},
		{learned, "true", true},
		{"plain", "False", false},
		{"a~0123456789ab", nil, false},
		{"a~0123456789AB", nil, true}, // not lower-case hex
		{"a~0123456789a", nil, true},  // 11 digits
		{"~0123456789ab", nil, true},  // nothing in front
		{"a~b", nil, true},
	} {
		if got := isLocal(member(tc.id, tc.local)); got != tc.want {
			t.Errorf("isLocal(id %q, local %v) = %v, want %v", tc.id, tc.local, got, tc.want)
		}
	}
}
