package couchpeer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment variables the test helpers read.
const (
	// EnvURL names an existing CouchDB server to test against instead of
	// starting the peer, e.g. http://admin:secret@127.0.0.1:5984/.
	EnvURL = "COUCHDB_URL"
	// EnvCI set to "true" turns "peer not installed" from a skip into a
	// failure.
	EnvCI = "CI"
)

// Server is the CouchDB server of one test binary: the one COUCHDB_URL names,
// or a peer this package started, or the reason there is none.
type Server struct {
	url  string
	peer *Peer
	err  error
}

// StartServer picks or starts the server for a test binary; call it from
// TestMain and Close the result after m.Run. A peer it starts is also put
// in COUCHDB_URL for the rest of the binary, so that URLForTest shares it
// rather than starting one per test. It never fails: when no server is
// available, URL reports why to each test that asks.
func StartServer(ctx context.Context) *Server {
	if u := os.Getenv(EnvURL); u != "" {
		return &Server{url: u}
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultStartTimeout)
	defer cancel()
	p, err := Start(ctx, Options{Stderr: os.Stderr})
	if err != nil {
		return &Server{err: err}
	}
	if err := os.Setenv(EnvURL, p.URL()); err != nil {
		_ = p.Stop()
		return &Server{err: err}
	}
	return &Server{url: p.URL(), peer: p}
}

// URL returns the server's base URL. Without a server it skips t, or fails
// it when CI=true or when the peer is installed but would not start.
func (s *Server) URL(t testing.TB) string {
	t.Helper()
	if s.err != nil {
		unavailable(t, s.err)
	}
	return s.url
}

// Peer is the peer StartServer started, or nil (COUCHDB_URL, or none).
func (s *Server) Peer() *Peer { return s.peer }

// Close stops the peer StartServer started, if any.
func (s *Server) Close() error {
	if s.peer == nil {
		return nil
	}
	_ = os.Unsetenv(EnvURL)
	return s.peer.Stop()
}

// Run is a TestMain's body: it starts the binary's server (StartServer),
// stores it in *server (when server is not nil), runs the tests, stops it
// (saying why if that fails) and returns the exit code for os.Exit.
func Run(m *testing.M, server **Server) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s := StartServer(ctx)
	cancel()
	if server != nil {
		*server = s
	}
	code := m.Run()
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the CouchDB-API test peer:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// URLForTest returns the URL of COUCHDB_URL's server, or starts a peer for
// t alone and stops it when t ends. Without a server it skips t (fails it
// with CI=true).
func URLForTest(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStartTimeout)
	defer cancel()
	p, err := Start(ctx, Options{Stderr: os.Stderr})
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("couchpeer: %v", err)
		}
	})
	return p.URL()
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNotInstalled) && os.Getenv(EnvCI) != "true" {
		t.Skipf("no CouchDB for this test (set %s, or install the peer): %v", EnvURL, err)
	}
	t.Fatalf("no CouchDB for this test: %v", err)
}

// DBForTest returns a database name no other test uses (the test's name and a
// random suffix), so tests can share one server. It does not create the
// database; when t ends it deletes it from serverURL, if it exists, so a
// shared COUCHDB_URL server does not fill up.
func DBForTest(t testing.TB, serverURL string) string {
	t.Helper()
	var suffix [6]byte
	_, _ = rand.Read(suffix[:]) // crypto/rand.Read never fails
	name := "test_" + dbNamePart(t.Name()) + "_" + hex.EncodeToString(suffix[:])
	t.Cleanup(func() {
		if err := deleteDB(serverURL, name); err != nil {
			t.Logf("couchpeer: deleting test database %s: %v", name, err)
		}
	})
	return name
}

// dbNamePart maps a test name into CouchDB's database name alphabet
// (^[a-z][a-z0-9_$()+/-]*$), leaving out "/" which would need escaping.
func dbNamePart(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 80 {
			break
		}
	}
	return b.String()
}

func deleteDB(serverURL, name string) error {
	u, err := url.Parse(serverURL)
	if err != nil {
		return err
	}
	user := u.User
	u.User = nil
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + name
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
	if err != nil {
		return err
	}
	if user != nil {
		pass, _ := user.Password()
		req.SetBasicAuth(user.Username(), pass)
	}
	// No keep-alive: the connection must not outlive the test (leak checks).
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("DELETE /%s: %s", name, resp.Status)
	}
	return nil
}

// StartForTest starts a peer of t's own on port (0 picks a free one), even
// when COUCHDB_URL names a shared server: fault tests stop, restart and
// freeze it, which a shared server must not suffer. The peer is resumed
// (should t have frozen it with SIGSTOP) and stopped when t ends. Without
// node or the peer's npm modules it skips t (fails it with CI=true).
func StartForTest(t testing.TB, port int) *Peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStartTimeout)
	defer cancel()
	p, err := Start(ctx, Options{Port: port, Stderr: os.Stderr})
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		if err := p.Stop(); err != nil {
			t.Errorf("couchpeer: %v", err)
		}
	})
	return p
}
