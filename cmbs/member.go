package cmbs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/internal/netaddr"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
)

// MemberProvider serves the member kind: a local member's start_lN and
// stop_lN bind and close its layer sockets, check_neighbors discovers the
// members around it. Obtain one from Broker.MemberProvider.
type MemberProvider struct{ b *Broker }

// layerInlineGrace is how long a layer handler (of every layer)
// runs on the goroutine that read its request before another takes over
// reading the connection (transport.WithInlineHandlers): a request that
// stores or executes its message takes longer, and one sent behind it
// waits that much more.
const layerInlineGrace = 200 * time.Microsecond

var (
	_ providers.Starter  = (*MemberProvider)(nil)
	_ providers.Provider = (*MemberProvider)(nil)
	_ providers.Stopper  = (*MemberProvider)(nil)
	_ providers.Observer = (*MemberProvider)(nil)
)

// Committed drops the broker's list of known members: one was stored,
// changed or deleted.
func (p *MemberProvider) Committed(string, *model.Entity) { p.b.dir.changed() }

// Create accepts a member. Nothing is bound until its start_lN actions run.
func (p *MemberProvider) Create(context.Context, *model.Entity) error { return nil }

// Update refuses a change that would leave a started layer bound to a
// socket the member no longer names, or a remote member with sockets open.
func (p *MemberProvider) Update(_ context.Context, _, updated *model.Entity) error {
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.members[updated.Location]
	if m == nil || len(m.layers) == 0 {
		return nil
	}
	if !isLocal(updated) {
		return model.Conflict("member %s has started layers; stop them before marking it remote", updated.Location)
	}
	attrs := memberAttrs(updated.Attributes)
	for l, bl := range m.layers {
		if s, _ := layerSocket(attrs, l); s != bl.endpoint {
			err := model.Conflict("layer %s of member %s is bound to %s; stop_%s before changing its socket", l, updated.Location, bl.endpoint, l)
			err.Attribute = "cmbs.member." + l.socketAttrs()[0]
			return err
		}
	}
	return nil
}

// Delete closes the member's sockets: a deleted member serves nothing.
func (p *MemberProvider) Delete(_ context.Context, e *model.Entity) error {
	b := p.b
	b.mu.Lock()
	m := b.members[e.Location]
	delete(b.members, e.Location)
	b.mu.Unlock()
	if m != nil {
		for l, bl := range m.layers {
			if err := bl.srv.Close(); err != nil {
				b.log.Warn("closing a deleted member's layer", "member", e.Location, "layer", l, "err", err)
			}
		}
		if len(m.layers) > 0 {
			b.saveLayers()
		}
	}
	return nil
}

// Stop stops the broker (Broker.Stop); the message provider shares it.
func (p *MemberProvider) Stop(ctx context.Context) error { return p.b.Stop(ctx) }

// Action runs check_neighbors, start_lN or stop_lN (N: 1, 2, 31 or 3.1, 32
// or 3.2, 4).
func (p *MemberProvider) Action(ctx context.Context, e *model.Entity, inv providers.Invocation) (any, error) {
	term := inv.ActionTerm()
	switch {
	case term == "check_neighbors":
		return p.b.checkNeighbors(ctx, e)
	case strings.HasPrefix(term, "start_"):
		if l, ok := ParseLayer(strings.TrimPrefix(term, "start_")); ok {
			return p.b.startLayer(e, l)
		}
	case strings.HasPrefix(term, "stop_"):
		if l, ok := ParseLayer(strings.TrimPrefix(term, "stop_")); ok {
			return p.b.stopLayer(e, l), nil
		}
	}
	return nil, model.BadRequest("action %q is not a CMBS member action (check_neighbors, start_lN, stop_lN)", term)
}

// LayerState is the result of start_lN and stop_lN.
type LayerState struct {
	Member string `json:"member"`
	Layer  Layer  `json:"layer"`
	Socket string `json:"socket,omitempty"`
	// Running says whether the layer is bound after the action.
	Running bool `json:"running"`
	// Changed is false when the action found the layer already in that state.
	Changed bool `json:"changed"`
}

func (b *Broker) startLayer(e *model.Entity, l Layer) (*LayerState, error) {
	st, err := b.bindLayer(e, l)
	if err == nil && st.Changed {
		b.saveLayers()
	}
	return st, err
}

// bindLayer is start_lN without recording it.
func (b *Broker) bindLayer(e *model.Entity, l Layer) (*LayerState, error) {
	if !isLocal(e) {
		return nil, model.Conflict("member %s is remote (local %q): only local members bind sockets", e.Location, fmt.Sprint(memberAttrs(e.Attributes)["local"]))
	}
	endpoint, attr := layerSocket(memberAttrs(e.Attributes), l)
	if endpoint == "" {
		err := model.BadRequest("member %s has no %s: start_%s needs the socket to bind", e.Location, l.socketAttrName(), l)
		err.Attribute = "cmbs.member." + l.socketAttrs()[0]
		return nil, err
	}
	if err := checkEndpoint(endpoint); err != nil {
		e := model.BadRequest("cmbs.member.%s %q: %v", attr, endpoint, err)
		e.Attribute = "cmbs.member." + attr
		return nil, e
	}
	if host, _, _ := net.SplitHostPort(strings.TrimPrefix(endpoint, "tcp://")); !b.opts.AllowNonLoopback && b.curve == nil && !netaddr.LoopbackHost(host) {
		ferr := model.Errorf(http.StatusForbidden, "start_%s of member %s: %s (cmbs.member.%s) is not a loopback address; without CURVE, CMBS sockets do not authenticate their peers, so this server binds them beyond loopback only when started with --curve-key (or --insecure)", l, e.Location, endpoint, attr)
		ferr.Attribute = "cmbs.member." + attr
		return nil, ferr
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return nil, errStopped()
	}
	m := b.state(e.Location)
	if bl := m.layers[l]; bl != nil {
		if bl.endpoint == endpoint {
			return &LayerState{Member: e.Location, Layer: l, Socket: endpoint, Running: true}, nil
		}
		return nil, model.Conflict("layer %s of member %s is bound to %s; stop_%s before starting it on %s", l, e.Location, bl.endpoint, l, endpoint)
	}
	// Binding is quick; holding b.mu makes a concurrent start of the same
	// layer a no-op instead of an address-in-use error. The handler does
	// not run under b.mu, so Listen cannot deadlock with it. The server
	// outlives this request, so it gets the broker's context, not the
	// request's (whose values its handlers would otherwise keep).
	opts := []transport.Option{
		transport.WithHandlerTimeout(b.opts.HandlerTimeout),
		transport.WithLogger(b.opts.Logger),
		// Most requests are answered in tens of microseconds: answered on
		// the goroutine that read them, an L1 round trip saves a handoff
		// each way, and the acknowledgements of an L2/L3 fan-out's
		// pipelined requests go out together.
		transport.WithInlineHandlers(layerInlineGrace),
	}
	srv, err := transport.Listen(b.ctx, endpoint, b.layerHandler(e.Location, l), append(opts, append(b.curveServerOptions(), b.opts.Transport...)...)...)
	if err != nil {
		return nil, bindError(e.Location, l, attr, endpoint, err)
	}
	m.layers[l] = &boundLayer{srv: srv, endpoint: endpoint}
	b.log.Info("layer started", "member", e.Location, "layer", l, "socket", endpoint)
	return &LayerState{Member: e.Location, Layer: l, Socket: endpoint, Running: true, Changed: true}, nil
}

func (b *Broker) stopLayer(e *model.Entity, l Layer) *LayerState {
	b.mu.Lock()
	var bl *boundLayer
	if m := b.members[e.Location]; m != nil {
		bl = m.layers[l]
		delete(m.layers, l)
	}
	b.mu.Unlock()
	st := &LayerState{Member: e.Location, Layer: l}
	if bl == nil {
		st.Socket, _ = layerSocket(memberAttrs(e.Attributes), l)
		return st
	}
	st.Socket, st.Changed = bl.endpoint, true
	// Close drops the connections at once: a peer waiting for an answer
	// gets a lost connection or its own timeout, never a hang.
	if err := bl.srv.Close(); err != nil {
		b.log.Warn("closing a layer", "member", e.Location, "layer", l, "err", err)
	}
	b.log.Info("layer stopped", "member", e.Location, "layer", l, "socket", st.Socket)
	b.saveLayers()
	return st
}

// checkEndpoint refuses sockets a member could not be reached at: the
// attribute is both the bind address and the address peers are told.
func checkEndpoint(endpoint string) error {
	addr, ok := strings.CutPrefix(endpoint, "tcp://")
	if !ok {
		return errors.New("only tcp://host:port sockets are supported")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return errors.New("the socket needs a fixed port number: peers are told this address")
	}
	if host == "" || host == "*" || host == "0.0.0.0" || host == "::" {
		return errors.New("the socket needs a host peers can reach, not a wildcard")
	}
	return nil
}

func bindError(loc string, l Layer, attr, endpoint string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return model.Errorf(http.StatusConflict, "start_%s of member %s: cannot bind %s (cmbs.member.%s): address already in use: %w", l, loc, endpoint, attr, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, transport.ErrBadEndpoint):
		e := model.Errorf(http.StatusBadRequest, "start_%s of member %s: cannot bind %s (cmbs.member.%s): %w", l, loc, endpoint, attr, err)
		e.Attribute = "cmbs.member." + attr
		return e
	}
	return model.Errorf(http.StatusInternalServerError, "start_%s of member %s: cannot bind %s: %w", l, loc, endpoint, err)
}
