package projections

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

type orderKey struct{ mchID, outTradeNo string }

// orderRow is an orders row while a batch is being applied, and an entry
// of the state cache between batches.
type orderRow struct {
	key      orderKey
	exists   bool // a row is stored (or was created by this batch)
	revision uint64
	pos      eventstore.Position
	order    domain.Order
	dirty    bool
	size     int       // length of its state_json as stored (the cache weight)
	prev     *orderRow // LRU links while cached
	next     *orderRow
}

type dayKey struct{ mchID, day string }

// dayDelta is what a batch adds to one daily_totals row.
type dayDelta struct {
	ordersPlaced, payments, paymentsFee, cashFee, refunds, refundsFee int64
	anomalies                                                         map[string]*anomalyDelta
}

type anomalyDelta struct{ count, fee int64 }

// apply applies events (in global order) and moves the checkpoint to cp
// (never backwards), all in one transaction: either all of it becomes
// durable or none. Events at or before the stored checkpoint, of other
// streams, or whose revision the orders row already covers are skipped.
func (rm *ReadModel) apply(ctx context.Context, events []eventstore.RecordedEvent, cp eventstore.Position) (err error) {
	rm.wmu.Lock()
	defer rm.wmu.Unlock()

	tx, err := rm.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply batch: begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
			// The rows taken out of the cache may hold this batch's
			// uncommitted changes; they are not put back. Forget the rest
			// too: after a failure, read everything from the file again.
			rm.cache.clear()
		}
	}()
	// The checkpoint is read inside the write transaction (BEGIN IMMEDIATE),
	// so it is the one the rows below agree with, whoever wrote last.
	stored, err := readCheckpoint(tx.StmtContext(ctx, rm.stmts.readCheckpoint).QueryRowContext(ctx, checkpointName))
	if err != nil {
		return fmt.Errorf("apply batch: read checkpoint: %w", err)
	}

	var load *sql.Stmt // see fetchRow
	rows := map[orderKey]*orderRow{}
	days := map[dayKey]*dayDelta{}
	next := stored
	for i := range events {
		ev := &events[i]
		if !rm.noGuards && !stored.Less(ev.Position) {
			continue // at or before the checkpoint: already in the tables
		}
		if next.Less(ev.Position) {
			next = ev.Position
		}
		if !strings.HasPrefix(ev.StreamID, domain.StreamPrefix) {
			continue // not an order stream (Rebuild reads the whole log)
		}
		mchID, outTradeNo, ok := domain.ParseStreamID(ev.StreamID)
		if !ok {
			return fmt.Errorf("%w: stream %q at position %s is not an order stream name", ErrBadEvent, ev.StreamID, ev.Position)
		}
		key := orderKey{mchID, outTradeNo}
		row := rows[key]
		if row == nil {
			if row, err = rm.fetchRow(ctx, tx, &load, key, ev.StreamID); err != nil {
				return err
			}
			rows[key] = row
		}
		want := uint64(0)
		if row.exists {
			if !rm.noGuards && ev.Revision <= row.revision {
				continue // this stream revision is already folded into the row
			}
			want = row.revision + 1
		}
		if ev.Revision != want && !rm.noGuards {
			return fmt.Errorf("%w: %s revision %d at position %s, expected revision %d",
				ErrInconsistent, ev.StreamID, ev.Revision, ev.Position, want)
		}
		e, err := domain.Unmarshal(ev.Type, ev.Data)
		if err != nil {
			return fmt.Errorf("%w: %s revision %d at position %s (id %s): %w",
				ErrBadEvent, ev.StreamID, ev.Revision, ev.Position, ev.ID, err)
		}
		row.order = evolveCounting(mchID, row.order, e, ev.RecordedAt, days)
		row.exists, row.dirty = true, true
		row.revision, row.pos = ev.Revision, ev.Position
	}
	if next.Less(cp) {
		next = cp
	}

	now := rm.now().UTC().Format(time.RFC3339Nano)
	if err := writeRows(ctx, tx, rm.stmts, rows, now); err != nil {
		return err
	}
	if err := writeDays(ctx, tx, rm.stmts, days); err != nil {
		return err
	}
	if next != stored {
		c, err1 := sqlInt(next.Commit)
		p, err2 := sqlInt(next.Prepare)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("apply batch: checkpoint %s: %w", next, cmp.Or(err1, err2))
		}
		if _, err := tx.StmtContext(ctx, rm.stmts.upsertCheckpoint).ExecContext(ctx, checkpointName, c, p, now); err != nil {
			return fmt.Errorf("apply batch: write checkpoint %s: %w", next, err)
		}
	}
	if rm.beforeCommit != nil {
		if err := rm.beforeCommit(); err != nil {
			return fmt.Errorf("apply batch: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply batch: commit at %s: %w", next, err)
	}
	// Committed: the rows of the batch are now exactly what the file holds.
	for _, row := range rows {
		rm.cache.put(row)
	}
	rm.publish(next)
	return nil
}

// evolveCounting applies e to o with domain.Evolve and adds to days what
// the change of state means for the daily totals. Whether something counts
// is read from the state before and after (the domain decides whether a
// payment paid the order, a refund succeeded, an anomaly was recorded);
// only the day is taken from the facts.
func evolveCounting(mchID string, o domain.Order, e domain.Event, recordedAt time.Time, days map[dayKey]*dayDelta) domain.Order {
	// Snapshot before Evolve: it may mutate maps and records shared with o.
	placed, paid, anomalies := o.Placed != nil, o.Payment != nil, len(o.Anomalies)
	var refundID, refundStatus string
	if r, ok := e.(domain.RefundSucceeded); ok {
		refundID = r.RefundID
		if rec := o.Refunds[refundID]; rec != nil {
			refundStatus = rec.Status
		}
	}

	o = domain.Evolve(o, e)

	delta := func(t time.Time) *dayDelta {
		if t.IsZero() {
			t = recordedAt
		}
		k := dayKey{mchID, Day(t)}
		d := days[k]
		if d == nil {
			d = &dayDelta{}
			days[k] = d
		}
		return d
	}
	if !placed && o.Placed != nil {
		delta(o.Placed.PlacedAt).ordersPlaced++
	}
	if !paid && o.Payment != nil {
		d := delta(o.Payment.PaidAt)
		d.payments++
		d.paymentsFee += o.PaidFee
		d.cashFee += o.CashFee
	}
	// Every refund that succeeds counts, with its own fee, as in WeChat's
	// bill: money went back to a payer that day. (The order's refunded_fee
	// follows the domain's attribution instead, which leaves out refunds of
	// anomaly money such as a duplicate payment and may change later.)
	if rec := o.Refunds[refundID]; refundID != "" && rec != nil &&
		rec.Status == domain.RefundStatusSuccess && refundStatus != domain.RefundStatusSuccess {
		d := delta(rec.SucceededAt)
		d.refunds++
		d.refundsFee += rec.RefundFee
	}
	for _, a := range o.Anomalies[anomalies:] {
		d := delta(recordedAt)
		ad := d.anomalies[a.Code]
		if ad == nil {
			if d.anomalies == nil {
				d.anomalies = map[string]*anomalyDelta{}
			}
			ad = &anomalyDelta{}
			d.anomalies[a.Code] = ad
		}
		ad.count++
		ad.fee += a.NotifiedFee
	}
	return o
}

// fetchRow returns the committed orders row of key, stream: taken out of
// the cache, else read from the file with *load (prepared for tx on the
// first cache miss of the batch).
func (rm *ReadModel) fetchRow(ctx context.Context, tx *sql.Tx, load **sql.Stmt, key orderKey, stream string) (*orderRow, error) {
	if row := rm.cache.take(key); row != nil {
		if rm.onCacheHit != nil {
			if err := rm.onCacheHit(ctx, tx, row); err != nil {
				return nil, fmt.Errorf("apply batch: cached %s: %w", stream, err)
			}
		}
		return row, nil
	}
	if *load == nil {
		*load = tx.StmtContext(ctx, rm.stmts.loadRow)
	}
	row, err := loadRow(ctx, *load, key)
	if err != nil {
		return nil, fmt.Errorf("apply batch: load %s: %w", stream, err)
	}
	return row, nil
}

// loadRow reads the orders row of k; a missing row is returned with
// exists false.
func loadRow(ctx context.Context, stmt *sql.Stmt, k orderKey) (*orderRow, error) {
	rows, err := stmt.QueryContext(ctx, k.mchID, k.outTradeNo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	row := &orderRow{key: k}
	if !rows.Next() {
		return row, rows.Err()
	}
	var (
		rev   int64
		state sql.RawBytes // valid until Next or Close: decoded right here
	)
	if err := rows.Scan(&rev, &state); err != nil {
		return nil, err
	}
	row.exists, row.revision, row.size = true, uint64(rev), len(state)
	if err := decodeState(state, &row.order); err != nil {
		return nil, err
	}
	return row, rows.Close()
}

// decodeState decodes a state_json. It calls domain.Order's UnmarshalJSON
// directly, which json.Unmarshal would do too after a first pass over the
// input that only checks that it is valid JSON (UnmarshalJSON checks that
// again itself).
func decodeState(state []byte, o *domain.Order) error {
	if err := o.UnmarshalJSON(state); err != nil {
		return fmt.Errorf("%w: state_json: %w", ErrSchema, err)
	}
	return nil
}

// encodeState encodes the state_json of o: the bytes json.Marshal(o) gives.
// json.Marshal calls o.MarshalJSON and then validates and compacts its
// output (escaping <, > and & as it goes); MarshalJSON's output comes from
// json.Marshal itself, so it is already compact and escaped, and that
// second pass changes nothing (TestEncodeStateIsJSONMarshal).
func encodeState(o *domain.Order) ([]byte, error) {
	return o.MarshalJSON()
}

func writeRows(ctx context.Context, tx *sql.Tx, st *stmts, rows map[orderKey]*orderRow, now string) error {
	keys := slices.SortedFunc(maps.Keys(rows), func(a, b orderKey) int {
		return cmp.Or(cmp.Compare(a.mchID, b.mchID), cmp.Compare(a.outTradeNo, b.outTradeNo))
	})
	var stmt *sql.Stmt // prepared for tx on first use
	for _, k := range keys {
		row := rows[k]
		if !row.dirty {
			continue
		}
		if stmt == nil {
			stmt = tx.StmtContext(ctx, st.upsertOrder)
		}
		o := &row.order
		state, err := encodeState(o)
		if err != nil {
			return fmt.Errorf("apply batch: encode state of %s/%s: %w", k.mchID, k.outTradeNo, err)
		}
		rev, err1 := sqlInt(row.revision)
		c, err2 := sqlInt(row.pos.Commit)
		p, err3 := sqlInt(row.pos.Prepare)
		if err := cmp.Or(err1, err2, err3); err != nil {
			return fmt.Errorf("apply batch: %s/%s: %w", k.mchID, k.outTradeNo, err)
		}
		// The auditors' columns are the view's fields, so they always agree.
		v := viewOf(k.mchID, k.outTradeNo, o, row.revision, row.pos)
		codes := make([]string, len(v.Anomalies))
		for i, a := range v.Anomalies {
			codes[i] = a.Code
		}
		if _, err := stmt.ExecContext(ctx, k.mchID, k.outTradeNo, v.Status, v.TotalFee, v.PaidFee, v.CashFee,
			v.RefundedFee, v.TransactionID, columnTime(v.PaidAt), columnTime(v.PlacedAt), v.AppID, v.Description,
			strings.Join(codes, ","), rev, c, p, now, state); err != nil {
			return fmt.Errorf("apply batch: write order %s/%s: %w", k.mchID, k.outTradeNo, err)
		}
		row.size = len(state)
	}
	return nil
}

func writeDays(ctx context.Context, tx *sql.Tx, st *stmts, days map[dayKey]*dayDelta) error {
	keys := slices.SortedFunc(maps.Keys(days), func(a, b dayKey) int {
		return cmp.Or(cmp.Compare(a.mchID, b.mchID), cmp.Compare(a.day, b.day))
	})
	var dayStmt, anomalyStmt *sql.Stmt // prepared for tx on first use
	for _, k := range keys {
		if dayStmt == nil {
			dayStmt = tx.StmtContext(ctx, st.upsertDay)
		}
		d := days[k]
		var anomalies int64
		for _, a := range d.anomalies {
			anomalies += a.count
		}
		if _, err := dayStmt.ExecContext(ctx, k.mchID, k.day, d.ordersPlaced, d.payments, d.paymentsFee,
			d.cashFee, d.refunds, d.refundsFee, d.paymentsFee-d.refundsFee, anomalies); err != nil {
			return fmt.Errorf("apply batch: write daily totals %s %s: %w", k.mchID, k.day, err)
		}
		for _, code := range slices.Sorted(maps.Keys(d.anomalies)) {
			if anomalyStmt == nil {
				anomalyStmt = tx.StmtContext(ctx, st.upsertAnomaly)
			}
			a := d.anomalies[code]
			if _, err := anomalyStmt.ExecContext(ctx, k.mchID, k.day, code, a.count, a.fee); err != nil {
				return fmt.Errorf("apply batch: write daily anomalies %s %s: %w", k.mchID, k.day, err)
			}
		}
	}
	return nil
}

// The statements of apply, prepared once per ReadModel.
const (
	sqlReadCheckpoint = `SELECT commit_position, prepare_position FROM checkpoint WHERE name = ?`

	sqlUpsertCheckpoint = `INSERT INTO checkpoint (name, commit_position, prepare_position, updated_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET
		commit_position = excluded.commit_position, prepare_position = excluded.prepare_position,
		updated_at = excluded.updated_at`

	sqlLoadRow = `SELECT revision, state_json FROM orders WHERE mch_id = ? AND out_trade_no = ?`

	// The queries of the read API.
	sqlOrder = `SELECT mch_id, out_trade_no, revision, last_commit_position, last_prepare_position, state_json
		FROM orders WHERE mch_id = ? AND out_trade_no = ?`
	sqlOrders = `SELECT mch_id, out_trade_no, revision, last_commit_position, last_prepare_position, state_json
		FROM orders WHERE mch_id = ? AND out_trade_no > ? ORDER BY out_trade_no LIMIT ?`
	sqlDailyTotals = `SELECT day, orders_placed, payments, payments_fee, cash_fee, refunds, refunds_fee, net_fee
		FROM daily_totals WHERE mch_id = ? AND day BETWEEN ? AND ? ORDER BY day`
	sqlDailyAnomalies = `SELECT day, code, count, fee FROM daily_anomalies
		WHERE mch_id = ? AND day BETWEEN ? AND ? ORDER BY day, code`

	sqlUpsertOrder = `INSERT INTO orders (mch_id, out_trade_no, status, total_fee, paid_fee, cash_fee,
		refunded_fee, transaction_id, paid_at, placed_at, appid, description, anomaly_codes, revision,
		last_commit_position, last_prepare_position, updated_at, state_json)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (mch_id, out_trade_no) DO UPDATE SET
		status = excluded.status, total_fee = excluded.total_fee, paid_fee = excluded.paid_fee,
		cash_fee = excluded.cash_fee, refunded_fee = excluded.refunded_fee,
		transaction_id = excluded.transaction_id, paid_at = excluded.paid_at, placed_at = excluded.placed_at,
		appid = excluded.appid, description = excluded.description, anomaly_codes = excluded.anomaly_codes,
		revision = excluded.revision, last_commit_position = excluded.last_commit_position,
		last_prepare_position = excluded.last_prepare_position, updated_at = excluded.updated_at,
		state_json = excluded.state_json`

	sqlUpsertDay = `INSERT INTO daily_totals (mch_id, day, orders_placed, payments,
		payments_fee, cash_fee, refunds, refunds_fee, net_fee, anomalies)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mch_id, day) DO UPDATE SET
		orders_placed = orders_placed + excluded.orders_placed, payments = payments + excluded.payments,
		payments_fee = payments_fee + excluded.payments_fee, cash_fee = cash_fee + excluded.cash_fee,
		refunds = refunds + excluded.refunds, refunds_fee = refunds_fee + excluded.refunds_fee,
		net_fee = net_fee + excluded.net_fee, anomalies = anomalies + excluded.anomalies`

	sqlUpsertAnomaly = `INSERT INTO daily_anomalies (mch_id, day, code, count, fee)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (mch_id, day, code) DO UPDATE SET
		count = count + excluded.count, fee = fee + excluded.fee`
)

// stmts are the prepared statements of apply and of the read API.
// database/sql prepares each once per connection and reuses it, also in
// transactions (Tx.StmtContext).
type stmts struct {
	readCheckpoint, upsertCheckpoint, loadRow, upsertOrder, upsertDay, upsertAnomaly *sql.Stmt
	order, orders, dailyTotals, dailyAnomalies                                       *sql.Stmt
}

func prepareStmts(ctx context.Context, db *sql.DB) (*stmts, error) {
	var s stmts
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.readCheckpoint, sqlReadCheckpoint}, {&s.upsertCheckpoint, sqlUpsertCheckpoint},
		{&s.loadRow, sqlLoadRow}, {&s.upsertOrder, sqlUpsertOrder},
		{&s.upsertDay, sqlUpsertDay}, {&s.upsertAnomaly, sqlUpsertAnomaly},
		{&s.order, sqlOrder}, {&s.orders, sqlOrders},
		{&s.dailyTotals, sqlDailyTotals}, {&s.dailyAnomalies, sqlDailyAnomalies},
	} {
		st, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("prepare: %w", err)
		}
		*p.dst = st
	}
	return &s, nil
}

func (s *stmts) close() {
	for _, st := range []*sql.Stmt{s.readCheckpoint, s.upsertCheckpoint, s.loadRow, s.upsertOrder, s.upsertDay, s.upsertAnomaly,
		s.order, s.orders, s.dailyTotals, s.dailyAnomalies} {
		if st != nil {
			st.Close()
		}
	}
}
