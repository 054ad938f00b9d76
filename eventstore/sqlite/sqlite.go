// Package sqlite is the embedded default backend of the eventstore: one
// SQLite file, written through modernc.org/sqlite (pure Go, no cgo).
//
// # Durability and concurrency
//
// The database runs in WAL mode with synchronous=FULL, so a commit returns
// only after the write-ahead log is fsynced; Append returns only after its
// commit. One writer goroutine owns the single write connection and commits
// the appends of all callers in groups (see writer.go: one transaction and
// one fsync for every request that was waiting), which is what lets
// throughput grow with the number of concurrent callers. Reads go through a
// separate pool of read-only connections; WAL lets them run while the writer
// commits, so a read never waits for the writer.
//
// # Schema
//
// The file is meant to be read by auditors with any SQLite tool:
//
//	events   one row per event, never updated or deleted (triggers refuse it)
//	  position        INTEGER PRIMARY KEY  global log position 1, 2, 3... in commit order, no gaps
//	  stream_id       TEXT                 e.g. "order-4200000123"
//	  stream_revision INTEGER              0-based place in the stream; UNIQUE(stream_id, stream_revision)
//	  event_id        TEXT UNIQUE          canonical lowercase UUID chosen by the writer
//	  event_type      TEXT                 e.g. "PaymentConfirmed"
//	  content_type    TEXT                 e.g. "application/json"
//	  data            TEXT or BLOB         payload; stored as TEXT when it is valid UTF-8 (JSON), else as BLOB
//	  metadata        TEXT or BLOB or NULL same rule; NULL when empty
//	  recorded_at     TEXT                 time of the write transaction, UTC, "2006-01-02T15:04:05.000000000Z"
//	streams  one row per stream: stream_id PRIMARY KEY, last_revision, last_position
//
// PRAGMA user_version holds the schema version (schemaVersion). A file with
// a newer version is refused rather than misread.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/orderledger/orderledger/eventstore"
	msqlite "modernc.org/sqlite"
)

// schemaVersion is stored in PRAGMA user_version.
const schemaVersion = 1

// schema creates version 1. The triggers make the events table append-only
// for every client of the file, not only for this package: UPDATE and
// DELETE fail.
const schema = `
CREATE TABLE events (
	position        INTEGER PRIMARY KEY,
	stream_id       TEXT    NOT NULL,
	stream_revision INTEGER NOT NULL CHECK (stream_revision >= 0),
	event_id        TEXT    NOT NULL UNIQUE CHECK (length(event_id) = 36),
	event_type      TEXT    NOT NULL CHECK (event_type <> ''),
	content_type    TEXT    NOT NULL,
	data            BLOB    NOT NULL,
	metadata        BLOB,
	recorded_at     TEXT    NOT NULL,
	UNIQUE (stream_id, stream_revision)
);
CREATE TABLE streams (
	stream_id     TEXT    PRIMARY KEY,
	last_revision INTEGER NOT NULL,
	last_position INTEGER NOT NULL REFERENCES events (position)
) WITHOUT ROWID;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
	SELECT RAISE(ABORT, 'events are immutable');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
	SELECT RAISE(ABORT, 'events are append-only');
END;
PRAGMA user_version = 1;
`

// timeLayout formats recorded_at: RFC 3339 in UTC with a fixed nine-digit
// fraction, so that the text sorts like the time.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// eventColumns is the column list every read selects, in scanEvent's order.
const eventColumns = `position, stream_id, stream_revision, event_id, event_type, content_type, data, metadata, recorded_at`

// Defaults of the options.
const (
	defaultMaxGroup  = 1024
	defaultMaxBatch  = 512
	busyTimeoutMilli = 10000
)

// Option configures Open.
type Option func(*options)

type options struct {
	commitHook func() error
	maxGroup   int
}

// WithCommitHook makes the writer call hook just before each COMMIT, on the
// writer goroutine. If hook returns an error, the transaction is rolled back
// and every append of the group fails exactly as if COMMIT had failed: with
// an error wrapping eventstore.ErrUnavailable (outcome unknown to the
// caller, nothing written). It is meant for tests of "the store cannot
// commit"; hook must not call the store.
func WithCommitHook(hook func() error) Option {
	return func(o *options) { o.commitHook = hook }
}

// WithMaxGroup bounds how many Append requests the writer commits in one
// transaction (default 1024). WithMaxGroup(1) turns group commit off, which
// is only useful to measure what it brings.
func WithMaxGroup(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxGroup = n
		}
	}
}

// Store is the SQLite event store. It implements eventstore.Store; all
// methods are safe for concurrent use.
type Store struct {
	path string
	opts options

	wdb *sql.DB // one connection, used only by the writer goroutine (and Open)
	rdb *sql.DB // read-only pool
	w   *writeStmts
	r   *readStmts

	reqs       chan *request // Append → writer; closed by Close
	writerDone chan struct{} // closed when the writer goroutine has exited
	done       chan struct{} // closed by Close; wakes waiting subscriptions

	// closeMu guards closed. Append holds it for reading while it enqueues
	// a request, and reads hold it for reading while their query runs;
	// Close holds it for writing to set closed. So no request is enqueued
	// after reqs is closed, and no query starts on a closed pool or is cut
	// off by Close.
	closeMu sync.RWMutex
	closed  bool

	// notifyMu guards head and notify. After each commit the writer sets
	// head to the last committed position and closes notify, replacing it
	// with a fresh channel: every subscription waiting on the old channel
	// wakes up, with no polling.
	notifyMu sync.Mutex
	head     uint64
	notify   chan struct{}

	stats struct {
		commits, failed, appends, duplicates, events atomic.Uint64
	}
}

// Stats are counters since Open, for tests and metrics.
type Stats struct {
	// Commits counts write transactions committed (one fsync each).
	Commits uint64
	// FailedCommits counts write transactions that failed; every append
	// of such a group got an error.
	FailedCommits uint64
	// Appends counts Append calls that succeeded, duplicates included.
	Appends uint64
	// Duplicates counts the successful Appends that were duplicates.
	Duplicates uint64
	// Events counts events written.
	Events uint64
}

// Stats returns the store's counters. Appends/Commits is the average group
// size of the group commit.
func (s *Store) Stats() Stats {
	return Stats{
		Commits:       s.stats.commits.Load(),
		FailedCommits: s.stats.failed.Load(),
		Appends:       s.stats.appends.Load(),
		Duplicates:    s.stats.duplicates.Load(),
		Events:        s.stats.events.Load(),
	}
}

var _ eventstore.Store = (*Store)(nil)

// Open opens the store in the SQLite file at path, creating the file and its
// parent directory when they do not exist. The path must be a file name
// (":memory:" and names holding '?' or '#' are refused).
//
// Other processes may read the file at any time. Opening the same file twice
// for writing is safe but pointless: SQLite's locks serialize the writers
// and each transaction reads the positions and revisions it builds on, but
// a subscription wakes only for commits made through its own Store.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{maxGroup: defaultMaxGroup}
	for _, opt := range opts {
		opt(&o)
	}
	if path == "" || path == ":memory:" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open sqlite store %q: %w: need a plain file name", path, eventstore.ErrInvalidArgument)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	s := &Store{
		path:       path,
		opts:       o,
		reqs:       make(chan *request, 4*o.maxGroup),
		writerDone: make(chan struct{}),
		done:       make(chan struct{}),
		notify:     make(chan struct{}),
	}
	if err := s.open(); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	go s.writeLoop()
	return s, nil
}

// open connects both pools, migrates the schema and prepares statements.
func (s *Store) open() error {
	// _txlock=immediate: BEGIN takes the write lock at once, so that the
	// writer's first read of a transaction can never turn into a
	// SQLITE_BUSY lock upgrade if another process writes to the file.
	wdsn := fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate",
		s.path, busyTimeoutMilli)
	wconn, err := msqlite.NewConnector(wdsn)
	if err != nil {
		return err
	}
	s.wdb = sql.OpenDB(wconn)
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	if err := migrate(s.wdb); err != nil {
		return err
	}
	var mode string
	if err := s.wdb.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	if s.w, err = prepareWrite(s.wdb); err != nil {
		return err
	}

	rdsn := fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_query_only=1", s.path, busyTimeoutMilli)
	rconn, err := msqlite.NewConnector(rdsn)
	if err != nil {
		return err
	}
	s.rdb = sql.OpenDB(rconn)
	readConns := max(4, 2*runtime.GOMAXPROCS(0))
	s.rdb.SetMaxOpenConns(readConns)
	s.rdb.SetMaxIdleConns(readConns)
	if s.r, err = prepareRead(s.rdb); err != nil {
		return err
	}
	var head int64
	if err := s.w.lastPos.QueryRow().Scan(&head); err != nil {
		return fmt.Errorf("last position: %w", err)
	}
	s.head = uint64(head)
	return nil
}

// migrate creates the schema in a new file and checks the version of an
// existing one.
func migrate(db *sql.DB) error {
	var version int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	switch {
	case version == schemaVersion:
		return nil
	case version > schemaVersion:
		return fmt.Errorf("schema version %d is newer than this program's %d", version, schemaVersion)
	case version != 0:
		return fmt.Errorf("unknown schema version %d", version)
	}
	tx, err := db.Begin()
	if err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}

// Features reports what this backend promises: dense positions, content
// conflict detection, global ID uniqueness and persistence.
func (s *Store) Features() eventstore.Features {
	return eventstore.Features{
		Name:                   "sqlite",
		DensePositions:         true,
		DetectsContentConflict: true,
		GlobalIDUniqueness:     true,
		Persistent:             true,
	}
}

// Close stops accepting calls, lets the writer commit every append already
// queued (their callers get their results), ends all subscriptions and
// closes the file. Later calls, including Close, fail with
// eventstore.ErrClosed.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return fmt.Errorf("close: %w", eventstore.ErrClosed)
	}
	s.closed = true
	close(s.reqs)
	close(s.done)
	s.closeMu.Unlock()

	<-s.writerDone
	if err := s.closeDBs(); err != nil {
		return fmt.Errorf("close %s: %w", s.path, err)
	}
	return nil
}

// closeDBs closes statements and pools, whichever exist.
func (s *Store) closeDBs() error {
	var errs []error
	if s.w != nil {
		errs = append(errs, s.w.close())
	}
	if s.r != nil {
		errs = append(errs, s.r.close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	return errors.Join(errs...)
}

// readLock takes closeMu for reading for the length of a read, or while
// Append enqueues a request; it fails with ErrClosed once the store is
// closed.
func (s *Store) readLock() (unlock func(), err error) {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, eventstore.ErrClosed
	}
	return s.closeMu.RUnlock, nil
}

// watch returns the channel that the next commit closes, and the last
// committed position. Take the channel before reading the log, so that a
// commit between the read and the wait is not missed.
func (s *Store) watch() (<-chan struct{}, uint64) {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	return s.notify, s.head
}

// published tells waiting subscriptions that the log now ends at head.
func (s *Store) published(head uint64) {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	if head <= s.head {
		return
	}
	s.head = head
	close(s.notify)
	s.notify = make(chan struct{})
}

// closeStmts closes prepared statements.
func closeStmts(stmts ...*sql.Stmt) error {
	var errs []error
	for _, st := range stmts {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// prepare prepares queries in order, stopping at the first error.
func prepare(ctx context.Context, db *sql.DB, queries ...string) ([]*sql.Stmt, error) {
	out := make([]*sql.Stmt, 0, len(queries))
	for _, q := range queries {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			closeStmts(out...)
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		out = append(out, st)
	}
	return out, nil
}
