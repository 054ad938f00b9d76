// Package storetest is the conformance suite that every eventstore backend
// runs unchanged, in the spirit of testing/fstest and watermill's
// pubsub/tests: a backend's own test file builds a Harness and calls Run.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			Open:   func(t *testing.T) eventstore.Store { ... fresh, empty store ... },
//			Reopen: func(t *testing.T, s eventstore.Store) eventstore.Store { ... },
//		})
//	}
//
// The suite checks the promises of the eventstore.Store contract that every
// backend makes, and reads Store.Features to check the optional ones:
//
//   - always: optimistic concurrency (any / no-stream / stream-exists /
//     exact, a failure writes nothing), revisions from 0, racing writers on
//     one stream (exactly one wins), a retry after a lost reply (same IDs:
//     Duplicate, no second copy), atomic batches, strictly increasing global
//     positions in commit order, ReadAll paging, reading past the end, large
//     batches and payloads, invalid arguments, subscriptions (catch-up then
//     live, prefix filter, resume from a checkpoint with nothing skipped or
//     repeated, Close and context cancellation), many concurrent writers,
//     and ErrClosed after Close;
//   - DensePositions: the global log counts 1, 2, 3... with no gap;
//   - DetectsContentConflict: an ID re-appended with other type, data or
//     metadata fails with ErrEventIDConflict;
//   - GlobalIDUniqueness: an ID stored in one stream is refused in every
//     other stream (and a batch that repeats a stored ID elsewhere in the
//     same stream is refused) with ErrEventIDConflict;
//   - Persistent: data survives Close and Reopen, and appends continue at the
//     right revision and position.
//
// The suite never sleeps for timing: it synchronises with channels and uses
// contexts with generous timeouts only as guards against a hung backend. It
// assumes that each store it gets from Harness.Open is empty and used by this
// suite alone, and it runs its subtests one after the other, so Open need
// not be safe for concurrent use.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/orderledger/orderledger/eventstore"
)

// Harness tells the suite how to get stores of the backend under test.
type Harness struct {
	// Open returns a fresh, empty store. Called once per subtest. The suite
	// closes every store it gets (possibly more than once: Close of a
	// closed store must not panic); Open may register further cleanup with
	// t.Cleanup.
	Open func(t *testing.T) eventstore.Store
	// Reopen closes s and opens the same data again. It is nil if the
	// backend is not Persistent; the reopen subtests are then skipped.
	Reopen func(t *testing.T, s eventstore.Store) eventstore.Store
}

// guard bounds every blocking call of the suite. It only turns a hung
// backend into a failure; no test waits for it to pass.
const guard = 20 * time.Second

// Run runs the conformance suite against the backend that h opens, each
// check as a subtest.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("storetest: Harness.Open is nil")
	}
	probe := h.Open(t)
	f := probe.Features()
	_ = probe.Close()
	t.Logf("backend %q: DensePositions=%t DetectsContentConflict=%t GlobalIDUniqueness=%t Persistent=%t",
		f.Name, f.DensePositions, f.DetectsContentConflict, f.GlobalIDUniqueness, f.Persistent)

	s := &suite{h: h, f: f}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"ExpectedRevision", s.testExpectedRevision},
		{"RevisionsStartAtZero", s.testRevisionsStartAtZero},
		{"RacingWriters", s.testRacingWriters},
		{"RetryAfterLostReply", s.testRetryAfterLostReply},
		{"SameIDOtherContent", s.testSameIDOtherContent},
		{"GlobalIDUniqueness", s.testGlobalIDUniqueness},
		{"PartlyStoredBatch", s.testPartlyStoredBatch},
		{"AtomicBatch", s.testAtomicBatch},
		{"GlobalOrder", s.testGlobalOrder},
		{"ReadAllPaging", s.testReadAllPaging},
		{"ReopenAfterClose", s.testReopen},
		{"LargeBatch", s.testLargeBatch},
		{"LargePayloads", s.testLargePayloads},
		{"ReadPastEnd", s.testReadPastEnd},
		{"ReadMissingStream", s.testReadMissingStream},
		{"InvalidArgument", s.testInvalidArgument},
		{"Subscribe", s.testSubscribe},
		{"ConcurrentAppendsManyStreams", s.testConcurrentManyStreams},
		{"Closed", s.testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

// suite carries the harness and the backend's features through the
// subtests.
type suite struct {
	h Harness
	f eventstore.Features
}

// open returns a fresh store that is closed when the test ends.
func (s *suite) open(t *testing.T) eventstore.Store {
	t.Helper()
	st := s.h.Open(t)
	if st == nil {
		t.Fatal("Harness.Open returned nil")
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// openWith returns a fresh store, closed when the test ends, in which
// stream holds n events of type "Given" (none: the stream does not exist),
// and those events.
func (s *suite) openWith(t *testing.T, stream string, n int) (eventstore.Store, []eventstore.EventData) {
	t.Helper()
	st := s.open(t)
	history := evs(n, "Given")
	if n > 0 {
		mustAppend(t, st, stream, eventstore.NoStream(), history...)
	}
	return st, history
}

// ctx returns a context that ends with the test or after guard.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), guard)
	t.Cleanup(cancel)
	return c
}

// ev returns an event with a fresh random (version 4) ID, the given type
// and a small JSON payload that names it.
func ev(typ string) eventstore.EventData {
	id := eventstore.EventID(uuid.New())
	return eventstore.EventData{
		ID:          id,
		Type:        typ,
		ContentType: "application/json",
		Data:        fmt.Appendf(nil, `{"id":%q,"type":%q}`, id, typ),
		Metadata:    []byte(`{"source":"storetest"}`),
	}
}

// evs returns n events of the given type.
func evs(n int, typ string) []eventstore.EventData {
	out := make([]eventstore.EventData, n)
	for i := range out {
		out[i] = ev(typ)
	}
	return out
}

// mustAppend appends and fails the test on error.
func mustAppend(t testing.TB, st eventstore.Store, stream string, exp eventstore.ExpectedRevision, events ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	res, err := st.Append(c, stream, exp, events...)
	if err != nil {
		t.Fatalf("Append(%q, %v, %d events): %v", stream, exp, len(events), err)
	}
	if res.Duplicate {
		t.Fatalf("Append(%q, %v) of new events: Duplicate is true", stream, exp)
	}
	return res
}

// readStream reads a whole stream and fails the test on error.
func readStream(t testing.TB, st eventstore.Store, stream string) []eventstore.RecordedEvent {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	got, err := st.ReadStream(c, stream, 0, 0)
	if err != nil {
		t.Fatalf("ReadStream(%q): %v", stream, err)
	}
	return got
}

// readAll reads the whole global log in pages and fails the test on error.
func readAll(t testing.TB, st eventstore.Store) []eventstore.RecordedEvent {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	var out []eventstore.RecordedEvent
	after := eventstore.Start
	for {
		page, err := st.ReadAll(c, after, 1000)
		if err != nil {
			t.Fatalf("ReadAll(after %v): %v", after, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Position
	}
}

// ids lists the IDs of recorded events.
func ids(events []eventstore.RecordedEvent) []eventstore.EventID {
	out := make([]eventstore.EventID, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// dataIDs lists the IDs of events to append.
func dataIDs(events []eventstore.EventData) []eventstore.EventID {
	out := make([]eventstore.EventID, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// checkIDs fails the test unless got lists exactly want, in order.
func checkIDs(t testing.TB, what string, got []eventstore.RecordedEvent, want []eventstore.EventID) {
	t.Helper()
	if !slices.Equal(ids(got), want) {
		t.Fatalf("%s: got %d events %v, want %d events %v", what, len(got), ids(got), len(want), want)
	}
}

// checkRecorded fails the test unless rec is want stored in stream at rev.
func checkRecorded(t testing.TB, rec eventstore.RecordedEvent, stream string, rev uint64, want eventstore.EventData) {
	t.Helper()
	switch {
	case rec.StreamID != stream:
		t.Fatalf("event %s: stream %q, want %q", want.ID, rec.StreamID, stream)
	case rec.ID != want.ID:
		t.Fatalf("stream %q revision %d: id %s, want %s", stream, rev, rec.ID, want.ID)
	case rec.Revision != rev:
		t.Fatalf("event %s: revision %d, want %d", want.ID, rec.Revision, rev)
	case rec.Type != want.Type:
		t.Fatalf("event %s: type %q, want %q", want.ID, rec.Type, want.Type)
	case rec.ContentType != want.ContentType:
		t.Fatalf("event %s: content type %q, want %q", want.ID, rec.ContentType, want.ContentType)
	case !bytes.Equal(rec.Data, want.Data):
		t.Fatalf("event %s: data differs (%d bytes, want %d)", want.ID, len(rec.Data), len(want.Data))
	case !bytes.Equal(rec.Metadata, want.Metadata):
		t.Fatalf("event %s: metadata %q, want %q", want.ID, rec.Metadata, want.Metadata)
	case rec.Position.IsZero():
		t.Fatalf("event %s: zero position", want.ID)
	case rec.RecordedAt.IsZero():
		t.Fatalf("event %s: zero RecordedAt", want.ID)
	case rec.RecordedAt.Location() != time.UTC:
		t.Fatalf("event %s: RecordedAt %v is not in UTC", want.ID, rec.RecordedAt)
	}
}

// checkStream fails the test unless stream holds exactly want, at
// revisions 0, 1, 2...
func checkStream(t testing.TB, st eventstore.Store, stream string, want []eventstore.EventData) []eventstore.RecordedEvent {
	t.Helper()
	got := readStream(t, st, stream)
	checkIDs(t, "ReadStream("+stream+")", got, dataIDs(want))
	for i := range got {
		checkRecorded(t, got[i], stream, uint64(i), want[i])
	}
	return got
}

// checkOrder fails the test unless positions strictly increase and, where
// the backend promises DensePositions, count first, first+1, ...
func (s *suite) checkOrder(t testing.TB, events []eventstore.RecordedEvent, first uint64) {
	t.Helper()
	for i, e := range events {
		if i > 0 && !events[i-1].Position.Less(e.Position) {
			t.Fatalf("position %v at index %d is not after %v", e.Position, i, events[i-1].Position)
		}
		if s.f.DensePositions {
			want := eventstore.Position{Commit: first + uint64(i), Prepare: first + uint64(i)}
			if e.Position != want {
				t.Fatalf("DensePositions: event %d has position %v, want %v", i, e.Position, want)
			}
		}
	}
}

// wantErr fails the test unless err wraps one of the targets.
func wantErr(t testing.TB, what string, err error, targets ...error) {
	t.Helper()
	for _, target := range targets {
		if errors.Is(err, target) {
			return
		}
	}
	t.Fatalf("%s: error %v, want one of %v", what, err, targets)
}
