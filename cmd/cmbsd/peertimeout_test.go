package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --peer-timeout reaches the broker: a send to a peer that accepts the
// connection and never answers fails with 504 after that timeout, and says
// which one.
func TestBinaryPeerTimeout(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() { // accepts, reads nothing, answers nothing
		defer close(accepted)
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	defer func() {
		_ = silent.Close()
		<-accepted
		for _, c := range conns {
			_ = c.Close()
		}
	}()

	p := startCmbsd(t, t.TempDir(), nil, "--listen", "127.0.0.1:0", "--peer-timeout", "700ms")
	url := "http://" + p.waitListening(t)
	pycmbs := filepath.Join("..", "..", "testdata", "pycmbs")
	for _, f := range []struct{ method, file string }{
		{"POST", "post_category_cmbs_message.json"}, {"PUT", "put_provider_cmbs_message.json"},
	} {
		body, err := os.ReadFile(filepath.Join(pycmbs, f.file))
		if err != nil {
			t.Fatal(err)
		}
		mustCall(t, f.method, url+"/-/", body, 200)
	}
	msg := `{"resources":[{"kind":"http://houssem.org/cmbs#message","mixins":["http://houssem.org/cmbs#l1"],"id":"m",
		"attributes":{"cmbs":{"message":{"cmbs_layer":"l1","l1_socket_receiver_member":"tcp://` + silent.Addr().String() + `"}}}}]}`
	mustCall(t, "POST", url+"/cmbs/message/", []byte(msg), 201)
	status, body := occiCall(t, "POST", url+"/cmbs/message/m?action=send_l1", []byte("{}"))
	if status != 504 || !strings.Contains(string(body), "request timeout (700ms)") {
		t.Fatalf("send_l1 to a silent peer: %d %s, want 504 naming the 700ms timeout", status, body)
	}
}
