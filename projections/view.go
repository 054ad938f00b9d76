package projections

import (
	"encoding/json"
	"time"

	"github.com/orderledger/orderledger/domain"
	"github.com/orderledger/orderledger/eventstore"
)

// Day returns the Beijing calendar date of t as YYYY-MM-DD, the key of the
// daily totals.
func Day(t time.Time) string { return t.In(domain.Beijing).Format(time.DateOnly) }

// OrderView is an order as the public read API shows it. Its JSON form is
// used verbatim by the HTTP layer; field names are permanent.
//
// Times are in Beijing time (RFC 3339 with +08:00); PaidAt and PlacedAt are
// null until the order is paid or when it was never placed here. Anomalies
// and Refunds are always arrays, never null. Position is written as text
// (see eventstore.ParsePosition) and can be passed to Runner.WaitFor for
// read-your-writes.
type OrderView struct {
	MchID         string              `json:"mch_id"`
	OutTradeNo    string              `json:"out_trade_no"`
	AppID         string              `json:"appid"`
	Description   string              `json:"description"`
	Status        string              `json:"status"` // PENDING|PAID|AMOUNT_MISMATCH|PARTIALLY_REFUNDED|REFUNDED|CLOSED
	TotalFee      int64               `json:"total_fee"`
	PaidFee       int64               `json:"paid_fee"`
	CashFee       int64               `json:"cash_fee"`
	RefundedFee   int64               `json:"refunded_fee"`
	TransactionID string              `json:"transaction_id"`
	PaidAt        *time.Time          `json:"paid_at"`
	PlacedAt      *time.Time          `json:"placed_at"`
	Anomalies     []AnomalyView       `json:"anomalies"`
	Refunds       []RefundView        `json:"refunds"`
	Revision      uint64              `json:"revision"` // stream revision of the last applied event
	Position      eventstore.Position `json:"-"`        // global position of the last applied event; JSON "position"
}

// AnomalyView is one anomaly of an order, in detection order.
type AnomalyView struct {
	Code          string    `json:"code"`
	TransactionID string    `json:"transaction_id"`
	RefundID      string    `json:"refund_id"`
	ExpectedFee   int64     `json:"expected_fee"`
	NotifiedFee   int64     `json:"notified_fee"`
	Detail        string    `json:"detail"`
	DetectedAt    time.Time `json:"detected_at"`
}

// RefundView is the latest known state of one refund, in arrival order.
// RefundFee is counted once the refund succeeded; SucceededAt is null
// before that (or when WeChat gave no time).
type RefundView struct {
	RefundID     string     `json:"refund_id"`
	OutRefundNo  string     `json:"out_refund_no"`
	RefundStatus string     `json:"refund_status"`
	RefundFee    int64      `json:"refund_fee"`
	SucceededAt  *time.Time `json:"succeeded_at"`
}

type orderViewJSON struct {
	orderViewPlain
	Position string `json:"position"`
}

type orderViewPlain OrderView

// MarshalJSON writes v with its position as text ("12" or "12/11").
func (v OrderView) MarshalJSON() ([]byte, error) {
	return json.Marshal(orderViewJSON{orderViewPlain(v), v.Position.String()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (v *OrderView) UnmarshalJSON(b []byte) error {
	var j orderViewJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	pos, err := eventstore.ParsePosition(j.Position)
	if err != nil {
		return err
	}
	*v = OrderView(j.orderViewPlain)
	v.Position = pos
	return nil
}

// DailyTotal sums one merchant's facts of one Beijing calendar day. The day
// of a fact comes from stored data only, so a rebuild gives the same totals:
// an order counts on its placed_at, a payment on its paid_at (WeChat's
// time_end / success_time), a refund on its succeeded_at, an anomaly on the
// recorded_at of its event; a missing time falls back to the event's
// recorded_at.
//
// Payments count the payment that paid each order (PaymentConfirmed), not
// the money of anomalies (a duplicate or mismatched transaction shows in
// Anomalies). Refunds count every refund that succeeded, as WeChat's bill
// does, including refunds of such anomaly money; so NetFee is "confirmed
// payments minus all refunds", while an order's refunded_fee follows the
// domain, which counts only refunds of the order's own payment.
type DailyTotal struct {
	Day          string `json:"day"`           // YYYY-MM-DD, Beijing time
	OrdersPlaced int64  `json:"orders_placed"` // OrderPlaced
	Payments     int64  `json:"payments"`      // confirmed payments (PaymentConfirmed that paid an order)
	PaymentsFee  int64  `json:"payments_fee"`  // their total_fee, fen
	CashFee      int64  `json:"cash_fee"`      // their cash_fee, fen
	Refunds      int64  `json:"refunds"`       // refunds that succeeded (RefundSucceeded), of any transaction
	RefundsFee   int64  `json:"refunds_fee"`   // their refund_fee, fen
	NetFee       int64  `json:"net_fee"`       // PaymentsFee - RefundsFee, fen
	// Anomalies counts the anomalies detected that day by code; never nil.
	Anomalies map[string]int64 `json:"anomalies"`
	// AnomalyFees sums, by code, the amount each anomaly notified (fen).
	// For DUPLICATE_PAYMENT, AMOUNT_MISMATCH, APPID_MISMATCH,
	// PAID_AFTER_CLOSE and ID_REUSED it is money that arrived but is not in
	// PaymentsFee. An UNKNOWN_ORDER payment is booked and so already in
	// PaymentsFee; REFUND_EXCEEDS_PAID carries the refunds' running total;
	// REFUND_OF_UNKNOWN_TRANSACTION the refund's amount (also in RefundsFee).
	// Omitted when there is none.
	AnomalyFees map[string]int64 `json:"anomaly_fees,omitempty"`
}

// viewOf builds the public view of a folded order.
func viewOf(mchID, outTradeNo string, o *domain.Order, revision uint64, pos eventstore.Position) OrderView {
	v := OrderView{
		MchID:       mchID,
		OutTradeNo:  outTradeNo,
		Status:      o.Status(),
		TotalFee:    o.TotalFee(),
		PaidFee:     o.PaidFee,
		CashFee:     o.CashFee,
		RefundedFee: o.RefundedFee,
		Anomalies:   make([]AnomalyView, 0, len(o.Anomalies)),
		Refunds:     make([]RefundView, 0, len(o.RefundOrder)),
		Revision:    revision,
		Position:    pos,
	}
	if o.Placed != nil {
		v.AppID = o.Placed.AppID
		v.Description = o.Placed.Description
		v.PlacedAt = beijingPtr(o.Placed.PlacedAt)
	}
	if o.Payment != nil {
		if v.AppID == "" {
			v.AppID = o.Payment.AppID
		}
		v.TransactionID = o.Payment.TransactionID
		v.PaidAt = beijingPtr(o.Payment.PaidAt)
	}
	for _, a := range o.Anomalies {
		v.Anomalies = append(v.Anomalies, AnomalyView{
			Code: a.Code, TransactionID: a.TransactionID, RefundID: a.RefundID,
			ExpectedFee: a.ExpectedFee, NotifiedFee: a.NotifiedFee, Detail: a.Detail,
			DetectedAt: a.DetectedAt.In(domain.Beijing),
		})
	}
	for _, id := range o.RefundOrder {
		r := o.Refunds[id]
		if r == nil {
			continue
		}
		v.Refunds = append(v.Refunds, RefundView{
			RefundID: r.RefundID, OutRefundNo: r.OutRefundNo, RefundStatus: r.Status,
			RefundFee: r.RefundFee, SucceededAt: beijingPtr(r.SucceededAt),
		})
	}
	return v
}

// beijingPtr returns t in Beijing time, or nil for the zero time.
func beijingPtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	b := t.In(domain.Beijing)
	return &b
}

// columnTime is the column form of a time of the view (already in Beijing
// time, nil for none): RFC 3339, or NULL.
func columnTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.Format(time.RFC3339)
}
