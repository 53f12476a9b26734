package cmbs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/cmbs/transport"
	"github.com/cmbs/cmbs/occi/entities"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
)

// Provider names, as pyCMBS's put_provider files bind them.
const (
	MemberProviderName  = "cmbs_member"
	MessageProviderName = "cmbs_message"
)

// Entities is what the broker needs from the OCCI entity service: members
// and messages are read and written through it (in-process, where pyCMBS
// called its own HTTP API), so validation and the providers' hooks apply to
// them as to any client's. *entities.Service satisfies it.
type Entities interface {
	Get(ctx context.Context, location string) (*model.Entity, error)
	Create(ctx context.Context, kind *model.Category, typ string, inputs []*model.EntityInput) ([]string, error)
	Update(ctx context.Context, location, ifMatch string, in *model.EntityInput) (*model.Entity, error)
	Replace(ctx context.Context, location, ifMatch, typ string, in *model.EntityInput) (*model.Entity, bool, error)
	UpdateLater(ctx context.Context, current *model.Entity, in *model.EntityInput) error
	List(ctx context.Context, q entities.ListQuery) ([]*model.Entity, error)
	Categories() *categories.Registry
}

var _ Entities = (*entities.Service)(nil)

// Options configures a Broker. Zero values take the defaults.
type Options struct {
	// Logger receives the broker's logs; nil discards them.
	Logger *slog.Logger
	// RequestTimeout bounds every call to another member: connecting,
	// sending and waiting for its answer (default 3s). A dead or slow peer
	// costs at most this long, and is reported, never waited for longer.
	RequestTimeout time.Duration
	// DiscoveryTimeout bounds a whole check_neighbors crawl (default 20s).
	DiscoveryTimeout time.Duration
	// MaxDiscovered bounds how many sockets one crawl probes (default 256).
	MaxDiscovered int
	// MaxHops bounds how many hops an L4 message travels from the member
	// that sent it (default 8).
	MaxHops int
	// HandlerTimeout bounds the work a layer socket does for one incoming
	// message: storing, recording execution, choosing where to forward
	// (default 10s).
	HandlerTimeout time.Duration
	// SeenIDs is how many L4 message ids each local member remembers to
	// drop repeats (default 4096).
	SeenIDs int
	// MaxForwards bounds the L4 forwards in flight at once (default 64); an
	// incoming L4 message waits for a slot within its handler deadline.
	MaxForwards int
	// MembersMaxAge is how long the broker uses its list of known members
	// before reading it again (default 1s). Its own changes to members
	// take effect at once; this bounds how long a change made by another
	// cmbsd sharing the same database goes unseen.
	MembersMaxAge time.Duration
	// Layers, when set, is where the broker records which layers of its
	// local members are running (one document, LayersID, rewritten after
	// every start_lN, stop_lN and member deletion), and reads them back
	// when the providers start, so that a restarted cmbsd binds them
	// again. cmbsd passes its store: the record lives with the members it
	// names.
	Layers DocumentStore
	// LayersID is the record's document id (default DefaultLayersID).
	// Servers sharing one database each need their own.
	LayersID string
	// ImportLayersFile is a layers.json written by earlier versions: when
	// Layers holds no record yet, it is read instead, stored, and renamed
	// to <file>.imported.
	ImportLayersFile string
	// AllowNonLoopback lets members bind layer sockets on addresses other
	// than loopback. Nothing authenticates a peer on those sockets, and
	// what they receive is stored and executed, so by default only
	// 127.0.0.0/8, ::1 and localhost are bound (cmbsd: --insecure).
	AllowNonLoopback bool
	// Curve, when set, makes every socket speak ZMTP-CURVE (curve.go);
	// layer sockets may then bind beyond loopback.
	Curve *CurveOptions
	// Transport is added to the options of every ZeroMQ socket the broker
	// opens, its layer sockets' servers and its client, after the
	// broker's own: limits on what peers may hold (connections, idle
	// time, message size and memory; see docs/limits.md). Each option
	// applies to whichever of the two it concerns.
	Transport []transport.Option
	// Processes runs the process definition an executable message names
	// (attribute process.definition_ref, mixin process#runnable); nil
	// means executable messages only record that they were executed.
	Processes MessageRunner
	// OnDelivery, when set, is told about every message a local member
	// received (after storing and recording it), e.g. to publish it on the
	// bus. It runs inside the layer's handler and must not block.
	OnDelivery func(ReceivedMessage)
	// DeliveryMessage, when set, is asked for every message that is
	// neither storable nor executable, on L2, L3.1 or L3.2, whether
	// OnDelivery needs the whole message (e.g. to publish it); when it
	// answers false, the message is not decoded, and OnDelivery's Message
	// holds its id only. Unset, OnDelivery always gets the whole message.
	DeliveryMessage func() bool
}

// MessageRunner runs, on behalf of an executable message, a process
// definition registered on this server. ref is the definition's id or
// location as the message gives it; input is the message's content. An
// error means the definition did not run (unknown, or not allowed to run
// on a message) and says why; a run that failed is a result, not an error.
// The process provider (providers/process) implements it.
type MessageRunner interface {
	RunForMessage(ctx context.Context, ref string, input []byte, trigger string) (map[string]any, error)
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LayersID == "" {
		o.LayersID = DefaultLayersID
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 3 * time.Second
	}
	if o.DiscoveryTimeout <= 0 {
		o.DiscoveryTimeout = 20 * time.Second
	}
	if o.MaxDiscovered <= 0 {
		o.MaxDiscovered = 256
	}
	if o.MaxHops <= 0 {
		o.MaxHops = 8
	}
	if o.HandlerTimeout <= 0 {
		o.HandlerTimeout = 10 * time.Second
	}
	if o.SeenIDs <= 0 {
		o.SeenIDs = 4096
	}
	if o.MaxForwards <= 0 {
		o.MaxForwards = 64
	}
	if o.MembersMaxAge <= 0 {
		o.MembersMaxAge = time.Second
	}
	return o
}

// Broker is the CMBS message broker of one cmbsd server: the state behind
// the cmbs_member and cmbs_message providers (its MemberProvider and
// MessageProvider). It holds the sockets of every local member's started
// layers, one client for calls to other members, and the L4 forwards in
// flight; Stop releases all of them.
type Broker struct {
	ents   Entities
	opts   Options
	log    *slog.Logger
	client *transport.Client
	curve  *curveKeyring // nil: CURVE off

	// ctx is the parent of background work (L4 forwards); Stop cancels it.
	ctx      context.Context
	cancel   context.CancelFunc
	forwards sync.WaitGroup
	fwdSlots chan struct{}

	mu      sync.Mutex
	stopped bool
	members map[string]*localMember // by member location

	// dir holds the known members between changes.
	dir *directory

	saveMu sync.Mutex // serialises writes of the layers record

	stopOnce sync.Once
	stats    counters
}

// localMember is the runtime state of a local member: its bound layers and
// the L4 message ids it has handled.
type localMember struct {
	layers map[Layer]*boundLayer
	seen   *seenSet
}

// boundLayer is a started layer: its server and the socket attribute it
// was bound from (the server's Addr may spell the address differently).
type boundLayer struct {
	srv      *transport.Server
	endpoint string
}

// NewBroker returns a broker serving the CMBS kinds through ents. It opens
// nothing until a layer is started or a message sent.
func NewBroker(ents Entities, opts Options) *Broker {
	opts = opts.withDefaults()
	b := &Broker{
		ents:     ents,
		opts:     opts,
		log:      opts.Logger.With("component", "cmbs"),
		members:  map[string]*localMember{},
		fwdSlots: make(chan struct{}, opts.MaxForwards),
	}
	b.curve = newCurveKeyring(opts.Curve)
	b.client = transport.NewClient(append(append([]transport.Option{
		transport.WithRequestTimeout(opts.RequestTimeout),
		transport.WithLogger(opts.Logger),
	}, b.curveClientOptions()...), opts.Transport...)...)
	b.dir = newDirectory(b.listMembers, opts.MembersMaxAge)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// MemberProvider returns the provider of the member kind.
func (b *Broker) MemberProvider() *MemberProvider { return &MemberProvider{b: b} }

// MessageProvider returns the provider of the message kind.
func (b *Broker) MessageProvider() *MessageProvider { return &MessageProvider{b: b} }

// Register registers both providers under MemberProviderName and
// MessageProviderName.
func (b *Broker) Register(reg *providers.Registry) error {
	if err := reg.Register(MemberProviderName, b.MemberProvider()); err != nil {
		return err
	}
	return reg.Register(MessageProviderName, b.MessageProvider())
}

// Stop closes every layer socket at once (peers waiting on them get an
// error or time out), cancels the calls and forwards in flight, and returns
// when every goroutine the broker started has returned. Later actions
// answer 503. Calling it again is a no-op.
func (b *Broker) Stop(ctx context.Context) error {
	var errs []error
	b.stopOnce.Do(func() {
		b.mu.Lock()
		b.stopped = true
		var servers []*transport.Server
		for _, m := range b.members {
			for _, bl := range m.layers {
				servers = append(servers, bl.srv)
			}
			m.layers = map[Layer]*boundLayer{}
		}
		b.mu.Unlock()

		b.cancel()
		// Closing waits for the handlers in progress; none of them needs
		// b.mu for longer than a lookup, so this is done without it.
		for _, srv := range servers {
			if err := srv.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", srv.Addr(), err))
			}
		}
		_ = b.client.Close()
		// Forwards are bounded by RequestTimeout and were cancelled above;
		// none may outlive Stop, so they are waited for even past ctx's
		// deadline, which is then reported. The results of messages sent
		// are stored by the entity service, which its owner flushes.
		b.forwards.Wait()
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("cmbs: stop: forwards outlived the deadline: %w", err))
		}
	})
	return errors.Join(errs...)
}

// errStopped is the answer to anything asked of a stopped broker.
func errStopped() error {
	return model.Errorf(http.StatusServiceUnavailable, "the CMBS broker is shutting down")
}

// state returns the runtime state of a local member, creating it. b.mu
// must be held.
func (b *Broker) state(loc string) *localMember {
	m := b.members[loc]
	if m == nil {
		m = &localMember{layers: map[Layer]*boundLayer{}, seen: newSeenSet(b.opts.SeenIDs)}
		b.members[loc] = m
	}
	return m
}

// running returns the endpoint a local member's layer is bound to, or "".
func (b *Broker) running(loc string, l Layer) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m := b.members[loc]; m != nil {
		if bl := m.layers[l]; bl != nil {
			return bl.endpoint
		}
	}
	return ""
}

// RunningLayer is a layer socket a local member has bound.
type RunningLayer struct {
	Member    string                `json:"member"`
	Layer     Layer                 `json:"layer"`
	Socket    string                `json:"socket"`
	Transport transport.ServerStats `json:"transport"`
}

// RunningLayers lists the layers running now, ordered by member and layer, with
// what each socket has seen.
func (b *Broker) RunningLayers() []RunningLayer {
	b.mu.Lock()
	var out []RunningLayer
	for loc, m := range b.members {
		for l, bl := range m.layers {
			out = append(out, RunningLayer{Member: loc, Layer: l, Socket: bl.endpoint, Transport: bl.srv.Stats()})
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y RunningLayer) int {
		return cmp.Or(strings.Compare(x.Member, y.Member), strings.Compare(string(x.Layer), string(y.Layer)))
	})
	return out
}

// Stats counts what the broker has done since it was created.
type Stats struct {
	// Received counts the CMBS messages each layer's sockets accepted
	// (repeats included), by layer name.
	Received map[string]uint64 `json:"received"`
	// Stored counts received messages stored as message entities.
	Stored uint64 `json:"stored"`
	// Executed counts received messages whose execution was recorded.
	Executed uint64 `json:"executed"`
	// Duplicates counts received messages dropped as already handled.
	Duplicates uint64 `json:"duplicates"`
	// Forwarded counts L4 forwards acknowledged by the next member.
	Forwarded uint64 `json:"forwarded"`
	// ForwardsInFlight is the number of L4 forwards still running. A
	// receiver starts its forwards before it acknowledges a message, so
	// once a send has returned and this is 0 on every member, the message
	// has gone as far as it will.
	ForwardsInFlight int64 `json:"forwards_in_flight"`
	// Rejected counts envelopes answered with an error (not a CMBS message).
	Rejected uint64 `json:"rejected"`
	// Sent counts deliveries this server made that the receiver
	// acknowledged (sends and L4 forwards, one per receiving socket), by
	// layer name.
	Sent map[string]uint64 `json:"sent"`
	// Failed counts deliveries this server attempted or was asked for that
	// did not reach a receiver (no answer, refused, unknown or stopped
	// target), by layer name. Each one is logged with its peer and cause.
	Failed map[string]uint64 `json:"failed"`
	// DuplicatesByLayer splits Duplicates by the layer that received them.
	DuplicatesByLayer map[string]uint64 `json:"duplicates_by_layer"`
	// InFlight is the number of deliveries waiting for their receiver's
	// acknowledgement now (sends and L4 forwards), by layer name.
	InFlight map[string]int64 `json:"in_flight"`
	// Discoveries counts check_neighbors runs; DiscoveryFailures the
	// sockets those runs could not probe.
	Discoveries       uint64 `json:"discoveries"`
	DiscoveryFailures uint64 `json:"discovery_failures"`
}

type counters struct {
	received, sent, failed, duplicates    [5]atomic.Uint64
	inFlightByLayer                       [5]atomic.Int64
	stored, executed, forwarded, rejected atomic.Uint64
	discoveries, discoveryFailures        atomic.Uint64
	inFlight                              atomic.Int64
}

func layerIndex(l Layer) int {
	for i, x := range Layers() {
		if x == l {
			return i
		}
	}
	return 0
}

// Stats returns a snapshot of the broker's counters.
func (b *Broker) Stats() Stats {
	s := Stats{
		Received:          map[string]uint64{},
		Sent:              map[string]uint64{},
		Failed:            map[string]uint64{},
		DuplicatesByLayer: map[string]uint64{},
		InFlight:          map[string]int64{},
		Stored:            b.stats.stored.Load(),
		Executed:          b.stats.executed.Load(),
		Forwarded:         b.stats.forwarded.Load(),
		Rejected:          b.stats.rejected.Load(),
		Discoveries:       b.stats.discoveries.Load(),
		DiscoveryFailures: b.stats.discoveryFailures.Load(),

		ForwardsInFlight: b.stats.inFlight.Load(),
	}
	for i, l := range Layers() {
		s.Received[string(l)] = b.stats.received[i].Load()
		s.Sent[string(l)] = b.stats.sent[i].Load()
		s.Failed[string(l)] = b.stats.failed[i].Load()
		s.DuplicatesByLayer[string(l)] = b.stats.duplicates[i].Load()
		s.InFlight[string(l)] = b.stats.inFlightByLayer[i].Load()
		s.Duplicates += s.DuplicatesByLayer[string(l)]
	}
	return s
}

// deliveryFailed counts and logs one delivery that did not reach its
// receiver: peer is the socket (or, when none was resolved, the name the
// message gave), cause why.
func (b *Broker) deliveryFailed(l Layer, id, peer string, cause any) {
	b.stats.failed[layerIndex(l)].Add(1)
	b.log.Warn("delivery failed", "layer", l, "id", id, "peer", peer, "cause", cause)
}

// kind returns a registered CMBS kind, or a 409 saying it is missing.
func (b *Broker) kind(id string) (*model.Category, error) {
	k, ok := b.ents.Categories().Get(id)
	if !ok || k.Class != model.ClassKind {
		return nil, model.Conflict("kind %s is not registered on this server (POST /-/ its category file first)", id)
	}
	return k, nil
}

// listMembers reads every member this server knows, local and remote,
// from the store (the directory's source).
func (b *Broker) listMembers(ctx context.Context) ([]*model.Entity, error) {
	k, err := b.kind(MemberKindID)
	if err != nil {
		return nil, err
	}
	list, err := b.ents.List(ctx, entities.ListQuery{Collection: k})
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return list, nil
}

// known returns the members this server knows (see directory), or a 409
// when the member kind is not registered.
func (b *Broker) known(ctx context.Context) (*members, error) {
	if _, err := b.kind(MemberKindID); err != nil {
		return nil, err
	}
	return b.dir.get(ctx)
}

// allMembers lists every member this server knows, local and remote, in
// location order. The slice and its entities are shared: read only.
func (b *Broker) allMembers(ctx context.Context) ([]*model.Entity, error) {
	m, err := b.known(ctx)
	if err != nil {
		return nil, err
	}
	return m.all, nil
}

// localMembers lists this server's own members, in location order; shared
// as allMembers' list is.
func (b *Broker) localMembers(ctx context.Context) ([]*model.Entity, error) {
	m, err := b.known(ctx)
	if err != nil {
		return nil, err
	}
	return m.local, nil
}

// member returns the member stored at loc.
func (b *Broker) member(ctx context.Context, loc string) (*model.Entity, error) {
	if m, err := b.known(ctx); err == nil {
		if e := m.byLoc[loc]; e != nil {
			return e, nil
		}
	}
	return b.ents.Get(ctx, loc)
}

// seenSet remembers the most recent ids, forgetting the oldest beyond its
// capacity.
type seenSet struct {
	mu    sync.Mutex
	ids   map[string]bool
	order []string
	next  int
}

func newSeenSet(capacity int) *seenSet {
	return &seenSet{ids: make(map[string]bool, capacity), order: make([]string, 0, capacity)}
}

// add records id and reports whether it was new.
func (s *seenSet) add(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids[id] {
		return false
	}
	s.ids[id] = true
	if len(s.order) < cap(s.order) {
		s.order = append(s.order, id)
		return true
	}
	delete(s.ids, s.order[s.next])
	s.order[s.next] = id
	s.next = (s.next + 1) % len(s.order)
	return true
}
