package cmbs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync"

	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/internal/jsonscan"
	"github.com/cmbs/cmbs/occi/model"
)

// discoveryFanOut bounds how many sockets of one BFS level are probed at
// once.
const discoveryFanOut = 8

// Discovery is the result of check_neighbors.
type Discovery struct {
	// Member is the member that crawled.
	Member string `json:"member"`
	// Learned lists the members that answered, in crawl order.
	Learned []Learned `json:"learned"`
	// Failed lists the sockets that did not answer in time or answered
	// with an error, and those left unprobed when the crawl hit its
	// deadline or size limit.
	Failed []Failure `json:"failed"`
}

// Learned is one member found by check_neighbors.
type Learned struct {
	Socket string `json:"socket"`
	// ID is the member's own id on its server.
	ID string `json:"id"`
	// Member is where it is stored here ("" when the socket turned out to
	// be one of this server's own members).
	Member string `json:"member,omitempty"`
	// Message is the stored L1 probe message, whose result is the reply.
	Message string `json:"message,omitempty"`
	// Sockets are the L1 sockets it knows (its reply's sockets_l1).
	Sockets []string `json:"sockets_l1"`
}

// Failure is one socket check_neighbors could not learn from.
type Failure struct {
	Socket string `json:"socket"`
	Error  string `json:"error"`
}

// checkNeighbors crawls breadth-first from the member's neighbors_socket
// over L1: each socket gets an L1 probe whose reply names the member there
// (stored here as remote) and the L1 sockets it knows (probed next). It
// returns when the crawl is done, bounded by DiscoveryTimeout in total and
// RequestTimeout per probe.
func (b *Broker) checkNeighbors(ctx context.Context, e *model.Entity) (*Discovery, error) {
	if !isLocal(e) {
		return nil, model.Conflict("member %s is remote: check_neighbors runs on a local member", e.Location)
	}
	if _, err := b.kind(MemberKindID); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.DiscoveryTimeout)
	defer cancel()

	locals, err := b.localMembers(ctx)
	if err != nil {
		return nil, err
	}
	visited := map[string]bool{}
	for _, m := range locals {
		// This server's own members are not neighbours to probe.
		if s, _ := layerSocket(memberAttrs(m.Attributes), L1); s != "" {
			visited[s] = true
		}
	}
	res := &Discovery{Member: e.Location, Learned: []Learned{}, Failed: []Failure{}}
	var level []string
	queued := 0
	enqueue := func(s string) {
		if visited[s] {
			return
		}
		visited[s] = true
		if queued == b.opts.MaxDiscovered {
			res.Failed = append(res.Failed, Failure{Socket: s, Error: fmt.Sprintf("not probed: the crawl is limited to %d sockets", b.opts.MaxDiscovered)})
			return
		}
		queued++
		level = append(level, s)
	}
	for _, s := range strList(memberAttrs(e.Attributes), "neighbors_socket") {
		enqueue(s)
	}
	self := describeMember(e)
	ref := memberRef(e)
	for len(level) > 0 {
		current := level
		level = nil
		if ctx.Err() != nil {
			for _, s := range current {
				res.Failed = append(res.Failed, Failure{Socket: s, Error: "not probed: check_neighbors ran out of time"})
			}
			break
		}
		for i, out := range b.probeAll(ctx, self, ref, current) {
			if out.err != nil {
				res.Failed = append(res.Failed, Failure{Socket: current[i], Error: out.err.Error()})
				b.log.Warn("discovery probe failed", "member", e.Location, "peer", current[i], "cause", out.err)
				continue
			}
			res.Learned = append(res.Learned, out.learned)
			for _, s := range out.learned.Sockets {
				enqueue(s)
			}
		}
	}
	b.stats.discoveries.Add(1)
	b.stats.discoveryFailures.Add(uint64(len(res.Failed)))
	b.log.Info("check_neighbors done", "member", e.Location, "learned", len(res.Learned), "failed", len(res.Failed))
	return res, nil
}

type probeOutcome struct {
	learned Learned
	err     error
}

// probeAll probes sockets concurrently (at most discoveryFanOut at once)
// and returns their outcomes in order.
func (b *Broker) probeAll(ctx context.Context, self map[string]any, ref string, sockets []string) []probeOutcome {
	out := make([]probeOutcome, len(sockets))
	sem := make(chan struct{}, discoveryFanOut)
	var wg sync.WaitGroup
	for i, s := range sockets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i].learned, out[i].err = b.probe(ctx, self, ref, s)
		}()
	}
	wg.Wait()
	return out
}

// probe sends one discovery message over L1 and learns the member that
// answers. The probe is neither storable nor executable on the receiver;
// here it is stored (as pyCMBS did) with the reply as its result, at an id
// of its own per crawling member and socket (ProbeID): crawling again
// updates it, so repeated check_neighbors do not pile up messages.
func (b *Broker) probe(ctx context.Context, self map[string]any, ref, socket string) (Learned, error) {
	l := Learned{Socket: socket}
	id := ProbeID(ref, socket)
	msg := map[string]any{
		"kind":   MessageKindID,
		"mixins": []any{L1.mixinID()},
		"attributes": map[string]any{"cmbs": map[string]any{"message": map[string]any{
			"cmbs_layer":                "l1",
			"executable":                "false",
			"sendable":                  "true",
			"storable":                  "false",
			"path_history":              []any{ref},
			"message_content":           self,
			"l1_socket_receiver_member": socket,
			"result":                    "",
		}}},
		"actions": []any{},
		"id":      id,
		"title":   "l1 CMBS message",
		"summary": "CMBS discovery probe (check_neighbors)",
		"links":   []any{},
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return l, err
	}
	reply, err := b.client.Request(ctx, socket, transport.Envelope{ID: id, MimeType: MessageMimeType, Body: body})
	if err != nil {
		return l, err
	}
	v, _ := jsonscan.Decode(reply.Body)
	result, _ := v.(map[string]any)
	member, _ := result["member_description"].(map[string]any)
	if member == nil {
		return l, fmt.Errorf("%s answered something that is not an L1 reply (%s): %.200s", socket, reply.MimeType, reply.Body)
	}
	l.ID, _ = member["id"].(string)
	b.learnCurveKeys(result["curve_keys"])
	l.Sockets = strList(result, "sockets_l1")
	if l.Sockets == nil {
		l.Sockets = []string{}
	}
	if l.Member, err = b.learn(ctx, member); err != nil {
		return l, fmt.Errorf("%s answered, but its member could not be stored: %w", socket, err)
	}
	if kind, err := b.kind(MessageKindID); err == nil {
		messageAttrs(msg["attributes"].(map[string]any))["result"] = result
		loc, err := b.storeProbe(ctx, kind, msg)
		if err != nil {
			b.log.Warn("could not store a discovery probe", "socket", socket, "err", err)
		}
		l.Message = loc
	}
	return l, nil
}

// ProbeID is the id of the L1 probe message a member (by member reference)
// sends to an L1 socket when it crawls: "probe~" and 16 hex digits.
func ProbeID(memberRef, socket string) string {
	h := sha256.Sum256([]byte(memberRef + "\x00" + socket))
	return "probe~" + hex.EncodeToString(h[:8])
}

// storeProbe stores the probe, over the one an earlier crawl stored if
// any: its result is the latest reply as it is, not merged into the
// previous one.
func (b *Broker) storeProbe(ctx context.Context, kind *model.Category, msg map[string]any) (string, error) {
	in, err := b.messageInput(msg)
	if err != nil {
		return "", err
	}
	loc := kind.Location + in.ID
	_, _, err = b.ents.Replace(ctx, loc, "", model.TypeResource, in)
	return loc, err
}

// learn stores a member description received from another server as a
// remote member at RemoteMemberID(its id, its L1 socket) (with local
// "false" when the member kind declares local),
// creating or updating it, and returns its location here. A description of
// one of this server's own members is recognised and not stored ("", nil).
// Attributes are kept as this server's member kind declares them: the
// l31/l3.1 spellings are translated, undeclared or invalid ones dropped.
func (b *Broker) learn(ctx context.Context, desc map[string]any) (string, error) {
	kind, err := b.kind(MemberKindID)
	if err != nil {
		return "", err
	}
	set, err := b.ents.Categories().AttrSet(MemberKindID, nil)
	if err != nil {
		return "", err
	}
	id, _ := desc["id"].(string)
	peer := memberAttrs(set.Nest(mapOrNil(desc["attributes"])))
	l1, _ := layerSocket(peer, L1)
	if id == "" || l1 == "" {
		return "", errors.New("the member description needs an id and a cmbs.member.l1_socket")
	}
	locals, err := b.localMembers(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range locals {
		if s, _ := layerSocket(memberAttrs(m.Attributes), L1); m.ID == id && s == l1 {
			return "", nil // ourselves
		}
	}
	attrs := map[string]any{}
	for name, v := range peer {
		if set.ByPath([]string{"cmbs", "member", name}) == nil {
			name = alternateSpelling(name)
		}
		d := set.ByPath([]string{"cmbs", "member", name})
		if d == nil || d.Check(v) != nil {
			continue
		}
		attrs[name] = v
	}
	// Its id marks it remote (isLocal); a kind that declares local (as
	// pyCMBS's does) says so as well. Without the declaration, the loop
	// above has dropped it.
	if set.ByPath([]string{"cmbs", "member", "local"}) != nil {
		attrs["local"] = "false"
	}
	nested := map[string]any{"cmbs": map[string]any{"member": attrs}}

	rid := RemoteMemberID(id, l1)
	loc := kind.Location + rid
	title, hasTitle := desc["title"].(string)
	summary, hasSummary := desc["summary"].(string)

	for attempt := 0; ; attempt++ {
		// The first look goes to the known members (a member asking again
		// is the common case, and costs no store read); a retry reads the
		// store.
		get := b.member
		if attempt > 0 {
			get = b.ents.Get
		}
		old, err := get(ctx, loc)
		switch {
		case model.StatusOf(err) == http.StatusNotFound:
			in := &model.EntityInput{Present: map[string]bool{"id": true, "attributes": true}}
			in.ID, in.Kind, in.Attributes = rid, MemberKindID, nested
			in.Title, in.HasTitle, in.Summary, in.HasSummary = title, hasTitle, summary, hasSummary
			_, err = b.ents.Create(ctx, kind, model.TypeResource, []*model.EntityInput{in})
		case err != nil:
			return "", err
		case isLocal(old):
			return "", model.Conflict("a local member is stored at %s, where member %s of %s would be stored", loc, id, l1)
		case sameValues(memberAttrs(old.Attributes), attrs) && (!hasTitle || old.Title == title) && (!hasSummary || old.Summary == summary):
			return loc, nil // known and unchanged: no write
		default:
			// A partial update: the peer's attributes replace the stored
			// ones (arrays whole).
			in := &model.EntityInput{Present: map[string]bool{"attributes": true}}
			in.Attributes = nested
			if hasTitle {
				in.Title, in.HasTitle, in.Present["title"] = title, true, true
			}
			if hasSummary {
				in.Summary, in.HasSummary, in.Present["summary"] = summary, true, true
			}
			_, err = b.ents.Update(ctx, loc, old.Rev, in)
		}
		if err == nil {
			return loc, nil
		}
		// A concurrent learn of the same member got there first.
		if st := model.StatusOf(err); (st == http.StatusConflict || st == http.StatusPreconditionFailed) && attempt < 2 {
			continue
		}
		return "", fmt.Errorf("store member %s of %s: %w", id, l1, err)
	}
}

// sameValues reports whether old holds every value of attrs.
func sameValues(old, attrs map[string]any) bool {
	for k, v := range attrs {
		if ov, ok := old[k]; !ok || !reflect.DeepEqual(ov, v) {
			return false
		}
	}
	return true
}

// alternateSpelling maps l31_socket ⇄ l3.1_socket and l32_socket ⇄
// l3.2_socket, so members described with either kind can be stored with
// the other.
func alternateSpelling(name string) string {
	for _, l := range []Layer{L31, L32} {
		names := l.socketAttrs()
		switch name {
		case names[0]:
			return names[1]
		case names[1]:
			return names[0]
		}
	}
	return name
}
