package domain_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderledger/orderledger/domain"
)

// decideCase: given a stored history, when a command or notification
// arrives (times deliveries in a row), then these events (or this error)
// are decided, and the order ends in this state.
type decideCase struct {
	name  string
	given []domain.Event
	when  any // domain.OrderPlaced, domain.OrderClosed, domain.Payment or domain.Refund
	times int // deliveries of when; 0 means 1

	then []string // describe() of the decided events, in order
	err  error

	status   string
	paid     int64
	refunded int64
	check    func(t *testing.T, o domain.Order)
}

var (
	placed   = placeCmd()
	fullPaid = []any{placed, pay(tx1, fee)}
)

// with is the steps of base followed by more.
func with(base []any, more ...any) []any { return append(slices.Clip(base), more...) }

func decideCases() []decideCase {
	wrongFee := func(p *domain.OrderPlaced) { p.TotalFee = 990 }
	return []decideCase{
		// Placing orders.
		{
			name: "place new order",
			when: placed,
			then: []string{"OrderPlaced 20261130-a_b fee=1000 CNY"}, status: domain.StatusPending,
			check: func(t *testing.T, o domain.Order) {
				if o.Placed == nil || o.TotalFee() != fee || o.MchID != mch || o.OutTradeNo != otn {
					t.Errorf("placed = %+v", o.Placed)
				}
			},
		},
		{
			name: "place new order without fee_type: CNY",
			when: placeCmd(func(p *domain.OrderPlaced) { p.FeeType = "" }),
			then: []string{"OrderPlaced 20261130-a_b fee=1000 CNY"}, status: domain.StatusPending,
		},
		{
			name:  "place identical again at another time: no events, no error",
			given: hist(placed),
			when:  placeCmd(func(p *domain.OrderPlaced) { p.PlacedAt = t0.Add(time.Hour) }), times: 3,
			status: domain.StatusPending,
		},
		{
			name:   "place identical again with fee_type left empty",
			given:  hist(placed),
			when:   placeCmd(func(p *domain.OrderPlaced) { p.FeeType = "" }),
			status: domain.StatusPending,
		},
		{
			name: "place identical again with the same expiry in another zone",
			given: hist(placeCmd(func(p *domain.OrderPlaced) {
				e := t0.Add(2 * time.Hour)
				p.ExpiresAt = &e
			})),
			when: placeCmd(func(p *domain.OrderPlaced) {
				e := t0.Add(2 * time.Hour).UTC()
				p.ExpiresAt = &e
			}),
			status: domain.StatusPending,
		},
		{
			name: "place identical again after payment", given: hist(fullPaid...),
			when: placed, status: domain.StatusPaid, paid: fee,
		},
		{name: "same out_trade_no, other fee", given: hist(placed), when: placeCmd(wrongFee), err: domain.ErrOrderConflict, status: domain.StatusPending},
		{name: "same out_trade_no, other description", given: hist(placed), when: placeCmd(func(p *domain.OrderPlaced) { p.Description = "x" }), err: domain.ErrOrderConflict, status: domain.StatusPending},
		{name: "same out_trade_no, other appid", given: hist(placed), when: placeCmd(func(p *domain.OrderPlaced) { p.AppID = "wxother" }), err: domain.ErrOrderConflict, status: domain.StatusPending},
		{name: "same out_trade_no, other currency", given: hist(placed), when: placeCmd(func(p *domain.OrderPlaced) { p.FeeType = "USD" }), err: domain.ErrOrderConflict, status: domain.StatusPending},
		{name: "same out_trade_no, other openid", given: hist(placed), when: placeCmd(func(p *domain.OrderPlaced) { p.OpenID = "o2" }), err: domain.ErrOrderConflict, status: domain.StatusPending},
		{name: "same out_trade_no, expiry added", given: hist(placed), when: placeCmd(func(p *domain.OrderPlaced) { e := t0; p.ExpiresAt = &e }), err: domain.ErrOrderConflict, status: domain.StatusPending},
		{name: "same out_trade_no, other fee, after payment", given: hist(fullPaid...), when: placeCmd(wrongFee), err: domain.ErrOrderConflict, status: domain.StatusPaid, paid: fee},
		{name: "invalid: zero fee", when: placeCmd(func(p *domain.OrderPlaced) { p.TotalFee = 0 }), err: domain.ErrInvalid, status: domain.StatusPending},
		{name: "invalid: negative fee", when: placeCmd(func(p *domain.OrderPlaced) { p.TotalFee = -1 }), err: domain.ErrInvalid, status: domain.StatusPending},
		{name: "invalid: no mch_id", when: placeCmd(func(p *domain.OrderPlaced) { p.MchID = "" }), err: domain.ErrInvalid, status: domain.StatusPending},
		{name: "invalid: no appid", when: placeCmd(func(p *domain.OrderPlaced) { p.AppID = "" }), err: domain.ErrInvalid, status: domain.StatusPending},
		{name: "invalid: no out_trade_no", when: placeCmd(func(p *domain.OrderPlaced) { p.OutTradeNo = "" }), err: domain.ErrInvalid, status: domain.StatusPending},
		{name: "invalid beats conflict", given: hist(placed), when: placeCmd(func(p *domain.OrderPlaced) { p.TotalFee = 0 }), err: domain.ErrInvalid, status: domain.StatusPending},

		// Payments.
		{
			name: "payment confirmed", given: hist(placed), when: pay(tx1, fee),
			then: []string{"PaymentConfirmed tx1 fee=1000"}, status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if o.Payment == nil || o.Payment.TransactionID != tx1 || o.CashFee != fee || o.Transactions[tx1] != domain.TypePaymentConfirmed {
					t.Errorf("payment = %+v, transactions %v", o.Payment, o.Transactions)
				}
			},
		},
		{
			name: "payment notified 15 times (WeChat's retries): one PaymentConfirmed", given: hist(placed),
			when: pay(tx1, fee), times: 15,
			then: []string{"PaymentConfirmed tx1 fee=1000"}, status: domain.StatusPaid, paid: fee,
		},
		{
			name: "same transaction again 15 times: no events", given: hist(fullPaid...),
			when: pay(tx1, fee), times: 15, status: domain.StatusPaid, paid: fee,
		},
		{
			name: "same transaction again over v3 with other evidence: no events", given: hist(fullPaid...),
			when: pay(tx1, fee, func(p *domain.Payment) {
				p.Evidence = domain.Evidence{Channel: "wechatpay-v3-notify", Body: "{}", Headers: map[string]string{"Wechatpay-Nonce": "n"}, ReceivedAt: now}
			}),
			status: domain.StatusPaid, paid: fee,
		},
		{
			name: "coupon: cash_fee below total_fee still pays total_fee", given: hist(placed),
			when: pay(tx1, fee, func(p *domain.Payment) { p.CashFee, p.CouponFee = 800, 200 }),
			then: []string{"PaymentConfirmed tx1 fee=1000"}, status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if o.CashFee != 800 {
					t.Errorf("cash_fee = %d, want 800", o.CashFee)
				}
			},
		},
		{
			name: "payment without fee_type is CNY", given: hist(placed),
			when: pay(tx1, fee, func(p *domain.Payment) { p.FeeType = "" }),
			then: []string{"PaymentConfirmed tx1 fee=1000"}, status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if o.Payment.FeeType != "CNY" {
					t.Errorf("fee_type = %q", o.Payment.FeeType)
				}
			},
		},
		{
			name: "result_code FAIL: PaymentFailed, nothing paid", given: hist(placed),
			when: payFail(tx1, "NOTENOUGH"),
			then: []string{"PaymentFailed tx1 NOTENOUGH"}, status: domain.StatusPending,
			check: func(t *testing.T, o domain.Order) {
				if o.Failures != 1 || o.Payment != nil || len(o.Transactions) != 0 {
					t.Errorf("failures=%d payment=%v transactions=%v", o.Failures, o.Payment, o.Transactions)
				}
			},
		},
		{
			name: "FAIL repeated: no events", given: hist(placed, payFail(tx1, "NOTENOUGH")),
			when: payFail(tx1, "NOTENOUGH"), times: 5, status: domain.StatusPending,
		},
		{
			name: "FAIL without transaction id, another error code", given: hist(placed, payFail("", "NOTENOUGH")),
			when: payFail("", "SYSTEMERROR"), times: 2,
			then: []string{"PaymentFailed  SYSTEMERROR"}, status: domain.StatusPending,
			check: func(t *testing.T, o domain.Order) {
				if o.Failures != 2 {
					t.Errorf("failures = %d", o.Failures)
				}
			},
		},
		{
			name: "success after FAIL still pays", given: hist(placed, payFail(tx1, "NOTENOUGH")),
			when: pay(tx1, fee), then: []string{"PaymentConfirmed tx1 fee=1000"}, status: domain.StatusPaid, paid: fee,
		},
		{name: "FAIL after paid: nothing", given: hist(fullPaid...), when: payFail(tx2, "NOTENOUGH"), status: domain.StatusPaid, paid: fee},
		{name: "FAIL of the paying transaction after paid: nothing", given: hist(fullPaid...), when: payFail(tx1, "SYSTEMERROR"), status: domain.StatusPaid, paid: fee},
		{name: "FAIL after close: nothing", given: hist(placed, closeCmd()), when: payFail(tx1, "NOTENOUGH"), status: domain.StatusClosed},
		{
			name: "FAIL for an unknown order: recorded", when: payFail(tx1, "NOTENOUGH"),
			then: []string{"PaymentFailed tx1 NOTENOUGH"}, status: domain.StatusPending,
		},
		{
			name: "AMOUNT_MISMATCH: not paid, flagged", given: hist(placed), when: pay(tx1, 1),
			then:   []string{"AnomalyDetected AMOUNT_MISMATCH tx=tx1 expected=1000 notified=1 +payment"},
			status: domain.StatusAmountMismatch,
			check: func(t *testing.T, o domain.Order) {
				if o.Payment != nil || o.Transactions[tx1] != domain.AmountMismatch {
					t.Errorf("payment=%v transactions=%v", o.Payment, o.Transactions)
				}
			},
		},
		{
			name: "AMOUNT_MISMATCH: another currency", given: hist(placed),
			when:   pay(tx1, fee, func(p *domain.Payment) { p.FeeType = "USD" }),
			then:   []string{"AnomalyDetected AMOUNT_MISMATCH tx=tx1 expected=1000 notified=1000 +payment"},
			status: domain.StatusAmountMismatch,
			check: func(t *testing.T, o domain.Order) {
				if d := o.Anomalies[0].Detail; !strings.Contains(d, "USD") || !strings.Contains(d, "CNY") {
					t.Errorf("detail = %q", d)
				}
			},
		},
		{
			name: "AMOUNT_MISMATCH repeated: no events", given: hist(placed, pay(tx1, 1)),
			when: pay(tx1, 1), times: 15, status: domain.StatusAmountMismatch,
		},
		{
			name: "correct payment after AMOUNT_MISMATCH pays", given: hist(placed, pay(tx1, 1)),
			when: pay(tx2, fee), then: []string{"PaymentConfirmed tx2 fee=1000"}, status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if anomalyCodes(o) != domain.AmountMismatch {
					t.Errorf("anomalies = %s", anomalyCodes(o))
				}
			},
		},
		{
			name: "UNKNOWN_ORDER: money booked and flagged", when: pay(tx1, 1200),
			then: []string{
				"PaymentConfirmed tx1 fee=1200",
				"AnomalyDetected UNKNOWN_ORDER tx=tx1 notified=1200 +payment",
			},
			status: domain.StatusPaid, paid: 1200,
			check: func(t *testing.T, o domain.Order) {
				if o.Placed != nil || o.TotalFee() != 1200 || o.MchID != mch || o.OutTradeNo != otn {
					t.Errorf("order = %s", o.String())
				}
			},
		},
		{
			name: "UNKNOWN_ORDER repeated 15 times: no events", given: hist(pay(tx1, 1200)),
			when: pay(tx1, 1200), times: 15, status: domain.StatusPaid, paid: 1200,
		},
		{
			name: "DUPLICATE_PAYMENT: second transaction on a paid order", given: hist(fullPaid...),
			when:   pay(tx2, fee),
			then:   []string{"AnomalyDetected DUPLICATE_PAYMENT tx=tx2 notified=1000 +payment"},
			status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if o.Payment.TransactionID != tx1 || o.Transactions[tx2] != domain.DuplicatePayment {
					t.Errorf("payment %s, transactions %v", o.Payment.TransactionID, o.Transactions)
				}
				if !strings.Contains(o.Anomalies[0].Detail, tx1) {
					t.Errorf("detail = %q", o.Anomalies[0].Detail)
				}
			},
		},
		{
			name: "DUPLICATE_PAYMENT repeated 15 times: no events", given: hist(with(fullPaid, pay(tx2, fee))...),
			when: pay(tx2, fee), times: 15, status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if o.Payment.TransactionID != tx1 || anomalyCodes(o) != domain.DuplicatePayment {
					t.Errorf("order = %s", o.String())
				}
			},
		},
		{
			name: "DUPLICATE_PAYMENT on an unknown order", given: hist(pay(tx1, 1200)),
			when:   pay(tx2, 1200),
			then:   []string{"AnomalyDetected DUPLICATE_PAYMENT tx=tx2 notified=1200 +payment"},
			status: domain.StatusPaid, paid: 1200,
		},
		{
			name: "APPID_MISMATCH: not paid, flagged", given: hist(placed),
			when:   pay(tx1, fee, func(p *domain.Payment) { p.AppID = "wxother" }),
			then:   []string{"AnomalyDetected APPID_MISMATCH tx=tx1 expected=1000 notified=1000 appid=wxother!=wx2421b1c4370ec43b +payment"},
			status: domain.StatusPending,
		},
		{
			name:  "APPID_MISMATCH repeated: no events",
			given: hist(placed, pay(tx1, fee, func(p *domain.Payment) { p.AppID = "wxother" })),
			when:  pay(tx1, fee, func(p *domain.Payment) { p.AppID = "wxother" }), times: 3,
			status: domain.StatusPending,
		},
		{
			name: "payment after close: PAID_AFTER_CLOSE, stays CLOSED", given: hist(placed, closeCmd()),
			when:   pay(tx1, fee),
			then:   []string{"AnomalyDetected PAID_AFTER_CLOSE tx=tx1 expected=1000 notified=1000 +payment"},
			status: domain.StatusClosed,
			check: func(t *testing.T, o domain.Order) {
				if o.Transactions[tx1] != domain.PaidAfterClose {
					t.Errorf("transactions %v", o.Transactions)
				}
			},
		},
		{
			name: "payment after close repeated: no events", given: hist(placed, closeCmd(), pay(tx1, fee)),
			when: pay(tx1, fee), times: 15, status: domain.StatusClosed,
		},
		{
			name:  "late payment copy after full refund: no events, stays REFUNDED",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, fee))...),
			when:  pay(tx1, fee), times: 15,
			status: domain.StatusRefunded, paid: fee, refunded: fee,
		},
		{
			name:   "another transaction after full refund: DUPLICATE_PAYMENT, stays REFUNDED",
			given:  hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, fee))...),
			when:   pay(tx2, fee),
			then:   []string{"AnomalyDetected DUPLICATE_PAYMENT tx=tx2 notified=1000 +payment"},
			status: domain.StatusRefunded, paid: fee, refunded: fee,
		},

		// Refunds.
		{
			name: "partial refund", given: hist(fullPaid...), when: refund("r1", domain.RefundStatusSuccess, 300),
			then:   []string{"RefundSucceeded r1 fee=300"},
			status: domain.StatusPartiallyRefunded, paid: fee, refunded: 300,
			check: func(t *testing.T, o domain.Order) {
				r := o.Refunds["r1"]
				if r == nil || r.Status != domain.RefundStatusSuccess || r.RefundFee != 300 || r.OutRefundNo != "R-r1" || r.TransactionID != tx1 || !slices.Equal(o.RefundOrder, []string{"r1"}) {
					t.Errorf("refund = %+v, order %v", r, o.RefundOrder)
				}
			},
		},
		{
			name:  "second refund completes: REFUNDED",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, 300))...),
			when:  refund("r2", domain.RefundStatusSuccess, 700),
			then:  []string{"RefundSucceeded r2 fee=700"}, status: domain.StatusRefunded, paid: fee, refunded: fee,
			check: func(t *testing.T, o domain.Order) {
				if !slices.Equal(o.RefundOrder, []string{"r1", "r2"}) {
					t.Errorf("refund order %v", o.RefundOrder)
				}
			},
		},
		{
			name:  "third partial refund",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, 300), refund("r2", domain.RefundStatusSuccess, 200))...),
			when:  refund("r3", domain.RefundStatusSuccess, 100),
			then:  []string{"RefundSucceeded r3 fee=100"}, status: domain.StatusPartiallyRefunded, paid: fee, refunded: 600,
		},
		{
			name:  "refund repeated: no events",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, 300))...),
			when:  refund("r1", domain.RefundStatusSuccess, 300), times: 5,
			status: domain.StatusPartiallyRefunded, paid: fee, refunded: 300,
		},
		{
			name: "refund ABNORMAL: recorded, nothing refunded", given: hist(fullPaid...),
			when: refund("r1", domain.RefundStatusAbnormal, 300),
			then: []string{"RefundAbnormal r1"}, status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if r := o.Refunds["r1"]; r == nil || r.Status != domain.RefundStatusAbnormal || r.RefundFee != 0 {
					t.Errorf("refund = %+v", r)
				}
			},
		},
		{
			name:  "refund ABNORMAL repeated: no events",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusAbnormal, 300))...),
			when:  refund("r1", domain.RefundStatusAbnormal, 300), times: 3, status: domain.StatusPaid, paid: fee,
		},
		{
			name:  "refund SUCCESS after ABNORMAL: both recorded",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusAbnormal, 300))...),
			when:  refund("r1", domain.RefundStatusSuccess, 300),
			then:  []string{"RefundSucceeded r1 fee=300"}, status: domain.StatusPartiallyRefunded, paid: fee, refunded: 300,
			check: func(t *testing.T, o domain.Order) {
				if o.Events != 4 || !slices.Equal(o.RefundOrder, []string{"r1"}) {
					t.Errorf("events=%d refunds %v", o.Events, o.RefundOrder)
				}
			},
		},
		{
			name:  "refund CLOSED after ABNORMAL: nothing refunded",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusAbnormal, 300))...),
			when:  refund("r1", domain.RefundStatusClosed, 300),
			then:  []string{"RefundClosed r1"}, status: domain.StatusPaid, paid: fee,
		},
		{
			name:  "late ABNORMAL after SUCCESS: nothing",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, 300))...),
			when:  refund("r1", domain.RefundStatusAbnormal, 300), times: 3,
			status: domain.StatusPartiallyRefunded, paid: fee, refunded: 300,
		},
		{
			name:   "late CLOSED after SUCCESS: nothing",
			given:  hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, 300))...),
			when:   refund("r1", domain.RefundStatusClosed, 300),
			status: domain.StatusPartiallyRefunded, paid: fee, refunded: 300,
		},
		{
			name:  "late ABNORMAL after CLOSED: nothing",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusClosed, 300))...),
			when:  refund("r1", domain.RefundStatusAbnormal, 300), status: domain.StatusPaid, paid: fee,
		},
		{
			name: "refund with an unrecognised status is ABNORMAL", given: hist(fullPaid...),
			when: refund("r1", "PROCESSING", 300), then: []string{"RefundAbnormal r1"}, status: domain.StatusPaid, paid: fee,
		},
		{
			name: "refund with an empty status is ABNORMAL", given: hist(fullPaid...),
			when: refund("r1", "", 300), then: []string{"RefundAbnormal r1"}, status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if r := o.Refunds["r1"]; r == nil || r.Status != domain.RefundStatusAbnormal {
					t.Errorf("refund = %+v", r)
				}
			},
		},
		{
			// Not validated here (app.RecordRefund refuses it): an id-less
			// refund is recorded as the refund "", and the next id-less
			// refund is taken for the same one.
			name:   "refunds with an empty refund_id: one refund \"\"",
			given:  hist(with(fullPaid, refund("", domain.RefundStatusSuccess, 300))...),
			when:   refund("", domain.RefundStatusSuccess, 200),
			status: domain.StatusPartiallyRefunded, paid: fee, refunded: 300,
			check: func(t *testing.T, o domain.Order) {
				if r := o.Refunds[""]; r == nil || r.RefundFee != 300 || len(o.RefundOrder) != 1 {
					t.Errorf("refund = %+v, order %q", r, o.RefundOrder)
				}
			},
		},
		{
			name:  "refunds exceeding paid: REFUND_EXCEEDS_PAID",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, 600))...),
			when:  refund("r2", domain.RefundStatusSuccess, 600),
			then: []string{
				"RefundSucceeded r2 fee=600",
				"AnomalyDetected REFUND_EXCEEDS_PAID refund=r2 expected=1000 notified=1200",
			},
			status: domain.StatusRefunded, paid: fee, refunded: 1200,
		},
		{
			name: "one refund over paid: REFUND_EXCEEDS_PAID", given: hist(fullPaid...),
			when: refund("r1", domain.RefundStatusSuccess, 1500),
			then: []string{
				"RefundSucceeded r1 fee=1500",
				"AnomalyDetected REFUND_EXCEEDS_PAID refund=r1 expected=1000 notified=1500",
			},
			status: domain.StatusRefunded, paid: fee, refunded: 1500,
		},
		{
			name: "refund before payment: recorded, PENDING with refunded_fee", given: hist(placed),
			when: refund("r1", domain.RefundStatusSuccess, 300),
			then: []string{"RefundSucceeded r1 fee=300"}, status: domain.StatusPending, refunded: 300,
		},
		{
			name: "payment after a partial refund: PARTIALLY_REFUNDED", given: hist(placed, refund("r1", domain.RefundStatusSuccess, 300)),
			when: pay(tx1, fee), then: []string{"PaymentConfirmed tx1 fee=1000"},
			status: domain.StatusPartiallyRefunded, paid: fee, refunded: 300,
		},
		{
			name: "payment after a full refund: REFUNDED", given: hist(placed, refund("r1", domain.RefundStatusSuccess, fee)),
			when: pay(tx1, fee), then: []string{"PaymentConfirmed tx1 fee=1000"},
			status: domain.StatusRefunded, paid: fee, refunded: fee,
		},
		{
			name:  "payment after refunds exceeding it: REFUND_EXCEEDS_PAID",
			given: hist(placed, refund("r1", domain.RefundStatusSuccess, 600), refund("r2", domain.RefundStatusSuccess, 600)),
			when:  pay(tx1, fee),
			then: []string{
				"PaymentConfirmed tx1 fee=1000",
				"AnomalyDetected REFUND_EXCEEDS_PAID tx=tx1 expected=1000 notified=1200",
			},
			status: domain.StatusRefunded, paid: fee, refunded: 1200,
		},
		{
			name: "refund for an unknown order: refund + UNKNOWN_ORDER",
			when: refund("r1", domain.RefundStatusSuccess, 300),
			then: []string{
				"RefundSucceeded r1 fee=300",
				"AnomalyDetected UNKNOWN_ORDER tx=tx1 refund=r1 notified=300",
			},
			status: domain.StatusPending, refunded: 300,
		},
		{
			name:  "second refund for an unknown order: no second UNKNOWN_ORDER for the transaction",
			given: hist(refund("r1", domain.RefundStatusSuccess, 300)),
			when:  refund("r2", domain.RefundStatusSuccess, 200),
			then:  []string{"RefundSucceeded r2 fee=200"}, status: domain.StatusPending, refunded: 500,
		},
		{
			name: "ABNORMAL refund for an unknown order: no anomaly yet",
			when: refund("r1", domain.RefundStatusAbnormal, 300),
			then: []string{"RefundAbnormal r1"}, status: domain.StatusPending,
		},
		{
			name:  "payment for an unknown order after its refund: no second UNKNOWN_ORDER",
			given: hist(refund("r1", domain.RefundStatusSuccess, 300)),
			when:  pay(tx1, fee), times: 3,
			then: []string{"PaymentConfirmed tx1 fee=1000"}, status: domain.StatusPartiallyRefunded, paid: fee, refunded: 300,
			check: func(t *testing.T, o domain.Order) {
				if anomalyCodes(o) != domain.UnknownOrder {
					t.Errorf("anomalies = %s", anomalyCodes(o))
				}
			},
		},
		{
			name:  "payment for an unknown order after refunds exceeding it",
			given: hist(refund("r1", domain.RefundStatusSuccess, 600), refund("r2", domain.RefundStatusSuccess, 600)),
			when:  pay(tx1, fee),
			then: []string{
				"PaymentConfirmed tx1 fee=1000",
				"AnomalyDetected REFUND_EXCEEDS_PAID tx=tx1 expected=1000 notified=1200",
			},
			status: domain.StatusRefunded, paid: fee, refunded: 1200,
			check: func(t *testing.T, o domain.Order) {
				if got := anomalyCodes(o); got != "UNKNOWN_ORDER,REFUND_EXCEEDS_PAID" {
					t.Errorf("anomalies = %s", got)
				}
			},
		},
		// Refunds of money that is not the order's payment (fixed: these
		// used to count against the order and made a paid order REFUNDED).
		{
			name:  "refund of the DUPLICATE_PAYMENT: recorded, order stays PAID",
			given: hist(with(fullPaid, pay(tx2, fee))...),
			when:  refund("r1", domain.RefundStatusSuccess, fee, ofTx(tx2)),
			then:  []string{"RefundSucceeded r1 fee=1000"}, status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if r := o.Refunds["r1"]; r == nil || r.RefundFee != fee || r.TransactionID != tx2 {
					t.Errorf("refund = %+v", r)
				}
			},
		},
		{
			name:  "refund of the DUPLICATE_PAYMENT, then of the payment: REFUNDED once",
			given: hist(with(fullPaid, pay(tx2, fee), refund("r1", domain.RefundStatusSuccess, fee, ofTx(tx2)))...),
			when:  refund("r2", domain.RefundStatusSuccess, fee),
			then:  []string{"RefundSucceeded r2 fee=1000"}, status: domain.StatusRefunded, paid: fee, refunded: fee,
		},
		{
			name:  "refund of an AMOUNT_MISMATCH payment: not the order's refund",
			given: hist(placed, pay(tx1, 1)),
			when:  refund("r1", domain.RefundStatusSuccess, 1),
			then:  []string{"RefundSucceeded r1 fee=1"}, status: domain.StatusAmountMismatch,
		},
		{
			name:  "correct payment after the mismatched one was refunded: PAID",
			given: hist(placed, pay(tx1, 1), refund("r1", domain.RefundStatusSuccess, 1)),
			when:  pay(tx2, fee),
			then:  []string{"PaymentConfirmed tx2 fee=1000"}, status: domain.StatusPaid, paid: fee,
		},
		{
			name:   "mismatched payment arriving after its refund: the refund stops counting",
			given:  hist(placed, refund("r1", domain.RefundStatusSuccess, 1)),
			when:   pay(tx1, 1),
			then:   []string{"AnomalyDetected AMOUNT_MISMATCH tx=tx1 expected=1000 notified=1 +payment"},
			status: domain.StatusAmountMismatch,
		},
		{
			name:  "refund of a payment after close: stays CLOSED",
			given: hist(placed, closeCmd(), pay(tx1, fee)),
			when:  refund("r1", domain.RefundStatusSuccess, fee),
			then:  []string{"RefundSucceeded r1 fee=1000"}, status: domain.StatusClosed,
		},

		// Refunds of a transaction the order has never seen: once the order
		// is paid, a payment notice is missing (e.g. a lost second payment).
		{
			name:  "REFUND_OF_UNKNOWN_TRANSACTION: paid order, refund of an unseen transaction",
			given: hist(fullPaid...),
			when:  refund("r1", domain.RefundStatusSuccess, 300, ofTx(tx2)), times: 5,
			then: []string{
				"RefundSucceeded r1 fee=300",
				"AnomalyDetected REFUND_OF_UNKNOWN_TRANSACTION tx=tx2 refund=r1 notified=300",
			},
			status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if r := o.Refunds["r1"]; r == nil || r.Status != domain.RefundStatusSuccess || r.TransactionID != tx2 {
					t.Errorf("refund = %+v", r)
				}
				if _, seen := o.Transactions[tx2]; seen {
					t.Errorf("the refund's transaction became seen: %v", o.Transactions)
				}
				if a := o.Anomalies[0]; !strings.Contains(a.Detail, tx1) || !strings.Contains(a.Detail, tx2) {
					t.Errorf("detail = %q", a.Detail)
				}
			},
		},
		{
			name:  "REFUND_OF_UNKNOWN_TRANSACTION: one per refund of the unseen transaction",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, 300, ofTx(tx2)))...),
			when:  refund("r2", domain.RefundStatusSuccess, 200, ofTx(tx2)),
			then: []string{
				"RefundSucceeded r2 fee=200",
				"AnomalyDetected REFUND_OF_UNKNOWN_TRANSACTION tx=tx2 refund=r2 notified=200",
			},
			status: domain.StatusPaid, paid: fee,
		},
		{
			name:  "REFUND_OF_UNKNOWN_TRANSACTION: not counted, so no REFUND_EXCEEDS_PAID",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, 800))...),
			when:  refund("r2", domain.RefundStatusSuccess, 800, ofTx(tx2)),
			then: []string{
				"RefundSucceeded r2 fee=800",
				"AnomalyDetected REFUND_OF_UNKNOWN_TRANSACTION tx=tx2 refund=r2 notified=800",
			},
			status: domain.StatusPartiallyRefunded, paid: fee, refunded: 800,
		},
		{
			name:  "REFUND_OF_UNKNOWN_TRANSACTION on an unknown order that got paid",
			given: hist(pay(tx1, 1200)),
			when:  refund("r1", domain.RefundStatusSuccess, 300, ofTx(tx2)),
			then: []string{
				"RefundSucceeded r1 fee=300",
				"AnomalyDetected REFUND_OF_UNKNOWN_TRANSACTION tx=tx2 refund=r1 notified=300",
			},
			status: domain.StatusPaid, paid: 1200,
		},
		{
			name:  "refund ABNORMAL of an unseen transaction: no anomaly yet",
			given: hist(fullPaid...),
			when:  refund("r1", domain.RefundStatusAbnormal, 300, ofTx(tx2)),
			then:  []string{"RefundAbnormal r1"}, status: domain.StatusPaid, paid: fee,
		},
		{
			name:  "refund CLOSED of an unseen transaction: no money moved, no anomaly",
			given: hist(fullPaid...),
			when:  refund("r1", domain.RefundStatusClosed, 300, ofTx(tx2)),
			then:  []string{"RefundClosed r1"}, status: domain.StatusPaid, paid: fee,
		},
		{
			name:  "refund of an unseen transaction succeeds after ABNORMAL: flagged then",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusAbnormal, 300, ofTx(tx2)))...),
			when:  refund("r1", domain.RefundStatusSuccess, 300, ofTx(tx2)), times: 3,
			then: []string{
				"RefundSucceeded r1 fee=300",
				"AnomalyDetected REFUND_OF_UNKNOWN_TRANSACTION tx=tx2 refund=r1 notified=300",
			},
			status: domain.StatusPaid, paid: fee,
		},
		{
			name:  "refund ABNORMAL of an unseen transaction before payment, SUCCESS after: flagged",
			given: hist(placed, refund("r1", domain.RefundStatusAbnormal, 300, ofTx(tx2)), pay(tx1, fee)),
			when:  refund("r1", domain.RefundStatusSuccess, 300, ofTx(tx2)),
			then: []string{
				"RefundSucceeded r1 fee=300",
				"AnomalyDetected REFUND_OF_UNKNOWN_TRANSACTION tx=tx2 refund=r1 notified=300",
			},
			status: domain.StatusPaid, paid: fee,
		},
		{
			name:  "SUCCESS naming the payment for a refund recorded against an unseen transaction: flagged, not counted",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusAbnormal, 300, ofTx(tx2)))...),
			when:  refund("r1", domain.RefundStatusSuccess, 300),
			then: []string{
				"RefundSucceeded r1 fee=300",
				"AnomalyDetected REFUND_OF_UNKNOWN_TRANSACTION tx=tx2 refund=r1 notified=300",
			},
			status: domain.StatusPaid, paid: fee,
		},
		{
			name:  "refund without a transaction id on a paid order: the order's, not flagged",
			given: hist(fullPaid...),
			when:  refund("r1", domain.RefundStatusSuccess, 300, ofTx("")),
			then:  []string{"RefundSucceeded r1 fee=300"}, status: domain.StatusPartiallyRefunded, paid: fee, refunded: 300,
		},
		{
			name:  "refund of an AMOUNT_MISMATCH transaction on a paid order: seen, not flagged",
			given: hist(placed, pay(tx3, 1), pay(tx1, fee)),
			when:  refund("r1", domain.RefundStatusSuccess, 1, ofTx(tx3)),
			then:  []string{"RefundSucceeded r1 fee=1"}, status: domain.StatusPaid, paid: fee,
		},
		{
			name:  "refund of an unseen transaction before any payment: not flagged, counts",
			given: hist(placed),
			when:  refund("r1", domain.RefundStatusSuccess, 300, ofTx(tx2)),
			then:  []string{"RefundSucceeded r1 fee=300"}, status: domain.StatusPending, refunded: 300,
		},
		{
			name:  "its payment arrives: counted, not flagged",
			given: hist(placed, refund("r1", domain.RefundStatusSuccess, 300, ofTx(tx2))),
			when:  pay(tx2, fee),
			then:  []string{"PaymentConfirmed tx2 fee=1000"}, status: domain.StatusPartiallyRefunded, paid: fee, refunded: 300,
			check: func(t *testing.T, o domain.Order) {
				if len(o.Anomalies) != 0 {
					t.Errorf("anomalies = %s", anomalyCodes(o))
				}
			},
		},
		{
			// Today's behaviour, kept: the refund came before any payment,
			// so it was not flagged, and a later payment of another
			// transaction does not flag it either; it stops counting.
			name:  "refund of tx2 before any payment, then tx1 pays: not flagged, not counted",
			given: hist(placed, refund("r1", domain.RefundStatusSuccess, 300, ofTx(tx2))),
			when:  pay(tx1, fee),
			then:  []string{"PaymentConfirmed tx1 fee=1000"}, status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if len(o.Anomalies) != 0 {
					t.Errorf("anomalies = %s", anomalyCodes(o))
				}
			},
		},
		{
			name:  "the unseen transaction arrives later: DUPLICATE_PAYMENT, the refund returns it",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, 300, ofTx(tx2)))...),
			when:  pay(tx2, fee), times: 5,
			then:   []string{"AnomalyDetected DUPLICATE_PAYMENT tx=tx2 notified=1000 +payment"},
			status: domain.StatusPaid, paid: fee,
			check: func(t *testing.T, o domain.Order) {
				if got := anomalyCodes(o); got != "REFUND_OF_UNKNOWN_TRANSACTION,DUPLICATE_PAYMENT" {
					t.Errorf("anomalies = %s", got)
				}
				if o.Payment.TransactionID != tx1 || o.Transactions[tx2] != domain.DuplicatePayment {
					t.Errorf("payment %s, transactions %v", o.Payment.TransactionID, o.Transactions)
				}
				if r := o.Refunds["r1"]; r == nil || r.TransactionID != tx2 || r.Status != domain.RefundStatusSuccess {
					t.Errorf("refund = %+v", r)
				}
			},
		},
		{
			name:  "after the unseen transaction arrived, its next refund is not flagged",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, 300, ofTx(tx2)), pay(tx2, fee))...),
			when:  refund("r2", domain.RefundStatusSuccess, 700, ofTx(tx2)),
			then:  []string{"RefundSucceeded r2 fee=700"}, status: domain.StatusPaid, paid: fee,
		},
		{
			name:  "after the unseen transaction arrived, the order's own refund still counts",
			given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, 300, ofTx(tx2)), pay(tx2, fee))...),
			when:  refund("r2", domain.RefundStatusSuccess, fee),
			then:  []string{"RefundSucceeded r2 fee=1000"}, status: domain.StatusRefunded, paid: fee, refunded: fee,
		},

		// Closing.
		{name: "close unpaid", given: hist(placed), when: closeCmd(), then: []string{"OrderClosed 20261130-a_b"}, status: domain.StatusClosed},
		{name: "close twice: no events", given: hist(placed, closeCmd()), when: closeCmd(), times: 3, status: domain.StatusClosed},
		{name: "close paid: ErrNotClosable", given: hist(fullPaid...), when: closeCmd(), err: domain.ErrNotClosable, status: domain.StatusPaid, paid: fee},
		{
			name: "close refunded: ErrNotClosable", given: hist(with(fullPaid, refund("r1", domain.RefundStatusSuccess, fee))...),
			when: closeCmd(), err: domain.ErrNotClosable, status: domain.StatusRefunded, paid: fee, refunded: fee,
		},
		{name: "close never placed: ErrUnknownOrder", when: closeCmd(), err: domain.ErrUnknownOrder, status: domain.StatusPending},
		{name: "close unknown but paid: ErrUnknownOrder", given: hist(pay(tx1, fee)), when: closeCmd(), err: domain.ErrUnknownOrder, status: domain.StatusPaid, paid: fee},
		{
			name: "close after AMOUNT_MISMATCH: closed, anomaly kept", given: hist(placed, pay(tx1, 1)),
			when: closeCmd(), then: []string{"OrderClosed 20261130-a_b"}, status: domain.StatusClosed,
		},
	}
}

// stored passes events through the codec, as a store would.
func stored(t *testing.T, events []domain.Event) []domain.Event {
	t.Helper()
	out := make([]domain.Event, len(events))
	for i, e := range events {
		typ, data, err := domain.Marshal(e)
		mustNoErr(t, err)
		out[i], err = domain.Unmarshal(typ, data)
		mustNoErr(t, err)
		if domain.ID(out[i]) != domain.ID(e) {
			t.Fatalf("%s: ID changed through the codec", typ)
		}
	}
	return out
}

func TestDecide(t *testing.T) {
	for _, tc := range decideCases() {
		t.Run(tc.name, func(t *testing.T) {
			o := domain.Fold(stored(t, tc.given))
			if o.Events != len(tc.given) {
				t.Fatalf("given: folded %d events, want %d", o.Events, len(tc.given))
			}
			times := max(tc.times, 1)
			var got []domain.Event
			for i := range times {
				var events []domain.Event
				var err error
				o, events, err = apply(o, tc.when)
				if tc.err != nil {
					if !errors.Is(err, tc.err) {
						t.Fatalf("delivery %d: err = %v, want %v", i+1, err, tc.err)
					}
				} else if err != nil {
					t.Fatalf("delivery %d: %v", i+1, err)
				}
				if err != nil && len(events) != 0 {
					t.Fatalf("delivery %d: events with an error: %v", i+1, describeAll(events))
				}
				if i > 0 && len(events) != 0 {
					t.Errorf("delivery %d (a repeat) decided %v", i+1, describeAll(events))
				}
				got = append(got, events...)
			}
			if want := tc.then; !slices.Equal(describeAll(got), want) {
				t.Errorf("then\n got %q\nwant %q", describeAll(got), want)
			}

			// Every new event is new to the stream, and the stream now has it.
			givenIDs := map[[16]byte]bool{}
			for _, id := range eventIDs(tc.given) {
				givenIDs[id] = true
			}
			for _, e := range got {
				id := domain.ID(e)
				if givenIDs[id] {
					t.Errorf("%s repeats an ID already in the stream", describe(e))
				}
				givenIDs[id] = true
				if !o.Has(id) {
					t.Errorf("%s: Has(ID) = false after Evolve", describe(e))
				}
				if a, ok := e.(domain.AnomalyDetected); ok && !a.DetectedAt.Equal(now) {
					t.Errorf("%s detected at %v, want the decision's clock", a.Code, a.DetectedAt)
				}
			}

			if got := o.Status(); got != tc.status {
				t.Errorf("status = %s, want %s (%s)", got, tc.status, o.String())
			}
			if o.PaidFee != tc.paid || o.RefundedFee != tc.refunded {
				t.Errorf("paid=%d refunded=%d, want paid=%d refunded=%d", o.PaidFee, o.RefundedFee, tc.paid, tc.refunded)
			}
			if tc.check != nil {
				tc.check(t, o)
			}

			// The state folded from the whole stream is the state evolved
			// step by step.
			all := append(slices.Clip(tc.given), got...)
			f := domain.Fold(stored(t, all))
			if f.Status() != o.Status() || f.PaidFee != o.PaidFee || f.RefundedFee != o.RefundedFee || f.Events != o.Events {
				t.Errorf("fold %s != evolved %s", f.String(), o.String())
			}
		})
	}
}

// TestConcurrentCopiesSameIDs: copies of one notification decided at the
// same time from the same state (WeChat sends copies from several servers
// within seconds) decide the same events with the same IDs, whatever the
// clock says, so the store's expected revision or ID check keeps one. The
// shared state is read concurrently: deciding must not write to it (run
// with -race).
func TestConcurrentCopiesSameIDs(t *testing.T) {
	for _, tc := range decideCases() {
		if tc.err != nil || len(tc.then) == 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			o := domain.Fold(stored(t, tc.given))
			const copies = 8
			results := make([][]domain.Event, copies)
			var wg sync.WaitGroup
			for i := range copies {
				wg.Go(func() {
					events, err := decideAt(o, tc.when, now.Add(time.Duration(i)*time.Second))
					if err != nil {
						t.Error(err)
					}
					results[i] = events
				})
			}
			wg.Wait()
			want := eventIDs(results[0])
			if len(want) == 0 {
				t.Fatal("no events decided")
			}
			for i, events := range results[1:] {
				if got := eventIDs(events); !slices.Equal(got, want) {
					t.Errorf("copy %d decided IDs %x, copy 0 %x", i+1, got, want)
				}
			}
			// The loser of the race decides again from the winner's state:
			// nothing is left to record.
			next := o.Clone()
			for _, e := range results[0] {
				next = domain.Evolve(next, e)
			}
			if again, err := decide(next, tc.when); err != nil || len(again) != 0 {
				t.Errorf("after the winner: %v, %v", describeAll(again), err)
			}
		})
	}
}
