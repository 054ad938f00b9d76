package wechatpay

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/orderledger/orderledger/domain"
	"github.com/wechatpay-apiv3/wechatpay-go/utils"
)

// AlgorithmAESGCM is the only v3 resource algorithm.
const AlgorithmAESGCM = "AEAD_AES_256_GCM"

// V3Envelope is the clear JSON body of a v3 notification. The business
// data is in Resource, encrypted.
//
// Fields carry WeChat's field of the same name (the json tag), verbatim;
// only those with a particular meaning are commented.
type V3Envelope struct {
	// ID is the notification id. Whether it is stable across retries is
	// undocumented: do not use it as the only idempotency key.
	ID string `json:"id" validate:"required"`
	// CreateTime is when the notification was created; never use it as
	// the payment time.
	CreateTime time.Time `json:"-" validate:"-"`
	// CreateTimeRaw is create_time as sent (RFC 3339).
	CreateTimeRaw string `json:"create_time" validate:"required"`
	// EventType: TRANSACTION.SUCCESS, REFUND.SUCCESS, REFUND.ABNORMAL,
	// REFUND.CLOSED, ...
	EventType    string     `json:"event_type" validate:"required"`
	ResourceType string     `json:"resource_type"`
	Summary      string     `json:"summary"`
	Resource     V3Resource `json:"resource"`
}

// V3Resource is the encrypted part of a v3 notification.
type V3Resource struct {
	// Algorithm must be AEAD_AES_256_GCM.
	Algorithm string `json:"algorithm" validate:"eq=AEAD_AES_256_GCM"`
	// Ciphertext is base64 of the AES-GCM ciphertext followed by its
	// 16-byte tag.
	Ciphertext string `json:"ciphertext" validate:"required,base64"`
	// AssociatedData is the GCM additional data; it may be empty.
	AssociatedData string `json:"associated_data"`
	// OriginalType: transaction, refund, ...
	OriginalType string `json:"original_type"`
	// Nonce is the 12-byte GCM nonce, as ASCII text.
	Nonce string `json:"nonce" validate:"len=12,printascii"`
}

// ParseV3Envelope decodes a v3 notification body (after V3Verifier.Verify
// accepted it). It needs one JSON object with no trailing data, valid
// UTF-8, and: id, create_time (RFC 3339), event_type, and a resource with
// algorithm AEAD_AES_256_GCM, base64 ciphertext and a 12-character nonce.
// resource_type, summary, original_type and associated_data may be absent.
// Unknown fields are ignored (WeChat may add some). All failures are
// ErrMalformed, naming the fields.
func ParseV3Envelope(body []byte) (V3Envelope, error) {
	if !utf8.Valid(body) {
		return V3Envelope{}, fmt.Errorf("%w: invalid UTF-8", ErrMalformed)
	}
	var env V3Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return V3Envelope{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	var p problems
	if env.CreateTimeRaw != "" {
		t, err := time.Parse(time.RFC3339, env.CreateTimeRaw)
		if err != nil {
			p.add("create_time", "not RFC 3339")
		}
		env.CreateTime = t
	}
	p.check(env)
	if len(p) > 0 {
		return V3Envelope{}, fmt.Errorf("%w: %w", ErrMalformed, p.err())
	}
	return env, nil
}

// DecryptV3Resource decrypts env.Resource with the merchant's APIv3 key
// (exactly 32 bytes): AES-256-GCM, nonce = the 12 bytes of resource.nonce,
// additional data = resource.associated_data (may be empty). The AES-GCM
// step is wechatpay-go's utils.DecryptAES256GCM. Errors: ErrUndecryptable
// (wrong key, tampered or truncated ciphertext, bad base64, bad nonce or
// algorithm), also wrapping ErrBadKey when the key is not 32 bytes. The
// returned plaintext is confidential: do not log it.
func DecryptV3Resource(env V3Envelope, apiv3Key []byte) ([]byte, error) {
	r := env.Resource
	if len(apiv3Key) != 32 {
		return nil, fmt.Errorf("%w: %w: APIv3 key must be 32 bytes, got %d", ErrUndecryptable, ErrBadKey, len(apiv3Key))
	}
	if r.Algorithm != AlgorithmAESGCM {
		return nil, fmt.Errorf("%w: algorithm %q, want %s", ErrUndecryptable, clip(r.Algorithm, 32), AlgorithmAESGCM)
	}
	if len(r.Nonce) != 12 {
		return nil, fmt.Errorf("%w: nonce of %d bytes, want 12", ErrUndecryptable, len(r.Nonce))
	}
	if r.Ciphertext == "" {
		return nil, fmt.Errorf("%w: empty ciphertext", ErrUndecryptable)
	}
	plain, err := utils.DecryptAES256GCM(string(apiv3Key), r.AssociatedData, r.Nonce, r.Ciphertext)
	if err != nil {
		// The SDK's message (base64 position or "message authentication
		// failed") is left out: one reason is enough, and it is safer to
		// never echo cryptographic detail.
		return nil, fmt.Errorf("%w: AES-GCM open failed (wrong APIv3 key, tampered resource or bad base64)", ErrUndecryptable)
	}
	return []byte(plain), nil
}

// decodeJSONPlain unmarshals decrypted JSON. Its errors never quote the
// plaintext (json syntax errors only give an offset; type errors name a
// field and a Go type).
func decodeJSONPlain(plain []byte, v any) error {
	if !utf8.Valid(plain) {
		return fmt.Errorf("%w: plaintext is not valid UTF-8", ErrInvalid)
	}
	if err := json.Unmarshal(plain, v); err != nil {
		switch e := err.(type) {
		case *json.SyntaxError:
			return fmt.Errorf("%w: plaintext is not JSON (offset %d)", ErrInvalid, e.Offset)
		case *json.UnmarshalTypeError:
			return fmt.Errorf("%w: %s: wrong JSON type, want %s", ErrInvalid, e.Field, e.Type)
		default:
			return fmt.Errorf("%w: plaintext does not decode", ErrInvalid)
		}
	}
	return nil
}

// V3Transaction is the decrypted resource of a TRANSACTION.* notification
// (original_type transaction), validated. Partner-mode fields (sp_appid,
// sub_mchid, ...) are not supported.
//
// Fields carry WeChat's field of the same name (the json tag), verbatim;
// only those with a particular meaning are commented.
type V3Transaction struct {
	AppID          string `json:"appid" validate:"required,printascii,max=32"`
	MchID          string `json:"mchid" validate:"required,printascii,max=32"`
	OutTradeNo     string `json:"out_trade_no" validate:"required,printascii,max=32"`
	TransactionID  string `json:"transaction_id" validate:"required_if=TradeState SUCCESS,printascii,max=32"`
	TradeType      string `json:"trade_type"`
	TradeState     string `json:"trade_state" validate:"required,oneof=SUCCESS REFUND NOTPAY CLOSED REVOKED USERPAYING PAYERROR ACCEPT"`
	TradeStateDesc string `json:"trade_state_desc"`
	BankType       string `json:"bank_type"`
	Attach         string `json:"attach"`
	// SuccessTime is when the payment succeeded (Beijing time); required
	// when TradeState is SUCCESS.
	SuccessTime time.Time `json:"success_time"`
	Payer       V3Payer   `json:"payer"`
	Amount      V3Amount  `json:"amount"`
	// PromotionDetail is kept as received (coupons and discounts).
	PromotionDetail json.RawMessage `json:"promotion_detail,omitempty"`
}

// V3Payer identifies the payer (openid under the appid).
type V3Payer struct {
	OpenID string `json:"openid"`
}

// V3Amount holds a transaction's amounts in fen.
type V3Amount struct {
	// Total is the order total: compare it with the order.
	Total int64 `json:"total" validate:"gte=0"`
	// PayerTotal is what the payer paid (less than Total with discounts).
	// When WeChat omits it, it is set to Total.
	PayerTotal    int64  `json:"payer_total" validate:"gte=0"`
	Currency      string `json:"currency" validate:"len=3,uppercase,alpha"`
	PayerCurrency string `json:"payer_currency"`
}

// v3TransactionWire is the JSON shape, with pointers and strings where
// presence or format must be checked by hand.
type v3TransactionWire struct {
	V3Transaction
	SuccessTime string `json:"success_time"`
	Amount      struct {
		Total         *int64 `json:"total"`
		PayerTotal    *int64 `json:"payer_total"`
		Currency      string `json:"currency"`
		PayerCurrency string `json:"payer_currency"`
	} `json:"amount"`
}

// DecodeV3Transaction decodes and validates a decrypted transaction.
// Required: appid, mchid, out_trade_no, trade_state (a known value),
// amount.total; transaction_id and success_time (RFC 3339) when
// trade_state is SUCCESS. Amounts must be non-negative JSON integers;
// currency defaults to CNY. Errors: ErrInvalid naming the fields, never
// their values.
func DecodeV3Transaction(plaintext []byte) (V3Transaction, error) {
	var w v3TransactionWire
	if err := decodeJSONPlain(plaintext, &w); err != nil {
		return V3Transaction{}, err
	}
	var p problems
	t := w.V3Transaction
	t.SuccessTime = p.rfc3339(w.SuccessTime, "success_time", t.TradeState == "SUCCESS")
	t.Amount.Total = p.requiredAmount(w.Amount.Total, "amount.total")
	t.Amount.PayerTotal = t.Amount.Total
	if w.Amount.PayerTotal != nil {
		t.Amount.PayerTotal = *w.Amount.PayerTotal
	}
	t.Amount.Currency, t.Amount.PayerCurrency = w.Amount.Currency, w.Amount.PayerCurrency
	if t.Amount.Currency == "" {
		t.Amount.Currency = "CNY"
	}
	p.check(t)
	if err := p.err(); err != nil {
		return V3Transaction{}, err
	}
	return t, nil
}

// rfc3339 parses an RFC 3339 time and returns it in Beijing time.
func (p *problems) rfc3339(s, field string, required bool) time.Time {
	if s == "" {
		if required {
			p.add(field, "missing")
		}
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		p.add(field, "not RFC 3339")
		return time.Time{}
	}
	return t.In(domain.Beijing)
}

// requiredAmount reads an amount that must be present in the JSON (a nil
// pointer is an absent field): 0 and a problem when it is absent.
func (p *problems) requiredAmount(v *int64, field string) int64 {
	if v == nil {
		p.add(field, "missing")
		return 0
	}
	return *v
}

// Payment maps the transaction to the ledger's payment record: TotalFee =
// amount.total, CashFee = amount.payer_total, CouponFee = total -
// payer_total (the discount, when positive), FeeType = amount.currency,
// PaidAt = success_time. ResultCode is "SUCCESS" iff trade_state is
// SUCCESS; otherwise "FAIL" with ErrCode = trade_state and ErrCodeDes =
// trade_state_desc.
func (t V3Transaction) Payment(evidence domain.Evidence) domain.Payment {
	p := domain.Payment{
		MchID:         t.MchID,
		AppID:         t.AppID,
		OutTradeNo:    t.OutTradeNo,
		TransactionID: t.TransactionID,
		TotalFee:      t.Amount.Total,
		CashFee:       t.Amount.PayerTotal,
		FeeType:       t.Amount.Currency,
		TradeType:     t.TradeType,
		BankType:      t.BankType,
		OpenID:        t.Payer.OpenID,
		Attach:        t.Attach,
		PaidAt:        t.SuccessTime,
		ResultCode:    "SUCCESS",
		Evidence:      evidence,
	}
	if d := t.Amount.Total - t.Amount.PayerTotal; d > 0 {
		p.CouponFee = d
	}
	if t.TradeState != "SUCCESS" {
		p.ResultCode, p.ErrCode, p.ErrCodeDes = "FAIL", t.TradeState, t.TradeStateDesc
	}
	return p
}

// V3Refund is the decrypted resource of a REFUND.* notification
// (original_type refund), validated.
//
// Fields carry WeChat's field of the same name (the json tag), verbatim;
// only those with a particular meaning are commented.
type V3Refund struct {
	MchID         string `json:"mchid" validate:"required,printascii,max=32"`
	OutTradeNo    string `json:"out_trade_no" validate:"required,printascii,max=32"`
	TransactionID string `json:"transaction_id" validate:"required,printascii,max=32"`
	OutRefundNo   string `json:"out_refund_no" validate:"required,printascii,max=64"`
	RefundID      string `json:"refund_id" validate:"required,printascii,max=32"`
	// RefundStatus is SUCCESS, CLOSED or ABNORMAL (the domain's values).
	RefundStatus string `json:"refund_status" validate:"required,oneof=SUCCESS CLOSED ABNORMAL"`
	// SuccessTime is set when RefundStatus is SUCCESS (Beijing time).
	SuccessTime         time.Time      `json:"success_time"`
	UserReceivedAccount string         `json:"user_received_account"`
	Amount              V3RefundAmount `json:"amount"`
}

// V3RefundAmount holds a refund's amounts in fen: the order total, the
// refund, and what the payer paid and gets back in cash.
type V3RefundAmount struct {
	Total       int64 `json:"total" validate:"gte=0"`
	Refund      int64 `json:"refund" validate:"gte=0"`
	PayerTotal  int64 `json:"payer_total" validate:"gte=0"`
	PayerRefund int64 `json:"payer_refund" validate:"gte=0"`
}

type v3RefundWire struct {
	V3Refund
	SuccessTime string `json:"success_time"`
	Amount      struct {
		Total       *int64 `json:"total"`
		Refund      *int64 `json:"refund"`
		PayerTotal  int64  `json:"payer_total"`
		PayerRefund int64  `json:"payer_refund"`
	} `json:"amount"`
}

// DecodeV3Refund decodes and validates a decrypted refund. Required:
// mchid, out_trade_no, transaction_id, out_refund_no, refund_id,
// refund_status (SUCCESS, CLOSED or ABNORMAL), amount.total,
// amount.refund; success_time (RFC 3339) when the status is SUCCESS.
// Errors: ErrInvalid naming the fields, never their values.
func DecodeV3Refund(plaintext []byte) (V3Refund, error) {
	var w v3RefundWire
	if err := decodeJSONPlain(plaintext, &w); err != nil {
		return V3Refund{}, err
	}
	var p problems
	r := w.V3Refund
	r.SuccessTime = p.rfc3339(w.SuccessTime, "success_time", r.RefundStatus == "SUCCESS")
	r.Amount.Total = p.requiredAmount(w.Amount.Total, "amount.total")
	r.Amount.Refund = p.requiredAmount(w.Amount.Refund, "amount.refund")
	r.Amount.PayerTotal, r.Amount.PayerRefund = w.Amount.PayerTotal, w.Amount.PayerRefund
	p.check(r)
	if err := p.err(); err != nil {
		return V3Refund{}, err
	}
	return r, nil
}

// Refund maps the refund to the ledger's record.
func (r V3Refund) Refund(evidence domain.Evidence) domain.Refund {
	return domain.Refund{
		MchID:           r.MchID,
		OutTradeNo:      r.OutTradeNo,
		TransactionID:   r.TransactionID,
		RefundID:        r.RefundID,
		OutRefundNo:     r.OutRefundNo,
		Status:          r.RefundStatus,
		TotalFee:        r.Amount.Total,
		RefundFee:       r.Amount.Refund,
		PayerTotal:      r.Amount.PayerTotal,
		PayerRefund:     r.Amount.PayerRefund,
		ReceivedAccount: r.UserReceivedAccount,
		SucceededAt:     r.SuccessTime,
		Evidence:        evidence,
	}
}
