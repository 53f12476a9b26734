package cmbs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"time"

	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/internal/jsonenc"
	"github.com/cmbs/cmbs/internal/jsonscan"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

// Receipt is what a member's layer socket answers a delivered message with
// (L2, L3.1, L3.2, L4), and what it did with it.
type Receipt struct {
	// Member names the receiving member (see the package doc on member
	// references).
	Member string `json:"member"`
	Layer  Layer  `json:"layer"`
	// Stored is the location the message was stored at on the receiver.
	Stored string `json:"stored,omitempty"`
	// Duplicate is true when the receiver had already handled the message
	// (stored under that id, or, on L4, seen); nothing else was done.
	Duplicate bool `json:"duplicate,omitempty"`
	// Executed is the execution record when the message was executable.
	Executed map[string]any `json:"executed,omitempty"`
	// Errors lists what went wrong on the receiver (e.g. storing failed);
	// the message was received nonetheless.
	Errors []string `json:"errors,omitempty"`
	// Matched (L4) says whether the receiver was a destination (providers
	// × topics) and so stored or executed it.
	Matched *bool `json:"matched,omitempty"`
	// ForwardingTo (L4) lists the L4 sockets the receiver forwards to.
	ForwardingTo []string `json:"forwarding_to,omitempty"`
	// NotForwarded (L4) says why the receiver forwards nowhere.
	NotForwarded string `json:"not_forwarded,omitempty"`
}

// badMessage is the error a layer answers a non-CMBS envelope with.
func badMessage(format string, args ...any) error {
	return &transport.RemoteError{Code: CodeBadMessage, Message: fmt.Sprintf(format, args...)}
}

// layerHandler serves one layer of one local member.
func (b *Broker) layerHandler(loc string, l Layer) transport.Handler {
	return func(ctx context.Context, req transport.Envelope) (transport.Envelope, error) {
		if snap, err := b.known(ctx); err == nil {
			if reply, ok := b.plainReceipt(snap, loc, l, req); ok {
				b.stats.received[layerIndex(l)].Add(1)
				return reply, nil
			}
		}
		msg, err := decodeMessage(req)
		if err != nil {
			b.stats.rejected.Add(1)
			b.log.Debug("rejected an envelope", "member", loc, "layer", l, "id", req.ID, "err", err)
			return transport.Envelope{}, err
		}
		member, err := b.member(ctx, loc)
		if err != nil {
			return transport.Envelope{}, fmt.Errorf("member %s: %w", loc, err)
		}
		b.stats.received[layerIndex(l)].Add(1)
		var reply any
		switch l {
		case L1:
			reply, err = b.receiveL1(ctx, member, msg)
		case L4:
			reply, err = b.receiveL4(ctx, member, msg, req.ID)
		default:
			reply = b.deliverLocally(ctx, member, l, msg)
		}
		if err != nil {
			return transport.Envelope{}, err
		}
		var body []byte
		if r, ok := reply.(encodedReply); ok {
			body = r
		} else if m, ok := reply.(map[string]any); ok {
			body, err = jsonenc.Append(nil, m) // the L1 reply, without reflection
		} else {
			body, err = json.Marshal(reply)
		}
		if err != nil {
			return transport.Envelope{}, err
		}
		return req.Reply(ReplyMimeType, body), nil
	}
}

// decodeMessage reads a CMBS message from an envelope: a JSON object
// describing an entity of the message kind. A missing id is taken from the
// envelope.
func decodeMessage(req transport.Envelope) (map[string]any, error) {
	if req.MimeType != MessageMimeType { // as every cmbsd sends it: nothing to parse
		mt, _, err := mime.ParseMediaType(req.MimeType)
		if err != nil || (mt != MessageMimeType && mt != "application/json") {
			return nil, badMessage("mimetype %q: a CMBS message is %s", req.MimeType, MessageMimeType)
		}
	}
	v, err := jsonscan.Decode(req.Body)
	msg, _ := v.(map[string]any)
	if err != nil || msg == nil {
		return nil, badMessage("the body is not a JSON object describing a CMBS message")
	}
	if k, present := msg["kind"]; present && k != MessageKindID {
		return nil, badMessage("kind %v is not %s", k, MessageKindID)
	}
	switch a := msg["attributes"].(type) {
	case nil:
		msg["attributes"] = map[string]any{}
	case map[string]any:
		if v, present := a["cmbs"]; present {
			if _, ok := v.(map[string]any); !ok {
				return nil, badMessage("attributes.cmbs must be an object")
			}
			if v, present := a["cmbs"].(map[string]any)["message"]; present {
				if _, ok := v.(map[string]any); !ok {
					return nil, badMessage("attributes.cmbs.message must be an object")
				}
			}
		}
	default:
		return nil, badMessage("attributes must be an object")
	}
	switch id := msg["id"].(type) {
	case nil:
		msg["id"] = req.ID
	case string:
		if id == "" {
			msg["id"] = req.ID
		}
	default:
		return nil, badMessage("id must be a string")
	}
	msg["kind"] = MessageKindID
	return msg, nil
}

// receiveL1 answers an L1 request: it learns the asker from the message's
// message_content, handles the message's flags, and replies with this
// member's description and the L1 sockets this server knows.
func (b *Broker) receiveL1(ctx context.Context, member *model.Entity, msg map[string]any) (any, error) {
	attrs := messageAttrs(msg["attributes"].(map[string]any))
	if content, ok := attrs["message_content"].(map[string]any); ok && memberAttrs(mapOrNil(content["attributes"])) != nil {
		if _, err := b.learn(ctx, content); err != nil {
			b.log.Warn("could not store the asker of an L1 request", "member", member.Location, "asker", content["id"], "err", err)
		}
		b.learnAskerKey(ctx, content)
	}
	rec := b.deliverLocally(ctx, member, L1, msg)
	if rec.Executed == nil && b.curve == nil {
		// The answer depends on the listing of members only: encoded once
		// per listing (a change of members makes a new one).
		if snap, err := b.known(ctx); err == nil && snap.byLoc[member.Location] == member {
			if r, ok := snap.l1Replies.Load(member.Location); ok {
				return r.(encodedReply), nil
			}
			reply, err := b.l1Reply(ctx, member, rec)
			if err != nil {
				return nil, err
			}
			body, err := jsonenc.Append(nil, reply)
			if err != nil {
				return nil, err
			}
			snap.l1Replies.Store(member.Location, encodedReply(body))
			return encodedReply(body), nil
		}
	}
	return b.l1Reply(ctx, member, rec)
}

// encodedReply is an answer already encoded as JSON; it is shared, never
// modified.
type encodedReply []byte

// l1Reply is a local member's answer to an L1 message (receiveL1).
func (b *Broker) l1Reply(ctx context.Context, member *model.Entity, rec *Receipt) (map[string]any, error) {
	sockets, err := b.knownL1Sockets(ctx)
	if err != nil {
		return nil, err
	}
	// The member's own neighbours are sockets it knows too, stored or not:
	// with them one crawl follows a whole chain of members that have never
	// crawled themselves.
	for _, n := range strList(memberAttrs(member.Attributes), "neighbors_socket") {
		if !slices.Contains(sockets, n) {
			sockets = append(sockets, n)
		}
	}
	reply := map[string]any{
		"member_description": describeMember(member),
		"sockets_l1":         sockets,
	}
	if rec.Executed != nil {
		reply["executed"] = rec.Executed
	}
	if keys := b.curveKeysReply(ctx); keys != nil {
		reply["curve_keys"] = keys
	}
	return reply, nil
}

func mapOrNil(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// knownL1Sockets lists the L1 socket of every member this server knows,
// local ones included, each once, in location order. The slice is the
// caller's.
func (b *Broker) knownL1Sockets(ctx context.Context) ([]string, error) {
	m, err := b.known(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Clone(m.l1Sockets), nil
}

// ReceivedMessage is one message a local member received, as Options.OnDelivery
// sees it: the receipt and the message's pyOCNI JSON description. Both are
// shared with the broker: read them before returning, never keep them.
type ReceivedMessage struct {
	*Receipt
	Message map[string]any `json:"message"`
}

// deliverLocally handles a message a local member received: storable → it
// is stored as a message entity (unless that id is already stored: a
// repeat, which is then not executed again either); executable → its
// execution is recorded. Failures are reported in the receipt, not as an
// error: the message was received.
func (b *Broker) deliverLocally(ctx context.Context, member *model.Entity, l Layer, msg map[string]any) *Receipt {
	rec := &Receipt{Member: memberRef(member), Layer: l}
	if hook := b.opts.OnDelivery; hook != nil {
		defer func() { hook(ReceivedMessage{Receipt: rec, Message: msg}) }()
	}
	attrs := ensureMessageAttrs(msg["attributes"].(map[string]any))
	storable, err := b.flag(attrs, "storable")
	if err != nil {
		rec.Errors = append(rec.Errors, err.Error())
		return rec
	}
	executable, err := b.flag(attrs, "executable")
	if err != nil {
		rec.Errors = append(rec.Errors, err.Error())
		return rec
	}
	if storable {
		// Creating the entity is the duplicate check: its location is
		// reserved in one step, so a repeat is refused (409) whole.
		storeCtx := ctx
		if l != L1 {
			// Deliveries on the other layers come in streams, many in
			// flight from each sender (the window): the store may hold
			// this write a moment (the embedded store up to 10 ms) to
			// share its commit with the next ones. It is still committed
			// before the delivery is acknowledged. An L1 request is
			// answered alone, so it is not held.
			storeCtx = store.InBackground(ctx)
		}
		stored, dup, err := b.storeMessage(storeCtx, msg)
		switch {
		case err != nil:
			rec.Errors = append(rec.Errors, "not stored: "+err.Error())
		case dup:
			b.stats.duplicates[layerIndex(l)].Add(1)
			rec.Duplicate = true
			return rec // a repeat is not run again
		default:
			b.stats.stored.Add(1)
			rec.Stored = stored
		}
	}
	if executable {
		rec.Executed = b.run(ctx, executionRecord(member, l), msg["attributes"].(map[string]any), "cmbs message "+fmt.Sprint(msg["id"])+" on "+string(l))
		b.stats.executed.Add(1)
		if rec.Stored != "" {
			in := &model.EntityInput{Present: map[string]bool{"attributes": true}}
			in.Attributes = map[string]any{"cmbs": map[string]any{"message": map[string]any{"result": rec.Executed}}}
			if _, err := b.ents.Update(ctx, rec.Stored, "", in); err != nil {
				rec.Errors = append(rec.Errors, "result not stored: "+err.Error())
			}
		}
	}
	return rec
}

// executionRecord is what executing a message records: who ran it (when a
// member did), on which layer (when it came on one), and when.
func executionRecord(member *model.Entity, l Layer) map[string]any {
	r := map[string]any{"at": time.Now().UTC().Format(time.RFC3339Nano)}
	if member != nil {
		r["executed_by"] = memberRef(member)
	}
	if l != "" {
		r["layer"] = string(l)
	}
	return r
}

// run runs the process definition a message names
// (process.definition_ref) with its message_content as input, and adds the
// result (or why it did not run) to rec. A message naming none only
// records its execution.
func (b *Broker) run(ctx context.Context, rec map[string]any, msgAttrs map[string]any, trigger string) map[string]any {
	proc, _ := msgAttrs["process"].(map[string]any)
	ref, _ := proc["definition_ref"].(string)
	if ref == "" {
		return rec
	}
	if b.opts.Processes == nil {
		rec["not_run"] = "this server runs no process definitions"
		return rec
	}
	var input []byte
	switch c := messageAttrs(msgAttrs)["message_content"].(type) {
	case nil:
	case string:
		input = []byte(c)
	default:
		input, _ = json.Marshal(c) // decoded JSON: cannot fail
	}
	res, err := b.opts.Processes.RunForMessage(ctx, ref, input, trigger)
	if err != nil {
		rec["not_run"] = err.Error()
		return rec
	}
	for k, v := range res {
		rec[k] = v
	}
	return rec
}

// flag reads a message flag (storable, executable, sendable): true/false
// in any case; absent means the message kind's default here, or true (the
// default pyCMBS's kind declares).
func (b *Broker) flag(attrs map[string]any, name string) (bool, error) {
	v, present := attrs[name]
	if !present || v == nil || v == "" {
		v = true
		if set, err := b.ents.Categories().AttrSet(MessageKindID, nil); err == nil {
			if d := set.ByPath([]string{"cmbs", "message", name}); d != nil && d.HasDefault {
				v = d.Default
			}
		}
	}
	f, err := parseFlag(v)
	if err != nil {
		return false, model.AttributeError("cmbs.message."+name, "cmbs.message.%s: %v", name, err)
	}
	return f, nil
}

// storeMessage stores a received message as a message entity under its
// own id. dup is true when that id is already stored. Mixins this server
// has not registered are dropped; links and actions are not taken from the
// wire (a peer must not create link entities here).
func (b *Broker) storeMessage(ctx context.Context, msg map[string]any) (loc string, dup bool, err error) {
	kind, err := b.kind(MessageKindID)
	if err != nil {
		return "", false, err
	}
	in, err := b.messageInput(msg)
	if err != nil {
		return "", false, err
	}
	locs, err := b.ents.Create(ctx, kind, model.TypeResource, []*model.EntityInput{in})
	if model.StatusOf(err) == http.StatusConflict {
		return "", true, nil
	}
	if err != nil {
		return "", false, err
	}
	return locs[0], false, nil
}

// messageInput is the entity a received message is stored as.
func (b *Broker) messageInput(msg map[string]any) (*model.EntityInput, error) {
	desc := map[string]any{"kind": MessageKindID, "attributes": msg["attributes"], "id": msg["id"]}
	var mixins []any
	if ms, ok := msg["mixins"].([]any); ok {
		for _, m := range ms {
			if id, ok := m.(string); ok {
				if c, ok := b.ents.Categories().Get(id); ok && c.Class == model.ClassMixin {
					mixins = append(mixins, id)
				}
			}
		}
	}
	desc["mixins"] = mixins
	for _, k := range []string{"title", "summary"} {
		if s, ok := msg[k].(string); ok {
			desc[k] = s
		}
	}
	return model.ParseEntityInput(desc, model.TypeResource)
}

// updateMessageLater writes a sent message's result (and path_history)
// once the action has answered: the reply is the action's result already,
// and the entity service makes every later read of the message wait for
// the write, so nobody reads the message without it.
func (b *Broker) updateMessageLater(ctx context.Context, e *model.Entity, attrs map[string]any) error {
	in := &model.EntityInput{Present: map[string]bool{"attributes": true}}
	in.Attributes = map[string]any{"cmbs": map[string]any{"message": attrs}}
	if err := b.ents.UpdateLater(ctx, e, in); err != nil {
		return fmt.Errorf("update message %s: %w", e.Location, err)
	}
	return nil
}

// receiveL4 handles a routed message: drop a repeat, append this member to
// path_history, deliver locally when the member is a destination, and
// forward to its neighbours not yet on the path unless the message is not
// sendable or has travelled MaxHops.
func (b *Broker) receiveL4(ctx context.Context, member *model.Entity, msg map[string]any, envID string) (any, error) {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return nil, errStopped()
	}
	seen := b.state(member.Location).seen
	b.mu.Unlock()

	id, _ := msg["id"].(string)
	ref := memberRef(member)
	attrs := ensureMessageAttrs(msg["attributes"].(map[string]any))
	path := strList(attrs, "path_history")
	onPath := false
	for _, p := range path {
		onPath = onPath || refMatches(p, member)
	}
	if onPath || !seen.add(id) {
		b.stats.duplicates[layerIndex(L4)].Add(1)
		return &Receipt{Member: ref, Layer: L4, Duplicate: true}, nil
	}
	path = append(path, ref)
	attrs["path_history"] = toAnyList(path)
	// Where it goes next is decided, and the forwarded copy encoded as it
	// came (plus this hop), before delivering it here adds this member's
	// execution record to its result.
	endpoints, notForwarded := b.l4Next(ctx, member, attrs, path)
	var fwd []byte
	if len(endpoints) > 0 {
		var err error
		if fwd, err = json.Marshal(msg); err != nil {
			return nil, err
		}
	}

	matched := l4Matches(member, attrs)
	rec := &Receipt{Member: ref, Layer: L4}
	if matched {
		rec = b.deliverLocally(ctx, member, L4, msg)
	}
	rec.Matched = &matched
	rec.NotForwarded = notForwarded
	if len(endpoints) > 0 {
		env := transport.Envelope{ID: envID, MimeType: MessageMimeType, Body: fwd}
		if err := b.forward(ctx, member.Location, endpoints, env); err != nil {
			rec.NotForwarded = err.Error()
		} else {
			rec.ForwardingTo = endpoints
		}
	}
	return rec, nil
}

func toAnyList(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// l4Next is where member forwards an L4 message that has come along path:
// its neighbours not on the path, unless the message is not sendable or
// has travelled the most hops; then why not.
func (b *Broker) l4Next(ctx context.Context, member *model.Entity, attrs map[string]any, path []string) (endpoints []string, why string) {
	sendable, err := b.flag(attrs, "sendable")
	switch hops := len(path) - 1; {
	case err != nil:
		return nil, err.Error()
	case !sendable:
		return nil, "sendable is false"
	case hops >= b.opts.MaxHops:
		return nil, fmt.Sprintf("the message has travelled %d hops, the most allowed", hops)
	}
	targets, err := b.l4Neighbours(ctx, member, path)
	if err != nil {
		return nil, err.Error()
	}
	for _, t := range targets {
		if t.err == "" {
			endpoints = append(endpoints, t.socket)
		}
	}
	if len(endpoints) == 0 {
		return nil, "no neighbour left to forward to"
	}
	return endpoints, ""
}

// l4Matches is the L4 destination rule: a member is a destination when
// the message names it among its providers (if it names any) and shares a
// topic with it (if it has topics). A message with neither reaches every
// member on its way.
func l4Matches(member *model.Entity, msgAttrs map[string]any) bool {
	if provs := strList(msgAttrs, "providers"); len(provs) > 0 {
		named := false
		for _, p := range provs {
			named = named || namesMember(p, member)
		}
		if !named {
			return false
		}
	}
	if topics := strList(msgAttrs, "topics"); len(topics) > 0 {
		return topicsIntersect(topics, strList(memberAttrs(member.Attributes), "topics"))
	}
	return true
}

// namesMember reports whether a provider name designates the member: its
// id (or, for a learned member, its own id), its location or a URL ending
// in it, one of its sockets, or its member reference.
func namesMember(name string, m *model.Entity) bool {
	if name == m.ID || name == peerID(m) || name == memberRef(m) {
		return true
	}
	if p, err := model.PathOf(name); err == nil && p == m.Location {
		return true
	}
	attrs := memberAttrs(m.Attributes)
	for _, l := range Layers() {
		if s, _ := layerSocket(attrs, l); s != "" && s == name {
			return true
		}
	}
	return false
}

// forward hands an L4 message to the neighbours in the background: the
// handler answers its sender at once, and the forward runs under the
// broker's lifetime with RequestTimeout per neighbour. It waits for a
// forwarding slot within ctx.
func (b *Broker) forward(ctx context.Context, from string, endpoints []string, env transport.Envelope) error {
	select {
	case b.fwdSlots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("not forwarded: too many forwards in flight: %w", ctx.Err())
	}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		<-b.fwdSlots
		return errors.New("not forwarded: the broker is shutting down")
	}
	b.forwards.Add(1)
	b.stats.inFlight.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.forwards.Done()
		defer b.stats.inFlight.Add(-1)
		defer func() { <-b.fwdSlots }()
		li := layerIndex(L4)
		b.stats.inFlightByLayer[li].Add(int64(len(endpoints)))
		results := b.client.Deliver(b.ctx, endpoints, env)
		b.stats.inFlightByLayer[li].Add(-int64(len(endpoints)))
		for _, r := range results {
			if r.Err != nil {
				b.stats.failed[li].Add(1)
				b.log.Warn("delivery failed", "layer", L4, "id", env.ID, "peer", r.Endpoint, "cause", r.Err, "forwarded_by", from)
				continue
			}
			b.stats.sent[li].Add(1)
			b.stats.forwarded.Add(1)
		}
	}()
	return nil
}
