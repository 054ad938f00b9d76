package domain

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event type names, as stored. Permanent.
const (
	TypeOrderPlaced      = "OrderPlaced"
	TypeOrderClosed      = "OrderClosed"
	TypePaymentConfirmed = "PaymentConfirmed"
	TypePaymentFailed    = "PaymentFailed"
	TypeAnomalyDetected  = "AnomalyDetected"
	TypeRefundSucceeded  = "RefundSucceeded"
	TypeRefundClosed     = "RefundClosed"
	TypeRefundAbnormal   = "RefundAbnormal"
)

// Anomaly codes. Permanent.
const (
	// AmountMismatch: a signed payment whose total differs from the order's
	// (or in another currency). The order is not paid.
	AmountMismatch = "AMOUNT_MISMATCH"
	// UnknownOrder: a valid payment or refund for an order never placed
	// here. The money is recorded and flagged.
	UnknownOrder = "UNKNOWN_ORDER"
	// DuplicatePayment: a second, different transaction for an order that
	// is already paid. Money to refund.
	DuplicatePayment = "DUPLICATE_PAYMENT"
	// AppIDMismatch: a signed payment under another appid than the order's.
	// The order is not paid.
	AppIDMismatch = "APPID_MISMATCH"
	// PaidAfterClose: a payment for an order that was closed. The order
	// stays closed; the money is recorded for refund.
	PaidAfterClose = "PAID_AFTER_CLOSE"
	// RefundExceedsPaid: the refunds of an order add up to more than was
	// paid for it.
	RefundExceedsPaid = "REFUND_EXCEEDS_PAID"
	// IDReused: a signed notification whose WeChat transaction or refund
	// id is already recorded on another order of the merchant. WeChat's
	// ids are unique, so this is for finance to investigate; the
	// notification is recorded here, never dropped, and changes no money.
	IDReused = "ID_REUSED"
	// RefundOfUnknownTransaction: a successful refund, on an order that is
	// paid, of a transaction this order has never recorded (neither its
	// payment nor any anomaly). It hints at a payment notification that
	// never arrived, e.g. a lost second payment. The refund is recorded
	// and, as its money is not the order's, not counted in the order's
	// refunded fee; NotifiedFee is the refund's fee. Keyed by the refund:
	// one per refund. A refund that arrives before any payment is not
	// flagged (its payment notice may simply be late). If the transaction
	// later arrives as a payment, that is a DUPLICATE_PAYMENT and the
	// refund returns that money.
	RefundOfUnknownTransaction = "REFUND_OF_UNKNOWN_TRANSACTION"
)

// Event is one of the closed set of ledger events below.
type Event interface {
	// EventType is the stored type name.
	EventType() string
	// eventID derives the deterministic event ID.
	eventID() [16]byte
}

// Evidence keeps the raw notification an event came from, so an auditor can
// verify its signature again later. Body is the exact body received; for v3
// Headers holds the Wechatpay-* signature headers. Secrets and decrypted
// plaintext never go here (v3 resources and v2 req_info stay encrypted).
type Evidence struct {
	Channel    string            `json:"channel"` // "wechatpay-v2-notify", "wechatpay-v3-notify", "wechatpay-v2-refund-notify"
	Body       string            `json:"body"`
	Headers    map[string]string `json:"headers,omitempty"`
	ReceivedAt time.Time         `json:"received_at"`
}

// OrderPlaced: the merchant placed an order (POST /v1/orders).
type OrderPlaced struct {
	MchID       string     `json:"mch_id"`
	AppID       string     `json:"appid"`
	OutTradeNo  string     `json:"out_trade_no"`
	TotalFee    int64      `json:"total_fee"`
	FeeType     string     `json:"fee_type"`
	Description string     `json:"description"`
	OpenID      string     `json:"openid,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	PlacedAt    time.Time  `json:"placed_at"`
}

// OrderClosed: the merchant closed an unpaid order.
type OrderClosed struct {
	MchID      string    `json:"mch_id"`
	OutTradeNo string    `json:"out_trade_no"`
	Reason     string    `json:"reason,omitempty"`
	ClosedAt   time.Time `json:"closed_at"`
}

// Payment is the content of a verified payment notification, whatever its
// API version. It is the body of PaymentConfirmed and PaymentFailed, and is
// carried by payment anomalies.
type Payment struct {
	MchID         string    `json:"mch_id"`
	AppID         string    `json:"appid"`
	OutTradeNo    string    `json:"out_trade_no"`
	TransactionID string    `json:"transaction_id"`
	TotalFee      int64     `json:"total_fee"`            // order total, fen
	CashFee       int64     `json:"cash_fee"`             // paid by the payer in cash (v3: payer_total), fen
	CouponFee     int64     `json:"coupon_fee,omitempty"` // fen
	FeeType       string    `json:"fee_type"`             // ISO 4217, "CNY"
	TradeType     string    `json:"trade_type,omitempty"`
	BankType      string    `json:"bank_type,omitempty"`
	OpenID        string    `json:"openid,omitempty"`
	Attach        string    `json:"attach,omitempty"`
	PaidAt        time.Time `json:"paid_at"` // WeChat's time_end / success_time, Beijing time
	ResultCode    string    `json:"result_code"`
	ErrCode       string    `json:"err_code,omitempty"`
	ErrCodeDes    string    `json:"err_code_des,omitempty"`
	Evidence      Evidence  `json:"evidence"`
}

// PaymentConfirmed: WeChat confirmed a payment for the order. Exactly one
// per paid order; further transactions are DUPLICATE_PAYMENT anomalies.
type PaymentConfirmed struct {
	Payment
}

// PaymentFailed: a signed notification with result_code FAIL. Nothing was
// paid.
type PaymentFailed struct {
	Payment
}

// AnomalyDetected records a notification that could not be applied as is.
// Nothing is dropped: the payment or refund it carried is kept whole.
type AnomalyDetected struct {
	Code          string    `json:"code"`
	MchID         string    `json:"mch_id"`
	OutTradeNo    string    `json:"out_trade_no"`
	TransactionID string    `json:"transaction_id,omitempty"`
	RefundID      string    `json:"refund_id,omitempty"`
	ExpectedFee   int64     `json:"expected_fee,omitempty"` // what the order says, fen
	NotifiedFee   int64     `json:"notified_fee,omitempty"` // what the notification says, fen
	ExpectedAppID string    `json:"expected_appid,omitempty"`
	NotifiedAppID string    `json:"notified_appid,omitempty"`
	Detail        string    `json:"detail,omitempty"`
	DetectedAt    time.Time `json:"detected_at"`
	Payment       *Payment  `json:"payment,omitempty"` // the payment concerned, whole
}

// Refund is the content of a verified refund notification.
type Refund struct {
	MchID               string    `json:"mch_id"`
	OutTradeNo          string    `json:"out_trade_no"`
	TransactionID       string    `json:"transaction_id"`
	RefundID            string    `json:"refund_id"`
	OutRefundNo         string    `json:"out_refund_no"`
	Status              string    `json:"refund_status"` // SUCCESS, CLOSED, ABNORMAL (v2 CHANGE and REFUNDCLOSE are normalised)
	TotalFee            int64     `json:"total_fee"`     // order total, fen
	RefundFee           int64     `json:"refund_fee"`    // fen
	SettlementRefundFee int64     `json:"settlement_refund_fee,omitempty"`
	PayerTotal          int64     `json:"payer_total,omitempty"`
	PayerRefund         int64     `json:"payer_refund,omitempty"`
	ReceivedAccount     string    `json:"received_account,omitempty"`
	SucceededAt         time.Time `json:"succeeded_at,omitzero"`
	Evidence            Evidence  `json:"evidence"`
}

// Refund statuses (normalised across v2 and v3).
const (
	RefundStatusSuccess  = "SUCCESS"
	RefundStatusClosed   = "CLOSED"
	RefundStatusAbnormal = "ABNORMAL"
)

// RefundSucceeded: money went back to the payer.
type RefundSucceeded struct{ Refund }

// RefundClosed: the refund was closed without money moving.
type RefundClosed struct{ Refund }

// RefundAbnormal: the refund failed at the bank (v2 CHANGE, v3 ABNORMAL);
// the merchant must handle it. It may still succeed or close later.
type RefundAbnormal struct{ Refund }

func (OrderPlaced) EventType() string      { return TypeOrderPlaced }
func (OrderClosed) EventType() string      { return TypeOrderClosed }
func (PaymentConfirmed) EventType() string { return TypePaymentConfirmed }
func (PaymentFailed) EventType() string    { return TypePaymentFailed }
func (AnomalyDetected) EventType() string  { return TypeAnomalyDetected }
func (RefundSucceeded) EventType() string  { return TypeRefundSucceeded }
func (RefundClosed) EventType() string     { return TypeRefundClosed }
func (RefundAbnormal) EventType() string   { return TypeRefundAbnormal }

func (e OrderPlaced) eventID() [16]byte { return EventID(e.MchID, e.OutTradeNo, TypeOrderPlaced) }
func (e OrderClosed) eventID() [16]byte { return EventID(e.MchID, e.OutTradeNo, TypeOrderClosed) }
func (e PaymentConfirmed) eventID() [16]byte {
	return EventID(e.MchID, e.TransactionID, TypePaymentConfirmed)
}
func (e PaymentFailed) eventID() [16]byte {
	// A failed payment may carry no transaction id; the order number and
	// the error code then identify it.
	return EventID(e.MchID, e.OutTradeNo, e.TransactionID, e.ErrCode, TypePaymentFailed)
}
func (e AnomalyDetected) eventID() [16]byte {
	key := e.TransactionID
	if e.RefundID != "" && (e.Code == RefundExceedsPaid || e.Code == IDReused || e.Code == RefundOfUnknownTransaction || e.TransactionID == "") {
		key = e.RefundID
	}
	return EventID(e.MchID, e.OutTradeNo, key, TypeAnomalyDetected, e.Code)
}
func (e RefundSucceeded) eventID() [16]byte { return EventID(e.MchID, e.RefundID, TypeRefundSucceeded) }
func (e RefundClosed) eventID() [16]byte    { return EventID(e.MchID, e.RefundID, TypeRefundClosed) }
func (e RefundAbnormal) eventID() [16]byte  { return EventID(e.MchID, e.RefundID, TypeRefundAbnormal) }

// ID returns the deterministic ID of e.
func ID(e Event) [16]byte { return e.eventID() }

// Marshal encodes e as its stored type name and JSON payload. An
// UnknownEvent gives back its type and payload unchanged.
func Marshal(e Event) (typ string, data []byte, err error) {
	if u, ok := e.(UnknownEvent); ok {
		// Kept as is: wrapping it as {"Type":..,"Data":..} would change a
		// newer binary's event when an older one copies it.
		return u.Type, append([]byte(nil), u.Data...), nil
	}
	data, err = json.Marshal(e)
	if err != nil {
		return "", nil, fmt.Errorf("marshal %s: %w", e.EventType(), err)
	}
	return e.EventType(), data, nil
}

// UnknownEvent is a stored event whose type this binary does not know. It
// is kept as is (Evolve skips it) so that newer events never break reading.
type UnknownEvent struct {
	Type string
	Data json.RawMessage
}

func (u UnknownEvent) EventType() string { return u.Type }
func (u UnknownEvent) eventID() [16]byte { return [16]byte{} }

// Unmarshal decodes a stored event. An unknown type gives an UnknownEvent
// and no error; a known type with an undecodable payload is an error.
func Unmarshal(typ string, data []byte) (Event, error) {
	var e Event
	var err error
	switch typ {
	case TypeOrderPlaced:
		var v OrderPlaced
		err, e = json.Unmarshal(data, &v), &v
	case TypeOrderClosed:
		var v OrderClosed
		err, e = json.Unmarshal(data, &v), &v
	case TypePaymentConfirmed:
		var v PaymentConfirmed
		err, e = json.Unmarshal(data, &v), &v
	case TypePaymentFailed:
		var v PaymentFailed
		err, e = json.Unmarshal(data, &v), &v
	case TypeAnomalyDetected:
		var v AnomalyDetected
		err, e = json.Unmarshal(data, &v), &v
	case TypeRefundSucceeded:
		var v RefundSucceeded
		err, e = json.Unmarshal(data, &v), &v
	case TypeRefundClosed:
		var v RefundClosed
		err, e = json.Unmarshal(data, &v), &v
	case TypeRefundAbnormal:
		var v RefundAbnormal
		err, e = json.Unmarshal(data, &v), &v
	default:
		return UnknownEvent{Type: typ, Data: append(json.RawMessage(nil), data...)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("unmarshal %s: %w", typ, err)
	}
	return deref(e), nil
}

// deref turns the pointer decoded into back into the value type, so that
// callers switch on value types only.
func deref(e Event) Event {
	switch v := e.(type) {
	case *OrderPlaced:
		return *v
	case *OrderClosed:
		return *v
	case *PaymentConfirmed:
		return *v
	case *PaymentFailed:
		return *v
	case *AnomalyDetected:
		return *v
	case *RefundSucceeded:
		return *v
	case *RefundClosed:
		return *v
	case *RefundAbnormal:
		return *v
	}
	return e
}
