package wxsim

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/orderledger/orderledger/cmd/internal/wechatpay"
	"github.com/orderledger/orderledger/domain"
	"github.com/wechatpay-apiv3/wechatpay-go/utils"
)

// Fen returns a pointer to n, for the optional amounts of PayParams and
// RefundParams.
func Fen(n int64) *int64 { return &n }

// Coupon is one coupon used in a v2 payment (coupon_type_$n, coupon_id_$n,
// coupon_fee_$n).
type Coupon struct {
	Type string // CASH or NO_CASH
	ID   string // coupon id
	Fee  int64  // amount in fen
}

// PayParams describes a payment notification. Zero fields take WeChat-like
// defaults.
type PayParams struct {
	OutTradeNo string // the merchant's order number
	// TransactionID defaults to a random 28-digit 4200... number.
	TransactionID string
	TotalFee      int64 // order total, fen
	// CashFee defaults to TotalFee - CouponFee (v3: payer_total).
	CashFee   *int64
	CouponFee int64 // total coupon amount, fen (v2 coupon_fee)
	// Coupons (v2) add coupon_count and the coupon_*_$n fields.
	Coupons []Coupon
	// FeeType defaults to CNY.
	FeeType string
	// ResultCode defaults to SUCCESS; FAIL makes a failed payment (v2),
	// and v3's trade_state defaults to PAYERROR then.
	ResultCode string
	ErrCode    string // v2 err_code of a FAIL result
	ErrCodeDes string // v2 err_code_des
	// TradeState is v3's trade_state; default SUCCESS (or PAYERROR when
	// ResultCode is FAIL).
	TradeState string
	// SignType is the v2 sign_type: "" (no field, MD5), "MD5" or
	// "HMAC-SHA256". Any other value is written as is and the message is
	// signed with MD5, which makes a message receivers must refuse.
	SignType string
	// TimeEnd is the payment time (v2 time_end, v3 success_time); default
	// the merchant's clock.
	TimeEnd   time.Time
	Attach    string // merchant data, returned unchanged
	AppID     string // overrides the merchant's appid
	OpenID    string // default a random openid
	TradeType string // default JSAPI
	BankType  string // default OTHERS
	// Extra adds or overrides fields: v2 fields before signing; v3
	// top-level string fields of the transaction.
	Extra map[string]string
}

func (m *Merchant) payDefaults(p PayParams) PayParams {
	if p.TransactionID == "" {
		p.TransactionID = "4200" + randDigits(24)
	}
	if p.CashFee == nil {
		p.CashFee = Fen(p.TotalFee - p.CouponFee)
	}
	if p.FeeType == "" {
		p.FeeType = "CNY"
	}
	if p.ResultCode == "" {
		p.ResultCode = "SUCCESS"
	}
	if p.TradeState == "" {
		p.TradeState = "SUCCESS"
		if p.ResultCode != "SUCCESS" {
			p.TradeState = "PAYERROR"
		}
	}
	if p.TimeEnd.IsZero() {
		p.TimeEnd = m.now()
	}
	if p.AppID == "" {
		p.AppID = m.AppID
	}
	if p.OpenID == "" {
		p.OpenID = "oUpF8u" + randAlnum(22)
	}
	if p.TradeType == "" {
		p.TradeType = "JSAPI"
	}
	if p.BankType == "" {
		p.BankType = "OTHERS"
	}
	return p
}

func fen(n int64) string { return strconv.FormatInt(n, 10) }

// V2PayFields returns the fields of a signed v2 payment notification.
func (m *Merchant) V2PayFields(p PayParams) wechatpay.Fields {
	p = m.payDefaults(p)
	f := wechatpay.Fields{
		"return_code":    "SUCCESS",
		"appid":          p.AppID,
		"mch_id":         m.MchID,
		"nonce_str":      randHex(32),
		"result_code":    p.ResultCode,
		"openid":         p.OpenID,
		"is_subscribe":   "N",
		"trade_type":     p.TradeType,
		"bank_type":      p.BankType,
		"total_fee":      fen(p.TotalFee),
		"fee_type":       p.FeeType,
		"cash_fee":       fen(*p.CashFee),
		"transaction_id": p.TransactionID,
		"out_trade_no":   p.OutTradeNo,
		"time_end":       p.TimeEnd.In(domain.Beijing).Format("20060102150405"),
	}
	if p.Attach != "" {
		f["attach"] = p.Attach
	}
	if p.ErrCode != "" {
		f["err_code"], f["err_code_des"] = p.ErrCode, p.ErrCodeDes
	}
	if p.CouponFee != 0 || len(p.Coupons) > 0 {
		f["coupon_fee"] = fen(p.CouponFee)
		f["coupon_count"] = strconv.Itoa(len(p.Coupons))
		for i, c := range p.Coupons {
			n := strconv.Itoa(i)
			f["coupon_type_"+n], f["coupon_id_"+n], f["coupon_fee_"+n] = c.Type, c.ID, fen(c.Fee)
		}
	}
	if p.SignType != "" {
		f["sign_type"] = p.SignType
	}
	maps.Copy(f, p.Extra)
	algo := p.SignType
	if algo != wechatpay.SignTypeHMACSHA256 {
		algo = wechatpay.SignTypeMD5
	}
	sign, err := wechatpay.SignV2(f, m.APIKey, algo)
	if err != nil {
		panic(fmt.Sprintf("wxsim: sign v2: %v", err)) // only an empty APIKey gets here
	}
	f["sign"] = sign
	return f
}

// encodeV2 renders fields WeChat-style, panicking on fields XML cannot
// carry (a caller's mistake in Extra).
func encodeV2(f wechatpay.Fields) []byte {
	b, err := wechatpay.EncodeV2(f)
	if err != nil {
		panic(fmt.Sprintf("wxsim: encode v2: %v", err))
	}
	return b
}

// V2Pay returns a signed v2 payment notification body: <xml>, CDATA for
// strings and plain text for integers, as WeChat writes it. It panics if
// the merchant has no APIKey or Extra holds a field XML cannot carry.
func (m *Merchant) V2Pay(p PayParams) []byte {
	return encodeV2(m.V2PayFields(p))
}

// V2PayTampered returns a v2 payment notification signed for p, then with
// field set to value: a message whose signature no longer matches (unless
// value equals the signed one).
func (m *Merchant) V2PayTampered(p PayParams, field, value string) []byte {
	f := m.V2PayFields(p)
	f[field] = value
	return encodeV2(f)
}

// RefundParams describes a refund notification. Zero fields take
// WeChat-like defaults.
type RefundParams struct {
	OutTradeNo    string // the paid order
	TransactionID string // WeChat's number of the paid order
	// RefundID defaults to a random 50... number.
	RefundID    string
	OutRefundNo string // the merchant's refund number
	TotalFee    int64  // order total, fen
	RefundFee   int64  // refunded amount, fen
	// SettlementRefundFee defaults to RefundFee.
	SettlementRefundFee *int64
	// Status uses the domain's values: SUCCESS (default), CLOSED or
	// ABNORMAL, written as v2 SUCCESS / REFUNDCLOSE / CHANGE. Any other
	// value is written as is.
	Status string
	// SuccessTime defaults to the merchant's clock for SUCCESS refunds.
	SuccessTime time.Time
	// ReceivedAccount defaults to 支付用户零钱.
	ReceivedAccount string
	// PayerTotal and PayerRefund (v3) default to TotalFee and RefundFee.
	PayerTotal  *int64
	PayerRefund *int64 // see PayerTotal
	AppID       string // overrides the merchant's appid (v2 outer XML)
	// Extra adds or overrides fields: v2 req_info fields; v3 top-level
	// string fields of the refund.
	Extra map[string]string
}

func (m *Merchant) refundDefaults(r RefundParams) RefundParams {
	if r.RefundID == "" {
		r.RefundID = "50" + randDigits(27)
	}
	if r.SettlementRefundFee == nil {
		r.SettlementRefundFee = Fen(r.RefundFee)
	}
	if r.Status == "" {
		r.Status = domain.RefundStatusSuccess
	}
	if r.SuccessTime.IsZero() && r.Status == domain.RefundStatusSuccess {
		r.SuccessTime = m.now()
	}
	if r.ReceivedAccount == "" {
		r.ReceivedAccount = "支付用户零钱"
	}
	if r.PayerTotal == nil {
		r.PayerTotal = Fen(r.TotalFee)
	}
	if r.PayerRefund == nil {
		r.PayerRefund = Fen(r.RefundFee)
	}
	if r.AppID == "" {
		r.AppID = m.AppID
	}
	return r
}

var v2RefundStatus = map[string]string{
	domain.RefundStatusSuccess:  "SUCCESS",
	domain.RefundStatusClosed:   "REFUNDCLOSE",
	domain.RefundStatusAbnormal: "CHANGE",
}

// V2RefundInfo returns the plaintext fields of a v2 refund's req_info.
func (m *Merchant) V2RefundInfo(r RefundParams) wechatpay.Fields {
	r = m.refundDefaults(r)
	status := r.Status
	if s, ok := v2RefundStatus[status]; ok {
		status = s
	}
	f := wechatpay.Fields{
		"transaction_id":        r.TransactionID,
		"out_trade_no":          r.OutTradeNo,
		"refund_id":             r.RefundID,
		"out_refund_no":         r.OutRefundNo,
		"total_fee":             fen(r.TotalFee),
		"refund_fee":            fen(r.RefundFee),
		"settlement_refund_fee": fen(*r.SettlementRefundFee),
		"refund_status":         status,
		"refund_recv_accout":    r.ReceivedAccount,
		"refund_account":        "REFUND_SOURCE_RECHARGE_FUNDS",
		"refund_request_source": "API",
	}
	if !r.SuccessTime.IsZero() {
		f["success_time"] = r.SuccessTime.In(domain.Beijing).Format("2006-01-02 15:04:05")
	}
	maps.Copy(f, r.Extra)
	return f
}

// V2Refund returns a v2 refund notification body: no sign, req_info
// encrypted (AES-256-ECB under the MD5 of the merchant's API key). It
// panics if the merchant has no APIKey.
func (m *Merchant) V2Refund(r RefundParams) []byte {
	r = m.refundDefaults(r)
	reqInfo, err := wechatpay.EncryptV2RefundReqInfo(m.V2RefundInfo(r), m.APIKey)
	if err != nil {
		panic(fmt.Sprintf("wxsim: encrypt req_info: %v", err))
	}
	return encodeV2(wechatpay.Fields{
		"return_code": "SUCCESS",
		"appid":       r.AppID,
		"mch_id":      m.MchID,
		"nonce_str":   randHex(32),
		"req_info":    reqInfo,
	})
}

// V3Transaction returns the plaintext transaction a v3 payment
// notification carries.
func (m *Merchant) V3Transaction(p PayParams) []byte {
	p = m.payDefaults(p)
	tx := map[string]any{
		"appid":            p.AppID,
		"mchid":            m.MchID,
		"out_trade_no":     p.OutTradeNo,
		"transaction_id":   p.TransactionID,
		"trade_type":       p.TradeType,
		"trade_state":      p.TradeState,
		"trade_state_desc": map[bool]string{true: "支付成功", false: "支付失败"}[p.TradeState == "SUCCESS"],
		"bank_type":        p.BankType,
		"attach":           p.Attach,
		"success_time":     p.TimeEnd.In(domain.Beijing).Format(time.RFC3339),
		"payer":            map[string]any{"openid": p.OpenID},
		"amount":           map[string]any{"total": p.TotalFee, "payer_total": *p.CashFee, "currency": p.FeeType, "payer_currency": p.FeeType},
	}
	for k, v := range p.Extra {
		tx[k] = v
	}
	return mustJSON(tx)
}

// V3RefundResource returns the plaintext refund a v3 refund notification
// carries.
func (m *Merchant) V3RefundResource(r RefundParams) []byte {
	r = m.refundDefaults(r)
	rf := map[string]any{
		"mchid":                 m.MchID,
		"out_trade_no":          r.OutTradeNo,
		"transaction_id":        r.TransactionID,
		"out_refund_no":         r.OutRefundNo,
		"refund_id":             r.RefundID,
		"refund_status":         r.Status,
		"user_received_account": r.ReceivedAccount,
		"amount":                map[string]any{"total": r.TotalFee, "refund": r.RefundFee, "payer_total": *r.PayerTotal, "payer_refund": *r.PayerRefund},
	}
	if !r.SuccessTime.IsZero() {
		rf["success_time"] = r.SuccessTime.In(domain.Beijing).Format(time.RFC3339)
	}
	for k, v := range r.Extra {
		rf[k] = v
	}
	return mustJSON(rf)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("wxsim: marshal: %v", err)) // maps of strings and numbers always marshal
	}
	return b
}

// V3Pay returns a TRANSACTION.SUCCESS notification (the event type is
// WeChat's for every notified payment): headers and body signed at the
// merchant's clock, resource encrypted with the APIv3 key (AAD
// "transaction"). It panics if the merchant has no PrivateKey or an APIv3
// key that is not 32 bytes.
func (m *Merchant) V3Pay(p PayParams) (http.Header, []byte) {
	body := m.V3Envelope("TRANSACTION.SUCCESS", "支付成功", "transaction", m.V3Transaction(p))
	return m.SignV3(body), body
}

// V3Refund returns a REFUND.SUCCESS / REFUND.CLOSED / REFUND.ABNORMAL
// notification (after r.Status), signed and encrypted (AAD "refund").
// Panics as V3Pay.
func (m *Merchant) V3Refund(r RefundParams) (http.Header, []byte) {
	r = m.refundDefaults(r)
	summary := map[string]string{domain.RefundStatusSuccess: "退款成功", domain.RefundStatusClosed: "退款关闭", domain.RefundStatusAbnormal: "退款异常"}[r.Status]
	body := m.V3Envelope("REFUND."+r.Status, summary, "refund", m.V3RefundResource(r))
	return m.SignV3(body), body
}

// V3Envelope encrypts plaintext with the APIv3 key (AES-256-GCM, a random
// 12-character nonce, AAD = originalType) and wraps it in a notification
// envelope with a fresh id and create_time.
func (m *Merchant) V3Envelope(eventType, summary, originalType string, plaintext []byte) []byte {
	if len(m.APIv3Key) != 32 {
		panic("wxsim: APIv3 key must be 32 bytes")
	}
	block, err := aes.NewCipher([]byte(m.APIv3Key))
	if err != nil {
		panic(fmt.Sprintf("wxsim: %v", err))
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(fmt.Sprintf("wxsim: %v", err))
	}
	nonce := randAlnum(12)
	ct := gcm.Seal(nil, []byte(nonce), plaintext, []byte(originalType))
	// A struct keeps WeChat's field order.
	type resource struct {
		OriginalType   string `json:"original_type"`
		Algorithm      string `json:"algorithm"`
		Ciphertext     string `json:"ciphertext"`
		AssociatedData string `json:"associated_data"`
		Nonce          string `json:"nonce"`
	}
	return mustJSON(struct {
		ID           string   `json:"id"`
		CreateTime   string   `json:"create_time"`
		ResourceType string   `json:"resource_type"`
		EventType    string   `json:"event_type"`
		Summary      string   `json:"summary"`
		Resource     resource `json:"resource"`
	}{
		ID:           uuid.NewString(),
		CreateTime:   m.now().In(domain.Beijing).Format(time.RFC3339),
		ResourceType: "encrypt-resource",
		EventType:    eventType,
		Summary:      summary,
		Resource: resource{
			OriginalType: originalType, Algorithm: wechatpay.AlgorithmAESGCM,
			Ciphertext: base64.StdEncoding.EncodeToString(ct), AssociatedData: originalType, Nonce: nonce,
		},
	})
}

// SignV3 signs body as WeChat signs a notification, at the merchant's
// clock, and returns the headers to send: Wechatpay-Timestamp, -Nonce,
// -Serial (SigningSerial), -Signature, -Signature-Type and Content-Type.
// Re-signing an unchanged body is how WeChat's retries look (a fresh
// timestamp each time). Panics if the merchant has no PrivateKey.
func (m *Merchant) SignV3(body []byte) http.Header {
	if m.PrivateKey == nil {
		panic("wxsim: merchant has no signing key")
	}
	ts := strconv.FormatInt(m.now().Unix(), 10)
	nonce := randAlnum(32)
	// RSASSA-PKCS1-v1_5 with SHA-256, base64: the signing half of the SDK
	// whose verifier the ledger uses.
	sig, err := utils.SignSHA256WithRSA(ts+"\n"+nonce+"\n"+string(body)+"\n", m.PrivateKey)
	if err != nil {
		panic(fmt.Sprintf("wxsim: sign v3: %v", err))
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(wechatpay.HeaderTimestamp, ts)
	h.Set(wechatpay.HeaderNonce, nonce)
	h.Set(wechatpay.HeaderSerial, m.SigningSerial())
	h.Set(wechatpay.HeaderSignature, sig)
	h.Set(wechatpay.HeaderSignatureType, wechatpay.SignatureTypeRSA)
	return h
}
