package cmbs_test

import (
	"github.com/cmbs/cmbs/internal/pyzmqtest"

	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/cmbs/transport"
)

// TestGarbageKeepsServing: non-ZMTP bytes, envelopes whose body is not a
// CMBS message and a wrong mimetype are refused (the latter with an error
// envelope), and the L1 socket goes on serving.
func TestGarbageKeepsServing(t *testing.T) {
	a, b, _, _, _, bL1 := twoNodes(t, "a", "b")

	// Not ZeroMQ at all.
	c, err := net.Dial("tcp", strings.TrimPrefix(bL1, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n\x00\xff\xfe garbage"))
	_ = c.Close()

	cl := transport.NewClient(transport.WithRequestTimeout(5 * time.Second))
	t.Cleanup(func() { _ = cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, env := range []transport.Envelope{
		{ID: "g1", MimeType: cmbs.MessageMimeType, Body: []byte("not json \x00\xff")},
		{ID: "g2", MimeType: cmbs.MessageMimeType, Body: []byte(`["an","array"]`)},
		{ID: "g3", MimeType: cmbs.MessageMimeType, Body: []byte(`{"kind":"http://example.org/other#kind"}`)},
		{ID: "g4", MimeType: cmbs.MessageMimeType, Body: []byte(`{"attributes":{"cmbs":"flat"}}`)},
		{ID: "g5", MimeType: "text/plain", Body: []byte(`{}`)},
	} {
		_, err := cl.Request(ctx, bL1, env)
		var re *transport.RemoteError
		if !errors.As(err, &re) || re.Code != cmbs.CodeBadMessage {
			t.Fatalf("%s: want a %s error envelope, got %v", env.ID, cmbs.CodeBadMessage, err)
		}
	}
	if got := b.broker.Stats().Rejected; got != 5 {
		t.Fatalf("rejected %d", got)
	}

	// Still serving.
	loc := a.createMessage("after-garbage", "l1", map[string]any{"l1_socket_receiver_member": bL1})
	res := a.c.expect("POST", loc+"?action=send_l1", "{}", 200).json(t)
	if res["member_description"].(map[string]any)["id"] != "b" {
		t.Fatalf("send_l1 after garbage: %v", res)
	}
}

// TestPythonREQInterop: a plain libzmq REQ client (pyzmq, stdlib only)
// sends a 3-frame envelope to an L1 socket and gets the L1 reply; the
// asker it introduces is stored as a remote member; garbage frames get an
// error envelope and the socket keeps serving.
func TestPythonREQInterop(t *testing.T) {
	py := pyzmqtest.Python(t)
	b := startPeer(t, "b", member{}, testOptions(), "l1")
	pySocket := "tcp://127.0.0.1:1" // never dialled: it only names the asker
	msg := map[string]any{
		"kind":   "http://houssem.org/cmbs#message",
		"mixins": []any{"http://houssem.org/cmbs#l1"},
		"attributes": map[string]any{"cmbs": map[string]any{"message": map[string]any{
			"cmbs_layer": "l1", "sendable": "True", "storable": "True", "executable": "True",
			"path_history":              []any{pySocket + "/cmbs/member/py"},
			"l1_socket_receiver_member": b.sockets["l1"],
			"message_content": map[string]any{
				"kind": "http://houssem.org/cmbs#member", "id": "py",
				"attributes": map[string]any{"cmbs": map[string]any{"member": map[string]any{"local": "false", "l1_socket": pySocket}}},
			},
		}}},
		"id": "from-python", "title": "l1 CMBS message",
	}
	body, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	frames := pyREQ(t, py, b.sockets["l1"], "from-python", cmbs.MessageMimeType, string(body))
	if len(frames) != 3 || frames[0] != "from-python" || frames[1] != cmbs.ReplyMimeType {
		t.Fatalf("reply frames: %q", frames)
	}
	var reply struct {
		Member   map[string]any `json:"member_description"`
		Sockets  []string       `json:"sockets_l1"`
		Executed map[string]any `json:"executed"`
	}
	if err := json.Unmarshal([]byte(frames[2]), &reply); err != nil {
		t.Fatal(err)
	}
	if reply.Member["id"] != "b" || !sameSet(reply.Sockets, []string{b.sockets["l1"], pySocket}) || reply.Executed == nil {
		t.Fatalf("reply: %s", frames[2])
	}
	if m := b.members()[pySocket]; m == nil || m["id"] != cmbs.RemoteMemberID("py", pySocket) {
		t.Fatalf("the python asker was not stored: %v", b.members())
	}
	if !b.hasMessage("from-python") {
		t.Fatal("the storable message was not stored")
	}

	// Garbage frames: an error envelope back, and the socket serves on.
	frames = pyREQ(t, py, b.sockets["l1"], "just one frame")
	if len(frames) != 3 || frames[1] != transport.ErrorMimeType {
		t.Fatalf("garbage reply: %q", frames)
	}
	frames = pyREQ(t, py, b.sockets["l1"], "again", cmbs.MessageMimeType, `{"attributes":{}}`)
	if len(frames) != 3 || frames[1] != cmbs.ReplyMimeType {
		t.Fatalf("after garbage: %q", frames)
	}
}
