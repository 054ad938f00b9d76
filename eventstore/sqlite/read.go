package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/orderledger/orderledger/eventstore"
)

// readStmts are the prepared queries of the read-only pool.
type readStmts struct {
	stream, all, feed *sql.Stmt
}

func prepareRead(db *sql.DB) (*readStmts, error) {
	st, err := prepare(context.Background(), db,
		`SELECT `+eventColumns+` FROM events WHERE stream_id = ? AND stream_revision >= ? ORDER BY stream_revision LIMIT ?`,
		`SELECT `+eventColumns+` FROM events WHERE position > ? ORDER BY position LIMIT ?`,
		// The subscription feed: events in (after, upto] whose stream_id
		// starts with a prefix, as the byte range [lo, hi) (hi NULL: no
		// upper bound). The unary + keeps SQLite from scanning the
		// stream_id index instead of the position range.
		`SELECT `+eventColumns+` FROM events
		 WHERE position > ?1 AND position <= ?2 AND +stream_id >= ?3 AND (?4 IS NULL OR +stream_id < ?4)
		 ORDER BY position LIMIT ?5`,
	)
	if err != nil {
		return nil, err
	}
	return &readStmts{stream: st[0], all: st[1], feed: st[2]}, nil
}

func (r *readStmts) close() error {
	return closeStmts(r.stream, r.all, r.feed)
}

// ReadStream returns up to max events of stream with revision >= from, in
// revision order (max <= 0: all). A missing stream, or from past the end,
// reads as an empty slice and no error. An empty stream name fails with
// ErrInvalidArgument, a closed store with ErrClosed.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, max int) ([]eventstore.RecordedEvent, error) {
	if stream == "" {
		return nil, fmt.Errorf("read stream: %w: empty stream name", eventstore.ErrInvalidArgument)
	}
	from = min(from, math.MaxInt64) // no revision is that high: reads as past the end
	limit := int64(max)
	if max <= 0 {
		limit = -1
	}
	events, err := s.query(ctx, s.r.stream, stream, int64(from), limit)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", stream, err)
	}
	return events, nil
}

// ReadAll returns up to max (> 0) events strictly after position `after`,
// in global order; past the end an empty slice. max <= 0 fails with
// ErrInvalidArgument, a closed store with ErrClosed. Only after.Commit is
// used: in this store Commit and Prepare are the same sequence number.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, max int) ([]eventstore.RecordedEvent, error) {
	if max <= 0 {
		return nil, fmt.Errorf("read all: %w: max %d must be positive", eventstore.ErrInvalidArgument, max)
	}
	a := min(after.Commit, math.MaxInt64)
	events, err := s.query(ctx, s.r.all, int64(a), int64(max))
	if err != nil {
		return nil, fmt.Errorf("read all after %v: %w", after, err)
	}
	return events, nil
}

// query runs a read statement on the read pool and scans every row.
func (s *Store) query(ctx context.Context, stmt *sql.Stmt, args ...any) ([]eventstore.RecordedEvent, error) {
	unlock, err := s.readLock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	events := []eventstore.RecordedEvent{}
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return events, nil
}

// scanEvent scans one row of eventColumns.
func scanEvent(rows *sql.Rows) (eventstore.RecordedEvent, error) {
	var (
		e              eventstore.RecordedEvent
		pos, rev       int64
		id, recordedAt string
	)
	if err := rows.Scan(&pos, &e.StreamID, &rev, &id, &e.Type, &e.ContentType, &e.Data, &e.Metadata, &recordedAt); err != nil {
		return e, fmt.Errorf("scan event: %w", err)
	}
	var err error
	if e.ID, err = eventstore.ParseEventID(id); err != nil {
		return e, fmt.Errorf("event at position %d: %w", pos, err)
	}
	if e.RecordedAt, err = time.Parse(time.RFC3339Nano, recordedAt); err != nil {
		return e, fmt.Errorf("event %s: recorded_at: %w", id, err)
	}
	e.RecordedAt = e.RecordedAt.UTC()
	e.Revision = uint64(rev)
	e.Position = eventstore.Position{Commit: uint64(pos), Prepare: uint64(pos)}
	return e, nil
}
