package cmbs

import (
	"context"
	"strings"

	"github.com/cmbs/cmbs/cmbs/choria"
)

// DiscoveryNodes lists the members this server knows, local and remote, as
// Choria discovery nodes: identity = the member's cmbs.member.id (else its
// entity id), facts = its attributes flattened to dotted names, each
// cmbs.member.* fact also under its short name (kernel for
// cmbs.member.kernel), classes = its mixins. agents names the agents this
// server offers; only local members have them (what a remote member offers
// is not known here).
func (b *Broker) DiscoveryNodes(ctx context.Context, agents []string) ([]choria.Node, error) {
	members, err := b.allMembers(ctx)
	if err != nil {
		return nil, err
	}
	nodes := make([]choria.Node, 0, len(members))
	for _, e := range members {
		id := str(memberAttrs(e.Attributes), "id")
		if id == "" {
			id = e.ID
		}
		n := choria.Node{Identity: id, Facts: memberFacts(e.Attributes), Classes: append([]string{}, e.Mixins...)}
		if isLocal(e) {
			n.Agents = agents
		}
		if c, ok := n.Facts["collective"].(string); ok && c != "" {
			n.Collectives = []string{c}
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// LocalFacts returns the facts of this server's first local member (in
// location order), for CHORIA_EXTERNAL_FACTS; {} when it hosts none.
func (b *Broker) LocalFacts(ctx context.Context) map[string]any {
	local, err := b.localMembers(ctx)
	if err != nil || len(local) == 0 {
		return map[string]any{}
	}
	return memberFacts(local[0].Attributes)
}

func memberFacts(attrs map[string]any) map[string]any {
	facts := choria.FlattenFacts(attrs)
	names := make([]string, 0, len(facts))
	for name := range facts {
		names = append(names, name)
	}
	for _, name := range names {
		v := facts[name]
		if short, ok := strings.CutPrefix(name, "cmbs.member."); ok {
			if _, taken := facts[short]; !taken {
				facts[short] = v
			}
		}
	}
	return facts
}
