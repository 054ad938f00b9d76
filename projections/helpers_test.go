package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

const (
	testMch   = "1900000109"
	testAppID = "wxd678efh567hg6787"
)

var quiet = slog.New(slog.DiscardHandler)

// fakeClock is a settable clock for RecordedAt and updated_at.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// bj parses "2006-01-02 15:04:05" as Beijing time.
func bj(s string) time.Time {
	t, err := time.ParseInLocation(time.DateTime, s, domain.Beijing)
	if err != nil {
		panic(err)
	}
	return t
}

// openTestRM opens a read model in a fresh directory, closed at cleanup.
func openTestRM(t testing.TB) (*ReadModel, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "readmodel.db")
	rm, err := OpenReadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rm.Close() })
	return rm, path
}

// eventData encodes domain events for an append.
func eventData(t testing.TB, events ...domain.Event) []eventstore.EventData {
	t.Helper()
	out := make([]eventstore.EventData, 0, len(events))
	for _, e := range events {
		typ, data, err := domain.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, eventstore.EventData{ID: domain.ID(e), Type: typ, ContentType: "application/json", Data: data})
	}
	return out
}

// appendTo appends domain events to the order stream of (mch, otn).
func appendTo(t testing.TB, s eventstore.Store, mchID, outTradeNo string, events ...domain.Event) eventstore.Position {
	t.Helper()
	res, err := s.Append(context.Background(), domain.StreamID(mchID, outTradeNo), eventstore.Any(), eventData(t, events...)...)
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

// runner is a Runner running in a goroutine.
type runner struct {
	*Runner
	cancel context.CancelFunc
	errc   chan error
}

func startRunner(s eventstore.Store, rm *ReadModel, opts ...Option) *runner {
	opts = append([]Option{WithLogger(quiet), WithSleep(func(ctx context.Context, d time.Duration) error { return ctx.Err() })}, opts...)
	r := NewRunner(s, rm, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	return &runner{r, cancel, errc}
}

// stop cancels the runner and returns what Run returned.
func (r *runner) stop() error {
	r.cancel()
	return <-r.errc
}

// waitFor waits (bounded, for a hung test to fail rather than time out)
// until the runner has applied pos.
func (r *runner) waitFor(t testing.TB, pos eventstore.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.WaitFor(ctx, pos); err != nil {
		t.Fatalf("WaitFor(%s): %v", pos, err)
	}
}

// catchUp runs a runner on rm until it has applied pos, then stops it.
func catchUp(t testing.TB, s eventstore.Store, rm *ReadModel, pos eventstore.Position) {
	t.Helper()
	r := startRunner(s, rm)
	r.waitFor(t, pos)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// dump renders every table deterministically: rows sorted by key, the
// wall-clock updated_at columns left out.
func dump(t testing.TB, rm *ReadModel) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT mch_id, out_trade_no, status, total_fee, paid_fee, cash_fee, refunded_fee, transaction_id,
			paid_at, placed_at, appid, description, anomaly_codes, revision, last_commit_position,
			last_prepare_position, state_json FROM orders ORDER BY mch_id, out_trade_no`,
		`SELECT * FROM daily_totals ORDER BY mch_id, day`,
		`SELECT * FROM daily_anomalies ORDER BY mch_id, day, code`,
		`SELECT name, commit_position, prepare_position FROM checkpoint ORDER BY name`,
	} {
		dumpQuery(t, rm.db, &b, q)
	}
	return b.String()
}

func dumpQuery(t testing.TB, db *sql.DB, b *strings.Builder, q string) {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	fmt.Fprintf(b, "# %s\n", strings.Join(cols, ","))
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if i > 0 {
				b.WriteByte('|')
			}
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(b, "%q", v)
			case string:
				fmt.Fprintf(b, "%q", v)
			default:
				fmt.Fprintf(b, "%v", v)
			}
		}
		b.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// jsonEqual fails the test unless got marshals to the same JSON value as
// want (a JSON literal).
func jsonEqual(t testing.TB, what string, got any, want string) {
	t.Helper()
	gb, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(gb, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad expectation: %v\n%s", what, err, want)
	}
	if !reflect.DeepEqual(g, w) {
		gi, _ := json.MarshalIndent(g, "", "  ")
		wi, _ := json.MarshalIndent(w, "", "  ")
		t.Errorf("%s:\ngot  %s\nwant %s", what, gi, wi)
	}
}

// diffLines reports the first differing line of two dumps.
func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  incremental: %s\n  rebuilt:     %s", i+1, x, y)
		}
	}
	return "no difference"
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
