// Package zmtptest opens plain ZMTP connections for tests that talk to
// cmbsd's sockets frame by frame.
package zmtptest

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
)

// Peer is a zmq4 ZMTP connection (NULL security) of type typ to the
// tcp:// endpoint, closed when t ends; every read and write on it is
// bounded by a 30 s deadline. zmq4's sockets leak goroutines on close; its
// Conn does not.
func Peer(t testing.TB, endpoint string, typ zmq4.SocketType) *zmq4.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(endpoint, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	zc, err := zmq4.Open(nc, null.Security(), typ, nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return zc
}
