package sqlite

import (
	"container/list"
	"sync"
)

// docCache keeps recently read or written live documents, so that Get of
// a hot document (a message being sent, a member being read) costs a map
// lookup instead of a query. It is exact because this Store is the only
// writer of its file (Open takes an exclusive lock): every change is
// applied to the cache by the writer right after its commit.
//
// A reader that missed may add what it read only if no commit happened
// meanwhile (gen), so a version read before a commit can never replace
// the one that commit wrote.
type docCache struct {
	mu    sync.Mutex
	max   int // bytes of bodies kept at most; 0 disables the cache
	size  int
	gen   uint64 // bumped by every commit
	items map[string]*list.Element
	lru   list.List // of *cachedDoc, most recently used first
}

type cachedDoc struct {
	id, rev string
	body    []byte // never modified, never handed out (Get copies)
	// written: the writer put it there after its commit, so the index
	// rows of the document are exactly the rows of body under this
	// store's options (see Store.knownRows); a body a reader added may
	// have been indexed by an older program.
	written bool
	rid     int64 // the document's row id, if written
	// rows are the document's index rows as the writer wrote them, if
	// written (nil for a body with no rows): never modified, so that
	// Store.knownRows hands them out without listing them again.
	rows map[pidRow]struct{}
}

// size is what a cached document counts against the cache's bytes: its
// body and its rows (about 48 bytes each in a map).
func (d *cachedDoc) size() int { return len(d.body) + 48*len(d.rows) }

// maxCachedBody is the largest body kept: a few large documents must not
// push out many small hot ones.
const maxCachedBody = 64 << 10

func newDocCache(maxBytes int) *docCache {
	return &docCache{max: maxBytes, items: make(map[string]*list.Element)}
}

// get returns a copy of the cached document's revision and body, or
// ok false together with the generation to pass to add.
func (c *docCache) get(id string) (rev string, body []byte, gen uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[id]
	if !ok {
		return "", nil, c.gen, false
	}
	c.lru.MoveToFront(el)
	d := el.Value.(*cachedDoc)
	return d.rev, append([]byte(nil), d.body...), 0, true
}

// add keeps a document a reader got from the database, unless a commit
// happened since get returned gen.
func (c *docCache) add(id, rev string, body []byte, gen uint64) {
	if !c.keeps(body) {
		return // not worth the copy, nor the lock
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		c.put(cachedDoc{id: id, rev: rev, body: append([]byte(nil), body...)})
	}
}

// written returns what the cache holds of a document the writer cached
// (see cachedDoc.written); its body is not copied, and the caller must
// not modify it.
func (c *docCache) written(id string) (cachedDoc, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[id]
	if !ok {
		return cachedDoc{}, false
	}
	d := el.Value.(*cachedDoc)
	return *d, d.written
}

// keeps reports whether a body of that size is cached at all.
func (c *docCache) keeps(body []byte) bool { return len(body) <= min(maxCachedBody, c.max) }

// committed applies a commit's writes: the new version of every written
// document (body owned by the cache from now on), nil for a deleted one.
func (c *docCache) committed(docs []cachedDoc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, d := range docs {
		if d.body == nil {
			c.remove(d.id)
			continue
		}
		d.written = true
		c.put(d)
	}
}

func (c *docCache) put(d cachedDoc) {
	c.remove(d.id)
	if !c.keeps(d.body) {
		return
	}
	c.items[d.id] = c.lru.PushFront(&d)
	c.size += d.size()
	for c.size > c.max {
		c.remove(c.lru.Back().Value.(*cachedDoc).id)
	}
}

func (c *docCache) remove(id string) {
	if el, ok := c.items[id]; ok {
		c.size -= el.Value.(*cachedDoc).size()
		c.lru.Remove(el)
		delete(c.items, id)
	}
}
