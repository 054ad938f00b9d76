package app

import (
	"container/list"
	"sync"
)

// stateCache is a bounded LRU of folded order states. It only saves reads:
// correctness never depends on it, because every load still reads the
// stream from the cached revision on, and every append is checked against
// the stored revision.
type stateCache struct {
	max   int
	mu    sync.Mutex // guards ll and items
	ll    *list.List // front = most recently used; values are *cacheEntry
	items map[string]*list.Element
}

type cacheEntry struct {
	stream string
	state  streamState
}

func newStateCache(max int) *stateCache {
	return &stateCache{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *stateCache) get(stream string) (streamState, bool) {
	if c == nil || c.max <= 0 {
		return streamState{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[stream]
	if !ok {
		return streamState{}, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*cacheEntry).state, true
}

// put stores st unless the cache already holds a newer revision.
func (c *stateCache) put(stream string, st streamState) {
	if c == nil || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[stream]; ok {
		e := el.Value.(*cacheEntry)
		if e.state.revision < st.revision {
			e.state = st
		}
		c.ll.MoveToFront(el)
		return
	}
	c.items[stream] = c.ll.PushFront(&cacheEntry{stream: stream, state: st})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).stream)
	}
}

func (c *stateCache) drop(stream string) {
	if c == nil || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[stream]; ok {
		c.ll.Remove(el)
		delete(c.items, stream)
	}
}
