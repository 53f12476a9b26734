package cmbs_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/cmbs/cmbs/cmbs/choria"
)

// CH-17 on the CMBS members a server knows (both stores: the test script
// runs the package with CMBS_TEST_STORE=couchdb too).
func TestDiscoveryNodesAreTheKnownMembers(t *testing.T) {
	n := startNode(t, "a", "pycmbs", testOptions())
	n.createMember("foo", member{"state": "active", "local": "true", "l1_socket": freeSocket(t)})
	n.createMember("bar", member{"state": "inactive", "local": "false", "l1_socket": freeSocket(t)})

	nodes, err := n.broker.DiscoveryNodes(t.Context(), []string{"rpcutil"})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]choria.Node{}
	for _, nd := range nodes {
		byID[nd.Identity] = nd
	}
	if foo, bar := byID["foo"], byID["bar"]; foo.Facts["state"] != "active" || foo.Facts["cmbs.member.state"] != "active" ||
		!reflect.DeepEqual(foo.Agents, []string{"rpcutil"}) || bar.Facts["state"] != "inactive" || bar.Agents != nil {
		t.Fatalf("nodes %+v", nodes)
	}
	if f := n.broker.LocalFacts(t.Context()); f["state"] != "active" {
		t.Fatalf("local facts %v", f)
	}

	reg := choria.NewRegistry()
	d, err := choria.NewDispatcher(reg, choria.NodeSourceFunc(func(ctx context.Context) ([]choria.Node, error) {
		return n.broker.DiscoveryNodes(ctx, reg.Names())
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{`{"fact":[{"fact":"state","operator":"==","value":"active"}],"cf_class":[],"identity":[],"compound":[]}`, []string{"foo"}},
		{`{"fact":[],"cf_class":[],"identity":["/^b/"],"compound":[]}`, []string{"bar"}},
		{`{"fact":[],"cf_class":[],"identity":[],"compound":[]}`, []string{"bar", "foo"}},
	} {
		out := d.Handle(t.Context(), []byte(`{"protocol":"io.choria.choria.discovery.v1.external_request","collective":"mcollective","timeout":2,"options":{},"filter":`+tc.filter+`}`))
		var r choria.DiscoveryReply
		if err := json.Unmarshal(out, &r); err != nil || r.Error != "" || !reflect.DeepEqual(r.Nodes, tc.want) {
			t.Errorf("%s: %s", tc.filter, out)
		}
	}
}
