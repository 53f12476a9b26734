package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/cmbs/cmbs/cmbs/choria"
	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/internal/loopback"
	"github.com/cmbs/cmbs/internal/zmtptest"
)

// zmtpPeer is a ZMTP connection of type typ to endpoint.
func zmtpPeer(t *testing.T, endpoint string, typ zmq4.SocketType) *zmq4.Conn {
	return zmtptest.Peer(t, endpoint, typ)
}

// cmbsd with --rpc, --events-out, --events-in and --agents: the parrot
// external agent answers over the bus, discovery answers from the members
// the server knows, and a CMBS delivery is published as cmbs.l1.
func TestRunBus(t *testing.T) {
	src, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	agents := filepath.Join(t.TempDir(), "agents")
	if err := os.MkdirAll(agents, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"parrot", "parrot.json"} {
		b, err := os.ReadFile(filepath.Join(src, "cmbs", "choria", "testdata", "agents", f))
		if err == nil {
			err = os.WriteFile(filepath.Join(agents, f), b, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	rpc, out, in := loopback.FreeEndpoint(t), loopback.FreeEndpoint(t), loopback.FreeEndpoint(t)
	base := runInProcess(t, []string{"--listen", "127.0.0.1:0", "--rpc", rpc, "--events-out", out, "--events-in", in, "--agents", agents})

	dealer := zmtpPeer(t, rpc, zmq4.Dealer)
	ask := func(id string, body []byte) []byte {
		t.Helper()
		if err := dealer.SendMsg(zmq4.NewMsgFrom(nil, []byte(id), []byte("application/json"), body)); err != nil {
			t.Fatal(err)
		}
		m, err := dealer.RecvMsg()
		if err != nil {
			t.Fatal(err)
		}
		env, err := transport.Parse(m.Frames)
		if err != nil || env.ID != id {
			t.Fatalf("reply %q: %v", m.Frames, err)
		}
		return env.Body
	}
	echo, _ := os.ReadFile(filepath.Join(src, "cmbs", "choria", "testdata", "fixtures", "parrot.echo.request.json"))
	if got := string(ask("corr-1", echo)); got != `{"statuscode":0,"statusmsg":"OK","data":{"message":"Hello world!"}}` {
		t.Fatalf("parrot echo: %s", got)
	}

	// CH-18: the agent's entity answers the same over HTTP.
	if r := mustCall(t, "POST", base+"/choria/agent/parrot?action=rpc", []byte(`{"attributes":{"action":"echo","data":{"message":"hi"}}}`), 200); r["statuscode"] != 0.0 || r["data"].(map[string]any)["message"] != "hi" {
		t.Fatalf("rpc action: %v", r)
	}

	// /-/status counts the bus.
	if st := mustCall(t, "GET", base+"/-/status", nil, 200); st["bus"] == nil {
		t.Fatalf("status without bus: %v", st)
	}

	// A member and a message to it over L1.
	pycmbs := filepath.Join(src, "testdata", "pycmbs")
	for _, f := range []struct{ method, file string }{
		{"POST", "post_category_cmbs_member.json"}, {"PUT", "put_provider_cmbs_member.json"},
		{"POST", "post_category_cmbs_message.json"}, {"PUT", "put_provider_cmbs_message.json"},
	} {
		body, err := os.ReadFile(filepath.Join(pycmbs, f.file))
		if err != nil {
			t.Fatal(err)
		}
		mustCall(t, f.method, base+"/-/", body, 200)
	}
	l1 := loopback.FreeEndpoint(t)
	mustCall(t, "POST", base+"/cmbs/member/", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"foo","attributes":{"cmbs":{"member":{"state":"active","local":"true","l1_socket":"`+l1+`"}}}}]}`), 201)
	mustCall(t, "POST", base+"/cmbs/member/foo?action=start_l1", []byte("{}"), 200)

	disc := `{"$schema":"x","protocol":"io.choria.choria.discovery.v1.external_request","filter":{"fact":[{"fact":"state","operator":"==","value":"active"}],"cf_class":[],"agent":["parrot"],"compound":[],"identity":[]},"collective":"mcollective","timeout":2,"options":{}}`
	var dr choria.DiscoveryReply
	if err := json.Unmarshal(ask("disc-1", []byte(disc)), &dr); err != nil || dr.Error != "" || len(dr.Nodes) != 1 || dr.Nodes[0] != "foo" {
		t.Fatalf("discovery: %+v %v", dr, err)
	}

	sub := zmtpPeer(t, out, zmq4.Sub)
	if err := sub.SendMsg(zmq4.NewMsg(append([]byte{1}, "cmbs."...))); err != nil {
		t.Fatal(err)
	}
	// The subscription is in once a probe pushed to events-in comes back.
	push := zmtpPeer(t, in, zmq4.Push)
	got := make(chan []string, 16)
	go func() {
		for {
			m, err := sub.RecvMsg()
			if err != nil {
				close(got)
				return
			}
			got <- []string{string(m.Frames[0]), string(m.Frames[1]), string(m.Frames[2])}
		}
	}()
	for probed := false; !probed; {
		if err := push.SendMsg(zmq4.NewMsgFrom([]byte("cmbs.probe"), []byte("text/plain"), []byte("p"))); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-got:
			probed = f[0] == "cmbs.probe"
		case <-time.After(50 * time.Millisecond):
		}
	}
	mustCall(t, "POST", base+"/cmbs/message/", []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#message","mixins":["http://houssem.org/cmbs#l1"],"id":"hello-l1","attributes":{"cmbs":{"message":{"cmbs_layer":"l1","executable":"false","sendable":"true","storable":"false","message_content":{"text":"hi"},"l1_socket_receiver_member":"`+l1+`"}}}}]}`), 201)
	mustCall(t, "POST", base+"/cmbs/message/hello-l1?action=send_l1", []byte("{}"), 200)
	for {
		select {
		case f, ok := <-got:
			if !ok {
				t.Fatal("subscriber ended")
			}
			if f[0] != "cmbs.l1" {
				continue
			}
			var ev map[string]any
			if err := json.Unmarshal([]byte(f[2]), &ev); err != nil || f[1] != "application/json" || ev["layer"] != "l1" || ev["message"].(map[string]any)["id"] != "hello-l1" {
				t.Fatalf("event %q: %v", f, err)
			}
			return
		case <-time.After(20 * time.Second):
			t.Fatal("no cmbs.l1 event")
		}
	}
}
