package wechatpay

import (
	"fmt"
	"time"

	"github.com/orderledger/orderledger/domain"
)

// V2PayNotify is the typed, validated view of a v2 payment notification.
// Build it with DecodeV2Pay after VerifyV2 succeeded; Raw keeps every field
// received, known or not.
//
// Fields carry WeChat's field of the same name (the wx tag), verbatim;
// only those with a particular meaning are commented.
type V2PayNotify struct {
	ReturnCode string `wx:"return_code" validate:"eq=SUCCESS"`
	ReturnMsg  string `wx:"return_msg"`
	AppID      string `wx:"appid" validate:"required,printascii,max=32"`
	MchID      string `wx:"mch_id" validate:"required,printascii,max=32"`
	SubAppID   string `wx:"sub_appid" validate:"printascii,max=32"`
	SubMchID   string `wx:"sub_mch_id" validate:"printascii,max=32"`
	DeviceInfo string `wx:"device_info"`
	NonceStr   string `wx:"nonce_str" validate:"required"`
	Sign       string `wx:"sign" validate:"required"`
	SignType   string `wx:"sign_type" validate:"omitempty,oneof=MD5 HMAC-SHA256"`
	// ResultCode is the business result: SUCCESS (paid) or FAIL.
	ResultCode  string `wx:"result_code" validate:"required,oneof=SUCCESS FAIL"`
	ErrCode     string `wx:"err_code"`
	ErrCodeDes  string `wx:"err_code_des"`
	OpenID      string `wx:"openid" validate:"required_if=ResultCode SUCCESS"`
	IsSubscribe string `wx:"is_subscribe"`
	TradeType   string `wx:"trade_type" validate:"required_if=ResultCode SUCCESS"`
	BankType    string `wx:"bank_type" validate:"required_if=ResultCode SUCCESS"`
	// TotalFee is the order total in fen: compare it with the order.
	TotalFee           int64 `wx:"total_fee" validate:"gte=0"`
	SettlementTotalFee int64 `wx:"settlement_total_fee" validate:"gte=0"`
	// FeeType is ISO 4217; "CNY" when absent.
	FeeType string `wx:"fee_type" validate:"len=3,uppercase,alpha"`
	// CashFee is what the payer paid in cash, in fen (less than TotalFee
	// when coupons or bank discounts apply).
	CashFee     int64  `wx:"cash_fee" validate:"gte=0"`
	CashFeeType string `wx:"cash_fee_type"`
	CouponFee   int64  `wx:"coupon_fee" validate:"gte=0"`
	CouponCount int64  `wx:"coupon_count" validate:"gte=0"`
	// TransactionID is WeChat's order number.
	TransactionID string `wx:"transaction_id" validate:"required_if=ResultCode SUCCESS,printascii,max=32"`
	// OutTradeNo is the merchant's order number.
	OutTradeNo      string    `wx:"out_trade_no" validate:"required,printascii,max=32"`
	Attach          string    `wx:"attach"`
	TimeEnd         time.Time `wx:"time_end"` // Beijing time
	PromotionDetail string    `wx:"promotion_detail"`
	// Raw holds every field received, including sign and unknown ones.
	Raw Fields `wx:"-" validate:"-"`
}

// CheckV2Return returns ErrReturnFail when the message says return_code
// FAIL: such a message has no signature and no business data, so it must be
// logged and never credited. Call it before VerifyV2 so that a FAIL message
// is reported as such rather than as a missing signature. Any other
// return_code is left to DecodeV2Pay to refuse.
func CheckV2Return(f Fields) error {
	if f["return_code"] == "FAIL" {
		return fmt.Errorf("%w: return_msg %q", ErrReturnFail, clip(f["return_msg"], 128))
	}
	return nil
}

// DecodeV2Pay builds the typed view of a v2 payment notification. It does
// NOT check the signature: call VerifyV2 first. Errors: ErrReturnFail for
// return_code FAIL; otherwise ErrInvalid naming every bad field
// (return_code must be SUCCESS; result_code SUCCESS or FAIL; amounts strict
// non-negative decimal integers; time_end yyyyMMddHHmmss Beijing time;
// transaction_id, openid, trade_type, bank_type, total_fee, cash_fee and
// time_end required when result_code is SUCCESS).
func DecodeV2Pay(f Fields) (V2PayNotify, error) {
	if err := CheckV2Return(f); err != nil {
		return V2PayNotify{}, err
	}
	var p problems
	success := f["result_code"] == "SUCCESS"
	n := V2PayNotify{
		ReturnCode:         f["return_code"],
		ReturnMsg:          f["return_msg"],
		AppID:              f["appid"],
		MchID:              f["mch_id"],
		SubAppID:           f["sub_appid"],
		SubMchID:           f["sub_mch_id"],
		DeviceInfo:         f["device_info"],
		NonceStr:           f["nonce_str"],
		Sign:               f["sign"],
		SignType:           f["sign_type"],
		ResultCode:         f["result_code"],
		ErrCode:            f["err_code"],
		ErrCodeDes:         f["err_code_des"],
		OpenID:             f["openid"],
		IsSubscribe:        f["is_subscribe"],
		TradeType:          f["trade_type"],
		BankType:           f["bank_type"],
		TotalFee:           p.fenField(f, "total_fee", success),
		SettlementTotalFee: p.fenField(f, "settlement_total_fee", false),
		FeeType:            f["fee_type"],
		CashFee:            p.fenField(f, "cash_fee", success),
		CashFeeType:        f["cash_fee_type"],
		CouponFee:          p.fenField(f, "coupon_fee", false),
		CouponCount:        p.fenField(f, "coupon_count", false),
		TransactionID:      f["transaction_id"],
		OutTradeNo:         f["out_trade_no"],
		Attach:             f["attach"],
		TimeEnd:            p.timeField(f, "time_end", "20060102150405", success),
		PromotionDetail:    f["promotion_detail"],
		Raw:                f,
	}
	if n.FeeType == "" {
		n.FeeType = "CNY"
	}
	p.check(n)
	if err := p.err(); err != nil {
		return V2PayNotify{}, err
	}
	return n, nil
}

// Payment maps the notification to the ledger's payment record. PaidAt is
// time_end (Beijing time). For a partner (服务商) notification MchID is the
// service provider's mch_id; SubMchID stays in the typed view.
func (n V2PayNotify) Payment(evidence domain.Evidence) domain.Payment {
	return domain.Payment{
		MchID:         n.MchID,
		AppID:         n.AppID,
		OutTradeNo:    n.OutTradeNo,
		TransactionID: n.TransactionID,
		TotalFee:      n.TotalFee,
		CashFee:       n.CashFee,
		CouponFee:     n.CouponFee,
		FeeType:       n.FeeType,
		TradeType:     n.TradeType,
		BankType:      n.BankType,
		OpenID:        n.OpenID,
		Attach:        n.Attach,
		PaidAt:        n.TimeEnd,
		ResultCode:    n.ResultCode,
		ErrCode:       n.ErrCode,
		ErrCodeDes:    n.ErrCodeDes,
		Evidence:      evidence,
	}
}
