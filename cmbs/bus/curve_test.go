package bus_test

import (
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"

	"github.com/cmbs/cmbs/cmbs/bus"
	"github.com/cmbs/cmbs/cmbs/choria"
	"github.com/cmbs/cmbs/cmbs/transport/curve"
	"github.com/cmbs/cmbs/internal/pyzmqtest"
)

func keyPair(t *testing.T) curve.KeyPair {
	t.Helper()
	k, err := curve.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The bus sockets over CURVE: an authorised pyzmq CURVE REQ client calls
// rpcutil#ping over rpc; a pyzmq CURVE PUSH and SUB exchange ten events
// through events-in and events-out; an unauthorised CURVE client and NULL
// clients (pyzmq REQ, zmq4 SUB and PUSH) are refused and counted; with
// CURVE a non-loopback address needs no --insecure.
func TestBusOverCurve(t *testing.T) {
	py := pyzmqtest.Python(t)
	server, client, stranger := keyPair(t), keyPair(t), keyPair(t)
	cfg := &curve.ServerConfig{Keys: server, Authorize: func(k curve.Key) bool { return k == client.Public }}
	reg := choria.NewRegistry()
	if err := reg.Add(testCtx(t), choria.Ping{}); err != nil {
		t.Fatal(err)
	}
	d, err := choria.NewDispatcher(reg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ep := "tcp://127.0.0.1:0"
	b, err := bus.Start(testCtx(t), bus.Options{RPC: ep, EventsOut: ep, EventsIn: ep, Dispatcher: d, Curve: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	keys := pyzmqtest.CurveKeys{Public: client.Public.String(), Secret: client.Secret.String(), ServerKey: server.Public.String()}
	ping := string(rpcRequest("rpcutil", "ping", map[string]any{}))

	reply, err := pyzmqtest.CurveREQ(t, testCtx(t), py, b.RPCAddr(), keys, 20*time.Second, 2, "py-curve", "application/json", ping)
	if err != nil || len(reply) != 3 || reply[0] != "py-curve" || reply[1] != "application/json" || !strings.Contains(reply[2], `"statuscode":0`) {
		t.Fatalf("CURVE ping: %q %v", reply, err)
	}

	refused := func() uint64 { return *b.Stats().CurveRefused }
	waitRefused := func(atLeast uint64) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); refused() < atLeast; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("refused %d, want at least %d", refused(), atLeast)
			}
		}
	}
	// libzmq retries a refused handshake quietly: no reply is the symptom.
	bad := pyzmqtest.CurveKeys{Public: stranger.Public.String(), Secret: stranger.Secret.String(), ServerKey: server.Public.String()}
	if reply, err := pyzmqtest.CurveREQ(t, testCtx(t), py, b.RPCAddr(), bad, time.Second, 1, "x", "application/json", ping); err == nil {
		t.Fatalf("unauthorised client answered: %q", reply)
	}
	waitRefused(1)
	n := refused()
	if reply, err := pyzmqtest.CurveREQ(t, testCtx(t), py, b.RPCAddr(), pyzmqtest.CurveKeys{}, time.Second, 1, "x", "application/json", ping); err == nil {
		t.Fatalf("NULL client answered: %q", reply)
	}
	waitRefused(n + 1)
	for _, c := range []struct {
		addr string
		typ  zmq4.SocketType
	}{{b.EventsOutAddr(), zmq4.Sub}, {b.EventsInAddr(), zmq4.Push}} {
		n := refused()
		nc, err := net.Dial("tcp", strings.TrimPrefix(c.addr, "tcp://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := zmq4.Open(nc, null.Security(), c.typ, nil, false, nil); err == nil {
			t.Errorf("NULL %s accepted by %s", c.typ, c.addr)
		}
		_ = nc.Close()
		waitRefused(n + 1)
	}

	script := writePushSubScript(t)
	cmd := exec.CommandContext(testCtx(t), py, script, b.EventsOutAddr(), b.EventsInAddr())
	cmd.Env = append(os.Environ(), "CURVE_PUBLIC="+keys.Public, "CURVE_SECRET="+keys.Secret, "CURVE_SERVERKEY="+keys.ServerKey)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "m0 m1 m2 m3 m4 m5 m6 m7 m8 m9" {
		t.Fatalf("pyzmq CURVE SUB: %v\n%s", err, out)
	}

	// With CURVE, a non-loopback address needs no --insecure.
	if err := bus.CheckEndpoint("tcp://0.0.0.0:5050", false); err == nil {
		t.Fatal("non-loopback allowed without CURVE or --insecure")
	}
	wide, err := bus.Start(testCtx(t), bus.Options{EventsOut: "tcp://0.0.0.0:0", Curve: cfg})
	if err != nil {
		t.Fatalf("non-loopback with CURVE: %v", err)
	}
	if err := wide.Close(); err != nil {
		t.Fatal(err)
	}
}
