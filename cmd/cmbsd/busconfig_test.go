package main

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestBusConfig(t *testing.T) {
	dir := t.TempDir()
	cfg, err := parseConfig([]string{"--rpc", "tcp://127.0.0.1:5050", "--events-out", "tcp://127.0.0.1:5051", "--agents", dir},
		env(map[string]string{"CMBS_EVENTS_IN": "tcp://localhost:5052"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := (busConfig{RPC: "tcp://127.0.0.1:5050", EventsOut: "tcp://127.0.0.1:5051", EventsIn: "tcp://localhost:5052", AgentsDir: dir}); cfg.Bus != want {
		t.Fatalf("got %+v", cfg.Bus)
	}
	if cfg, err := parseConfig(nil, env(nil), io.Discard); err != nil || cfg.Bus.enabled() {
		t.Fatalf("default: %+v %v", cfg.Bus, err)
	}
	if cfg, err := parseConfig([]string{"--insecure", "--rpc", "tcp://0.0.0.0:5050"}, env(nil), io.Discard); err != nil || cfg.Bus.RPC != "tcp://0.0.0.0:5050" {
		t.Fatalf("insecure: %+v %v", cfg.Bus, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rpc", "tcp://0.0.0.0:5050"}, "--rpc (CMBS_RPC)"},
		{[]string{"--events-out", "ipc:///tmp/x"}, "only tcp://"},
		{[]string{"--events-out", "tcp://127.0.0.1"}, "--events-out"},
		{[]string{"--events-in", "tcp://127.0.0.1:5052"}, "needs --events-out"},
		{[]string{"--rpc", "tcp://127.0.0.1:5050", "--agents", "/nonexistent"}, "not a directory"},
		{[]string{"--agents", dir}, "needs --rpc"},
		{[]string{"--rpc", "tcp://127.0.0.1:5050", "--events-out", "tcp://127.0.0.1:5050"}, "different endpoints"},
	} {
		_, err := parseConfig(tc.args, env(nil), io.Discard)
		var ce *configError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want a config error with %q", tc.args, err, tc.want)
		}
	}
}
