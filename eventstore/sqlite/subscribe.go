package sqlite

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/orderledger/orderledger/eventstore"
)

// scanWindow bounds how many positions one Next scans for a filtered
// subscription, so that catching up through a long stretch of other
// streams' events returns pure checkpoints now and then instead of one
// long query.
const scanWindow = 16384

// Subscribe follows the global log strictly after `after`: it pages
// through the stored events (catch-up), then waits for the writer's
// commits (live). Only streams whose ID starts with opts.StreamPrefix are
// delivered; Next reports the skipped ones as checkpoint progress. A batch
// holds at most opts.MaxBatch events (default 512). The subscription ends
// when ctx ends, when it is closed, or when the store is closed. A
// negative MaxBatch fails with ErrInvalidArgument, a closed store with
// ErrClosed.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	if opts.MaxBatch < 0 {
		return nil, fmt.Errorf("subscribe: %w: MaxBatch %d", eventstore.ErrInvalidArgument, opts.MaxBatch)
	}
	unlock, err := s.readLock()
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	unlock()
	sub := &subscription{
		s:      s,
		ctx:    ctx,
		after:  min(after.Commit, math.MaxInt64),
		lo:     opts.StreamPrefix,
		hi:     prefixEnd(opts.StreamPrefix),
		max:    opts.MaxBatch,
		closed: make(chan struct{}),
	}
	if sub.max == 0 {
		sub.max = defaultMaxBatch
	}
	return sub, nil
}

// prefixEnd returns the least string greater than every string that starts
// with prefix (in SQLite's BINARY order, which is byte order), or nil if
// there is none (empty prefix, or only 0xff bytes).
func prefixEnd(prefix string) any {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return nil
}

// subscription implements eventstore.Subscription. Only the goroutine
// calling Next touches after; closed is closed once by Close.
type subscription struct {
	s     *Store
	ctx   context.Context // from Subscribe: ends the subscription
	after uint64          // the checkpoint: everything up to it was delivered or skipped
	lo    string          // StreamPrefix
	hi    any             // prefixEnd(StreamPrefix)
	max   int

	closeOnce sync.Once
	closed    chan struct{}
}

// Next returns the events after the checkpoint that are already committed
// (up to MaxBatch), or, with a prefix filter, a pure checkpoint when it
// scanned only other streams' events; when there is nothing new it waits
// for the next commit. It returns ctx.Err() (of Next's or Subscribe's
// context) when that ends, and ErrClosed after Close of the subscription
// or of the store.
func (sub *subscription) Next(ctx context.Context) (eventstore.Batch, error) {
	for {
		select {
		case <-sub.closed:
			return eventstore.Batch{}, fmt.Errorf("subscription: %w", eventstore.ErrClosed)
		case <-sub.s.done:
			return eventstore.Batch{}, fmt.Errorf("subscription: %w", eventstore.ErrClosed)
		case <-sub.ctx.Done():
			return eventstore.Batch{}, sub.ctx.Err()
		case <-ctx.Done():
			return eventstore.Batch{}, ctx.Err()
		default:
		}
		// Take the wake-up channel before looking at the log: a commit
		// after this point closes it, so the wait below cannot miss one.
		wake, head := sub.s.watch()
		if head > sub.after {
			upto := min(head, sub.after+scanWindow)
			events, err := sub.s.query(ctx, sub.s.r.feed, int64(sub.after), int64(upto), sub.lo, sub.hi, int64(sub.max))
			if err != nil {
				if ctx.Err() != nil {
					return eventstore.Batch{}, ctx.Err()
				}
				return eventstore.Batch{}, fmt.Errorf("subscription after %d: %w", sub.after, err)
			}
			// A full batch may stop short of upto; otherwise everything in
			// (after, upto] was delivered or skipped by the filter.
			cp := upto
			if len(events) == sub.max {
				cp = events[len(events)-1].Position.Commit
			}
			sub.after = cp
			return eventstore.Batch{Events: events, Checkpoint: eventstore.Position{Commit: cp, Prepare: cp}}, nil
		}
		select {
		case <-wake:
		case <-sub.closed:
		case <-sub.s.done:
		case <-sub.ctx.Done():
		case <-ctx.Done():
		}
	}
}

// Close ends the subscription; a Next waiting in another goroutine returns
// ErrClosed. It is safe to call more than once and always returns nil.
func (sub *subscription) Close() error {
	sub.closeOnce.Do(func() { close(sub.closed) })
	return nil
}
