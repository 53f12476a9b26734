package cmbs

import (
	"context"
	"sync"

	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/cmbs/transport/curve"
)

// CurveOptions turns ZMTP-CURVE on for every socket the broker opens: its
// layer sockets are CURVE servers with Keys, and its calls to other
// members are CURVE clients with the same Keys.
type CurveOptions struct {
	// Keys is this server's long-term key pair (cmbsd: --curve-key).
	Keys curve.KeyPair
	// Clients are the client keys the layer sockets accept; empty accepts
	// any CURVE client (encryption without authentication).
	Clients []curve.Key
	// Servers is the key each peer endpoint ("tcp://host:port") must
	// present (cmbsd: --curve-servers). Keys of further endpoints are
	// learned from discovery replies; these always win over learned ones.
	Servers map[string]curve.Key
}

// CurveStatus is what /-/status shows of CURVE.
type CurveStatus struct {
	PublicKey         string `json:"public_key"`
	AuthorisedClients int    `json:"authorised_clients"` // 0: any CURVE client
	ConfiguredServers int    `json:"configured_servers"` // from --curve-servers
	LearnedServers    int    `json:"learned_servers"`    // from discovery replies
	Refused           uint64 `json:"refused"`            // connections refused by the layer sockets
}

// maxLearnedKeys bounds the server keys learned from discovery replies.
const maxLearnedKeys = 4096

// curveKeyring is the broker's CURVE state: the server configuration all
// its layer sockets share (and whose refusals they count together), and
// the server keys it knows.
type curveKeyring struct {
	opts   CurveOptions
	server *curve.ServerConfig

	mu      sync.Mutex
	learned map[string]curve.Key
}

func newCurveKeyring(o *CurveOptions) *curveKeyring {
	if o == nil {
		return nil
	}
	k := &curveKeyring{opts: *o, learned: map[string]curve.Key{}}
	k.server = &curve.ServerConfig{Keys: o.Keys}
	if len(o.Clients) > 0 {
		allowed := make(map[curve.Key]bool, len(o.Clients))
		for _, c := range o.Clients {
			allowed[c] = true
		}
		k.server.Authorize = func(c curve.Key) bool { return allowed[c] }
	}
	return k
}

// serverOptions are the transport options of a layer socket.
func (b *Broker) curveServerOptions() []transport.Option {
	if b.curve == nil {
		return nil
	}
	return []transport.Option{transport.WithCurveServer(b.curve.server)}
}

// clientOptions are the transport options of the broker's client.
func (b *Broker) curveClientOptions() []transport.Option {
	if b.curve == nil {
		return nil
	}
	return []transport.Option{transport.WithCurveClient(b.curve.opts.Keys, b.serverKey)}
}

// serverKey is the key the server at endpoint must present: configured,
// learned, or this server's own for its own layer sockets.
func (b *Broker) serverKey(endpoint string) (curve.Key, bool) {
	k := b.curve
	if key, ok := k.opts.Servers[endpoint]; ok {
		return key, true
	}
	k.mu.Lock()
	key, ok := k.learned[endpoint]
	k.mu.Unlock()
	if ok {
		return key, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.members {
		for _, bl := range m.layers {
			if bl.endpoint == endpoint || bl.srv.Addr() == endpoint {
				return k.opts.Keys.Public, true
			}
		}
	}
	return curve.Key{}, false
}

// curveKeysReply is the "curve_keys" of an L1 reply: endpoint → Z85 key
// for every layer socket of this server's local members (its own key) and
// every server key it knows, so that a mesh learns keys transitively from
// its --curve-servers seeds. Nil when CURVE is off.
func (b *Broker) curveKeysReply(ctx context.Context) map[string]string {
	k := b.curve
	if k == nil {
		return nil
	}
	out := map[string]string{}
	k.mu.Lock()
	for ep, key := range k.learned {
		out[ep] = key.String()
	}
	k.mu.Unlock()
	for ep, key := range k.opts.Servers {
		out[ep] = key.String()
	}
	if locals, err := b.localMembers(ctx); err == nil {
		own := k.opts.Keys.Public.String()
		for _, m := range locals {
			for _, l := range Layers() {
				if s, _ := layerSocket(memberAttrs(m.Attributes), l); s != "" {
					out[s] = own
				}
			}
		}
	}
	return out
}

// learnCurveKeys takes the "curve_keys" of an L1 reply (or an asker's
// proven key). The reply came over a CURVE connection to a server whose
// key was checked, so what it vouches for is taken; configured keys are
// never replaced.
func (b *Broker) learnCurveKeys(v any) {
	k := b.curve
	keys, _ := v.(map[string]any)
	if k == nil || len(keys) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for ep, s := range keys {
		text, _ := s.(string)
		key, err := curve.ParseKey(text)
		if err != nil || checkEndpoint(ep) != nil {
			continue
		}
		if _, configured := k.opts.Servers[ep]; configured {
			continue
		}
		if _, known := k.learned[ep]; !known && len(k.learned) >= maxLearnedKeys {
			continue
		}
		k.learned[ep] = key
	}
}

// learnAskerKey takes the key the asker of an L1 request proved in its
// CURVE handshake as the server key of the sockets its member description
// names: a cmbsd uses one key as client and as server. So a node answering
// crawls learns its askers' keys, not only a node that crawls.
func (b *Broker) learnAskerKey(ctx context.Context, desc map[string]any) {
	key, ok := transport.PeerKey(ctx)
	attrs := memberAttrs(mapOrNil(desc["attributes"]))
	if b.curve == nil || !ok || attrs == nil {
		return
	}
	keys := map[string]any{}
	for _, l := range Layers() {
		if s, _ := layerSocket(attrs, l); s != "" {
			keys[s] = key.String()
		}
	}
	b.learnCurveKeys(keys)
}

// CurveStatus reports the broker's CURVE state; nil when CURVE is off.
func (b *Broker) CurveStatus() *CurveStatus {
	k := b.curve
	if k == nil {
		return nil
	}
	k.mu.Lock()
	learned := len(k.learned)
	k.mu.Unlock()
	return &CurveStatus{
		PublicKey:         k.opts.Keys.Public.String(),
		AuthorisedClients: len(k.opts.Clients),
		ConfiguredServers: len(k.opts.Servers),
		LearnedServers:    learned,
		Refused:           k.server.Refused(),
	}
}
