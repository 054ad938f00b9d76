package esdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderledger/orderledger/eventstore"
)

// defaultMaxBatch caps a Batch when SubscribeOptions.MaxBatch is 0.
const defaultMaxBatch = 256

// Subscribe implements eventstore.Store with a catch-up subscription to $all
// (SubscribeToAll). The start is always explicit (the client's default is
// the END, i.e. live only): the beginning of the log for the zero position,
// otherwise `after`, and events at or before `after` are skipped here as
// well as by the server. The server filters on the stream-name prefix
// (namespace + opts.StreamPrefix), or, without a prefix, excludes system
// event types; system events that still arrive are dropped here. The
// server's checkpoints (CheckPointReached) come out as Batches without
// events: persist Batch.Checkpoint and a restart does not rescan what the
// filter skipped. The client never resubscribes after a drop: Next then
// returns eventstore.ErrUnavailable (resubscribe from the last checkpoint),
// unless WithAutoResubscribe is set.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	if opts.MaxBatch < 0 {
		return nil, fmt.Errorf("subscribe: %w: MaxBatch %d", eventstore.ErrInvalidArgument, opts.MaxBatch)
	}
	if strings.HasPrefix(opts.StreamPrefix, "$") {
		return nil, fmt.Errorf("subscribe: %w: prefix %q names system streams", eventstore.ErrInvalidArgument, opts.StreamPrefix)
	}
	maxBatch := opts.MaxBatch
	if maxBatch == 0 {
		maxBatch = defaultMaxBatch
	}
	sctx, cancel := context.WithCancel(ctx)
	sub := &subscription{
		s:        s,
		prefix:   opts.StreamPrefix,
		maxBatch: maxBatch,
		ctx:      sctx,
		cancel:   cancel,
		items:    make(chan item, maxBatch),
		closed:   make(chan struct{}),
		pumped:   make(chan struct{}),
	}
	first, err := sub.open(ctx, after)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe after %v: %w", after, s.classify(err))
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		first.release()
		cancel()
		return nil, fmt.Errorf("subscribe: %w", eventstore.ErrClosed)
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	go sub.pump(first, after)
	return sub, nil
}

// item is what the pump hands to Next: an event, progress through skipped
// events (a checkpoint), or the end of the feed.
type item struct {
	event    *eventstore.RecordedEvent
	position eventstore.Position
	err      error
}

// subscription implements eventstore.Subscription. A pump goroutine reads
// the client's subscription (whose Recv ignores contexts) into items; Next
// only reads items, so it can honour its own context.
type subscription struct {
	s        *Store
	prefix   string // opts.StreamPrefix: the namespace is not part of it
	maxBatch int

	ctx    context.Context // ends the pump and the client subscription
	cancel context.CancelFunc
	items  chan item

	closeOnce sync.Once
	closed    chan struct{} // closed by shutdown
	closeErr  error         // why; written before closed is closed
	pumped    chan struct{} // closed when the pump has returned

	// Owned by the goroutine calling Next.
	failed error // terminal error already seen
	stash  *item // taken from items but not yet handed out
}

// clientSub is a client subscription and the client it runs on, which it
// keeps in use (conn.inflight) until release.
type clientSub struct {
	es *esdbclient.Subscription
	cn *conn
}

func (cs clientSub) release() {
	_ = cs.es.Close()
	cs.cn.release()
}

// open starts a client subscription strictly after `after`. waitCtx bounds
// the wait for the server's confirmation; the subscription itself lives on
// sub.ctx.
func (sub *subscription) open(waitCtx context.Context, after eventstore.Position) (clientSub, error) {
	o := esdbclient.SubscribeToAllOptions{
		From:               allFrom(after),
		MaxSearchWindow:    sub.s.opts.searchWindow,
		CheckpointInterval: sub.s.opts.checkpointMult,
	}
	if prefix := sub.s.opts.namespace + sub.prefix; prefix != "" {
		o.Filter = &esdbclient.SubscriptionFilter{Type: esdbclient.StreamFilterType, Prefixes: []string{prefix}}
	} else {
		o.Filter = esdbclient.ExcludeSystemEventsFilter()
	}
	waitCtx, cancel := context.WithCancel(waitCtx)
	defer cancel()
	stop := context.AfterFunc(sub.ctx, cancel)
	defer stop()
	return retryRead(sub.s, waitCtx, func(callCtx context.Context, cn *conn) (clientSub, error) {
		es, err := cn.client.SubscribeToAll(sub.ctx, o)
		if err != nil {
			return clientSub{}, err
		}
		if callCtx.Err() != nil {
			_ = es.Close() // the caller has left
			return clientSub{}, callCtx.Err()
		}
		cn.inflight.Add(1) // still inside call's hold on cn
		return clientSub{es, cn}, nil
	})
}

// pump moves the client's messages into items until the subscription ends.
func (sub *subscription) pump(cs clientSub, after eventstore.Position) {
	defer close(sub.pumped)
	last := after // last position handed out, as event or checkpoint
	attempt := 0
	for {
		err := sub.forward(cs.es, &last, &attempt)
		if isUnavailable(err) {
			cs.cn.retire() // resubscribe on a fresh connection
		}
		cs.release()
		if sub.ctx.Err() != nil {
			return
		}
		if !sub.s.opts.autoResubscribe {
			sub.send(item{err: fmt.Errorf("subscription dropped: %w", sub.s.unavailable(err))})
			return
		}
		// Resubscribe from what was handed out: nothing skipped, nothing
		// repeated.
		for {
			if sub.s.sleep(sub.ctx, sub.s.backoff(attempt)) != nil {
				return
			}
			attempt++
			cs, err = sub.open(sub.ctx, last)
			if err == nil {
				break
			}
			if errors.Is(err, eventstore.ErrClosed) || sub.ctx.Err() != nil {
				sub.send(item{err: fmt.Errorf("resubscribe: %w", sub.s.classify(err))})
				return
			}
		}
	}
}

// forward relays one client subscription until it drops; it returns why.
func (sub *subscription) forward(es *esdbclient.Subscription, last *eventstore.Position, attempt *int) error {
	for {
		m := es.Recv()
		switch {
		case m.SubscriptionDropped != nil:
			if m.SubscriptionDropped.Error != nil {
				return m.SubscriptionDropped.Error
			}
			return errors.New("subscription dropped")
		case m.EventAppeared != nil:
			*attempt = 0
			rec, ok := sub.s.convert(m.EventAppeared)
			if !last.Less(rec.Position) {
				continue // at or before what was handed out
			}
			*last = rec.Position
			it := item{position: rec.Position}
			if ok && strings.HasPrefix(rec.StreamID, sub.prefix) {
				it.event = &rec
			}
			if !sub.send(it) {
				return sub.ctx.Err()
			}
		case m.CheckPointReached != nil:
			p := position(*m.CheckPointReached)
			if !last.Less(p) {
				continue
			}
			*last = p
			if !sub.send(item{position: p}) {
				return sub.ctx.Err()
			}
		}
		// CaughtUp, FellBehind: nothing to hand out.
	}
}

// send hands it to Next; false when the subscription ended first.
func (sub *subscription) send(it item) bool {
	select {
	case sub.items <- it:
		return true
	case <-sub.ctx.Done():
		return false
	}
}

// Next implements eventstore.Subscription. It returns ctx.Err() when ctx
// ends, eventstore.ErrClosed after Close (or the store's Close), the
// subscription context's error once that ends, and an error wrapping
// eventstore.ErrUnavailable when the server dropped the feed (resubscribe
// from the last Batch.Checkpoint). A batch holds events and ends at the last
// of them; progress through events the filter skipped comes in batches of
// its own, without events. Not safe for concurrent use.
func (sub *subscription) Next(ctx context.Context) (eventstore.Batch, error) {
	if sub.failed != nil {
		return eventstore.Batch{}, sub.failed
	}
	select {
	case <-sub.closed:
		return eventstore.Batch{}, sub.closeErr
	default:
	}
	it, err := sub.take(ctx)
	if err != nil {
		return eventstore.Batch{}, err
	}
	var b eventstore.Batch
	for {
		switch {
		case it.err != nil:
			sub.failed = it.err
			if len(b.Events) == 0 && b.Checkpoint.IsZero() {
				return eventstore.Batch{}, it.err
			}
			return b, nil // the error comes with the next call
		case it.event == nil && len(b.Events) > 0:
			// Progress past skipped events after events: keep it for the
			// next batch, so that this one ends at its last event.
			sub.stash = &it
			return b, nil
		case it.event != nil:
			b.Events = append(b.Events, *it.event)
		}
		b.Checkpoint = it.position
		if len(b.Events) >= sub.maxBatch {
			return b, nil
		}
		select {
		case it = <-sub.items:
			continue
		default:
		}
		return b, nil
	}
}

// take returns the next item, waiting for it.
func (sub *subscription) take(ctx context.Context) (item, error) {
	if sub.stash != nil {
		it := *sub.stash
		sub.stash = nil
		return it, nil
	}
	select {
	case it := <-sub.items:
		return it, nil
	case <-ctx.Done():
		return item{}, ctx.Err()
	case <-sub.closed:
		return item{}, sub.closeErr
	case <-sub.pumped:
		// The pump ended without a final item: the subscription's context
		// ended. Items it sent before still come first.
		select {
		case it := <-sub.items:
			return it, nil
		default:
		}
		if err := sub.ctx.Err(); err != nil {
			return item{}, err
		}
		return item{}, eventstore.ErrClosed
	}
}

// Close implements eventstore.Subscription; safe to call more than once.
func (sub *subscription) Close() error {
	sub.s.mu.Lock()
	delete(sub.s.subs, sub)
	sub.s.mu.Unlock()
	sub.shutdown(eventstore.ErrClosed)
	return nil
}

// shutdown ends the subscription with err for Next.
func (sub *subscription) shutdown(err error) {
	sub.closeOnce.Do(func() {
		sub.closeErr = err
		close(sub.closed)
		sub.cancel()
	})
}
