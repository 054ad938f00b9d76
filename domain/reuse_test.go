package domain_test

import (
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
)

// A WeChat id already recorded on another order is recorded here as an
// ID_REUSED anomaly that books no money, once however often it arrives.
func TestDecideIDReused(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	placed := domain.OrderPlaced{MchID: "1900000109", AppID: "wx1", OutTradeNo: "P10", TotalFee: 100, FeeType: "CNY", Description: "d"}
	o := domain.Fold([]domain.Event{placed})
	p := domain.Payment{MchID: "1900000109", AppID: "wx1", OutTradeNo: "P10", TransactionID: "4200000002", TotalFee: 100, ResultCode: "SUCCESS"}

	events := domain.DecideIDReused(o, &p, nil, now)
	if len(events) != 1 {
		t.Fatalf("got %d events, want 1", len(events))
	}
	a, ok := events[0].(domain.AnomalyDetected)
	if !ok || a.Code != domain.IDReused || a.Payment == nil || a.NotifiedFee != 100 || a.ExpectedFee != 100 {
		t.Fatalf("got %#v", events[0])
	}
	// The anomaly's ID is keyed by this order: it differs from the
	// PaymentConfirmed ID that collided on the other order.
	if domain.ID(a) == domain.ID(domain.PaymentConfirmed{Payment: p}) {
		t.Fatal("ID_REUSED anomaly shares the payment's ID")
	}
	o = domain.Evolve(o, a)
	if again := domain.DecideIDReused(o, &p, nil, now.Add(time.Hour)); len(again) != 0 {
		t.Fatalf("a repeat decided %d events", len(again))
	}
	if o.Status() != domain.StatusPending || o.PaidFee != 0 {
		t.Fatalf("reused id moved money: %s", o.String())
	}

	r := domain.Refund{MchID: "1900000109", OutTradeNo: "P10", TransactionID: "4200000002", RefundID: "5000001", Status: domain.RefundStatusSuccess, RefundFee: 50}
	events = domain.DecideIDReused(o, nil, &r, now)
	if len(events) != 1 || events[0].(domain.AnomalyDetected).RefundID != "5000001" {
		t.Fatalf("refund: got %#v", events)
	}
	o = domain.Evolve(o, events[0])
	if o.RefundedFee != 0 || len(domain.DecideIDReused(o, nil, &r, now)) != 0 {
		t.Fatalf("refund reuse not idempotent or moved money: %s", o.String())
	}
}
