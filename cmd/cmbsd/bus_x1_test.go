package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/cmbs/cmbs/cmbs/choria"
	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/loopback"
)

// subscribe connects a SUB to events-out subscribed to prefix and returns
// its messages' frames; it returns once a probe pushed to events-in under
// prefix came back, so the subscription is in.
func subscribe(t *testing.T, eventsOut, eventsIn, prefix string) <-chan [][]byte {
	t.Helper()
	sub := zmtpPeer(t, eventsOut, zmq4.Sub)
	if err := sub.SendMsg(zmq4.NewMsg(append([]byte{1}, prefix...))); err != nil {
		t.Fatal(err)
	}
	got := make(chan [][]byte, 256)
	go func() {
		defer close(got)
		for {
			m, err := sub.RecvMsg()
			if err != nil {
				return
			}
			got <- m.Frames
		}
	}()
	push := zmtpPeer(t, eventsIn, zmq4.Push)
	probe := prefix + "probe"
	for deadline := time.Now().Add(20 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatal("the subscription never came in")
		}
		if err := push.SendMsg(zmq4.NewMsgFrom([]byte(probe), []byte("text/plain"), []byte("p"))); err != nil {
			t.Fatal(err)
		}
		select {
		case f, ok := <-got:
			if !ok {
				t.Fatal("subscriber ended")
			}
			if string(f[0]) == probe {
				return got
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// X-1, brokered execution with streamed output, on both stores: a
// definition that prints three lines 0.2 s apart then echoes its input,
// run by the process agent from the envelope ["corr-42",
// "application/json", rpc_request]; the reply keeps the id, validates
// against rpc_reply and carries the result, which GET on data.execution
// returns from the store; a SUB on execution.<uuid> received line1, line2,
// line3 as dploy BroadcastMessages, then the completed status.
func TestBusX1BrokeredExecutionStreamsOutput(t *testing.T) {
	for _, st := range []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"embedded", func(t *testing.T) []string { return nil }},
		{"couchdb", func(t *testing.T) []string {
			u := couchpeer.URLForTest(t)
			return []string{"--store", u, "--db", couchpeer.DBForTest(t, u)}
		}},
	} {
		t.Run(st.name, func(t *testing.T) { testX1(t, st.args(t)) })
	}
}

func testX1(t *testing.T, storeArgs []string) {
	t.Chdir(t.TempDir())
	rpc, out, in := loopback.FreeEndpoint(t), loopback.FreeEndpoint(t), loopback.FreeEndpoint(t)
	base := runInProcess(t, append([]string{"--listen", "127.0.0.1:0", "--rpc", rpc, "--events-out", out, "--events-in", in}, storeArgs...))
	defineProcess(t, base, "x1", `{"exec":"sh","argv":["-c","for i in 1 2 3; do echo line$i; sleep 0.2; done; cat"],"process_type":"single",`+
		`"input_adapter":{"input_type":"file","input_parameters":{"file_type":"stream","stream_name":"STDIN"}},"output_adapter":{"output_type":"file","output_parameters":{"file_type":"stream","stream_name":"STDOUT"}}}`)
	events := subscribe(t, out, in, "execution.")

	d := zmtpPeer(t, rpc, zmq4.Dealer)
	if err := d.SendMsg(zmq4.NewMsgFrom(nil, []byte("corr-42"), []byte("application/json"), rpcBody("process", "execute", map[string]any{"definition": "x1", "input": "payload"}))); err != nil {
		t.Fatal(err)
	}
	m, err := d.RecvMsg()
	if err != nil {
		t.Fatal(err)
	}
	// The exact reply frames: the delimiter (DEALER side), id, mimetype, body.
	if len(m.Frames) != 4 || len(m.Frames[0]) != 0 || string(m.Frames[1]) != "corr-42" || string(m.Frames[2]) != "application/json" {
		t.Fatalf("reply frames %q", m.Frames)
	}
	schemas, err := choria.NewSchemas()
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.Validate(choria.ProtocolRPCReply, m.Frames[3]); err != nil {
		t.Fatalf("reply %s: %v", m.Frames[3], err)
	}
	var reply map[string]any
	if err := json.Unmarshal(m.Frames[3], &reply); err != nil {
		t.Fatal(err)
	}
	data := replyData(reply)
	if reply["statuscode"] != 0.0 || reply["statusmsg"] != "OK" || data["status"] != "succeeded" || data["exit_code"] != 0.0 || data["output"] != "line1\nline2\nline3\npayload" {
		t.Fatalf("reply %v", reply)
	}
	exe, _ := data["execution"].(string)
	id, ok := strings.CutPrefix(exe, "/process/execution/")
	if !ok || id == "" {
		t.Fatalf("execution %q", exe)
	}
	rec := mustCall(t, "GET", base+exe, nil, 200)["attributes"].(map[string]any)["process"].(map[string]any)["execution"].(map[string]any)
	for _, k := range []string{"status", "exit_code", "output", "stderr", "started_at", "finished_at", "duration_ms", "truncated"} {
		if !reflect.DeepEqual(rec[k], data[k]) {
			t.Errorf("stored %s = %v, replied %v", k, rec[k], data[k])
		}
	}

	// The stream of execution.<uuid>, in order: running, the three lines and
	// the payload line (cat's, unterminated), then completed.
	topic := "execution." + id
	var stream []map[string]any
	for done := false; !done; {
		select {
		case f, ok := <-events:
			if !ok {
				t.Fatal("subscriber ended")
			}
			if string(f[0]) != topic {
				continue
			}
			if len(f) != 3 || string(f[1]) != "application/json" {
				t.Fatalf("event frames %q", f)
			}
			var ev map[string]any
			if err := json.Unmarshal(f[2], &ev); err != nil {
				t.Fatal(err)
			}
			stream = append(stream, ev)
			body, _ := ev["body"].(map[string]any)
			done = ev["type"] == "status" && body["type"] != "info"
		case <-time.After(20 * time.Second):
			t.Fatalf("stream incomplete: %v", stream)
		}
	}
	line := func(s string) map[string]any {
		return map[string]any{"type": "output", "body": map[string]any{"type": "line", "data": s}}
	}
	if len(stream) != 6 {
		t.Fatalf("stream %v", stream)
	}
	first, last := stream[0]["body"].(map[string]any), stream[5]["body"].(map[string]any)
	if stream[0]["type"] != "status" || first["type"] != "info" || first["data"].(map[string]any)["execution"] != exe {
		t.Errorf("first event %v", stream[0])
	}
	for i, want := range []map[string]any{line("line1"), line("line2"), line("line3"), line("payload")} {
		if !reflect.DeepEqual(stream[i+1], want) {
			t.Errorf("event %d = %v, want %v", i+1, stream[i+1], want)
		}
	}
	if ld := last["data"].(map[string]any); stream[5]["type"] != "status" || last["type"] != "completed" || ld["status"] != "succeeded" || ld["exit_code"] != 0.0 || ld["execution"] != exe {
		t.Errorf("last event %v", stream[5])
	}
}

// Every run streams, not only the bus's: a failing definition run over
// HTTP publishes its stderr line (marked stream stderr) and ends with a
// status of type error carrying the result.
func TestBusExecutionEventsOfAFailingHTTPRun(t *testing.T) {
	t.Chdir(t.TempDir())
	out, in := loopback.FreeEndpoint(t), loopback.FreeEndpoint(t)
	base := runInProcess(t, []string{"--listen", "127.0.0.1:0", "--events-out", out, "--events-in", in})
	defineProcess(t, base, "fails", `{"exec":"sh","argv":["-c","echo out; echo oops >&2; exit 3"]}`)
	events := subscribe(t, out, in, "execution.")
	res := mustCall(t, "POST", base+"/process/definition/fails?action=execute", []byte(`{"attributes":{}}`), 200)
	exe, _ := res["execution"].(string)
	id, ok := strings.CutPrefix(exe, "/process/execution/")
	if !ok || res["status"] != "failed" {
		t.Fatalf("result %v", res)
	}
	var lines []any
	for {
		select {
		case f, ok := <-events:
			if !ok {
				t.Fatal("subscriber ended")
			}
			if string(f[0]) != "execution."+id {
				continue
			}
			var ev map[string]any
			if err := json.Unmarshal(f[2], &ev); err != nil {
				t.Fatal(err)
			}
			body := ev["body"].(map[string]any)
			switch {
			case ev["type"] == "output":
				lines = append(lines, body)
			case body["type"] == "info":
			default:
				data := body["data"].(map[string]any)
				if body["type"] != "error" || data["status"] != "failed" || data["exit_code"] != 3.0 || data["execution"] != exe {
					t.Fatalf("last event %v", ev)
				}
				// stdout and stderr are read concurrently: order across them is free.
				want := []any{map[string]any{"type": "line", "data": "out"}, map[string]any{"type": "line", "data": "oops", "stream": "stderr"}}
				if len(lines) != 2 || !(reflect.DeepEqual(lines, want) || reflect.DeepEqual(lines, []any{want[1], want[0]})) {
					t.Fatalf("lines %v", lines)
				}
				return
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("stream incomplete: %v", lines)
		}
	}
}
