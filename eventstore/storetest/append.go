package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/orderledger/orderledger/eventstore"
)

// testExpectedRevision: given a stream with some history, when appending with
// an expected revision, then the append succeeds at the next revision or
// fails with ErrWrongExpectedRevision and writes nothing.
func (s *suite) testExpectedRevision(t *testing.T) {
	tests := []struct {
		name     string
		history  int // events already in the stream
		expected eventstore.ExpectedRevision
		ok       bool
	}{
		{"any/missing stream", 0, eventstore.Any(), true},
		{"any/existing stream", 2, eventstore.Any(), true},
		{"no-stream/missing stream", 0, eventstore.NoStream(), true},
		{"no-stream/existing stream", 2, eventstore.NoStream(), false},
		{"stream-exists/missing stream", 0, eventstore.StreamExists(), false},
		{"stream-exists/existing stream", 2, eventstore.StreamExists(), true},
		{"exact/right revision", 2, eventstore.Exact(1), true},
		{"exact/older revision", 2, eventstore.Exact(0), false},
		{"exact/future revision", 2, eventstore.Exact(2), false},
		{"exact/far future revision", 2, eventstore.Exact(1 << 62), false},
		{"exact 0/missing stream", 0, eventstore.Exact(0), false},
		{"exact 0/one event", 1, eventstore.Exact(0), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const stream = "order-expected"
			st, history := s.openWith(t, stream, tc.history)
			add := evs(2, "When")
			res, err := st.Append(ctx(t), stream, tc.expected, add...)
			if !tc.ok {
				wantErr(t, "Append "+tc.expected.String(), err, eventstore.ErrWrongExpectedRevision)
				checkStream(t, st, stream, history)
				if n := len(readAll(t, st)); n != len(history) {
					t.Fatalf("failed append wrote to the log: %d events, want %d", n, len(history))
				}
				return
			}
			if err != nil {
				t.Fatalf("Append %v: %v", tc.expected, err)
			}
			if res.Duplicate {
				t.Fatal("Duplicate is true for new events")
			}
			if want := uint64(tc.history + 1); res.NextExpected != want {
				t.Fatalf("NextExpected = %d, want %d", res.NextExpected, want)
			}
			got := checkStream(t, st, stream, append(history, add...))
			if res.Position != got[len(got)-1].Position {
				t.Fatalf("AppendResult.Position = %v, want the last event's %v", res.Position, got[len(got)-1].Position)
			}
		})
	}
}

// testRevisionsStartAtZero: a new stream's first event has revision 0, and
// NextExpected is the revision of the last event.
func (s *suite) testRevisionsStartAtZero(t *testing.T) {
	st := s.open(t)
	first := evs(3, "Created")
	res := mustAppend(t, st, "order-1", eventstore.NoStream(), first...)
	if res.NextExpected != 2 {
		t.Fatalf("NextExpected after 3 events = %d, want 2", res.NextExpected)
	}
	next := ev("Paid")
	res = mustAppend(t, st, "order-1", eventstore.Exact(res.NextExpected), next)
	if res.NextExpected != 3 {
		t.Fatalf("NextExpected after 4 events = %d, want 3", res.NextExpected)
	}
	got := checkStream(t, st, "order-1", append(first, next))
	if after := eventstore.After(got); after != eventstore.Exact(3) {
		t.Fatalf("After(stream) = %v, want revision 3", after)
	}
	s.checkOrder(t, got, 1)
}

// testRacingWriters: many writers append different events to one stream with
// the same expectation at the same time; exactly one wins and the others get
// ErrWrongExpectedRevision.
func (s *suite) testRacingWriters(t *testing.T) {
	const writers = 16
	tests := []struct {
		name    string
		history int
		exp     eventstore.ExpectedRevision
	}{
		{"exact", 1, eventstore.Exact(0)},
		{"no-stream", 0, eventstore.NoStream()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const stream = "order-race"
			st, history := s.openWith(t, stream, tc.history)
			candidates := make([][]eventstore.EventData, writers)
			for i := range candidates {
				candidates[i] = evs(2, fmt.Sprintf("Writer%d", i))
			}
			errs := race(writers, func(i int) error {
				_, err := st.Append(ctx(t), stream, tc.exp, candidates[i]...)
				return err
			})
			winner := -1
			for i, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Fatalf("writers %d and %d both won", winner, i)
				case err == nil:
					winner = i
				default:
					wantErr(t, fmt.Sprintf("writer %d", i), err, eventstore.ErrWrongExpectedRevision)
				}
			}
			if winner < 0 {
				t.Fatal("no writer won")
			}
			checkStream(t, st, stream, append(history, candidates[winner]...))
			if n := len(readAll(t, st)); n != len(history)+2 {
				t.Fatalf("log holds %d events, want %d", n, len(history)+2)
			}
		})
	}
	t.Run("any/all land", func(t *testing.T) {
		st := s.open(t)
		const stream = "order-race"
		errs := race(writers, func(i int) error {
			_, err := st.Append(ctx(t), stream, eventstore.Any(), evs(2, fmt.Sprintf("Writer%d", i))...)
			return err
		})
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("Append any: %v", err)
		}
		got := readStream(t, st, stream)
		if len(got) != 2*writers {
			t.Fatalf("stream holds %d events, want %d", len(got), 2*writers)
		}
		for i, e := range got {
			if e.Revision != uint64(i) {
				t.Fatalf("event %d has revision %d", i, e.Revision)
			}
			// Each batch of two is atomic: its events are adjacent.
			if i%2 == 1 && e.Type != got[i-1].Type {
				t.Fatalf("revisions %d and %d hold events of different batches (%s, %s)", i-1, i, got[i-1].Type, e.Type)
			}
		}
	})
}

// race calls f(0), ..., f(n-1) in n goroutines released at the same
// moment, and returns their errors by index.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// testRetryAfterLostReply: the writer did not get the reply and sends the very
// same append again. It succeeds with Duplicate set, reports where the events
// are, and stores no second copy.
func (s *suite) testRetryAfterLostReply(t *testing.T) {
	tests := []struct {
		name    string
		history int
		// n events are appended with exp, then the stream may move on by
		// `then` events, then the first append is retried.
		exp     eventstore.ExpectedRevision
		n       int
		then    int
		wantRev uint64
	}{
		{"no-stream", 0, eventstore.NoStream(), 2, 0, 1},
		{"exact", 2, eventstore.Exact(1), 1, 0, 2},
		{"any", 2, eventstore.Any(), 2, 0, 3},
		{"stream-exists", 1, eventstore.StreamExists(), 1, 0, 1},
		{"no-stream/stream moved on", 0, eventstore.NoStream(), 1, 3, 0},
		{"exact/stream moved on", 1, eventstore.Exact(0), 2, 2, 2},
		{"any/stream moved on", 1, eventstore.Any(), 2, 2, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const stream = "order-retry"
			st, history := s.openWith(t, stream, tc.history)
			first := evs(tc.n, "Paid")
			res1 := mustAppend(t, st, stream, tc.exp, first...)
			want := append(history, first...)
			if tc.then > 0 {
				later := evs(tc.then, "Later")
				mustAppend(t, st, stream, eventstore.Exact(res1.NextExpected), later...)
				want = append(want, later...)
			}
			for attempt := 1; attempt <= 2; attempt++ {
				res2, err := st.Append(ctx(t), stream, tc.exp, first...)
				if err != nil {
					t.Fatalf("retry %d: %v", attempt, err)
				}
				if !res2.Duplicate {
					t.Fatalf("retry %d: Duplicate is false", attempt)
				}
				if res2.NextExpected != tc.wantRev || res1.NextExpected != tc.wantRev {
					t.Fatalf("retry %d: NextExpected = %d (first append %d), want %d", attempt, res2.NextExpected, res1.NextExpected, tc.wantRev)
				}
				if (s.f.DensePositions || !res2.Position.IsZero()) && res2.Position != res1.Position {
					t.Fatalf("retry %d: Position = %v, want the stored copy's %v", attempt, res2.Position, res1.Position)
				}
			}
			checkStream(t, st, stream, want)
			if n := len(readAll(t, st)); n != len(want) {
				t.Fatalf("log holds %d events, want %d (a second copy was written)", n, len(want))
			}
		})
	}

	// The same events with an expectation that does not put them where
	// they are stored: not a retry of that append, so not a duplicate.
	wrongPlace := []struct {
		name string
		exp  eventstore.ExpectedRevision
	}{
		{"no-stream", eventstore.NoStream()},
		{"exact before", eventstore.Exact(0)},
		{"exact after", eventstore.Exact(3)},
		{"exact far after", eventstore.Exact(100)},
	}
	for _, tc := range wrongPlace {
		t.Run("same events at another place/"+tc.name, func(t *testing.T) {
			const stream = "order-retry"
			st, history := s.openWith(t, stream, 2)
			stored := evs(2, "Paid") // at revisions 2 and 3
			mustAppend(t, st, stream, eventstore.Exact(1), stored...)
			res, err := st.Append(ctx(t), stream, tc.exp, stored...)
			if err == nil {
				t.Fatalf("Append %v of events stored at revisions 2-3 = %+v, want an error", tc.exp, res)
			}
			wantErr(t, "Append", err, eventstore.ErrWrongExpectedRevision, eventstore.ErrEventIDConflict)
			checkStream(t, st, stream, append(history, stored...))
		})
	}
}

// testSameIDOtherContent: an ID re-appended with other type, data or metadata
// is a different fact under the same identity. With DetectsContentConflict
// it fails with ErrEventIDConflict; in any case no second copy is stored.
func (s *suite) testSameIDOtherContent(t *testing.T) {
	tests := []struct {
		name   string
		change func(e *eventstore.EventData)
	}{
		{"other data", func(e *eventstore.EventData) { e.Data = []byte(`{"amount":2}`) }},
		{"other type", func(e *eventstore.EventData) { e.Type = "Refunded" }},
		{"other metadata", func(e *eventstore.EventData) { e.Metadata = []byte(`{"source":"elsewhere"}`) }},
	}
	exps := []eventstore.ExpectedRevision{eventstore.NoStream(), eventstore.Any(), eventstore.StreamExists(), eventstore.Exact(0)}
	for _, tc := range tests {
		for _, exp := range exps {
			t.Run(tc.name+"/"+exp.String(), func(t *testing.T) {
				st := s.open(t)
				const stream = "order-content"
				orig := ev("Paid")
				orig.Data = []byte(`{"amount":1}`)
				mustAppend(t, st, stream, eventstore.NoStream(), orig)
				other := orig
				tc.change(&other)
				_, err := st.Append(ctx(t), stream, exp, other)
				if s.f.DetectsContentConflict {
					wantErr(t, "DetectsContentConflict: Append", err, eventstore.ErrEventIDConflict)
				} else if err != nil {
					wantErr(t, "Append", err, eventstore.ErrEventIDConflict, eventstore.ErrWrongExpectedRevision)
				}
				checkStream(t, st, stream, []eventstore.EventData{orig})
			})
		}
	}
}

// testGlobalIDUniqueness: with GlobalIDUniqueness, an ID stored in one stream
// is refused in another with ErrEventIDConflict, alone or inside a batch, and
// nothing of that batch is written.
func (s *suite) testGlobalIDUniqueness(t *testing.T) {
	if !s.f.GlobalIDUniqueness {
		t.Skipf("backend %q does not promise GlobalIDUniqueness", s.f.Name)
	}
	for _, exp := range []eventstore.ExpectedRevision{eventstore.NoStream(), eventstore.Any()} {
		t.Run(exp.String(), func(t *testing.T) {
			st := s.open(t)
			a := ev("Paid")
			mustAppend(t, st, "order-a", eventstore.NoStream(), a)

			_, err := st.Append(ctx(t), "order-b", exp, a)
			wantErr(t, "same id in another stream", err, eventstore.ErrEventIDConflict)

			_, err = st.Append(ctx(t), "order-b", exp, ev("Created"), a, ev("Shipped"))
			wantErr(t, "batch holding an id of another stream", err, eventstore.ErrEventIDConflict)

			checkStream(t, st, "order-b", nil)
			checkStream(t, st, "order-a", []eventstore.EventData{a})
			if n := len(readAll(t, st)); n != 1 {
				t.Fatalf("log holds %d events, want 1", n)
			}
		})
	}
}

// testPartlyStoredBatch: a batch of which only some IDs are already stored is
// neither a retry nor new: it fails and writes nothing.
func (s *suite) testPartlyStoredBatch(t *testing.T) {
	t.Run("stored prefix/no-stream", func(t *testing.T) {
		st := s.open(t)
		a, b := ev("Created"), ev("Paid")
		mustAppend(t, st, "order-p", eventstore.NoStream(), a)
		_, err := st.Append(ctx(t), "order-p", eventstore.NoStream(), a, b)
		wantErr(t, "Append", err, eventstore.ErrWrongExpectedRevision, eventstore.ErrEventIDConflict)
		checkStream(t, st, "order-p", []eventstore.EventData{a})
	})
	if !s.f.GlobalIDUniqueness {
		return
	}
	t.Run("GlobalIDUniqueness/stored prefix/any", func(t *testing.T) {
		st := s.open(t)
		a, b := ev("Created"), ev("Paid")
		mustAppend(t, st, "order-p", eventstore.NoStream(), a)
		_, err := st.Append(ctx(t), "order-p", eventstore.Any(), a, b)
		wantErr(t, "Append", err, eventstore.ErrEventIDConflict)
		checkStream(t, st, "order-p", []eventstore.EventData{a})
	})
	t.Run("GlobalIDUniqueness/stored id repeated at the end", func(t *testing.T) {
		st := s.open(t)
		a, b, c := ev("Created"), ev("Paid"), ev("Shipped")
		mustAppend(t, st, "order-p", eventstore.NoStream(), a, b)
		_, err := st.Append(ctx(t), "order-p", eventstore.Exact(1), c, a)
		wantErr(t, "Append", err, eventstore.ErrEventIDConflict)
		checkStream(t, st, "order-p", []eventstore.EventData{a, b})
	})
}

// testAtomicBatch: a batch is written whole, at consecutive revisions and
// adjacent positions, or not at all.
func (s *suite) testAtomicBatch(t *testing.T) {
	t.Run("written whole", func(t *testing.T) {
		st := s.open(t)
		batch := evs(5, "Batch")
		mustAppend(t, st, "order-atomic", eventstore.NoStream(), batch...)
		got := checkStream(t, st, "order-atomic", batch)
		s.checkOrder(t, got, 1)
	})
	t.Run("invalid event writes nothing", func(t *testing.T) {
		st := s.open(t)
		batch := evs(3, "Batch")
		batch[2].Type = ""
		_, err := st.Append(ctx(t), "order-atomic", eventstore.Any(), batch...)
		wantErr(t, "Append", err, eventstore.ErrInvalidArgument)
		checkStream(t, st, "order-atomic", nil)
	})
	t.Run("concurrent batches stay whole", func(t *testing.T) {
		// Writers append batches of 4 with Any to one stream while a reader
		// reads it: every read, and the final log, holds whole batches.
		st := s.open(t)
		const stream, writers, rounds, size = "order-atomic", 4, 8, 4
		done := make(chan struct{})
		readerErr := make(chan error, 1)
		go func() {
			defer close(readerErr)
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := st.ReadStream(context.Background(), stream, 0, 0)
				if err != nil {
					readerErr <- err
					return
				}
				if len(got)%size != 0 {
					readerErr <- fmt.Errorf("reader saw %d events, not whole batches of %d", len(got), size)
					return
				}
			}
		}()
		var wg sync.WaitGroup
		errs := make(chan error, writers*rounds)
		for w := range writers {
			wg.Go(func() {
				for range rounds {
					if _, err := st.Append(ctx(t), stream, eventstore.Any(), evs(size, fmt.Sprintf("W%d", w))...); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(done)
		close(errs)
		for err := range errs {
			t.Fatalf("Append: %v", err)
		}
		if err := <-readerErr; err != nil {
			t.Fatal(err)
		}
		all := readAll(t, st)
		if len(all) != writers*rounds*size {
			t.Fatalf("log holds %d events, want %d", len(all), writers*rounds*size)
		}
		for i := 0; i < len(all); i += size {
			for j := i; j < i+size; j++ {
				if all[j].Type != all[i].Type || all[j].Revision != all[i].Revision+uint64(j-i) {
					t.Fatalf("batch at log index %d is not contiguous: %s rev %d after %s rev %d",
						i, all[j].Type, all[j].Revision, all[i].Type, all[i].Revision)
				}
			}
		}
	})
}

// testInvalidArgument: malformed requests fail with ErrInvalidArgument and
// write nothing.
func (s *suite) testInvalidArgument(t *testing.T) {
	st := s.open(t)
	dupID := ev("Paid")
	zeroID := ev("Paid")
	zeroID.ID = eventstore.EventID{}
	noType := ev("Paid")
	noType.Type = ""
	tests := []struct {
		name   string
		stream string
		exp    eventstore.ExpectedRevision
		events []eventstore.EventData
	}{
		{"empty stream name", "", eventstore.Any(), evs(1, "Paid")},
		{"no events", "order-x", eventstore.Any(), nil},
		{"zero event id", "order-x", eventstore.Any(), []eventstore.EventData{zeroID}},
		{"zero event id in second event", "order-x", eventstore.NoStream(), []eventstore.EventData{ev("Paid"), zeroID}},
		{"empty type", "order-x", eventstore.Any(), []eventstore.EventData{noType}},
		{"same id twice in one batch", "order-x", eventstore.Any(), []eventstore.EventData{dupID, dupID}},
		{"unknown expected kind", "order-x", eventstore.ExpectedRevision{Kind: 99}, evs(1, "Paid")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := st.Append(ctx(t), tc.stream, tc.exp, tc.events...)
			wantErr(t, "Append", err, eventstore.ErrInvalidArgument)
		})
	}
	t.Run("ReadStream empty stream name", func(t *testing.T) {
		_, err := st.ReadStream(ctx(t), "", 0, 0)
		wantErr(t, "ReadStream", err, eventstore.ErrInvalidArgument)
	})
	if n := len(readAll(t, st)); n != 0 {
		t.Fatalf("invalid appends wrote %d events", n)
	}
}

// testClosed: after Close every call fails with ErrClosed, and closing again
// does not panic.
func (s *suite) testClosed(t *testing.T) {
	st := s.open(t)
	mustAppend(t, st, "order-closed", eventstore.NoStream(), ev("Paid"))
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err := st.Append(ctx(t), "order-closed", eventstore.Any(), ev("Paid"))
	wantErr(t, "Append after Close", err, eventstore.ErrClosed)
	_, err = st.ReadStream(ctx(t), "order-closed", 0, 0)
	wantErr(t, "ReadStream after Close", err, eventstore.ErrClosed)
	_, err = st.ReadAll(ctx(t), eventstore.Start, 10)
	wantErr(t, "ReadAll after Close", err, eventstore.ErrClosed)
	_, err = st.Subscribe(ctx(t), eventstore.Start, eventstore.SubscribeOptions{})
	wantErr(t, "Subscribe after Close", err, eventstore.ErrClosed)
	if err := st.Close(); err != nil && !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}
