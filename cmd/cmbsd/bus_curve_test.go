package main

import (
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs/transport/curve"
	"github.com/cmbs/cmbs/internal/loopback"
	"github.com/cmbs/cmbs/internal/pyzmqtest"
)

// --curve-key makes the bus sockets CURVE servers: a pyzmq CURVE client
// listed in --curve-clients calls rpcutil#ping over --rpc, a NULL client
// gets nothing and is counted in /-/status; a non-loopback bus endpoint
// needs no --insecure then.
func TestRunBusOverCurve(t *testing.T) {
	py := pyzmqtest.Python(t)
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "server.key")
	server, _, err := curve.LoadOrCreateKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	client, err := curve.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clients := filepath.Join(dir, "clients")
	if err := os.WriteFile(clients, []byte(client.Public.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := parseConfig([]string{"--curve-key", keyFile, "--rpc", "tcp://0.0.0.0:5050"}, env(nil), io.Discard); err != nil || cfg.Bus.RPC != "tcp://0.0.0.0:5050" {
		t.Fatalf("non-loopback --rpc with --curve-key: %+v %v", cfg.Bus, err)
	}

	rpc, out, in := loopback.FreeEndpoint(t), loopback.FreeEndpoint(t), loopback.FreeEndpoint(t)
	base := runInProcess(t, []string{"--listen", "127.0.0.1:0", "--curve-key", keyFile, "--curve-clients", clients, "--rpc", rpc, "--events-out", out, "--events-in", in})
	ping := string(rpcBody("rpcutil", "ping", map[string]any{}))
	keys := pyzmqtest.CurveKeys{Public: client.Public.String(), Secret: client.Secret.String(), ServerKey: server.Public.String()}
	reply, err := pyzmqtest.CurveREQ(t, t.Context(), py, rpc, keys, 20*time.Second, 1, "c-1", "application/json", ping)
	if err != nil || len(reply) != 3 || reply[0] != "c-1" || !strings.Contains(reply[2], `"statuscode":0`) {
		t.Fatalf("CURVE ping: %q %v", reply, err)
	}
	if reply, err := pyzmqtest.CurveREQ(t, t.Context(), py, rpc, pyzmqtest.CurveKeys{}, time.Second, 1, "n-1", "application/json", ping); err == nil {
		t.Fatalf("NULL client answered: %q", reply)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st := mustCall(t, "GET", base+"/-/status", nil, 200)
		b, _ := st["bus"].(map[string]any)
		if n, _ := b["curve_refused"].(float64); n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: %v", st["bus"])
		}
	}
}
