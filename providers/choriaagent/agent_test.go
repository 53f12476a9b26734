package choriaagent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs/choria"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/choriaagent"
)

func start(t *testing.T) *testserver.Server {
	t.Helper()
	srv, _ := startWith(t)
	return srv
}

// toggle is a built-in test agent whose activation check answers on.
type toggle struct{ on *atomic.Bool }

var toggleDDL, _ = choria.ParseDDL([]byte(`{"metadata":{"name":"toggle","timeout":1},"actions":[{"action":"run","input":{},"output":{}}]}`))

func (toggle) DDL() *choria.DDL                                   { return toggleDDL }
func (toggle) Call(context.Context, *choria.Request) choria.Reply { return choria.OK(nil) }
func (a toggle) Activate(context.Context) (bool, error)           { return a.on.Load(), nil }

var toggleOn atomic.Bool

func startWith(t *testing.T) (*testserver.Server, *choria.Dispatcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	agents := choria.NewRegistry()
	if err := agents.Add(ctx, choria.Ping{}); err != nil {
		t.Fatal(err)
	}
	if err := agents.Add(ctx, toggle{&toggleOn}); err != nil {
		t.Fatal(err)
	}
	external, err := choria.LoadExternal("../../cmbs/choria/testdata/agents", choria.ExternalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range external {
		if err := agents.Add(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	d, err := choria.NewDispatcher(agents, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return testserver.Start(t, testserver.Options{Register: func(reg *providers.Registry, srv *occi.Server) error {
		_, err := choriaagent.Install(ctx, reg, srv.Categories(), srv.Entities(), d, nil)
		return err
	}}), d
}

// A second start finds the kind registered and updates the entities.
func TestInstallTwice(t *testing.T) {
	srv, d := startWith(t)
	if _, err := choriaagent.Install(t.Context(), providers.NewRegistry(), srv.OCCI.Categories(), srv.OCCI.Entities(), d, nil); err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, "GET", srv.URL+"/choria/agent/parrot", ""); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
}

// do sends one OCCI JSON request, answered within 30 s.
func do(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	return testserver.Request(t, 30*time.Second, method, url, []byte(body))
}

// CH-18: the rpc action answers what the bus answers; the agents are
// listed and read-only.
func TestAgentEntities(t *testing.T) {
	srv := start(t)
	code, body := do(t, "GET", srv.URL+"/choria/agent/", "")
	if code != 200 || !bytes.Contains(body, []byte("/choria/agent/parrot")) || !bytes.Contains(body, []byte("/choria/agent/rpcutil")) {
		t.Fatalf("list %d %s", code, body)
	}
	code, body = do(t, "GET", srv.URL+"/choria/agent/parrot", "")
	var e struct {
		Attributes struct {
			Choria struct {
				Agent map[string]any `json:"agent"`
			} `json:"choria"`
		} `json:"attributes"`
	}
	if err := json.Unmarshal(body, &e); err != nil || code != 200 {
		t.Fatalf("get %d %s", code, body)
	}
	if a := e.Attributes.Choria.Agent; a["active"] != true || a["provider"] != "external" || a["name"] != "parrot" || a["ddl"] == nil || !strings.HasSuffix(a["executable"].(string), "/parrot") {
		t.Fatalf("parrot entity: %v", a)
	}

	code, body = do(t, "POST", srv.URL+"/choria/agent/parrot?action=rpc", `{"attributes":{"action":"echo","data":{"message":"hi"}}}`)
	if code != 200 || string(bytes.TrimSpace(body)) != `{"statuscode":0,"statusmsg":"OK","data":{"message":"hi"}}` {
		t.Fatalf("rpc %d %s", code, body)
	}
	code, body = do(t, "POST", srv.URL+"/choria/agent/parrot?action=rpc", `{"attributes":{"action":"nope"}}`)
	if code != 200 || !bytes.Contains(body, []byte(`"statusmsg":"Unknown action nope for agent parrot"`)) {
		t.Fatalf("rpc unknown action %d %s", code, body)
	}
	code, body = do(t, "POST", srv.URL+"/choria/agent/rpcutil?action=rpc", `{"attributes":{"action":"ping"}}`)
	if code != 200 || !bytes.Contains(body, []byte(`"pong"`)) {
		t.Fatalf("ping %d %s", code, body)
	}
	code, body = do(t, "POST", srv.URL+"/choria/agent/parrot?action=activate", `{}`)
	if code != 200 || !bytes.Contains(body, []byte(`"activate":true`)) {
		t.Fatalf("activate %d %s", code, body)
	}

	// Read-only: no made-up agents, no changes to what the registry says.
	if code, body = do(t, "POST", srv.URL+"/choria/agent/", `{"resources":[{"kind":"http://cmbs.dev/occi/choria#agent","id":"nosuch","attributes":{"choria":{"agent":{"name":"nosuch"}}}}]}`); code != 400 {
		t.Fatalf("create unknown %d %s", code, body)
	}
	if code, body = do(t, "POST", srv.URL+"/choria/agent/parrot", `{"attributes":{"choria":{"agent":{"active":false}}}}`); code != 409 {
		t.Fatalf("update active %d %s", code, body)
	}
}

// An activation check requested on the bus updates the agent's entity.
func TestActivationFromTheBusUpdatesTheEntity(t *testing.T) {
	toggleOn.Store(false)
	srv, d := startWith(t)
	active := func() any {
		code, body := do(t, "GET", srv.URL+"/choria/agent/toggle", "")
		var e map[string]any
		if err := json.Unmarshal(body, &e); err != nil || code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		return e["attributes"].(map[string]any)["choria"].(map[string]any)["agent"].(map[string]any)["active"]
	}
	if a := active(); a != false {
		t.Fatalf("active %v before", a)
	}
	toggleOn.Store(true)
	out := d.Handle(t.Context(), []byte(`{"$schema":"x","protocol":"io.choria.mcorpc.external.v1.activation_request","agent":"toggle"}`))
	if string(out) != `{"activate":true}` {
		t.Fatalf("reply %s", out)
	}
	if a := active(); a != true {
		t.Fatalf("active %v after", a)
	}
}
