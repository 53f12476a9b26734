package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-zeromq/zmq4"

	"github.com/cmbs/cmbs/cmbs/choria"
	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/internal/loopback"
	"github.com/cmbs/cmbs/internal/pyzmqtest"
)

// defineProcess registers a process definition under id.
func defineProcess(t *testing.T, base, id, def string) {
	t.Helper()
	mustCall(t, "POST", base+"/process/definition/", []byte(`{"resources":[{"kind":"http://cmbs.dev/occi/process#definition","id":"`+id+`","attributes":{"process":{"definition":`+def+`}}}]}`), 201)
}

// rpcBody is an rpc_request for agent#action with data.
func rpcBody(agent, action string, data map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"$schema": choria.RequestSchemaURL, "protocol": choria.ProtocolRPCRequest, "agent": agent, "action": action,
		"requestid": "r1", "senderid": "test", "callerid": "choria=test", "collective": "mcollective", "ttl": 60, "msgtime": 1, "data": data})
	return b
}

// busCall sends one request envelope on a DEALER and returns the reply,
// checking it keeps the id and validates against rpc_reply.
func busCall(t *testing.T, d *zmq4.Conn, id string, body []byte) map[string]any {
	t.Helper()
	if err := d.SendMsg(zmq4.NewMsgFrom(nil, []byte(id), []byte("application/json"), body)); err != nil {
		t.Fatal(err)
	}
	m, err := d.RecvMsg()
	if err != nil {
		t.Fatal(err)
	}
	env, err := transport.Parse(m.Frames)
	if err != nil || env.ID != id || env.MimeType != "application/json" {
		t.Fatalf("reply %q: %v", m.Frames, err)
	}
	s, err := choria.NewSchemas()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(choria.ProtocolRPCReply, env.Body); err != nil {
		t.Fatalf("reply %s: %v", env.Body, err)
	}
	var r map[string]any
	if err := json.Unmarshal(env.Body, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func replyData(r map[string]any) map[string]any { d, _ := r["data"].(map[string]any); return d }

// PR-E17: the process agent runs a registered definition over --rpc (the
// seed's tr example) through the execute action's code path: same result,
// an execution record GET returns; an unknown definition answers 4; list
// lists; the DDL's checks apply (3, 4); a pyzmq REQ client gets the same.
func TestBusProcessAgent(t *testing.T) {
	t.Chdir(t.TempDir())
	rpc := loopback.FreeEndpoint(t)
	base := runInProcess(t, []string{"--listen", "127.0.0.1:0", "--rpc", rpc})
	defineProcess(t, base, "tr", `{"exec":"/usr/bin/tr","argv":["-d","x"],"input_adapter":{"input_type":"file","input_parameters":{"file_type":"stream","stream_name":"STDIN"}},"output_adapter":{"output_type":"file","output_parameters":{"file_type":"stream","stream_name":"STDOUT"}}}`)
	defineProcess(t, base, "fails", `{"exec":"sh","argv":["-c","echo oops >&2; exit 3"]}`)

	d := zmtpPeer(t, rpc, zmq4.Dealer)
	r := busCall(t, d, "corr-1", rpcBody("process", "execute", map[string]any{"definition": "tr", "input": "xaxb"}))
	data := replyData(r)
	if r["statuscode"] != 0.0 || r["statusmsg"] != "OK" || data["status"] != "succeeded" || data["exit_code"] != 0.0 || data["output"] != "ab" ||
		data["definition"] != "/process/definition/tr" {
		t.Fatalf("execute: %v", r)
	}
	exe, _ := data["execution"].(string)
	if !strings.HasPrefix(exe, "/process/execution/") {
		t.Fatalf("execution %q", exe)
	}
	rec := mustCall(t, "GET", base+exe, nil, 200)
	if got := rec["attributes"].(map[string]any)["process"].(map[string]any)["execution"].(map[string]any); got["output"] != "ab" || got["status"] != "succeeded" || got["trigger"] != "bus" {
		t.Fatalf("record %v", got)
	}
	// The same run over HTTP answers the same fields.
	httpRes := mustCall(t, "POST", base+"/process/definition/tr?action=execute", []byte(`{"attributes":{"input":"xaxb"}}`), 200)
	for _, k := range []string{"status", "exit_code", "output", "stderr", "truncated", "definition"} {
		if httpRes[k] != data[k] {
			t.Fatalf("%s: http %v, bus %v", k, httpRes[k], data[k])
		}
	}

	// By location, and a failing run: attempted, so 0 with its status.
	r = busCall(t, d, "corr-2", rpcBody("process", "execute", map[string]any{"definition": "/process/definition/fails"}))
	if data := replyData(r); r["statuscode"] != 0.0 || data["status"] != "failed" || data["exit_code"] != 3.0 || data["stderr"] != "oops\n" {
		t.Fatalf("failing run: %v", r)
	}
	for _, c := range []struct {
		name string
		data map[string]any
		code float64
		msg  string
	}{
		{"unknown definition", map[string]any{"definition": "nosuch", "input": "x"}, 4, "no process definition /process/definition/nosuch"},
		{"missing definition", map[string]any{"input": "x"}, 3, "validation failed for input 'definition'"},
		{"definition not a string", map[string]any{"definition": 7}, 4, "validation failed for input 'definition'"},
		{"bad timeout", map[string]any{"definition": "tr", "timeout": -1}, 4, "timeout"},
		{"bad base64", map[string]any{"definition": "tr", "input_base64": "%%%"}, 4, "input_base64"},
	} {
		r := busCall(t, d, "bad", rpcBody("process", "execute", c.data))
		if r["statuscode"] != c.code || !strings.Contains(r["statusmsg"].(string), c.msg) {
			t.Errorf("%s: %v", c.name, r)
		}
	}

	r = busCall(t, d, "list-1", rpcBody("process", "list", map[string]any{}))
	defs, _ := replyData(r)["definitions"].([]any)
	if r["statuscode"] != 0.0 || len(defs) != 2 || replyData(r)["count"] != 2.0 {
		t.Fatalf("list: %v", r)
	}
	if first := defs[1].(map[string]any); first["id"] != "tr" || first["location"] != "/process/definition/tr" || first["exec"] != "/usr/bin/tr" || first["process_type"] != "single" {
		t.Fatalf("list entry %v", first)
	}
	r = busCall(t, d, "list-2", rpcBody("process", "list", map[string]any{"limit": 1, "offset": 1}))
	if defs, _ := replyData(r)["definitions"].([]any); len(defs) != 1 || defs[0].(map[string]any)["id"] != "tr" {
		t.Fatalf("list page: %v", r)
	}

	// The agent is an entity too, and its rpc action is the same call.
	r = mustCall(t, "POST", base+"/choria/agent/process?action=rpc", []byte(`{"attributes":{"action":"execute","data":{"definition":"tr","input":"xxyx"}}}`), 200)
	if r["statuscode"] != 0.0 || replyData(r)["output"] != "y" {
		t.Fatalf("rpc action: %v", r)
	}

	// A pyzmq REQ client (libzmq) gets the same reply.
	t.Run("pyzmq", func(t *testing.T) {
		py := pyzmqtest.Python(t)
		reply := pyzmqtest.REQ(t, t.Context(), py, rpc, 1, "py-1", "application/json", string(rpcBody("process", "execute", map[string]any{"definition": "tr", "input": "xpx"})))
		var pr map[string]any
		if len(reply) != 3 || reply[0] != "py-1" || reply[1] != "application/json" || json.Unmarshal([]byte(reply[2]), &pr) != nil || pr["statuscode"] != 0.0 || replyData(pr)["output"] != "p" {
			t.Fatalf("pyzmq: %q", reply)
		}
	})
}
