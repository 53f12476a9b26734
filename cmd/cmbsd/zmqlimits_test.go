package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"

	"github.com/cmbs/cmbs/internal/loopback"
)

// The scenario with a limit of 400 descriptors: idle ZeroMQ peers
// can take no more than the quota the limit leaves them (400 - 256), so
// HTTP keeps answering; connections beyond a socket's --zmq-max-conns are
// closed at accept; and idle peers are closed after --zmq-idle-timeout.
func TestBinaryZMQPeersLeaveHTTPItsDescriptors(t *testing.T) {
	sh, err := os.Stat("/bin/sh")
	if err != nil || sh.IsDir() {
		t.Skip("no /bin/sh to lower the open-file limit with")
	}
	// ulimit -n sets both the soft and the hard limit: the Go runtime
	// cannot raise it back.
	p := startCmbsdWith(t, t.TempDir(), []string{"/bin/sh", "-c", `ulimit -n 400 && exec "$0" "$@"`},
		"--listen", "127.0.0.1:0", "--zmq-idle-timeout", "3s")
	base := "http://" + p.waitListening(t)
	for _, f := range []struct{ method, file string }{
		{"POST", "post_category_cmbs_member.json"}, {"PUT", "put_provider_cmbs_member.json"},
	} {
		body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "readme", f.file))
		if err != nil {
			t.Fatal(err)
		}
		mustCall(t, f.method, base+"/-/", body, 200)
	}
	ep := loopback.FreeEndpoint(t)
	member := fmt.Sprintf(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"m","attributes":{"cmbs":{"member":{"l1_socket":%q}}}}]}`, ep)
	mustCall(t, "POST", base+"/cmbs/member/", []byte(member), 201)
	mustCall(t, "POST", base+"/cmbs/member/m?action=start_l1", []byte("{}"), 200)
	if !strings.Contains(p.stderr.String(), "all_sockets=144") {
		t.Fatalf("cmbsd did not derive a quota of 144 ZeroMQ connections from a limit of 400:\n%s", p.stderr.String())
	}

	// 200 idle peers: the first 144 are kept, the rest closed at once.
	var kept []net.Conn
	refused := 0
	for range 200 {
		nc, err := net.DialTimeout("tcp", strings.TrimPrefix(ep, "tcp://"), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nc.Close() })
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := zmq4.Open(nc, null.Security(), zmq4.Dealer, nil, false, nil); err != nil {
			refused++
			_ = nc.Close()
			continue
		}
		kept = append(kept, nc)
	}
	if len(kept) != 144 || refused != 56 {
		t.Fatalf("%d idle peers kept and %d refused, want 144 and 56", len(kept), refused)
	}
	if got := get(t, base+"/-/", "", ""); got != http.StatusOK {
		t.Fatalf("GET /-/ with 144 idle ZeroMQ peers: %d", got)
	}

	// Idle for the timeout, they are closed.
	for _, nc := range kept {
		_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := nc.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("an idle ZeroMQ peer was kept past --zmq-idle-timeout")
		}
	}
}
