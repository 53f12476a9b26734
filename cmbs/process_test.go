package cmbs_test

import (
	"strings"
	"testing"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process"
)

const (
	runnableMixin = "http://cmbs.dev/occi/process#runnable"
	// trDefinition is the Process Registry README's tr example, plus the
	// permission to run on a message.
	trDefinition = `{"exec":"/usr/bin/tr","argv":["-d","x"],
		"input_adapter":{"input_type":"file","input_parameters":{"file_type":"stream","stream_name":"STDIN"}},
		"output_adapter":{"output_type":"file","output_parameters":{"file_type":"stream","stream_name":"STDOUT"}}}`
)

// startProcessPeer is startPeer on a server that also runs process
// definitions, with the tr definition registered as /process/definition/tr
// (allowed to run on messages when allow is true).
func startProcessPeer(t *testing.T, id string, attrs member, allow bool, layers ...string) *peer {
	t.Helper()
	n := &node{t: t, name: strings.ToUpper(id)}
	n.srv = testserver.Start(t, testserver.Options{Register: func(reg *providers.Registry, srv *occi.Server) error {
		procs := process.New(srv.Entities(), process.Options{})
		if err := procs.Register(reg); err != nil {
			return err
		}
		opts := testOptions()
		opts.Processes = procs
		n.broker = cmbs.NewBroker(srv.Entities(), opts)
		return n.broker.Register(reg)
	}})
	n.c = newClient(t, n.srv.URL)
	for _, f := range []string{"post_category_cmbs_member", "put_provider_cmbs_member", "post_category_cmbs_message", "put_provider_cmbs_message"} {
		method := "POST"
		if strings.HasPrefix(f, "put") {
			method = "PUT"
		}
		n.c.expect(method, "/-/", fixture(t, "pycmbs/"+f+".json"), 200)
	}
	def := strings.Replace(trDefinition, `"exec"`, `"run_on_message":`+map[bool]string{true: "true", false: "false"}[allow]+`,"exec"`, 1)
	n.c.expect("POST", "/process/definition/", `{"resources":[{"kind":"http://cmbs.dev/occi/process#definition","id":"tr","attributes":{"process":{"definition":`+def+`}}}]}`, 201)
	p := &peer{node: n, id: id, sockets: map[string]string{}}
	p.loc = n.createMember(id, withSockets(t, attrs))
	for _, l := range layers {
		p.sockets[l] = n.startLayer(p.loc, l)
	}
	return p
}

// runnableMessage creates a message naming the tr definition.
func (n *node) runnableMessage(id, layer string, content any) string {
	n.t.Helper()
	desc := map[string]any{
		"kind":   cmbs.MessageKindID,
		"mixins": []any{"http://houssem.org/cmbs#" + layer, runnableMixin},
		"attributes": map[string]any{
			"cmbs":    map[string]any{"message": map[string]any{"cmbs_layer": layer, "storable": "true", "executable": "true", "message_content": content}},
			"process": map[string]any{"definition_ref": "tr"},
		},
		"id": id,
	}
	n.c.expect("POST", "/cmbs/message/", map[string]any{"resources": []any{desc}}, 201)
	return "/cmbs/message/" + id
}

// PR-E16: execute on a runnable message runs its definition with the
// message content as input; the result lands in the message's result.
func TestExecuteRunnableMessage(t *testing.T) {
	p := startProcessPeer(t, "b", member{}, true)
	loc := p.runnableMessage("run1", "l2", "xxyx")
	res := p.action(loc, "execute", nil)
	if res.status != 200 {
		t.Fatalf("execute: %d %s", res.status, res.body)
	}
	if r := res.json(t); r["output"] != "y" || r["exit_code"] != 0.0 {
		t.Fatalf("execute result %v", r)
	}
	result, _ := attrsOf(p.get(loc), "message")["result"].(map[string]any)
	if result["output"] != "y" || result["exit_code"] != 0.0 || result["status"] != "succeeded" {
		t.Fatalf("stored result %v", result)
	}
	// JSON content is given as JSON text.
	loc = p.runnableMessage("run2", "l2", map[string]any{"k": "xvx"})
	if r := p.action(loc, "execute", nil).json(t); r["output"] != `{"k":"v"}` {
		t.Fatalf("JSON content: %v", r)
	}
	// A definition ref that names nothing says so, and runs nothing.
	desc := `{"resources":[{"kind":"` + cmbs.MessageKindID + `","id":"run3","mixins":["` + runnableMixin + `"],
		"attributes":{"cmbs":{"message":{"executable":"true","message_content":"x"}},"process":{"definition_ref":"/process/definition/nope"}}}]}`
	p.c.expect("POST", "/cmbs/message/", desc, 201)
	if r := p.action("/cmbs/message/run3", "execute", nil).json(t); !strings.Contains(r["not_run"].(string), "no process definition") {
		t.Fatalf("unknown definition: %v", r)
	}
}

// Three nodes: an L2 broadcast of a runnable message runs on the receiver
// whose definition allows it, and not on the one whose definition does
// not; the sender reads each outcome in its send_l2 result.
func TestL2BroadcastRunsWhereAllowed(t *testing.T) {
	b := startProcessPeer(t, "b", member{}, true, "l1", "l2")
	c := startProcessPeer(t, "c", member{}, false, "l1", "l2")
	a := startProcessPeer(t, "a", member{"neighbors_socket": []any{b.sockets["l1"], c.sockets["l1"]}}, true, "l1")
	a.c.expect("POST", a.loc+"?action=check_neighbors", "{}", 200)

	loc := a.runnableMessage("bcast", "l2", "xxyx")
	res := a.c.expect("POST", loc+"?action=send_l2", "{}", 200).json(t)
	deliveries, _ := res["deliveries"].([]any)
	if len(deliveries) != 2 {
		t.Fatalf("deliveries %v", res)
	}
	for _, d := range deliveries {
		dm := d.(map[string]any)
		ack, _ := dm["ack"].(map[string]any)
		executed, _ := ack["executed"].(map[string]any)
		switch dm["socket"] {
		case b.sockets["l2"]:
			if executed["output"] != "y" || executed["exit_code"] != 0.0 {
				t.Errorf("b ran %v", ack)
			}
		default:
			if nr, _ := executed["not_run"].(string); !strings.Contains(nr, "run_on_message") || executed["output"] != nil {
				t.Errorf("c: %v", ack)
			}
		}
	}
	// b stored the message with the result; c stored it with why it did
	// not run, and ran nothing.
	if r, _ := attrsOf(b.get("/cmbs/message/bcast"), "message")["result"].(map[string]any); r["output"] != "y" {
		t.Errorf("b's stored result %v", r)
	}
	if r, _ := attrsOf(c.get("/cmbs/message/bcast"), "message")["result"].(map[string]any); r["not_run"] == nil {
		t.Errorf("c's stored result %v", r)
	}
	if execs := c.list("/process/execution/"); len(execs) != 0 {
		t.Errorf("c has %d execution records", len(execs))
	}
	if execs := b.list("/process/execution/"); len(execs) != 1 {
		t.Errorf("b has %d execution records, want 1", len(execs))
	}
}
