package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

// Sentinel errors of the package; test with errors.Is.
var (
	// ErrLocked: another ReadModel or Rebuild (in this or another process)
	// holds the read model's lock file. Stop the server before rebuilding.
	ErrLocked = errors.New("projections: read model is in use by another process (stop the server before rebuilding)")

	// ErrSchema: the file was written by a binary with another schema or
	// state format. The read model is derived data: rebuild it.
	ErrSchema = errors.New("projections: read model has another schema version; rebuild it")

	// ErrBadEvent: a stored order event cannot be decoded (a known type with
	// an undecodable payload, or a malformed order stream name). The runner
	// stops rather than skip it: the read model would silently be wrong.
	ErrBadEvent = errors.New("projections: undecodable order event")

	// ErrInconsistent: the events delivered do not continue the stored rows
	// (a stream revision skips ahead). Nothing of the batch was applied;
	// rebuild the read model.
	ErrInconsistent = errors.New("projections: read model inconsistent with the store; rebuild it")

	// ErrStopped: the runner is not running (it stopped on an error or its
	// context ended), so a WaitFor cannot be satisfied.
	ErrStopped = errors.New("projections: runner stopped")
)

// schemaVersion is stored as PRAGMA user_version. Bump it whenever a table
// or the state_json form (the JSON of domain.Order) changes: an old file is
// then refused with ErrSchema instead of being misread.
const schemaVersion = 1

// checkpointName is the row of the checkpoint table this model uses.
const checkpointName = "orders"

const schema = `
CREATE TABLE orders (
	mch_id                TEXT    NOT NULL,
	out_trade_no          TEXT    NOT NULL,
	status                TEXT    NOT NULL, -- PENDING, PAID, AMOUNT_MISMATCH, PARTIALLY_REFUNDED, REFUNDED, CLOSED
	total_fee             INTEGER NOT NULL, -- fen, as placed (else as first paid)
	paid_fee              INTEGER NOT NULL, -- fen, total_fee of the confirmed payment
	cash_fee              INTEGER NOT NULL, -- fen
	refunded_fee          INTEGER NOT NULL, -- fen, succeeded refunds of the order's own payment (domain.Order.RefundedFee)
	transaction_id        TEXT    NOT NULL, -- of the confirmed payment, '' if none
	paid_at               TEXT,             -- RFC 3339, Beijing time; NULL until paid
	placed_at             TEXT,             -- RFC 3339, Beijing time; NULL if never placed here
	appid                 TEXT    NOT NULL,
	description           TEXT    NOT NULL,
	anomaly_codes         TEXT    NOT NULL, -- comma-separated, in detection order; '' if none
	revision              INTEGER NOT NULL, -- stream revision of the last applied event
	last_commit_position  INTEGER NOT NULL, -- global position of the last applied event
	last_prepare_position INTEGER NOT NULL,
	updated_at            TEXT    NOT NULL, -- wall clock of the write, UTC; not derived from events
	state_json            TEXT    NOT NULL, -- JSON of the folded domain.Order
	PRIMARY KEY (mch_id, out_trade_no)
) WITHOUT ROWID;

CREATE INDEX orders_by_status ON orders (mch_id, status);

CREATE TABLE daily_totals (
	mch_id        TEXT    NOT NULL,
	day           TEXT    NOT NULL, -- YYYY-MM-DD, Beijing time
	orders_placed INTEGER NOT NULL,
	payments      INTEGER NOT NULL, -- confirmed payments, by paid_at
	payments_fee  INTEGER NOT NULL, -- fen
	cash_fee      INTEGER NOT NULL, -- fen
	refunds       INTEGER NOT NULL, -- succeeded refunds (also of anomaly money), by succeeded_at
	refunds_fee   INTEGER NOT NULL, -- fen
	net_fee       INTEGER NOT NULL, -- payments_fee - refunds_fee, fen
	anomalies     INTEGER NOT NULL, -- all codes; by code in daily_anomalies
	PRIMARY KEY (mch_id, day)
) WITHOUT ROWID;

CREATE TABLE daily_anomalies (
	mch_id TEXT    NOT NULL,
	day    TEXT    NOT NULL, -- YYYY-MM-DD, Beijing time, of the event's recorded_at
	code   TEXT    NOT NULL,
	count  INTEGER NOT NULL,
	fee    INTEGER NOT NULL, -- sum of notified_fee, fen
	PRIMARY KEY (mch_id, day, code)
) WITHOUT ROWID;

CREATE TABLE checkpoint (
	name             TEXT PRIMARY KEY,
	commit_position  INTEGER NOT NULL,
	prepare_position INTEGER NOT NULL,
	updated_at       TEXT    NOT NULL -- wall clock of the write, UTC
);
`

// ReadModel is the SQLite read model. It is safe for concurrent use.
type ReadModel struct {
	path  string
	db    *sql.DB
	lock  *fileLock // nil for a Rebuild's temporary file
	stmts *stmts
	now   func() time.Time

	// wmu serializes apply: one batch transaction at a time per ReadModel.
	// It also guards cache, which only apply uses.
	wmu   sync.Mutex
	cache *stateCache

	// mu guards applied and changed.
	mu      sync.Mutex
	applied eventstore.Position // checkpoint of the last commit
	changed chan struct{}       // closed and replaced after each commit that moves applied

	// Test hooks; zero in production.
	beforeCommit func() error                                               // runs inside the batch transaction, after the rows are written
	noGuards     bool                                                       // disables the idempotency guards (proves the tests can fail)
	onCacheHit   func(ctx context.Context, tx *sql.Tx, row *orderRow) error // runs for each row taken from the cache, before it is used
}

// OpenReadModel opens (creating if needed) the read model at path, taking
// the exclusive lock path+".lock" (ErrLocked if held elsewhere). A file
// from another schema version fails with ErrSchema. Close it when done.
func OpenReadModel(path string) (*ReadModel, error) {
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("open read model %s: %w", path, err)
	}
	rm, err := openFile(path, "_journal_mode=WAL&_synchronous=NORMAL")
	if err != nil {
		lock.unlock()
		return nil, err
	}
	rm.lock = lock
	return rm, nil
}

// openFile opens the SQLite file without taking the lock, with the given
// journal pragmas, and checks or creates the schema.
func openFile(path, pragmas string) (*ReadModel, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open read model %q: path must be non-empty without '?' or '#'", path)
	}
	conn, err := sqlite.NewConnector(path + "?_busy_timeout=10000&_txlock=immediate&" + pragmas)
	if err != nil {
		return nil, fmt.Errorf("open read model %s: %w", path, err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	rm := &ReadModel{path: path, db: db, now: time.Now, changed: make(chan struct{}),
		cache: newStateCache(defaultCacheBudget)}
	if err := rm.init(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open read model %s: %w", path, err)
	}
	if rm.stmts, err = prepareStmts(context.Background(), db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open read model %s: %w", path, err)
	}
	return rm, nil
}

func (rm *ReadModel) init(ctx context.Context) error {
	tx, err := rm.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return err
	}
	switch version {
	case schemaVersion:
	case 0:
		var tables int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
			return err
		}
		if tables != 0 {
			return fmt.Errorf("%w: file has tables but no version", ErrSchema)
		}
		if _, err := tx.ExecContext(ctx, schema); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: file has version %d, this binary %d", ErrSchema, version, schemaVersion)
	}
	cp, err := readCheckpoint(tx.QueryRowContext(ctx, sqlReadCheckpoint, checkpointName))
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	rm.applied = cp
	return nil
}

// Close closes the database and releases the lock. The Runner using rm
// must have stopped.
func (rm *ReadModel) Close() error {
	rm.wmu.Lock()
	rm.cache.clear() // free it now; a reopened model starts with its own
	rm.wmu.Unlock()
	rm.stmts.close()
	err := rm.db.Close()
	if rm.lock != nil {
		rm.lock.unlock()
		rm.lock = nil
	}
	if err != nil {
		return fmt.Errorf("close read model %s: %w", rm.path, err)
	}
	return nil
}

// Checkpoint returns the stored checkpoint: every event at or before it is
// reflected in the tables, none after it.
func (rm *ReadModel) Checkpoint(ctx context.Context) (eventstore.Position, error) {
	cp, err := readCheckpoint(rm.stmts.readCheckpoint.QueryRowContext(ctx, checkpointName))
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("read checkpoint: %w", err)
	}
	return cp, nil
}

// readCheckpoint scans a row of sqlReadCheckpoint; no row is Start.
func readCheckpoint(row *sql.Row) (eventstore.Position, error) {
	var c, p int64
	err := row.Scan(&c, &p)
	if errors.Is(err, sql.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, err
	}
	return eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}, nil
}

// Order returns the view of one order; ok is false when no event of its
// stream has been applied yet.
func (rm *ReadModel) Order(ctx context.Context, mchID, outTradeNo string) (OrderView, bool, error) {
	row := rm.stmts.order.QueryRowContext(ctx, mchID, outTradeNo)
	v, err := scanView(row)
	if errors.Is(err, sql.ErrNoRows) {
		return OrderView{}, false, nil
	}
	if err != nil {
		return OrderView{}, false, fmt.Errorf("read order %s/%s: %w", mchID, outTradeNo, err)
	}
	return v, true, nil
}

// DefaultListLimit and MaxListLimit bound Orders' page size.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Orders lists a merchant's orders by out_trade_no, ascending, starting
// strictly after afterOutTradeNo ("" for the first page). limit <= 0 means
// DefaultListLimit; it is capped at MaxListLimit. The result is never nil;
// pass the last OutTradeNo to get the next page.
func (rm *ReadModel) Orders(ctx context.Context, mchID string, limit int, afterOutTradeNo string) ([]OrderView, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	rows, err := rm.stmts.orders.QueryContext(ctx, mchID, afterOutTradeNo, limit)
	if err != nil {
		return nil, fmt.Errorf("list orders of %s: %w", mchID, err)
	}
	defer rows.Close()
	out := []OrderView{}
	for rows.Next() {
		v, err := scanView(rows)
		if err != nil {
			return nil, fmt.Errorf("list orders of %s: %w", mchID, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list orders of %s: %w", mchID, err)
	}
	return out, nil
}

func scanView(row interface{ Scan(...any) error }) (OrderView, error) {
	var (
		mch, otn  string
		state     []byte
		rev, c, p int64
	)
	if err := row.Scan(&mch, &otn, &rev, &c, &p, &state); err != nil {
		return OrderView{}, err
	}
	var o domain.Order
	if err := decodeState(state, &o); err != nil {
		return OrderView{}, fmt.Errorf("%s/%s: %w", mch, otn, err)
	}
	return viewOf(mch, otn, &o, uint64(rev), eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}), nil
}

// DailyTotals returns a merchant's totals for the Beijing calendar days from
// Day(from) to Day(to), both inclusive, in date order. Days without any fact
// are omitted. The result is never nil.
func (rm *ReadModel) DailyTotals(ctx context.Context, mchID string, from, to time.Time) ([]DailyTotal, error) {
	fromDay, toDay := Day(from), Day(to)
	// One read transaction (a plain, deferred BEGIN: it takes no write
	// lock) so that both queries see the same commit.
	tx, err := rm.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read daily totals of %s: %w", mchID, err)
	}
	defer tx.Rollback()
	rows, err := tx.StmtContext(ctx, rm.stmts.dailyTotals).QueryContext(ctx, mchID, fromDay, toDay)
	if err != nil {
		return nil, fmt.Errorf("read daily totals of %s: %w", mchID, err)
	}
	defer rows.Close()
	out := []DailyTotal{}
	byDay := map[string]int{}
	for rows.Next() {
		d := DailyTotal{Anomalies: map[string]int64{}, AnomalyFees: map[string]int64{}}
		if err := rows.Scan(&d.Day, &d.OrdersPlaced, &d.Payments, &d.PaymentsFee, &d.CashFee, &d.Refunds, &d.RefundsFee, &d.NetFee); err != nil {
			return nil, fmt.Errorf("read daily totals of %s: %w", mchID, err)
		}
		byDay[d.Day] = len(out)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read daily totals of %s: %w", mchID, err)
	}
	rows.Close()

	arows, err := tx.StmtContext(ctx, rm.stmts.dailyAnomalies).QueryContext(ctx, mchID, fromDay, toDay)
	if err != nil {
		return nil, fmt.Errorf("read daily anomalies of %s: %w", mchID, err)
	}
	defer arows.Close()
	for arows.Next() {
		var day, code string
		var n, fee int64
		if err := arows.Scan(&day, &code, &n, &fee); err != nil {
			return nil, fmt.Errorf("read daily anomalies of %s: %w", mchID, err)
		}
		i, ok := byDay[day]
		if !ok { // every anomaly also touches daily_totals; be lenient anyway
			i = len(out)
			byDay[day] = i
			out = append(out, DailyTotal{Day: day, Anomalies: map[string]int64{}, AnomalyFees: map[string]int64{}})
		}
		out[i].Anomalies[code] = n
		out[i].AnomalyFees[code] = fee
	}
	if err := arows.Err(); err != nil {
		return nil, fmt.Errorf("read daily anomalies of %s: %w", mchID, err)
	}
	return out, nil
}

// watch returns the applied checkpoint and a channel closed when it moves.
func (rm *ReadModel) watch() (eventstore.Position, <-chan struct{}) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.applied, rm.changed
}

// publish records a committed checkpoint and wakes the waiters.
func (rm *ReadModel) publish(cp eventstore.Position) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if !rm.applied.Less(cp) {
		return
	}
	rm.applied = cp
	close(rm.changed)
	rm.changed = make(chan struct{})
}

// sqlInt converts a revision or position to SQLite's signed integer.
func sqlInt(u uint64) (int64, error) {
	if u > math.MaxInt64 {
		return 0, fmt.Errorf("projections: %d does not fit an SQLite integer", u)
	}
	return int64(u), nil
}
