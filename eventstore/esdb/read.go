package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/orderledger/orderledger/eventstore"
)

// readPage is how many events one read call asks for.
const readPage = 1024

// readAttempts bounds retries of a read after NotLeader, Unavailable or a
// broken connection; reads are safe to repeat.
const readAttempts = 3

// ReadStream implements eventstore.Store. A stream that does not exist
// reads as empty.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, n int) ([]eventstore.RecordedEvent, error) {
	if err := validateStream(stream); err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	out, err := s.readFrom(ctx, s.opts.namespace+stream, from, n)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, s.classify(err))
	}
	return out, nil
}

// readFrom reads up to n events (all when n <= 0) of the stream called name
// on the server, from revision from on, in pages.
func (s *Store) readFrom(ctx context.Context, name string, from uint64, n int) ([]eventstore.RecordedEvent, error) {
	var out []eventstore.RecordedEvent
	for {
		if from > math.MaxInt64 {
			// Past any stream's end; the server keeps revisions as int64.
			return out, nil
		}
		want := uint64(readPage)
		if n > 0 {
			want = min(want, uint64(n-len(out)))
		}
		page, err := s.readRaw(ctx, name, esdbclient.ReadStreamOptions{From: esdbclient.Revision(from)}, want)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if uint64(len(page)) < want || (n > 0 && len(out) >= n) {
			return out, nil
		}
		from = page[len(page)-1].Revision + 1
	}
}

// ReadAll implements eventstore.Store: up to max events strictly after
// `after`, system events ($-prefixed types or streams) and streams outside
// the namespace left out. EventStoreDB reads $all from a position
// inclusively, so the event at exactly `after` is skipped here.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, n int) ([]eventstore.RecordedEvent, error) {
	if n <= 0 {
		return nil, fmt.Errorf("read all: %w: max %d", eventstore.ErrInvalidArgument, n)
	}
	// Page size: one more than asked, for the event at `after`, and enough
	// to get past system events cheaply.
	page := uint64(min(max(n+1, 64), readPage))
	cursor := after
	var out []eventstore.RecordedEvent
	for {
		from := allFrom(cursor)
		batch, err := retryRead(s, ctx, func(ctx context.Context, cn *conn) ([]*esdbclient.ResolvedEvent, error) {
			rs, err := cn.client.ReadAll(ctx, esdbclient.ReadAllOptions{From: from}, page)
			if err != nil {
				return nil, err
			}
			return recvAll(rs)
		})
		if err != nil {
			if !errors.Is(err, eventstore.ErrClosed) && s.pastEnd(ctx, cursor) {
				return out, nil // a position past the log's end reads as empty
			}
			return nil, fmt.Errorf("read all after %v: %w", after, s.classify(err))
		}
		for _, ev := range batch {
			rec, ok := s.convert(ev)
			if !cursor.Less(rec.Position) {
				continue
			}
			cursor = rec.Position
			if !ok {
				continue
			}
			out = append(out, rec)
			if len(out) == n {
				return out, nil
			}
		}
		if uint64(len(batch)) < page {
			return out, nil
		}
	}
}

// pastEnd reports whether p is at or after the last event of the log. It
// is asked only after a read from p failed: how a server answers a read
// from a position past its end is not documented.
func (s *Store) pastEnd(ctx context.Context, p eventstore.Position) bool {
	last, err := retryRead(s, ctx, func(ctx context.Context, cn *conn) (eventstore.Position, error) {
		rs, err := cn.client.ReadAll(ctx, esdbclient.ReadAllOptions{From: esdbclient.End{}, Direction: esdbclient.Backwards}, 1)
		if err != nil {
			return eventstore.Position{}, err
		}
		defer rs.Close()
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return eventstore.Position{}, nil
		}
		if err != nil {
			return eventstore.Position{}, err
		}
		return position(ev.OriginalEvent().Position), nil
	})
	return err == nil && !p.Less(last)
}

// readRaw reads up to count events of a stream (no namespace handling of
// the name), retrying transport failures. A missing stream is empty.
func (s *Store) readRaw(ctx context.Context, name string, opts esdbclient.ReadStreamOptions, count uint64) ([]eventstore.RecordedEvent, error) {
	return retryRead(s, ctx, func(ctx context.Context, cn *conn) ([]eventstore.RecordedEvent, error) {
		rs, err := cn.client.ReadStream(ctx, name, opts, count)
		if err != nil {
			return nil, err
		}
		evs, err := recvAll(rs)
		if isCode(err, esdbclient.ErrorCodeResourceNotFound) {
			return nil, nil // StreamNotFound
		}
		if err != nil {
			return nil, err
		}
		var out []eventstore.RecordedEvent
		for _, ev := range evs {
			rec, _ := s.convert(ev)
			out = append(out, rec)
		}
		return out, nil
	})
}

// recvAll receives the events of rs up to its end, and closes it.
func recvAll(rs *esdbclient.ReadStream) ([]*esdbclient.ResolvedEvent, error) {
	defer rs.Close()
	var out []*esdbclient.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
}

// retryRead runs a read, repeating it after retryable failures.
func retryRead[T any](s *Store, ctx context.Context, fn func(ctx context.Context, cn *conn) (T, error)) (T, error) {
	v, _, err := retry(s, ctx, readAttempts, retryable, func() (T, error) { return call(s, ctx, fn) })
	return v, err
}

// convert turns a client event into a RecordedEvent. ok is false for what
// the ledger must not see: system events and streams outside the namespace.
func (s *Store) convert(ev *esdbclient.ResolvedEvent) (eventstore.RecordedEvent, bool) {
	r := ev.Event
	if r == nil {
		r = ev.OriginalEvent()
	}
	if r == nil {
		return eventstore.RecordedEvent{}, false
	}
	pos := position(r.Position)
	if pos.Commit == math.MaxUint64 {
		pos = eventstore.Position{} // "no position" (old servers on stream reads)
	}
	rec := eventstore.RecordedEvent{
		StreamID:    strings.TrimPrefix(r.StreamID, s.opts.namespace),
		ID:          eventstore.EventID(r.EventID),
		Type:        r.EventType,
		ContentType: r.ContentType,
		Data:        nilIfEmpty(r.Data),
		Metadata:    nilIfEmpty(r.UserMetadata),
		Revision:    r.EventNumber,
		Position:    pos,
		RecordedAt:  r.CreatedDate.UTC(),
	}
	ok := !strings.HasPrefix(r.StreamID, "$") && !strings.HasPrefix(r.EventType, "$") &&
		strings.HasPrefix(r.StreamID, s.opts.namespace)
	return rec, ok
}

// position converts the client's log position.
func position(p esdbclient.Position) eventstore.Position {
	return eventstore.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// allFrom is where a read or subscription of $all starts for `after`: the
// beginning of the log for the zero position.
func allFrom(after eventstore.Position) esdbclient.AllPosition {
	if after.IsZero() {
		return esdbclient.Start{}
	}
	return esdbclient.Position{Commit: after.Commit, Prepare: after.Prepare}
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
