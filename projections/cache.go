package projections

// stateCache keeps the folded states of recently written orders rows, so
// that the next event of an order (typically its payment, soon after it was
// placed) is applied without reading and decoding its state_json again.
//
// Its rules, which make it invisible in the results:
//
//   - Only apply uses it, under ReadModel.wmu, and the ReadModel is the only
//     writer of its file (the lock file): a cached row is exactly the
//     committed orders row (its revision, and the domain.Order its
//     state_json decodes to, which encodes to the same state_json), never
//     anything newer or older.
//   - A batch takes the rows it touches OUT of the cache (take) and evolves
//     them privately; they are put back only after the batch's transaction
//     committed. On any failure (rollback) apply clears the cache, so a
//     rolled-back state is never seen again: the rows are read from the
//     file.
//   - It lives in memory only: a reopened ReadModel (or a Rebuild) starts
//     empty.
//
// It is an LRU (see put for where an entry goes in) bounded by the sum of
// the entries' weights, an estimate of their heap: the length of their
// state_json plus a fixed overhead per entry. A zero budget disables it.
type stateCache struct {
	budget int // sum of weights allowed; 0: disabled
	used   int
	m      map[orderKey]*orderRow
	lru    orderRow // sentinel: lru.next is the most recently used, lru.prev the least
}

// defaultCacheBudget bounds a ReadModel's state cache: 64 MiB of weight,
// about as much heap. That holds some 70,000 orders placed but not yet paid
// (the hot set: every order between its placement and its payment
// notification), or some 25,000 paid ones with a v2-sized evidence body.
const defaultCacheBudget = 64 << 20

// entryOverhead is added to each entry's weight for the row, the map entry
// and the decoded maps and records. (Measured: an order placed weighs about
// 950 and takes about 900 bytes of heap; paid, with a 700-byte evidence
// body, about 2,100 and 2,400.)
const entryOverhead = 512

func newStateCache(budget int) *stateCache {
	c := &stateCache{budget: budget, m: map[orderKey]*orderRow{}}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

// take removes and returns the cached row of k, or nil.
func (c *stateCache) take(k orderKey) *orderRow {
	r := c.m[k]
	if r != nil {
		c.unlink(r)
	}
	return r
}

// put caches a committed row, evicting the least recently used ones beyond
// the budget. r must not be cached already.
//
// An order awaiting its payment goes in as the most recently used. A
// settled one (paid or closed) goes in as the least recently used: it stays
// while there is room, but is the first to make room. Its next event (a
// refund, say) may come much later, if ever, while an order just placed is
// typically paid within minutes; with plain LRU, a burst of payments would
// push out the very orders whose payments come next.
func (c *stateCache) put(r *orderRow) {
	if c.budget <= 0 || !r.exists {
		return
	}
	r.dirty = false
	w := r.weight()
	if w > c.budget {
		return
	}
	if old := c.m[r.key]; old != nil { // cannot happen (rows are taken out); be safe
		c.unlink(old)
	}
	c.m[r.key] = r
	c.used += w
	if r.order.Payment != nil || r.order.Closed != nil {
		r.prev, r.next = c.lru.prev, &c.lru // cold end
	} else {
		r.prev, r.next = &c.lru, c.lru.next // hot end
	}
	r.prev.next, r.next.prev = r, r
	for c.used > c.budget {
		c.unlink(c.lru.prev)
	}
}

// clear forgets every entry.
func (c *stateCache) clear() {
	clear(c.m)
	c.used = 0
	c.lru.next, c.lru.prev = &c.lru, &c.lru
}

func (c *stateCache) len() int { return len(c.m) }

func (c *stateCache) unlink(r *orderRow) {
	delete(c.m, r.key)
	c.used -= r.weight()
	r.prev.next, r.next.prev = r.next, r.prev
	r.prev, r.next = nil, nil
}

func (r *orderRow) weight() int { return r.size + entryOverhead }
