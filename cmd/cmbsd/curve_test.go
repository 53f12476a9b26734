package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cmbs/cmbs/cmbs/transport/curve"
)

func TestCurveConfig(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "node.key")
	cfg, err := parseConfig([]string{"--curve-key", key}, env(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Curve == nil || cfg.Curve.Clients != nil || cfg.Curve.Servers != nil {
		t.Fatalf("Curve = %+v", cfg.Curve)
	}
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	pub, _ := os.ReadFile(key + ".pub")
	if strings.TrimSpace(string(pub)) != cfg.Curve.Keys.Public.String() {
		t.Fatalf("%s.pub = %q, want %s", key, pub, cfg.Curve.Keys.Public)
	}
	// The env variable reads the same file: the same key.
	again, err := parseConfig(nil, env(map[string]string{"CMBS_CURVE_KEY": key}), nil)
	if err != nil || again.Curve == nil || again.Curve.Keys != cfg.Curve.Keys {
		t.Fatalf("CMBS_CURVE_KEY: %v", err)
	}

	clients := filepath.Join(dir, "clients")
	servers := filepath.Join(dir, "servers")
	write := func(path, text string) {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(clients, cfg.Curve.Keys.Public.String()+"\n")
	write(servers, "tcp://10.0.0.2:5555 "+cfg.Curve.Keys.Public.String()+"\n")
	full, err := parseConfig([]string{"--curve-key", key, "--curve-clients", clients, "--curve-servers", servers}, env(nil), nil)
	if err != nil || len(full.Curve.Clients) != 1 || full.Curve.Servers["tcp://10.0.0.2:5555"] != cfg.Curve.Keys.Public {
		t.Fatalf("with clients and servers: %+v, %v", full.Curve, err)
	}

	empty := filepath.Join(dir, "empty")
	write(empty, "# nobody yet\n")
	badServers := filepath.Join(dir, "bad-servers")
	write(badServers, "tcp://10.0.0.2:5555\n")
	for _, args := range [][]string{
		{"--curve-clients", clients},
		{"--curve-servers", servers},
		{"--curve-key", key, "--curve-clients", empty},
		{"--curve-key", key, "--curve-servers", badServers},
		{"--curve-key", key, "--curve-clients", filepath.Join(dir, "missing")},
		{"--curve-key", clients + ".nodir/x"},
	} {
		if _, err := parseConfig(args, env(nil), nil); err == nil {
			t.Errorf("%q: accepted", args)
		} else if _, ok := err.(*configError); !ok {
			t.Errorf("%q: %v is not a configError", args, err)
		}
	}
}

// TestBinaryCurveKeyRotation: cmbsd creates its key, shows the public key
// in /-/status, binds layer sockets beyond loopback without --insecure,
// and a restart after the key file is replaced runs with the new key.
func TestBinaryCurveKeyRotation(t *testing.T) {
	dir := t.TempDir()
	statusKey := func(base string) string {
		t.Helper()
		resp, err := http.Get(base + "/-/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Curve *struct {
				PublicKey string `json:"public_key"`
			} `json:"curve"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Curve == nil {
			t.Fatalf("status: %+v, %v", st, err)
		}
		return st.Curve.PublicKey
	}
	pubFile := func() string {
		b, err := os.ReadFile(filepath.Join(dir, "node.key.pub"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}

	p := startCmbsd(t, dir, nil, "--listen", "127.0.0.1:0", "--curve-key", "node.key")
	base := "http://" + p.waitListening(t)
	first := statusKey(base)
	if first != pubFile() {
		t.Fatalf("status key %s, node.key.pub %s", first, pubFile())
	}
	for _, f := range []struct{ method, file string }{
		{"POST", "post_category_cmbs_member.json"}, {"PUT", "put_provider_cmbs_member.json"},
	} {
		body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "readme", f.file))
		if err != nil {
			t.Fatal(err)
		}
		mustCall(t, f.method, base+"/-/", body, 200)
	}
	member := []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"m","attributes":{"cmbs":{"member":{"l1_socket":"tcp://192.0.2.1:5999"}}}}]}`)
	mustCall(t, "POST", base+"/cmbs/member/", member, 201)
	// Past the loopback rule (403 without CURVE): the bind itself fails,
	// 192.0.2.1 not being this machine's.
	mustCall(t, "POST", base+"/cmbs/member/m?action=start_l1", []byte("{}"), http.StatusBadRequest)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit %d", code)
	}

	// Rotation: a new secret key in the file, picked up by a restart.
	kp, err := curve.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node.key"), []byte(kp.Secret.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p = startCmbsd(t, dir, nil, "--listen", "127.0.0.1:0", "--curve-key", "node.key")
	base = "http://" + p.waitListening(t)
	if got := statusKey(base); got != kp.Public.String() || got == first || pubFile() != got {
		t.Fatalf("after rotation: status %s, .pub %s, new key %s, old %s", got, pubFile(), kp.Public, first)
	}
}

func TestCurveKeygen(t *testing.T) {
	key := filepath.Join(t.TempDir(), "node.key")
	var stdout, stderr strings.Builder
	if code := run(t.Context(), []string{"--curve-key", key, "--curve-keygen"}, env(nil), &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	kp, created, err := curve.LoadOrCreateKeyFile(key)
	if err != nil || created || strings.TrimSpace(stdout.String()) != kp.Public.String() {
		t.Fatalf("printed %q; file key %s, created again %v, %v", stdout.String(), kp.Public, created, err)
	}
	stdout.Reset()
	if code := run(t.Context(), []string{"--curve-keygen"}, env(nil), &stdout, &stderr); code != exitBadConfig {
		t.Fatalf("--curve-keygen without --curve-key: exit %d", code)
	}
}
