package httpapi

import (
	"sync"

	"github.com/orderledger/orderledger/eventstore"
)

// highWater remembers the newest position this server has written, so that
// a totals read can wait for the projections to include its own writes.
type highWater struct {
	mu  sync.Mutex // guards pos
	pos eventstore.Position
}

func (h *highWater) note(p eventstore.Position) {
	h.mu.Lock()
	if h.pos.Less(p) {
		h.pos = p
	}
	h.mu.Unlock()
}

func (h *highWater) get() eventstore.Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pos
}
