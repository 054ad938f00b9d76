package app_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderledger/orderledger/cmd/internal/app"
	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/sqlite"
)

// readCountingStore counts ReadStream calls.
type readCountingStore struct {
	eventstore.Store
	reads atomic.Int64
}

func (s *readCountingStore) ReadStream(ctx context.Context, stream string, from uint64, max int) ([]eventstore.RecordedEvent, error) {
	s.reads.Add(1)
	return s.Store.ReadStream(ctx, stream, from, max)
}

// TestRetryOfCachedPaymentSkipsTheRead: a retry of a payment the ledger has
// seen recorded is acknowledged from the cached state without reading the
// stream, and stays a duplicate whatever was appended since by another
// process; anything else still reads.
func TestRetryOfCachedPaymentSkipsTheRead(t *testing.T) {
	ctx := context.Background()
	base, err := sqlite.Open(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	s := &readCountingStore{Store: base}
	now := func() time.Time { return time.Date(2025, 3, 14, 10, 30, 0, 0, time.UTC) }
	a := app.New(s, app.WithClock(now))
	b := app.New(base, app.WithClock(now)) // another process: its own cache
	const mch, otn = "1900000109", "FAST1"
	pay := func(tx string) domain.Payment {
		return domain.Payment{MchID: mch, AppID: "wx2421b1c4370ec43b", OutTradeNo: otn, TransactionID: tx,
			TotalFee: 100, CashFee: 100, FeeType: "CNY", TradeType: "JSAPI", BankType: "OTHERS", OpenID: "o1",
			PaidAt: now(), ResultCode: "SUCCESS", Evidence: domain.Evidence{Channel: "test", Body: "x", ReceivedAt: now()}}
	}
	if _, err := a.PlaceOrder(ctx, domain.OrderPlaced{MchID: mch, AppID: "wx2421b1c4370ec43b", OutTradeNo: otn,
		TotalFee: 100, Description: "d"}); err != nil {
		t.Fatal(err)
	}
	if out, err := a.RecordPayment(ctx, pay("4200000001")); err != nil || out.Duplicate {
		t.Fatalf("record: err=%v duplicate=%v", err, out.Duplicate)
	}

	s.reads.Store(0)
	out, err := a.RecordPayment(ctx, pay("4200000001"))
	if err != nil || !out.Duplicate || len(out.Appended) != 0 || out.Order.Status() != domain.StatusPaid {
		t.Fatalf("retry: err=%v duplicate=%v appended=%d status=%s, want a PAID duplicate", err, out.Duplicate, len(out.Appended), out.Order.Status())
	}
	if n := s.reads.Load(); n != 0 {
		t.Errorf("retry of a cached payment read the stream %d times, want 0", n)
	}

	// Another process records a second transaction: A's cache is now
	// behind, and the retry is still a duplicate.
	if out, err := b.RecordPayment(ctx, pay("4200000002")); err != nil || len(out.Appended) == 0 {
		t.Fatalf("B: err=%v appended=%d", err, len(out.Appended))
	}
	if out, err := a.RecordPayment(ctx, pay("4200000001")); err != nil || !out.Duplicate {
		t.Errorf("retry after B: err=%v duplicate=%v, want a duplicate", err, out.Duplicate)
	}
	// A transaction A has not seen goes through a read, and finds B's.
	s.reads.Store(0)
	if out, err := a.RecordPayment(ctx, pay("4200000002")); err != nil || !out.Duplicate {
		t.Errorf("B's transaction through A: err=%v duplicate=%v, want a duplicate", err, out.Duplicate)
	}
	if s.reads.Load() == 0 {
		t.Error("a transaction missing from the cache was decided without reading the stream")
	}
	// A failed-payment notification never takes the shortcut.
	s.reads.Store(0)
	failed := pay("")
	failed.ResultCode = "FAIL"
	if _, err := a.RecordPayment(ctx, failed); err != nil {
		t.Fatal(err)
	}
	if s.reads.Load() == 0 {
		t.Error("a FAIL notification was decided without reading the stream")
	}

	recs, err := base.ReadStream(ctx, domain.StreamID(mch, otn), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	confirmed := 0
	for _, r := range recs {
		if r.Type == domain.TypePaymentConfirmed {
			confirmed++
		}
	}
	if confirmed != 1 {
		t.Errorf("%d PaymentConfirmed stored, want 1", confirmed)
	}
}
