package projections

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Digest summarises a read model file, so that two can be compared (a
// rebuild with the model it replaces, or with the live one).
type Digest struct {
	Orders     int    // rows of orders
	Checkpoint string // the checkpoint's commit position, "0" for none
	Sum        string // sha256 over every derived row, wall-clock columns left out
}

// DigestFile reads the read model at path (read-only, so also while a
// runner writes it) and digests it. A missing file is an empty model.
func DigestFile(ctx context.Context, path string) (Digest, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return Digest{Checkpoint: "0"}, nil
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return Digest{}, fmt.Errorf("read model %s: %w", path, err)
	}
	defer db.Close()
	h := sha256.New()
	var d Digest
	queries := []string{
		`SELECT mch_id, out_trade_no, status, total_fee, paid_fee, cash_fee, refunded_fee, transaction_id,
		        IFNULL(paid_at,''), IFNULL(placed_at,''), anomaly_codes, revision, state_json
		   FROM orders ORDER BY mch_id, out_trade_no`,
		`SELECT mch_id, day, orders_placed, payments, payments_fee, cash_fee, refunds, refunds_fee, net_fee, anomalies
		   FROM daily_totals ORDER BY mch_id, day`,
		`SELECT mch_id, day, code, count, fee FROM daily_anomalies ORDER BY mch_id, day, code`,
		`SELECT name, commit_position, prepare_position FROM checkpoint ORDER BY name`,
	}
	for qi, q := range queries {
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			return Digest{}, fmt.Errorf("read model %s: %w", path, err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return Digest{}, fmt.Errorf("read model %s: %w", path, err)
			}
			fmt.Fprintf(h, "%d:%v\n", qi, vals)
			switch qi {
			case 0:
				d.Orders++
			case 3:
				d.Checkpoint = fmt.Sprint(vals[1])
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return Digest{}, fmt.Errorf("read model %s: %w", path, err)
		}
	}
	if d.Checkpoint == "" {
		d.Checkpoint = "0"
	}
	d.Sum = hex.EncodeToString(h.Sum(nil))
	return d, nil
}
