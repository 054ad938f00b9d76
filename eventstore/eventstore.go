// Package eventstore is the storage contract of the ledger, in the spirit of
// database/sql/driver: it says what a backend must do, and nothing else.
//
// A store holds named streams of immutable events. Every event has a
// revision inside its stream (0, 1, 2, ...) and a position in the store's
// global log. Appends are optimistic: the caller states the revision it
// expects the stream to be at, and a wrong expectation fails with
// ErrWrongExpectedRevision without writing anything. Event IDs are chosen by
// the caller (the ledger derives them deterministically from WeChat's
// transaction and refund ids), so a retried append is recognised: if the very
// same events are already stored right after the expected revision, the
// append is a no-op success (AppendResult.Duplicate is true).
//
// Backends live in subpackages (eventstore/sqlite, eventstore/esdb) and all
// run the conformance suite in eventstore/storetest unchanged. This package
// imports only the standard library; event payloads are opaque bytes here.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Backends wrap them with the operation and stream, e.g.
// fmt.Errorf("append %s: %w", stream, ErrWrongExpectedRevision); callers
// test with errors.Is.
var (
	// ErrWrongExpectedRevision: the stream was not at the expected revision
	// and the events were not already stored there. Nothing was written.
	// The caller may re-read the stream and decide again.
	ErrWrongExpectedRevision = errors.New("eventstore: wrong expected revision")

	// ErrEventIDConflict: an event ID in the append is already stored with
	// another stream, type or payload. Nothing was written. It means two
	// different facts were given the same identity: a bug or tampering,
	// never something to retry.
	ErrEventIDConflict = errors.New("eventstore: event id already stored with other content")

	// ErrUnavailable: the outcome of the operation is unknown (connection
	// lost, timeout, server not leader...). For an append the events may or
	// may not have been stored; retrying with the same event IDs is safe.
	ErrUnavailable = errors.New("eventstore: unavailable, outcome unknown")

	// ErrClosed: the store was closed.
	ErrClosed = errors.New("eventstore: closed")

	// ErrInvalidArgument: the request itself is malformed (empty stream
	// name, zero event ID, empty type, no events...). Nothing was written.
	ErrInvalidArgument = errors.New("eventstore: invalid argument")
)

// ExpectedKind says which check an append makes before writing.
type ExpectedKind uint8

const (
	// ExpectAny appends whatever the stream's state.
	ExpectAny ExpectedKind = iota
	// ExpectNoStream appends only if the stream has no events yet.
	ExpectNoStream
	// ExpectStreamExists appends only if the stream has at least one event.
	ExpectStreamExists
	// ExpectRevision appends only if the stream's last event has exactly
	// this revision (revisions start at 0).
	ExpectRevision
)

// ExpectedRevision is the optimistic-concurrency condition of an append.
// Build it with Any, NoStream, StreamExists or Exact.
type ExpectedRevision struct {
	Kind     ExpectedKind
	Revision uint64 // meaningful only for ExpectRevision
}

func Any() ExpectedRevision             { return ExpectedRevision{Kind: ExpectAny} }
func NoStream() ExpectedRevision        { return ExpectedRevision{Kind: ExpectNoStream} }
func StreamExists() ExpectedRevision    { return ExpectedRevision{Kind: ExpectStreamExists} }
func Exact(rev uint64) ExpectedRevision { return ExpectedRevision{Kind: ExpectRevision, Revision: rev} }

// After returns the condition "the stream is exactly as these events left
// it": NoStream for an empty slice, Exact(last revision) otherwise.
func After(events []RecordedEvent) ExpectedRevision {
	if len(events) == 0 {
		return NoStream()
	}
	return Exact(events[len(events)-1].Revision)
}

func (e ExpectedRevision) String() string {
	switch e.Kind {
	case ExpectAny:
		return "any"
	case ExpectNoStream:
		return "no-stream"
	case ExpectStreamExists:
		return "stream-exists"
	case ExpectRevision:
		return fmt.Sprintf("revision %d", e.Revision)
	}
	return fmt.Sprintf("expected-kind(%d)", e.Kind)
}

// EventID is a 16-byte UUID chosen by the writer. The zero ID is invalid:
// a backend must never invent one, since that would defeat idempotency.
type EventID [16]byte

// IsZero reports whether id is the zero UUID.
func (id EventID) IsZero() bool { return id == EventID{} }

// String formats id in canonical UUID form (8-4-4-4-12, lowercase hex).
func (id EventID) String() string {
	const hexdigits = "0123456789abcdef"
	var b [36]byte
	j := 0
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j] = hexdigits[c>>4]
		b[j+1] = hexdigits[c&0xf]
		j += 2
	}
	return string(b[:])
}

// ParseEventID parses the canonical 36-character UUID form.
func ParseEventID(s string) (EventID, error) {
	var id EventID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, fmt.Errorf("%w: event id %q is not a canonical UUID", ErrInvalidArgument, s)
	}
	j := 0
	for i := 0; i < 36; {
		if s[i] == '-' {
			i++
			continue
		}
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return EventID{}, fmt.Errorf("%w: event id %q is not a canonical UUID", ErrInvalidArgument, s)
		}
		id[j] = hi<<4 | lo
		j++
		i += 2
	}
	return id, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// EventData is an event to append.
type EventData struct {
	ID          EventID
	Type        string // e.g. "PaymentConfirmed"; non-empty
	ContentType string // "application/json" for the ledger's events
	Data        []byte
	Metadata    []byte // optional
}

// Position is a place in the store's global log. Positions grow strictly in
// commit order but need not be dense: the embedded store counts 1, 2, 3...
// (Commit == Prepare == sequence); EventStoreDB uses log byte offsets. The
// zero Position is "before the first event". Compare with Compare/Less.
type Position struct {
	Commit  uint64
	Prepare uint64
}

// Start is the position before the first event.
var Start = Position{}

// Compare returns -1, 0 or +1 comparing p with q (Commit, then Prepare).
func (p Position) Compare(q Position) int {
	switch {
	case p.Commit < q.Commit:
		return -1
	case p.Commit > q.Commit:
		return 1
	case p.Prepare < q.Prepare:
		return -1
	case p.Prepare > q.Prepare:
		return 1
	}
	return 0
}

// Less reports whether p is before q.
func (p Position) Less(q Position) bool { return p.Compare(q) < 0 }

// IsZero reports whether p is Start.
func (p Position) IsZero() bool { return p == Position{} }

func (p Position) String() string {
	if p.Commit == p.Prepare {
		return fmt.Sprintf("%d", p.Commit)
	}
	return fmt.Sprintf("%d/%d", p.Commit, p.Prepare)
}

// ParsePosition parses String's form: "commit" when commit and prepare are
// equal, "commit/prepare" otherwise. The empty string is Start.
func ParsePosition(s string) (Position, error) {
	if s == "" {
		return Start, nil
	}
	c, p, two := strings.Cut(s, "/")
	commit, err := strconv.ParseUint(c, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("%w: position %q: %w", ErrInvalidArgument, s, err)
	}
	prepare := commit
	if two {
		if prepare, err = strconv.ParseUint(p, 10, 64); err != nil {
			return Position{}, fmt.Errorf("%w: position %q: %w", ErrInvalidArgument, s, err)
		}
	}
	return Position{Commit: commit, Prepare: prepare}, nil
}

// RecordedEvent is an event as stored.
type RecordedEvent struct {
	StreamID    string
	ID          EventID
	Type        string
	ContentType string
	Data        []byte
	Metadata    []byte
	Revision    uint64    // 0-based place in its stream
	Position    Position  // place in the global log
	RecordedAt  time.Time // when the store committed it (UTC)
}

// AppendResult tells where an append left the stream.
type AppendResult struct {
	// NextExpected is the revision of the stream's last event after the
	// append: pass Exact(NextExpected) to append again.
	NextExpected uint64
	// Position is the global position of the last appended event (for a
	// duplicate, of the already-stored copy, where the backend knows it).
	Position Position
	// Duplicate is true when every event was already stored at exactly this
	// place in the stream, so nothing new was written.
	Duplicate bool
}

// Store is the contract every backend implements. All methods are safe for
// concurrent use.
type Store interface {
	// Append writes events to the end of stream atomically (all or none),
	// after checking expected. It returns only when the events are durable
	// (for the embedded store: committed and fsynced).
	//
	// Idempotency: if the events (same IDs, in order) are already stored
	// immediately after expected, Append succeeds with Duplicate set and
	// writes nothing. If an ID is stored elsewhere or with other type/data,
	// it fails with ErrEventIDConflict (where Features.DetectsContentConflict;
	// otherwise with ErrWrongExpectedRevision). A wrong expectation fails
	// with ErrWrongExpectedRevision. When the outcome is unknown it fails
	// with ErrUnavailable: retry with the same IDs.
	Append(ctx context.Context, stream string, expected ExpectedRevision, events ...EventData) (AppendResult, error)

	// ReadStream returns up to max events of stream with revision >= from,
	// in revision order (max <= 0 means all). A stream that does not exist
	// reads as an empty slice and no error; so does reading past the end.
	ReadStream(ctx context.Context, stream string, from uint64, max int) ([]RecordedEvent, error)

	// ReadAll returns up to max events (max > 0) strictly after position
	// `after`, in global order. Past the end it returns an empty slice.
	ReadAll(ctx context.Context, after Position, max int) ([]RecordedEvent, error)

	// Subscribe follows the global log strictly after `after`: first the
	// events already stored (catch-up), then new ones as they are committed
	// (live), never skipping or repeating one. Only streams whose name starts
	// with opts.StreamPrefix are delivered (all when empty). The
	// subscription ends when ctx is cancelled or Close is called.
	Subscribe(ctx context.Context, after Position, opts SubscribeOptions) (Subscription, error)

	// Features says which optional promises this backend makes.
	Features() Features

	// Close releases the store. Appends in flight either complete or fail;
	// later calls fail with ErrClosed.
	Close() error
}

// SubscribeOptions narrow a subscription.
type SubscribeOptions struct {
	// StreamPrefix delivers only streams whose ID starts with it.
	StreamPrefix string
	// MaxBatch caps the events in one Batch (0: the backend's default).
	MaxBatch int
}

// Subscription is a live feed of the global log. Not safe for concurrent
// use: one goroutine calls Next.
type Subscription interface {
	// Next blocks until at least one event is available, or the backend
	// reports progress through events that the filter skipped, and returns
	// them. Batch.Checkpoint is the position up to which the log has been
	// read: resubscribing after it skips nothing and repeats nothing. Next
	// returns ctx.Err() when ctx ends, ErrClosed after Close, and
	// ErrUnavailable when the feed was lost (resubscribe from the last
	// checkpoint).
	Next(ctx context.Context) (Batch, error)
	// Close ends the subscription. It is safe to call more than once.
	Close() error
}

// Batch is what one Subscription.Next returns.
type Batch struct {
	Events     []RecordedEvent // in global order; may be empty for a pure checkpoint
	Checkpoint Position        // >= the last event's position
}

// Features are the promises that differ between backends; the conformance
// suite reads them to know what to check (like watermill's pubsub tests).
type Features struct {
	// Name of the backend for messages, e.g. "sqlite", "esdb".
	Name string
	// DensePositions: positions are 1, 2, 3... with no gaps (the embedded
	// store). When false, only strict ordering is promised.
	DensePositions bool
	// DetectsContentConflict: re-appending an existing event ID with other
	// type or data is reported as ErrEventIDConflict.
	DetectsContentConflict bool
	// GlobalIDUniqueness: an event ID stored in one stream is refused in any
	// other stream (ErrEventIDConflict). EventStoreDB dedupes per stream only.
	GlobalIDUniqueness bool
	// Persistent: the data survives Close and reopen (the suite then checks
	// reopening through the Reopen hook).
	Persistent bool
}
