package projections

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/orderledger/orderledger/eventstore"
)

// memStore is a small in-memory eventstore.Store for the tests of this
// package. Positions are deliberately sparse and have Prepare != Commit
// (event n, 1-based, is at 10n/10n-3), like EventStoreDB's, so nothing here
// may assume dense positions.
type memStore struct {
	now func() time.Time // stamps RecordedAt

	// mu guards the fields below.
	mu      sync.Mutex
	log     []eventstore.RecordedEvent
	streams map[string][]int // stream -> indexes into log, by revision
	ids     map[eventstore.EventID]int
	changed chan struct{} // closed and replaced on every append (broadcast)
	closed  bool
}

var _ eventstore.Store = (*memStore)(nil)

func newMemStore(now func() time.Time) *memStore {
	return &memStore{
		now:     now,
		streams: map[string][]int{},
		ids:     map[eventstore.EventID]int{},
		changed: make(chan struct{}),
	}
}

// memPos is the position of the n-th event (1-based).
func memPos(n int) eventstore.Position {
	return eventstore.Position{Commit: uint64(n) * 10, Prepare: uint64(n)*10 - 3}
}

func (s *memStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if stream == "" || len(events) == 0 {
		return eventstore.AppendResult{}, fmt.Errorf("append %q: %w", stream, eventstore.ErrInvalidArgument)
	}
	for _, e := range events {
		if e.ID.IsZero() || e.Type == "" {
			return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, eventstore.ErrInvalidArgument)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, eventstore.ErrClosed)
	}
	idx := s.streams[stream]
	// Idempotency: the same events already stored right after expected.
	start := -1
	switch expected.Kind {
	case eventstore.ExpectNoStream:
		start = 0
	case eventstore.ExpectRevision:
		start = int(expected.Revision) + 1
	default:
		if i, ok := s.ids[events[0].ID]; ok && s.log[i].StreamID == stream {
			start = int(s.log[i].Revision)
		}
	}
	if start >= 0 && start+len(events) <= len(idx) {
		dup := true
		for k, e := range events {
			r := s.log[idx[start+k]]
			if r.ID != e.ID || r.Type != e.Type || !bytes.Equal(r.Data, e.Data) {
				dup = false
				break
			}
		}
		if dup {
			last := s.log[idx[start+len(events)-1]]
			return eventstore.AppendResult{NextExpected: last.Revision, Position: last.Position, Duplicate: true}, nil
		}
	}
	for _, e := range events {
		if _, ok := s.ids[e.ID]; ok {
			return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, eventstore.ErrEventIDConflict)
		}
	}
	ok := false
	switch expected.Kind {
	case eventstore.ExpectAny:
		ok = true
	case eventstore.ExpectNoStream:
		ok = len(idx) == 0
	case eventstore.ExpectStreamExists:
		ok = len(idx) > 0
	case eventstore.ExpectRevision:
		ok = len(idx) > 0 && uint64(len(idx)-1) == expected.Revision
	}
	if !ok {
		return eventstore.AppendResult{}, fmt.Errorf("append %s (%s): %w", stream, expected, eventstore.ErrWrongExpectedRevision)
	}
	at := s.now().UTC()
	for _, e := range events {
		n := len(s.log) + 1
		rec := eventstore.RecordedEvent{
			StreamID: stream, ID: e.ID, Type: e.Type, ContentType: e.ContentType,
			Data: slices.Clone(e.Data), Metadata: slices.Clone(e.Metadata),
			Revision: uint64(len(idx)), Position: memPos(n), RecordedAt: at,
		}
		s.ids[e.ID] = len(s.log)
		idx = append(idx, len(s.log))
		s.log = append(s.log, rec)
	}
	s.streams[stream] = idx
	close(s.changed)
	s.changed = make(chan struct{})
	last := s.log[len(s.log)-1]
	return eventstore.AppendResult{NextExpected: last.Revision, Position: last.Position}, nil
}

func (s *memStore) ReadStream(ctx context.Context, stream string, from uint64, max int) ([]eventstore.RecordedEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, eventstore.ErrClosed
	}
	out := []eventstore.RecordedEvent{}
	idx := s.streams[stream]
	for r := from; r < uint64(len(idx)) && (max <= 0 || len(out) < max); r++ {
		out = append(out, s.log[idx[r]])
	}
	return out, nil
}

// firstAfter returns the index of the first event strictly after p.
// Callers hold mu.
func (s *memStore) firstAfter(p eventstore.Position) int {
	return sort.Search(len(s.log), func(i int) bool { return p.Less(s.log[i].Position) })
}

func (s *memStore) ReadAll(ctx context.Context, after eventstore.Position, max int) ([]eventstore.RecordedEvent, error) {
	if max <= 0 {
		return nil, eventstore.ErrInvalidArgument
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, eventstore.ErrClosed
	}
	i := s.firstAfter(after)
	return slices.Clone(s.log[i:min(len(s.log), i+max)]), nil
}

// end returns the position of the last event.
func (s *memStore) end() eventstore.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.log) == 0 {
		return eventstore.Start
	}
	return s.log[len(s.log)-1].Position
}

func (s *memStore) Subscribe(ctx context.Context, after eventstore.Position, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, eventstore.ErrClosed
	}
	max := opts.MaxBatch
	if max <= 0 {
		max = 64
	}
	return &memSub{s: s, after: after, prefix: opts.StreamPrefix, max: max}, nil
}

func (s *memStore) Features() eventstore.Features {
	return eventstore.Features{Name: "mem", DetectsContentConflict: true, GlobalIDUniqueness: true}
}

func (s *memStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.changed)
	}
	return nil
}

// memSub follows the log. It reports progress through filtered events with
// an empty batch, as the contract allows.
type memSub struct {
	s      *memStore
	after  eventstore.Position
	prefix string
	max    int
	closed bool
}

func (m *memSub) Next(ctx context.Context) (eventstore.Batch, error) {
	for {
		if m.closed {
			return eventstore.Batch{}, eventstore.ErrClosed
		}
		m.s.mu.Lock()
		if m.s.closed {
			m.s.mu.Unlock()
			return eventstore.Batch{}, eventstore.ErrClosed
		}
		var b eventstore.Batch
		scanned := false
		for i := m.s.firstAfter(m.after); i < len(m.s.log) && len(b.Events) < m.max; i++ {
			e := m.s.log[i]
			scanned = true
			b.Checkpoint = e.Position
			if strings.HasPrefix(e.StreamID, m.prefix) {
				b.Events = append(b.Events, e)
			}
		}
		changed := m.s.changed
		m.s.mu.Unlock()
		if scanned {
			m.after = b.Checkpoint
			return b, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return eventstore.Batch{}, ctx.Err()
		}
	}
}

func (m *memSub) Close() error { m.closed = true; return nil }
