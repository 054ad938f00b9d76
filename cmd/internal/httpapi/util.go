package httpapi

import (
	"context"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/orderledger/orderledger/eventstore"
)

type reflectStructField = reflect.StructField

func contextWithTimeout(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d)
}

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

// headPosition is the newest position written through this server.
func (s *Server) headPosition(r *http.Request) (eventstore.Position, error) {
	return s.head.get(), nil
}
