package cmbs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/internal/jsonenc"
	"github.com/cmbs/cmbs/internal/jsonscan"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
)

// MessageProvider serves the message kind: send_l1 … send_l4 deliver the
// message on their layer, execute records its execution. Obtain one from
// Broker.MessageProvider.
type MessageProvider struct {
	// Storage accepts every create, update and delete: a message does
	// nothing until an action sends it.
	providers.Storage
	b *Broker
}

var (
	_ providers.Provider = (*MessageProvider)(nil)
	_ providers.Stopper  = (*MessageProvider)(nil)
)

// Stop stops the broker (Broker.Stop); the member provider shares it.
func (p *MessageProvider) Stop(ctx context.Context) error { return p.b.Stop(ctx) }

// Action runs send_l1, send_l2, send_l31 (send_l3.1), send_l32
// (send_l3.2), send_l4 or execute.
func (p *MessageProvider) Action(ctx context.Context, e *model.Entity, inv providers.Invocation) (any, error) {
	term := inv.ActionTerm()
	if term == "execute" {
		return p.b.execute(ctx, e, inv)
	}
	if rest, ok := strings.CutPrefix(term, "send_"); ok {
		if l, ok := ParseLayer(rest); ok {
			return p.b.send(ctx, e, l, inv)
		}
	}
	return nil, model.BadRequest("action %q is not a CMBS message action (send_lN, execute)", term)
}

// Delivery is the outcome of delivering a message to one member.
type Delivery struct {
	// Provider (L3.1) is the providers entry that named the member.
	Provider string `json:"provider,omitempty"`
	// Neighbor (L4) is the neighbors_socket entry the member was found by.
	Neighbor string `json:"neighbor,omitempty"`
	// Member is the member's location here.
	Member string `json:"member,omitempty"`
	// Socket is the layer socket the message went to.
	Socket    string `json:"socket,omitempty"`
	Delivered bool   `json:"delivered"`
	// Ack is the receiver's Receipt.
	Ack map[string]any `json:"ack,omitempty"`
	// Error says why the message was not delivered.
	Error string `json:"error,omitempty"`
}

// Sent is the result of send_l2, send_l31, send_l32 and send_l4, also
// written to the message's result.
type Sent struct {
	Message    string     `json:"message"`
	Layer      Layer      `json:"layer"`
	Sender     string     `json:"sender,omitempty"`
	Deliveries []Delivery `json:"deliveries"`
	Delivered  int        `json:"delivered"`
	Failed     int        `json:"failed"`
}

// object is s as its JSON object, built directly: it is written to the
// message's result after every send.
func (s *Sent) object() map[string]any {
	ds := make([]any, len(s.Deliveries))
	for i, d := range s.Deliveries {
		m := make(map[string]any, 4)
		m["delivered"] = d.Delivered
		set := func(k, v string) {
			if v != "" {
				m[k] = v
			}
		}
		set("provider", d.Provider)
		set("neighbor", d.Neighbor)
		set("member", d.Member)
		set("socket", d.Socket)
		set("error", d.Error)
		if len(d.Ack) > 0 {
			m["ack"] = d.Ack
		}
		ds[i] = m
	}
	o := map[string]any{"message": s.Message, "layer": string(s.Layer), "deliveries": ds,
		"delivered": float64(s.Delivered), "failed": float64(s.Failed)}
	if s.Sender != "" {
		o["sender"] = s.Sender
	}
	return o
}

// send delivers a stored message on a layer.
func (b *Broker) send(ctx context.Context, e *model.Entity, l Layer, inv providers.Invocation) (any, error) {
	attrs := messageAttrs(e.Attributes)
	if attrs == nil {
		attrs = map[string]any{}
	}
	if s := str(attrs, "cmbs_layer"); s != "" {
		if got, ok := ParseLayer(s); !ok || got != l {
			return nil, model.AttributeError("cmbs.message.cmbs_layer", "message %s is an %q message; send_%s sends %s messages", e.Location, s, l, l)
		}
	}
	sendable, err := b.flag(attrs, "sendable")
	if err != nil {
		return nil, err
	}
	if !sendable && l != L4 {
		// On L4, sendable:false keeps the message from being forwarded
		// beyond the sender's neighbours instead.
		err := model.Conflict("message %s has sendable %q: it is not sent", e.Location, fmt.Sprint(attrs["sendable"]))
		err.Attribute = "cmbs.message.sendable"
		return nil, err
	}
	sender, err := b.sender(ctx, inv)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	stopped := b.stopped
	b.mu.Unlock()
	if stopped {
		return nil, errStopped()
	}

	wire := describeMessage(e)
	wattrs := ensureMessageAttrs(wire["attributes"].(map[string]any))
	wattrs["cmbs_layer"] = string(l)
	delete(wattrs, "result") // the sender's result is not the receiver's business
	update := map[string]any{}
	if sender != nil {
		path := strList(wattrs, "path_history")
		ref := memberRef(sender)
		if !slices.Contains(path, ref) {
			path = append(path, ref)
		}
		wattrs["path_history"] = toAnyList(path)
		update["path_history"] = wattrs["path_history"]
	}

	if l == L1 {
		return b.sendL1(ctx, e, sender, wire, update)
	}

	var targets []target
	switch l {
	case L2:
		targets, err = b.l2Targets(ctx)
	case L31:
		targets, err = b.l31Targets(ctx, e, attrs)
	case L32:
		targets, err = b.l32Targets(ctx, e, sender, attrs)
	case L4:
		if sender == nil {
			return nil, model.Conflict("send_l4 routes from a local member's neighbours, and this server has no local member")
		}
		b.mu.Lock()
		b.state(sender.Location).seen.add(e.ID)
		b.mu.Unlock()
		targets, err = b.l4Neighbours(ctx, sender, strList(wattrs, "path_history"))
	}
	if err != nil {
		return nil, err
	}
	body, err := jsonenc.Append(nil, wire) // once for every receiver
	if err != nil {
		return nil, err
	}
	res := &Sent{Message: e.Location, Layer: l, Deliveries: b.deliver(ctx, l, targets, transport.Envelope{ID: e.ID, MimeType: MessageMimeType, Body: body})}
	if sender != nil {
		res.Sender = sender.Location
	}
	for _, d := range res.Deliveries {
		if d.Delivered {
			res.Delivered++
		} else {
			res.Failed++
		}
	}
	update["result"] = res.object()
	if err := b.updateMessageLater(ctx, e, update); err != nil {
		return nil, err
	}
	return res, nil
}

// sendL1 sends the message to l1_socket_receiver_member and writes the
// reply to its result. The reply is also the action's result.
func (b *Broker) sendL1(ctx context.Context, e *model.Entity, sender *model.Entity, wire, update map[string]any) (any, error) {
	wattrs := messageAttrs(wire["attributes"].(map[string]any))
	target := str(wattrs, "l1_socket_receiver_member")
	if target == "" {
		return nil, model.AttributeError("cmbs.message.l1_socket_receiver_member", "message %s has no cmbs.message.l1_socket_receiver_member: send_l1 needs the L1 socket to send to", e.Location)
	}
	if sender != nil && isEmptyContent(wattrs["message_content"]) {
		// As pyCMBS: an L1 message without content introduces its sender,
		// so the receiver learns it.
		wattrs["message_content"] = describeMember(sender)
		update["message_content"] = wattrs["message_content"]
	}
	body, err := jsonenc.Append(nil, wire)
	if err != nil {
		return nil, err
	}
	b.stats.inFlightByLayer[layerIndex(L1)].Add(1)
	reply, err := b.client.Request(ctx, target, transport.Envelope{ID: e.ID, MimeType: MessageMimeType, Body: body})
	b.stats.inFlightByLayer[layerIndex(L1)].Add(-1)
	if err != nil {
		b.deliveryFailed(L1, e.ID, target, err)
		return nil, remoteFailure("send_l1 to "+target, b.opts.RequestTimeout, err)
	}
	b.stats.sent[layerIndex(L1)].Add(1)
	v, err := jsonscan.Decode(reply.Body)
	result, _ := v.(map[string]any)
	if err != nil || result == nil {
		return nil, model.Errorf(http.StatusBadGateway, "send_l1: %s answered with something that is not a JSON object (%s)", target, reply.MimeType)
	}
	update["result"] = result
	if err := b.updateMessageLater(ctx, e, update); err != nil {
		return nil, err
	}
	return result, nil
}

func isEmptyContent(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return strings.TrimSpace(t) == ""
	case map[string]any:
		return len(t) == 0
	}
	return false
}

// remoteFailure reports a failed call to another member: 504 when it did
// not answer within the request timeout, 502 when it answered with an
// error or the connection broke.
func remoteFailure(what string, timeout time.Duration, err error) error {
	var re *transport.RemoteError
	switch {
	case errors.Is(err, transport.ErrNoAnswer):
		return model.Errorf(http.StatusGatewayTimeout, "%s: no answer within the request timeout (%v): %w", what, timeout, err)
	case errors.As(err, &re):
		return model.Errorf(http.StatusBadGateway, "%s: the receiver refused the message: %s: %w", what, re.Message, err)
	case errors.Is(err, transport.ErrBadEndpoint):
		return model.Errorf(http.StatusBadRequest, "%s: %w", what, err)
	}
	return model.Errorf(http.StatusBadGateway, "%s: %w", what, err)
}

// sender is the local member a message is sent from: the one the action's
// "member" attribute names (id or location), else the server's only local
// member, else none (nothing is added to path_history).
func (b *Broker) sender(ctx context.Context, inv providers.Invocation) (*model.Entity, error) {
	locals, err := b.localMembers(ctx)
	if err != nil {
		if model.StatusOf(err) == http.StatusConflict {
			return nil, nil // no member kind: no sender
		}
		return nil, err
	}
	name, _ := inv.Attributes["member"].(string)
	if name != "" {
		for _, m := range locals {
			if namesMember(name, m) {
				return m, nil
			}
		}
		return nil, model.AttributeError("member", "no local member %q to send from", name)
	}
	switch len(locals) {
	case 0:
		return nil, nil
	case 1:
		return locals[0], nil
	}
	names := make([]string, len(locals))
	for i, m := range locals {
		names[i] = m.ID
	}
	return nil, model.AttributeError("member", "this server has %d local members (%s): name the sending one with {\"attributes\":{\"member\":\"<id>\"}}", len(locals), strings.Join(names, ", "))
}

// target is a member a message is to be delivered to, or a reason why a
// named one cannot be.
type target struct {
	provider, neighbor string
	member             string
	local              bool // the member is one of this server's
	socket             string
	err                string
}

// l2Targets: every remote member with an L2 socket, each socket once. The
// slice is shared: read it only.
func (b *Broker) l2Targets(ctx context.Context) ([]target, error) {
	m, err := b.known(ctx)
	if err != nil {
		return nil, err
	}
	return m.l2, nil
}

// l31Targets: the members each providers entry names, on their L3.1
// socket; an entry naming none is reported.
func (b *Broker) l31Targets(ctx context.Context, e *model.Entity, attrs map[string]any) ([]target, error) {
	provs := strList(attrs, "providers")
	if len(provs) == 0 {
		return nil, model.AttributeError("cmbs.message.providers", "message %s names no providers: send_l31 delivers to the members cmbs.message.providers names (ids, locations or L1 sockets)", e.Location)
	}
	all, err := b.allMembers(ctx)
	if err != nil {
		return nil, err
	}
	// A member named twice gets one delivery, reported for both names
	// (deliver shares the outcome).
	var out []target
	for _, p := range provs {
		found := false
		for _, m := range all {
			if !namesMember(p, m) {
				continue
			}
			found = true
			s, _ := layerSocket(memberAttrs(m.Attributes), L31)
			if s == "" {
				out = append(out, target{provider: p, member: m.Location, err: "the member has no " + L31.socketAttrName()})
				continue
			}
			out = append(out, target{provider: p, member: m.Location, local: isLocal(m), socket: s})
		}
		if !found {
			out = append(out, target{provider: p, err: "no member known here by this name (an id, location or socket); run check_neighbors first"})
		}
	}
	return out, nil
}

// l32Targets: every member but the sender whose topics intersect the
// message's, on its L3.2 socket, each once.
func (b *Broker) l32Targets(ctx context.Context, e, sender *model.Entity, attrs map[string]any) ([]target, error) {
	topics := strList(attrs, "topics")
	if len(topics) == 0 {
		return nil, model.AttributeError("cmbs.message.topics", "message %s has no topics: send_l32 delivers to the members whose topics share one", e.Location)
	}
	known, err := b.known(ctx)
	if err != nil {
		return nil, err
	}
	var out []target
	var sockets socketSet
	for _, m := range known.subscribers {
		if sender != nil && m.member == sender.Location {
			continue
		}
		if !topicsIntersect(topics, m.topics) {
			continue
		}
		switch {
		case m.socket == "":
			out = append(out, target{member: m.member, err: "the member has no " + L32.socketAttrName()})
		case sockets.index(m.socket) < 0:
			sockets.add(m.socket)
			out = append(out, target{member: m.member, local: m.local, socket: m.socket})
		}
	}
	return out, nil
}

// socketSet is a list of sockets, each once, searched in order while it is
// short (a send has a handful of receivers) and through a map beyond.
type socketSet struct {
	list []string
	pos  map[string]int
}

const socketSetScan = 16

func (s *socketSet) index(socket string) int {
	if s.pos != nil {
		if i, ok := s.pos[socket]; ok {
			return i
		}
		return -1
	}
	return slices.Index(s.list, socket)
}

func (s *socketSet) add(socket string) {
	s.list = append(s.list, socket)
	if s.pos == nil && len(s.list) > socketSetScan {
		s.pos = make(map[string]int, 2*len(s.list))
		for i, x := range s.list {
			s.pos[x] = i
		}
	} else if s.pos != nil {
		s.pos[socket] = len(s.list) - 1
	}
}

// l4Neighbours: for each of the member's neighbors_socket entries (L1
// sockets), the members known here with that L1 socket, on their L4
// socket — minus those already on the path. A neighbour not known yet
// (no check_neighbors) or without an L4 socket is reported.
func (b *Broker) l4Neighbours(ctx context.Context, member *model.Entity, path []string) ([]target, error) {
	all, err := b.allMembers(ctx)
	if err != nil {
		return nil, err
	}
	var out []target
	seen := map[string]bool{}
	for _, n := range strList(memberAttrs(member.Attributes), "neighbors_socket") {
		found := false
		for _, m := range all {
			if m.Location == member.Location {
				continue
			}
			ma := memberAttrs(m.Attributes)
			if s, _ := layerSocket(ma, L1); s != n {
				continue
			}
			found = true
			onPath := false
			for _, p := range path {
				onPath = onPath || refMatches(p, m)
			}
			if onPath {
				continue
			}
			s, _ := layerSocket(ma, L4)
			switch {
			case s == "":
				out = append(out, target{neighbor: n, member: m.Location, err: "the neighbour has no cmbs.member.l4_socket"})
			case !seen[s]:
				seen[s] = true
				out = append(out, target{neighbor: n, member: m.Location, local: isLocal(m), socket: s})
			}
		}
		if !found {
			out = append(out, target{neighbor: n, err: "no member with this L1 socket is known here; run check_neighbors first"})
		}
	}
	return out, nil
}

// deliver sends env to every target with a socket, concurrently and
// acknowledged, and returns one Delivery per target in order. Each socket
// is sent to once; targets sharing one share its outcome. A local member
// whose layer is not started is reported without a network call.
func (b *Broker) deliver(ctx context.Context, l Layer, targets []target, env transport.Envelope) []Delivery {
	out := make([]Delivery, len(targets))
	var sockets socketSet
	for i, t := range targets {
		out[i] = Delivery{Provider: t.provider, Neighbor: t.neighbor, Member: t.member, Socket: t.socket, Error: t.err}
		if t.err != "" || t.socket == "" {
			b.deliveryFailed(l, env.ID, cmp.Or(t.provider, t.neighbor, t.member), cmp.Or(t.err, "no socket for this layer"))
			continue
		}
		if t.local && b.running(t.member, l) != t.socket {
			out[i].Error = fmt.Sprintf("layer %s of this local member is not started", l)
			b.deliveryFailed(l, env.ID, t.socket, out[i].Error)
			continue
		}
		if sockets.index(t.socket) < 0 {
			sockets.add(t.socket)
		}
	}
	endpoints := sockets.list
	if len(endpoints) == 0 {
		return out
	}
	li := layerIndex(l)
	b.stats.inFlightByLayer[li].Add(int64(len(endpoints)))
	results := b.client.Deliver(ctx, endpoints, env)
	b.stats.inFlightByLayer[li].Add(-int64(len(endpoints)))
	sent := 0
	for _, r := range results {
		if r.Err != nil {
			b.deliveryFailed(l, env.ID, r.Endpoint, r.Err)
		} else {
			sent++
		}
	}
	b.stats.sent[li].Add(uint64(sent))
	acks := make([]map[string]any, len(results)) // decoded once per socket
	for i := range out {
		if out[i].Error != "" || out[i].Socket == "" {
			continue
		}
		j := sockets.index(out[i].Socket)
		if j < 0 {
			continue
		}
		r := results[j]
		if r.Err != nil {
			out[i].Error = r.Err.Error()
			continue
		}
		out[i].Delivered = true
		if acks[j] == nil {
			acks[j] = decodeReceipt(r.Reply.Body)
		}
		out[i].Ack = acks[j]
	}
	return out
}

// decodeReceipt decodes a receiver's receipt; one that is not a JSON
// object is nil.
func decodeReceipt(body []byte) map[string]any {
	v, err := jsonscan.Decode(body)
	if err != nil {
		return nil
	}
	m, _ := v.(map[string]any)
	return m
}

// execute runs the message here: its result becomes {"executed_by", "at"},
// plus the result of the process definition it names (process.definition_ref,
// run with message_content as input) when it names one.
func (b *Broker) execute(ctx context.Context, e *model.Entity, inv providers.Invocation) (any, error) {
	attrs := messageAttrs(e.Attributes)
	if attrs == nil {
		attrs = map[string]any{}
	}
	executable, err := b.flag(attrs, "executable")
	if err != nil {
		return nil, err
	}
	if !executable {
		err := model.Conflict("message %s has executable %q: it is not executed", e.Location, fmt.Sprint(attrs["executable"]))
		err.Attribute = "cmbs.message.executable"
		return nil, err
	}
	sender, err := b.sender(ctx, inv)
	if err != nil {
		return nil, err
	}
	rec := b.run(ctx, executionRecord(sender, ""), e.Attributes, "execute on "+e.Location)
	b.stats.executed.Add(1)
	if err := b.updateMessageLater(ctx, e, map[string]any{"result": rec}); err != nil {
		return nil, err
	}
	return rec, nil
}

// UnindexedPaths are the store paths of the broker's values that are
// rewritten often and never searched: a message's send result, written
// after every send. An embedded store opened with sqlite.WithUnindexed
// of them writes a few index rows per result instead of one per leaf;
// selectors on them still match.
var UnindexedPaths = []string{"attributes.cmbs.message.result"}
