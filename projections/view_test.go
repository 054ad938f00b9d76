package projections

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

func placed(otn string, fee int64, at string) domain.OrderPlaced {
	return domain.OrderPlaced{MchID: testMch, AppID: testAppID, OutTradeNo: otn, TotalFee: fee,
		FeeType: "CNY", Description: "coffee " + otn, PlacedAt: bj(at)}
}

func payment(otn, tx string, fee, cash int64, at string) domain.Payment {
	p := domain.Payment{MchID: testMch, AppID: testAppID, OutTradeNo: otn, TransactionID: tx,
		TotalFee: fee, CashFee: cash, FeeType: "CNY", TradeType: "JSAPI", ResultCode: "SUCCESS",
		Evidence: domain.Evidence{Channel: "wechatpay-v2-notify", Body: "<xml>" + tx + "</xml>"}}
	if at != "" {
		p.PaidAt = bj(at)
	}
	return p
}

func paid(otn, tx string, fee, cash int64, at string) domain.PaymentConfirmed {
	return domain.PaymentConfirmed{Payment: payment(otn, tx, fee, cash, at)}
}

func anomaly(code, otn, tx string, expected, notified int64, detail, at string, p *domain.Payment) domain.AnomalyDetected {
	return domain.AnomalyDetected{Code: code, MchID: testMch, OutTradeNo: otn, TransactionID: tx,
		ExpectedFee: expected, NotifiedFee: notified, Detail: detail, DetectedAt: bj(at), Payment: p}
}

func refund(otn, tx, refundID string, fee int64, status, at string) domain.Refund {
	r := domain.Refund{MchID: testMch, OutTradeNo: otn, TransactionID: tx, RefundID: refundID,
		OutRefundNo: "R-" + refundID, Status: status, TotalFee: 100, RefundFee: fee}
	if at != "" {
		r.SucceededAt = bj(at)
	}
	return r
}

// The recorded_at of every event in these cases: 2024-03-02 10:00 Beijing.
var tableRecordedAt = bj("2024-03-02 10:00:00")

func TestOrderViewAndTotals(t *testing.T) {
	mismatch := payment("A1", "4200000001", 1, 1, "2024-03-02 00:10:00")
	unknown := payment("B1", "4200000002", 250, 250, "2024-03-02 11:00:00")
	dup := payment("A1", "4200000009", 100, 100, "2024-03-02 00:20:00")
	late := payment("A1", "4200000003", 100, 100, "2024-03-02 00:30:00")

	tests := []struct {
		name       string
		outTradeNo string
		given      []domain.Event
		view       string // JSON of the OrderView
		totals     string // JSON of the merchant's DailyTotals
	}{
		{
			name: "placed", outTradeNo: "A1",
			given: []domain.Event{placed("A1", 100, "2024-03-01 23:30:00")},
			view: `{"mch_id":"1900000109","out_trade_no":"A1","appid":"wxd678efh567hg6787","description":"coffee A1",
				"status":"PENDING","total_fee":100,"paid_fee":0,"cash_fee":0,"refunded_fee":0,"transaction_id":"",
				"paid_at":null,"placed_at":"2024-03-01T23:30:00+08:00","anomalies":[],"refunds":[],
				"revision":0,"position":"10/7"}`,
			totals: `[{"day":"2024-03-01","orders_placed":1,"payments":0,"payments_fee":0,"cash_fee":0,"refunds":0,
				"refunds_fee":0,"net_fee":0,"anomalies":{}}]`,
		},
		{
			// Placed before Beijing midnight, paid after: two days.
			name: "placed and paid", outTradeNo: "A1",
			given: []domain.Event{placed("A1", 100, "2024-03-01 23:30:00"), paid("A1", "4200000001", 100, 90, "2024-03-02 00:10:00")},
			view: `{"mch_id":"1900000109","out_trade_no":"A1","appid":"wxd678efh567hg6787","description":"coffee A1",
				"status":"PAID","total_fee":100,"paid_fee":100,"cash_fee":90,"refunded_fee":0,"transaction_id":"4200000001",
				"paid_at":"2024-03-02T00:10:00+08:00","placed_at":"2024-03-01T23:30:00+08:00","anomalies":[],"refunds":[],
				"revision":1,"position":"20/17"}`,
			totals: `[{"day":"2024-03-01","orders_placed":1,"payments":0,"payments_fee":0,"cash_fee":0,"refunds":0,"refunds_fee":0,"net_fee":0,"anomalies":{}},
				{"day":"2024-03-02","orders_placed":0,"payments":1,"payments_fee":100,"cash_fee":90,"refunds":0,"refunds_fee":0,"net_fee":100,"anomalies":{}}]`,
		},
		{
			name: "amount mismatch", outTradeNo: "A1",
			given: []domain.Event{placed("A1", 100, "2024-03-01 23:30:00"),
				anomaly(domain.AmountMismatch, "A1", "4200000001", 100, 1, "", "2024-03-02 00:10:05", &mismatch)},
			view: `{"mch_id":"1900000109","out_trade_no":"A1","appid":"wxd678efh567hg6787","description":"coffee A1",
				"status":"AMOUNT_MISMATCH","total_fee":100,"paid_fee":0,"cash_fee":0,"refunded_fee":0,"transaction_id":"",
				"paid_at":null,"placed_at":"2024-03-01T23:30:00+08:00",
				"anomalies":[{"code":"AMOUNT_MISMATCH","transaction_id":"4200000001","refund_id":"","expected_fee":100,
					"notified_fee":1,"detail":"","detected_at":"2024-03-02T00:10:05+08:00"}],
				"refunds":[],"revision":1,"position":"20/17"}`,
			totals: `[{"day":"2024-03-01","orders_placed":1,"payments":0,"payments_fee":0,"cash_fee":0,"refunds":0,"refunds_fee":0,"net_fee":0,"anomalies":{}},
				{"day":"2024-03-02","orders_placed":0,"payments":0,"payments_fee":0,"cash_fee":0,"refunds":0,"refunds_fee":0,"net_fee":0,"anomalies":{"AMOUNT_MISMATCH":1},"anomaly_fees":{"AMOUNT_MISMATCH":1}}]`,
		},
		{
			// Money for an order never placed here: booked as paid, flagged.
			name: "unknown order", outTradeNo: "B1",
			given: []domain.Event{paid("B1", "4200000002", 250, 250, "2024-03-02 11:00:00"),
				anomaly(domain.UnknownOrder, "B1", "4200000002", 0, 250, "", "2024-03-02 11:00:02", &unknown)},
			view: `{"mch_id":"1900000109","out_trade_no":"B1","appid":"wxd678efh567hg6787","description":"",
				"status":"PAID","total_fee":250,"paid_fee":250,"cash_fee":250,"refunded_fee":0,"transaction_id":"4200000002",
				"paid_at":"2024-03-02T11:00:00+08:00","placed_at":null,
				"anomalies":[{"code":"UNKNOWN_ORDER","transaction_id":"4200000002","refund_id":"","expected_fee":0,
					"notified_fee":250,"detail":"","detected_at":"2024-03-02T11:00:02+08:00"}],
				"refunds":[],"revision":1,"position":"20/17"}`,
			totals: `[{"day":"2024-03-02","orders_placed":0,"payments":1,"payments_fee":250,"cash_fee":250,"refunds":0,"refunds_fee":0,"net_fee":250,"anomalies":{"UNKNOWN_ORDER":1},"anomaly_fees":{"UNKNOWN_ORDER":250}}]`,
		},
		{
			// A second transaction is an anomaly, not a second payment.
			name: "duplicate payment", outTradeNo: "A1",
			given: []domain.Event{placed("A1", 100, "2024-03-02 00:00:00"), paid("A1", "4200000001", 100, 100, "2024-03-02 00:10:00"),
				anomaly(domain.DuplicatePayment, "A1", "4200000009", 0, 100, "order already paid by transaction 4200000001", "2024-03-02 00:20:01", &dup)},
			view: `{"mch_id":"1900000109","out_trade_no":"A1","appid":"wxd678efh567hg6787","description":"coffee A1",
				"status":"PAID","total_fee":100,"paid_fee":100,"cash_fee":100,"refunded_fee":0,"transaction_id":"4200000001",
				"paid_at":"2024-03-02T00:10:00+08:00","placed_at":"2024-03-02T00:00:00+08:00",
				"anomalies":[{"code":"DUPLICATE_PAYMENT","transaction_id":"4200000009","refund_id":"","expected_fee":0,
					"notified_fee":100,"detail":"order already paid by transaction 4200000001","detected_at":"2024-03-02T00:20:01+08:00"}],
				"refunds":[],"revision":2,"position":"30/27"}`,
			totals: `[{"day":"2024-03-02","orders_placed":1,"payments":1,"payments_fee":100,"cash_fee":100,"refunds":0,"refunds_fee":0,"net_fee":100,"anomalies":{"DUPLICATE_PAYMENT":1},"anomaly_fees":{"DUPLICATE_PAYMENT":100}}]`,
		},
		{
			name: "partial refund", outTradeNo: "A1",
			given: []domain.Event{placed("A1", 100, "2024-03-02 00:00:00"), paid("A1", "4200000001", 100, 100, "2024-03-02 00:10:00"),
				domain.RefundSucceeded{Refund: refund("A1", "4200000001", "5000001", 30, domain.RefundStatusSuccess, "2024-03-03 09:00:00")}},
			view: `{"mch_id":"1900000109","out_trade_no":"A1","appid":"wxd678efh567hg6787","description":"coffee A1",
				"status":"PARTIALLY_REFUNDED","total_fee":100,"paid_fee":100,"cash_fee":100,"refunded_fee":30,"transaction_id":"4200000001",
				"paid_at":"2024-03-02T00:10:00+08:00","placed_at":"2024-03-02T00:00:00+08:00","anomalies":[],
				"refunds":[{"refund_id":"5000001","out_refund_no":"R-5000001","refund_status":"SUCCESS","refund_fee":30,"succeeded_at":"2024-03-03T09:00:00+08:00"}],
				"revision":2,"position":"30/27"}`,
			totals: `[{"day":"2024-03-02","orders_placed":1,"payments":1,"payments_fee":100,"cash_fee":100,"refunds":0,"refunds_fee":0,"net_fee":100,"anomalies":{}},
				{"day":"2024-03-03","orders_placed":0,"payments":0,"payments_fee":0,"cash_fee":0,"refunds":1,"refunds_fee":30,"net_fee":-30,"anomalies":{}}]`,
		},
		{
			// The second refund fails at the bank first, then succeeds: one refund counted.
			name: "full refund", outTradeNo: "A1",
			given: []domain.Event{placed("A1", 100, "2024-03-02 00:00:00"), paid("A1", "4200000001", 100, 100, "2024-03-02 00:10:00"),
				domain.RefundSucceeded{Refund: refund("A1", "4200000001", "5000001", 30, domain.RefundStatusSuccess, "2024-03-03 09:00:00")},
				domain.RefundAbnormal{Refund: refund("A1", "4200000001", "5000002", 70, domain.RefundStatusAbnormal, "")},
				domain.RefundSucceeded{Refund: refund("A1", "4200000001", "5000002", 70, domain.RefundStatusSuccess, "2024-03-04 09:00:00")}},
			view: `{"mch_id":"1900000109","out_trade_no":"A1","appid":"wxd678efh567hg6787","description":"coffee A1",
				"status":"REFUNDED","total_fee":100,"paid_fee":100,"cash_fee":100,"refunded_fee":100,"transaction_id":"4200000001",
				"paid_at":"2024-03-02T00:10:00+08:00","placed_at":"2024-03-02T00:00:00+08:00","anomalies":[],
				"refunds":[{"refund_id":"5000001","out_refund_no":"R-5000001","refund_status":"SUCCESS","refund_fee":30,"succeeded_at":"2024-03-03T09:00:00+08:00"},
					{"refund_id":"5000002","out_refund_no":"R-5000002","refund_status":"SUCCESS","refund_fee":70,"succeeded_at":"2024-03-04T09:00:00+08:00"}],
				"revision":4,"position":"50/47"}`,
			totals: `[{"day":"2024-03-02","orders_placed":1,"payments":1,"payments_fee":100,"cash_fee":100,"refunds":0,"refunds_fee":0,"net_fee":100,"anomalies":{}},
				{"day":"2024-03-03","orders_placed":0,"payments":0,"payments_fee":0,"cash_fee":0,"refunds":1,"refunds_fee":30,"net_fee":-30,"anomalies":{}},
				{"day":"2024-03-04","orders_placed":0,"payments":0,"payments_fee":0,"cash_fee":0,"refunds":1,"refunds_fee":70,"net_fee":-70,"anomalies":{}}]`,
		},
		{
			// Refunding the duplicate returns the anomaly's money, not the
			// order's (the domain's attribution): the order stays PAID, while
			// the day's refunds count every refund that succeeded.
			name: "refund of a duplicate payment", outTradeNo: "A1",
			given: []domain.Event{placed("A1", 100, "2024-03-02 00:00:00"), paid("A1", "4200000001", 100, 100, "2024-03-02 00:10:00"),
				anomaly(domain.DuplicatePayment, "A1", "4200000009", 0, 100, "order already paid by transaction 4200000001", "2024-03-02 00:20:01", &dup),
				domain.RefundSucceeded{Refund: refund("A1", "4200000009", "5000009", 100, domain.RefundStatusSuccess, "2024-03-02 12:00:00")}},
			view: `{"mch_id":"1900000109","out_trade_no":"A1","appid":"wxd678efh567hg6787","description":"coffee A1",
				"status":"PAID","total_fee":100,"paid_fee":100,"cash_fee":100,"refunded_fee":0,"transaction_id":"4200000001",
				"paid_at":"2024-03-02T00:10:00+08:00","placed_at":"2024-03-02T00:00:00+08:00",
				"anomalies":[{"code":"DUPLICATE_PAYMENT","transaction_id":"4200000009","refund_id":"","expected_fee":0,
					"notified_fee":100,"detail":"order already paid by transaction 4200000001","detected_at":"2024-03-02T00:20:01+08:00"}],
				"refunds":[{"refund_id":"5000009","out_refund_no":"R-5000009","refund_status":"SUCCESS","refund_fee":100,"succeeded_at":"2024-03-02T12:00:00+08:00"}],
				"revision":3,"position":"40/37"}`,
			totals: `[{"day":"2024-03-02","orders_placed":1,"payments":1,"payments_fee":100,"cash_fee":100,"refunds":1,"refunds_fee":100,"net_fee":0,"anomalies":{"DUPLICATE_PAYMENT":1},"anomaly_fees":{"DUPLICATE_PAYMENT":100}}]`,
		},
		{
			// The payment notice came after the refund's. The refund has no
			// succeeded_at: it counts on its event's recorded_at (03-02).
			name: "refund before payment", outTradeNo: "A1",
			given: []domain.Event{placed("A1", 100, "2024-03-01 08:00:00"),
				domain.RefundSucceeded{Refund: refund("A1", "4200000003", "5000003", 100, domain.RefundStatusSuccess, "")},
				paid("A1", "4200000003", 100, 100, "2024-03-01 08:05:00")},
			view: `{"mch_id":"1900000109","out_trade_no":"A1","appid":"wxd678efh567hg6787","description":"coffee A1",
				"status":"REFUNDED","total_fee":100,"paid_fee":100,"cash_fee":100,"refunded_fee":100,"transaction_id":"4200000003",
				"paid_at":"2024-03-01T08:05:00+08:00","placed_at":"2024-03-01T08:00:00+08:00","anomalies":[],
				"refunds":[{"refund_id":"5000003","out_refund_no":"R-5000003","refund_status":"SUCCESS","refund_fee":100,"succeeded_at":null}],
				"revision":2,"position":"30/27"}`,
			totals: `[{"day":"2024-03-01","orders_placed":1,"payments":1,"payments_fee":100,"cash_fee":100,"refunds":0,"refunds_fee":0,"net_fee":100,"anomalies":{}},
				{"day":"2024-03-02","orders_placed":0,"payments":0,"payments_fee":0,"cash_fee":0,"refunds":1,"refunds_fee":100,"net_fee":-100,"anomalies":{}}]`,
		},
		{
			name: "closed", outTradeNo: "A1",
			given: []domain.Event{placed("A1", 100, "2024-03-01 08:00:00"),
				domain.OrderClosed{MchID: testMch, OutTradeNo: "A1", Reason: "timeout", ClosedAt: bj("2024-03-01 10:00:00")}},
			view: `{"mch_id":"1900000109","out_trade_no":"A1","appid":"wxd678efh567hg6787","description":"coffee A1",
				"status":"CLOSED","total_fee":100,"paid_fee":0,"cash_fee":0,"refunded_fee":0,"transaction_id":"",
				"paid_at":null,"placed_at":"2024-03-01T08:00:00+08:00","anomalies":[],"refunds":[],
				"revision":1,"position":"20/17"}`,
			totals: `[{"day":"2024-03-01","orders_placed":1,"payments":0,"payments_fee":0,"cash_fee":0,"refunds":0,"refunds_fee":0,"net_fee":0,"anomalies":{}}]`,
		},
		{
			// Money for a closed order: it stays closed, the money is flagged, not counted as paid.
			name: "paid after close", outTradeNo: "A1",
			given: []domain.Event{placed("A1", 100, "2024-03-01 08:00:00"),
				domain.OrderClosed{MchID: testMch, OutTradeNo: "A1", ClosedAt: bj("2024-03-01 10:00:00")},
				anomaly(domain.PaidAfterClose, "A1", "4200000003", 100, 100, "", "2024-03-02 00:30:01", &late)},
			view: `{"mch_id":"1900000109","out_trade_no":"A1","appid":"wxd678efh567hg6787","description":"coffee A1",
				"status":"CLOSED","total_fee":100,"paid_fee":0,"cash_fee":0,"refunded_fee":0,"transaction_id":"",
				"paid_at":null,"placed_at":"2024-03-01T08:00:00+08:00",
				"anomalies":[{"code":"PAID_AFTER_CLOSE","transaction_id":"4200000003","refund_id":"","expected_fee":100,
					"notified_fee":100,"detail":"","detected_at":"2024-03-02T00:30:01+08:00"}],
				"refunds":[],"revision":2,"position":"30/27"}`,
			totals: `[{"day":"2024-03-01","orders_placed":1,"payments":0,"payments_fee":0,"cash_fee":0,"refunds":0,"refunds_fee":0,"net_fee":0,"anomalies":{}},
				{"day":"2024-03-02","orders_placed":0,"payments":0,"payments_fee":0,"cash_fee":0,"refunds":0,"refunds_fee":0,"net_fee":0,"anomalies":{"PAID_AFTER_CLOSE":1},"anomaly_fees":{"PAID_AFTER_CLOSE":100}}]`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store := newMemStore(func() time.Time { return tableRecordedAt })
			rm, _ := openTestRM(t)
			var last eventstore.Position
			for _, e := range tc.given { // one append each: positions 10, 20, 30...
				last = appendTo(t, store, testMch, tc.outTradeNo, e)
			}
			catchUp(t, store, rm, last)

			v, ok, err := rm.Order(ctx, testMch, tc.outTradeNo)
			if err != nil || !ok {
				t.Fatalf("Order: ok=%v err=%v", ok, err)
			}
			jsonEqual(t, "view", v, tc.view)
			totals, err := rm.DailyTotals(ctx, testMch, bj("2024-01-01 00:00:00"), bj("2024-12-31 00:00:00"))
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, "totals", totals, tc.totals)

			// The same history folded in one go by the domain gives the same view.
			fold := domain.Fold(tc.given)
			jsonEqual(t, "view of domain.Fold", viewOf(testMch, tc.outTradeNo, &fold, v.Revision, v.Position), tc.view)

			// Auditors' columns agree with the view.
			var status, codes string
			var paidFee int64
			if err := rm.db.QueryRow(`SELECT status, paid_fee, anomaly_codes FROM orders WHERE mch_id = ? AND out_trade_no = ?`,
				testMch, tc.outTradeNo).Scan(&status, &paidFee, &codes); err != nil {
				t.Fatal(err)
			}
			viewCodes := make([]string, len(v.Anomalies))
			for i, a := range v.Anomalies {
				viewCodes[i] = a.Code
			}
			wantCodes := strings.Join(viewCodes, ",")
			if status != v.Status || paidFee != v.PaidFee || codes != wantCodes {
				t.Errorf("columns status=%s paid_fee=%d codes=%q, view %s %d %q", status, paidFee, codes, v.Status, v.PaidFee, wantCodes)
			}
		})
	}
}

func TestOrderMissingAndListing(t *testing.T) {
	ctx := context.Background()
	store := newMemStore(func() time.Time { return tableRecordedAt })
	rm, _ := openTestRM(t)
	if _, ok, err := rm.Order(ctx, testMch, "nope"); ok || err != nil {
		t.Fatalf("missing order: ok=%v err=%v", ok, err)
	}
	var last eventstore.Position
	for _, otn := range []string{"C3", "A1", "B2", "D4", "E5"} {
		last = appendTo(t, store, testMch, otn, placed(otn, 100, "2024-03-01 12:00:00"))
	}
	last = appendTo(t, store, "1900000999", "A1", domain.OrderPlaced{MchID: "1900000999", AppID: testAppID,
		OutTradeNo: "A1", TotalFee: 5, FeeType: "CNY", PlacedAt: bj("2024-03-01 12:00:00")})
	catchUp(t, store, rm, last)

	var got []string
	after := ""
	for {
		page, err := rm.Orders(ctx, testMch, 2, after)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, v := range page {
			got = append(got, v.OutTradeNo)
		}
		after = page[len(page)-1].OutTradeNo
	}
	if list, want := strings.Join(got, " "), "A1 B2 C3 D4 E5"; list != want {
		t.Errorf("listing %q, want %q", list, want)
	}
	other, err := rm.Orders(ctx, "1900000999", 0, "")
	if err != nil || len(other) != 1 || other[0].TotalFee != 5 {
		t.Errorf("other merchant: %v %v", other, err)
	}
	none, err := rm.Orders(ctx, "42", 0, "")
	if err != nil || none == nil || len(none) != 0 {
		t.Errorf("unknown merchant: %#v %v", none, err)
	}
	totals, err := rm.DailyTotals(ctx, testMch, bj("2024-03-02 00:00:00"), bj("2024-03-03 00:00:00"))
	if err != nil || totals == nil || len(totals) != 0 {
		t.Errorf("empty range: %#v %v", totals, err)
	}
}

func TestOrderViewJSONRoundTrip(t *testing.T) {
	at := bj("2024-03-01 12:00:00")
	v := OrderView{MchID: testMch, OutTradeNo: "A1", Status: domain.StatusPaid, PaidAt: &at,
		Anomalies: []AnomalyView{}, Refunds: []RefundView{}, Revision: 3,
		Position: eventstore.Position{Commit: 120, Prepare: 117}}
	b, err := v.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back OrderView
	if err := back.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if back.Position != v.Position || back.Revision != 3 || !back.PaidAt.Equal(at) {
		t.Errorf("round trip: %s -> %+v", b, back)
	}
	for s, want := range map[string]eventstore.Position{
		"": {}, "7": {Commit: 7, Prepare: 7}, "120/117": {Commit: 120, Prepare: 117},
	} {
		got, err := eventstore.ParsePosition(s)
		if err != nil || got != want {
			t.Errorf("eventstore.ParsePosition(%q) = %v, %v", s, got, err)
		}
		if s != "" && got.String() != s {
			t.Errorf("String of %q = %q", s, got.String())
		}
	}
	for _, bad := range []string{"x", "1/", "-1", "1/2/3"} {
		if _, err := eventstore.ParsePosition(bad); err == nil {
			t.Errorf("eventstore.ParsePosition(%q) accepted", bad)
		}
	}
}
