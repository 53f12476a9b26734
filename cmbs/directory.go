package cmbs

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

// directory holds the members this server knows (the member kind's
// collection, local and remote) between changes, so that sending or
// receiving a message reads no store: every send and every receipt needs
// the member list, and listing it from the store cost more than moving the
// message.
//
// It is exact for this server's own writes: the member provider's
// Committed hook drops it after every stored change (a create, update or
// delete, through the API, discovery or a rollback), and a list that was
// read while a change was being committed is not kept. Writes by another
// cmbsd sharing the same database are seen once the list is maxAge old.
type directory struct {
	list   func(context.Context) ([]*model.Entity, error)
	maxAge time.Duration

	mu      sync.Mutex
	gen     uint64 // bumped by every change
	snap    *members
	loading chan struct{} // closed when the read in progress ends
}

// members is one listing of the known members. It and the entities in it
// are shared by every reader and never modified.
type members struct {
	all   []*model.Entity // location order
	byLoc map[string]*model.Entity
	local []*model.Entity // location order
	// l1Sockets is the L1 socket of every member, each once, in location
	// order.
	l1Sockets []string
	// l2 is where send_l2 delivers: every remote member with an L2
	// socket, each socket once (read-only, like the rest).
	l2 []target
	// subscribers is every member with the topics it subscribes to and
	// its L3.2 socket, in location order: what send_l32 chooses from.
	subscribers []subscriber
	// receipts holds, for each local member, the receipt of a plain
	// delivery (plain.go) on each layer, encoded, by layerIndex.
	receipts map[string][][]byte
	// refs is each local member's reference (memberRef).
	refs map[string]string
	// l1Replies memoizes, by local member location, the member's answer
	// to an L1 message it did not execute, encoded (receiveL1): it is
	// made of this listing only. Filled on first use; an encodedReply.
	l1Replies sync.Map
	at        time.Time
}

// subscriber is a member as send_l32 sees it.
type subscriber struct {
	member string // location
	topics []string
	socket string // L3.2; "" when it has none
	local  bool
}

func newDirectory(list func(context.Context) ([]*model.Entity, error), maxAge time.Duration) *directory {
	return &directory{list: list, maxAge: maxAge}
}

// get returns the current listing, reading the store when there is none or
// it is older than maxAge. One read runs at a time; callers arriving
// meanwhile wait for it rather than read the same list again.
func (d *directory) get(ctx context.Context) (*members, error) {
	for {
		d.mu.Lock()
		if snap := d.snap; snap != nil && time.Since(snap.at) < d.maxAge {
			d.mu.Unlock()
			return snap, nil
		}
		if wait := d.loading; wait != nil {
			d.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		d.loading = done
		gen := d.gen
		d.mu.Unlock()

		at := time.Now()
		list, err := d.list(ctx)
		var snap *members
		if err == nil {
			snap = indexMembers(list, at)
		}
		d.mu.Lock()
		d.loading = nil
		// A change committed while the list was read may be missing from
		// it: the list answers this call (it is as fresh as a direct read)
		// but is not kept, and the callers waiting read again.
		if snap != nil && d.gen == gen {
			d.snap = snap
		}
		d.mu.Unlock()
		close(done)
		return snap, err
	}
}

// ApplyChanges drops the broker's list of known members when a batch of the
// store's changes feed (see store/feed) holds a member stored, changed or
// deleted — by another cmbsd sharing the database, or by this one — or a
// change to a category (the member kind may have moved). Several servers on
// one CouchDB thus see each other's members as soon as the feed has them,
// not once the list is Options.MembersMaxAge old. It never fails.
func (b *Broker) ApplyChanges(_ context.Context, changes []store.Change) error {
	prefix := ""
	if k, ok := b.ents.Categories().Get(MemberKindID); ok {
		prefix = k.Location
	}
	for _, c := range changes {
		if strings.HasPrefix(c.ID, categories.DocPrefix) || (prefix != "" && strings.HasPrefix(c.ID, prefix)) {
			b.dir.changed()
			break
		}
	}
	return nil
}

// changed drops the listing: a member was stored, changed or deleted.
func (d *directory) changed() {
	d.mu.Lock()
	d.gen++
	d.snap = nil
	d.mu.Unlock()
}

func indexMembers(list []*model.Entity, at time.Time) *members {
	sort.Slice(list, func(i, j int) bool { return list[i].Location < list[j].Location })
	m := &members{all: list, byLoc: make(map[string]*model.Entity, len(list)), l1Sockets: []string{}, receipts: map[string][][]byte{}, refs: map[string]string{}, at: at}
	seen, seenL2 := map[string]bool{}, map[string]bool{}
	for _, e := range list {
		m.byLoc[e.Location] = e
		if isLocal(e) {
			m.local = append(m.local, e)
			ref := memberRef(e)
			rs := make([][]byte, len(Layers()))
			for i, l := range Layers() {
				rs[i], _ = json.Marshal(Receipt{Member: ref, Layer: l}) // strings only: cannot fail
			}
			m.receipts[e.Location], m.refs[e.Location] = rs, ref
		}
		attrs := memberAttrs(e.Attributes)
		l32, _ := layerSocket(attrs, L32)
		m.subscribers = append(m.subscribers, subscriber{member: e.Location, topics: strList(attrs, "topics"), socket: l32, local: isLocal(e)})
		if s, _ := layerSocket(attrs, L1); s != "" && !seen[s] {
			seen[s] = true
			m.l1Sockets = append(m.l1Sockets, s)
		}
		if s, _ := layerSocket(attrs, L2); s != "" && !isLocal(e) && !seenL2[s] {
			seenL2[s] = true
			m.l2 = append(m.l2, target{member: e.Location, socket: s})
		}
	}
	return m
}
