package app

import (
	"testing"

	"github.com/orderledger/orderledger/domain"
)

func TestStateCacheLRU(t *testing.T) {
	c := newStateCache(2)
	st := func(rev int64) streamState {
		return streamState{order: domain.Order{Events: int(rev + 1)}, revision: rev}
	}
	c.put("a", st(0))
	c.put("b", st(0))
	if _, ok := c.get("a"); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	c.put("c", st(0)) // evicts b, the least recently used
	if _, ok := c.get("b"); ok {
		t.Error("b still cached: the least recently used entry must go first")
	}
	for _, s := range []string{"a", "c"} {
		if _, ok := c.get(s); !ok {
			t.Errorf("%s evicted, want it cached", s)
		}
	}
	if n := c.ll.Len(); n != 2 || len(c.items) != 2 {
		t.Errorf("cache holds %d list entries and %d map entries, want 2 and 2", n, len(c.items))
	}

	// put never moves a stream back to an older revision (a slow loader
	// finishing after a faster writer).
	c.put("a", st(5))
	c.put("a", st(3))
	if got, _ := c.get("a"); got.revision != 5 {
		t.Errorf("a at revision %d, want 5", got.revision)
	}
	c.drop("a")
	if _, ok := c.get("a"); ok {
		t.Error("a still cached after drop")
	}
	c.drop("never-there") // no-op

	off := newStateCache(0)
	off.put("a", st(0))
	if _, ok := off.get("a"); ok {
		t.Error("a size-0 cache returned an entry")
	}
	off.drop("a")
}
