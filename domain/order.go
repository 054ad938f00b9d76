package domain

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Order statuses as the read API shows them.
const (
	StatusPending           = "PENDING"
	StatusPaid              = "PAID"
	StatusAmountMismatch    = "AMOUNT_MISMATCH"
	StatusPartiallyRefunded = "PARTIALLY_REFUNDED"
	StatusRefunded          = "REFUNDED"
	StatusClosed            = "CLOSED"
)

// Sentinel errors of decisions.
var (
	// ErrOrderConflict: the out_trade_no is already placed with other content.
	ErrOrderConflict = errors.New("domain: order already placed with other content")
	// ErrInvalid: a command breaks an invariant (non-positive fee, empty id...).
	ErrInvalid = errors.New("domain: invalid command")
	// ErrNotClosable: the order cannot be closed (it is paid).
	ErrNotClosable = errors.New("domain: order cannot be closed")
	// ErrUnknownOrder: the command needs an order that was never placed.
	ErrUnknownOrder = errors.New("domain: order was never placed")
)

// StreamPrefix starts the name of every order stream.
const StreamPrefix = "order-"

// StreamID names the stream of one merchant order: order-{mch_id}-{out_trade_no}.
// mch_id is digits only, so the first '-' after the prefix ends it.
func StreamID(mchID, outTradeNo string) string {
	return StreamPrefix + mchID + "-" + outTradeNo
}

// ParseStreamID splits an order stream name; ok is false for other streams.
func ParseStreamID(stream string) (mchID, outTradeNo string, ok bool) {
	rest, found := strings.CutPrefix(stream, StreamPrefix)
	if !found {
		return "", "", false
	}
	mchID, outTradeNo, ok = strings.Cut(rest, "-")
	if !ok || mchID == "" || outTradeNo == "" {
		return "", "", false
	}
	return mchID, outTradeNo, true
}

// AnomalyRecord is an anomaly as the order state keeps it.
type AnomalyRecord struct {
	Code          string    `json:"code"`
	TransactionID string    `json:"transaction_id,omitempty"`
	RefundID      string    `json:"refund_id,omitempty"`
	ExpectedFee   int64     `json:"expected_fee,omitempty"`
	NotifiedFee   int64     `json:"notified_fee,omitempty"`
	Detail        string    `json:"detail,omitempty"`
	DetectedAt    time.Time `json:"detected_at"`
}

// RefundRecord is the latest known state of one refund of the order.
type RefundRecord struct {
	RefundID      string    `json:"refund_id"`
	OutRefundNo   string    `json:"out_refund_no"`
	TransactionID string    `json:"transaction_id,omitempty"` // the payment it returns
	Status        string    `json:"refund_status"`
	RefundFee     int64     `json:"refund_fee"`
	SucceededAt   time.Time `json:"succeeded_at,omitzero"`
}

// Order is the state of one order stream, folded from its events by Evolve.
// The zero Order is a stream with no events.
type Order struct {
	MchID      string
	OutTradeNo string

	Placed *OrderPlaced // nil until the order is placed here
	Closed *OrderClosed

	Payment *Payment // the confirmed payment (the first PaymentConfirmed)
	PaidFee int64    // total_fee of the confirmed payment
	CashFee int64
	// RefundedFee sums the succeeded refunds of the order's own payment;
	// refunds of a duplicate, mismatched or after-close payment are kept
	// in Refunds but not counted (see refundOfOrder).
	RefundedFee int64

	// Transactions maps every WeChat transaction id seen on this order to
	// how it was recorded (PaymentConfirmed, or an anomaly code).
	Transactions map[string]string
	Refunds      map[string]*RefundRecord // by refund_id
	RefundOrder  []string                 // refund ids in arrival order
	Anomalies    []AnomalyRecord
	Failures     int // PaymentFailed events

	// Events counts the events folded; Revision of the last is Events-1.
	Events int
	// ids holds every event ID in the stream; decisions never repeat one.
	ids map[[16]byte]bool
}

// Has reports whether the stream already holds an event with this ID.
func (o *Order) Has(id [16]byte) bool { return o.ids[id] }

// Status derives the order's status from its facts.
func (o *Order) Status() string {
	switch {
	case o.Payment != nil && o.RefundedFee >= o.PaidFee && o.RefundedFee > 0:
		return StatusRefunded
	case o.Payment != nil && o.RefundedFee > 0:
		return StatusPartiallyRefunded
	case o.Payment != nil:
		return StatusPaid
	case o.Closed != nil:
		return StatusClosed
	case o.hasAnomaly(AmountMismatch):
		return StatusAmountMismatch
	}
	return StatusPending
}

func (o *Order) hasAnomaly(code string) bool {
	for _, a := range o.Anomalies {
		if a.Code == code {
			return true
		}
	}
	return false
}

// TotalFee is the order's amount: as placed, else as first paid.
func (o *Order) TotalFee() int64 {
	if o.Placed != nil {
		return o.Placed.TotalFee
	}
	return o.PaidFee
}

// Fold builds the state of a stream from its events in order.
func Fold(events []Event) Order {
	var o Order
	for _, e := range events {
		o = Evolve(o, e)
	}
	return o
}

// Evolve applies one stored event. It never fails: unknown events are
// counted and otherwise skipped. The returned Order shares maps with o; use
// the result and drop o.
func Evolve(o Order, e Event) Order {
	o.Events++
	if o.ids == nil {
		o.ids = map[[16]byte]bool{}
	}
	if o.Transactions == nil {
		o.Transactions = map[string]string{}
	}
	if o.Refunds == nil {
		o.Refunds = map[string]*RefundRecord{}
	}
	if id := e.eventID(); id != ([16]byte{}) {
		o.ids[id] = true
	}
	switch v := e.(type) {
	case OrderPlaced:
		o.MchID, o.OutTradeNo = v.MchID, v.OutTradeNo
		if o.Placed == nil {
			p := v
			o.Placed = &p
		}
	case OrderClosed:
		o.MchID, o.OutTradeNo = v.MchID, v.OutTradeNo
		if o.Closed == nil {
			c := v
			o.Closed = &c
		}
	case PaymentConfirmed:
		o.MchID, o.OutTradeNo = v.MchID, v.OutTradeNo
		if o.Payment == nil {
			p := v.Payment
			o.Payment = &p
			o.PaidFee = v.TotalFee
			o.CashFee = v.CashFee
		}
		if _, seen := o.Transactions[v.TransactionID]; !seen {
			o.Transactions[v.TransactionID] = TypePaymentConfirmed
		}
		o.recountRefunds()
	case PaymentFailed:
		o.MchID, o.OutTradeNo = v.MchID, v.OutTradeNo
		o.Failures++
	case AnomalyDetected:
		o.MchID, o.OutTradeNo = v.MchID, v.OutTradeNo
		o.Anomalies = append(o.Anomalies, AnomalyRecord{
			Code: v.Code, TransactionID: v.TransactionID, RefundID: v.RefundID,
			ExpectedFee: v.ExpectedFee, NotifiedFee: v.NotifiedFee, Detail: v.Detail, DetectedAt: v.DetectedAt,
		})
		if v.TransactionID != "" && v.Payment != nil {
			if _, seen := o.Transactions[v.TransactionID]; !seen {
				o.Transactions[v.TransactionID] = v.Code
				o.recountRefunds()
			}
		}
	case RefundSucceeded:
		o.applyRefund(v.Refund)
	case RefundClosed:
		o.applyRefund(v.Refund)
	case RefundAbnormal:
		o.applyRefund(v.Refund)
	}
	return o
}

// refundRank orders refund statuses: a refund only moves forward, and
// SUCCESS and CLOSED are final.
func refundRank(status string) int {
	switch status {
	case RefundStatusAbnormal:
		return 1
	case RefundStatusSuccess, RefundStatusClosed:
		return 2
	}
	return 0
}

func (o *Order) applyRefund(r Refund) {
	o.MchID, o.OutTradeNo = r.MchID, r.OutTradeNo
	rec, ok := o.Refunds[r.RefundID]
	if !ok {
		rec = &RefundRecord{RefundID: r.RefundID, OutRefundNo: r.OutRefundNo}
		o.Refunds[r.RefundID] = rec
		o.RefundOrder = append(o.RefundOrder, r.RefundID)
	}
	if rec.TransactionID == "" {
		rec.TransactionID = r.TransactionID
	}
	if refundRank(r.Status) <= refundRank(rec.Status) {
		return // a late or repeated message never moves a refund back
	}
	rec.Status = r.Status
	if r.Status == RefundStatusSuccess {
		rec.RefundFee = r.RefundFee
		rec.SucceededAt = r.SucceededAt
		o.recountRefunds()
	}
}

// refundOfOrder reports whether a refund of transaction tx returns the
// order's own payment. A refund of a transaction recorded as an anomaly (a
// duplicate, mismatched or after-close payment) returns that money instead:
// refunding a duplicate payment must not make a paid order look refunded.
// Until the order is paid, a refund of a transaction not seen yet counts
// (its payment notice may be late or lost); one that names no transaction
// always counts.
func (o *Order) refundOfOrder(tx string) bool {
	if tx == "" {
		return true
	}
	if o.Payment != nil {
		return tx == o.Payment.TransactionID
	}
	_, seen := o.Transactions[tx]
	return !seen
}

// recountRefunds sets RefundedFee from Refunds. It runs whenever a refund
// succeeds or a transaction is first recorded, because a refund that came
// before its payment counts only once it is known whose money it returns.
func (o *Order) recountRefunds() {
	var sum int64
	for _, r := range o.Refunds {
		if r.Status == RefundStatusSuccess && o.refundOfOrder(r.TransactionID) {
			sum += r.RefundFee
		}
	}
	o.RefundedFee = sum
}

// refundedOf sums the succeeded refunds of transaction tx (and those that
// name no transaction).
func (o *Order) refundedOf(tx string) int64 {
	var sum int64
	for _, r := range o.Refunds {
		if r.Status == RefundStatusSuccess && (r.TransactionID == "" || r.TransactionID == tx) {
			sum += r.RefundFee
		}
	}
	return sum
}

// String is for debugging and test failures.
func (o *Order) String() string {
	return fmt.Sprintf("order %s/%s %s paid=%d refunded=%d anomalies=%d events=%d",
		o.MchID, o.OutTradeNo, o.Status(), o.PaidFee, o.RefundedFee, len(o.Anomalies), o.Events)
}

// Clone returns a deep copy of o, so that a state can be shared read-only
// (e.g. cached) while a copy is evolved.
func (o Order) Clone() Order {
	c := o
	c.ids = maps.Clone(o.ids)
	c.Transactions = maps.Clone(o.Transactions)
	if o.Refunds != nil {
		c.Refunds = make(map[string]*RefundRecord, len(o.Refunds)+1)
		for k, v := range o.Refunds {
			r := *v
			c.Refunds[k] = &r
		}
	}
	c.RefundOrder = append([]string(nil), o.RefundOrder...)
	c.Anomalies = append([]AnomalyRecord(nil), o.Anomalies...)
	return c
}

// orderFields is Order without its methods, for the JSON codec below.
type orderFields Order

// orderJSON is the JSON form of an Order: its exported fields plus the IDs
// of the events folded into it, in hex, sorted.
type orderJSON struct {
	orderFields
	EventIDs []string `json:"EventIDs,omitempty"`
}

// MarshalJSON encodes the whole state, including the event IDs that
// decisions consult (Has), so that a state kept as JSON (a projection's
// state_json) decodes to an Order that evolves and decides exactly like a
// fresh fold. A struct that embeds Order inherits this method; name the
// field instead.
func (o Order) MarshalJSON() ([]byte, error) {
	ids := make([]string, 0, len(o.ids))
	for id := range o.ids {
		ids = append(ids, hex.EncodeToString(id[:]))
	}
	slices.Sort(ids)
	return json.Marshal(orderJSON{orderFields(o), ids})
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (o *Order) UnmarshalJSON(b []byte) error {
	var j orderJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*o = Order(j.orderFields)
	o.ids = nil
	if len(j.EventIDs) > 0 {
		o.ids = make(map[[16]byte]bool, len(j.EventIDs))
	}
	for _, s := range j.EventIDs {
		var id [16]byte
		if len(s) != hex.EncodedLen(len(id)) {
			return fmt.Errorf("domain: order JSON: bad event id %q", s)
		}
		if _, err := hex.Decode(id[:], []byte(s)); err != nil {
			return fmt.Errorf("domain: order JSON: event id %q: %w", s, err)
		}
		o.ids[id] = true
	}
	return nil
}
