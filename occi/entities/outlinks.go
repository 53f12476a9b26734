package entities

import (
	"context"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/store"
)

// A resource's document lists the links that start at it (OutLinks), so
// that rendering a resource with no links costs one store read, not a
// read and a query. The list is kept with two rules that make a stale
// entry harmless and a missing one impossible:
//
//   - a link is listed at its source before the link is stored, and
//     unlisted only after it is deleted (or moved away);
//   - a listed location is only a hint that links exist: a resource whose
//     list is not empty has its links looked up by query, so an entry left
//     behind by a failed create shows nothing.
//
// A resource whose document has no list (stored before it was kept, or
// written by something that does not keep it) has its links looked up;
// it is never given a list afterwards, since a list must be complete. A
// resource with more than MaxOutLinks links gives its list up the same
// way: its links are looked up from then on, and creating more of them no
// longer rewrites it (a busy source would otherwise be rewritten, whole,
// for every link).
//
// One server's writes of one source's list take turns (a lock striped by
// location); writes from several servers on one CouchDB collide and are
// read again, after a short random pause.

// MaxOutLinks is the longest list of links a resource's document keeps.
const MaxOutLinks = 32

// outLinkRetries bounds the re-reads when the source changes between the
// read and the write of its list.
const outLinkRetries = 20

// outLinkLocks serialises one server's writes of a source's list.
type outLinkLocks [64]sync.Mutex

func (l *outLinkLocks) lock(src string) func() {
	h := fnv.New32a()
	h.Write([]byte(src))
	m := &l[h.Sum32()%uint32(len(l))]
	m.Lock()
	return m.Unlock
}

// createAll creates entities in order, all or nothing: a link whose source
// is not created in the same request is first listed at its source.
func (s *Service) createAll(ctx context.Context, all []*model.Entity) error {
	inRequest := map[string]bool{}
	for _, e := range all {
		if e.Type == model.TypeResource {
			inRequest[e.Location] = true
		}
	}
	var created, listed []*model.Entity
	undo := func() {
		ctx := context.WithoutCancel(ctx)
		s.rollback(ctx, created)
		for _, l := range listed {
			s.dropOutLink(ctx, l.Source, l.Location)
		}
	}
	for _, e := range all {
		if e.Type == model.TypeLink && e.Source != "" && !inRequest[e.Source] {
			added, err := s.addOutLink(ctx, e.Source, e.Location)
			if err != nil {
				undo()
				return err
			}
			if added {
				listed = append(listed, e)
			}
		}
		if err := s.createOne(ctx, e); err != nil {
			undo()
			return err
		}
		created = append(created, e)
	}
	return nil
}

// addOutLink lists the link at loc at its source src, and reports whether
// the list changed (false: already listed, or src keeps no list).
func (s *Service) addOutLink(ctx context.Context, src, loc string) (bool, error) {
	return s.editOutLinks(ctx, src, func(list []string) ([]string, bool) {
		if slices.Contains(list, loc) {
			return list, false
		}
		if len(list) >= MaxOutLinks {
			return nil, true // given up: looked up from now on
		}
		return append(list, loc), true
	})
}

// dropOutLink unlists the link at loc at its source src. It only logs a
// failure: the entry left behind is harmless (see above).
func (s *Service) dropOutLink(ctx context.Context, src, loc string) {
	_, err := s.editOutLinks(ctx, src, func(list []string) ([]string, bool) {
		i := slices.Index(list, loc)
		if i < 0 {
			return list, false
		}
		return slices.Delete(list, i, i+1), true
	})
	if err != nil {
		s.log.Warn("could not unlist a link at its source; it stays as a hint", "source", src, "link", loc, "err", err)
	}
}

// editOutLinks changes the out-link list of the resource at src with the
// revision it read, reading again when another write came first. The
// write is the service's own bookkeeping: the kind's provider is not asked
// (it sees the new revision through Observer, as for any stored change).
func (s *Service) editOutLinks(ctx context.Context, src string, edit func([]string) ([]string, bool)) (bool, error) {
	defer s.outLinkLocks.lock(src)()
	for attempt := range outLinkRetries {
		if attempt > 0 {
			// Another server wrote the source in between: pause 1–10 ms
			// (random, so that colliding writers part) and read again.
			t := time.NewTimer(time.Millisecond + rand.N(9*time.Millisecond))
			select {
			case <-ctx.Done():
				t.Stop()
				return false, ctx.Err()
			case <-t.C:
			}
		}
		old, err := s.get(ctx, src)
		if model.StatusOf(err) == http.StatusNotFound {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if old.Type != model.TypeResource || old.OutLinks == nil {
			return false, nil
		}
		list, changed := edit(slices.Clone(*old.OutLinks))
		if !changed {
			return false, nil
		}
		e := cloneEntity(old)
		e.OutLinks = &list
		if list == nil {
			e.OutLinks = nil
		}
		rev, err := s.put(ctx, e, old.Rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return false, err
		}
		e.Rev = rev
		if p, perr := s.provider(e.Kind); perr == nil {
			committed(p, e.Location, e)
		}
		return true, nil
	}
	return false, model.Conflict("%s kept changing while its list of links was updated; retry", src)
}

// copyOutLinks copies a list of out-links, keeping nil as nil.
func copyOutLinks(l *[]string) *[]string {
	if l == nil {
		return nil
	}
	c := slices.Clone(*l)
	if c == nil {
		c = []string{}
	}
	return &c
}
