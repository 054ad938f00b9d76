package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

// Runner keeps a ReadModel up to date with a store: it subscribes to the
// order streams from the stored checkpoint and applies each Batch in one
// transaction together with the batch's checkpoint.
//
// Run is called by one goroutine at a time; WaitFor and Applied are safe
// for concurrent use with Run and with each other.
type Runner struct {
	store eventstore.Store
	rm    *ReadModel

	log        *slog.Logger
	sleep      func(ctx context.Context, d time.Duration) error
	minBackoff time.Duration
	maxBackoff time.Duration
	maxBatch   int

	// mu guards state, stopErr and done.
	mu      sync.Mutex
	state   runState
	stopErr error         // why the last Run ended (nil: its context ended)
	done    chan struct{} // closed when the current (or next) Run ends
}

type runState uint8

const (
	notStarted runState = iota
	running
	stopped
)

// Option configures a Runner.
type Option func(*Runner)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(r *Runner) { r.log = l } }

// WithSleep replaces the function that waits between resubscriptions; it
// must return ctx.Err() when ctx ends first. Tests inject one that does not
// sleep.
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(r *Runner) { r.sleep = sleep }
}

// WithBackoff sets the first and the largest (limit) wait before resubscribing
// after the feed was lost (default 100ms doubling up to 10s). The wait goes
// back to first after each applied batch.
func WithBackoff(first, limit time.Duration) Option {
	return func(r *Runner) { r.minBackoff, r.maxBackoff = first, max(first, limit) }
}

// WithMaxBatch caps the events per batch, hence per transaction
// (0, the default, lets the backend choose).
func WithMaxBatch(n int) Option { return func(r *Runner) { r.maxBatch = n } }

// NewRunner returns a Runner feeding rm from store. It does nothing until
// Run.
func NewRunner(store eventstore.Store, rm *ReadModel, opts ...Option) *Runner {
	r := &Runner{
		store:      store,
		rm:         rm,
		log:        slog.Default(),
		sleep:      sleepCtx,
		minBackoff: 100 * time.Millisecond,
		maxBackoff: 10 * time.Second,
		done:       make(chan struct{}),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run follows the store until ctx ends, then returns nil. It subscribes to
// the streams named with domain.StreamPrefix strictly after the stored
// checkpoint and applies every batch in one transaction with its
// checkpoint. When the feed is lost (eventstore.ErrUnavailable) it waits
// (bounded exponential backoff) and resubscribes from the stored
// checkpoint, so nothing is skipped or applied twice. Any other error stops
// it and is returned (and logged): an undecodable event (ErrBadEvent), an
// inconsistent model (ErrInconsistent), a closed store, a SQLite failure.
// Calling Run while it runs fails.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.state == running {
		r.mu.Unlock()
		return errors.New("projections: runner already running")
	}
	if r.state == stopped {
		r.done = make(chan struct{})
	}
	r.state, r.stopErr = running, nil
	r.mu.Unlock()

	err := r.run(ctx)
	if err != nil {
		r.log.Error("projection runner stopped", "checkpoint", r.rm.Applied().String(), "err", err)
	}

	r.mu.Lock()
	r.state, r.stopErr = stopped, err
	close(r.done)
	r.mu.Unlock()
	return err
}

func (r *Runner) run(ctx context.Context) error {
	backoff := r.minBackoff
	for {
		from, err := r.rm.Checkpoint(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		sub, err := r.store.Subscribe(ctx, from, eventstore.SubscribeOptions{
			StreamPrefix: domain.StreamPrefix, MaxBatch: r.maxBatch,
		})
		if err == nil {
			err = r.consume(ctx, sub, &backoff)
			sub.Close()
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, eventstore.ErrUnavailable):
			r.log.Warn("projection feed lost; resubscribing", "checkpoint", from.String(), "wait", backoff, "err", err)
			if r.sleep(ctx, backoff) != nil {
				return nil
			}
			backoff = min(2*backoff, r.maxBackoff)
		default:
			return fmt.Errorf("projections: subscription from %s: %w", from, err)
		}
	}
}

// consume applies batches until the subscription fails; it never returns nil.
func (r *Runner) consume(ctx context.Context, sub eventstore.Subscription, backoff *time.Duration) error {
	for {
		b, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		if err := r.rm.apply(ctx, b.Events, b.Checkpoint); err != nil {
			return err
		}
		*backoff = r.minBackoff
	}
}

// Applied returns the checkpoint of the last committed batch: every event
// at or before it is visible in the read model.
func (r *Runner) Applied() eventstore.Position { return r.rm.Applied() }

// Applied returns the checkpoint of the last committed batch (as loaded at
// open, then as moved by each commit).
func (rm *ReadModel) Applied() eventstore.Position {
	p, _ := rm.watch()
	return p
}

// WaitFor blocks until the read model has applied everything up to pos
// (Applied() >= pos), e.g. the Position of an append, for read-your-writes.
// It returns ctx.Err() when ctx ends first, and an error wrapping ErrStopped
// (and the runner's error, if any) when Run has ended. Before the first Run
// it waits for it. It is woken by each commit; it does not poll.
func (r *Runner) WaitFor(ctx context.Context, pos eventstore.Position) error {
	for {
		applied, changed := r.rm.watch()
		if pos.Compare(applied) <= 0 {
			return nil
		}
		r.mu.Lock()
		state, stopErr, done := r.state, r.stopErr, r.done
		r.mu.Unlock()
		if state == stopped {
			if stopErr != nil {
				return fmt.Errorf("wait for %s (applied %s): %w: %w", pos, applied, ErrStopped, stopErr)
			}
			return fmt.Errorf("wait for %s (applied %s): %w", pos, applied, ErrStopped)
		}
		select {
		case <-changed:
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
