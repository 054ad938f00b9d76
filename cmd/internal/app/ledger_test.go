package app_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/app"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

func TestPlaceOrder(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	l := app.New(s, app.WithClock(fixedClock))

	out, err := l.PlaceOrder(ctx, placeCmd("A1", 100))
	if err != nil {
		t.Fatalf("place: %v", err)
	}
	if out.Duplicate || !slices.Equal(types(out.Appended), []string{domain.TypeOrderPlaced}) || out.Revision != 0 {
		t.Fatalf("place: got duplicate=%v appended=%v revision=%d, want one OrderPlaced at revision 0",
			out.Duplicate, types(out.Appended), out.Revision)
	}
	if got := out.Order.Placed.PlacedAt; !got.Equal(testNow) {
		t.Errorf("PlacedAt = %v, want the injected clock %v", got, testNow)
	}
	if out.Position.IsZero() {
		t.Error("Position is zero after an append")
	}

	// The identical order again, placed at another time: a no-op.
	again := placeCmd("A1", 100)
	again.PlacedAt = testNow.Add(time.Hour)
	out, err = l.PlaceOrder(ctx, again)
	if err != nil || !out.Duplicate || len(out.Appended) != 0 || out.Revision != 0 {
		t.Fatalf("identical place: got err=%v duplicate=%v appended=%v revision=%d, want a duplicate at revision 0",
			err, out.Duplicate, types(out.Appended), out.Revision)
	}

	// Other content under the same out_trade_no: refused, nothing written.
	for name, cmd := range map[string]domain.OrderPlaced{
		"other fee":         placeCmd("A1", 101),
		"other description": func() domain.OrderPlaced { c := placeCmd("A1", 100); c.Description = "tea"; return c }(),
	} {
		if _, err := l.PlaceOrder(ctx, cmd); !errors.Is(err, domain.ErrOrderConflict) {
			t.Errorf("%s: err = %v, want domain.ErrOrderConflict", name, err)
		}
	}
	// A fresh ledger (no cache) decides the same from the store.
	if _, err := app.New(s).PlaceOrder(ctx, placeCmd("A1", 999)); !errors.Is(err, domain.ErrOrderConflict) {
		t.Errorf("fresh ledger: err = %v, want domain.ErrOrderConflict", err)
	}
	if n := len(readAll(t, s, "A1")); n != 1 {
		t.Errorf("stream holds %d events, want 1", n)
	}

	if _, err := l.PlaceOrder(ctx, placeCmd("A2", 0)); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("zero fee: err = %v, want domain.ErrInvalid", err)
	}
}

func TestRecordPaymentThenDuplicate(t *testing.T) {
	ctx := context.Background()
	f := &fakeStore{Store: openStore(t)}
	l := app.New(f, app.WithClock(fixedClock))
	if _, err := l.PlaceOrder(ctx, placeCmd("P1", 100)); err != nil {
		t.Fatal(err)
	}
	f.reset()

	p := payment("P1", "4200000001", 100)
	out, err := l.RecordPayment(ctx, p)
	if err != nil {
		t.Fatalf("record: %v", err)
	}
	if out.Duplicate || !slices.Equal(types(out.Appended), []string{domain.TypePaymentConfirmed}) {
		t.Fatalf("record: duplicate=%v appended=%v, want one PaymentConfirmed", out.Duplicate, types(out.Appended))
	}
	if got := out.Order.Status(); got != domain.StatusPaid || out.Revision != 1 || out.Attempts != 1 {
		t.Fatalf("record: status %s revision %d attempts %d, want PAID at revision 1 in 1 attempt", got, out.Revision, out.Attempts)
	}
	if n, _ := f.counts(); n != 1 {
		t.Fatalf("record made %d appends, want 1", n)
	}

	// The same notification again (WeChat retries): no append at all.
	p.Evidence.ReceivedAt = p.Evidence.ReceivedAt.Add(15 * time.Second)
	out, err = l.RecordPayment(ctx, p)
	if err != nil || !out.Duplicate || len(out.Appended) != 0 {
		t.Fatalf("repeat: err=%v duplicate=%v appended=%v, want a duplicate", err, out.Duplicate, types(out.Appended))
	}
	if out.Revision != 1 || out.Order.Status() != domain.StatusPaid {
		t.Errorf("repeat: revision %d status %s, want 1 PAID", out.Revision, out.Order.Status())
	}
	if n, _ := f.counts(); n != 1 {
		t.Errorf("the duplicate made %d more appends, want 0", n-1)
	}
	if n := countType(t, f, "P1", domain.TypePaymentConfirmed); n != 1 {
		t.Errorf("store holds %d PaymentConfirmed, want 1", n)
	}
}

// TestConcurrentCopiesRecordOnce races 64 copies of one payment
// notification, through one Ledger or through two Ledgers over the same
// store (two processes: separate caches). Exactly one PaymentConfirmed is
// stored, every copy gets a nil error (so every copy is acknowledged), and
// exactly one copy reports the append. "distinct evidence" gives each copy
// its own receipt time, as real retries have: then the losing appends hit
// the same event ID with other content (ErrEventIDConflict), not a
// duplicate.
func TestConcurrentCopiesRecordOnce(t *testing.T) {
	const copies = 64
	for _, ledgers := range []int{1, 2} {
		for _, distinct := range []bool{false, true} {
			name := fmt.Sprintf("ledgers=%d/identical", ledgers)
			if distinct {
				name = fmt.Sprintf("ledgers=%d/distinct evidence", ledgers)
			}
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				s := openStore(t)
				var ls []*app.Ledger
				for range ledgers {
					ls = append(ls, app.New(s, app.WithClock(fixedClock)))
				}
				// Every ledger has the order cached at revision 0.
				for _, l := range ls {
					if _, err := l.PlaceOrder(ctx, placeCmd("C1", 100)); err != nil {
						t.Fatal(err)
					}
				}
				start := make(chan struct{})
				outs := make([]app.Outcome, copies)
				errs := make([]error, copies)
				var wg sync.WaitGroup
				for i := range copies {
					p := payment("C1", "4200000077", 100)
					if distinct {
						p.Evidence.ReceivedAt = p.Evidence.ReceivedAt.Add(time.Duration(i) * time.Millisecond)
					}
					l := ls[i%len(ls)]
					wg.Go(func() {
						<-start
						outs[i], errs[i] = l.RecordPayment(ctx, p)
					})
				}
				close(start)
				wg.Wait()

				appended := 0
				for i := range copies {
					if errs[i] != nil {
						t.Errorf("copy %d: %v", i, errs[i])
						continue
					}
					if outs[i].Order.Status() != domain.StatusPaid {
						t.Errorf("copy %d: status %s, want PAID", i, outs[i].Order.Status())
					}
					if outs[i].Attempts > 2 {
						t.Errorf("copy %d took %d attempts: a loser must find the payment on its first re-read", i, outs[i].Attempts)
					}
					if len(outs[i].Appended) > 0 {
						appended++
					}
				}
				if appended != 1 {
					t.Errorf("%d copies report an append, want exactly 1", appended)
				}
				if n := countType(t, s, "C1", domain.TypePaymentConfirmed); n != 1 {
					t.Errorf("store holds %d PaymentConfirmed, want 1", n)
				}
				if n := len(readAll(t, s, "C1")); n != 2 {
					t.Errorf("stream holds %d events, want 2", n)
				}
				// Every ledger now sees the paid order.
				for i, l := range ls {
					out, err := l.Load(ctx, testMchID, "C1")
					if err != nil || out.Order.Status() != domain.StatusPaid || out.Revision != 1 {
						t.Errorf("ledger %d: load err=%v status=%s revision=%d, want PAID at 1", i, err, out.Order.Status(), out.Revision)
					}
				}
			})
		}
	}
}

// TestConcurrentCopyLandsBetweenReadAndAppend makes the race deterministic:
// the fake store slips a concurrent copy's append in right before the
// ledger's own. An identical copy makes the ledger's append a store-level
// duplicate (same IDs right after the expected revision); a copy with other
// evidence makes it an ID conflict, after which the ledger re-reads and
// finds the payment recorded.
func TestConcurrentCopyLandsBetweenReadAndAppend(t *testing.T) {
	for _, tc := range []struct {
		name         string
		otherBody    string
		wantAttempts int
	}{
		{name: "identical copy", wantAttempts: 1},
		{name: "copy with other evidence", otherBody: "<xml>another delivery</xml>", wantAttempts: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			base := openStore(t)
			p := payment("R1", "4200000555", 100)
			other := app.New(base, app.WithClock(fixedClock))
			f := &fakeStore{Store: base}
			var once sync.Once
			f.append = func(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
				var err error
				once.Do(func() {
					q := p
					if tc.otherBody != "" {
						q.Evidence.Body = tc.otherBody
					}
					_, err = other.RecordPayment(ctx, q)
				})
				if err != nil {
					return eventstore.AppendResult{}, fmt.Errorf("concurrent copy: %w", err)
				}
				return base.Append(ctx, stream, expected, events...)
			}
			l := app.New(f, app.WithClock(fixedClock))
			if _, err := other.PlaceOrder(ctx, placeCmd("R1", 100)); err != nil {
				t.Fatal(err)
			}

			out, err := l.RecordPayment(ctx, p)
			if err != nil {
				t.Fatalf("record: %v", err)
			}
			if !out.Duplicate || len(out.Appended) != 0 || out.Attempts != tc.wantAttempts {
				t.Errorf("got duplicate=%v appended=%v attempts=%d, want a duplicate in %d attempts",
					out.Duplicate, types(out.Appended), out.Attempts, tc.wantAttempts)
			}
			if out.Order.Status() != domain.StatusPaid || out.Revision != 1 {
				t.Errorf("got status %s revision %d, want PAID at 1", out.Order.Status(), out.Revision)
			}
			if n := countType(t, base, "R1", domain.TypePaymentConfirmed); n != 1 {
				t.Errorf("store holds %d PaymentConfirmed, want 1", n)
			}
			// The ledger's view is right afterwards too.
			if out, err := l.Load(ctx, testMchID, "R1"); err != nil || out.Revision != 1 || out.Order.Status() != domain.StatusPaid {
				t.Errorf("load: err=%v revision=%d status=%s, want PAID at 1", err, out.Revision, out.Order.Status())
			}
		})
	}
}

func TestContentionBoundedByMaxAttempts(t *testing.T) {
	ctx := context.Background()
	f := &fakeStore{Store: openStore(t)}
	l := app.New(f, app.WithClock(fixedClock), app.WithMaxAttempts(5))
	if _, err := l.PlaceOrder(ctx, placeCmd("K1", 100)); err != nil {
		t.Fatal(err)
	}
	f.append = func(context.Context, string, eventstore.ExpectedRevision, ...eventstore.EventData) (eventstore.AppendResult, error) {
		return eventstore.AppendResult{}, fmt.Errorf("append: %w", eventstore.ErrWrongExpectedRevision)
	}
	f.reset()

	_, err := l.RecordPayment(ctx, payment("K1", "4200000002", 100))
	if !errors.Is(err, app.ErrContention) {
		t.Fatalf("err = %v, want app.ErrContention", err)
	}
	appends, reads := f.counts()
	if appends != 5 {
		t.Errorf("%d appends, want 5 (MaxAttempts)", appends)
	}
	if len(reads) != 5 {
		t.Errorf("%d reads, want one per attempt (5)", len(reads))
	}
	// Each conflict drops the cached state: every re-read is a full fold.
	for i, from := range reads[1:] {
		if from != 0 {
			t.Errorf("read %d after a conflict started at revision %d, want 0", i+2, from)
		}
	}
	if n := countType(t, f.Store, "K1", domain.TypePaymentConfirmed); n != 0 {
		t.Errorf("store holds %d PaymentConfirmed, want 0", n)
	}
}

// TestIDReusedAcrossOrders: a transaction id already recorded on another
// order cannot be stored again under its deterministic event ID. The
// notification is recorded as an ID_REUSED anomaly on its own order (no
// money booked), acknowledged, and a retry of it is a duplicate.
func TestIDReusedAcrossOrders(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	l := app.New(s, app.WithClock(fixedClock))
	for _, otn := range []string{"I1", "I2"} {
		if _, err := l.PlaceOrder(ctx, placeCmd(otn, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.RecordPayment(ctx, payment("I1", "4200000099", 100)); err != nil {
		t.Fatal(err)
	}
	out, err := l.RecordPayment(ctx, payment("I2", "4200000099", 100))
	if err != nil {
		t.Fatalf("reused id: %v", err)
	}
	if got := types(out.Appended); !slices.Equal(got, []string{domain.TypeAnomalyDetected}) ||
		out.Appended[0].(domain.AnomalyDetected).Code != domain.IDReused {
		t.Fatalf("reused id appended %v, want one ID_REUSED anomaly", got)
	}
	if out.Order.Status() != domain.StatusPending || out.Order.PaidFee != 0 {
		t.Errorf("reused id: status %s paid %d, want the order still PENDING and unpaid", out.Order.Status(), out.Order.PaidFee)
	}
	out, err = l.RecordPayment(ctx, payment("I2", "4200000099", 100))
	if err != nil || !out.Duplicate {
		t.Errorf("retry: err=%v duplicate=%v, want a duplicate", err, out.Duplicate)
	}
	if n := countType(t, s, "I2", domain.TypePaymentConfirmed); n != 0 {
		t.Errorf("I2 holds %d PaymentConfirmed, want 0", n)
	}
	if n := len(readAll(t, s, "I2")); n != 2 {
		t.Errorf("I2 holds %d events, want 2 (placed, anomaly)", n)
	}
}

// TestStoreErrorDropsCache: a store failure on append is returned as is
// (the outcome may be unknown, so it is not retried here and not turned
// into a conflict), and the cached state is dropped: the next call folds
// the stream from revision 0.
func TestStoreErrorDropsCache(t *testing.T) {
	diskOnFire := errors.New("disk on fire")
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"plain error", diskOnFire},
		{"unavailable", fmt.Errorf("append: connection reset: %w", eventstore.ErrUnavailable)},
		{"closed", fmt.Errorf("append: %w", eventstore.ErrClosed)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := &fakeStore{Store: openStore(t)}
			l := app.New(f, app.WithClock(fixedClock))
			if _, err := l.PlaceOrder(ctx, placeCmd("E1", 100)); err != nil {
				t.Fatal(err)
			}
			// With the state cached, a load only reads what is new.
			f.reset()
			if _, err := l.Load(ctx, testMchID, "E1"); err != nil {
				t.Fatal(err)
			}
			if _, reads := f.counts(); !slices.Equal(reads, []uint64{1}) {
				t.Fatalf("cached load read from %v, want [1]", reads)
			}

			f.append = func(context.Context, string, eventstore.ExpectedRevision, ...eventstore.EventData) (eventstore.AppendResult, error) {
				return eventstore.AppendResult{}, tc.err
			}
			f.reset()
			_, err := l.RecordPayment(ctx, payment("E1", "4200000003", 100))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want it to wrap %v", err, tc.err)
			}
			if errors.Is(err, app.ErrContention) {
				t.Errorf("err = %v: a store failure is not contention", err)
			}
			if appends, _ := f.counts(); appends != 1 {
				t.Errorf("%d appends, want 1: an unknown outcome is not retried in the loop", appends)
			}

			f.append = nil
			f.reset()
			out, err := l.RecordPayment(ctx, payment("E1", "4200000003", 100))
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			if _, reads := f.counts(); len(reads) == 0 || reads[0] != 0 {
				t.Errorf("retry read from %v, want a full fold from revision 0 first", reads)
			}
			if len(out.Appended) != 1 || out.Order.Status() != domain.StatusPaid {
				t.Errorf("retry: appended %v status %s, want the payment recorded", types(out.Appended), out.Order.Status())
			}
		})
	}
}

func TestReadErrorIsReturned(t *testing.T) {
	ctx := context.Background()
	f := &fakeStore{Store: openStore(t)}
	l := app.New(f, app.WithClock(fixedClock))
	f.readStream = func(context.Context, string, uint64, int) ([]eventstore.RecordedEvent, error) {
		return nil, fmt.Errorf("read: %w", eventstore.ErrUnavailable)
	}
	_, err := l.PlaceOrder(ctx, placeCmd("E2", 100))
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("err = %v, want eventstore.ErrUnavailable", err)
	}
	if appends, _ := f.counts(); appends != 0 {
		t.Errorf("%d appends after a failed read, want 0", appends)
	}
}

// TestAppendSucceededReplyLost: the store wrote the events but the reply
// was lost. The ledger reports the error (WeChat will retry); the retry
// finds the payment stored and writes nothing.
func TestAppendSucceededReplyLost(t *testing.T) {
	ctx := context.Background()
	base := openStore(t)
	f := &fakeStore{Store: base}
	l := app.New(f, app.WithClock(fixedClock))
	if _, err := l.PlaceOrder(ctx, placeCmd("L1", 100)); err != nil {
		t.Fatal(err)
	}
	f.append = func(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
		if _, err := base.Append(ctx, stream, expected, events...); err != nil {
			return eventstore.AppendResult{}, err
		}
		return eventstore.AppendResult{}, fmt.Errorf("append %s: reply lost: %w", stream, eventstore.ErrUnavailable)
	}
	p := payment("L1", "4200000004", 100)
	if _, err := l.RecordPayment(ctx, p); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("first delivery: err = %v, want eventstore.ErrUnavailable", err)
	}
	if n := countType(t, base, "L1", domain.TypePaymentConfirmed); n != 1 {
		t.Fatalf("store holds %d PaymentConfirmed after the lost reply, want 1", n)
	}

	f.append = nil
	f.reset()
	out, err := l.RecordPayment(ctx, p)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !out.Duplicate || len(out.Appended) != 0 || out.Order.Status() != domain.StatusPaid {
		t.Errorf("retry: duplicate=%v appended=%v status=%s, want a duplicate of the paid order",
			out.Duplicate, types(out.Appended), out.Order.Status())
	}
	if appends, _ := f.counts(); appends != 0 {
		t.Errorf("retry made %d appends, want 0", appends)
	}
	if n := countType(t, base, "L1", domain.TypePaymentConfirmed); n != 1 {
		t.Errorf("store holds %d PaymentConfirmed after the retry, want 1", n)
	}
}

// TestStaleCacheCatchesUp: ledger A caches the order; ledger B (another
// process) pays it. A's next load reads what B wrote, so A decides on the
// current state, not its cached one.
func TestStaleCacheCatchesUp(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	a := app.New(s, app.WithClock(fixedClock))
	b := app.New(s, app.WithClock(fixedClock))
	if _, err := a.PlaceOrder(ctx, placeCmd("S1", 100)); err != nil {
		t.Fatal(err)
	}
	if out, err := a.Load(ctx, testMchID, "S1"); err != nil || out.Order.Status() != domain.StatusPending {
		t.Fatalf("A: load err=%v status=%s, want PENDING", err, out.Order.Status())
	}
	if out, err := b.RecordPayment(ctx, payment("S1", "4200000005", 100)); err != nil || len(out.Appended) != 1 {
		t.Fatalf("B: record err=%v appended=%v", err, types(out.Appended))
	}

	out, err := a.Load(ctx, testMchID, "S1")
	if err != nil || out.Order.Status() != domain.StatusPaid || out.Revision != 1 {
		t.Fatalf("A: load err=%v status=%s revision=%d, want PAID at 1", err, out.Order.Status(), out.Revision)
	}
	// The same payment through A is a duplicate, not a second credit.
	out, err = a.RecordPayment(ctx, payment("S1", "4200000005", 100))
	if err != nil || !out.Duplicate {
		t.Errorf("A: same payment err=%v duplicate=%v, want a duplicate", err, out.Duplicate)
	}
	// A paid order cannot be closed, whichever process asks.
	if _, err := a.CloseOrder(ctx, testMchID, "S1", "timeout"); !errors.Is(err, domain.ErrNotClosable) {
		t.Errorf("A: close err = %v, want domain.ErrNotClosable", err)
	}
	// A second transaction through A is flagged against B's payment.
	out, err = a.RecordPayment(ctx, payment("S1", "4200000006", 100))
	if err != nil {
		t.Fatal(err)
	}
	if got := types(out.Appended); !slices.Equal(got, []string{domain.TypeAnomalyDetected}) ||
		out.Appended[0].(domain.AnomalyDetected).Code != domain.DuplicatePayment {
		t.Errorf("A: second transaction appended %v, want one DUPLICATE_PAYMENT anomaly", got)
	}
	if n := countType(t, s, "S1", domain.TypePaymentConfirmed); n != 1 {
		t.Errorf("store holds %d PaymentConfirmed, want 1", n)
	}
}

// TestCorruptStoredEvent: a stored event of a known type that does not
// decode stops every use case on that stream with ErrCorruptStream, and
// nothing is appended after it. An event of an unknown type does not.
func TestCorruptStoredEvent(t *testing.T) {
	ctx := context.Background()
	base := openStore(t)
	f := &fakeStore{Store: base}
	cached := app.New(f, app.WithClock(fixedClock))
	if _, err := cached.PlaceOrder(ctx, placeCmd("X1", 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := base.Append(ctx, stream("X1"), eventstore.Exact(0), eventstore.EventData{
		ID: eventstore.EventID{1, 2, 3}, Type: domain.TypePaymentConfirmed,
		ContentType: "application/json", Data: []byte(`{"mch_id": "1900000109", "total_fee": `),
	}); err != nil {
		t.Fatal(err)
	}
	f.reset()
	fresh := app.New(f, app.WithClock(fixedClock))
	for name, l := range map[string]*app.Ledger{"cached": cached, "fresh": fresh} {
		if _, err := l.RecordPayment(ctx, payment("X1", "4200000007", 100)); !errors.Is(err, app.ErrCorruptStream) {
			t.Errorf("%s: record err = %v, want app.ErrCorruptStream", name, err)
		}
		if _, err := l.CloseOrder(ctx, testMchID, "X1", "x"); !errors.Is(err, app.ErrCorruptStream) {
			t.Errorf("%s: close err = %v, want app.ErrCorruptStream", name, err)
		}
		if _, err := l.Load(ctx, testMchID, "X1"); !errors.Is(err, app.ErrCorruptStream) {
			t.Errorf("%s: load err = %v, want app.ErrCorruptStream", name, err)
		}
	}
	if appends, _ := f.counts(); appends != 0 {
		t.Errorf("%d appends on a corrupt stream, want 0", appends)
	}
	if n := len(readAll(t, base, "X1")); n != 2 {
		t.Errorf("stream holds %d events, want 2", n)
	}

	// An event type this binary does not know is skipped, not corrupt.
	if _, err := cached.PlaceOrder(ctx, placeCmd("U1", 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := base.Append(ctx, stream("U1"), eventstore.Exact(0), eventstore.EventData{
		ID: eventstore.EventID{9}, Type: "InvoiceIssued", ContentType: "application/json", Data: []byte(`{"v":2}`),
	}); err != nil {
		t.Fatal(err)
	}
	out, err := cached.RecordPayment(ctx, payment("U1", "4200000008", 100))
	if err != nil || out.Order.Status() != domain.StatusPaid || out.Revision != 2 {
		t.Errorf("unknown event type: err=%v status=%s revision=%d, want PAID at 2", err, out.Order.Status(), out.Revision)
	}
}

func TestRecordRefund(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	l := app.New(s, app.WithClock(fixedClock))
	if _, err := l.PlaceOrder(ctx, placeCmd("F1", 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RecordPayment(ctx, payment("F1", "4200000009", 100)); err != nil {
		t.Fatal(err)
	}
	out, err := l.RecordRefund(ctx, refund("F1", "4200000009", "5030000001", 40))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(types(out.Appended), []string{domain.TypeRefundSucceeded}) ||
		out.Order.RefundedFee != 40 || out.Order.Status() != domain.StatusPartiallyRefunded {
		t.Fatalf("refund: appended %v refunded %d status %s, want RefundSucceeded, 40, PARTIALLY_REFUNDED",
			types(out.Appended), out.Order.RefundedFee, out.Order.Status())
	}
	out, err = l.RecordRefund(ctx, refund("F1", "4200000009", "5030000001", 40))
	if err != nil || !out.Duplicate || out.Order.RefundedFee != 40 {
		t.Errorf("repeat: err=%v duplicate=%v refunded=%d, want a duplicate with 40 refunded", err, out.Duplicate, out.Order.RefundedFee)
	}
	out, err = l.RecordRefund(ctx, refund("F1", "4200000009", "5030000002", 60))
	if err != nil || out.Order.Status() != domain.StatusRefunded || out.Order.RefundedFee != 100 {
		t.Errorf("second refund: err=%v status=%s refunded=%d, want REFUNDED 100", err, out.Order.Status(), out.Order.RefundedFee)
	}
	if n := countType(t, s, "F1", domain.TypeRefundSucceeded); n != 2 {
		t.Errorf("store holds %d RefundSucceeded, want 2", n)
	}

	for name, r := range map[string]domain.Refund{
		"no refund_id":    refund("F1", "4200000009", "", 1),
		"no out_trade_no": refund("", "4200000009", "5030000003", 1),
		"no mch_id":       func() domain.Refund { r := refund("F1", "4200000009", "5030000004", 1); r.MchID = ""; return r }(),
	} {
		if _, err := l.RecordRefund(ctx, r); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%s: err = %v, want domain.ErrInvalid", name, err)
		}
	}
}

func TestCloseOrder(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	l := app.New(s, app.WithClock(fixedClock))

	if _, err := l.CloseOrder(ctx, testMchID, "N1", "timeout"); !errors.Is(err, domain.ErrUnknownOrder) {
		t.Errorf("never placed: err = %v, want domain.ErrUnknownOrder", err)
	}
	if n := len(readAll(t, s, "N1")); n != 0 {
		t.Errorf("closing an unknown order wrote %d events", n)
	}

	if _, err := l.PlaceOrder(ctx, placeCmd("N2", 100)); err != nil {
		t.Fatal(err)
	}
	out, err := l.CloseOrder(ctx, testMchID, "N2", "timeout")
	if err != nil || !slices.Equal(types(out.Appended), []string{domain.TypeOrderClosed}) || out.Order.Status() != domain.StatusClosed {
		t.Fatalf("close: err=%v appended=%v status=%s, want OrderClosed and CLOSED", err, types(out.Appended), out.Order.Status())
	}
	if got := out.Order.Closed.ClosedAt; !got.Equal(testNow) {
		t.Errorf("ClosedAt = %v, want the injected clock %v", got, testNow)
	}
	out, err = l.CloseOrder(ctx, testMchID, "N2", "again")
	if err != nil || !out.Duplicate {
		t.Errorf("close again: err=%v duplicate=%v, want a duplicate", err, out.Duplicate)
	}

	if _, err := l.PlaceOrder(ctx, placeCmd("N3", 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RecordPayment(ctx, payment("N3", "4200000010", 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CloseOrder(ctx, testMchID, "N3", "timeout"); !errors.Is(err, domain.ErrNotClosable) {
		t.Errorf("paid: err = %v, want domain.ErrNotClosable", err)
	}
}

func TestRecordPaymentInvalid(t *testing.T) {
	ctx := context.Background()
	f := &fakeStore{Store: openStore(t)}
	l := app.New(f, app.WithClock(fixedClock))
	for name, mutate := range map[string]func(*domain.Payment){
		"SUCCESS without transaction_id": func(p *domain.Payment) { p.TransactionID = "" },
		"no mch_id":                      func(p *domain.Payment) { p.MchID = "" },
		"no out_trade_no":                func(p *domain.Payment) { p.OutTradeNo = "" },
	} {
		p := payment("V1", "4200000011", 100)
		mutate(&p)
		if _, err := l.RecordPayment(ctx, p); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%s: err = %v, want domain.ErrInvalid", name, err)
		}
	}
	if appends, reads := f.counts(); appends != 0 || len(reads) != 0 {
		t.Errorf("invalid payments reached the store: %d appends, %d reads", appends, len(reads))
	}

	// A failed payment may carry no transaction id: it is recorded.
	p := payment("V1", "", 100)
	p.ResultCode, p.ErrCode = "FAIL", "NOTENOUGH"
	out, err := l.RecordPayment(ctx, p)
	if err != nil || !slices.Equal(types(out.Appended), []string{domain.TypePaymentFailed}) {
		t.Errorf("FAIL without transaction_id: err=%v appended=%v, want PaymentFailed", err, types(out.Appended))
	}
}

// TestSmallCacheStaysCorrect runs three orders through a ledger that
// caches two: evicted states are folded again from the store.
func TestSmallCacheStaysCorrect(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	l := app.New(s, app.WithClock(fixedClock), app.WithCacheSize(2))
	otns := []string{"Z1", "Z2", "Z3"}
	for round := range 2 {
		for i, otn := range otns {
			if _, err := l.PlaceOrder(ctx, placeCmd(otn, 100)); err != nil {
				t.Fatal(err)
			}
			out, err := l.RecordPayment(ctx, payment(otn, fmt.Sprintf("42000000%02d", i), 100))
			if err != nil {
				t.Fatal(err)
			}
			if wantDup := round == 1; out.Duplicate != wantDup || out.Order.Status() != domain.StatusPaid || out.Revision != 1 {
				t.Errorf("round %d %s: duplicate=%v status=%s revision=%d, want duplicate=%v PAID at 1",
					round, otn, out.Duplicate, out.Order.Status(), out.Revision, wantDup)
			}
		}
	}
	for _, otn := range otns {
		if n := countType(t, s, otn, domain.TypePaymentConfirmed); n != 1 {
			t.Errorf("%s: %d PaymentConfirmed, want 1", otn, n)
		}
	}
	// No cache at all is just as correct.
	nocache := app.New(s, app.WithClock(fixedClock), app.WithCacheSize(0))
	for i, otn := range otns {
		out, err := nocache.RecordPayment(ctx, payment(otn, fmt.Sprintf("42000000%02d", i), 100))
		if err != nil || !out.Duplicate {
			t.Errorf("no cache %s: err=%v duplicate=%v, want a duplicate", otn, err, out.Duplicate)
		}
	}
}
