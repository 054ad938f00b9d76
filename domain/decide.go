package domain

import (
	"fmt"
	"time"
)

// DefaultFeeType is the currency when a notification or order names none.
const DefaultFeeType = "CNY"

// DecidePlace decides on placing an order. Placing the identical order again
// decides to no events and no error (the caller answers with the existing
// order); the same out_trade_no with other content is ErrOrderConflict.
// PlacedAt is not part of the identity of an order.
func DecidePlace(o Order, cmd OrderPlaced) ([]Event, error) {
	if cmd.FeeType == "" {
		cmd.FeeType = DefaultFeeType
	}
	switch {
	case cmd.MchID == "" || cmd.AppID == "" || cmd.OutTradeNo == "":
		return nil, fmt.Errorf("%w: mch_id, appid and out_trade_no are required", ErrInvalid)
	case cmd.TotalFee <= 0:
		return nil, fmt.Errorf("%w: total_fee must be positive fen, got %d", ErrInvalid, cmd.TotalFee)
	}
	if o.Placed != nil {
		if SamePlacement(*o.Placed, cmd) {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %s/%s", ErrOrderConflict, cmd.MchID, cmd.OutTradeNo)
	}
	return fresh(o, cmd), nil
}

// SamePlacement reports whether two placements describe the same order
// (everything but the time it was placed).
func SamePlacement(a, b OrderPlaced) bool {
	sameExpiry := (a.ExpiresAt == nil) == (b.ExpiresAt == nil) &&
		(a.ExpiresAt == nil || a.ExpiresAt.Equal(*b.ExpiresAt))
	return a.MchID == b.MchID && a.AppID == b.AppID && a.OutTradeNo == b.OutTradeNo &&
		a.TotalFee == b.TotalFee && a.FeeType == b.FeeType && a.Description == b.Description &&
		a.OpenID == b.OpenID && sameExpiry
}

// DecideClose decides on closing an unpaid order. Closing a closed order
// again is a no-op; an order never placed is ErrUnknownOrder, a paid one
// ErrNotClosable.
func DecideClose(o Order, cmd OrderClosed) ([]Event, error) {
	switch {
	case o.Placed == nil:
		return nil, fmt.Errorf("%w: %s/%s", ErrUnknownOrder, cmd.MchID, cmd.OutTradeNo)
	case o.Closed != nil:
		return nil, nil
	case o.Payment != nil:
		return nil, fmt.Errorf("%w: %s/%s is paid", ErrNotClosable, cmd.MchID, cmd.OutTradeNo)
	}
	return fresh(o, cmd), nil
}

// DecidePayment decides what a verified payment notification means for the
// order. It never fails: whatever WeChat signed is recorded, as a payment or
// as an anomaly. A transaction already recorded decides to no events, so
// retries and concurrent copies are no-ops. now stamps anomalies.
func DecidePayment(o Order, p Payment, now time.Time) []Event {
	if p.FeeType == "" {
		p.FeeType = DefaultFeeType
	}
	if p.ResultCode != "SUCCESS" {
		if o.Payment != nil || o.Closed != nil {
			return nil // a late failure never moves an order back
		}
		return fresh(o, PaymentFailed{p})
	}
	if _, seen := o.Transactions[p.TransactionID]; seen {
		return nil
	}
	anomaly := func(code string) AnomalyDetected {
		a := AnomalyDetected{
			Code: code, MchID: p.MchID, OutTradeNo: p.OutTradeNo, TransactionID: p.TransactionID,
			NotifiedFee: p.TotalFee, DetectedAt: now, Payment: &p,
		}
		if o.Placed != nil {
			a.ExpectedFee = o.Placed.TotalFee
		}
		return a
	}
	switch {
	case o.Placed == nil && o.Payment == nil:
		// Money arrived for an order we never placed: book it, flag it.
		events := []Event{PaymentConfirmed{p}, anomaly(UnknownOrder)}
		if refunded := o.refundedOf(p.TransactionID); refunded > p.TotalFee {
			events = append(events, refundExcess(refunded, p, now))
		}
		return fresh(o, events...)
	case o.Payment != nil:
		a := anomaly(DuplicatePayment)
		a.ExpectedFee = 0
		a.Detail = "order already paid by transaction " + o.Payment.TransactionID
		return fresh(o, a)
	case p.AppID != o.Placed.AppID:
		a := anomaly(AppIDMismatch)
		a.ExpectedAppID, a.NotifiedAppID = o.Placed.AppID, p.AppID
		return fresh(o, a)
	case o.Closed != nil:
		return fresh(o, anomaly(PaidAfterClose))
	case p.TotalFee != o.Placed.TotalFee || p.FeeType != o.Placed.FeeType:
		a := anomaly(AmountMismatch)
		if p.FeeType != o.Placed.FeeType {
			a.Detail = fmt.Sprintf("currency %s, order is in %s", p.FeeType, o.Placed.FeeType)
		}
		return fresh(o, a)
	}
	events := []Event{PaymentConfirmed{p}}
	if refunded := o.refundedOf(p.TransactionID); refunded > p.TotalFee {
		// Refunds arrived first (their payment notice was lost) and add up
		// to more than this payment.
		events = append(events, refundExcess(refunded, p, now))
	}
	return fresh(o, events...)
}

func refundExcess(refunded int64, p Payment, now time.Time) AnomalyDetected {
	return AnomalyDetected{
		Code: RefundExceedsPaid, MchID: p.MchID, OutTradeNo: p.OutTradeNo, TransactionID: p.TransactionID,
		ExpectedFee: p.TotalFee, NotifiedFee: refunded, DetectedAt: now,
		Detail: "refunds recorded before the payment exceed it",
	}
}

// DecideRefund decides what a verified refund notification means. A refund
// is recorded even before its payment (the payment notice may have been
// lost); refunds that add up to more than was paid are also flagged. A
// refund of a transaction recorded as an anomaly (a duplicate, mismatched
// or after-close payment) is recorded but returns that money, not the
// order's: it does not count toward RefundedFee or the excess check. A
// successful refund of a transaction the order has never seen, once the
// order is paid, is recorded, not counted, and flagged
// REFUND_OF_UNKNOWN_TRANSACTION (a payment notice we never got); before
// any payment such a refund is not flagged and counts as the order's until
// a payment says otherwise. A refund only moves forward (ABNORMAL ->
// SUCCESS or CLOSED); repeats and late copies decide to no events.
//
// DecideRefund does not validate its input; callers do (app.RecordRefund
// refuses an empty refund_id). A status other than SUCCESS or CLOSED,
// including an empty or unrecognised one, is recorded as ABNORMAL without
// any error or flag. An empty RefundID is recorded as the refund "": its
// events are keyed by the merchant and "" alone, so every id-less refund
// of the order is taken for that same refund (a repeat, or a status
// update of it), and one on another order of the merchant collides with
// its event IDs.
func DecideRefund(o Order, r Refund, now time.Time) []Event {
	var e Event
	switch r.Status {
	case RefundStatusSuccess:
		e = RefundSucceeded{r}
	case RefundStatusClosed:
		e = RefundClosed{r}
	default:
		r.Status = RefundStatusAbnormal
		e = RefundAbnormal{r}
	}
	rec, known := o.Refunds[r.RefundID]
	if known && refundRank(rec.Status) >= refundRank(r.Status) {
		return nil
	}
	// The transaction the refund will be recorded against: applyRefund
	// keeps the first one a refund named.
	tx := r.TransactionID
	if known && rec.TransactionID != "" {
		tx = rec.TransactionID
	}
	events := []Event{e}
	if r.Status == RefundStatusSuccess {
		if o.Placed == nil && o.Payment == nil {
			events = append(events, AnomalyDetected{
				Code: UnknownOrder, MchID: r.MchID, OutTradeNo: r.OutTradeNo, TransactionID: r.TransactionID,
				RefundID: r.RefundID, NotifiedFee: r.RefundFee, DetectedAt: now,
				Detail: "refund for an order never placed here",
			})
		}
		if _, seen := o.Transactions[tx]; o.Payment != nil && tx != "" && !seen {
			// No Payment on it: Evolve must not record tx as seen, so
			// that its payment notice, if it comes, is still recorded
			// (as a DUPLICATE_PAYMENT).
			events = append(events, AnomalyDetected{
				Code: RefundOfUnknownTransaction, MchID: r.MchID, OutTradeNo: r.OutTradeNo, TransactionID: tx,
				RefundID: r.RefundID, NotifiedFee: r.RefundFee, DetectedAt: now,
				Detail: fmt.Sprintf("refund of transaction %s, which this order has not recorded (it is paid by %s): a payment notification may be missing",
					tx, o.Payment.TransactionID),
			})
		}
		if o.Payment != nil && o.refundOfOrder(tx) && o.RefundedFee+r.RefundFee > o.PaidFee {
			events = append(events, AnomalyDetected{
				Code: RefundExceedsPaid, MchID: r.MchID, OutTradeNo: r.OutTradeNo, RefundID: r.RefundID,
				ExpectedFee: o.PaidFee, NotifiedFee: o.RefundedFee + r.RefundFee, DetectedAt: now,
				Detail: fmt.Sprintf("refunds add up to %d fen, paid %d", o.RefundedFee+r.RefundFee, o.PaidFee),
			})
		}
	}
	return fresh(o, events...)
}

// DecideIDReused records a verified payment or refund notification whose
// WeChat id is already recorded on another order (the store refuses the
// event's deterministic ID there). It books no money: it records the
// notification whole as an ID_REUSED anomaly, keyed by this order, so the
// retries of it are no-ops and nothing is dropped. Exactly one of p and r
// is non-nil.
func DecideIDReused(o Order, p *Payment, r *Refund, now time.Time) []Event {
	a := AnomalyDetected{Code: IDReused, DetectedAt: now}
	switch {
	case p != nil:
		pp := *p
		a.MchID, a.OutTradeNo, a.TransactionID, a.NotifiedFee, a.Payment = p.MchID, p.OutTradeNo, p.TransactionID, p.TotalFee, &pp
		a.Detail = "transaction_id " + p.TransactionID + " is already recorded on another order"
	case r != nil:
		a.MchID, a.OutTradeNo, a.TransactionID, a.RefundID, a.NotifiedFee = r.MchID, r.OutTradeNo, r.TransactionID, r.RefundID, r.RefundFee
		a.Detail = "refund_id " + r.RefundID + " (" + r.Status + ") is already recorded on another order"
	default:
		return nil
	}
	if o.Placed != nil {
		a.ExpectedFee = o.Placed.TotalFee
	}
	return fresh(o, a)
}

// fresh drops events whose ID the stream already holds, and duplicates
// within the batch, so a decision never repeats a recorded fact.
func fresh(o Order, events ...Event) []Event {
	out := events[:0:0]
	seen := map[[16]byte]bool{}
	for _, e := range events {
		id := e.eventID()
		if o.Has(id) || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
