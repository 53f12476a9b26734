package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/internal/netaddr"
	"github.com/cmbs/cmbs/occi/basicauth"
	"github.com/cmbs/cmbs/occi/model"
)

// Defaults of the command line (README.md, "Command line").
const (
	defaultListen          = "127.0.0.1:8090"
	defaultDataDir         = "cmbs-data"
	defaultSQLiteFile      = "cmbs.db"
	defaultLayersFile      = "layers.json"
	defaultDB              = "cmbs"
	defaultMaxBody         = 4 << 20
	defaultMaxOutput       = 1 << 20
	defaultShutdownTimeout = 10 * time.Second
	defaultStoreTimeout    = 10 * time.Second
	defaultPeerTimeout     = 3 * time.Second
	maxPeerTimeout         = 5 * time.Minute
	// ZeroMQ limits (docs/limits.md, "ZeroMQ").
	defaultZMQMaxConns       = 512
	defaultZMQIdleTimeout    = 5 * time.Minute
	defaultZMQMaxMessage     = transport.MaxBodySize + 64<<10
	defaultZMQReadBudget     = transport.DefaultReadBudget
	defaultZMQMessageTimeout = 10 * time.Second
	envPrefix                = "CMBS_"
)

// storeKind says which store implementation --store selects.
type storeKind int

const (
	storeSQLite storeKind = iota
	storeCouch
)

// config is everything cmbsd is told at start, from flags and CMBS_* env
// variables, already validated: run never has to second-guess it.
type config struct {
	// Listen is the TCP address to serve on (host:port; port 0 picks one).
	Listen string
	// StoreKind is the store implementation the --store URL selects.
	StoreKind storeKind
	// SQLitePath is the embedded store's database file (StoreKind == storeSQLite).
	SQLitePath string
	// CouchURL is the CouchDB server URL, credentials included (StoreKind == storeCouch).
	// Log it with redact, never as is.
	CouchURL string
	// DB is the CouchDB database name.
	DB string
	// PublicURL is the base for absolute locations, without a trailing slash;
	// empty means from each request's Host.
	PublicURL string
	// UsersFile is the --users path; Users is its loaded content. Both are
	// empty when the server runs without authentication.
	UsersFile string
	Users     *basicauth.Users
	// Insecure allows a non-loopback listen address without users, and
	// layer sockets on non-loopback addresses.
	Insecure bool
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
	// LogFormat is "text" (slog's key=value lines) or "json" (one JSON
	// object per line).
	LogFormat string
	// MaxBody limits request bodies, in bytes.
	MaxBody int64
	// MaxAttributes bounds an entity's attribute count and every array's
	// length and object's member count in its attribute values.
	MaxAttributes int
	// ShutdownTimeout bounds the wait for in-flight requests on SIGINT/SIGTERM.
	ShutdownTimeout time.Duration
	// StoreTimeout bounds every store call: a store that does not answer in
	// time fails the request with 503 instead of holding it.
	StoreTimeout time.Duration
	// PeerTimeout bounds every call to another CMBS member (connect, send,
	// answer): a dead or slow peer costs at most this long.
	PeerTimeout time.Duration
	// LayersRecord is the id of the store document recording the running
	// member layers for the next start; empty when disabled.
	LayersRecord string
	// ImportLayersFile is the layers.json of earlier versions imported
	// into the store when it holds no record yet; empty for none.
	ImportLayersFile string
	// Curve is the CURVE configuration (curve.go); nil without --curve-key.
	Curve *cmbs.CurveOptions
	// MaxOutput caps a process execution's output and stderr, each, in bytes.
	MaxOutput int64
	// RunDir is where process executions get their private run
	// directories; "" means the system's temporary directory.
	RunDir string
	// Bus is the bus sockets and agents (busconfig.go).
	Bus busConfig
	// ZMQ bounds what ZeroMQ peers may make the broker hold.
	ZMQ zmqLimits
}

// zmqLimits are the --zmq-* flags.
type zmqLimits struct {
	MaxConns       int           // open connections per member layer socket
	IdleTimeout    time.Duration // a layer socket's connection without a message is closed after it
	MaxMessage     int64         // bytes of one incoming message
	ReadBudget     int64         // bytes all connections may hold for messages still arriving
	MessageTimeout time.Duration // an incoming message must arrive whole within it
}

// configError is a bad configuration: run reports it and exits 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// badConfig builds a configError naming the flag and its env variable.
func badConfig(flagName, format string, args ...any) error {
	return &configError{msg: fmt.Sprintf("--%s (%s): %s", flagName, envName(flagName), fmt.Sprintf(format, args...))}
}

// envName is the environment variable a flag also reads: CMBS_ + the flag
// name upper-cased with dashes as underscores.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// rawConfig holds the flag values as given, before interpretation.
type rawConfig struct {
	listen, store, db, publicURL, users, logLevel, layersFile string
	layersRecord                                              string
	runDir                                                    string
	logFormat                                                 string
	insecure                                                  bool
	maxBody, maxOutput                                        int64
	maxAttributes                                             int
	shutdownTimeout, peerTimeout, storeTimeout                time.Duration
	zmq                                                       zmqLimits
	bus                                                       rawBus

	curve curveFlags // --curve-key, --curve-clients, --curve-servers
}

// parseConfig fills the configuration from env variables, then from args
// (so a flag on the command line wins), and validates it. For -h/--help it
// writes the usage to help and returns flag.ErrHelp; for --version it returns
// a versionRequest; anything wrong is a
// *configError.
func parseConfig(args []string, getenv func(string) string, help io.Writer) (config, error) {
	var raw rawConfig
	fs := flag.NewFlagSet("cmbsd", flag.ContinueOnError)
	// The flag package prints errors and the usage to its output; collect it
	// and decide below whether it is help (wanted) or noise around an error.
	var usage bytes.Buffer
	fs.SetOutput(&usage)
	fs.StringVar(&raw.listen, "listen", defaultListen, "TCP `address` to serve on")
	fs.StringVar(&raw.store, "store", "", "store `URL`: sqlite:PATH for the embedded store, http(s)://user:pass@host:5984 for CouchDB (default sqlite:./"+defaultDataDir+"/"+defaultSQLiteFile+")")
	fs.StringVar(&raw.db, "db", defaultDB, "CouchDB database `name`")
	fs.StringVar(&raw.publicURL, "public-url", "", "base `URL` for absolute locations (default: from each request's Host)")
	fs.StringVar(&raw.users, "users", "", "basic-auth users `file` (user:password or user:bcrypt-hash per line); when set, every request needs valid credentials")
	fs.BoolVar(&raw.insecure, "insecure", false, "allow a non-loopback --listen address without --users, and CMBS layer and bus sockets on non-loopback addresses (without --curve-key they do not authenticate peers)")
	fs.StringVar(&raw.logLevel, "log-level", "info", "minimum log `level`: debug, info, warn or error")
	fs.StringVar(&raw.logFormat, "log-format", "text", "log line `format`: text (key=value) or json (one object per line)")
	fs.Int64Var(&raw.maxBody, "max-body", defaultMaxBody, "request body limit in `bytes`")
	fs.IntVar(&raw.maxAttributes, "max-attributes", model.DefaultMaxAttributes, "most attributes an entity may have, and most elements or members of any array or object in its attribute values (`count`)")
	fs.StringVar(&raw.layersRecord, "layers-record", cmbs.DefaultLayersID, "`id` of the store document recording which member layers run, so that a restart binds them again (servers sharing a CouchDB database each need their own; \"none\" disables)")
	fs.StringVar(&raw.layersFile, "layers-file", "", "layers.json `file` of an earlier cmbsd, imported into the store when it holds no record yet (default: layers.json beside the sqlite database; none with CouchDB; \"none\" for none)")
	fs.Int64Var(&raw.maxOutput, "max-output", defaultMaxOutput, "cap in `bytes` of a process execution's output and of its stderr; beyond it they are truncated (truncated:true)")
	fs.StringVar(&raw.runDir, "run-dir", "", "`directory` in which each process execution gets its private run directory, and each smartmob process its own (smartmob/<id>) (default: the system's temporary directory; a tmpfs such as /dev/shm makes short runs faster)")
	fs.DurationVar(&raw.shutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "how long SIGINT/SIGTERM waits for in-flight requests")
	fs.DurationVar(&raw.storeTimeout, "store-timeout", defaultStoreTimeout, "how long one store call may take before the request fails with 503 (a frozen CouchDB, a stalled disk)")
	fs.DurationVar(&raw.peerTimeout, "peer-timeout", defaultPeerTimeout, "how long a call to another CMBS member (a send, a discovery probe, an L4 forward) waits for its answer")
	raw.curve.register(fs)
	raw.bus.register(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.IntVar(&raw.zmq.MaxConns, "zmq-max-conns", defaultZMQMaxConns, "most `connections` each member layer socket keeps open; more are closed at accept")
	fs.DurationVar(&raw.zmq.IdleTimeout, "zmq-idle-timeout", defaultZMQIdleTimeout, "close a layer socket's connection after this long without a message")
	fs.Int64Var(&raw.zmq.MaxMessage, "zmq-max-message", defaultZMQMaxMessage, "largest incoming ZeroMQ message in `bytes`; a peer announcing more is disconnected")
	fs.Int64Var(&raw.zmq.ReadBudget, "zmq-read-budget", defaultZMQReadBudget, "`bytes` all ZeroMQ connections together may hold for messages still arriving")
	fs.DurationVar(&raw.zmq.MessageTimeout, "zmq-message-timeout", defaultZMQMessageTimeout, "an incoming ZeroMQ message must arrive whole within this once started")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: cmbsd [flags]\n\nEvery flag can also be set with its environment variable (CMBS_LISTEN, CMBS_STORE, …);\na flag given on the command line wins.\n\n")
		fs.PrintDefaults()
	}

	// Env first, flags second: whatever the command line sets overwrites it.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(envName(f.Name))
		if v == "" || envErr != nil || f.Name == "version" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = badConfig(f.Name, "invalid value %q", v)
		}
	})
	if envErr != nil {
		return config{}, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = usage.WriteTo(help)
			return config{}, err
		}
		return config{}, &configError{msg: err.Error() + " (cmbsd -h lists the flags)"}
	}
	if *showVersion {
		return config{}, versionRequest{}
	}
	if raw.curve.genOnly {
		return config{}, raw.curve.keygen()
	}
	if fs.NArg() > 0 {
		return config{}, &configError{msg: fmt.Sprintf("unexpected argument %q (cmbsd takes flags only)", fs.Arg(0))}
	}
	return raw.validate()
}

// validate interprets and checks the raw values.
func (raw rawConfig) validate() (config, error) {
	cfg := config{
		Listen:          raw.listen,
		DB:              raw.db,
		UsersFile:       raw.users,
		Insecure:        raw.insecure,
		MaxBody:         raw.maxBody,
		MaxAttributes:   raw.maxAttributes,
		ShutdownTimeout: raw.shutdownTimeout,
		PeerTimeout:     raw.peerTimeout,
		ZMQ:             raw.zmq,
		StoreTimeout:    raw.storeTimeout,
		MaxOutput:       raw.maxOutput,
		RunDir:          raw.runDir,
	}

	loopback, err := checkListen(raw.listen)
	if err != nil {
		return config{}, badConfig("listen", "%q: %v", raw.listen, err)
	}
	if cfg.Curve, err = raw.curve.load(); err != nil {
		return config{}, err
	}

	switch s := raw.store; {
	case s == "":
		cfg.StoreKind, cfg.SQLitePath = storeSQLite, filepath.Join(defaultDataDir, defaultSQLiteFile)
	case strings.HasPrefix(s, "sqlite:"):
		// sqlite:PATH; sqlite:///abs/path is accepted too, as URL habits suggest.
		p := strings.TrimPrefix(s, "sqlite:")
		if strings.HasPrefix(p, "//") {
			p = p[2:]
		}
		if p == "" {
			return config{}, badConfig("store", "%q: missing path (want sqlite:PATH)", s)
		}
		cfg.StoreKind, cfg.SQLitePath = storeSQLite, p
	case strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://"):
		u, err := url.Parse(s)
		if err != nil {
			// url.Error quotes the URL, password included: say less.
			return config{}, badConfig("store", "malformed CouchDB URL")
		}
		if u.Host == "" {
			return config{}, badConfig("store", "%q: missing host", u.Redacted())
		}
		if !couchDBName.MatchString(raw.db) {
			return config{}, badConfig("db", "%q is not a valid CouchDB database name (lower-case letter first, then a-z 0-9 _$()+-/)", raw.db)
		}
		cfg.StoreKind, cfg.CouchURL = storeCouch, s
	default:
		scheme, _, _ := strings.Cut(s, ":")
		return config{}, badConfig("store", "unknown store scheme %q (want sqlite:PATH, http:// or https://)", scheme)
	}

	switch {
	case raw.layersRecord == "none":
	case !layersRecordID.MatchString(raw.layersRecord):
		return config{}, badConfig("layers-record", "%q: want letters, digits, '.', '_' or '-' (at most 100, not starting with '_' or '.'), or none", raw.layersRecord)
	default:
		cfg.LayersRecord = raw.layersRecord
	}
	switch raw.layersFile {
	case "none":
	case "":
		// A layers.json in a CouchDB server's working directory may well
		// be an embedded store's: only the embedded store imports by
		// default, its own.
		if cfg.StoreKind == storeSQLite {
			cfg.ImportLayersFile = filepath.Join(filepath.Dir(cfg.SQLitePath), defaultLayersFile)
		}
	default:
		cfg.ImportLayersFile = raw.layersFile
	}

	if raw.publicURL != "" {
		u, err := url.Parse(raw.publicURL)
		switch {
		case err != nil:
			return config{}, badConfig("public-url", "%q: malformed URL", raw.publicURL)
		case u.Scheme != "http" && u.Scheme != "https":
			return config{}, badConfig("public-url", "%q: scheme must be http or https", raw.publicURL)
		case u.Host == "":
			return config{}, badConfig("public-url", "%q: missing host", raw.publicURL)
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			return config{}, badConfig("public-url", "%q: must not have a query, fragment or user info", raw.publicURL)
		}
		cfg.PublicURL = strings.TrimRight(raw.publicURL, "/")
	}

	if raw.users != "" {
		users, err := basicauth.Load(raw.users)
		if err != nil {
			return config{}, badConfig("users", "%v", err)
		}
		cfg.Users = users
	}

	if !loopback && cfg.Users == nil && !cfg.Insecure {
		return config{}, &configError{msg: fmt.Sprintf(
			"refusing to listen on non-loopback address %q without --users (%s): anyone who can reach it could change the server; "+
				"give --users FILE, listen on 127.0.0.1, or pass --insecure (%s=true) to serve without authentication",
			raw.listen, envName("users"), envName("insecure"))}
	}

	switch strings.ToLower(raw.logLevel) {
	case "debug":
		cfg.LogLevel = slog.LevelDebug
	case "info":
		cfg.LogLevel = slog.LevelInfo
	case "warn", "warning":
		cfg.LogLevel = slog.LevelWarn
	case "error":
		cfg.LogLevel = slog.LevelError
	default:
		return config{}, badConfig("log-level", "%q: want debug, info, warn or error", raw.logLevel)
	}
	switch f := strings.ToLower(raw.logFormat); f {
	case "text", "json":
		cfg.LogFormat = f
	default:
		return config{}, badConfig("log-format", "%q: want text or json", raw.logFormat)
	}

	if raw.maxAttributes <= 0 {
		return config{}, badConfig("max-attributes", "%d: must be a positive count", raw.maxAttributes)
	}
	if raw.maxBody <= 0 {
		return config{}, badConfig("max-body", "%d: must be a positive number of bytes", raw.maxBody)
	}
	if raw.runDir != "" {
		if fi, err := os.Stat(raw.runDir); err != nil || !fi.IsDir() {
			return config{}, badConfig("run-dir", "%q is not a directory", raw.runDir)
		}
	}
	if raw.maxOutput <= 0 {
		return config{}, badConfig("max-output", "%d: must be a positive number of bytes", raw.maxOutput)
	}
	if raw.shutdownTimeout <= 0 {
		return config{}, badConfig("shutdown-timeout", "%v: must be positive", raw.shutdownTimeout)
	}
	if raw.peerTimeout <= 0 || raw.peerTimeout > maxPeerTimeout {
		return config{}, badConfig("peer-timeout", "%v: want a positive duration up to %v", raw.peerTimeout, maxPeerTimeout)
	}
	switch z := raw.zmq; {
	case z.MaxConns <= 0:
		return config{}, badConfig("zmq-max-conns", "%d: must be a positive number of connections", z.MaxConns)
	case z.IdleTimeout <= 0:
		return config{}, badConfig("zmq-idle-timeout", "%v: must be positive", z.IdleTimeout)
	case z.MaxMessage <= 0:
		return config{}, badConfig("zmq-max-message", "%d: must be a positive number of bytes", z.MaxMessage)
	case z.ReadBudget <= 0:
		return config{}, badConfig("zmq-read-budget", "%d: must be a positive number of bytes", z.ReadBudget)
	case z.MaxMessage > z.ReadBudget:
		return config{}, badConfig("zmq-max-message", "%d bytes is more than --zmq-read-budget (%d): such a message could never be read", z.MaxMessage, z.ReadBudget)
	case z.MessageTimeout <= 0:
		return config{}, badConfig("zmq-message-timeout", "%v: must be positive", z.MessageTimeout)
	}
	if raw.storeTimeout <= 0 {
		return config{}, badConfig("store-timeout", "%v: must be positive", raw.storeTimeout)
	}
	if cfg.Bus, err = raw.bus.validate(cfg.Insecure || cfg.Curve != nil); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// layersRecordID is what --layers-record accepts: a document id no entity
// (a path) or category ("category:…") can have.
var layersRecordID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// couchDBName is CouchDB's rule for database names.
var couchDBName = regexp.MustCompile(`^[a-z][a-z0-9_$()+/-]*$`)

// checkListen validates a host:port listen address and reports whether it
// is loopback only. An empty host means every interface, so it is not
// loopback; a host name other than localhost is not trusted to be either.
func checkListen(addr string) (loopback bool, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return false, errors.New(ae.Err) // the address is quoted by the caller already
		}
		return false, err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return false, fmt.Errorf("port %q must be a number from 0 to 65535", port)
	}
	if netaddr.LoopbackHost(host) {
		return true, nil
	}
	if strings.ContainsAny(host, " /[]") {
		return false, fmt.Errorf("malformed host %q", host)
	}
	return false, nil
}

// redact returns a URL with its password hidden, for logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(malformed URL)"
	}
	return u.Redacted()
}
