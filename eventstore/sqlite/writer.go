package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/orderledger/orderledger/eventstore"
)

// The group-commit pipeline
//
// An fsync costs far more than the inserts of one notification, so
// committing every Append on its own would cap the store at one append per
// fsync whatever the number of callers. Instead:
//
//  1. Append validates its arguments, puts a request on the queue s.reqs and
//     waits for the request's done channel.
//  2. One writer goroutine (writeLoop) owns the only write connection. It
//     takes the first request from the queue, then everything else that is
//     already waiting (up to maxGroup requests), without waiting for more:
//     a lone caller is served at once, and while one group is being fsynced
//     the next gathers in the queue by itself. So the group size, and the
//     throughput, grow with the number of concurrent callers (with N
//     callers, groups settle around N/2: half wait for the commit in
//     flight while the other half queue up).
//  3. commitGroup opens ONE transaction and loads, in two queries, the
//     state of every stream and every event ID that the group mentions
//     (groupState). It then takes the requests in queue order, deciding
//     each against that in-memory state (decide) and inserting the events
//     of those that pass (write), which updates the state, so each
//     request sees the ones before it in the same group. A request is
//     decided entirely before anything of it is inserted: one that fails
//     (wrong revision, ID conflict) writes nothing and does not disturb
//     the others, with no savepoint needed. Positions are handed out in
//     order from the last committed one, so they are gapless and follow
//     commit order.
//  4. It commits once (one fsync of the WAL), then wakes the
//     subscriptions and closes each request's done channel.
//
// Failure: anything that is not a verdict on a single request (an I/O
// error, COMMIT, the test commit hook) rolls the whole transaction back and
// every request of the group gets the error, since a verdict may have
// depended on a request that is now rolled back. The writer keeps no state
// across transactions (the last position and the stream revisions are read
// inside each one), so a failed commit cannot leave a stale revision or
// position behind. A failed COMMIT is reported as
// eventstore.ErrUnavailable: SQLite may have written the commit record
// before the error, so the outcome is unknown and the caller must retry
// with the same event IDs, which is safe.

// request is one Append waiting for the writer. The writer sets res and
// err, then closes done.
type request struct {
	ctx      context.Context
	stream   string
	expected eventstore.ExpectedRevision
	events   []eventstore.EventData

	res  eventstore.AppendResult
	err  error
	done chan struct{}
}

// Append writes events to the end of stream after checking expected, and
// returns after the commit is fsynced. See eventstore.Store for the
// contract. Errors are wrapped as "append <stream>: ...":
// ErrInvalidArgument for a malformed request; ErrWrongExpectedRevision or
// ErrEventIDConflict when nothing was written; ErrUnavailable when the
// outcome is unknown (the commit failed, or ctx ended while the request was
// queued or being committed): retry with the same event IDs; ErrClosed
// after Close. If ctx ends before the request is queued, ctx.Err() is
// returned and nothing was written.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := s.append(ctx, stream, expected, events)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	return res, nil
}

// append is Append without the "append <stream>" context on its errors.
func (s *Store) append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events []eventstore.EventData) (eventstore.AppendResult, error) {
	if err := validateAppend(stream, expected, events); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	r := &request{ctx: ctx, stream: stream, expected: expected, events: events, done: make(chan struct{})}
	unlock, err := s.readLock()
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	select {
	case s.reqs <- r:
		unlock()
	case <-ctx.Done():
		unlock()
		return eventstore.AppendResult{}, ctx.Err()
	}

	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return eventstore.AppendResult{}, fmt.Errorf("%w: %w", eventstore.ErrUnavailable, ctx.Err())
	}
}

// validateAppend checks what can be checked without the database.
func validateAppend(stream string, expected eventstore.ExpectedRevision, events []eventstore.EventData) error {
	switch {
	case stream == "":
		return fmt.Errorf("%w: empty stream name", eventstore.ErrInvalidArgument)
	case !utf8.ValidString(stream):
		return fmt.Errorf("%w: stream name %q is not valid UTF-8", eventstore.ErrInvalidArgument, stream)
	case len(events) == 0:
		return fmt.Errorf("%w: no events", eventstore.ErrInvalidArgument)
	case expected.Kind > eventstore.ExpectRevision:
		return fmt.Errorf("%w: unknown expected revision %v", eventstore.ErrInvalidArgument, expected)
	case expected.Kind == eventstore.ExpectRevision && expected.Revision >= math.MaxInt64:
		// Revisions are SQLite integers; no stream gets that long, so the
		// expectation cannot hold. Checked here to keep +1 from overflowing.
		return fmt.Errorf("%w: stream cannot be at %v", eventstore.ErrWrongExpectedRevision, expected)
	}
	var seen map[eventstore.EventID]struct{}
	if len(events) > 1 {
		seen = make(map[eventstore.EventID]struct{}, len(events))
	}
	for i, e := range events {
		switch {
		case e.ID.IsZero():
			return fmt.Errorf("%w: event %d has the zero id", eventstore.ErrInvalidArgument, i)
		case e.Type == "":
			return fmt.Errorf("%w: event %d (%s) has no type", eventstore.ErrInvalidArgument, i, e.ID)
		}
		if seen != nil {
			if _, dup := seen[e.ID]; dup {
				return fmt.Errorf("%w: event id %s appears twice", eventstore.ErrInvalidArgument, e.ID)
			}
			seen[e.ID] = struct{}{}
		}
	}
	return nil
}

// writeStmts are the writer's prepared statements. They are prepared on
// the write pool, which has one connection, so database/sql reuses them
// inside every transaction (Tx.Stmt).
type writeStmts struct {
	lastPos, streams, events, insert, upsertStream *sql.Stmt
}

func prepareWrite(db *sql.DB) (*writeStmts, error) {
	st, err := prepare(context.Background(), db,
		`SELECT coalesce(max(position), 0) FROM events`,
		// The group's streams and IDs are passed as one JSON array each.
		`SELECT stream_id, last_revision FROM streams WHERE stream_id IN (SELECT value FROM json_each(?))`,
		`SELECT `+eventColumns+` FROM events WHERE event_id IN (SELECT value FROM json_each(?))`,
		`INSERT INTO events (`+eventColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		`INSERT INTO streams (stream_id, last_revision, last_position) VALUES (?, ?, ?)
		 ON CONFLICT (stream_id) DO UPDATE SET last_revision = excluded.last_revision, last_position = excluded.last_position`,
	)
	if err != nil {
		return nil, err
	}
	return &writeStmts{lastPos: st[0], streams: st[1], events: st[2], insert: st[3], upsertStream: st[4]}, nil
}

func (w *writeStmts) close() error {
	return closeStmts(w.lastPos, w.streams, w.events, w.insert, w.upsertStream)
}

// writeLoop is the writer goroutine: it gathers the waiting requests into
// groups and commits each group in one transaction, until Close closes the
// queue and every queued request has been answered.
func (s *Store) writeLoop() {
	defer close(s.writerDone)
	group := make([]*request, 0, s.opts.maxGroup)
	for {
		r, ok := <-s.reqs
		if !ok {
			return
		}
		group = append(group[:0], r)
	gather:
		for len(group) < s.opts.maxGroup {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break gather
				}
				group = append(group, r)
			default:
				break gather
			}
		}
		s.commitGroup(group)
		clear(group) // drop references for the garbage collector
	}
}

// commitGroup applies the group's requests in one transaction and commits
// once. See the pipeline comment above.
func (s *Store) commitGroup(group []*request) {
	ctx := context.Background() // the group is not tied to any caller
	fail := func(err error) {
		s.stats.failed.Add(1)
		for _, r := range group {
			r.err = err
			close(r.done)
		}
	}

	live := group[:0:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			// The caller has given up and returned ErrUnavailable; do
			// not write what nobody will acknowledge.
			r.err = err
			continue
		}
		live = append(live, r)
	}

	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		fail(fmt.Errorf("begin write transaction: %w", err))
		return
	}
	gs, err := s.loadGroupState(ctx, tx, live)
	if err != nil {
		s.abort(tx)
		fail(err)
		return
	}
	insert := tx.StmtContext(ctx, s.w.insert)
	upsert := tx.StmtContext(ctx, s.w.upsertStream)
	first := gs.pos
	recordedAt := time.Now().UTC().Format(timeLayout)
	for _, r := range live {
		var write bool
		r.res, write, r.err = gs.decide(r)
		if !write {
			continue // a duplicate or a refusal: nothing to insert
		}
		if r.res, err = gs.write(ctx, insert, upsert, r, recordedAt); err != nil {
			s.abort(tx)
			fail(err)
			return
		}
	}

	if s.opts.commitHook != nil {
		if err := s.opts.commitHook(); err != nil {
			s.abort(tx)
			fail(fmt.Errorf("%w: commit: %w", eventstore.ErrUnavailable, err))
			return
		}
	}
	if err := tx.Commit(); err != nil {
		// If SQLite left the transaction open (e.g. SQLITE_BUSY), end it
		// so that the next group starts clean; the error of a ROLLBACK
		// without a transaction is expected and ignored.
		_, _ = s.wdb.ExecContext(ctx, `ROLLBACK`)
		fail(fmt.Errorf("%w: commit: %w", eventstore.ErrUnavailable, err))
		return
	}

	s.stats.commits.Add(1)
	s.stats.events.Add(gs.pos - first)
	// Publish before answering, so that a subscription started after
	// Append returns sees the appended events as already stored.
	if gs.pos > first {
		s.published(gs.pos)
	}
	for _, r := range group {
		if r.err == nil {
			s.stats.appends.Add(1)
			if r.res.Duplicate {
				s.stats.duplicates.Add(1)
			}
		}
		close(r.done)
	}
}

// abort rolls tx back. Should that fail, it ends whatever transaction the
// write connection may still have open, so that the next group can begin.
func (s *Store) abort(tx *sql.Tx) {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		_, _ = s.wdb.ExecContext(context.Background(), `ROLLBACK`)
	}
}

// groupState is what the requests of one group need to know about the
// database, loaded at the start of the write transaction and kept up to
// date by write as the group's events are inserted. It lives for one
// transaction only.
type groupState struct {
	pos     uint64                                           // last position used
	streams map[string]uint64                                // last revision of each existing stream the group mentions
	ids     map[eventstore.EventID]*eventstore.RecordedEvent // every stored event whose ID the group mentions
}

// loadGroupState reads the last position and the streams and event IDs
// that the requests mention.
func (s *Store) loadGroupState(ctx context.Context, tx *sql.Tx, group []*request) (*groupState, error) {
	gs := &groupState{
		streams: make(map[string]uint64, len(group)),
		ids:     make(map[eventstore.EventID]*eventstore.RecordedEvent),
	}
	var last int64
	if err := tx.StmtContext(ctx, s.w.lastPos).QueryRowContext(ctx).Scan(&last); err != nil {
		return nil, fmt.Errorf("read last position: %w", err)
	}
	gs.pos = uint64(last)
	if len(group) == 0 {
		return gs, nil
	}

	names := make([]string, 0, len(group))
	seen := make(map[string]bool, len(group))
	nids := 0
	for _, r := range group {
		if !seen[r.stream] {
			seen[r.stream] = true
			names = append(names, r.stream)
		}
		nids += len(r.events)
	}
	list, err := json.Marshal(names)
	if err != nil {
		return nil, fmt.Errorf("encode stream names: %w", err)
	}
	rows, err := tx.StmtContext(ctx, s.w.streams).QueryContext(ctx, string(list))
	if err != nil {
		return nil, fmt.Errorf("read streams: %w", err)
	}
	for rows.Next() {
		var name string
		var rev int64
		if err := rows.Scan(&name, &rev); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read streams: %w", err)
		}
		gs.streams[name] = uint64(rev)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("read streams: %w", err)
	}

	// Event IDs are hex and dashes: the JSON array needs no escaping.
	idList := make([]byte, 0, 2+nids*39)
	idList = append(idList, '[')
	for _, r := range group {
		for _, e := range r.events {
			if len(idList) > 1 {
				idList = append(idList, ',')
			}
			idList = append(idList, '"')
			idList = append(idList, e.ID.String()...)
			idList = append(idList, '"')
		}
	}
	idList = append(idList, ']')
	rows, err = tx.StmtContext(ctx, s.w.events).QueryContext(ctx, string(idList))
	if err != nil {
		return nil, fmt.Errorf("read event ids: %w", err)
	}
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("read event ids: %w", err)
		}
		gs.ids[e.ID] = &e
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("read event ids: %w", err)
	}
	return gs, nil
}

// sameContent reports whether e is the very event that is stored as rec.
func sameContent(rec *eventstore.RecordedEvent, e eventstore.EventData) bool {
	return rec.Type == e.Type && rec.ContentType == e.ContentType && bytes.Equal(rec.Data, e.Data) && bytes.Equal(rec.Metadata, e.Metadata)
}

// decide reaches the verdict on one request against the group state,
// before anything of it is inserted: write reports that its events are to
// be written; otherwise res is the result of a duplicate, or err (wrapping
// a sentinel) says why the request fails.
//
// The verdict, in order:
//  1. An ID stored in another stream, or with other type, content type,
//     data or metadata: ErrEventIDConflict.
//  2. Every event stored, consecutively in this stream, where expected
//     puts it (right after the expected revision; anywhere for Any and
//     StreamExists): a duplicate, success with nothing written.
//  3. The expectation does not hold: ErrWrongExpectedRevision.
//  4. Some IDs stored (same content, this stream) but not as a whole
//     retry: ErrEventIDConflict, since writing would store an ID twice.
//  5. Otherwise the events are written.
func (gs *groupState) decide(r *request) (res eventstore.AppendResult, write bool, err error) {
	found := make([]*eventstore.RecordedEvent, len(r.events))
	nfound := 0
	for i, e := range r.events {
		f := gs.ids[e.ID]
		if f == nil {
			continue
		}
		if f.StreamID != r.stream {
			return res, false, fmt.Errorf("%w: event %s is stored in stream %q", eventstore.ErrEventIDConflict, e.ID, f.StreamID)
		}
		if !sameContent(f, e) {
			return res, false, fmt.Errorf("%w: event %s is stored at revision %d with other content", eventstore.ErrEventIDConflict, e.ID, f.Revision)
		}
		found[i] = f
		nfound++
	}
	if nfound == len(found) && isRetry(r.expected, found) {
		last := found[len(found)-1]
		return eventstore.AppendResult{NextExpected: last.Revision, Position: last.Position, Duplicate: true}, false, nil
	}
	cur, exists := gs.streams[r.stream]
	if err := checkExpected(r.expected, exists, cur); err != nil {
		return res, false, err
	}
	for i, f := range found {
		if f != nil {
			return res, false, fmt.Errorf("%w: event %s is already stored at revision %d of this stream",
				eventstore.ErrEventIDConflict, r.events[i].ID, f.Revision)
		}
	}
	return res, true, nil
}

// write inserts the events of a request that decide let through, at the
// next revisions of its stream and the next positions, and records them in
// the group state. An error fails the whole group.
func (gs *groupState) write(ctx context.Context, insert, upsert *sql.Stmt, r *request, recordedAt string) (eventstore.AppendResult, error) {
	first := uint64(0) // revision of the first event
	if cur, exists := gs.streams[r.stream]; exists {
		first = cur + 1
	}
	for i := range r.events {
		e := &r.events[i]
		rev, pos := first+uint64(i), gs.pos+1
		if _, err := insert.ExecContext(ctx,
			int64(pos), r.stream, int64(rev), e.ID.String(), e.Type, e.ContentType,
			payload(e.Data, false), payload(e.Metadata, true), recordedAt,
		); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("insert event %s: %w", e.ID, err)
		}
		gs.ids[e.ID] = &eventstore.RecordedEvent{
			StreamID: r.stream, ID: e.ID, Type: e.Type, ContentType: e.ContentType, Data: e.Data, Metadata: e.Metadata,
			Revision: rev, Position: eventstore.Position{Commit: pos, Prepare: pos},
		}
		gs.pos = pos
	}
	last := first + uint64(len(r.events)) - 1
	if _, err := upsert.ExecContext(ctx, r.stream, int64(last), int64(gs.pos)); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("update stream %s: %w", r.stream, err)
	}
	gs.streams[r.stream] = last
	return eventstore.AppendResult{
		NextExpected: last,
		Position:     eventstore.Position{Commit: gs.pos, Prepare: gs.pos},
	}, nil
}

// isRetry reports whether found (all non-nil, all in the request's stream
// with the same content) lie consecutively where expected puts them.
func isRetry(expected eventstore.ExpectedRevision, found []*eventstore.RecordedEvent) bool {
	for i := 1; i < len(found); i++ {
		if found[i].Revision != found[0].Revision+uint64(i) {
			return false
		}
	}
	switch expected.Kind {
	case eventstore.ExpectNoStream:
		return found[0].Revision == 0
	case eventstore.ExpectRevision:
		return found[0].Revision == expected.Revision+1
	default: // Any, StreamExists: wherever they are in the stream
		return true
	}
}

// checkExpected reports ErrWrongExpectedRevision unless the stream state
// satisfies expected.
func checkExpected(expected eventstore.ExpectedRevision, exists bool, cur uint64) error {
	ok := false
	switch expected.Kind {
	case eventstore.ExpectAny:
		ok = true
	case eventstore.ExpectNoStream:
		ok = !exists
	case eventstore.ExpectStreamExists:
		ok = exists
	case eventstore.ExpectRevision:
		ok = exists && cur == expected.Revision
	}
	if ok {
		return nil
	}
	if !exists {
		return fmt.Errorf("%w: stream does not exist, expected %v", eventstore.ErrWrongExpectedRevision, expected)
	}
	return fmt.Errorf("%w: stream is at revision %d, expected %v", eventstore.ErrWrongExpectedRevision, cur, expected)
}

// payload is the SQLite value for event data or metadata: TEXT when it is
// valid UTF-8 without NUL bytes (JSON, so that auditors' tools show it),
// BLOB otherwise; NULL for empty metadata. The bytes come back unchanged
// either way.
func payload(b []byte, nullable bool) any {
	switch {
	case len(b) == 0 && nullable:
		return nil
	case len(b) == 0:
		return ""
	case utf8.Valid(b) && bytes.IndexByte(b, 0) < 0:
		return string(b)
	}
	return b
}
