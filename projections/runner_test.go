package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

var errInjected = errors.New("injected failure before commit")

// A failure between writing the rows and committing leaves nothing of the
// batch visible and the checkpoint where it was; the next run applies the
// batch exactly once: after a reopen (as after a crash) and also on the
// same ReadModel, whose state cache must not keep the rolled-back rows.
func TestCheckpointAtomicity(t *testing.T) {
	for _, reopen := range []bool{true, false} {
		t.Run(fmt.Sprintf("reopen=%v", reopen), func(t *testing.T) { testCheckpointAtomicity(t, reopen) })
	}
}

func testCheckpointAtomicity(t *testing.T, reopen bool) {
	ctx := context.Background()
	store := newMemStore(func() time.Time { return tableRecordedAt })
	rm, path := openTestRM(t)
	hits := checkCacheHits(rm)

	first := appendTo(t, store, testMch, "A1", placed("A1", 100, "2024-03-02 08:00:00"), paid("A1", "4200000001", 100, 100, "2024-03-02 08:01:00"))
	catchUp(t, store, rm, first)
	before := dump(t, rm)

	// The second batch: a new order, a payment and an anomaly on the first.
	dup := payment("A1", "4200000009", 100, 100, "2024-03-02 09:00:00")
	appendTo(t, store, testMch, "A1", anomaly(domain.DuplicatePayment, "A1", "4200000009", 0, 100, "", "2024-03-02 09:00:01", &dup))
	appendTo(t, store, testMch, "B2", placed("B2", 200, "2024-03-02 09:30:00"))
	end := appendTo(t, store, testMch, "B2", paid("B2", "4200000010", 200, 180, "2024-03-02 09:31:00"))

	calls := 0
	rm.beforeCommit = func() error { calls++; return errInjected }
	r := startRunner(store, rm, WithMaxBatch(100))
	err := <-r.errc
	if !errors.Is(err, errInjected) {
		t.Fatalf("Run = %v, want the injected failure", err)
	}
	if calls != 1 {
		t.Fatalf("hook ran %d times", calls)
	}
	if *hits != 1 {
		t.Fatalf("the failed batch took %d rows from the state cache, want 1 (A1)", *hits)
	}
	if got := dump(t, rm); got != before {
		t.Fatalf("a failed batch left traces: %s", diffLines(before, got))
	}
	if cp, err := rm.Checkpoint(ctx); err != nil || cp != first {
		t.Fatalf("checkpoint %s (%v), want %s", cp, err, first)
	}
	if r.Applied() != first {
		t.Fatalf("Applied %s, want %s", r.Applied(), first)
	}
	if err := r.WaitFor(ctx, end); !errors.Is(err, ErrStopped) || !errors.Is(err, errInjected) {
		t.Fatalf("WaitFor after the runner failed = %v", err)
	}

	// Run again, on a reopened file (as after a crash) or on the same
	// ReadModel: the batch is applied once.
	rm.beforeCommit = nil
	if reopen {
		if err := rm.Close(); err != nil {
			t.Fatal(err)
		}
		rm, err = OpenReadModel(path)
		if err != nil {
			t.Fatal(err)
		}
		defer rm.Close()
		if rm.cache.len() != 0 {
			t.Fatalf("a reopened model starts with %d cached rows", rm.cache.len())
		}
	}
	catchUp(t, store, rm, end)
	totals, err := rm.DailyTotals(ctx, testMch, bj("2024-03-02 00:00:00"), bj("2024-03-02 00:00:00"))
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, "totals", totals, `[{"day":"2024-03-02","orders_placed":2,"payments":2,"payments_fee":300,"cash_fee":280,
		"refunds":0,"refunds_fee":0,"net_fee":300,"anomalies":{"DUPLICATE_PAYMENT":1},
		"anomaly_fees":{"DUPLICATE_PAYMENT":100}}]`)
	if cp, _ := rm.Checkpoint(ctx); cp != end {
		t.Fatalf("checkpoint %s, want %s", cp, end)
	}
	rebuilt := filepath.Join(t.TempDir(), "rebuilt.db")
	if err := Rebuild(ctx, store, rebuilt); err != nil {
		t.Fatal(err)
	}
	rb, err := OpenReadModel(rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	if got, want := dump(t, rm), dump(t, rb); got != want {
		t.Fatalf("differs from a rebuild: %s", diffLines(got, want))
	}
}

// The same batch applied twice (a backend repeating itself) changes
// nothing the second time; without the guards it would, which shows the
// comparison can fail.
func TestRedeliveredBatchIsSkipped(t *testing.T) {
	for _, guards := range []bool{true, false} {
		ctx := context.Background()
		store := newMemStore(func() time.Time { return tableRecordedAt })
		rm, _ := openTestRM(t)
		rm.noGuards = !guards
		mm := payment("A1", "4200000001", 1, 1, "2024-03-02 08:01:00")
		appendTo(t, store, testMch, "A1", placed("A1", 100, "2024-03-02 08:00:00"),
			anomaly(domain.AmountMismatch, "A1", "4200000001", 100, 1, "", "2024-03-02 08:01:01", &mm))
		events, err := store.ReadAll(ctx, eventstore.Start, 100)
		if err != nil {
			t.Fatal(err)
		}
		cp := events[len(events)-1].Position
		if err := rm.apply(ctx, events, cp); err != nil {
			t.Fatal(err)
		}
		once := dump(t, rm)
		if err := rm.apply(ctx, events, cp); err != nil {
			t.Fatal(err)
		}
		twice := dump(t, rm)
		if guards && once != twice {
			t.Errorf("re-delivered batch applied again: %s", diffLines(once, twice))
		}
		if !guards && once == twice {
			t.Errorf("without guards a re-delivered batch should have been applied again")
		}
	}
}

// If the checkpoint were ever behind the rows (it cannot be, but a backend
// might resend from older positions), the per-order revision guard still
// prevents double application.
func TestRevisionGuard(t *testing.T) {
	ctx := context.Background()
	store := newMemStore(func() time.Time { return tableRecordedAt })
	rm, _ := openTestRM(t)
	appendTo(t, store, testMch, "A1", placed("A1", 100, "2024-03-02 08:00:00"), paid("A1", "4200000001", 100, 100, "2024-03-02 08:01:00"))
	end := appendTo(t, store, testMch, "A1", domain.RefundSucceeded{Refund: refund("A1", "4200000001", "5000001", 30, domain.RefundStatusSuccess, "2024-03-02 09:00:00")})
	catchUp(t, store, rm, end)
	want := dump(t, rm)
	if _, err := rm.db.Exec(`DELETE FROM checkpoint`); err != nil {
		t.Fatal(err)
	}
	events, err := store.ReadAll(ctx, eventstore.Start, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := rm.apply(ctx, events, end); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, rm); got != want {
		t.Fatalf("events re-applied: %s", diffLines(want, got))
	}
}

// A revision that skips ahead means the model missed events: stop, do not
// guess.
func TestGapIsInconsistent(t *testing.T) {
	ctx := context.Background()
	store := newMemStore(func() time.Time { return tableRecordedAt })
	rm, _ := openTestRM(t)
	appendTo(t, store, testMch, "A1", placed("A1", 100, "2024-03-02 08:00:00"), paid("A1", "4200000001", 100, 100, "2024-03-02 08:01:00"))
	events, err := store.ReadAll(ctx, eventstore.Start, 100)
	if err != nil {
		t.Fatal(err)
	}
	err = rm.apply(ctx, events[1:], events[1].Position)
	if !errors.Is(err, ErrInconsistent) {
		t.Fatalf("apply with a gap = %v, want ErrInconsistent", err)
	}
	if cp, _ := rm.Checkpoint(ctx); !cp.IsZero() {
		t.Fatalf("checkpoint moved to %s", cp)
	}
}

// An order event that does not decode stops the runner; it is never
// skipped. Events before it in the same batch are not applied either.
func TestUndecodableEventStopsRunner(t *testing.T) {
	for name, bad := range map[string]struct{ stream, typ, data string }{
		"bad payload":     {domain.StreamID(testMch, "A1"), domain.TypePaymentConfirmed, `{"total_fee":"lots"`},
		"bad stream name": {"order-nodash", domain.TypeOrderPlaced, `{}`},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := newMemStore(func() time.Time { return tableRecordedAt })
			rm, _ := openTestRM(t)
			good := appendTo(t, store, testMch, "A0", placed("A0", 100, "2024-03-02 08:00:00"))
			catchUp(t, store, rm, good)
			appendTo(t, store, testMch, "A1", placed("A1", 100, "2024-03-02 08:00:00"))
			res, err := store.Append(ctx, bad.stream, eventstore.Any(),
				eventstore.EventData{ID: eventstore.EventID{1, 2, 3}, Type: bad.typ, Data: []byte(bad.data)})
			if err != nil {
				t.Fatal(err)
			}
			r := startRunner(store, rm)
			if err := <-r.errc; !errors.Is(err, ErrBadEvent) {
				t.Fatalf("Run = %v, want ErrBadEvent", err)
			}
			if err := r.WaitFor(ctx, res.Position); !errors.Is(err, ErrStopped) || !errors.Is(err, ErrBadEvent) {
				t.Fatalf("WaitFor = %v", err)
			}
			if cp, _ := rm.Checkpoint(ctx); cp != good {
				t.Fatalf("checkpoint %s, want %s", cp, good)
			}
			if _, ok, _ := rm.Order(ctx, testMch, "A1"); ok {
				t.Fatal("an event of the failed batch is visible")
			}
		})
	}
}

// Unknown event types are skipped by domain.Evolve but still advance the
// stream revision.
func TestUnknownEventTypeIsSkipped(t *testing.T) {
	ctx := context.Background()
	store := newMemStore(func() time.Time { return tableRecordedAt })
	rm, _ := openTestRM(t)
	appendTo(t, store, testMch, "A1", placed("A1", 100, "2024-03-02 08:00:00"))
	if _, err := store.Append(ctx, domain.StreamID(testMch, "A1"), eventstore.Any(),
		eventstore.EventData{ID: eventstore.EventID{9}, Type: "OrderNoteAdded", Data: []byte(`{"note":"hi"}`)}); err != nil {
		t.Fatal(err)
	}
	end := appendTo(t, store, testMch, "A1", paid("A1", "4200000001", 100, 100, "2024-03-02 08:01:00"))
	catchUp(t, store, rm, end)
	v, ok, err := rm.Order(ctx, testMch, "A1")
	if err != nil || !ok || v.Status != domain.StatusPaid || v.Revision != 2 {
		t.Fatalf("view %+v ok=%v err=%v", v, ok, err)
	}
}

// flakyStore fails Subscribe with ErrUnavailable a number of times.
type flakyStore struct {
	*memStore
	mu    sync.Mutex // guards fails
	fails int
}

func (f *flakyStore) Subscribe(ctx context.Context, after eventstore.Position, opts eventstore.SubscribeOptions) (eventstore.Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return nil, eventstore.ErrUnavailable
	}
	return f.memStore.Subscribe(ctx, after, opts)
}

func TestRunnerResubscribesWithBoundedBackoff(t *testing.T) {
	store := &flakyStore{memStore: newMemStore(func() time.Time { return tableRecordedAt }), fails: 6}
	rm, _ := openTestRM(t)
	end := appendTo(t, store, testMch, "A1", placed("A1", 100, "2024-03-02 08:00:00"))
	var mu sync.Mutex
	var waits []time.Duration
	r := startRunner(store, rm, WithBackoff(time.Second, 5*time.Second), WithSleep(func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		return ctx.Err()
	}))
	r.waitFor(t, end)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
}

func TestRunReturnsNilOnCancelAndWaitFor(t *testing.T) {
	ctx := context.Background()
	store := newMemStore(func() time.Time { return tableRecordedAt })
	rm, _ := openTestRM(t)
	r := NewRunner(store, rm, WithLogger(quiet))

	// Waiting before Run has started: woken by the commit, not by polling.
	pos := memPos(1)
	waited := make(chan error, 1)
	go func() { waited <- r.WaitFor(ctx, pos) }()
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- r.Run(runCtx) }()
	appendTo(t, store, testMch, "A1", placed("A1", 100, "2024-03-02 08:00:00"))
	if err := <-waited; err != nil {
		t.Fatalf("WaitFor = %v", err)
	}
	if r.Applied() != pos {
		t.Fatalf("Applied %s, want %s", r.Applied(), pos)
	}
	// Already applied: returns at once.
	if err := r.WaitFor(ctx, eventstore.Start); err != nil {
		t.Fatal(err)
	}
	// A context that ends first.
	short, stop := context.WithCancel(ctx)
	stop()
	if err := r.WaitFor(short, memPos(99)); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitFor(cancelled) = %v", err)
	}
	if err := r.Run(ctx); err == nil {
		t.Fatal("a second concurrent Run was accepted")
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if err := r.WaitFor(ctx, memPos(99)); !errors.Is(err, ErrStopped) {
		t.Fatalf("WaitFor after stop = %v", err)
	}
}

// Checks the state_json contract: a JSON round trip of domain.Order keeps
// everything Status, the view and the next Evolve need.
func TestOrderStateJSONRoundTrip(t *testing.T) {
	expires := bj("2024-03-02 09:00:00")
	p := placed("A1", 100, "2024-03-02 08:00:00")
	p.ExpiresAt, p.OpenID = &expires, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
	dup := payment("A1", "4200000009", 100, 100, "2024-03-02 08:30:00")
	history := []domain.Event{
		p,
		domain.PaymentFailed{Payment: domain.Payment{MchID: testMch, OutTradeNo: "A1", ResultCode: "FAIL", ErrCode: "NOTENOUGH"}},
		paid("A1", "4200000001", 100, 90, "2024-03-02 08:01:00"),
		anomaly(domain.DuplicatePayment, "A1", "4200000009", 0, 100, "order already paid", "2024-03-02 08:30:01", &dup),
		domain.RefundAbnormal{Refund: refund("A1", "4200000001", "5000001", 30, domain.RefundStatusAbnormal, "")},
		domain.RefundSucceeded{Refund: refund("A1", "4200000001", "5000001", 30, domain.RefundStatusSuccess, "2024-03-02 10:00:00")},
		domain.UnknownEvent{Type: "FromTheFuture", Data: json.RawMessage(`{}`)},
	}
	next := domain.RefundSucceeded{Refund: refund("A1", "4200000001", "5000002", 70, domain.RefundStatusSuccess, "2024-03-03 10:00:00")}
	for n := 0; n <= len(history); n++ {
		o := domain.Fold(history[:n])
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		var back domain.Order
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		b2, _ := json.Marshal(back)
		if string(b) != string(b2) {
			t.Fatalf("after %d events the JSON is not stable:\n%s\n%s", n, b, b2)
		}
		if back.Status() != o.Status() || back.TotalFee() != o.TotalFee() || back.Events != o.Events {
			t.Fatalf("after %d events: status %s/%s total %d/%d events %d/%d", n,
				back.Status(), o.Status(), back.TotalFee(), o.TotalFee(), back.Events, o.Events)
		}
		jsonEqual(t, "view", viewOf(testMch, "A1", &back, 0, eventstore.Start), string(mustJSON(t, viewOf(testMch, "A1", &o, 0, eventstore.Start))))
		// Evolving the decoded state equals evolving the original.
		e1, e2 := domain.Evolve(o, next), domain.Evolve(back, next)
		jsonEqual(t, "evolved", e2, string(mustJSON(t, e1)))
	}
}

func TestSchemaVersionMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "readmodel.db")
	rm, err := OpenReadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rm.db.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	rm.Close()
	if _, err := OpenReadModel(path); !errors.Is(err, ErrSchema) {
		t.Fatalf("open = %v, want ErrSchema", err)
	}
}

// Queries run while the runner writes, without SQLITE_BUSY, and each
// DailyTotals answer is one consistent snapshot.
func TestQueriesDuringRun(t *testing.T) {
	ctx := context.Background()
	store := newMemStore(func() time.Time { return tableRecordedAt })
	rm, _ := openTestRM(t)
	r := startRunner(store, rm, WithMaxBatch(3))
	done := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(readErr)
		for {
			select {
			case <-done:
				return
			default:
			}
			totals, err := rm.DailyTotals(ctx, testMch, bj("2024-03-01 00:00:00"), bj("2024-03-03 00:00:00"))
			if err != nil {
				readErr <- err
				return
			}
			for _, d := range totals {
				// Each order is one append of three events and batches
				// hold three, so a snapshot between batches has whole orders.
				if d.OrdersPlaced != d.Payments || d.Anomalies[domain.DuplicatePayment] > d.Payments {
					readErr <- errors.New("inconsistent snapshot")
					return
				}
			}
			if _, err := rm.Orders(ctx, testMch, 10, ""); err != nil {
				readErr <- err
				return
			}
		}
	}()
	var last eventstore.Position
	for i := range 30 {
		otn := "Q" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		dup := payment(otn, "49"+otn, 100, 100, "2024-03-02 08:02:00")
		last = appendTo(t, store, testMch, otn, placed(otn, 100, "2024-03-02 08:00:00"),
			paid(otn, "42"+otn, 100, 100, "2024-03-02 08:01:00"),
			anomaly(domain.DuplicatePayment, otn, "49"+otn, 0, 100, "", "2024-03-02 08:02:01", &dup))
	}
	r.waitFor(t, last)
	close(done)
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}
