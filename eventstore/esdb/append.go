package esdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/orderledger/orderledger/eventstore"
)

// Content types EventStoreDB records; it stores a JSON flag, nothing else.
const (
	contentJSON   = "application/json"
	contentBinary = "application/octet-stream"
)

// DefaultMaxAppendSize is EventStoreDB's default limit on the size of one
// append (the server's MaxAppendSize option, 1 MiB). appendOverhead
// over-estimates the per-event framing the server counts.
const (
	DefaultMaxAppendSize = 1 << 20
	appendOverhead       = 64
)

// Append implements eventstore.Store.
//
// EventStoreDB dedupes by event ID only, and only where the append is aimed
// (an exact expectation that equals the stream's revision writes even an ID
// the stream already holds). So Append first reads the stream and decides
// what the contract requires: the same IDs, in order, already stored where
// the append is aimed (right after the expected revision; for any and
// stream-exists, anywhere in the stream) with the same type, data and
// metadata make it a no-op with Duplicate set; an ID of the batch stored in
// the stream otherwise, or with other content, is ErrEventIDConflict; a
// stream past the expected revision is ErrWrongExpectedRevision. Only then
// does it append, with the caller's event IDs, so the server's own
// idempotency protects a retry that races another. A WrongExpectedVersion
// answer is checked the same way (the same IDs there means an earlier
// attempt had succeeded: Duplicate). After a successful append it reads the
// events back for their exact position (the server reports its commit
// position, which need not be the last event's) and content: a racing
// append of the same IDs with other content may have been stored instead
// (the server answers success to ours), which is ErrEventIDConflict.
//
// NotLeader, Unavailable and broken connections are retried
// (WithAppendAttempts); when every attempt fails, or the deadline passes,
// the outcome is unknown and the error wraps eventstore.ErrUnavailable:
// retry with the same IDs.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	if err := validateAppend(stream, expected, events, s.opts.maxAppendSize); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	name := s.opts.namespace + stream
	data := make([]esdbclient.EventData, len(events))
	for i, e := range events {
		ct := esdbclient.ContentTypeBinary
		if e.ContentType == contentJSON {
			ct = esdbclient.ContentTypeJson
		}
		data[i] = esdbclient.EventData{
			// Never zero (validated): the client would invent a random ID.
			EventID:     uuid.UUID(e.ID),
			EventType:   e.Type,
			ContentType: ct,
			Data:        e.Data,
			Metadata:    e.Metadata,
		}
	}

	// Deadline, cancellation, unknown failures are not retried: the outcome
	// is unknown and repeating at once is unlikely to help; the caller
	// decides.
	again := func(err error) bool { return !outcomeKnown(err) && retryable(err) }
	res, exhausted, err := retry(s, ctx, s.opts.appendAttempts, again, func() (eventstore.AppendResult, error) {
		return s.appendOnce(ctx, name, expected, events, data)
	})
	switch {
	case err == nil:
		return res, nil
	case exhausted:
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %d attempts: %w", stream, s.opts.appendAttempts, s.classify(err))
	}
	return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, s.classify(err))
}

// appendOnce is one attempt: read the stream, decide, append, read back.
func (s *Store) appendOnce(ctx context.Context, name string, expected eventstore.ExpectedRevision, events []eventstore.EventData, data []esdbclient.EventData) (eventstore.AppendResult, error) {
	stored, err := s.readFrom(ctx, name, 0, 0)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if res, decided, err := decide(stored, expected, events); decided {
		return res, err
	}
	wr, err := call(s, ctx, func(ctx context.Context, cn *conn) (*esdbclient.WriteResult, error) {
		return cn.client.AppendToStream(ctx, name, esdbclient.AppendToStreamOptions{ExpectedRevision: toExpected(expected)}, data...)
	})
	if isCode(err, esdbclient.ErrorCodeWrongExpectedVersion) {
		// Another writer got there first, or an earlier attempt of ours
		// succeeded and its reply was lost: look again.
		stored, rerr := s.readFrom(ctx, name, 0, 0)
		if rerr != nil {
			return eventstore.AppendResult{}, errors.Join(fmt.Errorf("%w (%w)", eventstore.ErrWrongExpectedRevision, err), rerr)
		}
		if res, decided, derr := decide(stored, expected, events); decided && (derr == nil || errors.Is(derr, eventstore.ErrEventIDConflict)) {
			return res, derr
		}
		return eventstore.AppendResult{}, fmt.Errorf("%w (%w)", eventstore.ErrWrongExpectedRevision, err)
	}
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	res := eventstore.AppendResult{
		NextExpected: wr.NextExpectedVersion,
		Position:     eventstore.Position{Commit: wr.CommitPosition, Prepare: wr.PreparePosition},
	}
	// Read the appended events back: their exact position, and whether the
	// server found them already stored (a racing attempt with the same IDs
	// wrote them after our read; the server then answers success too).
	k := uint64(len(events))
	if res.NextExpected+1 >= k {
		back, err := s.readFrom(ctx, name, res.NextExpected+1-k, int(k))
		if err == nil && uint64(len(back)) == k && back[k-1].Revision == res.NextExpected && back[k-1].ID == events[k-1].ID {
			// The server dedupes by ID alone: an append of the same IDs
			// with other content that raced ours may be what is stored.
			for i, r := range back {
				if r.ID == events[i].ID && !sameContent(r, events[i]) {
					return eventstore.AppendResult{}, fmt.Errorf("%w: event %s is stored at revision %d with other content",
						eventstore.ErrEventIDConflict, events[i].ID, r.Revision)
				}
			}
			res.Position = back[k-1].Position
			res.Duplicate = len(stored) > 0 && res.NextExpected <= stored[len(stored)-1].Revision
		}
		// Otherwise keep the server's answer: the append did succeed.
	}
	return res, nil
}

// decide applies the contract to the stream as stored (stored is the whole
// stream, in revision order). decided is false when the events must be
// written.
func decide(stored []eventstore.RecordedEvent, expected eventstore.ExpectedRevision, events []eventstore.EventData) (res eventstore.AppendResult, decided bool, err error) {
	k := len(events)
	cur, base := int64(-1), int64(0) // last revision (-1: no stream), first stored revision
	if len(stored) > 0 {
		cur, base = int64(stored[len(stored)-1].Revision), int64(stored[0].Revision)
	}
	duplicate := func(last eventstore.RecordedEvent) (eventstore.AppendResult, bool, error) {
		return eventstore.AppendResult{NextExpected: last.Revision, Position: last.Position, Duplicate: true}, true, nil
	}
	conflict := func(e eventstore.EventData, at eventstore.RecordedEvent) (eventstore.AppendResult, bool, error) {
		return eventstore.AppendResult{}, true, fmt.Errorf("%w: event %s is stored at revision %d", eventstore.ErrEventIDConflict, e.ID, at.Revision)
	}
	wrong := func() (eventstore.AppendResult, bool, error) {
		if cur < 0 {
			return eventstore.AppendResult{}, true, fmt.Errorf("%w: expected %v, stream does not exist", eventstore.ErrWrongExpectedRevision, expected)
		}
		return eventstore.AppendResult{}, true, fmt.Errorf("%w: expected %v, stream is at revision %d", eventstore.ErrWrongExpectedRevision, expected, cur)
	}
	// Where (index in stored) each ID of the batch is already stored.
	at := make([]int, k)
	idx := make(map[eventstore.EventID]int, k)
	for i, e := range events {
		at[i] = -1
		idx[e.ID] = i
	}
	anyStored := false
	for j, r := range stored {
		if i, ok := idx[r.ID]; ok && at[i] < 0 {
			at[i] = j
			anyStored = true
		}
	}

	switch expected.Kind {
	case eventstore.ExpectNoStream, eventstore.ExpectRevision:
		want := int64(-1)
		if expected.Kind == eventstore.ExpectRevision {
			if expected.Revision > uint64(cur+1) { // also keeps the int64 conversion safe
				return wrong()
			}
			want = int64(expected.Revision)
		}
		switch {
		case want > cur || want+1 < base:
			return wrong()
		case want < cur:
			// The stream went on: it must hold these very events there.
			from := want + 1 - base
			place := stored[from:min(from+int64(k), int64(len(stored)))]
			for i, r := range place {
				if r.ID == events[i].ID && !sameContent(r, events[i]) {
					return conflict(events[i], r)
				}
			}
			if len(place) != k {
				return wrong()
			}
			for i, r := range place {
				if r.ID != events[i].ID {
					return wrong()
				}
			}
			return duplicate(place[k-1])
		}
		// want == cur: the server would write even IDs it already holds.
		for i, e := range events {
			if at[i] >= 0 {
				return conflict(e, stored[at[i]])
			}
		}
		return eventstore.AppendResult{}, false, nil
	default: // any, stream exists
		if expected.Kind == eventstore.ExpectStreamExists && cur < 0 {
			return wrong()
		}
		if !anyStored {
			return eventstore.AppendResult{}, false, nil
		}
		// Some are stored already: a duplicate only if all of them are,
		// one after the other and in order, with the same content.
		for i, e := range events {
			if at[i] >= 0 && !sameContent(stored[at[i]], e) {
				return conflict(e, stored[at[i]])
			}
		}
		for i := range events {
			if at[i] < 0 || at[i] != at[0]+i {
				j := i
				for at[j] < 0 { // name one that is stored
					j = (j + 1) % k
				}
				return conflict(events[j], stored[at[j]])
			}
		}
		return duplicate(stored[at[k-1]])
	}
}

// sameContent compares what EventStoreDB stores of an event.
func sameContent(r eventstore.RecordedEvent, e eventstore.EventData) bool {
	return r.Type == e.Type &&
		r.ContentType == storedContentType(e.ContentType) &&
		bytes.Equal(r.Data, e.Data) &&
		bytes.Equal(r.Metadata, e.Metadata)
}

func storedContentType(ct string) string {
	if ct == contentJSON {
		return contentJSON
	}
	return contentBinary
}

func toExpected(e eventstore.ExpectedRevision) esdbclient.ExpectedRevision {
	// Always explicit: the client turns an unset expectation into Any.
	switch e.Kind {
	case eventstore.ExpectNoStream:
		return esdbclient.NoStream{}
	case eventstore.ExpectStreamExists:
		return esdbclient.StreamExists{}
	case eventstore.ExpectRevision:
		return esdbclient.Revision(e.Revision) // ESDB revisions start at 0 too
	}
	return esdbclient.Any{}
}

func validateAppend(stream string, expected eventstore.ExpectedRevision, events []eventstore.EventData, maxSize int) error {
	if err := validateStream(stream); err != nil {
		return err
	}
	if expected.Kind > eventstore.ExpectRevision {
		return fmt.Errorf("%w: expected revision %v", eventstore.ErrInvalidArgument, expected)
	}
	if len(events) == 0 {
		return fmt.Errorf("%w: no events", eventstore.ErrInvalidArgument)
	}
	seen := make(map[eventstore.EventID]bool, len(events))
	size := 0
	for i, e := range events {
		switch {
		case e.ID.IsZero():
			return fmt.Errorf("%w: event %d has the zero id", eventstore.ErrInvalidArgument, i)
		case seen[e.ID]:
			return fmt.Errorf("%w: event id %s appears twice in one append", eventstore.ErrInvalidArgument, e.ID)
		case e.Type == "":
			return fmt.Errorf("%w: event %s has no type", eventstore.ErrInvalidArgument, e.ID)
		case strings.HasPrefix(e.Type, "$"):
			return fmt.Errorf("%w: event type %q: types starting with $ are EventStoreDB system events", eventstore.ErrInvalidArgument, e.Type)
		case e.ContentType != "" && e.ContentType != contentJSON && e.ContentType != contentBinary:
			return fmt.Errorf("%w: content type %q: EventStoreDB stores only %s or %s", eventstore.ErrInvalidArgument, e.ContentType, contentJSON, contentBinary)
		}
		seen[e.ID] = true
		size += len(e.Data) + len(e.Metadata) + len(e.Type) + len(e.ContentType) + appendOverhead
	}
	if maxSize > 0 && size > maxSize {
		return fmt.Errorf("%w: append of about %d bytes exceeds the server's MaxAppendSize of %d (WithMaxAppendSize)", eventstore.ErrInvalidArgument, size, maxSize)
	}
	return nil
}

func validateStream(stream string) error {
	if stream == "" {
		return fmt.Errorf("%w: empty stream name", eventstore.ErrInvalidArgument)
	}
	if strings.HasPrefix(stream, "$") {
		return fmt.Errorf("%w: stream %q: names starting with $ are EventStoreDB system streams", eventstore.ErrInvalidArgument, stream)
	}
	return nil
}
