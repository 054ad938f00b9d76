package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/orderledger/orderledger/eventstore"
)

// collect calls Next until it has n events and returns them with the last
// checkpoint. It fails the test on an error, on a batch larger than
// maxBatch (when > 0), on events out of order or beyond n, and on a
// checkpoint that goes back or lies before the batch's last event. Call it
// from the test's goroutine; other goroutines use collectErr.
func collect(t testing.TB, sub eventstore.Subscription, n, maxBatch int) ([]eventstore.RecordedEvent, eventstore.Position) {
	t.Helper()
	got, cp, err := collectErr(sub, n, maxBatch)
	if err != nil {
		t.Fatal(err)
	}
	return got, cp
}

// collectErr is collect reporting failures as an error.
func collectErr(sub eventstore.Subscription, n, maxBatch int) ([]eventstore.RecordedEvent, eventstore.Position, error) {
	c, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	var got []eventstore.RecordedEvent
	var cp eventstore.Position
	for len(got) < n {
		b, err := sub.Next(c)
		if err != nil {
			return got, cp, fmt.Errorf("Next after %d of %d events: %w", len(got), n, err)
		}
		if cp, err = checkBatch(b, cp, got, maxBatch); err != nil {
			return got, cp, err
		}
		got = append(got, b.Events...)
	}
	if len(got) > n {
		return got, cp, fmt.Errorf("subscription delivered %d events, want %d", len(got), n)
	}
	return got, cp, nil
}

// checkBatch checks one batch against what came before and returns its
// checkpoint.
func checkBatch(b eventstore.Batch, prevCP eventstore.Position, prev []eventstore.RecordedEvent, maxBatch int) (eventstore.Position, error) {
	if maxBatch > 0 && len(b.Events) > maxBatch {
		return prevCP, fmt.Errorf("batch of %d events, MaxBatch is %d", len(b.Events), maxBatch)
	}
	if b.Checkpoint.Less(prevCP) {
		return prevCP, fmt.Errorf("checkpoint went back from %v to %v", prevCP, b.Checkpoint)
	}
	if len(b.Events) == 0 && !prevCP.Less(b.Checkpoint) {
		return prevCP, fmt.Errorf("empty batch without progress (checkpoint %v)", b.Checkpoint)
	}
	last := prevCP
	if len(prev) > 0 && last.Less(prev[len(prev)-1].Position) {
		last = prev[len(prev)-1].Position
	}
	for _, e := range b.Events {
		if !last.Less(e.Position) {
			return prevCP, fmt.Errorf("event at %v delivered after %v: repeated or out of order", e.Position, last)
		}
		last = e.Position
	}
	if b.Checkpoint.Less(last) {
		return prevCP, fmt.Errorf("checkpoint %v is before the last delivered event %v", b.Checkpoint, last)
	}
	return b.Checkpoint, nil
}

// nextBatch calls Next once under the guard timeout and checks the batch.
func nextBatch(t testing.TB, sub eventstore.Subscription, prevCP eventstore.Position, prev []eventstore.RecordedEvent, maxBatch int) eventstore.Batch {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	b, err := sub.Next(c)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	if _, err := checkBatch(b, prevCP, prev, maxBatch); err != nil {
		t.Fatal(err)
	}
	return b
}

// subscribe subscribes under c after `after` with opts, fails the test on
// error, and closes the subscription when the test ends.
func subscribe(t testing.TB, c context.Context, st eventstore.Store, after eventstore.Position, opts eventstore.SubscribeOptions) eventstore.Subscription {
	t.Helper()
	sub, err := st.Subscribe(c, after, opts)
	if err != nil {
		t.Fatalf("Subscribe(after %v, %+v): %v", after, opts, err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// collected is what collectLater delivers.
type collected struct {
	events []eventstore.RecordedEvent
	err    error
}

// collectLater runs collectErr(sub, n, 0) in another goroutine, so that the
// test can append while it waits; the outcome arrives on the channel.
func collectLater(sub eventstore.Subscription, n int) <-chan collected {
	done := make(chan collected, 1)
	go func() {
		events, _, err := collectErr(sub, n, 0)
		done <- collected{events, err}
	}()
	return done
}

// nextLater calls sub.Next(c) in another goroutine, so that the test can
// end the subscription while Next waits; Next's error arrives on the
// channel.
func nextLater(c context.Context, sub eventstore.Subscription) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := sub.Next(c)
		errc <- err
	}()
	return errc
}

// testSubscribe checks catch-up, live delivery, the prefix filter, MaxBatch,
// resuming from checkpoints, and how a subscription ends.
func (s *suite) testSubscribe(t *testing.T) {
	t.Run("CatchUpThenLive", func(t *testing.T) {
		st := s.open(t)
		var want []eventstore.EventID
		for i := range 5 {
			e := ev("Old")
			mustAppend(t, st, fmt.Sprintf("order-%d", i%3), eventstore.Any(), e)
			want = append(want, e.ID)
		}
		sub := subscribe(t, ctx(t), st, eventstore.Start, eventstore.SubscribeOptions{})
		got, cp := collect(t, sub, 5, 0)
		checkIDs(t, "catch-up", got, want)
		if cp != got[4].Position {
			t.Fatalf("checkpoint after catch-up = %v, want %v", cp, got[4].Position)
		}

		// Live: the collector waits in Next before the events exist.
		live := append(evs(1, "New"), evs(3, "New")...)
		done := collectLater(sub, len(live))
		mustAppend(t, st, "order-9", eventstore.NoStream(), live[0])
		mustAppend(t, st, "order-0", eventstore.Any(), live[1:]...)
		r := <-done
		if r.err != nil {
			t.Fatalf("live: %v", r.err)
		}
		checkIDs(t, "live", r.events, dataIDs(live))
		s.checkOrder(t, append(got, r.events...), 1)
	})

	t.Run("FromPosition", func(t *testing.T) {
		st := s.open(t)
		batch := evs(6, "Step")
		mustAppend(t, st, "order-1", eventstore.NoStream(), batch...)
		all := readAll(t, st)
		sub := subscribe(t, ctx(t), st, all[2].Position, eventstore.SubscribeOptions{})
		got, _ := collect(t, sub, 3, 0)
		checkIDs(t, "subscription after the 3rd event", got, dataIDs(batch[3:]))
	})

	t.Run("MaxBatch", func(t *testing.T) {
		st := s.open(t)
		batch := evs(10, "Step")
		mustAppend(t, st, "order-1", eventstore.NoStream(), batch...)
		sub := subscribe(t, ctx(t), st, eventstore.Start, eventstore.SubscribeOptions{MaxBatch: 3})
		got, _ := collect(t, sub, 10, 3)
		checkIDs(t, "subscription", got, dataIDs(batch))
	})

	t.Run("StreamPrefix", func(t *testing.T) {
		st := s.open(t)
		streams := []string{"order-1", "refund-1", "order-2", "orderx", "xorder-1", "order-1", "refund-2"}
		var want []eventstore.EventID
		for _, name := range streams {
			e := ev("Step")
			mustAppend(t, st, name, eventstore.Any(), e)
			if strings.HasPrefix(name, "order-") {
				want = append(want, e.ID)
			}
		}
		all := readAll(t, st)
		end := all[len(all)-1].Position

		sub := subscribe(t, ctx(t), st, eventstore.Start, eventstore.SubscribeOptions{StreamPrefix: "order-"})
		// Catch up until the checkpoint has passed every stored event; pure
		// checkpoint batches for skipped events are allowed.
		got, cp := collect(t, sub, len(want), 0)
		for cp.Less(end) {
			b := nextBatch(t, sub, cp, got, 0)
			cp = b.Checkpoint
			got = append(got, b.Events...)
		}
		checkIDs(t, "prefix order-", got, want)
		for _, e := range got {
			if !strings.HasPrefix(e.StreamID, "order-") {
				t.Fatalf("delivered event of stream %q", e.StreamID)
			}
		}

		// Live: an event of another stream is skipped, the next match arrives.
		done := collectLater(sub, 1)
		mustAppend(t, st, "refund-3", eventstore.Any(), ev("Skip"))
		match := ev("Match")
		mustAppend(t, st, "order-3", eventstore.Any(), match)
		r := <-done
		if r.err != nil {
			t.Fatalf("live prefix: %v", r.err)
		}
		checkIDs(t, "live prefix order-", r.events, []eventstore.EventID{match.ID})
	})

	t.Run("ResumeFromCheckpoint", func(t *testing.T) {
		for _, prefix := range []string{"", "order-"} {
			t.Run("prefix="+prefix, func(t *testing.T) {
				st := s.open(t)
				var want []eventstore.EventID
				for i := range 30 {
					name := fmt.Sprintf("order-%d", i%4)
					if i%3 == 1 {
						name = fmt.Sprintf("refund-%d", i%2)
					}
					e := ev("Step")
					mustAppend(t, st, name, eventstore.Any(), e)
					if strings.HasPrefix(name, prefix) {
						want = append(want, e.ID)
					}
				}
				// Take one batch per subscription, with varying batch sizes,
				// and resume after its checkpoint each time.
				var got []eventstore.RecordedEvent
				cp := eventstore.Start
				for i := 0; len(got) < len(want); i++ {
					if i > 100 {
						t.Fatal("resuming makes no progress")
					}
					maxBatch := 1 + i%5
					sub := subscribe(t, ctx(t), st, cp, eventstore.SubscribeOptions{StreamPrefix: prefix, MaxBatch: maxBatch})
					b := nextBatch(t, sub, cp, got, maxBatch)
					cp = b.Checkpoint
					got = append(got, b.Events...)
					if err := sub.Close(); err != nil {
						t.Fatalf("Close: %v", err)
					}
				}
				checkIDs(t, "resumed subscriptions", got, want)
			})
		}
	})

	t.Run("CloseEndsNext", func(t *testing.T) {
		st := s.open(t)
		sub := subscribe(t, ctx(t), st, eventstore.Start, eventstore.SubscribeOptions{})
		errc := nextLater(ctx(t), sub)
		if err := sub.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		wantErr(t, "blocked Next after Close", <-errc, eventstore.ErrClosed)
		_, err := sub.Next(ctx(t))
		wantErr(t, "Next after Close", err, eventstore.ErrClosed)
		if err := sub.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})

	t.Run("NextContextCancel", func(t *testing.T) {
		st := s.open(t)
		sub := subscribe(t, ctx(t), st, eventstore.Start, eventstore.SubscribeOptions{})
		c, cancel := context.WithCancel(context.Background())
		errc := nextLater(c, sub)
		cancel()
		wantErr(t, "Next with a cancelled context", <-errc, context.Canceled)

		// The subscription is still usable with a live context.
		e := ev("Paid")
		mustAppend(t, st, "order-1", eventstore.NoStream(), e)
		got, _ := collect(t, sub, 1, 0)
		checkIDs(t, "after a cancelled Next", got, []eventstore.EventID{e.ID})
	})

	t.Run("SubscribeContextCancel", func(t *testing.T) {
		st := s.open(t)
		subCtx, cancel := context.WithCancel(context.Background())
		sub := subscribe(t, subCtx, st, eventstore.Start, eventstore.SubscribeOptions{})
		errc := nextLater(ctx(t), sub)
		cancel()
		wantErr(t, "Next after the subscription's context ended", <-errc, context.Canceled, eventstore.ErrClosed)
	})

	t.Run("StoreCloseEndsNext", func(t *testing.T) {
		st := s.open(t)
		sub := subscribe(t, ctx(t), st, eventstore.Start, eventstore.SubscribeOptions{})
		errc := nextLater(ctx(t), sub)
		if err := st.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		err := <-errc
		wantErr(t, "Next after the store closed", err, eventstore.ErrClosed)
		if errors.Is(err, context.Canceled) {
			t.Fatalf("Next after store Close: %v", err)
		}
	})
}
