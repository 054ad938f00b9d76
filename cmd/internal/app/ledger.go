// Package app holds the ledger's use cases: load an order stream, fold it
// into state, decide, and append the new events with an expected-revision
// check. It knows nothing of HTTP or of WeChat's wire formats; the handlers
// in httpapi call it with verified, typed notifications.
//
// Exactly-once comes from three layers that each suffice for their case:
//  1. the decision: a notification already recorded in the stream decides
//     to no events (retries, replays, late copies);
//  2. the expected revision: two concurrent copies both decide from revision
//     r, only one append at r wins; the loser re-reads and decides again,
//     now finding the fact recorded (bounded by MaxAttempts);
//  3. deterministic event IDs: an append whose reply was lost (crash,
//     timeout) is retried with the same IDs and the store recognises it.
package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

// ErrContention: the stream kept changing under us for MaxAttempts rounds.
// Nothing was acknowledged; the caller answers "retry later".
var ErrContention = errors.New("app: too much contention on the order stream")

// errIDReused: an event ID is stored on another stream (the store says so
// twice in a row, even after a fresh read): a WeChat id reused across
// orders. RecordPayment and RecordRefund then record an ID_REUSED anomaly.
var errIDReused = errors.New("app: event id already stored on another stream")

// ErrCorruptStream: a stored event of a known type could not be decoded.
// The stream is left alone and the notification is not acknowledged.
var ErrCorruptStream = errors.New("app: stored event cannot be decoded")

// Ledger runs the use cases against a store. Safe for concurrent use.
type Ledger struct {
	store eventstore.Store
	now   func() time.Time
	// maxAttempts bounds decide/append rounds on a revision conflict.
	maxAttempts int
	cache       *stateCache
}

// Option configures a Ledger.
type Option func(*Ledger)

// WithClock injects the clock used to stamp placements and anomalies.
func WithClock(now func() time.Time) Option { return func(l *Ledger) { l.now = now } }

// WithMaxAttempts bounds the decide/append rounds on conflict (default 8).
func WithMaxAttempts(n int) Option { return func(l *Ledger) { l.maxAttempts = n } }

// WithCacheSize sets how many order states are kept in memory (default
// 100,000; 0 disables the cache). The cache only saves reads: every append
// is still checked against the stored revision.
func WithCacheSize(n int) Option { return func(l *Ledger) { l.cache = newStateCache(n) } }

// New returns a Ledger over store.
func New(store eventstore.Store, opts ...Option) *Ledger {
	l := &Ledger{store: store, now: time.Now, maxAttempts: 8, cache: newStateCache(100_000)}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Store returns the underlying event store.
func (l *Ledger) Store() eventstore.Store { return l.store }

// Outcome says what a use case did.
type Outcome struct {
	// Appended are the events written by this call; empty when the
	// command or notification was already recorded (Duplicate).
	Appended []domain.Event
	// Duplicate is true when nothing new had to be written.
	Duplicate bool
	// Order is the state of the stream after the call. Read-only: it may
	// be shared with the cache.
	Order domain.Order
	// Revision of the stream's last event (-1: the stream is empty).
	Revision int64
	// Position of the stream's last event in the global log: wait for a
	// projection to reach it to read your own write.
	Position eventstore.Position
	// Attempts is how many decide/append rounds it took.
	Attempts int
}

// PlaceOrder records a new order. Placing the identical order again is a
// no-op (Outcome.Duplicate); other content under the same out_trade_no
// returns domain.ErrOrderConflict.
func (l *Ledger) PlaceOrder(ctx context.Context, cmd domain.OrderPlaced) (Outcome, error) {
	if cmd.PlacedAt.IsZero() {
		cmd.PlacedAt = l.now()
	}
	return l.execute(ctx, domain.StreamID(cmd.MchID, cmd.OutTradeNo), func(o domain.Order) ([]domain.Event, error) {
		return domain.DecidePlace(o, cmd)
	})
}

// CloseOrder closes an unpaid order.
func (l *Ledger) CloseOrder(ctx context.Context, mchID, outTradeNo, reason string) (Outcome, error) {
	cmd := domain.OrderClosed{MchID: mchID, OutTradeNo: outTradeNo, Reason: reason, ClosedAt: l.now()}
	return l.execute(ctx, domain.StreamID(mchID, outTradeNo), func(o domain.Order) ([]domain.Event, error) {
		return domain.DecideClose(o, cmd)
	})
}

// RecordPayment records a verified payment notification exactly once.
// It returns nil error only when the outcome is durable: the caller may
// then acknowledge the notification.
func (l *Ledger) RecordPayment(ctx context.Context, p domain.Payment) (Outcome, error) {
	if p.MchID == "" || p.OutTradeNo == "" {
		return Outcome{}, fmt.Errorf("%w: payment without mch_id or out_trade_no", domain.ErrInvalid)
	}
	if p.ResultCode == "SUCCESS" && p.TransactionID == "" {
		return Outcome{}, fmt.Errorf("%w: successful payment without transaction_id", domain.ErrInvalid)
	}
	stream := domain.StreamID(p.MchID, p.OutTradeNo)
	// A retry of a payment this process has already seen recorded needs no
	// read: DecidePayment answers "no events" for a SUCCESS whose
	// transaction the order holds, and an order's transactions only ever
	// grow (the stream is append-only; Evolve never removes one), so the
	// stream's current state decides the same. The cache holds only states
	// folded from committed (fsynced) events, so this acknowledgement is as
	// durable as one after a read. Revision and Position may lag the
	// stream's latest when another process appended since.
	if p.ResultCode == "SUCCESS" {
		if st, ok := l.cache.get(stream); ok {
			if _, seen := st.order.Transactions[p.TransactionID]; seen {
				return Outcome{Duplicate: true, Order: st.order, Revision: st.revision, Position: st.position, Attempts: 1}, nil
			}
		}
	}
	now := l.now()
	return l.record(ctx, stream,
		func(o domain.Order) []domain.Event { return domain.DecidePayment(o, p, now) },
		func(o domain.Order) []domain.Event { return domain.DecideIDReused(o, &p, nil, now) })
}

// RecordRefund records a verified refund notification exactly once.
func (l *Ledger) RecordRefund(ctx context.Context, r domain.Refund) (Outcome, error) {
	if r.MchID == "" || r.OutTradeNo == "" || r.RefundID == "" {
		return Outcome{}, fmt.Errorf("%w: refund without mch_id, out_trade_no or refund_id", domain.ErrInvalid)
	}
	now := l.now()
	return l.record(ctx, domain.StreamID(r.MchID, r.OutTradeNo),
		func(o domain.Order) []domain.Event { return domain.DecideRefund(o, r, now) },
		func(o domain.Order) []domain.Event { return domain.DecideIDReused(o, nil, &r, now) })
}

// record runs a notification's decision; if its WeChat id turns out to be
// stored on another order (errIDReused), it records the reused decision
// instead, so a signed notification is never refused for ever.
func (l *Ledger) record(ctx context.Context, stream string, decide, reused func(domain.Order) []domain.Event) (Outcome, error) {
	out, err := l.execute(ctx, stream, func(o domain.Order) ([]domain.Event, error) { return decide(o), nil })
	if errors.Is(err, errIDReused) {
		return l.execute(ctx, stream, func(o domain.Order) ([]domain.Event, error) { return reused(o), nil })
	}
	return out, err
}

// Load returns the current state of an order stream (read-only).
func (l *Ledger) Load(ctx context.Context, mchID, outTradeNo string) (Outcome, error) {
	st, err := l.load(ctx, domain.StreamID(mchID, outTradeNo))
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Duplicate: true, Order: st.order, Revision: st.revision, Position: st.position}, nil
}

// execute is the one loop every use case runs: load, decide, append at the
// revision loaded; on a conflict drop the cached state and go again.
func (l *Ledger) execute(ctx context.Context, stream string, decide func(domain.Order) ([]domain.Event, error)) (Outcome, error) {
	idConflicts := 0 // consecutive ErrEventIDConflict answers
	for attempt := 1; attempt <= l.maxAttempts; attempt++ {
		st, err := l.load(ctx, stream)
		if err != nil {
			return Outcome{}, err
		}
		events, err := decide(st.order)
		if err != nil {
			return Outcome{Order: st.order, Revision: st.revision, Position: st.position, Attempts: attempt}, err
		}
		if len(events) == 0 {
			return Outcome{Duplicate: true, Order: st.order, Revision: st.revision, Position: st.position, Attempts: attempt}, nil
		}
		data := make([]eventstore.EventData, len(events))
		for i, e := range events {
			typ, payload, err := domain.Marshal(e)
			if err != nil {
				return Outcome{}, err
			}
			data[i] = eventstore.EventData{ID: domain.ID(e), Type: typ, ContentType: "application/json", Data: payload}
		}
		expected := eventstore.NoStream()
		if st.revision >= 0 {
			expected = eventstore.Exact(uint64(st.revision))
		}
		res, err := l.store.Append(ctx, stream, expected, data...)
		if errors.Is(err, eventstore.ErrEventIDConflict) {
			// Once is a concurrent copy that won with other evidence bytes;
			// the re-read below finds it and decides to nothing. Twice in a
			// row, after that re-read, means the ID lives on another stream.
			if idConflicts++; idConflicts >= 2 {
				l.cache.drop(stream)
				return Outcome{}, fmt.Errorf("append %s: %w: %w", stream, errIDReused, err)
			}
		} else {
			idConflicts = 0
		}
		switch {
		case errors.Is(err, eventstore.ErrWrongExpectedRevision), errors.Is(err, eventstore.ErrEventIDConflict):
			// Someone else wrote first (often: a concurrent copy of the
			// same notification). Decide again from what is stored.
			l.cache.drop(stream)
			continue
		case err != nil:
			l.cache.drop(stream) // outcome may be unknown: re-read next time
			return Outcome{}, fmt.Errorf("append %s: %w", stream, err)
		}
		next := st.order.Clone()
		for _, e := range events {
			next = domain.Evolve(next, e)
		}
		nst := streamState{order: next, revision: int64(res.NextExpected), position: res.Position}
		if res.Duplicate {
			// The very same events were already there (a retried append):
			// the state after them is what we computed.
			l.cache.drop(stream)
			return Outcome{Duplicate: true, Order: next, Revision: nst.revision, Position: nst.position, Attempts: attempt}, nil
		}
		l.cache.put(stream, nst)
		return Outcome{Appended: events, Order: next, Revision: nst.revision, Position: nst.position, Attempts: attempt}, nil
	}
	return Outcome{}, fmt.Errorf("%s after %d attempts: %w", stream, l.maxAttempts, ErrContention)
}

// streamState is an order folded up to a revision.
type streamState struct {
	order    domain.Order // read-only once published
	revision int64        // -1 for an empty stream
	position eventstore.Position
}

// load returns the stream's state: the cached one caught up with whatever
// was appended since (by this process or any other), else a full fold.
func (l *Ledger) load(ctx context.Context, stream string) (streamState, error) {
	st, ok := l.cache.get(stream)
	if !ok {
		st = streamState{revision: -1}
	}
	from := uint64(st.revision + 1)
	recs, err := l.store.ReadStream(ctx, stream, from, 0)
	if err != nil {
		return streamState{}, fmt.Errorf("read %s: %w", stream, err)
	}
	if len(recs) == 0 {
		return st, nil
	}
	next := st.order.Clone()
	for _, rec := range recs {
		e, err := domain.Unmarshal(rec.Type, rec.Data)
		if err != nil {
			return streamState{}, fmt.Errorf("%w: %s revision %d: %w", ErrCorruptStream, stream, rec.Revision, err)
		}
		next = domain.Evolve(next, e)
	}
	last := recs[len(recs)-1]
	st = streamState{order: next, revision: int64(last.Revision), position: last.Position}
	l.cache.put(stream, st)
	return st, nil
}
