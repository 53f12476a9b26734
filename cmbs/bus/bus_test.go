package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"go.uber.org/goleak"

	"github.com/cmbs/cmbs/cmbs/bus"
	"github.com/cmbs/cmbs/cmbs/choria"
	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/internal/pyzmqtest"
	"github.com/cmbs/cmbs/internal/zmtptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// slowAgent is a built-in test agent whose "wait" action sleeps ms
// milliseconds and answers its input.
type slowAgent struct{}

var slowDDL = func() *choria.DDL {
	d, err := choria.ParseDDL([]byte(`{"metadata":{"name":"slow","timeout":5},"actions":[{"action":"wait","input":{"ms":{"type":"integer","optional":false},"tag":{"type":"string","optional":true}},"output":{}}]}`))
	if err != nil {
		panic(err)
	}
	return d
}()

func (slowAgent) DDL() *choria.DDL { return slowDDL }
func (slowAgent) Call(ctx context.Context, req *choria.Request) choria.Reply {
	select {
	case <-time.After(time.Duration(req.Data["ms"].(float64)) * time.Millisecond):
	case <-ctx.Done():
	}
	return choria.OK(map[string]any{"tag": req.Data["tag"]})
}

// startBus starts a bus with every socket on loopback and the rpcutil
// and slow agents.
func startBus(t *testing.T) *bus.Bus {
	t.Helper()
	reg := choria.NewRegistry()
	for _, a := range []choria.Agent{choria.Ping{}, slowAgent{}} {
		if err := reg.Add(testCtx(t), a); err != nil {
			t.Fatal(err)
		}
	}
	d, err := choria.NewDispatcher(reg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ep := "tcp://127.0.0.1:0"
	b, err := bus.Start(testCtx(t), bus.Options{RPC: ep, EventsOut: ep, EventsIn: ep, Dispatcher: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

// peer is a ZMTP connection of type typ to endpoint.
func peer(t *testing.T, endpoint string, typ zmq4.SocketType) *zmq4.Conn {
	return zmtptest.Peer(t, endpoint, typ)
}

func rpcRequest(agent, action string, data map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"$schema": choria.RequestSchemaURL, "protocol": choria.ProtocolRPCRequest, "agent": agent, "action": action,
		"requestid": "r", "senderid": "s", "callerid": "c", "collective": "mcollective", "ttl": 30, "msgtime": 1, "data": data})
	return b
}

// roundTrip sends frames on a DEALER and returns the reply envelope.
func roundTrip(t *testing.T, d *zmq4.Conn, frames ...[]byte) transport.Envelope {
	t.Helper()
	if err := d.SendMsg(zmq4.NewMsgFrom(frames...)); err != nil {
		t.Fatal(err)
	}
	m, err := d.RecvMsg()
	if err != nil {
		t.Fatal(err)
	}
	env, err := transport.Parse(m.Frames)
	if err != nil {
		t.Fatalf("reply %q: %v", m.Frames, err)
	}
	return env
}

func decodeReply(t *testing.T, env transport.Envelope) choria.Reply {
	t.Helper()
	if env.MimeType != bus.JSONMimeType {
		t.Fatalf("reply mimetype %q", env.MimeType)
	}
	s, _ := choria.NewSchemas()
	if err := s.Validate(choria.ProtocolRPCReply, env.Body); err != nil {
		t.Fatalf("reply %s: %v", env.Body, err)
	}
	var r choria.Reply
	if err := json.Unmarshal(env.Body, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// rpcutil#ping over the rpc socket keeps the id.
func TestRPCPing(t *testing.T) {
	b := startBus(t)
	d := peer(t, b.RPCAddr(), zmq4.Dealer)
	env := roundTrip(t, d, nil, []byte("corr-1"), []byte("application/json"), rpcRequest("rpcutil", "ping", map[string]any{}))
	if r := decodeReply(t, env); env.ID != "corr-1" || r.StatusCode != 0 || r.Data["pong"] == nil {
		t.Fatalf("ping: %s %s", env.ID, env.Body)
	}
}

// DP-13 on the rpc socket, exact reply frames (a DEALER reads the empty
// delimiter first): what is not an envelope at all (too few frames, no
// delimiter, an empty id) is answered [id or "", "application/json",
// {"statuscode":4,"statusmsg":"malformed envelope: …","data":{}}]; a
// well-formed envelope that is not JSON, not JSON's mimetype, or of an
// unknown protocol is answered with its id and a statuscode 4 "Invalid
// Data: …" rpc_reply; the next valid request is still served every time.
func TestRPCMalformedDP13(t *testing.T) {
	b := startBus(t)
	d := peer(t, b.RPCAddr(), zmq4.Dealer)
	ping := rpcRequest("rpcutil", "ping", map[string]any{})
	schemas, err := choria.NewSchemas()
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		name   string
		send   [][]byte
		id     string
		prefix string // statusmsg, or its prefix when it ends with "…"
	}{
		// Frames are counted as the client sent them (not with the
		// identity the ROUTER adds).
		{"one frame after the delimiter", [][]byte{nil, []byte("x")}, "",
			"malformed envelope: 1 frames after the empty delimiter, need 3 (id, mimetype, body)"},
		{"two frames after the delimiter", [][]byte{nil, []byte("x"), []byte("y")}, "",
			"malformed envelope: 2 frames after the empty delimiter, need 3 (id, mimetype, body)"},
		{"no delimiter", [][]byte{[]byte("corr-9"), []byte("application/json"), ping}, "corr-9",
			"malformed envelope: no empty delimiter before id, mimetype, body (a DEALER must send it; REQ adds it)"},
		{"two frames, no delimiter", [][]byte{[]byte("a"), []byte("b")}, "",
			"malformed envelope: 2 frames, need at least 3 (id, mimetype, body)"},
		{"empty id", [][]byte{nil, nil, []byte("application/json"), ping}, "", "malformed envelope: empty id"},
		{"text/plain", [][]byte{nil, []byte("t1"), []byte("text/plain"), []byte("hello")}, "t1",
			`Invalid Data: mimetype "text/plain": the rpc socket takes application/json`},
		{"not JSON", [][]byte{nil, []byte("t2"), []byte("application/json"), []byte("hello")}, "t2",
			"Invalid Data: not a JSON object: invalid character 'h' looking for beginning of value"},
		{"unknown protocol", [][]byte{nil, []byte("t3"), []byte("application/json"), []byte(`{"protocol":"io.choria.nope"}`)}, "t3",
			`Invalid Data: unsupported message protocol "io.choria.nope"`},
	} {
		if err := d.SendMsg(zmq4.NewMsgFrom(c.send...)); err != nil {
			t.Fatal(err)
		}
		m, err := d.RecvMsg()
		if err != nil {
			t.Fatal(err)
		}
		f := m.Frames
		if len(f) != 4 || len(f[0]) != 0 || string(f[1]) != c.id || string(f[2]) != "application/json" {
			t.Fatalf("%s: reply frames %q", c.name, f)
		}
		if err := schemas.Validate(choria.ProtocolRPCReply, f[3]); err != nil {
			t.Fatalf("%s: %s: %v", c.name, f[3], err)
		}
		var r map[string]any
		if err := json.Unmarshal(f[3], &r); err != nil || len(r) != 3 || r["statuscode"] != 4.0 || !reflect.DeepEqual(r["data"], map[string]any{}) {
			t.Fatalf("%s: body %s", c.name, f[3])
		}
		msg, _ := r["statusmsg"].(string)
		if p, open := strings.CutSuffix(c.prefix, "…"); (open && !strings.HasPrefix(msg, p)) || (!open && msg != c.prefix) {
			t.Fatalf("%s: statusmsg %q, want %q", c.name, msg, c.prefix)
		}
		id := fmt.Sprintf("ok-%d", i)
		env := roundTrip(t, d, nil, []byte(id), []byte("application/json"), ping)
		if r := decodeReply(t, env); env.ID != id || r.StatusCode != 0 {
			t.Fatalf("after %s: %s %s", c.name, env.ID, env.Body)
		}
	}
	if s := b.Stats(); s.InvalidRequests != 1 || s.RPC.Malformed != 5 {
		t.Fatalf("stats %+v %+v", s, s.RPC)
	}
}

// DP-13 with libzmq's REQ (a REP-style exchange): a 2-frame message gets
// exactly ["", "application/json", statuscode 4] (REQ strips the
// delimiter), and the same socket's next valid request is served.
func TestRPCMalformedFromPyzmq(t *testing.T) {
	py := pyzmqtest.Python(t)
	b := startBus(t)
	script := filepath.Join(t.TempDir(), "dp13.py")
	if err := os.WriteFile(script, []byte(`import json, sys, zmq
s = zmq.Context().socket(zmq.REQ); s.setsockopt(zmq.LINGER, 0); s.setsockopt(zmq.RCVTIMEO, 20000)
s.connect(sys.argv[1])
s.send_multipart([b"x", b"y"])
print(json.dumps([f.decode() for f in s.recv_multipart()]))
s.send_multipart([b"py-2", b"application/json", sys.argv[2].encode()])
print(json.dumps([f.decode() for f in s.recv_multipart()]))
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(testCtx(t), py, script, b.RPCAddr(), string(rpcRequest("rpcutil", "ping", map[string]any{}))).CombinedOutput()
	if err != nil {
		t.Fatalf("pyzmq: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var bad, good []string
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &bad) != nil || json.Unmarshal([]byte(lines[1]), &good) != nil {
		t.Fatalf("pyzmq output %s", out)
	}
	var r map[string]any
	if len(bad) != 3 || bad[0] != "" || bad[1] != "application/json" || json.Unmarshal([]byte(bad[2]), &r) != nil || r["statuscode"] != 4.0 ||
		!strings.HasPrefix(r["statusmsg"].(string), "malformed envelope: ") || !reflect.DeepEqual(r["data"], map[string]any{}) {
		t.Fatalf("malformed reply %q", bad)
	}
	if len(good) != 3 || good[0] != "py-2" || good[1] != "application/json" || !strings.Contains(good[2], `"statuscode":0`) {
		t.Fatalf("next reply %q", good)
	}
}

// DP-14 / CH-19: three DEALER clients each send 100 requests with unique
// ids to a slow agent (0–10 ms) at once; each gets exactly its replies.
func TestRPCConcurrentDealersGetTheirOwnReplies(t *testing.T) {
	concurrentDealers(t, 3, 100, func() int { return rand.IntN(11) })
}

// CH-19: two DEALER clients, 50 requests each, to an agent that sleeps
// 50 ms: every reply reaches its sender once.
func TestRPCSlowAgentCorrelation(t *testing.T) {
	concurrentDealers(t, 2, 50, func() int { return 50 })
}

func concurrentDealers(t *testing.T, clients, requests int, sleepMS func() int) {
	b := startBus(t)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	conns := make([]*zmq4.Conn, clients)
	for c := range clients {
		conns[c] = peer(t, b.RPCAddr(), zmq4.Dealer)
	}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := conns[c]
			want := map[string]bool{}
			for i := range requests {
				id := fmt.Sprintf("c%d-%d", c, i)
				want[id] = true
				body := rpcRequest("slow", "wait", map[string]any{"ms": sleepMS(), "tag": id})
				if err := d.SendMsg(zmq4.NewMsgFrom(nil, []byte(id), []byte("application/json"), body)); err != nil {
					errs <- err
					return
				}
			}
			for range requests {
				m, err := d.RecvMsg()
				if err != nil {
					errs <- err
					return
				}
				env, err := transport.Parse(m.Frames)
				if err != nil {
					errs <- err
					return
				}
				var r choria.Reply
				if err := json.Unmarshal(env.Body, &r); err != nil || r.Data["tag"] != env.ID || !want[env.ID] {
					errs <- fmt.Errorf("client %d got %s %s (%v)", c, env.ID, env.Body, err)
					return
				}
				delete(want, env.ID)
			}
			if len(want) != 0 {
				errs <- fmt.Errorf("client %d missing %d replies", c, len(want))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// DP-12: PUSH to events-in, SUB on events-out subscribed to T receives the
// ten T messages unchanged; a malformed one is counted and dropped; DP-11
// for Publish.
func TestEventsInAreRebroadcast(t *testing.T) {
	b := startBus(t)
	sub := peer(t, b.EventsOutAddr(), zmq4.Sub)
	if err := sub.SendMsg(zmq4.NewMsg(append([]byte{1}, "T"...))); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); b.Stats().EventsOut.Subscriptions != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("subscription not seen")
		}
	}
	push := peer(t, b.EventsInAddr(), zmq4.Push)
	if err := push.SendMsg(zmq4.NewMsgFrom([]byte("T"), []byte("x"))); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := push.SendMsg(zmq4.NewMsgFrom([]byte("U"), []byte("text/plain"), fmt.Appendf(nil, "u%d", i))); err != nil {
			t.Fatal(err)
		}
		if err := push.SendMsg(zmq4.NewMsgFrom([]byte("T"), []byte("text/plain"), fmt.Appendf(nil, "m%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		m, err := sub.RecvMsg()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Frames) != 3 || string(m.Frames[0]) != "T" || string(m.Frames[2]) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d: %q", i, m.Frames)
		}
	}
	if err := b.PublishJSON("T.own", map[string]any{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.RecvMsg(); err != nil || string(m.Frames[0]) != "T.own" || string(m.Frames[2]) != `{"a":1}` {
		t.Fatalf("published: %q %v", m.Frames, err)
	}
	if s := b.Stats(); s.MalformedEvents != 1 || s.Rebroadcast != 20 {
		t.Fatalf("stats %+v", s)
	}
}

// DP-15: a pyzmq REQ client calls rpcutil#ping.
func TestRPCFromPyzmq(t *testing.T) {
	py := pyzmqtest.Python(t)
	b := startBus(t)
	reply := pyzmqtest.REQ(t, testCtx(t), py, b.RPCAddr(), 3, "py-1", "application/json", string(rpcRequest("rpcutil", "ping", map[string]any{})))
	if len(reply) != 3 || reply[0] != "py-1" || reply[1] != "application/json" || !strings.Contains(reply[2], `"statuscode":0`) {
		t.Fatalf("reply %q", reply)
	}
}

// Bus sockets bind loopback only unless allowed.
func TestNonLoopbackNeedsInsecure(t *testing.T) {
	if _, err := bus.Start(testCtx(t), bus.Options{EventsOut: "tcp://0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("got %v", err)
	}
	if err := bus.CheckEndpoint("tcp://0.0.0.0:5050", true); err != nil {
		t.Fatal(err)
	}
}

// pushSubScript is a pyzmq PUSH into events-in (argv[2]) and SUB on
// events-out (argv[1], topic "T") that prints the ten "T" bodies it gets,
// once a probe has shown the subscription is in (the slow joiner); with
// CURVE_PUBLIC, CURVE_SECRET and CURVE_SERVERKEY set, both sockets speak
// CURVE.
const pushSubScript = `import os, sys, time, zmq
ctx = zmq.Context()
def opts(s):
    s.setsockopt(zmq.LINGER, 0)
    if "CURVE_PUBLIC" in os.environ:
        s.curve_publickey = os.environ["CURVE_PUBLIC"].encode(); s.curve_secretkey = os.environ["CURVE_SECRET"].encode()
        s.curve_serverkey = os.environ["CURVE_SERVERKEY"].encode()
sub = ctx.socket(zmq.SUB); opts(sub); sub.setsockopt(zmq.SUBSCRIBE, b"T"); sub.setsockopt(zmq.RCVTIMEO, 100); sub.connect(sys.argv[1])
push = ctx.socket(zmq.PUSH); opts(push); push.connect(sys.argv[2])
deadline = time.time() + 20
while True:
    push.send_multipart([b"T.probe", b"text/plain", b"p"])
    try:
        sub.recv_multipart(); break
    except zmq.Again:
        if time.time() > deadline: sys.exit("no probe came back")
for i in range(10):
    push.send_multipart([b"U", b"text/plain", b"u%d" % i])
    push.send_multipart([b"T", b"text/plain", b"m%d" % i])
sub.setsockopt(zmq.RCVTIMEO, 20000)
got = []
while len(got) < 10:
    f = sub.recv_multipart()
    if f[0] == b"T": got.append(f[2].decode())
print(" ".join(got))
`

// writePushSubScript writes pushSubScript into the test's temp dir.
func writePushSubScript(t *testing.T) string {
	script := filepath.Join(t.TempDir(), "pushsub.py")
	if err := os.WriteFile(script, []byte(pushSubScript), 0o600); err != nil {
		t.Fatal(err)
	}
	return script
}

// DP-12 with libzmq on both ends: a pyzmq PUSH feeds events-in and a pyzmq
// SUB on events-out receives the ten messages on its topic.
func TestEventsWithPyzmq(t *testing.T) {
	py := pyzmqtest.Python(t)
	b := startBus(t)
	script := writePushSubScript(t)
	out, err := exec.CommandContext(testCtx(t), py, script, b.EventsOutAddr(), b.EventsInAddr()).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "m0 m1 m2 m3 m4 m5 m6 m7 m8 m9" {
		t.Fatalf("pyzmq: %v\n%s", err, out)
	}
}
