package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// env returns a getenv over a fixed map, so tests never see the real
// environment.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestParseConfig(t *testing.T) {
	users := filepath.Join("testdata", "users")
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c config)
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c config) {
				want := config{
					Listen:           "127.0.0.1:8090",
					StoreKind:        storeSQLite,
					SQLitePath:       filepath.Join("cmbs-data", "cmbs.db"),
					DB:               "cmbs",
					LogLevel:         slog.LevelInfo,
					LogFormat:        "text",
					MaxBody:          4 << 20,
					MaxAttributes:    10000,
					ShutdownTimeout:  10 * time.Second,
					StoreTimeout:     10 * time.Second,
					PeerTimeout:      3 * time.Second,
					LayersRecord:     "cmbs-layers",
					ImportLayersFile: filepath.Join("cmbs-data", "layers.json"),
					MaxOutput:        1 << 20,
					MaxRecordOutput:  64 << 10,
					ZMQ: zmqLimits{MaxConns: 512, IdleTimeout: 5 * time.Minute, MaxMessage: 16<<20 + 64<<10,
						ReadBudget: 32 << 20, MessageTimeout: 10 * time.Second},
				}
				if c != want {
					t.Fatalf("config = %+v\nwant     %+v", c, want)
				}
			},
		},
		{
			name: "ZeroMQ limits, flags and env",
			args: []string{"--zmq-max-conns", "64", "--zmq-idle-timeout", "30s", "--zmq-max-message", "1048576"},
			env:  map[string]string{"CMBS_ZMQ_READ_BUDGET": "8388608", "CMBS_ZMQ_MESSAGE_TIMEOUT": "2s", "CMBS_ZMQ_MAX_CONNS": "9"},
			check: func(t *testing.T, c config) {
				want := zmqLimits{MaxConns: 64, IdleTimeout: 30 * time.Second, MaxMessage: 1 << 20, ReadBudget: 8 << 20, MessageTimeout: 2 * time.Second}
				if c.ZMQ != want {
					t.Fatalf("ZMQ = %+v, want %+v", c.ZMQ, want)
				}
			},
		},
		{
			name: "every flag, double dash",
			args: []string{"--listen", "127.0.0.1:0", "--store", "sqlite:/tmp/x.db", "--db", "other",
				"--public-url", "https://occi.example.org/base/", "--users", users, "--insecure",
				"--log-level", "DEBUG", "--max-body", "1024", "--shutdown-timeout", "3s", "--layers-file", "/tmp/l.json", "--layers-record", "node-2", "--peer-timeout", "1500ms",
				"--max-attributes", "50", "--store-timeout", "2s", "--max-output", "4096"},
			check: func(t *testing.T, c config) {
				if c.Listen != "127.0.0.1:0" || c.StoreKind != storeSQLite || c.SQLitePath != "/tmp/x.db" || c.ImportLayersFile != "/tmp/l.json" || c.LayersRecord != "node-2" ||
					c.DB != "other" || c.PublicURL != "https://occi.example.org/base" || c.UsersFile != users ||
					c.Users == nil || c.Users.Len() != 2 || !c.Insecure || c.LogLevel != slog.LevelDebug ||
					c.MaxBody != 1024 || c.MaxAttributes != 50 || c.ShutdownTimeout != 3*time.Second || c.PeerTimeout != 1500*time.Millisecond || c.StoreTimeout != 2*time.Second || c.MaxOutput != 4096 {
					t.Fatalf("config = %+v", c)
				}
			},
		},
		{
			name: "layers record in the store; import the embedded store's file only",
			args: []string{"--store", "sqlite:/tmp/d/x.db"},
			check: func(t *testing.T, c config) {
				if c.ImportLayersFile != "/tmp/d/layers.json" || c.LayersRecord != "cmbs-layers" {
					t.Fatalf("ImportLayersFile = %q, LayersRecord = %q, want the file beside the database and the default record", c.ImportLayersFile, c.LayersRecord)
				}
				noEnv := func(string) string { return "" }
				off, err := parseConfig([]string{"--layers-file", "none", "--layers-record", "none"}, noEnv, io.Discard)
				if err != nil || off.ImportLayersFile != "" || off.LayersRecord != "" {
					t.Fatalf("--layers-file none --layers-record none: %q %q, %v", off.ImportLayersFile, off.LayersRecord, err)
				}
				// A CouchDB server does not take a layers.json in its
				// working directory for its own: it may be an embedded
				// store's.
				couch, err := parseConfig([]string{"--store", "http://127.0.0.1:5984"}, noEnv, io.Discard)
				if err != nil || couch.ImportLayersFile != "" || couch.LayersRecord != "cmbs-layers" {
					t.Fatalf("on CouchDB: ImportLayersFile %q, LayersRecord %q, %v", couch.ImportLayersFile, couch.LayersRecord, err)
				}
				for _, bad := range []string{"", "_local", "/cmbs/member/x", "category:x", ".x", strings.Repeat("x", 101)} {
					_, err := parseConfig([]string{"--layers-record", bad}, noEnv, io.Discard)
					var ce *configError
					if !errors.As(err, &ce) || !strings.Contains(err.Error(), "layers-record") {
						t.Errorf("--layers-record %q: %v, want a configuration error naming the flag", bad, err)
					}
				}
			},
		},
		{
			name: "single dash and = syntax",
			args: []string{"-listen=127.0.0.1:9", "-log-level=warn", "-insecure"},
			check: func(t *testing.T, c config) {
				if c.Listen != "127.0.0.1:9" || c.LogLevel != slog.LevelWarn || !c.Insecure {
					t.Fatalf("config = %+v", c)
				}
			},
		},
		{
			name: "env",
			env: map[string]string{
				"CMBS_LISTEN": "0.0.0.0:8091", "CMBS_STORE": "https://admin:s3cret@couch.example.org:6984",
				"CMBS_DB": "cmbs_test", "CMBS_PUBLIC_URL": "http://public:80", "CMBS_USERS": users,
				"CMBS_INSECURE": "1", "CMBS_LOG_LEVEL": "error", "CMBS_MAX_BODY": "2048",
				"CMBS_SHUTDOWN_TIMEOUT": "1m",
			},
			check: func(t *testing.T, c config) {
				if c.Listen != "0.0.0.0:8091" || c.StoreKind != storeCouch ||
					c.CouchURL != "https://admin:s3cret@couch.example.org:6984" || c.DB != "cmbs_test" ||
					c.PublicURL != "http://public:80" || c.Users == nil || !c.Insecure ||
					c.LogLevel != slog.LevelError || c.MaxBody != 2048 || c.ShutdownTimeout != time.Minute {
					t.Fatalf("config = %+v", c)
				}
				if d := storeDescription(c); strings.Contains(d, "s3cret") || !strings.Contains(d, "cmbs_test") {
					t.Fatalf("storeDescription = %q: leaks the password or misses the db", d)
				}
			},
		},
		{
			name: "flag beats env",
			args: []string{"--listen", "127.0.0.1:2", "--insecure=false", "--store", "sqlite:flag.db", "--log-level", "debug"},
			env: map[string]string{"CMBS_LISTEN": "127.0.0.1:1", "CMBS_INSECURE": "true",
				"CMBS_STORE": "http://couch:5984", "CMBS_LOG_LEVEL": "error"},
			check: func(t *testing.T, c config) {
				if c.Listen != "127.0.0.1:2" || c.Insecure || c.StoreKind != storeSQLite ||
					c.SQLitePath != "flag.db" || c.LogLevel != slog.LevelDebug {
					t.Fatalf("config = %+v", c)
				}
			},
		},
		{
			name: "empty env value counts as unset",
			env:  map[string]string{"CMBS_LISTEN": "", "CMBS_DB": ""},
			check: func(t *testing.T, c config) {
				if c.Listen != defaultListen || c.DB != defaultDB {
					t.Fatalf("config = %+v", c)
				}
			},
		},
		{
			name: "sqlite URL form",
			args: []string{"--store", "sqlite:///var/lib/cmbs/cmbs.db"},
			check: func(t *testing.T, c config) {
				if c.StoreKind != storeSQLite || c.SQLitePath != "/var/lib/cmbs/cmbs.db" {
					t.Fatalf("config = %+v", c)
				}
			},
		},
		{
			name: "couchdb without credentials, default db",
			args: []string{"--store", "http://127.0.0.1:5984"},
			check: func(t *testing.T, c config) {
				if c.StoreKind != storeCouch || c.CouchURL != "http://127.0.0.1:5984" || c.DB != "cmbs" {
					t.Fatalf("config = %+v", c)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var help bytes.Buffer
			c, err := parseConfig(tt.args, env(tt.env), &help)
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			if help.Len() != 0 {
				t.Errorf("unexpected output: %q", help.String())
			}
			tt.check(t, c)
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error message
	}{
		{"unknown store scheme", []string{"--store", "mysql://db:3306"}, nil,
			[]string{"--store (CMBS_STORE)", `unknown store scheme "mysql"`}},
		{"store without scheme", []string{"--store", "cmbs.db"}, nil,
			[]string{"--store (CMBS_STORE)", "unknown store scheme"}},
		{"unknown store scheme from env", nil, map[string]string{"CMBS_STORE": "couchdb://x"},
			[]string{"--store (CMBS_STORE)", `"couchdb"`}},
		{"sqlite without path", []string{"--store", "sqlite:"}, nil,
			[]string{"--store (CMBS_STORE)", "missing path"}},
		{"couchdb without host", []string{"--store", "http://"}, nil,
			[]string{"--store (CMBS_STORE)", "missing host"}},
		{"couchdb malformed, password not echoed", []string{"--store", "http://admin:s3cret@host:port:x"}, nil,
			[]string{"--store (CMBS_STORE)", "malformed"}},
		{"couchdb bad db name", []string{"--store", "http://couch:5984", "--db", "Cmbs"}, nil,
			[]string{"--db (CMBS_DB)", `"Cmbs"`}},
		{"peer timeout zero", []string{"--peer-timeout", "0s"}, nil,
			[]string{"--peer-timeout (CMBS_PEER_TIMEOUT)", "positive"}},
		{"peer timeout too long", nil, map[string]string{"CMBS_PEER_TIMEOUT": "1h"},
			[]string{"--peer-timeout (CMBS_PEER_TIMEOUT)", "up to 5m0s"}},
		{"listen without port", []string{"--listen", "127.0.0.1"}, nil,
			[]string{"--listen (CMBS_LISTEN)", `"127.0.0.1"`, "missing port"}},
		{"listen garbage", []string{"--listen", "not an address"}, nil,
			[]string{"--listen (CMBS_LISTEN)"}},
		{"listen port out of range", []string{"--listen", "127.0.0.1:99999"}, nil,
			[]string{"--listen (CMBS_LISTEN)", "0 to 65535"}},
		{"listen named port", []string{"--listen", "127.0.0.1:http"}, nil,
			[]string{"--listen (CMBS_LISTEN)", `"http"`}},
		{"listen malformed from env", nil, map[string]string{"CMBS_LISTEN": "[::1:8090"}, []string{"--listen (CMBS_LISTEN)"}},
		{"public url ftp", []string{"--public-url", "ftp://example.org"}, nil,
			[]string{"--public-url (CMBS_PUBLIC_URL)", "http or https"}},
		{"public url without scheme", []string{"--public-url", "example.org:8090"}, nil,
			[]string{"--public-url (CMBS_PUBLIC_URL)"}},
		{"public url without host", []string{"--public-url", "http:///path"}, nil,
			[]string{"--public-url (CMBS_PUBLIC_URL)", "missing host"}},
		{"public url with query", []string{"--public-url", "http://example.org/?x=1"}, nil,
			[]string{"--public-url (CMBS_PUBLIC_URL)", "query"}},
		{"users file missing", []string{"--users", filepath.Join("testdata", "no-such-file")}, nil,
			[]string{"--users (CMBS_USERS)", "no-such-file", "no such file"}},
		{"users file malformed", []string{"--users", filepath.Join("testdata", "users-malformed")}, nil,
			[]string{"--users (CMBS_USERS)", "users-malformed", "line 3"}},
		{"users file is a directory", []string{"--users", "testdata"}, nil,
			[]string{"--users (CMBS_USERS)"}},
		{"log level", []string{"--log-level", "verbose"}, nil,
			[]string{"--log-level (CMBS_LOG_LEVEL)", `"verbose"`}},
		{"max body zero", []string{"--max-body", "0"}, nil, []string{"--max-body (CMBS_MAX_BODY)"}},
		{"max output zero", []string{"--max-output", "0"}, nil, []string{"--max-output (CMBS_MAX_OUTPUT)"}},
		{"max record output zero", []string{"--max-record-output", "0"}, nil, []string{"--max-record-output (CMBS_MAX_RECORD_OUTPUT)"}},
		{"run dir missing", []string{"--run-dir", "/no/such/dir"}, nil, []string{"--run-dir (CMBS_RUN_DIR)", `"/no/such/dir"`}},
		{"server id with a newline", nil, map[string]string{"CMBS_SERVER_ID": "a\nb"}, []string{"--server-id (CMBS_SERVER_ID)", "control characters"}},
		{"max attributes zero", []string{"--max-attributes", "0"}, nil, []string{"--max-attributes (CMBS_MAX_ATTRIBUTES)"}},
		{"max body not a number", []string{"--max-body", "4MiB"}, nil, []string{"max-body"}},
		{"shutdown timeout negative", []string{"--shutdown-timeout", "-1s"}, nil,
			[]string{"--shutdown-timeout (CMBS_SHUTDOWN_TIMEOUT)"}},
		{"zmq max conns zero", []string{"--zmq-max-conns", "0"}, nil, []string{"--zmq-max-conns (CMBS_ZMQ_MAX_CONNS)", "positive"}},
		{"zmq idle timeout zero", []string{"--zmq-idle-timeout", "0s"}, nil, []string{"--zmq-idle-timeout (CMBS_ZMQ_IDLE_TIMEOUT)"}},
		{"zmq max message negative", []string{"--zmq-max-message", "-1"}, nil, []string{"--zmq-max-message (CMBS_ZMQ_MAX_MESSAGE)"}},
		{"zmq read budget zero", nil, map[string]string{"CMBS_ZMQ_READ_BUDGET": "0"}, []string{"--zmq-read-budget (CMBS_ZMQ_READ_BUDGET)"}},
		{"zmq message over the budget", []string{"--zmq-max-message", "2048", "--zmq-read-budget", "1024"}, nil,
			[]string{"--zmq-max-message (CMBS_ZMQ_MAX_MESSAGE)", "more than --zmq-read-budget (1024)"}},
		{"zmq message timeout negative", []string{"--zmq-message-timeout", "-1s"}, nil, []string{"--zmq-message-timeout (CMBS_ZMQ_MESSAGE_TIMEOUT)"}},
		{"store timeout zero", []string{"--store-timeout", "0s"}, nil,
			[]string{"--store-timeout (CMBS_STORE_TIMEOUT)"}},
		{"bad bool in env", nil, map[string]string{"CMBS_INSECURE": "maybe"},
			[]string{"--insecure (CMBS_INSECURE)", `"maybe"`}},
		{"bad number in env", nil, map[string]string{"CMBS_MAX_BODY": "lots"},
			[]string{"--max-body (CMBS_MAX_BODY)", `"lots"`}},
		{"unknown flag", []string{"--port", "80"}, nil, []string{"-port", "cmbsd -h"}},
		{"positional argument", []string{"serve"}, nil, []string{`unexpected argument "serve"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var help bytes.Buffer
			_, err := parseConfig(tt.args, env(tt.env), &help)
			var ce *configError
			if !errors.As(err, &ce) {
				t.Fatalf("parseConfig error = %v (%T), want a *configError", err, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q leaks a password", err)
			}
			if help.Len() != 0 {
				t.Errorf("errors must not print help; got %q", help.String())
			}
		})
	}
}

// TestLoopbackRule: without users, only loopback listen addresses are
// accepted unless --insecure says otherwise.
func TestLoopbackRule(t *testing.T) {
	users := filepath.Join("testdata", "users")
	tests := []struct {
		listen string
		extra  []string
		env    map[string]string
		ok     bool
	}{
		{listen: "127.0.0.1:8090", ok: true},
		{listen: "127.1.2.3:8090", ok: true},
		{listen: "[::1]:8090", ok: true},
		{listen: "localhost:8090", ok: true},
		{listen: "LocalHost:8090", ok: true},
		{listen: "127.0.0.1:0", ok: true},
		{listen: "0.0.0.0:8090"},
		{listen: ":8090"},
		{listen: "[::]:8090"},
		{listen: "192.168.1.10:8090"},
		{listen: "[fe80::1%eth0]:8090"},
		{listen: "example.org:8090"},
		{listen: "localhost.example.org:8090"},
		{listen: "0.0.0.0:8090", extra: []string{"--insecure"}, ok: true},
		{listen: ":8090", extra: []string{"--insecure"}, ok: true},
		{listen: "0.0.0.0:8090", env: map[string]string{"CMBS_INSECURE": "true"}, ok: true},
		{listen: "0.0.0.0:8090", extra: []string{"--users", users}, ok: true},
		{listen: ":8090", env: map[string]string{"CMBS_USERS": users}, ok: true},
		{listen: ":8090", extra: []string{"--insecure=false"}, env: map[string]string{"CMBS_INSECURE": "true"}},
	}
	for _, tt := range tests {
		name := tt.listen + " " + strings.Join(tt.extra, " ")
		for k, v := range tt.env {
			name += " " + k + "=" + v
		}
		t.Run(name, func(t *testing.T) {
			args := append([]string{"--listen", tt.listen}, tt.extra...)
			_, err := parseConfig(args, env(tt.env), &bytes.Buffer{})
			if tt.ok {
				if err != nil {
					t.Fatalf("parseConfig: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted a non-loopback address without users or --insecure")
			}
			for _, w := range []string{"non-loopback", tt.listen, "--users", "--insecure"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseConfigHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		var help bytes.Buffer
		_, err := parseConfig([]string{arg}, env(nil), &help)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s: err = %v, want flag.ErrHelp", arg, err)
		}
		for _, w := range []string{"-listen", "-store", "-db", "-public-url", "-users", "-insecure", "-log-level", "-max-body", "CMBS_LISTEN"} {
			if !strings.Contains(help.String(), w) {
				t.Errorf("%s: usage does not mention %q:\n%s", arg, w, help.String())
			}
		}
	}
}

// --version asks for the version, whatever else is given; CMBS_VERSION in
// the environment does not (it is no setting).
func TestParseConfigVersion(t *testing.T) {
	if _, err := parseConfig([]string{"--version", "--log-level", "debug"}, env(nil), io.Discard); !errors.As(err, new(versionRequest)) {
		t.Fatalf("--version: err = %v, want a versionRequest", err)
	}
	if _, err := parseConfig(nil, env(map[string]string{"CMBS_VERSION": "true"}), io.Discard); err != nil {
		t.Fatalf("CMBS_VERSION=true: %v", err)
	}
}

// ZeroMQ peers get what the open-file limit leaves after a reserve for
// HTTP and the rest: at least 256 descriptors, or a quarter.
func TestZMQConnQuota(t *testing.T) {
	for _, tt := range []struct {
		nofile uint64
		want   int
	}{
		{0, 0},             // unknown: no quota
		{100, 1},           // below the reserve: one connection, not none
		{1024, 768},        // the 1,024: 256 kept for HTTP
		{20000, 15000},     // a quarter kept
		{1 << 63, 1 << 30}, // unlimited
	} {
		if got := zmqConnQuota(tt.nofile); got != tt.want {
			t.Errorf("zmqConnQuota(%d) = %d, want %d", tt.nofile, got, tt.want)
		}
	}
}
