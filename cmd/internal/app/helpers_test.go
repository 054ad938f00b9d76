package app_test

// Shared fixtures of the app tests: a real embedded store in t.TempDir(), a
// fixed clock, commands and notifications for one merchant, and fakeStore,
// a consumer-side wrapper whose function fields inject failures.

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
	"github.com/orderledger/orderledger/eventstore/sqlite"
)

const (
	testMchID = "1900000109"
	testAppID = "wx2421b1c4370ec43b"
)

var (
	beijing = time.FixedZone("CST", 8*3600)
	// testNow is the ledger's clock in every test: decisions never read
	// the wall clock.
	testNow = time.Date(2025, 3, 14, 10, 30, 0, 0, beijing)
)

func fixedClock() time.Time { return testNow }

// openStore opens the real embedded store in a fresh temporary folder and
// closes it when the test ends.
func openStore(t testing.TB) eventstore.Store {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func placeCmd(outTradeNo string, fee int64) domain.OrderPlaced {
	return domain.OrderPlaced{
		MchID: testMchID, AppID: testAppID, OutTradeNo: outTradeNo, TotalFee: fee,
		FeeType: "CNY", Description: "coffee",
	}
}

// payment is a verified successful payment notification for outTradeNo.
func payment(outTradeNo, transactionID string, fee int64) domain.Payment {
	return domain.Payment{
		MchID: testMchID, AppID: testAppID, OutTradeNo: outTradeNo, TransactionID: transactionID,
		TotalFee: fee, CashFee: fee, FeeType: "CNY", TradeType: "JSAPI", ResultCode: "SUCCESS",
		PaidAt: time.Date(2025, 3, 14, 10, 31, 0, 0, beijing),
		Evidence: domain.Evidence{
			Channel: "wechatpay-v2-notify", Body: "<xml>" + transactionID + "</xml>",
			ReceivedAt: time.Date(2025, 3, 14, 10, 31, 2, 0, beijing),
		},
	}
}

func refund(outTradeNo, transactionID, refundID string, fee int64) domain.Refund {
	return domain.Refund{
		MchID: testMchID, OutTradeNo: outTradeNo, TransactionID: transactionID, RefundID: refundID,
		OutRefundNo: "R" + refundID, Status: domain.RefundStatusSuccess, TotalFee: 100, RefundFee: fee,
		SucceededAt: time.Date(2025, 3, 15, 9, 0, 0, 0, beijing),
		Evidence:    domain.Evidence{Channel: "wechatpay-v2-refund-notify", Body: "<xml/>", ReceivedAt: testNow},
	}
}

func stream(outTradeNo string) string { return domain.StreamID(testMchID, outTradeNo) }

// readAll returns every event of the order's stream, failing the test on a
// read error.
func readAll(t testing.TB, s eventstore.Store, outTradeNo string) []eventstore.RecordedEvent {
	t.Helper()
	recs, err := s.ReadStream(context.Background(), stream(outTradeNo), 0, 0)
	if err != nil {
		t.Fatalf("read %s: %v", stream(outTradeNo), err)
	}
	return recs
}

// countType counts the stored events of type typ in the order's stream.
func countType(t testing.TB, s eventstore.Store, outTradeNo, typ string) int {
	t.Helper()
	n := 0
	for _, r := range readAll(t, s, outTradeNo) {
		if r.Type == typ {
			n++
		}
	}
	return n
}

func types(events []domain.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.EventType())
	}
	return out
}

// fakeStore wraps a real store; a nil function field passes the call
// through. It counts the calls it sees, so a test can prove what the
// ledger did (or did not) ask of the store.
type fakeStore struct {
	eventstore.Store
	append     func(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error)
	readStream func(ctx context.Context, stream string, from uint64, max int) ([]eventstore.RecordedEvent, error)

	mu      sync.Mutex // guards appends and reads
	appends int
	reads   []uint64 // the `from` of every ReadStream call, in order
}

func (f *fakeStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	f.mu.Lock()
	f.appends++
	f.mu.Unlock()
	if f.append != nil {
		return f.append(ctx, stream, expected, events...)
	}
	return f.Store.Append(ctx, stream, expected, events...)
}

func (f *fakeStore) ReadStream(ctx context.Context, stream string, from uint64, max int) ([]eventstore.RecordedEvent, error) {
	f.mu.Lock()
	f.reads = append(f.reads, from)
	f.mu.Unlock()
	if f.readStream != nil {
		return f.readStream(ctx, stream, from, max)
	}
	return f.Store.ReadStream(ctx, stream, from, max)
}

// counts returns the Append calls and the ReadStream `from` values seen
// since the last reset.
func (f *fakeStore) counts() (appends int, reads []uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appends, append([]uint64(nil), f.reads...)
}

func (f *fakeStore) reset() {
	f.mu.Lock()
	f.appends, f.reads = 0, nil
	f.mu.Unlock()
}
