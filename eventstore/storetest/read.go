package storetest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/orderledger/orderledger/eventstore"
)

// testGlobalOrder: appends to several streams land in the global log in
// commit order, at strictly increasing positions (1..N with DensePositions),
// and each AppendResult.Position is the position of its last event.
func (s *suite) testGlobalOrder(t *testing.T) {
	st := s.open(t)
	streams := []string{"order-1", "order-2", `refund-商户-"<&>'`}
	var want []eventstore.EventID
	var results []eventstore.AppendResult
	var lastIdx []int
	for i := range 12 {
		batch := evs(1+i%3, "Step")
		res := mustAppend(t, st, streams[i%len(streams)], eventstore.Any(), batch...)
		want = append(want, dataIDs(batch)...)
		results = append(results, res)
		lastIdx = append(lastIdx, len(want)-1)
	}
	all := readAll(t, st)
	checkIDs(t, "ReadAll", all, want)
	s.checkOrder(t, all, 1)
	for i, res := range results {
		if got := all[lastIdx[i]].Position; res.Position != got {
			t.Fatalf("append %d: AppendResult.Position = %v, want its last event's %v", i, res.Position, got)
		}
	}
	for i := 1; i < len(results); i++ {
		if !results[i-1].Position.Less(results[i].Position) {
			t.Fatalf("append %d at %v is not after append %d at %v", i, results[i].Position, i-1, results[i-1].Position)
		}
	}
	// Every stream read alone shows its own events, in the same relative
	// order as the global log.
	for _, name := range streams {
		var inLog []eventstore.EventID
		for _, e := range all {
			if e.StreamID == name {
				inLog = append(inLog, e.ID)
			}
		}
		checkIDs(t, "ReadStream("+name+")", readStream(t, st, name), inLog)
	}
}

// testReadAllPaging: paging ReadAll with `after` and `max` returns the whole
// log, each event once, whatever the page size.
func (s *suite) testReadAllPaging(t *testing.T) {
	st := s.open(t)
	var want []eventstore.EventID
	for i := range 23 {
		e := ev("Step")
		mustAppend(t, st, fmt.Sprintf("order-%d", i%4), eventstore.Any(), e)
		want = append(want, e.ID)
	}
	full := readAll(t, st)
	checkIDs(t, "ReadAll", full, want)
	for _, max := range []int{1, 2, 5, 7, 22, 23, 24, 1000} {
		t.Run(fmt.Sprintf("max=%d", max), func(t *testing.T) {
			var got []eventstore.RecordedEvent
			after := eventstore.Start
			for pages := 0; ; pages++ {
				if pages > len(want)+1 {
					t.Fatal("paging does not end")
				}
				page, err := st.ReadAll(ctx(t), after, max)
				if err != nil {
					t.Fatalf("ReadAll(after %v, %d): %v", after, max, err)
				}
				if len(page) > max {
					t.Fatalf("ReadAll(after %v, %d) returned %d events", after, max, len(page))
				}
				if len(page) == 0 {
					break
				}
				got = append(got, page...)
				after = page[len(page)-1].Position
			}
			checkIDs(t, "paged ReadAll", got, want)
		})
	}
	t.Run("after a middle position", func(t *testing.T) {
		page, err := st.ReadAll(ctx(t), full[9].Position, 5)
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		checkIDs(t, "ReadAll(after 10th event, 5)", page, want[10:15])
	})
	t.Run("ReadStream from and max", func(t *testing.T) {
		page, err := st.ReadStream(ctx(t), "order-1", 2, 3)
		if err != nil {
			t.Fatalf("ReadStream: %v", err)
		}
		all := readStream(t, st, "order-1")
		checkIDs(t, "ReadStream(order-1, from 2, max 3)", page, ids(all[2:5]))
	})
}

// testReadPastEnd: reading a stream from beyond its last revision, or the log
// after its last position, returns nothing and no error.
func (s *suite) testReadPastEnd(t *testing.T) {
	st := s.open(t)
	mustAppend(t, st, "order-end", eventstore.NoStream(), evs(3, "Step")...)
	for _, from := range []uint64{3, 4, 100, math.MaxInt64, math.MaxUint64} {
		got, err := st.ReadStream(ctx(t), "order-end", from, 0)
		if err != nil || len(got) != 0 {
			t.Fatalf("ReadStream(from %d) = %d events, %v; want none, nil", from, len(got), err)
		}
		got, err = st.ReadStream(ctx(t), "order-end", from, 10)
		if err != nil || len(got) != 0 {
			t.Fatalf("ReadStream(from %d, max 10) = %d events, %v; want none, nil", from, len(got), err)
		}
	}
	got, err := st.ReadStream(ctx(t), "order-end", 2, 0)
	if err != nil || len(got) != 1 || got[0].Revision != 2 {
		t.Fatalf("ReadStream(from 2) = %d events, %v; want the last one", len(got), err)
	}
	all := readAll(t, st)
	last := all[len(all)-1].Position
	for _, after := range []eventstore.Position{
		last,
		{Commit: last.Commit + 1000, Prepare: last.Prepare + 1000},
		{Commit: math.MaxInt64, Prepare: math.MaxInt64},
		{Commit: math.MaxUint64, Prepare: math.MaxUint64},
	} {
		got, err := st.ReadAll(ctx(t), after, 10)
		if err != nil || len(got) != 0 {
			t.Fatalf("ReadAll(after %v) = %d events, %v; want none, nil", after, len(got), err)
		}
	}
}

// testReadMissingStream: a stream that was never written reads as empty,
// without error.
func (s *suite) testReadMissingStream(t *testing.T) {
	st := s.open(t)
	mustAppend(t, st, "order-1", eventstore.NoStream(), ev("Paid"))
	for _, name := range []string{"order-2", "order-", "order-10", "ORDER-1"} {
		got, err := st.ReadStream(ctx(t), name, 0, 0)
		if err != nil || len(got) != 0 {
			t.Fatalf("ReadStream(%q) = %d events, %v; want none, nil", name, len(got), err)
		}
	}
}

// testLargeBatch: one append of 5,000 events is stored whole, in order, and
// recognised as a duplicate when retried.
func (s *suite) testLargeBatch(t *testing.T) {
	const n = 5000
	st := s.open(t)
	batch := evs(n, "Line")
	res := mustAppend(t, st, "bill-2024-06-01", eventstore.NoStream(), batch...)
	if res.NextExpected != n-1 {
		t.Fatalf("NextExpected = %d, want %d", res.NextExpected, n-1)
	}
	got := checkStream(t, st, "bill-2024-06-01", batch)
	s.checkOrder(t, got, 1)
	tail, err := st.ReadStream(ctx(t), "bill-2024-06-01", n-10, 0)
	if err != nil {
		t.Fatalf("ReadStream tail: %v", err)
	}
	checkIDs(t, "ReadStream(from n-10)", tail, dataIDs(batch[n-10:]))
	checkIDs(t, "ReadAll", readAll(t, st), dataIDs(batch))

	again, err := st.Append(ctx(t), "bill-2024-06-01", eventstore.NoStream(), batch...)
	if err != nil || !again.Duplicate || again.NextExpected != n-1 {
		t.Fatalf("retry of the large batch = %+v, %v; want a duplicate at %d", again, err, n-1)
	}
	if m := len(readAll(t, st)); m != n {
		t.Fatalf("log holds %d events after the retry, want %d", m, n)
	}
}

// testLargePayloads: 50 KB payloads, binary and JSON, come back byte for
// byte.
func (s *suite) testLargePayloads(t *testing.T) {
	st := s.open(t)
	var batch []eventstore.EventData
	for i := range 8 {
		e := ev("Bill")
		if i%2 == 0 {
			e.ContentType = "application/octet-stream"
			e.Data = make([]byte, 50<<10)
			if _, err := rand.Read(e.Data); err != nil {
				t.Fatal(err)
			}
			e.Metadata = nil
		} else {
			var b bytes.Buffer
			b.WriteString(`{"lines":[`)
			for j := 0; b.Len() < 50<<10; j++ {
				if j > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"n":%d,"memo":"商户订单 %d \u00e9\"q\""}`, j, j)
			}
			b.WriteString(`]}`)
			e.Data = b.Bytes()
			e.Metadata = bytes.Repeat([]byte("m"), 2<<10)
		}
		batch = append(batch, e)
	}
	mustAppend(t, st, "bill-large", eventstore.NoStream(), batch[:4]...)
	mustAppend(t, st, "bill-large", eventstore.Exact(3), batch[4:]...)
	checkStream(t, st, "bill-large", batch)
	all := readAll(t, st)
	for i := range all {
		checkRecorded(t, all[i], "bill-large", uint64(i), batch[i])
	}
}

// testReopen: with Persistent, everything survives Close and Reopen, and the
// reopened store goes on at the right revision and position, still knowing
// which IDs it holds.
func (s *suite) testReopen(t *testing.T) {
	if !s.f.Persistent {
		t.Skipf("backend %q is not Persistent", s.f.Name)
	}
	if s.h.Reopen == nil {
		t.Fatal("backend is Persistent but Harness.Reopen is nil")
	}
	st := s.open(t)
	a := evs(2, "Created")
	b := evs(1, "Paid")
	mustAppend(t, st, "order-1", eventstore.NoStream(), a...)
	mustAppend(t, st, "order-2", eventstore.NoStream(), b...)
	before := readAll(t, st)

	old := st
	st = s.h.Reopen(t, st)
	t.Cleanup(func() { _ = st.Close() })
	_, err := old.Append(ctx(t), "order-1", eventstore.Any(), ev("Late"))
	wantErr(t, "Append on the store that Reopen closed", err, eventstore.ErrClosed)

	after := readAll(t, st)
	checkIDs(t, "ReadAll after reopen", after, ids(before))
	for i := range after {
		if after[i].Position != before[i].Position || after[i].Revision != before[i].Revision ||
			after[i].StreamID != before[i].StreamID || !after[i].RecordedAt.Equal(before[i].RecordedAt) {
			t.Fatalf("event %d changed across reopen: %+v, was %+v", i, after[i], before[i])
		}
	}
	checkStream(t, st, "order-1", a)

	// Retries of what was acknowledged before the reopen are recognised.
	res, err := st.Append(ctx(t), "order-1", eventstore.NoStream(), a...)
	if err != nil || !res.Duplicate || res.NextExpected != 1 {
		t.Fatalf("retry after reopen = %+v, %v; want a duplicate at 1", res, err)
	}
	_, err = st.Append(ctx(t), "order-2", eventstore.NoStream(), ev("Paid"))
	wantErr(t, "no-stream on a stream stored before reopen", err, eventstore.ErrWrongExpectedRevision)
	if s.f.GlobalIDUniqueness {
		_, err = st.Append(ctx(t), "order-3", eventstore.Any(), b...)
		wantErr(t, "GlobalIDUniqueness: id stored before reopen", err, eventstore.ErrEventIDConflict)
	}

	c := ev("Shipped")
	res = mustAppend(t, st, "order-1", eventstore.Exact(1), c)
	if res.NextExpected != 2 {
		t.Fatalf("NextExpected after reopen = %d, want 2", res.NextExpected)
	}
	if !before[len(before)-1].Position.Less(res.Position) {
		t.Fatalf("position after reopen %v is not after %v", res.Position, before[len(before)-1].Position)
	}
	// A second cycle: the new event survives too.
	st2 := s.h.Reopen(t, st)
	t.Cleanup(func() { _ = st2.Close() })
	checkStream(t, st2, "order-1", append(a, c))
	all := readAll(t, st2)
	s.checkOrder(t, all, 1)
	if len(all) != 4 {
		t.Fatalf("log holds %d events after two reopens, want 4", len(all))
	}
}

// testConcurrentManyStreams: many goroutines append to many streams at once
// (each owning its streams and using exact revisions, plus some sharing one
// stream with Any). Every append succeeds, every event lands once, and a
// subscription opened before the writers sees each event exactly once, in
// log order.
func (s *suite) testConcurrentManyStreams(t *testing.T) {
	const (
		owners      = 8
		perOwner    = 4
		rounds      = 8
		sharers     = 4
		sharedRound = 10
	)
	st := s.open(t)
	sub := subscribe(t, ctx(t), st, eventstore.Start, eventstore.SubscribeOptions{MaxBatch: 37})

	var mu sync.Mutex // guards written
	written := map[eventstore.EventID]string{}
	record := func(stream string, batch []eventstore.EventData) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range batch {
			written[e.ID] = stream
		}
	}
	errs := make(chan error, owners*perOwner*rounds+sharers*sharedRound)
	var wg sync.WaitGroup
	for o := range owners {
		wg.Go(func() {
			next := make([]eventstore.ExpectedRevision, perOwner)
			for i := range next {
				next[i] = eventstore.NoStream()
			}
			for r := range rounds {
				for i := range perOwner {
					stream := fmt.Sprintf("order-%d-%d", o, i)
					batch := evs(1+(r+i)%3, "Step")
					res, err := st.Append(ctx(t), stream, next[i], batch...)
					if err != nil {
						errs <- err
						return
					}
					next[i] = eventstore.Exact(res.NextExpected)
					record(stream, batch)
				}
			}
		})
	}
	for range sharers {
		wg.Go(func() {
			for range sharedRound {
				batch := evs(2, "Shared")
				if _, err := st.Append(ctx(t), "shared", eventstore.Any(), batch...); err != nil {
					errs <- err
					return
				}
				record("shared", batch)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}

	all := readAll(t, st)
	if len(all) != len(written) {
		t.Fatalf("log holds %d events, %d were appended", len(all), len(written))
	}
	s.checkOrder(t, all, 1)
	nextRev := map[string]uint64{}
	for _, e := range all {
		if written[e.ID] != e.StreamID {
			t.Fatalf("event %s in stream %q, appended to %q", e.ID, e.StreamID, written[e.ID])
		}
		if e.Revision != nextRev[e.StreamID] {
			t.Fatalf("stream %q: revision %d in log order, want %d", e.StreamID, e.Revision, nextRev[e.StreamID])
		}
		nextRev[e.StreamID]++
	}

	got, _ := collect(t, sub, len(all), 37)
	checkIDs(t, "subscription", got, ids(all))
}
